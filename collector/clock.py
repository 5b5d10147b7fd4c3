"""The wall clock: cycle timestamps, and what the collector does when the clock is stepped back.

NTP correcting a fast clock, or an operator fixing the date, moves the wall clock back, by hours at
times. The rules (DESIGN.md: no future timestamps; one bad input costs that input only):

- Cycles (`CycleClock`) are stamped in whole seconds, each after the last, so a re-sent point
  overwrites itself and never another cycle. Keeping that order costs at most MAX_STAMP_AHEAD
  ahead of the clock (a timer firing a hair early, a restart in the second after the last spooled
  cycle); the commands that read the history up to now read that far ahead too (`history_until`).
  A clock further behind the last cycle than that was stepped back: a WARNING says so, once
  per step and with how far, and cycles are stamped with the clock again. Until it has caught up,
  the points written while it was ahead stay where they are, and a cycle that lands on the very
  second of one of them replaces it (InfluxDB keeps one point per series and timestamp). Stamping
  one second after the last instead would have put hours of cycles a second apart in the future.
- A state file dated later than now is kept, logged with how far (`kept_ahead`), and its stage carries
  on from now: either the clock was ahead when it was saved and has been stepped back since, or the
  clock is behind now. Up to MAX_STEP_BACK ahead it is the former (a time-zone mix-up, NTP correcting a
  fast clock); further, most likely the latter: a box whose real-time clock lost its time in a power
  cut boots days, or years, behind until NTP answers. Refusing the file then threw away every book, and
  control's record of the miners it put to sleep (left asleep for good). Only a date past LATEST is
  refused like any other garbage (`implausible`): no clock reads that.
- Whatever is done every so often by the cycles' time (a refresh, a save) is due at once when the
  clock went back past the last time it was done (`due`), rather than hours later when the clock
  has caught up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

log = logging.getLogger(__name__)

MAX_STAMP_AHEAD = timedelta(seconds=2)
# Any time-zone mix-up (UTC against local time: up to 26 hours) and a date set a day ahead by hand.
MAX_STEP_BACK = timedelta(days=2)
# No clock this software runs under reads a later date: a state file dated after it is garbage.
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CycleClock:
    """Each cycle's timestamp (collector.service.run), from `now` (the wall clock; tests step it back).
    `after`: the last cycle written before this run (the newest spooled batch's time), if any."""

    def __init__(self, after: datetime | None = None, now: Callable[[], datetime] = utc_now):
        self.last = after
        self._now = now
        self._last_was = "the newest spooled batch"

    def next(self) -> datetime:
        ts = self._now().replace(microsecond=0)
        last = self.last
        if last is not None and ts <= last:
            behind = last - ts
            if behind + _SECOND <= MAX_STAMP_AHEAD:  # a second after the last: never two cycles on one second
                ts = last + _SECOND
            else:
                log.warning("the wall clock was stepped back (NTP, or the date set by hand): it reads %s, %s behind %s "
                            "(%s). Cycles are stamped with the clock again: the points written while it was ahead "
                            "stay, and a cycle on the same second as one of them replaces it",
                            ts.isoformat(), behind, self._last_was, last.isoformat())
        self.last, self._last_was = ts, "the last cycle"
        return ts


def history_until(now: float) -> int:
    """The newest second a reader of the history "up to now" asks for: the clock's (`now`, epoch seconds)
    plus MAX_STAMP_AHEAD, as far ahead as CycleClock stamps a restart's cycles. Up to the clock's second
    only, a report run just after such a restart left its newest cycles out."""
    return int(now) + int(MAX_STAMP_AHEAD.total_seconds())


def implausible(as_of: datetime) -> str | None:
    """Why a state file dated `as_of` is garbage (None when it is not): dated past LATEST."""
    if as_of >= LATEST:
        return f"is after {LATEST.year}: no clock reads that"
    return None


def kept_ahead(what: str, as_of: datetime, now: datetime) -> datetime:
    """The time a state file saved at `as_of` is taken to be from: `as_of`, or `now` when it is ahead of
    the clock (logged beyond MAX_STAMP_AHEAD, with how far, and beyond MAX_STEP_BACK as a clock that is
    likely behind)."""
    if as_of <= now:
        return as_of
    ahead = as_of - now
    if ahead > MAX_STEP_BACK:
        log.warning("%s: saved at %s, %s ahead of the clock (%s): the clock is likely behind (a real-time clock "
                    "that lost its time, NTP not answering yet), or it was that far ahead then; kept, and carried "
                    "on from now", what, as_of.isoformat(), ahead, now.isoformat())
    elif ahead > MAX_STAMP_AHEAD:
        log.warning("%s: saved at %s, %s ahead of the clock (%s): it was stepped back since (NTP, or the date "
                    "set by hand); kept, and carried on from now", what, as_of.isoformat(), ahead, now.isoformat())
    return now


def due(elapsed_s: float | None, every_s: float) -> bool:
    """Whether something done `elapsed_s` ago (None: never) is due again: `every_s` has passed, or the
    clock went back past it (a negative elapsed: else it would wait for the clock to catch up)."""
    return elapsed_s is None or not 0 <= elapsed_s < every_s
