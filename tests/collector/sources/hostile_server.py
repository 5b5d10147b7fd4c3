"""Loopback addresses that never identify as a miner, for the tests of issue 13, class 4.

One event loop in a background thread serves every address on one port (4028 by default, the port
pyasic's detection also probes). Each address behaves one way:

- ``trickle``: reads the request and sends one byte every ``trickle_every_s`` seconds, never finishing;
- ``silent``: accepts, reads the request and never answers;
- ``reset``: reads the request and resets the connection (RST);
- ``stranger``: answers every request at once, completely, as a CGMiner API of a make nobody knows
  (`STRANGER_REPLY`): it answers, but neither hashfleet nor pyasic can tell what it is.

Every connection is recorded as it arrives: (monotonic time, the command the client sent, or "?").
``release(address)`` closes one address's listener and its connections, so a real (simulated) miner
can take the address over.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Iterator

from tests.support import ServedInThread

BEHAVIOURS = ("trickle", "silent", "reset", "stranger")
STRANGER_REPLY = json.dumps({
    "STATUS": [{"STATUS": "S", "When": 1700000000, "Code": 22, "Msg": "versions", "Description": "strangerminer 1.0"}],
    "VERSION": [{"API": "3.1", "Miner": "strangerminer 1.0", "Type": "Stranger X1"}], "id": 1}).encode() + b"\x00"


class _Connection(asyncio.Protocol):
    def __init__(self, server: HostileServer, address: str, behaviour: str):
        self.server, self.address, self.behaviour = server, address, behaviour
        self.recorded = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.opened = time.monotonic()
        self.server._open.setdefault(self.address, set()).add(transport)
        if self.behaviour == "trickle":
            self._trickle()

    def _trickle(self) -> None:
        self.transport.write(b"{")  # type: ignore[attr-defined]
        self.timer = asyncio.get_running_loop().call_later(self.server.trickle_every_s, self._trickle)

    def data_received(self, data: bytes) -> None:
        if self.recorded:
            return
        self.recorded = True
        try:
            request = json.loads(data)
            command = str(request.get("command") or request.get("cmd") or "?")
        except (ValueError, AttributeError):
            command = "?"
        self.server._log.setdefault(self.address, []).append((self.opened, command))
        if self.behaviour == "reset":
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            self.transport.abort()
        elif self.behaviour == "stranger":
            self.transport.write(STRANGER_REPLY)  # type: ignore[attr-defined]
            self.transport.close()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.server._open.get(self.address, set()).discard(self.transport)


class HostileServer(ServedInThread):
    """`with HostileServer({"127.61.0.1": "trickle", ...}) as hostile:` every address is listening."""

    thread_name = "hostile-server"

    def __init__(self, behaviours: dict[str, str], port: int = 4028, trickle_every_s: float = 4.0):
        unknown = set(behaviours.values()) - set(BEHAVIOURS)
        if unknown:
            raise ValueError(f"unknown behaviours {sorted(unknown)}; use {BEHAVIOURS}")
        self.behaviours = dict(behaviours)
        self.port = port
        self.trickle_every_s = trickle_every_s
        self._log: dict[str, list[tuple[float, str]]] = {}
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._servers: dict[str, asyncio.base_events.Server] = {}
        super().__init__()

    async def _bind_all(self) -> None:
        loop = asyncio.get_running_loop()
        for address, behaviour in self.behaviours.items():
            self._servers[address] = await loop.create_server(
                lambda a=address, b=behaviour: _Connection(self, a, b), address, self.port, reuse_address=True)

    async def _close(self) -> None:
        await self._stop_serving(list(self._servers))

    async def _stop_serving(self, addresses: list[str]) -> None:
        servers = [self._servers.pop(a) for a in addresses if a in self._servers]
        for server in servers:
            server.close()
        for address in addresses:
            for transport in list(self._open.get(address, ())):
                transport.abort()
        for server in servers:
            await server.wait_closed()

    def release(self, address: str) -> None:
        """Stop serving `address` (listener and open connections); returns once nothing listens there."""
        self._call(self._stop_serving([address]))

    def requests(self, address: str, command: str | None = None) -> list[float]:
        """When connections to `address` arrived (monotonic), optionally only those that sent `command`."""
        return [t for t, c in list(self._log.get(address, ())) if command is None or c == command]

    def addresses(self, behaviour: str) -> Iterator[str]:
        return (a for a, b in self.behaviours.items() if b == behaviour)
