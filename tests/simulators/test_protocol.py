"""The simulated miners speak the CGMiner API the way Avalon firmware does, byte for byte."""

from __future__ import annotations

import json
import re
import socket

import pytest

from simulators import ManualClock, run_fleet
from simulators.probe import query, query_json, split_address

MODELS = "a1246:1,a1566:1,a1466:1,q:1,nano3s:1"


def fields(device_string: str) -> dict[str, str]:
    """`Key[value] Key[v1 v2]` -> {"Key": "value", ...}."""
    return dict(re.findall(r"(\w+)\[([^\]]*)\]", device_string))


def device_string(stats_reply: dict) -> dict[str, str]:
    entry = stats_reply["STATS"][0]
    text = entry.get("MM ID0") or entry["MM ID0:Summary"]
    return fields(text)


@pytest.fixture(scope="module")
def fleet():
    # Port 0: every miner on its own free port of 127.0.0.1, so nothing here clashes with anyone.
    with run_fleet(MODELS, base="127.0.0.1:0", seed=11, clock=ManualClock()) as sim:
        yield sim


@pytest.fixture()
def fresh():
    """A fleet of its own for tests that change a miner's state through the API."""
    clock = ManualClock()
    with run_fleet("a1246:1,q:1", base="127.0.0.1:0", seed=12, clock=clock) as sim:
        yield sim, clock


def by_model(fleet, key: str):
    return next(m for m in fleet.miners if m.spec.key == key)


# -- framing -------------------------------------------------------------------------------------


def test_answers_once_with_nul_terminator_then_closes(fleet):
    host, port = split_address(fleet.miners[0].address)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b'{"command":"summary"}')
        data = b""
        while chunk := sock.recv(4096):  # the miner closes after one answer: recv returns b""
            data += chunk
        assert data.endswith(b"\x00") and data.count(b"\x00") == 1
        reply = json.loads(data[:-1])
        assert reply["STATUS"][0]["STATUS"] == "S"
        assert reply["id"] == 1
        # A second request on the same connection gets nothing: the miner has closed it.
        try:
            sock.sendall(b'{"command":"summary"}')
            assert sock.recv(4096) == b""
        except ConnectionError:
            pass  # reset by the closed peer: just as closed


def test_joined_request_is_answered_per_command(fleet):
    raw = query(fleet.miners[0].address, {"command": "version+summary+estats+pools", "parameter": ""})
    reply = json.loads(raw.rstrip(b"\x00"))
    assert list(reply) == ["version", "summary", "estats", "pools", "id"]
    assert reply["id"] == 1
    for name in ("version", "summary", "estats", "pools"):
        (part,) = reply[name]
        assert part["STATUS"][0]["STATUS"] == "S"
        assert part["id"] == 1
    assert reply["version"][0]["VERSION"][0]["PROD"] == "AvalonMiner 1246-83"
    assert "MM ID0" in reply["estats"][0]["STATS"][0]


def test_plain_text_request_gets_cgminer_text_reply(fleet):
    raw = query(fleet.miners[0].address, b"summary\n")
    assert raw.endswith(b"|\x00")
    text = raw[:-1].decode()
    status, summary = text.rstrip("|").split("|")
    assert status.startswith("STATUS=S,") and "Msg=Summary" in status
    assert summary.startswith("SUMMARY,Elapsed=")
    assert "MHS av=" in summary


def test_plain_text_with_parameter(fleet):
    raw = query(fleet.miners[0].address, b"ascset|0,led,1-255")
    assert raw.startswith(b"STATUS=I,") and b"ASC 0 set info: LED[0]" in raw


def test_unknown_command_is_a_cgminer_error(fleet):
    reply = query_json(fleet.miners[0].address, "bogus")
    status = reply["STATUS"][0]
    assert (status["STATUS"], status["Code"], status["Msg"]) == ("E", 14, "Invalid command")
    joined = query_json(fleet.miners[0].address, "summary+bogus")
    assert joined["summary"][0]["STATUS"][0]["STATUS"] == "S"
    assert joined["bogus"][0]["STATUS"][0]["Msg"] == "Invalid command"


def test_broken_json_request_is_answered_invalid_json(fleet):
    raw = query(fleet.miners[0].address, b'{"command": "summ', timeout=10)
    status = json.loads(raw.rstrip(b"\x00"))["STATUS"][0]
    assert (status["STATUS"], status["Msg"]) == ("E", "Invalid JSON")


# -- content per command ---------------------------------------------------------------------------

IDENTITY = {
    "a1246": ("AvalonMiner 1246-83", "1246-83"),
    "a1566": ("AvalonMiner 15-194", "15-194"),
    "a1466": ("AvalonMiner 1466-150", "1466-150"),
    "q": ("Avalon Q", "Q"),
    "nano3s": ("Avalon Nano3s", "Nano3s"),
}


@pytest.mark.parametrize("key", list(IDENTITY))
def test_version_identifies_the_model(fleet, key):
    miner = by_model(fleet, key)
    version = query_json(miner.address, "version")["VERSION"][0]
    assert (version["PROD"], version["MODEL"]) == IDENTITY[key]
    assert re.fullmatch(r"[0-9a-f]{12}", version["MAC"])
    assert version["MAC"] == miner.mac
    assert version["CGMiner"] and version["API"] and version["VERSION"]


def test_macs_are_unique_in_a_fleet(fleet):
    macs = [query_json(m.address, "version")["VERSION"][0]["MAC"] for m in fleet.miners]
    assert len(set(macs)) == len(macs)


def test_devdetails_names_the_avalon_driver(fleet):
    detail = query_json(fleet.miners[0].address, "devdetails")["DEVDETAILS"][0]
    assert "avalon" in detail["Driver"].lower()


def test_devs_and_summary_carry_hashrates_in_mhs(fleet):
    miner = by_model(fleet, "a1566")
    devs = query_json(miner.address, "devs")["DEVS"][0]
    for key in ("MHS av", "MHS 30s", "MHS 1m", "MHS 5m", "Temperature", "Accepted", "Rejected"):
        assert key in devs
    assert 150e6 < devs["MHS 1m"] < 230e6  # ~194 TH/s in MH/s
    summary = query_json(miner.address, "summary")["SUMMARY"][0]
    for key in ("Elapsed", "MHS av", "MHS 30s", "MHS 1m", "MHS 5m", "MHS 15m", "Accepted", "Rejected", "Stale",
                "Hardware Errors"):
        assert key in summary


def test_pools_list_the_active_stratum_pool(fleet):
    pools = query_json(fleet.miners[0].address, "pools")["POOLS"]
    assert [p["POOL"] for p in pools] == [0, 1, 2]
    active = pools[0]
    assert active["URL"].startswith("stratum+tcp://") and active["User"]
    assert active["Status"] == "Alive" and active["Stratum Active"] is True
    assert active["Accepted"] > 0 and "Rejected" in active and "Stale" in active


@pytest.mark.parametrize("command", ["stats", "estats"])
def test_stats_hold_device_string_then_pool_entry(fleet, command):
    miner = by_model(fleet, "a1566")
    stats = query_json(miner.address, command)["STATS"]
    dev = device_string({"STATS": stats})
    assert stats[1]["ID"] == "POOL0" and stats[1]["Elapsed"] == int(dev["Elapsed"])
    assert dev["SYSTEMSTATU"] == "Work: In Work, Hash Board: 3 "
    for key in ("Ver", "BOOTBY", "Temp", "TMax", "TAvg", "Fan1", "Fan2", "FanR", "PS", "WALLPOWER", "GHSspd",
                "GHSmm", "GHSavg", "MGHS", "MTmax", "MTavg", "PVT_T0", "PVT_T1", "PVT_T2", "TA", "MPO", "WORKMODE",
                "WORKLEVEL", "SoftOFF", "Led", "DH", "ECHU", "ECMM"):
        assert key in dev, key
    assert int(dev["TA"]) == 480
    assert [len(dev[f"PVT_T{b}"].split()) for b in range(3)] == [160, 160, 160]
    assert dev["PS"].split()[-1] == dev["WALLPOWER"]
    assert dev["FanR"].endswith("%")


def test_mghs_sum_equals_ghsavg(fleet):
    for miner in fleet.miners:
        dev = device_string(query_json(miner.address, "estats"))
        boards = [float(v) for v in dev["MGHS"].split()]
        assert sum(boards) == pytest.approx(float(dev["GHSavg"]), abs=0.02)


def test_a1246_2021_firmware_has_no_wallpower(fleet):
    dev = device_string(query_json(by_model(fleet, "a1246").address, "estats"))
    assert "WALLPOWER" not in dev
    assert 3000 < int(dev["PS"].split()[-1]) < 3900  # power only in the last PS slot
    assert [f"Fan{i}" in dev for i in range(1, 5)] == [True] * 4


def test_avalon_q_layout(fleet):
    stats = query_json(by_model(fleet, "q").address, "stats")["STATS"][0]
    summary = stats["MM ID0:Summary"]
    assert summary.startswith("'STATS':{") and summary.endswith("}")
    assert stats["HBinfo"].startswith("'HB0':{PVT_T0[")
    dev = fields(summary)
    for key in ("ITemp", "HBITemp", "HBOTemp", "TarT", "Fan1", "Fan4", "SoftOffTime", "SoftOnTime", "WORKMODE",
                "GHSspd", "GHSavg", "MGHS", "PS"):
        assert key in dev, key
    assert "WALLPOWER" not in dev and "Temp" not in dev
    assert len(fields(stats["HBinfo"])["PVT_T0"].split()) == 160


def test_nano3s_has_no_intake_sensor(fleet):
    dev = device_string(query_json(by_model(fleet, "nano3s").address, "estats"))
    assert dev["ITemp"] == "-273"
    assert len(dev["PVT_T0"].split()) == 12


def test_litestats_exists_only_on_newer_firmware(fleet):
    old = query_json(by_model(fleet, "a1246").address, "litestats")
    assert old["STATUS"][0]["Msg"] == "Invalid command"
    q = query_json(by_model(fleet, "q").address, "litestats")["STATS"][0]
    assert "MM ID0:Summary" in q and "HBinfo" not in q
    a15 = query_json(by_model(fleet, "a1566").address, "litestats")["STATS"][0]
    assert "GHSspd" in fields(a15["MM ID0"]) and "PVT_T0" not in fields(a15["MM ID0"])


# -- ascset ------------------------------------------------------------------------------------------


def test_ascset_softoff_then_softon(fresh):
    sim, clock = fresh
    q = by_model(sim, "q")
    reply = query_json(q.address, "ascset", "0,softoff,1:1750000005")
    assert reply["STATUS"][0]["STATUS"] == "I" and "success" in reply["STATUS"][0]["Msg"]
    assert device_string(query_json(q.address, "estats"))["SoftOFF"] == "0"  # at 1750000005 on its clock, not now
    clock.advance(5)
    dev = device_string(query_json(q.address, "estats"))
    assert dev["SoftOFF"] == "4" and dev["GHSspd"] == "0.00"
    assert dev["SYSTEMSTATU"].startswith("Work: In Idle")
    assert dev["SoftOffTime"] == "1750000005"

    reply = query_json(q.address, "ascset", "0,softon,1:1750000001")  # a time past: at once
    assert "success" in reply["STATUS"][0]["Msg"]
    assert device_string(query_json(q.address, "estats"))["SoftOFF"] == "0"
    clock.advance(120)
    dev = device_string(query_json(q.address, "estats"))
    assert dev["SoftOFF"] == "0" and float(dev["GHSspd"]) > 80000
    assert dev["SYSTEMSTATU"].startswith("Work: In Work")


def test_ascset_workmode_changes_nominal_and_live_hashrate(fresh):
    sim, clock = fresh
    q = by_model(sim, "q")
    assert query_json(q.address, "ascset", "0,workmode,set,0")["STATUS"][0]["Msg"] == "ASC 0 set OK"
    clock.advance(30)
    dev = device_string(query_json(q.address, "estats"))
    assert dev["WORKMODE"] == "0"
    assert float(dev["GHSmm"]) == 56000.0
    assert 50000 < float(dev["GHSspd"]) < 62000


def test_ascset_worklevel_and_led(fresh):
    sim, _ = fresh
    miner = by_model(sim, "a1246")
    assert query_json(miner.address, "ascset", "0,worklevel,set,1")["STATUS"][0]["Msg"] == "ASC 0 set OK"
    assert query_json(miner.address, "ascset", "0,led,1-1")["STATUS"][0]["Msg"] == "ASC 0 set OK"
    dev = device_string(query_json(miner.address, "estats"))
    assert (dev["WORKLEVEL"], dev["Led"]) == ("1", "1")
    assert query_json(miner.address, "ascset", "0,led,1-255")["STATUS"][0]["Msg"] == "ASC 0 set info: LED[1]"


def test_ascset_reboot_restarts_elapsed(fresh):
    sim, clock = fresh
    miner = by_model(sim, "a1246")
    before = query_json(miner.address, "summary")["SUMMARY"][0]["Elapsed"]
    assert before > 3600
    reply = query_json(miner.address, "ascset", "0,reboot,0")
    assert reply["STATUS"][0]["STATUS"] in ("I", "S")
    clock.advance(20)
    assert query_json(miner.address, "summary")["SUMMARY"][0]["Elapsed"] == 20


@pytest.mark.parametrize(
    ("parameter", "msg"),
    [
        ("1,softoff,0", "Invalid ASC id"),
        ("0,frobnicate,1", "unknown option"),
        ("0,workmode,set,7", "out of range"),
        ("0", "missing option"),
    ],
)
def test_ascset_rejects_bad_requests(fresh, parameter, msg):
    sim, _ = fresh
    status = query_json(sim.miners[0].address, "ascset", parameter)["STATUS"][0]
    assert status["STATUS"] == "E" and msg in status["Msg"]


def test_ascset_cannot_be_joined(fresh):
    sim, _ = fresh
    reply = query_json(sim.miners[0].address, "summary+ascset", "0,softoff,1")
    assert reply["ascset"][0]["STATUS"][0]["STATUS"] == "E"
    assert not sim.miners[0].faults.soft_off


def test_plain_text_joined_request(fleet):
    raw = query(fleet.miners[0].address, b"version+summary")
    text = raw[:-1].decode()
    assert raw.endswith(b"\x00")
    assert text.startswith("CMD=version|STATUS=S,") and "|CMD=summary|STATUS=S," in text
    assert "PROD=AvalonMiner 1246-83" in text and "SUMMARY,Elapsed=" in text


def test_restart_reboots(fresh):
    sim, clock = fresh
    miner = by_model(sim, "q")
    assert query_json(miner.address, "restart")["STATUS"] == "RESTART"
    clock.advance(5)
    assert query_json(miner.address, "summary")["SUMMARY"][0]["Elapsed"] == 5
