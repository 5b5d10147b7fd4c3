"""`hashfleet collect` against a mixed simulated fleet and the real InfluxDB."""

import os
import subprocess
from pathlib import Path

import pytest
from tests.support import HASHFLEET

from simulators.fleet import run_fleet

FLEET = "a1246:2,a1566:1,a1466:1,q:1,nano3s:1"


def collect(influxdb, bucket, *args, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": bucket,
           "INFLUX_TOKEN": influxdb.token}
    command = [HASHFLEET, "collect", *args] + (["--config", str(config)] if config else [])
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def test_two_cycles_store_every_miner_with_the_simulators_values(influxdb, influx_bucket, tmp_path):
    with run_fleet(FLEET, base="127.42.0.1:0", seed=5) as fleet:
        result = collect(influxdb, influx_bucket, "--miners", ",".join(m.address for m in fleet),
                         "--cycles", "2", "--interval", "1", "--site", "lab")
        assert result.returncode == 0, result.stderr
        served = {m.mac.upper(): (m, m.last_served) for m in fleet}

    counts = influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)
    assert {r["miner"].replace(":", ""): r["count"] for r in counts} == {mac: 2 for mac in served}

    latest = influxdb.query('SELECT last(*) FROM miner WHERE site = \'lab\' GROUP BY miner, model', influx_bucket)
    assert len(latest) == len(served)
    for row in latest:
        miner, truth = served[row["miner"].replace(":", "")]
        assert row["last_state"] == "mining" and row["last_up"] == 1
        assert row["last_hashrate_ths"] == pytest.approx(truth.hashrate_ths, abs=0.01), miner
        assert row["last_hashrate_avg_ths"] == pytest.approx(truth.hashrate_avg_ths, abs=0.01), miner
        assert row["last_power_w"] == truth.power_w, miner
        assert row["last_temp_chip_max_c"] == truth.temp_chip_max_c, miner
    models = {r["model"] for r in latest}
    assert "AvalonMiner 1466-150" in models or any("1466" in m for m in models)  # pyasic does not know it

    boards = influxdb.query("SELECT count(chips_ok) FROM miner_board GROUP BY miner", influx_bucket)
    assert sum(r["count"] for r in boards) == 2 * sum(len(m.last_served.boards) for m, _ in served.values())
    health = influxdb.query("SELECT miners_polled, miners_failed FROM collector", influx_bucket)
    assert [(h["miners_polled"], h["miners_failed"]) for h in health] == [(6, 0), (6, 0)]


def test_offline_miner_is_written_as_offline_not_silence(influxdb, influx_bucket):
    with run_fleet("a1246:2", base="127.42.1.1:0", seed=6) as fleet:
        fleet[1].set_faults(no_answer=True)
        result = collect(influxdb, influx_bucket, "--miners", ",".join(m.address for m in fleet), "--cycles", "1")
        assert result.returncode == 0, result.stderr
    rows = influxdb.query("SELECT up, state, error FROM miner", influx_bucket)
    assert sorted((r["up"], r["state"]) for r in rows) == [(0, "offline"), (1, "mining")]
    assert "connection refused" in next(r["error"] for r in rows if r["up"] == 0)


def test_cost_figures_are_written_per_miner_site_and_fleet(influxdb, influx_bucket, tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text(
        "site: tx1\n"
        "economics: {tariff: {kind: flat, usd_per_kwh: 0.05}, pue: 1.1, opex_usd_month: 3000}\n"
        "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
        " btc_price_usd: 95000}}\n")
    with run_fleet("a1566:2", base="127.42.2.1:0", seed=7) as fleet:
        result = collect(influxdb, influx_bucket, "--miners", ",".join(m.address for m in fleet), "--cycles", "2",
                         "--interval", "1", config=config)
        assert result.returncode == 0, result.stderr
    rows = influxdb.query("SELECT last(*) FROM cost GROUP BY scope", influx_bucket)
    by_scope = {r["scope"]: r for r in rows}
    assert set(by_scope) == {"miner", "site", "fleet"}
    site = by_scope["site"]
    assert site["last_miners"] == 2 and site["last_cash_cost_per_btc"] > site["last_energy_cost_per_btc"] > 0
    assert site["last_all_in_cost_per_btc"] == pytest.approx(site["last_cash_cost_per_btc"])  # no capex configured
    assert site["last_energy_kwh_today"] > 0  # integrated over the interval between the two cycles
    network = influxdb.query("SELECT last(difficulty) FROM network", influx_bucket)
    assert network[0]["last"] == 1.5e14


def test_a_token_in_the_environment_is_stripped_like_a_token_files(influxdb, influx_bucket):
    # INFLUX_TOKEN with a trailing newline (an env file, a secret rendered into the environment) was sent
    # as it was: every write failed on the header, logged with the token, and collect still exited 0.
    with run_fleet("a1246:1", base="127.42.3.1:0", seed=5) as fleet:
        env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
               "INFLUX_TOKEN": influxdb.token + "\n"}
        env.pop("INFLUX_TOKEN_FILE", None)
        result = subprocess.run([HASHFLEET, "collect", "--miners", fleet[0].address, "--cycles", "1"],
                                capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert influxdb.token not in result.stderr
    assert [r["count"] for r in influxdb.query("SELECT count(up) FROM miner", influx_bucket)] == [1]
