"""Simulated Bitaxe Gamma (ESP-Miner / AxeOS): an HTTP API on port 80, nothing on 4028.

Wire checks first, then pyasic 0.79, unchanged, reading it. A ManualClock keeps every request of
one pyasic `get_data` on the same snapshot, so pyasic's numbers compare with the served truth.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.support import pyasic_data, refused

from simulators import ManualClock, run_fleet
from simulators.bitaxe import vr_temp_c

# What pyasic's BitAxe backend reads (get_data fails outright without the stratum/fan keys).
PYASIC_KEYS = {"hashRate", "power", "temp", "vrTemp", "fanrpm", "fanspeed", "uptimeSeconds", "ASICModel",
               "asicCount", "smallCoreCount", "frequency", "macAddr", "hostname", "version", "stratumURL",
               "stratumPort", "stratumUser", "autofanspeed"}
AXEOS_KEYS = {"bestDiff", "sharesAccepted", "sharesRejected", "coreVoltage", "voltage", "current",
              "expectedHashrate", "axeOSVersion", "boardVersion", "deviceModel", "temptarget"}


@pytest.fixture(scope="module")
def sim():
    with run_fleet("bitaxe:2", base="127.52.0.1", seed=43, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture()
def axe(sim):
    miner = sim.miners[0]
    miner.clear_faults()
    sim.clock.advance(120)  # past the start-up ramp if an earlier test rebooted it
    yield miner
    miner.clear_faults()


def get(miner, path: str, timeout: float = 5.0) -> httpx.Response:
    return httpx.get(f"http://{miner.host}{path}", timeout=timeout)


def info(miner) -> dict:
    return get(miner, "/api/system/info").json()


def test_a_bitaxe_lives_on_port_80_only(sim, axe):
    assert axe.port == 80 and axe.address == f"{axe.host}:80"
    assert sim.miners[1].host == "127.52.0.2"
    assert refused(axe.host, 4028)


def test_the_page_at_root_is_axeos(axe):
    response = get(axe, "/")
    assert response.status_code == 200 and "AxeOS" in response.text


def test_system_info_has_every_key_pyasic_and_axeos_clients_read(axe):
    data = info(axe)
    assert PYASIC_KEYS | AXEOS_KEYS <= set(data)
    truth = axe.last_served
    assert data["hashRate"] == pytest.approx(truth.hashrate_ths * 1000, abs=0.01)
    assert round(data["power"]) == round(truth.power_w) and data["power"] != round(data["power"])  # like the INA260
    assert data["temp"] == truth.temp_chip_max_c and data["vrTemp"] == vr_temp_c(truth, axe.spec)
    assert data["fanrpm"] == truth.fans_rpm[0] and data["fanspeed"] == truth.fan_pct
    assert data["uptimeSeconds"] == truth.uptime_s
    assert (data["sharesAccepted"], data["sharesRejected"]) == (truth.accepted, truth.rejected)
    assert data["ASICModel"] == "BM1370" and data["asicCount"] == 1
    assert data["smallCoreCount"] * data["asicCount"] * data["frequency"] / 1e6 == pytest.approx(1.224)
    assert data["macAddr"] == ":".join(axe.mac[i:i + 2] for i in range(0, 12, 2)).upper()
    assert data["bestDiff"][-1] in "kMGT"


def test_asic_endpoint(axe):
    asic = get(axe, "/api/system/asic").json()
    assert asic["ASICModel"] == "BM1370" and asic["deviceModel"] == "Gamma" and asic["asicCount"] == 1


def test_restart_reboots_the_unit(axe):
    before = info(axe)["uptimeSeconds"]
    response = httpx.post(f"http://{axe.host}/api/system/restart")
    assert response.status_code == 200 and "restart" in response.text  # plain text, as the firmware sends
    assert info(axe)["uptimeSeconds"] < min(before, 5)


def test_patch_changes_settings_and_rejects_garbage(axe):
    assert httpx.patch(f"http://{axe.host}/api/system", json={"stratumUser": "bc1qtest.gamma"}).status_code == 200
    assert info(axe)["stratumUser"] == "bc1qtest.gamma"
    assert httpx.patch(f"http://{axe.host}/api/system", json={"stratumPort": "not a port"}).status_code == 400
    assert get(axe, "/api/nothing").status_code == 404


def test_no_answer_refuses_connections_then_recovers(axe):
    axe.set_faults(no_answer=True)
    assert refused(axe.host, 80)
    axe.set_faults(no_answer=False)
    assert "AxeOS" in get(axe, "/").text


def test_malformed_breaks_the_json_but_not_the_page(axe):
    axe.set_faults(malformed=True)
    with pytest.raises(json.JSONDecodeError):
        info(axe)
    assert "AxeOS" in get(axe, "/").text


def test_hold_open_and_slow(axe):
    axe.set_faults(hold_open=True)
    with pytest.raises(httpx.ReadTimeout):
        get(axe, "/api/system/info", timeout=0.5)
    axe.set_faults(hold_open=False, slow_s=0.3)
    started = time.monotonic()
    assert info(axe)["hashRate"] > 0
    assert time.monotonic() - started >= 0.3


def test_soft_off_shows_no_hashrate_and_idle_power(axe):
    axe.set_faults(soft_off=True)
    data = info(axe)
    assert data["hashRate"] == 0 and data["power"] < 5 and data["fanrpm"] == 0


# -- pyasic 0.79, unchanged ------------------------------------------------------------------------


def test_pyasic_detects_a_bitaxe_gamma(axe):
    found, _ = pyasic_data(axe.host)
    assert type(found).__name__ == "BitAxeGamma"
    assert str(found.make) == "BitAxe" and found.model.startswith("Gamma")


def test_pyasic_reads_what_the_simulator_served(axe):
    _, data = pyasic_data(axe.host)
    truth = axe.last_served
    assert float(data.hashrate) == pytest.approx(truth.hashrate_ths, abs=1e-5)
    assert float(data.expected_hashrate) == pytest.approx(1.224)
    assert data.wattage == round(truth.power_w)  # pyasic rounds to whole watts
    assert data.uptime == truth.uptime_s
    assert data.mac == ":".join(axe.mac[i:i + 2] for i in range(0, 12, 2)).upper()
    assert data.fw_ver == "v2.6.1"
    assert [f.speed for f in data.fans] == [truth.fans_rpm[0]]
    [board] = data.hashboards
    assert board.chips == 1 and not board.missing
    assert board.chip_temp == truth.temp_chip_max_c
    assert board.temp == vr_temp_c(truth, axe.spec)
    assert data.config.pools.groups[0].pools[0].url == "stratum+tcp://btc.pool.hashfleet.test:3333"
