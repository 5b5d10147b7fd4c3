"""The backtest, pure: the site's own history, a power price series and a strategy in; what the strategy
would have saved against what happened out. `hashfleet backtest` (collector/commands/backtest.py) reads
the history (local spool or InfluxDB) and the prices; this module only counts.

History arrives as periods (a bucket of time, e.g. 5 minutes) of per-miner readings: how long each
miner was seen mining and seen at all, its hashrate and power while mining, and its draw while not
(soft-off, idle). What happened is replayed at the price series; the strategy decides, period by
period and with the very rules the live advice uses (collector/stages/curtailment_rules.py: hysteresis,
minimum times, strike or margin, demand-response targets), which of the miners that did mine it would
have put to sleep. A miner that did not mine in a period (offline, stopped) is left as it was: the
strategy cannot make a dead miner hash.

    energy saved     kWh the strategy's sleeping miners would not have drawn (mining draw less idle draw)
    cost saved       those kWh at the price of their period (negative prices make this negative)
    BTC forgone      what they would not have mined, from the network's hashprice at the time, less pool fee
    net              cost saved - revenue forgone (USD)
    uptime           miner-hours mining / miner-hours seen, as happened and under the strategy

A miner that mined with no power reading (a stock Antminer, an AvalonMiner 7xx chain) counts as mining
and earning; its draw unknown, the strategy leaves it as it was (the live plan does too) and its energy
is in neither outcome (`miners_without_power` says how many).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from itertools import pairwise

from collector.stages.curtailment_rules import SLEEP, Candidate, Prices, Rules, decide, min_cost_cover, profit_h, shed_items
from models.curtailment import DrTarget

RUN = "run"


@dataclass(frozen=True, slots=True)
class Reading:
    """One miner over one period of history."""

    miner: str
    seen_s: float  # seconds it was read (answered)
    mining_s: float  # of those, seconds mining
    ths: float  # mean hashrate while mining
    w: float  # mean wall watts while mining (0: no power reading: the strategy cannot weigh it)
    other_w: float = 0.0  # mean watts while read but not mining (soft-off, idle)


@dataclass(frozen=True, slots=True)
class Period:
    ts: int  # start, unix seconds
    seconds: float
    hashprice_usd_ph_day: float  # gross, from the `network` points
    btc_price_usd: float
    readings: tuple[Reading, ...]
    # (from, to): the time its readings stand for, when known (the local spool); else the whole period.
    # The period is priced over this span, its readings shared out evenly over it.
    span: tuple[float, float] | None = None


class PriceSeries:
    """A step function of $/kWh: each price holds from its time until the next one, and at most `max_hold_s`."""

    def __init__(self, times: Sequence[int], usd_kwh: Sequence[float], *, max_hold_s: float = 7200.0):
        if len(times) != len(usd_kwh):
            raise ValueError("times and prices differ in length")
        # Arrays, not lists of numbers: a 2,000,000-row price file is 32 MB so, ~140 MB as lists.
        if all(a < b for a, b in pairwise(times)):  # (a file in time order, as most are: no pairs made)
            self.times, self.prices = array("d", times), array("d", usd_kwh)
        else:
            pairs = sorted(zip(times, usd_kwh))
            self.times = array("d", (t for t, _ in pairs))
            self.prices = array("d", (p for _, p in pairs))
        self.max_hold_s = max_hold_s

    def at(self, ts: float) -> float | None:
        i = bisect_right(self.times, ts) - 1
        if i < 0 or ts - self.times[i] >= self.max_hold_s:
            return None
        return self.prices[i]

    def segments(self, start: float, end: float) -> list[tuple[float, float, float]]:
        """The prices over [start, end), as (from, to, $/kWh) in time order, split where the price changes.
        Time with no price in force is left out, but when none is in force at `start` the first price
        within the span covers the time before it too. A span of no length: the price at `start`."""
        if end <= start:
            price = self.at(start)
            return [] if price is None else [(start, start, price)]
        out: list[tuple[float, float, float]] = []
        i = max(0, bisect_right(self.times, start) - 1)
        while i < len(self.times) and self.times[i] < end:
            t0 = max(start, self.times[i])
            t1 = min(end, self.times[i] + self.max_hold_s,
                     self.times[i + 1] if i + 1 < len(self.times) else math.inf)
            if t1 > t0:
                out.append((t0, t1, self.prices[i]))
            i += 1
        if out and out[0][0] > start:
            out[0] = (start, out[0][1], out[0][2])
        return out

    def __len__(self) -> int:
        return len(self.times)


@dataclass(frozen=True)
class Strategy:
    name: str  # margin | strike | dr
    rules: Rules
    dr_targets: tuple[DrTarget, ...] = ()
    # miner -> (always on, its shed-whole group): the site layout's `curtailment.groups`, as live
    groups: Callable[[str], tuple[bool, str | None]] = lambda miner: (False, None)

    def describe(self) -> str:
        if self.name == "strike":
            return f"strike {self.rules.strike_usd_kwh:g} $/kWh"
        if self.name == "dr":
            return f"demand response ({len(self.dr_targets)} target(s)), margin rules otherwise"
        return "margin (each miner by its own break-even)"


@dataclass
class Outcome:
    energy_kwh: float = 0.0
    energy_usd: float = 0.0
    btc: float = 0.0
    revenue_usd: float = 0.0
    mining_h: float = 0.0  # miner-hours mining
    seen_h: float = 0.0  # miner-hours read

    @property
    def uptime_pct(self) -> float | None:
        return 100 * self.mining_h / self.seen_h if self.seen_h else None

    @property
    def price_paid_usd_kwh(self) -> float | None:
        return self.energy_usd / self.energy_kwh if self.energy_kwh else None


@dataclass
class BacktestResult:
    strategy: str
    start: int | None = None
    end: int | None = None
    periods: int = 0
    periods_without_price: int = 0
    miners: int = 0
    miners_without_power: int = 0  # mined with no power reading: never slept, their energy not counted
    actual: Outcome = field(default_factory=Outcome)
    with_strategy: Outcome = field(default_factory=Outcome)
    sleeps: int = 0  # times the strategy put a miner to sleep

    @property
    def energy_saved_kwh(self) -> float:
        return self.actual.energy_kwh - self.with_strategy.energy_kwh

    @property
    def cost_saved_usd(self) -> float:
        return self.actual.energy_usd - self.with_strategy.energy_usd

    @property
    def btc_forgone(self) -> float:
        return self.actual.btc - self.with_strategy.btc

    @property
    def revenue_forgone_usd(self) -> float:
        return self.actual.revenue_usd - self.with_strategy.revenue_usd

    @property
    def net_usd(self) -> float:
        return self.cost_saved_usd - self.revenue_forgone_usd

    @property
    def cost_saved_pct(self) -> float | None:
        # a share of a bill that is not positive (negative prices) has no meaning: none is given
        return 100 * self.cost_saved_usd / self.actual.energy_usd if self.actual.energy_usd > 0 else None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"strategy": self.strategy, "start": self.start, "end": self.end,
                                  "periods": self.periods, "periods_without_price": self.periods_without_price,
                                  "miners": self.miners, "miners_without_power": self.miners_without_power,
                                  "sleeps": self.sleeps}
        for name, outcome in (("actual", self.actual), ("with_strategy", self.with_strategy)):
            out[name] = {**asdict(outcome), "uptime_pct": outcome.uptime_pct,
                         "price_paid_usd_kwh": outcome.price_paid_usd_kwh}
        for name in ("energy_saved_kwh", "cost_saved_usd", "cost_saved_pct", "btc_forgone", "revenue_forgone_usd",
                     "net_usd"):
            out[name] = getattr(self, name)
        return out


def replay(periods: Iterable[Period], prices: PriceSeries, strategy: Strategy, *, pue: float = 1.0,
           pool_fee_pct: float = 0.0) -> BacktestResult:
    """Replay `periods` (in time order; a generator will do: history is streamed) at `prices` under `strategy`."""
    result = BacktestResult(strategy.describe())
    state: dict[str, list] = {}  # miner -> [option, seconds in it]
    measured: dict[str, list[float]] = {}  # miner -> [mining seconds, TH*s, W*s]: efficiency learnt so far
    miners: set[str] = set()
    unpowered: set[str] = set()
    placed: dict[str, tuple[bool, str | None]] = {}
    net = 1 - pool_fee_pct / 100
    for whole in periods:
        span_from, span_to = whole.span if whole.span is not None else (whole.ts, whole.ts + whole.seconds)
        parts = [part for part in prices.segments(span_from, span_to) if math.isfinite(part[2])]
        if not parts:
            result.periods_without_price += 1
            continue
        result.periods += 1
        result.start = whole.ts if result.start is None else result.start
        result.end = int(whole.ts + whole.seconds)
        length = span_to - span_from
        for t0, t1, price in parts:
            # a period where the price changes is replayed a part at a time, its readings shared out by time
            share = (t1 - t0) / length if length > 0 else 1.0
            period = whole if share == 1.0 else Period(
                int(t0), whole.seconds * share, whole.hashprice_usd_ph_day, whole.btc_price_usd,
                tuple(Reading(r.miner, r.seen_s * share, r.mining_s * share, r.ths, r.w, r.other_w)
                      for r in whole.readings))
            _replay_part(period, price, strategy, result, state, measured, miners, unpowered, placed, net, pue)
    result.miners, result.miners_without_power = len(miners), len(unpowered)
    return result


def _replay_part(period: Period, price: float, strategy: Strategy, result: BacktestResult, state: dict[str, list],
                 measured: dict[str, list[float]], miners: set[str], unpowered: set[str],
                 placed: dict[str, tuple[bool, str | None]], net: float, pue: float) -> None:
    """One period (or the part of one at one price): the strategy decides, both outcomes are counted."""
    revenue_th_h = period.hashprice_usd_ph_day / 1000 / 24 * net
    p = Prices(price, revenue_th_h)
    # the strategy decides for each miner that mined in this period
    candidates: list[tuple[Reading, Candidate]] = []
    for r in period.readings:
        miners.add(r.miner)
        if r.mining_s <= 0 or r.ths <= 0:
            continue
        if r.w <= 0:  # its draw unknown (a stock Antminer, a 741 chain): as the live plan, the strategy leaves it be
            unpowered.add(r.miner)
            continue
        m = measured.get(r.miner)
        ths, w = (m[1] / m[0], m[2] / m[0]) if m and m[0] else (r.ths, r.w)
        option = state.setdefault(r.miner, [RUN, math.inf])
        idle_kw = r.other_w * pue / 1000
        place = placed.get(r.miner)
        if place is None:
            place = placed[r.miner] = strategy.groups(r.miner)
        candidates.append((r, Candidate(r.miner, ((RUN, ths, w * pue / 1000),), idle_kw, option[0], option[1],
                                        *place)))
    keys = [decide(c, p, strategy.rules).key for _, c in candidates]
    target = next((t for t in strategy.dr_targets if t.active(_dt(period.ts))), None)
    if target is not None:
        _shed(target, candidates, keys, p, pue, period)
    # count what happened and what the strategy would have made of it
    for r in period.readings:
        seen_h, mining_h = r.seen_s / 3600, r.mining_s / 3600
        other_h = max(0.0, seen_h - mining_h)
        _add(result.actual, r, mining_h, other_h, seen_h, price, revenue_th_h, period.btc_price_usd, pue)
    for (r, c), key in zip(candidates, keys):
        option = state[r.miner]
        if key != option[0]:
            if key == SLEEP:
                result.sleeps += 1
            option[0], option[1] = key, 0.0
        option[1] += period.seconds
        if r.mining_s > 0 and key == RUN:
            m = measured.setdefault(r.miner, [0.0, 0.0, 0.0])
            m[0] += r.mining_s
            m[1] += r.ths * r.mining_s
            m[2] += r.w * r.mining_s
    asleep = {c.miner for (_, c), key in zip(candidates, keys) if key == SLEEP}
    for r in period.readings:
        seen_h, mining_h = r.seen_s / 3600, r.mining_s / 3600
        other_h = max(0.0, seen_h - mining_h)
        if r.miner in asleep:
            other_h, mining_h = seen_h, 0.0  # it idles where it mined
        _add(result.with_strategy, r, mining_h, other_h, seen_h, price, revenue_th_h, period.btc_price_usd, pue)


def _add(outcome: Outcome, r: Reading, mining_h: float, other_h: float, seen_h: float, price: float,
         revenue_th_h: float, btc_price: float, pue: float) -> None:
    kwh = (r.w * mining_h + r.other_w * other_h) * pue / 1000
    revenue = r.ths * mining_h * revenue_th_h
    outcome.energy_kwh += kwh
    outcome.energy_usd += kwh * price
    outcome.revenue_usd += revenue
    outcome.btc += revenue / btc_price if btc_price > 0 else 0.0
    outcome.mining_h += mining_h
    outcome.seen_h += seen_h


def _shed(target: DrTarget, candidates: list[tuple[Reading, Candidate]], keys: list[str], prices: Prices, pue: float,
          period: Period) -> None:
    """Demand response in the backtest: the cheapest cover of what the target asks, among the miners the
    strategy runs, as live: an always-on miner is never shed, a shed-whole group is one item (the live stage
    also keeps a target's shed miners asleep while it lasts)."""
    margin = Rules()
    running = [i for i, key in enumerate(keys) if key != SLEEP]
    items, members = shed_items(
        (i, profit_h(c, RUN, prices, margin) - profit_h(c, SLEEP, prices, margin), c.runs[0][2] - c.sleep_kw, c.group)
        for i in running if not (c := candidates[i][1]).always_on)
    if target.limit_kw is not None:
        drawn = sum(candidates[i][1].runs[0][2] for i in running)
        others = sum(r.other_w * pue / 1000 for r in period.readings if r.mining_s <= 0)
        need = drawn + others - target.limit_kw
    else:
        need = target.shed_kw or 0.0
    if need <= 0:
        return
    for item in min_cost_cover(items, need).chosen:
        for i in members[item]:
            keys[i] = SLEEP


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
