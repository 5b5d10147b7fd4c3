"""A fault on a model catalogued without nameplate figures is priced alike whether it was there from the
unit's first reading or came after its usual draw was learned.

Simulated AvalonMiner 1066s over TCP (catalogued with no TH/s or W: docs/avalon.md section 8), read by the
real pipeline, at a tariff where the model runs at a loss (a dead board saves more in power than it mined).
Trial ZC (M1): the board dead from the first reading was priced +$0.67 a day (its whole revenue, nothing
counted saved: no usual draw, no nameplate), the same board after learning -$0.73. Now the saving is taken
from the unit's draw now (docs/health.md "Dollars").
"""

from __future__ import annotations

import asyncio

from collector import pipeline
from models.hardware import nameplate
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured
from tests.collector.stages.test_health_drills import N, WARMUP, _config, _net_usd_per_th_day, _run

FIRST, LATER, HEALTHY = 0, 1, 2
TOLERANCE = 0.10  # of the revenue the board lost: the units differ by the simulator's per-unit spread


def test_a_dead_board_costs_the_same_from_the_first_reading_as_after_the_usual_draw_is_learned(tmp_path):
    plate = nameplate("AvalonMiner 1066")
    assert plate is not None and plate.hashrate_ths is None and plate.power_w is None  # what this test is about
    clock = ManualClock()
    with run_fleet("a1066:3", base="127.49.9.1", seed=5, clock=clock) as fleet:
        fleet[FIRST].set_faults(dead_boards={1})
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path), sinks=[captured])

        async def go():
            await built.start()
            try:
                await _run(built, N, clock, captured)
                first = captured.last(format_mac(fleet[FIRST].mac))
                await _run(built, WARMUP, clock, captured)
                fleet[LATER].set_faults(dead_boards={1})
                await _run(built, N, clock, captured)
                return first, captured.last(format_mac(fleet[LATER].mac))
            finally:
                await built.stop()

        first, later = asyncio.run(go())
    for unit in (first, later):
        assert [p.signal.value for p in unit.problems if p.lost_ths > 0] == ["board_dead"], unit.problems
    dead_first = next(p for p in first.problems if p.lost_ths > 0)
    assert later.usd_lost_day < 0 and first.usd_lost_day < 0, (first.problems, later.problems)  # runs at a loss
    assert abs(first.usd_lost_day - later.usd_lost_day) <= TOLERANCE * dead_first.lost_ths * _net_usd_per_th_day(), (
        first.problems, later.problems)
    assert dead_first.evidence.endswith("energy saved estimated from its draw now: no usual draw known yet")
