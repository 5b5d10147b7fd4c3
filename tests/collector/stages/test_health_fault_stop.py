"""A miner the firmware reports in fault that hashes nothing loses its whole usual hashrate, and is priced so.

Simulated A1466s (150 TH/s) over TCP, read by the real pipeline on a hand-driven clock whose last cycle is
now, into the real InfluxDB: one stops on its overheat protection (`overheat=shutdown`: In Fault, 0 TH/s,
its chips cooling from over the trip point toward the room within minutes), one loses all three boards
(`dead_boards=0,1,2`: In Fault, 0 TH/s), one is put to sleep (`soft_off`: never a loss), and an A1246 loses
one board (about $0.3 a day: a small problem). Both stopped units must be priced at their usual hashrate's
worth less the energy they no longer draw (docs/health.md "Dollars"; a trial found both at $0.00 below a
$0.05 fan), lead the repair queue and fire the alerts; the shutdown is put down to heat by its chips'
readings (its ECMM code has no published meaning on this firmware, docs/avalon.md s5), still once they
have cooled.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from collector import pipeline, service
from collector.cycle import Cycle
from collector.stages.health import HealthStage
from dashboards import alerts
from models import CollectorConfig, InfluxConfig
from models.hardware import thermal_limits
from models.health import Cause, MinerHealth, Severity, Signal
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured
from tests.collector.stages.test_health_drills import (ECONOMICS, STATIC, _energy_usd_per_w_day,
                                                       _net_usd_per_th_day)
from tests.dashboards.test_queries import _evaluate, _provisioned_rules

SITE = "stop"
FLEET = "a1466:3,a1246:1"
OVERHEAT, BOARDS_LOST, ASLEEP, SMALL = 0, 1, 2, 3  # fleet indices
FAULTS = {OVERHEAT: {"overheat": "shutdown"}, BOARDS_LOST: {"dead_boards": {0, 1, 2}}, ASLEEP: {"soft_off": True},
          SMALL: {"dead_boards": {2}}}
WARMUP = 3  # healthy cycles: each miner's usual hashrate and draw are learned
DT = 10.0  # seconds a cycle: the first reading after the trip sees the chips still hot
HOT_CYCLES = 3
COOL_CYCLES = 24  # then 12 minutes, 30 s a cycle: the chips are back near the room's temperature
COOL_DT = 30.0


@dataclass
class Drill:
    ids: list[str]
    before_ths: list[float]  # what each hashed before its fault (the simulator's live rate)
    hot: dict[str, MinerHealth]  # the figures HOT_CYCLES after the faults
    cooled: dict[str, MinerHealth]  # ... and COOL_CYCLES later
    queue: tuple  # the site's repair queue at the last cycle
    baselines: dict[str, float | None]  # the usual draw the stage learned
    power_w: list[float]  # what each reported drawing at the last cycle
    chip_c: list[int | None]  # its hottest chip then
    end: float  # the last cycle's time
    database: str


@pytest.fixture(scope="module")
def drilled(influxdb, tmp_path_factory):
    database = f"t_fault_stop_{int(time.time())}"
    influxdb.ensure_running()
    influxdb.create_database(database)
    influx = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=database, token=influxdb.token)
    end = time.time() - 5
    clock = ManualClock(end - WARMUP * DT - HOT_CYCLES * DT - COOL_CYCLES * COOL_DT)
    with run_fleet(FLEET, base="127.49.2.1:0", seed=5, clock=clock) as fleet:
        config = CollectorConfig.model_validate({
            "site": SITE, "miners": fleet.addresses, "interval_s": DT, "timeout_s": 2,
            "spool": {"directory": str(tmp_path_factory.mktemp("spool"))}, "economics": ECONOMICS,
            "network": {"source": "static", "static": STATIC}, "influx": influx.model_dump()})
        captured = Captured()
        built = pipeline.build(config, sinks=[captured, pipeline.storage_sink(config)])
        stage = next(s for s in built.stages if isinstance(s, HealthStage))
        ids = [format_mac(m.mac) for m in fleet]

        async def cycle(step: float) -> None:
            clock.advance(step)
            await service.run_cycle(Cycle(SITE, datetime.fromtimestamp(clock(), UTC)), built.sources,
                                    built.stages, built.sinks)

        def figures() -> dict[str, MinerHealth]:
            return {miner: captured.last(miner) for miner in ids}

        async def go() -> Drill:
            await built.start()
            try:
                for _ in range(WARMUP):
                    await cycle(DT)
                before = [m.last_served.hashrate_ths for m in fleet]
                for index, faults in FAULTS.items():
                    fleet[index].set_faults(**faults)
                for _ in range(HOT_CYCLES):
                    await cycle(DT)
                hot = figures()
                for _ in range(COOL_CYCLES):
                    await cycle(COOL_DT)
                return Drill(ids, before, hot, figures(), captured.cycles[-1].health.queue,
                             {m: mem.kept.baseline_w for m, mem in stage._memory.items()},
                             [m.last_served.power_w for m in fleet], [m.last_served.temp_chip_max_c for m in fleet],
                             clock(), database)
            finally:
                await built.stop()
                built.close()

        drill = asyncio.run(go())
    yield drill
    influxdb.drop_database(database)


def _priced_at_its_usual_hashrate(drill: Drill, index: int, health: MinerHealth) -> None:
    """Every problem's dollars: its lost TH x net hashprice less its share of the watts saved; together the
    whole hashrate it made before (within the live wobble)."""
    losing = [p for p in health.problems if p.lost_ths > 0]
    lost = sum(p.lost_ths for p in losing)
    assert lost == pytest.approx(drill.before_ths[index], rel=0.05), health.problems
    saved_w = drill.baselines[drill.ids[index]] - drill.power_w[index]
    assert saved_w > 2500  # it draws only its controller's and fans' watts now
    usd = lost * _net_usd_per_th_day() - saved_w * _energy_usd_per_w_day()
    assert health.usd_lost_day == pytest.approx(usd, rel=0.05)
    assert health.usd_lost_day > alerts.HEALTH_USD_ALERT


@pytest.mark.parametrize("phase", ["hot", "cooled"])
def test_an_overheat_shutdown_is_priced_at_its_usual_hashrate_and_put_down_to_heat(drilled: Drill, phase: str):
    health = getattr(drilled, phase)[drilled.ids[OVERHEAT]]
    problems = {p.key: p for p in health.problems}
    assert set(problems) == {"hashrate_low", "fault_code"}
    stop = problems["hashrate_low"]
    assert stop.severity is Severity.CRITICAL and stop.lost_ths == pytest.approx(drilled.before_ths[OVERHEAT], rel=0.05)
    assert stop.cause is Cause.THERMAL and "in fault since its chips read" in stop.evidence, stop.evidence
    if phase == "cooled":  # its chips read cool now: the heat is what they read when it stopped
        hot_limit = thermal_limits(health.model).chip_hot_c
        assert drilled.chip_c[OVERHEAT] is not None and drilled.chip_c[OVERHEAT] < hot_limit - 20
    _priced_at_its_usual_hashrate(drilled, OVERHEAT, health)
    # Its controller code stays what it is: a code whose meaning this firmware's documents do not give.
    assert problems["fault_code"].severity is Severity.INFO and problems["fault_code"].usd_lost_day == 0


@pytest.mark.parametrize("phase", ["hot", "cooled"])
def test_every_board_lost_is_priced_at_the_units_usual_hashrate(drilled: Drill, phase: str):
    health = getattr(drilled, phase)[drilled.ids[BOARDS_LOST]]
    dead = [p for p in health.problems if p.signal is Signal.BOARD_DEAD]
    assert sorted(p.board for p in dead) == [0, 1, 2] and all(p.cause is Cause.BOARD for p in dead)
    assert all(p.lost_ths == pytest.approx(drilled.before_ths[BOARDS_LOST] / 3, rel=0.08) for p in dead)
    assert "hashrate_low" not in {p.key for p in health.problems}  # the boards name the whole shortfall
    _priced_at_its_usual_hashrate(drilled, BOARDS_LOST, health)


def test_a_miner_asleep_on_purpose_loses_nothing(drilled: Drill):
    for phase in (drilled.hot, drilled.cooled):
        health = phase[drilled.ids[ASLEEP]]
        assert health.problems == () and health.lost_ths == 0 and health.usd_lost_day == 0


def test_the_stopped_miners_lead_the_repair_queue(drilled: Drill):
    stopped = {drilled.ids[OVERHEAT], drilled.ids[BOARDS_LOST]}
    lost = [p for p in drilled.queue if p.lost_ths > 0]
    assert {p.miner for p in lost[:4]} == stopped  # the shutdown and the three boards, in dollars
    small = next(p for p in drilled.queue if p.miner == drilled.ids[SMALL])
    assert small.signal is Signal.BOARD_DEAD and 0 < small.usd_lost_day < alerts.HEALTH_USD_ALERT
    assert all(p.usd_lost_day > small.usd_lost_day for p in lost[:4])


def test_both_fire_the_alerts_from_what_the_collector_wrote(influxdb, drilled: Drill):
    """The rules as provisioned, evaluated on the real InfluxDB as Grafana does every minute, over the
    5 minutes of their `for` and a minute more: the money alert for the two stopped miners alone (not the
    $0.3 board), the critical one for them and the small dead board."""
    costly, critical = (_provisioned_rules()[uid] for uid in ("hashfleet-health-costly", "hashfleet-health-critical"))
    overheat, boards, small = (drilled.ids[i] for i in (OVERHEAT, BOARDS_LOST, SMALL))
    for minute in range(6):
        now_ms = int((drilled.end - 60 * minute) * 1000) + 1000
        fired = {(dict(labels)["miner"], dict(labels)["signal"], dict(labels).get("part", ""))
                 for labels in _evaluate(influxdb, drilled.database, costly, now_ms)}
        assert fired == {(overheat, "hashrate_low", "")} | {(boards, "board_dead", f"board{b}") for b in range(3)}, \
            f"{minute} min before the end: {fired}"
        fired = {(dict(labels)["miner"], dict(labels)["signal"])
                 for labels in _evaluate(influxdb, drilled.database, critical, now_ms)}
        assert fired == {(overheat, "hashrate_low"), (boards, "board_dead"), (small, "board_dead")}, fired
