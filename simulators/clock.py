"""Clocks a simulated miner can run on: wall time by default, a hand-driven one in tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]  # seconds; Unix time when it is the wall clock

wall_clock: Clock = time.time


class ManualClock:
    """A clock that moves only when told to, so tests drive time explicitly and deterministically."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds`; returns the new reading."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward; use set() to jump")
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            self._t = float(t)
