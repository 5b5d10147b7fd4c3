"""`python -m bench.scale --sizes 1000,5000,10000,20000`: is the collector's CPU per miner flat?

Runs `python -m bench.poll --miners N --skip-pyasic --skip-bare` once per size, one after another
(never in parallel: 2 cores), each in a fresh process so that its peak RSS is its own, and tabulates
CPU seconds per 1,000 miners (poll, cost, write), cycle time and peak RSS. The issue's target: CPU
per miner within 25% from 1,000 to 20,000 miners (max / min <= 1.25 over the sizes run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.table import Table

from bench import machine, report
from bench.stats import ratio

FLAT_WITHIN = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", default="1000,5000,10000,20000", help="comma-separated fleet sizes")
    p.add_argument("--cycles", type=int, default=3, help="timed cycles per size")
    p.add_argument("--model", default="a1566")
    p.add_argument("--base", default="127.60.0.1")
    p.add_argument("--concurrency", type=int, default=None)
    p.add_argument("--json", type=Path, metavar="FILE")
    p.add_argument("--quiet", action="store_true", help="do not echo each size's own tables")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes {args.sizes!r}: write whole numbers separated by commas, e.g. 1000,5000,10000")
    if not args.sizes or min(args.sizes) < 1:
        p.error("--sizes needs at least one size of 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = report.console()
    info = machine.describe()
    report.machine_header(out, info, f"bench.scale: sizes {', '.join(f'{n:,}' for n in args.sizes)}, "
                                     f"{args.cycles} timed cycles each")
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="hashfleet-scale-") as tmp:
        for size in args.sizes:
            result = Path(tmp) / f"{size}.json"
            argv_run = [sys.executable, "-m", "bench.poll", "--miners", str(size), "--cycles", str(args.cycles),
                        "--model", args.model, "--base", args.base, "--skip-pyasic", "--skip-bare",
                        "--json", str(result)]
            if args.concurrency:
                argv_run += ["--concurrency", str(args.concurrency)]
            out.print(f"[bold]{size:,} miners[/bold]: {' '.join(argv_run[1:])}")
            done = subprocess.run(argv_run, cwd=machine.REPO, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
            if not args.quiet:
                sys.stdout.write(done.stdout)
            if done.returncode != 0 or not result.exists():
                if args.quiet:
                    sys.stdout.write("\n".join(done.stdout.splitlines()[-30:]) + "\n")
                out.print(f"[red]{size:,} miners: bench.poll failed (exit {done.returncode})[/red]")
                runs.append({"miners": size, "error": f"exit {done.returncode}"})
                continue
            data = json.loads(result.read_text())
            runs.append({"miners": size, **data["collector"]["summary"]})

    ok = [r for r in runs if "error" not in r and r.get("cpu_per_1k")]
    base = next((r["cpu_per_1k"] for r in ok), None)
    table = Table(title="CPU per 1,000 miners by fleet size (medians of the timed cycles)", title_justify="left")
    for name in ("miners", "cycle s", "poll s", "miners/s", "CPU s/1k", "poll", "cost", "write", "vs smallest",
                 "p50 ms", "p99 ms", "points/s", "peak RSS MB", "box busy"):
        table.add_column(name, justify="right", no_wrap=True)
    n = report.num
    for r in runs:
        if "error" in r:
            table.add_row(n(r["miners"], 0), f"[red]{r['error']}[/red]", *[""] * 12)
            continue
        table.add_row(n(r["miners"], 0), n(r["total_s"]), n(r["poll_s"]), n(r["miners_per_s"], 0),
                      n(r["cpu_per_1k"], 3), n(r["cpu_poll_per_1k"], 3), n(r["cpu_cost_per_1k"], 3),
                      n(r["cpu_write_per_1k"], 3), f"{ratio(r['cpu_per_1k'], base):.2f}x" if base else "–",
                      n(r["p50_ms"], 1), n(r["p99_ms"], 1), n(r["points_per_s"], 0), n(r["peak_rss_mb"], 1),
                      n(r["box_busy_cores"]))
    out.print(table)
    spread = max(r["cpu_per_1k"] for r in ok) / min(r["cpu_per_1k"] for r in ok) if len(ok) > 1 else None
    spans = bool(ok) and min(r["miners"] for r in ok) <= 1000 and max(r["miners"] for r in ok) >= 20000
    met = (spread <= 1 + FLAT_WITHIN) if spread is not None and spans else None
    sizes = f"{min(r['miners'] for r in ok):,} to {max(r['miners'] for r in ok):,}" if ok else "–"
    out.print(report.targets_table([{
        "target": f"CPU per miner flat within {FLAT_WITHIN:.0%} from 1,000 to 20,000 miners",
        "measured": f"max / min = {spread:.2f} over {sizes} miners" if spread else "fewer than two sizes ran",
        "met": met, "note": None if spans else "the sizes run do not span 1,000 to 20,000"}]))
    out.print(f"machine: {machine.one_line(info)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "runs": runs, "cpu_spread": spread, "met": met},
                                        indent=2, default=str) + "\n")
        out.print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
