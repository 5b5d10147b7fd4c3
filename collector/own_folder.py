"""The collector's own folder (the spool: batches, state files, the lock, the audit log) checked as its own.

The collector may run as root, and the folder may be under /tmp or a shared one. Whoever else can write
in it can plant a link named like one of its files (`lock -> /etc/shadow`: written through at start) or
forge its state (a control file claiming miners it never slept). So at start the folder must be owned by
the collector's user and not writable by group or others, and its parent owned by that user or root and
not writable by group or others unless sticky (as /tmp: nobody else can then rename our folder away and put theirs
in its place). A folder the collector makes, parents included, it makes 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnsafeFolder(Exception):
    """The folder can be written by someone other than the collector's user; the message says how and what to do."""


def make(directory: Path) -> None:
    """`directory` there (made 0700 with any missing parents) and the collector's own; UnsafeFolder if not."""
    _make(directory)
    check(directory)


def check(directory: Path) -> None:
    """UnsafeFolder when `directory` (if it exists) or its parent (if it exists) can be written by another user."""
    me = os.geteuid()
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeFolder(f"spool folder {directory} is not a folder")
        if st.st_uid != me or st.st_mode & 0o022:
            raise UnsafeFolder(_refused(directory, st, "the spool folder"))
    parent = Path(os.path.realpath(directory)).parent
    try:
        st = os.stat(parent)
    except FileNotFoundError:
        return
    writable_by_others = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if st.st_uid not in (me, 0) or writable_by_others:
        raise UnsafeFolder(_refused(parent, st, "the parent of the spool folder " + str(directory)))


def _refused(folder: Path, st: os.stat_result, what: str) -> str:
    return (f"{what}, {folder}, is owned by uid {st.st_uid} with mode {stat.filemode(st.st_mode)}, and the "
            f"collector runs as uid {os.geteuid()}: another user could plant links or forged state in it. Give "
            "spool.directory (or HASHFLEET_SPOOL_DIR) a folder owned by the collector's user that group and others "
            "cannot write (chown, chmod 700), under a parent only that user or root can write (or a sticky one "
            "such as /tmp), or let the collector make it")


def _make(directory: Path) -> None:
    # (Path.mkdir(parents=True) makes the parents with the umask's mode, 0777 under umask 0: made one by one)
    try:
        os.mkdir(directory, 0o700)
    except FileNotFoundError:
        _make(directory.parent)
        _make(directory)
    except FileExistsError:
        pass
