"""A miner that moves to another address (DHCP) keeps its id and its series (collector.identity,
collector.sources.polled_miners).

Simulated Avalons over real TCP and the real pipeline with its background identification: the miner
stops answering at its address and the same MAC (the same simulator seed) starts answering at
another one, both inside a scanned range or both listed. The dead address only remembers the MAC;
the live one shows it, so the live one keeps it (the duplicate-id rule is for two live claims).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from collector import pipeline
from collector.identity import DuplicateIds
from models import CollectorConfig, MinerSample, MinerState, SampleSource
from simulators.fleet import run_fleet
from tests.support import KeptSamples, until

INTERVAL_S = 1.0
CYCLES_AFTER_MOVE = 4


@pytest.mark.parametrize("listed", [False, True], ids=["in-a-scanned-range", "both-listed"])
def test_a_miner_that_moves_keeps_its_id_at_the_new_address(listed):
    net = "127.73.1" if listed else "127.73.0"
    old_host, new_host, other_host = f"{net}.1", f"{net}.5", f"{net}.2"
    with run_fleet("a1566:1", base=old_host, seed=21) as old, run_fleet("a1566:1", base=new_host, seed=21) as new, \
            run_fleet("a1246:1", base=other_host, seed=22) as other:
        assert old[0].mac == new[0].mac  # the same seed: the same miner, as far as the collector can tell
        new[0].set_faults(no_answer=True)  # not there yet
        miners = [old.addresses[0], new.addresses[0], other.addresses[0]] if listed else [f"{net}.0/29"]
        config = CollectorConfig(miners=miners, interval_s=INTERVAL_S, timeout_s=0.5, rescan_interval_s=1,
                                 identify_backoff_s=0.5, identify_backoff_max_s=1)
        sink = KeptSamples()

        def at(host: str, cycle: list[MinerSample]) -> MinerSample | None:
            return next((s for s in cycle if s.host == host), None)

        async def scenario() -> int:
            stop = asyncio.Event()
            running = asyncio.create_task(pipeline.build(config, sinks=[sink]).run(stop=stop))
            try:
                await until(lambda: sink.cycles and (s := at(old_host, sink.cycles[-1])) and s.up,
                            20, "the miner mining at its first address")
                old[0].set_faults(no_answer=True)  # it leaves its address ...
                await until(lambda: (s := at(old_host, sink.cycles[-1])) and s.state is MinerState.OFFLINE,
                            10, "its old address to go silent")
                new[0].set_faults(no_answer=False)  # ... and comes back at another
                answered = await until(lambda: next((i for i, c in enumerate(sink.cycles)
                                                     if (s := at(new_host, c)) and s.up), None),
                                       30, "the miner answering at its new address")
                await until(lambda: len(sink.cycles) >= answered + CYCLES_AFTER_MOVE, 20, "cycles after the move")
                return answered
            finally:
                stop.set()
                await running

        answered = asyncio.run(scenario())
    mac = sink.cycles[0] and next(s.mac for s in sink.cycles[0] if s.host == old_host)
    for cycle in sink.cycles[answered:answered + CYCLES_AFTER_MOVE]:
        ours = [s for s in cycle if s.miner == mac]
        assert len(ours) == 1, [(s.miner, s.host, s.state) for s in cycle]
        [moved] = ours
        assert moved.host == new_host and moved.state is MinerState.MINING, (moved.host, moved.state, moved.errors)
        assert not any("duplicate miner id" in e for s in cycle for e in s.errors), [s.errors for s in cycle]
        assert at(other_host, cycle).state is MinerState.MINING  # the rest of the fleet is untouched
        left = at(old_host, cycle)
        if listed:  # a listed address is polled whatever answers there: offline, under its own address
            assert left.miner == f"{old_host}:4028" and left.state is MinerState.OFFLINE
        else:  # found by the scan: its miner answers elsewhere, so it is no longer polled (a re-scan finds it again)
            assert left is None, (left.miner, left.state, left.errors)


MAC = "0A:1B:2C:3D:4E:5F"
TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def claim(host: str, ts: datetime, *, answers: bool) -> MinerSample:
    """A sample of the miner with MAC at `host`: read (it answered) or offline with its last known id."""
    if answers:
        return MinerSample(miner=MAC, mac=MAC, host=host, port=4028, ts=ts, state=MinerState.MINING,
                           source=SampleSource.AVALON, hashrate_ths=90.0)
    return MinerSample.offline(miner=MAC, host=host, port=4028, site="s", ts=ts, source=SampleSource.AVALON,
                               reason=f"{host}:4028: connection refused")


@pytest.mark.parametrize("silent_first", [True, False], ids=["silent-address-first", "live-address-first"])
def test_in_either_order_the_address_that_answers_has_the_id_from_the_next_cycle_on_at_the_latest(silent_first):
    """The order of a cycle's samples is the order they arrive in (and the first may already be on its
    way to the sinks): the dead address's offline sample first, or the live one's first."""
    ids = DuplicateIds()
    cycles = []
    for n in range(3):
        ts = TS + timedelta(seconds=n)
        pair = [claim("10.0.0.1", ts, answers=False), claim("10.0.0.5", ts, answers=True)]
        cycles.append({s.host: ids.check(s) for s in (pair if silent_first else pair[::-1])})
    first, *later = cycles
    if silent_first:  # its sample went out under the MAC: the live one is under its address this one cycle
        assert first["10.0.0.1"].miner == MAC and first["10.0.0.5"].miner == "10.0.0.5:4028"
        assert "keeps the id from the next" in first["10.0.0.5"].errors[-1]
    else:
        later.insert(0, first)
    for cycle in later:
        live, silent = cycle["10.0.0.5"], cycle["10.0.0.1"]
        assert live.miner == MAC and live.errors == []
        assert silent.miner == "10.0.0.1:4028" and silent.errors == [
            "10.0.0.1:4028: connection refused",
            f"its last known id {MAC} is reported by 10.0.0.5:4028 now; stored under its address 10.0.0.1:4028"]


def test_two_addresses_that_answer_with_one_mac_still_clash_and_one_that_stops_answering_loses_the_id():
    ids = DuplicateIds()
    both = [ids.check(claim(host, TS, answers=True)) for host in ("10.0.0.1", "10.0.0.5")]
    assert [s.miner for s in both] == [MAC, "10.0.0.5:4028"]  # the first address keeps it, as before
    assert "duplicate miner id" in both[1].errors[-1]
    for n in (1, 2):  # the owner stops answering; its offline sample comes first
        ts = TS + timedelta(seconds=n)
        owner, rival = ids.check(claim("10.0.0.1", ts, answers=False)), ids.check(claim("10.0.0.5", ts, answers=True))
    assert owner.miner == "10.0.0.1:4028" and rival.miner == MAC and rival.errors == []


def test_a_mac_that_changes_at_every_reading_is_no_id():
    # Hostile or broken firmware answering with a new MAC each poll: every cycle was a new miner (a new series
    # in InfluxDB, 35 "miners" for 30 addresses in a report). A swap (one new MAC) is a new miner still;
    # more than MAC_CHANGES_TRUSTED changes within the hour, and its samples go under its address.
    import asyncio
    from itertools import count

    from collector.sources import avalon
    from collector.sources.polled_miners import MAC_CHANGES_TRUSTED, PolledMiners
    from models import CollectorConfig
    from simulators import ManualClock, run_fleet
    from tests.collector.sources.tampering_proxy import TamperingProxy, rewrite

    proxied, macs = "127.53.9.1", count(1)

    def new_mac(reply: dict) -> None:
        reply["version"][0]["VERSION"][0]["MAC"] = f"02:00:00:00:00:{next(macs):02X}"

    with run_fleet("a1566:2", base="127.53.8.1", seed=91, clock=ManualClock()) as fleet, \
            TamperingProxy({proxied: fleet[0].host}) as proxy:
        poller = PolledMiners(CollectorConfig(miners=[proxied, fleet[1].host], timeout_s=2.0))
        asyncio.run(poller.refresh())
        proxy.tamper[proxied] = rewrite(avalon.POLL_COMMAND, new_mac)
        cycles = [{s.host: s for s in asyncio.run(poller.cycle(TS)).samples} for _ in range(MAC_CHANGES_TRUSTED + 3)]
    ids = [c[proxied].miner for c in cycles]
    trusted = ids[:MAC_CHANGES_TRUSTED + 1]  # the first reading's MAC, then each change until trust runs out
    assert all(i.startswith("02:00:00:00:00:") for i in trusted) and len(set(trusted)) == len(trusted), ids
    assert ids[MAC_CHANGES_TRUSTED + 1:] == [f"{proxied}:4028"] * 2, ids
    assert "its MAC changes at nearly every reading" in cycles[-1][proxied].warnings[-1]
    good = [c[fleet[1].host] for c in cycles]  # the good miner as it was
    assert len({s.miner for s in good}) == 1 and good[0].miner == good[0].mac and not good[-1].warnings
