"""Simulated Whatsminers (btminer API v2 on 4028): their replies against published layouts, then pyasic
0.79, unchanged, detecting and reading them and driving the token-authenticated writes, then the
collector's pyasic path. Real TCP on loopback; a ManualClock keeps the served truth still.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import warnings

import pyasic
import pytest
from tests.simulators.replies import load, shape_mismatches
from tests.support import HASHFLEET, pyasic_data

from simulators import ManualClock, SimulatedMiner, resolve_model, run_fleet
from simulators.probe import query, query_json
from simulators.whatsminer import Whatsminer, board_share_1m, board_temps

CLASSES = {"m30splus": "BTMinerM30SPlusVE40", "m50s": "BTMinerM50SVH50", "m60s": "BTMinerM60SVK30"}
CAPTURE = "whatsminer/m30splus-ve40_api2_2022-01"
V205 = "whatsminer/api2.0.5_asic-rs-testdata"


@pytest.fixture(scope="module")
def sim():
    with run_fleet("m30splus:1,m50s:1,m60s:1", base="127.56.0.1", seed=43, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
        miner.set_soft_off(False)
        sim.firmware(miner).power_limit_w = None
    sim.clock.advance(120)  # past the start-up ramp of a miner an earlier test woke up
    yield
    for miner in sim.miners:
        miner.clear_faults()


@pytest.fixture(params=list(CLASSES))
def unit(request, sim):
    return next(m for m in sim.miners if m.spec.key == request.param)


@pytest.fixture()
def m30(sim):
    return sim.miners[0]


def mac_colons(miner) -> str:
    return ":".join(miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()


async def _pyasic(host: str, action, password: str | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        miner = await pyasic.get_miner(host)
        if password is not None:
            miner.rpc.pwd = password
        return await action(miner)


def run_pyasic(host: str, action, password: str | None = None):
    return asyncio.run(_pyasic(host, action, password))


# -- the wire against real replies ------------------------------------------------------------------


@pytest.mark.parametrize(("command", "real"), [
    ("summary", f"{CAPTURE}/summary.json"), ("edevs", f"{CAPTURE}/edevs.json"), ("devs", f"{CAPTURE}/edevs.json"),
    ("pools", f"{CAPTURE}/pools.json"), ("get_psu", f"{CAPTURE}/get_psu.json"),
    ("get_version", f"{V205}/get_version.json"), ("get_miner_info", f"{V205}/get_miner_info.json"),
    ("status", f"{V205}/status.json"), ("get_error_code", f"{V205}/get_error_code_with_errors.json"),
    ("devdetails", "whatsminer/m30splus-ve40_20240930/devdetails.json"),
])
def test_replies_have_the_keys_and_types_of_real_ones(m30, command, real):
    if command == "get_error_code":
        m30.set_faults(dead_boards={1})  # the real reply lists errors
    ours, theirs = query_json(m30.address, command), load(real)
    if command == "get_error_code":  # each entry is {code: time}: the key is data, not structure
        ours, theirs = (dict(r, Msg={"error_code": [{"code": t} for e in r["Msg"]["error_code"] for t in e.values()]})
                        for r in (ours, theirs))
    assert shape_mismatches(theirs, ours) == []


def test_summary_devs_and_pools_keep_the_captured_key_order(m30):
    for command, real, section in (("summary", "summary.json", "SUMMARY"), ("edevs", "edevs.json", "DEVS"),
                                   ("pools", "pools.json", "POOLS")):
        ours = query_json(m30.address, command)[section][0]
        assert list(ours) == list(load(f"{CAPTURE}/{real}")[section][0]), command


def test_replies_end_with_nul_and_close_and_joined_requests_answer_each_command(m30):
    raw = query(m30.address, {"command": "summary+devs+pools"}, timeout=2.0)  # reads until the server closes
    assert raw.endswith(b"\x00")
    joined = json.loads(raw.rstrip(b"\x00"))
    assert set(joined) == {"summary", "devs", "pools", "id"}
    assert joined["summary"][0]["SUMMARY"][0]["Elapsed"] == m30.last_served.uptime_s


def test_unknown_command_and_a_plaintext_write_are_refused(m30, sim):
    assert query_json(m30.address, "estats")["STATUS"][0]["Code"] == 14
    refused = json.loads(query(m30.address, {"cmd": "power_off", "respbefore": "true"}).rstrip(b"\x00"))
    assert (refused["STATUS"], refused["Code"]) == ("E", 45)
    assert not m30.truth().soft_off
    assert sim.firmware(m30).writes[-1].ok is False


def test_devdetails_names_the_make_for_pyasic(unit):
    details = query_json(unit.address, "devdetails")["DEVDETAILS"]
    assert [d["Driver"] for d in details] == ["bitmicro"] * 3
    assert details[0]["Model"] == unit.spec.model


# -- pyasic 0.79 reads them ---------------------------------------------------------------------------


def test_pyasic_detects_each_model(unit):
    found, _ = pyasic_data(unit.host)
    assert type(found).__name__ == CLASSES[unit.spec.key]


def test_pyasic_reads_what_the_simulator_served(unit):
    _, data = pyasic_data(unit.host)
    truth, spec = unit.last_served, unit.spec
    assert float(data.hashrate) == pytest.approx(truth.hashrate_1m_ths, abs=1e-6)  # summary MHS 1m
    assert float(data.expected_hashrate) == pytest.approx(spec.nominal_ths)
    assert data.wattage == int(truth.power_w) and data.wattage_limit == truth.power_limit_w
    assert data.env_temp == truth.env_raw_c
    assert [f.speed for f in data.fans] == list(truth.fans_rpm)
    assert data.uptime == truth.uptime_s and data.mac == mac_colons(unit) and data.fw_ver == spec.firmware
    assert data.is_mining is True and data.errors == []
    assert len(data.hashboards) == spec.boards
    for board, served in zip(data.hashboards, truth.boards, strict=True):
        assert not board.missing and board.chips == spec.chips_per_board
        assert float(board.hashrate) == pytest.approx(board_share_1m(truth, served), abs=1e-6)
        assert board.chip_temp == round(board_temps(served)[3])  # pyasic reads the chip average
    assert data.pools[0].accepted == truth.accepted and data.pools[0].active


def test_pyasic_sees_a_lost_board_and_its_error_code(m30):
    m30.set_faults(dead_boards={1})
    _, data = pyasic_data(m30.host)
    assert [b.missing for b in data.hashboards] == [False, True, False]
    assert [e.error_message for e in data.errors] == ["Slot 1 not found."]


# -- token-authenticated writes through pyasic's own btminer client -----------------------------------


def test_stop_resume_and_power_limit_go_through_the_token_flow(m30, sim):
    log = sim.firmware(m30).writes
    before = len(log)

    async def stop(miner):
        return await miner.stop_mining()

    assert run_pyasic(m30.host, stop) is True
    assert m30.truth().soft_off
    assert query_json(m30.address, "status")["Msg"]["mineroff"] == "true"
    _, asleep = pyasic_data(m30.host)
    assert asleep.is_mining is False

    async def limit_and_resume(miner):
        return await miner.set_power_limit(3000), await miner.resume_mining()

    assert run_pyasic(m30.host, limit_and_resume) == (True, True)
    assert not m30.truth().soft_off
    assert query_json(m30.address, "summary")["SUMMARY"][0]["Power Limit"] == 3000
    assert [(w.cmd, w.ok) for w in log[before:]] == [("power_off", True), ("adjust_power_limit", True),
                                                     ("power_on", True)]
    assert log[before + 1].params == {"power_limit": "3000"}
    assert sim.requests(m30)["get_token"] >= 2 and sim.requests(m30)["power_off (enc)"] >= 1


def test_a_write_with_the_wrong_password_is_refused_and_logged(m30, sim):
    async def stop(miner):
        return await miner.stop_mining()

    assert run_pyasic(m30.host, stop, password="not-the-password") is False
    assert not m30.truth().soft_off
    assert sim.firmware(m30).writes[-1].ok is False


def test_a_power_limit_above_the_machine_is_refused(m30, sim):
    async def limit(miner):
        return await miner.rpc.adjust_power_limit(99999)

    with pytest.raises(Exception, match="out of range"):
        run_pyasic(m30.host, limit)
    assert sim.firmware(m30).power_limit_w is None


def test_tokens_expire_after_30_minutes():
    now = [1000.0]
    miner = SimulatedMiner(resolve_model("m50s"), 0, clock=ManualClock())
    fw = Whatsminer(miner, clock=lambda: now[0])
    token = fw.new_token()
    key = fw._key
    from simulators.whatsminer import _crypt_part

    sign = _crypt_part(key + token["time"], token["newsalt"])
    assert fw._token_ok(sign)
    now[0] += 30 * 60 + 1
    assert not fw._token_ok(sign)


# -- the collector's pyasic path ------------------------------------------------------------------------


def test_hashfleet_poll_reads_a_whatsminer_through_pyasic(m30, tmp_path):
    config = tmp_path / "pyasic.yaml"
    config.write_text("readers: {whatsminer: pyasic}\n")  # the native reader is the default now
    done = subprocess.run([HASHFLEET, "poll", m30.host, "--json", "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout.splitlines()[0])
    truth = m30.last_served
    assert sample["state"] == "mining" and sample["source"] == "pyasic" and sample["make"] == "WhatsMiner"
    assert sample["miner"] == mac_colons(m30)
    assert sample["hashrate_ths"] == pytest.approx(truth.hashrate_1m_ths, abs=1e-6)
    assert sample["power_w"] == int(truth.power_w) and sample["power_limit_w"] == truth.power_limit_w
    assert sample["fans_rpm"] == list(truth.fans_rpm) and sample["uptime_s"] == truth.uptime_s
    assert [b["chips_ok"] for b in sample["boards"]] == [156, 156, 156]
