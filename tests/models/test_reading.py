"""Readings (MinerSample, BoardSample, PoolInfo) are frozen and share their fields-set between
instances given the same fields (models/base.py Reading): a cycle of 10,000 samples is ~2.6 KB
each instead of ~7.7 KB. Sharing must never let one sample's change show in another."""

from datetime import datetime, timezone

import pydantic
import pytest

from models import BoardSample, MinerSample, MinerState, SampleSource

TS = datetime(2026, 3, 2, tzinfo=timezone.utc)


def sample(miner: str, **extra) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.1", ts=TS, state=MinerState.MINING, source=SampleSource.AVALON,
                       hashrate_ths=100.0, power_w=1850.0, boards=[BoardSample(index=0, chips_ok=120)], **extra)


def test_samples_with_the_same_fields_share_one_fields_set_and_boards_theirs():
    a, b = sample("a"), sample("b")
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__
    assert a.boards[0].__pydantic_fields_set__ is b.boards[0].__pydantic_fields_set__
    assert sample("c", uptime_s=5).model_fields_set == a.model_fields_set | {"uptime_s"}


def test_a_copy_with_changes_leaves_the_original_and_its_siblings_alone():
    a, b = sample("a"), sample("b")
    metered = a.model_copy(update={"power_w": 1700.0, "work_mode": "eco"})
    assert metered.power_w == 1700.0 and "work_mode" in metered.model_fields_set
    assert a.power_w == 1850.0 and "work_mode" not in a.model_fields_set and "work_mode" not in b.model_fields_set


def test_readings_are_frozen_and_efficiency_is_still_derived():
    a = sample("a")
    assert a.efficiency_j_th == pytest.approx(18.5)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        a.power_w = 1.0
