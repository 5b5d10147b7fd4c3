"""A shard's state left by a version before dea69e4, taken up at `hashfleet collect`'s start.

Since dea69e4 a collector given `spool.directory` and `--shard K/N` keeps its state in
`<directory>/shard-K-of-N` (collector/config.py `spool_directory`); before, it kept it in `<directory>`
itself (one shard per host). Upgraded, it would start from nothing without a word: the miners its control
slept left asleep, spooled batches never sent, the month's totals and the books started over.

So on a shard's first start (its directory not there yet) every file a collector keeps in `<directory>`
(the state files named in collector/state_files.py, the spool's batches and counters, and the copies kept beside
a book) is moved into the shard's directory: each with a hard link then an unlink, never over a file; first
into `shard-K-of-N.taking-up`, renamed into place at the end, so a start cut short is finished by the next
one. Only the spool's `lock` stays: while a collector holds it (one still running on the old layout) the
move is refused. The first shard to start takes everything: with the old layout one host ran one shard,
whose state it is.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path

from collector import config as config_loader, own_folder, state_files
from collector.sinks.spool import open_lock
from models import CollectorConfig

log = logging.getLogger(__name__)

# The spool's own files, besides the state files (collector/state_files.py).
_SPOOL_COUNTERS = ("dropped", "rejected", "lost", "expired")  # collector/sinks/spool.py
_BATCH = re.compile(r"[0-9]{16}\.lp\.(gz|rejected|bad)").fullmatch  # collector/spool_files.py, and set aside
# A book's copies (collector/durable_file.py): the one before the last save, and the ones set aside unusable
# (numbered since; versions before dea69e4 kept one, `.unusable`).
_COPY = re.compile(r"(?P<book>[a-z-]+\.jsonl?)(\.prev|\.unusable(\.[0-9]{1,9})?)").fullmatch


class StateInUse(Exception):
    """A collector still runs on the directory whose state this shard would take up; the message says which."""


def kept_here(directory: Path) -> list[Path]:
    """The files of a collector's state in `directory` (not its lock, not temp files), sorted by name."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [Path(e.path) for e in entries if e.is_file(follow_symlinks=False) and (
        e.name in state_files.ALL or e.name in _SPOOL_COUNTERS or _BATCH(e.name)
        or ((copy := _COPY(e.name)) is not None and copy["book"] in state_files.ALL))]
    return sorted(found)


def take_up_earlier_layout(config: CollectorConfig) -> list[str]:
    """Move the state an earlier version kept in `spool.directory` itself into this shard's directory, on the
    shard's first start; the names moved (none: nothing to take up). StateInUse while a collector holds it."""
    if config.shard is None or config.spool.directory is None:
        return []
    parent, shard_dir = config.spool.directory, config_loader.spool_directory(config)
    staging = shard_dir.with_name(shard_dir.name + ".taking-up")
    if shard_dir.exists() and not staging.exists():
        return []  # (the usual start)
    if not kept_here(parent) and not staging.exists():
        return []
    own_folder.check(parent)
    with open_lock(parent / "lock") as lock:  # the spool's lock (collector/sinks/spool.py): held by a live collector
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = "".join(c if c.isprintable() else "?" for c in lock.read(200).strip()[:80]) or "another process"
            raise StateInUse(
                f"spool.directory {parent} holds a collector's state from before shards kept their own (before "
                f"dea69e4), and {holder} is using it: stop that collector, then start shard {config.shard} again "
                f"to take the state up into {shard_dir}") from None
        try:  # who holds it, for the message above (a sibling shard starting at the same moment)
            os.ftruncate(lock.fileno(), 0)
            os.write(lock.fileno(), f"pid {os.getpid()} (moving its state into {shard_dir.name})\n".encode())
        except OSError:
            pass
        files = kept_here(parent)
        staging.mkdir(exist_ok=True)
        for path in files:
            _move(path, staging / path.name)
        _sync(staging)
        if shard_dir.exists():  # (made meanwhile, by hand: an empty one goes, one with files is an OSError)
            shard_dir.rmdir()
        os.rename(staging, shard_dir)
        _sync(parent)
    moved = [p.name for p in files]
    if moved:
        log.warning("state of a collector from before shards kept their own (dea69e4) moved from %s into %s: %s. "
                    "Shard %s takes it up as the first shard to start here; the site's other shards start without "
                    "it", parent, shard_dir, _named(moved), config.shard)
    return moved


def _move(source: Path, target: Path) -> None:
    """`source` renamed `target` at once, never over a file there (a link then an unlink: a start cut short
    between the two leaves the same file under both names, and is finished by the next)."""
    try:
        os.link(source, target)
    except FileExistsError:
        if not os.path.samefile(source, target):
            raise
    os.unlink(source)


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(moved: list[str]) -> str:
    """The files moved, spool batches counted rather than listed."""
    batches = sum(1 for name in moved if _BATCH(name))
    others = [name for name in moved if not _BATCH(name)]
    return ", ".join(others + ([f"{batches} spool batch file(s)"] if batches else []))
