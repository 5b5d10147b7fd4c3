"""hashfleet's line-protocol encoder writes what influxdb-client's Point writes wherever Point is right.

Point keeps backslashes and control characters that InfluxDB's parser misreads (tests/test_lineprotocol_influxd.py
checks the encoder against the real influxd instead); on every other text the two agree byte for byte."""

import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from collector.line_protocol import Shape, encode
from collector.sinks.points import miner_points
from models import BoardSample, MinerSample, MinerState, PoolInfo, SampleSource

# Text where Point is right: no backslash, no control character, no lone surrogate (the encoder replaces them)
plain = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\\")
names = st.text(plain | st.sampled_from(list(', ="')), min_size=1, max_size=12).filter(
    lambda t: not t.startswith("#") and t.strip() == t and t != "time")
strings = st.text(plain | st.sampled_from(list(',= "\\')), max_size=20)  # in strings a backslash is escaped
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**62, 2**62), strings, st.none())


@settings(max_examples=300, deadline=None)
@given(measurement=names, tags=st.dictionaries(names, st.one_of(names, st.none()), max_size=4),
       fields=st.dictionaries(names, values, max_size=6), ts=st.integers(0, 2**40))
def test_encode_matches_influxdb_client(measurement, tags, fields, ts):
    point = Point(measurement)
    for key, value in tags.items():
        point.tag(key, value)
    for key, value in fields.items():
        point.field(key, value)
    expected = point.time(ts, "s").to_line_protocol()
    assert encode(measurement, tags, fields, ts) == expected


def test_non_finite_and_missing_fields_are_left_out():
    assert encode("m", {"a": "b"}, {"x": math.inf, "y": None, "z": 1.5}, 7) == "m,a=b z=1.5 7"
    assert encode("m", {"a": "b"}, {"x": math.nan}, 7) == ""


# --- Shape: the per-miner points' encoder writes what `encode` writes -------------------------------

kinds = st.sampled_from([float, int, str])
finite_or_not = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**53, 2**53), st.none())


@st.composite
def shaped_points(draw):
    tag_keys = draw(st.lists(names, max_size=4, unique=True))
    field_kinds = draw(st.dictionaries(names, kinds, min_size=1, max_size=6))
    values = []
    for kind in field_kinds.values():
        if kind is str:
            values.append(draw(st.one_of(st.text(max_size=20), st.none())))  # any text: Shape must match encode
        elif kind is int:
            values.append(draw(st.one_of(st.integers(-2**62, 2**62), st.none())))
        else:  # a float field may be handed an int: it must still be written as a float
            values.append(draw(finite_or_not))
    tags = [draw(st.one_of(names, st.none())) for _ in tag_keys]
    return draw(names), tag_keys, field_kinds, tags, values


def _as_declared(kind, value):
    return None if value is None else kind(value)


@settings(max_examples=300, deadline=None)
@given(point=shaped_points(), ts=st.integers(0, 2**40))
def test_shape_writes_what_encode_writes(point, ts):
    measurement, tag_keys, field_kinds, tags, values = point
    shape = Shape(measurement, tag_keys, field_kinds)
    expected = encode(measurement, dict(zip(tag_keys, tags)),
                      {k: _as_declared(kind, v) for (k, kind), v in zip(field_kinds.items(), values)}, ts)
    assert shape.line(tags, values, ts) == expected
    assert shape.line(tags, values, ts) == expected  # again, from the remembered tag text


def test_shape_refuses_a_field_type_influxdb_cannot_keep():
    with pytest.raises(TypeError, match="bool"):
        Shape("m", ("a",), {"x": bool})


def _reference_miner_lines(sample: MinerSample) -> list[str]:
    """The miner and board points written the plain way: a dict per point through `encode`."""
    ts = int(sample.ts.timestamp())
    f = lambda v: None if v is None else float(v)  # noqa: E731
    pool = sample.pool
    lines = [encode("miner", {"site": sample.site, "miner": sample.miner, "make": sample.make, "model": sample.model}, {
        "hashrate_ths": f(sample.hashrate_ths), "hashrate_avg_ths": f(sample.hashrate_avg_ths),
        "expected_hashrate_ths": f(sample.expected_hashrate_ths), "power_w": f(sample.power_w),
        "power_limit_w": f(sample.power_limit_w), "efficiency_j_th": f(sample.efficiency_j_th),
        "temp_chip_max_c": f(sample.temp_chip_max_c), "temp_board_max_c": f(sample.temp_board_max_c),
        "temp_env_c": f(sample.temp_env_c), "fan_rpm_max": f(sample.fan_rpm_max), "hw_error_pct": f(sample.hw_error_pct),
        "uptime_s": sample.uptime_s, "pool_accepted": f(pool.accepted) if pool else None,
        "pool_rejected": f(pool.rejected) if pool else None, "state": sample.state.value, "up": int(sample.up),
        "error": "; ".join(sample.errors)[:512] if sample.errors else None}, ts)]
    for b in sample.boards:
        line = encode("miner_board", {"site": sample.site, "miner": sample.miner, "board": str(b.index)}, {
            "hashrate_ths": f(b.hashrate_ths), "hashrate_avg_ths": f(b.hashrate_avg_ths), "temp_in_c": f(b.temp_in_c),
            "temp_out_c": f(b.temp_out_c), "temp_chip_max_c": f(b.temp_chip_max_c),
            "temp_chip_avg_c": f(b.temp_chip_avg_c), "chips_ok": f(b.chips_ok), "chips_expected": f(b.chips_expected)}, ts)
        if line:
            lines.append(line)
    return lines


TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
SAMPLES = [
    MinerSample(miner="AA:00:00:00:00:01", host="10.0.0.1", site="north site", ts=TS, state=MinerState.MINING,
                source=SampleSource.AVALON, make="Canaan", model="AvalonMiner 1566-185", hashrate_ths=185.25,
                hashrate_avg_ths=184, expected_hashrate_ths=185, power_w=3420, power_limit_w=3600, temp_env_c=25,
                temp_chip_max_c=81.5, fans_rpm=[4100, 4200], uptime_s=86400, hw_error_pct=0.01,
                pool=PoolInfo(accepted=1200, rejected=3), errors=["hashboard error code ECHU=512"],
                boards=[BoardSample(index=i, hashrate_avg_ths=61.75, temp_chip_max_c=80 + i, temp_chip_avg_c=70,
                                    chips_ok=120 - i, chips_expected=120) for i in range(3)] + [BoardSample(index=70)]),
    MinerSample.offline(miner="10.0.0.2:4028", host="10.0.0.2", port=4028, site="north site", ts=TS,
                        source=SampleSource.AVALON, reason='no answer, "timeout"'),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=["mining", "offline"])
def test_miner_points_are_the_plain_encoding_of_the_readme_schema(sample):
    assert miner_points(sample) == _reference_miner_lines(sample)


def test_the_pool_a_miner_reports_is_written_as_string_fields_without_credentials():
    sample = MinerSample(miner="m1", host="10.0.0.5", ts=datetime(2026, 1, 2, tzinfo=timezone.utc),
                         state=MinerState.MINING, source=SampleSource.AVALON, hashrate_ths=90.0,
                         pool=PoolInfo(url="stratum+tcp://worker:s3cret@pool.example:3333", user="acct.w1",
                                       accepted=10, rejected=1))
    line = miner_points(sample)[0]
    tags = line.split(" ", 1)[0]
    assert "pool" not in tags  # fields, not tags: URLs and workers are many
    assert 'pool_url="stratum+tcp://***@pool.example:3333"' in line and 'pool_user="acct.w1"' in line
    assert "s3cret" not in line


def test_a_stages_records_are_written_in_their_measurements_layout_and_a_bad_one_costs_only_itself(caplog):
    from collector.cycle import Cycle, Record
    from collector.sinks.points import cycle_lines
    from models import schema

    cycle = Cycle("s1", TS)
    cycle.records += [
        Record(schema.POOL, {"site": "s1", "pool": "p", "scope": "account"}, {"hashrate_ths": 3, "stale": 0}),
        Record(schema.POOL, {"site": "s1", "rack": "r1"}, {"hashrate_ths": 1.0}),  # no `rack` tag in the schema
        Record(schema.POOL_DAY, {"site": "s1", "scope": "site"}, {"closed": 1}, ts=TS.replace(hour=0)),
    ]
    lines = cycle_lines(cycle)
    assert lines[0] == f"pool,pool=p,scope=account,site=s1 hashrate_ths=3,stale=0 {int(TS.timestamp())}"  # floats
    assert lines[1].startswith("pool_day,scope=site,site=s1 closed=1 ")
    assert lines[1].endswith(f" {int(TS.replace(hour=0).timestamp())}")  # its own time
    assert lines[2].startswith("collector,") and len(lines) == 3
    assert "a pool figure not written: pool: rack not in models/schema.py" in caplog.text
