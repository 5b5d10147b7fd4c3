"""A collector restart while a known miner does not answer: simulated miners over TCP, the real pipeline
(`hashfleet collect`'s, keeping its state files in the spool directory), stopped and built again.

After the restart the poller knows the silent address only as an address ("not identified yet": it never
answers identification), so its samples are stored under its host:port. The health stage prices it as
the unit last read there, from the history it keeps (docs/health.md "Dollars"): the loss it had before
the restart, its model, first in the repair queue, its evidence naming that unit.
"""

from __future__ import annotations

import asyncio

import pytest

from collector import pipeline
from models import CollectorConfig
from models.health import Signal
from simulators.clock import ManualClock
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.stages.health_support import Captured

DT = 240.0  # simulated seconds per cycle
STATIC = {"difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03, "btc_price_usd": 95_000}
ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1, "pool_fee_pct": 2}


def _config(addresses: list[str], spool) -> CollectorConfig:
    return CollectorConfig.model_validate({
        "site": "restart", "miners": addresses, "interval_s": 2, "timeout_s": 1.5, "spool": {"directory": str(spool)},
        "economics": ECONOMICS, "network": {"source": "static", "static": STATIC}})


def _collect(config: CollectorConfig, clock: ManualClock, cycles: int, before=None) -> Captured:
    """One run of the collector: start, `cycles` cycles (`before` called after the first), stop."""
    captured = Captured()
    built = pipeline.build(config, sinks=[captured], service_mode=True)

    async def run():
        await built.start()
        try:
            for n in range(cycles):
                clock.advance(DT)
                await built.run_cycles(cycles=1)
                if n == 0 and before is not None:
                    before()
        finally:
            await built.stop()

    try:
        asyncio.run(run())
    finally:
        built.close()
    return captured


def test_a_known_miner_silent_across_a_restart_keeps_its_price_and_leads_the_queue(tmp_path):
    clock = ManualClock()
    with run_fleet("a1466:3", base="127.68.0.1:0", seed=21, clock=clock) as fleet:
        silent, broken, well = fleet
        mac, address = format_mac(silent.mac), silent.address
        broken.set_faults(dead_boards={2})  # a third of a unit lost, before and after: below the silent one
        spool = tmp_path / "spool"
        spool.mkdir()  # (the spool sink makes it in the service; here the captured figures are the sink)
        config = _config(fleet.addresses, spool)
        # Read healthy, then silent: offline under its MAC, priced as the whole unit
        before = _collect(config, clock, 4, before=lambda: silent.set_faults(no_answer=True))
        # The restart: the history is read back; the silent address is never identified again
        after = _collect(config, clock, 3)
    [was] = before.last(mac).problems
    assert was.signal is Signal.OFFLINE and was.usd_lost_day > 5
    health = after.last(address)  # its samples are stored under its address now
    [problem] = health.problems
    assert problem.signal is Signal.OFFLINE and problem.miner == address
    assert problem.usd_lost_day == pytest.approx(was.usd_lost_day, rel=0.01)
    assert problem.lost_ths == pytest.approx(was.lost_ths, rel=0.01) and health.model == before.last(mac).model
    assert problem.evidence.startswith(f"last read here as {mac} ({health.model}); not answering: not identified yet")
    queue = after.cycles[-1].health.queue
    assert queue[0] == problem and queue[1].key == "board_dead:2"  # (then the board's code, $0)
    assert {p.miner for p in queue[1:]} == {format_mac(broken.mac)} and 0 < queue[1].usd_lost_day < problem.usd_lost_day
    assert after.last(format_mac(well.mac)).problems == ()
