"""`python -m bench.book_save --mb 1,10,100`: what keeping a book's previous copy costs a save.

The books (running totals, efficiency, health history, pools) are replaced every few minutes
(collector/durable_file.py `replace`). Three ways, alternated `--rounds` times per size, in a
temporary folder on the disk under `--dir`:

- `unsynced`: the temp file renamed over the old one (before trial M: a power cut may leave it empty);
- `keep .prev`: the same, the old file synced then renamed `<name>.prev` first (`replace` now);
- `synced`: the new file synced before its rename (`replace_synced`).

Each is timed twice: `written back` with the old file already on disk (the kernel writes dirty data
back within ~30 s, and the books are saved every 300 s or more: the usual case) and `just written`,
saved again at once (a stop right after a periodic save: the old file's sync writes it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from bench.report import console
from collector import durable_file


def unsynced(path: Path, data: bytes) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


WAYS: dict[str, Callable[[Path, bytes], None]] = {
    "unsynced": unsynced, "keep .prev": durable_file.replace, "synced": durable_file.replace_synced}


def timed(save: Callable[[Path, bytes], None], path: Path, data: bytes, *, written_back: bool) -> float:
    save(path, data)  # the old file
    if written_back:
        os.sync()
    start = time.perf_counter()
    save(path, data)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.book_save", description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", default="1,10,100", help="file sizes in MB, comma-separated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--dir", type=Path, default=Path.cwd(), help="where to write (the disk the spool is on)")
    args = p.parse_args(argv)
    table = Table(title="a book's save, median ms")
    for column in ("MB", "old file", *WAYS):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for mb in (float(x) for x in args.mb.split(",")):
            data = os.urandom(int(mb * 1e6))
            for written_back in (True, False):
                times: dict[str, list[float]] = {way: [] for way in WAYS}
                for _ in range(args.rounds):
                    for way, save in WAYS.items():  # alternated, round after round
                        path = Path(folder) / f"{way.replace(' ', '_')}.json"
                        times[way].append(timed(save, path, data, written_back=written_back))
                table.add_row(f"{mb:g}", "written back" if written_back else "just written",
                              *(f"{statistics.median(t) * 1000:.1f}" for t in times.values()))
    console().print(table)


if __name__ == "__main__":
    main()
