"""`python -m bench.antminer --miners 1000`: the collector's pyasic path against simulated Antminers.

Starts `hashfleet simulate --fleet s19jpro:N --base 127.70.0.1` (each miner on its own loopback
address, RPC on 4028 and web UI on 80, as pyasic expects) and runs the collector's PolledMiners: the first
cycle identifies every miner (a `version` request, then pyasic's detection) and reads it; the next
--cycles cycles only read (pyasic `get_data()` through collector/sources/pyasic_source.py). Each
timed cycle is compared with the collect interval (10 s): the issue's target is 1,000 Antminers
read within one interval.

`--shards N` runs N collector processes (`--shard K/N` each, as `hashfleet collect --shard` splits a
site), one per core: pyasic costs ~11 ms of CPU per Antminer, so one process cannot read 1,000 in
10 s on any core this size. All shards start each cycle at the same wall-clock instant; a cycle of
the fleet lasts until its slowest shard is done.
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
    p.add_argument("--shards", type=int, default=1, help="collector processes, each polling one shard")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "K/N": this process is shard K's collector
    p.add_argument("--addresses", type=Path, help=argparse.SUPPRESS)  # the fleet, one address per line
    p.add_argument("--start-at", type=float, help=argparse.SUPPRESS)  # wall-clock time of the first cycle
    args = p.parse_args(argv)
    if args.miners < 1 or args.cycles < 1 or args.shards < 1:
        p.error("--miners, --cycles and --shards must be at least 1")
    return args


def detect_allowance_s(miners: int, shards: int) -> float:
    """When shards start the first timed cycle, after the detection cycle began: generous (detection
    measured ~25 ms per miner per process), so that no shard is still detecting when the others read."""
    return 5.0 + 0.04 * miners / shards


async def _cycles(addresses: list[str], *, cycles: int, concurrency: int | None, timeout_s: float, interval_s: float,
                  sim_cpu, profiler=None, shard: str | None = None,
                  start_at: float | None = None) -> list[dict[str, object]]:
    import asyncio

    from collector.sources.polled_miners import PolledMiners
    from models import CollectorConfig, MinerState

    settings: dict[str, object] = {"site": "bench", "miners": addresses, "timeout_s": timeout_s,
                                   "interval_s": interval_s, "cycle_deadline_s": 3600}  # timed whole, never cut
    if concurrency:
        settings["concurrency"] = concurrency
    if shard:
        settings["shard"] = shard
    poller = PolledMiners(CollectorConfig.model_validate(settings))
    out = []
    ts = datetime.now(timezone.utc).replace(microsecond=0)
    for index in range(cycles + 1):
        if index == 1 and profiler is not None:
            profiler.start()
        if start_at is not None:  # shards: every process begins the cycle at the same instant
            detect = detect_allowance_s(len(addresses), int(shard.split("/")[1]) if shard else 1)
            begin = start_at + (0 if index == 0 else detect + (index - 1) * interval_s)
            await asyncio.sleep(max(0.0, begin - time.time()))
        ts += timedelta(seconds=1)
        sim0, box0, cpu0, wall0 = sim_cpu(), box_cpu_seconds(), time.process_time(), time.perf_counter()
        if index == 0:  # the detection cycle: identify every miner (the service does it in the background), then read
            await poller.refresh()
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


def _worker(args: argparse.Namespace) -> int:
    """One shard's collector: its cycles as JSON on stdout (the parent combines the shards)."""
    from bench.pipeline import loop_runner

    addresses = args.addresses.read_text().split()
    cycles = loop_runner()(_cycles(addresses, cycles=args.cycles, concurrency=args.concurrency, timeout_s=args.timeout,
                                   interval_s=args.interval, sim_cpu=lambda: 0.0, shard=args.worker,
                                   start_at=args.start_at))
    print(json.dumps(cycles, default=str))
    return 0


def _sharded(args: argparse.Namespace, addresses: list[str], workdir: Path, sim_cpu,
             console) -> list[dict[str, object]]:
    """Run --shards worker processes on one schedule; per cycle: the slowest shard's time, the sums."""
    import subprocess

    listing = workdir / "addresses"
    listing.write_text("\n".join(addresses) + "\n")
    start_at = time.time() + 5.0  # time for every worker to import and build its poller
    common = ["--miners", str(args.miners), "--cycles", str(args.cycles), "--timeout", str(args.timeout),
              "--interval", str(args.interval), "--addresses", str(listing), "--start-at", str(start_at)]
    if args.concurrency:
        common += ["--concurrency", str(args.concurrency)]
    sim0, box0 = sim_cpu(), box_cpu_seconds()
    workers = [subprocess.Popen([sys.executable, "-m", "bench.antminer", "--worker", f"{k}/{args.shards}", *common],
                                stdout=subprocess.PIPE, text=True) for k in range(1, args.shards + 1)]
    shards = []
    for worker in workers:
        stdout, _ = worker.communicate()
        if worker.returncode != 0:
            raise BenchSetupError(f"shard worker exited with code {worker.returncode}")
        shards.append(json.loads(stdout))
    sim_total, box_total = sim_cpu() - sim0, box_cpu_seconds() - box0
    out = []
    for per_shard in zip(*shards):
        miners = sum(c["miners"] for c in per_shard)
        cpu = sum(c["cpu_s"] for c in per_shard)
        seconds = max(c["seconds"] for c in per_shard)
        out.append({
            "cycle": per_shard[0]["cycle"], "detect": per_shard[0]["detect"], "miners": miners, "seconds": seconds,
            "mining": sum(c["mining"] for c in per_shard), "failed": sum(c["failed"] for c in per_shard),
            "with_hashrate": sum(c["with_hashrate"] for c in per_shard),
            "p50_ms": median([c["p50_ms"] for c in per_shard if c["p50_ms"] is not None]),
            "p99_ms": max((c["p99_ms"] for c in per_shard if c["p99_ms"] is not None), default=None),
            "cpu_s": cpu, "cpu_per_1k": cpu / miners * 1000 if miners else None,
            "sim_cpu_s": None, "box_busy_cores": None, "peak_rss_mb": max(c["peak_rss_mb"] for c in per_shard),
            "within_interval": seconds <= args.interval,
            "shard_seconds": [round(c["seconds"], 2) for c in per_shard],
            "errors": sorted({e for c in per_shard for e in c["errors"]})[:3],
        })
    console.print(f"whole run (detection and timed cycles, waits between them included): simulator "
                  f"{sim_total:.1f} CPU s, whole machine {box_total:.1f} CPU s; per shard and cycle, seconds: "
                  + "; ".join(f"cycle {c['cycle']}: {c['shard_seconds']}" for c in out))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
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
            if args.shards > 1:
                out.print(f"{args.shards} collector processes, one shard each (--shard K/{args.shards}), "
                          f"cycles started together")
                cycles = _sharded(args, sim.addresses, workdir, sim.cpu_seconds, out)
            else:
                cycles = loop_runner()(_cycles(sim.addresses, cycles=args.cycles, concurrency=args.concurrency,
                                               timeout_s=args.timeout, interval_s=args.interval,
                                               sim_cpu=sim.cpu_seconds, profiler=profiler))
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
    summary = {"miners": args.miners, "model": args.model, "shards": args.shards, "seconds_median": median([c["seconds"] for c in timed]),
               "seconds_max": slowest, "detect_seconds": cycles[0]["seconds"], "interval_s": args.interval,
               "cpu_per_1k": median([c["cpu_per_1k"] for c in timed]), "all_read": all_read, "met": met}
    out.print(report.targets_table([{
        "target": f"{args.miners:,} simulated {args.model} read through the pyasic path within one "
                  f"{args.interval:g} s interval" + (f" ({args.shards} collector processes)" if args.shards > 1 else ""),
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
