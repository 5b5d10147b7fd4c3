"""The curtailment rules, pure: options and prices in, a decision out. The advice stage
(collector/stages/curtailment.py) and the backtest (collector/stages/backtest.py) both decide with
these, so a strategy replayed on history is the strategy that runs.

A miner's options are its run options, one per work mode it has (hashrate and facility kW, measured
or nameplate), and sleep (its idle kW). Each is worth a profit per hour at this instant's price:

    margin strategy:  hashrate x revenue per TH-hour - kW x $/kWh   (sleep: - idle kW x $/kWh + credits)
    strike strategy:  (strike - $/kWh) x kW for running, 0 for sleep: everyone sleeps above the strike

The best option wins only when it gains more than `hysteresis` $/kWh on the larger of the two draws
(the price must clear the break-even by that much, both ways), and a miner keeps an option at least
`min_on_s` running / `min_off_s` asleep.

Demand response then sheds, from the miners the advice leaves running, the set whose profit lost is
the smallest that covers the kW asked for (`min_cost_cover`: exact branch and bound, with a node limit
for very large fleets). A ramp limit spends a budget of kW per minute on the changes, most urgent first.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TypeVar

T = TypeVar("T")  # a miner, as the caller knows it (shed_items)
SLEEP = ""  # the sleep option's key; run options are keyed by work mode ("default" when the miner has none)
DEFAULT_MODE = "default"
_EPS = 1e-9
# Branch-and-bound nodes demand response may visit in one cycle (a few µs each): small fleets are
# always solved exactly; a cover of hundreds of miners out of thousands stops here with the best found.
NODE_LIMIT = 5_000


@dataclass(frozen=True, slots=True)
class Rules:
    strategy: str = "margin"  # "margin" | "strike"
    strike_usd_kwh: float | None = None
    hysteresis_usd_kwh: float = 0.0
    min_on_s: float = 0.0
    min_off_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Prices:
    usd_kwh: float  # the power price now
    revenue_usd_th_h: float  # net revenue of one TH/s for one hour (after pool fee)
    credit_usd_kwh: float = 0.0  # paid per kWh a sleeping miner does not draw (curtailment credits)


@dataclass(slots=True)
class Candidate:
    """One miner, as the rules see it this cycle."""

    miner: str
    runs: tuple[tuple[str, float, float], ...]  # (mode, TH/s, facility kW) per run option
    sleep_kw: float  # facility kW asleep (idle draw)
    current: str  # the option it is in (the plan's, or on first sight what it is doing)
    held_s: float  # seconds since it took `current`
    always_on: bool = False
    group: str | None = None  # a shed-whole group (demand response sheds it whole or not at all)


@dataclass(frozen=True, slots=True)
class Decision:
    key: str
    reason: str
    held: bool = False  # the rules wanted a change; hysteresis or a minimum time kept this one


def profit_h(c: Candidate, key: str, prices: Prices, rules: Rules) -> float:
    """Profit per hour of option `key` for `c` (for the strike strategy, its proxy: (strike - price) x kW)."""
    if key == SLEEP:
        if rules.strategy == "strike":
            return 0.0
        top = max((kw for _, _, kw in c.runs), default=c.sleep_kw)
        return -c.sleep_kw * prices.usd_kwh + prices.credit_usd_kwh * max(0.0, top - c.sleep_kw)
    for mode, ths, kw in c.runs:
        if mode == key:
            if rules.strategy == "strike":
                return (rules.strike_usd_kwh - prices.usd_kwh) * kw  # type: ignore[operator]
            return ths * prices.revenue_usd_th_h - kw * prices.usd_kwh
    return float("-inf")


def kw_of(c: Candidate, key: str) -> float:
    if key == SLEEP:
        return c.sleep_kw
    for mode, _, kw in c.runs:
        if mode == key:
            return kw
    return 0.0


def breakeven_usd_kwh(ths: float, kw: float, prices: Prices) -> float | None:
    """The power price at which a run option earns what it costs."""
    return ths * prices.revenue_usd_th_h / kw if kw > 0 else None


# Why a decision is what it is (decide_fast); the text is made only for the miners a plan reports (explain).
STAY, CHANGE, HYSTERESIS, MIN_ON, MIN_OFF = "stay", "change", "hysteresis", "min_on", "min_off"


def values(c: Candidate, prices: Prices, rules: Rules) -> list[float]:
    """Profit per hour of each run option of `c`, in order, then of sleep (the hot loop's one pass)."""
    price, revenue = prices.usd_kwh, prices.revenue_usd_th_h
    if rules.strategy == "strike":
        margin = rules.strike_usd_kwh - price  # type: ignore[operator]
        out = [margin * kw for _, _, kw in c.runs]
        out.append(0.0)
        return out
    runs, idle, credit = c.runs, c.sleep_kw, prices.credit_usd_kwh
    if len(runs) == 1:  # most miners: one mode known
        _, ths, kw = runs[0]
        asleep = -idle * price + (credit * (kw - idle) if credit and kw > idle else 0.0)
        return [ths * revenue - kw * price, asleep]
    out = [ths * revenue - kw * price for _, ths, kw in runs]
    top = max((kw for _, _, kw in runs), default=idle)
    out.append(-idle * price + credit * max(0.0, top - idle))
    return out


def price_thresholds(c: Candidate, prices: Prices, rules: Rules) -> tuple[float, float, float]:
    """For a miner with one run option under the margin strategy, the power prices that decide it alone
    (what `decide_fast` decides, found by one comparison): below `run_below` running is worth more than
    sleep and above it sleep is (STAY either way); above `sleep_above` a running miner changes to sleep,
    below `wake_below` a sleeping one runs (hysteresis and decide_fast's tie margin inside, the minimum
    times still to check). NaN where no price decides alone (more run options, the strike strategy, an
    idle draw as large as running's); an always-on miner runs at any price."""
    nan = float("nan")
    runs = c.runs
    if len(runs) != 1 or rules.strategy != "margin":
        return nan, nan, nan
    if c.always_on:
        return float("inf"), float("inf"), nan
    _, ths, kw = runs[0]
    idle, credit = c.sleep_kw, prices.credit_usd_kwh
    gap = kw - idle
    if gap <= 0:
        return nan, nan, nan
    even = (ths * prices.revenue_usd_th_h - (credit * gap if credit else 0.0)) / gap  # the terms of `values`
    # decide_fast changes when the gain is over hysteresis x the larger draw and its tie margin; 1e-8 $/h
    # also covers the rounding of `values` (~1e-15 of a few $/h).
    band = (rules.hysteresis_usd_kwh * kw + 10 * _EPS) / gap
    return even, even + band, even - band


def decide_fast(c: Candidate, worth: Sequence[float], rules: Rules) -> tuple[str, str, int]:
    """The option `c` should be in, given `values(c, ...)`, why (STAY, CHANGE, HYSTERESIS, MIN_ON, MIN_OFF), and
    its index among the options (len(c.runs): sleep; -1: a current option `c` no longer has)."""
    runs = c.runs
    current = c.current
    n = len(runs)
    ci = n if current == SLEEP else -1
    if ci < 0:
        for i in range(n):
            if runs[i][0] == current:
                ci = i
                break
    if c.always_on and ci == n:
        ci = -1  # asleep but always on now: it must run
    current_value = worth[ci] if ci >= 0 else float("-inf")
    best, best_value = ci, current_value
    last = n if not c.always_on else n - 1
    for i in range(last + 1):
        if worth[i] > best_value + _EPS:
            best, best_value = i, worth[i]
    if best == ci:
        return current, STAY, ci
    key = SLEEP if best == n else runs[best][0]
    if ci >= 0:
        kw_best = c.sleep_kw if best == n else runs[best][2]
        kw_current = c.sleep_kw if ci == n else runs[ci][2]
        if best_value - current_value <= rules.hysteresis_usd_kwh * (kw_best if kw_best > kw_current else kw_current):
            return current, HYSTERESIS, ci
        if ci == n:
            if c.held_s < rules.min_off_s:
                return current, MIN_OFF, ci
        elif c.held_s < rules.min_on_s:
            return current, MIN_ON, ci
    return key, CHANGE, best


def decide(c: Candidate, prices: Prices, rules: Rules) -> Decision:
    """The option `c` should be in at these prices, with hysteresis and minimum times, and why in words."""
    key, why, _ = decide_fast(c, values(c, prices, rules), rules)
    return Decision(key, explain(c, key, why, prices, rules), held=why in (HYSTERESIS, MIN_ON, MIN_OFF))


def wanted(c: Candidate, prices: Prices, rules: Rules) -> str:
    """The option the rules would pick with no hysteresis and no minimum times (what a hold holds back)."""
    worth = values(c, prices, rules)
    options = [r[0] for r in c.runs] + ([] if c.always_on else [SLEEP])
    return max(options, key=lambda k: worth[len(c.runs)] if k == SLEEP else worth[[r[0] for r in c.runs].index(k)])


def explain(c: Candidate, key: str, why: str, prices: Prices, rules: Rules) -> str:
    """The reason for a decision, in words (made only for the miners a plan reports)."""
    if why == STAY:
        return _why_stay(c, prices, rules)
    if why == CHANGE:
        return _why_change(c, key, prices, rules)
    change = _why_change(c, wanted(c, prices, rules), prices, rules)
    if why == HYSTERESIS:
        return f"held by hysteresis: {change}"
    minimum = rules.min_off_s if why == MIN_OFF else rules.min_on_s
    return f"held: minimum {'off' if why == MIN_OFF else 'on'} time ({c.held_s:.0f} of {minimum:.0f} s); {change}"


def _run(c: Candidate, key: str) -> tuple[str, float, float] | None:
    return next((r for r in c.runs if r[0] == key), None)


def price_words(prices: Prices) -> str:
    """The price as every reason says it (made once a cycle by the advice stage)."""
    return f"price {prices.usd_kwh:.4f} $/kWh"


def why_sleep(price: str, run: tuple[str, float, float], revenue_usd_th_h: float) -> str:
    """Why a miner sleeps (margin strategy): the price (`price_words`) is above what `run` earns per kWh."""
    return f"{price} above its break-even {run[1] * revenue_usd_th_h / run[2]:.4f} $/kWh (mode {run[0]})"


def why_wake(price: str, run: tuple[str, float, float], revenue_usd_th_h: float) -> str:
    """Why a sleeping miner runs `run` again (margin strategy): the price is below what it earns per kWh."""
    return f"{price} below its break-even {run[1] * revenue_usd_th_h / run[2]:.4f} $/kWh (mode {run[0]})"


def _why_change(c: Candidate, key: str, prices: Prices, rules: Rules) -> str:
    price = prices.usd_kwh
    if rules.strategy == "strike":
        side = "above" if key == SLEEP else "below"
        return f"price {price:.4f} $/kWh {side} the strike {rules.strike_usd_kwh:.4f}"
    if key == SLEEP:
        runs = c.runs
        run = runs[0] if len(runs) == 1 else (
            _run(c, c.current) or max(runs, key=lambda r: profit_h(c, r[0], prices, rules), default=None))
        if run is None:
            return f"price {price:.4f} $/kWh: no run option earns"
        return why_sleep(price_words(prices), run, prices.revenue_usd_th_h)
    run = _run(c, key)
    assert run is not None
    if c.current == SLEEP:
        return why_wake(price_words(prices), run, prices.revenue_usd_th_h)
    be = breakeven_usd_kwh(run[1], run[2], prices)
    gain = profit_h(c, key, prices, rules) - profit_h(c, c.current, prices, rules)
    return f"mode {key} earns {gain:.3f} $/h more than mode {c.current} at {price:.4f} $/kWh (break-even {be:.4f})"


def _why_stay(c: Candidate, prices: Prices, rules: Rules) -> str:
    if c.current == SLEEP:
        return f"asleep: no mode earns at {prices.usd_kwh:.4f} $/kWh"
    run = _run(c, c.current)
    if run is None:
        return "running"
    if rules.strategy == "strike":
        return f"price {prices.usd_kwh:.4f} $/kWh below the strike {rules.strike_usd_kwh:.4f}"
    be = breakeven_usd_kwh(run[1], run[2], prices)
    return f"margin {be - prices.usd_kwh:+.4f} $/kWh (break-even {be:.4f})" if be is not None else "running"


# --- demand response -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cover:
    chosen: tuple[int, ...]  # indices into the items
    cost: float  # their summed cost
    kw: float  # their summed kW
    met: bool  # the kW asked for is covered
    lower: float  # proven: no cover meeting the kW costs less (`cost` unless the node limit stopped the search)

    @property
    def gap(self) -> float:
        """How much cheaper than this one the cheapest cover can at most be (0: proven the cheapest)."""
        gap = self.cost - self.lower
        return gap if gap > _EPS else 0.0

    @property
    def exact(self) -> bool:
        """Proven the cheapest (else the best the node limit let the search find)."""
        return self.gap == 0


def shed_items(miners: Iterable[tuple[T, float, float, str | None]]) -> tuple[list[tuple[float, float]], list[list[T]]]:
    """Demand response's items for `min_cost_cover` from (miner, profit lost per hour asleep, kW it frees,
    its shed-whole group or None): each miner alone, or a group as one item (its costs and kW summed),
    and each item's miners. The live stage and the backtest both shed with these."""
    items: list[tuple[float, float]] = []
    members: list[list[T]] = []
    by_group: dict[str, int] = {}
    for miner, cost, kw, group in miners:
        if group is not None:
            j = by_group.get(group)
            if j is not None:
                items[j] = (items[j][0] + cost, items[j][1] + kw)
                members[j].append(miner)
                continue
            by_group[group] = len(items)
        items.append((cost, kw))
        members.append([miner])
    return items, members


def min_cost_cover(items: Sequence[tuple[float, float]], need_kw: float, *, node_limit: int = NODE_LIMIT) -> Cover:
    """The subset of `items` (cost, kW), kW > 0, whose kW sum to at least `need_kw` at the least summed
    cost. Items that cost nothing or less (already losing money) are always taken. When even all of
    them fall short, all are taken and `met` is False.

    Branch and bound over the items in order of cost per kW, bounded by the fractional (LP) cover of
    what is left; when `node_limit` nodes are visited first, `lower` is the least bound of what was left
    unexplored (the cover is then at most `gap` dearer than the cheapest: `exact` when that is 0)."""
    free = [i for i, (cost, kw) in enumerate(items) if cost <= 0 and kw > 0]
    base_cost = sum(items[i][0] for i in free)
    base_kw = sum(items[i][1] for i in free)
    need = need_kw - base_kw
    if need <= _EPS:
        return Cover(tuple(free), base_cost, base_kw, True, base_cost)
    rest = [i for _, i in sorted((cost / kw, i) for i, (cost, kw) in enumerate(items) if cost > 0 and kw > 0)]
    n = len(rest)
    costs = [items[i][0] for i in rest]
    kws = [items[i][1] for i in rest]
    K = [0.0, *accumulate(kws)]  # prefix sums in ratio order
    C = [0.0, *accumulate(costs)]
    if K[n] < need - _EPS:
        return Cover(tuple(free + rest), base_cost + C[n], base_kw + K[n], False, base_cost + C[n])

    def bound(j: int, need_left: float) -> float:
        target = K[j] + need_left
        m = bisect_left(K, target - _EPS, j + 1, n + 1)
        if m > n:
            return float("inf")
        return C[m - 1] - C[j] + (target - K[m - 1]) * (costs[m - 1] / kws[m - 1])

    # Incumbent: the greedy prefix, then each single item that covers what the prefix's last lacked.
    m = bisect_left(K, need - _EPS, 1, n + 1)
    best_cost, best_set = C[m], tuple(range(m))
    lacking = need - K[m - 1]
    for j in range(m - 1, n):
        if kws[j] >= lacking - _EPS and C[m - 1] + costs[j] < best_cost - _EPS:
            best_cost, best_set = C[m - 1] + costs[j], (*range(m - 1), j)

    nodes = 0
    lower = best_cost  # proven: no cover is cheaper (the best found, unless the search stops with some unexplored)
    # Depth-first, taking an item before leaving it out; a frame is (next item, kW still needed,
    # cost so far, the items taken as a linked list).
    stack: list[tuple[int, float, float, tuple | None]] = [(0, need, 0.0, None)]
    while stack:
        j, need_left, cost, taken = stack.pop()
        nodes += 1
        if nodes > node_limit:  # what is left unexplored bounds how much cheaper a cover could be
            stack.append((j, need_left, cost, taken))
            lower = min(lower, min(spent + bound(k, left) for k, left, spent, _ in stack))
            break
        if j >= n or cost + bound(j, need_left) >= best_cost - _EPS:
            continue
        # leave item j out (explored after taking it)
        stack.append((j + 1, need_left, cost, taken))
        with_j = cost + costs[j]
        if kws[j] >= need_left - _EPS:
            if with_j < best_cost - _EPS:
                best_cost, best_set = with_j, _linked(taken, j)
        else:
            stack.append((j + 1, need_left - kws[j], with_j, (j, taken)))
    chosen = tuple(free + [rest[j] for j in best_set])
    return Cover(chosen, base_cost + best_cost, base_kw + sum(kws[j] for j in best_set), True, base_cost + lower)


def _linked(taken: tuple | None, last: int) -> tuple[int, ...]:
    out = [last]
    while taken is not None:
        out.append(taken[0])
        taken = taken[1]
    return tuple(reversed(out))


# --- ramps -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Ramp:
    """A budget of kW of change, refilled at `kw_per_min`; a change is made only when the budget covers
    its |kW|. The budget is capped at a minute's worth or the largest single change seen, whichever is
    more, so no unit is too large ever to move."""

    kw_per_min: float
    budget_kw: float = 0.0
    cap_kw: float = field(default=0.0)

    def refill(self, seconds: float, largest_change_kw: float) -> None:
        self.cap_kw = max(self.kw_per_min, largest_change_kw)
        self.budget_kw = min(self.cap_kw, self.budget_kw + self.kw_per_min * max(0.0, seconds) / 60)

    def spend_in_order(self, sizes: Sequence[float]) -> list[int]:
        """Spend on each change in turn (|kW|, in the order they should move) that the budget still
        covers (a smaller one after a larger that did not fit may): the positions of those made."""
        budget, made = self.budget_kw, []
        # Once the budget is below the smallest change no later one fits: most of a spike's wait.
        smallest = min(sizes, default=0.0) - _EPS
        if budget >= smallest:
            for i, kw in enumerate(sizes):
                if kw <= budget + _EPS:
                    budget -= kw
                    made.append(i)
                    if budget < smallest:
                        break
        self.budget_kw = budget
        return made
