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
    def __init__(self, path: Path, site: str) -> None:
        self.path = path
        self.site = site
        self.failures = 0

    def append(self, events: Iterable[ActionEvent]) -> None:
        lines = b"".join(orjson.dumps(event_record(e, self.site)) + b"\n" for e in events)
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(lines)
                f.flush()
        except OSError as e:  # the actions happened: say so in the log at least
            self.failures += 1
            log.error("curtailment audit log %s not written (%s): %s", self.path, e, lines[:1000].decode("utf-8", "replace"))
