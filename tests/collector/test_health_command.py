"""`hashfleet health` as a user runs it: one cycle now, or a period from the local history or InfluxDB
(read with a read token: the collector's own may only write)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.support import HASHFLEET

ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1, "pool_fee_pct": 2}
NETWORK = {"source": "static", "static": {"difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03,
                                         "btc_price_usd": 95_000}}


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    return {**env, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool"), "COLUMNS": "200", **extra}


def _config(tmp_path: Path, addresses: list[str], **more) -> Path:
    path = tmp_path / "hashfleet.yaml"
    layout = {"miners": {a: {"container": "c1", "rack": f"r{i}", "position": "1"} for i, a in enumerate(addresses)}}
    path.write_text(yaml.safe_dump({"site": "h1", "miners": addresses, "interval_s": 1, "economics": ECONOMICS,
                                    "network": NETWORK, "layout": layout, **more}))
    return path


def _run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_health_now_lists_the_dead_board_first_with_its_cause_place_and_dollars(tmp_path):
    with run_fleet("a1566:2", base="127.66.0.1:0", seed=4) as fleet:
        fleet[1].set_faults(dead_boards={0})
        config = _config(tmp_path, fleet.addresses)
        env = _environment(tmp_path)
        as_json = _run("health", "--config", str(config), "--json", env=env)
        table = _run("health", "--config", str(config), env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["source"] == "live" and report["miners"] == 2
    top = report["problems"][0]
    assert (top["miner"], top["signal"], top["cause"], top["part"]) == (format_mac(fleet[1].mac), "board_dead",
                                                                       "board", "board0")
    assert top["rack"] == "r1" and top["usd_lost_day"] > 0 and top["lost_ths"] > 50
    assert report["usd_lost_day"] >= top["usd_lost_day"]
    assert table.returncode == 0, table.stderr
    assert "board_dead board0" in table.stdout and "c1/r1" in table.stdout and "$" in table.stdout


def test_health_now_names_each_problems_miner_by_address_and_model(tmp_path):
    # A MAC is no way to find a miner on the floor: each problem says where it answers and what it is, in
    # --json and in the table (wide here: piped, 200 columns).
    with run_fleet("a1566:1,a1246:1", base="127.66.7.1", seed=4) as fleet:
        for miner in fleet:
            miner.set_faults(dead_boards={0})
        config = _config(tmp_path, fleet.addresses)
        env = _environment(tmp_path)
        as_json = _run("health", "--config", str(config), "--json", env=env)
        table = _run("health", "--config", str(config), env=env)
    assert as_json.returncode == 0, as_json.stderr
    dead = {p["miner"]: p for p in json.loads(as_json.stdout)["problems"] if p["signal"] == "board_dead"}
    models = ("AvalonMiner 15-194", "AvalonMiner 1246")
    for miner, address, model in zip(fleet, fleet.addresses, models):
        problem = dead[format_mac(miner.mac)]
        assert problem["address"] == address and problem["model"].startswith(model), problem
    assert table.returncode == 0, table.stderr
    for miner, address, model in zip(fleet, fleet.addresses, models):
        [row] = [line for line in table.stdout.splitlines() if format_mac(miner.mac) in line and "board_dead" in line]
        assert address in row and model in row and "board_dead board0" in row


def test_health_in_an_80_column_terminal_keeps_each_problem_on_one_line_with_its_address_and_dollars(tmp_path):
    from tests.collector.sinks.test_live_view_terminal import Pane

    with run_fleet("a1566:3", base="127.66.8.1", seed=4) as fleet:
        for miner in fleet:
            miner.set_faults(dead_boards={0})
        config = _config(tmp_path, fleet.addresses)
        env = {k: v for k, v in _environment(tmp_path).items() if k != "COLUMNS"}
        out = tmp_path / "screen.done"
        script = tmp_path / "run.sh"
        script.write_text("#!/bin/sh\n" + " ".join(f"{k}='{v}'" for k, v in env.items() if k in (
            "HASHFLEET_SPOOL_DIR", "PATH", "HOME")) + f" {HASHFLEET} health --config {config}; touch {out}\n")
        script.chmod(0o755)
        pane = Pane(tmp_path / "tmux.sock", str(script), width=80, height=24)
        try:
            deadline = time.time() + 60
            while not out.exists() and time.time() < deadline:
                time.sleep(0.2)
            screen = pane.screen()
        finally:
            pane.close()
    assert out.exists(), screen
    text = "\n".join(screen)
    rows = [line for line in screen if "board_dead" in line]
    assert len(rows) == 3, text  # one line a problem
    for address in fleet.addresses:
        [row] = [line for line in rows if address in line]
        assert re.search(r"\$\d+\.\d\d", row) and "AvalonMiner" in row, row
    assert all(len(line) <= 80 for line in screen)


def test_health_now_judges_peers_by_the_same_reading_and_saves_no_energy_it_cannot_see(tmp_path):
    # One reading has no previous cycle: peers are judged by this one (hardware errors, a chip far
    # hotter than the others), or no peer check could fire. Stock Antminers report no power: nothing
    # is counted saved (their draw now was taken as 0 W: every problem "saved" the nameplate, < $0).
    # The S19j Pro has no published hot limit: only its peers show its heat. (Its native reader
    # reports no hardware errors: the A15s' are judged.)
    with run_fleet("s19jpro:6,a1566:6", base="127.66.5.1", seed=4) as fleet:
        fleet[1].set_faults(overheat="throttle")
        fleet[9].set_faults(hw_errors=12.0)
        config = _config(tmp_path, fleet.addresses)
        done = _run("health", "--config", str(config), "--json", env=_environment(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    problems = {(p["miner"], p["signal"]): p for p in report["problems"]}
    hot = problems[(format_mac(fleet[1].mac), "temp_outlier")]
    assert hot["cause"] == "thermal" and hot["lost_ths"] > 20  # it throttles: the shortfall is the heat's
    assert (format_mac(fleet[1].mac), "hashrate_low") not in problems
    assert problems[(format_mac(fleet[9].mac), "hw_errors")]["cause"] == "board"
    assert all(p["usd_lost_day"] >= 0 for p in report["problems"]) and report["usd_lost_day"] > 0


def test_health_now_prices_a_miner_never_identified_as_unknown(tmp_path):
    with run_fleet("a1566:1", base="127.66.6.1:0", seed=4) as fleet:
        fleet[0].set_faults(dead_boards={0})
        nobody = "127.66.6.9:1"  # nothing listens there: offline, never identified
        config = _config(tmp_path, [fleet.addresses[0], nobody])
        env = _environment(tmp_path)
        as_json = _run("health", "--config", str(config), "--json", env=env)
        table = _run("health", "--config", str(config), env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    [offline] = [p for p in report["problems"] if p["signal"] == "offline"]
    assert offline["usd_lost_day"] is None and report["problems"][0]["signal"] == "board_dead"
    assert report["usd_lost_day"] == report["problems"][0]["usd_lost_day"] > 0  # what is priced
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if "offline" in line]
    assert "$" not in row and "│ - " in row


def test_health_without_economics_prices_nothing_not_zero(tmp_path):
    # No config: no tariff, no network state. The dead board is a problem of unknown cost, and so is
    # the site's total: null (shown -), never $0.00.
    with run_fleet("a1566:1", base="127.66.2.1:0", seed=4) as fleet:
        fleet[0].set_faults(dead_boards={0})
        env = _environment(tmp_path)
        as_json = _run("health", "--miners", fleet.addresses[0], "--json", env=env)
        table = _run("health", "--miners", fleet.addresses[0], env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert "board_dead" in [p["signal"] for p in report["problems"]]
    assert all(p["usd_lost_day"] is None for p in report["problems"]) and report["usd_lost_day"] is None
    assert table.returncode == 0, table.stderr
    assert "$0.00" not in table.stdout and "- lost per day (not priced: no economics)" in table.stdout


def test_health_with_economics_and_only_a_miner_never_identified_says_why_it_is_not_priced(tmp_path):
    # Trial ZB, M3: "(not priced: no economics)" with economics configured: the operator checked a config
    # that was fine. A miner that never answered has no usual hashrate to price its loss by.
    config = _config(tmp_path, ["127.66.7.9:1"])  # nothing listens there
    table = _run("health", "--config", str(config), env=_environment(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "1 problem(s), - lost per day (not priced: the usual hashrate or the cost figures not known yet)" \
        in " ".join(table.stdout.split()), table.stdout


def test_health_since_reads_the_local_history(tmp_path):
    with run_fleet("a1566:2", base="127.66.1.1:0", seed=5) as fleet:
        fleet[0].set_faults(overheat="throttle")
        config = _config(tmp_path, fleet.addresses)
        env = _environment(tmp_path)
        collected = _run("collect", "--config", str(config), "--cycles", "4", env=env)
        assert collected.returncode == 0, collected.stderr
    done = _run("health", "--config", str(config), "--since", "1h", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "local history" and report["cycles"] == 4
    [problem] = [p for p in report["problems"] if p["signal"] == "chip_hot"]
    assert problem["miner"] == format_mac(fleet[0].mac) and problem["cause"] == "thermal"
    assert (problem["address"], problem["model"]) == (fleet.addresses[0], "AvalonMiner 15-194")  # where to walk
    assert problem["cycles"] == 3  # raised from the second cycle on
    assert problem["usd_lost_day"] > 0 and problem["usd_lost_day_mean"] > 0
    assert report["by_cause"] == {"thermal": 1}


def test_health_since_without_history_is_a_usage_error(tmp_path):
    done = _run("health", "--site", "nowhere", "--since", "1h", env=_environment(tmp_path))
    assert done.returncode == 2 and "no local history" in done.stderr


def test_health_since_reads_influxdb_with_the_read_token(influxdb, influx_bucket, tmp_path):
    write_only, read_only = "token-write-health", "token-read-health"
    influxdb.shim.tokens[write_only] = frozenset({("write", influx_bucket)})
    influxdb.shim.tokens[read_only] = frozenset({("read", influx_bucket)})
    with run_fleet("a1566:2", base="127.66.2.1:0", seed=6) as fleet:
        fleet[1].set_faults(dead_boards={2})
        config = _config(tmp_path, fleet.addresses)
        env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                           INFLUX_TOKEN=write_only)
        collected = _run("collect", "--config", str(config), "--cycles", "4", env=env)
        assert collected.returncode == 0, collected.stderr
    refused = _run("health", "--config", str(config), "--since", "1h", env=env)
    assert refused.returncode == 1 and "403" in refused.stderr and "read_token" in refused.stderr
    assert write_only not in refused.stderr
    done = _run("health", "--config", str(config), "--since", "1h", "--json", env={**env, "INFLUX_READ_TOKEN": read_only})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "influxdb" and report["cycles"] == 4 and report["miners"] == 2
    [dead] = [p for p in report["problems"] if p["signal"] == "board_dead"]
    assert (dead["miner"], dead["part"], dead["cause"], dead["rack"]) == (format_mac(fleet[1].mac), "board2", "board",
                                                                         "r1")
    assert dead["cycles"] == 3 and dead["usd_lost_day"] > 0 and dead["severity"] == "critical"
    assert (dead["address"], dead["model"]) == (fleet.addresses[1], "AvalonMiner 15-194")
    assert report["chips_dead_last"] == 160 and report["by_cause"]["board"] >= 1


def test_report_and_health_read_a_shards_history_and_say_when_a_site_has_none(tmp_path):
    with run_fleet("a1566:2", base="127.66.3.1:0", seed=8) as fleet:
        config = _config(tmp_path, fleet.addresses)
        env = _environment(tmp_path)
        collected = _run("collect", "--config", str(config), "--shard", "1/1", "--cycles", "3", env=env)
        assert collected.returncode == 0, collected.stderr
    for command in ("report", "health"):
        # a shard keeps its own history (h1.shard-1-of-1): read with the same --shard
        sharded = _run(command, "--config", str(config), "--shard", "1/1", "--since", "1h", "--json", env=env)
        assert sharded.returncode == 0 and json.loads(sharded.stdout)["cycles"] == 3, sharded.stderr
        unsharded = _run(command, "--config", str(config), "--since", "1h", env=env)
        assert unsharded.returncode == 2 and "no local history for site 'h1'" in unsharded.stderr
    # the spool directory set in the config: another site's name finds the directory but none of its points
    spool = tmp_path / "spool" / "h1.shard-1-of-1"
    config.write_text(config.read_text() + f"spool: {{directory: {spool}}}\n")
    for command, words in (("report", "no local history of site 'other'"), ("health", "no recorded health of site 'other'")):
        other = _run(command, "--config", str(config), "--site", "other", "--since", "1h", "--json", env=env)
        assert other.returncode == 2 and words in other.stderr and other.stdout == "", other.stderr  # (was exit 0, dashes)


def _collect_with_a_repair(tmp_path: Path, env: dict[str, str], base: str) -> tuple[Path, str, str]:
    """Two collector runs: miner 0 overheats (throttled) in the first only, miner 1 has a dead board in
    both. Returns the config and the two miners' ids."""
    with run_fleet("a1566:2", base=base, seed=5) as fleet:
        fleet[0].set_faults(overheat="throttle")
        fleet[1].set_faults(dead_boards={0})
        config = _config(tmp_path, fleet.addresses)
        before = _run("collect", "--config", str(config), "--cycles", "3", env=env)
        assert before.returncode == 0, before.stderr
        fleet[0].set_faults(overheat=None)
        after = _run("collect", "--config", str(config), "--cycles", "3", env=env)
        assert after.returncode == 0, after.stderr
    return config, format_mac(fleet[0].mac), format_mac(fleet[1].mac)


def _assert_the_cooled_miner_is_closed_and_ranked_last(report: dict, cooled: str, dead_board: str) -> None:
    [hot] = [p for p in report["problems"] if p["signal"] == "chip_hot"]
    [dead] = [p for p in report["problems"] if p["signal"] == "board_dead"]
    assert (hot["miner"], dead["miner"]) == (cooled, dead_board)
    assert hot["open"] is False and dead["open"] is True
    assert hot["last_seen"] < dead["last_seen"]
    # it cost more when last seen, yet comes after every open problem
    assert hot["usd_lost_day"] > dead["usd_lost_day"] > 0
    assert report["problems"][-1] == hot and all(p["open"] for p in report["problems"][:-1])


def test_health_since_marks_a_problem_that_closed_and_ranks_it_after_the_open_ones(tmp_path):
    env = _environment(tmp_path)
    config, cooled, dead_board = _collect_with_a_repair(tmp_path, env, "127.66.4.1:0")
    done = _run("health", "--config", str(config), "--since", "10m", "--json", env=env)
    assert done.returncode == 0, done.stderr
    _assert_the_cooled_miner_is_closed_and_ranked_last(json.loads(done.stdout), cooled, dead_board)
    table = _run("health", "--config", str(config), "--since", "10m", env=env)
    assert table.returncode == 0, table.stderr
    headline = table.stdout.splitlines()[0]
    assert "over 10 min (local history)" in headline and "1 closed during the period" in headline
    assert "mean $" in headline and "lost per day over the period" in headline
    assert "latest $/day" in table.stdout and "status" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if "chip_hot" in line]
    assert " closed " in row and "UTC" in row
    [row] = [line for line in table.stdout.splitlines() if "board_dead" in line]
    assert " open " in row


def test_health_since_marks_a_problem_that_closed_from_influxdb(influxdb, influx_bucket, tmp_path):
    env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                       INFLUX_TOKEN=influxdb.token)
    config, cooled, dead_board = _collect_with_a_repair(tmp_path, env, "127.66.5.1:0")
    done = _run("health", "--config", str(config), "--since", "10m", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "influxdb"
    _assert_the_cooled_miner_is_closed_and_ranked_last(report, cooled, dead_board)


def _collect_unpriced(tmp_path: Path, env: dict[str, str], base: str) -> Path:
    """A dead board and no economics: the first cycle has no problem yet (it takes two) and writes $0,
    the others write problems of unknown cost and no site dollars."""
    with run_fleet("a1566:1", base=base, seed=4) as fleet:
        fleet[0].set_faults(dead_boards={0})
        config = tmp_path / "hashfleet.yaml"
        config.write_text(yaml.safe_dump({"site": "h1", "miners": fleet.addresses, "interval_s": 1}))
        collected = _run("collect", "--config", str(config), "--cycles", "3", env=env)
        assert collected.returncode == 0, collected.stderr
    return config


def test_health_since_without_economics_is_unpriced_not_zero(tmp_path):
    env = _environment(tmp_path)
    config = _collect_unpriced(tmp_path, env, "127.66.6.1:0")
    as_json = _run("health", "--config", str(config), "--since", "1h", "--json", env=env)
    table = _run("health", "--config", str(config), "--since", "1h", env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert "board_dead" in [p["signal"] for p in report["problems"]]
    assert all(p["usd_lost_day"] is None for p in report["problems"]) and report["usd_lost_day"] is None
    assert table.returncode == 0, table.stderr
    assert "$0.00" not in table.stdout and "mean - lost per day over the period" in table.stdout


def test_health_since_without_economics_from_influxdb_is_unpriced_not_zero(influxdb, influx_bucket, tmp_path):
    env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                       INFLUX_TOKEN=influxdb.token)
    config = _collect_unpriced(tmp_path, env, "127.66.7.1:0")
    done = _run("health", "--config", str(config), "--since", "1h", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "influxdb" and "board_dead" in [p["signal"] for p in report["problems"]]
    assert report["usd_lost_day"] is None


def test_health_since_past_the_cap_says_the_cap(tmp_path):
    done = _run("health", "--site", "nowhere", "--since", "100000d", env=_environment(tmp_path))
    assert done.returncode == 2 and "at most 10,000 days" in done.stderr, done.stderr


def test_health_since_from_influxdb_takes_a_problems_latest_cause_and_each_shards_last_cycle(influxdb, influx_bucket,
                                                                                             tmp_path):
    # Points as two shards' collectors write them. m1's shortfall is put down to firmware for two
    # cycles, then to heat: one problem whose latest values (cause, dollars) win, seen three cycles.
    # m2's dead board was last seen before shard 1's last cycle: closed. m3's code was seen in shard 2's
    # last cycle, three seconds before shard 1's: open.
    t = int(time.time()) - 100
    problem = 'health,site=h1,scope=problem,miner={},signal={},cause={} usd_lost_day={},lost_ths=10,level=1i {}'
    influxdb.write(influx_bucket, [
        problem.format("m1", "hashrate_low", "firmware", 1.0, t),
        problem.format("m1", "hashrate_low", "firmware", 3.0, t + 10),
        problem.format("m1", "hashrate_low", "thermal", 5.0, t + 20),
        problem.format("m2", "board_dead", "board", 9.0, t),
        problem.format("m3", "fault_code", "power", 0.5, t + 17),
        *(f"health,site=h1,scope=site,collector_shard=1 problems=2i,usd_lost_day=4.0 {t + s}" for s in (0, 10, 20)),
        *(f"health,site=h1,scope=site,collector_shard=2 problems=1i,usd_lost_day=0.5 {t + s}" for s in (7, 17)),
    ])
    env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                       INFLUX_TOKEN=influxdb.token)
    done = _run("health", "--site", "h1", "--since", "10m", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(p["miner"], p["cause"], p["usd_lost_day"], p["open"]) for p in report["problems"]] == [
        ("m1", "thermal", 5.0, True), ("m3", "power", 0.5, True), ("m2", "board", 9.0, False)]
    m1 = report["problems"][0]
    assert m1["cycles"] == 3 and m1["usd_lost_day_mean"] == 3.0 and m1["last_seen"] == t + 20
    assert report["usd_lost_day"] == 4.5


def test_health_since_from_influxdb_takes_the_site_from_hashfleet_site_and_a_site_with_nothing_is_an_error(
        influxdb, influx_bucket, tmp_path):
    # In the compose stack the site is in HASHFLEET_SITE: `docker compose exec collector hashfleet health
    # --since 7d` asked about site `default`, found nothing and answered "no problems", exit 0.
    t = int(time.time()) - 100
    influxdb.write(influx_bucket, [
        f"health,site=h1,scope=problem,miner=m1,signal=board_dead,cause=board usd_lost_day=2.0,level=2i {t}",
        f"health,site=h1,scope=site problems=1i,usd_lost_day=2.0 {t}"])
    env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                       INFLUX_TOKEN=influxdb.token, HASHFLEET_SITE="h1")
    done = _run("health", "--since", "10m", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["site"] == "h1" and [p["miner"] for p in report["problems"]] == ["m1"]
    for nothing in (["--since", "10m", "--site", "elsewhere"], ["--since", "1m"]):  # a site, a period with no cycle
        answer = _run("health", *nothing, env=env)
        assert answer.returncode == 2 and "no recorded health of site" in answer.stderr, answer.stdout + answer.stderr
        assert answer.stdout == ""


def test_a_unit_down_at_a_restart_in_a_range_is_offline_in_the_queue_where_it_last_answered(tmp_path):
    # Trial ZC, H1: with a range in `miners:` a unit that did not answer at the start was passed over by the
    # scan as an empty address: "0 problem(s), $0.00" from `health` and a restarted `collect`, while listed one
    # by one the same units were offline at $6 a day each.
    with run_fleet("a1566:3", base="127.66.8.1", seed=4) as fleet:
        config = tmp_path / "hashfleet.yaml"
        config.write_text(yaml.safe_dump({"site": "h1", "miners": ["127.66.8.0/29"], "interval_s": 1,
                                          "economics": ECONOMICS, "network": NETWORK}))
        env = _environment(tmp_path)
        collected = _run("collect", "--config", str(config), "--cycles", "2", env=env)
        assert collected.returncode == 0, collected.stderr
        down = fleet[1]
        down.set_faults(no_answer=True)  # the power goes before the restart
        now = _run("health", "--config", str(config), "--json", env=env)
        restarted = _run("collect", "--config", str(config), "--cycles", "2", env=env)
        since = _run("health", "--config", str(config), "--since", "1h", "--json", env=env)
    assert now.returncode == 0 and restarted.returncode == 0 and since.returncode == 0, now.stderr + restarted.stderr
    mac = format_mac(down.mac)
    for report in (json.loads(now.stdout), json.loads(since.stdout)):
        [offline] = [p for p in report["problems"] if p["signal"] == "offline"]
        assert offline["miner"] == mac and offline["address"] == down.address and offline["open"] is not False
        assert offline["usd_lost_day"] > 1 and offline["lost_ths"] > 100  # an A15: ~194 TH/s, priced
        assert {p["miner"] for p in report["problems"]} == {mac}  # the units that answer: no problem


def test_health_since_says_chips_came_back_not_a_negative_loss(tmp_path):
    # Trial ZC, L3: "chips lost: -176" over a period in which boards were repaired.
    from collector.sinks.spool import Spool

    t = int(time.time()) - 100
    spool = Spool(tmp_path / "spool" / "h1")
    try:
        spool.append([f"health,site=h1,scope=site problems=0i,usd_lost_day=0.0,chips_dead={dead}i {t + s}"
                      for dead, s in ((178, 0), (90, 10), (2, 20))])
    finally:
        spool.close()
    env = _environment(tmp_path)
    back = _run("health", "--site", "h1", "--since", "10m", env=env)
    assert back.returncode == 0, back.stderr
    assert "chips back: 176 (dead 178 -> 2)" in back.stdout and "-176" not in back.stdout, back.stdout


def test_health_names_the_miners_costing_more_than_they_earn_and_a_range_nobody_answers_in_is_an_error(tmp_path):
    # Trial ZJ M1: "2 miner(s) costing more to run than they earn", then "no problems", and neither the table nor
    # --json said which. M2: a range with nothing listening read "0 problem(s) ... no problems", exit 0.
    with run_fleet("a1246:1,a1566:1", base="127.66.9.1:0", seed=4) as fleet:
        config = _config(tmp_path, fleet.addresses, economics={**ECONOMICS, "tariff": {"kind": "flat",
                                                                                       "usd_per_kwh": 0.06}})
        env = _environment(tmp_path)
        as_json = _run("health", "--config", str(config), "--json", env=env)
        table = _run("health", "--config", str(config), env=env)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    a1246 = format_mac(fleet[0].mac)  # ~38 J/TH: its power costs more than it mines at 0.06 $/kWh
    assert report["unprofitable"] == 1 and report["unprofitable_miners"] == [a1246]
    assert f"costing more to run than they earn: {a1246}" in " ".join(table.stdout.split()), table.stdout
    nobody = _run("health", "--miners", "127.66.9.32/29", "--json", env=env)
    assert nobody.returncode == 1 and "no miner answered" in nobody.stderr and not nobody.stdout


def test_health_since_from_influxdb_after_a_re_split_counts_the_shards_writing_now(influxdb, influx_bucket, tmp_path):
    # Trial ZI M2: three shards, then two (a re-split): `health --since 1h` summed every shard of the period,
    # 48 miners and 16 unprofitable where the site had 24 and 8.
    t = int(time.time()) - 3000
    old = [f"health,site=h2,scope=site,collector_shard={k}/3 problems=0i,miners=8i,unprofitable=3i,usd_lost_day=0 "
           f"{t + s}" for k in (1, 2, 3) for s in (0, 60)]
    new = [f"health,site=h2,scope=site,collector_shard={k}/2 problems=0i,miners=12i,unprofitable=4i,usd_lost_day=0 "
           f"{t + 1200 + s}" for k in (1, 2) for s in (0, 60, 1200)]
    influxdb.write(influx_bucket, old + new)
    env = _environment(tmp_path, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                       INFLUX_TOKEN=influxdb.token)
    done = _run("health", "--site", "h2", "--since", "1h", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["miners"], report["unprofitable"]) == (24, 8)
