"""Simulated pools beside a simulated fleet: each pool's API on its own loopback port, fed in-process
by the miners' simulated hashrate.

    with run_fleet("a1246:2", base="127.20.0.1", clock=clock) as fleet, \\
         run_pools(fleet, "braiins,ocean", base="127.30.0.1:0") as pools:
        pools["braiins"].url, pools["braiins"].token, pools["braiins"].engine
        pools["braiins"].set_faults(rate_limited_s=30)
        pools["braiins"].requests()        # every request: time, path, status, auth outcome

Which miner mines where: miner i goes to pool i mod n (each miner hashes on one pool, as on a site),
unless `split=False` puts every miner on every pool. A worker is named as its miner reports its pool
user (`hashfleet.<last 6 hex digits of the MAC>`); the pool account is the part before the dot.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from simulators.clock import Clock, wall_clock
from simulators.pools.braiins import BraiinsApi
from simulators.pools.engine import MinerFeed, NetworkParams, PoolEngine, WorkerConfig
from simulators.pools.f2pool import F2PoolApi
from simulators.pools.faults import PoolFaults
from simulators.pools.ocean import OceanApi
from simulators.pools.solo import CkpoolApi, PublicPoolApi
from simulators.pools.web import PoolServer, RequestRecord

APIS: dict[str, Any] = {"braiins": BraiinsApi, "ocean": OceanApi, "f2pool": F2PoolApi,
                        "publicpool": PublicPoolApi, "ckpool": CkpoolApi}
ALIASES = {"public-pool": "publicpool", "public_pool": "publicpool", "f2": "f2pool", "solo": "ckpool"}
TOKENED = {"braiins", "f2pool"}  # the others' APIs are public, keyed by the payout address
DEFAULT_FEE = {"braiins": 0.02, "ocean": 0.02, "f2pool": 0.02, "publicpool": 0.0, "ckpool": 0.0}
TICK_S = 30.0  # integrate the miners this often (wall seconds) even when nobody asks


class PoolSpecError(ValueError):
    """A --pools or --pool-base value that cannot be used; the message says what to write."""


def parse_pools(text: str) -> list[str]:
    kinds = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        name = ALIASES.get(name, name)
        if name not in APIS:
            raise PoolSpecError(f"unknown pool {raw.strip()!r}; known: {', '.join(APIS)}")
        if name in kinds:
            raise PoolSpecError(f"pool {name!r} given twice in {text!r}")
        kinds.append(name)
    if not kinds:
        raise PoolSpecError(f"no pools in {text!r}: write e.g. braiins,ocean (known: {', '.join(APIS)})")
    return kinds


def pool_addresses(base: str, n: int) -> list[tuple[str, int]]:
    host, sep, port_text = base.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise PoolSpecError(f"bad pool base {base!r}: write HOST:PORT, e.g. 127.30.0.1:8000 (port 0: free ports)")
    port = int(port_text)
    if port and port + n - 1 > 65535:
        raise PoolSpecError(f"{n} pools from {base} run past port 65535; start lower")
    return [(host, port + i if port else 0) for i in range(n)]


def pool_user(miner: Any) -> str:
    """The pool user a simulated miner reports in its `pools` reply (simulators/cgminer.py, antminer.py,
    bitaxe.py build it the same way; tests/simulators/test_pools.py reads it over TCP to pin this)."""
    return f"hashfleet.{miner.mac[-6:]}"


class PoolSim:
    """One simulated pool: its engine (shares, credits), its API and its HTTP server."""

    def __init__(self, kind: str, engine: PoolEngine, token: str | None, host: str, port: int, clock: Clock) -> None:
        self.kind = kind
        self.engine = engine
        self.token = token
        self.api = APIS[kind](engine, token or "")
        self.server = PoolServer(self.api, host, port, clock)

    @property
    def url(self) -> str:
        """The API's base URL (paths below it as the real pool's)."""
        return f"http://{self.server.address}{self.api.base_path}"

    @property
    def account(self) -> str:
        return self.engine.account

    @property
    def faults(self) -> PoolFaults:
        return self.server.faults

    def set_faults(self, **changes: Any) -> PoolFaults:
        """Change some fault switches, keep the others: `pool.set_faults(rate_limited_s=30)`."""
        faults = self.server.faults.with_changes(**changes)
        self.engine.day_not_closed = faults.day_not_closed
        self.server.set_faults(faults)
        return faults

    def clear_faults(self) -> None:
        self.engine.day_not_closed = False
        self.server.set_faults(PoolFaults())

    def requests(self) -> list[RequestRecord]:
        return self.server.requests()

    def describe(self) -> str:
        """The line `hashfleet simulate` prints: kind, URL, account, token (simulated: safe to show)."""
        token = f" token={self.token}" if self.token else ""
        return f"pool {self.kind} {self.url} account={self.account}{token}"


class Pools:
    """Several simulated pools over one fleet, served from one event loop."""

    def __init__(self, pools: Sequence[PoolSim]) -> None:
        self.pools = list(pools)
        self._ticker: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls,
        miners: Sequence[Any],
        kinds: str | Sequence[str],
        *,
        base: str = "127.30.0.1:8000",
        clock: Clock = wall_clock,
        network: NetworkParams | None = None,
        seed: int = 0,
        fees: dict[str, float] | None = None,
        tokens: dict[str, str] | None = None,
        split: bool = True,
        configs: dict[str, WorkerConfig] | None = None,
    ) -> Pools:
        names = parse_pools(kinds) if isinstance(kinds, str) else [parse_pools(k)[0] for k in kinds]
        addresses = pool_addresses(base, len(names))
        accounts = {pool_user(m).partition(".")[0] for m in miners} or {"hashfleet"}
        if len(accounts) != 1:
            raise PoolSpecError(f"the miners report several pool accounts {sorted(accounts)}; one pool account each")
        account = accounts.pop()
        sims = []
        for i, (kind, (host, port)) in enumerate(zip(names, addresses, strict=True)):
            engine = PoolEngine(scheme=APIS[kind].scheme, account=account, clock=clock, network=network,
                                fee=(fees or {}).get(kind, DEFAULT_FEE[kind]), seed=seed + i)
            token = (tokens or {}).get(kind) or (secrets.token_hex(16) if kind in TOKENED else None)
            sim = PoolSim(kind, engine, token, host, port, clock)
            for j, miner in enumerate(miners):
                if not split or j % len(names) == i:
                    user = pool_user(miner)
                    config = (configs or {}).get(user)
                    engine.add_worker(user, MinerFeed(miner), WorkerConfig(**{
                        f: getattr(config, f) for f in WorkerConfig.__slots__}) if config else None)  # type: ignore[attr-defined]
            sims.append(sim)
        return cls(sims)

    def __getitem__(self, kind: str) -> PoolSim:
        kind = ALIASES.get(kind, kind)
        for pool in self.pools:
            if pool.kind == kind:
                return pool
        raise KeyError(f"no simulated {kind} pool here; running: {[p.kind for p in self.pools]}")

    def __iter__(self) -> Iterator[PoolSim]:
        return iter(self.pools)

    def pool_of(self, user: str) -> PoolSim:
        """The pool a worker (a miner's pool user) hashes on."""
        for pool in self.pools:
            if user in pool.engine.workers:
                return pool
        raise KeyError(f"no simulated pool has worker {user!r}")

    async def start(self, tick_s: float | None = TICK_S) -> None:
        try:
            for pool in self.pools:
                await pool.server.start()
        except BaseException:
            await self.stop()
            raise
        if tick_s:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(tick_s))

    async def _tick(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for pool in self.pools:
                await asyncio.to_thread(pool.engine.advance)  # reading many miners' truth takes a while

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for pool in self.pools:
            await pool.server.stop()


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hashfleet-pools", daemon=True)

    def call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()


@contextmanager
def run_pools(fleet: Any, kinds: str | Sequence[str], *, base: str = "127.30.0.1:0",
              tick_s: float | None = None, **options: Any) -> Iterator[Pools]:
    """Serve pools for a running fleet from a background thread; every API listens when this yields.

    The pools read the fleet's clock; with a ManualClock nothing moves until the test advances it
    (and no ticker runs unless `tick_s` is given)."""
    pools = Pools.build(fleet.miners, kinds, base=base, clock=fleet.clock, **options)
    runner = _LoopThread()
    runner.thread.start()
    try:
        runner.call(pools.start(tick_s), 60.0)
    except BaseException:
        runner.close()
        raise
    try:
        yield pools
    finally:
        try:
            runner.call(pools.stop(), 30.0)
        finally:
            runner.close()
