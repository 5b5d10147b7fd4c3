"""`python -m bench.poll --miners 10000 --cycles 5`: the collector against N simulated Avalons.

1. starts `hashfleet simulate --fleet MODEL:N` (one loopback address per miner, port 4028) and a
   real InfluxDB 1.6.7 + v2 shim, each in a process of its own;
2. in this process runs the real collect loop (collector.service.run: PolledMiners -> CostStage ->
   InfluxSink over a spool) for one detection cycle plus --cycles timed cycles, each ending when
   InfluxDB has acknowledged every point (bench/pipeline.py);
3. against the same fleet: plain pyasic (get_miner, then get_data, semaphore 50) over a sample, and
   the bare asyncio client (one summary+estats+pools per miner, json.loads only) over the fleet;
4. prints per-cycle and summary tables, the ratios and the issue's targets; --json writes it all.

Numbers: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import baselines, machine, report
from bench.procs import BenchSetupError, InfluxProcess, SimulatorFleet
from bench.stats import median, peak_rss_mb, percentile, ratio

TARGET_CYCLE_S = 6.0  # 10,000 Avalons polled, costed and written per cycle
TARGET_MINERS = 10_000
TARGET_VS_PYASIC = 6.0
TARGET_VS_BARE = 0.70
TARGET_RSS_MB = 200.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.poll", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", type=int, default=10_000, help="simulated Avalons")
    p.add_argument("--cycles", type=int, default=5, help="timed cycles (after one detection cycle)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first cycles (the first identifies every miner)")
    p.add_argument("--model", default="a1566", help="simulated model (hashfleet simulate --fleet MODEL:N)")
    p.add_argument("--base", default="127.60.0.1", help="first loopback address; one address per miner, port 4028")
    p.add_argument("--concurrency", type=int, default=None,
                   help="collector concurrency (default: CollectorConfig's); also the bare client's")
    p.add_argument("--timeout", type=float, default=5.0, help="collector's per-miner timeout, s")
    p.add_argument("--skip-pyasic", action="store_true", help="skip the plain-pyasic comparison")
    p.add_argument("--skip-bare", action="store_true", help="skip the bare-client ceiling")
    p.add_argument("--pyasic-sample", type=int, default=1000, help="miners pyasic detects and reads (detection is slow)")
    p.add_argument("--pyasic-concurrency", type=int, default=50)
    p.add_argument("--bare-rounds", type=int, default=3, help="bare-client rounds over the whole fleet (median kept)")
    p.add_argument("--bare-command", default=baselines.BARE_COMMAND)
    p.add_argument("--no-influx", action="store_true",
                   help="diagnostic: no InfluxDB; the spool keeps the batches (the collector without a database)")
    p.add_argument("--influx-cache-snapshot", type=int, metavar="BYTES", default=None,
                   help="influxd's cache snapshot size (default: docker-compose.yml's, as a site runs it; "
                        "0: influxd's own 25 MiB)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy the timed collector cycles: DIR/collector.raw and a top-functions table")
    p.add_argument("--tracemalloc", action="store_true",
                   help="diagnostic: Python memory per stage and the biggest allocation sites (timings then mean nothing)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every number as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (spool, logs, InfluxDB data)")
    args = p.parse_args(argv)
    if args.miners < 1 or args.cycles < 1 or args.warmup < 0:
        p.error("--miners and --cycles must be at least 1, --warmup at least 0")
    return args


def _default_concurrency() -> int:
    from models import CollectorConfig

    return CollectorConfig.model_fields["concurrency"].default


def collector_summary(cycles: list, rss_mb: float, rss_before_mb: float, verified: int | None,
                      expected: int) -> dict[str, object]:
    timed = [c for c in cycles if not c.warmup] or cycles
    latencies = [x for c in timed for x in c.latencies_s]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "timed_cycles": len(timed),
        "miners": timed[0].miners if timed else 0,
        "failed_max": max((c.failed for c in timed), default=0),
        "poll_s": median([c.poll_s for c in timed]),
        "cost_s": median([c.cost_s for c in timed]),
        "append_s": median([c.append_s for c in timed]),
        "deliver_s": median([c.deliver_s for c in timed]),
        "write_s": median([c.write_s for c in timed]),
        "total_s": median([c.total_s for c in timed]),
        "total_s_max": max((c.total_s for c in timed), default=None),
        "miners_per_s": median([c.miners_per_s for c in timed]),
        "miners_per_s_total": median([c.miners_per_s_total for c in timed]),
        "p50_ms": p50 * 1000 if p50 is not None else None,
        "p99_ms": p99 * 1000 if p99 is not None else None,
        "points": median([c.points for c in timed]),
        "points_per_s": median([c.points_per_s for c in timed]),
        "cpu_per_1k": median([c.cpu_per_1k for c in timed]),
        "cpu_poll_per_1k": median([c.cpu_poll_s / c.miners * 1000 for c in timed if c.miners]),
        "cpu_cost_per_1k": median([c.cpu_cost_s / c.miners * 1000 for c in timed if c.miners]),
        "cpu_write_per_1k": median([c.cpu_write_s / c.miners * 1000 for c in timed if c.miners]),
        "others_cpu_s": {name: median([c.others_cpu_s.get(name) for c in timed])
                         for name in (timed[0].others_cpu_s if timed else {})},
        "box_busy_cores": median([c.box_busy_cores for c in timed]),
        "gc_s": median([c.gc_s for c in timed]),
        "gc_collections": median([c.gc_collections for c in timed]),
        # every process of the benchmark (collector, simulator, influxd, shim): what a cycle costs the box
        "cpu_all_s": median([c.cpu_s + sum(c.others_cpu_s.values()) for c in timed]),
        "all_delivered": all(c.delivered for c in cycles),
        "peak_rss_mb": rss_mb,
        "rss_before_collector_mb": rss_before_mb,
        "influx_miner_points": verified,
        "influx_miner_points_expected": expected,
    }


def summary_rows(s: dict[str, object]) -> list[tuple[str, str]]:
    n = report.num
    verified = s["influx_miner_points"]
    check = ("–" if verified is None else
             f"{n(verified, 0)} `miner` points in InfluxDB, expected {n(s['influx_miner_points_expected'], 0)}"
             + (" ✓" if verified == s["influx_miner_points_expected"] else " ✗"))
    return [
        ("timed cycles", f"{s['timed_cycles']} (medians below; the detection cycle is left out); event loop "
                         f"{s.get('event_loop', '?')} (the collector's own runner; the comparisons below use it too)"),
        ("cycle: poll + cost + write", f"{n(s['poll_s'])} + {n(s['cost_s'])} + {n(s['write_s'])} = {n(s['total_s'])} s "
                                       f"(slowest {n(s['total_s_max'])} s)"),
        ("write: spool append + delivery", f"{n(s['append_s'])} + {n(s['deliver_s'])} s"),
        ("miners/s", f"{n(s['miners_per_s'], 0)} polling; {n(s['miners_per_s_total'], 0)} end to end"),
        ("per-miner latency", f"p50 {n(s['p50_ms'], 1)} ms, p99 {n(s['p99_ms'], 1)} ms"),
        ("points", f"{n(s['points'], 0)} per cycle, {n(s['points_per_s'], 0)} points/s written"),
        ("CPU s per 1,000 miners", f"{n(s['cpu_per_1k'], 3)} (poll {n(s['cpu_poll_per_1k'], 3)}, cost "
                                   f"{n(s['cpu_cost_per_1k'], 3)}, write {n(s['cpu_write_per_1k'], 3)})"),
        ("garbage collection", f"{n(s['gc_s'], 3)} s per cycle in {n(s['gc_collections'], 0)} collections "
                               f"(generation-0 threshold {gc.get_threshold()[0]:,})"),
        ("other processes' CPU per cycle", ", ".join(f"{k} {n(v)} s" for k, v in s["others_cpu_s"].items())
         + f" (not counted above); whole machine busy {n(s['box_busy_cores'])} of {os.cpu_count()} cores"),
        ("CPU budget per cycle", f"{n(s['cpu_all_s'])} CPU s in all (collector + the rest): no cycle can be shorter "
                                 f"than {n(s['cpu_all_s'] / (os.cpu_count() or 1))} s on {os.cpu_count()} cores"
                                 if s["cpu_all_s"] else "–"),
        ("peak RSS", f"{n(s['peak_rss_mb'], 1)} MB (this process, after the collector cycles; "
                     f"{n(s['rss_before_collector_mb'], 1)} MB before; the simulator's is not counted)"),
        ("delivered", "nothing: --no-influx, the batches stay in the spool" if s.get("sink") == "spool" else
         ("every cycle" if s["all_delivered"] else "NOT every cycle: see the log") + f"; {check}"),
    ]


def evaluate_targets(s: dict[str, object], pyasic_ratio: float | None, bare_ratio: float | None) -> list[dict]:
    n = report.num
    at_target = s["miners"] == TARGET_MINERS
    note = None if at_target else f"the target is set at {TARGET_MINERS:,} miners; this run has {s['miners']:,}"
    written = s.get("sink") != "spool"
    total = s["total_s"]
    return [
        {"target": f"{TARGET_MINERS:,} Avalons polled, costed, written per cycle <= {TARGET_CYCLE_S:g} s",
         "measured": f"{n(total)} s median, {n(s['total_s_max'])} s slowest at {s['miners']:,}",
         "met": (s["total_s_max"] <= TARGET_CYCLE_S) if at_target and written and total is not None else None,
         "note": note if written else "--no-influx: nothing was written to InfluxDB"},
        {"target": f">= {TARGET_VS_PYASIC:g}x plain pyasic's miners/s",
         "measured": f"{n(pyasic_ratio)}x" if pyasic_ratio else "not measured",
         "met": (pyasic_ratio >= TARGET_VS_PYASIC) if pyasic_ratio else None},
        {"target": f">= {TARGET_VS_BARE:.0%} of the bare-client ceiling",
         "measured": f"{bare_ratio:.0%}" if bare_ratio else "not measured",
         "met": (bare_ratio >= TARGET_VS_BARE) if bare_ratio else None},
        {"target": f"peak RSS <= {TARGET_RSS_MB:g} MB at {TARGET_MINERS:,} miners",
         "measured": f"{n(s['peak_rss_mb'], 1)} MB at {s['miners']:,}",
         "met": (s["peak_rss_mb"] <= TARGET_RSS_MB) if at_target else None, "note": note},
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    out = report.console()
    info = machine.describe()
    concurrency = args.concurrency or _default_concurrency()
    report.machine_header(out, info, f"bench.poll: {args.miners:,} simulated {args.model} miners, "
                                     f"{args.warmup} detection + {args.cycles} timed cycles, concurrency {concurrency}")
    workdir = Path(tempfile.mkdtemp(prefix="hashfleet-bench-"))
    results: dict[str, object] = {"machine": info, "args": {k: str(v) if isinstance(v, Path) else v
                                                            for k, v in vars(args).items()}}
    try:
        return _run(args, out, info, concurrency, workdir, results)
    except BenchSetupError as e:
        out.print(f"[red]setup failed:[/red] {e}")
        return 1
    finally:
        if args.keep:
            out.print(f"kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


def _run(args, out, info, concurrency: int, workdir: Path, results: dict[str, object]) -> int:
    from bench.pipeline import loop_runner, run_collector

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(SimulatorFleet(args.model, args.miners, args.base, workdir))
        influx_proc = None if args.no_influx else stack.enter_context(
            InfluxProcess(workdir, cache_snapshot_bytes=args.influx_cache_snapshot))
        influx_info = influx_proc.info if influx_proc else None
        where = (f"InfluxDB {influx_info.url} (influxd pid {influx_info.influxd_pid}, "
                 f"{_snapshot_setting(influx_info.cache_snapshot_bytes, args.influx_cache_snapshot is not None)})" if influx_info else
                 "no InfluxDB (--no-influx: the spool keeps the batches, as `hashfleet collect` does without one)")
        out.print(f"fleet: {len(sim.addresses):,} miners {sim.addresses[0]} .. {sim.addresses[-1]} ready in "
                  f"{sim.start_seconds:.1f} s (simulator pid(s) {', '.join(map(str, sim.pids))}); {where}")
        results["influx_cache_snapshot_bytes"] = influx_info.cache_snapshot_bytes if influx_info else None
        results["fleet"] = {"model": args.model, "miners": len(sim.addresses), "first": sim.addresses[0],
                            "last": sim.addresses[-1], "start_s": sim.start_seconds,
                            "simulator_processes": len(sim.pids)}
        profiler = None
        if args.profile:
            from bench.profile import PySpy, print_top

            profiler = PySpy(args.profile / "collector.raw")

        def on_cycle(index: int, _previous) -> None:
            if profiler is None:
                return
            if index == args.warmup:
                profiler.start()
            elif index == args.warmup + args.cycles:
                profiler.stop()

        rss_before = peak_rss_mb()
        run = loop_runner()
        cycles, loop_name = run(run_collector(
            sim.addresses, influx_info, workdir / "spool", cycles=args.cycles, warmup=args.warmup,
            concurrency=concurrency, timeout_s=args.timeout,
            others={"simulator": sim.cpu_seconds, **({"influxd": influx_proc.influxd_cpu_seconds,
                                                       "shim": influx_proc.shim_cpu_seconds} if influx_proc else {})},
            on_cycle=on_cycle, trace_memory=args.tracemalloc))
        rss = peak_rss_mb()
        verified = None
        if influx_proc is not None:
            try:
                verified = influx_proc.count('SELECT count("up") FROM "miner"')
            except OSError as e:
                out.print(f"[yellow]could not count the points in InfluxDB: {e}[/yellow]")
        summary = collector_summary(cycles, rss, rss_before, verified, len(sim.addresses) * len(cycles))
        summary["event_loop"] = loop_name
        summary["sink"] = "spool" if influx_proc is None else "influx"
        results["collector"] = {"cycles": [c.as_dict() for c in cycles], "summary": summary}
        out.print(report.cycles_table(cycles, "InfluxDB" if influx_proc else "spool (--no-influx)"))
        out.print(report.key_value_table("collector summary", summary_rows(summary)))
        if profiler is not None:
            results["profile"] = print_top(out, profiler)
        if args.tracemalloc:
            out.print("[yellow]--tracemalloc: timings and CPU above are inflated by tracing; the megabytes below "
                      "are Python allocations (RSS also holds the interpreter, libraries and freed-but-kept pages)[/yellow]")
            for table in report.memory_tables(cycles[-1]):
                out.print(table)

        sim_cpu = sim.cpu_seconds
        rows = [{"path": "hashfleet collector (poll stage)", "miners": summary["miners"], "concurrency": concurrency,
                 "seconds": summary["poll_s"], "miners_per_s": summary["miners_per_s"], "p50_ms": summary["p50_ms"],
                 "p99_ms": summary["p99_ms"], "cpu_per_1k": summary["cpu_poll_per_1k"],
                 "sim_cpu_s": median([c.others_cpu_s.get("simulator") for c in cycles if not c.warmup]),
                 "box_busy_cores": None, "ratio": "1.00"}]
        pyasic_ratio = bare_ratio = None
        if influx_proc is not None and (not args.skip_pyasic or not args.skip_bare):
            waited = settle(influx_proc.influxd_cpu_seconds)
            results["influxd_settle_s"] = waited
        # The poll stage above also encodes and spools its samples as they arrive; the rounds below only
        # poll. So the ratios are taken from the collector's PolledMiners alone, polled like them (median of 3).
        reference = summary["miners_per_s"]
        if not args.skip_pyasic or not args.skip_bare:
            polls = [run(baselines.poller_round(sim.addresses, concurrency=concurrency, timeout_s=args.timeout,
                                                sim_cpu=sim_cpu)) for _ in range(3)]
            results["poll_only"] = [r.as_dict() for r in polls]
            poll_only = sorted(polls, key=lambda r: r.miners_per_s or 0)[1]
            reference = poll_only.miners_per_s
            rows.append(_row("hashfleet PolledMiners alone (no cost, no sinks; median of 3)", poll_only, 1.0))
            stage_ratio = ratio(reference, summary["miners_per_s"])
            rows[0]["ratio"] = f"{stage_ratio:.2f}" if stage_ratio else "–"
        if not args.skip_pyasic:
            addresses = baselines.sample(sim.addresses, args.pyasic_sample)
            out.print(f"plain pyasic: detecting {len(addresses):,} miners (semaphore {args.pyasic_concurrency}) ...")
            got = run(baselines.pyasic_round(addresses, concurrency=args.pyasic_concurrency, sim_cpu=sim_cpu))
            results["pyasic"] = got.as_dict()
            if got.error:
                out.print(f"[red]pyasic: {got.error}[/red]")
            else:
                out.print(f"  detected {got.detected:,} of {len(addresses):,} in {got.detect_s:.1f} s; get_data: "
                          f"{got.ok:,} answered in {got.seconds:.2f} s")
            pyasic_ratio = ratio(reference, got.miners_per_s)
            rows.append(_row(f"plain pyasic get_data (sample of {got.miners:,})", got, pyasic_ratio))
        if not args.skip_bare:
            rounds = []
            for i in range(args.bare_rounds):
                got = run(baselines.bare_round(sim.addresses, concurrency=concurrency,
                                                       command=args.bare_command, sim_cpu=sim_cpu))
                rounds.append(got)
                if got.error or got.ok < got.miners:
                    out.print(f"[yellow]bare round {i + 1}: {got.ok:,} of {got.miners:,} answered"
                              f"{'; ' + got.error if got.error else ''}[/yellow]")
            results["bare"] = [r.as_dict() for r in rounds]
            best = sorted(rounds, key=lambda r: r.miners_per_s or 0)[len(rounds) // 2]  # the median round
            bare_ratio = ratio(reference, best.miners_per_s)
            rows.append(_row(f"bare client, {args.bare_command} (median of {len(rounds)})", best, bare_ratio))
        if len(rows) > 1:
            out.print(report.comparison_table(rows))
            e2e_bare = ratio(summary["miners_per_s_total"], best.miners_per_s) if not args.skip_bare else None
            e2e_pyasic = ratio(summary["miners_per_s_total"], results["pyasic"]["miners_per_s"]) \
                if not args.skip_pyasic and results["pyasic"]["miners_per_s"] else None
            out.print(f"ratios (collector's PolledMiners alone ÷ other): vs pyasic {report.num(pyasic_ratio)}x, "
                      f"vs bare {report.num(bare_ratio)}x; end to end (poll + cost + write): vs pyasic "
                      f"{report.num(e2e_pyasic)}x, vs bare {report.num(e2e_bare)}x")
            results["ratios"] = {"vs_pyasic": pyasic_ratio, "vs_bare": bare_ratio,
                                 "vs_pyasic_end_to_end": e2e_pyasic, "vs_bare_end_to_end": e2e_bare}
        targets = evaluate_targets(summary, pyasic_ratio, bare_ratio)
        results["targets"] = targets
        out.print(report.targets_table(targets))
        results["peak_rss_mb_final"] = peak_rss_mb()
        results["elapsed_s"] = time.monotonic() - started
        out.print(f"done in {results['elapsed_s']:.0f} s; machine: {machine.one_line(info)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        out.print(f"wrote {args.json}")
    return 0


def settle(read_cpu, *, quiet_cores: float = 0.05, max_s: float = 30.0) -> float:
    """Wait until a process (influxd compacting what the collector wrote) is nearly idle, so its
    background work does not slow the next measurement; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        before = read_cpu()
        time.sleep(1.0)
        if read_cpu() - before <= quiet_cores:
            break
    return time.monotonic() - started


def _row(path: str, got: baselines.RoundStats, collector_ratio: float | None) -> dict[str, object]:
    return {"path": path, "miners": got.miners, "concurrency": got.concurrency, "seconds": got.seconds,
            "miners_per_s": got.miners_per_s, "p50_ms": got.p50_ms, "p99_ms": got.p99_ms,
            "cpu_per_1k": got.cpu_per_1k, "sim_cpu_s": got.sim_cpu_s, "box_busy_cores": got.box_busy_cores,
            "ratio": f"{collector_ratio:.2f}" if collector_ratio else "–"}


def _snapshot_setting(size: int | None, chosen: bool) -> str:
    if size is None:
        return "cache snapshot at influxd's default 25 MiB"
    return f"cache snapshot at {size / 2**20:g} MiB" + ("" if chosen else " as docker-compose.yml sets it")


if __name__ == "__main__":
    sys.exit(main())
