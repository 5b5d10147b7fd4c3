"""A Braiins OS+ unit's own chip temperature limits (collector/sources/braiins.py): its cooling configuration,
read with GetMinerConfiguration through pyasic's gRPC client when the unit is identified, becomes the
sample's chip_hot_limit_c / chip_stop_limit_c. A simulated BOS+ S19j Pro serves BOS+'s defaults (hot 100 C,
dangerous 110 C); Braiins-looking units whose RPC is a real simulated unit's (tampering_proxy.py) answer the
configuration with what no unit should send (hostile_grpc.py): each is read all the same, with no limit
of its own and a warning saying why, through `hashfleet poll` over real TCP and HTTP/2.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import pytest
from tests.collector.sources.hostile_grpc import CONFIG, COOLING, DETAILS, LOGIN, HostileGrpc
from tests.collector.sources.tampering_proxy import TamperingProxy
from tests.support import HASHFLEET

from collector.sources import braiins
from simulators import run_fleet

GOOD = "127.118.0.1"  # a simulated BOS+ S19j Pro; 127.118.0.2 is the hostile units' RPC upstream
HOSTILE = {f"127.118.1.{i}": mode for i, mode in enumerate(COOLING, start=1)}
WHY = {  # what each one's warning must say
    "cooling_nan": "cooling auto hot_temperature nan C is outside 30..130 C",
    "cooling_inverted": "hot_temperature 110 C is not under dangerous 100 C",
    "cooling_absurd": "hot_temperature 5000 C is outside 30..130 C",
    "cooling_none": "cooling manual hot_temperature missing",
    "cooling_huge": "gRPC GetMinerConfiguration failed (APIError): gRPC message refused",
}


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    with run_fleet("bos-s19jpro:2", base=GOOD, seed=7) as fleet:
        good, upstream = (m.host for m in fleet.miners)
        assert good == GOOD
        with TamperingProxy({a: upstream for a in HOSTILE}, piped_ports=()), HostileGrpc(HOSTILE) as grpc:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
            env["HASHFLEET_SPOOL_DIR"] = str(tmp_path_factory.mktemp("spool"))
            done = subprocess.run([HASHFLEET, "poll", "--json", "--timeout", "3", GOOD, *HOSTILE], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            yield {s["host"]: s for s in map(json.loads, done.stdout.splitlines())}, grpc


def test_a_bos_unit_s_own_hot_and_dangerous_temperatures_are_on_its_sample(polled):
    samples, _ = polled
    good = samples[GOOD]
    assert good["state"] == "mining" and not good["warnings"], good
    assert (good["chip_hot_limit_c"], good["chip_stop_limit_c"]) == (100.0, 110.0)


@pytest.mark.parametrize("mode", list(COOLING))
def test_a_hostile_cooling_configuration_leaves_no_limit_and_names_why(polled, mode):
    samples, grpc = polled
    address = next(a for a, m in HOSTILE.items() if m == mode)
    assert grpc.requests(address) == [LOGIN, DETAILS, CONFIG]
    sample = samples[address]  # read over RPC all the same
    assert sample["state"] == "mining" and sample["hashrate_ths"] > 50, sample
    assert sample["chip_hot_limit_c"] is None and sample["chip_stop_limit_c"] is None, sample
    [warning] = sample["warnings"]
    assert warning.startswith(f"{address}:50051: ") and WHY[mode] in warning, warning
    assert warning.endswith(": no chip temperature limits of its own"), warning


def _config(mode: str = "auto", **temps) -> dict:
    return {"temperature": {mode: {name: {"degreeC": value} for name, value in temps.items()}}}


@pytest.mark.parametrize("config", [
    None, [], {}, {"temperature": "auto"}, {"temperature": {"disabled": {}}},
    _config(hotTemperature=100.0), _config(dangerousTemperature=110.0),
    _config(hotTemperature=True, dangerousTemperature=110.0), _config(hotTemperature="100", dangerousTemperature=[]),
    _config(hotTemperature=math.inf, dangerousTemperature=110.0), _config(hotTemperature=29.0, dangerousTemperature=40.0),
    _config(hotTemperature=100.0, dangerousTemperature=130.5), _config(hotTemperature=100.0, dangerousTemperature=100.0),
    {"temperature": {"auto": {"hotTemperature": 100.0, "dangerousTemperature": 110.0}}},  # not messages
], ids=repr)
def test_cooling_limits_refuse_what_is_not_a_pair_of_plausible_temperatures(config):
    hot, stop, why = braiins.cooling_limits(config)
    assert (hot, stop) == (None, None) and why, why


def test_cooling_limits_read_either_mode_in_either_spelling():
    assert braiins.cooling_limits(_config(hotTemperature=95, dangerousTemperature=105.5)) == (95.0, 105.5, None)
    snake = {"temperature": {"manual": {"hot_temperature": {"degree_c": 80.0},
                                        "dangerous_temperature": {"degree_c": 90.0}}}}
    assert braiins.cooling_limits(snake) == (80.0, 90.0, None)
