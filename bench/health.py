"""`python -m bench.health --miners 2000 --rounds 5`: what the health stage adds to a cycle's CPU.

1. starts `hashfleet simulate --fleet MODEL:N` in a process of its own (bench.procs.SimulatorFleet),
   with --faulty of them sick (a dead board, a throttled unit, a stopped fan, pool rejects, in turn), so
   the stage prices problems and writes their points as a real site's would;
2. builds the pipeline twice with the composition root (collector.pipeline.build), both writing to the
   sink `hashfleet collect` uses without InfluxDB (line protocol into the gzip'd spool): as shipped (cost
   and health stages) and without the health stage;
3. runs them in alternating rounds of --cycles cycles each (after a warm-up cycle apiece that identifies
   the miners), so both see the same machine load, and reports per cycle the process CPU (poll, stages,
   encoding and spooling, worker threads included) and the health stage's own CPU (its begin/part/finish,
   on the loop's thread); the difference of the medians is what health adds, encoding its points included.

The issue's target: at most 10 % more CPU per cycle. docs/benchmarks.md has measured numbers; the lead
runs `python -m bench.health --miners 10000` in a quiet window.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.pipeline import ECONOMICS, NETWORK
from bench.procs import BenchSetupError, SimulatorFleet

TARGET_SHARE = 0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.health", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", type=int, default=2000)
    p.add_argument("--model", default="a1566")
    p.add_argument("--base", default="127.64.0.1", help="first loopback address; one address per miner")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (with health, without)")
    p.add_argument("--cycles", type=int, default=2, help="timed cycles per round and pipeline")
    p.add_argument("--faulty", type=int, default=20, help="miners made sick (per thousand: a site's few)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every number as JSON")
    args = p.parse_args(argv)
    if args.miners < 1 or args.rounds < 1 or args.cycles < 1:
        p.error("--miners, --rounds and --cycles must be at least 1")
    return args


def _config(addresses: list[str], spool: Path):
    from models import CollectorConfig

    return CollectorConfig.model_validate({
        "site": "bench", "miners": addresses, "interval_s": 1, "cycle_deadline_s": 3600, "timeout_s": 5,
        "economics": ECONOMICS, "network": NETWORK, "spool": {"directory": str(spool)}})


class _Timed:
    """The health stage with its own CPU counted (thread time: the stage runs on the loop's thread)."""

    def __init__(self, stage) -> None:
        self.stage, self.cpu_s = stage, 0.0

    def _timed(self, step, *args) -> None:
        started = time.thread_time()
        try:
            step(*args)
        finally:
            self.cpu_s += time.thread_time() - started

    def begin(self, cycle) -> None:
        self._timed(self.stage.begin, cycle)

    def part(self, cycle, part) -> None:
        self._timed(self.stage.part, cycle, part)

    def finish(self, cycle) -> None:
        self._timed(self.stage.finish, cycle)

    def close(self) -> None:
        self.stage.close()


async def _cycles(built, n: int, timed: _Timed | None) -> list[dict[str, float]]:
    out = []
    for _ in range(n):
        stage_before = timed.cpu_s if timed is not None else 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        await built.run_cycles(cycles=1)
        out.append({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                    "health_cpu_s": (timed.cpu_s - stage_before) if timed is not None else 0.0})
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    from collector import pipeline
    from collector.service import run_event_loop
    from collector.stages.health import HealthStage

    fleet = SimulatorFleet(args.model, args.miners, args.base, workdir / "sim", faults=_faults(args)).start()
    try:
        with_health = pipeline.build(_config(fleet.addresses, workdir / "spool-a"),
                                     sinks=[pipeline.storage_sink(_config(fleet.addresses, workdir / "spool-a"))])
        timed = None
        for i, stage in enumerate(with_health.stages):
            if isinstance(stage, HealthStage):
                timed = _Timed(stage)
                with_health.stages[i] = timed
        without = pipeline.build(_config(fleet.addresses, workdir / "spool-b"),
                                 sinks=[pipeline.storage_sink(_config(fleet.addresses, workdir / "spool-b"))])
        without.stages[:] = [s for s in without.stages if not isinstance(s, HealthStage)]
        logging.getLogger("collector.service").setLevel(logging.ERROR)
        rounds: dict[str, list[dict[str, float]]] = {"with": [], "without": []}

        async def go():
            await with_health.start()
            await without.start()
            try:
                await _cycles(with_health, 1, timed)  # warm-up: identification
                await _cycles(without, 1, None)
                for _ in range(args.rounds):
                    rounds["with"] += await _cycles(with_health, args.cycles, timed)
                    rounds["without"] += await _cycles(without, args.cycles, None)
            finally:
                await with_health.stop()
                await without.stop()

        run_event_loop(go())
        with_health.close()
        without.close()
    finally:
        fleet.stop()
    cpu_with = statistics.median(r["cpu_s"] for r in rounds["with"])
    cpu_without = statistics.median(r["cpu_s"] for r in rounds["without"])
    # On a shared machine the slowest cycles say more about the neighbours than about the code: the
    # fastest cycle of each is the steadier comparison.
    min_with = min(r["cpu_s"] for r in rounds["with"])
    min_without = min(r["cpu_s"] for r in rounds["without"])
    stage = statistics.median(r["health_cpu_s"] for r in rounds["with"])
    return {"miners": args.miners, "model": args.model, "faulty": args.faulty, "rounds": rounds,
            "cpu_with_s": cpu_with, "cpu_without_s": cpu_without, "cpu_with_min_s": min_with,
            "cpu_without_min_s": min_without, "health_stage_cpu_s": stage,
            "added_share": cpu_with / cpu_without - 1, "added_share_min": min_with / min_without - 1,
            "stage_share": stage / cpu_without, "stage_us_per_miner": stage / args.miners * 1e6}


def _faults(args: argparse.Namespace) -> list[str]:
    """`--fault` arguments for `hashfleet simulate`: --faulty miners spread over the fleet, four kinds."""
    from bench.procs import _next_address  # consecutive loopback addresses, as the fleet is laid out

    kinds = ["dead_boards=1", "overheat=throttle", "fan_failing=0", "pool_rejects=8"]
    out, address = [], args.base
    step = max(1, args.miners // max(1, args.faulty))
    for i in range(args.miners):
        if i % step == 0 and len(out) < args.faulty:
            out.append(f"{address}:{kinds[len(out) % len(kinds)]}")
        address = _next_address(address)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        try:
            result = run(args, Path(tmp))
        except BenchSetupError as e:
            print(f"bench.health: {e}", file=sys.stderr)
            return 1
    per_k = 1000 / args.miners
    print(f"{args.miners} simulated {args.model} ({args.faulty} sick), {args.rounds} rounds x {args.cycles} cycles "
          "each way, process CPU per cycle, median (fastest):")
    print(f"  without health  {result['cpu_without_s']:.3f} s ({result['cpu_without_min_s']:.3f} s)  "
          f"{result['cpu_without_s'] * per_k:.3f} s / 1,000 miners")
    print(f"  with health     {result['cpu_with_s']:.3f} s ({result['cpu_with_min_s']:.3f} s)  "
          f"{result['cpu_with_s'] * per_k:.3f} s / 1,000 miners")
    print(f"  added           {result['added_share']:+.1%} ({result['added_share_min']:+.1%})  "
          f"(target at most {TARGET_SHARE:.0%})")
    print(f"  the stage alone {result['health_stage_cpu_s']:.3f} s = {result['stage_share']:.1%} of a cycle without it, "
          f"{result['stage_us_per_miner']:.1f} us per miner")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
