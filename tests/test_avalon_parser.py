"""The native Avalon parser on replies filed by device and firmware (tests/data/replies/avalon/).

These pin the places where pyasic 0.79 is wrong on real replies: power
without WALLPOWER, live vs since-boot hashrate, soft-off, -273 sentinels, TA.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.sources import avalon, cgminer
from models import MinerState

REPLIES = Path(__file__).parent / "data" / "replies" / "avalon"
TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def load(name: str) -> bytes:
    return (REPLIES / name).read_bytes()


def parse_bytes(raw: bytes):
    return avalon.parse(cgminer.decode(raw, "test"), host="10.0.0.9", port=4028, site="s1", ts=TS)


def test_a1246_2021_firmware_reports_wall_power_from_ps_and_live_hashrate():
    sample = parse_bytes(load("a1246_21042601_mining.json"))
    assert sample.state is MinerState.MINING
    assert sample.power_w == 3416  # PS[... 3416]: this firmware has no WALLPOWER
    assert sample.hashrate_ths == pytest.approx(87.40211)  # GHSspd, live
    assert sample.hashrate_avg_ths == pytest.approx(89.12044)  # GHSavg, since boot
    assert sample.expected_hashrate_ths == pytest.approx(90.51237)
    assert sample.efficiency_j_th == pytest.approx(3416 / 87.40211)
    assert sample.miner == sample.mac == "B4:A2:EB:31:12:A0"
    assert sample.model == "AvalonMiner 1246-83" and sample.make == "Canaan"
    assert sample.fans_rpm == [6439, 6358, 6334, 6391]
    assert [b.chips_expected for b in sample.boards] == [120, 120, 120]  # TA[360] is a chip count
    assert all(b.chips_ok == 120 for b in sample.boards)
    assert [b.temp_chip_max_c for b in sample.boards] == [83, 80, 81]
    assert sum(b.hashrate_avg_ths for b in sample.boards) == pytest.approx(89.12044, rel=1e-6)
    assert sample.temp_env_c == 29 and sample.temp_chip_max_c == 83
    assert sample.uptime_s == 86411 and sample.power_limit_w == 3420
    assert sample.pool.accepted == 98001 and sample.pool.url.startswith("stratum+tcp://")


def test_q_in_soft_off_is_soft_off_with_zero_live_hashrate_and_idle_power():
    sample = parse_bytes(load("q_25052801_softoff.json"))
    assert sample.state is MinerState.SOFT_OFF
    assert sample.hashrate_ths == 0.0  # although MGHS/GHSavg still hold ~89 TH/s
    assert sample.hashrate_avg_ths == pytest.approx(88.96701)
    assert sample.power_w == 146  # idle watts from PS[], no WALLPOWER on the Q
    assert sample.fans_rpm == [0, 0, 0, 0]
    assert len(sample.boards) == 1 and sample.boards[0].temp_in_c == 32 and sample.boards[0].temp_out_c == 32
    assert sample.boards[0].chips_expected == 160
    assert sample.efficiency_j_th is None


def test_nano3s_drops_the_minus_273_sentinel_and_reads_power_from_ps():
    sample = parse_bytes(load("nano3s_25021401_mining.json"))
    assert sample.state is MinerState.MINING
    assert sample.power_w == 133
    assert sample.temp_env_c is None  # no Temp key; ITemp[-273] is a sentinel, not a reading
    assert sample.temp_chip_max_c == 95
    assert sample.boards[0].chips_ok == 12 and sample.boards[0].chips_expected == 12
    assert sample.hashrate_ths == pytest.approx(6.59884)


def test_bare_nan_is_read_as_missing_not_a_crash():
    raw = load("a1246_21042601_mining.json").replace(b'"Utility": 15.2', b'"Utility": nan')
    assert b"nan" in raw
    sample = parse_bytes(raw)
    assert sample.state is MinerState.MINING and sample.power_w == 3416


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.99])
def test_truncated_reply_is_a_clear_reply_error(cut):
    raw = load("a1246_21042601_mining.json")
    with pytest.raises(cgminer.MinerReplyError, match="malformed or truncated JSON"):
        cgminer.decode(raw[: int(len(raw) * cut)], "10.0.0.9:4028")


def test_empty_q_summary_is_an_error_naming_the_miner():
    reply = json.loads(load("q_25052801_softoff.json"))
    reply["estats"][0]["STATS"][0]["MM ID0:Summary"] = ""
    with pytest.raises(cgminer.MinerReplyError, match=r"10\.0\.0\.9:4028.*no device string"):
        avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS)


def test_failed_command_status_is_reported_with_the_miners_message():
    reply = json.loads(load("nano3s_25021401_mining.json"))
    reply["estats"][0]["STATUS"][0].update(STATUS="E", Msg="Invalid command")
    with pytest.raises(cgminer.MinerReplyError, match="'estats' failed: Invalid command"):
        avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS)


def test_device_string_parser_keeps_multi_value_and_text_fields():
    fields = avalon.parse_device_string("SYSTEMSTATU[Work: In Work, Hash Board: 3 ] PS[0 1 2] Key1[] FanR[49%]")
    assert fields == {"SYSTEMSTATU": "Work: In Work, Hash Board: 3 ", "PS": "0 1 2", "Key1": "", "FanR": "49%"}
