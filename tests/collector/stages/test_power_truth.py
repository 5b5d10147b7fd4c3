"""Power truth: reported against metered watts per model, the learned correction the cost figures use
where no meter reads, and the facility meter's measured PUE in place of the configured one."""

from __future__ import annotations

import pytest

from collector.sources.live_inputs import LiveInputs, MeterReading
from collector.stages import power_truth
from collector.stages.power_truth import PowerTruth
from models import MinerSample, MinerState
from models.health import Cause
from tests.collector.stages.health_support import A15, ECONOMICS, Site, a15

MODEL = A15


def test_no_factor_until_enough_samples_then_the_median():
    truth = PowerTruth()
    for i in range(power_truth.MIN_SAMPLES - 1):
        assert truth.observe(f"m{i % 3}", MODEL, 3600.0, 3600.0 * 1.04)
    truth.finish()
    assert truth.factor(MODEL) is None and truth.corrections()[MODEL].samples == power_truth.MIN_SAMPLES - 1
    truth.observe("m9", MODEL, 3600.0, 3600.0 * 1.04)
    truth.finish()
    assert truth.factor(MODEL) == pytest.approx(1.04)


def test_the_factor_is_robust_to_a_miner_that_is_off():
    truth = PowerTruth()
    for i in range(40):
        truth.observe(f"m{i % 4}", MODEL, 3600.0, 3600.0 * 1.03)
        truth.observe("liar", MODEL, 3600.0, 3600.0 * 1.45)  # within the first range, a minority
    truth.finish()
    assert truth.factor(MODEL) == pytest.approx(1.03)
    # Once learned, a ratio far from it is that miner's problem, not the model's calibration.
    assert not truth.observe("liar", MODEL, 3600.0, 3600.0 * 1.45)


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_a_ratio_no_calibration_explains_is_never_learned(ratio):
    truth = PowerTruth()
    for i in range(100):
        assert not truth.observe(f"m{i}", MODEL, 3600.0, 3600.0 * ratio)
    truth.finish()
    assert truth.factor(MODEL) is None


def test_a_factor_outside_the_bounds_is_shown_but_not_used():
    truth = PowerTruth()
    for i in range(50):
        truth.observe(f"m{i}", MODEL, 3600.0, 3600.0 * 1.4)  # inside the first range, outside the bounds
    truth.finish()
    assert truth.corrections()[MODEL].factor == pytest.approx(1.4) and truth.factor(MODEL) is None


def test_the_cost_figures_use_the_learned_factor_where_no_meter_reads():
    live = LiveInputs()
    site = Site(live=live)
    metered, unmetered = a15("metered", power_w=3500.0), a15("unmetered", power_w=3500.0)
    for _ in range(power_truth.MIN_SAMPLES + 1):
        live.metered_w["metered"] = MeterReading(3500.0 * 1.05, site.ts + __import__("datetime").timedelta(seconds=10))
        cycle = site.cycle(metered, unmetered)
    assert site.truth.factor(MODEL) == pytest.approx(1.05)
    cycle = site.cycle(metered, unmetered)
    costs = {c.miner: c for part in site.captured.parts[-1:] for c in part.costs}
    assert costs["unmetered"].power_w == pytest.approx(3500.0 * 1.05)
    assert costs["metered"].power_w == pytest.approx(3500.0 * 1.05)  # its own meter
    assert cycle.health.power_corrections[MODEL][2] is True


def test_a_miner_whose_report_walks_away_from_its_meter_is_a_power_problem():
    live = LiveInputs()
    site = Site(live=live)
    for _ in range(3):
        live.metered_w["m1"] = MeterReading(3600.0, site.ts + __import__("datetime").timedelta(seconds=10))
        site.cycle(a15(power_w=3000.0))  # reports 17 % less than its outlet reads
    problem = site.problems()["power_mismatch"]
    assert problem.cause is Cause.POWER and problem.value == 3000 and problem.limit == 3600


def test_the_facility_meter_gives_the_measured_pue_the_cost_figures_then_use():
    live = LiveInputs(facility_keys=frozenset({"main"}))
    site = Site(live=live)
    from datetime import timedelta

    for _ in range(12):
        live.facility_w["main"] = MeterReading(3600.0 * 2 * 1.25, site.ts + timedelta(seconds=10))
        cycle = site.cycle(a15("a", power_w=3600.0), a15("b", power_w=3600.0))
    assert cycle.health.measured_pue == pytest.approx(1.25, rel=1e-3)
    site.cycle(a15("a", power_w=3600.0), a15("b", power_w=3600.0))
    cost = site.captured.cycles[-1].cost.site
    assert cost.facility_power_w == pytest.approx(2 * 3600.0 * 1.25, rel=1e-3)  # not the configured 1.1
    assert ECONOMICS.pue == 1.1


def test_no_pue_is_measured_while_a_miner_that_answers_has_no_power_reading():
    # Stock Antminers put no power on the wire: counted as 0 W, the miners' draw here would be 3600 W
    # and the meter's 9000 W a PUE of 2.5, priced into every cost and health figure.
    live = LiveInputs(facility_keys=frozenset({"main"}))
    site = Site(live=live)
    from datetime import timedelta

    for _ in range(12):
        live.facility_w["main"] = MeterReading(3600.0 * 2 * 1.25, site.ts + timedelta(seconds=10))
        cycle = site.cycle(a15("a", power_w=3600.0), a15("b", power_w=None))
    assert cycle.health.measured_pue is None
    assert cycle.cost.site.facility_power_w == pytest.approx(3600.0 * ECONOMICS.pue)  # the configured PUE


def test_a_facility_reading_below_the_miners_draw_is_no_pue():
    truth = PowerTruth()
    assert truth.observe_facility(5000.0, 7200.0) is None  # a meter on part of the site, or a wrong mapping
    assert truth.observe_facility(None, 7200.0) is None
    assert truth.observe_facility(8000.0, 7200.0) == pytest.approx(8000 / 7200)


def test_a_stale_facility_reading_is_not_used():
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    live = LiveInputs(facility_keys=frozenset({"a", "b"}), meter_max_age_s=60)
    live.facility_w["a"] = MeterReading(1000.0, now)
    assert live.facility_power(now) is None  # b never read
    live.facility_w["b"] = MeterReading(500.0, now - timedelta(seconds=61))
    assert live.facility_power(now) is None
    live.facility_w["b"] = MeterReading(500.0, now)
    assert live.facility_power(now) == 1500.0


def test_models_are_bounded():
    truth = PowerTruth()
    for i in range(power_truth.MAX_MODELS + 10):
        truth.observe("m", f"model-{i}", 100.0, 100.0)
    assert len(truth._ratios) == power_truth.MAX_MODELS


def test_offline_samples_are_never_learned_from():
    live = LiveInputs()
    site = Site(live=live)
    offline = a15(state=MinerState.OFFLINE, hashrate_ths=None)
    assert isinstance(offline, MinerSample)
    from datetime import timedelta

    for _ in range(power_truth.MIN_SAMPLES + 2):
        live.metered_w["m1"] = MeterReading(10.0, site.ts + timedelta(seconds=10))
        site.cycle(offline)
    assert site.truth.corrections() == {}
