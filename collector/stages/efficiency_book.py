"""Each miner's measured hashrate and power per work mode, and its idle draw: what the curtailment
advice ranks miners by (collector/stages/curtailment.py), learned from its own readings.

A reading teaches the book only when it is a steady one: mining, hashrate and power both read and
not refused, and the miner past its warm-up (uptime, and the time since it was last seen start to
mine: a unit ramping after a wake or a boot reads low). Means are running means, then exponentially
weighted once a mode has `MAX_WEIGHT` readings, so a unit that ages is followed.

Compact state (three numbers a mode) survives restarts in one JSON file next to the spool, replaced
atomically, the version it replaces kept as `<name>.prev` (collector/durable_file.py). The file is
input like any other: a value that is not a finite, plausible number, a count that is not a whole
number, an id or mode that is too long, too many miners or modes, or a date past any clock
(collector/clock.py) makes it unusable; it is set aside as `<name>.unusable.<n>`, the reason logged,
and the `.prev` copy read instead; when that is unusable too learning starts over (the nameplate
stands in meanwhile). A book dated ahead of the clock (stepped back since, or behind now) is kept,
its dates moved back with the clock (logged). The running "saved vs always-on" totals live in the
same file, and the plan's hold on the miners it would lose track of at a restart (`plans`: each miner asleep,
held for demand response, or changed within its minimum times: its option, since when, and whether demand
response holds it), so a restart in a demand-response window does not wake the miners slept for it.
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
from models.hardware import MAX_UNIT_THS, MAX_UNIT_W

log = logging.getLogger(__name__)
_MINING, _SOFT_OFF = MinerState.MINING, MinerState.SOFT_OFF

VERSION = 1
MAX_BYTES = 64 * 1024 * 1024  # ~100 bytes a miner and mode: far beyond any real site
MAX_MINERS = 200_000
MAX_MODES = 16
MAX_KEY_CHARS = 256
MAX_WEIGHT = 8640  # a day of 10 s readings; past it each new reading weighs 1/MAX_WEIGHT
MAX_CLOCK_SKEW_S = 300
MAX_TOTAL = 1e12  # no site saves this many dollars, kWh or BTC: past it a value is garbage
_LATEST_S = clock.LATEST.timestamp()


@dataclass(slots=True)
class ModeStat:
    n: int = 0
    ths: float = 0.0
    w: float = 0.0

    def add(self, ths: float, w: float) -> None:
        if self.n < MAX_WEIGHT:
            self.n += 1
        weight = 1.0 / self.n
        self.ths += (ths - self.ths) * weight
        self.w += (w - self.w) * weight


@dataclass(slots=True)
class MinerBook:
    modes: dict[str, ModeStat] = field(default_factory=dict)
    idle: ModeStat = field(default_factory=ModeStat)  # ths unused: the draw asleep
    seen: float = 0.0  # unix seconds
    mining_since: float | None = None  # not saved: after a restart the warm-up starts again

    def usual_mode(self) -> str | None:
        """The mode it has run in most."""
        return max(self.modes, key=lambda m: self.modes[m].n) if self.modes else None


@dataclass(slots=True)
class SavedTotals:
    """What following the advice saved against running every miner always on, since `since`."""

    since: float = 0.0
    usd: float = 0.0
    kwh: float = 0.0
    btc: float = 0.0


class EfficiencyBook:
    def __init__(self) -> None:
        self.miners: dict[str, MinerBook] = {}
        self.saved = SavedTotals()
        # miner -> (the plan's option: a mode, or "" asleep; since, unix s; held for demand response), as the
        # curtailment stage left them at the last save (it takes each up at the miner's first reading)
        self.plans: dict[str, tuple[str, float, bool]] = {}

    def learn(self, sample: MinerSample, now: float, mode: str, warmup_s: float) -> MinerBook:
        # Every reading of every miner comes here each cycle: the steady path is kept short
        # (ModeStat.add inlined, the cheap checks first; docs/benchmarks.md, "Curtailment planning").
        book = self.miners.get(sample.miner)
        if book is None:
            if len(self.miners) >= MAX_MINERS:
                return MinerBook()  # not kept: a churn of ids must not grow the book without bound
            book = self.miners[sample.miner] = MinerBook()
        book.seen = now
        state = sample.state
        if state is _MINING:
            since = book.mining_since
            if since is None:
                since = book.mining_since = now
            ths, w = sample.hashrate_ths, sample.power_w
            if not (ths and w and ths > 0 and w > 0 and now - since >= warmup_s):
                return book
            uptime, unusable = sample.uptime_s, sample.unusable
            if (uptime is not None and uptime < warmup_s) or (
                    unusable and ("hashrate_ths" in unusable or "power_w" in unusable)):
                return book
            stat = book.modes.get(mode)
            if stat is None:
                if len(book.modes) >= MAX_MODES:
                    return book
                stat = book.modes[mode] = ModeStat()
            n = stat.n
            if n < MAX_WEIGHT:
                n = stat.n = n + 1
            weight = 1.0 / n
            stat.ths += (ths - stat.ths) * weight
            stat.w += (w - stat.w) * weight
        else:
            book.mining_since = None
            unusable = sample.unusable
            if state is _SOFT_OFF and sample.power_w is not None and not (unusable and "power_w" in unusable):
                book.idle.add(0.0, sample.power_w)
        return book

    def forget(self, before: float) -> None:
        gone = [m for m, b in self.miners.items() if b.seen < before]
        for miner in gone:
            del self.miners[miner]

    # -- the file -------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        data = {
            "version": VERSION,
            "as_of": max((b.seen for b in self.miners.values()), default=self.saved.since),
            "saved": [self.saved.since, self.saved.usd, self.saved.kwh, self.saved.btc],
            "miners": {miner: {"seen": b.seen, "idle": [b.idle.n, b.idle.w],
                               "modes": {m: [s.n, s.ths, s.w] for m, s in b.modes.items()}}
                       for miner, b in self.miners.items()},
            "plans": {miner: [key, since, dr] for miner, (key, since, dr) in self.plans.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        durable_file.replace(path, orjson.dumps(data))

    @classmethod
    def load(cls, path: Path, now: float, *, set_aside: bool = True) -> EfficiencyBook:
        """The saved book (or the copy kept before it, logged), or an empty one: a first start, or no usable
        file (logged, set aside unless `set_aside` is False: `hashfleet advise` leaves the collector's file)."""

        def read(file: Path) -> EfficiencyBook:
            book = cls()
            _read(book, orjson.loads(read_capped(file, MAX_BYTES)))
            book._kept_ahead(file, now)
            return book

        book = durable_file.read_book(path, read, what="measured efficiencies",
                                      lost="learning starts over, nameplates stand in meanwhile", set_aside=set_aside)
        return book if book is not None else cls()

    def _kept_ahead(self, path: Path, now: float) -> None:
        """A book dated ahead of the clock (stepped back since, or behind now): its dates move back with it."""
        as_of = max((b.seen for b in self.miners.values()), default=self.saved.since)
        if as_of <= now:
            return
        step = as_of - clock.kept_ahead(f"the measured efficiencies in {path}", _utc(as_of), _utc(now)).timestamp()
        if self.saved.since:
            self.saved.since = max(0.0, self.saved.since - step)
        for book in self.miners.values():
            book.seen = max(0.0, book.seen - step)
        self.plans = {miner: (key, max(0.0, since - step), dr) for miner, (key, since, dr) in self.plans.items()}


class UnusableBook(durable_file.UnusableFile):
    """The saved book cannot be used; the message says which value and why."""


def _read(book: EfficiencyBook, data: Any) -> None:
    if newer := durable_file.newer_version(data, VERSION, "efficiency book"):
        raise UnusableBook(newer)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise UnusableBook(f"not a version {VERSION} efficiency book")
    as_of = _number(data.get("as_of"), "as_of", 0, _LATEST_S)
    saved = data.get("saved")
    if not isinstance(saved, list) or len(saved) != 4:
        raise UnusableBook("saved is not [since, usd, kwh, btc]")
    since = _number(saved[0], "saved.since", 0, _LATEST_S)
    book.saved = SavedTotals(since, *(_number(v, f"saved[{i + 1}]", -MAX_TOTAL, MAX_TOTAL)
                                      for i, v in enumerate(saved[1:])))
    miners = data.get("miners")
    if not isinstance(miners, dict):
        raise UnusableBook("miners is not an object")
    if len(miners) > MAX_MINERS:
        raise UnusableBook(f"{len(miners)} miners, more than {MAX_MINERS}")
    for miner, entry in miners.items():
        if not miner or len(miner) > MAX_KEY_CHARS:
            raise UnusableBook(f"miner id {miner[:40]!r} is empty or longer than {MAX_KEY_CHARS}")
        if not isinstance(entry, dict) or set(entry) != {"seen", "idle", "modes"}:
            raise UnusableBook(f"miners[{miner[:40]!r}] is not an object of seen, idle, modes")
        seen = _number(entry["seen"], f"miners[{miner[:40]!r}].seen", 0, as_of + MAX_CLOCK_SKEW_S)
        idle = entry["idle"]
        if not isinstance(idle, list) or len(idle) != 2:
            raise UnusableBook(f"miners[{miner[:40]!r}].idle is not [n, watts]")
        modes = entry["modes"]
        if not isinstance(modes, dict) or len(modes) > MAX_MODES:
            raise UnusableBook(f"miners[{miner[:40]!r}].modes is not an object of at most {MAX_MODES} modes")
        mb = MinerBook(seen=seen, idle=ModeStat(_count(idle[0], miner), 0.0, _number(idle[1], "idle watts", 0, MAX_UNIT_W)))
        for mode, stat in modes.items():
            if not mode or len(mode) > 64:
                raise UnusableBook(f"miners[{miner[:40]!r}]: mode {mode[:40]!r} is empty or longer than 64")
            if not isinstance(stat, list) or len(stat) != 3:
                raise UnusableBook(f"miners[{miner[:40]!r}].modes[{mode[:40]!r}] is not [n, TH/s, watts]")
            where = f"miners[{miner[:40]!r}].modes[{mode[:40]!r}]"
            mb.modes[mode] = ModeStat(_count(stat[0], miner), _number(stat[1], f"{where} TH/s", 0, MAX_UNIT_THS),
                                      _number(stat[2], f"{where} watts", 0, MAX_UNIT_W))
        book.miners[miner] = mb
    plans = data.get("plans", {})  # (a book saved before plans were kept has none)
    if not isinstance(plans, dict) or len(plans) > MAX_MINERS:
        raise UnusableBook(f"plans is not an object of at most {MAX_MINERS} miners")
    for miner, plan in plans.items():
        where = f"plans[{miner[:40]!r}]"
        if not miner or len(miner) > MAX_KEY_CHARS:
            raise UnusableBook(f"{where}: the miner id is empty or longer than {MAX_KEY_CHARS}")
        if (not isinstance(plan, list) or len(plan) != 3 or not isinstance(plan[0], str) or len(plan[0]) > 64
                or not isinstance(plan[2], bool)):
            raise UnusableBook(f"{where} is not [option (a mode of at most 64 characters, or \"\" asleep), since, "
                               "held for demand response (true/false)]")
        book.plans[miner] = (plan[0], _number(plan[1], f"{where} since", 0, as_of + MAX_CLOCK_SKEW_S), plan[2])


def _number(value: Any, what: str, low: float, high: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise UnusableBook(f"{what} = {str(value)[:40]!r} is not a finite number")
    if not low <= value <= high:
        raise UnusableBook(f"{what} = {value!r} is outside [{low:g}, {high:g}]")
    return float(value)


def _count(value: Any, miner: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WEIGHT:
        raise UnusableBook(f"miners[{miner[:40]!r}]: a count {str(value)[:40]!r} is not a whole number in "
                           f"[0, {MAX_WEIGHT}]")
    return value


def _utc(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, timezone.utc)
