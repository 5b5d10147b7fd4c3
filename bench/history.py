"""`python -m bench.history --cycles 2000,6000`: `hashfleet report` over a long local history, time and memory.

1. `hashfleet collect` without InfluxDB against a simulated fleet (`--fleet`, 25 Avalons by default) for
   `--real` cycles: real batches, with every measurement a site writes (miners, boards, cost, health, ...);
2. for each size in `--cycles`, that history repeated to so many cycles `--interval` seconds apart, ending
   now (each line's time re-stamped, each batch's mtime set to it, as the collector leaves them);
3. `hashfleet report --json` over the whole of it, in a process of its own per `--tree` (a checkout or an
   exported commit; default this one): give the code before a change as a second `--tree` and the runs
   alternate tree by tree, `--rounds` times. Per run: wall time, CPU time (user + system: steadier than
   the wall time on a shared machine) and peak RSS (wait4's rusage). The figures of every tree's report are compared, and any difference printed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.table import Table

from bench.report import console, num
from simulators.fleet import run_fleet

REPO = Path(__file__).resolve().parent.parent
SITE = "bench"
MAIN = "import sys; sys.argv[0] = 'hashfleet'; from collector.commands import main; main()"
ECONOMICS = {"timezone": "UTC", "tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1, "pool_fee_pct": 2,
             "opex_usd_month": 3000}
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--fleet", default="a1246:5,a1566:5,a1466:5,q:5,nano3s:5", help="simulated fleet, MODEL:N,...")
    p.add_argument("--base", default="127.66.0.1", help="first loopback address; one address per miner")
    p.add_argument("--real", type=int, default=12, help="cycles collected from the fleet")
    p.add_argument("--cycles", default="2000,6000", help="history sizes, comma-separated")
    p.add_argument("--interval", type=int, default=10, help="seconds between the history's cycles")
    p.add_argument("--tree", type=Path, action="append", help="code to run `report` from (repeat to compare)")
    p.add_argument("--rounds", type=int, default=1, help="runs per tree and size, alternating trees")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every number as JSON")
    args = p.parse_args(argv)
    args.sizes = [int(n) for n in args.cycles.split(",")]
    args.tree = [t.resolve() for t in args.tree or [REPO]]
    if args.real < 1 or args.rounds < 1 or args.interval < 1 or min(args.sizes) < 1:
        p.error("--real, --rounds, --interval and --cycles must be at least 1")
    return args


def collect(fleet_spec: str, base: str, cycles: int, config: Path) -> list[list[str]]:
    """`cycles` real batches (their lines) of the collector against the simulated fleet."""
    spool = config.parent / "real"
    config.write_text(yaml.safe_dump({"site": SITE, "economics": ECONOMICS, "network": NETWORK,
                                      "spool": {"directory": str(spool)}}))
    with run_fleet(fleet_spec, base=base, seed=11) as fleet:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
        done = subprocess.run([sys.executable, "-c", MAIN, "collect", "--config", str(config), "--miners",
                               ",".join(fleet.addresses), "--cycles", str(cycles), "--interval", "1"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=60 + 10 * cycles)
    if done.returncode != 0:
        raise SystemExit(f"collect failed ({done.returncode}): {done.stderr[-2000:]}")
    return [gzip.decompress(path.read_bytes()).decode().splitlines() for path in sorted(spool.glob("*.lp.gz"))]


def write_history(real: list[list[str]], cycles: int, interval: int, directory: Path) -> int:
    """`cycles` batches made of the real ones in turn, re-stamped `interval` seconds apart, ending now;
    returns the first one's time."""
    directory.mkdir(parents=True)
    first = int(time.time()) - cycles * interval
    for k in range(cycles):
        ts = first + k * interval
        lines = [line.rsplit(" ", 1)[0] + f" {ts}" for line in real[k % len(real)]]
        path = directory / f"{k + 1:016d}.lp.gz"
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
        os.utime(path, (ts, ts))
    return first


def run_report(tree: Path, config: Path, since_s: int, command: str = "report") -> dict:
    """`hashfleet report --json` (or `command`: bench.health_history's `health`) from `tree`: its seconds,
    peak RSS and figures."""
    out = config.parent / "report.json"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, "-c", MAIN, command, "--config", str(config), "--since",
                                 f"{since_s // 60 + 1}m", "--json"], cwd=tree, env=env, stdout=stdout,
                                stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{command} from {tree} failed ({proc.returncode})")
    figures = json.loads(out.read_text())
    del figures["start"], figures["end"]  # the moment it ran
    return {"tree": str(tree), "seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "figures": figures}


def compare_trees(out, work: Path, sizes: list[int], trees: list[Path], rounds: int,
                  write: Callable[[int, Path], int], command: str = "report", **extra) -> list[dict]:
    """For each history size: `write(size, spool)` (it returns the first cycle's time), then `command`
    over it from each tree in alternation, `rounds` times; says when two trees' figures differ."""
    results = []
    for size in sizes:
        spool = work / f"history-{size}"
        first = write(size, spool)
        config = work / f"{command}-{size}.yaml"
        config.write_text(yaml.safe_dump({"site": SITE, "spool": {"directory": str(spool)}}))
        for _ in range(rounds):
            for tree in trees:
                # the whole history, however long ago it was written (a week's runs take minutes each)
                run = run_report(tree, config, int(time.time()) - first + 120, command=command)
                results.append({"cycles": size, **extra, **run})
                out.print(f"{size:,} cycles, {tree}: {run['seconds']:.2f} s, CPU {run['cpu_s']:.2f} s, "
                          f"peak RSS {run['peak_rss_mb']:.0f} MB")
        reference = results[-1]["figures"]
        for r in results:
            if r["cycles"] == size and r["figures"] != reference:
                out.print(f"[red]figures differ[/red]: {r['tree']} against {results[-1]['tree']}")
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = console()
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        work = Path(tmp)
        real = collect(args.fleet, args.base, args.real, work / "collect.yaml")
        results = compare_trees(out, work, args.sizes, args.tree, args.rounds,
                                lambda size, spool: write_history(real, size, args.interval, spool),
                                lines_per_cycle=sum(map(len, real)) / len(real))
    table = Table(title=f"hashfleet report over the local history ({args.fleet}, {args.interval} s cycles)",
                  title_justify="left")
    for name in ("cycles", "tree", "seconds", "CPU s", "peak RSS MB", "cycles in report"):
        table.add_column(name, justify="left" if name == "tree" else "right")
    for r in results:
        table.add_row(num(r["cycles"], 0), r["tree"], num(r["seconds"]), num(r["cpu_s"]), num(r["peak_rss_mb"], 0),
                      num(r["figures"]["cycles"], 0))
    out.print(table)
    if args.json:
        args.json.write_text(json.dumps({"fleet": args.fleet, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
