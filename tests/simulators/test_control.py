"""Control commands (issue 19): each make answers them as its firmware does, power and hashrate follow the
physics over the next polls, and every command received (only commands, never reads) is in the command
log, in process (`fleet.commands()`) and as JSON Lines. Real TCP/HTTP/gRPC on loopback; pyasic 0.79,
unchanged, drives the writes where it has them; a ManualClock moves time between polls.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings

import httpx
import pyasic
import pytest
from tests.support import pyasic_data

from simulators import ManualClock, run_fleet
from simulators.commands import CommandLog
from simulators.probe import query_json

FLEET = "a1246:1,q:1,s19jpro:1,m50s:1,bos-s19jpro:1,bitaxe:1"
ROOT = httpx.DigestAuth("root", "root")


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    return tmp_path_factory.mktemp("commands") / "commands.jsonl"


@pytest.fixture(scope="module")
def sim(log_path):
    log = CommandLog(log_path)
    with run_fleet(FLEET, base="127.63.0.1", seed=71, clock=ManualClock(), command_log=log) as fleet:
        yield fleet
    log.close()


@pytest.fixture(autouse=True)
def fresh(sim):
    for miner in sim.miners:
        miner.clear_faults()
        miner.set_soft_off(False)
        miner.set_power_limit(None)
        miner.set_work_mode(miner.spec.default_mode)
        miner.set_work_level(0)
    sim.clock.advance(120)  # past the start-up ramp of a miner an earlier test woke up
    yield


def unit(sim, key):
    return next(m for m in sim.miners if m.spec.key == key)


def new_commands(sim, since: int, miner=None) -> list:
    return [c for c in sim.commands()[since:] if miner is None or c.address == miner.address]


def pyasic_call(host: str, action):
    async def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            miner = await pyasic.get_miner(host)
            return await action(miner)

    return asyncio.run(go())


def estats(m) -> dict[str, str]:
    import re

    entry = query_json(m.address, "estats")["STATS"][0]
    return dict(re.findall(r"(\w+)\[([^\]]*)\]", entry.get("MM ID0") or entry["MM ID0:Summary"]))


def ascset(m, parameter: str) -> dict:
    return query_json(m.address, "ascset", parameter)["STATUS"][0]


# -- Avalon: ascset as Canaan's firmware answers it, the physics following ------------------------------------


@pytest.mark.parametrize("key", ["a1246", "q"])
def test_softoff_drops_to_idle_watts_on_the_next_poll_and_softon_ramps_back(sim, key):
    m = unit(sim, key)
    status = ascset(m, f"0,softoff,1:{int(sim.clock()) + 5}")
    assert (status["STATUS"], status["Code"]) == ("I", 118) and "success softoff" in status["Msg"]
    sim.clock.advance(5)  # the next poll
    dev = estats(m)
    assert dev["SoftOFF"] == "4" and float(dev["GHSspd"]) == 0.0 and dev["SYSTEMSTATU"].startswith("Work: In Idle")
    assert int(dev["PS"].split()[-1]) == pytest.approx(m.spec.idle_power_w, rel=0.05)
    status = ascset(m, f"0,softon,1:{int(sim.clock())}")
    assert "success softon" in status["Msg"]
    sim.clock.advance(20)
    waking = estats(m)
    assert 0 < float(waking["GHSspd"]) / 1000 < 0.5 * m.spec.nominal_ths  # ramping, not a jump
    assert int(waking["PS"].split()[-1]) < 0.6 * m.spec.nominal_power_w
    sim.clock.advance(60)
    awake = estats(m)
    assert float(awake["GHSspd"]) / 1000 == pytest.approx(m.spec.nominal_ths, rel=0.08)
    assert int(awake["PS"].split()[-1]) == pytest.approx(m.spec.nominal_power_w, rel=0.08)


@pytest.mark.parametrize("key", ["a1246", "s19jpro"])
def test_a_unit_that_ignores_soft_off_answers_it_as_done_and_keeps_mining(sim, key):
    m = unit(sim, key)
    m.set_faults(ignores_soft_off=True)
    if key == "a1246":
        status = ascset(m, f"0,softoff,1:{int(sim.clock())}")
        assert (status["STATUS"], status["Code"]) == ("I", 118) and "success softoff" in status["Msg"]
        sim.clock.advance(5)
        dev = estats(m)
        assert dev["SoftOFF"] == "0" and float(dev["GHSspd"]) / 1000 == pytest.approx(m.spec.nominal_ths, rel=0.08)
    else:
        assert pyasic_call(m.host, lambda miner: miner.stop_mining()) is True
        sim.clock.advance(5)
        _, data = pyasic_data(m.host)
        assert data.is_mining is True and float(data.hashrate) == pytest.approx(m.spec.nominal_ths, rel=0.08)
    assert not m.truth().soft_off
    m.set_faults(ignores_soft_off=False)  # the switch cleared, the next soft-off takes
    m.set_soft_off(True)
    assert m.truth().soft_off


def test_work_mode_moves_power_and_hashrate_to_the_modes_figures(sim):
    q = unit(sim, "q")
    assert (ascset(q, "0,workmode,set,0")["STATUS"], ascset(q, "0,workmode,get")["Msg"]) == ("S", "ASC 0 set info: WORKMODE[0]")
    sim.clock.advance(10)
    dev = estats(q)
    eco = q.spec.modes[0]
    assert dev["WORKMODE"] == "0" and int(dev["MPO"]) == pytest.approx(eco.power_w * 1.03, abs=10)
    assert int(dev["PS"].split()[-1]) == pytest.approx(eco.power_w, rel=0.06)
    assert float(dev["GHSspd"]) / 1000 == pytest.approx(eco.hashrate_ths, rel=0.06)
    assert float(dev["GHSmm"]) / 1000 == eco.hashrate_ths


def test_work_level_lowers_hashrate_five_percent_a_step(sim):
    m = unit(sim, "a1246")
    full = m.truth()
    assert ascset(m, "0,worklevel,set,2")["Msg"] == "ASC 0 set OK"
    sim.clock.advance(10)
    dev = estats(m)
    assert dev["WORKLEVEL"] == "2"
    assert float(dev["GHSmm"]) / 1000 == pytest.approx(0.9 * full.expected_hashrate_ths)
    assert m.last_served.power_w < 0.95 * full.power_w


def test_every_avalon_command_is_logged_with_its_verdict_and_reads_are_not(sim):
    m = unit(sim, "a1246")
    start = len(sim.commands())
    for command in ("version", "summary+estats+pools", "devs", "litestats"):
        query_json(m.address, command)
    ascset(m, "0,workmode,get")
    ascset(m, "0,led,1-255")
    assert new_commands(sim, start) == []  # reads, queries included, are not commands
    ascset(m, "0,led,1-1")
    ascset(m, "0,workmode,set,7")  # out of range: refused
    ascset(m, "0,melt,now")  # unknown option: refused
    query_json(m.address, "ascset+summary", "0,softoff,1")  # joined: access denied
    query_json(m.address, "restart")
    got = [(c.command, c.params.get("parameter"), c.accepted) for c in new_commands(sim, start)]
    assert got == [("ascset led", "0,led,1-1", True), ("ascset workmode", "0,workmode,set,7", False),
                   ("ascset melt", "0,melt,now", False), ("ascset softoff", "0,softoff,1", False),
                   ("restart", None, True)]
    last = new_commands(sim, start)
    assert {c.make for c in last} == {"avalon"} and {c.address for c in last} == {m.address}
    assert "range 0-1" in last[1].msg and last[0].at == sim.clock()


def test_pyasic_drives_an_avalon_and_every_call_is_logged(sim):
    q = unit(sim, "q")
    start = len(sim.commands())
    # pyasic stamps its soft-off and soft-on with our wall clock + 5 s, and the firmware acts at that time on its
    # own clock: the miners' clock runs at ours from here (ManualClock starts in 2025).
    sim.clock.set(max(sim.clock(), time.time()))

    async def drive(miner):
        return [await miner.stop_mining(), await miner.fault_light_on(), await miner.set_power_limit(90)]

    assert pyasic_call(q.host, drive) == [True, True, True]
    sim.clock.advance(10)
    truth = q.truth()
    assert truth.soft_off and truth.led and truth.work_level == 1  # pyasic maps 90 W to work level 1
    assert truth.power_w == pytest.approx(q.spec.idle_power_w, rel=0.05)
    assert [c.command for c in new_commands(sim, start)] == ["ascset softoff", "ascset led", "ascset worklevel"]
    assert pyasic_call(q.host, lambda miner: miner.resume_mining()) is True
    sim.clock.advance(120)
    assert not q.truth().soft_off and q.truth().hashrate_ths > 0.85 * q.spec.nominal_ths * 0.95


# -- Antminer stock firmware: the web API pyasic uses ------------------------------------------------------------


def web(m, path: str, **kw) -> httpx.Response:
    method = "POST" if "json" in kw else "GET"
    return httpx.request(method, f"http://{m.host}{path}", auth=ROOT, timeout=5, **kw)


def test_pyasic_sleeps_and_wakes_an_antminer_through_set_miner_conf(sim):
    s19 = unit(sim, "s19jpro")
    start = len(sim.commands())
    assert pyasic_call(s19.host, lambda miner: miner.stop_mining()) is True
    sim.clock.advance(5)
    _, data = pyasic_data(s19.host)
    assert data.is_mining is False and float(data.hashrate) == 0.0
    assert [f.speed for f in data.fans] == [0, 0, 0, 0]
    assert s19.last_served.power_w == pytest.approx(s19.spec.idle_power_w, rel=0.1)
    assert pyasic_call(s19.host, lambda miner: miner.resume_mining()) is True
    sim.clock.advance(120)
    _, data = pyasic_data(s19.host)
    assert data.is_mining is True and float(data.hashrate) == pytest.approx(s19.spec.nominal_ths, rel=0.08)
    sent = new_commands(sim, start)
    assert [(c.command, c.params.get("miner-mode"), c.accepted) for c in sent] == [
        ("set_miner_conf", 1, True), ("set_miner_conf", 0, True)]
    assert all(p["pass"] == "***" for p in sent[0].params["pools"])  # pool passwords stay out of the log


def test_antminer_low_power_mode_follows_its_figures_and_bad_modes_are_refused(sim):
    s19 = unit(sim, "s19jpro")
    start = len(sim.commands())
    assert web(s19, "/cgi-bin/set_miner_conf.cgi", json={"miner-mode": 3}).json()["code"] == "M000"
    assert web(s19, "/cgi-bin/get_miner_conf.cgi").json()["bitmain-work-mode"] == "3"
    sim.clock.advance(120)
    low = s19.spec.modes[1]
    stats = query_json(s19.address, "stats")["STATS"][1]
    assert stats["total_rateideal"] / 1000 == pytest.approx(low.hashrate_ths)
    assert float(stats["total_rate"]) / 1000 == pytest.approx(low.hashrate_ths, rel=0.08)
    assert s19.truth().power_true_w == pytest.approx(low.power_w, rel=0.06)
    refused = web(s19, "/cgi-bin/set_miner_conf.cgi", json={"miner-mode": 7}).json()
    assert refused["stats"] == "error"
    assert web(s19, "/cgi-bin/set_miner_conf.cgi", json={"miner-mode": 0}).json()["code"] == "M000"
    assert [(c.params.get("miner-mode"), c.accepted) for c in new_commands(sim, start)] == [
        (3, True), (7, False), (0, True)]
    _, data = pyasic_data(s19.host)  # pyasic reads a unit back from low power unchanged
    assert data.is_mining is True


def test_antminer_blink_reboot_and_rpc_restart_are_logged_reads_are_not(sim):
    s19 = unit(sim, "s19jpro")
    start = len(sim.commands())
    pyasic_data(s19.host)  # detection and every read pyasic makes
    for path in ("/cgi-bin/get_miner_conf.cgi", "/cgi-bin/summary.cgi", "/"):
        web(s19, path)
    httpx.post(f"http://{s19.host}/cgi-bin/reboot.cgi", timeout=5)  # no credentials: refused, the 401 leg
    assert new_commands(sim, start) == []
    assert pyasic_call(s19.host, lambda miner: miner.fault_light_on()) is True
    assert pyasic_call(s19.host, lambda miner: miner.reboot()) is True
    query_json(s19.address, "restart")
    assert [c.command for c in new_commands(sim, start)] == ["blink", "reboot", "restart"]
    assert new_commands(sim, start)[0].params == {"blink": "true"}


# -- Whatsminer and Braiins OS+: their writes follow the physics -------------------------------------------------


def test_whatsminer_power_limit_caps_the_draw_and_power_off_idles(sim):
    m50 = unit(sim, "m50s")
    start = len(sim.commands())
    assert pyasic_call(m50.host, lambda miner: miner.set_power_limit(2500)) is True
    sim.clock.advance(10)
    summary = query_json(m50.address, "summary")["SUMMARY"][0]
    assert summary["Power Limit"] == 2500
    assert 2300 < summary["Power"] <= 2500
    assert summary["MHS 5s"] / 1e6 < 0.9 * m50.spec.nominal_ths  # clocked down to fit
    efficiency = summary["Power"] / (summary["MHS 5s"] / 1e6)
    assert efficiency < m50.spec.nominal_power_w / m50.spec.nominal_ths  # J/TH improves when clocked down
    assert pyasic_call(m50.host, lambda miner: miner.stop_mining()) is True
    sim.clock.advance(5)
    assert query_json(m50.address, "summary")["SUMMARY"][0]["Power"] == pytest.approx(m50.spec.idle_power_w, abs=2)
    assert [(c.command, c.accepted) for c in new_commands(sim, start)] == [
        ("adjust_power_limit", True), ("power_off", True)]
    assert new_commands(sim, start)[0].params == {"power_limit": "2500"}


def test_braiins_power_target_caps_the_draw_and_pause_idles(sim):
    bos = unit(sim, "bos-s19jpro")
    start = len(sim.commands())
    assert pyasic_call(bos.host, lambda miner: miner.set_power_limit(2400)) is True
    sim.clock.advance(10)
    tuner = query_json(bos.address, "tunerstatus")["TUNERSTATUS"][0]
    assert tuner["PowerLimit"] == 2400
    assert 2200 < tuner["ApproximateMinerPowerConsumption"] <= 2400
    assert pyasic_call(bos.host, lambda miner: miner.stop_mining()) is True
    sim.clock.advance(5)
    tuner = query_json(bos.address, "tunerstatus")["TUNERSTATUS"][0]
    assert tuner["ApproximateMinerPowerConsumption"] == pytest.approx(bos.spec.idle_power_w, abs=2)
    assert [c.command for c in new_commands(sim, start)] == ["SetPowerTarget", "PauseMining"]


def test_bitaxe_restart_and_settings_are_logged(sim):
    axe = unit(sim, "bitaxe")
    start = len(sim.commands())
    httpx.get(f"http://{axe.host}/api/system/info", timeout=5)
    # POST, as pyasic's reboot() sends it (pyasic then fails on the plain-text answer the firmware gives)
    assert httpx.post(f"http://{axe.host}/api/system/restart", json={}, timeout=5).text.startswith("System will")
    httpx.patch(f"http://{axe.host}/api/system", content=b"{not json", timeout=5)
    httpx.patch(f"http://{axe.host}/api/system", json={"fanspeed": 80, "stratumPassword": "hunter2"}, timeout=5)
    got = new_commands(sim, start)
    assert [(c.command, c.accepted) for c in got] == [("restart", True), ("PATCH /api/system", False),
                                                      ("PATCH /api/system", True)]
    assert got[2].params == {"fanspeed": 80, "stratumPassword": "***"}
    assert axe.truth().uptime_s < 200


# -- the log as JSON Lines -----------------------------------------------------------------------------------------


def test_the_log_file_holds_one_flushed_json_line_per_command_of_every_make(sim, log_path):
    start = len(sim.commands())
    web(unit(sim, "s19jpro"), "/cgi-bin/blink.cgi", json={"blink": "false"})
    for key in ("m50s", "bos-s19jpro"):
        pyasic_call(unit(sim, key).host, lambda miner: miner.fault_light_off())
    httpx.patch(f"http://{unit(sim, 'bitaxe').host}/api/system", json={"fanspeed": 90}, timeout=5)
    m = unit(sim, "a1246")
    ascset(m, "0,led,1-0")  # written and flushed before the answer went out: readable now
    lines = log_path.read_text().splitlines()
    assert len(lines) == sim.command_log.total == len(sim.commands())
    records = [json.loads(line) for line in lines]
    assert [r["make"] for r in records[start:]] == ["antminer", "whatsminer", "braiins", "bitaxe", "avalon"]
    assert records[-1] | {"ts": None, "at": None} == {
        "ts": None, "at": None, "make": "avalon", "model": "a1246", "address": m.address,
        "command": "ascset led", "params": {"parameter": "0,led,1-0"}, "accepted": True, "msg": "ASC 0 set OK"}
    assert records[-1]["at"] == pytest.approx(sim.clock(), abs=0.001)
