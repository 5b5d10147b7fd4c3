"""A hashing miner that reports no power (stock Antminer firmware puts none on the wire) is left out of
cost by default; with `economics.estimate_missing_power: nameplate` it is costed at its model's nameplate
draw scaled by its hashrate, and marked (trial P H1: 88 of 175 miners, all stock S19j Pro or S21, were left
out and the site's $/BTC covered 46 % of its hashrate). A power reading the source refused is never
estimated, and an outlet meter's reading wins over an estimate.

Real parts: simulated stock Antminers over TCP and HTTP, `hashfleet collect` and `hashfleet report`
(the history they leave in the spool), a tampering proxy for a refused reading, Mosquitto and the
simulated PDU for the meter (docs/cost.md "Estimating a missing draw").
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from collector import history, pipeline
from collector.sources.polled_miners import PolledMiners
from collector.stages import cost_engine as cost
from collector.terminal import cost_summary, estimated_note, plain_console
from models import CollectorConfig, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics, schema
from models.hardware import nameplate
from simulators.fleet import run_fleet
from simulators.mqtt_meter import MqttPowerMeter, format_mac
from tests.collector.sources.tampering_proxy import TamperingProxy, rewrite
from tests.collector.stages.health_support import Captured
from tests.support import HASHFLEET, until

SITE = "est"
STOCK = "s19jpro:2,s21:1"  # each on its own address: the web UI is on port 80
CYCLES = 3
STATIC = {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02, "btc_price_usd": 95_000}
TARIFF = {"kind": "flat", "usd_per_kwh": 0.045}
ON = {"estimate_missing_power": "nameplate"}


@pytest.fixture(scope="module")
def stock():
    with run_fleet(STOCK, base="127.57.0.1", seed=31) as fleet:
        yield fleet


def _collect(fleet, root: Path, economics: dict) -> Path:
    """CYCLES cycles of `hashfleet collect` into root/spool; the config's path."""
    config = root / "hashfleet.yaml"
    config.write_text(yaml.safe_dump({
        "site": SITE, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5,
        "economics": {"tariff": TARIFF, "pue": 1.08, **economics},
        "network": {"source": "static", "static": STATIC}}))
    done = _hashfleet("collect", "--config", str(config), "--cycles", str(CYCLES), spool=root / "spool")
    assert done.returncode == 0, done.stderr
    return config


def _hashfleet(*args: str, spool: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    environment.update(HASHFLEET_SPOOL_DIR=str(spool), COLUMNS="200")
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=120, env=environment)


def _points(spool: Path) -> list:
    return list(history.spool_points(spool / SITE, 0, (schema.MINER.name, schema.COST.name)))


@pytest.fixture(scope="module")
def off(stock, tmp_path_factory):
    root = tmp_path_factory.mktemp("off")
    config = _collect(stock, root, {})
    return root, config, _points(root / "spool")


@pytest.fixture(scope="module")
def on(stock, tmp_path_factory):
    root = tmp_path_factory.mktemp("on")
    config = _collect(stock, root, ON)
    return root, config, _points(root / "spool")


def _sites(points) -> list:
    return [p for p in points if p.measurement == schema.COST.name and p.tags.get("scope") == "site"]


def _miner_costs(points) -> list:
    return [p for p in points if p.measurement == schema.COST.name and p.tags.get("scope") == "miner"]


def test_by_default_a_stock_antminer_is_left_out_as_documented(off):
    root, config, points = off
    sites = _sites(points)
    assert len(sites) == CYCLES
    for site in sites:
        assert site.fields["miners"] == 3 and site.fields["miners_left_out"] == 3 and site.fields["incomplete"] == 1
        assert site.fields["miners_estimated"] == 0 and site.fields["btc_per_day_net"] == 0
    for point in _miner_costs(points):
        assert point.fields["incomplete"] == 1 and "estimated_power_w" not in point.fields
    report = _hashfleet("report", "--config", str(config), "--since", "1h", spool=root / "spool")
    assert report.returncode == 0, report.stderr
    assert "left out of the site's totals" in report.stdout and "estimated in" not in report.stdout


def test_opted_in_a_stock_antminer_is_costed_at_its_nameplate_draw_and_marked(on):
    root, config, points = on
    miners = {(p.time, p.tags["miner"]): p for p in points if p.measurement == schema.MINER.name}
    estimates = {}
    for (second, miner), point in miners.items():
        assert point.fields["state"] == "mining" and "power_w" not in point.fields  # stock firmware: no power
        plate = nameplate(point.tags["model"])
        estimates[second, miner] = plate.power_w * point.fields["hashrate_ths"] / plate.hashrate_ths
    for point in _miner_costs(points):
        assert point.fields["incomplete"] == 0 and point.fields["btc_per_day_net"] > 0
        assert point.fields["estimated_power_w"] == pytest.approx(estimates[point.time, point.tags["miner"]])
    sites = _sites(points)
    assert len(sites) == CYCLES
    for site in sites:
        drawn = sum(w for (second, _), w in estimates.items() if second == site.time)
        assert site.fields["miners_estimated"] == 3 and site.fields["miners_left_out"] == 0
        assert site.fields["incomplete"] == 0  # nothing left out, but not a fully read site either:
        assert site.fields["estimated_power_w"] == pytest.approx(site.fields["power_w"])
        assert site.fields["power_w"] == pytest.approx(drawn)  # an S19j Pro: ~3 kW, an S21: ~3.5 kW
        assert 9_000 < drawn < 10_500
        assert site.fields["energy_cost_per_btc"] > 0 and site.fields["all_in_cost_per_btc"] > 0

    done = _hashfleet("report", "--config", str(config), "--since", "1h", "--json", spool=root / "spool")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["cycles_estimated"] == CYCLES and report["cycles_incomplete"] == 0
    assert report["power_avg_w"] == pytest.approx(sum(estimates.values()) / CYCLES)  # the estimate is in the kWh
    assert all(m["estimated_pct"] == 100 and m["left_out_pct"] == 0 for m in report["miners"])
    text = _hashfleet("report", "--config", str(config), "--since", "1h", spool=root / "spool")
    assert f"estimated in {CYCLES} of {CYCLES} cycles: counted at their model's nameplate draw" in text.stdout
    assert "left out of the site's totals" not in text.stdout


def test_watch_says_how_many_miners_and_watts_are_an_estimate():
    economics = SiteEconomics(tariff=TARIFF, **ON)
    network = NetworkState(**STATIC)
    now = datetime.now(timezone.utc)
    samples = [MinerSample(miner=f"m{i}", host=f"10.0.0.{i}", site=SITE, ts=now, state=MinerState.MINING,
                           source=SampleSource.ANTMINER, model="Antminer S19j Pro", hashrate_ths=104.0)
               for i in range(2)]
    site = cost.site_cost(SITE, samples, economics, network, now).site
    assert estimated_note(site) == "estimated: 2 miners costed at nameplate W (6.1 of 6.1 kW), not read"
    console = plain_console(width=80, record=True)
    console.print(cost_summary(site, network, compact=True))
    assert "estimated: 2 miners" in console.export_text()


@pytest.fixture(scope="module")
def refused_power():
    """A BOS+ S19j Pro whose tuner reports 1e12 W (refused by the reader as implausible), read through a
    tampering proxy, and the same unit read as served."""
    with run_fleet("bos-s19jpro:1", base="127.57.1.1", seed=32) as fleet:
        with TamperingProxy({"127.57.2.1": fleet.miners[0].host}) as proxy:
            poller = PolledMiners(CollectorConfig(miners=["127.57.2.1"], timeout_s=2.0))
            asyncio.run(poller.refresh())
            proxy.tamper["127.57.2.1"] = rewrite(
                "summary+devs+tunerstatus+fans+temps+devdetails+pools",
                lambda reply: reply["tunerstatus"][0]["TUNERSTATUS"][0].update(ApproximateMinerPowerConsumption=1e12))
            [sample] = asyncio.run(poller.cycle(datetime.now(timezone.utc))).samples
    return sample


def test_a_power_reading_the_source_refused_is_never_estimated(refused_power):
    sample = refused_power
    assert sample.state is MinerState.MINING and sample.hashrate_ths > 0 and sample.unusable == ["power_w"]
    assert nameplate(sample.model) is not None  # an estimate could be made: it must not be
    economics = SiteEconomics(tariff=TARIFF, **ON)
    figures = cost.miner_cost(sample, economics, NetworkState(**STATIC), sample.ts)
    assert figures.miners_estimated == 0 and figures.miners_left_out == 1
    assert figures.power_w == 0 and figures.btc_per_day_net == 0 and "power_w" in figures.missing_inputs


def test_an_outlet_meter_wins_over_the_estimate(stock, mosquitto, tmp_path):
    """Every stock unit on a simulated PDU outlet: the cost counts the meter's watts, estimates none."""
    meter = MqttPowerMeter(list(stock), mosquitto.host, mosquitto.port, prefix=f"est-{tmp_path.name}",
                           rack_size=3).start(periodic=False)
    config = CollectorConfig.model_validate({
        "site": SITE, "miners": stock.addresses, "interval_s": 1, "timeout_s": 5,
        "spool": {"directory": str(tmp_path / "spool")},
        "economics": {"tariff": TARIFF, **ON}, "network": {"source": "static", "static": STATIC},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "discovery": False,
                 "ingest": meter.collector_ingest()[:1]}})
    captured = Captured()
    (tmp_path / "spool").mkdir()
    built = pipeline.build(config, sinks=[captured], service_mode=True)
    live = built.mqtt.live
    ids = [format_mac(m.mac) for m in stock]

    async def go():
        await built.start()
        try:
            meter.publish_once()
            # the ingest applies readings on the loop's thread
            await until(lambda: all(i in live.metered_w for i in ids), 10, "the meter's readings")
            await built.run_cycles(cycles=1)
        finally:
            await built.stop()

    try:
        asyncio.run(go())
    finally:
        meter.stop()
        built.close()
    [cycle] = captured.cycles
    site = cycle.cost.site
    assert site.miners_estimated == 0 and site.estimated_power_w == 0 and site.miners_left_out == 0
    assert site.power_w == pytest.approx(sum(live.metered_w[i].watts for i in ids))
    for figures in (c for part in captured.parts for c in part.costs or ()):
        assert figures.miners_estimated == 0 and figures.power_w == live.metered_w[figures.miner].watts


def test_the_setting_reads_yamls_bare_off_as_the_default_and_refuses_anything_else():
    def load(value: str):
        return SiteEconomics.model_validate(yaml.safe_load(f"tariff: {TARIFF}\nestimate_missing_power: {value}"))
    assert load("off").estimate_missing_power is None  # YAML reads a bare off as False
    assert load("nameplate").estimate_missing_power == "nameplate"
    with pytest.raises(ValueError, match="nameplate"):
        load("guess")
