"""Mixed fleets: Avalons, Antminers and Bitaxes side by side, from `run_fleet` and `hashfleet simulate`.

Antminers and Bitaxes answer on fixed ports (4028 and 80, as pyasic assumes), so each needs its own
address; a `host:port` base is refused for them with a message that says so.
"""

from __future__ import annotations

import os
import signal
import subprocess

import httpx
import pytest
from tests.support import HASHFLEET

from simulators import FleetSpecError, build_miners, run_fleet
from simulators.probe import query_json


def test_each_make_gets_its_ports_on_its_own_address():
    miners = build_miners("a1246:1,s19jpro:1,s21:1,bitaxe:1", base="127.55.0.1")
    assert [m.address for m in miners] == ["127.55.0.1:4028", "127.55.0.2:4028", "127.55.0.3:4028",
                                           "127.55.0.4:80"]


@pytest.mark.parametrize("base", ["127.0.0.1:14028", "127.0.0.1:0"])
def test_a_host_port_base_is_refused_for_fixed_port_makes(base):
    with pytest.raises(FleetSpecError, match="own address") as info:
        build_miners("a1246:1,s21:1,bitaxe:1", base=base)
    assert "s21, bitaxe" in str(info.value) and "4028" in str(info.value) and "80" in str(info.value)
    assert len(build_miners("a1246:2", base=base)) == 2  # Avalons alone still may share a host


def test_run_fleet_serves_every_make_and_counts_requests():
    with run_fleet("a1246:1,s21:1,bitaxe:1", base="127.55.1.1", seed=3) as sim:
        avalon, s21, axe = sim.miners
        assert query_json(avalon.address, "version")["VERSION"][0]["PROD"] == "AvalonMiner 1246-83"
        assert query_json(s21.address, "version")["VERSION"][0]["Type"] == "Antminer S21"
        assert httpx.get(f"http://{s21.host}/").status_code == 401
        assert "AxeOS" in httpx.get(f"http://{axe.host}/").text
        assert sim.requests(s21) == {"version": 1, "GET /": 1}
        assert sim.requests(axe) == {"GET /": 1}
        assert sim.requests(avalon) == {"version": 1}
        assert sim[axe.address] is axe


def test_simulate_cli_serves_a_mixed_fleet_until_sigterm():
    proc = subprocess.Popen(
        [HASHFLEET, "simulate", "--fleet", "a1246:1,s21:1,bitaxe:1", "--base", "127.54.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # printed once every server listens
        assert lines == ["127.54.0.1:4028 a1246", "127.54.0.2:4028 s21", "127.54.0.3:80 bitaxe"], (
            proc.stderr.read() if proc.poll() is not None else lines)
        assert query_json("127.54.0.2:4028", "version")["VERSION"][0]["Type"] == "Antminer S21"
        assert httpx.get("http://127.54.0.2/", timeout=5).status_code == 401
        assert "AxeOS" in httpx.get("http://127.54.0.3/", timeout=5).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_simulate_cli_explains_why_a_host_port_base_cannot_serve_an_antminer():
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", "s21:1", "--base", "127.0.0.1:14028"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 2
    message = " ".join(done.stderr.split()).replace("│ ", "")
    assert "own address" in message and "bare host" in message
