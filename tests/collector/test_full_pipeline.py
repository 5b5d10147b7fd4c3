"""Every stage and sink `collector.pipeline.build` makes, together, over real TCP to a simulated fleet."""

from __future__ import annotations

import asyncio
import logging

from collector import pipeline
from collector.sinks import Sink
from collector.stages import Stage
from models import CollectorConfig
from simulators.fleet import run_fleet
from tests.collector.test_cycle_parts import NETWORK, Recording


def _protocol_methods(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if not name.startswith("_")]


def test_a_pipeline_with_every_stage_runs_and_stops_cleanly_saving_what_each_stage_keeps(caplog, tmp_path):
    """Cost, health, curtailment (control in dry run: its sink is built) and pool reconciliation (a pool that
    does not answer) for two cycles, then stop and close: every part has the whole protocol, none fails to
    close, and each stage's state file is written on the way out."""
    with run_fleet("a1566:2", base="127.56.4.1", seed=8) as fleet:
        config = CollectorConfig.model_validate({
            "site": "s1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5,
            "spool": {"directory": str(tmp_path)},
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}, "network": NETWORK.model_dump(),
            "curtailment": {"control": {"mode": "dry_run", "allow": ["*"]}},
            "pools": [{"kind": "ocean", "account": "bc1qsite", "url": "http://127.56.4.250:9", "timeout_s": 1}]})
        built = pipeline.build(config, sinks=[Recording()], service_mode=True)
        names = {type(stage).__name__ for stage in built.stages}
        assert {"CostStage", "HealthStage", "CurtailmentStage", "PoolReconciliation"} <= names, names
        assert "CurtailmentControl" in {type(sink).__name__ for sink in built.sinks}
        for part, protocol in [*((s, Stage) for s in built.stages), *((s, Sink) for s in built.sinks)]:
            missing = [m for m in _protocol_methods(protocol) if not callable(getattr(part, m, None))]
            assert not missing, f"{type(part).__name__} lacks {missing}"
        with caplog.at_level(logging.INFO):
            assert asyncio.run(built.run(cycles=2)) == 2
            built.close()
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures
    for kept in ("health-state.json", "curtailment-efficiency.json", "pool-days.json"):
        assert (tmp_path / kept).exists(), kept
