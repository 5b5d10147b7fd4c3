"""`hashfleet simulate` serves until SIGTERM and refuses bad fleets with a usage error."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from tests.support import HASHFLEET

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
    [("a9999:1", "unknown model"), ("a1246:two", "bad count"), ("a1246:0", "at least 1")],
)
def test_bad_fleet_is_a_usage_error_listing_known_models(fleet, hint):
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([HASHFLEET, "simulate", "--fleet", fleet], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2
    message = " ".join(done.stderr.split()).replace("│ ", "")  # typer boxes and wraps the text
    assert hint in message
    assert "a1246" in message and "nano3s" in message
