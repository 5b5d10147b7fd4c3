"""The curtailment advice stage over real cycles (collector.service.run_cycle through tests.support.deliver):
measured efficiency per mode, no flapping, demand response against brute force, groups, stale inputs,
ramps, and its state file kept across restarts (hostile files set aside)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from datetime import timedelta

import pytest

from collector.sinks.mqtt_publish import plan_summary
from collector.sinks.points import curtailment_lines
from collector.sources.live_inputs import LiveInputs
from collector.stages.curtailment import CurtailmentStage
from collector.stages.curtailment_rules import SLEEP
from collector.layout import SiteLayout
from models import LivePowerPrice, MinerSample, MinerState, SampleSource, SiteEconomics
from models.config import Place
from models.curtailment import ActionEvent, ControlMode, CurtailmentConfig, DrTarget
from tests.support import TS, deliver

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
LIVE = SiteEconomics.model_validate({"tariff": {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 600},
                                     "pue": 1.1})
MODELS = {  # model as Avalons report it -> (TH/s, W) as the tests' miners run
    "AvalonMiner 15-194": (194.0, 3650.0),
    "AvalonMiner 1466": (150.0, 3230.0),
    "AvalonMiner 1246": (90.0, 3420.0),
}


def sample(i: int, model: str, ts, *, ths: float | None = None, w: float | None = None,
           state: MinerState = MinerState.MINING, mode: str = "0", uptime_s: int = 86400) -> MinerSample:
    plate_ths, plate_w = MODELS[model]
    mining = state is MinerState.MINING
    return MinerSample(miner=f"m{i}", host=f"10.0.0.{i}", port=4028, site="s1", ts=ts, state=state,
                       source=SampleSource.AVALON, model=model, work_mode=mode, uptime_s=uptime_s,
                       hashrate_ths=(ths or plate_ths) if mining else 0.0, power_w=w or plate_w if mining else 70.0)


class Site:
    """A stage fed one cycle at a time at a given live price."""

    def __init__(self, config: CurtailmentConfig, *, economics: SiteEconomics = LIVE, **kwargs):
        self.live = LiveInputs()
        self.stage = CurtailmentStage("s1", economics, config, live=self.live, **kwargs)
        self.k = 0

    def cycle(self, samples_at, price: float | None, *, price_age_s: float = 0.0):
        ts = TS + timedelta(seconds=10 * self.k)
        self.k += 1
        if price is not None:
            self.live.power_price = LivePowerPrice(usd_per_kwh=price, as_of=ts - timedelta(seconds=price_age_s))
        cycle = asyncio.run(deliver(samples_at(ts), [], [self.stage], network=NETWORK, ts=ts))
        assert cycle.curtailment is not None
        return cycle.curtailment


def fleet(n_each: int = 2):
    models = list(MODELS)
    return lambda ts: [sample(i, models[i % 3], ts) for i in range(3 * n_each)]


def test_the_least_efficient_miners_sleep_first_as_the_price_rises():
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0))
    assert set(site.cycle(fleet(), 0.02).keys.values()) == {"0"}
    plan = site.cycle(fleet(), 0.06)  # above the A1246's break-even (~0.040), below the others'
    asleep = {m for m, k in plan.keys.items() if k == SLEEP}
    assert asleep == {"m2", "m5"}  # the two A1246s
    assert plan.miners_sleep == 2 and plan.saved_usd_day > 0 and plan.energy_saved_kwh_day > 0
    reasons = {a.miner: a.reason for a in plan.advice}
    assert "above its break-even" in reasons["m2"]
    plan = site.cycle(fleet(), 0.075)  # the A1466 (~0.0705) too, not the A15 (~0.081)
    assert {m for m, k in plan.keys.items() if k == SLEEP} == {"m1", "m2", "m4", "m5"}


def test_measured_efficiency_replaces_the_nameplate_once_a_mode_has_enough_readings():
    # This A15-194 draws 4,600 W, not its nameplate 3,650: at 0.075 $/kWh the nameplate says run
    # (break-even ~0.081), its own readings say sleep (~0.064).
    hungry = lambda ts: [sample(0, "AvalonMiner 15-194", ts, w=4600.0)]  # noqa: E731
    site = Site(CurtailmentConfig(min_samples=5, min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0))
    plans = [site.cycle(hungry, 0.075) for _ in range(6)]
    assert [p.keys["m0"] for p in plans[:4]] == ["0"] * 4  # nameplate: 4 readings are not enough
    assert plans[5].keys["m0"] == SLEEP  # 5 readings: measured
    assert site.stage.book.miners["m0"].modes["0"].w == pytest.approx(4600.0)


def test_a_miner_that_reads_no_power_is_planned_at_its_nameplate_scaled_to_its_hashrate():
    # Trial ZF (M3): a stock Antminer (no power on the wire) in its low mode, 84 of 104 TH/s, was planned at its
    # whole nameplate draw ("running as usual", 3.31 kW): the kW a demand-response target counted as shed. Its
    # nameplate's J/TH at the hashrate it reports, as the cost estimates its draw; the break-even is the same.
    def low(ts):
        return [sample(0, "AvalonMiner 1466", ts, ths=120.0).model_copy(update={"power_w": None}),
                sample(1, "AvalonMiner 1466", ts)]  # (a nameplate of 150 TH/s, 3230 W)
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0))
    plan = site.cycle(low, 0.02)
    run = site.stage._miners["m0"].candidate.runs[0]
    assert run[1] == pytest.approx(120.0) and run[2] == pytest.approx(3230 * 120 / 150 * 1.1 / 1000)
    full = site.stage._miners["m1"].candidate.runs[0]
    assert full[2] / full[1] == pytest.approx(run[2] / run[1])  # the nameplate's J/TH: the same break-even
    assert plan.always_on_kw == pytest.approx((3230 * 120 / 150 + 3230) * 1.1 / 1000, rel=1e-6)


def test_readings_during_warm_up_teach_nothing():
    site = Site(CurtailmentConfig(warmup_s=300))
    site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts, ths=20.0, uptime_s=60)], 0.02)  # ramping after boot
    assert "0" not in site.stage.book.miners["m0"].modes
    site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts, uptime_s=86400)], 0.02)  # mining since just now
    assert "0" not in site.stage.book.miners["m0"].modes


def test_a_clock_stepped_back_goes_on_holding_and_learning_from_where_it_was():
    """Asleep past the break-even, then the clock steps back 3 h (collector/clock.py) and the price falls.
    Its minimum time asleep and its warm-up were counted from times 3 h ahead: it stayed asleep and
    nothing was learnt until the clock caught up."""
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=60, hysteresis_usd_kwh=0, warmup_s=30))
    a1246 = lambda ts: [sample(0, "AvalonMiner 1246", ts)]  # noqa: E731
    plans = [site.cycle(a1246, 0.06) for _ in range(5)]  # above its break-even (~0.040)
    assert plans[-1].keys["m0"] == SLEEP
    learnt = site.stage.book.miners["m0"].modes["0"].n
    site.k -= 3 * 360  # the next cycle 3 h earlier
    plans = [site.cycle(a1246, 0.02) for _ in range(8)]
    assert plans[0].keys["m0"] == SLEEP and plans[-1].keys["m0"] == "0"  # held 60 s, then woken
    assert site.stage.book.miners["m0"].modes["0"].n == learnt + 8


@pytest.mark.parametrize("refused", ["hashrate_ths", "power_w"])
def test_a_reading_with_a_refused_hashrate_or_power_teaches_nothing(refused):
    site = Site(CurtailmentConfig(warmup_s=0))
    bad = lambda ts: [sample(0, "AvalonMiner 15-194", ts, w=9000.0).model_copy(update={"unusable": [refused]})]  # noqa: E731
    site.cycle(bad, 0.02)
    assert "0" not in site.stage.book.miners["m0"].modes
    site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts)], 0.02)  # the same miner, its reading good
    assert site.stage.book.miners["m0"].modes["0"].w == pytest.approx(3650.0)


def test_a_price_wandering_around_the_break_even_does_not_flap_with_hysteresis_and_minimum_times():
    prices = [0.0404 + 0.002 * math.sin(k * 1.7) for k in range(60)]  # the A1246 breaks even at ~0.0404

    def changes(config: CurtailmentConfig) -> int:
        site = Site(config)
        return sum(site.cycle(lambda ts: [sample(0, "AvalonMiner 1246", ts)], p).changes for p in prices)

    assert changes(CurtailmentConfig(hysteresis_usd_kwh=0, min_on_s=0, min_off_s=0)) > 20  # the test can fail
    assert changes(CurtailmentConfig(hysteresis_usd_kwh=0.003, min_on_s=0, min_off_s=0)) == 0
    assert changes(CurtailmentConfig(hysteresis_usd_kwh=0, min_on_s=120, min_off_s=120)) <= 60 * 10 // 120 + 1


def _lost_per_hour(plan_site: Site, price: float, miners: list[str]) -> float:
    """Profit per hour lost by sleeping `miners` at `price`, from the stage's own view of them."""
    book = plan_site.stage.book
    revenue = plan_site.stage._prices.revenue_usd_th_h  # the price of one TH/s-hour this cycle
    lost = 0.0
    for miner in miners:
        stat = book.miners[miner].modes["0"]
        lost += stat.ths * revenue - stat.w * 1.1 / 1000 * price + 0.0  # sleeping draws (unmeasured) 0
    return lost


def test_a_10_kw_demand_response_target_sheds_the_set_that_loses_the_fewest_dollars_brute_force():
    models = list(MODELS)
    # 9 miners, 3 models, hashrates spread so each miner's margin differs.
    spread = [1.0, 0.93, 1.06, 0.97, 1.1, 0.9, 1.03, 0.95, 1.08]
    small = lambda ts: [sample(i, models[i % 3], ts, ths=MODELS[models[i % 3]][0] * spread[i]) for i in range(9)]  # noqa: E731
    target = DrTarget(shed_kw=10, start=TS, end=TS + timedelta(hours=1), reason="utility call")
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, warmup_s=0, min_samples=1), dr_override=target)
    plan = site.cycle(small, 0.03)  # every miner earns at 0.03
    shed = [a.miner for a in plan.advice if a.dr]
    kw = {m: site.stage.book.miners[m].modes["0"].w * 1.1 / 1000 for m in site.stage.book.miners}
    assert sum(kw[m] for m in shed) >= 10
    best = min(_lost_per_hour(site, 0.03, list(c)) for r in range(1, 10) for c in itertools.combinations(kw, r)
               if sum(kw[m] for m in c) >= 10)
    assert _lost_per_hour(site, 0.03, shed) == pytest.approx(best, rel=1e-9)
    assert plan.dr_met and plan.dr_exact and plan.dr_gap_usd_h == 0
    assert "demand response: shed 10 kW" in plan.advice[0].reason
    # The shed miners stay asleep while the target lasts, and nobody else joins them.
    again = site.cycle(small, 0.03)
    assert sorted(a.miner for a in again.advice if a.dr) == sorted(shed) and again.changes == 0


def test_on_a_large_fleet_of_near_equal_miners_the_plan_says_how_far_from_the_cheapest_its_cover_can_be():
    # 3,000 units, each its own efficiency: too many near-equal sets for the search to prove one cheapest
    # before its node limit. The plan says so, and by how much a cheaper cover could at most beat it.
    models = list(MODELS)
    big = lambda ts: [sample(i, models[i % 3], ts, ths=MODELS[models[i % 3]][0] * (0.9 + 0.2 * ((i * 7919) % 1000) / 1000))  # noqa: E731
                      for i in range(3000)]
    target = DrTarget(shed_kw=10, start=TS, end=TS + timedelta(hours=1))
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, warmup_s=0, min_samples=1), dr_override=target)
    plan = site.cycle(big, 0.03)
    shed = [a.miner for a in plan.advice if a.dr]
    assert plan.dr_met and not plan.dr_exact
    lost = _lost_per_hour(site, 0.03, shed)
    assert 0 < plan.dr_gap_usd_h < lost  # a bound, and a useful one: well under what the cover costs
    # The fractional cover (any share of a miner) is the cheapest conceivable: the bound is no lower.
    kw = {m: b.modes["0"].w * 1.1 / 1000 for m, b in site.stage.book.miners.items()}
    per_kw = sorted((_lost_per_hour(site, 0.03, [m]) / kw[m], m) for m in kw)
    need, fractional = 10.0, 0.0
    for ratio, m in per_kw:
        take = min(kw[m], need)
        fractional += ratio * take
        need -= take
        if need <= 0:
            break
    assert lost - plan.dr_gap_usd_h >= fractional - 1e-9
    # InfluxDB and MQTT carry it.
    site_line = next(line for line in curtailment_lines(plan) if "scope=site" in line)
    assert f"dr_gap_usd_h={plan.dr_gap_usd_h!r}" in site_line
    assert plan_summary(plan)["dr_gap_usd_h"] == round(plan.dr_gap_usd_h, 4)


def test_demand_response_limit_respects_shed_whole_groups_and_always_on_groups():
    layout = SiteLayout({"10.0.0.0": Place(groups=["pdu-a"]), "10.0.0.1": Place(groups=["pdu-a"]),
                         "10.0.0.2": Place(groups=["office"])})
    config = CurtailmentConfig(min_on_s=0, min_off_s=0, warmup_s=0, min_samples=1,
                               groups={"shed_whole": ["pdu-a"], "always_on": ["office"]})
    models = list(MODELS)
    six = lambda ts: [sample(i, models[i % 3], ts) for i in range(6)]  # noqa: E731
    site = Site(config, layout=layout, dr_override=DrTarget(limit_kw=12, end=TS + timedelta(hours=1)))
    plan = site.cycle(six, 0.02)
    asleep = {m for m, k in plan.keys.items() if k == SLEEP}
    assert "m2" not in asleep  # always on: the office
    assert {"m0", "m1"} <= asleep or not {"m0", "m1"} & asleep  # the PDU whole or not at all
    assert plan.planned_kw <= 12 + 1e-9 and plan.dr_met


def test_a_stale_price_holds_the_plan_and_says_why():
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0))
    assert set(site.cycle(fleet(), 0.02).keys.values()) == {"0"}
    plan = site.cycle(fleet(), 0.50, price_age_s=3600)  # a price from an hour ago: the fallback is used
    assert plan.stale and "no fresh live price" in plan.stale_reason
    assert set(plan.keys.values()) == {"0"} and plan.changes == 0
    assert plan.price_source == "fallback"


def test_the_ramp_limit_spreads_a_spike_over_cycles_most_losing_first():
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=12))
    site.cycle(fleet(3), 0.02)
    asleep_by_cycle = []
    for _ in range(16):
        plan = site.cycle(fleet(3), 1.0)  # every miner loses money: 9 would sleep at once
        asleep_by_cycle.append(plan.miners_sleep)
    # A minute's budget (12 kW) at once: three ~3.8 kW miners; then 2 kW a 10 s cycle, one every ~2 cycles.
    assert asleep_by_cycle[0] == 3 and asleep_by_cycle == sorted(asleep_by_cycle) and asleep_by_cycle[-1] == 9
    assert max(b - a for a, b in zip(asleep_by_cycle, asleep_by_cycle[1:])) <= 1
    assert plan.deferred == 0 and site.cycle(fleet(3), 1.0).changes == 0


def test_the_ramp_lets_a_smaller_change_through_after_a_larger_one_no_longer_fits():
    # 6 kW of budget: the most losing 4 kW miner sleeps, the next 4 kW one waits, the 1.1 kW one (least losing
    # per kW, last in the ramp's order) still fits in the 2 kW left, the same cycle.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, warmup_s=0, min_samples=1, ramp_kw_per_min=6))
    fleet = lambda ts: [sample(0, "AvalonMiner 15-194", ts, ths=150.0), sample(1, "AvalonMiner 15-194", ts),  # noqa: E731
                        sample(2, "AvalonMiner 15-194", ts, w=1000.0)]
    site.cycle(fleet, 0.02)
    plan = site.cycle(fleet, 1.0)
    assert {m for m, key in plan.keys.items() if key == SLEEP} == {"m0", "m2"}
    assert plan.changes == 2 and plan.deferred == 1


def test_the_ramps_order_sheds_first_and_wakes_last_the_most_gained_per_kw_first():
    # Demand response's changes, then sleeps (they shed load), changes of mode, wakes; within each, gain per kW.
    from collector.stages.curtailment import _ramp_order
    order = sorted([("wake", _ramp_order(False, "0", SLEEP, 5.0, 4.0)), ("mode", _ramp_order(False, "1", "0", 1.0, -1.0)),
                    ("sleep, small gain", _ramp_order(False, SLEEP, "0", 0.5, -4.0)),
                    ("sleep, large gain", _ramp_order(False, SLEEP, "0", 8.0, -4.0)),
                    ("dr", _ramp_order(True, SLEEP, "0", -3.0, -4.0))], key=lambda item: item[1])
    assert [name for name, _ in order] == ["dr", "sleep, large gain", "sleep, small gain", "mode", "wake"]


@pytest.mark.parametrize("mode", ["on", "dry_run", "off"])
def test_the_ramp_paces_the_changes_control_makes_not_advice_for_miners_off_its_allowlist(mode):
    # Trial ZA: only the A15s (4.0 kW) on the allowlist, a 1.2 kW/min ramp, every miner losing. Paced, the off-list
    # A1466s' and A1246s' sleeps (3.6, 3.8 kW: advice control never sends) fitted the refilling budget before an
    # A15's, cycle after cycle: the first A15 slept after all four (the trial: 1 of 8 asleep 135 s into a spike
    # the ramp allowed 7 in). Now their advice goes through at once, unpaced, and the budget is the A15s'.
    # With control off, the plan is advice for every miner and all of it is paced.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=1.2,
                                  control={"mode": mode, "allow": ["m0", "m3"]} if mode != "off" else {}))
    site.cycle(fleet(), 0.02)
    plans = [site.cycle(fleet(), 1.0) for _ in range(24)]
    asleep = [{m for m, key in p.keys.items() if key == SLEEP} for p in plans]
    if mode == "off":
        assert asleep[0] == set() and all(len(b - a) <= 1 for a, b in zip(asleep, asleep[1:])), asleep
        return
    assert asleep[0] == {"m1", "m2", "m4", "m5"} and plans[0].deferred == 2  # the off-list advice at once
    first = next(k for k, names in enumerate(asleep) if names & {"m0", "m3"})
    # The budget, 1.2 kW before the spike and 0.2 kW more a cycle, reaches an A15's 4.015 kW in the spike's 15th
    # cycle; then one A15, not both, in the 24.
    assert first == 14 and len(asleep[-1] & {"m0", "m3"}) == 1, asleep


@pytest.mark.parametrize("ramp", [None, 12])
def test_a_limit_counts_the_draw_of_off_list_miners_the_rules_plan_asleep(ramp):
    # Trial ZA: at 0.05 $/kWh the rules sleep the A1246s, off control's allowlist: advice control never sends. The
    # cover counted them asleep, as meeting a 20 kW limit (need 0): with a ramp deferring their sleeps cycle after
    # cycle, the site stayed 14-22 kW over the whole window; without one, for a cycle. Now they count at their
    # polled draw at once, and an allowlisted A15 is shed in the limit's first cycle.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0, ramp_kw_per_min=ramp,
                                  control={"mode": "on", "allow": ["m0", "m1", "m3", "m4"]}),
                dr_override=DrTarget(limit_kw=20.0, end=TS + timedelta(hours=1), reason="4CP"))
    plan = site.cycle(fleet(), 0.05)  # 22.66 kW polled; 15.1 kW with the A1246s asleep as the rules plan them
    shed = {m for m, key in plan.keys.items() if key == SLEEP} - {"m2", "m5"}
    assert plan.dr_need_kw == pytest.approx(22.66 - 20.0, abs=0.01) and len(shed) == 1 and shed <= {"m1", "m4"}, plan
    assert all(a.dr for a in plan.advice if a.miner in shed)


@pytest.mark.parametrize("paused_by", ["kill switch", "dry_run"])
def test_a_backlog_the_plan_let_go_while_nothing_was_sent_goes_through_the_ramp_again(paused_by, tmp_path):
    # Trial ZA: while the kill switch was on (or control in dry_run), the plan went on letting changes through the
    # ramp that nobody sent; when it was lifted, control sent the whole backlog at once (17.7 kW in 6 s at a
    # 12 kW/min ramp). Now the cycle control starts sending again, what the polls show otherwise than the plan
    # is planned anew from where each miner is, through the ramp.
    stop = tmp_path / "stop"
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=12, control={
        "mode": "on", "allow": ["*"], "kill_switch_file": str(stop), "mqtt_commands": True}))
    site.cycle(fleet(3), 0.02)
    if paused_by == "kill switch":
        stop.touch()
    else:
        site.live.curtailment.mode = ControlMode.DRY_RUN  # Home Assistant's control-mode entity
    paused = [site.cycle(fleet(3), 1.0) for _ in range(12)]  # nobody sends: every miner polled mining
    backlog = {m for m, key in paused[-1].keys.items() if key == SLEEP}
    assert len(backlog) >= 7, backlog  # what the ramp let through in 2 minutes, nothing of it done
    stop.unlink(missing_ok=True)
    site.live.curtailment.mode = None
    asleep: set[str] = set()
    sent = []
    for _ in range(20):  # control sends now: each poll shows what the plan before it asked
        polled = lambda ts, asleep=frozenset(asleep): [  # noqa: E731
            s.model_copy(update={"state": MinerState.SOFT_OFF, "hashrate_ths": 0.0, "power_w": 70.0})
            if s.miner in asleep else s for s in fleet(3)(ts)]
        plan = site.cycle(polled, 1.0)
        wanted = {m for m, key in plan.keys.items() if key == SLEEP}
        sent.append(len(wanted - asleep))  # what control would send this cycle
        asleep = wanted
    # 12 kW a minute: ~3.8 kW sleeps one every other cycle once the budget spent while paused refills (before:
    # the whole backlog in the first cycle), until every miner is asleep.
    assert sent[0] <= 1 and max(sent) <= 1 and sum(sent[:6]) <= 3 and len(asleep) == 9, sent


def test_a_change_the_ramp_defers_says_why_it_was_wanted():
    # A deferred sleep's reason is the price above the miner's break-even; a deferred wake's, below it (it said
    # "mode 0 earns 0.000 $/h more than mode 0", and "above" for a wake), the next cycle's the same.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=12))
    site.cycle(fleet(3), 0.02)
    plan = site.cycle(fleet(3), 1.0)
    deferred = [a for a in plan.advice if a.held and a.key == "0"]
    assert len(deferred) == 6 and plan.deferred == 6
    for a in deferred:
        assert a.reason.startswith("deferred by the ramp limit (12 kW/min): price 1.0000 $/kWh above its break-even")
    still = {a.miner: a.reason for a in site.cycle(fleet(3), 1.0).advice if a.held}
    assert still and all(still[a.miner] == a.reason for a in deferred if a.miner in still)
    woken = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=1))
    asleep = lambda ts: [sample(i, "AvalonMiner 15-194", ts, state=MinerState.SOFT_OFF) for i in range(3)]  # noqa: E731
    woken.cycle(asleep, 1.0)
    plan = woken.cycle(asleep, 0.02)
    held = [a for a in plan.advice if a.held]
    assert held and all("price 0.0200 $/kWh below its break-even" in a.reason for a in held)


def test_the_measured_efficiencies_survive_a_restart(tmp_path):
    path = tmp_path / "curtailment-efficiency.json"
    config = CurtailmentConfig(warmup_s=0)
    site = Site(config, state_path=path)
    for _ in range(3):
        site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts, w=4000.0)], 0.02)
    site.stage.save()
    again = Site(config, state_path=path)
    stat = again.stage.book.miners["m0"].modes["0"]
    assert stat.n == 3 and stat.w == pytest.approx(4000.0)


def _valid_file(path):
    site = Site(CurtailmentConfig(warmup_s=0), state_path=path)
    site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts)], 0.02)
    site.stage.save()
    (path.parent / (path.name + ".prev")).unlink(missing_ok=True)  # (no earlier copy to fall back to)
    return json.loads(path.read_text())


@pytest.mark.parametrize("attack", [
    "nan_watts", "negative_hashrate", "huge_count", "float_count", "as_of_past_2100", "too_many_modes",
    "long_mode", "not_an_object", "string_watts", "watts_beyond_any_miner",
    "plan_not_a_list", "plan_since_a_string", "plan_since_ahead", "plan_dr_not_a_bool", "plan_long_mode", "plans_a_list",
])
def test_an_unusable_state_file_is_set_aside_and_learning_starts_over(tmp_path, attack, caplog):
    path = tmp_path / "curtailment-efficiency.json"
    data = _valid_file(path)
    entry = data["miners"]["m0"]
    if attack == "nan_watts":
        text = json.dumps(data).replace(str(entry["modes"]["0"][2]), "NaN")
        path.write_text(text)
    else:
        if attack == "negative_hashrate":
            entry["modes"]["0"][1] = -5
        elif attack == "huge_count":
            entry["modes"]["0"][0] = 10**12
        elif attack == "float_count":
            entry["modes"]["0"][0] = 2.5
        elif attack == "as_of_past_2100":
            data["as_of"] = TS.timestamp() + 100 * 365 * 86400  # (past 2100: no clock reads that)
            entry["seen"] = data["as_of"]
        elif attack == "too_many_modes":
            entry["modes"] = {str(i): [1, 90.0, 3000.0] for i in range(50)}
        elif attack == "long_mode":
            entry["modes"]["x" * 500] = [1, 90.0, 3000.0]
        elif attack == "not_an_object":
            data["miners"]["m0"] = [1, 2, 3]
        elif attack == "string_watts":
            entry["modes"]["0"][2] = "3650"
        elif attack == "watts_beyond_any_miner":
            entry["modes"]["0"][2] = 1e9
        elif attack.startswith("plan"):  # the plan's hold on a miner across a restart
            plan = ["", data["as_of"] - 60, True]
            if attack == "plan_not_a_list":
                plan = {"key": ""}
            elif attack == "plan_since_a_string":
                plan[1] = "yesterday"
            elif attack == "plan_since_ahead":
                plan[1] = data["as_of"] + 86400
            elif attack == "plan_dr_not_a_bool":
                plan[2] = 1
            elif attack == "plan_long_mode":
                plan[0] = "x" * 500
            data["plans"] = [plan] if attack == "plans_a_list" else {"m0": plan}
        path.write_text(json.dumps(data))
    site = Site(CurtailmentConfig(), state_path=path)
    assert site.stage.book.miners == {}
    assert (tmp_path / "curtailment-efficiency.json.unusable.1").exists()
    assert "learning starts over" in caplog.text
    site.cycle(lambda ts: [sample(0, "AvalonMiner 15-194", ts)], 0.02)  # and the stage works on


def _polled_asleep(asleep: set[str]):
    """Six miners (m0..m5, the three MODELS in turn) polled mining, those named in `asleep` soft-off."""
    models = list(MODELS)
    return lambda ts: [sample(i, models[i % 3], ts, state=MinerState.SOFT_OFF if f"m{i}" in asleep else MinerState.MINING)
                       for i in range(6)]


def test_a_restart_in_a_demand_response_window_keeps_the_miners_shed_for_it(tmp_path, caplog):
    # Trial Z: the miners asleep for a target were kept in memory only: after a restart they were planned by the
    # price (woken) and others shed in their place, 6 commands for a 3-miner shed; with min_off_s 900 too.
    path = tmp_path / "curtailment-efficiency.json"
    config = CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0)
    limit = DrTarget(limit_kw=19.5, end=TS + timedelta(hours=1), reason="4CP")
    site = Site(config, state_path=path, dr_override=limit)
    shed = {m for m, k in site.cycle(_polled_asleep(set()), 0.02).keys.items() if k == SLEEP}
    assert shed in ({"m2"}, {"m5"})
    kept = json.loads(path.read_text())["plans"]  # saved at the shed's cycle: a crash keeps it too
    assert {m for m, (key, _, dr) in kept.items() if key == "" and dr} == shed
    after = Site(config, state_path=path, dr_override=limit)  # a restart (no stop: the cycle's own save)
    after.k = site.k  # (the next tick)
    caplog.set_level(logging.INFO, "collector.stages.curtailment")
    for _ in range(3):
        plan = after.cycle(_polled_asleep(shed), 0.02)
        assert {m for m, k in plan.keys.items() if k == SLEEP} == shed and plan.changes == 0 and plan.dr_met, plan.keys
    said = [r.getMessage() for r in caplog.records if "taken up as saved" in r.getMessage()]
    assert said == ["curtailment: the plan's hold on 1 miner(s) taken up as saved before the start (1 asleep for "
                    "demand response)"], said  # once, at the start


def test_a_minimum_off_time_goes_on_counting_across_a_restart(tmp_path):
    path = tmp_path / "curtailment-efficiency.json"
    config = CurtailmentConfig(min_on_s=0, min_off_s=900, hysteresis_usd_kwh=0, warmup_s=0)
    a1246 = lambda state: lambda ts: [sample(0, "AvalonMiner 1246", ts, state=state)]  # noqa: E731
    site = Site(config, state_path=path)
    assert site.cycle(a1246(MinerState.MINING), 0.06).keys == {"m0": SLEEP}  # above its break-even (~0.040)
    site.stage.close()
    after = Site(config, state_path=path)
    after.k = site.k  # (the next tick)
    plan = after.cycle(a1246(MinerState.SOFT_OFF), 0.02)  # 10 s later the price falls: held, 890 s to go
    assert plan.keys == {"m0": SLEEP} and plan.held == 1, plan.advice
    assert "minimum off time (10 of 900 s)" in plan.advice[0].reason


def test_a_mode_changed_by_hand_during_warm_up_is_planned_from_what_the_miner_does(caplog):
    # In its warm-up a miner's only option is its nameplate in the mode it reports; once it reports
    # another mode, the one the plan had it in is gone. The plan must follow the miner (not crash the
    # stage, not plan it back into the vanished mode, not word an infinite gain), ramp or no ramp.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, ramp_kw_per_min=1, warmup_s=300))
    in_mode = lambda mode: lambda ts: [sample(0, "AvalonMiner 15-194", ts, mode=mode)]  # noqa: E731
    assert site.cycle(in_mode("0"), 0.02).keys == {"m0": "0"}
    for _ in range(3):
        plan = site.cycle(in_mode("2"), 0.02)
        assert plan.keys == {"m0": "2"} and plan.changes == 0 and plan.deferred == 0
        assert all("inf" not in a.reason for a in plan.advice)
    assert "failed" not in caplog.text


class _LayoutFailingFor(SiteLayout):
    """A site layout that raises for one host: stands for a bug or an input no check caught in one miner's planning."""

    def __init__(self, host: str):
        super().__init__({"10.0.0.99": Place(groups=["office"])})
        self.host = host

    def place(self, sample: MinerSample):
        if sample.host == self.host:
            raise RuntimeError("boom")
        return super().place(sample)


class _StageFailingOnChange(CurtailmentStage):
    """A stage whose planning of m3 raises once it would change (after the miner joined the cycle's lists)."""

    def _settle_one_run(self, rec, c, *args):
        if c.miner == "m3":
            raise RuntimeError("boom")
        return super()._settle_one_run(rec, c, *args)

    def _queue_change(self, rec, c, *args):
        if c.miner == "m3":
            raise RuntimeError("boom")
        return super()._queue_change(rec, c, *args)


@pytest.mark.parametrize("where", ["first sight", "a change"])
@pytest.mark.parametrize("ramp", [None, 4.0])
def test_one_miners_planning_failing_leaves_it_out_and_plans_the_others_as_without_it(ramp, where, caplog):
    # A miner whose planning raised took its whole part with it (the service logs the stage's failure and the
    # part goes without advice: up to 1,000 miners). Now that miner alone is left out, cycle after cycle.
    config = CurtailmentConfig(min_on_s=0, min_off_s=0, warmup_s=0, hysteresis_usd_kwh=0, ramp_kw_per_min=ramp,
                               groups={"always_on": ["office"]})  # (groups: the layout is asked of every miner)
    layout = SiteLayout({"10.0.0.99": Place(groups=["office"])})
    failing = Site(config, layout=_LayoutFailingFor("10.0.0.3") if where == "first sight" else layout)
    if where == "a change":
        failing.stage = _StageFailingOnChange("s1", LIVE, config, live=failing.live, layout=layout)
    without = Site(config, layout=layout)
    everyone = fleet(3)  # m0 .. m8: m3 in the middle
    others = lambda ts: [s for s in everyone(ts) if s.miner != "m3"]  # noqa: E731
    # (m3, an A1466, sleeps at 0.09; at 0.02 it runs as usual, with no change to fail on)
    for price in (0.09, 0.09, 0.02, 0.09) if where == "first sight" else (0.09, 0.09, 0.09):
        plan = failing.cycle(everyone, price)
        expected = without.cycle(others, price)
        assert "m3" not in plan.keys and all(a.miner != "m3" for a in plan.advice)
        assert plan.keys == expected.keys
        assert [(a.miner, a.key, a.reason) for a in plan.advice] == [(a.miner, a.key, a.reason) for a in expected.advice]
        assert (plan.miners_planned, plan.planned_kw, plan.saved_usd_day) == (
            expected.miners_planned, expected.planned_kw, expected.saved_usd_day)
    failures = [r for r in caplog.records if "curtailment planning failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].getMessage().startswith("m3:")


def test_work_modes_for_another_make_are_named_as_ignored(caplog):
    # Trial P L1: work modes are planned and changed on Avalons only; an M50S's were dropped without a word.
    modes = {"M50S VH50": [{"mode": "low", "hashrate_ths": 110, "power_w": 2500}],
             "Avalon Q": [{"mode": "0", "hashrate_ths": 56, "power_w": 850}],
             "AvalonMiner 1246": [{"mode": "1", "hashrate_ths": 90, "power_w": 3420}]}
    with caplog.at_level("WARNING", logger="collector.stages.curtailment"):
        Site(CurtailmentConfig.model_validate({"work_modes": modes}))
    assert [r.getMessage() for r in caplog.records] == [
        "curtailment.work_modes['M50S VH50']: not an Avalon model; work modes are planned and changed on Avalons "
        "only (other makes run one mode: docs/curtailment.md), so these are ignored"]


def test_a_natively_read_miner_stopped_idle_is_not_planned_one_read_by_pyasic_counts_asleep():
    # Trial P M2: a Braiins OS+ unit in a thermal trip (idle: answering, not hashing, not paused) was advised to
    # "run" with its 3.3 kW in the plan. A native reader says soft_off for a sleep; pyasic reads a sleep as idle.
    def fleet_at(ts):
        out = []
        for i, source in enumerate((SampleSource.BRAIINS, SampleSource.PYASIC)):
            out.append(MinerSample(miner=f"x{i}", host=f"10.0.1.{i}", port=4028, site="s1", ts=ts, state=MinerState.IDLE,
                                   source=source, model="Antminer S19j Pro", hashrate_ths=0.0, power_w=90.0))
        return [*fleet(1)(ts), *out]

    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0))
    plan = site.cycle(fleet_at, 0.02)
    assert "x0" not in plan.keys  # stopped, not asleep: nothing to plan
    assert plan.keys["x1"] == "default"  # asleep (pyasic reads a sleep as idle), advised to wake at this price


def test_the_running_savings_count_what_the_miners_did_not_what_the_plan_said():
    # Trial V: the totals followed the plan; a miner that kept mining through its sleep (control killed, off,
    # in dry_run, not allowlisted, or a unit ignoring soft-off) was credited as asleep, and a spike's first
    # cycle credited the sleeps for the interval before them.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0))
    a1246 = "AvalonMiner 1246"

    def polled(m0: MinerState, m1: MinerState):
        return lambda ts: [sample(0, a1246, ts, state=m0), sample(1, a1246, ts, state=m1)]

    mining, asleep = MinerState.MINING, MinerState.SOFT_OFF
    site.cycle(polled(mining, mining), 0.02)
    spike = site.cycle(polled(mining, mining), 0.06)  # both planned asleep; the poll was before
    assert spike.keys == {"m0": SLEEP, "m1": SLEEP} and spike.changes == 2 and spike.saved_usd_day > 0
    assert spike.saved_usd_total == 0.0 and spike.miners_off_plan == 0
    totals = [spike.saved_usd_total]
    for _ in range(2):  # m0 sleeps, m1 keeps mining
        plan = site.cycle(polled(asleep, mining), 0.06)
        assert plan.miners_sleep == 2 and plan.miners_off_plan == 1
        totals.append(plan.saved_usd_total)
    one_miner_h = plan.saved_usd_day / 2 / 24  # (the two are alike: each half the plan's saving)
    assert totals[1] - totals[0] == pytest.approx(one_miner_h * 10 / 3600, rel=1e-9)
    assert totals[2] - totals[1] == pytest.approx(one_miner_h * 10 / 3600, rel=1e-9)
    # The price falls: both planned awake. m0 was asleep for the interval before (credited its sleep at this
    # price: a loss), m1 running as the new plan has it (nothing).
    cheap = site.cycle(polled(asleep, mining), 0.02)
    assert cheap.keys == {"m0": "0", "m1": "0"} and cheap.miners_off_plan == 0
    kw, ths = 3420 * 1.1 / 1000, 90.0
    sleep_h = kw * 0.02 - ths * cheap.revenue_usd_th_day / 24  # saved asleep against running, $/h
    assert sleep_h < 0
    assert cheap.saved_usd_total - totals[2] == pytest.approx(sleep_h * 10 / 3600, rel=1e-6)


@pytest.mark.parametrize("control_gave_up", [True, False])
def test_a_miner_shed_for_a_limit_that_control_could_not_move_is_replaced(control_gave_up):
    # Trial W: a unit ignoring soft-off left the site 2 kW over a 20 kW limit for the whole window, `dr_met`
    # true, the plan counting it as shed. Trial X: counting every miner off its plan (one waiting for the action
    # limits, in flight) shed replacements that waited too, up to the whole site. Only a miner control reported
    # its sleep `unconfirmed` (or `refused`) counts at its polled draw.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0),
                dr_override=DrTarget(limit_kw=19.5, end=TS + timedelta(hours=1), reason="4CP"))
    models = list(MODELS)
    first = site.cycle(_polled_asleep(set()), 0.02)  # 22.7 kW running: one A1246 (3.8 kW) is the cheapest cover
    assert {m for m, k in first.keys.items() if k == SLEEP} == {"m2"} and first.dr_met
    assert first.drawn_kw == pytest.approx(first.always_on_kw)
    for _ in range(3):  # m2 still mining: in flight, or waiting for the action limits
        plan = site.cycle(_polled_asleep(set()), 0.02)
        assert {m for m, k in plan.keys.items() if k == SLEEP} == {"m2"} and plan.miners_off_plan == 1
    assert not plan.dr_met  # the third poll over the limit: not met, whatever the plan's cover
    if control_gave_up:  # what the control sink appends to the plan it acted on
        plan.events.append(ActionEvent(plan.ts, "m2", "sleep", "unconfirmed", "4CP", "after 3 attempt(s) ..."))
    plan = site.cycle(_polled_asleep(set()), 0.02)
    asleep = {m for m, k in plan.keys.items() if k == SLEEP}
    if not control_gave_up:
        assert asleep == {"m2"} and plan.dr_need_kw == 0
        return
    assert asleep == {"m2", "m5"} and plan.dr_need_kw > 0  # the other A1246 shed in its place
    drawn = sum(MODELS[models[i % 3]][1] for i in range(6) if i != 5) * 1.1 / 1000  # m2 mining, m5 asleep
    assert drawn <= 19.5
    followed = site.cycle(_polled_asleep({"m5"}), 0.02)
    assert {m for m, k in followed.keys.items() if k == SLEEP} == {"m2", "m5"} and followed.drawn_kw <= 19.5
    # m2 sleeps at last: one of the two is more than the limit needs, and is let go; then nothing moves
    after = site.cycle(_polled_asleep({"m2", "m5"}), 0.02)
    assert len({m for m, k in after.keys.items() if k == SLEEP} & {"m2", "m5"}) == 1 and after.dr_met
    kept = {m for m in ("m2", "m5") if after.keys[m] == SLEEP}
    still = site.cycle(_polled_asleep(kept), 0.02)
    assert still.changes == 0 and still.dr_met


def test_a_shed_miner_an_operator_took_back_is_replaced():
    # An operator wakes by hand the A1246 control shed for a limit: control lets it go for its backoff
    # (`taken_back`) and will not sleep it again; the plan counted it as shed (on its way), the site over the limit
    # with nothing else shed.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0,
                                  control={"mode": "on", "allow": ["*"]}),
                dr_override=DrTarget(limit_kw=19.5, end=TS + timedelta(hours=1), reason="4CP"))
    first = site.cycle(_polled_asleep(set()), 0.02)
    assert {m for m, k in first.keys.items() if k == SLEEP} == {"m2"}
    plan = site.cycle(_polled_asleep({"m2"}), 0.02)  # control slept it
    plan.events.append(ActionEvent(plan.ts, "m2", "sleep", "taken_back", "an operator took it back", "..."))
    plan = site.cycle(_polled_asleep(set()), 0.02)  # the operator's hand: m2 mining again
    assert {m for m, k in plan.keys.items() if k == SLEEP} == {"m2", "m5"} and plan.dr_need_kw > 0, plan


def test_a_miner_an_operator_took_back_while_killed_is_not_planned_anew_when_control_resumes(tmp_path):
    # Trial ZA2 (LOW): woken by hand while the kill switch was on, a miner control had slept for the price was
    # planned anew at the lift, its sleep through the ramp again: budget spent on a change control leaves alone
    # for its backoff.
    stop = tmp_path / "stop"
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0, control={
        "mode": "on", "allow": ["*"], "kill_switch_file": str(stop)}))
    first = site.cycle(_polled_asleep(set()), 0.06)  # the A1246s lose money
    assert {m for m, k in first.keys.items() if k == SLEEP} == {"m2", "m5"}
    plan = site.cycle(_polled_asleep({"m2", "m5"}), 0.06)
    stop.touch()
    plan.events.append(ActionEvent(plan.ts, "m2", "sleep", "taken_back", "an operator took it back", "..."))
    site.cycle(_polled_asleep({"m5"}), 0.06)  # killed; the operator's hand on m2
    stop.unlink()
    resumed = site.cycle(_polled_asleep({"m5"}), 0.06)
    assert resumed.changes == 0 and resumed.miners_off_plan == 1, resumed


def test_a_limit_is_held_to_the_polled_draw_when_the_miners_draw_more_than_the_plan_learnt():
    # Trial Y: the plan's kW are learnt (and remade every 30 cycles): a site drawing a little more than its
    # figures stayed 0.01-0.21 kW over a limit for up to 13 cycles with nothing shed (`dr_need_kw` 0).
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0, min_samples=2),
                dr_override=DrTarget(limit_kw=23.0, end=TS + timedelta(hours=1), reason="4CP"))
    models = list(MODELS)

    def polled(asleep: set[int], more: float):
        return lambda ts: [sample(i, models[i % 3], ts, w=MODELS[models[i % 3]][1] * more,
                                  state=MinerState.SOFT_OFF if i in asleep else MinerState.MINING) for i in range(6)]

    for _ in range(3):  # 22.66 kW as learnt and as polled: under the limit
        plan = site.cycle(polled(set(), 1.0), 0.02)
        assert plan.miners_sleep == 0 and plan.dr_need_kw == 0 and plan.dr_met
    hotter = site.cycle(polled(set(), 1.03), 0.02)  # 23.34 kW polled, the plan's figures still 22.66
    asleep = {m for m, k in hotter.keys.items() if k == SLEEP}
    assert asleep in ({"m2"}, {"m5"}) and hotter.dr_need_kw == pytest.approx(23.34 - 23.0, abs=0.01), hotter
    gone = {int(asleep.pop()[1:])}
    for _ in range(4):  # it sleeps; then nothing moves (the other miners' drift is no reason to release or shed)
        plan = site.cycle(polled(gone, 1.03), 0.02)
        assert {m for m, k in plan.keys.items() if k == SLEEP} == {f"m{i}" for i in gone} and plan.changes == 0
        assert plan.drawn_kw <= 23.0 and plan.dr_met


def test_a_limit_not_met_is_said_in_the_log_once_not_every_cycle(caplog):
    # Trial Z: a limit not met (there: more than the allowed miners could shed) was in the fields only, never the log.
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0),
                dr_override=DrTarget(limit_kw=0.2, end=TS + timedelta(hours=1), reason="utility call 7"))
    plans = [site.cycle(fleet(), 0.02) for _ in range(4)]  # every miner planned asleep; nobody follows (control off)
    assert [p.dr_met for p in plans] == [True, True, False, False] and plans[-1].miners_sleep == 6
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "is not met" in r.getMessage()]
    assert len(said) == 1 and "site at most 0.2 kW" in said[0] and "(utility call 7)" in said[0], said


def test_running_savings_nobody_followed_are_exactly_zero_not_rounding_residue():
    # Trial W: with control off the MQTT state said energy_saved_kwh_total -0.0 and btc_forgone_total -2.8e-24:
    # the plan's sums less the same shares summed in another order. Twelve miners nobody follows (found by a
    # search over random fleets and prices: -9.4e-24 BTC at the last price before the fix).
    site = Site(CurtailmentConfig(min_on_s=0, min_off_s=0, hysteresis_usd_kwh=0, warmup_s=0))
    spread = [0.921, 0.881, 0.969, 0.896, 0.87, 0.97, 1.125, 1.09, 1.08, 0.917, 1.011, 0.933]
    models = list(MODELS)
    mining = lambda ts: [sample(i, models[i % 3], ts, ths=MODELS[models[i % 3]][0] * spread[i])  # noqa: E731
                         for i in range(12)]
    for price in (0.0404, 0.0364, 0.0429, 0.0856):
        plan = site.cycle(mining, price)
        for total in (plan.saved_usd_total, plan.energy_saved_kwh_total, plan.btc_forgone_total):
            assert total == 0.0 and math.copysign(1.0, total) == 1.0, total
    assert plan.miners_sleep == 12 and plan.miners_off_plan == 4  # (the 8 planned asleep now: no poll since)
