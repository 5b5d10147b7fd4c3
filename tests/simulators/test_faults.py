"""Every fault switch shows up on the wire the way a collector will meet it in the field.

Timing: no sleeps. Silence is detected with an explicit socket timeout, delays are checked only
from below (the server guarantees them), and completions wait under generous timeouts.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from pyasic.errors import APIError
from pyasic.rpc.base import BaseMinerRPCAPI

from simulators import ECHU_BOARD_LOST, ECMM_OVERHEAT, Faults, ManualClock, run_fleet
from simulators.probe import query, query_json, split_address

REQUEST = {"command": "summary+estats+devs"}


def fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)\[([^\]]*)\]", text))


def dev_of(reply: dict) -> dict[str, str]:
    entry = reply["STATS"][0]
    return fields(entry.get("MM ID0") or entry["MM ID0:Summary"])


@pytest.fixture(scope="module")
def sim():
    clock = ManualClock()
    with run_fleet("a1246:1,a1566:1,q:1", base="127.0.0.1:0", seed=21, clock=clock) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
    yield
    for miner in sim.miners:
        miner.clear_faults()


@pytest.fixture()
def a1246(sim):
    return sim.miners[0]


@pytest.fixture()
def a15(sim):
    return sim.miners[1]


@pytest.fixture()
def q(sim):
    return sim.miners[2]


def connect(miner, timeout: float) -> socket.socket:
    return socket.create_connection(split_address(miner.address), timeout=timeout)


# -- network -------------------------------------------------------------------------------------


def test_no_answer_refuses_connections_until_cleared(a1246):
    a1246.set_faults(no_answer=True)
    with pytest.raises(ConnectionRefusedError):
        query(a1246.address, REQUEST, timeout=5)
    a1246.set_faults(no_answer=False)
    assert query_json(a1246.address, "summary")["STATUS"][0]["STATUS"] == "S"


def test_hold_open_accepts_reads_and_never_answers(a1246):
    a1246.set_faults(hold_open=True)
    with connect(a1246, timeout=0.5) as sock:
        sock.sendall(json.dumps(REQUEST).encode())
        with pytest.raises(socket.timeout):
            sock.recv(4096)  # neither data nor EOF: the connection hangs
    a1246.set_faults(hold_open=False)
    assert query_json(a1246.address, "summary")["STATUS"][0]["STATUS"] == "S"


def test_drop_closes_without_a_byte(a1246):
    a1246.set_faults(drop=True)
    assert query(a1246.address, REQUEST, timeout=5) == b""


def test_slow_answer_arrives_after_the_delay(a1246):
    a1246.set_faults(slow_s=0.6)
    started = time.monotonic()
    with connect(a1246, timeout=0.2) as sock:
        sock.sendall(b'{"command":"summary"}')
        with pytest.raises(socket.timeout):
            sock.recv(4096)  # nothing yet
        sock.settimeout(10)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert time.monotonic() - started >= 0.6
    assert json.loads(data.rstrip(b"\x00"))["SUMMARY"][0]["Elapsed"] > 0


def test_slow_answers_are_served_one_at_a_time(a1246):
    # The firmware's API is single-threaded: a second client waits for the first answer.
    a1246.set_faults(slow_s=0.3)
    started = time.monotonic()
    socks = [connect(a1246, timeout=10) for _ in range(2)]
    for sock in socks:
        sock.sendall(b'{"command":"version"}')
    for sock in socks:
        with sock:
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data.endswith(b"\x00")
    assert time.monotonic() - started >= 0.6


# -- damaged replies -------------------------------------------------------------------------------


def test_malformed_json_defeats_parsers(a1246):
    a1246.set_faults(malformed=True)
    raw = query(a1246.address, REQUEST)
    assert raw.endswith(b"\x00")
    with pytest.raises(ValueError):
        json.loads(raw[:-1])
    with pytest.raises(APIError):
        BaseMinerRPCAPI._load_api_data(raw)  # pyasic's lenient fix-ups do not rescue it


def test_truncated_reply_is_cut_mid_way_without_terminator(a1246):
    whole = query(a1246.address, {"command": "estats"})
    a1246.set_faults(truncated=True)
    cut = query(a1246.address, {"command": "estats"})
    assert not cut.endswith(b"\x00")
    assert 0 < len(cut) < len(whole) * 0.75
    assert whole.startswith(cut[:100])
    with pytest.raises(ValueError):
        json.loads(cut)


def test_bare_nan_token(a1246):
    a1246.set_faults(bare_nan=True)
    raw = query(a1246.address, REQUEST)
    assert b'"Temperature":nan' in raw and b'"nan"' not in raw
    with pytest.raises(ValueError):
        json.loads(raw.rstrip(b"\x00"))
    a1246.set_faults(bare_nan=False)
    json.loads(query(a1246.address, REQUEST).rstrip(b"\x00"))


# -- hardware ----------------------------------------------------------------------------------------


def test_dead_hashboard(a15, sim):
    healthy = dev_of(query_json(a15.address, "estats"))
    a15.set_faults(dead_boards={1})
    sim.clock.advance(60)
    dev = dev_of(query_json(a15.address, "estats"))
    assert dev["SYSTEMSTATU"] == "Work: In Work, Hash Board: 2 "
    mghs = [float(v) for v in dev["MGHS"].split()]
    assert mghs[1] == 0.0 and mghs[0] > 0 and mghs[2] > 0
    assert set(dev["PVT_T1"].split()) == {"0"}
    assert dev["MTmax"].split()[1] == "0"
    assert [int(v) for v in dev["ECHU"].split()] == [0, ECHU_BOARD_LOST, 0]
    assert int(dev["TA"]) == 320
    assert float(dev["GHSspd"]) < 0.75 * float(healthy["GHSspd"])
    assert int(dev["WALLPOWER"]) < 0.8 * int(healthy["WALLPOWER"])
    truth = a15.last_served
    assert truth is not None and not truth.boards[1].alive and truth.boards[1].chips_ok == 0
    assert truth.state == "mining" and truth.errors


def test_overheat_throttle_hashes_slower_and_hot(a15, sim):
    a15.set_faults(overheat="throttle")
    sim.clock.advance(30)
    dev = dev_of(query_json(a15.address, "estats"))
    assert float(dev["GHSspd"]) < 0.75 * 194_000
    assert int(dev["TMax"]) >= 90
    assert dev["FanR"] == "100%"
    assert a15.last_served.state == "mining"


def test_overheat_shutdown_stops_hashing_with_ecmm(a15, sim):
    a15.set_faults(overheat="shutdown")
    sim.clock.advance(5)
    dev = dev_of(query_json(a15.address, "estats"))
    assert float(dev["GHSspd"]) == 0.0
    assert int(dev["ECMM"]) == ECMM_OVERHEAT
    assert dev["SYSTEMSTATU"].startswith("Work: In Fault")
    assert a15.last_served.state == "error"
    a15.clear_faults()
    sim.clock.advance(120)
    assert float(dev_of(query_json(a15.address, "estats"))["GHSspd"]) > 150_000


def test_soft_off_q_shows_idle_but_keeps_old_averages(q, sim):
    before = dev_of(query_json(q.address, "estats"))
    q.faults = Faults(soft_off=True)
    sim.clock.advance(300)
    reply = query_json(q.address, "estats")
    dev = dev_of(reply)
    assert dev["SoftOFF"] == "4"
    assert dev["GHSspd"] == "0.00"
    assert dev["SYSTEMSTATU"] == "Work: In Idle, Hash Board: 1"
    assert [dev[f"Fan{i}"] for i in range(1, 5)] == ["0"] * 4
    assert 130 <= int(dev["PS"].split()[-1]) <= 160  # idle watts in the last PS slot
    assert float(dev["GHSavg"]) == pytest.approx(float(before["GHSavg"]), rel=0.001)  # frozen, not zero
    assert float(dev["MGHS"]) == float(dev["GHSavg"])
    assert q.last_served.state == "soft_off"


def test_reboot_resets_elapsed_and_average_live_ramps(a1246, sim):
    a1246.reboot()
    sim.clock.advance(30)
    reply = query_json(a1246.address, "summary+estats")
    dev = dev_of(reply["estats"][0])
    assert int(dev["Elapsed"]) == 30 and reply["summary"][0]["SUMMARY"][0]["Elapsed"] == 30
    live, avg = float(dev["GHSspd"]), float(dev["GHSavg"])
    assert 0 < avg < live < 90_000 * 0.6
    assert reply["summary"][0]["SUMMARY"][0]["Accepted"] < 100


def test_unknown_fault_name_is_refused(a1246):
    with pytest.raises(TypeError, match="known"):
        a1246.set_faults(on_fire=True)
    with pytest.raises(ValueError):
        Faults(overheat="melting")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="indexes 0-2"):
        a1246.set_faults(dead_boards={3})


def test_slow_answer_reaches_a_client_that_half_closed(a1246):
    a1246.set_faults(slow_s=0.3)
    with connect(a1246, timeout=10) as sock:
        sock.sendall(b'{"command":"version"}')
        sock.shutdown(socket.SHUT_WR)  # like `nc -N`: request sent, nothing more to say
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert json.loads(data.rstrip(b"\x00"))["VERSION"][0]["PROD"] == "AvalonMiner 1246-83"
