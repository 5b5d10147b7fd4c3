"""The collector's pyasic path reads simulated Antminers (stock) and a Bitaxe: detection once, then polls.

Stock Antminers have a native reader now (tests/collector/sources/test_native_makes.py); here the
config sends them through pyasic (`readers: {antminer: pyasic}`), the path an operator can still choose.

`PolledMiners.cycle` over real sockets: the simulators run in a background thread on 127.50.0.1-3
(pyasic's ports 4028 and 80 are fixed, so each miner has its own address). A ManualClock keeps
the served truth still, so the collector's numbers compare with it closely.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timezone

import pytest
from tests.support import HASHFLEET

from collector.sources.polled_miners import PolledMiners
from models import CollectorConfig, FaultCode, MinerState, SampleSource
from simulators import ManualClock, run_fleet

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
MAKES = {"s19jpro": ("AntMiner", "S19j Pro"), "s21": ("AntMiner", "S21"), "bitaxe": ("BitAxe", "Gamma")}
DETECTION = ("GET /", "version", "devdetails")  # what only detection asks for (RPC `version` alone, the page at /)


@pytest.fixture(scope="module")
def sim():
    with run_fleet("s19jpro:1,s21:1,bitaxe:1", base="127.50.0.1", seed=47, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
    yield
    for miner in sim.miners:
        miner.clear_faults()


def by_key(sim, key):
    return next(m for m in sim.miners if m.spec.key == key)


def poller(*hosts: str, timeout_s: float = 5.0) -> PolledMiners:
    return PolledMiners(CollectorConfig(miners=list(hosts), timeout_s=timeout_s, readers={"antminer": "pyasic"}))


def cycle(p: PolledMiners):
    """As `hashfleet poll` does: identify what is not identified yet (nothing, after the first), then poll."""
    async def identify_then_poll():
        await p.refresh()
        return await p.cycle(TS)

    return asyncio.run(identify_then_poll())


def mac_id(miner) -> str:
    return ":".join(miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()


def test_one_cycle_reads_every_make_through_pyasic(sim):
    result = cycle(poller(*(m.host for m in sim.miners)))
    samples = {s.host: s for s in result.samples}
    assert len(samples) == 3
    for miner in sim.miners:
        sample, truth, spec = samples[miner.host], miner.last_served, miner.spec
        assert sample.source is SampleSource.PYASIC
        assert sample.state is MinerState.MINING, sample.errors
        assert (sample.make, sample.model) == MAKES[spec.key]
        assert sample.miner == sample.mac == mac_id(miner)
        assert sample.firmware == spec.firmware
        assert sample.hashrate_ths == pytest.approx(truth.hashrate_ths, abs=5e-5)
        assert sample.expected_hashrate_ths == pytest.approx(spec.nominal_ths)
        assert sample.fans_rpm == list(truth.fans_rpm)
        assert len(sample.boards) == spec.boards and all(b.chips_ok == spec.chips_per_board for b in sample.boards)
        assert sample.uptime_s == truth.uptime_s
        assert sample.temp_chip_max_c is not None and sample.temp_chip_max_c <= truth.temp_chip_max_c
        if spec.family == "bitaxe":
            assert sample.power_w == round(truth.power_w)  # pyasic rounds to whole watts
        else:
            assert sample.power_w is None  # stock Antminer firmware reports no power; pyasic has none either
        assert sample.pool is not None or spec.family == "bitaxe"


def test_detection_runs_once_then_only_data_is_read(sim):
    p = poller(*(m.host for m in sim.miners))
    cycle(p)
    detected = {m.spec.key: {k: sim.requests(m)[k] for k in DETECTION} for m in sim.miners}
    data_reads = {m.spec.key: sum(sim.requests(m).values()) for m in sim.miners}
    assert all(counts["GET /"] >= 1 for counts in detected.values())
    second = cycle(p)
    assert all(s.state is MinerState.MINING for s in second.samples)
    assert {m.spec.key: {k: sim.requests(m)[k] for k in DETECTION} for m in sim.miners} == detected
    assert all(sum(sim.requests(m).values()) > data_reads[m.spec.key] for m in sim.miners)  # but it was read


@pytest.mark.parametrize("key", list(MAKES))
def test_a_miner_that_stops_answering_is_offline_with_a_reason_and_keeps_its_id(sim, key):
    miner = by_key(sim, key)
    p = poller(miner.host)
    [first] = cycle(p).samples
    assert first.state is MinerState.MINING and first.miner == mac_id(miner)
    miner.set_faults(no_answer=True)
    [gone] = cycle(p).samples
    assert (gone.state, gone.miner) == (MinerState.OFFLINE, mac_id(miner)), gone
    assert gone.errors and miner.host in gone.errors[0]
    assert gone.hashrate_ths in (None, 0.0)


@pytest.mark.parametrize("key", list(MAKES))
def test_a_miner_that_comes_back_is_read_again_without_new_detection(sim, key):
    miner = by_key(sim, key)
    p = poller(miner.host)
    cycle(p)
    miner.set_faults(no_answer=True)
    cycle(p)
    miner.set_faults(no_answer=False)
    pages_before = sim.requests(miner)["GET /"]
    [back] = cycle(p).samples
    assert back.state is MinerState.MINING and back.miner == mac_id(miner)
    assert sim.requests(miner)["GET /"] == pages_before


def test_a_hung_miner_costs_its_own_deadline_and_delays_no_other(sim):
    p = poller(*(m.host for m in sim.miners), timeout_s=1.0)
    cycle(p)  # detect while healthy
    hung = by_key(sim, "s21")
    hung.set_faults(hold_open=True)
    result = cycle(p)
    states = {s.host: s.state for s in result.samples}
    assert states[hung.host] is MinerState.OFFLINE
    assert [states[m.host] for m in sim.miners if m is not hung] == [MinerState.MINING, MinerState.MINING]
    assert result.duration_s < 3.0
    [sample] = [s for s in result.samples if s.host == hung.host]
    assert sample.miner == mac_id(hung) and "1 s" in sample.errors[0]


def test_an_antminer_error_code_read_through_pyasic_is_a_fault_code_of_the_chain_it_names(sim):
    """As the native reader reports it (its board, its text as the meaning), but for the number: pyasic
    keeps only the health list's text."""
    miner = by_key(sim, "s19jpro")
    miner.set_faults(error_code=(0, 4096))
    [sample] = cycle(poller(miner.host)).samples
    assert sample.errors == ["Error code 4096 on chain 0"]
    assert sample.fault_codes == [FaultCode(key="pyasic", code=0, board=0, meaning="Error code 4096 on chain 0")]


def test_a_whatsminer_error_code_read_through_pyasic_is_the_fault_code_the_native_reader_makes():
    from pyasic.data.error_codes import WhatsminerError

    from collector.sources import whatsminer

    sample = from_pyasic(miner_data(errors=[WhatsminerError(error_code=531), WhatsminerError(error_code=4096)]))
    assert sample.errors == ["Slot 1 not found.", "Unknown error type."]  # pyasic's words, without the code
    assert sample.fault_codes == whatsminer.fault_codes([531, 4096])


def test_scan_lists_antminers_and_the_bitaxe_with_make_and_model(sim):
    done = subprocess.run([HASHFLEET, "scan", "127.50.0.0/29"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {host_port.rsplit(":", 1)[0]: (make, model, driver)
            for host_port, make, model, driver in (line.split("\t") for line in done.stdout.splitlines())}
    assert sorted(rows) == ["127.50.0.1", "127.50.0.2", "127.50.0.3"]
    for host, (key, (make, model)) in zip(sorted(rows), MAKES.items(), strict=True):
        # stock Antminers go to their native reader, the Bitaxe to pyasic
        assert rows[host][0] == make and rows[host][2] == ("pyasic" if key == "bitaxe" else "antminer")
        assert rows[host][1].startswith(model)  # pyasic's name carries the firmware: "S19j Pro (Stock)"
    assert "3 miner(s) found in 6 address(es)" in done.stderr


# --- hostile values from pyasic (issue 13): pyasic's own MinerData, as its readers build it -------

def miner_data(board_ths: list[float] | None = None, **fields):
    from pyasic.data import Fan, HashBoard, MinerData
    from pyasic.data.device import DeviceInfo
    from pyasic.device.algorithm.hashrate import SHA256HashRate
    from pyasic.device.algorithm.hashrate.unit import SHA256Unit
    from pyasic.device.makes import MinerMake
    from pyasic.device.models import AntminerModels

    boards = [HashBoard(slot=i, hashrate=SHA256HashRate(rate=ths, unit=SHA256Unit.TH), temp=60, chip_temp=70,
                        chips=108, expected_chips=108) for i, ths in enumerate(board_ths or [66.0, 67.0, 67.0])]
    base = dict(ip="10.0.0.1", mac="aa:bb:cc:dd:ee:ff", uptime=3600, wattage=3500, hashboards=boards,
                fans=[Fan(speed=5000), Fan(speed=5100)],
                device_info=DeviceInfo(make=MinerMake.ANTMINER, model=AntminerModels.S21))
    return MinerData(**{**base, **fields})


def from_pyasic(data):
    from collector.sources.pyasic_makes import from_miner_data

    return from_miner_data(data, host="10.0.0.1", port=4028, site="s1", ts=TS)


def test_a_healthy_pyasic_reading_is_taken_as_it_is():
    sample = from_pyasic(miner_data())
    assert sample.state is MinerState.MINING and sample.hashrate_ths == pytest.approx(200.0) and not sample.unusable


@pytest.mark.parametrize(("data", "field", "said"), [
    (dict(board_ths=[66.0, float("inf"), 67.0]), "hashrate_ths", "inf is not a finite number"),
    (dict(board_ths=[66.0, -500.0, 67.0]), "hashrate_ths", "must be greater than or equal to 0"),
    (dict(board_ths=[66.0, 1e5, 67.0]), "hashrate_ths", "3x the Antminer S21 nameplate (200 TH/s)"),
    (dict(wattage=99_999_999), "power_w", "2x the Antminer S21 nameplate (3500 W)"),
    (dict(env_temp=float("inf")), "temp_env_c", "is not a finite number"),
    (dict(uptime=10**12), "uptime_s", "is more than"),
])
def test_a_bad_pyasic_value_is_refused_and_named_and_the_rest_kept(data, field, said):
    sample = from_pyasic(miner_data(**data))
    assert field in sample.unusable
    # The unit hashes 200 TH/s: only a refused hashrate leaves that unknown (error).
    assert sample.state is (MinerState.ERROR if field == "hashrate_ths" else MinerState.MINING)
    assert any(said in e for e in sample.errors), sample.errors
    assert sample.fans_rpm == [5000, 5100]  # the rest is kept


def test_pyasic_lists_over_their_caps_are_refused_naming_the_cap():
    from pyasic.data import Fan

    sample = from_pyasic(miner_data(board_ths=[1.0] * 200, fans=[Fan(speed=4000)] * 40))
    assert sample.state is MinerState.MINING and sample.boards == [] and sample.fans_rpm == []  # the lists only
    assert any("200 hash boards, more than the cap of 128" in e for e in sample.errors)
    assert any("40 fans, more than the cap of 32" in e for e in sample.errors)


class LookedUp:
    """Every module name the import system is asked to find: a name asked twice was not found the first
    time (a module found once is in sys.modules and never looked up again)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name, path=None, target=None):
        self.names.append(name)
        return None  # (the finders after this one do the finding)


def test_reads_through_pyasic_retry_no_failed_import():
    """httpcore 1.0.9 imports sniffio at every lock it sets up; absent (anyio stopped requiring it), each
    request looked for it on the whole path (encode/httpcore#1103): ~28 % of pyasic's CPU reading stock
    Antminers over the web, a fifth of a range scan's. It is a dependency now (pyproject.toml)."""
    import sys

    with run_fleet("s19jpro:1,bitaxe:1", base="127.50.1.1", seed=3, clock=ManualClock()) as fleet:
        p = poller(*(m.host for m in fleet.miners))
        assert all(s.state is MinerState.MINING for s in cycle(p).samples)  # detection and first reads import
        finder = LookedUp()
        sys.meta_path.insert(0, finder)
        try:
            for _ in range(3):
                assert all(s.state is MinerState.MINING for s in cycle(p).samples)
        finally:
            sys.meta_path.remove(finder)
    assert finder.names == [], sorted(set(finder.names))
