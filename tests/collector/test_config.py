"""A broken config names the file and the field, exits 2, starts nothing, and never echoes secrets."""

import logging
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from tests.support import HASHFLEET

from collector import config
from collector.stages.cost_engine import miner_cost
from models import MinerSample, MinerState, SampleSource

from tests.support import REPO


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=60, env=env)


def test_example_config_is_valid():
    cfg = config.load(REPO / "hashfleet.example.yaml", environ={})
    assert cfg.site == "demo" and cfg.interval_s == 10 and cfg.miners == ["127.10.0.0/28"]
    assert cfg.economics is not None and cfg.network is not None and cfg.influx is None


def test_token_file_is_read_and_stripped(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    path = tmp_path / "c.yaml"
    path.write_text(f"influx: {{url: 'http://x:8086', token_file: {token}}}\n")
    assert config.load(path, environ={}).influx.resolved_token() == "from-a-file"


def test_environment_overrides_the_influx_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("influx: {url: 'http://file:8086', token: from-file}\n")
    cfg = config.load(path, environ={"INFLUX_URL": "http://env:8086", "INFLUX_TOKEN": "from-env", "INFLUX_BUCKET": "b"})
    assert cfg.influx.url == "http://env:8086" and cfg.influx.bucket == "b"
    assert cfg.influx.resolved_token() == "from-env"


def test_a_relative_path_in_the_file_is_from_the_files_folder_and_one_from_the_environment_from_the_shell(
        tmp_path, monkeypatch):
    # Trial ZB, M1: relative to wherever the command was started: `collect` from one folder and `report` from
    # another read two histories, without a word; a relative token_file was found from one folder only.
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "tok").write_text("from-the-folder\n")
    (folder / "pw").write_text("mqtt-pass\n")
    path = folder / "c.yaml"
    path.write_text("spool: {directory: relspool}\ninflux: {url: 'http://x:8086', token_file: tok}\n"
                    "mqtt: {host: broker, username: u, password_file: pw}\nlayout: {csv: places.csv}\n"
                    "pools: [{kind: ocean, account: bc1qexample, token_file: ../pool-token}]\n"
                    "economics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                    "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n"
                    "curtailment: {dr_schedule: dr.yaml, control: {kill_switch_file: /run/stop, audit_log: a/audit.jsonl}}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = config.load(Path("..") / "etc" / "c.yaml", pools=False, environ={})
    assert cfg.spool.directory == folder / "relspool" and cfg.influx.resolved_token() == "from-the-folder"
    assert cfg.mqtt.resolved_password() == "mqtt-pass" and cfg.layout.csv == folder / "places.csv"
    assert cfg.curtailment.dr_schedule == folder / "dr.yaml"
    assert cfg.curtailment.control.audit_log == folder / "a" / "audit.jsonl"
    assert cfg.curtailment.control.kill_switch_file == Path("/run/stop")  # an absolute one as it is
    (tmp_path / "pool-token").write_text("pool-secret\n")
    [pool] = config.load(path, environ={}).pools
    assert pool.token_file == folder / ".." / "pool-token"
    (elsewhere / "tok2").write_text("from-the-shell\n")
    from_env = config.load(path, environ={"INFLUX_TOKEN_FILE": "tok2", "HASHFLEET_SPOOL_DIR": "x"})
    assert from_env.influx.resolved_token() == "from-the-shell"


def test_a_secret_written_into_the_config_file_is_warned_of_by_name_never_by_value(tmp_path, caplog):
    # Trial ZB, L2: the docs say never to put them there (pools' tokens are refused); these were taken silently.
    path = tmp_path / "c.yaml"
    path.write_text("influx: {url: 'http://x:8086', token: s3cret-token, read_token: s3cret-read}\n"
                    "mqtt: {host: broker, username: u, password: s3cret-pass}\n")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        cfg = config.load(path, environ={})
    assert cfg.influx.resolved_token() == "s3cret-token"  # it still works
    said = [r.getMessage() for r in caplog.records]
    assert [m.split(": ", 1)[1].split(" is written")[0] for m in said] == ["influx.token", "influx.read_token",
                                                                         "mqtt.password"]
    assert "set INFLUX_TOKEN, or influx.token_file / INFLUX_TOKEN_FILE" in said[0]
    assert "s3cret" not in caplog.text
    caplog.clear()
    path.write_text("influx: {url: 'http://x:8086'}\nmqtt: {host: broker, username: u}\n")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        config.load(path, environ={"INFLUX_TOKEN": "s3cret-token", "MQTT_PASSWORD": "s3cret-pass"})
    assert not caplog.records  # from the environment: where they belong


@pytest.mark.parametrize(("text", "field", "problem"), [
    ("interval_s: -5\n", "interval_s", "greater than or equal to 1"),
    ("influx:\n  url: influxdb:8086\n", "influx.url", "must be an http(s) URL"),
    ("sitee: x\n", "sitee", "Extra inputs are not permitted; did you mean 'site'?"),
    ("interval: 10\n", "interval", "did you mean 'interval_s'?"),  # (trial ZJ L4)
    ("economics: {tarrif: {kind: flat, usd_per_kwh: 0.05}}\n", "economics.tarrif", "did you mean 'tariff'?"),
    ("miners: [1.2.3.4]\nconcurrency: lots\n", "concurrency", "valid integer"),
    # trial ZJ M3: a $/MWh figure as $/kWh made every cost per BTC $98M, unsaid
    ("economics: {tariff: {kind: flat, usd_per_kwh: 45}}\n", "usd_per_kwh", "a $/MWh figure? write 0.045"),
    ("economics: {tariff: {kind: live, fallback_usd_per_kwh: 38}}\n", "fallback_usd_per_kwh", "write 0.038"),
])
def test_invalid_field_is_named_with_the_file_and_exit_code_2(tmp_path, text, field, problem):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = run("collect", "--config", str(path), "--cycles", "1")
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and field in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("url", "problem"), [
    ("http://", "no host"), ("http://127.0.0.1:99999", "Port out of range"), ("http://[::1", "Invalid IPv6 URL"),
    ("http://127.0.0.1:8086?x=1", "without a ?query"), ("http://influxdb:0", "port 0"),
])
def test_an_influx_url_no_client_can_use_is_a_usage_error(url, problem):
    # Each used to pass: the collector ran (exit 0), spooling and retrying for ever ("InfluxDB at http:
    # unreachable"), or wrote to a path appended after the ?query (HTTP 404).
    result = subprocess.run([HASHFLEET, "collect", "--miners", "127.0.0.1:1", "--cycles", "1"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "INFLUX_URL": url, "INFLUX_TOKEN": "t"})
    assert result.returncode == 2 and "influx.url" in result.stderr and problem in result.stderr, result.stderr


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("site: a\nminers: [1.2.3.4\n")
    result = run("collect", "--config", str(path))
    assert result.returncode == 2 and f"{path}: line" in result.stderr and "column" in result.stderr


def test_bad_miner_address_is_a_config_error(tmp_path):
    result = run("collect", "--miners", "10.0.0.1:99999", "--cycles", "1")
    assert result.returncode == 2 and "10.0.0.1:99999" in result.stderr and "out of range" in result.stderr


@pytest.mark.parametrize("address", ["::1", "[::1]:4028", "fe80::/120"])
@pytest.mark.parametrize("command", [("collect", "--cycles", "1", "--miners"), ("poll",), ("scan",)])
def test_an_ipv6_address_is_a_usage_error_not_a_traceback(command, address):
    # Polling is IPv4 (names resolve to IPv4 addresses): `::1` ended in a traceback inside pyasic's identification.
    result = run(*command, address)
    assert result.returncode == 2 and "an IPv6 address" in result.stderr and address in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["rack7..site.local", "x" * 64 + ".site.local", "miner 7.local", ".",
                                  "127.10.0.300", "10.0.0", "10.0.0.1.5"])  # (trial ZB, L4: looked up as names)
def test_a_malformed_host_name_is_a_config_error_naming_it(tmp_path, name):
    # It passed the config check, then every re-scan failed on it with an IDNA UnicodeError: the ranges and
    # names listed with it were never polled (0 miners, every cycle, exit 0).
    path = tmp_path / "hashfleet.yaml"
    path.write_text(f"site: a\nminers: ['{name}', 127.0.0.0/30, localhost]\n")
    for command in (("collect", "--config", str(path), "--cycles", "1"), ("poll", name), ("scan", name)):
        result = run(*command)
        assert result.returncode == 2 and name[:30] in result.stderr and "not a host name" in result.stderr, (
            command, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("env", "named"), [
    ({"INFLUX_URL": "notaurl"}, "environment: INFLUX_URL (influx.url)"),
    ({"INFLUX_TOKEN": "t", "INFLUX_BUCKET": "b"}, "influx.url (INFLUX_BUCKET, INFLUX_TOKEN set in the environment, "
                                                  "INFLUX_URL is not)"),
    ({"MQTT_HOST": "broker", "MQTT_PORT": "99999"}, "environment: MQTT_PORT (mqtt.port)"),
])
def test_a_config_error_the_environment_caused_names_the_variable(env, named):
    # They were blamed on the command line or the config file, which said nothing of the value.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "MQTT_"))}
    result = subprocess.run([HASHFLEET, "collect", "--miners", "127.0.0.1:1", "--cycles", "1"], capture_output=True,
                            text=True, timeout=60, env={**clean, **env})
    assert result.returncode == 2 and named in result.stderr, result.stderr


def test_secret_token_never_appears_in_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("influx: {url: 'http://x:8086', token: [hunter2-secret], org: o}\n")
    result = run("collect", "--config", str(path))
    assert result.returncode == 2 and "influx.token" in result.stderr
    assert "hunter2-secret" not in result.stderr


def test_missing_token_file_is_named(tmp_path):
    result = run("collect", "--miners", "127.0.0.1", env={"PATH": "/usr/bin:/bin", "INFLUX_URL": "http://x:8086",
                                                            "INFLUX_TOKEN_FILE": str(tmp_path / "nope")})
    assert result.returncode == 2 and "token_file" in result.stderr and "nope" in result.stderr


def test_missing_config_file_is_named(tmp_path):
    result = run("collect", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "absent.yaml" in result.stderr and "cannot read" in result.stderr


@pytest.mark.parametrize(("switch", "expected"), [("off", "off"), ("on", "on"), ("dry_run", "dry_run")])
def test_the_documented_curtailment_block_loads_with_its_control_mode_unquoted(tmp_path, switch, expected):
    # YAML 1.1 reads an unquoted `off` / `on` as a boolean: the docs' block was refused (got False).
    docs = (REPO / "docs" / "curtailment.md").read_text()
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert "\n    mode: off " in block
    block = block.replace("\n    mode: off ", f"\n    mode: {switch} ").replace("  dr_schedule: /etc/", "  # dr_schedule: /etc/")
    path = tmp_path / "c.yaml"
    path.write_text("economics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                    "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n"
                    + block)
    assert config.load(path, environ={}).curtailment.control.mode.value == expected


@pytest.mark.parametrize(("args", "named"), [
    (("--interval", "0"), "--interval (interval_s): Input should be greater than or equal to 1"),
    (("--shard", "3/2"), "--shard (shard): Value error, K/N: shard K of N collectors, 1 <= K <= N"),
    (("--shard", "0/2"), "--shard (shard): Value error, K/N"),
    (("--site", ".."), "--site (site)"),
])
def test_a_bad_flag_is_named_as_the_flag_not_blamed_on_the_config_file(tmp_path, args, named):
    path = tmp_path / "c.yaml"
    path.write_text("miners: [127.0.0.1]\n")
    result = run("collect", "--config", str(path), "--cycles", "1", *args)
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert result.stderr.startswith("hashfleet: invalid configuration (1 problem(s))\n")  # (trial ZB: "c.yaml: ...")
    assert str(path) not in result.stderr


@pytest.mark.parametrize(("line", "flag"), [("interval_s: ten", {"interval_s": 3}), ("site: ..", {"site": "s1"}),
                                            ("shard: 3/2", {"shard": "1/2"}), ("miners: 7", {"miners": ["127.0.0.1"]})])
def test_a_bad_value_in_the_file_is_refused_when_a_flag_replaces_it(tmp_path, line, flag):
    # Trial ZB, M2: `collect --interval 3` ran on `interval_s: ten`; the service, started without the flag,
    # was refused: a test run with the flag proved nothing of the file.
    path = tmp_path / "c.yaml"
    path.write_text(line + "\n")
    with pytest.raises(config.ConfigError) as refused:
        config.load(path, flag, environ={})
    key = line.partition(":")[0]
    assert str(refused.value).startswith(f"{path}: invalid configuration (1 problem(s))\n  {key}: ")
    assert "a flag replaces it on this run" in str(refused.value)
    assert config.load(None, flag, environ={})  # the flag's value itself is good


def test_the_documented_economics_block_depreciates_the_miner_it_names(tmp_path, caplog):
    # docs/cost.md keyed its capex by "A1566", which no miner reports: depreciation was silently $0.
    docs = (REPO / "docs" / "cost.md").read_text()
    block = docs.split("```yaml\neconomics:", 1)[1].split("```", 1)[0]
    path = tmp_path / "c.yaml"
    path.write_text("economics:" + block + "network: {source: static, static: {difficulty: 1.5e14, height: 925000, "
                    "btc_price_usd: 95000}}\n")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        cfg = config.load(path, environ={})
    assert not caplog.records  # every key names a catalogued model
    at = datetime(2025, 6, 1, tzinfo=timezone.utc)  # after the documented purchase_date
    sample = MinerSample(miner="m1", host="127.10.0.3", site="demo", ts=at, state=MinerState.MINING,
                         source=SampleSource.AVALON, model="AvalonMiner 15-194",  # as an A15-194 reports it
                         hashrate_ths=194.0, power_w=3650.0)
    figures = miner_cost(sample, cfg.economics, cfg.network.static, at)
    assert figures.depreciation_usd_day > 0 and figures.all_in_cost_per_btc > figures.cash_cost_per_btc


def test_a_capex_key_naming_no_catalogued_model_is_warned_of_at_load(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    path.write_text("economics:\n  tariff: {kind: flat, usd_per_kwh: 0.05}\n  capex_by_model:\n"
                    "    A1566: {price_usd: 3100, life_months: 36}\n"
                    "    \"Avalon 15-149\\e[2J\": {price_usd: 3100, life_months: 36}\n"
                    "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n")
    with caplog.at_level(logging.WARNING, logger="collector.config"):
        config.load(path, environ={})
    [record] = caplog.records
    message = record.getMessage()
    assert "capex_by_model" in message and "'Avalon 15-149\\x1b[2J'" in message and "A1566" not in message
    assert "\x1b" not in message  # the key is quoted, its control characters escaped
