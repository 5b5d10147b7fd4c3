"""The pools' HTTP client: one per pool account, shared by all of that account's reads.

What every pool API gets from it, whatever its paths:
- an explicit timeout on every request, connect and whole reply together (a server trickling a byte
  at a time costs that and no more);
- replies read up to a cap (a longer one is refused, never held whole). It asks for gzip or deflate
  (APIs behind nginx or Cloudflare compress) and inflates what it gets as it arrives, the cap counting
  the inflated bytes: a gzip bomb stops at the cap, never expands whole. Another encoding is refused;
- requests spaced by the pool's documented rate (`min_interval_s`: Braiins documents one request per
  five seconds), across rounds too;
- after a 429 nothing is sent before its `Retry-After` (capped); after any other failure nothing is
  sent before an exponential backoff with jitter has passed. A request asked for meanwhile raises
  PoolBackingOff without touching the network, so a waiting pool never holds a cycle or a task;
- the token travels in a header only: it is never in a URL, a message or a log line. A pool or proxy
  that echoes it in an answer the client quotes (an error page) has it masked (collector.redact.mask).

Exceptions (each message names the pool and the URL, never a credential):

    PoolError            the base
      PoolBackingOff     nothing sent: still waiting after a failure (the wait is in the message)
      PoolUnavailable    no connection, a timeout, HTTP 5xx
      PoolRateLimited    HTTP 429
      PoolRefused        HTTP 401/403 (the token), another 4xx (the account or path), a redirect
      PoolReplyError     an answer that is not what the documentation says: too large, not JSON,
                         wrong types, missing keys, numbers not finite or implausible
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from collector.redact import SECRET_START, mask, redact, redact_url

# What the client asks for, and all it inflates (RFC 9110: deflate is the zlib format).
ACCEPT_ENCODING = "gzip, deflate"
_INFLATE_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class PoolError(Exception):
    """A pool read failed; the message says which pool, where and why."""


class PoolBackingOff(PoolError):
    pass


class PoolUnavailable(PoolError):
    pass


class PoolRateLimited(PoolError):
    pass


class PoolRefused(PoolError):
    pass


class PoolReplyError(PoolError):
    pass


class PoolClient:
    """Requests to one pool API, paced and backed off as the module docstring says."""

    def __init__(self, name: str, base_url: str, *, headers: Mapping[str, str] | None = None,
                 token: str | None = None, timeout_s: float = 10.0, min_interval_s: float = 1.0, max_reply_bytes: int = 16 << 20,
                 backoff_s: float = 30.0, backoff_max_s: float = 1800.0, retry_after_max_s: float = 900.0,
                 rng: random.Random | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.min_interval_s = min_interval_s
        self.max_reply_bytes = max_reply_bytes
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._headers = {"Accept": "application/json", "Accept-Encoding": ACCEPT_ENCODING, "User-Agent": "hashfleet",
                         **(headers or {})}
        self._token = token  # sent in `headers`; masked in anything quoted from an answer
        self._http: httpx.AsyncClient | None = None
        self._last_sent: float | None = None  # monotonic
        self._not_before = 0.0  # monotonic: nothing is sent before this (a backoff or a Retry-After)
        self.failures = 0  # in a row
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"PoolClient({self.name!r}, {redact_url(self.base_url)!r})"

    @property
    def waiting_s(self) -> float:
        """Seconds before a request may be sent again (0: now)."""
        return max(0.0, self._not_before - self._monotonic())

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self._request("GET", path, params=params)

    async def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return await self._request("POST", path, json=body)

    def back_off(self, retry_after_s: float | None = None) -> float:
        """Wait before the next request: `retry_after_s` (capped) when the pool said so, else an exponential
        backoff with jitter from `backoff_s`. Also what the sources call when a reply is unusable (a
        changed schema does not heal by asking faster). Returns the wait."""
        self.failures += 1
        if retry_after_s is not None:
            wait = min(retry_after_s, self.retry_after_max_s)
        else:
            delay = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(self.failures - 1, 30))
            wait = delay * (0.5 + 0.5 * self._rng.random())  # "equal jitter": never below half the delay
        self._not_before = max(self._not_before, self._monotonic() + max(wait, self.min_interval_s))
        return wait

    def masked(self, text: str) -> str:
        """`text` (an error that may quote what the pool answered) without the token."""
        return mask(text, self._token)

    def quotes_token(self, text: str) -> bool:
        """`text` holds the whole token: an echo of the request (a name that only starts alike is a name)."""
        return bool(self._token) and len(self._token) >= SECRET_START and self._token in text  # (as `mask`)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- one request -----------------------------------------------------------------------------

    def _where(self, path: str) -> str:
        return f"{self.name}: {redact_url(self.base_url + path)}"

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self._lock:  # one request at a time per pool account
            where = self._where(path)
            waiting = self.waiting_s
            if waiting > 0:
                raise PoolBackingOff(f"{where}: not asked, waiting {waiting:.0f} s more after a failure")
            if self._last_sent is not None:
                gap = self._last_sent + self.min_interval_s - self._monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
            if self._http is None:
                self._http = httpx.AsyncClient(headers=self._headers, follow_redirects=False,
                                               timeout=httpx.Timeout(self.timeout_s))
            try:
                async with asyncio.timeout(self.timeout_s):
                    status, headers, body = await self._exchange(method, self.base_url + path, **kwargs)
            except TimeoutError:
                self.back_off()
                raise PoolUnavailable(f"{where}: no whole answer within {self.timeout_s:g} s") from None
            except PoolReplyError:
                self.back_off()
                raise
            except httpx.LocalProtocolError:  # a header refused before sending: its message quotes it
                self.back_off()
                raise PoolUnavailable(f"{where}: the request could not be sent (a header value the HTTP client "
                                      "refused)") from None
            except httpx.HTTPError as e:
                self.back_off()
                raise PoolUnavailable(f"{where}: {type(e).__name__}: "
                                      f"{self.masked(redact(str(e)))[:200] or 'no answer'}") from None
            finally:
                # Spaced from the end of the last exchange: the pool sees at least min_interval_s between two
                # requests, however long connecting took.
                self._last_sent = self._monotonic()
            return self._answer(where, status, headers, body)

    async def _exchange(self, method: str, url: str, **kwargs: Any) -> tuple[int, httpx.Headers, bytes]:
        assert self._http is not None
        async with self._http.stream(method, url, **kwargs) as response:
            where = self._where(url[len(self.base_url):])
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_reply_bytes:
                raise PoolReplyError(f"{where}: a reply of {int(declared):,} "
                                     f"bytes, over the {self.max_reply_bytes:,} cap (pools.max_reply_mb)")
            body = _CappedBody(where, self.max_reply_bytes, response.headers.get("content-encoding"))
            async for chunk in response.aiter_raw():
                body.add(chunk)
            return response.status_code, response.headers, bytes(body.data)

    def _answer(self, where: str, status: int, headers: httpx.Headers, body: bytes) -> Any:
        if status == 429:
            retry_after = retry_after_s(headers.get("retry-after"))
            wait = self.back_off(retry_after)
            said = f"Retry-After {headers.get('retry-after', '')[:40]!r}" if retry_after is not None else "no Retry-After"
            raise PoolRateLimited(f"{where}: HTTP 429 rate limited ({said}); next request in {wait:.0f} s")
        if status >= 500:
            wait = self.back_off()
            raise PoolUnavailable(f"{where}: HTTP {status}; next request in {wait:.0f} s")
        if status in (401, 403):
            wait = self.back_off()
            raise PoolRefused(f"{where}: HTTP {status}: the pool refused the read-only token (check the token "
                              f"file or variable, and that the token may read the API); next request in {wait:.0f} s")
        if not 200 <= status < 300:
            wait = self.back_off()
            raise PoolRefused(f"{where}: HTTP {status}{_excerpt(body, self._token)}: check the account and url; "
                              f"next request in {wait:.0f} s")
        try:
            value = orjson.loads(body)  # refuses NaN, Infinity and numbers past a double: not readings
        except orjson.JSONDecodeError as e:
            self.back_off()
            raise PoolReplyError(f"{where}: the answer is not JSON ({e}){_excerpt(body, self._token)}") from None
        self.failures = 0
        return value


class _CappedBody:
    """A reply's bytes as they arrive, inflated when the pool compressed them, refused once over `cap`
    bytes (inflated: each step inflates at most one byte past the cap)."""

    def __init__(self, where: str, cap: int, encoding: str | None) -> None:
        self.where = where
        self.cap = cap
        self.data = bytearray()
        coding = (encoding or "identity").strip().lower()
        if coding == "identity":
            self._inflate = None
        elif coding in _INFLATE_WBITS:
            self._inflate = zlib.decompressobj(_INFLATE_WBITS[coding])
        else:
            raise PoolReplyError(f"{where}: an answer encoded {coding[:40]!r}, not asked for ({ACCEPT_ENCODING})")
        self._what = "reply" if self._inflate is None else f"reply (inflated from {coding})"

    def add(self, chunk: bytes) -> None:
        inflate = self._inflate
        if inflate is None:
            self.data += chunk
        else:
            while chunk and not inflate.eof:  # after the end of the stream: nothing more is read
                try:
                    self.data += inflate.decompress(chunk, self.cap - len(self.data) + 1)
                except zlib.error as e:
                    raise PoolReplyError(f"{self.where}: the {self._what} does not inflate ({e})") from None
                if len(self.data) > self.cap:
                    break
                chunk = inflate.unconsumed_tail
        if len(self.data) > self.cap:
            raise PoolReplyError(f"{self.where}: a {self._what} over the {self.cap:,}-byte cap (pools.max_reply_mb)")


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds (delta-seconds or an HTTP date), None if absent or unusable."""
    if value is None:
        return None
    text = value.strip()
    if len(text) <= 12 and text.isascii() and text.isdigit():  # not "²", which float() refuses
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    wait = when.timestamp() - time.time()
    return max(0.0, wait) if math.isfinite(wait) else None


def _excerpt(body: bytes, token: str | None) -> str:
    text = mask(body[:120].decode("utf-8", "replace"), token).strip()
    text = "".join(c if c.isprintable() else " " for c in text)
    return f" ({text!r})" if text else ""
