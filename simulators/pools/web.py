"""HTTP/1.1 serving of one simulated pool API on loopback: keep-alive, Content-Length bodies, the
pool faults, and a record of every request (for tests that assert a client's backoff).

Small on purpose (what httpx and curl send: no chunked bodies, no TLS). Requests and responses
are `simulators.http.HttpRequest`/`HttpResponse`, like the miners' web ports; the pool's own
module (`braiins.py`, `ocean.py`, ...) turns one into the other and formats its errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from simulators.http import REASONS, HttpRequest, HttpResponse
from simulators.pools.faults import PoolFaults, drift
from simulators.server import open_listening_socket

log = logging.getLogger(__name__)

IDLE_S = 10.0
MAX_HEAD = 16384
MAX_BODY = 1 << 20
STATUS_TEXT = {**REASONS, 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}


class PoolApi(Protocol):
    """One pool's API: its paths and JSON, its auth, its error format."""

    kind: str

    def handle(self, request: HttpRequest) -> HttpResponse: ...

    def auth_state(self, request: HttpRequest) -> str: ...  # ok | missing | wrong | public

    def error(self, status: int, message: str) -> HttpResponse: ...


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the pool saw it: never the credentials, only whether they were right."""

    at: float  # the pool's clock
    mono: float  # time.monotonic() when it arrived (for backoff assertions)
    method: str
    path: str
    status: int
    auth: str
    retry_after: int | None


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def parse_request(head: bytes, body: bytes) -> HttpRequest:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, f"bad header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    url = urlsplit(parts[1])
    return HttpRequest(parts[0].upper(), parts[1], unquote(url.path) or "/", dict(parse_qsl(url.query)),
                       parts[2], headers, body)


class PoolServer:
    """Serves one `PoolApi` on host:port from an event loop."""

    def __init__(self, api: PoolApi, host: str, port: int, clock: Callable[[], float]) -> None:
        self.api = api
        self.host = host
        self.port = port
        self.clock = clock
        self.faults = PoolFaults()
        self.records: list[RequestRecord] = []
        self._records_lock = threading.Lock()
        self._last_served: float | None = None  # monotonic time of the last request let through
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        sock = open_listening_socket(self.host, self.port)  # OSError names nothing: wrap it
        self.port = sock.getsockname()[1]
        if self.faults.down:
            sock.close()
            return
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_HEAD)

    async def stop(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def _sync_listener(self) -> None:
        if self.faults.down:
            self._close()
        elif self._server is None and self.loop is not None:
            sock = open_listening_socket(self.host, self.port)
            self._server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_HEAD)

    def set_faults(self, faults: PoolFaults) -> None:
        """Swap the fault switches; `down` takes effect before this returns."""
        old, self.faults = self.faults, faults
        if old.down == faults.down or self.loop is None or self.loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            if faults.down:
                self._close()
            else:
                self.loop.create_task(self._sync_listener())
        else:
            asyncio.run_coroutine_threadsafe(self._sync_listener(), self.loop).result(timeout=30)

    # -- requests -----------------------------------------------------------------------------------

    def requests(self) -> list[RequestRecord]:
        with self._records_lock:
            return list(self.records)

    def clear_requests(self) -> None:
        with self._records_lock:
            self.records.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_S)
                except asyncio.LimitOverrunError:
                    await self._write(writer, self.api.error(431, "request head too large"), keep_alive=False)
                    return
                length_text = _header(head, b"content-length") or "0"
                if not length_text.isdigit() or int(length_text) > MAX_BODY:
                    await self._write(writer, self.api.error(413 if length_text.isdigit() else 400,
                                                             "bad or too large Content-Length"), keep_alive=False)
                    return
                body = await asyncio.wait_for(reader.readexactly(int(length_text)), IDLE_S) if length_text != "0" else b""
                try:
                    request = parse_request(head[:-4], body)
                except _BadRequest as exc:
                    await self._write(writer, self.api.error(exc.status, str(exc)), keep_alive=False)
                    return
                response = await self._respond(request)
                await self._write(writer, response, keep_alive=request.keep_alive, head_only=request.method == "HEAD")
                if not request.keep_alive:
                    return
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, request: HttpRequest) -> HttpResponse:
        faults = self.faults
        mono = time.monotonic()
        if faults.slow_s > 0:
            await asyncio.sleep(faults.slow_s)
        auth = self.api.auth_state(request)
        retry_after: int | None = None
        if faults.server_error:
            response = self.api.error(503, "service unavailable")
        elif faults.rate_limited_s is not None:
            retry_after = faults.rate_limited_s
            response = self.api.error(429, "too many requests")
        elif (faults.min_interval_s is not None and self._last_served is not None
              and mono - self._last_served < faults.min_interval_s):
            retry_after = max(1, math.ceil(faults.min_interval_s - (mono - self._last_served)))
            response = self.api.error(429, "too many requests")
        else:
            self._last_served = mono
            try:
                response = self.api.handle(request)
            except Exception:  # a simulator bug costs one answer, not the pool
                log.exception("simulated %s pool failed to answer %s %s", self.api.kind, request.method, request.path)
                response = self.api.error(500, "internal error")
            if response.is_json and faults.drifts:
                obj = json.loads(response.body)
                response.body = json.dumps(drift(obj, dict(faults.renamed), faults.removed),
                                           separators=(",", ":")).encode()
        if retry_after is not None:
            response.headers.append(("Retry-After", str(retry_after)))
        with self._records_lock:
            self.records.append(RequestRecord(self.clock(), mono, request.method, request.path,
                                              response.status, auth, retry_after))
        return response

    async def _write(self, writer: asyncio.StreamWriter, response: HttpResponse, *, keep_alive: bool,
                     head_only: bool = False) -> None:
        head = [f"HTTP/1.1 {response.status} {STATUS_TEXT.get(response.status, 'Unknown')}",
                f"Date: {formatdate(usegmt=True)}",
                f"Content-Type: {response.content_type}",
                f"Content-Length: {len(response.body)}",
                f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        head += [f"{k}: {v}" for k, v in response.headers]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1")
        writer.write(data if head_only else data + response.body)
        await writer.drain()


def _header(head: bytes, name: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("iso-8859-1")
    return None
