"""The curtailment advice, every cycle: at the power price in force (tariff, time of use, or a live
feed: cost_engine.power_price_at), which miners to run, which to sleep, which to move to another work
mode, and what following that plan saves against running every miner always on.

Each miner is weighed by its own measured hashrate and power per work mode (collector/stages/
efficiency_book.py: learned from its steady readings, kept across restarts; the nameplate stands in
until a mode has `min_samples` readings). The rules (collector/stages/curtailment_rules.py) add
hysteresis and minimum on/off times so the plan does not flap, demand response sheds the cheapest
kW when a target is active (MQTT, Home Assistant, a schedule file or `hashfleet advise`), and a ramp
limit spreads changes over time.

Each miner is planned as its part goes by (the price, the network and any demand-response target are
known when the cycle begins); demand response, the ramp and the plan's totals come at the end. A miner
whose options and inputs are as last cycle keeps its plan whole, and one running as usual is settled
inline: the cycle's cost is then the miners that change (docs/benchmarks.md, "Curtailment planning";
tests/collector/stages/test_curtailment_shortcuts.py holds every shortcut to the plan made without it).

The plan is advice: this stage changes no miner. The control sink (collector/sinks/curtailment_control.py)
acts on it when, and only as far as, the config allows. On a stale power price or stale network data
the plan holds: nothing changes until the inputs are fresh again. Each miner's poll is compared with the
option the plan had it in: the running savings credit only what the polls show done (`_followed`), and
demand response counts the real draw of a miner control could not move (`_unfollowed`: what control
reported of the last plan, `ActionEvent`s the control sink appends to it).

The plan goes into `cycle.curtailment` for the sinks: InfluxDB (`curtailment`, `power_price` and
`action` points, models/schema.py), MQTT and Home Assistant, the terminal (`hashfleet advise`).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path

import yaml
from pydantic import ValidationError

from collector.bounded_log import BoundedLog
from collector.cycle import Cycle, MinersPart
from collector.layout import Allowlist, SiteLayout, curtailment_groups
from collector.sources.live_inputs import LiveInputs, control_mode, kill_switch
from collector.stages import cost_engine
from collector.stages.cost_stage import MAX_INTEGRATION_GAP_S  # a longer gap (collector down) is not counted in the savings
from collector.stages.curtailment_rules import (
    CHANGE, DEFAULT_MODE, HYSTERESIS, MIN_OFF, MIN_ON, SLEEP, STAY, Candidate, Prices, Ramp, Rules, decide_fast, explain, kw_of,
    min_cost_cover, price_words, profit_h, price_thresholds, shed_items, values, why_sleep, why_wake,
)
from collector.stages.efficiency_book import EfficiencyBook, MinerBook
from models import FlatTariff, MinerSample, MinerState, SampleSource, SiteEconomics, TouTariff
from models.base import read_capped
from models.curtailment import ControlMode, CurtailmentConfig, CurtailmentPlan, DrSchedule, DrTarget, MinerAdvice
from models.hardware import nameplate

log = logging.getLogger(__name__)

SAVE_EVERY_S = 300  # the efficiency book is written at most this often (and it is ~100 bytes a miner)
MAX_SCHEDULE_BYTES = 4 * 1024 * 1024
IDLE_SAMPLES = 3  # soft-off readings before a miner's measured idle draw is used (else 0)
# control's results (ActionEvent) for a change it did not get, or one an operator took back (left alone for its
# backoff): the miner stays as the poll shows it, and demand response counts it there
GAVE_UP = frozenset(("unconfirmed", "refused", "taken_back"))
# A limit the polls show the site over is `dr_met` false from the poll after this many: the cycle a target
# begins, and the one that shows its commands' lag, are over by nature.
POLLS_TO_MEET = 2
# Sources that read a sleeping miner as idle: a native reader tells a sleep (soft_off) from a stop in a fault.
IDLE_MAY_BE_ASLEEP = frozenset((SampleSource.PYASIC, SampleSource.MQTT))


def load_schedule(path: Path, given_as: str | None = None) -> list[DrTarget]:
    """The demand-response targets in a schedule file; ValueError naming the file as it was given
    (`given_as`, e.g. a command's option; by default the config's field) and the entry."""
    given_as = given_as or f"curtailment.dr_schedule {path}"
    try:
        data = yaml.safe_load(read_capped(path, MAX_SCHEDULE_BYTES))
    except OSError as e:  # (its filename is a file descriptor's number when reading fails: not shown)
        raise ValueError(f"{given_as}: {e.strerror or e}") from None
    except (ValueError, yaml.YAMLError) as e:
        raise ValueError(f"{given_as}: {e}") from None
    try:
        targets = DrSchedule.model_validate(data).targets
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise ValueError(f"{given_as}: {where}: {problem['msg']}") from None
    now = datetime.now(timezone.utc)
    for i, target in enumerate(targets):
        if (too_long := target.too_long_from(now)) is not None:
            raise ValueError(f"{given_as}: targets.{i}: {too_long}")
    return targets


@dataclass(slots=True)
class _Miner:
    """What the stage keeps of one miner between cycles, and its plan this cycle."""

    key: str  # the plan's option: SLEEP or a mode
    since: float  # unix seconds it took `key`
    always_on: bool = False
    group: str | None = None
    dr: bool = False  # asleep for demand response (the latest plan)
    was_dr: bool = False  # ... in the plan before (a change the ramp defers keeps it)
    candidate: Candidate | None = None  # its options, refreshed every REFRESH_CYCLES (readings move slowly)
    usual: int = 0  # index of its usual run option in candidate.runs
    refreshed: int = 0  # the cycle number its options were made at
    worth: list[float] | None = None  # profit per hour of each option, at `worth_at`
    worth_at: Prices | None = None
    # one run option, margin rules: the power prices that decide it (curtailment_rules.price_thresholds)
    run_below: float = float("nan")
    sleep_above: float = float("nan")
    wake_below: float = float("nan")
    run_below_at: object = None  # the revenue epoch they were worked out in
    mode: str = ""  # the mode it was last seen mining in (one of its options)
    # its plan this cycle
    pos: int = 0  # its place in the cycle's lists
    plan: str = ""  # the option planned
    why: str = ""  # STAY, CHANGE, HYSTERESIS, MIN_ON, MIN_OFF, "dr", "stale", "ramp:<why>"
    index: int = 0  # of the planned option in candidate.runs (len(runs): sleep)
    share: tuple = ()  # its part of the plan's figures (KW_PLAN ... DR_HELD_KW below)
    usual_share: tuple = ()  # its share running as usual (its options')
    advised: bool = False  # the plan reports it (not running as usual, or it changed or is held)
    advice: MinerAdvice | None = None  # what the plan last said of it
    # kept while its inputs stay: the plan is reused whole in a cycle of the same inputs (`memo` is the
    # cycle's epoch; new options clear it), unless a minimum time or the ramp held it (worded each cycle)
    memo: object = None
    decided_with: list[float] | None = None  # the worth its plan's STAY or HYSTERESIS was decided at
    advice_for: tuple | None = None
    advice_c: Candidate | None = None  # the options `advice` was made for (its kW and modes are theirs)
    advice_why: str = ""
    wants: str = ""  # the option a change the ramp deferred was to (its advice says why it was wanted)
    deferred: tuple | None = None  # (epoch, options, wants, why, dr) of its deferral: its share, its index
    deferred_share: tuple = ()
    deferred_index: int = 0
    # a change the rules want and the ramp deferred, kept while the epoch lasts: (plan, index, share, the
    # ramp's order of it) as planned before the ramp, restored in `part` without deciding it again
    waiting: tuple | None = None
    waiting_in: object = None  # the epoch it waits in
    # a one-mode miner's change (to `wants`) deferred as its part went by (no target active): it stands in
    # `part` while the epoch lasts and it waited last cycle (its place in the ramp's order: `_waiting`)
    queued: tuple | None = None  # its entry in the ramp's order (it holds the miner: dropped when it goes)
    queued_in: object = None  # the epoch it waits in
    queued_no: int = 0  # the cycle it last waited in
    # the option its poll showed when that was not the one the plan had it in (`seen_in`: that cycle's number)
    seen: str = ""
    seen_in: int = 0
    polled_w: float | None = None  # its power as this cycle's poll shows it, W (for one seen off plan: there)
    balked: bool = False  # control reported its change unconfirmed, refused or taken back, and it has not followed since
    controllable: bool = True  # on control's allowlist (as of its last refresh)


REFRESH_CYCLES = 30  # a miner's options (measured efficiency per mode) are remade this often, staggered
# Miners whose measured efficiency replaces the nameplate the cycle it has `min_samples` readings; a
# fleet that started together reaches it at once, and the rest switch at their staggered refresh.
PROMOTIONS_PER_CYCLE = 500
# Why a plan holds a miner where it is though the rules want a change: hysteresis, a minimum time, the
# ramp deferring a change (`ramp:` and why the change was planned).
RAMP_CHANGE = f"ramp:{CHANGE}"  # a change the rules wanted, deferred by the ramp (and "ramp:dr": demand response's)
RAMPED = frozenset((RAMP_CHANGE, "ramp:dr"))
HELD = frozenset((HYSTERESIS, MIN_ON, MIN_OFF, *RAMPED))
_RAMP_WHY = {CHANGE: RAMP_CHANGE, "dr": "ramp:dr"}  # why a change the ramp deferred was planned
NOT_PACED = 4  # the ramp's order from here on (_ramp_order): advice nobody here carries out, let through unpaced
ASLEEP_WORDS = "asleep"  # the key of a sleeping miner's words in `_texts` (the same for every one)
TIMED = frozenset((MIN_ON, MIN_OFF))  # holds whose words say how long they have held: worded anew each cycle
# A miner's share of the plan's figures (_Miner.share): kW planned, kW as usual, profit per hour saved,
# kW saved, BTC per hour forgone, then counts: asleep, running, in a lower mode, held, changed, then the
# kW demand response holds shed.
KW_PLAN, KW_USUAL, SAVED_H, ENERGY_KW, BTC_H, ASLEEP, RUNNING, LOWER, HELD_N, CHANGED, DR_HELD_KW = range(11)


class CurtailmentStage:
    """collector.stages.Stage: learns each miner's efficiency and plans it as its part goes by (the
    price, the network and any demand-response target are known when the cycle begins); demand
    response, the ramp and the plan's totals at the end."""

    def __init__(self, site: str, economics: SiteEconomics, config: CurtailmentConfig, *,
                 live: LiveInputs | None = None, layout: SiteLayout | None = None, state_path: Path | None = None,
                 forget_after_s: float = 7 * 86400, dr_override: DrTarget | None = None) -> None:
        self.site = site
        self.economics = economics
        self.config = config
        self.live = live or LiveInputs()
        self.layout = layout or SiteLayout({})
        self.allowlist = Allowlist(config.control.allow, self.layout)
        self.state_path = state_path
        self.forget_after_s = forget_after_s
        self.dr_override = dr_override
        self.schedule = load_schedule(config.dr_schedule) if config.dr_schedule is not None else []
        for model in config.work_modes:
            if not _avalon_model(model):
                log.warning("curtailment.work_modes[%r]: not an Avalon model; work modes are planned and changed on "
                            "Avalons only (other makes run one mode: docs/curtailment.md), so these are ignored", model)
        self.rules = Rules(config.strategy, config.strike_usd_kwh, config.hysteresis_usd_kwh,
                           config.min_on_s, config.min_off_s)
        self._margin_rules = Rules()  # savings are money whatever the strategy
        self._margin_same = self.rules.strategy == "margin"  # values() depend on the strategy (and strike) alone
        self._keep_deferrals = True  # a deferral at the same inputs as last cycle stands (_limit_ramp)
        self._deferred_words = f"deferred by the ramp limit ({config.ramp_kw_per_min or 0:g} kW/min): "
        self.book = EfficiencyBook.load(state_path, time.time()) if state_path is not None else EfficiencyBook()
        self._miners: dict[str, _Miner] = {}
        self._failed: set[str] = set()  # miners whose planning raised (logged once each)
        self._plates: dict[tuple[str | None, str], tuple | None] = {}  # (model, mode) -> nameplate runs
        self._ramp = Ramp(config.ramp_kw_per_min) if config.ramp_kw_per_min else None
        self._pue = economics.pue or 1.0
        self._cycle_no = 0
        self._last_ts: float | None = None
        self._last_save = float("-inf")  # the first cycle writes the book: a new file shows at once
        self._last_forget = 0.0
        self._inputs: tuple | None = None  # (prices, target, stale reason, control acts) of the last epoch
        self._epoch: object = object()  # a new one whenever those change: every miner is planned anew
        self._texts: dict[str, str] = {}  # reasons worded alike for every miner, this epoch (_reason)
        self._rates: tuple | None = None  # (revenue per TH-hour, credit per kWh) of the last revenue epoch
        self._rates_epoch: object = object()  # a new one whenever those change (network data: minutes)
        # this cycle
        self._prices: Prices | None = None
        self._target: DrTarget | None = None
        self._targets: tuple[DrTarget, ...] = ()
        self._stale_reason = ""
        self._price_words = ""
        self._drawn_w = 0.0  # the planned miners' draw as polled this cycle, W
        self._polled_over = 0  # cycles in a row the polls showed the site over a demand-response limit
        self._last_plan: CurtailmentPlan | None = None  # (control's events on it: `begin`)
        self._control_acts = False  # control is dry_run or on this cycle: only its allowlist moves
        self._sending: bool | None = None  # control sends this cycle (on, no kill switch); None before the first
        self._rebase = False  # control sends again after cycles it did not: the plan starts from the polls (`part`)
        self._unmet_log = BoundedLog(log, every_s=600)  # a target not met: said, not only in the plan's fields
        self._taken_up = [0, 0]  # miners whose saved hold was taken up this cycle (`_take_up`), of them for a target
        self._btc_th_h = 0.0
        self._promotions = 0
        self._this: list[_Miner] = []
        self._shares: list[tuple] = []
        self._keys: dict[str, str] = {}
        self._other_kw = 0.0
        self._queue: list[tuple] = []  # the changes deferred in `part` this cycle, in the ramp's order's terms
        self._waiting: list[tuple] = []  # ... the ones still waiting after the last cycle, in the ramp's order
        self._off: list[_Miner] = []  # the miners this cycle's polls show otherwise than the plan had them

    # -- the stage ------------------------------------------------------------------------------

    def begin(self, cycle: Cycle) -> None:
        now = cycle.ts.timestamp()
        if self._last_ts is not None and now < self._last_ts:
            self._clock_went_back(self._last_ts - now)
            self._last_ts = now
        self._this, self._shares, self._keys, self._other_kw, self._queue, self._off = [], [], {}, 0.0, [], []
        self._prices, self._targets, self._drawn_w = None, (), 0.0
        mode = control_mode(self.config.control, self.live.curtailment)
        self._control_acts = mode is not ControlMode.OFF
        sending = mode is ControlMode.ON and kill_switch(self.config.control, self.live.curtailment) is None
        self._rebase, self._sending = sending and self._sending is False, sending
        self._cycle_no += 1
        self._promotions = PROMOTIONS_PER_CYCLE
        network = cycle.network
        if network is None:
            return
        price = cost_engine.power_price_at(self.economics, cycle.ts, self.live.power_price)
        btc_th_day = cost_engine.btc_per_day(1.0, network.difficulty, cost_engine.network_subsidy_btc(network),
                                             network.fees_btc_per_block) * (1 - self.economics.pool_fee_pct / 100)
        self._btc_th_h = btc_th_day / 24
        self._price_stale = price.stale
        stale_reasons = []
        if price.stale:
            stale_reasons.append("the power price is the fallback: no fresh live price")
        if network.stale:
            stale_reasons.append(f"network data stale: {', '.join(network.stale)}")
        self._stale_reason = "; ".join(stale_reasons)
        prices = Prices(price.usd_per_kwh, self._btc_th_h * network.btc_price_usd,
                        self.economics.curtailment_credit_usd_mwh / 1000)
        targets = () if stale_reasons else self._dr_targets(cycle.ts)
        target = targets[0] if targets else None  # (with two: the limit; its words and held miners)
        last = self._inputs
        if last is not None and last[0] == prices:
            prices = last[0]  # the same object: a miner's figures at these prices are known by identity
        rates = (prices.revenue_usd_th_h, prices.credit_usd_kwh)
        if rates != self._rates:
            self._rates, self._rates_epoch = rates, object()
        if (last is None or last[0] is not prices or last[1] != targets or last[2] != self._stale_reason
                or last[3] != self._control_acts or self._rebase):  # (control's switch moves the ramp's order)
            self._inputs = (prices, targets, self._stale_reason, self._control_acts)
            self._epoch = object()
            self._texts = {}
        self._prices, self._target, self._targets = prices, target, targets
        self._price_words = price_words(prices)
        # What control reported of last cycle's plan (its sink appends its events to it): a change it gave up on.
        last, self._last_plan = self._last_plan, None
        if last is not None:
            for event in last.events:
                if event.result in GAVE_UP and event.action in ("sleep", "mode"):
                    rec = self._miners.get(event.miner)
                    if rec is not None:
                        rec.balked = True

    def part(self, cycle: Cycle, part: MinersPart) -> None:
        # One pass a miner, inline: this loop runs 10,000 times a cycle (bench.curtailment).
        now = cycle.ts.timestamp()
        warmup, min_samples, cycle_no = self.config.warmup_s, self.config.min_samples, self._cycle_no
        pue = self._pue
        prices, epoch, rules, margin_rules = self._prices, self._epoch, self.rules, self._margin_rules
        price, rates = (prices.usd_kwh if prices is not None else 0.0), self._rates_epoch
        plain = not self._stale_reason and self._margin_same  # (else the general path: _plan_miner)
        # A one-mode miner's change the ramp will weigh is deferred at once (with a target, demand response
        # sees it as the change first: it comes before the ramp).
        queue_changes = self._ramp is not None and self._target is None
        min_on, min_off = rules.min_on_s, rules.min_off_s
        miners, learn, this, shares, keys, off = self._miners, self.book.learn, self._this, self._shares, self._keys, self._off
        rebase = self._rebase
        drawn_w = 0.0
        mining, soft_off, idle, avalon_source = MinerState.MINING, MinerState.SOFT_OFF, MinerState.IDLE, SampleSource.AVALON
        idle_may_sleep = IDLE_MAY_BE_ASLEEP
        for sample in part.samples:
            try:
                avalon = sample.source is avalon_source
                mode = (sample.work_mode or DEFAULT_MODE) if avalon else DEFAULT_MODE
                book = learn(sample, now, mode, warmup)
                state = sample.state
                # Idle counts as asleep where the source cannot tell (pyasic reads a sleeping Antminer or
                # Whatsminer as idle); a native reader says soft_off for a sleep: its idle is a stop (a fault).
                if state is mining or state is soft_off or (state is idle and sample.source in idle_may_sleep):
                    rec = miners.get(sample.miner)
                    if rec is None:
                        always_on, group = self._place(sample)
                        # First refresh now; later ones staggered over REFRESH_CYCLES.
                        rec = _Miner(mode if state is mining else SLEEP, 0.0, always_on, group,
                                     refreshed=cycle_no - len(miners) % REFRESH_CYCLES)
                        if self.book.plans:
                            self._take_up(rec, sample.miner, now)
                        if len(miners) < 200_000:
                            miners[sample.miner] = rec
                    c = rec.candidate
                    refresh = (c is None or cycle_no - rec.refreshed >= REFRESH_CYCLES
                               or (state is mining and mode != rec.mode and not any(r[0] == mode for r in c.runs)))
                    if not refresh and self._promotions:
                        stat = book.modes.get(mode)
                        if stat is not None and stat.n == min_samples:  # measured now replaces the nameplate
                            self._promotions -= 1
                            refresh = True
                    if refresh:
                        c = self._refresh(rec, sample, book, mode, avalon)
                        if c is None:
                            if sample.power_w is not None:
                                self._other_kw += sample.power_w * pue / 1000
                            continue
                        if rec.refreshed <= cycle_no - REFRESH_CYCLES or rec.refreshed > cycle_no:
                            rec.refreshed = cycle_no
                        rec.controllable = self.allowlist.allows(sample)
                        if rec.key != SLEEP and not any(r[0] == rec.key for r in c.runs):
                            # The mode the plan had it in is no longer one of its options (its mode was changed
                            # by hand during the warm-up): the plan starts again from what it is doing.
                            rec.key, rec.since = (mode if state is mining else SLEEP), now
                        rec.usual_share = (c.runs[rec.usual][2], c.runs[rec.usual][2], 0.0, 0.0, 0.0, False, True, False, False,
                                           False, 0.0)
                        rec.memo = rec.run_below_at = rec.waiting_in = rec.queued_in = rec.queued = None  # new options: planned anew
                    if state is mining:
                        rec.mode = mode
                    current = c.current = rec.key
                    c.held_s = now - rec.since
                    rec.pos = len(this)
                    this.append(rec)
                    if prices is None:
                        continue
                    w = rec.polled_w = sample.power_w
                    if w is not None:
                        drawn_w += w
                    if (mode if state is mining else SLEEP) != current:  # not as the plan had it (_followed)
                        if rebase and rec.controllable and not rec.balked:
                            # Control sends again (on, after off, dry_run or a kill switch): what the plan moved
                            # while nothing was sent is planned anew from where the miner is, through the ramp;
                            # else the whole backlog was sent at once (trial ZA: 17.7 kW in 6 s at 12 kW/min).
                            current = c.current = rec.key = mode if state is mining else SLEEP
                        else:
                            rec.seen, rec.seen_in = (mode if state is mining else SLEEP), cycle_no
                            off.append(rec)
                    elif rec.balked:  # it follows now
                        rec.balked = False
                    rec.was_dr = rec.dr
                    if rec.memo is epoch and rec.plan == current:  # as last cycle (its options too: see refresh)
                        shares.append(rec.share)
                        keys[c.miner] = current
                        continue
                    if rec.queued_in is epoch and rec.queued_no == cycle_no - 1:
                        # deferred in its part, waiting as last cycle: it stands whole (the ramp may let it go)
                        rec.queued_no = cycle_no
                        shares.append(rec.share)
                        keys[c.miner] = current
                        continue
                    if rec.waiting_in is epoch:  # a change the ramp deferred, wanted as last cycle (a minimum time only grows)
                        key, index, share, _ = rec.waiting  # type: ignore[misc]
                        rec.plan, rec.why, rec.index, rec.dr, rec.advised = key, CHANGE, index, False, True
                        rec.share = share
                        shares.append(share)
                        keys[c.miner] = key
                        continue
                    shares.append(())
                    decided = False
                    if plain and not rec.was_dr:  # fresh inputs, margin rules, not held for a target
                        if rec.run_below_at is not rates:
                            rec.run_below, rec.sleep_above, rec.wake_below = price_thresholds(c, prices, rules)
                            rec.run_below_at = rates
                        # A miner with one run option is decided by its thresholds, away from them (NaN: never).
                        if current:
                            if price < rec.run_below:  # running as usual, and the price says run
                                rec.plan, rec.why, rec.index, rec.dr, rec.advised = current, STAY, 0, False, False
                                rec.share = shares[-1] = rec.usual_share
                                keys[c.miner] = current
                                rec.memo, rec.decided_with = epoch, None
                                continue
                            if price > rec.sleep_above and c.held_s >= min_on:
                                key, why, index, decided = SLEEP, CHANGE, 1, True
                        elif price > rec.run_below:
                            key, why, index, decided = current, STAY, 1, True
                        elif price < rec.wake_below and c.held_s >= min_off:
                            key, why, index, decided = c.runs[0][0], CHANGE, 0, True
                    worth = rec.worth
                    if worth is None or rec.worth_at is not prices:
                        worth = rec.worth = values(c, prices, margin_rules)
                        rec.worth_at = prices
                    if plain and not rec.was_dr:
                        if not decided:  # (else by its thresholds)
                            if rec.decided_with is worth and rec.plan == current:  # the rules' last word stands
                                key, why, index = current, rec.why, rec.index
                            else:
                                key, why, index = decide_fast(c, worth, rules)
                        if index == rec.usual and why == STAY:  # running as usual: the commonest plan
                            rec.plan, rec.why, rec.index, rec.dr, rec.advised = current, STAY, index, False, False
                            rec.share = shares[-1] = rec.usual_share
                            keys[c.miner] = current
                        elif len(c.runs) == 1 and not c.always_on and (why == CHANGE or (
                                why == STAY and rec.advice_c is c and (rec.advice_why == STAY or (
                                    # (the first cycle after its sleep at another price: a change's words stay
                                    # only while the price does)
                                    rec.advice_why == CHANGE and rec.advice_for is not None and rec.advice_for[3] != worth)))):
                            if why == CHANGE and queue_changes:
                                self._queue_change(rec, c, key, worth)
                            else:
                                self._settle_one_run(rec, c, key, why, worth)
                        else:
                            self._settle(rec, c, key, why, index, False)
                        if why == STAY or why == HYSTERESIS:
                            rec.memo, rec.decided_with = epoch, worth
                        else:  # (a minimum time ends with time alone)
                            rec.memo = rec.decided_with = None
                    else:
                        self._plan_miner(rec, c, current)
                elif sample.power_w is not None:
                    self._other_kw += sample.power_w * pue / 1000
            except Exception:  # a bug or an input no check caught: this miner's plan, never the others'
                self._miner_failed(sample.miner)
        self._drawn_w += drawn_w

    def _take_up(self, rec: _Miner, miner: str, now: float) -> None:
        """A miner's first reading since a start: the plan's hold on it as the last run saved it (the option,
        since when, held for demand response), when its poll shows it still in that option. Else (a restart
        mid-window: trial Z) the miners slept for a target were woken as new and others shed in their place,
        and a minimum time counted from nothing."""
        kept = self.book.plans.pop(miner, None)
        if kept is not None and kept[0] == rec.key:
            rec.since, rec.dr = min(kept[1], now), kept[2]
            self._taken_up[0] += 1
            self._taken_up[1] += kept[2]

    def _miner_failed(self, miner: str) -> None:
        """One miner's planning raised: it is left out of this cycle's plan (nothing acts on it) and planned
        anew from its next reading; the cycle's lists stay aligned for the others. Logged once a miner."""
        this, shares = self._this, self._shares
        rec = self._miners.pop(miner, None)
        if rec is not None:
            rec.queued = rec.queued_in = rec.waiting_in = None  # (its place in the ramp's order is void)
            if this and this[-1] is rec:
                this.pop()
            if self._off and self._off[-1] is rec:
                self._off.pop()
            if self._queue and self._queue[-1][4] is rec:
                self._queue.pop()
        del shares[len(this):]
        self._keys.pop(miner, None)
        if miner not in self._failed and len(self._failed) < 10_000:
            self._failed.add(miner)
            log.exception("%s: curtailment planning failed; this miner is left out of the plan (logged once)", miner)

    def finish(self, cycle: Cycle) -> None:
        prices = self._prices
        if prices is None:
            cycle.curtailment = None
            return
        now = cycle.ts.timestamp()
        cycle.curtailment = self._last_plan = self._plan(cycle, prices, now)
        if self._taken_up[0]:
            log.info("curtailment: the plan's hold on %d miner(s) taken up as saved before the start (%d asleep for "
                     "demand response)", *self._taken_up)
            self._taken_up = [0, 0]
        self._this, self._shares, self._keys = [], [], {}
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
            if runs is not None and sample.power_w is None:
                runs = _at_its_hashrate(runs, sample)
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
            elif m == (usual or mode) and (plate := nameplate(sample.model)) is not None and plate.hashrate_ths \
                    and plate.power_w:  # (some nameplates publish neither: Nano 3, the 7xx-9xx modules)
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
            runs = None if plate is None or not plate.hashrate_ths or not plate.power_w else (
                (mode, plate.hashrate_ths, plate.power_w * self._pue / 1000),)
            if len(self._plates) < 10_000:
                self._plates[key] = runs
        return runs  # type: ignore[return-value]

    def _place(self, sample: MinerSample) -> tuple[bool, str | None]:
        groups = self.config.groups
        if not groups.always_on and not groups.shed_whole:
            return False, None
        return curtailment_groups(self.layout.place(sample), groups.always_on, groups.shed_whole)

    # -- the plan -------------------------------------------------------------------------------

    def _plan_miner(self, rec: _Miner, c: Candidate, current: str) -> None:
        """The rules' decision for one miner the part's loop does not settle inline (stale inputs, the strike
        strategy, held asleep while a demand-response target it was shed for lasts), its figures and
        advice. Its worth at this cycle's prices is known."""
        target, dr, dr_kw = self._target, False, 0.0
        if self._stale_reason:
            key, why, index = current, "stale", -1
            timeless = True
        else:
            rules = self.rules
            worth = rec.worth if self._margin_same else values(c, self._prices, rules)  # type: ignore[arg-type]
            key, why, index = decide_fast(c, worth, rules)  # type: ignore[arg-type]
            timeless = why == STAY or why == HYSTERESIS  # a hold by a minimum time ends with time alone
            if target is not None and rec.was_dr and not c.always_on:  # stays shed while the target lasts
                if key != SLEEP:
                    dr_kw = kw_of(c, key) - c.sleep_kw
                key, why, index, dr = SLEEP, "dr", len(c.runs), True
        self._settle(rec, c, key, why, index, dr, dr_kw)
        rec.memo = self._epoch if timeless else None
        rec.decided_with = None

    def _settle(self, rec: _Miner, c: Candidate, key: str, why: str, index: int, dr: bool, dr_kw: float = 0.0) -> None:
        """One miner's plan this cycle: its option, its share of the figures, its advice (reused while the
        same; a hold by a minimum time says how long, so it is worded anew each cycle)."""
        runs = c.runs
        n = len(runs)
        if index < 0:  # not known (stale inputs, demand response, the ramp): looked up
            index = n if key == SLEEP else _index(runs, key)
            if index < 0:
                index = rec.usual
        worth = self._worth(rec, c)
        ui = rec.usual
        _, ths_usual, kw_usual = runs[ui]
        kw_plan, ths_plan = (c.sleep_kw, 0.0) if index == n else (runs[index][2], runs[index][1])
        changed = key != c.current
        held = why in HELD
        rec.plan, rec.why, rec.index, rec.dr = key, why, index, dr
        rec.share = self._shares[rec.pos] = (
            kw_plan, kw_usual, worth[index] - worth[ui], kw_usual - kw_plan, (ths_usual - ths_plan) * self._btc_th_h,
            index == n, index < n, index < n and index != ui, held, changed, dr_kw)
        self._keys[c.miner] = key
        rec.advised = index != ui or changed or held
        if rec.advised and not (changed and self._ramp is not None and not self._stale_reason):
            # (a change's advice once the ramp lets it: _limit_ramp)
            self._advise(rec, c, key, why, index, dr)

    def _advise(self, rec: _Miner, c: Candidate, key: str, why: str, index: int, dr: bool) -> None:
        """What the plan says of one miner (its advice, reused while the same)."""
        runs = c.runs
        n = len(runs)
        worth = rec.worth
        prices = self._prices
        assert worth is not None and prices is not None
        ui = rec.usual
        _, ths_usual, kw_usual = runs[ui]
        kw_plan = c.sleep_kw if index == n else runs[index][2]
        changed = key != c.current
        held = why in HELD
        said = (key, dr, c, worth)
        before = rec.advice
        if (not changed and before is not None and rec.advice_for == said
                and (why == rec.advice_why or (why == STAY and rec.advice_why == CHANGE))):
            before.changed = False  # the same as last cycle, or the change it made still holding
            advice = before
        else:
            price = prices.usd_kwh
            be = ths_usual * prices.revenue_usd_th_h / kw_usual if kw_usual > 0 else None
            reason = self._reason(c, rec.wants if why in RAMPED else key, why, prices, self._target)
            if not changed and before is not None and rec.advice_c is c and before.key == key:
                # The same option of the same options, at new prices or for a new reason: what those move.
                before.reason, before.margin_usd_kwh, before.profit_usd_day = (
                    reason, None if be is None else be - price, worth[index] * 24)
                before.changed, before.held, before.dr = False, held, dr
                advice = before
            else:
                action = "sleep" if index == n else "run" if index == ui else ("lower" if kw_plan < kw_usual else "raise")
                advice = MinerAdvice(
                    c.miner, key, action, reason, kw_plan, kw_usual, None if be is None else be - price,
                    1000 * kw_usual / self._pue / ths_usual if ths_usual else None, worth[index] * 24, changed, held, dr,
                    runs[ui][0])
                rec.advice_c = c
            rec.advice_for = said if why not in TIMED else None
            rec.advice_why = why
        rec.advice = advice

    def _settle_one_run(self, rec: _Miner, c: Candidate, key: str, why: str, worth: list[float]) -> None:
        """`_settle` in fewer steps for the commonest advised plans of a miner with one run option: asleep and
        staying asleep (its advice made before, its figures moved with the price), or changing between
        running and asleep (every miner of a fleet may in one cycle: a price spike and its end; with a ramp
        limit and no target, the change is deferred at once instead: `_queue_change`)."""
        changed = why == CHANGE
        index = 1 if key == SLEEP else 0
        run = c.runs[0]
        mode, ths, kw = run
        prices = self._prices
        assert prices is not None
        revenue, price = prices.revenue_usd_th_h, prices.usd_kwh
        rec.share = self._shares[rec.pos] = _one_run_share(c, worth, index, self._btc_th_h, False, changed)
        rec.plan, rec.why, rec.index, rec.dr, rec.advised = key, why, index, False, True
        self._keys[c.miner] = key
        if changed and self._ramp is not None:
            return  # advised once the ramp lets it (_limit_ramp)
        if changed:
            words = (why_sleep if key == SLEEP else why_wake)(self._price_words, run, revenue)
            rec.advice = MinerAdvice(
                c.miner, key, "sleep" if key == SLEEP else "run", words, c.sleep_kw if key == SLEEP else kw, kw,
                ths * revenue / kw - price, 1000 * kw / self._pue / ths if ths else None, worth[index] * 24, True,
                False, False, mode)
            rec.advice_c = c
        else:  # asleep as its advice said: the words of this price, the figures moved with it
            advice = rec.advice
            assert advice is not None and advice.key == SLEEP
            advice.reason = self._texts.get(ASLEEP_WORDS) or self._reason(c, key, why, prices, self._target)
            advice.margin_usd_kwh, advice.profit_usd_day = ths * revenue / kw - price, worth[1] * 24
            advice.changed = False
        rec.advice_for = (key, False, c, worth)
        rec.advice_why = why

    def _queue_change(self, rec: _Miner, c: Candidate, key: str, worth: list[float]) -> None:
        """A one-mode miner's change the ramp will weigh, deferred now (most wait: a spike under a ramp
        limit has every miner wanting it for many cycles); `_limit_ramp` lets the first ones go."""
        # Its place in the ramp's order as `_limit_ramp` makes it for a change planned before the ramp.
        index = 1 if key == SLEEP else 0
        delta = (c.sleep_kw - c.runs[0][2]) if key == SLEEP else (c.runs[0][2] - c.sleep_kw)
        urgency, ratio = _ramp_order(False, key, c.current, worth[index] - worth[1 - index], delta,
                                     self._control_acts and not rec.controllable)
        rec.wants = key
        self._defer_one_run(rec, c, worth)
        rec.queued = entry = (urgency, ratio, rec.pos, delta, rec)
        rec.queued_in, rec.queued_no = self._epoch, self._cycle_no
        self._queue.append(entry)

    def _worth(self, rec: _Miner, c: Candidate) -> list[float]:
        """Its profit per hour of each option at this cycle's prices (a miner its thresholds decided has
        none made yet)."""
        prices = self._prices
        assert prices is not None
        if rec.worth is None or rec.worth_at is not prices:
            rec.worth, rec.worth_at = values(c, prices, self._margin_rules), prices
        return rec.worth

    def _plan(self, cycle: Cycle, prices: Prices, now: float) -> CurtailmentPlan:
        config, recs = self.config, self._this
        stale = bool(self._stale_reason)
        tariff = self.economics.tariff
        source = "tariff" if isinstance(tariff, (FlatTariff, TouTariff)) else ("fallback" if self._price_stale else "live")
        plan = CurtailmentPlan(self.site, cycle.ts, config.strategy, prices.usd_kwh, source, stale,
                               self._stale_reason, prices.revenue_usd_th_h * 24)
        # Each miner was planned as its part went by; demand response and the ramp now change some.
        overhead_kw = (self.economics.overhead_w or 0.0) / 1000
        if self._targets:
            self._demand_response(self._targets, recs, prices, overhead_kw, plan)
        if self._ramp is not None and not stale:
            self._limit_ramp(recs, prices, now, plan)
        shares = self._shares
        totals = [sum(column) for column in zip(*shares)] if shares else [0.0] * 5 + [0] * 5 + [0.0]
        followed = self._followed(recs, totals)  # (before the changes below move the plan's options)
        if totals[CHANGED]:
            for rec in recs:
                if rec.share[CHANGED]:
                    rec.key, rec.since, rec.balked = rec.plan, now, False
        plan.keys = self._keys
        plan.advice = [rec.advice for rec in recs if rec.advised]  # type: ignore[misc]
        plan.miners_sleep, plan.miners_run, plan.miners_lower = totals[ASLEEP], totals[RUNNING], totals[LOWER]
        plan.held, plan.changes = totals[HELD_N], totals[CHANGED]
        plan.miners_planned = len(recs)
        plan.planned_kw = totals[KW_PLAN] + self._other_kw + overhead_kw
        plan.always_on_kw = totals[KW_USUAL] + self._other_kw + overhead_kw
        plan.drawn_kw = self._drawn_w * self._pue / 1000 + self._other_kw + overhead_kw
        limits = [t.limit_kw for t in self._targets if t.limit_kw is not None]
        self._polled_over = self._polled_over + 1 if limits and plan.drawn_kw > min(limits) else 0
        if self._polled_over > POLLS_TO_MEET:  # the polls still over the limit: not met, whatever the cover says
            plan.dr_met = False
        saved_h, energy_kw, btc_h = totals[SAVED_H], totals[ENERGY_KW], totals[BTC_H]
        plan.saved_usd_day, plan.energy_saved_kwh_day, plan.btc_forgone_day = saved_h * 24, energy_kw * 24, btc_h * 24
        plan.miners_off_plan = followed[3]
        if self._targets and not plan.dr_met and plan.dr_target is not None:
            self._unmet_log.warning(
                "unmet", "demand response %s is not met: %.1f kW drawn as polled, %.1f kW planned, need %.1f kW; %d "
                "miner(s) off their plan (control off or in dry_run, a kill switch, miners that do not follow), or not "
                "enough the plan may shed (logged at most every 10 minutes)", describe_dr_target(plan.dr_target),
                plan.drawn_kw, plan.planned_kw, plan.dr_need_kw, plan.miners_off_plan)
        saved = self.book.saved
        gap = None if self._last_ts is None else now - self._last_ts
        if not saved.since:
            saved.since = now
        if gap is not None and 0 < gap <= MAX_INTEGRATION_GAP_S and not stale:
            saved.usd += followed[0] * gap / 3600
            saved.kwh += followed[1] * gap / 3600
            saved.btc += followed[2] * gap / 3600
        self._last_ts = now
        plan.saved_usd_total, plan.energy_saved_kwh_total, plan.btc_forgone_total = saved.usd, saved.kwh, saved.btc
        plan.saved_since = saved.since
        return plan

    def _followed(self, recs: list[_Miner], totals: list) -> tuple[float, float, float, int]:
        """What the miners saved against always-on as this cycle's polls show them ($/h, kW, BTC/h), and how
        many of them the polls show otherwise than their plan: the running totals count what the miners did,
        not what the plan said (with control off or in dry_run, killed, or a miner that ignores a command, the
        two part). A miner is credited the option it was seen in when that is the one the plan had it in or
        the one it plans now (a change this cycle: the poll shows it before the change), else nothing: an
        operator's own stops are not the plan's savings, nor the plan's sleeps a miner kept mining through."""
        saved_h, energy_kw, btc_h = totals[SAVED_H], totals[ENERGY_KW], totals[BTC_H]
        cycle_no = self._cycle_no
        # Off its plan and not in the new one either: credited nothing.
        astray = [rec.share for rec in self._off if rec.seen != rec.plan]
        off_plan = len(astray)
        if totals[CHANGED]:  # changed, seen as the plan had it: credited that option (a sleep from its usual mode: none)
            for rec in recs:
                if rec.share[CHANGED] and rec.seen_in != cycle_no:
                    astray.append(rec.share)
                    c = rec.candidate
                    if c is not None and c.current != c.runs[rec.usual][0]:
                        was = self._saving_of(rec, c, c.current)
                        saved_h, energy_kw, btc_h = saved_h + was[0], energy_kw + was[1], btc_h + was[2]
        if astray:
            saved_h -= sum(map(itemgetter(SAVED_H), astray))
            energy_kw -= sum(map(itemgetter(ENERGY_KW), astray))
            btc_h -= sum(map(itemgetter(BTC_H), astray))
            # (nothing credited leaves the rounding of the sums less the same sums: -0.0, -2.8e-24 BTC; trial W)
            saved_h, energy_kw, btc_h = (0.0 if abs(x) < 1e-12 else x for x in (saved_h, energy_kw, btc_h))
        return saved_h, energy_kw, btc_h, off_plan

    def _saving_of(self, rec: _Miner, c: Candidate, key: str) -> tuple[float, float, float]:
        """A miner's saving against its usual mode in option `key` ($/h, kW, BTC/h); nothing for an option it
        no longer has."""
        runs = c.runs
        index = len(runs) if key == SLEEP else _index(runs, key)
        if index < 0:
            return 0.0, 0.0, 0.0
        worth = self._worth(rec, c)
        _, ths_usual, kw_usual = runs[rec.usual]
        kw, ths = (c.sleep_kw, 0.0) if index == len(runs) else (runs[index][2], runs[index][1])
        return worth[index] - worth[rec.usual], kw_usual - kw, (ths_usual - ths) * self._btc_th_h

    def _reason(self, c: Candidate, key: str, why: str, prices: Prices, target: DrTarget | None) -> str:
        # Words that are the same for every miner this epoch (held for stale inputs, shed for the target,
        # asleep with no mode earning at this price) are made once.
        if why == CHANGE:  # the commonest worded: the rules' own words
            if self._margin_same and len(c.runs) == 1:  # (a one-mode miner sleeps or wakes: the words direct)
                return (why_sleep if key == SLEEP else why_wake)(self._price_words, c.runs[0], prices.revenue_usd_th_h)
            return explain(c, key, why, prices, self.rules)
        same = ASLEEP_WORDS if why == STAY and c.current == SLEEP else why if why == "stale" or why == "dr" else None
        if same is None:
            return self._word(c, key, why, prices, target)
        text = self._texts.get(same)
        if text is None:
            text = self._texts[same] = self._word(c, key, why, prices, target)
        return text

    def _word(self, c: Candidate, key: str, why: str, prices: Prices, target: DrTarget | None) -> str:
        if why == "stale":
            return f"held: {self._stale_reason}"
        if why == "dr":
            return f"demand response: {describe_dr_target(target)}" if target is not None else "demand response"
        if why.startswith("ramp:"):
            inner = why.removeprefix("ramp:")
            return self._deferred_words + self._reason(c, key, inner, prices, target)  # (`key`: the option it wanted)
        return explain(c, key, why, prices, self.rules)

    @property
    def dr_targets_in_force(self) -> tuple[DrTarget, ...]:
        """The demand-response targets this cycle's plan holds to (`_dr_targets`; none while it holds on stale
        inputs), as `hashfleet advise` names them."""
        return self._targets

    def usual_figures(self, miner: str) -> tuple[float, float | None, float | None] | None:
        """A planned miner's facility kW, margin ($/kWh: its usual mode's break-even less the price) and J/TH
        running as usual, at this cycle's prices, as its advice would give them: what `hashfleet advise` shows
        for a miner the plan leaves running (the stage makes no advice for that commonest plan). None: not
        planned this cycle."""
        rec, prices = self._miners.get(miner), self._prices
        if rec is None or rec.candidate is None or prices is None:
            return None
        _, ths, kw = rec.candidate.runs[rec.usual]
        return (kw, ths * prices.revenue_usd_th_h / kw - prices.usd_kwh if kw > 0 else None,
                1000 * kw / self._pue / ths if ths else None)

    def _dr_targets(self, at: datetime) -> tuple[DrTarget, ...]:
        """The demand-response targets in force at `at`, whatever their source (`advise`, MQTT, the schedule
        file) or order: the strictest active limit (the lowest limit_kw) and the strictest active shed (the
        largest shed_kw), the limit first; none, one or both. Overlapping targets must all hold: a looser
        one listed first must not hide a stricter one. (Once a cycle: MQTT holds at most 16 a topic.)"""
        limit = shed = None
        for target in (self.dr_override, *self.live.curtailment.dr_targets, *self.schedule):
            if target is None or not target.active(at):
                continue
            if target.limit_kw is not None:
                if limit is None or target.limit_kw < limit.limit_kw:  # type: ignore[operator]
                    limit = target
            elif shed is None or target.shed_kw > shed.shed_kw:  # type: ignore[operator]
                shed = target
        return tuple(t for t in (limit, shed) if t is not None)

    def _demand_response(self, targets: tuple[DrTarget, ...], recs: list[_Miner], prices: Prices, overhead_kw: float,
                         plan: CurtailmentPlan) -> None:
        # Miners asleep for a target stay asleep while it lasts (no churn between near-equal miners):
        # _plan_miner held them. The kW still to shed first (what is planned, what the held ones shed); with a
        # limit and a shed both active, the more that either needs, so both hold (that one is the plan's).
        shares = self._shares
        unfollowed = self._unfollowed()
        over_kw = sum(max(0.0, kw - rec.share[KW_PLAN]) for rec, kw in unfollowed)
        not_shed_kw = sum(rec.share[DR_HELD_KW] for rec, _ in unfollowed)
        needs = []
        for target in targets:
            if target.limit_kw is not None:
                needs.append((sum(map(itemgetter(KW_PLAN), shares), self._other_kw + overhead_kw + over_kw
                                  + self._drift_kw(recs)) - target.limit_kw, target))
            else:
                needs.append((target.shed_kw - sum(map(itemgetter(DR_HELD_KW), shares), 0.0) + not_shed_kw, target))  # type: ignore[operator]
        need, plan.dr_target = max(needs, key=itemgetter(0))
        plan.dr_need_kw = max(0.0, need)
        if need < 0:
            # Released only while the cover keeps a margin: else the learnt and polled kW's drift swaps two miners
            # back and forth around a need of a few watts (trial X).
            met = plan.dr_target
            margin = max(0.1, 0.01 * (met.limit_kw if met.limit_kw is not None else met.shed_kw or 0.0))
            self._release(recs, -need - margin, prices)
            return
        if need == 0:
            return
        # Items: each running miner, or a shed-whole group of them; cost = profit lost per hour (margin rules).
        items, members = shed_items(self._sheddable(recs))
        cover = min_cost_cover(items, need)
        plan.dr_met, plan.dr_gap_usd_h = cover.met, cover.gap
        for item in cover.chosen:
            for rec in members[item]:
                self._replan(rec, SLEEP, "dr", True)
        if cover.chosen:  # saved at this cycle's end: a restart (a crash too) keeps them shed (`_take_up`)
            self._last_save = float("-inf")

    def _drift_kw(self, recs: list[_Miner]) -> float:
        """How much more the miners that stay as they were draw in the polls than in the plan, kW (never less
        than 0): a limit is met in the meter, and the plan's kW are learnt (and remade every REFRESH_CYCLES),
        so a site a little hotter than its figures stayed over its limit with nothing shed (trial Y: 0.01-0.21
        kW over for up to 13 cycles). Only miners the poll shows in the option the plan had them in and keeps
        them in: a change in its lag, or one that does not follow (`_unfollowed`), is not drift."""
        cycle_no, kw_per_w, drift = self._cycle_no, self._pue / 1000, 0.0
        for rec in recs:
            w = rec.polled_w
            if w is not None and rec.seen_in != cycle_no and rec.plan == rec.key:
                drift += w * kw_per_w - rec.share[KW_PLAN]
        return max(0.0, drift)

    def _unfollowed(self) -> list[tuple[_Miner, float]]:
        """The miners the polls show off their plan that control will not move, each with the facility kW its
        poll shows: demand response counts that draw, not the plan's, and sheds others in its place (released
        once it follows). Those control tried to move and gave up on (its change `unconfirmed` after its
        retries, or `refused`), and, while control acts (dry_run rehearses on), those off its allowlist.
        Only those: a miner waiting for the action limits or the ramp, or in a command's usual lag, is on its
        way (counting it sheds a replacement, which waits too: the whole site, trial X); with control off the
        plan is the advice as if followed. While control acts, also a miner off its allowlist that the polls show
        as the plan had it and that the rules plan otherwise this cycle: it stays where it is (trial ZA: the price
        rules' sleeps of off-list miners, advice nobody carries out, were counted as meeting a limit, need 0,
        the site 14-22 kW over all window)."""
        acts = self._control_acts
        out = [(rec, self._polled_kw(rec, rec.seen)) for rec in self._off
               if (rec.balked or (acts and not rec.controllable)) and rec.seen != rec.plan]
        if acts and not self.allowlist.names_all:
            cycle_no = self._cycle_no
            out += [(rec, self._polled_kw(rec, rec.key)) for rec in self._this
                    if not rec.controllable and rec.plan != rec.key and rec.seen_in != cycle_no]
        return out

    def _polled_kw(self, rec: _Miner, seen: str) -> float:
        """A miner's facility kW as this cycle's poll shows it in option `seen` (no power reading: that option's,
        as measured)."""
        w, c = rec.polled_w, rec.candidate
        if w is not None:
            return w * self._pue / 1000
        if c is None:
            return 0.0
        return c.sleep_kw if seen == SLEEP else (kw_of(c, seen) or c.runs[rec.usual][2])

    def _sheddable(self, recs: list[_Miner]) -> Iterator[tuple[_Miner, float, float, str | None]]:
        """The miners running in the plan that demand response may shed: each with the profit per hour it
        loses asleep, the kW it frees and its shed-whole group (curtailment_rules.shed_items). While control
        acts, only those on its allowlist: a miner it will not touch sheds nothing, however cheap."""
        only_allowed = self._control_acts
        for rec in recs:
            c = rec.candidate
            if rec.plan == SLEEP or c.always_on or (only_allowed and not rec.controllable):  # type: ignore[union-attr]
                continue
            worth = self._worth(rec, c)  # type: ignore[arg-type]
            yield rec, worth[rec.index] - worth[-1], rec.share[KW_PLAN] - c.sleep_kw, c.group  # type: ignore[union-attr]

    def _replan(self, rec: _Miner, key: str, why: str, dr: bool) -> None:
        """A miner demand response or the ramp moves off what the rules alone planned."""
        c = rec.candidate
        assert c is not None
        self._settle(rec, c, key, why, -1, dr)
        rec.memo = rec.decided_with = None

    def _release(self, recs: list[_Miner], spare_kw: float, prices: Prices) -> None:
        """More is shed than the target asks (prices fell, the limit rose): the most valuable DR-held miners
        follow the advice again while the target stays met."""
        held = [rec for rec in recs if rec.dr]
        margin = self._margin_rules
        best: dict[int, str] = {}
        for rec in held:
            c = rec.candidate
            best[id(rec)] = max((r[0] for r in c.runs), key=lambda m: profit_h(c, m, prices, margin))  # type: ignore[union-attr]

        def value_per_kw(rec: _Miner) -> float:
            c = rec.candidate
            mode = best[id(rec)]
            gain = profit_h(c, mode, prices, margin) - profit_h(c, SLEEP, prices, margin)  # type: ignore[arg-type]
            return gain / max(kw_of(c, mode), 1e-9)  # type: ignore[arg-type]

        held.sort(key=lambda rec: -value_per_kw(rec))
        for rec in held:
            c = rec.candidate
            extra = kw_of(c, best[id(rec)]) - c.sleep_kw  # type: ignore[union-attr, arg-type]
            if extra > spare_kw:
                continue
            spare_kw -= extra
            key, why, _ = decide_fast(c, values(c, prices, self.rules), self.rules)  # type: ignore[arg-type]
            self._replan(rec, key, why, False)

    def _limit_ramp(self, recs: list[_Miner], prices: Prices, now: float, plan: CurtailmentPlan) -> None:
        ramp = self._ramp
        assert ramp is not None
        pending = []
        margin = self._margin_same  # the rules' profit is the worth the plan was made with
        epoch, acts = self._epoch, self._control_acts
        for rec in recs:
            if not rec.share[CHANGED]:
                continue
            if rec.waiting_in is epoch and rec.share is rec.waiting[2]:  # type: ignore[index]  # as last cycle
                urgency, ratio, delta = rec.waiting[3]  # type: ignore[index]
                pending.append((urgency, ratio, rec.pos, delta, rec))
                continue
            c = rec.candidate
            assert c is not None
            key, current = rec.plan, c.current
            delta = rec.share[KW_PLAN] - kw_of(c, current)
            if margin:
                worth = rec.worth
                runs = c.runs
                now_at = len(runs) if current == SLEEP else _index(runs, current)
                gain = worth[rec.index] - worth[now_at] if now_at >= 0 else float("inf")  # type: ignore[index]
            else:
                gain = profit_h(c, key, prices, self.rules) - profit_h(c, current, prices, self.rules)
            urgency, ratio = _ramp_order(rec.dr, key, current, gain, delta, acts and not rec.controllable)
            pending.append((urgency, ratio, rec.pos, delta, rec))
            if rec.why == CHANGE:  # the rules' own change (not demand response's): kept if deferred
                rec.waiting = (key, rec.index, rec.share, (urgency, ratio, delta))
            else:
                rec.waiting_in = None
        # The ones deferred in their part: waiting as last cycle (in last cycle's order: the sort finds the
        # run), and new this cycle.
        cycle_no = self._cycle_no
        for entry in self._waiting:
            rec = entry[4]
            if rec.queued is entry and rec.queued_in is epoch and rec.queued_no == cycle_no:  # (not queued anew)
                if entry[2] != rec.pos:
                    entry = rec.queued = (*entry[:2], rec.pos, *entry[3:])
                pending.append(entry)
        pending += self._queue
        self._waiting = []
        if not pending:
            ramp.refill(self._elapsed(now), 0.0)
            return
        # By urgency, -gain per kW, then place (unique: sorted(pending)), in stable sorts on one key each:
        # twice as fast as comparing tuples (a spike puts every miner here).
        for field in (2, 1, 0):
            pending.sort(key=itemgetter(field))
        paced = bisect_left(pending, NOT_PACED, key=itemgetter(0))  # (the rest: advice for miners control won't touch)
        sizes = list(map(abs, map(itemgetter(3), pending[:paced])))
        ramp.refill(self._elapsed(now), max(sizes, default=0.0))
        let_go = ramp.spend_in_order(sizes) + list(range(paced, len(pending)))
        for i in let_go:
            self._let_go(pending[i][4])  # (one deferred in its part waits no more: its queued_in is cleared)
        # The rest wait: the ones deferred in their part as they are, the others deferred now.
        self._waiting = queued = [entry for entry in pending if entry[4].queued_in is epoch]
        plan.deferred += len(queued)
        if len(queued) + len(let_go) < len(pending):
            gone = set(let_go)
            for i, entry in enumerate(pending):
                if i not in gone and entry[4].queued_in is not epoch:
                    self._defer(entry[4], plan)

    def _let_go(self, rec: _Miner) -> None:
        """A change the ramp lets through this cycle: advised (one deferred in its part: planned first)."""
        c = rec.candidate
        assert c is not None
        rec.waiting_in = None
        if rec.queued_in is self._epoch:  # the change it wants, as `_settle_one_run` makes it
            rec.queued_in = rec.queued = None
            key = rec.wants
            index = 1 if key == SLEEP else 0
            rec.plan, rec.why, rec.index = key, CHANGE, index
            rec.share = self._shares[rec.pos] = _one_run_share(c, self._worth(rec, c), index, self._btc_th_h, False, True)
            self._keys[c.miner] = key
        self._advise(rec, c, rec.plan, rec.why, rec.index, rec.dr)

    def _defer(self, rec: _Miner, plan: CurtailmentPlan) -> None:
        """A change the ramp holds back this cycle: the miner stays where it is, held, its advice saying why."""
        plan.deferred += 1
        epoch = self._epoch
        c = rec.candidate
        assert c is not None
        if rec.why == CHANGE:
            rec.waiting_in = epoch
        dr = rec.was_dr and c.current == SLEEP and self._target is not None
        why = _RAMP_WHY.get(rec.why) or f"ramp:{rec.why}"
        deferral = (epoch, c, rec.plan, why, dr)
        # Deferred as last cycle at the same inputs, the rules' change (no advice made since: a change's
        # waits for the ramp; demand response's may follow a hold advised this cycle): all stands.
        if why == RAMP_CHANGE and rec.deferred == deferral and self._keep_deferrals:
            rec.plan, rec.why, rec.index, rec.dr = c.current, why, rec.deferred_index, dr
            rec.share = self._shares[rec.pos] = rec.deferred_share
            self._keys[c.miner] = c.current
            rec.memo = rec.decided_with = None
            return
        rec.wants = rec.plan
        if why == RAMP_CHANGE and not dr and len(c.runs) == 1 and self._margin_same and not c.always_on:
            self._defer_one_run(rec, c, self._worth(rec, c))
        else:
            self._replan(rec, c.current, why, dr)
        rec.deferred, rec.deferred_share, rec.deferred_index = deferral, rec.share, rec.index

    def _defer_one_run(self, rec: _Miner, c: Candidate, worth: list[float]) -> None:
        """`_replan` for the rules' change of a one-mode miner that the ramp defers (every waiting miner of a
        fleet, the cycle a spike starts or the price moves during a ramp), in fewer steps: it stays where it
        is, held, and its advice says why the change was wanted."""
        run = c.runs[0]
        mode, ths, kw = run
        prices = self._prices
        assert prices is not None
        current = c.current
        index, kw_plan = (1, c.sleep_kw) if current == SLEEP else (0, kw)
        rec.plan, rec.why, rec.index, rec.dr, rec.advised = current, RAMP_CHANGE, index, False, True
        rec.share = self._shares[rec.pos] = _one_run_share(c, worth, index, self._btc_th_h, True, False)
        self._keys[c.miner] = current
        rec.memo = rec.decided_with = None
        said = (current, False, c, worth)
        advice = rec.advice
        if advice is not None and rec.advice_for == said and rec.advice_why == RAMP_CHANGE:
            advice.changed = False  # deferred as last cycle
            return
        revenue, price = prices.revenue_usd_th_h, prices.usd_kwh
        reason = self._deferred_words + (why_sleep if rec.wants == SLEEP else why_wake)(self._price_words, run, revenue)
        margin = ths * revenue / kw - price if kw > 0 else None
        if advice is not None and rec.advice_c is c and advice.key == current:
            advice.reason, advice.margin_usd_kwh, advice.profit_usd_day = reason, margin, worth[index] * 24
            advice.changed, advice.held, advice.dr = False, True, False
        else:
            rec.advice = MinerAdvice(c.miner, current, "sleep" if index else "run", reason, kw_plan, kw, margin,
                                     1000 * kw / self._pue / ths if ths else None, worth[index] * 24, False, True, False,
                                     mode)
            rec.advice_c = c
        rec.advice_for, rec.advice_why = said, RAMP_CHANGE

    def _elapsed(self, now: float) -> float:
        return 60.0 if self._last_ts is None else min(MAX_INTEGRATION_GAP_S, max(0.0, now - self._last_ts))

    # -- upkeep ---------------------------------------------------------------------------------

    def _clock_went_back(self, step: float) -> None:
        """The wall clock was stepped back by `step` s (the service logs it; collector/clock.py): the times
        kept move back with it, so dwell times and warm-ups go on from where they were instead of waiting
        for the clock to catch up (hours, with no advice changed and nothing learnt)."""
        for rec in self._miners.values():
            rec.since -= step
        for book in self.book.miners.values():
            book.seen -= step
            if book.mining_since is not None:
                book.mining_since -= step
        if self.book.saved.since:
            self.book.saved.since = max(0.0, self.book.saved.since - step)

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
        """Write the efficiency book now (also on stop), with the plan's hold on the miners a restart would lose
        track of (`_take_up`): asleep, held for demand response, or changed within its minimum times."""
        if self.state_path is None:
            return
        self._last_save = time.monotonic()
        recent = (self._last_ts or time.time()) - max(self.config.min_on_s, self.config.min_off_s)
        self.book.plans = {miner: (rec.key, rec.since, rec.dr) for miner, rec in self._miners.items()
                           if rec.key == SLEEP or rec.dr or rec.since > recent}
        try:
            self.book.save(self.state_path)
        except OSError as e:
            log.error("cannot save measured efficiencies to %s: %s", self.state_path, e)

    def close(self) -> None:
        """On stop: keep what was measured."""
        self.save()


def _one_run_share(c: Candidate, worth: list[float], index: int, btc_th_h: float, held: bool, changed: bool) -> tuple:
    """A one-mode miner's share of the plan's figures (as `_settle` makes it) asleep (index 1) or running."""
    _, ths, kw = c.runs[0]
    if index:
        idle = c.sleep_kw
        return idle, kw, worth[1] - worth[0], kw - idle, ths * btc_th_h, True, False, False, held, changed, 0.0
    return kw, kw, 0.0, 0.0, 0.0, False, True, False, held, changed, 0.0


def _ramp_order(dr: bool, key: str, current: str, gain: float, delta: float, advice_only: bool = False) -> tuple[int, float]:
    """A change's place in the ramp's order: demand response's first, then sleeps, changes of mode, wakes;
    within each the most gained per kW moved first (`gain` $/h, `delta` kW). While control acts, a change for a
    miner off its allowlist (`advice_only`) is advice nobody here carries out: last, and not paced (NOT_PACED,
    `_limit_ramp`). Paced, such changes took the budget from the allowlisted miners' (trial X; trial ZA: a
    smaller off-list change fitting first, cycle after cycle, 1 of 8 allowlisted miners asleep 135 s into a
    spike the ramp allowed 7 in)."""
    return ((0 if dr else 1 if key == SLEEP else 2 if current != SLEEP else 3) + (NOT_PACED if advice_only else 0),
            -gain / max(abs(delta), 1e-9))


def _at_its_hashrate(runs: tuple[tuple[str, float, float], ...], sample: MinerSample) -> tuple[tuple[str, float, float], ...]:
    """A miner that reads no power (stock Antminers) is never measured: its nameplate run scaled to the hashrate it
    reports (its average since boot, else its live rate), at the nameplate's J/TH, as the cost estimates its draw
    (cost_engine.nameplate_draw_w). One in a lower work mode or with a board lost was planned at its whole nameplate
    draw: 3.31 kW "running as usual" for an S19j Pro in its low mode at 84 of 104 TH/s (trial ZF, M3), kW a
    demand-response target counted as shed. Within MIN_SCALE..MAX_SCALE of the nameplate (a rate past it is a
    reading's, not the unit's)."""
    ths = sample.hashrate_avg_ths or sample.hashrate_ths
    (mode, plate_ths, plate_kw), = runs
    if not ths or not plate_ths:
        return runs
    scale = min(MAX_SCALE, max(MIN_SCALE, ths / plate_ths))
    return ((mode, plate_ths * scale, plate_kw * scale),)


MIN_SCALE, MAX_SCALE = 0.25, 1.5


def _index(runs: tuple[tuple[str, float, float], ...], mode: str) -> int:
    """Where `mode` is among a miner's run options (-1: not one of them)."""
    for j, run in enumerate(runs):
        if run[0] == mode:
            return j
    return -1


def _avalon_model(model: str) -> bool:
    """A model name as an Avalon reports it ("Avalon Q", "AvalonMiner 1246-83"), or a Canaan one catalogued."""
    plate = nameplate(model)
    return "avalon" in model.lower() or (plate is not None and plate.make == "Canaan")


def describe_dr_target(target: DrTarget) -> str:
    what = f"site at most {target.limit_kw:g} kW" if target.limit_kw is not None else f"shed {target.shed_kw:g} kW"
    until = target.end.strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{what} until {until}" + (f" ({target.reason})" if target.reason else "")
