"""A slow miner on a scanned range is found, and an address that answers but is not identified is counted
(collector/sources/identify.py, polled_miners.py; trial Q, L3).

A simulated S21 answering every request after 2.5 s, with timeout_s 3, was polled by a running collector but
left out by every fresh start: "49 miner(s) found", "49 miners, 0 failed", the unit in no count. pyasic's
detection gave each of its steps 3 s, and the whole detection had 5 s: the make came after 2.5 s, the model
(two requests the unit answers one after the other) never, and the scan dropped an address it could not
identify without a word. Real simulators over real TCP, each make pyasic detects, all slowed at once."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from collector.sources import cgminer_client as cgminer
from collector.sources.polled_miners import PolledMiners
from models import CollectorConfig, MinerState
from simulators.fleet import run_fleet
from tests.collector.sources.hostile_server import HostileServer
from tests.support import until

TS = datetime(2026, 1, 1, tzinfo=timezone.utc)
SLOW_S = 2.0  # within TIMEOUT_S with a margin for a loaded machine
TIMEOUT_S = 3.0


def test_slow_miners_of_every_make_on_a_scanned_range_are_found_and_polled(caplog):
    caplog.set_level(logging.INFO, logger="collector.sources.polled_miners")
    makes = ["s21", "bos-s21", "m60s", "a1566"]  # stock Antminer, Braiins OS+, Whatsminer, Avalon
    with run_fleet(",".join(f"{m}:1" for m in makes), base="127.214.0.1", seed=5) as fleet:
        for miner in fleet:
            miner.set_faults(slow_s=SLOW_S)
        miners = PolledMiners(CollectorConfig(miners=["127.214.0.0/29"], timeout_s=TIMEOUT_S))

        async def scan_and_poll():
            await miners.refresh()
            # A unit's API answers one request at a time: the detection's last requests, which it answers after
            # the detection has moved on, are worked off first (as between two cycles of the service).
            await asyncio.gather(*(cgminer.request(m.host, m.port, "version", timeout_s=60) for m in fleet))
            return await miners.cycle(TS)

        result = asyncio.run(scan_and_poll())
    by_address = {f"{s.host}:{s.port}": s for s in result.samples}
    for make, miner in zip(makes, fleet):
        sample = by_address.get(miner.address)
        assert sample is not None, f"{make} at {miner.address} was not found: {sorted(by_address)}"
        assert sample.state is MinerState.MINING, (make, sample.errors)
        assert sample.model, make
    assert len(result.samples) == len(makes) and result.failed == 0
    assert "127.214.0.0/29: 4 new miner(s) found (4 polled in the range)" in caplog.messages


def test_an_address_that_answers_but_is_not_identified_is_counted_named_and_tried_again(caplog):
    caplog.set_level(logging.INFO, logger="collector.sources.polled_miners")
    address = "127.215.0.1"
    config = CollectorConfig(miners=["127.215.0.0/30"], timeout_s=1, identify_backoff_s=0.2,
                             identify_backoff_max_s=0.5)
    miners = PolledMiners(config)
    with HostileServer({address: "stranger"}) as stranger:
        first = asyncio.run(_scan_and_poll(miners))
        asked = len(stranger.requests(address, "version"))
        stranger.release(address)
    assert asked >= 1
    # Named in the scan's line and in its offline sample, and counted as failed: never silently absent.
    assert any(m.startswith(f"127.215.0.0/30: 1 address(es) answer but were not identified: {address}:4028")
               for m in caplog.messages), caplog.messages
    [sample] = first.samples
    assert (sample.host, sample.state) == (address, MinerState.OFFLINE)
    assert "not identified yet" in sample.errors[0] and "answers, but neither" in sample.errors[0], sample.errors
    assert first.failed == 1

    # Tried again in the background: once a miner answers there, it is polled.
    with run_fleet("a1566:1", base=address, seed=6):
        async def until_polled():
            discovering = asyncio.create_task(miners.discover())
            try:
                await until(lambda: not miners.unidentified, 30, "the address identified again")
                return await miners.cycle(TS)
            finally:
                discovering.cancel()
                await asyncio.gather(discovering, return_exceptions=True)

        later = asyncio.run(until_polled())
    assert [s.state for s in later.samples] == [MinerState.MINING]


async def _scan_and_poll(miners: PolledMiners):
    await miners.refresh()
    return await miners.cycle(TS)
