"""The native Avalon parser on replies filed by device and firmware (tests/data/replies/avalon/).

These pin the places where pyasic 0.79 is wrong on real replies: power
without WALLPOWER, live vs since-boot hashrate, soft-off, -273 sentinels, TA.
"""

import json
import re
from datetime import datetime, timezone

import pytest

from collector.sources import avalon

from collector.sources import cgminer_client as cgminer
from models import MinerState

from tests.support import DATA

REPLIES = DATA / "replies" / "avalon"
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


# --- hostile values: a bad field costs that field only ------------------------------------------

def with_keys(name: str, **keys: str) -> bytes:
    """The reply with device-string keys set to these raw values (added after Ver[...] if absent)."""
    raw = load(name)
    for key, value in keys.items():
        pattern = re.compile(rb"(?<![A-Za-z0-9_])" + key.encode() + rb"\[[^\]]*\]")
        replacement = f"{key}[{value}]".encode()
        raw, count = pattern.subn(lambda _: replacement, raw)
        if not count:
            raw = re.sub(rb"Ver\[[^\]]*\]", lambda m: m.group(0) + b" " + replacement, raw, count=1)
    return raw


@pytest.mark.parametrize(("key", "value", "field"), [
    ("GHSspd", "inf", "hashrate_ths"),
    ("GHSspd", "-5", "hashrate_ths"),
    ("GHSspd", "nonsense", "hashrate_ths"),
    ("GHSavg", "-inf", "hashrate_avg_ths"),
    ("WALLPOWER", "inf", "power_w"),
    ("PS", "0 1220 1339 239 3200 1340 inf", "power_w"),
    ("MPO", "inf", "power_limit_w"),
    ("Elapsed", "inf", "uptime_s"),
    ("Elapsed", "1e300", "uptime_s"),
    ("DH", "inf%", "hw_error_pct"),
    ("Temp", "inf", "temp_env_c"),
    ("TMax", "1e300", "temp_chip_max_c"),
    ("Fan1", "inf", "fans_rpm"),
    ("Fan2", "1e12", "fans_rpm"),
    ("MGHS", "29801.20 inf 29663.93", "boards"),
    ("TA", "inf", "boards"),
    ("ECHU", "0 inf 0", "errors"),
    ("SoftOFF", "inf", "state"),
])
def test_a_bad_value_is_refused_and_named_and_the_rest_of_the_reading_is_kept(key, value, field):
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", **{key: value}))
    # The unit hashes 87 TH/s: only a refused live hashrate leaves that unknown (error).
    assert sample.state is (MinerState.ERROR if field == "hashrate_ths" else MinerState.MINING)
    assert field in sample.unusable
    assert any(f"{key}[" in e and field in e for e in sample.errors), sample.errors
    intact = {"hashrate_ths": 87.40211, "power_w": 3416, "uptime_s": 86411, "temp_env_c": 29}
    for name, value_read in intact.items():
        if name != field and not (field == "hashrate_ths" and name == "power_w"):
            assert getattr(sample, name) == pytest.approx(value_read), name
    assert getattr(sample, field) in (None, [], 0.0) or field in ("boards", "fans_rpm", "errors", "state")


def test_a_negative_live_hashrate_is_no_reading_not_zero_th_while_mining():
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", GHSspd="-5"))
    assert sample.hashrate_ths is None and sample.state is MinerState.ERROR
    assert sample.hashrate_avg_ths == pytest.approx(89.12044)  # GHSavg is its own reading


def test_a_bad_live_hashrate_does_not_fall_back_to_the_summary():
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", GHSspd="inf"))
    assert sample.hashrate_ths is None  # not the summary's MHS 1m: the firmware is not trusted there


def test_fan1_inf_costs_fan1_only():
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", Fan1="inf"))
    assert sample.fans_rpm == [6358, 6334, 6391]
    assert sample.hashrate_ths == pytest.approx(87.40211) and sample.power_w == 3416


@pytest.mark.parametrize(("keys", "cap"), [
    ({"MGHS": " ".join(["29801.20"] * 129)}, "128"),
    ({f"PVT_T{i}": "60 61" for i in range(129)}, "128"),
    ({"PVT_T0": " ".join(["65"] * 1025)}, "1024"),
    ({f"Fan{i}": "4000" for i in range(1, 34)}, "32"),
    ({"TA": "1000000", "PVT_T0": "", "PVT_T1": "", "PVT_T2": ""}, "1024"),  # TA counts when no chip lists
])
def test_a_list_over_its_cap_is_refused_and_the_cap_named(keys, cap):
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", **keys))
    assert sample.state is MinerState.MINING  # the list is lost, not the state of a unit hashing 87 TH/s
    assert any("cap" in e and cap in e for e in sample.errors), sample.errors
    assert len(sample.boards) <= 128 and len(sample.fans_rpm) <= 32
    assert all((b.chips_expected or 0) <= 1024 for b in sample.boards)
    assert sample.hashrate_ths == pytest.approx(87.40211)


def test_a_device_string_of_a_million_entries_is_a_reply_error_naming_the_cap():
    raw = with_keys("a1246_21042601_mining.json", MGHS=" ".join(["1"] * 1_000_000))
    with pytest.raises(cgminer.MinerReplyError, match=r"10\.0\.0\.9:4028.*more than the cap of 524288"):
        parse_bytes(raw)


@pytest.mark.parametrize(("keys", "field", "ceiling"), [
    ({"GHSspd": "1e300"}, "hashrate_ths", "3x the AvalonMiner 1246 nameplate (90 TH/s)"),
    ({"GHSspd": "300000"}, "hashrate_ths", "3x the AvalonMiner 1246 nameplate (90 TH/s)"),
    ({"WALLPOWER": "99999999"}, "power_w", "2x the AvalonMiner 1246 nameplate (3420 W)"),
    ({"MPO": "99999999"}, "power_limit_w", "2x the AvalonMiner 1246 nameplate (3420 W)"),
    ({"MGHS": "29801.20 1e300 29663.93"}, "boards", "3x the AvalonMiner 1246 nameplate"),
])
def test_a_reading_the_model_cannot_produce_is_refused_against_its_nameplate(keys, field, ceiling):
    sample = parse_bytes(with_keys("a1246_21042601_mining.json", **keys))
    assert field in sample.unusable
    assert sample.state is (MinerState.ERROR if field == "hashrate_ths" else MinerState.MINING)
    assert any(ceiling in e and "not a plausible reading" in e for e in sample.errors), sample.errors
    assert sample.temp_chip_max_c == 83  # the rest is kept


def test_an_unknown_model_is_judged_against_its_own_expected_hashrate():
    reply = json.loads(with_keys("a1246_21042601_mining.json", GHSspd="300000"))
    reply["version"][0]["VERSION"][0].update(PROD="AvalonMiner 9999-1", MODEL="9999-1")
    sample = avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS)
    assert "hashrate_ths" in sample.unusable
    assert any("3x its own expected hashrate (90.5124 TH/s)" in e for e in sample.errors), sample.errors
    reply["estats"][0]["STATS"][0]["MM ID0"] = reply["estats"][0]["STATS"][0]["MM ID0"].replace(
        "GHSspd[300000]", "GHSspd[250000]")
    assert avalon.parse(reply, host="10.0.0.9", port=4028, site="s1", ts=TS).state is MinerState.MINING  # < 3x


def test_every_real_reply_parses_with_nothing_refused():
    for path in sorted(REPLIES.glob("*.json")):
        sample = parse_bytes(path.read_bytes())
        assert not sample.unusable and sample.state is not MinerState.ERROR, (path.name, sample.errors)


@pytest.mark.parametrize("odd", [b"\xff\xfe", b"\x00", b"\x1b[31m\x07"])
def test_one_odd_byte_in_a_text_costs_that_text_not_the_reading(odd):
    # A pool URL holding bytes that are not UTF-8, or a NUL or control characters (invalid in a JSON string):
    # the whole reading was an error ("malformed ... at byte 0"); now the text shows them replaced.
    raw = load("a1246_21042601_mining.json")
    url = json.loads(raw.rstrip(b"\x00"))["pools"][0]["POOLS"][0]["URL"].encode()
    assert raw.count(url) == 1
    sample = parse_bytes(raw.replace(url, url[:10] + odd + url[10:]))
    assert sample.state is MinerState.MINING and sample.power_w == 3416 and sample.hashrate_ths
