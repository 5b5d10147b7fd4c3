"""One refused field costs that field, not the miner's state (models.sample.state_with_refusals): a
simulated Avalon over real TCP, read as `hashfleet collect` reads it (identification, then a poll),
serving one value no unit reads. Only a refused live hashrate leaves unknown whether it hashes (error).
The native RPC makes: test_native_hostile.py; pyasic: test_pyasic_hostile.py; MQTT: test_mqtt_broker.py."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from models import MinerSample, MinerState, SampleSource
from tests.support import read_once
from simulators import run_fleet

TS = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def avalon():
    with run_fleet("a1566:1", base="127.73.0.1", seed=29) as fleet:
        yield fleet.miners[0]


def read_with(miner, **device_keys: str) -> MinerSample:
    """Identify and poll the unit once while its device string carries `device_keys`."""
    miner.set_faults(device_keys=device_keys)
    try:
        sample = read_once(f"{miner.host}:{miner.port}", TS)
    finally:
        miner.set_faults(device_keys={})
    assert sample.source is SampleSource.AVALON, sample
    return sample


def test_an_implausible_temperature_costs_that_temperature_not_the_state(avalon):
    # Temp[200]: no intake sensor of a running unit reads it (models/sample.py SENSOR_MAX_C 150).
    sample = read_with(avalon, Temp="200")
    assert sample.state is MinerState.MINING, sample.errors
    assert sample.hashrate_ths == pytest.approx(avalon.last_served.hashrate_ths, abs=0.01)
    assert sample.power_w is not None and sample.boards
    assert sample.temp_env_c is None and sample.unusable == ["temp_env_c"]
    assert any("Temp[200]" in e and "temp_env_c" in e for e in sample.errors), sample.errors


def test_a_refused_live_hashrate_leaves_the_state_unknown(avalon):
    sample = read_with(avalon, GHSspd="inf")
    assert sample.state is MinerState.ERROR
    assert sample.hashrate_ths is None and "hashrate_ths" in sample.unusable  # never 0 TH/s
    assert any("GHSspd[" in e for e in sample.errors), sample.errors
