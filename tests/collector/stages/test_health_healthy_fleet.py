"""A healthy simulated fleet of 1,000 miners over 50 cycles raises nothing: no false alarm from unit-to-
unit spread, live wobble, ambient drift, peers' temperatures or pool counters. Time-compressed: the
simulators' clock moves ten minutes a cycle, so 50 cycles are eight hours of their physics."""

from __future__ import annotations

import asyncio
import time

from collector import pipeline
from collector.stages.health import HealthStage
from models import CollectorConfig
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from tests.collector.stages.health_support import Captured

FLEET = "a1566:300,a1246:250,a1466:200,q:150,nano3s:100"
CYCLES = 50
DT = 600.0


class Counting(Captured):
    """Keeps only what the test asserts on: every problem raised, and the health stage's time."""

    def __init__(self) -> None:
        super().__init__()
        self.raised: list = []
        self.miners = 0

    async def write_miners(self, part) -> None:
        for health in part.health or ():
            self.raised += health.problems
        self.miners += len(part.samples)

    async def write(self, cycle) -> None:
        self.cycles.append(cycle.health)


def test_a_healthy_fleet_of_1000_miners_raises_nothing_in_50_cycles(tmp_path):
    clock = ManualClock()
    with run_fleet(FLEET, base="127.49.0.1", seed=21, clock=clock) as fleet:
        # Two containers of racks: peers are the same model in the same container.
        layout = {"miners": {m.address: {"container": f"c{i % 2}", "rack": f"r{i % 40}", "position": str(i // 40)}
                             for i, m in enumerate(fleet)}}
        config = CollectorConfig.model_validate({
            "site": "healthy", "miners": fleet.addresses, "interval_s": 5, "timeout_s": 4,
            "spool": {"directory": str(tmp_path / "spool")}, "layout": layout,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1},
            "network": {"source": "static", "static": {"difficulty": 1.2e14, "height": 900_000,
                                                       "btc_price_usd": 95_000}}})
        sink = Counting()
        built = pipeline.build(config, sinks=[sink])
        stage = next(s for s in built.stages if isinstance(s, HealthStage))
        spent = [0.0]
        for step in ("begin", "part", "finish"):  # the stage's own CPU, for the message below
            original = getattr(stage, step)

            def timed(*args, _original=original):
                started = time.thread_time()
                try:
                    return _original(*args)
                finally:
                    spent[0] += time.thread_time() - started
            setattr(stage, step, timed)

        async def go():
            await built.start()
            try:
                for _ in range(CYCLES):
                    clock.advance(DT)
                    await built.run_cycles(cycles=1)
            finally:
                await built.stop()

        asyncio.run(go())
    assert sink.miners == 1000 * CYCLES
    assert [h.miners for h in sink.cycles] == [1000] * CYCLES
    shown = [f"{p.miner} {p.signal.value}: {p.evidence}" for p in sink.raised[:10]]
    assert sink.raised == [], f"{len(sink.raised)} problems raised on a healthy fleet, e.g. {shown}"
    print(f"health stage: {spent[0] / CYCLES * 1000:.1f} ms CPU per 1,000-miner cycle")
