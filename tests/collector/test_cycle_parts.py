"""A cycle reaches the sinks a slice of miners at a time (collector.service), then its end.

What must hold whatever the slicing: every miner's figures arrive once and in order, the roll-ups
equal the engine's whole-list `site_cost`, and the spool's batches hold exactly the lines of the
whole cycle with the collector's own point last.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from datetime import datetime, timedelta, timezone

import pytest

from collector import pipeline, service
from collector.cycle import Cycle, MinersPart
from collector.sinks import points
from collector.sinks.local_history import LocalHistorySink
from collector.sinks.spool import Spool
from collector.stages import cost_engine as cost
from collector.stages.cost_stage import CostStage
from models import (
    CollectorConfig,
    CostSample,
    FlatTariff,
    MinerSample,
    MinerState,
    NetworkFeedConfig,
    SampleSource,
    SiteEconomics,
)
from models import schema
from simulators.fleet import run_fleet
from tests.support import deliver

TS = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
ECONOMICS = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.05), opex_usd_month=900, pue=1.1)
NETWORK = NetworkFeedConfig.model_validate({"source": "static", "static": {
    "difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03, "btc_price_usd": 90_000}})


def samples(n: int, ts: datetime = TS) -> list[MinerSample]:
    out = []
    for i in range(n):
        if i % 5 == 4:  # every fifth miner is offline: it still carries its share of the fixed costs
            out.append(MinerSample.offline(miner=f"10.0.0.{i}:4028", host=f"10.0.0.{i}", port=4028, site="s1", ts=ts,
                                           source=SampleSource.AVALON, reason="no answer"))
        else:
            ths = 100 + i
            out.append(MinerSample(miner=f"m{i:03d}", host=f"10.0.0.{i}", site="s1", ts=ts, state=MinerState.MINING,
                                   source=SampleSource.AVALON, hashrate_ths=ths, power_w=ths * 18.5))
    return out


class Recording:
    def __init__(self) -> None:
        self.parts: list[MinersPart] = []
        self.ends: list[Cycle] = []

    async def write_miners(self, part: MinersPart) -> None:
        self.parts.append(part)

    async def write(self, cycle: Cycle) -> None:
        self.ends.append(cycle)

    def close(self) -> None:
        pass


def costing(stage: CostStage, fleet: list[MinerSample], ts: datetime = TS):
    """The stage's work on a cycle of `fleet` at `ts`, every miner announced as carrying fixed costs."""
    cycle = Cycle("s1", ts, network=NETWORK.static)
    for sample in fleet:
        cycle.expect(sample.miner)
    return stage.costing(cycle)


@pytest.mark.parametrize("part_miners", [1, 7, 25, 1000])
def test_parts_carry_every_miner_once_in_order_and_the_rollup_matches_the_whole_list(monkeypatch, part_miners):
    monkeypatch.setattr(service, "PART_MINERS", part_miners)
    fleet = samples(25)
    sink = Recording()

    asyncio.run(deliver(fleet, [sink], [CostStage("s1", ECONOMICS)], network=NETWORK, ts=TS))
    assert [len(p.samples) for p in sink.parts] == [min(part_miners, 25 - i) for i in range(0, 25, part_miners)]
    assert [s for p in sink.parts for s in p.samples] == fleet
    whole = cost.site_cost("s1", fleet, ECONOMICS, network_snapshot(), TS)
    assert [c for p in sink.parts for c in p.costs] == whole.miners
    [end] = sink.ends
    assert end.cost.site == whole.site  # same sums in the same order: equal, not just close
    assert end.cost.fleet == cost.fleet_cost([whole.site], TS)


def network_snapshot():
    return NETWORK.static


def test_no_economics_means_parts_without_costs_and_an_end_without_rollups():
    sink = Recording()
    asyncio.run(deliver(samples(3), [sink], ts=TS))
    assert [p.costs for p in sink.parts] == [None] and sink.ends[0].cost is None


def test_an_empty_cycle_still_reaches_the_sinks_with_the_sites_fixed_costs():
    sink = Recording()

    asyncio.run(deliver([], [sink], [CostStage("s1", ECONOMICS)], network=NETWORK, ts=TS))
    assert sink.parts == []
    assert sink.ends[0].cost.site.opex_usd_day == pytest.approx(900 / (365.25 / 12))


def test_a_failing_sink_does_not_stop_the_others(caplog):
    class Broken(Recording):
        async def write_miners(self, part: MinersPart) -> None:
            raise OSError("disk full")

    broken, fine = Broken(), Recording()
    asyncio.run(deliver(samples(4), [broken, fine], ts=TS))
    assert len(fine.parts) == 1 and len(fine.ends) == 1
    assert "Broken: disk full" in caplog.text


@pytest.mark.parametrize("part_miners, batch_lines", [(1000, 5000), (4, 10), (4, 7), (3, 1)])
def test_spool_batches_hold_the_whole_cycle_at_most_batch_lines_each_and_end_with_the_collector_point(
        tmp_path, monkeypatch, part_miners, batch_lines):
    monkeypatch.setattr(service, "PART_MINERS", part_miners)
    fleet = samples(16)
    sink = LocalHistorySink(Spool(tmp_path / "spool"))
    sink.batch_lines = batch_lines

    try:
        asyncio.run(deliver(fleet, [sink], [CostStage("s1", ECONOMICS)], network=NETWORK, ts=TS))
        files = sink.spool.batches()
    finally:
        sink.close()
    batches = [gzip.decompress(f.path.read_bytes()).decode().splitlines() for f in files]
    lines = [line for batch in batches for line in batch]
    assert all(len(batch) <= batch_lines for batch in batches)
    assert len(batches) == -(-len(lines) // batch_lines)  # full batches but the last
    assert lines[-1].startswith("collector,")
    assert f"points_written={len(lines)}i" in lines[-1]
    assert sum(line.startswith("miner,") for line in lines) == 16
    miner_costs = [line for line in lines if line.startswith("cost,") and "scope=miner" in line]
    assert len(miner_costs) == 16
    assert sum(line.startswith("cost,") and "scope=site" in line for line in lines) == 1


def test_a_miner_cost_point_carries_the_per_miner_fields_only():
    [figures] = costing(CostStage("s1", ECONOMICS), samples(1)).miners(samples(1))
    line = points.miner_cost_point(figures, int(TS.timestamp()), meter_gap_w=12.5)
    written = {kv.split("=")[0] for kv in line.split(" ")[1].split(",")}
    expected = set(schema.MINER_COST_FIELDS) | {"stale", "incomplete", "power_meter_gap_w"}
    # today's totals start with the running totals (the second cycle): absent here, never other fields
    assert written <= expected and expected - written <= {"btc_today", "all_in_usd_today"}
    assert "hashprice_usd_ph_day" not in written and "hashrate_ths" not in written


def test_a_miners_today_is_its_total_up_to_the_previous_cycle_and_the_sites_includes_this_one():
    """Per-miner figures go out while the poll runs, before the cycle's interval can be integrated
    (that needs every miner: the demand charge is shared by energy), so a miner's today/month lag one
    cycle; the site's, made at the end, do not."""
    stage = CostStage("s1", ECONOMICS)
    sites, miner_figures = [], []
    for k in range(3):
        fleet = samples(3, TS + timedelta(seconds=60 * k))
        work = costing(stage, fleet, fleet[0].ts)
        miner_figures.append(work.miners(fleet))
        sites.append(work.finish(fleet).site)
    # cycle 1 starts the clock, cycle 2 integrates the first interval, cycle 3 the second
    assert sites[0].all_in_usd_today is None and all(c.btc_today is None for c in miner_figures[1])
    assert sites[1].all_in_usd_today > 0 and sites[2].all_in_usd_today > sites[1].all_in_usd_today
    assert sum(c.all_in_usd_today for c in miner_figures[2]) == pytest.approx(sites[1].all_in_usd_today)
    assert sum(c.btc_today for c in miner_figures[2]) == pytest.approx(sites[1].btc_today)


def test_the_collect_loop_hands_samples_over_while_the_poll_still_waits_on_a_slow_miner(monkeypatch):
    """Against simulated miners over TCP: parts of 2 samples, with their cost figures, reach the sink
    as they arrive, before a miner that answers only after 2 s is in; every miner once; the site's
    roll-up is the sum of what went out."""
    monkeypatch.setattr(service, "PART_MINERS", 2)
    with run_fleet("a1566:5", base="127.56.0.1", seed=3) as fleet:
        fleet[4].set_faults(slow_s=2.0)
        sink = collect_two_cycles(fleet.addresses, NETWORK.model_dump())
    for cycle in range(2):
        events = sink.cycles[cycle]
        sample_parts = [e for e in events if e[0] == "samples"]
        cost_parts = [e for e in events if e[0] == "costs"]
        [end] = [e for e in events if e[0] == "end"]
        assert events[-1] is end
        assert sorted(m for e in sample_parts for m in e[2]) == sorted(m for e in cost_parts for m in e[2])
        assert len({m for e in sample_parts for m in e[2]}) == 5
        # samples and their cost figures went out together, before the slow miner had answered
        assert [e[2] for e in sample_parts] == [e[2] for e in cost_parts]
        assert end[1] - sample_parts[0][1] > 1.5 and end[1] - cost_parts[0][1] > 1.5
        assert sink.sites[cycle].power_w == pytest.approx(sink.power[cycle])


def collect_two_cycles(addresses: list[str], network: dict) -> Timeline:
    """The collect loop as `hashfleet collect` runs it (no MQTT), two cycles, into a Timeline."""
    sink = Timeline()
    config = CollectorConfig.model_validate({
        # The deadline lets the 2 s miner answer: what is under test is the poll handing parts over meanwhile.
        "site": "s1", "miners": addresses, "interval_s": 1, "timeout_s": 5, "cycle_deadline_s": 5,
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}, "network": network})

    assert asyncio.run(pipeline.build(config, sinks=[sink]).run(cycles=2)) == 2
    return sink


class Timeline:
    """What reached the sink, when, per cycle: ("samples" | "costs" | "end", monotonic s, miner ids);
    and per cycle the site's roll-up and the sum of its miners' (metered or reported) power."""

    def __init__(self) -> None:
        self.cycles: list[list[tuple[str, float, list[str]]]] = [[]]
        self.sites: list[CostSample] = []
        self.power: list[float] = [0.0]
        self.results: list[Cycle] = []

    async def write_miners(self, part: MinersPart) -> None:
        now = time.monotonic()
        if part.samples:
            self.cycles[-1].append(("samples", now, [s.miner for s in part.samples]))
        if part.costs:
            self.cycles[-1].append(("costs", now, [c.miner for c in part.costs]))
            self.power[-1] += sum(c.power_w for c in part.costs)

    async def write(self, cycle: Cycle) -> None:
        self.cycles[-1].append(("end", time.monotonic(), []))
        self.cycles.append([])
        self.results.append(cycle)
        if cycle.cost is not None:
            self.sites.append(cycle.cost.site)
        self.power.append(0.0)

    def close(self) -> None:
        pass


def test_without_network_state_the_cycle_still_reaches_the_sinks_with_no_cost_figures(caplog):
    """The network feed is down (nothing listens on its port) and there is no static fallback: every
    sample is still written, no cost figures are made up, and the log says why once per cycle."""
    dead = "http://127.0.0.1:9/x"
    network = {"source": "http", "difficulty_url": dead, "height_url": dead, "fees_url": dead, "price_url": dead,
               "timeout_s": 1}
    with run_fleet("a1566:3", base="127.56.1.1", seed=4) as fleet:
        sink = collect_two_cycles(fleet.addresses, network)
    for cycle in range(2):
        events = sink.cycles[cycle]
        assert sorted(m for e in events if e[0] == "samples" for m in e[2]) == sorted(
            s.miner for s in sink.results[cycle].samples)
        assert not [e for e in events if e[0] == "costs"] and sink.results[cycle].cost is None
    assert caplog.text.count("no cost figures this cycle") == 2


def test_a_cost_stage_that_fails_costs_the_cycles_figures_never_the_service_or_its_samples(caplog, tmp_path):
    """A network state no check refused (difficulty 1e-300: an infinite BTC a day) makes every cost
    figure non-finite. Both cycles run, every sample reaches the sink, no figure is made up, the
    failure is logged, and the running totals are neither advanced nor saved with an infinity."""
    network = {"source": "static", "static": {"difficulty": 1e-300, "height": 925000, "btc_price_usd": 95000}}
    with run_fleet("a1566:2", base="127.56.2.1", seed=5) as fleet:
        sink = Timeline()
        config = CollectorConfig.model_validate({
            "site": "s1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5, "spool": {"directory": tmp_path},
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}, "network": network})
        assert asyncio.run(pipeline.build(config, sinks=[sink], service_mode=True).run(cycles=2)) == 2
    for cycle in range(2):
        events = sink.cycles[cycle]
        assert len([m for e in events if e[0] == "samples" for m in e[2]]) == 2
        assert not [e for e in events if e[0] == "costs"] and sink.results[cycle].cost is None
    assert "cost figures of the cycle" in caplog.text and "none are written for it" in caplog.text
    assert "running totals not advanced" in caplog.text
    assert not (tmp_path / "cost-totals.json").exists()  # never written with an infinity in it


def test_a_miner_id_unseen_longer_than_forget_after_leaves_the_saved_totals_and_the_site_keeps_its_amounts(tmp_path):
    """Two simulated miners for two cycles; then the collector restarts with one of them removed
    from the config. Once the other has been unseen for longer than forget_after_s, its id is gone
    from the totals file, and what it used stays in the site's month."""
    import json

    path = tmp_path / "cost-totals.json"
    with run_fleet("a1566:2", base="127.56.3.1", seed=6) as fleet:
        def collect(addresses: list[str], cycles: int) -> None:
            config = CollectorConfig.model_validate({
                "site": "s1", "miners": addresses, "interval_s": 1, "timeout_s": 5, "spool": {"directory": tmp_path},
                "forget_unseen_miners_h": 2.0 / 3600,
                "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}, "network": NETWORK.model_dump()})
            built = pipeline.build(config, sinks=[Recording()], service_mode=True)
            assert asyncio.run(built.run(cycles=cycles)) == cycles

        collect(fleet.addresses, 2)
        before = json.loads(path.read_text())
        kept, gone = (":".join(m.mac[i:i + 2] for i in range(0, 12, 2)).upper() for m in fleet.miners)
        assert {kept, gone} <= set(before["month_to_date"])
        collect(fleet.addresses[:1], 4)
    after = json.loads(path.read_text())
    assert gone not in after["month_to_date"] and gone not in after["last_seen"] and gone not in after["today"]
    assert set(after["month_to_date"]) == {kept, ""}
    assert after["month_to_date"][""]["energy_kwh"] == pytest.approx(before["month_to_date"][gone]["energy_kwh"])
    site_energy = sum(t["energy_kwh"] for t in after["month_to_date"].values())
    assert site_energy > sum(t["energy_kwh"] for t in before["month_to_date"].values())


def test_running_totals_that_cannot_be_saved_are_logged_once_not_every_cycle(tmp_path, caplog):
    # A spool directory that stays unwritable logged an ERROR every cycle: 8,640 lines a day at 10 s.
    missing = tmp_path / "gone"  # never created: every save fails
    with run_fleet("a1566:1", base="127.56.4.1", seed=6) as fleet:
        config = CollectorConfig.model_validate({
            "site": "s1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}}, "network": NETWORK.model_dump()})
        built = pipeline.build(config, sinks=[Recording()], service_mode=False)
        cost_stage = next(s for s in built.stages if type(s).__name__ == "CostStage")
        cost_stage.totals_path = missing / "cost-totals.json"
        assert asyncio.run(built.run(cycles=4)) == 4
    assert caplog.text.count("cannot save running totals") == 1
