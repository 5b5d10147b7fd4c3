"""The curtailment rules on their own: hysteresis, minimum times, strike prices, the price thresholds that
decide a one-mode miner alone (against decide_fast, at and around every threshold), the exact
demand-response cover (against brute force) and the ramp budget."""

from __future__ import annotations

import itertools
import random

import pytest

from collector.stages.curtailment_rules import (
    CHANGE, SLEEP, STAY, Candidate, Prices, Ramp, Rules, decide, decide_fast, min_cost_cover, price_thresholds,
    profit_h, shed_items, values,
)

# One TH/s earns 0.0017 $/h: a 90 TH/s, 3.42 kW unit breaks even at 0.0447 $/kWh; a 194 TH/s, 3.65 kW one at 0.0904.
REVENUE = 0.0017
OLD = Candidate("old", (("0", 90.0, 3.42),), 0.06, current="0", held_s=1e9)
NEW = Candidate("new", (("0", 194.0, 3.65), ("1", 170.0, 2.95)), 0.07, current="0", held_s=1e9)


def at(price: float) -> Prices:
    return Prices(price, REVENUE)


def test_a_miner_sleeps_above_its_break_even_and_runs_below_it():
    assert decide(OLD, at(0.030), Rules()).key == "0"
    sleep = decide(OLD, at(0.060), Rules())
    assert sleep.key == SLEEP and "above its break-even 0.0447" in sleep.reason


def test_hysteresis_needs_the_price_past_the_break_even_both_ways():
    rules = Rules(hysteresis_usd_kwh=0.005)
    assert decide(OLD, at(0.048), rules).key == "0"  # past the break-even, not by the hysteresis
    assert decide(OLD, at(0.048), rules).held
    assert decide(OLD, at(0.052), rules).key == SLEEP
    asleep = Candidate("old", OLD.runs, OLD.sleep_kw, current=SLEEP, held_s=1e9)
    assert decide(asleep, at(0.042), rules).key == SLEEP  # below the break-even, not by the hysteresis
    assert decide(asleep, at(0.038), rules).key == "0"


def test_minimum_times_hold_a_miner_in_its_state():
    rules = Rules(min_on_s=600, min_off_s=300)
    just_woke = Candidate("old", OLD.runs, OLD.sleep_kw, current="0", held_s=100)
    held = decide(just_woke, at(0.5), rules)
    assert held.key == "0" and held.held and "minimum on time (100 of 600 s)" in held.reason
    just_slept = Candidate("old", OLD.runs, OLD.sleep_kw, current=SLEEP, held_s=299)
    assert decide(just_slept, at(0.0), rules).key == SLEEP
    assert decide(Candidate("old", OLD.runs, OLD.sleep_kw, current=SLEEP, held_s=301), at(0.0), rules).key == "0"


def test_a_lower_work_mode_wins_where_it_still_earns_and_the_full_one_does_not():
    # Mode 1: 170 TH/s at 2.95 kW (break-even 0.0980); mode 0 breaks even at 0.0904.
    assert decide(NEW, at(0.05), Rules()).key == "0"
    lower = decide(NEW, at(0.095), Rules())
    assert lower.key == "1" and "mode 1 earns" in lower.reason
    assert decide(NEW, at(0.12), Rules()).key == SLEEP


def test_strike_strategy_sleeps_every_miner_above_the_strike_whatever_its_margin():
    rules = Rules(strategy="strike", strike_usd_kwh=0.10)
    assert decide(NEW, at(0.099), rules).key == "0"
    assert decide(NEW, at(0.101), rules).key == SLEEP
    assert decide(OLD, at(0.099), rules).key == "0"  # losing money under margin rules; the strike says run


def test_always_on_miners_never_sleep_and_wake_if_found_asleep():
    on = Candidate("on", OLD.runs, OLD.sleep_kw, current="0", held_s=1e9, always_on=True)
    assert decide(on, at(5.0), Rules()).key == "0"
    asleep = Candidate("on", OLD.runs, OLD.sleep_kw, current=SLEEP, held_s=0, always_on=True)
    assert decide(asleep, at(5.0), Rules(min_off_s=600)).key == "0"


def test_sleep_counts_idle_draw_and_curtailment_credits():
    prices = Prices(0.05, REVENUE, credit_usd_kwh=0.02)
    assert profit_h(OLD, SLEEP, prices, Rules()) == pytest.approx(-0.06 * 0.05 + 0.02 * (3.42 - 0.06))


def _brute(items, need):
    best = None
    for r in range(len(items) + 1):
        for combo in itertools.combinations(range(len(items)), r):
            if sum(items[i][1] for i in combo) >= need - 1e-9:
                cost = sum(items[i][0] for i in combo)
                best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_price_thresholds_decide_a_one_mode_miner_as_decide_fast_does_at_and_around_them(seed):
    # The advice stage decides most miners by these thresholds alone (collector/stages/curtailment.py): where
    # they say STAY or CHANGE, decide_fast must say the same, including a hair's breadth from each threshold.
    rnd = random.Random(seed)
    for _ in range(200):
        kw = rnd.uniform(0.5, 6.0)
        idle = rnd.choice([0.0, 0.0, rnd.uniform(0.01, 0.2), kw * rnd.uniform(0.999, 1.001)])
        runs = (("0", rnd.choice([0.0, rnd.uniform(1.0, 300.0)]), kw),)
        rules = Rules(hysteresis_usd_kwh=rnd.choice([0.0, 0.002, 0.01]))
        prices = Prices(0.05, rnd.uniform(0.0005, 0.003), rnd.choice([0.0, 0.0, rnd.uniform(0.01, 0.2)]))
        asleep_c = Candidate("m", runs, idle, current=SLEEP, held_s=1e9)
        running_c = Candidate("m", runs, idle, current="0", held_s=1e9)
        run_below, sleep_above, wake_below = price_thresholds(running_c, prices, rules)
        decided = 0
        for threshold in (run_below, sleep_above, wake_below):
            if threshold != threshold:  # NaN: this miner is never decided by a threshold
                continue
            for price in (threshold, *(threshold * (1 + k * 1e-15) for k in (-4, -1, 1, 4)),
                          threshold - 1e-10, threshold + 1e-10, threshold - 1e-6, threshold + 1e-6):
                at_price = Prices(price, prices.revenue_usd_th_h, prices.credit_usd_kwh)
                running = decide_fast(running_c, values(running_c, at_price, rules), rules)
                asleep = decide_fast(asleep_c, values(asleep_c, at_price, rules), rules)
                if price < run_below:
                    decided += 1
                    assert running == ("0", STAY, 0)
                if price > run_below:
                    decided += 1
                    assert asleep == (SLEEP, STAY, 1)
                if price > sleep_above:
                    decided += 1
                    assert running == (SLEEP, CHANGE, 1)
                if price < wake_below:
                    decided += 1
                    assert asleep == ("0", CHANGE, 0)
        assert decided or idle >= kw


def test_price_thresholds_leave_alone_what_one_price_cannot_decide():
    prices = at(0.05)
    nan = [t != t for t in price_thresholds(NEW, prices, Rules())]  # two modes
    assert nan == [True, True, True]
    assert all(t != t for t in price_thresholds(OLD, prices, Rules(strategy="strike", strike_usd_kwh=0.05)))
    always = Candidate("old", OLD.runs, OLD.sleep_kw, current="0", held_s=0, always_on=True)
    run_below, sleep_above, wake_below = price_thresholds(always, prices, Rules())
    assert run_below == sleep_above == float("inf") and wake_below != wake_below


def test_min_cost_cover_matches_brute_force_on_random_small_fleets():
    rng = random.Random(19)
    checked = 0
    for _ in range(600):
        items = [(round(rng.uniform(-0.3, 4.0), 3), round(rng.choice([3.42, 3.65, 3.23, 1.67, 0.14]) * rng.uniform(0.9, 1.1), 3))
                 for _ in range(rng.randint(1, 10))]
        need = rng.uniform(0.1, sum(kw for _, kw in items) * 1.15)
        cover = min_cost_cover(items, need)
        best = _brute(items, need)
        if best is None:
            assert not cover.met
            continue
        assert cover.met and cover.exact and cover.gap == 0
        assert cover.cost == pytest.approx(best, abs=1e-9), (items, need)
        assert cover.kw >= need - 1e-9
        checked += 1
    assert checked > 400


def test_min_cost_cover_stopped_by_its_node_limit_bounds_how_far_from_the_cheapest_it_is():
    # Stopped early, the cover is the best found and `lower` a proven bound: the cheapest lies between.
    rng = random.Random(7)
    stopped = 0
    for _ in range(400):
        items = [(round(rng.uniform(0.05, 4.0), 3), round(rng.choice([3.42, 3.65, 3.23, 1.67]) * rng.uniform(0.9, 1.1), 3))
                 for _ in range(rng.randint(4, 11))]
        need = rng.uniform(0.2, sum(kw for _, kw in items) * 0.8)
        best = _brute(items, need)
        cover = min_cost_cover(items, need, node_limit=3)
        assert cover.met and cover.kw >= need - 1e-9
        assert cover.lower - 1e-9 <= best <= cover.cost + 1e-9, (items, need)
        assert cover.gap == pytest.approx(cover.cost - cover.lower)
        if not cover.exact:
            stopped += 1
            assert cover.gap >= cover.cost - best - 1e-9
    assert stopped > 100


def test_shed_items_makes_a_shed_whole_group_one_item_and_keeps_each_item_s_miners():
    items, members = shed_items([("a", 1.0, 3.0, None), ("b", 2.0, 3.5, "pdu-1"), ("c", 0.5, 1.0, None),
                                 ("d", 4.0, 3.0, "pdu-1"), ("e", 1.5, 2.0, "pdu-2")])
    assert items == [(1.0, 3.0), (6.0, 6.5), (0.5, 1.0), (1.5, 2.0)]
    assert members == [["a"], ["b", "d"], ["c"], ["e"]]
    # The group is shed whole: the others together free 6 kW, so 6.2 kW takes the group and both its miners.
    cover = min_cost_cover(items, 6.2)
    assert sorted(m for i in cover.chosen for m in members[i]) == ["b", "d"]


def test_min_cost_cover_reports_when_nothing_can_meet_the_target():
    cover = min_cost_cover([(1.0, 3.0), (2.0, 3.0)], 10.0)
    assert not cover.met and set(cover.chosen) == {0, 1}


def test_ramp_spends_a_budget_refilled_per_minute_and_moves_the_largest_unit_eventually():
    ramp = Ramp(kw_per_min=6.0)
    ramp.refill(10, largest_change_kw=3.65)  # 1 kW after 10 s
    assert ramp.spend_in_order([3.65]) == []
    for _ in range(3):
        ramp.refill(10, 3.65)
    assert ramp.spend_in_order([3.65, 3.65]) == [0]  # 4 kW after 40 s: one
    assert ramp.budget_kw == pytest.approx(4 - 3.65)


def test_ramp_makes_a_smaller_change_after_a_larger_one_that_did_not_fit():
    ramp = Ramp(kw_per_min=6.0)
    ramp.refill(60, largest_change_kw=3.65)  # 6 kW
    assert ramp.spend_in_order([3.42, 3.65, 1.67, 3.23, 0.5]) == [0, 2, 4]  # 3.42 + 1.67 + 0.5
    assert ramp.budget_kw == pytest.approx(6 - 3.42 - 1.67 - 0.5)
    assert ramp.spend_in_order([0.5]) == []


def test_ramp_spends_as_first_fit_over_every_change_whatever_stops_its_scan_early():
    rng = random.Random(7)
    for _ in range(500):
        sizes = [rng.choice([0.5, 1.67, 3.23, 3.42, 3.65, rng.uniform(0.01, 5)]) for _ in range(rng.randint(0, 40))]
        budget = rng.choice([0.0, 0.5 - 1e-12, rng.uniform(0, 60)])
        ramp = Ramp(kw_per_min=6.0, budget_kw=budget)
        expected, left = [], budget
        for i, kw in enumerate(sizes):  # first fit, every change looked at
            if kw <= left + 1e-9:
                left -= kw
                expected.append(i)
        assert ramp.spend_in_order(sizes) == expected
        assert ramp.budget_kw == pytest.approx(left)
