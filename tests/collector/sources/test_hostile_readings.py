"""Issue 13: what a miner reports is hostile until checked. Each attack runs against the real
collector: simulated Avalons over real TCP serving garbage in their device strings (the
`device_keys` fault), the real InfluxDB and Mosquitto, `hashfleet collect` as a process. What the
good miners must keep: a point every cycle, and a site cost per BTC that is finite and equal to
what the good miners alone give."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from datetime import datetime, timezone

import pytest
from tests.support import HASHFLEET
from tests.collector.mqtt_support import Publisher, RunningCollector, mqtt_config, unique

from collector.stages import cost_engine as cost
from collector import pipeline
from models import CollectorConfig, MinerSample, MinerState, NetworkFeedConfig, SampleSource, SiteEconomics
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac

ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1, "opex_usd_month": 3000}
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
CONFIG = ("economics: {tariff: {kind: flat, usd_per_kwh: 0.05}, pue: 1.1, opex_usd_month: 3000}\n"
          "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
          " btc_price_usd: 95000}}\n")

# Device-string values real firmware must never send, each with the field it would poison.
HOSTILE = {
    "ghs_inf": ({"GHSspd": "inf"}, "hashrate_ths"),
    "ghs_1e300": ({"GHSspd": "1e300"}, "hashrate_ths"),
    "ghs_negative": ({"GHSspd": "-5"}, "hashrate_ths"),
    "ghs_denormal": ({"GHSspd": "1e-297"}, "hashrate_ths"),  # 1e-300 TH/s: J/TH 3.7e303 (trial H, L5)
    "wallpower_100MW": ({"WALLPOWER": "99999999"}, "power_w"),
    "fan1_inf": ({"Fan1": "inf"}, "fans_rpm"),
    "million_boards": ({"MGHS": " ".join(["1"] * 1_000_000)}, None),  # a 2 MB reply
}


def collect(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HASHFLEET, "collect", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def site_cost_of(samples: list[MinerSample], ts: datetime, site_miners: int | None = None) -> float:
    """The site's all-in cost per BTC from `samples` alone, each carrying its share of the fixed costs of a
    site of `site_miners` (the miners left out carry none of theirs: docs/cost.md)."""
    economics = SiteEconomics.model_validate(ECONOMICS)
    if site_miners is not None:
        economics = economics.model_copy(update={"opex_usd_month": economics.opex_usd_month * len(samples) / site_miners})
    network = NetworkFeedConfig.model_validate(NETWORK).static
    return cost.site_cost("lab", samples, economics, network, ts).site.all_in_cost_per_btc


def test_hostile_replies_cost_only_their_own_fields_and_good_miners_keep_points_and_cost(
        influxdb, influx_bucket, tmp_path):
    config = tmp_path / "lab.yaml"
    config.write_text("site: lab\n" + CONFIG)
    with run_fleet(f"a1566:{2 + len(HOSTILE)}", base="127.48.0.1:0", seed=13) as fleet:
        good, hostile = fleet.miners[:2], dict(zip(HOSTILE, fleet.miners[2:]))
        for name, miner in hostile.items():
            miner.set_faults(device_keys=HOSTILE[name][0])
        result = collect("--config", str(config), "--miners", ",".join(fleet.addresses), "--cycles", "3",
                         "--interval", "1", env={"INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org,
                                                 "INFLUX_BUCKET": influx_bucket, "INFLUX_TOKEN": influxdb.token})
        assert result.returncode == 0, result.stderr[-3000:]
        fan1 = hostile["fan1_inf"]
        fan1_truth = fan1.last_served
    ids = {m: format_mac(m.mac) for m in fleet.miners}
    # Every id is the MAC, the million-board miner's too: identification read it from `version`
    # before its estats were ever refused.

    # Every miner, hostile or not, has its point in each of the 3 cycles.
    counts = {r["miner"]: r["count"] for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner",
                                                             influx_bucket)}
    assert counts == {ids[m]: 3 for m in fleet.miners}
    rows = influxdb.query("SELECT * FROM miner", influx_bucket)
    by_miner: dict[str, list[dict]] = {}
    for row in rows:
        by_miner.setdefault(row["miner"], []).append(row)
    for miner in good:
        assert all(r["state"] == "mining" and r["hashrate_ths"] > 100 for r in by_miner[ids[miner]])
    for name, miner in hostile.items():
        keys, field = HOSTILE[name]
        # A refused hashrate leaves unknown whether it hashes (error), as does a reply too big to read;
        # a refused power or fan costs that field, not the state of a unit that hashes.
        hashing_known = field in ("power_w", "fans_rpm")
        for row in by_miner[ids[miner]]:
            assert row["state"] == ("mining" if hashing_known else "error"), name
            assert (field in row["error"]) if field else "cap" in row["error"], row
    assert all(r["hashrate_ths"] is None for m in ("ghs_inf", "ghs_1e300", "ghs_negative", "ghs_denormal")
               for r in by_miner[ids[hostile[m]]])
    # Fan1[inf] cost that fan only: the hashrate and power are what the simulator served.
    last_fan1 = max(by_miner[ids[fan1]], key=lambda r: r["time"])
    assert last_fan1["hashrate_ths"] == pytest.approx(fan1_truth.hashrate_ths, abs=0.01)
    assert last_fan1["power_w"] == fan1_truth.power_w
    boards = influxdb.query("SELECT count(chips_ok) FROM miner_board GROUP BY miner", influx_bucket)
    assert {r["miner"]: r["count"] for r in boards}.get(ids[hostile["million_boards"]], 0) == 0
    assert sum(r["count"] for r in boards) <= 3 * 3 * len(fleet.miners)

    # The site's cost per BTC each cycle: finite, and what the miners whose hashrate and power came
    # through (the good ones and the Fan1 one) give on their own.
    costed = [ids[m] for m in (*good, fan1)]
    sites = influxdb.query("SELECT all_in_cost_per_btc, incomplete, miners FROM cost WHERE scope = 'site'",
                           influx_bucket)
    assert len(sites) == 3
    for site in sites:
        ts = datetime.fromtimestamp(site["time"] / 1e9, timezone.utc)
        readings = [next(r for r in by_miner[m] if r["time"] == site["time"]) for m in costed]
        alone = [MinerSample(miner=m, host="x", site="lab", ts=ts, state=MinerState.MINING, source=SampleSource.AVALON,
                             hashrate_ths=r["hashrate_ths"], power_w=r["power_w"]) for m, r in zip(costed, readings)]
        assert site["all_in_cost_per_btc"] == pytest.approx(site_cost_of(alone, ts, len(fleet.miners)), rel=1e-9)
        assert 0 < site["all_in_cost_per_btc"] < 1e7
        assert site["incomplete"] == 1 and site["miners"] == len(fleet.miners)


def test_mqtt_telemetry_with_a_hashrate_of_1e308_5e_324_or_1e400_is_refused_and_kept_out_of_cost(mosquitto, caplog):
    site = unique("hostile")
    topic = f"sim/{site}/+/telemetry"
    with run_fleet("a1566:1", base="127.48.1.1:0", seed=14) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "mqtt": mqtt_config(mosquitto.host, mosquitto.port,
                                ingest=[{"topic": topic, "kind": "miner_telemetry"}]),
        })
        publisher = Publisher(mosquitto.host, mosquitto.port)
        try:
            publisher.publish(f"sim/{site}/liar/telemetry", {"hashrate_ths": 1e308, "power_w": 3000.0})
            publisher.publish(f"sim/{site}/overflow/telemetry", b'{"hashrate_ths": 1e400, "power_w": 3000}')
            # A denormal: the cost stage logged an ERROR on it (efficiency_j_th inf), trial H L5.
            publisher.publish(f"sim/{site}/tiny/telemetry", b'{"hashrate_ths": 5e-324, "power_w": 3000}')
            mqtt_miners = {"liar", "tiny", "overflow"}
            result = collector.next_result(lambda r: r.cost is not None and mqtt_miners <= {s.miner for s in r.samples},
                                           what="a costed cycle with the MQTT miners")
            liar = next(s for s in result.samples if s.miner == "liar")
            assert liar.state is MinerState.ERROR and liar.hashrate_ths is None and "hashrate_ths" in liar.unusable
            assert any("1e+308" in e and "not a plausible reading" in e for e in liar.errors)
            tiny = next(s for s in result.samples if s.miner == "tiny")
            assert tiny.state is MinerState.ERROR and tiny.hashrate_ths is None and "hashrate_ths" in tiny.unusable
            assert any("4.94066e-324" in e and "not a plausible reading" in e for e in tiny.errors)
            assert not [r for r in caplog.records if "cost figures failed" in r.getMessage()]
            # 1e400 is inf in JSON: that field is refused, not the payload (its power is kept).
            overflow = next(s for s in result.samples if s.miner == "overflow")
            assert overflow.state is MinerState.ERROR and overflow.hashrate_ths is None and overflow.power_w == 3000
            assert overflow.unusable == ["hashrate_ths"] and overflow.errors == [
                "hashrate_ths: Input should be a finite number, got inf"]
            assert collector.bridge.ingest.stats()["dropped"] == {}
            polled = [s for s in result.samples if s.source is SampleSource.AVALON]
            assert len(polled) == 1 and polled[0].state is MinerState.MINING
            site_cost = result.cost.site
            economics = SiteEconomics.model_validate(ECONOMICS)
            alone = cost.site_cost(site, polled, economics, result.network, result.ts).site
            assert site_cost.all_in_cost_per_btc == pytest.approx(alone.all_in_cost_per_btc, rel=1e-9)
            assert site_cost.hashrate_ths == pytest.approx(polled[0].hashrate_ths)
            assert "hashrate_ths" in site_cost.missing_inputs  # the liars are counted as incomplete
            for name in ("liar", "tiny", "overflow"):
                liar_cost = next(c for c in result.miner_costs if c.miner == name)
                assert liar_cost.hashrate_ths == 0 and liar_cost.power_w == 0 and liar_cost.missing_inputs
        finally:
            publisher.close()
            collector.close()


POISONS = {
    "null_amounts": lambda data: data["month_to_date"][next(iter(data["month_to_date"]))].update(energy_kwh=None),
    "string_and_negative": lambda data: data.update(peak_kw="12", demand_usd=-5),
    "as_of_past_any_clock": lambda data: data.update(as_of="2100-01-01T00:00:00+00:00"),
}  # more in test_cost_engine.py (the loader alone)


@pytest.mark.parametrize("poison", POISONS)
def test_a_poisoned_totals_file_is_set_aside_and_the_service_restarts_cleanly(tmp_path, poison):
    config = tmp_path / "site.yaml"
    config.write_text("site: poison\n" + CONFIG)
    spool = tmp_path / "spool"
    env = {"HASHFLEET_SPOOL_DIR": str(spool)}
    with run_fleet("a1246:1", base="127.48.2.1:0", seed=15) as fleet:
        first = collect("--config", str(config), "--miners", fleet.addresses[0], "--cycles", "2", "--interval", "1",
                        env=env)
        assert first.returncode == 0, first.stderr[-2000:]
        path = spool / "poison" / "cost-totals.json"
        data = json.loads(path.read_text())
        POISONS[poison](data)
        path.write_text(json.dumps(data))
        restarts = [collect("--config", str(config), "--miners", fleet.addresses[0], "--cycles", "2",
                            "--interval", "1", env=env) for _ in range(2)]  # restarted, and again: no crash loop
    for run in restarts:
        assert run.returncode == 0, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
    assert "running cost totals in" in restarts[0].stderr and "it is unusable" in restarts[0].stderr
    assert "unusable" not in restarts[1].stderr  # the first restart wrote usable totals
    assert (spool / "poison" / "cost-totals.json.unusable.1").exists()
    fresh = json.loads(path.read_text())  # written anew, and usable
    assert all(isinstance(v, float) and v >= 0 for t in fresh["month_to_date"].values() for v in t.values())


def test_two_miners_claiming_one_mac_are_both_kept_and_flagged(caplog):
    # The same seed and index give the same MAC: cloned control-board firmware.
    with run_fleet("a1566:1", base="127.48.3.1:0", seed=16) as one, \
            run_fleet("a1566:1", base="127.48.3.2:0", seed=16) as clone:
        assert one[0].mac == clone[0].mac
        config = CollectorConfig(miners=[one.addresses[0], clone.addresses[0]], interval_s=1, timeout_s=2.0)
        sink = Cycles()
        with caplog.at_level(logging.WARNING, logger="collector.identity"):
            asyncio.run(pipeline.build(config, sinks=[sink]).run(cycles=2))
        first, second = sink.cycles
    mac = first.samples[0].mac
    for result in (first, second):
        ids = sorted(s.miner for s in result.samples)
        assert len(set(ids)) == 2 and mac in ids  # one keeps the MAC, the other its host:port
        rival = next(s for s in result.samples if s.miner != mac)
        assert rival.miner == f"{rival.host}:{rival.port}" and rival.mac == mac
        assert any(f"duplicate miner id {mac}" in e for e in rival.errors)
        assert all(s.state is MinerState.MINING for s in result.samples)  # the readings are fine
    owner = next(s for s in second.samples if s.miner == mac)
    assert any(f"duplicate miner id {mac}" in e for e in owner.errors)  # named from the second cycle on
    assert len([r for r in caplog.records if "duplicate miner id" in r.getMessage()]) == 1  # logged once


class Cycles:
    """A sink that keeps every cycle it is handed."""

    def __init__(self) -> None:
        self.cycles = []

    async def write_miners(self, part) -> None: ...

    async def write(self, cycle) -> None:
        self.cycles.append(cycle)

    def close(self) -> None: ...
