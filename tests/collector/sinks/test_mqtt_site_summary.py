"""The site's summary on MQTT (`hashfleet/<site>/state`): its figures over the miners the cost counts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from collector.cycle import Cycle
from collector.sinks.mqtt_publish import site_summary
from models import MinerSample

TS = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)


def _sample(miner: str, ths: float, watts: float | None) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.1", port=4028, site="s", ts=TS, state="mining", source="avalon",
                       hashrate_ths=ths, power_w=watts)


def test_a_miner_with_no_power_reading_is_not_free_hashrate_in_the_sites_j_th():
    # An AUC chain reports hashrate and no power: its 50 TH/s at 0 W made the site's J/TH 20 for a fleet at 30.
    cycle = Cycle("s", TS)
    cycle.samples = [_sample("a", 100.0, 3000.0), _sample("chain", 50.0, None)]
    summary = site_summary(cycle)
    assert summary["efficiency_j_th"] == pytest.approx(30.0)
    assert summary["hashrate_ths"] == 150.0  # what the fleet hashes, as read
