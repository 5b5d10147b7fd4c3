"""A proxy in front of simulated miners that rewrites their RPC replies: hostile firmware on real TCP.

Each proxy address stands for one upstream miner: its RPC port (4028) is answered by forwarding the
request upstream, reading the reply to the close, and handing it to that address's `tamper` function
(if any) before it goes back; its other ports (web UI 80, gRPC 50051) are piped through unchanged. So
pyasic's detection and a native reader's identification see a real simulated unit, and the polls see
whatever the test makes of its replies.

`piped_ports=()` leaves the other ports free (for a scripted web UI on the same address).
`routes[address] = other_upstream` sends that address's next connections (every port) to another unit:
a unit swapped at the same address.
`tamper[address] = fn`: fn(command, reply bytes) -> bytes, the reply to send instead (return the
bytes unchanged for commands it leaves alone). `web_tamper[address] = fn`: fn(path, body bytes) -> bytes,
the same for the web UI on port 80 (a Bitaxe's AxeOS API): while one is set, each HTTP request is
forwarded alone (`Connection: close` both ways) and the answer's body rewritten, its Content-Length
with it. One event loop in a background thread serves it all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from tests.support import ServedInThread

RPC_PORT = 4028
WEB_PORT = 80
PIPED_PORTS = (WEB_PORT, 50051)

Tamper = Callable[[str, bytes], bytes]


class TamperingProxy(ServedInThread):
    """`with TamperingProxy({"127.53.1.1": "127.53.0.1", ...}) as proxy:` every address is listening."""

    thread_name = "tampering-proxy"

    def __init__(self, routes: dict[str, str], piped_ports: tuple[int, ...] = PIPED_PORTS):
        self.routes = dict(routes)
        self.piped_ports = piped_ports
        self.tamper: dict[str, Tamper] = {}
        self.web_tamper: dict[str, Tamper] = {}
        self._servers: list[asyncio.base_events.Server] = []
        super().__init__()

    async def _bind_all(self) -> None:
        for address in self.routes:
            self._servers.append(await asyncio.start_server(
                lambda r, w, a=address: self._rpc(r, w, a, self.routes[a]), address, RPC_PORT, reuse_address=True))
            for port in self.piped_ports:
                self._servers.append(await asyncio.start_server(
                    lambda r, w, a=address, p=port: self._web(r, w, a, self.routes[a]) if p == WEB_PORT and
                    a in self.web_tamper else self._pipe(r, w, self.routes[a], p), address, port, reuse_address=True))

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

    async def _web(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str,
                   upstream: str) -> None:
        """One HTTP request forwarded with `Connection: close`, its answer's body through web_tamper."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")),
                          0)
            body = await reader.readexactly(length)
            kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
            up_reader, up_writer = await asyncio.open_connection(upstream, WEB_PORT)
            up_writer.write("\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body)
            await up_writer.drain()
            answer = await up_reader.read()  # to the close
            up_writer.close()
            answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
            tamper = self.web_tamper.get(address)
            if tamper is not None:
                answer_body = tamper(lines[0].split(" ")[1], answer_body)
            answer_lines = [line for line in answer_head.split(b"\r\n")
                            if not line.lower().startswith((b"content-length:", b"connection:"))]
            writer.write(b"\r\n".join([*answer_lines, b"Content-Length: %d" % len(answer_body), b"Connection: close",
                                        b"", answer_body]))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
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


def rewrite_json(path: str, edit: Callable[[dict], object]) -> Tamper:
    """A web_tamper function: the JSON body answering `path` decoded, changed in place by `edit`, encoded again;
    other answers untouched."""
    def tamper(sent: str, body: bytes) -> bytes:
        if sent.split("?")[0].rstrip("/") != path:
            return body
        data = json.loads(body)
        edit(data)
        return json.dumps(data).encode()

    return tamper


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
