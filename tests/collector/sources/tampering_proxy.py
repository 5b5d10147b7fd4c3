"""A proxy in front of simulated miners that rewrites their RPC replies: hostile firmware on real TCP.

Each proxy address stands for one upstream miner: its RPC port (4028) is answered by forwarding the
request upstream, reading the reply to the close, and handing it to that address's `tamper` function
(if any) before it goes back; its other ports (web UI 80, gRPC 50051) are piped through unchanged. So
pyasic's detection and a native reader's identification see a real simulated unit, and the polls see
whatever the test makes of its replies.

`piped_ports=()` leaves the other ports free (for a scripted web UI on the same address).
`tamper[address] = fn`: fn(command, reply bytes) -> bytes, the reply to send instead (return the
bytes unchanged for commands it leaves alone). One event loop in a background thread serves it all.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

RPC_PORT = 4028
PIPED_PORTS = (80, 50051)

Tamper = Callable[[str, bytes], bytes]


class TamperingProxy:
    """`with TamperingProxy({"127.53.1.1": "127.53.0.1", ...}) as proxy:` every address is listening."""

    def __init__(self, routes: dict[str, str], piped_ports: tuple[int, ...] = PIPED_PORTS):
        self.routes = dict(routes)
        self.piped_ports = piped_ports
        self.tamper: dict[str, Tamper] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tampering-proxy", daemon=True)

    def __enter__(self) -> TamperingProxy:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._bind_all(), self._loop).result(60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._loop.close()

    async def _bind_all(self) -> None:
        for address, upstream in self.routes.items():
            self._servers.append(await asyncio.start_server(
                lambda r, w, a=address, u=upstream: self._rpc(r, w, a, u), address, RPC_PORT, reuse_address=True))
            for port in self.piped_ports:
                self._servers.append(await asyncio.start_server(
                    lambda r, w, u=upstream, p=port: self._pipe(r, w, u, p), address, port, reuse_address=True))

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()

    async def _rpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str,
                   upstream: str) -> None:
        try:
            request = await _one_request(reader)
            up_reader, up_writer = await asyncio.open_connection(upstream, RPC_PORT)
            up_writer.write(request)
            await up_writer.drain()
            reply = await up_reader.read()  # to the close
            up_writer.close()
            tamper = self.tamper.get(address)
            if tamper is not None:
                reply = tamper(_command(request), reply)
            writer.write(reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: str,
                    port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream, port)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                try:
                    dst.write_eof() if dst.can_write_eof() else dst.close()
                except (OSError, RuntimeError):
                    dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        writer.close()
        up_writer.close()


async def _one_request(reader: asyncio.StreamReader) -> bytes:
    """The client's request: a JSON object (clients send it and wait for the answer)."""
    data = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return data
        data += chunk
        try:
            json.loads(data.rstrip(b"\x00"))
            return data
        except ValueError:
            continue


def _command(request: bytes) -> str:
    try:
        parsed = json.loads(request.rstrip(b"\x00"))
        return str(parsed.get("command") or parsed.get("cmd") or "")
    except (ValueError, AttributeError):
        return ""


def rewrite(command: str, edit: Callable[[dict], object]) -> Tamper:
    """A tamper function: the reply to `command` decoded, changed in place by `edit` (or replaced by
    what it returns: a dict, or bytes sent as they are), encoded again; other replies untouched."""
    def tamper(sent: str, reply: bytes) -> bytes:
        if sent != command:
            return reply
        data = json.loads(reply.rstrip(b"\x00"))
        result = edit(data)
        if isinstance(result, bytes):
            return result
        return json.dumps(result if result is not None else data).encode() + b"\x00"

    return tamper
