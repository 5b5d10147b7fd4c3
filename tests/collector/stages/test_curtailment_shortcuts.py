"""The curtailment stage plans most miners by shortcut: a miner whose options, prices, state and target
are as last cycle keeps its plan whole, a miner running as usual is settled inline, reasons worded
alike for every miner are made once. None of that may change a plan.
Random fleets and price paths (work modes, soft-off and idle miners, miners missing a cycle, stale
prices, demand-response targets, shed-whole and always-on groups, ramps, both strategies, control acting
on an allowlist and switched over MQTT) are planned
twice, by the stage and by the same stage with every shortcut off, and must agree on every field."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from collector.layout import SiteLayout
from collector.sources.live_inputs import LiveInputs
from collector.stages.curtailment import CurtailmentStage
from models import LivePowerPrice, MinerSample, MinerState, SampleSource, SiteEconomics
from models.config import Place
from models.curtailment import ControlMode, CurtailmentConfig, DrTarget
from tests.support import TS, deliver

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
MODELS = {"AvalonMiner 15-194": (194.0, 3650.0), "AvalonMiner 1466": (150.0, 3230.0),
          "AvalonMiner 1246": (90.0, 3420.0)}
MODES = {"0": 1.0, "1": 0.8, "2": 0.6}  # work mode -> share of full hashrate (power falls faster)


class NoShortcuts(CurtailmentStage):
    """Every miner through the general path every cycle, no reason shared. (Advice is still kept while
    the same: a change that holds keeps the reason it was made for, which is a rule, not a shortcut.)"""

    def begin(self, cycle) -> None:
        self._inputs = None  # a new epoch: no miner's plan is kept
        super().begin(cycle)
        self._margin_same = False  # no inline path for miners running as usual
        self._keep_deferrals = False  # every deferral made anew

    def _reason(self, c, key, why, prices, target) -> str:
        return self._word(c, key, why, prices, target)


def _scenario(rnd: random.Random):
    n = rnd.randint(1, 24)
    miners = [(i, rnd.choice(list(MODELS)), rnd.uniform(0.85, 1.15), rnd.uniform(0.9, 1.2)) for i in range(n)]
    places = {}
    for i in range(n):
        r = rnd.random()
        group = "pdu-a" if r < 0.15 else "pdu-b" if r < 0.25 else "office" if r < 0.32 else None
        if group:
            places[f"10.0.0.{i}"] = Place(groups=[group])
    config: dict = dict(min_on_s=rnd.choice([0, 0, 20, 60]), min_off_s=rnd.choice([0, 0, 30, 60]),
                        hysteresis_usd_kwh=rnd.choice([0, 0.003, 0.01]), warmup_s=rnd.choice([0, 0, 20]),
                        min_samples=rnd.choice([1, 2, 3, 30]))
    if rnd.random() < 0.3:
        config["groups"] = {"shed_whole": ["pdu-a", "pdu-b"][: rnd.randint(1, 2)], "always_on": ["office"]}
    if rnd.random() < 0.3:
        config["ramp_kw_per_min"] = rnd.choice([5, 12, 40])
    if rnd.random() < 0.2:
        config.update(strategy="strike", strike_usd_kwh=rnd.choice([0.04, 0.06]))
    if rnd.random() < 0.4:  # some models (or all) with their work modes' nameplates: one-mode miners beside others
        covered = rnd.sample(sorted(MODELS), rnd.randint(1, len(MODELS)))
        config["work_modes"] = {m: [{"mode": k, "hashrate_ths": ths * f, "power_w": w * f ** 1.4}
                                    for k, f in MODES.items()] for m, (ths, w) in MODELS.items() if m in covered}
    if rnd.random() < 0.3:  # control acts on some miners: the cover and the ramp's order heed its allowlist
        allow = [f"10.0.0.{i}" for i in range(n) if rnd.random() < 0.5] + (["pdu-a"] if rnd.random() < 0.3 else [])
        config["control"] = {"mode": rnd.choice(["on", "dry_run"]), "allow": allow or ["m0"], "mqtt_commands": True}
    target = None
    r = rnd.random()
    start, end = TS + timedelta(seconds=10 * rnd.randint(0, 5)), TS + timedelta(seconds=10 * rnd.randint(6, 30))
    if r < 0.25:
        target = DrTarget(shed_kw=rnd.choice([3, 10, 25]), start=start, end=end)
    elif r < 0.45:
        target = DrTarget(limit_kw=rnd.uniform(5, 60), start=start, end=end)
    economics = SiteEconomics.model_validate({
        "tariff": {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 600},
        **({"pue": 1.1} if rnd.random() < 0.7 else {"overhead_w": 500})})
    return miners, SiteLayout(places), CurtailmentConfig(**config), target, economics


def _samples(rnd: random.Random, miners, modes, ts) -> list[MinerSample]:
    out = []
    for i, model, ths_factor, w_factor in miners:
        if rnd.random() < 0.05:
            continue  # not polled this cycle
        r = rnd.random()
        state = (MinerState.MINING if r < 0.85 else MinerState.SOFT_OFF if r < 0.93 else
                 MinerState.IDLE if r < 0.97 else MinerState.ERROR)
        ths, w = MODELS[model]
        f = MODES[modes[i]]
        mining = state is MinerState.MINING
        out.append(MinerSample(
            miner=f"m{i}", host=f"10.0.0.{i}", port=4028, site="s1", ts=ts, state=state, source=SampleSource.AVALON,
            model=model, work_mode=modes[i], uptime_s=rnd.choice([60, 86400, 86400]),
            hashrate_ths=ths * ths_factor * f * rnd.uniform(0.98, 1.02) if mining else 0.0,
            power_w=w * w_factor * f ** 1.4 * rnd.uniform(0.99, 1.01) if mining else 70.0 + rnd.uniform(-2, 2)))
    return out


def _view(plan):
    return (plan.keys, [(a.miner, a.key, a.action, a.reason, a.kw, a.kw_always_on, a.margin_usd_kwh, a.efficiency_j_th,
                         a.profit_usd_day, a.changed, a.held, a.dr, a.usual) for a in plan.advice],
            plan.miners_sleep, plan.miners_run, plan.miners_lower, plan.held, plan.changes, plan.deferred,
            plan.miners_planned, plan.dr_met, plan.dr_exact, plan.dr_gap_usd_h, plan.stale, plan.stale_reason,
            (plan.planned_kw, plan.always_on_kw, plan.saved_usd_day, plan.energy_saved_kwh_day, plan.btc_forgone_day,
             plan.saved_usd_total, plan.energy_saved_kwh_total, plan.dr_need_kw))


@pytest.mark.parametrize("seed", range(40))
def test_plans_made_with_shortcuts_equal_plans_made_without(seed):
    rnd = random.Random(seed)
    _compare(rnd, *_scenario(rnd))


@pytest.mark.parametrize("seed", range(12))
def test_a_long_ramp_planned_with_shortcuts_equals_planned_without(seed):
    # A spike held for many cycles under a tight ramp: most changes wait, cycle after cycle, at the same
    # inputs (the deferrals kept whole), then the price moves on (they are planned anew).
    rnd = random.Random(1000 + seed)
    miners, layout, config, target, economics = _scenario(rnd)
    config = config.model_copy(update={"ramp_kw_per_min": rnd.choice([3, 6, 12]), "strategy": "margin",
                                       "strike_usd_kwh": None})
    prices = [0.03] * 2 + [1.0] * rnd.randint(6, 14) + [rnd.choice([0.02, 0.5, 1.2])] * 6 + [0.03] * 6
    _compare(rnd, miners, layout, config, target, economics, prices)


def _compare(rnd, miners, layout, config, target, economics, prices=None):
    sites = []
    for stage_class in (CurtailmentStage, NoShortcuts):
        live = LiveInputs()
        sites.append((live, stage_class("s1", economics, config, live=live, layout=layout, dr_override=target)))
    modes = {i: "0" for i, *_ in miners}
    price = rnd.choice([0.02, 0.04, 0.06])
    for k in range(rnd.randint(5, 40) if prices is None else len(prices)):
        ts = TS + timedelta(seconds=10 * k)
        r = rnd.random()
        if prices is not None:
            price = prices[k]
        elif 0.35 <= r < 0.6:
            price = rnd.choice([0.02, 0.035, 0.04, 0.045, 0.06, 0.08, 1.0])
        elif r >= 0.6:
            price = max(0.0, price + rnd.uniform(-0.005, 0.005))  # (else the price stays: shortcuts apply)
        age_s = 3600 if rnd.random() < (0.08 if prices is None else 0.02) else 0  # the fallback price: stale
        if rnd.random() < 0.1:
            modes[rnd.randrange(len(miners))] = rnd.choice(list(MODES))  # a mode changed by hand
        if config.control.mqtt_commands and rnd.random() < 0.15:  # Home Assistant switches control down, or back
            asked = rnd.choice([None, ControlMode.OFF, ControlMode.DRY_RUN])
            for live, _ in sites:
                live.curtailment.mode = asked
        samples = _samples(rnd, miners, modes, ts)
        plans = []
        for live, stage in sites:
            live.power_price = LivePowerPrice(usd_per_kwh=price, as_of=ts - timedelta(seconds=age_s))
            plans.append(asyncio.run(deliver(samples, [], [stage], network=NETWORK, ts=ts)).curtailment)
        fast, reference = plans
        assert fast is not None and reference is not None
        *same, figures = _view(fast)
        *same_reference, figures_reference = _view(reference)
        assert same == same_reference, f"cycle {k}"
        assert figures == pytest.approx(figures_reference, rel=1e-12, abs=1e-12), f"cycle {k}"
