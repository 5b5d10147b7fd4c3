"""Logging at a bounded rate: one line per reason per period, with a count of the ones held back.

A flood of bad payloads (or a broker that keeps refusing, a disk that stays full) must not flood the log too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class BoundedLog:
    def __init__(self, logger: logging.Logger, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, reason: str, message: str, *args: object) -> bool:
        """Log `message` unless `reason` was logged less than `every_s` ago; True when logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._every_s:
                self._held[reason] = self._held.get(reason, 0) + 1
                return False
            self._last[reason] = now
            held = self._held.pop(reason, 0)
        if held:
            message += " (%d more like this in the last %.0f s not logged)"
            args = (*args, held, self._every_s)
        self._logger.log(level, message, *args)
        return True

    def warning(self, reason: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, reason, message, *args)

    def error(self, reason: str, message: str, *args: object) -> bool:
        return self.log(logging.ERROR, reason, message, *args)
