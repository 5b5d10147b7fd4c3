"""The spool's files as anyone reads them: what a batch is called, and reading one back with every kind
of damage one DamagedBatch. The spool (collector/sinks/spool.py) writes them and delivers them; the local
history's readers (`report`, `health --since`, the backtest, `watch`: collector/history.py) read them. Its
docstring tells what damage means and what each name is.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collector import regular_file

# Names: sequence numbers are 16 ASCII digits (`\d` takes other scripts' digits, `$` a trailing newline).
BATCH_NAME = re.compile(r"([0-9]{16})\.lp\.gz").fullmatch
NUMBERED_NAME = re.compile(r"([0-9]{16})\.lp\.").match  # a batch, kept aside (.bad, .rejected) or not
# what a crash mid-write leaves
OWN_TEMP_NAME = re.compile(r"([0-9]{16}\.lp|dropped|rejected|lost|expired)\.tmp").fullmatch
_BATCH_LIKE = re.compile(r"\s*\d+\.lp\.gz\s*").fullmatch  # what a person would take for a batch

# A batch holds at most influx.batch_size lines (<= 100,000; 5,000 for the local history), ~310 bytes
# each on average (1.4 KB the longest measured; tags are cut at 256 characters, strings at 4,096): ~31 MB
# at the largest. Past 8 times that inflated, 10 times its lines, or a line of 1 MiB, a file is damage
# (a gzip bomb), refused before it can exhaust memory: a read holds the file and ~320 MB of lines at most.
MAX_BATCH_BYTES = 256 * 1024 * 1024
MAX_BATCH_LINES = 1_000_000
MAX_LINE_BYTES = 1024 * 1024
_INFLATE_STEP = MAX_LINE_BYTES  # bytes inflated at a time: memory stays bounded whatever a file claims


class DamagedBatch(Exception):
    """A batch file that cannot be read whole; `reason` says how. `lines` holds its whole lines before
    the damage when they can be trusted: a file `cut_short` (what precedes the cut inflates exactly as
    written). After a flipped bit the data before the point deflate notices may already be wrong:
    none are kept."""

    def __init__(self, path: Path, reason: str, *, cut_short: bool = False):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.cut_short = cut_short
        self.lines: list[str] = []


@dataclass(frozen=True)
class Batch:
    seq: int
    path: Path

    def read(self) -> list[str]:
        """The batch's lines. Split on newlines only, as InfluxDB does (str.splitlines also breaks at
        U+2028, U+0085 and other characters a string field may hold). DamagedBatch when the file is
        damaged; FileNotFoundError when it is gone (delivered or trimmed meanwhile)."""
        return lines_of(self.path, self._read_file())

    def read_body(self) -> bytes:
        """The file as it is (gzip'd line protocol: what delivery sends), once it has inflated whole within
        the caps on bytes and on a line's length; DamagedBatch or FileNotFoundError as `read`."""
        body = self._read_file()
        for _ in _inflate(self.path, body):
            pass
        return body

    def _read_file(self) -> bytes:
        try:
            fd = regular_file.open_regular(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise DamagedBatch(self.path, e.strerror or str(e)) from None
        with open(fd, "rb") as f:
            size = os.fstat(fd).st_size
            if size > MAX_BATCH_BYTES:
                raise DamagedBatch(self.path, f"larger than the {MAX_BATCH_BYTES} bytes a batch may hold")
            try:  # (its size, not the cap: a read of n bytes reserves n bytes first)
                return f.read(size)
            except OSError as e:
                raise DamagedBatch(self.path, f"read error: {e.strerror or e}") from None

    @property
    def mtime(self) -> float:
        return self.path.stat().st_mtime


def lines_of(path: Path, body: bytes) -> list[str]:
    """The lines in a batch file's bytes (`path` names it in a DamagedBatch). Inflated and decoded a step at
    a time, never the whole at once: what a file holds is capped, not what it claims."""
    lines: list[str] = []
    partial: list[bytes] = []  # the line the last step ended in
    try:
        for step in _inflate(path, body):
            cut = step.rfind(b"\n")
            if cut < 0:
                partial.append(step)
                continue
            partial.append(step[:cut])
            lines += [line for line in b"".join(partial).decode("utf-8", "replace").split("\n") if line]
            partial = [step[cut + 1:]]
            if len(lines) > MAX_BATCH_LINES:
                raise DamagedBatch(path, f"more than the {MAX_BATCH_LINES} lines a batch may hold")
    except DamagedBatch as e:
        if e.cut_short:
            e.lines = lines  # (the line the cut fell in is left out)
        raise
    last = b"".join(partial).decode("utf-8", "replace")
    return lines + [last] if last else lines


def _inflate(path: Path, body: bytes) -> Iterator[bytes]:
    """The inflated content of gzip'd `body`, at most _INFLATE_STEP bytes at a time, member after member;
    DamagedBatch on data or a check deflate refuses, a stream cut short, past MAX_BATCH_BYTES or with a
    line past MAX_LINE_BYTES. (Lines are counted where they become objects, in `lines_of`: counting them
    here cost delivery a fifth more per batch.)"""
    inflated = 0
    line_bytes = 0  # of the line not yet ended
    while True:
        member = zlib.decompressobj(wbits=31)  # gzip: its CRC and length are checked at the member's end
        while not member.eof:
            try:
                step = member.decompress(body, _INFLATE_STEP)
            except zlib.error as e:
                raise DamagedBatch(path, f"corrupt ({e})") from None
            body = member.unconsumed_tail
            if not step and not body and not member.eof:
                raise DamagedBatch(path, "cut short" if inflated else "empty or cut short", cut_short=True)
            inflated += len(step)
            if inflated > MAX_BATCH_BYTES:
                raise DamagedBatch(path, f"inflates past the {MAX_BATCH_BYTES} bytes a batch may hold")
            first = step.find(b"\n")
            if first < 0:
                ended = line_bytes = line_bytes + len(step)
            else:  # (a line wholly inside a step is shorter than the step: than MAX_LINE_BYTES)
                ended, line_bytes = line_bytes + first, len(step) - step.rfind(b"\n") - 1
            if max(ended, line_bytes) > MAX_LINE_BYTES:
                raise DamagedBatch(path, f"a line longer than {MAX_LINE_BYTES} bytes")
            yield step
        body = member.unused_data
        if not body.strip(b"\0"):  # (zeros after the last member: padding, as gzip itself allows)
            return


def list_batches(directory: Path) -> list[Batch]:
    """The batches in a spool directory, oldest first: regular files only (see `strays`). Reading needs
    no ownership (hashfleet report)."""
    found = []
    for entry in os.scandir(directory):
        match = BATCH_NAME(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            found.append(Batch(int(match.group(1)), Path(entry.path)))
    return sorted(found, key=lambda b: b.seq)


def misnumbered(directory: Path) -> list[str]:
    """Names of the entries in a spool directory named like a batch but numbered otherwise than the spool
    numbers them (16 ASCII digits: more or fewer, other scripts' digits). Not the spool's: never listed,
    read, moved or deleted; their finder warns, as of `strays`."""
    return sorted(entry.name for entry in os.scandir(directory)
                  if _BATCH_LIKE(entry.name) and not BATCH_NAME(entry.name))


def strays(directory: Path) -> list[str]:
    """Names of the entries in a spool directory named like the spool's files that are not regular files
    (a FIFO, a device, a symbolic link, a directory). The spool makes none (it renames regular files into
    place), so they are not its own: passed over, never opened, moved or deleted; their finder warns."""
    return sorted(entry.name for entry in os.scandir(directory)
                  if (BATCH_NAME(entry.name) or OWN_TEMP_NAME(entry.name))
                  and not entry.is_file(follow_symlinks=False))
