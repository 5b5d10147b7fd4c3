"""Each miner's compact daily history, for trends: chips lost per week, a board's hashrate falling over
days, efficiency drifting. Kept across restarts in one JSON file next to the spool.

Per miner and UTC day: how many mining samples, their summed hashrate, power, hottest chip, chips
answering and per-board hashrate; at most MAX_DAYS days. A cycle adds one sample to today's sums
(O(boards) per miner, no history scans); trends are worked out when a miner's day closes and kept
until the next (`Trends`), except chips lost, which compares today's count with the first day kept.
Besides the sums, its usual draw and hashrate, its model, and the address it was last read at showing
its MAC (after a restart the poller knows an address only once it is identified again: until then the
health stage prices an address that does not answer as the unit last read there).

The file is input like any other (as collector/stages/running_totals.py treats its own): over its
size cap, not JSON, a wrong type, a number that is not finite or is out of range, a date past any
clock (collector/clock.py), too many miners, days or boards — and the whole file is set aside as
`<name>.unusable.<n>`, logged, and the version the last save replaced (`<name>.prev`,
collector/durable_file.py) is read instead; when that is unusable too, history starts over; a
poisoned file never stops the service. A file dated ahead of the clock (stepped back since, or behind
now: a box that lost its time in a power cut) is kept (logged), each miner's last seen moved back with
the clock, its latest day added to until the clock is there again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from collector import clock, durable_file
from models import MinerSample, MinerState
from models.base import read_capped

log = logging.getLogger(__name__)

VERSION = 1
MAX_DAYS = 15  # two weeks of closed days and today
MAX_MINERS = 200_000
MAX_BOARDS = 128
MAX_FILE_BYTES = 512 * 1024 * 1024  # ~700 bytes a miner-day: 10,000 miners x 15 days is ~100 MB at most
MAX_VALUE = 1e15  # sums of a day's samples: 8,640 cycles x 5,000 TH/s is ~4e7; past this it is garbage
MAX_CLOCK_SKEW_S = 300
MAX_ADDRESS_CHARS = 262  # host:port, a host of at most 256 characters (MinerSample.host)
SAVE_EVERY_S = 600
# Trends need this many samples in a day to count it (an hour at 10 s cycles is 360).
MIN_DAY_SAMPLES = 30
CHIPS_LOST_WEEK = 1.0  # chips a week at which losing chips is a problem
BOARD_DROP = 0.05  # a board this much below its first day kept, while the unit as a whole is not
UNIT_STEADY = 0.02
EFFICIENCY_DRIFT = 0.05  # J/TH this much above the first day kept
TEMP_ROSE_C = 3.0  # ... with chips this much hotter: the cooling's, not the power's


class UnusableHistory(durable_file.UnusableFile):
    """The saved history cannot be used; the message says which value and why."""


@dataclass(slots=True)
class Day:
    day: int  # UTC date ordinal
    n: int = 0  # mining samples
    ths: float = 0.0
    eff_w: float = 0.0  # power of the samples with both power and hashrate
    eff_ths: float = 0.0  # hashrate of those samples
    temp: float = 0.0
    temp_n: int = 0
    chips: float = 0.0  # chips answering, summed over boards
    chips_n: int = 0
    boards: list[float] = field(default_factory=list)  # per-board hashrate sums
    boards_n: int = 0

    def row(self) -> list[Any]:
        return [self.day, self.n, self.ths, self.eff_w, self.eff_ths, self.temp, self.temp_n, self.chips, self.chips_n,
                self.boards_n, list(self.boards)]


@dataclass(frozen=True, slots=True)
class Trends:
    """Worked out when a miner's day closes, from the closed days kept."""

    first_day: int | None = None  # the oldest day with chips counted
    first_chips: float | None = None  # its mean chips answering
    weak_boards: tuple[tuple[int, float], ...] = ()  # (board, its last day / its first day) below BOARD_DROP
    efficiency_rise: float | None = None  # last day's J/TH / first day's - 1, when above EFFICIENCY_DRIFT
    temp_rise_c: float | None = None
    days: int = 0


@dataclass(slots=True)
class MinerHistory:
    days: list[Day] = field(default_factory=list)  # oldest first, at most MAX_DAYS (a list: a deque is ~760 B)
    trends: Trends = Trends()
    seen_s: float = 0.0
    model: str | None = None
    expected_ths: float | None = None
    baseline_w: float | None = None  # draw when healthy (EWMA)
    healthy_ths: float | None = None  # hashrate when healthy (EWMA)
    address: str | None = None  # host:port it was last read at showing its MAC: who was there, after a restart
    answered_s: float | None = None  # when it last answered there (seen_s counts its offline samples too)

    def add(self, sample: MinerSample, day: int) -> None:
        """One cycle's sample into today's sums; a new day closes the last and works out the trends."""
        days = self.days
        if not days or days[-1].day != day:
            if days and days[-1].day > day:  # the clock went back: keep adding to the latest day
                day = days[-1].day
            else:
                days.append(Day(day))
                if len(days) > MAX_DAYS:
                    del days[0]
                self.trends = trends(days)
        today = days[-1]
        if sample.state is not MinerState.MINING or sample.hashrate_ths is None:
            return
        today.n += 1
        today.ths += sample.hashrate_ths
        if sample.power_w is not None:
            today.eff_w += sample.power_w
            today.eff_ths += sample.hashrate_ths
        if sample.temp_chip_max_c is not None:
            today.temp += sample.temp_chip_max_c
            today.temp_n += 1
        chips = [b.chips_ok for b in sample.boards if b.chips_ok is not None]
        if chips:
            today.chips += sum(chips)
            today.chips_n += 1
        rates = [b.hashrate_ths if b.hashrate_ths is not None else b.hashrate_avg_ths for b in sample.boards]
        if rates and all(r is not None for r in rates) and len(rates) <= MAX_BOARDS:
            if not today.boards_n:
                today.boards = [0.0] * len(rates)
            if len(today.boards) == len(rates):
                for i, r in enumerate(rates):
                    today.boards[i] += r  # type: ignore[operator]
                today.boards_n += 1

    def chips_lost_week(self, chips_now: int | None, day: int) -> float | None:
        """Chips lost per week since the first day kept: its mean against the count now."""
        t = self.trends
        if chips_now is None or t.first_day is None or t.first_chips is None or day <= t.first_day:
            return None
        return (t.first_chips - chips_now) * 7 / (day - t.first_day)


def trends(days: list[Day]) -> Trends:
    """From the closed days (every one but the last, today's)."""
    closed = [d for d in list(days)[:-1] if d.n >= MIN_DAY_SAMPLES]
    if not closed:
        return Trends()
    with_chips = [d for d in closed if d.chips_n >= MIN_DAY_SAMPLES]
    first_chips = with_chips[0] if with_chips else None
    weak: list[tuple[int, float]] = []
    rise = temp_rise = None
    if len(closed) >= 2:
        first, last = closed[0], closed[-1]
        unit = (last.ths / last.n) / (first.ths / first.n) if first.ths > 0 else None
        if (first.boards_n >= MIN_DAY_SAMPLES and last.boards_n >= MIN_DAY_SAMPLES
                and len(first.boards) == len(last.boards) and unit is not None and unit >= 1 - UNIT_STEADY):
            for i, (a, b) in enumerate(zip(first.boards, last.boards)):
                ratio = (b / last.boards_n) / (a / first.boards_n) if a > 0 else None
                if ratio is not None and ratio < 1 - BOARD_DROP:
                    weak.append((i, ratio))
        if first.eff_ths > 0 and last.eff_ths > 0:
            change = (last.eff_w / last.eff_ths) / (first.eff_w / first.eff_ths) - 1
            if change > EFFICIENCY_DRIFT:
                rise = change
                if first.temp_n and last.temp_n:
                    temp_rise = last.temp / last.temp_n - first.temp / first.temp_n
    return Trends(first_day=first_chips.day if first_chips else None,
                  first_chips=first_chips.chips / first_chips.chips_n if first_chips else None,
                  weak_boards=tuple(weak), efficiency_rise=rise, temp_rise_c=temp_rise, days=len(closed))


def utc_day(ts: datetime) -> int:
    return ts.astimezone(timezone.utc).date().toordinal()


# --- the file -------------------------------------------------------------------------------------


def save(path: Path, miners: dict[str, MinerHistory], now: datetime) -> None:
    data = {"version": VERSION, "as_of": now.isoformat(), "miners": {
        miner: {"days": [d.row() for d in h.days], "seen": h.seen_s, "model": h.model,
                "expected_ths": h.expected_ths, "baseline_w": h.baseline_w, "healthy_ths": h.healthy_ths,
                "address": h.address, "answered": h.answered_s}
        for miner, h in miners.items()}}
    durable_file.replace(path, orjson.dumps(data))


def load(path: Path, now: datetime | None = None, *, set_aside: bool = True) -> dict[str, MinerHistory]:
    """The saved history (or the copy kept before it, logged), or {}: a first start, or no usable file
    (logged, set aside)."""
    at = now or datetime.now(timezone.utc)

    def read(file: Path) -> dict[str, MinerHistory]:
        as_of, miners = _read(orjson.loads(read_capped(file, MAX_FILE_BYTES)), at)
        step = (as_of - clock.kept_ahead(f"the health history in {file}", as_of, at)).total_seconds()
        if step > 0:
            for history in miners.values():
                history.seen_s = max(0.0, history.seen_s - step)
                if history.answered_s is not None:
                    history.answered_s = max(0.0, history.answered_s - step)
        return miners

    return durable_file.read_book(path, read, what="health history", lost="trends start over",
                                  set_aside=set_aside) or {}


def _read(data: Any, now: datetime) -> tuple[datetime, dict[str, MinerHistory]]:
    if newer := durable_file.newer_version(data, VERSION, "health history"):
        raise UnusableHistory(newer)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise UnusableHistory(f"not a version {VERSION} health history")
    as_of = data.get("as_of")
    if not isinstance(as_of, str):
        raise UnusableHistory("as_of is not a timestamp")
    when = datetime.fromisoformat(as_of)
    if when.tzinfo is None:
        raise UnusableHistory(f"as_of {as_of[:40]!r} has no time zone")
    if (problem := clock.implausible(when)) is not None:
        raise UnusableHistory(f"as_of {as_of[:40]!r} {problem}")
    miners = data.get("miners")
    if not isinstance(miners, dict) or len(miners) > MAX_MINERS:
        raise UnusableHistory(f"miners is not an object of at most {MAX_MINERS}")
    latest = max(now, when)  # dated ahead of the clock: as of then
    today = utc_day(latest) + 1
    out = {}
    for miner, raw in miners.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("days"), list) or len(raw["days"]) > MAX_DAYS:
            raise UnusableHistory(f"miners[{miner[:80]!r}] is not an object with at most {MAX_DAYS} days")
        history = MinerHistory(seen_s=_number(raw.get("seen"), "seen", miner,
                                              high=latest.timestamp() + MAX_CLOCK_SKEW_S),
                               model=_text(raw.get("model"), miner),
                               expected_ths=_optional(raw.get("expected_ths"), "expected_ths", miner),
                               baseline_w=_optional(raw.get("baseline_w"), "baseline_w", miner),
                               healthy_ths=_optional(raw.get("healthy_ths"), "healthy_ths", miner),
                               address=_text(raw.get("address"), miner, "address", MAX_ADDRESS_CHARS),
                               # (absent from a file older versions saved)
                               answered_s=None if raw.get("answered") is None else _number(
                                   raw.get("answered"), "answered", miner, high=latest.timestamp() + MAX_CLOCK_SKEW_S))
        last = 0
        for row in raw["days"]:
            day = _day(row, miner, today)
            if day.day <= last:
                raise UnusableHistory(f"miners[{miner[:80]!r}]: days out of order")
            last = day.day
            history.days.append(day)
        history.trends = trends(history.days)
        out[miner] = history
    return when, out


def _day(row: Any, miner: str, today: int) -> Day:
    if not isinstance(row, list) or len(row) != 11 or not isinstance(row[10], list) or len(row[10]) > MAX_BOARDS:
        raise UnusableHistory(f"miners[{miner[:80]!r}]: a day is not [day, n, ..., [boards]]")
    day = row[0]
    if not isinstance(day, int) or isinstance(day, bool) or not 700_000 <= day <= today:
        raise UnusableHistory(f"miners[{miner[:80]!r}]: day {day!r} is not a date up to today")
    counts = [row[i] for i in (1, 6, 8, 9)]
    if any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 10_000_000 for c in counts):
        raise UnusableHistory(f"miners[{miner[:80]!r}]: a count is not a whole number in range")
    sums = [_number(row[i], "sum", miner) for i in (2, 3, 4, 5, 7)]
    boards = [_number(v, "board sum", miner) for v in row[10]]
    return Day(day, row[1], sums[0], sums[1], sums[2], sums[3], row[6], sums[4], row[8], boards, row[9])


def _number(value: Any, name: str, miner: str, high: float = MAX_VALUE) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= high \
            or not math.isfinite(value):
        raise UnusableHistory(f"miners[{miner[:80]!r}].{name} = {str(value)[:40]} is not a number in range")
    return float(value)


def _optional(value: Any, name: str, miner: str) -> float | None:
    return None if value is None else _number(value, name, miner, high=1e7)


def _text(value: Any, miner: str, name: str = "model", longest: int = 256) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise UnusableHistory(f"miners[{miner[:80]!r}].{name} is not a short text")
    return value
