"""How often the running cost totals (`cost-totals.json`) are written: every SAVE_EVERY_S of cycle time and
on stop, not every cycle (at 2,000 miners the file is ~870 KB: every 10 s cycle was ~314 MB/h of synced
writes). The real collect loop and simulated miners; the cycles' wall clock is injected, so minutes of
cycle time pass in seconds. A restart after a stop carries on from the last cycle's totals."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collector import pipeline
from collector.line_protocol import parse_line
from collector.spool_files import list_batches
from collector.stages import running_totals as totals_store
from collector.stages.cost_stage import SAVE_EVERY_S
from models import CollectorConfig
from simulators.fleet import run_fleet
from tests.support import HASHFLEET, local_history_env

UTC = timezone.utc
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95_000}}
ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}
STEP = timedelta(seconds=SAVE_EVERY_S / 5)  # cycle time between cycles: a save every fifth cycle


class ManualClock:
    """The cycles' wall clock: each reading is STEP after the one before."""

    def __init__(self, start: datetime):
        self.next = start

    def __call__(self) -> datetime:
        now, self.next = self.next, self.next + STEP
        return now


def file_state(path: Path) -> tuple[datetime, int] | None:
    """What the totals file holds (its as_of) and which write made it (its mtime)."""
    if not path.exists():
        return None
    return datetime.fromisoformat(json.loads(path.read_bytes())["as_of"]), path.stat().st_mtime_ns


def collect(addresses: list[str], spool: Path, clock: ManualClock, cycles: int):
    """`cycles` cycles of the real loop; the file's state as each cycle starts, and the cost stage."""
    config = CollectorConfig.model_validate({
        "site": "s1", "miners": addresses, "interval_s": 1, "timeout_s": 5, "spool": {"directory": spool},
        "economics": ECONOMICS, "network": NETWORK})
    built = pipeline.build(config, sinks=[], service_mode=True)
    stage = next(s for s in built.stages if type(s).__name__ == "CostStage")
    seen: list = []
    stamps: list[datetime] = []

    def on_cycle_start(cycle) -> None:
        seen.append(file_state(spool / "cost-totals.json"))
        stamps.append(cycle.ts)

    assert asyncio.run(built.run(cycles=cycles, on_cycle_start=on_cycle_start, now=clock)) == cycles
    return seen, stamps, stage


def test_the_totals_are_written_every_save_interval_and_on_stop_and_a_restart_carries_on_from_the_last_cycle(
        tmp_path):
    path = tmp_path / "cost-totals.json"
    clock = ManualClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    with run_fleet("a1566:2", base="127.74.0.1", seed=3) as fleet:
        seen, stamps, stage = collect(fleet.addresses, tmp_path, clock, 8)
        final = stage.totals
        assert final is not None and final.as_of == stamps[-1]

        # As each cycle starts: nothing before the first totals (cycle 2's), then those until a save
        # interval later (cycle 7's): not rewritten by cycles 3 to 6 or 8.
        as_of = [None if s is None else s[0] for s in seen]
        assert as_of == [None, None] + [stamps[1]] * 5 + [stamps[6]]
        # On stop the file holds the last cycle's totals, exactly: the third write of the run.
        assert totals_store.load(path) == final
        writes = {s[1] for s in seen if s is not None} | {path.stat().st_mtime_ns}
        assert len(writes) == 3

        # A restart after the stop (2 min later) starts from those totals; the gap is not counted.
        clock.next = stamps[-1] + timedelta(minutes=2)
        amounts: list = []
        restarted = CollectorConfig.model_validate({
            "site": "s1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5, "spool": {"directory": tmp_path},
            "economics": ECONOMICS, "network": NETWORK})
        built = pipeline.build(restarted, sinks=[], service_mode=True)
        again = next(s for s in built.stages if type(s).__name__ == "CostStage")
        assert again.totals == final

        def on_cycle_start(cycle) -> None:
            amounts.append((again.totals.today, again.totals.month_to_date))

        assert asyncio.run(built.run(cycles=2, on_cycle_start=on_cycle_start, now=clock)) == 2
    assert amounts[1] == (final.today, final.month_to_date)  # the restart's first cycle integrated nothing
    resumed = totals_store.load(path)
    assert resumed == again.totals and resumed.as_of == clock.next - STEP
    site_kwh = [sum(t.energy_kwh for t in totals.month_to_date.values()) for totals in (final, resumed)]
    assert site_kwh[1] > site_kwh[0]


def test_hashfleet_collect_ends_with_the_file_holding_the_last_cycles_totals(tmp_path):
    """Three cycles a second apart: the first totals (cycle 2's) are written at once, cycle 3's only
    because the run stops."""
    spool, site = tmp_path / "spool", tmp_path / "spool" / "s3"
    config = tmp_path / "c.yaml"
    config.write_text(f"site: s3\neconomics: {json.dumps(ECONOMICS)}\nnetwork: {json.dumps(NETWORK)}\n")
    env = local_history_env(spool)
    with run_fleet("a1566:1", base="127.74.1.1", seed=4) as fleet:
        run = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", fleet.addresses[0],
                              "--cycles", "3", "--interval", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "cannot save running totals" not in run.stderr
    cycles = sorted(p.time for b in list_batches(site) for p in map(parse_line, b.read()) if p.measurement == "collector")
    assert len(cycles) == 3
    saved = totals_store.load(site / "cost-totals.json")
    assert saved is not None and saved.as_of.timestamp() == cycles[-1]
