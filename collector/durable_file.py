"""Small state files replaced whole, so a power cut (common on a mining site, and what curtailment is
about) never costs more than the last change, and an unusable file never costs an earlier good copy.

- `replace_synced`: for the files control acts on after a restart (which miners it put to sleep, the
  kill switch): synced, so a power cut leaves either the old content or the new, on disk.
- `replace`: for the larger books (running totals, efficiency, health history, pools), written every
  few minutes. Syncing megabytes would stall the cycle, so the new file is not synced: a power cut may
  leave it empty, cut short or with a zero-filled tail. The version it replaces is kept as
  `<name>.prev`, synced first (cheap: written minutes ago, the kernel has long since written it back),
  so it survives the cut, and `read_book` falls back to it: a cut costs the minutes since that save.
- `read_book`: a book's file read and checked, else its `.prev` (logged), else nothing (an ERROR). The
  unusable file is set aside (`set_aside`) as `<name>.unusable.<n>`, numbered after any kept before,
  so a later one never overwrites an earlier one; the newest KEEP_SET_ASIDE are kept.

Either way a write that fails (a full disk) leaves no temp file behind.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import orjson

from collector import regular_file

log = logging.getLogger(__name__)
T = TypeVar("T")

KEEP_SET_ASIDE = 5  # unusable files kept aside per book: the newest; older ones are deleted
_MAX_NUMBER_DIGITS = 9


class UnusableFile(ValueError):
    """A state file that cannot be used; the message says which value and why (each book subclasses it)."""


def replace_synced(path: Path, data: bytes) -> None:
    """`path` holds `data` once this returns, on disk; OSError when it cannot (the old file stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, data, synced=True)
    sync_directory(path.parent)


def replace(path: Path, data: bytes) -> None:
    """`path` holds `data` once this returns (not synced: a power cut may leave it empty or cut short), and
    `previous(path)` the version it replaced, synced; OSError when it cannot (the old file stays; a missing
    folder is not made)."""
    _replace(path, data, synced=False)


def previous(path: Path) -> Path:
    """Where `replace` keeps the version of `path` it replaced."""
    return path.with_name(path.name + ".prev")


def _replace(path: Path, data: bytes, *, synced: bool) -> None:
    temp = path.with_suffix(".tmp")
    try:
        with open(regular_file.create_new(temp), "wb") as f:  # (fresh: never written through a link put there)
            f.write(data)
            if synced:
                f.flush()
                os.fsync(f.fileno())
        if not synced:
            _keep_previous(path)
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


def _keep_previous(path: Path) -> None:
    """`path` on disk, then renamed `<name>.prev`: the copy a power cut during the next write falls back to.
    With no `path` (a first save, or it was set aside as unusable) the `.prev` there is stays as it is."""
    try:
        fd = regular_file.open_regular(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)  # (its data was written minutes ago: usually on disk already, and this returns at once)
    finally:
        os.close(fd)
    os.replace(path, previous(path))


def sync_directory(directory: Path) -> None:
    """The directory's entries (a rename, a new file) on disk. A failure is logged, not raised: the file
    is there; only its survival of a power cut is in doubt."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        log.warning("%s: directory not synced to disk (%s)", directory, e.strerror or e)


def read_book(path: Path, read: Callable[[Path], T], *, what: str, lost: str, set_aside: bool = True) -> T | None:
    """`read(path)`: the book `path` holds, checked (an exception when it cannot be used); else the previous
    copy `replace` kept, read the same way (a WARNING: what changed since it was saved is lost); else None:
    no file, or neither usable (an ERROR names the file, why, and that `lost`). Whatever the file holds, this
    returns: the service starts. An unusable `path` is set aside unless `set_aside` is False (a command
    reading the collector's files leaves them alone)."""
    prev = previous(path)
    if not path.exists() and not prev.exists():
        return None
    why = "there is no such file"  # (a cut between keeping the previous copy and writing the new one)
    if path.exists():
        try:
            return read(path)
        except Exception as e:  # whatever is in the file, the service starts
            why = f"it is unusable ({unusable_reason(e)[:300]})"
    aside = _set_aside_logged(path) if set_aside and path.exists() else None
    kept = f"; the file is kept as {aside}" if aside is not None else ""
    try:
        book = read(prev)
    except FileNotFoundError:
        log.error("%s in %s: %s, and there is no previous copy: %s%s", what, path, why, lost, kept)
        return None
    except Exception as e:
        log.error("%s in %s: %s, and so is the previous copy %s (%s): %s%s", what, path, why, prev,
                  unusable_reason(e)[:300], lost, kept)
        return None
    log.warning("%s in %s: %s; read the previous copy %s, saved at %s: what changed after it is lost%s", what, path,
                why, prev, _modified(prev), kept)
    return book


def newer_version(data: object, reads: int, what: str) -> str | None:
    """Why `data` cannot be read when a newer hashfleet wrote it (a whole `version` above `reads`), else None: a
    rollback's book is set aside as any unusable one, and its message must not read as damage."""
    version = data.get("version") if isinstance(data, dict) else None
    if type(version) is int and version > reads:
        return (f"a version {version} {what}, written by a newer hashfleet (this one reads version {reads}): rolled "
                "back? docs/deployment.md, Rolling back")
    return None


def unusable_reason(e: Exception) -> str:
    """Why a state file could not be used, as a log line says it."""
    if isinstance(e, orjson.JSONDecodeError):
        return f"not JSON: {e}"
    return str(e) if isinstance(e, UnusableFile) else f"{type(e).__name__}: {e}"


def set_aside(path: Path) -> Path:
    """Move the unusable `path` to `<name>.unusable.<n>`, `n` one more than any kept, so no earlier one is
    overwritten; then delete all but the newest KEEP_SET_ASIDE (regular files only). OSError when `path`
    cannot be moved."""
    prefix = path.name + ".unusable."
    kept = []  # (n, name)
    for entry in os.scandir(path.parent):
        n = entry.name[len(prefix):]
        if entry.name.startswith(prefix) and n.isascii() and n.isdigit() and len(n) <= _MAX_NUMBER_DIGITS:
            kept.append((int(n), entry.name))
    kept.sort()
    aside = path.with_name(f"{prefix}{kept[-1][0] + 1 if kept else 1}")
    os.rename(path, aside)
    for _, name in kept[:max(0, len(kept) + 1 - KEEP_SET_ASIDE)]:
        old = path.with_name(name)
        try:
            if stat.S_ISREG(os.lstat(old).st_mode):
                old.unlink()
        except OSError:
            pass  # (kept: it costs only its room)
    return aside


def _set_aside_logged(path: Path) -> Path | None:
    try:
        return set_aside(path)
    except OSError as e:
        log.warning("%s: cannot be set aside (%s): the next save replaces it", path, e.strerror or e)
        return None


def _modified(path: Path) -> str:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except (OSError, ValueError, OverflowError):
        return "an unknown time"
