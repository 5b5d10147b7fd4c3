"""`hashfleet simulate` serves until SIGTERM, applies fault drills (`--fault`, `--faults FILE`, `--control`),
logs control commands (`--command-log`), and refuses bad fleets and bad drills with a usage error."""

from __future__ import annotations

import json
import os
import socket
import re
import signal
import subprocess

import httpx
import pytest
from tests.support import HASHFLEET, wait_for

from simulators.probe import query_json



def test_simulate_prints_addresses_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [HASHFLEET, "simulate", "--fleet", "a1246:1,q:1", "--base", "127.21.0.1", "--seed", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Reading the lines is the readiness check: they are printed once every miner listens.
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines == ["127.21.0.1:4028 a1246", "127.21.0.2:4028 q"], proc.stderr.read() if proc.poll() else lines
        version = query_json("127.21.0.2:4028", "version")["VERSION"][0]
        assert version["PROD"] == "Avalon Q"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("fleet", "hint"),
    [("a9999:1", "unknown model"), ("a1246:two", "bad count"), ("a1246:0", "at least 1"),
     ("a1246:" + "9" * 5000, "bad count")],  # (10^5000 would not even parse as an int)
)
def test_bad_fleet_is_a_usage_error_listing_known_models(fleet, hint):
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", fleet], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2
    message = " ".join(done.stderr.split()).replace("│ ", "")  # typer boxes and wraps the text
    assert hint in message
    assert "a1246" in message and "nano3s" in message


# -- drills: --fault, --faults FILE, --control, --command-log ----------------------------------------------------


def _dev(address: str) -> dict[str, str]:
    entry = query_json(address, "estats")["STATS"][0]
    return dict(re.findall(r"(\w+)\[([^\]]*)\]", entry["MM ID0"]))


def test_simulate_applies_faults_schedule_and_control_and_logs_only_commands(tmp_path):
    schedule = tmp_path / "drill.yaml"
    schedule.write_text(
        "- at: 0\n  address: 127.22.0.2:4028\n  set: {hw_errors: 7}\n"
        "- at: 1s\n  address: '*'\n  set: {ambient_c: 39}\n")
    log = tmp_path / "commands.jsonl"
    proc = subprocess.Popen(
        [HASHFLEET, "simulate", "--fleet", "a1566:1,s19jpro:1", "--base", "127.22.0.1", "--seed", "3",
         "--fault", "127.22.0.1:4028:chips_dying=1:40", "--fault", "127.22.0.1:days_per_hour=3600",
         "--faults", str(schedule), "--command-log", str(log), "--control", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[:2] == ["127.22.0.1:4028 a1566", "127.22.0.2:4028 s19jpro"], (
            proc.stderr.read() if proc.poll() is not None else lines)
        assert lines[2].startswith("control http://127.0.0.1:")
        control = lines[2].split()[1]
        # --fault: board 1 loses 40 chips a fault day, a fault day a second; the others stay whole.
        dead = wait_for(lambda: _dev("127.22.0.1:4028")["PVT_T1"].split().count("0"), what="dead chips")
        assert dead > 0 and "0" not in _dev("127.22.0.1:4028")["PVT_T0"].split()
        # --faults: in force from the start, and on time.
        stats = httpx.get("http://127.22.0.2/cgi-bin/stats.cgi", auth=httpx.DigestAuth("root", "root"), timeout=5)
        assert stats.json()["STATS"][0]["hwp_total"] == pytest.approx(0.07, abs=0.003)
        wait_for(lambda: abs(int(_dev("127.22.0.1:4028")["Temp"]) - 39) <= 1, what="the scheduled heat wave")
        # --control: change faults from outside, read them back.
        answer = httpx.post(f"{control}/faults", json={"address": "127.22.0.2", "set": {"fan_failing": "0:50"}},
                            timeout=5)
        assert answer.status_code == 200 and answer.json()["applied"] == ["127.22.0.2: fan_failing=0:50"]
        bad = httpx.post(f"{control}/faults", json={"address": "127.22.0.9", "set": {"soft_off": True}}, timeout=5)
        assert bad.status_code == 400 and "127.22.0.9" in bad.json()["error"]
        faults = {m["address"]: m["faults"] for m in httpx.get(f"{control}/faults", timeout=5).json()["miners"]}
        assert faults["127.22.0.2:4028"] == {"ambient_c": 39.0, "fan_failing": "0:50", "hw_errors": 7.0}
        assert faults["127.22.0.1:4028"]["chips_dying"] == "1:40"
        # --command-log: nothing yet (only reads so far); then one line per command, as it arrives.
        assert log.read_text() == ""
        query_json("127.22.0.1:4028", "ascset", "0,softoff,1")
        httpx.post("http://127.22.0.2/cgi-bin/blink.cgi", json={"blink": "true"},
                   auth=httpx.DigestAuth("root", "root"), timeout=5)
        records = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(r["address"], r["command"], r["accepted"]) for r in records] == [
            ("127.22.0.1:4028", "ascset softoff", True), ("127.22.0.2:4028", "blink", True)]
        assert httpx.get(f"{control}/commands", timeout=5).json()["total"] == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        printed = proc.stderr.read()
        assert "fault +1s *: ambient_c=39" in printed
        assert "fault +0s 127.22.0.2:4028: hw_errors=7.0" in printed  # as docs/drills.md says, every applied change
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("args", "schedule", "hint"), [
    (["--fault", "127.23.0.1:4028"], None, "write ADDRESS:NAME"),
    (["--fault", "127.23.0.9:soft_off"], None, "no simulated miner at '127.23.0.9'"),
    (["--fault", "127.23.0.1:on_fire"], None, "unknown fault 'on_fire'"),
    (["--fault", "127.23.0.1:fan_failing=5"], None, "got fan_failing on fan 5"),
    (["--fault", "127.23.0.1:pool_rejects=95"], None, "pool_rejects must be"),
    ([], "- at: 10\n  address: 127.23.0.1\n  sett: {soft_off: true}\n", "entry 1: unknown key(s) ['sett']"),
    ([], "- at: soon\n  address: 127.23.0.1\n  set: {soft_off: true}\n", "entry 1: at must be seconds"),
    ([], "- at: 5\n  address: '*'\n  set: {weak_board: '3:0.5'}\n", "entry 1: 127.23.0.1:4028: a1566 has 3"),
    ([], "{not: [yaml", "not YAML or JSON"),
    (["--control", "0.0.0.0:4999"], None, "loopback only"),
])
def test_bad_drills_are_usage_errors_naming_the_entry(tmp_path, args, schedule, hint):
    if schedule is not None:
        (tmp_path / "s.yaml").write_text(schedule)
        args = [*args, "--faults", str(tmp_path / "s.yaml")]
    env = {**os.environ, "COLUMNS": "300"}
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", "a1566:1", "--base", "127.23.0.1", *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    message = " ".join(done.stderr.replace("│", " ").split())  # typer boxes and wraps the text
    assert hint in message


@pytest.mark.parametrize(("fleet", "hint"), [("a1246:100000000", "100,000,000 miners"),
                                             ("a1246:60000,q:50000", "110,000 miners")])
def test_a_fleet_larger_than_one_simulator_can_hold_is_a_usage_error(fleet, hint):
    # 10^8 miners grew memory by ~100 MB/s without a word (3.4 GB in 30 s).
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", fleet], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    message = " ".join(done.stderr.split()).replace("│ ", "")
    assert done.returncode == 2 and hint in message and "at most 100,000 in one simulator" in message


def test_a_broker_not_reachable_is_named_as_the_broker_not_a_pool_address():
    # A ConnectionError is an OSError: it was caught as a pool API's address ("Pick another --pool-base").
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", "a1246:1", "--base", "127.0.0.1:0", "--mqtt-host",
                           "127.0.0.1", "--mqtt-port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"MQTT broker 127.0.0.1:{port} not reachable" in done.stderr
    assert "--mqtt-host, --mqtt-port" in done.stderr and "pool" not in done.stderr
