"""Web servers that look like a Bitaxe's AxeOS to pyasic and then misbehave (trial J), for the tests of
collector/sources/pyasic_http.py.

One event loop in a background thread serves every (address, port) one way:

- ``gzip_bomb``: every GET is 200, ``Content-Encoding: gzip``, a declared Content-Length: 1 GiB of zeros
  in ~1 MB;
- ``gzip_bomb_unsized``: the same bomb with no Content-Length (the end is the connection's close);
- ``big_body``: an endless "AxeOS " page, no Content-Length;
- ``big_length``: declares a 10 GB body, then sends an endless one;
- ``redirect``: a 302 to ``CATCHER`` (another address and port), which must never be asked;
- ``catcher``: the honest AxeOS at the redirect's target (what would decide the make if it were asked);
- ``honest``: the AxeOS page at ``/`` gzip-encoded whatever is asked, as ESP-Miner serves it, and
  ``/api/system/info``; any other path a 302 to ``/`` on the same origin, as ESP-Miner answers it;
- ``same_origin_redirect``: ``honest``, but ``/`` is a 302 to ``/index.html``, which is the page;
- ``honest_then_bomb``: ``honest`` until ``/api/*``, which answers ``gzip_bomb``;
- ``honest_then_unsized_bomb``: ``honest`` until ``/api/*``, which answers ``gzip_bomb_unsized``;
- ``honest_then_drip``: ``honest`` until ``/api/*``, which sends a JSON byte every ``drip_every_s``.

Every request is recorded as it arrives (``requests(address, port)``: its request lines).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import zlib

from tests.support import ServedInThread

CATCHER = ("127.111.9.9", 8080)
MODES = ("gzip_bomb", "gzip_bomb_unsized", "big_body", "big_length", "redirect", "catcher", "honest",
         "same_origin_redirect", "honest_then_bomb", "honest_then_unsized_bomb", "honest_then_drip")

PAGE = gzip.compress(b'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>AxeOS</title>'
                     b'<base href="/"></head><body><app-root></app-root></body></html>', mtime=0)
INFO = {"power": 18.5, "voltage": 5100, "current": 3600, "temp": 60.1, "vrTemp": 50, "hashRate": 1200.5,
        "bestDiff": "1.2M", "bestSessionDiff": "12k", "freeHeap": 150000, "coreVoltage": 1150,
        "coreVoltageActual": 1140, "frequency": 525, "hostname": "bitaxe", "macAddr": "AA:BB:CC:00:11:22",
        "sharesAccepted": 100, "sharesRejected": 1, "uptimeSeconds": 3600, "asicCount": 1, "smallCoreCount": 2040,
        "ASICModel": "BM1370", "stratumURL": "pool.test", "stratumPort": 3333, "stratumUser": "u.w",
        "version": "v2.6.1", "idfVersion": "v5.3", "boardVersion": "601", "autofanspeed": 1, "fanspeed": 40,
        "fanrpm": 4000}


@functools.cache
def bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed (~1 MB; made once, in ~3 s)."""
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), bytes(1 << 20)
    return b"".join([packer.compress(zeros) for _ in range(1024)] + [packer.flush()])


def _head(status: str, headers: dict[str, str]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


class HostileWeb(ServedInThread):
    """`with HostileWeb({("127.111.0.1", 80): "gzip_bomb", ...}) as web:` every (address, port) is listening."""

    thread_name = "hostile-web"

    def __init__(self, modes: dict[tuple[str, int], str], drip_every_s: float = 1.0):
        unknown = set(modes.values()) - set(MODES)
        if unknown:
            raise ValueError(f"unknown modes {sorted(unknown)}; use {MODES}")
        self.modes = dict(modes)
        self.drip_every_s = drip_every_s
        self._log: dict[tuple[str, int], list[str]] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._open: set[asyncio.StreamWriter] = set()
        super().__init__()

    def __enter__(self) -> HostileWeb:
        if any(m.endswith("bomb") or m.startswith("gzip_bomb") for m in self.modes.values()):
            bomb()
        return super().__enter__()

    def requests(self, address: str, port: int = 80) -> list[str]:
        """The request lines `address:port` received, in order."""
        return list(self._log.get((address, port), ()))

    async def _bind_all(self) -> None:
        for (address, port), mode in self.modes.items():
            self._servers.append(await asyncio.start_server(
                functools.partial(self._serve, address, port, mode), address, port, reuse_address=True))

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._open):
            writer.transport.abort()
        for server in self._servers:
            await server.wait_closed()

    async def _serve(self, address: str, port: int, mode: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:  # keep-alive: pyasic's client sends several requests on one connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                self._log.setdefault((address, port), []).append(line)
                length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
                if not await self._answer(mode, path, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()

    async def _answer(self, mode: str, path: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection ends with it."""
        api = path.startswith("/api")
        if mode in ("honest_then_bomb", "honest_then_unsized_bomb", "honest_then_drip") and api:
            mode = {"honest_then_bomb": "gzip_bomb", "honest_then_unsized_bomb": "gzip_bomb_unsized",
                    "honest_then_drip": "drip"}[mode]
        elif mode.startswith("honest") or mode == "catcher":
            mode = "honest"
        if mode == "same_origin_redirect" and path == "/":
            return await self._send(writer, "302 Found", {"Location": "/index.html", "Content-Length": "0"})
        if mode in ("honest", "same_origin_redirect"):
            if path in ("/", "/index.html"):
                return await self._send(writer, "200 OK", {"Content-Type": "text/html", "Content-Encoding": "gzip"},
                                        PAGE)
            if path == "/api/system/info":
                return await self._send(writer, "200 OK", {"Content-Type": "application/json"},
                                        json.dumps(INFO).encode())
            return await self._send(writer, "302 Temporary Redirect", {"Location": "/"}, b"Redirect")
        if mode == "redirect":
            return await self._send(writer, "302 Found", {"Location": f"http://{CATCHER[0]}:{CATCHER[1]}/steal{path}",
                                                          "Content-Length": "0"})
        if mode == "gzip_bomb":
            return await self._send(writer, "200 OK", {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                                    bomb())
        if mode == "gzip_bomb_unsized":
            await self._stream(writer, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, [bomb()])
        elif mode == "big_body":
            await self._stream(writer, {"Content-Type": "text/html"}, _endless(b"<title>AxeOS</title>"))
        elif mode == "big_length":
            await self._stream(writer, {"Content-Type": "text/html", "Content-Length": str(10 ** 10)},
                               _endless(b"<title>AxeOS</title>"))
        elif mode == "drip":
            writer.write(_head("200 OK", {"Content-Type": "application/json", "Connection": "close"}))
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(self.drip_every_s)
        return False

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: str, headers: dict[str, str], body: bytes = b"") -> bool:
        writer.write(_head(status, {"Content-Length": str(len(body)), **headers}))
        for at in range(0, len(body), 65536):
            writer.write(body[at:at + 65536])
            await writer.drain()
        await writer.drain()
        return True

    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, headers: dict[str, str], parts) -> None:
        """A body whose end is the connection's close (HTTP/1.1 without Content-Length or chunks)."""
        writer.write(_head("200 OK", {**headers, "Connection": "close"}))
        for part in parts:
            for at in range(0, len(part), 65536):
                writer.write(part[at:at + 65536])
                await writer.drain()


def _endless(first: bytes):
    yield first
    chunk = b"AxeOS " * 10000
    while True:
        yield chunk
