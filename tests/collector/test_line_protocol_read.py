"""Reading line protocol back (`hashfleet report` on the local history): the common lines hashfleet writes go
through one regular expression, every other line through the character-by-character reader; a line must read
the same either way, and a hostile line be refused or read exactly as InfluxDB 1.x would read it."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.line_protocol import LineProtocolError, _parse_any, _parse_common, encode, line_time, parse_line
from collector.sinks.points import miner_points
from models import MinerSample, MinerState, SampleSource
from tests.support import TS

MINER = ('miner,make=Canaan,miner=52:F5:64:DE:8F:03,model=AvalonMiner\\ 1246-83,site=bench '
         'efficiency_j_th=38.40231074502342,hashrate_ths=91.42679,hw_error_pct=1.098,pool_accepted=224524,'
         'pool_url="stratum+tcp://btc.pool.hashfleet.test:3333",power_w=3511,state="mining",'
         'temp_chip_max_c=78,up=1i,uptime_s=691682i 1796571604')
COST = ('cost,scope=site,site=bench btc_per_day_net=3.779051579730213e-05,energy_usd_day=4.634520000000001,'
        'incomplete=0,margin_pct=-138.90776080808533,opex_usd_day=1e+16 1796571604')
REPORTED = {"hashrate_ths", "power_w", "state", "up", "btc_per_day_net", "incomplete"}


def read(line: str, fields=None):
    """What `parse_line` makes of `line`: its point as a tuple, or 'refused'."""
    try:
        p = parse_line(line, fields)
    except LineProtocolError:
        return "refused"
    return p.measurement, p.tags, p.fields, p.time


def read_slowly(line: str, fields=None):
    """The same, read character by character (the reader every line went through before)."""
    try:
        p = _parse_any(line)
    except LineProtocolError:
        return "refused"
    return p.measurement, p.tags, {k: v for k, v in p.fields.items() if fields is None or k in fields}, p.time


def same(a, b) -> bool:
    return repr(a) == repr(b)  # (NaN is not equal to itself; -0.0 is equal to 0.0)


def test_the_lines_hashfleet_writes_take_the_fast_path_and_read_as_before():
    sample = MinerSample(miner="m 1", host="10.0.0.1", site="s,1", ts=TS, state=MinerState.MINING,
                         source=SampleSource.AVALON, make="Canaan", model="AvalonMiner 1566-209", hashrate_ths=190.5,
                         power_w=3600, uptime_s=7, errors=["fan; 2"])
    lines = miner_points(sample) + [MINER, COST, encode("cost", {"site": "x", "scope": "site"},
                                                        {"a": -0.0, "b": 1e-300, "c": 2**62, "d": 1e308}, 5)]
    for line in lines:
        if "\\," in line:  # (a site with a comma: the slow path's)
            continue
        assert _parse_common(line, None) is not None, line
        assert same(read(line), read_slowly(line)), line
        assert same(read(line, REPORTED), read_slowly(line, REPORTED)), line


# A line read by the fast path must be a line the slow one reads the same; any other must fall through.
@pytest.mark.parametrize("line", [
    MINER.replace("miner=52:F5", "miner=52\\,F5"),  # an escaped comma in a tag
    MINER.replace("miner=52:F5", "miner=52\\=F5"),
    MINER.replace("miner=52:F5", "miner=52\\\\ F5"),  # a backslash before the escape
    MINER.replace("miner=52:F5", 'miner=52"F5'),
    MINER.replace('"mining"', '"min\\"ing"'),  # an escaped quote in a string field
    MINER.replace('"mining"', '"min,power_w=1,ing"'),  # a comma in a string: not a field of its own
    MINER.replace('"mining"', '"min ing\\\\"'),
    MINER.replace("power_w=3511", "power_w=nan"), MINER.replace("power_w=3511", "power_w=inf"),
    MINER.replace("power_w=3511", "power_w=-Infinity"), MINER.replace("power_w=3511", "power_w=1e999"),
    MINER.replace("power_w=3511", "power_w=" + "9" * 400), MINER.replace("up=1i", "up=" + "9" * 5000 + "i"),
    MINER.replace("uptime_s=691682i", "uptime_s=" + "9" * 5000 + "i"),  # a field report does not read
    MINER.replace("power_w=3511", "power_w=1_000"), MINER.replace("power_w=3511", "power_w= 1"),
    MINER.replace("up=1i", "up=t"), MINER.replace("power_w=3511", "power_w=3511u"),
    MINER.replace("power_w=3511", "power_w=٣٥"),  # other scripts' digits
    MINER[:-1] + "9" * 12, MINER.replace(" 1796571604", " 1_796_571_604"), MINER.replace(" 1796571604", "  1796571604"),
    MINER + " ", MINER.replace(" 1796571604", " -1796571604"), MINER.replace(" 1796571604", " 1796571604.5"),
    MINER.replace(" 1796571604", " １７９６５７１６０４"), MINER.replace(" 1796571604", " " + "9" * 20),
    MINER[:300], MINER[:-11], MINER[:-1], MINER.rpartition(" ")[0],  # truncated
    MINER.replace(",site=bench", ",site=bench,site=other"), MINER.replace("up=1i", "up=1i,up=0i"),  # repeated
    COST.replace("cost,", "cost=x,"), COST.replace("site=bench", "site="), COST.replace("scope=", "=")
])
def test_a_hostile_line_reads_as_the_slow_reader_reads_it(line):
    assert same(read(line), read_slowly(line))
    assert same(read(line, REPORTED), read_slowly(line, REPORTED))


def test_the_fast_path_refuses_what_it_cannot_read_the_same():
    for line in (MINER.replace("miner=52:F5", "miner=52\\,F5"), MINER.replace('"mining"', '"min,ing"'),
                 MINER.replace("power_w=3511", "power_w=nan"), MINER.replace(" 1796571604", " 1_796_571_604"),
                 MINER.replace("uptime_s=691682i", "uptime_s=" + "9" * 5000 + "i"), MINER[:-11]):
        assert _parse_common(line, None) is None, line


def test_a_timestamp_is_ascii_digits_only():
    # int() reads '1_000', ' 12' and '١٢' as numbers: a time the history would have counted
    for word in ("1_796_571_604", " 1796571604", "１７９６５７１６０４", "-5", "+5", "9" * 20, "1e9", ""):
        line = MINER.rpartition(" ")[0] + " " + word
        assert read(line) == "refused", word
        assert line_time(line) is None or word == " 1796571604", word  # (its last word: the cheap pass's)
    assert line_time(MINER) == 1796571604 and read(MINER)[3] == 1796571604


TRICKY = st.sampled_from(list(',= "\\\tei.-+0159naftuTF_#x') + ["\\ ", '\\"', "\\,", "\\=", '"', "1e5", "i "])
PIECES = st.lists(st.one_of(TRICKY, st.sampled_from(["", "=", ","])), max_size=6).map("".join)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([MINER, COST]), cuts=st.lists(st.tuples(st.integers(0, 700), st.integers(0, 4), PIECES),
                                                          min_size=1, max_size=3))
def test_any_damage_to_a_written_line_reads_the_same_on_both_paths(base, cuts):
    line = base
    for at, length, piece in cuts:  # replace a few characters here and there with tricky text
        at %= len(line) + 1
        line = line[:at] + piece + line[at + length:]
    assert same(read(line), read_slowly(line))
    assert same(read(line, REPORTED), read_slowly(line, REPORTED))
