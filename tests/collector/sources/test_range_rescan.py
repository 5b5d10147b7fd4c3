"""A CIDR range found empty is scanned again soon (collector/sources/polled_miners.py): after a power cut the
collector is usually back before the miners, and a range scanned at its start stayed "0 miners" until the
next scan, rescan_interval_s (300 s) later: 4 min 15 s with nothing polled (trial M, M1). Now the empty range
is scanned again after identify_backoff, the wait doubling while none answers (no scan storm on a range that
is really empty), and once a scan finds miners the next ones come soon too, then back to rescan_interval_s.

The real pipeline with its background identification, simulated Avalons over real TCP started after the
collector; bounds in cycles and scans, not in seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from collector import pipeline
from models import CollectorConfig, MinerSample, MinerState
from simulators.fleet import run_fleet
from tests.support import KeptSamples, until

RANGE = "127.212.0.0/29"
CYCLES_BEFORE_THE_FLEET = 6
FOUND_WITHIN_CYCLES = 20  # after the fleet answers; the rescan interval is 300 cycles


def test_a_range_found_empty_at_the_start_finds_its_fleet_within_a_few_cycles_of_its_return(caplog):
    caplog.set_level(logging.DEBUG, logger="collector.sources.polled_miners")
    config = CollectorConfig(miners=[RANGE], interval_s=1, timeout_s=0.5)  # rescan_interval_s: the default 300 s
    assert config.rescan_interval_s == 300 and config.identify_backoff == 1
    sink = KeptSamples()
    scans_before: list[str] = []

    def scans() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{RANGE}: scanned ")]

    def mining(cycle: list[MinerSample]) -> int:
        return sum(s.state is MinerState.MINING for s in cycle)

    async def scenario() -> tuple[int, int | None]:
        stop = asyncio.Event()
        running = asyncio.create_task(pipeline.build(config, sinks=[sink]).run(stop=stop))
        with contextlib.ExitStack() as fleet:
            try:
                await until(lambda: len(sink.cycles) >= CYCLES_BEFORE_THE_FLEET, 30, "cycles before the power returns")
                scans_before.extend(scans())
                returned = len(sink.cycles)  # the miners answer from here on
                await asyncio.to_thread(fleet.enter_context, run_fleet("a1566:3", base="127.212.0.1", seed=3))
                await until(lambda: len(sink.cycles) > returned + FOUND_WITHIN_CYCLES or mining(sink.cycles[-1]) == 3,
                            FOUND_WITHIN_CYCLES + 30, "the fleet polled, or the cycles it is given")
                found = next((i for i, c in enumerate(sink.cycles) if mining(c) == 3), None)
                return returned, found
            finally:
                stop.set()
                await running

    returned, found = asyncio.run(scenario())
    assert not any(sink.cycles[:returned]), "nothing answers before the power returns"
    assert found is not None and found - returned <= FOUND_WITHIN_CYCLES, \
        f"the fleet answering from cycle {returned} was not polled by cycle {returned + FOUND_WITHIN_CYCLES}"
    # Told once that the range is empty; scanned again with the wait doubling, not every cycle.
    said = [r.getMessage() for r in caplog.records]
    assert sum(f"{RANGE}: no miner answers in the range yet" in m for m in said) == 1
    waits = [float(re.search(r"next scan in ([0-9.]+) s", m)[1]) for m in scans()]
    empty = len(scans_before)
    assert 2 <= empty <= 4, scans_before  # scans at 0, 2 and 6 s: ~6 cycles
    assert waits[:empty] == [2.0 * 2 ** k for k in range(empty)], waits
    assert f"{RANGE}: 3 new miner(s) found (3 polled in the range)" in said
    finder = next(i for i, m in enumerate(scans()) if "3 new miner(s)" in m)
    assert waits[finder] == 1.0  # found some: the next scan soon too (more may be booting), doubling from there
    assert all(b == 2 * a for a, b in zip(waits[finder:], waits[finder + 1:])), waits
