"""`python -m bench.antminer --miners 1000`: the collector's pyasic path against simulated Antminers.

Starts `hashfleet simulate --fleet s19jpro:N --base 127.70.0.1` (each miner on its own loopback
address, RPC on 4028 and web UI on 80, as pyasic expects) and runs the collector's Poller: the first
cycle identifies every miner (a `version` request, then pyasic's detection) and reads it; the next
--cycles cycles only read (pyasic `get_data()` through collector/sources/pyasic_source.py). Each
timed cycle is compared with the collect interval (10 s): the issue's target is 1,000 Antminers
read within one interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rich.table import Table

from bench import machine, report
from bench.procs import BenchSetupError, SimulatorFleet, box_cpu_seconds
from bench.stats import median, peak_rss_mb, percentile


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.antminer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=3, help="timed cycles after the detection cycle")
    p.add_argument("--model", default="s19jpro", help="a pyasic-read model: s19jpro, s21, bitaxe ...")
    p.add_argument("--base", default="127.70.0.1", help="first loopback address (one per miner)")
    p.add_argument("--concurrency", type=int, default=None, help="collector concurrency (default: CollectorConfig's)")
    p.add_argument("--timeout", type=float, default=5.0, help="collector's per-miner timeout, s")
    p.add_argument("--interval", type=float, default=10.0, help="the collect interval each cycle must fit in, s")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the timed cycles: DIR/antminer.raw")
    p.add_argument("--json", type=Path, metavar="FILE")
    args = p.parse_args(argv)
    if args.miners < 1 or args.cycles < 1:
        p.error("--miners and --cycles must be at least 1")
    return args


async def _cycles(addresses: list[str], *, cycles: int, concurrency: int | None, timeout_s: float, interval_s: float,
                  sim_cpu, profiler=None) -> list[dict[str, object]]:
    from collector.poller import Poller
    from models import CollectorConfig, MinerState

    settings: dict[str, object] = {"site": "bench", "miners": addresses, "timeout_s": timeout_s,
                                   "interval_s": interval_s}
    if concurrency:
        settings["concurrency"] = concurrency
    poller = Poller(CollectorConfig.model_validate(settings))
    out = []
    ts = datetime.now(timezone.utc).replace(microsecond=0)
    for index in range(cycles + 1):
        if index == 1 and profiler is not None:
            profiler.start()
        ts += timedelta(seconds=1)
        sim0, box0, cpu0, wall0 = sim_cpu(), box_cpu_seconds(), time.process_time(), time.perf_counter()
        result = await poller.cycle(ts)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        latencies = list(getattr(result, "latencies_s", None) or [])
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        states = [s.state for s in result.samples]
        out.append({
            "cycle": index + 1, "detect": index == 0, "miners": len(result.samples), "seconds": wall,
            "mining": sum(1 for s in states if s is MinerState.MINING),
            "with_hashrate": sum(1 for s in result.samples if s.hashrate_ths), "failed": result.failed,
            "p50_ms": p50 * 1000 if p50 is not None else None, "p99_ms": p99 * 1000 if p99 is not None else None,
            "cpu_s": cpu, "cpu_per_1k": cpu / len(result.samples) * 1000 if result.samples else None,
            "sim_cpu_s": sim_cpu() - sim0, "box_busy_cores": (box_cpu_seconds() - box0) / wall,
            "peak_rss_mb": peak_rss_mb(), "within_interval": wall <= interval_s,
            "errors": sorted({e for s in result.samples for e in s.errors})[:3],
        })
    if profiler is not None:
        profiler.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = report.console()
    info = machine.describe()
    report.machine_header(out, info, f"bench.antminer: {args.miners:,} simulated {args.model} through the collector's "
                                     f"pyasic path, 1 detection + {args.cycles} timed cycles, interval {args.interval:g} s")
    workdir = Path(tempfile.mkdtemp(prefix="hashfleet-bench-"))
    try:
        with SimulatorFleet(args.model, args.miners, args.base, workdir, sockets_per_miner=2) as sim:
            out.print(f"fleet: {len(sim.addresses):,} miners {sim.addresses[0]} .. {sim.addresses[-1]} ready in "
                      f"{sim.start_seconds:.1f} s (RPC 4028 + web 80 each)")
            from bench.pipeline import loop_runner
            from bench.profile import PySpy

            profiler = PySpy(args.profile / "antminer.raw") if args.profile else None
            cycles = loop_runner()(_cycles(sim.addresses, cycles=args.cycles, concurrency=args.concurrency,
                                           timeout_s=args.timeout, interval_s=args.interval, sim_cpu=sim.cpu_seconds,
                                           profiler=profiler))
    except BenchSetupError as e:
        out.print(f"[red]setup failed:[/red] {e}")
        return 1
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title="collector, pyasic path, per cycle", title_justify="left")
    for name in ("cycle", "seconds", "within interval", "miners", "mining", "failed", "p50 ms", "p99 ms", "CPU s/1k",
                 "sim CPU s", "box busy", "RSS MB"):
        table.add_column(name, justify="left" if name == "cycle" else "right", no_wrap=True)
    for c in cycles:
        table.add_row(f"{c['cycle']}" + (" (detect)" if c["detect"] else ""), report.num(c["seconds"]),
                      "yes" if c["within_interval"] else "[red]no[/red]", report.num(c["miners"], 0),
                      report.num(c["mining"], 0), report.num(c["failed"], 0), report.num(c["p50_ms"], 1),
                      report.num(c["p99_ms"], 1), report.num(c["cpu_per_1k"], 3), report.num(c["sim_cpu_s"]),
                      report.num(c["box_busy_cores"]), report.num(c["peak_rss_mb"], 0),
                      style="dim" if c["detect"] else None)
    out.print(table)
    for c in cycles:
        if c["errors"]:
            out.print(f"cycle {c['cycle']} errors (first 3 kinds): {c['errors']}")
    timed = [c for c in cycles if not c["detect"]]
    slowest = max(c["seconds"] for c in timed)
    all_read = all(c["failed"] == 0 and c["mining"] == c["miners"] for c in timed)
    met = slowest <= args.interval and all_read
    summary = {"miners": args.miners, "model": args.model, "seconds_median": median([c["seconds"] for c in timed]),
               "seconds_max": slowest, "detect_seconds": cycles[0]["seconds"], "interval_s": args.interval,
               "cpu_per_1k": median([c["cpu_per_1k"] for c in timed]), "all_read": all_read, "met": met}
    out.print(report.targets_table([{
        "target": f"{args.miners:,} simulated {args.model} read through the pyasic path within one "
                  f"{args.interval:g} s interval",
        "measured": f"{summary['seconds_median']:.2f} s median, {slowest:.2f} s slowest; detection cycle "
                    f"{summary['detect_seconds']:.1f} s; every miner read: {'yes' if all_read else 'no'}",
        "met": met}]))
    if profiler is not None:
        from bench.profile import print_top

        summary["profile"] = print_top(out, profiler)
    out.print(f"machine: {machine.one_line(info)}; {os.cpu_count()} cores shared with the simulator")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) if isinstance(v, Path) else v
                                                                   for k, v in vars(args).items()},
                                         "cycles": cycles, "summary": summary}, indent=2, default=str) + "\n")
        out.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
