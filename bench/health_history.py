"""`python -m bench.health_history --cycles 200,800`: `hashfleet health --since` over a long local history.

1. For each size in `--cycles`, a history of `--miners` miners' health written straight to a spool by the
   collector's own encoder (collector/sinks/points.py), `--interval` seconds apart and ending now: every
   miner has a problem every cycle, one in five a second one that closes two thirds of the way through,
   the site's roll-up and two models' power corrections each cycle;
2. `hashfleet health --since --json` over the whole of it, in a process of its own per `--tree` (a checkout
   or an exported commit; default this one), trees alternated `--rounds` times, as bench.history runs
   `report`: wall time, CPU time and peak RSS per run, and the figures of every tree compared.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.table import Table

from bench.history import REPO, SITE, compare_trees
from bench.report import console, num
from collector.sinks.points import health_points, site_health_lines
from models.config import Place
from models.health import Cause, MinerHealth, Problem, Severity, SiteHealth, Signal


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.health_history", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", type=int, default=500, help="miners in the history")
    p.add_argument("--cycles", default="200,800", help="history sizes, comma-separated")
    p.add_argument("--interval", type=int, default=10, help="seconds between the history's cycles")
    p.add_argument("--tree", type=Path, action="append", help="code to run `health` from (repeat to compare)")
    p.add_argument("--rounds", type=int, default=1, help="runs per tree and size, alternating trees")
    args = p.parse_args(argv)
    args.sizes = [int(n) for n in args.cycles.split(",")]
    args.tree = [t.resolve() for t in args.tree or [REPO]]
    if min(args.miners, args.rounds, args.interval, *args.sizes) < 1:
        p.error("--miners, --rounds, --interval and --cycles must be at least 1")
    return args


def cycle_lines(site: str, miners: int, k: int, cycles: int, ts: int) -> list[str]:
    """Cycle `k` of `cycles`: each miner's health point and problems, the site's roll-up, two models'."""
    lines = []
    for i in range(miners):
        miner = f"00:00:00:00:{i // 256:02x}:{i % 256:02x}"
        problems = [Problem(miner, Signal.BOARD_DEAD, Cause.BOARD, Severity.CRITICAL, f"board {i % 3} answers no chip",
                            board=i % 3, lost_ths=60.0, usd_lost_day=2.0 + (k % 7) / 10)]
        if i % 5 == 0 and k < 2 * cycles // 3:  # a second problem, repaired two thirds of the way through
            problems.append(Problem(miner, Signal.CHIP_HOT, Cause.THERMAL, Severity.WARNING, "chip 96 C, limit 90",
                                    value=96.0, limit=90.0, lost_ths=5.0, usd_lost_day=None if i % 10 else 0.5))
        health = MinerHealth(miner, "AvalonMiner 15-194" if i % 2 else "AvalonMiner 1246",
                             Place(container=f"c{i % 4}", rack=f"r{i % 20}", position=str(i % 8)), tuple(problems),
                             expected_ths=190.0, lost_ths=sum(p.lost_ths for p in problems),
                             usd_lost_day=sum(p.usd_lost_day or 0.0 for p in problems), chips_dead=40 + k // 100,
                             address=f"127.10.{i // 256}.{i % 256}:4028")
        lines += health_points(site, health, ts)
    roll_up = SiteHealth(site, miners=miners, miners_with_problems=miners, problems=miners + miners // 5,
                         usd_lost_day=miners * (2.0 + (k % 7) / 10), chips_dead=miners * (40 + k // 100),
                         power_corrections={"AvalonMiner 15-194": (1.02 + k / 1e5, 50, True),
                                            "AvalonMiner 1246": (0.98, 40, True)})
    return lines + site_health_lines(roll_up, datetime.fromtimestamp(ts, timezone.utc))


def write_history(directory: Path, site: str, miners: int, cycles: int, interval: int) -> int:
    """`cycles` batches, one a cycle, `interval` seconds apart and ending now, each file's mtime its time
    (as the collector leaves them); returns the first one's time."""
    directory.mkdir(parents=True)
    first = int(time.time()) - cycles * interval
    for k in range(cycles):
        ts = first + k * interval
        path = directory / f"{k + 1:016d}.lp.gz"
        path.write_bytes(gzip.compress(("\n".join(cycle_lines(site, miners, k, cycles, ts)) + "\n").encode(), 1))
        os.utime(path, (ts, ts))
    return first


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = console()
    with tempfile.TemporaryDirectory(prefix="bench-health-history-") as tmp:
        results = compare_trees(out, Path(tmp), args.sizes, args.tree, args.rounds,
                                lambda size, spool: write_history(spool, SITE, args.miners, size, args.interval),
                                command="health")
    table = Table(title=f"hashfleet health --since over the local history ({args.miners} miners, "
                        f"{args.interval} s cycles)", title_justify="left")
    for name in ("cycles", "tree", "seconds", "CPU s", "peak RSS MB", "problems"):
        table.add_column(name, justify="left" if name == "tree" else "right")
    for r in results:
        table.add_row(num(r["cycles"], 0), r["tree"], num(r["seconds"]), num(r["cpu_s"]), num(r["peak_rss_mb"], 0),
                      num(len(r["figures"]["problems"]), 0))
    out.print(table)


if __name__ == "__main__":
    main()
