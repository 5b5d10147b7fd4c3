"""The curtailment audit log: every action on a miner, one JSON line each, appended (never rewritten).

    {"ts": "2026-11-27T12:00:05Z", "site": "s1", "who": "hashfleet curtailment control (on)",
     "miner": "AA:BB:CC:00:11:22", "host": "10.0.1.15", "action": "sleep",
     "command": "ascset|0,softoff,1795780805", "why": "price 0.4120 $/kWh above its break-even ...",
     "result": "accepted", "detail": "ASC 0 set info: success softoff:1795780805", "kw": -3.94,
     "attempt": 1}

Operator commands over MQTT that changed what control may do (the kill switch, the control mode, a
topic's demand-response targets: collector/sources/live_inputs.py) are lines of the same file, written
by the control sink at the next cycle, before anything they allow is sent; `who` names the topic:

    {"ts": "2026-11-27T12:00:03Z", "site": "s1", "who": "MQTT hashfleet/s1/curtailment/kill/set",
     "miner": "*", "host": "", "action": "kill_switch", "command": "ON -> OFF", "why": "asked over MQTT",
     "result": "applied", "detail": "", "kw": 0.0, "attempt": 0}

Who, what, when, why and the result; no secrets (nothing sent carries one). The file is opened for
each batch of lines, so `logrotate` may move it at any time. The same events go to InfluxDB as the
`action` measurement (models/schema.py).

Only whole lines ever stay in the file: a write the disk cuts short (ENOSPC) is truncated back to the
end of the last whole line, and the lines not written are kept in memory and written first once the
file takes writes again. Each batch is synced to disk as it is written (a power cut must not lose what
was sent); a last line a power cut tore anyway is cut off at the next start, logged in full. Each line is logged in full at ERROR when it first fails to be written; at
stop, the lines still not written are logged again, in full, as lost from the file (the log is then
their only record). The path must be a regular file or absent: a FIFO would hang the service, a
device would swallow the lines.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from collector import durable_file, regular_file
from collector.sources.live_inputs import CommandChange
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


def command_record(change: CommandChange, site: str) -> dict[str, object]:
    """An operator's command over MQTT that changed what control may do, as an audit line."""
    return {
        "ts": change.ts.isoformat().replace("+00:00", "Z"),
        "site": site,
        "who": f"MQTT {change.topic}"[:MAX_TEXT],
        "miner": "*",
        "host": "",
        "action": change.what,
        "command": f"{change.old} -> {change.new}"[:MAX_TEXT],
        "why": "asked over MQTT",
        "result": "applied",
        "detail": "",
        "kw": 0.0,
        "attempt": 0,
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
        """OSError (naming the path) unless the file can be opened to append to (it is created). At the start:
        a last line a power cut tore (cut short, or a tail of zeros as a file system may leave it) is cut
        off, logged in full, so that the next line is not glued to it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = regular_file.open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            _cut_torn_tail(self.path, fd)
        finally:
            os.close(fd)

    def append(self, events: Iterable[ActionEvent]) -> None:
        self._write([orjson.dumps(event_record(e, self.site)) + b"\n" for e in events])

    def append_commands(self, changes: Iterable[CommandChange], not_kept: int = 0) -> None:
        """Operator commands over MQTT (command_record); `not_kept`: how many more came than were kept
        (live_inputs.MAX_CHANGES_KEPT between two cycles), recorded as a count."""
        records = [command_record(c, self.site) for c in changes]
        if not_kept and records:  # (none are counted before MAX_CHANGES_KEPT are kept)
            records.append({**records[-1], "command": f"{not_kept} more change(s) over MQTT not recorded one by one",
                            "detail": "more than could be kept between two cycles"})
        self._write([orjson.dumps(r) + b"\n" for r in records])

    def _write(self, new: list[bytes]) -> None:
        lines = self._backlog + new
        if not lines:
            return
        written, error = _append_lines(self.path, lines)
        if error is not None:  # the actions happened: say so in the log at least
            self.failures += 1
            self.broken = f"{self.path}: {error.strerror or error}"
            unwritten = lines[written:]
            self.dropped += max(0, len(unwritten) - MAX_BACKLOG)
            self._backlog = unwritten[-MAX_BACKLOG:]
            failed_now = new[max(0, written - (len(lines) - len(new))):]  # the backlog's were logged before
            for line in failed_now:  # (a record each: the log keeps a line a record, PrintableLog)
                log.error("curtailment audit log %s not written (%s), kept to write later: %s", self.path, error,
                          _text([line]))
            return
        if self.broken is not None:
            log.warning("curtailment audit log %s written again (%d line(s) kept meanwhile, %d given up)",
                        self.path, len(self._backlog), self.dropped)
        self.broken, self._backlog, self.dropped = None, [], 0

    def retry(self) -> None:
        """Write what is kept (a cycle with no events still finds out whether the file is back)."""
        if self.broken is not None:
            self.append(())

    def close(self, events: Iterable[ActionEvent]) -> None:
        """The stop: the last events and one more try at what is kept. Lines still not written are lost
        from the file: logged here in full, as the only record of them."""
        self.append(events)
        if self._backlog or self.dropped:
            log.error("curtailment audit log %s: %d line(s) never written to it, lost from it with this stop "
                      "(%d more given up before, logged when they failed):\n%s", self.path, len(self._backlog),
                      self.dropped, _text(self._backlog))


def _text(lines: list[bytes]) -> str:
    return b"".join(lines).decode("utf-8", "replace").rstrip("\n")


def _open_to_append(path: Path) -> int:
    """A descriptor appending to `path` (created if absent); OSError naming it unless it is a regular file."""
    return regular_file.open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)


TORN_TAIL_MAX = 64 * 1024  # a line is a few hundred bytes (MAX_TEXT caps its texts): a torn one is shorter


def _cut_torn_tail(path: Path, fd: int) -> None:
    """Truncate the file back to the end of its last whole line (a tail with no newline: a write a power cut
    stopped). A tail longer than TORN_TAIL_MAX is no torn line of ours: it is ended with a newline instead."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    start = max(0, size - TORN_TAIL_MAX)
    tail = os.pread(fd, size - start, start)
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n") + 1
    if cut == 0 and start > 0:
        os.write(fd, b"\n")
        log.warning("curtailment audit log %s: its last %d+ bytes end with no newline; a newline is added",
                    path, TORN_TAIL_MAX)
        return
    os.ftruncate(fd, start + cut)
    os.fsync(fd)
    torn = tail[cut:]
    log.warning("curtailment audit log %s: its last line was torn (a stop in the middle of a write: %d bytes%s); "
                "cut off, as it was: %s", path, len(torn), ", zeros" if not torn.strip(b"\0") else "",
                torn.rstrip(b"\0")[:2000].decode("utf-8", "replace") or "(nothing but zeros)")


def _append_lines(path: Path, lines: list[bytes]) -> tuple[int, OSError | None]:
    """Append `lines`: how many are whole in the file, and the error that stopped the rest. A line a
    write cut short is truncated away, so the file only ever holds whole lines."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not path.exists()
        fd = _open_to_append(path)
    except OSError as e:
        return 0, e
    written, end = 0, os.lseek(fd, 0, os.SEEK_END)
    try:
        for line in lines:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            end += len(line)
            written += 1
    except OSError as e:
        try:
            os.ftruncate(fd, end)
        except OSError as t:
            log.error("curtailment audit log %s: cannot cut back a line written in part (%s): its last line is "
                      "torn", path, t)
        os.close(fd)
        return written, e
    try:  # each batch on disk before the commands it records can have any effect: a power cut must not lose it
        os.fsync(fd)
    except OSError as e:  # the lines are in the file; only their survival of a power cut is in doubt
        log.error("curtailment audit log %s: not synced to disk (%s)", path, e.strerror or e)
    finally:
        os.close(fd)
    if new_file:
        durable_file.sync_directory(path.parent)
    return written, None
