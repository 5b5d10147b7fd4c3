"""A Braiins OS+ unit is judged by its own chip limits (its cooling configuration's hot and dangerous
temperatures, read at identification: collector/sources/braiins.py), which no catalogue has for an S19j Pro.

Three simulated BOS+ S19j Pros over TCP and HTTP/2 (BOS+'s defaults: hot 100 C, dangerous 110 C), read by
the real pipeline on a hand-driven clock: too few peers for `temp_outlier`, so before, a unit throttled
past its hot temperature raised nothing and one stopped past its dangerous temperature (BOS+ reads it idle,
not paused) was "idle, firmware". Now the first shows `chip_hot` against its own 100 C and the second is
put down to heat by the chips it read when it stopped, still once they have cooled.
"""

from __future__ import annotations

import asyncio

import pytest

from collector import pipeline
from models.health import Cause, MinerHealth, Severity, Signal
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured
from tests.collector.stages.test_health_drills import _config

FLEET = "bos-s19jpro:3"
THROTTLED, STOPPED, HEALTHY = 0, 1, 2
FAULTS = {THROTTLED: {"overheat": "throttle"}, STOPPED: {"overheat": "shutdown"}}
WARMUP, HOT_CYCLES, COOL_CYCLES = 2, 3, 8
DT = 10.0  # seconds a cycle: the first reading after the stop sees its chips still hot
COOL_DT = 60.0  # then 8 minutes: its chips read far under the limit


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> tuple[dict[int, MinerHealth], dict[int, MinerHealth], list]:
    clock = ManualClock()
    with run_fleet(FLEET, base="127.118.2.1", seed=3, clock=clock) as fleet:
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path_factory.mktemp("spool")), sinks=[captured])
        ids = [format_mac(m.mac) for m in fleet]

        async def cycles(count: int, step: float) -> dict[int, MinerHealth]:
            for _ in range(count):
                clock.advance(step)
                await built.run_cycles(cycles=1)
            return {i: captured.last(miner) for i, miner in enumerate(ids)}

        async def go():
            await built.start()
            try:
                await cycles(WARMUP, DT)
                for index, faults in FAULTS.items():
                    fleet[index].set_faults(**faults)
                hot = await cycles(HOT_CYCLES, DT)
                cooled = await cycles(COOL_CYCLES, COOL_DT)
                return hot, cooled, [m.last_served for m in fleet]
            finally:
                await built.stop()

        yield asyncio.run(go())


def test_a_unit_throttled_past_its_own_hot_temperature_is_chip_hot(judged):
    hot, _, served = judged
    [problem] = [p for p in hot[THROTTLED].problems if p.signal is Signal.CHIP_HOT]
    assert served[THROTTLED].temp_chip_max_c > 100
    assert problem.limit == 100.0 and problem.cause is Cause.THERMAL and problem.severity is Severity.WARNING
    assert "over its own hot limit 100 C (it stops at 110 C)" in problem.evidence, problem.evidence


@pytest.mark.parametrize("phase", ["hot", "cooled"])
def test_a_unit_stopped_past_its_dangerous_temperature_is_put_down_to_heat(judged, phase):
    health = judged[0 if phase == "hot" else 1][STOPPED]
    [idle] = [p for p in health.problems if p.signal is Signal.IDLE]
    assert idle.cause is Cause.THERMAL and "stopped since its chips read" in idle.evidence, idle.evidence
    assert "its own hot limit 100 C" in idle.evidence
    if phase == "cooled":  # the heat is what they read when it stopped
        assert judged[2][STOPPED].temp_chip_max_c < 80


def test_the_healthy_unit_raises_nothing(judged):
    hot, cooled, _ = judged
    assert hot[HEALTHY].problems == () and cooled[HEALTHY].problems == ()
