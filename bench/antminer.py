"""`python -m bench.antminer --miners 1000`: the collector on simulated Antminers (or Whatsminers, Braiins OS+
units), its native reader against pyasic in the same run: CPU and memory per miner per cycle.

Starts `hashfleet simulate --fleet MODEL:N --base 127.70.0.1` (each miner on its own loopback address:
pyasic's detection only knows the fixed ports 4028 and 80) and, for each reading path (`--readers`:
the native reader, then pyasic, as the config's `readers: {MAKE: native|pyasic}` chooses), runs the
collector as `hashfleet collect` runs it (collector.pipeline.build through bench.pipeline.run_collector:
poll, cost, spool as local history, or InfluxDB with `--influx`) in a process of its own, so that
each path's CPU and memory are its own. The first cycle also identifies every miner (pyasic's
detection, and the native reader's first web or gRPC reads); the next --cycles are the steady state.

Per path it reports, per cycle: seconds, miners read, CPU per miner (the whole collector process:
poll, cost, write; and the poll alone), the simulator's CPU; and memory per miner: the process's
resident memory after the last cycle less before the pipeline was built (pyasic imported already),
less what a collector reading one miner grows by over the same cycles (its pipeline, spool, threads and
what pyasic's detection loads once: measured first, in a process of its own), divided by the further
miners (with --tracemalloc, Python's live memory the same way; timings are then
meaningless). `--shards N` runs N collector processes per path (`--shard K/N` each, as `hashfleet
collect --shard` splits a site), started on one schedule; a cycle of the fleet lasts until its
slowest shard is done.

Simulated Antminers need one loopback address each (RPC on 4028, web on 80): run it as root or in
`unshare -n` (5,000 addresses work there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from bench import machine, report
from bench.procs import BenchSetupError, InfluxProcess, SimulatorFleet
from bench.stats import median

# Which `readers` key reads a simulated model's family, and how many sockets each such miner listens on.
FAMILIES = {"antminer": ("antminer", 2), "whatsminer": ("whatsminer", 1), "braiins": ("braiins", 2)}
TARGET_CPU_MS = 1.0  # issue 17: steady-state CPU per Antminer per cycle
TARGET_MEMORY_KB = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.antminer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=3, help="timed cycles after the detection cycle")
    p.add_argument("--model", default="s19jpro", help="a simulated model: s19jpro, s21, m50s, m30splus, bos-s19jpro")
    p.add_argument("--readers", default="native,pyasic", help="reading paths to run, in order: native, pyasic")
    p.add_argument("--pyasic-miners", type=int, default=None,
                   help="read only the first N miners on the pyasic path (pyasic costs ~10x the CPU)")
    p.add_argument("--base", default="127.70.0.1", help="first loopback address (one per miner)")
    p.add_argument("--concurrency", type=int, default=None, help="collector concurrency (default: CollectorConfig's)")
    p.add_argument("--timeout", type=float, default=5.0, help="collector's per-miner timeout, s")
    p.add_argument("--interval", type=float, default=10.0, help="the collect interval each cycle must fit in, s")
    p.add_argument("--shards", type=int, default=1, help="collector processes per path, each polling one shard")
    p.add_argument("--influx", action="store_true", help="write to a real InfluxDB (default: the spool as local history)")
    p.add_argument("--tracemalloc", action="store_true", help="Python memory per miner too (slows everything)")
    p.add_argument("--profile", type=Path, metavar="DIR", help="py-spy each path's timed cycles: DIR/<path>.raw")
    p.add_argument("--json", type=Path, metavar="FILE")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # "K/N": this process is shard K's collector
    p.add_argument("--path", help=argparse.SUPPRESS)  # the worker's reading path
    p.add_argument("--addresses", type=Path, help=argparse.SUPPRESS)  # the fleet, one address per line
    p.add_argument("--start-at", type=float, help=argparse.SUPPRESS)  # wall-clock time of the first cycle
    p.add_argument("--influx-info", help=argparse.SUPPRESS)  # JSON of bench.procs.InfluxInfo
    p.add_argument("--family", help=argparse.SUPPRESS)
    p.add_argument("--sim-pids", default="", help=argparse.SUPPRESS)  # the simulator processes, for their CPU
    args = p.parse_args(argv)
    if args.miners < 1 or args.cycles < 1 or args.shards < 1:
        p.error("--miners, --cycles and --shards must be at least 1")
    paths = [r.strip() for r in args.readers.split(",") if r.strip()]
    if not paths or any(r not in ("native", "pyasic") for r in paths):
        p.error("--readers: a comma-separated list of native, pyasic")
    args.paths = paths
    return args


def detect_allowance_s(miners: int, shards: int, path: str) -> float:
    """When shards start the first timed cycle, after the detection cycle began: generous (pyasic's
    detection measured ~25 ms per miner per process), so that no shard is still detecting when the
    others read."""
    return 5.0 + 0.04 * miners / shards


def _rss_kb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


# -- one collector process (a shard of one path) ---------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    """One shard's collector on one path: its cycles and memory as JSON on stdout."""
    import asyncio  # noqa: F401 - the loop runner below needs it imported
    import logging

    import pyasic  # noqa: F401 - imported before the baseline: the library is not per-miner memory

    from bench.pipeline import loop_runner, run_collector
    from bench.procs import InfluxInfo, cpu_seconds
    from bench.profile import PySpy

    addresses = args.addresses.read_text().split()
    sim_pids = [int(pid) for pid in args.sim_pids.split(",") if pid]
    k, n = (int(x) for x in args.worker.split("/"))
    influx = InfluxInfo(**json.loads(args.influx_info)) if args.influx_info else None
    settings: dict[str, object] = {"readers": {args.family: args.path}}
    if n > 1:
        settings["shard"] = args.worker
    profiler = PySpy(args.profile / f"{args.path}.raw") if args.profile and k == 1 else None
    detect = detect_allowance_s(len(addresses), n, args.path)
    rss: list[float] = []

    def on_cycle(index: int, last) -> None:
        # Called as each cycle starts (and once after the last): shards begin each cycle together.
        rss.append(_rss_kb())
        if index > args.cycles:
            return
        if index == 1 and profiler is not None:
            profiler.start()
        begin = args.start_at + (0.0 if index == 0 else detect + (index - 1) * args.interval)
        time.sleep(max(0.0, begin - time.time()))  # between cycles: nothing else is due on the loop

    logging.getLogger().setLevel(logging.ERROR)
    import tracemalloc

    if args.tracemalloc:
        tracemalloc.start(1)
    rss_before, py_before = _rss_kb(), tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    spool = Path(tempfile.mkdtemp(prefix="hashfleet-bench-spool-"))
    try:
        cycles, loop_name = loop_runner()(run_collector(
            addresses, influx, spool, cycles=args.cycles, warmup=1, timeout_s=args.timeout,
            concurrency=args.concurrency or 512, on_cycle=on_cycle, settings=settings,
            others={"simulator": lambda: sum(cpu_seconds(pid) for pid in sim_pids)}))
    finally:
        if profiler is not None:
            profiler.stop()
        shutil.rmtree(spool, ignore_errors=True)
    py_after = tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
    polled = max((c.miners for c in cycles), default=0)
    out = {"loop": loop_name, "miners": polled, "rss_before_kb": rss_before, "rss_kb": rss,
           "rss_after_kb": rss[-1] if rss else _rss_kb(),
           "py_live_kb": (py_after - py_before) / 1024 if args.tracemalloc else None,
           "cycles": [{**c.as_dict(), "miners": c.miners, "mining": c.mining} for c in cycles]}
    print(json.dumps(out, default=str))
    return 0


# -- the parent: simulator, one path after the other, the tables -----------------------------------------------


def _run_path(args: argparse.Namespace, path: str, family: str, addresses: list[str], workdir: Path,
              influx_info: str | None, sim: SimulatorFleet, fixed_kb: float = 0.0,
              shards: int | None = None, interval_s: float | None = None, baseline: bool = False) -> dict[str, object]:
    shards_n = shards or args.shards
    listing = workdir / f"addresses-{path}"
    listing.write_text("\n".join(addresses) + "\n")
    start_at = time.time() + 5.0  # time for every worker to import and build its pipeline
    common = ["--cycles", str(args.cycles), "--timeout", str(args.timeout), "--interval", str(interval_s or args.interval),
              "--addresses", str(listing), "--start-at", str(start_at), "--path", path, "--family", family,
              "--sim-pids", ",".join(map(str, sim.pids))]
    if args.concurrency:
        common += ["--concurrency", str(args.concurrency)]
    if influx_info:
        common += ["--influx-info", influx_info]
    if args.tracemalloc:
        common += ["--tracemalloc"]
    if args.profile:
        common += ["--profile", str(args.profile)]
    sim0 = sim.cpu_seconds()
    workers = [subprocess.Popen([sys.executable, "-m", "bench.antminer", "--worker", f"{k}/{shards_n}", *common],
                                stdout=subprocess.PIPE, text=True) for k in range(1, shards_n + 1)]
    shards = []
    for worker in workers:
        stdout, _ = worker.communicate()
        if worker.returncode != 0:
            raise BenchSetupError(f"{path} collector (shard worker) exited with code {worker.returncode}")
        shards.append(json.loads(stdout.strip().splitlines()[-1]))
    sim_total = sim.cpu_seconds() - sim0
    if baseline:
        return {"rss_growth_kb": shards[0]["rss_after_kb"] - shards[0]["rss_before_kb"]}
    cycles = []
    for per_shard in zip(*(s["cycles"] for s in shards)):
        miners = sum(c["miners"] for c in per_shard)
        cpu = sum(c["cpu_s"] for c in per_shard)
        cpu_poll = sum(c["cpu_poll_s"] for c in per_shard)
        seconds = max(c["total_s"] for c in per_shard)
        cycles.append({
            "cycle": per_shard[0]["index"] + 1, "detect": per_shard[0]["warmup"], "miners": miners,
            "seconds": seconds, "poll_s": max(c["poll_s"] for c in per_shard),
            "mining": sum(c["mining"] for c in per_shard), "failed": sum(c["failed"] for c in per_shard),
            "cpu_s": cpu, "cpu_ms_per_miner": cpu / miners * 1000 if miners else None,
            "cpu_poll_ms_per_miner": cpu_poll / miners * 1000 if miners else None,
            "p50_ms": median([c["p50_ms"] for c in per_shard if c["p50_ms"] is not None]),
            "p99_ms": max((c["p99_ms"] for c in per_shard if c["p99_ms"] is not None), default=None),
            # every shard reads the same simulator processes: one shard's figure is the whole cycle's (roughly)
            "sim_cpu_s": per_shard[0]["others_cpu_s"].get("simulator"),
            "within_interval": seconds <= args.interval,
            "shard_seconds": [round(c["total_s"], 2) for c in per_shard],
        })
    polled = sum(s["miners"] for s in shards)
    # Each shard process less a one-miner collector's growth: what the other miners cost.
    rss_growth = sum(s["rss_after_kb"] - s["rss_before_kb"] - fixed_kb for s in shards)
    py_live = [s["py_live_kb"] for s in shards if s["py_live_kb"] is not None]
    timed = [c for c in cycles if not c["detect"]]
    return {
        "path": path, "miners": polled, "cycles": cycles, "sim_cpu_s_whole_run": sim_total,
        "cpu_ms_per_miner": median([c["cpu_ms_per_miner"] for c in timed]),
        "cpu_poll_ms_per_miner": median([c["cpu_poll_ms_per_miner"] for c in timed]),
        "seconds_median": median([c["seconds"] for c in timed]), "seconds_max": max(c["seconds"] for c in timed),
        "detect_seconds": cycles[0]["seconds"] if cycles else None,
        "rss_kb_per_miner": rss_growth / (polled - len(shards)) if polled > len(shards) else None,
        "py_live_kb_per_miner": sum(py_live) / polled if py_live and polled else None,
        "all_read": all(c["failed"] == 0 and c["mining"] == c["miners"] for c in timed),
        "loop": shards[0]["loop"] if shards else None,
    }


def _cycles_table(result: dict[str, object]) -> Table:
    table = Table(title=f"{result['path']} path, per cycle", title_justify="left")
    for name in ("cycle", "seconds", "within interval", "miners", "mining", "failed", "CPU ms/miner",
                 "poll CPU ms/miner", "p50 ms", "p99 ms", "sim CPU s", "shard seconds"):
        table.add_column(name, justify="left" if name == "cycle" else "right", no_wrap=True)
    for c in result["cycles"]:
        table.add_row(f"{c['cycle']}" + (" (detect)" if c["detect"] else ""), report.num(c["seconds"]),
                      "yes" if c["within_interval"] else "[red]no[/red]", report.num(c["miners"], 0),
                      report.num(c["mining"], 0), report.num(c["failed"], 0), report.num(c["cpu_ms_per_miner"], 3),
                      report.num(c["cpu_poll_ms_per_miner"], 3), report.num(c["p50_ms"], 1),
                      report.num(c["p99_ms"], 1), report.num(c["sim_cpu_s"]),
                      " ".join(f"{s:.2f}" for s in c["shard_seconds"]),
                      style="dim" if c["detect"] else None)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
    out = report.console()
    info = machine.describe()
    report.machine_header(out, info, f"bench.antminer: {args.miners:,} simulated {args.model}, paths "
                                     f"{' then '.join(args.paths)}, 1 detection + {args.cycles} timed cycles each, "
                                     f"interval {args.interval:g} s, {args.shards} collector process(es) per path")
    from simulators.specs import resolve_model  # the bench may know the simulators; the collector never does

    family, sockets = FAMILIES.get(resolve_model(args.model).family, (None, 2))
    if family is None:
        out.print(f"[red]--model {args.model}: not a make with a native reader (antminer, whatsminer, braiins)[/red]")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="hashfleet-bench-"))
    results = []
    try:
        influx_process = InfluxProcess(workdir) if args.influx else None
        influx = influx_process.start() if influx_process is not None else None
        try:
            with SimulatorFleet(args.model, args.miners, args.base, workdir, sockets_per_miner=sockets) as sim:
                out.print(f"fleet: {len(sim.addresses):,} miners {sim.addresses[0]} .. {sim.addresses[-1]} ready in "
                          f"{sim.start_seconds:.1f} s")
                influx_info = json.dumps(dataclasses.asdict(influx)) if influx is not None else None
                # What a collector process grows by to read one miner (pipeline, spool, threads, what pyasic's
                # detection loads once): left out of the memory per miner, so that the figure is each further
                # miner's own at any fleet size.
                fixed_kb = _run_path(args, "native", family, sim.addresses[:1], workdir, influx_info, sim, shards=1,
                                     interval_s=1.0, baseline=True)["rss_growth_kb"]
                out.print(f"a collector reading one miner grows by {fixed_kb / 1024:.1f} MB over the same cycles "
                          "(left out of the memory per miner)")
                for path in args.paths:
                    addresses = sim.addresses
                    if path == "pyasic" and args.pyasic_miners:
                        addresses = addresses[:args.pyasic_miners]
                    results.append(_run_path(args, path, family, addresses, workdir, influx_info, sim, fixed_kb))
                    out.print(_cycles_table(results[-1]))
        finally:
            if influx_process is not None:
                influx_process.stop()
    except BenchSetupError as e:
        out.print(f"[red]setup failed:[/red] {e}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    compare = Table(title="same fleet, same run: steady-state cycles (medians)", title_justify="left")
    for name in ("path", "miners", "cycle s", "CPU ms/miner", "poll CPU ms/miner", "RSS KB/miner",
                 "Python KB/miner", "every miner read", "CPU ÷ native"):
        compare.add_column(name, justify="left" if name == "path" else "right", no_wrap=True)
    native = next((r for r in results if r["path"] == "native"), None)
    for r in results:
        ratio = (r["cpu_ms_per_miner"] / native["cpu_ms_per_miner"]
                 if native and native["cpu_ms_per_miner"] else None)
        compare.add_row(r["path"], report.num(r["miners"], 0), report.num(r["seconds_median"]),
                        report.num(r["cpu_ms_per_miner"], 3), report.num(r["cpu_poll_ms_per_miner"], 3),
                        report.num(r["rss_kb_per_miner"], 1), report.num(r["py_live_kb_per_miner"], 1),
                        "yes" if r["all_read"] else "[red]no[/red]", report.num(ratio, 1) + ("x" if ratio else ""))
    out.print(compare)
    targets = []
    if native is not None:
        cpu, rss = native["cpu_ms_per_miner"], native["rss_kb_per_miner"]
        targets += [
            {"target": f"steady-state CPU per miner per cycle <= {TARGET_CPU_MS:g} ms (native, whole collector)",
             "measured": f"{cpu:.3f} ms" if cpu is not None else "-", "met": cpu is not None and cpu <= TARGET_CPU_MS},
            {"target": f"memory per miner <= {TARGET_MEMORY_KB:g} KB (native; resident growth over the run less a "
                       "one-miner collector's, per further miner)",
             "measured": f"{rss:.1f} KB" + (f", Python live {native['py_live_kb_per_miner']:.1f} KB"
                                            if native["py_live_kb_per_miner"] is not None else ""),
             "met": rss is not None and rss <= TARGET_MEMORY_KB},
            {"target": f"{native['miners']:,} miners read within one {args.interval:g} s interval"
                       + (f" ({args.shards} processes)" if args.shards > 1 else " (one process)"),
             "measured": f"{native['seconds_median']:.2f} s median, {native['seconds_max']:.2f} s slowest; every "
                         f"miner read: {'yes' if native['all_read'] else 'no'}",
             "met": native["seconds_max"] <= args.interval and native["all_read"]},
        ]
    if targets:
        out.print(report.targets_table(targets))
    if args.profile:
        from bench.profile import PySpy, print_top

        for r in results:
            r["profile"] = print_top(out, PySpy(args.profile / f"{r['path']}.raw"))
    out.print(f"machine: {machine.one_line(info)}; {os.cpu_count()} cores shared with the simulator")
    first = results[0] if results else {}
    # The summary keeps the names earlier runs (and tests/bench) use, for the first path run.
    summary = {"miners": args.miners, "model": args.model, "shards": args.shards,
               "seconds_median": first.get("seconds_median"), "seconds_max": first.get("seconds_max"),
               "detect_seconds": first.get("detect_seconds"), "interval_s": args.interval,
               "cpu_per_1k": first.get("cpu_ms_per_miner"),  # CPU s per 1,000 miners = ms per miner
               "all_read": all(r["all_read"] for r in results),
               "met": all(t["met"] for t in targets) if targets else None}
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) if isinstance(v, Path) else v
                                                                   for k, v in vars(args).items()},
                                         "cycles": first.get("cycles", []), "paths": results,
                                         "summary": summary}, indent=2, default=str) + "\n")
        out.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
