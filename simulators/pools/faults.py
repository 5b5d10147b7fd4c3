"""Fault switches of a simulated pool API: what a collector must survive from a real one.

Immutable like the miners' `Faults`: a test swaps the whole value (`pool.set_faults(...)`), so a
request never sees half a change. None of these behaviours is documented by the pools; they are
hashfleet's drills, answered in each pool's own error format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class PoolFaults:
    down: bool = False  # the listener is closed: connections are refused
    server_error: bool = False  # every request gets 503 in the pool's error format
    rate_limited_s: int | None = None  # every request gets 429 with `Retry-After: N`
    min_interval_s: float | None = None  # 429 (Retry-After: the rest) when polled faster than this
    slow_s: float = 0.0  # answer after this many (wall) seconds
    renamed: tuple[tuple[str, str], ...] = ()  # schema drift: JSON key old -> new, at any depth
    removed: frozenset[str] = field(default_factory=frozenset)  # schema drift: JSON keys dropped
    day_not_closed: bool = False  # the latest finished day is not settled yet

    def __post_init__(self) -> None:
        if self.rate_limited_s is not None and (not isinstance(self.rate_limited_s, int) or self.rate_limited_s < 0):
            raise ValueError(f"rate_limited_s is whole seconds >= 0, got {self.rate_limited_s!r}")
        for name in ("min_interval_s", "slow_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    def with_changes(self, **changes: Any) -> PoolFaults:
        if "renamed" in changes and isinstance(changes["renamed"], dict):
            changes["renamed"] = tuple(changes["renamed"].items())
        if "removed" in changes:
            changes["removed"] = frozenset(changes["removed"])
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown pool fault(s) {sorted(unknown)}; known: {[f.name for f in fields(self)]}")
        return replace(self, **changes)

    @property
    def drifts(self) -> bool:
        return bool(self.renamed or self.removed)


def drift(obj: Any, renamed: dict[str, str], removed: frozenset[str]) -> Any:
    """The JSON value with keys renamed/removed at every depth (a pool that changed its schema)."""
    if isinstance(obj, dict):
        return {renamed.get(k, k): drift(v, renamed, removed) for k, v in obj.items() if k not in removed}
    if isinstance(obj, list):
        return [drift(v, renamed, removed) for v in obj]
    return obj
