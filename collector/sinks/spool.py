"""A durable on-disk queue of line-protocol batches: nothing is lost to an
InfluxDB outage, a crash or `kill -9`.

One batch is one file, `<seq>.lp.gz`, written to a temporary name (`<seq>.lp.tmp`),
fsynced and renamed, so a file that exists is complete. Sequence numbers give the
order batches are delivered in; a new one is numbered after every file named like
a batch (one moved aside, a stray), so it replaces none. A batch leaves the spool
only when acknowledged (delivered), or when the disk budget, the retention period
or a full disk forces out the oldest; those are counted, never dropped silently.
Lines InfluxDB refuses are kept as `<seq>.lp.rejected`. The spool touches no file
in its directory but these names (and `lock`, `dropped`, `rejected`, `lost`, `expired`):
it may share a folder.

Without InfluxDB the spool is the embedded store (a spool given `retention_s`): batches are kept for the
retention period or within the budget, whichever is shorter, and `hashfleet report` reads them back. There
the budget trims the oldest history, logged as a warning; in front of InfluxDB it drops undelivered data,
logged as an error. Either is logged at most once a period (BoundedLog), however many appends it takes.

Retention is judged by batch files' mtimes, and a clock can be days ahead: a box that boots before NTP
answers, its RTC wrong. Read against such a clock every batch looks past retention_s, and the whole history
went at the first append, unlogged (trial M, H5). So the age of the history found at the start counts from
its newest batch (the last written, by sequence) plus the time this process has run, never more than the
clock says (`_aged_to`): time the collector was off does not age it, a clock read wrong cannot. The price:
after a real week off, the week-old history stays until the collector has run out its retention_s too
(the history then spans retention_s of collecting, as in a run without a stop; the budget still bounds it).
A start that finds the clock past that is logged once. Every batch retention removes is counted
(`expired_batches`, collector.spool_expired) and logged, at most a line an hour with how many and the hours
they were written in, at once for an hour of history or more in one pass.

A batch file is outside input too (a disk, a restore or an operator can break it).
It is read one way only, `Batch.read` (or `read_body`, what delivery sends: collector/spool_files.py), which
turns every kind of damage into DamagedBatch: not a regular file, not gzip, a bit
flipped (bad data or check), cut short, or past the caps on what a batch holds
(MAX_BATCH_BYTES inflated, MAX_BATCH_LINES, MAX_LINE_BYTES: a gzip bomb). Delivery
and the collector's start move a damaged batch aside as `<seq>.lp.bad`, logged;
readers of the history skip it, counted and named. An entry named like a batch
that is not a regular file (a FIFO, a device, a link, a directory) was not made by
the spool, which renames only regular files into place: it is never listed,
opened, moved or deleted, only warned of; so is a file named like a batch but
not numbered as the spool numbers them (16 ASCII digits). A batch numbered from
COUNTED_BELOW on is read like any other but does not move the count.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from collector import durable_file, own_folder, regular_file
from collector.bounded_log import BoundedLog
from collector.line_protocol import line_time
from collector.spool_files import NUMBERED_NAME, OWN_TEMP_NAME, Batch, DamagedBatch, list_batches, misnumbered, strays

log = logging.getLogger(__name__)

# A file numbered from here on was not numbered by this spool (3e8 years of 10 s cycles): it does not move the
# count, so the next batch still has 16 digits (after a crafted 9999999999999999.lp.bad every later batch had
# 17: never listed, so never delivered nor trimmed, the disk filling).
COUNTED_BELOW = 10**15
_LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z, the latest time a datetime holds
# Once at its budget the spool drops a batch at nearly every append (~930 an hour at 2,000 miners): one line a
# period says so. Trimming the local history is its steady state, an hour apart is enough; data lost in front
# of InfluxDB is told more often.
HISTORY_TRIMMED_EVERY_S = 3600
UNDELIVERED_DROPPED_EVERY_S = 300
# Past retention the oldest batch goes at nearly every append, like the budget's: summed up a line an hour
# (the same period), but a pass that takes an hour of history or more at once is told at once.
EXPIRED_LOGGED_EVERY_S = HISTORY_TRIMMED_EVERY_S
# A start this long after the newest batch is told when the clock would put history past retention: a shorter
# gap is a restart's own (a power cut), not worth a warning at every start.
CLOCK_AHEAD_TOLD_S = 3600


def _with_stats(batches: list[Batch]) -> list[tuple[Batch, os.stat_result]]:
    """Each batch with its file's stat, leaving out any that is gone since it was listed (delivered,
    or read by another process's report)."""
    found = []
    for batch in batches:
        try:
            found.append((batch, batch.path.stat()))
        except FileNotFoundError:
            continue
    return found


class SpoolInUse(OSError):
    """Another process owns this spool; two writers would deliver each other's batches twice."""


class SpoolWriteError(OSError):
    """A batch could not be stored (disk full, read-only, I/O error); nothing of it is left on disk.
    `size` is what it needed, for making room."""

    def __init__(self, path: Path, error: OSError, size: int):
        name = errno.errorcode.get(error.errno or 0, "")
        super().__init__(error.errno, f"spool batch {path} not stored: {error.strerror or error}"
                                      + (f" ({name})" if name else ""))
        self.size = size

    @property
    def disk_full(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30, retention_s: float | None = None):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self._warned_small_budget = False
        self._drops = BoundedLog(log, every_s=UNDELIVERED_DROPPED_EVERY_S if retention_s is None
                                 else HISTORY_TRIMMED_EVERY_S)
        self.appended_bytes = 0  # by this process, for the local history's estimate of what the budget holds
        own_folder.make(self.directory)  # (UnsafeFolder: another user could plant links or forged state in it)
        self._owner = self._take_ownership()
        # Appends run in worker threads, delivery in another: every change to the directory holds this
        # lock, so the budget's scan never meets a batch acknowledged half-way through it.
        self._lock = threading.Lock()
        highest = 0  # the next batch is numbered after every file named like one, so it replaces none
        for entry in os.scandir(self.directory):
            numbered = NUMBERED_NAME(entry.name)
            if numbered and (seq := int(numbered.group(1))) < COUNTED_BELOW:
                highest = max(highest, seq)
            # a crash mid-write leaves a temp file; only ours go (regular files: the spool makes no other)
            if OWN_TEMP_NAME(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
        self._next_seq = highest + 1
        found = strays(self.directory)
        if found:
            log.warning("spool %s: %d entr%s named like its files but not regular files, left alone and not "
                        "read (the spool makes none; remove them): %s", self.directory, len(found),
                        "y" if len(found) == 1 else "ies", ", ".join(found[:10]) + (", ..." if len(found) > 10 else ""))
        found = misnumbered(self.directory)
        if found:
            log.warning("spool %s: %d file(s) named like its batches but not numbered as it numbers them (16 "
                        "digits), left alone and not read or delivered (the spool makes none; remove them): %s",
                        self.directory, len(found),
                        ", ".join(map(repr, found[:10])) + (", ..." if len(found) > 10 else ""))
        self.dropped_batches = self._read_counter("dropped")  # over the budget or for room on a full disk
        self.rejected_lines = self._read_counter("rejected")  # refused by InfluxDB, kept as .lp.rejected
        self.lost_lines = self._read_counter("lost")  # neither stored nor delivered: the disk was full
        self.expired_batches = self._read_counter("expired")  # past retention_s, trimmed from the local history
        # Retention's own clock (`_aged_to`): from the newest batch found here, as far as this process runs.
        self._started = time.monotonic()
        self._history_until = self._newest_mtime() if retention_s is not None else None
        self._clock_ahead_logged = False
        self._expired_unlogged: tuple[int, float, float] | None = None  # deleted, not logged: how many, mtimes from, to
        self._expired_logged_at = float("-inf")  # monotonic

    def _take_ownership(self):
        """One writer per spool directory, held for the life of the process (released on exit or crash)."""
        handle = open_lock(self.directory / "lock")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SpoolInUse(f"spool {self.directory} is in use by {holder}: one collector per site and spool "
                             "(give this one another site name or spool.directory)") from None
        try:  # who holds it, for the message above; a full disk must not stop the collector here
            os.ftruncate(handle.fileno(), 0)
            os.write(handle.fileno(), f"pid {os.getpid()}\n".encode())  # unbuffered: close() has nothing to retry
        except OSError as e:
            log.warning("spool %s: lock file not written (%s)", self.directory, e.strerror or e)
        return handle

    def close(self) -> None:
        self._log_expired(final=True)
        self._owner.close()

    def _newest_mtime(self) -> float | None:
        """The mtime of the newest batch (by sequence: the last written) that can be stat'ed, if any."""
        for batch in reversed(self.batches()):
            try:
                return batch.path.stat().st_mtime
            except FileNotFoundError:
                continue
        return None

    def _aged_to(self, now: float) -> float:
        """The time retention judges batches against: the clock, but no further than the newest batch found
        at the start plus the time this process has run since (a clock days ahead must not age them)."""
        if self._history_until is None:
            return now
        return min(now, self._history_until + (time.monotonic() - self._started))

    def batches(self) -> list[Batch]:
        return list_batches(self.directory)

    def newest_timestamp(self) -> int | None:
        """The latest timestamp (line protocol, seconds) in the newest readable spooled batch, if any: a
        restarted collector starts after it, so a quick restart never overwrites an undelivered cycle.
        The latest, not the last line's: a line may carry another time than its cycle's (a pool's day). A
        time no datetime holds (a damaged line) is passed over; one in the future is the service's to judge
        (collector/clock.py: the clock was stepped back since). It runs at the collector's start: a damaged
        batch met on the way is moved aside (`set_aside_damaged`), never a reason not to start."""
        for batch in reversed(self.batches()):
            try:
                lines = batch.read()
            except FileNotFoundError:
                continue
            except DamagedBatch as e:
                self.set_aside_damaged(batch, e)
                continue
            times = [t for t in map(_line_time, lines) if t is not None]
            if times:
                return max(times)
        return None

    @property
    def depth(self) -> int:
        return len(self.batches())

    def bytes_held(self) -> int:
        """Bytes of the batches waiting (what counts against `max_bytes`)."""
        return sum(st.st_size for _, st in _with_stats(self.batches()))

    @property
    def rejected_batches(self) -> int:
        """Batches InfluxDB refused as malformed, kept aside as `<seq>.lp.rejected` for inspection."""
        return sum(1 for _ in self.directory.glob("*.lp.rejected"))

    def append(self, lines: list[str]) -> Batch:
        """Store a batch durably; returns once it is on disk. SpoolWriteError when it cannot be
        (nothing of it is left behind: the caller decides what to keep)."""
        data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            final = self.directory / f"{seq:016d}.lp.gz"
            try:
                durable_file.replace_synced(final, data)
            except OSError as e:
                raise SpoolWriteError(final, e, len(data)) from None
            self.appended_bytes += len(data)
            self._enforce_limits()
        return Batch(seq, final)

    def make_room(self, size: int) -> int:
        """Drop the oldest batches until at least `size` bytes (and a little for the file system) are
        free again, for a batch a full disk refused; counted with the budget's drops. Returns how many."""
        with self._lock:
            need, freed, dropped = size + 8192, 0, 0
            for batch, st in _with_stats(self.batches()):
                if freed >= need:
                    break
                batch.path.unlink(missing_ok=True)
                freed += st.st_blocks * 512 or st.st_size
                dropped += 1
            if dropped:
                self.dropped_batches += dropped
                self._write_counter("dropped", self.dropped_batches)
                # (bounded as the budget's drops: a disk that stays full would log this at every append)
                self._drops.error("disk full", "spool %s: disk full: dropped the %d oldest %s to make room (%d "
                                  "dropped in all)", self.directory, dropped, "undelivered batch(es)"
                                  if self.retention_s is None else "batch(es) of local history", self.dropped_batches)
            return dropped

    def count_rejected(self, lines: int) -> None:
        """Lines InfluxDB refused (reported as collector.spool_rejected)."""
        with self._lock:
            self.rejected_lines += lines
            self._write_counter("rejected", self.rejected_lines)

    def count_lost(self, lines: int) -> None:
        """Lines that were neither stored nor delivered (reported as collector.spool_lost_lines)."""
        with self._lock:
            self.lost_lines += lines
            self._write_counter("lost", self.lost_lines)

    def ack(self, batch: Batch) -> None:
        """The batch is delivered: remove it."""
        with self._lock:
            batch.path.unlink(missing_ok=True)

    def set_aside_lines(self, batch: Batch, refused: list[str]) -> Path | None:
        """The batch is done: its `refused` lines (InfluxDB will never take them) are kept as
        `<seq>.lp.rejected` (gzip'd, like a batch) and counted; the rest were delivered. Returns the
        file, None if it could not be written (the lines are still counted, and logged)."""
        target = batch.path.with_suffix(".rejected")
        data = gzip.compress(("\n".join(refused) + "\n").encode(), compresslevel=1)
        self.count_rejected(len(refused))
        with self._lock:
            temp = batch.path.with_suffix(".tmp")
            try:
                with open(regular_file.create_new(temp), "wb") as f:
                    f.write(data)
                os.replace(temp, target)
            except OSError as e:
                temp.unlink(missing_ok=True)
                log.error("spool %s: %d refused line(s) of batch %s not kept (%s); the first: %.300s",
                          self.directory, len(refused), batch.path.name, e.strerror or e, refused[0])
                target = None
            batch.path.unlink(missing_ok=True)
            return target

    def set_aside(self, batch: Batch, suffix: str) -> Path | None:
        """Move a batch out of the queue as `<seq>.lp.<suffix>` (kept for inspection); None if the
        budget already dropped it."""
        with self._lock:
            target = batch.path.with_suffix(f".{suffix}")
            try:
                batch.path.rename(target)
            except FileNotFoundError:
                return None
            return target

    def set_aside_damaged(self, batch: Batch, damage: DamagedBatch) -> None:
        """A batch that cannot be read leaves the queue as `<seq>.lp.bad` (kept for inspection), logged."""
        target = self.set_aside(batch, "bad")
        if target is not None:
            log.error("spool batch %s unreadable (%s): moved aside as %s", batch.path, damage.reason, target.name)

    def _enforce_limits(self) -> None:
        batches = _with_stats(self.batches())
        now = time.time()
        aged_to = self._aged_to(now)
        total = sum(st.st_size for _, st in batches)
        dropped = 0
        expired: list[float] = []  # mtimes of the batches past retention, oldest first
        # The newest batch is never dropped for the budget: it has not had its try at delivery. A budget
        # smaller than one batch dropped each batch as it was written, so nothing reached a healthy InfluxDB.
        if batches and batches[-1][1].st_size > self.max_bytes and not self._warned_small_budget:
            self._warned_small_budget = True
            log.warning("spool %s: its budget (%d bytes) is smaller than one batch (%d bytes): only the newest "
                        "batch is kept while InfluxDB is down (raise spool.max_mb)", self.directory, self.max_bytes,
                        batches[-1][1].st_size)
        while batches:
            over_budget = total > self.max_bytes and len(batches) > 1
            if not over_budget and (self.retention_s is None or aged_to - batches[0][1].st_mtime <= self.retention_s):
                break
            oldest, st = batches.pop(0)
            total -= st.st_size
            oldest.path.unlink(missing_ok=True)
            if over_budget:
                dropped += 1
            else:
                expired.append(st.st_mtime)
        if self.retention_s is not None:
            if expired:
                self._count_expired(expired)
            if batches and aged_to < now and now - batches[0][1].st_mtime > self.retention_s and \
                    now - self._history_until >= CLOCK_AHEAD_TOLD_S:
                self._clock_ahead(now, batches[0][1].st_mtime)
        if not dropped:
            return
        self.dropped_batches += dropped
        self._write_counter("dropped", self.dropped_batches)
        if self.retention_s is None:
            self._drops.error("budget", "spool %s over its %d-byte budget: dropped the %d oldest undelivered "
                              "batch(es) (%d in all)", self.directory, self.max_bytes, dropped, self.dropped_batches)
            return
        held_h = (batches[-1][1].st_mtime - batches[0][1].st_mtime) / 3600 if batches else 0.0
        self._drops.warning("budget", "spool %s: local history at its %d-byte budget (spool.max_mb): the oldest "
                            "trimmed (%d batch(es) in all); it holds the last %.3g h, less than spool.retention_h "
                            "%g h (raise spool.max_mb to keep more)", self.directory, self.max_bytes,
                            self.dropped_batches, held_h, self.retention_s / 3600)

    def _count_expired(self, mtimes: list[float]) -> None:
        """Batches past retention, just deleted: counted, and logged (`_log_expired`)."""
        self.expired_batches += len(mtimes)
        self._write_counter("expired", self.expired_batches)
        count, first, last = self._expired_unlogged or (0, mtimes[0], mtimes[-1])
        self._expired_unlogged = (count + len(mtimes), min(first, mtimes[0]), max(last, mtimes[-1]))
        self._log_expired(at_once=mtimes[-1] - mtimes[0] >= EXPIRED_LOGGED_EVERY_S)

    def _log_expired(self, *, at_once: bool = False, final: bool = False) -> None:
        """What retention deleted since the last line: a line an hour at most (the first at once), at once
        for an hour of history in one pass, and what is left at `close`."""
        if self._expired_unlogged is None:
            return
        now = time.monotonic()
        if not (at_once or final or now - self._expired_logged_at >= EXPIRED_LOGGED_EVERY_S):
            return
        count, first, last = self._expired_unlogged
        self._expired_unlogged, self._expired_logged_at = None, now
        log.log(logging.WARNING if at_once else logging.INFO,
                "spool %s: %d batch(es) of local history past spool.retention_h %g h deleted, written %s to %s (%d "
                "in all, collector.spool_expired)", self.directory, count, self.retention_s / 3600, _utc(first),
                _utc(last), self.expired_batches)

    def _clock_ahead(self, now: float, oldest_mtime: float) -> None:
        """The clock puts the oldest batch past retention but the history's own time does not: once a start."""
        if self._clock_ahead_logged:
            return
        self._clock_ahead_logged = True
        log.warning("spool %s: the clock reads %s, %.1f h after the newest batch of local history found at the start "
                    "(written %s): the collector was off that long, or the clock is ahead (a box that booted before "
                    "NTP answered). Retention (spool.retention_h %g h) counts from that batch the time this collector "
                    "runs, not the clock: the oldest batch (written %s) is kept for now", self.directory, _utc(now),
                    (now - self._history_until) / 3600, _utc(self._history_until), self.retention_s / 3600,
                    _utc(oldest_mtime))

    def _read_counter(self, name: str) -> int:
        try:
            fd = regular_file.open_regular(self.directory / name, os.O_RDONLY)
            with open(fd, "rb") as f:
                return int(f.read(64).strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as e:
            log.warning("spool %s: counter file %r unreadable (%s): counting from 0", self.directory, name, e)
            return 0

    def _write_counter(self, name: str, value: int) -> None:
        """Best effort, and never half-written: a full disk keeps the old value (the count in memory,
        which the collector point reports, stays right)."""
        temp = self.directory / f"{name}.tmp"
        try:
            with open(regular_file.create_new(temp), "w") as f:
                f.write(str(value))
            os.replace(temp, self.directory / name)
        except OSError as e:
            temp.unlink(missing_ok=True)
            log.warning("spool %s: counter %r not saved (%s)", self.directory, name, e.strerror or e)


def open_lock(path: Path):
    """The spool's lock file, read-write, made if absent; OSError if it is not a regular file (a link planted
    there is never written through)."""
    return open(regular_file.open_regular(path, os.O_RDWR | os.O_CREAT), "r+")


def _utc(t: float) -> str:
    """A file time for the log: whole seconds, UTC (a time no datetime holds is shown as a number)."""
    try:
        return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f} (unix)"


def _line_time(line: str) -> int | None:
    """A line's timestamp (line protocol, seconds), None if it has none a datetime holds."""
    t = line_time(line)
    return t if t is not None and t <= _LAST_SECOND else None
