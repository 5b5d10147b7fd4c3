"""What curtailment planning adds to a cycle: `python -m bench.curtailment --miners 10000 --cycles 8`.

`collector.pipeline.build` assembles the stages for a config with `curtailment:` (the cost stage, then
the advice); this drives them through the Stage protocol in the order the service does
(collector/service.py: the network source announces, each stage `begin`s, sees the fleet in parts of
PART_MINERS, then `finish`es), with a synthetic fleet of ready samples (no miners polled: the stages are
all there is to time), and times each stage's own calls: CPU seconds of the loop's thread (robust to a
busy shared machine) and wall seconds. The curtailment stage's time is what planning adds.

The price is a live tariff's, set each cycle where the MQTT ingest would set it (the stages' LiveInputs).
Every miner is past its warm-up, so each steady reading teaches the efficiency book, as on a site that
has run a while. Scenarios: the price steady; a spike every miner loses at, after three cycles (every
miner changes in one cycle), then the spike's price moving every cycle (every sleeping miner's advice
is worded anew); the price moving a little every cycle with no one changing (a live feed's tick: every
miner's figures anew); the cycle in which every miner's measured efficiency replaces its nameplate
(`min_samples` readings reached by all at once); a demand-response target from a schedule file starting
after three cycles (shedding ~10 kW, and ~5 % of the fleet); the spike with a ramp limit of 2,000 kW a
minute (a few dozen miners change a cycle while the rest wait, cycle after cycle). The first cycle after
a start builds every miner's state (cold) and is reported apart. After each cycle the driver collects
garbage as the service does (collector.service.collect_garbage), timed apart: the collection is every
stage's and the samples', not planning's. Target: at most 50 ms per cycle at 10,000 miners.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from collector import pipeline, service
from collector.cycle import PART_MINERS, Cycle, MinersPart
from collector.stages.curtailment import CurtailmentStage
from models import CollectorConfig, LivePowerPrice, MinerSample, MinerState, SampleSource

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
# model as Avalons report it, (TH/s, W), work mode
FLEET = [("AvalonMiner 15-194", 194.0, 3650.0, "0"), ("AvalonMiner 1466-150", 150.0, 3230.0, "0"),
         ("AvalonMiner 1246-83", 90.0, 3420.0, "0"), ("Avalon Q", 90.0, 1674.0, "2")]


def fleet(n: int, ts: datetime) -> list[MinerSample]:
    out = []
    for i in range(n):
        model, ths, w, mode = FLEET[i % len(FLEET)]
        spread = 0.9 + 0.2 * ((i * 7919) % 1000) / 1000  # each unit its own efficiency
        state = MinerState.SOFT_OFF if i % 97 == 0 else MinerState.MINING
        out.append(MinerSample(
            miner=f"AA:BB:{i >> 16 & 255:02X}:{i >> 8 & 255:02X}:{i & 255:02X}:00", host=f"10.{i >> 16}.{i >> 8 & 255}.{i & 255}",
            port=4028, site="bench", ts=ts, state=state, source=SampleSource.AVALON, model=model, work_mode=mode,
            hashrate_ths=ths * spread if state is MinerState.MINING else 0.0, power_w=w if state is MinerState.MINING else 70.0,
            uptime_s=86400))
    return out


def config(curtailment: dict | None) -> CollectorConfig:
    data = {"site": "bench", "interval_s": 10, "network": NETWORK,
            "economics": {"tariff": {"kind": "live", "fallback_usd_per_kwh": 0.045}, "pue": 1.08}}
    if curtailment is not None:
        data["curtailment"] = curtailment
    return CollectorConfig.model_validate(data)


AFTER = "after the cycle"  # collector.service.collect_garbage, between cycles


def stage_times(cfg: CollectorConfig, samples: list[MinerSample], prices: list[float],
                start: datetime) -> dict[str, list[tuple[float, float]]]:
    """Per stage (class name), each cycle's (CPU s, wall s) of its own begin, part and finish calls; one cycle
    per price, 10 s apart from `start`."""
    built = pipeline.build(cfg)
    sources = [s for s in built.sources if s is not built.polled]  # the network state
    out: dict[str, list[tuple[float, float]]] = {type(stage).__name__: [] for stage in built.stages}
    out[AFTER] = []
    live = next(stage.live for stage in built.stages if isinstance(stage, CurtailmentStage))

    async def run() -> None:
        for k, price in enumerate(prices):
            ts = start + timedelta(seconds=10 * k)
            live.power_price = LivePowerPrice(usd_per_kwh=price, as_of=ts)
            cycle = Cycle("bench", ts)
            for source in sources:
                await source.announce(cycle)
            stamped = [s.model_copy(update={"ts": ts}) for s in samples]
            spent = {name: [0.0, 0.0] for name in out}
            for step in ("begin", "part", "finish"):
                chunks = [stamped[i:i + PART_MINERS] for i in range(0, len(stamped), PART_MINERS)] if step == "part" else [None]
                for chunk in chunks:
                    if chunk is not None:
                        cycle.samples.extend(chunk)
                        part = MinersPart(cycle.site, ts, chunk)
                    for stage in built.stages:
                        cpu, wall = time.thread_time(), time.perf_counter()
                        if step == "begin":
                            stage.begin(cycle)
                        elif step == "part":
                            stage.part(cycle, part)
                        else:
                            stage.finish(cycle)
                        took = spent[type(stage).__name__]
                        took[0] += time.thread_time() - cpu
                        took[1] += time.perf_counter() - wall
            for name, (cpu, wall) in spent.items():
                out[name].append((cpu, wall))
            # Then, as the service does once a cycle is over, the garbage collection (not a stage's own).
            stamped = chunks = part = chunk = cycle = None  # type: ignore[assignment]
            cpu, wall = time.thread_time(), time.perf_counter()
            service.collect_garbage(k + 1)
            out[AFTER].append((time.thread_time() - cpu, time.perf_counter() - wall))

    service.run_event_loop(run())
    return out


def _ms(t: tuple[float, float]) -> str:
    return f"{1000 * t[0]:.1f} ({1000 * t[1]:.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.curtailment", description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each scenario; each cycle's figure is its fastest run (this VM's speed drifts)")
    parser.add_argument("--only", default="", help="the scenarios whose name contains this")
    args = parser.parse_args(argv)
    start = datetime.now(timezone.utc).replace(microsecond=0)
    samples = fleet(args.miners, start)
    kw = sum(s.power_w or 0 for s in samples) * 1.08 / 1000
    n = max(args.cycles, 5)
    with tempfile.TemporaryDirectory() as tmp:
        dr_from, until = start + timedelta(seconds=25), start + timedelta(hours=2)
        small = Path(tmp, "dr-10kw.yaml")
        small.write_text(yaml.safe_dump({"targets": [{"shed_kw": 10, "start": dr_from, "end": until}]}))
        large = Path(tmp, "dr-5pct.yaml")
        large.write_text(yaml.safe_dump({"targets": [{"shed_kw": round(kw * 0.05, 1), "start": dr_from, "end": until}]}))
        limit = Path(tmp, "dr-limit.yaml")
        limit.write_text(yaml.safe_dump({"targets": [{"limit_kw": round(kw * 0.95, 1), "start": dr_from, "end": until}]}))
        advice = {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0}
        steady = [0.045] * n
        spike = [0.045] * 3 + [1.0] * (n - 3)
        moving_spike = [0.045] * 3 + [1.0 + 0.01 * k for k in range(n - 3)]
        ticks = [0.045 + 0.0001 * k for k in range(n)]
        scenarios = [
            ("steady price (0.045 $/kWh)", steady, advice),
            ("a spike every miner loses at (1.0 $/kWh)", spike, advice),
            ("the spike, its price moving every cycle", moving_spike, advice),
            ("the price moving 0.01 c/kWh every cycle", ticks, advice),
            ("measured efficiencies replace nameplates", steady, {**advice, "min_samples": 4}),
            ("demand response: shed 10 kW", steady, {**advice, "dr_schedule": str(small)}),
            (f"demand response: shed {kw * 0.05:,.0f} kW (5 %)", steady, {**advice, "dr_schedule": str(large)}),
            (f"demand response: limit {kw * 0.95:,.0f} kW (95 %)", steady, {**advice, "dr_schedule": str(limit)}),
            ("the spike, a ramp of 2,000 kW/min", spike, {**advice, "ramp_kw_per_min": 2000}),
        ]
        if not any(args.only in name for name, _, _ in scenarios):
            parser.error(f"--only {args.only!r}: no scenario's name contains it ({'; '.join(n for n, _, _ in scenarios)})")
        print(f"{args.miners:,} miners, {n} cycles each, the fastest of {args.repeat} runs per cycle; the curtailment "
              "stage's own time per cycle: CPU ms of the loop's thread (wall ms); the cost stage's and the garbage "
              "collection after each cycle (every stage's and the samples': collector.service.collect_garbage), "
              "warm medians in CPU ms")
        print(f"{'scenario':44} {'cold first':>16} {'change cycle':>16} {'warm median':>16} {'warm slowest':>16} "
              f"{'cost stage':>10} {'GC after':>8}")
        worst = 0.0
        for name, prices, curtailment in scenarios:
            if args.only not in name:
                continue
            runs = [stage_times(config(curtailment), samples, prices, start) for _ in range(max(1, args.repeat))]
            took = [min(cycle, key=lambda t: t[0]) for cycle in zip(*(r["CurtailmentStage"] for r in runs))]
            cost = [min(cycle, key=lambda t: t[0]) for cycle in zip(*(r["CostStage"] for r in runs))]
            after = [min(cycle, key=lambda t: t[0]) for cycle in zip(*(r[AFTER] for r in runs))]
            warm = took[1:]
            change = took[3]  # the spike's, the target's or min_samples' first cycle (steady: a warm one)
            slowest = max(warm, key=lambda t: t[0])
            worst = max(worst, slowest[0])
            print(f"{name:44} {_ms(took[0]):>16} {_ms(change):>16} "
                  f"{_ms((statistics.median(c for c, _ in warm), statistics.median(w for _, w in warm))):>16} "
                  f"{_ms(slowest):>16} {1000 * statistics.median(c for c, _ in cost):10.1f} "
                  f"{1000 * statistics.median(c for c, _ in after[1:]):8.1f}")
    verdict = "within" if worst <= 0.050 else "OVER"
    print(f"target: planning adds at most 50 ms per cycle; the slowest warm cycle's planning took {1000 * worst:.1f} ms "
          f"of CPU: {verdict} (the cold first cycle after a start is apart: above)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
