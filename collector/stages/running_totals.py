"""Keep the cost engine's running totals (today, this month) across restarts.

Without this, every restart or upgrade of the collector would start "spent this
month" from zero. The state is one JSON file next to the spool (owned by the
same process), replaced atomically every few minutes and on stop
(collector/stages/cost_stage.py SAVE_EVERY_S), not synced: the version it replaces is kept, synced, to
fall back to after a power cut (collector/durable_file.py).

The file is input like any other: a value that is not a finite number, is negative where an
amount cannot be, is absurdly large, has the wrong type, or a date past any clock (collector/clock.py)
makes the whole file unusable. It is then set aside as `<name>.unusable.<n>`, the reason logged, and
the previous copy the last save kept (`<name>.prev`, collector/durable_file.py) is read instead; when
that is unusable too the totals start over: a poisoned file must never stop the service (under
`restart: unless-stopped` that is a crash loop). Totals that would be unusable are never written. A
file dated ahead of the clock (the clock stepped back since, or behind now: a box that lost its time
in a power cut) is kept and carried on from now (logged). What the last midnight or 1st took off the
books (`rolled_away`: a clock stepped back over it gives it back, collector/stages/cost_engine.py
RolledAway) is saved and checked with the rest; a file from before it was kept has none. So is a step
back of the clock not caught up yet (`step_back`: a clock that jumps back to where it was gives the books
their day and times back, cost_engine.StepBack).
"""

from __future__ import annotations

import logging
from dataclasses import fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from collector import clock, durable_file
from collector.stages.cost_engine import RolledAway, RunningTotals, StepBack, Totals, carried_back
from models.base import read_capped

log = logging.getLogger(__name__)
VERSION = 1
MAX_TOTALS_BYTES = 256 * 1024 * 1024  # ~200 bytes a miner and day: far beyond any real site

# No site spends, uses or mines this much in a month in any unit (USD, kWh, BTC): past it a value
# is garbage, not an amount.
MAX_AMOUNT = 1e12
MAX_STEP_S = (clock.LATEST - datetime.fromtimestamp(0, timezone.utc)).total_seconds()  # no step is longer
# Amounts that may be negative: power bought at negative real-time prices, curtailment credits.
_SIGNED = frozenset({"power_usd"})
_TOTALS_FIELDS = tuple(f.name for f in fields(Totals))


class UnusableTotals(durable_file.UnusableFile):
    """The saved totals cannot be used; the message says which value and why."""


def save(path: Path, totals: RunningTotals, *, checked: bool = False) -> None:
    """Write the totals atomically; UnusableTotals (nothing written) when any value is unusable.
    `checked`: the caller has just run `check` on these very totals."""
    problem = None if checked else check(totals, thorough=False)
    if problem is not None:
        raise UnusableTotals(f"not saved: {problem}")
    data = {
        "version": VERSION,
        "as_of": totals.as_of.isoformat(),
        "day": totals.day.isoformat(),
        "month": totals.month.isoformat(),
        "today": {k: _amounts(v) for k, v in totals.today.items()},
        "month_to_date": {k: _amounts(v) for k, v in totals.month_to_date.items()},
        "peak_kw": totals.peak_kw,
        "demand_usd": totals.demand_usd,
        "demand_from": totals.demand_from.isoformat() if totals.demand_from else None,
        "last_seen": {k: v.timestamp() for k, v in totals.last_seen.items()},
        "rolled_away": None if totals.rolled_away is None else _rolled_away_data(totals.rolled_away),
        "step_back": None if totals.step_back is None else {
            "was_at": totals.step_back.was_at.isoformat(), "moved_s": totals.step_back.moved.total_seconds()},
    }
    durable_file.replace(path, orjson.dumps(data))


def _amounts(t: Totals) -> dict[str, float]:
    return {name: getattr(t, name) for name in _TOTALS_FIELDS}


def _rolled_away_data(rolled: RolledAway) -> dict[str, Any]:
    month = rolled.month_to_date
    return {
        "day": rolled.day.isoformat(),
        "today": {k: _amounts(v) for k, v in rolled.today.items()},
        "demand_from": rolled.demand_from.isoformat() if rolled.demand_from else None,
        "month_to_date": None if month is None else {k: _amounts(v) for k, v in month.items()},
        "peak_kw": rolled.peak_kw,
        "demand_usd": rolled.demand_usd,
    }


def load(path: Path, now: datetime | None = None) -> RunningTotals | None:
    """The saved totals (or the copy kept before them, logged), or None: a first start, or no usable file
    (logged, set aside)."""
    at = now or datetime.now(timezone.utc)

    def read(file: Path) -> RunningTotals:
        totals = _read(orjson.loads(read_capped(file, MAX_TOTALS_BYTES)))
        return carried_back(totals, clock.kept_ahead(f"running cost totals in {file}", totals.as_of, at))

    return durable_file.read_book(path, read, what="running cost totals",
                                  lost="today's and this month's totals start over")


def check(totals: RunningTotals, *, thorough: bool = True) -> str | None:
    """What makes `totals` unusable, or None when every amount is a finite, sane number.

    Not `thorough` (totals the engine made from checked inputs, every cycle): first the sum of every
    amount, ~40 times cheaper at 10,000 miners; an infinity, a NaN or an absurd amount anywhere
    shows in it, and only then is each value looked at to name it. What the last rollover set aside
    (`rolled_away`) is not summed: it was checked as today's and the month's books before it."""
    if not thorough and _sums_are_sane(totals):
        return None
    books: list[tuple[str, Any]] = [("today", totals.today), ("month_to_date", totals.month_to_date)]
    amounts = [("peak_kw", totals.peak_kw), ("demand_usd", totals.demand_usd)]
    if (rolled := totals.rolled_away) is not None:
        books += [("rolled_away.today", rolled.today), ("rolled_away.month_to_date", rolled.month_to_date or {})]
        amounts += [("rolled_away.peak_kw", rolled.peak_kw), ("rolled_away.demand_usd", rolled.demand_usd)]
    for book_name, book in books:
        for miner, t in book.items():
            for name in _TOTALS_FIELDS:
                value = getattr(t, name)
                problem = _amount_problem(value, signed=name in _SIGNED)
                if problem is not None:
                    return f"{book_name}[{miner!r}].{name} = {value!r} {problem}"
    for name, value in amounts:
        problem = _amount_problem(value, signed=False)
        if problem is not None:
            return f"{name} = {value!r} {problem}"
    return None


def _sums_are_sane(totals: RunningTotals) -> bool:
    try:
        sums = [sum([t.energy_kwh + t.power_usd + t.opex_usd + t.depreciation_usd + t.btc + t.revenue_usd
                     for t in book.values()]) for book in (totals.today, totals.month_to_date)]
        sums += [totals.peak_kw, totals.demand_usd]
        return all(-MAX_AMOUNT <= x <= MAX_AMOUNT for x in sums)  # NaN fails both comparisons
    except TypeError:
        return False


def _amount_problem(value: Any, *, signed: bool) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"is a {type(value).__name__}, not a number"
    if not -MAX_AMOUNT <= value <= MAX_AMOUNT:  # NaN fails both comparisons
        return "is not a finite, plausible amount"
    if value < 0 and not signed:
        return "is negative"
    return None


def _read(data: Any) -> RunningTotals:
    if not isinstance(data, dict):
        raise UnusableTotals(f"the file holds a {type(data).__name__}, not an object")
    if newer := durable_file.newer_version(data, VERSION, "totals file"):
        raise UnusableTotals(newer)
    if data.get("version") != VERSION:
        raise UnusableTotals(f"version {data.get('version')!r}, expected {VERSION}")
    as_of = _instant(data.get("as_of"), "as_of")
    if (problem := clock.implausible(as_of)) is not None:
        raise UnusableTotals(f"as_of {as_of.isoformat()} {problem}")
    day, month = _date(data.get("day"), "day"), _date(data.get("month"), "month")
    if month.day != 1 or (day.year, day.month) != (month.year, month.month):
        raise UnusableTotals(f"day {day} is not in the month starting {month}")
    demand_from = _optional_time(data.get("demand_from"), "demand_from")
    last_seen_raw = data.get("last_seen", {})
    if not isinstance(last_seen_raw, dict):
        raise UnusableTotals("last_seen is not an object")
    today, month_to_date = _book(data.get("today"), "today"), _book(data.get("month_to_date"), "month_to_date")
    last_seen = {miner: _seen(value, miner) for miner, value in last_seen_raw.items()}
    for miner in month_to_date:  # a file from before last_seen was kept: every miner was there at as_of
        last_seen.setdefault(miner, as_of)
    totals = RunningTotals(
        as_of=as_of, day=day, month=month, today=today, month_to_date=month_to_date,
        peak_kw=data.get("peak_kw"), demand_usd=data.get("demand_usd"),  # type: ignore[arg-type]  # checked below
        demand_from=demand_from,
        last_seen=last_seen,
        rolled_away=_rolled_away(data.get("rolled_away"), day, month),  # absent from files before it was kept
        step_back=_step_back(data.get("step_back"), as_of),  # (and this)
    )
    problem = check(totals)
    if problem is not None:
        raise UnusableTotals(problem)
    return totals


def _rolled_away(raw: Any, day: date, month: date) -> RolledAway | None:
    """What the last rollover set aside: before the books' day; a day's, in their month; its amounts are
    checked with the rest (`check`)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UnusableTotals("rolled_away is not an object")
    rolled_day = _date(raw.get("day"), "rolled_away.day")
    if rolled_day >= day:
        raise UnusableTotals(f"rolled_away.day {rolled_day} is not before the books' day {day}")
    month_raw = raw.get("month_to_date")
    if month_raw is None and rolled_day.replace(day=1) != month:
        raise UnusableTotals(f"rolled_away.day {rolled_day}, a day's rollover, is not in the month starting {month}")
    demand_from = _optional_time(raw.get("demand_from"), "rolled_away.demand_from")
    return RolledAway(
        day=rolled_day, today=_book(raw.get("today"), "rolled_away.today"), demand_from=demand_from,
        month_to_date=None if month_raw is None else _book(month_raw, "rolled_away.month_to_date"),
        peak_kw=raw.get("peak_kw"), demand_usd=raw.get("demand_usd"),  # type: ignore[arg-type]  # checked by `check`
    )


def _step_back(raw: Any, as_of: datetime) -> StepBack | None:
    """Kept until the books are where the clock was before it went back: later than them."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UnusableTotals("step_back is not an object")
    was_at = _optional_time(raw.get("was_at"), "step_back.was_at")
    if was_at is None or was_at <= as_of:
        raise UnusableTotals(f"step_back.was_at {raw.get('was_at')!r} is not after as_of {as_of.isoformat()}")
    moved = raw.get("moved_s")
    if not isinstance(moved, (int, float)) or isinstance(moved, bool) or not 0 < moved < MAX_STEP_S:
        raise UnusableTotals(f"step_back.moved_s {moved!r} is not a step back (seconds, up to {MAX_STEP_S:g})")
    return StepBack(was_at, timedelta(seconds=moved))


def _optional_time(raw: Any, name: str) -> datetime | None:
    """The engine moves times with the clock at a step: a time, not any date (year 1 overflowed, outside any guard)."""
    if raw is None:
        return None
    demand_from = _instant(raw, name)
    if not datetime.fromtimestamp(0, timezone.utc) <= demand_from < clock.LATEST:
        raise UnusableTotals(f"{name} {demand_from.isoformat()} is not a time")
    return demand_from


def _book(raw: Any, name: str) -> dict[str, Totals]:
    if not isinstance(raw, dict):
        raise UnusableTotals(f"{name} is not an object")
    book = {}
    for miner, amounts in raw.items():
        if not isinstance(amounts, dict) or set(amounts) != set(_TOTALS_FIELDS):
            raise UnusableTotals(f"{name}[{miner!r}] is not an object of {', '.join(_TOTALS_FIELDS)}")
        book[miner] = Totals(**amounts)
    return book


def _instant(raw: Any, name: str) -> datetime:
    if not isinstance(raw, str):
        raise UnusableTotals(f"{name} is not a timestamp")
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise UnusableTotals(f"{name} {raw!r} has no time zone")
    return value.astimezone(timezone.utc)


def _date(raw: Any, name: str) -> date:
    if not isinstance(raw, str):
        raise UnusableTotals(f"{name} is not a date")
    return date.fromisoformat(raw)


def _seen(raw: Any, miner: str) -> datetime:
    if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not 0 <= raw <= 1e11:
        raise UnusableTotals(f"last_seen[{miner!r}] = {raw!r} is not a time")
    return datetime.fromtimestamp(raw, timezone.utc)

