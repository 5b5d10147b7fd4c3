"""HTTP for the native readers' rare calls (an Antminer's web UI): one client per event loop, capped.

One `httpx.AsyncClient` serves every miner of a collector process: no client, TLS context or
connection pool is built per call (pyasic builds a client per web call, ~10 ms of CPU per Antminer
poll). Connections are not kept alive: a miner's web UI is asked about once a minute, so a pool
of idle sockets would only hold memory and file descriptors. Digest authentication is per miner
(`httpx.DigestAuth` remembers the miner's last challenge, so after the first 401 each call is one
request).

Everything from a miner is hostile: a reply body (a 401's included, which httpx reads before it
answers the challenge) larger than MAX_BODY_BYTES ends the call, and every call has a timeout.

Exceptions: WebError (with a message naming the address and what to do); its subclasses
WebUnreachable (no answer in time, refused, reset) and WebReplyError (an answer that is not usable).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

# The cgi replies the readers ask for are 0.5-3 KB; a 401 page a few hundred bytes.
MAX_BODY_BYTES = 256 * 1024


class WebError(Exception):
    pass


class WebUnreachable(WebError):
    pass


class WebReplyError(WebError):
    pass


class _TooLarge(Exception):
    pass


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, cap: int) -> None:
        self._stream = stream
        self._cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self._stream:
            size += len(chunk)
            if size > self._cap:
                raise _TooLarge(size)
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _CappedTransport(httpx.AsyncHTTPTransport):
    """Every response body, the intermediate 401s of digest auth included, read up to the cap."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(status_code=response.status_code, headers=response.headers,
                              stream=_CappedStream(response.stream, MAX_BODY_BYTES), extensions=response.extensions)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def client() -> httpx.AsyncClient:
    """The running loop's client (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found.is_closed:
        found = _clients[loop] = httpx.AsyncClient(
            transport=_CappedTransport(limits=httpx.Limits(max_keepalive_connections=0), retries=0),
            follow_redirects=False, trust_env=False)
    return found


async def close() -> None:
    """Close the running loop's client, if one was made."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


async def get_json(url: str, auth: httpx.Auth | None, timeout_s: float, where: str) -> dict[str, Any]:
    """GET `url`, the JSON object it answers. The timeout covers the whole call (both requests of a
    digest handshake, connect and read)."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await client().get(url, auth=auth, timeout=timeout_s)
    except TimeoutError:
        raise WebUnreachable(f"{where}: no complete web answer within {timeout_s:g} s") from None
    except _TooLarge:
        raise WebReplyError(f"{where}: web reply larger than {MAX_BODY_BYTES} bytes: not read") from None
    except httpx.TransportError as e:
        cause = e.__cause__ if isinstance(e.__cause__, _TooLarge) else None
        if cause is not None:
            raise WebReplyError(f"{where}: web reply larger than {MAX_BODY_BYTES} bytes: not read") from None
        raise WebUnreachable(f"{where}: web UI not answering ({type(e).__name__})") from None
    if response.status_code == 401:
        raise WebReplyError(f"{where}: the web UI refused the login (HTTP 401): set the web password pyasic "
                            "uses for this make (pyasic settings) to the miner's")
    if response.status_code != 200:
        raise WebReplyError(f"{where}: web UI answered HTTP {response.status_code}")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError as e:
        raise WebReplyError(f"{where}: web reply is not JSON ({e.msg} at byte {e.pos})") from None
    if not isinstance(data, dict):
        raise WebReplyError(f"{where}: web reply is JSON but not an object")
    return data
