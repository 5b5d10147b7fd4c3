"""A site with simulated pools, run through the real collector pipeline on a hand-driven clock.

The miners (simulators over real TCP) and the pools (simulators over real HTTP) read a ManualClock; the
collector's pipeline, built by `collector.pipeline.build` from a config, runs one cycle per clock step
with that clock's time, so a whole UTC day passes in a few seconds. Before each cycle every pool source
reads its pool once, at the cycle's time (what its background schedule does every `refresh_s`), so what
the pools said and what the miners reported line up with the clock.

The scenario (`SCENARIO`) is what the reconciliation tests and the dashboard tests share: four miners;
three pools simulated (miner i on pool i mod 3), two configured in the collector (Braiins, F2Pool), so the
OCEAN miner is a miner no configured pool lists; a Braiins worker no miner reports (`GHOST`); luck 1.07 on
every worker; the Avalon Q over-reports 10 %; F2Pool rejects 2 % and finds 0.5 % stale; miner 0 is
soft-off 03:00-05:00 and miner 1 shut down (overheat) 08:00-09:00 each day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from collector import pipeline, service
from collector.cycle import Cycle
from collector.sources.pools import PoolSource
from models import CollectorConfig, InfluxConfig
from simulators import ManualClock, run_fleet
from simulators.pools import DAY_S, NetworkParams, pool_user, run_pools

NET = NetworkParams(difficulty=1.2e14, subsidy_btc=3.125, fees_per_block_btc=0.05)
PER_THS_S = NET.reward_btc / (NET.difficulty * 2**32) * 1e12  # expected BTC of one TH·s
STEP_S = 300.0
FLEET = "a1246:3,q:1"
SIMULATED = "braiins,f2pool,ocean"  # miner i hashes on pool i mod 3
CONFIGURED = ("braiins", "f2pool")
LUCK = 1.07
OVER_REPORT = 0.10
F2POOL_REJECT, F2POOL_STALE = 0.02, 0.005
GHOST = "hashfleet.ghost1"
SOFT_OFF = (0, 3 * 3600, 5 * 3600)  # miner, from, to (seconds after 00:00 UTC)
SHUTDOWN = (1, 8 * 3600, 9 * 3600)
OVER_REPORTER = 3


class ConstantFeed:
    """A pool worker no miner reports: hashes at a constant rate on the pool's clock."""

    def __init__(self, clock: ManualClock, ths: float) -> None:
        self.clock, self.ths, self.t0 = clock, ths, clock()

    def total_th_s(self) -> float:
        return (self.clock() - self.t0) * self.ths

    reject_ratio = 0.002
    stale_ratio = 0.0005
    share_diff = 65536.0


def midnight(day: date) -> float:
    return datetime.combine(day, time(), tzinfo=UTC).timestamp()


@dataclass
class PooledSite:
    fleet: Any
    pools: Any
    clock: ManualClock
    workdir: Path
    site: str
    influx: InfluxConfig | None = None
    cycles: list[Cycle] = field(default_factory=list)  # those whose report reconciled a day

    @property
    def users(self) -> list[str]:
        return [pool_user(m) for m in self.fleet.miners]

    def config(self, **overrides: Any) -> CollectorConfig:
        pools = []
        for kind in CONFIGURED:
            sim = self.pools[kind]
            entry: dict[str, Any] = {"kind": kind, "url": sim.url, "account": sim.account, "min_interval_s": 0,
                                     "days_refresh_s": 3600, "backoff_s": 1, "backoff_max_s": 5}
            if sim.token:
                path = self.workdir / f"{kind}.token"
                path.write_text(sim.token)
                entry["token_file"] = str(path)
            pools.append(entry)
        raw: dict[str, Any] = {
            "site": self.site, "miners": self.fleet.addresses, "interval_s": 10, "timeout_s": 3,
            "spool": {"directory": str(self.workdir / "spool")},
            # cheap enough that a coin costs less than it sells for (the dashboards' cost alert stays quiet)
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.02}, "pool_fee_pct": 2, "pue": 1.1,
                          "opex_usd_month": 30},
            "network": {"source": "static", "static": {"difficulty": NET.difficulty, "subsidy_btc": NET.subsidy_btc,
                                                       "fees_btc_per_block": NET.fees_per_block_btc,
                                                       "btc_price_usd": 100_000}},
            "pools": pools,
        }
        if self.influx is not None:
            raw["influx"] = self.influx.model_dump()
        raw.update(overrides)
        return CollectorConfig.model_validate(raw)

    def build(self, config: CollectorConfig | None = None) -> pipeline.Pipeline:
        config = config or self.config()
        sinks = [pipeline.storage_sink(config)] if config.influx is not None else []
        return pipeline.build(config, sinks=sinks, service_mode=True)

    async def run(self, built: pipeline.Pipeline, until: float, *, step_s: float = STEP_S,
                  events: Callable[[float], None] | None = None) -> Cycle | None:
        """Cycles every `step_s` of the clock up to `until`. `events(t)` switches faults at the start of each
        step, so the state a cycle sees held over the interval it stands for (as the collector assumes)."""
        sources = [s for s in built.sources if isinstance(s, PoolSource)]
        cycle = None
        while self.clock() + step_s <= until + 1e-6:
            if events is not None:
                events(self.clock())
            self.clock.advance(step_s)
            ts = datetime.fromtimestamp(self.clock(), UTC)
            for source in sources:
                await source.refresh(ts)
            cycle = Cycle(self.site, ts)
            await service.run_cycle(cycle, built.sources, built.stages, built.sinks)
            if cycle.pool_report is not None and (cycle.pool_report.days or cycle.pool_report.sites):
                self.cycles.append(cycle)
        return cycle

    def scenario(self, t: float) -> None:
        """The scheduled faults of SCENARIO, switched as the clock passes them (each day)."""
        second = t % DAY_S
        miner, start, end = SOFT_OFF
        self.fleet.miners[miner].set_soft_off(start <= second < end)
        miner, start, end = SHUTDOWN
        self.fleet.miners[miner].set_faults(overheat="shutdown" if start <= second < end else None)

    def truth(self, user: str, day: date):
        """The simulated pool's own day totals of a worker (TH·s, BTC): what the collector cannot see."""
        pool = self.pools.pool_of(user)
        return pool.engine.day_totals(user, int(midnight(day) // DAY_S))


@contextmanager
def pooled_site(workdir: Path, *, start: float, site: str = "pooled", miners_base: str = "127.91.0.1",
                pools_base: str = "127.92.0.1:0", influx: InfluxConfig | None = None,
                simulated: str = SIMULATED) -> Iterator[PooledSite]:
    """SCENARIO's fleet and pools, the clock at `start` (the miners already hashing); `simulated`: the pools
    served (miner i on the i mod n-th)."""
    clock = ManualClock(start - 1800)  # the miners boot half an hour before, past their ramp
    with run_fleet(FLEET, base=miners_base, clock=clock, seed=11) as fleet:
        clock.advance(1800)
        with run_pools(fleet, simulated, base=pools_base, network=NET, seed=5) as pools:
            users = [pool_user(m) for m in fleet.miners]
            for user in users:
                pools.pool_of(user).engine.configure(user, luck=LUCK)
            pools.pool_of(users[OVER_REPORTER]).engine.configure(users[OVER_REPORTER], over_report=OVER_REPORT)
            f2pool_user = users[1]
            pools["f2pool"].engine.configure(f2pool_user, reject_rate=F2POOL_REJECT, stale_rate=F2POOL_STALE)
            pools["braiins"].engine.add_worker(GHOST, ConstantFeed(clock, 50.0))  # type: ignore[arg-type]
            pools["braiins"].engine.configure(GHOST, luck=LUCK)
            yield PooledSite(fleet, pools, clock, workdir, site, influx)


def last_full_day(now: datetime | None = None, *, ended_hours_ago: float = 2) -> date:
    """A UTC day that ended at least `ended_hours_ago` ago (closed by the simulated pools, settled one hour
    after: two hours by default)."""
    now = now or datetime.now(UTC)
    return (now - timedelta(hours=ended_hours_ago)).date() - timedelta(days=1)


def close_to(value: float, want: float, scale: float, share: float = 0.005) -> bool:
    """|value - want| within `share` of `scale` (e.g. 0.5 % of the worker's expected BTC)."""
    return math.isfinite(value) and abs(value - want) <= share * abs(scale)
