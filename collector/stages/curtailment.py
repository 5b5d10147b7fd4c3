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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from collector.cycle import Cycle, MinersPart
from collector.layout import SiteLayout
from collector.sources.live_inputs import LiveInputs
from collector.stages import cost_engine
from collector.stages.curtailment_rules import (
    DEFAULT_MODE, SLEEP, Candidate, Prices, Ramp, Rules, breakeven_usd_kwh, decide, kw_of, min_cost_cover, profit_h,
)
from collector.stages.efficiency_book import EfficiencyBook, MinerBook
from models import FlatTariff, MinerSample, MinerState, SampleSource, SiteEconomics, TouTariff
from models.base import read_capped
from models.curtailment import ControlMode, CurtailmentConfig, DrSchedule, DrTarget
from models.hardware import nameplate

log = logging.getLogger(__name__)

MAX_INTEGRATION_GAP_S = 600  # a longer gap between cycles (collector down) is not counted in the savings
SAVE_EVERY_S = 300  # the efficiency book is written at most this often (and it is ~100 bytes a miner)
MAX_SCHEDULE_BYTES = 4 * 1024 * 1024
IDLE_SAMPLES = 3  # soft-off readings before a miner's measured idle draw is used (else 0)


@dataclass(slots=True)
class MinerAdvice:
    """One miner the plan does not simply leave running as usual (asleep, another mode), or one that changed."""

    miner: str
    key: str  # SLEEP ("") or the work mode to run in
    action: str  # run | sleep | lower | raise
    reason: str
    kw: float  # facility kW in the planned option
    kw_always_on: float  # facility kW running as usual
    margin_usd_kwh: float | None  # break-even of its usual mode less the price now
    efficiency_j_th: float | None  # measured (or nameplate) in its usual mode
    profit_usd_day: float  # in the planned option, at this price
    changed: bool = False
    held: bool = False  # the rules wanted a change that hysteresis, a minimum time or the ramp held back
    dr: bool = False  # asleep for demand response
    usual: str = ""  # the mode it usually runs in (always-on)


@dataclass(slots=True)
class ActionEvent:
    """One step of one action on a miner (control sink): who, what, when, why, result."""

    ts: datetime
    miner: str
    action: str  # sleep | wake | mode
    result: str  # dry_run | sent | accepted | refused | error | confirmed | unconfirmed | skipped
    reason: str  # why the plan wants it
    detail: str = ""  # the firmware's answer, the error, what was checked
    command: str = ""  # what was (or would have been) sent, e.g. ascset|0,softoff,1795780810
    host: str = ""
    kw: float = 0.0  # facility kW the change moves (negative: less draw)
    attempt: int = 0
    mode: str = ""  # the control mode that made it: dry_run | on


@dataclass
class CurtailmentPlan:
    site: str
    ts: datetime
    strategy: str
    price_usd_kwh: float
    price_source: str  # tariff | live | fallback
    stale: bool  # the plan held: price or network data is stale
    stale_reason: str
    revenue_usd_th_day: float
    keys: dict[str, str] = field(default_factory=dict)  # every planned miner -> SLEEP or its mode
    advice: list[MinerAdvice] = field(default_factory=list)
    miners_planned: int = 0
    miners_run: int = 0
    miners_sleep: int = 0
    miners_lower: int = 0
    changes: int = 0
    held: int = 0
    deferred: int = 0  # changes the ramp limit kept for later cycles
    planned_kw: float = 0.0  # the site's facility kW if the plan is followed (other miners and overhead included)
    always_on_kw: float = 0.0  # ... if every planned miner ran as usual
    dr_target: DrTarget | None = None
    dr_need_kw: float = 0.0
    dr_met: bool = True
    dr_exact: bool = True
    saved_usd_day: float = 0.0  # against always-on, at this price: rates now
    energy_saved_kwh_day: float = 0.0
    btc_forgone_day: float = 0.0
    saved_usd_total: float = 0.0  # integrated since `saved_since`
    energy_saved_kwh_total: float = 0.0
    btc_forgone_total: float = 0.0
    saved_since: float = 0.0
    control_mode: str = ControlMode.OFF.value  # set by the control sink
    killed: bool = False  # a kill switch is on (set by the control sink)
    events: list[ActionEvent] = field(default_factory=list)  # what control decided and learnt this cycle

    @property
    def shed_kw(self) -> float:
        return self.always_on_kw - self.planned_kw


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
        self._plan: dict[str, list] = {}  # miner -> [key, since (unix s), asleep for DR]
        self._places: dict[str, tuple[bool, str | None]] = {}  # miner -> (always on, shed-whole group)
        self._ramp = Ramp(config.ramp_kw_per_min) if config.ramp_kw_per_min else None
        self._pue = economics.pue or 1.0
        self._last_ts: float | None = None
        self._last_save = float("-inf")  # the first cycle writes the book: a new file shows at once
        self._last_forget = 0.0
        # this cycle
        self._prices: Prices | None = None
        self._candidates: list[Candidate] = []
        self._usual: list[str | None] = []
        self._other_kw = 0.0

    # -- the stage ------------------------------------------------------------------------------

    def begin(self, cycle: Cycle) -> None:
        self._candidates, self._usual, self._other_kw = [], [], 0.0
        self._prices = None
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
        warmup = self.config.warmup_s
        pue = self._pue
        for sample in part.samples:
            avalon = sample.source is SampleSource.AVALON
            mode = (sample.work_mode or DEFAULT_MODE) if avalon else DEFAULT_MODE
            book = self.book.learn(sample, now, mode, warmup)
            state = sample.state
            # Idle counts as asleep on first sight: pyasic reads a sleeping Antminer or Whatsminer as idle.
            if state is MinerState.MINING or state is MinerState.SOFT_OFF or state is MinerState.IDLE:
                candidate, usual = self._candidate(sample, book, mode, now, avalon)
                if candidate is not None:
                    self._candidates.append(candidate)
                    self._usual.append(usual)
                    continue
            if sample.power_w is not None:
                self._other_kw += sample.power_w * pue / 1000

    def finish(self, cycle: Cycle) -> None:
        prices = self._prices
        if prices is None:
            cycle.curtailment = None
            return
        now = cycle.ts.timestamp()
        plan = self._plan_cycle(cycle, prices, now)
        cycle.curtailment = plan
        self._candidates, self._usual = [], []
        self._forget(now)
        self._save(now)

    # -- candidates -----------------------------------------------------------------------------

    def _candidate(self, sample: MinerSample, book: MinerBook, mode: str, now: float,
                   avalon: bool) -> tuple[Candidate | None, str | None]:
        config = self.config
        min_samples = config.min_samples
        plates = {p.mode: p for p in config.work_modes.get(sample.model or "", ())} if avalon else {}
        usual = book.usual_mode() or (mode if sample.state is MinerState.MINING else None)
        modes = set(book.modes)
        if avalon:
            modes.update(plates)
        if sample.state is MinerState.MINING:
            modes.add(mode)
        elif not modes:
            modes.add(DEFAULT_MODE if not avalon else mode)
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
            elif m == mode and sample.state is MinerState.MINING and sample.hashrate_ths and sample.power_w:
                ths, w = sample.hashrate_ths, sample.power_w
            else:
                continue
            runs.append((m, ths, w * kw_per_w))
        if not runs:
            return None, None
        runs.sort()
        sleep_kw = book.idle.w * kw_per_w if book.idle.n >= IDLE_SAMPLES else 0.0
        entry = self._plan.get(sample.miner)
        if entry is None:
            current = mode if sample.state is MinerState.MINING else SLEEP
            entry = self._plan[sample.miner] = [current, 0.0, False]
        always_on, group = self._place(sample)
        return Candidate(sample.miner, tuple(runs), sleep_kw, entry[0], now - entry[1], always_on, group), usual

    def _place(self, sample: MinerSample) -> tuple[bool, str | None]:
        known = self._places.get(sample.miner)
        if known is not None:
            return known
        groups = self.config.groups
        place = self.layout.place(sample) if groups.always_on or groups.shed_whole else None
        names = set()
        if place is not None:
            names = {*place.groups, *(n for n in (place.container, place.row, place.rack) if n)}
        always_on = any(name in names for name in groups.always_on)
        group = next((name for name in groups.shed_whole if name in names), None)
        if len(self._places) < 200_000:
            self._places[sample.miner] = (always_on, group)
        return always_on, group

    # -- the plan -------------------------------------------------------------------------------

    def _plan_cycle(self, cycle: Cycle, prices: Prices, now: float) -> CurtailmentPlan:
        config, rules = self.config, self.rules
        candidates = self._candidates
        stale_reasons = []
        if self._price_stale:
            stale_reasons.append("the power price is the fallback: no fresh live price")
        if self._network_stale:
            stale_reasons.append(f"network data stale: {', '.join(self._network_stale)}")
        stale = bool(stale_reasons)
        tariff = self.economics.tariff
        source = "tariff" if isinstance(tariff, (FlatTariff, TouTariff)) else ("fallback" if self._price_stale else "live")
        plan = CurtailmentPlan(self.site, cycle.ts, config.strategy, prices.usd_kwh, source, stale,
                               "; ".join(stale_reasons), prices.revenue_usd_th_h * 24)

        # 1. each miner on its own
        keys: list[str] = []
        reasons: list[str] = []
        held: list[bool] = []
        for c in candidates:
            if stale:
                keys.append(c.current)
                reasons.append(f"held: {plan.stale_reason}")
                held.append(False)
            else:
                d = decide(c, prices, rules)
                keys.append(d.key)
                reasons.append(d.reason)
                held.append(d.held)
        advised = list(keys)  # before demand response

        # 2. demand response
        dr_flags = [False] * len(candidates)
        target = None if stale else self._dr_target(cycle.ts)
        overhead_kw = (self.economics.overhead_w or 0.0) / 1000
        if target is not None:
            plan.dr_target = target
            self._demand_response(target, candidates, keys, reasons, dr_flags, prices, overhead_kw, plan)

        # 3. ramp
        changed = [keys[i] != c.current for i, c in enumerate(candidates)]
        if self._ramp is not None and not stale:
            self._limit_ramp(candidates, keys, reasons, changed, dr_flags, advised, prices, now, plan)

        # 4. the plan's state, the figures
        plan_state = self._plan
        margin = self._margin_rules
        btc_th_h = self._btc_th_h
        saved_h = energy_kw = btc_h = 0.0
        planned_kw = always_kw = 0.0
        out_keys = plan.keys
        for i, c in enumerate(candidates):
            key = keys[i]
            entry = plan_state[c.miner]
            if changed[i]:
                entry[0], entry[1] = key, now
                plan.changes += 1
            entry[2] = dr_flags[i]
            out_keys[c.miner] = key
            usual = self._usual[i]
            if usual is None or not any(r[0] == usual for r in c.runs):
                usual = max(c.runs, key=lambda r: r[1])[0]
            kw_plan, kw_usual = kw_of(c, key), kw_of(c, usual)
            planned_kw += kw_plan
            always_kw += kw_usual
            if key == SLEEP:
                plan.miners_sleep += 1
            else:
                plan.miners_run += 1
                if key != usual:
                    plan.miners_lower += 1
            if held[i]:
                plan.held += 1
            p_plan, p_usual = profit_h(c, key, prices, margin), profit_h(c, usual, prices, margin)
            saved_h += p_plan - p_usual
            energy_kw += kw_usual - kw_plan
            ths_plan = 0.0 if key == SLEEP else next(r[1] for r in c.runs if r[0] == key)
            ths_usual = next(r[1] for r in c.runs if r[0] == usual)
            btc_h += (ths_usual - ths_plan) * btc_th_h
            if key != usual or changed[i] or held[i]:
                be = breakeven_usd_kwh(ths_usual, kw_usual, prices)
                action = "sleep" if key == SLEEP else "run" if key == usual else ("lower" if kw_plan < kw_usual else "raise")
                plan.advice.append(MinerAdvice(
                    c.miner, key, action, reasons[i], kw_plan, kw_usual, None if be is None else be - prices.usd_kwh,
                    1000 * kw_usual / self._pue / ths_usual if ths_usual else None, p_plan * 24, changed[i], held[i],
                    dr_flags[i], usual))
        plan.miners_planned = len(candidates)
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

    def _dr_target(self, at: datetime) -> DrTarget | None:
        for target in (self.dr_override, self.live.curtailment.dr_target, *self.schedule):
            if target is not None and target.active(at):
                return target
        return None

    def _demand_response(self, target: DrTarget, candidates: list[Candidate], keys: list[str], reasons: list[str],
                         dr_flags: list[bool], prices: Prices, overhead_kw: float, plan: CurtailmentPlan) -> None:
        margin = self._margin_rules
        why = f"demand response: {_describe(target)}"
        # Miners asleep for this target stay asleep while it lasts (no churn between near-equal miners).
        held_shed_kw = 0.0
        for i, c in enumerate(candidates):
            if self._plan[c.miner][2] and not c.always_on:
                if keys[i] != SLEEP:
                    held_shed_kw += kw_of(c, keys[i]) - c.sleep_kw
                keys[i], reasons[i], dr_flags[i] = SLEEP, why, True
        planned = sum(kw_of(c, keys[i]) for i, c in enumerate(candidates)) + self._other_kw + overhead_kw
        if target.limit_kw is not None:
            need = planned - target.limit_kw
        else:
            need = target.shed_kw - held_shed_kw  # type: ignore[operator]
        plan.dr_need_kw = max(0.0, need)
        if need < 0:
            self._release(candidates, keys, reasons, dr_flags, -need, prices)
            return
        if need == 0:
            return
        # Items: each running miner, or a shed-whole group of them; cost = profit lost per hour.
        items: list[tuple[float, float]] = []
        members: list[list[int]] = []
        by_group: dict[str, int] = {}
        for i, c in enumerate(candidates):
            key = keys[i]
            if key == SLEEP or c.always_on:
                continue
            cost = profit_h(c, key, prices, margin) - profit_h(c, SLEEP, prices, margin)
            kw = kw_of(c, key) - c.sleep_kw
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
        cover = min_cost_cover(items, need)
        plan.dr_met, plan.dr_exact = cover.met, cover.exact
        for item in cover.chosen:
            for i in members[item]:
                keys[i], reasons[i], dr_flags[i] = SLEEP, why, True

    def _release(self, candidates: list[Candidate], keys: list[str], reasons: list[str], dr_flags: list[bool],
                 spare_kw: float, prices: Prices) -> None:
        """More is shed than the target asks (prices fell, the limit rose): the most valuable DR-held miners
        follow the advice again while the target stays met."""
        held = [i for i, flag in enumerate(dr_flags) if flag]
        margin = self._margin_rules
        best: dict[int, str] = {}
        for i in held:
            c = candidates[i]
            best[i] = max((r[0] for r in c.runs), key=lambda m: profit_h(c, m, prices, margin))
        held.sort(key=lambda i: -(profit_h(candidates[i], best[i], prices, margin)
                                  - profit_h(candidates[i], SLEEP, prices, margin)) / max(kw_of(candidates[i], best[i]), 1e-9))
        for i in held:
            c = candidates[i]
            extra = kw_of(c, best[i]) - c.sleep_kw
            if extra > spare_kw:
                continue
            spare_kw -= extra
            dr_flags[i] = False
            d = decide(c, prices, self.rules)
            keys[i], reasons[i] = d.key, d.reason

    def _limit_ramp(self, candidates: list[Candidate], keys: list[str], reasons: list[str], changed: list[bool],
                    dr_flags: list[bool], advised: list[str], prices: Prices, now: float, plan: CurtailmentPlan) -> None:
        ramp = self._ramp
        assert ramp is not None
        pending = []
        for i, c in enumerate(candidates):
            if not changed[i]:
                continue
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
                c = candidates[i]
                keys[i] = c.current
                reasons[i] = f"deferred by the ramp limit ({self.config.ramp_kw_per_min:g} kW/min): {reasons[i]}"
                changed[i] = False
                dr_flags[i] = self._plan[c.miner][2] and c.current == SLEEP
                plan.deferred += 1

    def _elapsed(self, now: float) -> float:
        return 60.0 if self._last_ts is None else min(MAX_INTEGRATION_GAP_S, max(0.0, now - self._last_ts))

    # -- upkeep ---------------------------------------------------------------------------------

    def _forget(self, now: float) -> None:
        if now - self._last_forget < 3600:
            return
        self._last_forget = now
        self.book.forget(now - self.forget_after_s)
        for miner in [m for m in self._plan if m not in self.book.miners]:
            del self._plan[miner]
            self._places.pop(miner, None)

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

    @property
    def plan_state(self) -> Mapping[str, list]:
        return self._plan


def _describe(target: DrTarget) -> str:
    what = f"site at most {target.limit_kw:g} kW" if target.limit_kw is not None else f"shed {target.shed_kw:g} kW"
    until = target.end.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{what} until {until}" + (f" ({target.reason})" if target.reason else "")
