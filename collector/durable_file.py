"""A small state file replaced whole and synced, so a power cut (common on a mining site, and what
curtailment is about) leaves either the old content or the new, on disk: never an empty file.

For the files control acts on after a restart (which miners it put to sleep, the kill switch). The
larger books (running totals, efficiency, health history, pools) are replaced the same way but not
synced (`replace`): losing their last minutes costs learning, not safety, and syncing megabytes would
stall the cycle. Either way a write that fails (a full disk) leaves no temp file behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def replace_synced(path: Path, data: bytes) -> None:
    """`path` holds `data` once this returns, on disk; OSError when it cannot (the old file stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, data, synced=True)
    sync_directory(path.parent)


def replace(path: Path, data: bytes) -> None:
    """`path` holds `data` once this returns (not synced: a power cut may leave the old file or an empty one);
    OSError when it cannot (the old file stays; a missing folder is not made)."""
    _replace(path, data, synced=False)


def _replace(path: Path, data: bytes, *, synced: bool) -> None:
    temp = path.with_suffix(".tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            if synced:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError:
        temp.unlink(missing_ok=True)
        raise


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
