"""The same fault on the same model is priced alike whether or not its firmware reports its power.

Simulated S19j Pros over TCP, read by the real pipeline: three on stock firmware (no power on the wire)
and three on Braiins OS+ (the tuner's draw), same simulator physics. On each firmware one loses a board
(`dead_boards=0`) and one stops on its overheat protection (`overheat=shutdown`), as docs/drills.md.
A trial (P, H2) found the stock unit priced at its whole revenue ($1.36/day a dead board, $4.08 a
shutdown) beside $0.14 and $0.54 on BOS+, and still +$4.08 at a tariff where the unit runs at a loss
(BOS+ -$1.82): with no reading of its draw, no energy saved was counted. Now the draw its lost hashrate
took is estimated from the nameplate (docs/health.md "Dollars"). Run at a tariff below the model's
break-even (a fault loses money) and one above it (a fault saves money).
"""

from __future__ import annotations

import asyncio

import pytest

from collector import pipeline
from models.hardware import nameplate
from models.health import MinerHealth
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured
from tests.collector.stages.test_health_drills import (ECONOMICS, N, WARMUP, _config, _net_usd_per_th_day,
                                                       _run)

FLEET = "s19jpro:3,bos-s19jpro:3"
STOCK, BOS = 0, 3  # the first index of each firmware's three
DEAD_BOARD, SHUTDOWN = 0, 1  # offsets within each; the third stays healthy (its peer)
FAULTS = {DEAD_BOARD: {"dead_boards": {0}}, SHUTDOWN: {"overheat": "shutdown"}}
# The units differ by the simulator's per-unit spread (hashrate and draw each within a few per cent) and
# the two firmwares by the stopped unit's draw (BOS+ reads its fans; stock: STOPPED_DRAW_SHARE assumed):
# the same fault is priced within this share of the revenue it loses.
TOLERANCE = 0.10


def _break_even_usd_kwh() -> float:
    plate = nameplate("S19j Pro")
    return _net_usd_per_th_day() * plate.hashrate_ths / (plate.power_w * 24 / 1000 * ECONOMICS["pue"])


BELOW, ABOVE = 0.04, 0.09  # $/kWh either side of the S19j Pro's break-even (0.063 at these prices)


@pytest.fixture(scope="module", params=[BELOW, ABOVE], ids=["below_break_even", "above_break_even"])
def priced(request, tmp_path_factory) -> tuple[float, dict[int, MinerHealth]]:
    tariff = request.param
    economics = ECONOMICS | {"tariff": {"kind": "flat", "usd_per_kwh": tariff}}
    clock = ManualClock()
    with run_fleet(FLEET, base="127.49.7.1", seed=17, clock=clock) as fleet:
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path_factory.mktemp("spool"), timeout_s=5.0,
                                       economics=economics), sinks=[captured])

        async def go():
            await built.start()
            try:
                await _run(built, WARMUP, clock, captured)
                for first in (STOCK, BOS):
                    for offset, faults in FAULTS.items():
                        fleet[first + offset].set_faults(**faults)
                await _run(built, N, clock, captured)
            finally:
                await built.stop()

        asyncio.run(go())
        ids = [format_mac(m.mac) for m in fleet]
    return tariff, {i: captured.last(miner) for i, miner in enumerate(ids)}


def test_the_tariffs_are_either_side_of_break_even():
    assert BELOW < _break_even_usd_kwh() < ABOVE


@pytest.mark.parametrize("fault", [DEAD_BOARD, SHUTDOWN], ids=["dead_board", "overheat_shutdown"])
def test_the_same_fault_is_priced_alike_on_stock_and_braiins_firmware(priced, fault):
    tariff, health = priced
    stock, bos = health[STOCK + fault], health[BOS + fault]
    for unit in (stock, bos):
        assert unit.problems and unit.usd_lost_day is not None, unit
        assert unit.lost_ths > 20, unit.problems  # a board's third of 104 TH/s, or all of it
    revenue = stock.lost_ths * _net_usd_per_th_day()
    assert abs(stock.usd_lost_day - bos.usd_lost_day) <= TOLERANCE * revenue, (
        f"{tariff} $/kWh: stock ${stock.usd_lost_day:.2f} ({stock.problems}) "
        f"against BOS+ ${bos.usd_lost_day:.2f} ({bos.problems})")
    # Below break-even a fault loses money; above it the unit's power costs more than it mines: it saves.
    for unit in (stock, bos):
        assert (unit.usd_lost_day > 0) == (tariff < _break_even_usd_kwh()), (tariff, unit.problems)
    priced_problems = [p for p in stock.problems if p.lost_ths > 0]
    assert priced_problems and all(p.evidence.endswith("energy saved estimated from the nameplate: no power reading")
                                   for p in priced_problems), priced_problems
    assert not any("energy saved estimated" in p.evidence for p in bos.problems)  # it reads its draw


def test_the_healthy_units_raise_nothing(priced):
    _, health = priced
    for index in (STOCK + 2, BOS + 2):
        assert health[index].problems == (), health[index].problems
