"""The native readers parse replies in the layouts real firmware publishes (tests/data/replies/<make>/:
published structure, our values; each folder's SOURCE.md cites its publisher), not only what the
simulators send: btminer 2022 and API 1.4/2.0.5 shapes, the Braiins OS documentation's bosminer
replies and BOS+ 25.07 gRPC details, a hydro Antminer's RPC `stats` and web health list."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.sources import antminer, braiins, whatsminer
from collector.sources.profile import Profile
from models import FaultCode, MinerState

REPLIES = Path(__file__).resolve().parents[2] / "data" / "replies"
TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def load(make: str, folder: str, name: str) -> dict:
    return json.loads((REPLIES / make / folder / f"{name}.json").read_text())


def joined(**parts: dict) -> dict:
    """A joined request's reply (`a+b`) from the single replies: {"a": [reply], "b": [reply], "id": 1}."""
    return {**{name: [reply] for name, reply in parts.items()}, "id": 1}


# -- Whatsminer ---------------------------------------------------------------------------------------


M30S_PLUS = "m30splus-ve40_api2_2022-01"


def test_a_2022_m30s_plus_reads_from_its_summary_edevs_and_pools():
    summary, edevs, pools = (load("whatsminer", M30S_PLUS, n) for n in ("summary", "edevs", "pools"))
    profile = Profile("WhatsMiner", "M30S+ VE40", boards=3, chips_per_board=156, fans=2)
    sample = whatsminer.read_reply(joined(summary=summary, devs=edevs, pools=pools), host="10.0.0.9", port=4028,
                                   site="s", ts=TS, profile=profile, mac_address="C4:08:28:00:00:01",
                                   firmware="20220110.22.REL")
    s, devs = summary["SUMMARY"][0], edevs["DEVS"]
    assert sample.state is MinerState.MINING and not sample.errors and not sample.unusable, sample
    assert sample.hashrate_ths == pytest.approx(s["MHS 1m"] / 1e6)
    assert sample.hashrate_avg_ths == pytest.approx(s["MHS av"] / 1e6)
    assert sample.expected_hashrate_ths == pytest.approx(s["Factory GHS"] / 1000)
    assert (sample.power_w, sample.power_limit_w, sample.temp_env_c) == (s["Power"], s["Power Limit"], s["Env Temp"])
    assert sample.fans_rpm == [s["Fan Speed In"], s["Fan Speed Out"]] and sample.uptime_s == s["Elapsed"]
    assert sample.work_mode == "Normal"
    assert [b.hashrate_ths for b in sample.boards] == pytest.approx([d["MHS 1m"] / 1e6 for d in devs])
    assert [b.temp_chip_max_c for b in sample.boards] == [d["Chip Temp Max"] for d in devs]
    assert [b.temp_chip_avg_c for b in sample.boards] == [d["Chip Temp Avg"] for d in devs]
    assert [b.chips_ok for b in sample.boards] == [156, 156, 156]
    assert sample.temp_chip_max_c == max(d["Chip Temp Max"] for d in devs)
    assert sample.temp_board_max_c == max(d["Temperature"] for d in devs)
    assert (sample.pool.url, sample.pool.user, sample.pool.active) == (
        pools["POOLS"][0]["URL"], pools["POOLS"][0]["User"], True)


def test_error_codes_in_both_published_layouts():
    flat = load("whatsminer", M30S_PLUS, "get_error_code")["Msg"]  # API 2.0.4: ["329", "<time>"]
    assert whatsminer.error_codes(flat) == [329]
    listed = load("whatsminer", "api2.0.5_asic-rs-testdata", "get_error_code_with_errors")["Msg"]
    assert whatsminer.error_codes(listed) == [218, 110]
    assert whatsminer.error_messages([110]) == ["Intake fan speed error. (code 110)"]  # pyasic's words


def test_error_codes_are_fault_codes_with_pyasic_s_words_as_their_meaning_and_the_slot_as_the_board():
    listed = load("whatsminer", "api2.0.5_asic-rs-testdata", "get_error_code_with_errors")["Msg"]
    power, fan = whatsminer.fault_codes(whatsminer.error_codes(listed))
    assert (power.key, power.code, power.board, power.meaning) == (
        "error_code", 218, None, "Power input voltage is lower than 230V for high power mode.")
    assert (fan.code, fan.meaning) == (110, "Intake fan speed error.") and fan.severity.value == "unknown"
    slot, unknown = whatsminer.fault_codes([531, 4096])
    assert (slot.board, slot.meaning) == (1, "Slot 1 not found.")
    assert (unknown.code, unknown.board, unknown.meaning) == (4096, None, None)  # not in the table: not published


def test_api_2_0_5_identity_and_status_replies():
    folder = "api2.0.5_asic-rs-testdata"
    assert whatsminer.info_mac(load("whatsminer", folder, "get_miner_info")["Msg"]) == "C4:08:28:1B:7D:42"
    assert whatsminer.version_firmware(load("whatsminer", folder, "get_version")["Msg"]) == "20230803.11.REL"
    assert whatsminer.status_mineroff(load("whatsminer", folder, "status")["Msg"]) is False


def test_api_2_0_5_without_a_one_minute_rate_reads_the_real_time_rate():
    summary = load("whatsminer", "api2.0.5_asic-rs-testdata", "summary")
    devs = load("whatsminer", "api2.0.5_asic-rs-testdata", "devs")
    sample = whatsminer.read_reply(joined(summary=summary, devs=devs), host="10.0.0.9", port=4028, site="s", ts=TS)
    s = summary["SUMMARY"][0]
    assert "MHS 1m" not in s and sample.state is MinerState.MINING
    assert sample.hashrate_ths == pytest.approx(s["HS RT"] / 1e6)
    assert sample.mac == s["MAC"]  # API 2.0.5 repeats the MAC in summary
    assert [b.chips_ok for b in sample.boards] == [d["Effective Chips"] for d in devs["DEVS"]]


def test_api_1_4_puts_errors_mac_and_firmware_in_summary_and_says_btmineroff():
    folder = "m30s_api1.4.0_20210322"
    summary, devs, pools = (load("whatsminer", folder, n) for n in ("summary", "devs", "pools"))
    sample = whatsminer.read_reply(joined(summary=summary, devs=devs, pools=pools), host="10.0.0.9", port=4028,
                                   site="s", ts=TS, error_codes_=[530])  # a get_error_code reading, ignored:
    s = summary["SUMMARY"][0]                                             # summary's own count (0) wins
    assert (sample.state, sample.errors) == (MinerState.MINING, [])
    assert (sample.mac, sample.firmware) == (s["MAC"], "20210322.22.REL")
    assert sample.fans_rpm == [s["Fan Speed In"], s["Fan Speed Out"]]
    assert whatsminer.status_mineroff(load("whatsminer", folder, "status")["Msg"]) is True
    assert whatsminer.version_firmware(load("whatsminer", folder, "get_version")["Msg"]) == "20210322.22.REL"


def test_api_1_4_reports_its_hardware_error_rate_in_per_cent_and_api_2_reports_none():
    """btminer's `Device Hardware%` is CGMiner's: 100 x errors / (errors + diff-1 work). In the real M30S
    replies asic-rs keeps (src/test/json/btminer/v1/devs.json) a board with 15 errors over 209,185 diff-1
    shares says 0.0072: per cent, not a fraction (that would be 0.000072)."""
    folder = "m30s_api1.4.0_20210322"
    summary, devs = load("whatsminer", folder, "summary"), load("whatsminer", folder, "devs")
    sample = whatsminer.read_reply(joined(summary=summary, devs=devs), host="10.0.0.9", port=4028, site="s", ts=TS)
    assert sample.hw_error_pct == summary["SUMMARY"][0]["Device Hardware%"] == 0.0156 and not sample.unusable
    summary, edevs = load("whatsminer", M30S_PLUS, "summary"), load("whatsminer", M30S_PLUS, "edevs")
    sample = whatsminer.read_reply(joined(summary=summary, devs=edevs), host="10.0.0.9", port=4028, site="s", ts=TS)
    assert sample.hw_error_pct is None and not sample.unusable


def test_api_1_4_error_codes_in_summary_are_fault_codes_too():
    folder = "m30s_api1.4.0_20210322"
    summary, devs = load("whatsminer", folder, "summary"), load("whatsminer", folder, "devs")
    summary["SUMMARY"][0].update({"Error Code Count": 1, "Error Code 0": 531})
    sample = whatsminer.read_reply(joined(summary=summary, devs=devs), host="10.0.0.9", port=4028, site="s", ts=TS)
    assert sample.errors == ["Slot 1 not found. (code 531)"]
    assert [(c.code, c.board) for c in sample.fault_codes] == [(531, 1)]


# -- Braiins OS ---------------------------------------------------------------------------------------


S9_DOCS = "bosminer-plus-0.2.0_s9_docs"
# The docs publish no summary, devs or pools of this unit (SOURCE.md): a summary of our own joins them.
SUMMARY = {"STATUS": [{"STATUS": "S", "When": 1601377232, "Code": 11, "Msg": "Summary",
                       "Description": "BOSminer+ 0.2.0-ea64aec8e"}],
           "SUMMARY": [{"Elapsed": 1204, "MHS 1m": 13604211.7, "MHS 5s": 13598000.2, "MHS av": 13580112.4}], "id": 1}


def test_an_s9_on_bosminer_reads_from_the_documented_replies():
    parts = {n: load("braiins", S9_DOCS, n) for n in ("devdetails", "fans", "temps", "tunerstatus")}
    profile = Profile("AntMiner", "S9", boards=3, chips_per_board=63, fans=2)
    sample = braiins.read_reply(joined(summary=SUMMARY, **parts), host="10.0.0.8", port=4028, site="s", ts=TS,
                                profile=profile)
    tuner, temps = parts["tunerstatus"]["TUNERSTATUS"][0], parts["temps"]["TEMPS"]
    assert sample.state is MinerState.MINING and not sample.errors, sample  # "Tuning individual chips": no fault
    assert sample.hashrate_ths == pytest.approx(SUMMARY["SUMMARY"][0]["MHS 1m"] / 1e6)
    assert (sample.power_w, sample.power_limit_w) == (tuner["ApproximateMinerPowerConsumption"], tuner["PowerLimit"])
    assert [b.index for b in sample.boards] == [0, 1, 2]  # chains 6-8
    assert [b.chips_ok for b in sample.boards] == [d["Chips"] for d in parts["devdetails"]["DEVDETAILS"]]
    assert [b.temp_chip_max_c for b in sample.boards] == [t["Chip"] for t in temps]
    assert sample.temp_board_max_c == max(t["Board"] for t in temps)
    assert sample.fans_rpm == [5010, 4890]  # the model's two fans; the empty headers (0 rpm) left out


def test_a_failed_chain_is_named_as_pyasic_names_it():
    tuner = load("braiins", S9_DOCS, "tunerstatus")
    tuner["TUNERSTATUS"][0]["TunerChainStatus"][1]["Status"] = "Failed to initialize hashchain {7}"
    details = load("braiins", S9_DOCS, "devdetails")  # chains 6-8: the failed chain 7 is board 1
    sample = braiins.read_reply(joined(summary=SUMMARY, tunerstatus=tuner, devdetails=details), host="10.0.0.8",
                                port=4028, site="s", ts=TS)
    assert sample.errors == ["Slot 1 failed to initialize hashchain"]
    assert sample.fault_codes == [FaultCode(key="TunerChainStatus", code=0, board=1,
                                            meaning="Failed to initialize hashchain")]


def test_the_grpc_details_give_mac_firmware_and_nominal_hashrate():
    details = load("braiins", "s19xp_bos-plus-25.07_grpc", "miner_details")
    sample = braiins.read_reply(joined(summary=SUMMARY), host="10.0.0.8", port=4028, site="s", ts=TS, details=details)
    assert (sample.miner, sample.mac) == ("02:5C:19:E4:07:D3", "02:5C:19:E4:07:D3")
    assert sample.firmware == details["bos_version"]["current"]
    assert sample.expected_hashrate_ths == details["sticker_hashrate"]["gigahash_per_second"] / 1000


# -- Antminer -----------------------------------------------------------------------------------------


def test_a_hydro_antminer_with_an_empty_fourth_slot_reads_three_chains():
    stats = load("antminer", "s21xp-hyd_rpc", "stats")
    dev = stats["STATS"][1]
    for profile in (Profile(boards=3, chips_per_board=160, fans=4), Profile()):  # known to pyasic, or not
        sample = antminer.read_reply(joined(stats=stats), host="10.0.0.7", port=4028, site="s", ts=TS,
                                     profile=profile)
        assert sample.state is MinerState.MINING and not sample.unusable, sample
        assert sample.hashrate_ths == pytest.approx(dev["GHS 5s"] / 1000)
        assert sample.hashrate_avg_ths == pytest.approx(dev["GHS av"] / 1000)
        assert sample.expected_hashrate_ths == pytest.approx(dev["total_rateideal"] / 1000)
        assert [b.index for b in sample.boards] == [0, 1, 2]
        assert [b.hashrate_ths for b in sample.boards] == pytest.approx(
            [float(dev[f"chain_rate{n}"]) / 1000 for n in (1, 2, 3)])
        assert [b.chips_ok for b in sample.boards] == [160, 160, 160]
        assert [b.temp_chip_max_c for b in sample.boards] == [
            max(map(float, dev[f"temp_chip{n}"].split("-"))) for n in (1, 2, 3)]
        assert sample.temp_board_max_c == max(float(t) for n in (1, 2, 3) for t in dev[f"temp_pcb{n}"].split("-"))
        assert sample.fans_rpm == [0, 0, 0, 0]  # hydro: no fans turning
        assert sample.uptime_s == dev["Elapsed"] and sample.firmware == stats["STATS"][0]["CompileTime"]


def test_the_web_health_list_of_a_hydro_unit_has_no_complaint_and_a_bad_entry_is_one():
    summary = load("antminer", "s23-hyd_web", "summary")
    assert antminer.health_list(summary) == ([], [])  # fans "": what hydro units say of fans they do not have
    summary["SUMMARY"][0]["status"][3].update(status="e", code=322, msg="Temperature protection: mining stopped")
    errors, [code] = antminer.health_list(summary)
    assert errors == ["Temperature protection: mining stopped"]
    assert code == FaultCode(key="summary.cgi temp", code=322, meaning="Temperature protection: mining stopped")


def test_a_health_list_entry_naming_a_chain_is_that_board_s_code_in_the_sample():
    stats, summary = load("antminer", "s21xp-hyd_rpc", "stats"), load("antminer", "s23-hyd_web", "summary")
    summary["SUMMARY"][0]["status"][0].update(status="w", code=132, msg="Chain 2 found 150 of 160 asic")
    summary["SUMMARY"][0]["status"][1].update(status="e", msg="")  # no message, no code: still a complaint
    sample = antminer.read_reply(joined(stats=stats), host="10.0.0.7", port=4028, site="s", ts=TS, health=summary)
    assert sample.errors == ["Chain 2 found 150 of 160 asic", "network: status e, code 0"]
    assert [(c.key, c.code, c.board, c.meaning) for c in sample.fault_codes] == [
        ("summary.cgi rate", 132, 2, "Chain 2 found 150 of 160 asic"), ("summary.cgi network", 0, None, None)]
