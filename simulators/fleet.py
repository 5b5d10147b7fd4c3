"""Fleets of simulated miners: parse `a1246:2,s21:1,bitaxe:1`, hand out addresses, serve them all.

Two ways in:
- async (the CLI, async tests): `async with Fleet.build("a1246:2", base="127.10.0.1") as fleet: ...`
- sync (plain pytest): `with run_fleet("a1246:2,q:1", base="127.20.0.1", seed=7) as fleet: ...`
  runs the event loop in a background thread and returns once every miner is listening.

Addresses: a bare host (`127.10.0.1`) gives each miner the next host at port 4028 (hosts ending
in .0 or .255 are skipped: scanners and people read them as network/broadcast addresses);
`host:port` gives consecutive ports on that host; `host:0` lets the OS pick free ports.

Servers per make (`ModelSpec.family`): an Avalon listens on its CGMiner port; an Antminer on
4028 (BMMiner RPC) and 80 (web UI) of its address; a Bitaxe on 80 only (its `port` is 80); a
Whatsminer on 4028 (btminer API v2); a Braiins OS+ unit on 4028 (bosminer RPC) and 50051 (gRPC).
Those ports are fixed by pyasic and by the real firmware, so every make but Avalon needs a bare
host base (one address each); a `host:port` base is refused for them with a message saying so.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import threading
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from simulators.antminer import SERVER_HEADER as ANTMINER_SERVER_HEADER
from simulators.antminer import Antminer
from simulators.bitaxe import Bitaxe
from simulators.braiins import Braiins, GrpcServer
from simulators.clock import Clock, wall_clock
from simulators.commands import Command, CommandLog
from simulators.http import WEB_PORT, HttpServer
from simulators.miner import SimulatedMiner
from simulators.server import BindError, MinerServer
from simulators.specs import ModelSpec, known_models, resolve_model
from simulators.whatsminer import Whatsminer

log = logging.getLogger(__name__)

CGMINER_PORT = 4028
T = TypeVar("T")

__all__ = ["BindError", "Fleet", "FleetSpecError", "allocate_addresses", "parse_fleet", "run_fleet"]


class FleetSpecError(ValueError):
    """A --fleet or --base value that cannot be used; the message says what to write instead."""


MAX_FLEET = 100_000  # bench.scale runs 20,000; one process's sockets and memory end well before 10^6


def parse_fleet(text: str) -> list[tuple[ModelSpec, int]]:
    """`a1246:2,q:1` -> [(a1246 spec, 2), (q spec, 1)]; a bare model means one miner."""
    groups: list[tuple[ModelSpec, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, count_text = item.partition(":")
        try:
            spec = resolve_model(name)
        except KeyError:
            raise FleetSpecError(
                f"unknown model {name.strip()!r} in fleet {text!r}; known models: {known_models()} "
                "(write MODEL:COUNT,..., e.g. a1246:2,q:1)"
            ) from None
        count_text = count_text.strip()
        if sep and not (count_text.isascii() and count_text.isdigit() and len(count_text) <= 9):
            raise FleetSpecError(f"bad count {count_text!r} for {name.strip()!r} in fleet {text!r}: "
                                 f"write a whole number of miners, e.g. a1246:2; known models: {known_models()}")
        count = int(count_text) if sep else 1
        if count < 1:
            raise FleetSpecError(f"count for {name.strip()!r} in fleet {text!r} must be at least 1, got {count}; "
                                 f"known models: {known_models()}")
        groups.append((spec, count))
    if not groups:
        raise FleetSpecError(f"empty fleet {text!r}: write MODEL:COUNT,..., e.g. a1246:2,q:1; "
                             f"known models: {known_models()}")
    total = sum(count for _, count in groups)
    if total > MAX_FLEET:  # (each miner is an object and a listening socket: 10^8 grew without end, silently)
        raise FleetSpecError(f"{total:,} miners in fleet {text[:80]!r}: at most {MAX_FLEET:,} in one simulator")
    return groups


def allocate_addresses(base: str, n: int) -> list[tuple[str, int]]:
    """`n` (host, port) pairs starting at `base` (see the module docstring for the forms)."""
    host_text, sep, port_text = base.strip().rpartition(":")
    if not sep:
        host_text, port_text = port_text, ""
    try:
        first = ipaddress.IPv4Address(host_text)
    except ValueError:
        raise FleetSpecError(f"bad base address {base!r}: write an IPv4 address such as 127.10.0.1, "
                             "or HOST:PORT such as 127.0.0.1:14028") from None
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise FleetSpecError(f"bad port in base {base!r}: write 0-65535")
        port = int(port_text)
        if port == 0:
            return [(str(first), 0)] * n
        if port + n - 1 > 65535:
            raise FleetSpecError(f"{n} miners from {base} run past port 65535; start lower")
        return [(str(first), port + i) for i in range(n)]
    out: list[tuple[str, int]] = []
    addr = int(first)
    while len(out) < n:
        if addr > 0xFFFFFFFF:
            raise FleetSpecError(f"{n} miners from {base} run past 255.255.255.255; start lower")
        if addr & 0xFF not in (0, 255):
            out.append((str(ipaddress.IPv4Address(addr)), CGMINER_PORT))
        addr += 1
    return out


def build_miners(
    fleet: str | Sequence[tuple[str | ModelSpec, int]],
    *,
    base: str = "127.10.0.1",
    seed: int = 0,
    clock: Clock = wall_clock,
    ambient_c: float = 25.0,
    uptime_s: float | None = None,
) -> list[SimulatedMiner]:
    """Miners (not yet listening) for a fleet spec; index i is the i-th miner across all groups."""
    if isinstance(fleet, str):
        groups = parse_fleet(fleet)
    else:
        groups = [(g if isinstance(g, ModelSpec) else resolve_model(g), int(c)) for g, c in fleet]
    specs = [spec for spec, count in groups for _ in range(count)]
    fixed = list(dict.fromkeys(spec.key for spec in specs if spec.family != "avalon"))
    if fixed and ":" in base.strip():
        raise FleetSpecError(
            f"{', '.join(fixed)} cannot share an address on other ports (base {base!r}): like the real units they "
            f"answer on fixed ports ({CGMINER_PORT} RPC, {WEB_PORT} web), which pyasic also assumes, so each needs "
            "its own address. Give a bare host base such as 127.10.0.1 (one loopback address per miner).")
    addrs = allocate_addresses(base, len(specs))
    addrs = [(host, WEB_PORT) if spec.family == "bitaxe" else (host, port)
             for spec, (host, port) in zip(specs, addrs, strict=True)]
    return [
        SimulatedMiner(spec, i, seed=seed, host=host, port=port, clock=clock, ambient_c=ambient_c,
                       uptime_s=uptime_s)
        for i, (spec, (host, port)) in enumerate(zip(specs, addrs, strict=True))
    ]


def _raise_fd_limit(listeners: int) -> None:
    # Each miner holds a listening socket; leave room for a collector's connections too.
    want = listeners + 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class Fleet:
    """Simulated miners served from one event loop."""

    def __init__(self, miners: Sequence[SimulatedMiner], clock: Clock = wall_clock,
                 command_log: CommandLog | None = None) -> None:
        self.miners: list[SimulatedMiner] = list(miners)
        self.clock = clock  # the clock the miners were built with (a ManualClock in tests)
        # One log for every miner's control commands (`--command-log FILE` gives it a file).
        self.command_log = command_log if command_log is not None else CommandLog()
        for miner in self.miners:
            miner.command_log = self.command_log
        self._by_address: dict[str, SimulatedMiner] = {}
        self._servers: dict[int, list[MinerServer | HttpServer | GrpcServer]] = {}
        self._requests: dict[int, Counter[str]] = {id(m): Counter() for m in self.miners}
        self.firmwares: dict[int, Any] = {}  # id(miner) -> its firmware object where it keeps state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @classmethod
    def build(
        cls,
        fleet: str | Sequence[tuple[str | ModelSpec, int]],
        *,
        base: str = "127.10.0.1",
        seed: int = 0,
        clock: Clock = wall_clock,
        ambient_c: float = 25.0,
        uptime_s: float | None = None,
        command_log: CommandLog | None = None,
    ) -> Fleet:
        miners = build_miners(fleet, base=base, seed=seed, clock=clock, ambient_c=ambient_c, uptime_s=uptime_s)
        return cls(miners, clock, command_log)

    def __len__(self) -> int:
        return len(self.miners)

    def __iter__(self) -> Iterator[SimulatedMiner]:
        return iter(self.miners)

    def __getitem__(self, key: int | str) -> SimulatedMiner:
        """By position, or by "host:port" address."""
        if isinstance(key, int):
            return self.miners[key]
        if key not in self._by_address:  # ports bound as 0 are known only after start()
            self._by_address = {m.address: m for m in self.miners}
        try:
            return self._by_address[key]
        except KeyError:
            raise KeyError(f"no simulated miner at {key}") from None

    @property
    def addresses(self) -> list[str]:
        return [m.address for m in self.miners]

    def requests(self, miner: SimulatedMiner) -> Counter[str]:
        """What clients asked `miner` for, counted as received (faults or not).

        RPC requests by command as sent (`version`, `pools+stats+summary+version`); HTTP
        requests by method and path (`GET /`, `GET /cgi-bin/stats.cgi`; a digest-auth exchange
        counts twice: the refused attempt and the authorised one). Live: read it any time.
        """
        return self._requests[id(miner)]

    def commands(self, miner: SimulatedMiner | None = None) -> list[Command]:
        """Control commands received so far, in order (by every miner, or by `miner`): see
        simulators.commands. Reads are not commands; `requests()` counts those."""
        return self.command_log.commands(None if miner is None else miner.address)

    def select(self, address: str) -> list[SimulatedMiner]:
        """The miners `address` names: `*` (all), `HOST` (every miner on it), `HOST:PORT` (one)."""
        address = address.strip()
        if address == "*":
            return list(self.miners)
        if ":" in address:
            found = [m for m in self.miners if m.address == address]
        else:
            found = [m for m in self.miners if m.host == address]
        if not found:
            listed = ", ".join(self.addresses[:5]) + (", ..." if len(self.miners) > 5 else "")
            raise KeyError(f"no simulated miner at {address!r}; give HOST:PORT or HOST as printed ({listed}), or *")
        return found

    def firmware(self, miner: SimulatedMiner) -> Any:
        """The firmware object serving `miner` where it keeps state of its own (Whatsminer: the
        log of privileged writes `.writes`, the power limit; Braiins: `.actions`); KeyError otherwise."""
        return self.firmwares[id(miner)]

    def _make_servers(self, miner: SimulatedMiner, loop: asyncio.AbstractEventLoop) -> list[MinerServer | HttpServer | GrpcServer]:
        counter = self._requests.setdefault(id(miner), Counter())
        family = miner.spec.family
        if family == "antminer":
            firmware = Antminer(miner)
            return [MinerServer(miner, loop, firmware.rpc, counter),
                    HttpServer(miner, loop, firmware.web, port=WEB_PORT, requests=counter,
                               server_header=ANTMINER_SERVER_HEADER)]
        if family == "bitaxe":
            return [HttpServer(miner, loop, Bitaxe(miner).web, port=miner.port, requests=counter)]
        if family == "whatsminer":
            btminer = Whatsminer(miner, counter)
            self.firmwares[id(miner)] = btminer
            return [MinerServer(miner, loop, btminer.rpc, counter, label=btminer.label)]
        if family == "braiins":
            bos = Braiins(miner, counter)
            self.firmwares[id(miner)] = bos
            return [MinerServer(miner, loop, bos.rpc, counter), GrpcServer(miner, loop, bos)]
        return [MinerServer(miner, loop, requests=counter)]

    async def start(self) -> None:
        """Bind every miner (BindError names the first address that failed), then serve."""
        loop = asyncio.get_running_loop()
        self._loop, self._loop_thread = loop, threading.get_ident()
        _raise_fd_limit(2 * len(self.miners))
        try:
            for miner in self.miners:
                servers = self._make_servers(miner, loop)
                self._servers[id(miner)] = servers
                for server in servers:
                    await server.start()
                miner.on_network_change = self._network_changed
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        servers, self._servers = [s for group in self._servers.values() for s in group], {}
        for server in servers:
            server.miner.on_network_change = None
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def sync_network(self, miner: SimulatedMiner) -> None:
        """Await until `miner`'s listener matches its `no_answer` fault (for loop-thread callers)."""
        for server in self._servers.get(id(miner), []):
            await server.sync_listener()

    def _network_changed(self, miner: SimulatedMiner) -> None:
        servers, loop = self._servers.get(id(miner)), self._loop
        if not servers or loop is None or loop.is_closed():
            return
        if threading.get_ident() != self._loop_thread:
            # A test thread: wait, so the very next connection sees the change.
            asyncio.run_coroutine_threadsafe(self.sync_network(miner), loop).result(timeout=30)
        elif miner.faults.no_answer:
            for server in servers:
                server.close_listener()  # closing is synchronous: refused from now on
        else:
            loop.create_task(self.sync_network(miner))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed, else asyncio's: its C transports take half the CPU per connection
    (measured ~55 vs ~105 us to accept, answer 6 KB and close). `hashfleet simulate` and
    `run_fleet` both serve on it, so tests exercise what the CLI runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _LoopThread:
    """An event loop running in a daemon thread, for synchronous callers."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run, name="hashfleet-simulators", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()


@contextmanager
def run_fleet(
    fleet: str | Sequence[tuple[str | ModelSpec, int]],
    *,
    base: str = "127.10.0.1",
    seed: int = 0,
    clock: Clock = wall_clock,
    ambient_c: float = 25.0,
    uptime_s: float | None = None,
    start_timeout_s: float = 120.0,
    command_log: CommandLog | None = None,
) -> Iterator[Fleet]:
    """Serve a fleet from a background thread; every miner is listening when this yields."""
    sim = Fleet.build(fleet, base=base, seed=seed, clock=clock, ambient_c=ambient_c, uptime_s=uptime_s,
                      command_log=command_log)
    runner = _LoopThread()
    runner.start()
    try:
        runner.call(sim.start(), start_timeout_s)
    except BaseException:
        runner.close()
        raise
    try:
        yield sim
    finally:
        try:
            runner.call(sim.stop(), 60.0)
        finally:
            runner.close()
