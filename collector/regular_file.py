"""Opening a file hashfleet reads or appends to only when it is a regular file.

A path on disk is outside input: a FIFO put there blocks an ordinary open (and the thread in it, past
SIGTERM), a device may act on being opened (a tape rewinds) or swallow what is written, /dev/zero
never ends. A link is never followed (a user who can write in the folder would have the collector
write through it, trial T): lstat first, then open non-blocking and without following a link (a FIFO put
there since fails or reads empty, never hangs; a link put there since fails, ELOOP) and check the
descriptor again. A file hashfleet writes whole is made fresh (`create_new`): never opened through
whatever a name holds.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """A descriptor for `path` opened with `flags` (O_NONBLOCK, O_NOFOLLOW and O_CLOEXEC added); OSError naming
    the path unless it is a regular file, not a link (FileNotFoundError when it is absent and `flags` do not
    create it)."""
    try:
        found = os.lstat(path).st_mode
    except FileNotFoundError:
        found = stat.S_IFREG  # (the open creates it, or says it is not there)
    if not stat.S_ISDIR(found):  # (a directory: the open says "Is a directory", or the fstat below refuses it)
        _regular(found, path)
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        _regular(os.fstat(fd).st_mode, path)
    except OSError:
        os.close(fd)
        raise
    return fd


def _regular(mode: int, path: Path) -> None:
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, "not a regular file", str(path))


def create_new(path: Path, mode: int = 0o644) -> int:
    """A descriptor for writing a new, empty regular file at `path`: whatever was there (a temp file a crash
    left, a link) is removed first, and the open fails (FileExistsError) rather than use anything put there
    since."""
    try:
        os.unlink(path)  # (a link: the link goes, never its target)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
