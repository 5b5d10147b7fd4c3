"""A heat wave on non-Avalon makes (trial P M3): hot intake air is judged against the maker's rating, not
only against peers, which a site-wide heat wave leaves with no cooler peer to stand out from.

MicroBT publishes its air-cooled units' intake range (-5 to 35 C, models/hardware.py THERMAL_LIMITS); a
Whatsminer reports its intake air (`summary` `Env Temp`). Bitmain's figures were not found in a citable
source and stock Antminers and Braiins OS+ report no intake air, so those stay judged by peers only.
"""

from __future__ import annotations

import asyncio

import pytest

from collector import pipeline
from collector.stages.health import HealthStage
from models import CollectorConfig
from models.hardware import thermal_limits
from models.health import Cause
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured, Site, a15

N, WARMUP, DT = 4, 2, 240.0
STATIC = {"difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03, "btc_price_usd": 95_000}
ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1, "pool_fee_pct": 2}
HEAT_WAVE_C = 45.0  # trial P: ambient_c=45 on a whole block of miners


def _config(addresses: list[str], spool) -> CollectorConfig:
    return CollectorConfig.model_validate({
        "site": "heat", "miners": addresses, "interval_s": 2, "timeout_s": 5.0, "spool": {"directory": str(spool)},
        "economics": ECONOMICS, "network": {"source": "static", "static": STATIC}})


@pytest.fixture(scope="module")
def heat_wave(tmp_path_factory):
    """Three simulated M50S read WARMUP cycles at the site's 25 C, then N cycles with all three at 45 C."""
    clock = ManualClock()
    with run_fleet("m50s:3", base="127.48.7.1", seed=17, clock=clock) as fleet:
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path_factory.mktemp("spool")), sinks=[captured])
        assert any(isinstance(s, HealthStage) for s in built.stages)

        async def run(cycles: int):
            for _ in range(cycles):
                clock.advance(DT)
                await built.run_cycles(cycles=1)

        async def everything():
            await built.start()
            try:
                await run(WARMUP)
                before = {format_mac(m.mac): captured.last(format_mac(m.mac)) for m in fleet}
                for miner in fleet:
                    miner.set_faults(ambient_c=HEAT_WAVE_C)
                await run(N)
                return before
            finally:
                await built.stop()

        before = asyncio.run(everything())
        yield fleet, captured, before


def test_a_heat_wave_on_every_whatsminer_is_hot_intake_air_against_microbts_rating(heat_wave):
    fleet, captured, before = heat_wave
    for miner in fleet:
        mac = format_mac(miner.mac)
        assert "ambient_hot" not in {p.key for p in before[mac].problems}, before[mac].problems  # at 25 C
        problems = {p.key: p for p in captured.last(mac).problems}
        assert "ambient_hot" in problems, (mac, list(problems))
        hot = problems["ambient_hot"]
        assert hot.cause is Cause.THERMAL and hot.limit == 35.0, hot
        assert abs(hot.value - HEAT_WAVE_C) <= 2, hot  # the simulator's Env Temp, noise included
        assert "over the 35 C the model is rated for" in hot.evidence, hot.evidence


def test_whatsminer_and_antminer_limits_name_their_sources():
    for model in ("M50S VH50", "Whatsminer M60S", "M30S+_VE40", "M50S++ VK30"):
        limits = thermal_limits(model)
        assert limits is not None and limits.ambient_max_c == 35.0 and "MicroBT" in limits.source, model
        assert limits.chip_hot_c is None, model  # MicroBT publishes no chip protection temperature
    for model in ("Antminer S19j Pro", "S21", "M56S++"):  # none found; a hydro unit is rated by water
        assert thermal_limits(model) is None, model


def _m50s(**changes):
    return a15(make="MicroBT", model="M50S VH50", hashrate_ths=126.0, hashrate_avg_ths=126.0,
               expected_hashrate_ths=126.0, power_w=3276.0, power_limit_w=3500.0, **changes)


@pytest.mark.parametrize(("env", "unusable", "raised"), [
    (36.0, [], True),  # just over the rating
    (35.0, [], False),  # at it
    (None, ["temp_env_c"], False),  # the reader refused the reading (Env Temp 5000): that field only
    (None, [], False),  # no intake sensor (btminer's -273)
])
def test_intake_air_is_judged_only_on_a_reading_the_reader_kept(env, unusable, raised):
    site = Site()
    site.cycles(3, _m50s(temp_env_c=env, unusable=unusable, boards=[
        b.model_copy(update={"hashrate_avg_ths": 42.0}) for b in a15().boards]))
    problems = site.problems()
    assert ("ambient_hot" in problems) is raised, problems
    if raised:
        assert problems["ambient_hot"].limit == 35.0 and problems["ambient_hot"].value == env
