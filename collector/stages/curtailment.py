"""The curtailment advice, every cycle: at the power price in force (tariff, time of use, or a live
feed: cost_engine.power_price_at), which miners to run, which to sleep, which to move to another work
mode, and what following that plan saves against running every miner always on.

Each miner is weighed by its own measured hashrate and power per work mode (collector/stages/
efficiency_book.py: learned from its steady readings, kept across restarts; the nameplate stands in
until a mode has `min_samples` readings). The rules (collector/stages/curtailment_rules.py) add
hysteresis and minimum on/off times so the plan does not flap, demand response sheds the cheapest
kW when a target is active (MQTT, Home Assistant, a schedule file or `hashfleet advise`), and a ramp
limit spreads changes over time.

The plan is advice: this stage changes no miner. The control sink (collector/sinks/curtailment_control.py)
acts on it when, and only as far as, the config allows. On a stale power price or stale network data
the plan holds: nothing changes until the inputs are fresh again.

The plan goes into `cycle.curtailment` for the sinks: InfluxDB (`curtailment`, `power_price` and
`action` points, models/schema.py), MQTT and Home Assistant, the terminal (`hashfleet advise`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from collector.cycle import Cycle, MinersPart
from collector.layout import SiteLayout
from collector.sources.live_inputs import LiveInputs
from collector.stages import cost_engine
from collector.stages.curtailment_rules import (
    CHANGE, DEFAULT_MODE, HYSTERESIS, MIN_OFF, MIN_ON, SLEEP, STAY, Candidate, Prices, Ramp, Rules, decide_fast, explain, kw_of,
    min_cost_cover, profit_h, values,
)
from collector.stages.efficiency_book import EfficiencyBook, MinerBook
from models import FlatTariff, MinerSample, MinerState, SampleSource, SiteEconomics, TouTariff
from models.base import read_capped
from models.curtailment import CurtailmentConfig, CurtailmentPlan, DrSchedule, DrTarget, MinerAdvice
from models.hardware import nameplate

log = logging.getLogger(__name__)

MAX_INTEGRATION_GAP_S = 600  # a longer gap between cycles (collector down) is not counted in the savings
SAVE_EVERY_S = 300  # the efficiency book is written at most this often (and it is ~100 bytes a miner)
MAX_SCHEDULE_BYTES = 4 * 1024 * 1024
IDLE_SAMPLES = 3  # soft-off readings before a miner's measured idle draw is used (else 0)


def load_schedule(path: Path) -> list[DrTarget]:
    """The demand-response targets in a schedule file; ValueError naming the file and entry."""
    try:
        data = yaml.safe_load(read_capped(path, MAX_SCHEDULE_BYTES))
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"curtailment.dr_schedule {path}: {e}") from None
    try:
        return DrSchedule.model_validate(data).targets
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise ValueError(f"curtailment.dr_schedule {path}: {where}: {problem['msg']}") from None


@dataclass(slots=True)
class _Miner:
    """What the stage keeps of one miner between cycles."""

    key: str  # the plan's option: SLEEP or a mode
    since: float  # unix seconds it took `key`
    always_on: bool = False
    group: str | None = None
    dr: bool = False  # asleep for demand response
    candidate: Candidate | None = None  # its options, refreshed every REFRESH_CYCLES (readings move slowly)
    usual: int = 0  # index of its usual run option in candidate.runs
    refreshed: int = 0  # the cycle number its options were made at
    worth: list[float] | None = None  # profit per hour of each option, at `worth_at`
    worth_at: Prices | None = None
    mode: str = ""  # the mode it was last seen mining in (one of its options)
    advice: MinerAdvice | None = None  # what the plan said of it last cycle, reused while nothing changes
    advice_for: tuple | None = None
    advice_why: str = ""
    decided: tuple | None = None  # (worth, current, decision, candidate): the decision, while its inputs stay
    tally: tuple | None = None  # its share of the plan's figures, while its option and worth stay


REFRESH_CYCLES = 30  # a miner's options (measured efficiency per mode) are remade this often, staggered


class CurtailmentStage:
    """collector.stages.Stage: learns each miner's efficiency as its part goes by, plans at the end."""

    def __init__(self, site: str, economics: SiteEconomics, config: CurtailmentConfig, *,
                 live: LiveInputs | None = None, layout: SiteLayout | None = None, state_path: Path | None = None,
                 forget_after_s: float = 7 * 86400, dr_override: DrTarget | None = None) -> None:
        self.site = site
        self.economics = economics
        self.config = config
        self.live = live or LiveInputs()
        self.layout = layout or SiteLayout({})
        self.state_path = state_path
        self.forget_after_s = forget_after_s
        self.dr_override = dr_override
        self.schedule = load_schedule(config.dr_schedule) if config.dr_schedule is not None else []
        self.rules = Rules(config.strategy, config.strike_usd_kwh, config.hysteresis_usd_kwh,
                           config.min_on_s, config.min_off_s)
        self._margin_rules = Rules()  # savings are money whatever the strategy
        self.book = EfficiencyBook.load(state_path, time.time()) if state_path is not None else EfficiencyBook()
        self._miners: dict[str, _Miner] = {}
        self._plates: dict[tuple[str | None, str], tuple | None] = {}  # (model, mode) -> nameplate runs
        self._ramp = Ramp(config.ramp_kw_per_min) if config.ramp_kw_per_min else None
        self._pue = economics.pue or 1.0
        self._cycle_no = 0
        self._last_ts: float | None = None
        self._last_save = float("-inf")  # the first cycle writes the book: a new file shows at once
        self._last_forget = 0.0
        # this cycle
        self._prices: Prices | None = None
        self._this: list[_Miner] = []
        self._other_kw = 0.0

    # -- the stage ------------------------------------------------------------------------------

    def begin(self, cycle: Cycle) -> None:
        self._this, self._other_kw = [], 0.0
        self._prices = None
        self._cycle_no += 1
        network = cycle.network
        if network is None:
            return
        price = cost_engine.power_price_at(self.economics, cycle.ts, self.live.power_price)
        btc_th_day = cost_engine.btc_per_day(1.0, network.difficulty, cost_engine.network_subsidy_btc(network),
                                             network.fees_btc_per_block) * (1 - self.economics.pool_fee_pct / 100)
        self._btc_th_h = btc_th_day / 24
        self._price_stale = price.stale
        self._network_stale = list(network.stale)
        self._prices = Prices(price.usd_per_kwh, self._btc_th_h * network.btc_price_usd,
                              self.economics.curtailment_credit_usd_mwh / 1000)

    def part(self, cycle: Cycle, part: MinersPart) -> None:
        now = cycle.ts.timestamp()
        warmup, min_samples, cycle_no = self.config.warmup_s, self.config.min_samples, self._cycle_no
        pue = self._pue
        miners, learn, this = self._miners, self.book.learn, self._this
        mining, soft_off, idle, avalon_source = MinerState.MINING, MinerState.SOFT_OFF, MinerState.IDLE, SampleSource.AVALON
        for sample in part.samples:
            avalon = sample.source is avalon_source
            mode = (sample.work_mode or DEFAULT_MODE) if avalon else DEFAULT_MODE
            book = learn(sample, now, mode, warmup)
            state = sample.state
            # Idle counts as asleep on first sight: pyasic reads a sleeping Antminer or Whatsminer as idle.
            if state is mining or state is soft_off or state is idle:
                rec = miners.get(sample.miner)
                if rec is None:
                    always_on, group = self._place(sample)
                    # First refresh now; later ones staggered over REFRESH_CYCLES.
                    rec = _Miner(mode if state is mining else SLEEP, 0.0, always_on, group,
                                 refreshed=cycle_no - len(miners) % REFRESH_CYCLES)
                    if len(miners) < 200_000:
                        miners[sample.miner] = rec
                c = rec.candidate
                stat = book.modes.get(mode)
                if (c is None or cycle_no - rec.refreshed >= REFRESH_CYCLES
                        or (stat is not None and stat.n == min_samples)
                        or (state is mining and mode != rec.mode and not any(r[0] == mode for r in c.runs))):
                    c = self._refresh(rec, sample, book, mode, avalon)
                    if c is None:
                        if sample.power_w is not None:
                            self._other_kw += sample.power_w * pue / 1000
                        continue
                    if rec.refreshed <= cycle_no - REFRESH_CYCLES or rec.refreshed > cycle_no:
                        rec.refreshed = cycle_no
                if state is mining:
                    rec.mode = mode
                c.current = rec.key
                c.held_s = now - rec.since
                this.append(rec)
            elif sample.power_w is not None:
                self._other_kw += sample.power_w * pue / 1000

    def finish(self, cycle: Cycle) -> None:
        prices = self._prices
        if prices is None:
            cycle.curtailment = None
            return
        now = cycle.ts.timestamp()
        cycle.curtailment = self._plan_cycle(cycle, prices, now)
        self._this = []
        self._forget(now)
        self._save(now)

    # -- a miner's options ----------------------------------------------------------------------

    def _refresh(self, rec: _Miner, sample: MinerSample, book: MinerBook, mode: str, avalon: bool) -> Candidate | None:
        """The miner's run options (measured, else nameplate per mode) and its usual mode."""
        config = self.config
        min_samples = config.min_samples
        plates = {p.mode: p for p in config.work_modes.get(sample.model or "", ())} if avalon and config.work_modes else {}
        mining = sample.state is MinerState.MINING
        if not plates and not book.modes and book.idle.n < IDLE_SAMPLES and mining:
            # Nothing measured yet (the first cycles, and the warm-up): its nameplate, made once per model.
            runs = self._nameplate_runs(sample.model, mode)
            if runs is not None:
                rec.usual = 0
                rec.candidate = Candidate(sample.miner, runs, 0.0, rec.key, 0.0, rec.always_on, rec.group)
                rec.worth = None
                return rec.candidate
        usual = book.usual_mode() or (mode if mining else None)
        modes = set(book.modes)
        if avalon:
            modes.update(plates)
        if mining:
            modes.add(mode)
        elif not modes:
            modes.add(mode)
        kw_per_w = self._pue / 1000
        runs = []
        for m in modes:
            stat = book.modes.get(m)
            if stat is not None and stat.n >= min_samples:
                ths, w = stat.ths, stat.w
            elif m in plates:
                ths, w = plates[m].hashrate_ths, plates[m].power_w
            elif m == (usual or mode) and (plate := nameplate(sample.model)) is not None:
                ths, w = plate.hashrate_ths, plate.power_w
            elif stat is not None and stat.n:
                ths, w = stat.ths, stat.w
            elif m == mode and mining and sample.hashrate_ths and sample.power_w:
                ths, w = sample.hashrate_ths, sample.power_w
            else:
                continue
            runs.append((m, ths, w * kw_per_w))
        if not runs:
            return None
        runs.sort()
        sleep_kw = book.idle.w * kw_per_w if book.idle.n >= IDLE_SAMPLES else 0.0
        rec.usual = next((i for i, r in enumerate(runs) if r[0] == usual), None)
        if rec.usual is None:
            rec.usual = max(range(len(runs)), key=lambda i: runs[i][1])
        rec.candidate = Candidate(sample.miner, tuple(runs), sleep_kw, rec.key, 0.0, rec.always_on, rec.group)
        rec.worth = None
        return rec.candidate

    def _nameplate_runs(self, model: str | None, mode: str) -> tuple[tuple[str, float, float], ...] | None:
        key = (model, mode)
        runs = self._plates.get(key, False)
        if runs is False:
            plate = nameplate(model)
            runs = None if plate is None else ((mode, plate.hashrate_ths, plate.power_w * self._pue / 1000),)
            if len(self._plates) < 10_000:
                self._plates[key] = runs
        return runs  # type: ignore[return-value]

    def _place(self, sample: MinerSample) -> tuple[bool, str | None]:
        groups = self.config.groups
        if not groups.always_on and not groups.shed_whole:
            return False, None
        place = self.layout.place(sample)
        names: set[str] = set()
        if place is not None:
            names = {*place.groups, *(n for n in (place.container, place.row, place.rack) if n)}
        return (any(name in names for name in groups.always_on),
                next((name for name in groups.shed_whole if name in names), None))

    # -- the plan -------------------------------------------------------------------------------

    def _plan_cycle(self, cycle: Cycle, prices: Prices, now: float) -> CurtailmentPlan:
        config, rules = self.config, self.rules
        recs = self._this
        stale_reasons = []
        if self._price_stale:
            stale_reasons.append("the power price is the fallback: no fresh live price")
        if self._network_stale:
            stale_reasons.append(f"network data stale: {', '.join(self._network_stale)}")
        stale = bool(stale_reasons)
        self._stale_reason = "; ".join(stale_reasons)
        tariff = self.economics.tariff
        source = "tariff" if isinstance(tariff, (FlatTariff, TouTariff)) else ("fallback" if self._price_stale else "live")
        plan = CurtailmentPlan(self.site, cycle.ts, config.strategy, prices.usd_kwh, source, stale,
                               "; ".join(stale_reasons), prices.revenue_usd_th_h * 24)
        margin = self._margin_rules
        margin_same = rules.strategy == "margin"  # values() depend on the strategy (and strike) alone

        # 1. each miner on its own (a miner whose options, price and state are as last cycle keeps its
        # decision: a hold by a minimum time is the one decision that changes with time alone)
        keys: list[str] = []
        whys: list[str] = []
        indexes: list[int] = []  # of each miner's option (-1: not known: looked up below)
        worths: list[list[float]] = []  # money per option (margin rules), for savings and demand response
        for rec in recs:
            c = rec.candidate
            worth = rec.worth
            if worth is None or rec.worth_at != prices:
                worth = rec.worth = values(c, prices, margin)
                rec.worth_at = prices
            worths.append(worth)
            if stale:
                keys.append(c.current)
                whys.append("stale")
                indexes.append(-1)
                continue
            memo = rec.decided
            if memo is not None and memo[0] is worth and memo[1] == c.current and memo[3] is c and margin_same:
                decision = memo[2]
            else:
                decision = decide_fast(c, worth if margin_same else values(c, prices, rules), rules)
                rec.decided = (worth, c.current, decision, c) if decision[1] in (STAY, HYSTERESIS) else None
            keys.append(decision[0])
            whys.append(decision[1])
            indexes.append(decision[2])
        candidates = [rec.candidate for rec in recs]
        dr_flags = [False] * len(recs)

        # 2. demand response
        target = None if stale else self._dr_target(cycle.ts)
        overhead_kw = (self.economics.overhead_w or 0.0) / 1000
        if target is not None:
            plan.dr_target = target
            self._demand_response(target, recs, keys, whys, dr_flags, worths, prices, overhead_kw, plan)
        else:
            for rec in recs:
                rec.dr = False

        # 3. ramp
        changed = [keys[i] != c.current for i, c in enumerate(candidates)]
        if self._ramp is not None and not stale:
            self._limit_ramp(recs, keys, whys, changed, dr_flags, prices, now, plan)

        # 4. the plan's state, the figures (a miner's share of them kept while its option and worth stay)
        btc_th_h = self._btc_th_h
        price = prices.usd_kwh
        saved_h = energy_kw = btc_h = planned_kw = always_kw = 0.0
        n_sleep = n_run = n_lower = n_held = n_changes = 0
        out_keys = plan.keys
        advice = plan.advice
        held_whys = (HYSTERESIS, MIN_ON, MIN_OFF)
        for i, rec in enumerate(recs):
            c = candidates[i]
            key = keys[i]
            worth = worths[i]
            if changed[i]:
                rec.key, rec.since = key, now
                n_changes += 1
            rec.dr = dr_flags[i]
            out_keys[c.miner] = key
            tally = rec.tally
            if tally is None or tally[0] is not worth or tally[1] != key or tally[2] is not c:
                runs = c.runs
                n = len(runs)
                ki = indexes[i]
                if ki < 0 or (ki == n) != (key == SLEEP) or (ki < n and runs[ki][0] != key):  # changed by DR or ramp
                    ki = n if key == SLEEP else next(j for j in range(n) if runs[j][0] == key)
                ui = rec.usual
                kw_plan = c.sleep_kw if ki == n else runs[ki][2]
                ths_usual, kw_usual = runs[ui][1], runs[ui][2]
                ths_plan = 0.0 if ki == n else runs[ki][1]
                tally = rec.tally = (worth, key, c, ki, ui, n, kw_plan, kw_usual, worth[ki] - worth[ui],
                                     kw_usual - kw_plan, (ths_usual - ths_plan) * btc_th_h)
            ki, ui, n, kw_plan, kw_usual = tally[3], tally[4], tally[5], tally[6], tally[7]
            planned_kw += kw_plan
            always_kw += kw_usual
            saved_h += tally[8]
            energy_kw += tally[9]
            btc_h += tally[10]
            why = whys[i]
            held = why in held_whys or why.startswith("ramp")
            if ki == n:
                n_sleep += 1
            else:
                n_run += 1
                if ki != ui:
                    n_lower += 1
            if held:
                n_held += 1
            if ki != ui or changed[i] or held:
                said = (key, dr_flags[i], c, worth)
                before = rec.advice
                # The same as last cycle (or the change it made, still holding for the same reason): reused.
                if (not changed[i] and before is not None and rec.advice_for == said
                        and (why == rec.advice_why or (why == STAY and rec.advice_why == CHANGE))):
                    before.changed = False
                    advice.append(before)
                    continue
                runs = c.runs
                usual_mode, ths_usual = runs[ui][0], runs[ui][1]
                action = "sleep" if ki == n else "run" if ki == ui else ("lower" if kw_plan < kw_usual else "raise")
                be = ths_usual * prices.revenue_usd_th_h / kw_usual if kw_usual > 0 else None
                rec.advice = MinerAdvice(
                    c.miner, key, action, self._reason(c, key, why, prices, target), kw_plan, kw_usual,
                    None if be is None else be - price, 1000 * kw_usual / self._pue / ths_usual if ths_usual else None,
                    worth[ki] * 24, changed[i], held, dr_flags[i], usual_mode)
                rec.advice_for = said if why not in (MIN_ON, MIN_OFF) and not why.startswith("ramp") else None
                rec.advice_why = why  # (a hold by a minimum time says how long: it is worded anew each cycle)
                advice.append(rec.advice)
        plan.miners_sleep, plan.miners_run, plan.miners_lower = n_sleep, n_run, n_lower
        plan.held, plan.changes = n_held, n_changes
        plan.miners_planned = len(recs)
        plan.planned_kw = planned_kw + self._other_kw + overhead_kw
        plan.always_on_kw = always_kw + self._other_kw + overhead_kw
        plan.saved_usd_day, plan.energy_saved_kwh_day, plan.btc_forgone_day = saved_h * 24, energy_kw * 24, btc_h * 24
        saved = self.book.saved
        gap = None if self._last_ts is None else now - self._last_ts
        if not saved.since:
            saved.since = now
        if gap is not None and 0 < gap <= MAX_INTEGRATION_GAP_S and not stale:
            saved.usd += saved_h * gap / 3600
            saved.kwh += energy_kw * gap / 3600
            saved.btc += btc_h * gap / 3600
        self._last_ts = now
        plan.saved_usd_total, plan.energy_saved_kwh_total, plan.btc_forgone_total = saved.usd, saved.kwh, saved.btc
        plan.saved_since = saved.since
        return plan

    def _reason(self, c: Candidate, key: str, why: str, prices: Prices, target: DrTarget | None) -> str:
        if why == "stale":
            return f"held: {self._stale_reason}"
        if why == "dr":
            return f"demand response: {_describe(target)}" if target is not None else "demand response"
        if why.startswith("ramp:"):
            inner = why.removeprefix("ramp:")
            return (f"deferred by the ramp limit ({self.config.ramp_kw_per_min:g} kW/min): "
                    f"{self._reason(c, c.current if inner != 'dr' else SLEEP, inner, prices, target)}")
        return explain(c, key, why, prices, self.rules)

    def _dr_target(self, at: datetime) -> DrTarget | None:
        for target in (self.dr_override, self.live.curtailment.dr_target, *self.schedule):
            if target is not None and target.active(at):
                return target
        return None

    def _demand_response(self, target: DrTarget, recs: list[_Miner], keys: list[str], whys: list[str],
                         dr_flags: list[bool], worths: list[list[float]], prices: Prices, overhead_kw: float,
                         plan: CurtailmentPlan) -> None:
        # Miners asleep for this target stay asleep while it lasts (no churn between near-equal miners).
        held_shed_kw = 0.0
        for i, rec in enumerate(recs):
            c = rec.candidate
            if rec.dr and not c.always_on:
                if keys[i] != SLEEP:
                    held_shed_kw += kw_of(c, keys[i]) - c.sleep_kw
                keys[i], whys[i], dr_flags[i] = SLEEP, "dr", True
        # Items: each running miner, or a shed-whole group of them; cost = profit lost per hour (margin rules).
        items: list[tuple[float, float]] = []
        members: list[list[int]] = []
        by_group: dict[str, int] = {}
        planned = self._other_kw + overhead_kw
        for i, rec in enumerate(recs):
            c = rec.candidate
            key = keys[i]
            if key == SLEEP:
                planned += c.sleep_kw
                continue
            runs = c.runs
            ki = next(j for j in range(len(runs)) if runs[j][0] == key)
            kw_run = runs[ki][2]
            planned += kw_run
            if c.always_on:
                continue
            worth = worths[i]
            cost = worth[ki] - worth[-1]
            kw = kw_run - c.sleep_kw
            if c.group is not None:
                index = by_group.get(c.group)
                if index is None:
                    by_group[c.group] = len(items)
                    items.append((cost, kw))
                    members.append([i])
                else:
                    items[index] = (items[index][0] + cost, items[index][1] + kw)
                    members[index].append(i)
            elif kw > 0:
                items.append((cost, kw))
                members.append([i])
        if target.limit_kw is not None:
            need = planned - target.limit_kw
        else:
            need = target.shed_kw - held_shed_kw  # type: ignore[operator]
        plan.dr_need_kw = max(0.0, need)
        if need < 0:
            self._release(recs, keys, whys, dr_flags, -need, prices)
            return
        if need == 0:
            return
        cover = min_cost_cover(items, need)
        plan.dr_met, plan.dr_exact = cover.met, cover.exact
        for item in cover.chosen:
            for i in members[item]:
                keys[i], whys[i], dr_flags[i] = SLEEP, "dr", True

    def _release(self, recs: list[_Miner], keys: list[str], whys: list[str], dr_flags: list[bool],
                 spare_kw: float, prices: Prices) -> None:
        """More is shed than the target asks (prices fell, the limit rose): the most valuable DR-held miners
        follow the advice again while the target stays met."""
        held = [i for i, flag in enumerate(dr_flags) if flag]
        margin = self._margin_rules
        best: dict[int, str] = {}
        for i in held:
            c = recs[i].candidate
            best[i] = max((r[0] for r in c.runs), key=lambda m: profit_h(c, m, prices, margin))

        def value_per_kw(i: int) -> float:
            c = recs[i].candidate
            gain = profit_h(c, best[i], prices, margin) - profit_h(c, SLEEP, prices, margin)
            return gain / max(kw_of(c, best[i]), 1e-9)

        held.sort(key=lambda i: -value_per_kw(i))
        for i in held:
            c = recs[i].candidate
            extra = kw_of(c, best[i]) - c.sleep_kw
            if extra > spare_kw:
                continue
            spare_kw -= extra
            dr_flags[i] = False
            keys[i], whys[i], _ = decide_fast(c, values(c, prices, self.rules), self.rules)

    def _limit_ramp(self, recs: list[_Miner], keys: list[str], whys: list[str], changed: list[bool],
                    dr_flags: list[bool], prices: Prices, now: float, plan: CurtailmentPlan) -> None:
        ramp = self._ramp
        assert ramp is not None
        pending = []
        for i, rec in enumerate(recs):
            if not changed[i]:
                continue
            c = rec.candidate
            delta = kw_of(c, keys[i]) - kw_of(c, c.current)
            gain = profit_h(c, keys[i], prices, self.rules) - profit_h(c, c.current, prices, self.rules)
            urgency = 0 if dr_flags[i] else 1 if keys[i] == SLEEP else 2 if c.current != SLEEP else 3
            pending.append((urgency, -gain / max(abs(delta), 1e-9), i, delta))
        if not pending:
            ramp.refill(self._elapsed(now), 0.0)
            return
        pending.sort()
        ramp.refill(self._elapsed(now), max(abs(p[3]) for p in pending))
        for _, _, i, delta in pending:
            if not ramp.spend(delta):
                c = recs[i].candidate
                keys[i] = c.current
                whys[i] = f"ramp:{whys[i]}"
                changed[i] = False
                dr_flags[i] = recs[i].dr and c.current == SLEEP
                plan.deferred += 1

    def _elapsed(self, now: float) -> float:
        return 60.0 if self._last_ts is None else min(MAX_INTEGRATION_GAP_S, max(0.0, now - self._last_ts))

    # -- upkeep ---------------------------------------------------------------------------------

    def _forget(self, now: float) -> None:
        if now - self._last_forget < 3600:
            return
        self._last_forget = now
        self.book.forget(now - self.forget_after_s)
        for miner in [m for m in self._miners if m not in self.book.miners]:
            del self._miners[miner]

    def _save(self, now: float) -> None:
        if self.state_path is None or time.monotonic() - self._last_save < SAVE_EVERY_S:
            return
        self.save()

    def save(self) -> None:
        """Write the efficiency book now (also on stop)."""
        if self.state_path is None:
            return
        self._last_save = time.monotonic()
        try:
            self.book.save(self.state_path)
        except OSError as e:
            log.error("cannot save measured efficiencies to %s: %s", self.state_path, e)

    def close(self) -> None:
        """On stop: keep what was measured."""
        self.save()


def _describe(target: DrTarget) -> str:
    what = f"site at most {target.limit_kw:g} kW" if target.limit_kw is not None else f"shed {target.shed_kw:g} kW"
    until = target.end.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{what} until {until}" + (f" ({target.reason})" if target.reason else "")
