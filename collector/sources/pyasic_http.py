"""Every HTTP exchange pyasic makes, bounded in size and kept on the address it was sent to.

pyasic 0.79 bounds its HTTP by time only: detection's `GET /` (`follow_redirects=True`) and its web
clients (the Bitaxe's `/api/system/info`, an Antminer's cgi pages, ...) read each answer whole with
`resp.text` / `resp.json()`, inflating whatever Content-Encoding the answer names. In trial J one web
server on port 80 answering a gzip bomb (4 MB of gzip, 4 GB of zeros) took `scan` to 2.5-2.9 GB and
`collect` to 7 GB (MemoryError), with good miners unfound or offline; a 302 to another host had that
host's page decide the make.

pyasic builds every client it uses as `httpx.AsyncClient(transport=pyasic.settings.transport(...))`, and
httpx sends every request of a client through its transport: redirect hops and Digest-auth retries
too (httpx `_send_single_request`; a client given a transport takes no proxy from the environment).
`install()` makes that function return `BoundedTransport`, which for each exchange:
- asks for `Accept-Encoding: identity`. An answer gzip-encoded anyway is inflated here, the cap counting
  the inflated bytes as they come (ESP-Miner serves the AxeOS page pre-gzipped whatever is asked);
  any other encoding is refused;
- refuses an answer that declares a Content-Length over MAX_ANSWER_BYTES before reading it, and one
  that passes the cap as it streams (no Content-Length: chunked, or up to the close);
- refuses a redirect to another origin (scheme, host or port): it is never followed, so no other
  host is contacted and none decides the make. pyasic probes both `http://` and `https://` itself, and
  the same-origin 302 real firmware sends (AxeOS: an unknown path to `/`) is followed as before.
A refusal is an httpx error (`AnswerRefused`, a RemoteProtocolError) that pyasic handles like any
broken answer; its reason is noted for the caller (`noting_refusals`), so an address's failure says why.

Time is not bounded here: every pyasic call hashfleet makes runs under pyasic_makes.within (detection in
pyasic_makes.detect, reads in pyasic_makes.poll, commands in collector/sinks/miner_commands.py), so a
server dripping a byte a second costs its own timeout and, with the cap, a bounded amount of memory.
A fast endless answer ends at the cap even when a cancellation is lost (Python 3.11's wait_for can lose
one when the read it cancels has just completed, and pyasic's detection then reads on).

Not covered (no httpx client of pyasic's settings): pyasic's gRPC (Braiins OS+ on 50051, grpclib's own
HTTP/2 stack: collector/sources/pyasic_grpc.py bounds its messages), its CGMiner RPC on 4028 (plain
sockets: collector/sources/pyasic_rpc.py bounds those), and
the Whatsminer `open_api` helper's client to wmt.pyasic.org, which hashfleet never calls.
"""

from __future__ import annotations

import contextvars
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

# The largest answer pyasic may read. Real answers are small (an AxeOS page ~1 KB inflated, its
# /api/system/info ~2 KB, an Antminer's cgi pages 0.5-3 KB, the simulators' at most ~2 KB); the native
# Antminer web client caps at the same size (collector/sources/web_client.py).
MAX_ANSWER_BYTES = 256 * 1024
_GZIP = ("gzip", "x-gzip")
_MAX_NOTED = 8  # reasons kept per call: the first say why


class AnswerRefused(httpx.RemoteProtocolError):
    """An answer that was not read: over the cap, in an encoding not asked for, or redirecting away."""


_noted: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("pyasic_http_refusals", default=None)


@contextmanager
def noting_refusals() -> Iterator[list[str]]:
    """Collect the reasons of the answers refused in this block (pyasic's tasks started in it included:
    they inherit the context)."""
    noted: list[str] = []
    token = _noted.set(noted)
    try:
        yield noted
    finally:
        _noted.reset(token)


def noted() -> list[str] | None:
    """Where this block's refusals go (None outside `noting_refusals`): pyasic_rpc takes it when a
    socket opens, as its refusals happen outside the task that reads."""
    return _noted.get()


def note(noted: list[str] | None, message: str) -> None:
    if noted is not None and len(noted) < _MAX_NOTED:
        noted.append(message)


def _refuse(request: httpx.Request, reason: str) -> AnswerRefused:
    url = request.url  # no query: pyasic sends some logins in it (IceRiver's `pwd`)
    path = url.raw_path.split(b"?", 1)[0][:80].decode("ascii", "replace")  # percent-encoded: printable
    where = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{path}"
    message = f"web answer refused: {where}: {reason}"
    note(_noted.get(), message)
    return AnswerRefused(message, request=request)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port  # httpx normalises a default port to None


def _redirect_target(request: httpx.Request, location: str) -> httpx.URL | None:
    """Where httpx would follow `location` to (its _redirect_url), None when it is no URL."""
    try:
        url = httpx.URL(location)
    except httpx.InvalidURL:
        return None
    if url.scheme and not url.host:
        url = url.copy_with(host=request.url.host)
    return request.url.join(url) if url.is_relative_url else url


class _CappedStream(httpx.AsyncByteStream):
    """An answer's body as it arrives, inflated when it came gzip-encoded; refused past the cap."""

    def __init__(self, raw: httpx.AsyncByteStream, request: httpx.Request, gzip: bool) -> None:
        self._raw, self._request = raw, request
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        inflate, left = self._inflate, MAX_ANSWER_BYTES
        async for chunk in self._raw:
            if inflate is None:
                left -= len(chunk)
                if left < 0:
                    raise _refuse(self._request, f"an answer over the {MAX_ANSWER_BYTES:,}-byte cap")
                yield chunk
                continue
            while chunk and not inflate.eof:  # each step inflates at most one byte past the cap
                try:
                    part = inflate.decompress(chunk, left + 1)
                except zlib.error as e:
                    raise _refuse(self._request, f"a gzip answer that does not inflate ({e})") from None
                left -= len(part)
                if left < 0:
                    raise _refuse(self._request, f"a gzip answer inflating past the {MAX_ANSWER_BYTES:,}-byte cap")
                yield part
                chunk = inflate.unconsumed_tail

    async def aclose(self) -> None:
        await self._raw.aclose()


class BoundedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, each answer bounded as the module docstring says."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = "identity"
        response = await super().handle_async_request(request)
        try:
            gzip = _check_head(request, response)
        except AnswerRefused:
            await response.aclose()  # the connection is dropped, not reused
            raise
        headers = response.headers
        if gzip:  # what pyasic sees is the inflated answer, its length unknown until read
            headers = httpx.Headers([(k, v) for k, v in response.headers.multi_items()
                                     if k.lower() not in ("content-encoding", "content-length")])
        return httpx.Response(status_code=response.status_code, headers=headers,
                              stream=_CappedStream(response.stream, request, gzip),
                              extensions=response.extensions)


def _check_head(request: httpx.Request, response: httpx.Response) -> bool:
    """Refuse what the head already shows; True when the body is gzip-encoded."""
    if response.has_redirect_location:
        target = _redirect_target(request, response.headers["location"])
        if target is None or _origin(target) != _origin(request.url):
            shown = response.headers["location"][:80]  # !r: its control characters escaped
            raise _refuse(request, f"HTTP {response.status_code} redirect to another origin ({shown!r}), "
                                   "not followed")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise _refuse(request, f"an answer of {int(declared):,} bytes, over the {MAX_ANSWER_BYTES:,}-byte cap")
    encoding = response.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding not in ("identity", *_GZIP):
        raise _refuse(request, f"an answer encoded {encoding[:40]!r}, not asked for (identity)")
    return encoding in _GZIP


def bounded_transport(verify: Any = None) -> BoundedTransport:
    """What `pyasic.settings.transport` returns once installed: its `verify` default kept."""
    from pyasic import settings

    return BoundedTransport(verify=settings.ssl_cxt if verify is None else verify)


def install() -> None:
    """Have every httpx client pyasic builds from now on use BoundedTransport. pyasic's modules call
    `settings.transport()` through the module at each request, so replacing the function is enough."""
    from pyasic import settings

    settings.transport = bounded_transport
