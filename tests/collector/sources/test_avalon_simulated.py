"""The native driver reads every simulated Avalon (the golden layouts, docs/avalon.md section 10) as the
simulator says a correct reader should (its Snapshot: `reported_hashrate_ths`, `reported_power_w`),
awake and in soft-off, over real TCP."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from collector.sources import avalon
from collector.sources.avalon_power import PSU_EFFICIENCY
from models import MinerSample, MinerState
from models.hardware import nameplate
from simulators import MODELS, ManualClock, run_fleet

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
AVALONS = [key for key, spec in MODELS.items() if spec.family == "avalon"]


@pytest.fixture(scope="module")
def fleet():
    with run_fleet(",".join(f"{key}:1" for key in AVALONS), base="127.208.0.1", seed=5, clock=ManualClock()) as sim:
        yield sim


def poll(miner) -> MinerSample:
    return asyncio.run(avalon.poll(miner.host, miner.port, site="s", ts=TS))


@pytest.mark.parametrize("key", AVALONS)
def test_every_simulated_avalon_reads_as_its_truth(fleet, key):
    miner = next(m for m in fleet.miners if m.spec.key == key)
    sample = poll(miner)
    truth = miner.last_served
    assert sample.state.value == truth.state and not sample.unusable and sample.errors == []
    assert sample.hashrate_ths == pytest.approx(truth.reported_hashrate_ths, abs=1e-3)
    assert sample.expected_hashrate_ths == pytest.approx(truth.expected_hashrate_ths, rel=1e-3)
    if truth.reported_power_w is None:
        assert sample.power_w is None
    elif MODELS[key].power_reading == "dc":  # A10: the DC figure, estimated at the wall and said so
        assert sample.power_w == pytest.approx(truth.reported_power_w / PSU_EFFICIENCY)
        assert [w.split(":")[0] for w in sample.warnings] == ["power_estimated_from_dc"]
    else:
        assert sample.power_w == truth.reported_power_w and sample.warnings == []
    assert sample.fans_rpm == list(truth.fans_rpm)
    assert len(sample.boards) == len(truth.boards)
    assert sample.temp_chip_max_c == truth.temp_chip_max_c
    if MODELS[key].chain:
        assert sample.model.endswith(" chain") and sample.mac is None
    else:
        assert nameplate(sample.model) is not None, sample.model  # every simulated model is in the catalogue


SOFT_OFF = ["a1246", "q", "nano3", "mini3", "a1066", "a1366", "a16"]


@pytest.mark.parametrize("key", SOFT_OFF)
def test_a_simulated_avalon_in_soft_off_reads_as_asleep(key):
    clock = ManualClock()
    with run_fleet(f"{key}:1", base="127.0.0.1:0", seed=8, clock=clock) as sim:
        miner = sim.miners[0]
        miner.set_faults(soft_off=True)
        clock.advance(30)
        sample = poll(miner)
    # The A10 string has no SoftOFF key: asleep, it can only say "In Idle".
    assert sample.state is (MinerState.IDLE if key == "a1066" else MinerState.SOFT_OFF)
    assert sample.hashrate_ths == 0 and sample.temp_chip_max_c is None
    assert all(b.temp_chip_max_c is None and b.chips_ok is None for b in sample.boards)
    assert sample.errors == [] and not sample.unusable
