"""CGMiner RPC servers on port 4028 that look like a miner to hashfleet and pyasic and then answer
without end, for the tests of collector/sources/pyasic_rpc.py.

Each address is honest at first, one of two ways, then misbehaves one of three ways:

- when: ``after_probe``: the first connection (hashfleet's own `version` probe) gets a real `version`
  reply; every later one (pyasic's detection) gets the misbehaviour. ``on_read``: `version` and
  `devdetails` asked alone get the real reply (pyasic's detection finds a LuxOS Antminer S19j Pro),
  any other request (pyasic's reads: `summary+stats+...`) gets the misbehaviour;
- how: ``endless``: bytes as fast as the client takes them, never closing; ``huge``: one 64 MiB reply
  with no terminator, then the connection held open; ``drip``: a byte every ``drip_every_s``, forever.

A mode is ``"{when}_{how}"``, e.g. ``after_probe_endless``. The reply is LuxOS's `version` as pyasic's
tests hold it (pyasic detects LuxOS by "LUXminer"; no native reader of hashfleet's covers it).
Every request is recorded as it arrives (``requests(address)``: the commands, in order).
"""

from __future__ import annotations

import asyncio
import json

from tests.support import ServedInThread

PORT = 4028
WHENS = ("after_probe", "on_read")
HOWS = ("endless", "huge", "drip")
HUGE_BYTES = 64 << 20

VERSION = json.dumps({
    "STATUS": [{"STATUS": "S", "When": 1700000000, "Code": 22, "Msg": "LUXminer versions",
                "Description": "LUXminer 2024.5.1.155424-f2f2f3d4"}],
    "VERSION": [{"API": "3.7", "CompileTime": "Fri May 10 15:54:24 UTC 2024", "LUXminer": "2024.5.1.155424-f2f2f3d4",
                 "Miner": "2024.5.1.155424-f2f2f3d4", "Type": "Antminer S19j Pro"}],
    "id": 1}).encode() + b"\x00"

_CHUNK = b'{"STATUS":[{"STATUS":"S","Msg":"' + b"x" * 65000  # JSON-looking, never closed


class HostileRPC(ServedInThread):
    """`with HostileRPC({"127.112.0.1": "after_probe_endless", ...}) as rpc:` every address is listening."""

    thread_name = "hostile-rpc"

    def __init__(self, modes: dict[str, str], drip_every_s: float = 0.5):
        for mode in modes.values():
            if not any(mode == f"{when}_{how}" for when in WHENS for how in HOWS):
                raise ValueError(f"unknown mode {mode!r}; use one of {WHENS} _ one of {HOWS}")
        self.modes = dict(modes)
        self.drip_every_s = drip_every_s
        self._log: dict[str, list[str]] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._serving: set[asyncio.Task] = set()
        super().__init__()

    def requests(self, address: str) -> list[str]:
        """The commands `address` was sent, in order ("?" for a request that was no JSON command)."""
        return list(self._log.get(address, ()))

    async def _bind_all(self) -> None:
        for address, mode in self.modes.items():
            self._servers.append(await asyncio.start_server(
                lambda r, w, a=address, m=mode: self._serve(a, m, r, w), address, PORT, reuse_address=True))

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _serve(self, address: str, mode: str, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._serving.add(task)
        try:
            command = _command(await reader.read(4096))  # a CGMiner request is one small JSON write
            log = self._log.setdefault(address, [])
            log.append(command)
            when, how = mode.rsplit("_", 1)
            honest = len(log) == 1 if when == "after_probe" else command in ("version", "devdetails")
            if honest:
                writer.write(VERSION)
                await writer.drain()
            elif how == "endless":
                while True:
                    writer.write(_CHUNK)
                    await writer.drain()
            elif how == "huge":
                for _ in range(HUGE_BYTES // len(_CHUNK) + 1):
                    writer.write(_CHUNK)
                    await writer.drain()
                await asyncio.Event().wait()  # held open: the reply never ends
            else:
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(self.drip_every_s)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._serving.discard(task)
            writer.transport.abort()


def _command(request: bytes) -> str:
    try:
        return str(json.loads(request.rstrip(b"\x00")).get("command", "?"))
    except (ValueError, AttributeError):
        return "?"
