"""pyasic 0.79, unchanged, takes the simulated miners for real Avalons.

pyasic's detection is hard-wired to port 4028, so these miners sit on their own loopback
addresses (127.203.0.x) rather than on free ports.
"""

from __future__ import annotations

import asyncio
import warnings

import pyasic
import pytest

from simulators import run_fleet
from tests.support import wait_for

FLEET = "a1246:1,a1566:1,a1466:1,q:1,nano3s:1"
CLASSES = {
    "a1246": "CGMinerAvalon1246",
    "a1566": "CGMinerAvalon1566",
    "a1466": "AvalonUnknown",  # too new for pyasic 0.79
    "q": "CGMinerAvalonQHome",
    "nano3s": "CGMinerAvalonNano3s",
}


@pytest.fixture(scope="module")
def sim():
    with run_fleet(FLEET, base="127.203.0.1", seed=31) as fleet:
        yield fleet


def by_model(fleet, key):
    return next(m for m in fleet.miners if m.spec.key == key)


def detect(host: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Partially supported miner found" for the A1466
        return asyncio.run(pyasic.get_miner(host))


def data_of(host: str):
    async def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            miner = await pyasic.get_miner(host)
            return await miner.get_data()

    return asyncio.run(go())


@pytest.mark.parametrize("key", list(CLASSES))
def test_pyasic_detects_the_model(sim, key):
    miner = detect(by_model(sim, key).host)
    assert type(miner).__name__ == CLASSES[key]


@pytest.mark.parametrize("key", ["a1246", "a1566", "q", "nano3s"])
def test_pyasic_reads_hashrate_temperatures_fans_and_boards(sim, key):
    sim_miner = by_model(sim, key)
    spec = sim_miner.spec
    data = data_of(sim_miner.host)
    nominal = spec.nameplate.hashrate_ths
    assert 0.9 * nominal < float(data.hashrate) < 1.1 * nominal
    assert float(data.expected_hashrate) == pytest.approx(nominal)
    assert data.mac == ":".join(sim_miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()
    assert data.uptime and data.uptime > 3600
    assert len(data.hashboards) == spec.boards
    for board in data.hashboards:
        assert not board.missing
        assert board.chips == spec.chips_per_board
        assert 0.9 * nominal / spec.boards < float(board.hashrate) < 1.1 * nominal / spec.boards
        assert 40 <= board.chip_temp <= 105
    assert len(data.fans) >= 1 and all(500 < fan.speed < 9000 for fan in data.fans)
    assert data.pools and data.pools[0].accepted > 0


def test_pyasic_reads_the_a1466_without_knowing_it(sim):
    data = data_of(by_model(sim, "a1466").host)
    assert 135 < float(data.hashrate) / 1e12 < 165  # reported in H/s by the unknown-model class
    assert 3000 < data.wattage < 3500
    assert data.hashboards == []  # pyasic has no board layout for an unknown model


def test_pyasic_power_reading_depends_on_wallpower(sim):
    # Documented pyasic blind spot: no WALLPOWER key, no power (A1246 2021 firmware, Avalon Q).
    assert data_of(by_model(sim, "a1246").host).wattage is None
    assert data_of(by_model(sim, "q").host).wattage is None
    a15 = data_of(by_model(sim, "a1566").host).wattage
    assert 3400 < a15 < 4000
    nano = data_of(by_model(sim, "nano3s").host).wattage  # pyasic reads PS[6] on the Nano 3S
    assert 100 < nano < 160


def test_pyasic_stop_and_resume_mining_drive_soft_off(sim):
    sim_miner = by_model(sim, "q")

    async def go(action: str) -> bool:
        miner = await pyasic.get_miner(sim_miner.host)
        return await getattr(miner, action)()

    try:
        assert asyncio.run(go("stop_mining")) is True
        # pyasic asks for it 5 s from now (by our clock, the simulator's too here): the firmware acts then.
        wait_for(lambda: sim_miner.faults.soft_off, timeout=15, what="the soft-off pyasic asked for")
        assert sim_miner.truth().state == "soft_off"
        # pyasic's known misreading of a sleeping Q: still "mining" at its old average.
        data = data_of(sim_miner.host)
        assert data.is_mining is True and float(data.hashrate) > 80
        assert asyncio.run(go("resume_mining")) is True
        wait_for(lambda: not sim_miner.faults.soft_off, timeout=15, what="the soft-on pyasic asked for")
    finally:
        sim_miner.clear_faults()
