"""What answers at an address decides which reader reads it (collector.sources.identify, polled_miners).

Simulated units over real TCP, each behind an address of the tampering proxy
(tests/collector/sources/tampering_proxy.py): the proxy can send an address's connections to another
unit (a unit swapped at the same address, with no missed poll in between) or rewrite its replies.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from collector.sources import identify, whatsminer
from collector.sources.polled_miners import PolledMiners
from collector.sources.profile import Profile
from collector.sources.targets import Target
from models import CollectorConfig, MinerState, SampleSource
from simulators import ManualClock, run_fleet
from tests.collector.sources.tampering_proxy import TamperingProxy, rewrite

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
KEYS = ("m50s", "s19jpro", "bos-s19jpro", "a1246", "q")
UPSTREAM = "127.59.0.1"
ADDRESS = "127.59.1.1"


@pytest.fixture(scope="module")
def lab():
    with run_fleet(",".join(f"{k}:1" for k in KEYS), base=UPSTREAM, seed=93, clock=ManualClock()) as fleet:
        units = {m.spec.key: m for m in fleet.miners}
        with TamperingProxy({ADDRESS: units["m50s"].host}) as proxy:
            yield units, proxy


@pytest.fixture
def proxy(lab):
    units, proxy = lab
    yield proxy
    proxy.routes[ADDRESS] = units["m50s"].host
    proxy.tamper.clear()


def mac_id(miner) -> str:
    return ":".join(miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()


def test_the_word_avalon_in_a_whatsminers_firmware_string_does_not_make_it_an_avalon(lab, proxy):
    """`fw_ver` "...-avalon-compat" sent the unit to the Avalon reader for good ('estats' failed: invalid
    cmd, every poll): a substring of the raw `version` reply decided. Avalons say so in `PROD`."""
    units, _ = lab

    def avalon_word(reply: dict) -> None:
        reply["Msg"]["fw_ver"] += "-avalon-compat"

    proxy.tamper[ADDRESS] = rewrite("version", avalon_word)
    found = asyncio.run(identify.identify(Target(ADDRESS, 4028), timeout_s=2.0))
    assert found.driver == identify.WHATSMINER, found
    assert found.miner_id == mac_id(units["m50s"])


# (the unit identified at the address, the unit swapped in, what the first poll after the swap says)
SWAPS = [
    ("m50s", "s19jpro", "summary carries none of btminer's hashrates (MHS 1m, HS RT, MHS 5s)"),
    ("bos-s19jpro", "s19jpro", "summary carries no MHS 1m, which bosminer always writes"),
    ("s19jpro", "m50s", "'stats' failed: invalid cmd"),
    ("s19jpro", "a1246", "stats carries an Avalon's device string (MM ID0)"),
    ("s19jpro", "q", "stats carries an Avalon's device string (MM ID0:Summary)"),
]
SOURCE = {"m50s": SampleSource.WHATSMINER, "s19jpro": SampleSource.ANTMINER, "bos-s19jpro": SampleSource.BRAIINS,
          "a1246": SampleSource.AVALON, "q": SampleSource.AVALON}


@pytest.mark.parametrize(("first", "then", "said"), SWAPS, ids=[f"{a} -> {b}" for a, b, _ in SWAPS])
def test_a_unit_swapped_for_another_make_at_its_address_is_identified_again(lab, proxy, caplog, first, then, said):
    """The trial's Whatsminer address answering as a mining S19j Pro stayed under the Whatsminer's MAC as
    "idle, 0 TH/s" for 82 cycles: the first poll after the swap is an error under the address, the
    address goes back to identification (a warning says why), and the next reading is the new unit's."""
    units, _ = lab
    proxy.routes[ADDRESS] = units[first].host
    poller = PolledMiners(CollectorConfig(miners=[ADDRESS], timeout_s=2.0))

    async def run():
        await poller.refresh()
        before = (await poller.cycle(TS)).samples[0]
        proxy.routes[ADDRESS] = units[then].host
        swapped = (await poller.cycle(TS)).samples[0]
        waiting = poller.unidentified
        await poller.refresh()
        return before, swapped, waiting, (await poller.cycle(TS)).samples[0]

    before, swapped, waiting, after = asyncio.run(run())
    assert (before.state, before.miner, before.source) == (MinerState.MINING, mac_id(units[first]), SOURCE[first])
    assert swapped.state is MinerState.ERROR and swapped.miner == f"{ADDRESS}:4028", swapped
    assert swapped.hashrate_ths is None and swapped.make is None and swapped.pool is None
    assert said in swapped.errors[0] and swapped.errors[0].endswith("identified here; identifying it again")
    assert waiting == [Target(ADDRESS, 4028)]
    assert any(r.levelname == "WARNING" and said in r.getMessage() for r in caplog.records)
    assert (after.state, after.miner, after.source) == (MinerState.MINING, mac_id(units[then]), SOURCE[then])
    assert after.hashrate_ths > 50


def test_a_whatsminer_swapped_for_a_unit_whose_summary_looks_alike_is_noticed_at_its_identity_refresh(lab, proxy):
    """A Braiins OS+ summary carries `MHS 1m` too; the ten-minute refresh of the MAC, which the Whatsminer
    answered, is refused as an unknown command: another unit (the MAC was kept "as last read")."""
    units, _ = lab
    reader = whatsminer.Whatsminer(ADDRESS, 4028, Profile("WhatsMiner", "M50S VH50", 3, 135, 2))

    async def run():
        await reader.prepare(2.0)
        identified = reader.mac
        proxy.routes[ADDRESS] = units["bos-s19jpro"].host
        reader.identity_due = 0.0  # the ten-minute identity refresh comes due
        return identified, await reader.poll(site="s", ts=TS, timeout_s=2.0, known_id=identified)

    identified, sample = asyncio.run(run())
    assert identified == mac_id(units["m50s"])
    assert sample.state is MinerState.ERROR and sample.miner == f"{ADDRESS}:4028" and sample.make is None, sample
    assert f"'get_miner_info' failed: Invalid command, which the unit identified here (MAC {identified})" in (
        sample.errors[0])
    assert reader.other_unit is not None
