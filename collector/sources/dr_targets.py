"""Demand-response targets received over MQTT, kept apart by source (docs/curtailment.md, "Demand response").

A source is one `dr_target` ingest topic as the config lists it (a utility's feed) or Home Assistant's
number (`<prefix>/<site>/curtailment/dr_limit_kw/set`). Each holds its own targets and a message touches
its own source's only; the curtailment stage takes the strictest active target over every source
(collector/stages/curtailment.py `_dr_targets`), so a looser target never hides a stricter one.

Within a source:
- a DrTarget JSON is added to what the source holds: a feed announcing tomorrow's window keeps today's
  active one; the same target again (a feed repeating itself, the broker replaying it) changes nothing;
- a bare kW limit (what Home Assistant's number sends) is the source's limit from now on: it replaces
  what the source held;
- 0 or null withdraws everything the source held, and nothing else.
A source holds at most MAX_PER_SOURCE targets: those that start soonest (a started one before any still to
come), so a target starting after all of a full source's is refused. Ended targets are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

from models.curtailment import DrTarget

MAX_PER_SOURCE = 16
# Utilities call demand response the day before or the same day (4CP alerts, day-ahead programs); a week
# covers a weekly plan. A target further ahead is a mistake or an attack (a feed filling its slots with
# 2099), and a standing plan belongs in the schedule file (curtailment.dr_schedule), which is reviewed.
MAX_LEAD_S = 7 * 86_400

_STARTED = datetime.min.replace(tzinfo=timezone.utc)  # a target without a start runs from when it came


def refusal(target: DrTarget, now: datetime) -> str | None:
    """Why `target`, arriving at `now`, is refused: ended already, longer than a week from now without a
    start, or starting more than MAX_LEAD_S ahead; None when it is taken."""
    if target.end <= now:
        return f"it ended already ({target.end.isoformat()})"
    if (too_long := target.too_long_from(now)) is not None:
        return too_long
    if target.start is not None and (target.start - now).total_seconds() > MAX_LEAD_S:
        return (f"it starts {target.start.isoformat()}, more than {MAX_LEAD_S // 86_400} days ahead (put standing "
                "plans in curtailment.dr_schedule)")
    return None


def _start(target: DrTarget) -> datetime:
    return target.start or _STARTED


class DrTargets:
    """The targets each source holds (see the module's docstring for the rules)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[DrTarget, ...]] = {}

    def __iter__(self) -> Iterator[DrTarget]:
        for targets in list(self._held.values()):  # (a snapshot: an unbound ingest changes them in paho's thread)
            yield from targets

    def held(self) -> dict[str, tuple[DrTarget, ...]]:
        """By source (to save them)."""
        return dict(self._held)

    def take(self, source: str, target: DrTarget, now: datetime, *, replace: bool = False) -> bool | None:
        """Add `target` to what `source` holds (`replace`: instead of it). True when that changed anything,
        False when the source held it already, None when refused: the source is full of targets that
        start sooner."""
        self._drop_ended(now)
        held = self._held.get(source, ())
        if not replace and target in held:
            return False
        kept = sorted((*(() if replace else held), target), key=_start)  # (stable: among equal starts, the new last)
        if len(kept) > MAX_PER_SOURCE:
            if kept.pop() is target:
                return None
        self._held[source] = tuple(kept)
        return True

    def withdraw(self, source: str) -> bool:
        """Forget what `source` holds; whether it held anything."""
        return self._held.pop(source, None) is not None

    def restore(self, saved: Mapping[str, tuple[DrTarget, ...]], now: datetime) -> list[str]:
        """Take up targets saved by the run before (hostile until checked, as if they arrived now); why each
        one not ended that was refused."""
        refused = []
        for source, targets in saved.items():
            for target in targets:
                if target.end <= now:
                    continue
                why = refusal(target, now) or ("" if self.take(source, target, now) is not None else "its source is full")
                if why:
                    refused.append(f"{source[:80]}: {why}")
        return refused

    def _drop_ended(self, now: datetime) -> None:
        for source, targets in list(self._held.items()):
            if any(t.end <= now for t in targets):
                left = tuple(t for t in targets if t.end > now)
                if left:
                    self._held[source] = left
                else:
                    del self._held[source]
