"""A reboot loop's dollars, end to end and at every phase of the loop.

A simulated Avalon is made to reboot every LOOP seconds (the `reboot_loop` drill, docs/drills.md): its
`Elapsed` and since-boot averages restart and its live hashrate ramps from zero over the simulator's
60 s (simulators/physics.py), as the firmware's do. The real pipeline reads it over TCP every DT
seconds of a hand-driven clock, each cycle at that clock's time (as tests/pool_site.py runs a site),
and the health stage's `reboots` problem is sampled at many phases of the loop: just after a start,
mid-ramp, hashing in full. Its dollars must not depend on the phase (they swung 30-fold: the live
shortfall of a ramp was added on top of a since-boot figure, and the starts counted were capped at 8 an
hour), and must be what the loop truly costs: the TH·s each start loses against the unit's full rate
(the simulator's own count of what it hashed), times the starts an hour, at the net hashprice.
The alert "Problem losing money" is then evaluated, minute by minute, on what the collector wrote to
the real InfluxDB: a loop costing more than its threshold fires it for five minutes on end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from collector import pipeline, service
from collector.cycle import Cycle
from dashboards import alerts
from models import CollectorConfig, InfluxConfig
from simulators import physics
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured
from tests.collector.stages.test_health_drills import ECONOMICS, STATIC, _net_usd_per_th_day
from tests.dashboards.test_queries import _evaluate, _provisioned_rules

SITE = "loop"
LOOPING = 0  # fleet index of the miner that reboots; the others are its healthy peers
WARMUP = 20  # healthy cycles, WARMUP_DT apart: the stage learns each miner's usual hashrate and draw
WARMUP_DT = 60.0
DT = 7.0  # prime to every loop period here: successive loops are read at different phases


@dataclass
class Reading:
    """One cycle's view of the looping miner: the simulator's truth and the health stage's figures."""

    at: float
    uptime_s: int
    total_th_s: float  # what the simulator hashed since boot
    live_ths: float
    keys: set[str]
    lost_ths: float | None  # the reboots problem's
    usd_lost_day: float | None
    miner_usd_lost_day: float | None  # the miner's, all its problems


@dataclass
class Drill:
    loop_s: float
    readings: list[Reading] = field(default_factory=list)
    healthy: dict[str, set[str]] = field(default_factory=dict)  # the other miners' problems, every cycle
    miner: str = ""
    ids: list[str] = field(default_factory=list)

    def sampled(self) -> list[Reading]:
        """The readings once the loop is known (two starts seen), over SAMPLED_LOOPS whole loops."""
        return [r for r in self.readings if r.at >= self.readings[-1].at - SAMPLED_LOOPS * self.loop_s]

    def full_and_lost_per_start(self) -> tuple[float, float]:
        """The unit's full rate (TH/s) and the TH·s each start loses against it, from the simulator's count
        of what it hashed at two readings of one boot after its ramp."""
        ramped = [r for r in self.sampled() if r.uptime_s >= physics.INIT_S + physics.RAMP_S]
        for a, b in zip(ramped, ramped[1:]):
            if b.uptime_s > a.uptime_s:  # the same boot
                full = (b.total_th_s - a.total_th_s) / (b.uptime_s - a.uptime_s)
                return full, full * b.uptime_s - b.total_th_s
        raise AssertionError("no two readings of one boot after its ramp")

    def true_lost_ths(self) -> float:
        """What the loop takes on average: each start's loss spread over the loop."""
        return self.full_and_lost_per_start()[1] / self.loop_s


SAMPLED_LOOPS = 2


def _config(addresses: list[str], spool, influx: InfluxConfig | None = None) -> CollectorConfig:
    raw = {"site": SITE, "miners": addresses, "interval_s": DT, "timeout_s": 2, "spool": {"directory": str(spool)},
           "economics": ECONOMICS, "network": {"source": "static", "static": STATIC}}
    if influx is not None:
        raw["influx"] = influx.model_dump()
    return CollectorConfig.model_validate(raw)


def _drill(fleet_spec: str, loop_s: float, spool, *, base: str, influx: InfluxConfig | None = None,
           end: float | None = None, more_s: float = 0.0) -> Drill:
    """WARMUP healthy cycles, then the loop switched on and read every DT seconds: for two loops until
    it is known, then SAMPLED_LOOPS loops sampled (and `more_s` more). With `end`, the clock is set so
    that the last cycle is then (the alert's points in the last minutes)."""
    sampled_s = (2 + SAMPLED_LOOPS) * loop_s + 2 * DT + more_s
    start = (end - WARMUP * WARMUP_DT - sampled_s) if end is not None else 1_750_000_000.0
    clock = ManualClock(start)
    drill = Drill(loop_s)
    with run_fleet(fleet_spec, base=base, seed=11, clock=clock) as fleet:
        config = _config(fleet.addresses, spool, influx)
        captured = Captured()
        sinks = [captured] + ([pipeline.storage_sink(config)] if influx is not None else [])
        built = pipeline.build(config, sinks=sinks)
        drill.ids = [format_mac(m.mac) for m in fleet]
        drill.miner = drill.ids[LOOPING]

        async def cycle(step: float) -> None:
            clock.advance(step)
            await service.run_cycle(Cycle(SITE, datetime.fromtimestamp(clock(), UTC)), built.sources,
                                    built.stages, built.sinks)

        async def go() -> None:
            await built.start()
            try:
                for _ in range(WARMUP):
                    await cycle(WARMUP_DT)
                fleet[LOOPING].set_faults(reboot_loop=loop_s)
                while clock() < start + WARMUP * WARMUP_DT + sampled_s - 1e-6:
                    await cycle(DT)
                    served = fleet[LOOPING].last_served
                    health = captured.last(drill.miner)
                    problems = {p.key: p for p in health.problems}
                    loop = problems.get("reboots")
                    drill.readings.append(Reading(
                        clock(), served.uptime_s, served.total_th_s, served.hashrate_ths, set(problems),
                        loop.lost_ths if loop else None, loop.usd_lost_day if loop else None, health.usd_lost_day))
                    for other in drill.ids[1:]:
                        drill.healthy.setdefault(other, set()).update(p.key for p in captured.last(other).problems)
            finally:
                await built.stop()
                built.close()

        asyncio.run(go())
    return drill


LOOPS = {
    # (fleet, loop seconds): a loop faster than BOOT_SETTLE_S (each boot's cost taken at its end), one slower
    # (taken when its ramp is over), on two models
    "two_minutes_a15": ("a1566:4", 120.0),
    "seven_minutes_a1246": ("a1246:4", 420.0),
}


@pytest.fixture(scope="module", params=list(LOOPS))
def drilled(request, tmp_path_factory) -> Drill:
    fleet_spec, loop_s = LOOPS[request.param]
    return _drill(fleet_spec, loop_s, tmp_path_factory.mktemp("spool"), base="127.49.0.1:0")


def test_the_loop_is_found_at_every_phase_and_nothing_else_is(drilled: Drill):
    sampled = drilled.sampled()
    phases = sorted({r.uptime_s for r in sampled})
    # read at many phases: just after a start, mid-ramp, hashing in full
    assert phases[0] < physics.RAMP_S / 2 and any(physics.RAMP_S / 2 <= p < physics.RAMP_S for p in phases)
    assert phases[-1] > physics.RAMP_S and len(phases) >= 15
    assert any(r.live_ths < 0.5 * max(s.live_ths for s in sampled) for r in sampled)  # caught ramping
    for r in sampled:
        assert r.keys == {"reboots"}, (r.uptime_s, r.keys)  # the ramp's shortfall is no second problem
    assert all(not keys for keys in drilled.healthy.values()), drilled.healthy


def test_the_loops_dollars_do_not_depend_on_its_phase(drilled: Drill):
    sampled = drilled.sampled()
    dollars = [r.usd_lost_day for r in sampled]
    assert all(d is not None and d > 0 for d in dollars)
    low, high = min(dollars), max(dollars)
    by_phase = sorted((r.uptime_s, round(r.usd_lost_day, 3)) for r in sampled)
    assert high <= 1.2 * low, f"${low:.2f}-${high:.2f} a day over the loop: {by_phase}"
    miner = [r.miner_usd_lost_day for r in sampled]
    assert max(miner) <= 1.2 * min(miner)  # the miner's total too: nothing added while it ramps


def test_the_loops_dollars_are_what_it_truly_costs(drilled: Drill):
    full, per_start = drilled.full_and_lost_per_start()
    assert per_start == pytest.approx(full * physics.RAMP_S / 2, rel=0.01)  # the simulator's linear ramp
    truth = drilled.true_lost_ths()
    for r in drilled.sampled():
        assert r.lost_ths == pytest.approx(truth, rel=0.05), (r.uptime_s, r.lost_ths, truth)
        # priced as revenue lost (a start's ramp draws power it hashes nothing for: nothing saved)
        assert r.usd_lost_day == pytest.approx(truth * _net_usd_per_th_day(), rel=0.05)


def test_a_loop_costing_more_than_the_alerts_threshold_fires_it_for_five_minutes_on_end(influxdb, influx_bucket,
                                                                                         tmp_path):
    """The two-minute loop on an A15 (about $2.4 a day) through the collector into InfluxDB, its last cycle
    now; the rule evaluated as Grafana does every minute over the last minutes: firing at each
    evaluation (its `for` is 5 minutes), for that miner's reboots alone."""
    influx = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=influx_bucket, token=influxdb.token)
    end = time.time() - 5
    drill = _drill("a1566:4", 120.0, tmp_path / "spool", base="127.49.1.1:0", influx=influx, end=end,
                   more_s=8 * 60)
    assert drill.true_lost_ths() * _net_usd_per_th_day() > alerts.HEALTH_USD_ALERT  # the loop costs above it
    rule = _provisioned_rules()["hashfleet-health-costly"]
    for minute in range(7):  # the for: 5m, and a minute either side
        now_ms = int((end - 60 * minute) * 1000) + 1000
        fired = {(dict(labels)["miner"], dict(labels)["signal"]) for labels in
                 _evaluate(influxdb, influx_bucket, rule, now_ms)}
        assert fired == {(drill.miner, "reboots")}, f"{minute} min before the end: {fired}"
