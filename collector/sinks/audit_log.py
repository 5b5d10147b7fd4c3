"""The curtailment audit log: every action on a miner, one JSON line each, appended (never rewritten).

    {"ts": "2026-11-27T12:00:05Z", "site": "s1", "who": "hashfleet curtailment control (on)",
     "miner": "AA:BB:CC:00:11:22", "host": "10.0.1.15", "action": "sleep",
     "command": "ascset|0,softoff,1795780805", "why": "price 0.4120 $/kWh above its break-even ...",
     "result": "accepted", "detail": "ASC 0 set info: success softoff:1795780805", "kw": -3.94,
     "attempt": 1}

Who, what, when, why and the result; no secrets (nothing sent carries one). The file is opened for
each batch of lines, so `logrotate` may move it at any time. The same events go to InfluxDB as the
`action` measurement (models/schema.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import orjson

from models.curtailment import ActionEvent

log = logging.getLogger(__name__)

MAX_TEXT = 500
MAX_BACKLOG = 10_000  # lines kept while the file cannot be written (~300 bytes each)


def event_record(event: ActionEvent, site: str) -> dict[str, object]:
    return {
        "ts": event.ts.isoformat().replace("+00:00", "Z"),
        "site": site,
        "who": f"hashfleet curtailment control ({event.mode or 'off'})",
        "miner": event.miner[:MAX_TEXT],
        "host": event.host[:MAX_TEXT],
        "action": event.action,
        "command": event.command[:MAX_TEXT],
        "why": event.reason[:MAX_TEXT],
        "result": event.result,
        "detail": event.detail[:MAX_TEXT],
        "kw": round(event.kw, 3),
        "attempt": event.attempt,
    }


class AuditLog:
    """Appends events; lines it could not write (a full disk, a path that is not a file) are kept, up to
    MAX_BACKLOG, and written first next time. `broken` says why the last write failed (None: all written):
    control sends nothing while it is set (collector/sinks/curtailment_control.py)."""

    def __init__(self, path: Path, site: str) -> None:
        self.path = path
        self.site = site
        self.failures = 0
        self.broken: str | None = None
        self.dropped = 0  # lines given up once the backlog was full
        self._backlog: list[bytes] = []

    def check(self) -> None:
        """OSError (naming the path) unless the file can be opened to append to (it is created)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab"):
            pass

    def append(self, events: Iterable[ActionEvent]) -> None:
        new = [orjson.dumps(event_record(e, self.site)) + b"\n" for e in events]
        lines = self._backlog + new
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(b"".join(lines))
                f.flush()
        except OSError as e:  # the actions happened: say so in the log at least
            self.failures += 1
            self.broken = f"{self.path}: {e.strerror or e}"
            self.dropped += max(0, len(lines) - MAX_BACKLOG)
            self._backlog = lines[-MAX_BACKLOG:]
            if new:
                log.error("curtailment audit log %s not written (%s), kept to write later: %s", self.path, e,
                          b"".join(new)[:1000].decode("utf-8", "replace"))
            return
        if self.broken is not None:
            log.warning("curtailment audit log %s written again (%d line(s) kept meanwhile, %d given up)",
                        self.path, len(self._backlog), self.dropped)
        self.broken, self._backlog, self.dropped = None, [], 0

    def retry(self) -> None:
        """Write what is kept (a cycle with no events still finds out whether the file is back)."""
        if self.broken is not None:
            self.append(())
