"""`python -m bench.avalon_parse FILE... [--before DIR]`: CPU time of one `avalon.parse` call on recorded replies.

Each FILE is the raw bytes of a `version+summary+estats+pools` reply (a simulated miner's, recorded
with `--record HOST:PORT FILE`, or a reply fixture from tests/data/replies/avalon/). Decoding is done
once, outside the timing; `time.process_time`, best of --number calls repeated 3 times, over --rounds
rounds (the best and the median are printed).

`--before DIR` times another checkout's driver in the same process, alternating with this one (its
`collector` and `models` are copied to a temporary directory and imported as `oldcollector` and
`oldmodels`): on a shared machine the noise between two processes is larger than the differences
measured (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from collector.sources import avalon
from collector.sources import cgminer_client as cgminer

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
_IMPORTS = re.compile(r"\b(from|import) (collector|models)\b")


def per_call_us(driver: ModuleType, reply: dict, number: int) -> float:
    timer = timeit.Timer(lambda: driver.parse(reply, host="10.0.0.9", port=4028, site="s", ts=TS),
                         timer=time.process_time)
    return min(timer.repeat(repeat=3, number=number)) / number * 1e6


def load_before(checkout: Path, into: Path) -> ModuleType:
    """`checkout`'s driver, imported as oldcollector.sources.avalon (its models as oldmodels)."""
    for package in ("collector", "models"):
        target = into / f"old{package}"
        shutil.copytree(checkout / package, target, ignore=shutil.ignore_patterns("__pycache__"))
        for file in target.rglob("*.py"):
            file.write_text(_IMPORTS.sub(lambda m: f"{m[1]} old{m[2]}", file.read_text()))
    sys.path.insert(0, str(into))
    from oldcollector.sources import avalon as before  # type: ignore[import-not-found]

    return before


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.avalon_parse", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path, help="raw replies to parse")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--number", type=int, default=2000)
    p.add_argument("--before", type=Path, help="another checkout whose driver to time alongside this one")
    p.add_argument("--record", nargs=2, metavar=("HOST:PORT", "FILE"),
                   help="first save the reply of the miner at HOST:PORT to FILE (and time it too)")
    args = p.parse_args(argv)
    files = list(args.files)
    if args.record:
        address, out = args.record
        host, _, port = address.rpartition(":")
        Path(out).write_bytes(asyncio.run(cgminer.request(host, int(port), avalon.POLL_COMMAND)))
        files.append(Path(out))
    with tempfile.TemporaryDirectory() as scratch:
        drivers = {"this": avalon}
        if args.before:
            drivers = {"before": load_before(args.before, Path(scratch)), **drivers}
        for name, driver in drivers.items():
            print(f"{name}: {driver.__file__}")
        for file in files:
            reply = cgminer.decode(file.read_bytes(), str(file))
            times: dict[str, list[float]] = {name: [] for name in drivers}
            for _ in range(args.rounds):
                for name, driver in drivers.items():
                    times[name].append(per_call_us(driver, reply, args.number))
            for name, values in times.items():
                print(f"{min(values):8.1f} µs best, {statistics.median(values):8.1f} median  {name}  {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
