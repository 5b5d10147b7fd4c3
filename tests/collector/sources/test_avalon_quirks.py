"""Real-world Avalon quirks and replies that contradict themselves, each on a golden case's reply with
one thing changed: where the watts are and what the miner's own figures say about them, error codes
decoded without letting an unknown bit make a healthy unit an error, idle and ramping units,
controller chains (duplicates, caps, hostile modules), identification of a chain controller.

A self-contradicting reply gives a sample with the value and a named warning (`warnings`), or a
refusal of the field for values no unit can produce; never a crash, never a silent wrong number.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from tests.avalon_golden import answer, golden_miner, replies, GOLDEN

from collector.sources import avalon, identify
from collector.sources import cgminer_client as cgminer
from collector.sources.targets import Target
from models import FaultSeverity, MinerSample, MinerState

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def reply_of(case: str) -> dict[str, Any]:
    """The joined reply a poll gets from the golden case (a deep copy to change)."""
    return copy.deepcopy(answer(replies(GOLDEN / case), {"command": avalon.POLL_COMMAND}))


def device(reply: dict[str, Any], entry: int = 0, key: str = "MM ID0") -> str:
    return reply["estats"][0]["STATS"][entry][key]


def with_keys(reply: dict[str, Any], *, entry: int = 0, key: str = "MM ID0", **values: str) -> dict[str, Any]:
    """The reply with device-string keys set to these raw values (appended if absent)."""
    text = device(reply, entry, key)
    for name, value in values.items():
        pattern = re.compile(r"(?<![A-Za-z0-9_])" + name + r"\[[^\]]*\]")
        text, count = pattern.subn(lambda _: f"{name}[{value}]", text)
        if not count:
            text += f" {name}[{value}]"
    reply["estats"][0]["STATS"][entry][key] = text
    return reply


def read(reply: dict[str, Any]) -> MinerSample:
    return avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS)


def warned(sample: MinerSample) -> list[str]:
    return [w.split(":", 1)[0] for w in sample.warnings]


# -- where the watts are ------------------------------------------------------------------------------------


def test_nano3_2024_reads_watts_in_ps5_not_the_profile_value_in_ps6():
    sample = read(reply_of("nano3_24071801_mining"))
    assert sample.power_w == 88 and sample.warnings == []  # PS[0 0 0 3 2810 88 324], MPO[90]


def test_nano3_without_its_ps5_reading_never_reports_the_profile_value_as_watts():
    # PS[5] empty: the only figure left is PS[6] = 324 on a 90 W unit. 3 A x 28.1 V and MPO[90] contradict
    # it (named warnings) and it is past twice the unit's own limit: refused, the rest of the reading kept.
    sample = read(with_keys(reply_of("nano3_24071801_mining"), PS="0 0 0 3 2810 0 324"))
    assert sample.power_w is None and "power_w" in sample.unusable
    assert any("2x its own power limit (90 W)" in e for e in sample.errors), sample.errors
    assert {"power_vs_psu", "power_over_limit"} <= set(warned(sample))
    assert sample.hashrate_ths == pytest.approx(2.66474)


def test_a_wall_figure_the_psu_and_the_limit_contradict_is_kept_with_named_warnings():
    sample = read(with_keys(reply_of("a1246_21072802_mining"), PS="0 1211 1312 243 3192 1315 5000"))
    assert sample.power_w == 5000  # below 2x the nameplate: not absurd, so kept
    assert set(warned(sample)) == {"power_vs_psu", "power_over_limit"}
    assert any("3192 W DC" in w for w in sample.warnings)  # PS[4], as 13.12 V x 243 A says


def test_a_wall_figure_far_above_the_nameplate_is_named_and_past_twice_it_refused():
    near = read(with_keys(reply_of("a1246_21072802_mining"), PS="0 1211 1312 243 3192 1315 5500"))
    assert near.power_w == 5500 and "power_vs_nameplate" in warned(near)
    absurd = read(with_keys(reply_of("a1246_21072802_mining"), PS="0 1211 1312 243 3192 1315 9000"))
    # the watts are lost, not the state: the unit hashes (its hashrate is read)
    assert absurd.power_w is None and "power_w" in absurd.unusable and absurd.state is MinerState.MINING


def test_wallpower_against_its_own_ps_and_mpo():
    sample = read(with_keys(reply_of("a15-194_24102401_mining"), WALLPOWER="4800"))
    assert sample.power_w == 4800 and set(warned(sample)) == {"power_vs_psu", "power_over_limit"}
    healthy = read(reply_of("a15-194_24102401_mining"))
    assert healthy.power_w == 3741 and healthy.warnings == []  # wall 6% above MPO[3515]: the PSU's loss


def test_a10_reports_dc_only_so_the_wall_is_estimated_and_said_so():
    sample = read(reply_of("a1066_19101244_mining"))
    assert sample.power_w == pytest.approx(2848 / 0.92)
    assert warned(sample) == ["power_estimated_from_dc"] and "PS[4] 2848 W" in sample.warnings[0]
    contradicted = read(with_keys(reply_of("a1066_19101244_mining"), PS="0 1216 1283 150 2848 1284"))
    assert set(warned(contradicted)) == {"power_estimated_from_dc", "power_vs_psu"}  # 12.83 V x 150 A = 1925 W


def test_an_all_zero_ps_is_no_reading_not_zero_watts():
    sample = read(reply_of("a1047_20051101_ramping"))  # PS[0 0 0 0 0 0] while hashing
    assert sample.power_w is None and sample.efficiency_j_th is None and sample.state is MinerState.MINING


def test_a_soft_off_q_keeps_its_idle_watts_unchecked_boards_off():
    sample = read(reply_of("q_25052801_softoff"))  # PS[0 1219 4 0 0 2250 143]: the hash rail reads 0 x 0
    assert sample.power_w == 143 and sample.warnings == [] and sample.state is MinerState.SOFT_OFF


@pytest.mark.parametrize("ps", ["0 1211 1312 243 3192 1315 nan", "0 1211 1312 243 3192 1315 -3497",
                                "0 1211 1312 243 3192 1315 inf", "0 1211 abc 243 3192 1315 3497"])
def test_a_broken_ps_costs_the_power_only(ps):
    sample = read(with_keys(reply_of("a1246_21072802_mining"), PS=ps))
    assert sample.hashrate_ths == pytest.approx(83.82337) and len(sample.boards) == 3
    if "nan" in ps:  # NaN is the firmware's "no reading"
        assert sample.power_w is None and sample.state is MinerState.MINING
    elif "abc" in ps:  # a slot that is not a number is no reading there; PS[6] still agrees with PS[4]
        assert sample.power_w == 3497
    else:
        assert sample.power_w is None and "power_w" in sample.unusable and sample.state is MinerState.MINING


def test_a_broken_ps_beside_a_good_wallpower_costs_only_the_cross_check():
    sample = read(with_keys(reply_of("a15-194_24102401_mining"), PS="0 1207 inf 296 3527 1192 3741"))
    assert sample.power_w == 3741 and not sample.unusable and sample.state is MinerState.MINING


# -- hashrate ----------------------------------------------------------------------------------------------


def test_ghsspd_zero_while_in_work_falls_back_to_the_summary():
    sample = read(reply_of("a15-194_24102401_ramping-spd0-doc"))
    assert sample.hashrate_ths == pytest.approx(77.3046) and sample.state is MinerState.MINING


def test_ghsspd_zero_while_in_idle_is_zero_not_the_summary():
    reply = with_keys(reply_of("a15-194_24102401_ramping-spd0-doc"), SYSTEMSTATU="Work: In Idle, Hash Board: 3 ")
    sample = read(reply)
    assert sample.hashrate_ths == 0 and sample.state is MinerState.IDLE
    assert sample.temp_chip_max_c == 62 and all(b.temp_chip_max_c is None for b in sample.boards)


def test_a_hashrate_above_three_times_a_new_models_nameplate_is_refused_against_it():
    sample = read(with_keys(reply_of("a16-282_25091901_mining-doc"), GHSspd="900000"))
    assert sample.hashrate_ths is None and "hashrate_ths" in sample.unusable
    assert any("3x the AvalonMiner 16 nameplate (282 TH/s)" in e for e in sample.errors), sample.errors


def test_in_fault_is_an_error_with_the_miners_words():
    reply = with_keys(reply_of("a15-194_24102401_mining"), SYSTEMSTATU="Work: In Fault, Hash Board: 3 ",
                      GHSspd="0.00")
    sample = read(reply)
    assert sample.state is MinerState.ERROR and sample.hashrate_ths == 0
    assert sample.errors == ["the miner reports 'Work: In Fault, Hash Board: 3'"]


def test_a_long_in_fault_status_is_quoted_within_the_error_cap():
    reply = with_keys(reply_of("a15-194_24102401_mining"), SYSTEMSTATU="Work: In Fault, " + "x" * 5000, GHSspd="0")
    sample = read(reply)
    assert sample.state is MinerState.ERROR and len(sample.errors[0]) <= 500


def test_a10_without_any_live_figure_is_mining_with_hashrate_unknown():
    reply = reply_of("a1066_19101244_mining")
    del reply["summary"]
    sample = read(reply)
    assert sample.state is MinerState.MINING and sample.hashrate_ths is None
    assert sample.hashrate_avg_ths == pytest.approx(50.41807)


def test_idle_tmax_zero_is_no_reading():
    sample = read(reply_of("q_25052801_softoff"))
    assert sample.temp_chip_max_c is None and sample.boards[0].temp_chip_max_c is None
    assert sample.boards[0].chips_ok is None  # its per-chip list is from before the sleep


# -- the catalogue fills what a reply does not say --------------------------------------------------------------


def _without(reply, *names):
    text = device(reply)
    for name in names:
        text = re.sub(r"(?<![A-Za-z0-9_])" + name + r"\[[^\]]*\] ?", "", text)
    reply["estats"][0]["STATS"][0]["MM ID0"] = text
    return reply


def test_expected_hashrate_from_the_catalogue_for_the_work_mode_when_ghsmm_is_missing():
    a1047 = read(_without(reply_of("a1047_19120401_mining"), "GHSmm"))  # WORKMODE[1]: "37T" in the A10 manual
    assert a1047.expected_hashrate_ths == 37.0 and a1047.model == "AvalonMiner 1047"
    a1246 = read(_without(reply_of("a1246_21072802_mining"), "GHSmm"))  # no modes listed: the nameplate
    assert a1246.expected_hashrate_ths == 90.0
    nano3 = read(_without(reply_of("nano3_24071801_mining"), "GHSmm"))  # levels with no published rate
    assert nano3.expected_hashrate_ths is None


def test_chips_expected_from_the_catalogue_when_the_reply_has_no_chip_count():
    sample = read(_without(reply_of("mini3_25011701_mining"), "TA"))
    assert [(b.chips_expected, b.chips_ok) for b in sample.boards] == [(66, None)]


# -- error codes ---------------------------------------------------------------------------------------------


def test_an_unknown_echu_bit_on_a_hashing_unit_is_kept_but_no_error():
    sample = read(with_keys(reply_of("a1246_21072802_mining"), ECHU="0 4 0"))
    assert sample.state is MinerState.MINING and sample.errors == []
    (code,) = sample.fault_codes
    assert (code.key, code.code, code.board, code.severity, code.meaning) == ("ECHU", 4, 1, FaultSeverity.UNKNOWN, None)


def test_echu_512_on_a10_to_a12_is_normal_and_513_abnormal_per_canaan():
    sample = read(with_keys(reply_of("a1246_21072802_mining"), ECHU="512 513 0", ECMM="1"))
    assert sample.state is MinerState.MINING and sample.errors == []  # warnings, not faults
    codes = {(c.key, c.code, c.board): c for c in sample.fault_codes}
    assert codes[("ECHU", 512, 0)].severity is FaultSeverity.INFO
    assert codes[("ECHU", 512, 1)].severity is FaultSeverity.INFO
    assert codes[("ECHU", 1, 1)].severity is FaultSeverity.WARNING and "log Description" in codes[("ECHU", 1, 1)].source
    assert codes[("ECMM", 1, None)].severity is FaultSeverity.WARNING
    assert sum(c.code for c in sample.fault_codes if c.key == "ECHU" and c.board == 1) == 513  # the raw code kept


def test_a_psu_fan_failure_in_ps0_is_a_fault_line_but_a_hashing_unit_stays_mining():
    sample = read(with_keys(reply_of("a1246_21072802_mining"), PS="2048 1211 1312 243 3192 1315 3497"))
    assert sample.state is MinerState.MINING and sample.power_w == 3497
    assert sample.errors == ["PS[0] 2048: FAN_error: PSU fan failed"]
    assert "A10 API manual" in sample.fault_codes[0].source


def test_a_fault_code_on_a_unit_that_does_not_hash_makes_it_an_error():
    reply = with_keys(reply_of("a1246_21072802_mining"), GHSspd="0.00", PS="64 1211 1312 0 0 1315 120",
                      SYSTEMSTATU="Work: In Init, Hash Board: 3 ")
    reply["summary"][0]["SUMMARY"][0]["MHS 1m"] = 0.0
    sample = read(reply)
    assert sample.state is MinerState.ERROR and sample.errors == ["PS[0] 64: OC_out: PSU output over current"]


def test_an_error_code_past_32_bits_is_refused_not_decoded():
    sample = read(with_keys(reply_of("a1246_21072802_mining"), ECHU="0 1e300 0"))
    assert "errors" in sample.unusable and sample.fault_codes == []
    assert sample.hashrate_ths == pytest.approx(83.82337)


# -- controller chains ---------------------------------------------------------------------------------------


def test_a_chain_counts_each_module_once_from_its_latest_detection():
    reply = reply_of("a921_9211809_auc-chain-10x5")
    sample = read(reply)
    assert len(sample.boards) == 80 and len(sample.fans_rpm) == 20
    # Make an older duplicate the hottest module: it is not the module's reading now.
    entries = reply["estats"][0]["STATS"]
    dna = re.search(r"DNA\[(\w+)\]", entries[2]["MM ID1"])[1]
    dups = [(i, k) for i, e in enumerate(entries) for k, v in e.items()
            if k.startswith("MM ID") and isinstance(v, str) and f"DNA[{dna}]" in v]
    assert len(dups) == 6
    oldest = max(dups, key=lambda d: int(re.search(r"Elapsed\[(\d+)\]", entries[d[0]][d[1]])[1]))
    hot = with_keys(reply, entry=oldest[0], key=oldest[1], TMax="120")
    assert read(hot).temp_chip_max_c == sample.temp_chip_max_c


def test_a_module_fault_on_a_hashing_chain_is_a_line_and_a_fault_code():
    reply = with_keys(reply_of("a741_7411706_auc-chain-2x5"), key="MM ID2", ECHU="64 0 0 0")
    sample = read(reply)
    assert sample.state is MinerState.MINING
    assert sample.errors == ["board 4: ECHU 64: CODE_TOOHOT: module too hot"]
    reply["summary"][0]["SUMMARY"][0].update({"MHS 1m": 0.0, "MHS 5s": 0.0})
    assert read(reply).state is MinerState.ERROR


@pytest.mark.parametrize(("key", "value", "field"), [
    ("GHSmm", "-5", "expected_hashrate_ths"), ("GHSmm", "inf", "expected_hashrate_ths"),
    ("Fan", "inf", "fans_rpm"), ("Fan", "1e9", "fans_rpm"), ("TMax", "5000", "temp_chip_max_c"),
    ("ECHU", "0 -1 0 0", "errors"), ("TA", "1e9", "boards"),
])
def test_a_bad_module_value_costs_that_field_only(key, value, field):
    sample = read(with_keys(reply_of("a741_7411706_auc-chain-2x5"), key="MM ID3", **{key: value}))
    assert field in sample.unusable and sample.state is MinerState.MINING  # the chain hashes: its state stays
    assert sample.hashrate_ths == pytest.approx(42.46625) and len(sample.boards) == 40


def test_a_negative_summary_rate_on_a_chain_is_refused_not_zero():
    reply = reply_of("a741_7411706_auc-chain-2x5")
    reply["summary"][0]["SUMMARY"][0]["MHS 1m"] = -1
    sample = read(reply)
    assert sample.hashrate_ths is None and "hashrate_ths" in sample.unusable
    assert sample.expected_hashrate_ths == pytest.approx(68.20353, abs=1e-5)


def test_a_chain_of_too_many_module_strings_is_a_reply_error():
    reply = reply_of("a741_7411706_auc-chain-2x5")
    entry = reply["estats"][0]["STATS"][0]
    for i in range(6, 600):
        entry[f"MM ID{i}"] = entry["MM ID1"].replace("DNA[", f"DNA[{i:04d}")
    with pytest.raises(cgminer.MinerReplyError, match="cap"):
        read(reply)


def test_a_chain_of_many_firmwares_and_models_keeps_its_names_within_the_text_cap():
    reply = reply_of("a741_7411706_auc-chain-2x5")
    entry = reply["estats"][0]["STATS"][0]
    for i in range(6, 20):  # 24 modules on the chain: within the board and fan caps
        entry[f"MM ID{i}"] = entry["MM ID1"].replace("DNA[", f"DNA[{i:04d}").replace(
            "Ver[7411706-3162860]", f"Ver[{700 + i}1706-{'x' * 40}{i}]")
    sample = read(reply)
    assert len(sample.firmware) == 256 and sample.model.startswith("AvalonMiner 741/706/707")
    assert sample.state is MinerState.MINING and not sample.unusable


def test_a_chain_over_the_board_cap_keeps_the_boards_under_it():
    reply = reply_of("a741_7411706_auc-chain-2x5")
    entry = reply["estats"][0]["STATS"][0]
    for i in range(6, 40):  # 38 more modules x 4 boards: past 128 boards
        entry[f"MM ID{i}"] = entry["MM ID1"].replace("DNA[", f"DNA[{i:04d}")
    sample = read(reply)
    assert len(sample.boards) == 128 and "boards" in sample.unusable


# -- identification --------------------------------------------------------------------------------------------


def test_a_chain_controller_is_identified_as_an_avalon_from_its_estats():
    with golden_miner(replies(GOLDEN / "a841-821_8411803_auc-chain-1x3")) as (host, port):
        found = asyncio.run(identify.identify(Target(host, port), timeout_s=2.0))
    assert (found.driver, found.make, found.model) == (identify.AVALON, "Canaan", "AvalonMiner 841/821 chain")


def test_a_bare_cgminer_that_is_not_a_chain_is_not_taken_for_an_avalon():
    known = replies(GOLDEN / "a841-821_8411803_auc-chain-1x3")
    known["estats"] = json.loads(json.dumps(known["estats"]).replace("MM ID", "XX ID"))
    with golden_miner(known) as (host, port):
        outcome = asyncio.run(identify.attempt(Target(host, port), timeout_s=2.0))
    assert isinstance(outcome, str) and "neither as an Avalon" in outcome
