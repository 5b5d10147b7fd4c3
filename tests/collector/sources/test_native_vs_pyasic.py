"""The native Avalon driver agrees with pyasic 0.79 where pyasic is right, and is right where it is not.

Both read the same simulated miners over real TCP (pyasic's detection is hard-wired to port 4028,
so each miner has its own loopback address).
"""

import asyncio
from datetime import datetime, timezone

import pyasic
import pytest

from collector.sources import avalon
from models import MinerState
from simulators.clock import ManualClock
from simulators.fleet import run_fleet

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def fleet():
    with run_fleet("a1246:1,a1566:1,q:1", base="127.41.0.1", seed=11, clock=ManualClock()) as sim:
        yield sim


def read_both(miner):
    async def both():
        native = await avalon.poll(miner.host, miner.port, site="s", ts=TS)
        truth = miner.last_served
        found = await pyasic.get_miner(miner.host)
        data = await found.get_data()
        return native, truth, data

    return asyncio.run(both())


def ths(rate) -> float:
    return float(rate.rate) * rate.unit.value / 1e12


def test_where_pyasic_is_right_both_agree(fleet):
    miner = fleet[1]  # A15-194: WALLPOWER present, healthy, steady
    native, truth, data = read_both(miner)
    assert data.wattage == native.power_w == truth.power_w
    assert data.env_temp == native.temp_env_c
    assert [f.speed for f in data.fans] == native.fans_rpm
    assert data.mac.replace(":", "") == native.mac.replace(":", "")
    # pyasic's "hashrate" is the sum of MGHS: the since-boot average, which the native driver keeps too
    assert ths(data.hashrate) == pytest.approx(native.hashrate_avg_ths, rel=1e-6)
    assert [b.chip_temp for b in data.hashboards] == [b.temp_chip_max_c for b in native.boards]


def test_power_without_wallpower_only_the_native_driver_reads(fleet):
    miner = fleet[0]  # A1246 on 2021 firmware: watts only in PS[]
    native, truth, data = read_both(miner)
    assert data.wattage is None
    assert native.power_w == truth.power_w > 3000


def test_live_hashrate_after_reboot_native_reads_live_pyasic_reads_the_average(fleet):
    miner = fleet[1]
    miner.reboot()
    fleet.clock.advance(45)
    native, truth, data = read_both(miner)
    assert truth.hashrate_ths > truth.hashrate_avg_ths * 1.1  # live has ramped up, the average lags
    assert native.hashrate_ths == pytest.approx(truth.hashrate_ths, abs=0.01)
    assert ths(data.hashrate) == pytest.approx(truth.hashrate_avg_ths, abs=0.01)


def test_soft_off_q_native_says_soft_off_pyasic_says_mining(fleet):
    miner = fleet[2]
    miner.set_faults(soft_off=True)
    native, truth, data = read_both(miner)
    assert data.is_mining is True and ths(data.hashrate) > 40  # pyasic 0.79 on a sleeping Q
    assert native.state is MinerState.SOFT_OFF and native.hashrate_ths == 0
    assert native.power_w == truth.power_w  # idle watts, from PS[]; pyasic has none
    assert data.wattage is None
