"""Simulated Antminer S19j Pro / S21 on stock firmware: BMMiner RPC on 4028, digest-auth web UI on 80.

Wire checks first (what a real unit sends), then pyasic 0.79, unchanged, reading them. The clock
is a ManualClock, so every request of one pyasic `get_data` sees the same snapshot and pyasic's
numbers can be compared with the served truth exactly. Timing: no sleeps; silence is detected
with explicit client timeouts, delays are checked only from below.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time

import httpx
import pytest
from tests.support import pyasic_data, refused

from simulators import ManualClock, run_fleet
from simulators.antminer import board_sensors
from simulators.http import DigestAuth, HttpRequest
from simulators.probe import query, query_json

ROOT = httpx.DigestAuth("root", "root")
CLASSES = {"s19jpro": "BMMinerS19jPro", "s21": "BMMinerS21"}


@pytest.fixture(scope="module")
def sim():
    with run_fleet("s19jpro:1,s21:1", base="127.51.0.1", seed=41, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
        miner.set_soft_off(False)
        miner.set_led(False)
    sim.clock.advance(120)  # past the start-up ramp of a miner an earlier test woke up
    yield
    for miner in sim.miners:
        miner.clear_faults()


@pytest.fixture(params=list(CLASSES))
def unit(request, sim):
    return next(m for m in sim.miners if m.spec.key == request.param)


@pytest.fixture()
def s19(sim):
    return sim.miners[0]


def web(miner, path: str, *, auth=ROOT, timeout: float = 5.0, **kw) -> httpx.Response:
    method = "POST" if "json" in kw else "GET"
    return httpx.request(method, f"http://{miner.host}{path}", auth=auth, timeout=timeout, **kw)


def mac_colons(miner) -> str:
    return ":".join(miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()


# -- RPC on 4028 --------------------------------------------------------------------------------


def test_rpc_version_names_the_antminer_model_and_closes_the_connection(unit):
    # query() reads until the server closes: a 2 s timeout fails the test if it does not.
    raw = query(unit.address, {"command": "version"}, timeout=2.0)
    assert raw.endswith(b"\x00") and b"AVALON" not in raw.upper()
    version = json.loads(raw.rstrip(b"\x00"))["VERSION"][0]
    assert version["Type"] == unit.spec.prod == {"s19jpro": "Antminer S19j Pro", "s21": "Antminer S21"}[unit.spec.key]
    assert version["BMMiner"] and version["API"] and version["CompileTime"] == unit.spec.firmware


def test_rpc_joined_request_carries_the_keys_pyasic_reads(unit):
    reply = query_json(unit.address, "version+summary+stats+pools")
    assert {k: reply[k][0]["STATUS"][0]["STATUS"] for k in ("version", "summary", "stats", "pools")} == dict.fromkeys(
        ("version", "summary", "stats", "pools"), "S")
    truth = unit.last_served
    summary = reply["summary"][0]["SUMMARY"][0]
    assert float(summary["GHS 5s"]) == pytest.approx(truth.hashrate_ths * 1000, abs=0.01)
    assert summary["GHS av"] == pytest.approx(truth.hashrate_avg_ths * 1000, abs=0.01)
    stats = reply["stats"][0]["STATS"]
    assert stats[0]["Type"] == unit.spec.prod
    dev = stats[1]
    assert dev["Elapsed"] == truth.uptime_s
    assert [dev[f"fan{i}"] for i in range(1, 5)] == list(truth.fans_rpm)
    assert [dev[f"chain_acn{i}"] for i in range(1, 4)] == [unit.spec.chips_per_board] * 3
    assert dev["chain_acs1"].count("o") == unit.spec.chips_per_board
    assert dev["total_rateideal"] == unit.spec.nominal_ths * 1000 and dev["rate_unit"] == "GH"
    assert sum(float(dev[f"chain_rate{i}"]) for i in range(1, 4)) == pytest.approx(truth.hashrate_ths * 1000, abs=0.05)
    pcb, chip = board_sensors(truth.boards[0])
    assert dev["temp_pcb1"] == "-".join(map(str, pcb)) and dev["temp_chip1"] == "-".join(map(str, chip))
    pool = reply["pools"][0]["POOLS"][0]
    assert pool["Accepted"] == truth.accepted and pool["Stratum Active"] is True


def test_rpc_unknown_command_is_an_error_reply(s19):
    reply = query_json(s19.address, "estats")
    assert reply["STATUS"][0]["STATUS"] == "E" and reply["STATUS"][0]["Code"] == 14


def test_rpc_new_api_answers_in_the_web_shape(s19):
    raw = query(s19.address, {"command": "stats", "new_api": True})
    chains = json.loads(raw.rstrip(b"\x00"))["STATS"][0]["chain"]
    assert [c["index"] for c in chains] == [0, 1, 2]


# -- web UI on 80: digest authentication ------------------------------------------------------------


def test_web_without_credentials_is_a_digest_challenge_for_the_antminer_realm(s19):
    response = web(s19, "/", auth=None)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Digest ") and 'realm="antMiner Configuration"' in challenge
    assert 'qop="auth"' in challenge and "nonce=" in challenge
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_web_with_root_root_answers_json(unit):
    info = web(unit, "/cgi-bin/get_system_info.cgi").json()
    assert info["minertype"] == unit.spec.prod
    assert info["macaddr"] == mac_colons(unit)
    assert info["hostname"] and info["serinum"]


@pytest.mark.parametrize(("user", "password"), [("root", "wrong"), ("admin", "root")])
def test_web_refuses_wrong_credentials(s19, user, password):
    response = web(s19, "/cgi-bin/get_system_info.cgi", auth=httpx.DigestAuth(user, password))
    assert response.status_code == 401


def test_web_refuses_a_replayed_answer_for_another_path_and_a_forged_nonce(s19):
    with httpx.Client(auth=ROOT) as client:
        ok = client.get(f"http://{s19.host}/cgi-bin/summary.cgi")
        assert ok.status_code == 200
        header = ok.request.headers["authorization"]
    # The same Authorization header (uri=/cgi-bin/summary.cgi) does not open another path...
    other = httpx.get(f"http://{s19.host}/cgi-bin/stats.cgi", headers={"Authorization": header})
    assert other.status_code == 401
    # ...and a nonce this server never issued is refused even with the right password.
    forged = header.replace('nonce="', 'nonce="0', 1)
    assert httpx.get(f"http://{s19.host}/cgi-bin/summary.cgi", headers={"Authorization": forged}).status_code == 401


def test_digest_arithmetic_matches_the_rfc_2617_example():
    auth = DigestAuth("testrealm@host.com", {"Mufasa": "Circle Of Life"})
    auth.nonce_ok = lambda nonce: nonce == "dcd98b7102dd2f0e8b11d0f600bfb0c093"  # the RFC's nonce
    header = ('Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
              'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
              'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    request = HttpRequest("GET", "/dir/index.html", "/dir/index.html", {}, "HTTP/1.1", {"authorization": header})
    assert auth.authorized(request)
    ha1 = hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
    assert ha1 == "939e7578ed9e3c518a452acee763bce9"  # RFC 2617 section 3.5


def test_unknown_paths_are_404_html_so_pyasic_does_not_take_it_for_a_marathon(s19):
    response = web(s19, "/kaonsu/v1/brief")
    assert response.status_code == 404
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


# -- web UI: the endpoints pyasic reads --------------------------------------------------------------


def test_web_stats_lists_chains_with_rates_chips_and_sensors(unit):
    stats = web(unit, "/cgi-bin/stats.cgi").json()["STATS"][0]
    truth = unit.last_served
    assert stats["fan"] == list(truth.fans_rpm) and stats["rate_unit"] == "GH/s"
    for chain, board in zip(stats["chain"], truth.boards, strict=True):
        pcb, chip = board_sensors(board)
        assert chain["index"] == board.index
        assert chain["rate_real"] == pytest.approx(board.hashrate_ths * 1000, abs=0.01)
        assert chain["asic_num"] == unit.spec.chips_per_board
        assert chain["temp_pcb"] == pcb and chain["temp_chip"] == chip and chain["sn"]
        assert max(chip) == board.temp_chip_max_c


def test_web_summary_conf_blink_and_network_info(s19):
    summary = web(s19, "/cgi-bin/summary.cgi").json()["SUMMARY"][0]
    assert [item["status"] for item in summary["status"]] == ["s", "s", "s", "s"]
    conf = web(s19, "/cgi-bin/get_miner_conf.cgi").json()
    assert conf["bitmain-work-mode"] == "0"
    assert conf["pools"][0]["url"].startswith("stratum+tcp://") and conf["pools"][0]["user"]
    assert web(s19, "/cgi-bin/get_blink_status.cgi").json() == {"blink": False}
    assert web(s19, "/cgi-bin/get_network_info.cgi").json()["macaddr"] == mac_colons(s19)
    assert web(s19, "/cgi-bin/pools.cgi").json()["POOLS"][0]["accepted"] == s19.last_served.accepted


def test_sleep_and_wake_through_set_miner_conf(s19):
    assert web(s19, "/cgi-bin/set_miner_conf.cgi", json={"bitmain-work-mode": "1"}).json()["code"] == "M000"
    assert s19.truth().soft_off
    assert web(s19, "/cgi-bin/get_miner_conf.cgi").json()["bitmain-work-mode"] == "1"
    summary = query_json(s19.address, "summary")["SUMMARY"][0]
    assert float(summary["GHS 5s"]) == 0.0
    assert web(s19, "/cgi-bin/stats.cgi").json()["STATS"][0]["fan"] == [0, 0, 0, 0]
    assert web(s19, "/cgi-bin/set_miner_conf.cgi", json={"bitmain-work-mode": "0"}).json()["code"] == "M000"
    assert not s19.truth().soft_off


def test_blink_turns_the_locate_led_on_and_off(s19):
    assert web(s19, "/cgi-bin/blink.cgi", json={"blink": "true"}).json() == {"code": "B000"}
    assert web(s19, "/cgi-bin/get_blink_status.cgi").json() == {"blink": True}
    assert web(s19, "/cgi-bin/blink.cgi", json={"blink": "false"}).json() == {"code": "B100"}
    assert not s19.truth().led


def test_a_lost_board_leaves_the_chain_list_and_raises_an_error(s19):
    s19.set_faults(dead_boards={1})
    stats = web(s19, "/cgi-bin/stats.cgi").json()["STATS"][0]
    assert [c["index"] for c in stats["chain"]] == [0, 2]
    status = web(s19, "/cgi-bin/summary.cgi").json()["SUMMARY"][0]["status"]
    assert status[0]["status"] == "e" and "Chain 1" in status[0]["msg"]
    dev = query_json(s19.address, "stats")["STATS"][1]
    assert dev["chain_acn2"] == 0 and dev["chain_acs2"] == ""


# -- faults ----------------------------------------------------------------------------------------


def test_no_answer_refuses_both_ports_then_recovers(s19):
    s19.set_faults(no_answer=True)
    assert refused(s19.host, 4028) and refused(s19.host, 80)
    s19.set_faults(no_answer=False)
    assert query_json(s19.address, "version")["VERSION"][0]["Type"] == "Antminer S19j Pro"
    assert web(s19, "/", auth=None).status_code == 401


def test_hold_open_answers_neither_rpc_nor_web(s19):
    s19.set_faults(hold_open=True)
    with pytest.raises(TimeoutError):
        query(s19.address, {"command": "summary"}, timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        web(s19, "/", auth=None, timeout=0.5)


def test_slow_delays_rpc_and_web_answers(s19):
    s19.set_faults(slow_s=0.3)
    started = time.monotonic()
    query_json(s19.address, "version")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert web(s19, "/", auth=None).status_code == 401
    assert time.monotonic() - started >= 0.3


def test_malformed_breaks_rpc_and_web_json_but_not_the_login_page(s19):
    s19.set_faults(malformed=True)
    with pytest.raises(json.JSONDecodeError):
        json.loads(query(s19.address, {"command": "summary"}).rstrip(b"\x00"))
    response = web(s19, "/cgi-bin/stats.cgi")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert web(s19, "/", auth=None).status_code == 401  # detection still sees an Antminer


def test_drop_and_truncated_spoil_the_transfer(s19):
    s19.set_faults(drop=True)
    assert query(s19.address, {"command": "summary"}) == b""
    with pytest.raises(httpx.RemoteProtocolError):
        web(s19, "/", auth=None)
    s19.set_faults(drop=False, truncated=True)
    with pytest.raises(httpx.RemoteProtocolError):  # Content-Length promised more than came
        web(s19, "/cgi-bin/stats.cgi")


# -- pyasic 0.79, unchanged ----------------------------------------------------------------------------


def test_pyasic_detects_stock_antminers(unit):
    found, _ = pyasic_data(unit.host)
    assert type(found).__name__ == CLASSES[unit.spec.key]
    assert str(found.make) == "AntMiner" and found.model.startswith(unit.spec.model)


def test_pyasic_reads_what_the_simulator_served(unit):
    _, data = pyasic_data(unit.host)
    truth = unit.last_served
    spec = unit.spec
    # pyasic's hashrate is the sum of the chains' rate_real (each rounded to 0.01 GH/s), not GHS 5s
    assert float(data.hashrate) == pytest.approx(truth.hashrate_ths, abs=5e-5)
    assert 0.9 * spec.nominal_ths < float(data.hashrate) < 1.1 * spec.nominal_ths
    assert float(data.expected_hashrate) == pytest.approx(spec.nominal_ths)
    assert data.wattage is None  # stock firmware reports no power: pyasic has none to give
    assert data.mac == mac_colons(unit)
    assert data.fw_ver == spec.firmware
    assert data.uptime == truth.uptime_s
    assert data.is_mining is True and data.errors == []
    assert [f.speed for f in data.fans] == list(truth.fans_rpm)
    assert len(data.hashboards) == spec.boards
    for board, served in zip(data.hashboards, truth.boards, strict=True):
        pcb, chip = board_sensors(served)
        assert not board.missing and board.chips == spec.chips_per_board
        assert float(board.hashrate) == pytest.approx(served.hashrate_ths, abs=1e-5)
        # pyasic averages the four sensors: the chip figure is a mean, below the hottest chip
        assert board.chip_temp == pytest.approx(statistics.mean(chip))
        assert board.temp == pytest.approx(statistics.mean(pcb))
        assert board.chip_temp <= served.temp_chip_max_c
    assert data.pools[0].accepted == truth.accepted and data.pools[0].active


def test_pyasic_sees_a_sleeping_antminer_as_not_mining(s19):
    s19.set_soft_off(True)
    _, data = pyasic_data(s19.host)
    assert data.is_mining is False
    assert float(data.hashrate) == 0.0
    assert [f.speed for f in data.fans] == [0, 0, 0, 0]


def test_pyasic_sees_a_lost_board_as_missing_with_an_error(s19):
    s19.set_faults(dead_boards={1})
    _, data = pyasic_data(s19.host)
    assert [b.missing for b in data.hashboards] == [False, True, False]
    assert any("Chain 1" in e.error_message for e in data.errors)
