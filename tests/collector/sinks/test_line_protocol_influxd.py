"""Line protocol as InfluxDB's own parser reads it (real influxd 1.6.7), not as another encoder writes it.

Arbitrary text and numbers go through the encoder (`encode`, `Shape.line`, `miner_points`), into the real
influxd, and come back over InfluxQL equal to what went in, or to the replacement README "InfluxDB schema"
documents. The local reader (`collector.line_protocol`, used by `hashfleet report`) must read the same line
the same way. The rules themselves, one per position, are pinned against the line protocol reference.
"""

import asyncio
import copy
import itertools
import json
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.line_protocol import parse_line
from collector.line_protocol import MAX_STRING_CHARS, MAX_TAG_CHARS, Shape, encode
from collector.sinks.points import miner_points
from collector.sources import avalon
from models import MinerSample, MinerState, SampleSource
from models.base import printable
from models.hardware import nameplate
from models.sample import MAX_TEXT_CHARS, MAX_UPTIME_S
from tests.support import DATA, TS

# Everything the line protocol treats specially, and what the encoder must replace, mixed into any text.
HOSTILE = list(',= "\\\n\r\t#\x00\x7f\u2028\u0085\ufeff\ud800\udfffé⚡')
text = st.text(st.characters(codec=None, exclude_categories=()) | st.sampled_from(HOSTILE), max_size=24)
long_text = st.one_of(text, st.builds(lambda t, n: (t or "x") * n, text, st.integers(1, 400)))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70))
keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)

# The documented replacements (README "InfluxDB schema").
_CONTROL = {c: " " for c in (*range(0x20), 0x7F)}
_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), "\ufffd")
_TAG = str.maketrans({**_CONTROL, **_SURROGATES, "\\": "/"})
_STRING = str.maketrans({**_CONTROL, **_SURROGATES})


def stored_tag(value: str | None) -> str | None:
    return value[:MAX_TAG_CHARS].translate(_TAG) if value else None


def stored_string(value: str) -> str:
    return value[:MAX_STRING_CHARS].translate(_STRING)


def stored_number(value: float | int) -> float | int | None:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value if -2**63 <= value < 2**63 else None


_points = itertools.count()


def read_back(influxdb, bucket: str, measurement: str) -> dict:
    rows = influxdb.query(f'SELECT * FROM "{measurement}"', bucket, epoch="s")
    assert len(rows) == 1, rows
    return rows[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(tags=st.dictionaries(keys, st.one_of(long_text, st.none()), max_size=3),
       strings=st.dictionaries(keys, long_text, max_size=3), nums=st.dictionaries(keys, numbers, max_size=3))
def test_any_text_and_number_is_accepted_by_influxd_and_reads_back_as_documented(influxdb, influx_bucket, tags,
                                                                                 strings, nums):
    measurement = f"m{next(_points)}"
    tags = {f"t_{k}": v for k, v in tags.items()}
    fields = {**{f"s_{k}": v for k, v in strings.items()}, **{f"n_{k}": v for k, v in nums.items()}}
    line = encode(measurement, tags, fields, 1_700_000_000)
    # Shape.line, the hot path, writes the very same text
    shape = Shape(measurement, list(tags), {k: str if k.startswith("s_") else type(v) for k, v in fields.items()})
    assert shape.line(list(tags.values()), list(fields.values()), 1_700_000_000) == line

    expected_fields = {k: stored_string(v) if isinstance(v, str) else stored_number(v) for k, v in fields.items()}
    expected_fields = {k: v for k, v in expected_fields.items() if v is not None}
    if not expected_fields:
        assert line == ""
        return
    assert "\n" not in line and "\r" not in line
    influxdb.write(influx_bucket, line, precision="s")  # raises on anything but 204: every line accepted
    row = read_back(influxdb, influx_bucket, measurement)
    expected_tags = {k: stored_tag(v) for k, v in tags.items()}
    assert {k: row.get(k) for k in expected_tags} == expected_tags
    got = {k: float(row[k]) if isinstance(expected_fields.get(k), float) else row.get(k) for k in fields}
    assert got == {k: expected_fields.get(k) for k in fields}  # (JSON prints 3.4e16 as an integer)
    assert row["time"] == 1_700_000_000

    local = parse_line(line)  # `hashfleet report` reads what InfluxDB stored
    assert local.measurement == measurement and local.time == 1_700_000_000
    assert local.tags == {k: v for k, v in expected_tags.items() if v is not None}
    assert local.fields == expected_fields


# pydantic refuses lone surrogates in a sample: everything else may reach one
# MinerSample holds text up to MAX_TEXT_CHARS (longer text is refused where it is read)
sample_text = long_text.map(lambda t: t.translate(_SURROGATES)[:MAX_TEXT_CHARS])
sample_numbers = st.one_of(st.none(), st.floats(0, 1e300), st.integers(0, 2**62))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(miner=sample_text.filter(bool), make=st.one_of(st.none(), sample_text),
       model=st.one_of(st.none(), sample_text), errors=st.lists(sample_text, max_size=3), hashrate=sample_numbers,
       power=sample_numbers, uptime=st.one_of(st.none(), st.integers(0, MAX_UPTIME_S)))
def test_a_sample_with_any_strings_lands_in_influxd_as_documented(influxdb, influx_bucket, miner, make, model,
                                                                   errors, hashrate, power, uptime):
    site = f"s{next(_points)}"
    sample = MinerSample(miner=miner, host="10.0.0.1", site=site, ts=TS, state=MinerState.ERROR,
                         source=SampleSource.MQTT, make=make, model=model, errors=errors, hashrate_ths=hashrate,
                         power_w=power, uptime_s=uptime)
    lines = miner_points(sample)
    influxdb.write(influx_bucket, "\n".join(lines), precision="s")
    rows = influxdb.query(f"SELECT * FROM miner WHERE site = '{site}'", influx_bucket, epoch="s")
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["miner"], row.get("make"), row.get("model")) == (stored_tag(miner), stored_tag(make), stored_tag(model))
    assert row.get("error") == (stored_string("; ".join(errors)[:512]) if errors else None)
    as_float = lambda v: None if v is None else float(v)  # noqa: E731 - JSON prints 3.4e16 as an integer
    assert as_float(row.get("hashrate_ths")) == as_float(hashrate) and as_float(row.get("power_w")) == as_float(power)
    assert row.get("uptime_s") == uptime and row["state"] == "error" and row["up"] == int(sample.up)
    tags = {"site": site, "miner": stored_tag(miner), "make": stored_tag(make), "model": stored_tag(model)}
    assert parse_line(lines[0]).tags == {k: v for k, v in tags.items() if v is not None}


# --- the rules, position by position (line protocol reference, "Special characters") ----------------

@pytest.mark.parametrize(("value", "written"), [
    ("a,b", r"a\,b"), ("a=b", r"a\=b"), ("a b", r"a\ b"),  # escaped: comma, equals sign, space
    ('a"b', 'a"b'), ("#a", "#a"), ("é⚡", "é⚡"),  # needs nothing
    ("a\\", "a/"), ("a\\,b", r"a/\,b"), ("\\\\", "//"),  # a backslash would escape what follows it in 1.x
    ("a\nb", r"a\ b"), ("a\r\tb", r"a\ \ b"), ("\x00", "\\ "),  # control characters: a space
    ("\ud800x", "\ufffdx"), ("x" * 300, "x" * MAX_TAG_CHARS),
])
def test_tag_values(value, written):
    assert encode("m", {"t": value}, {"v": 1.0}, 1) == f"m,t={written} v=1 1"


@pytest.mark.parametrize(("value", "written"), [
    ('a"b', r'a\"b'), ("a\\b", r"a\\b"), ("a\\", "a\\\\"),  # escaped: double quote, backslash
    ("a,b=c d", "a,b=c d"), ("é⚡\u2028", "é⚡\u2028"),  # needs nothing inside quotes
    ("a\nforged v=1 1", "a forged v=1 1"), ("\r\t\x00", "   "),  # control characters: a space
    ("\udfff", "\ufffd"), ("x" * 5000, "x" * MAX_STRING_CHARS),
])
def test_string_field_values(value, written):
    assert encode("m", {}, {"s": value}, 1) == f'm s="{written}" 1'


def test_measurement_and_keys():
    assert encode("a b,c=d\\", {"k k": "v"}, {"f,=": 1.0}, 1) == r"a\ b\,c=d/,k\ k=v f\,\==1 1"
    for bad in ("", "#comment"):
        with pytest.raises(ValueError):
            encode(bad, {}, {"v": 1}, 1)
    for bad in ("", "time"):  # InfluxDB refuses the whole point
        with pytest.raises(ValueError):
            encode("m", {}, {bad: 1}, 1)


def test_numbers_influxdb_cannot_hold_are_left_out():
    assert encode("m", {}, {"a": math.inf, "b": math.nan, "c": 2**63, "d": -2**63 - 1, "e": -2**63, "f": 1e308},
                  1) == "m e=-9223372036854775808i,f=1e+308 1"
    shape = Shape("m", (), {"big": float, "i": int})
    assert shape.line((), (10**400, 2**64), 1) == ""


# --- from a miner's reply: reply bytes -> the real driver -> line protocol -> influxd ----------------

_REPLY = json.loads((DATA / "replies" / "avalon" / "a1246_21042601_mining.json").read_text())


async def _served(reply: bytes) -> MinerSample:
    """The reply served once over TCP on loopback, read by the native Avalon driver."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await avalon.poll("127.0.0.1", port, site="reply", ts=TS, timeout_s=5)
    finally:
        server.close()
        await server.wait_closed()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(prod=sample_text, firmware=sample_text, user=sample_text, url=sample_text)
def test_any_strings_in_a_miners_reply_land_in_influxd_as_documented(influxdb, influx_bucket, prod, firmware, user,
                                                                    url):
    """Hostile text where a miner puts its model, firmware and pool: the driver keeps it (cut to its cap, each
    control or other non-printing character a space), the encoder escapes or replaces it, influxd accepts every line and stores the documented text. (Text
    with lone surrogates is not valid JSON for the driver's decoder: that reply is an error sample.)"""
    reply = copy.deepcopy(_REPLY)
    version = reply["version"][0]["VERSION"][0]
    version["PROD"], version["VERSION"] = prod, firmware
    reply["pools"][0]["POOLS"][0].update(User=user, URL=url)
    sample = asyncio.run(_served(json.dumps(reply).encode() + b"\x00"))
    # A PROD naming another model ("Q": an Avalon Q) makes this A1246's 3.4 kW implausible for it: refused,
    # rightly (tests/collector/sources cover that); here the text is the point.
    assume(nameplate(sample.model) in (None, nameplate("AvalonMiner 1246-83")))
    assert sample.state is MinerState.MINING, sample.errors  # the strings cost nothing else
    site = f"r{next(_points)}"
    sample = sample.model_copy(update={"site": site})
    influxdb.write(influx_bucket, "\n".join(miner_points(sample)), precision="s")
    rows = influxdb.query(f"SELECT * FROM miner WHERE site = '{site}'", influx_bucket, epoch="s")
    assert len(rows) == 1, rows
    named = printable(prod[:MAX_TEXT_CHARS])
    # a PROD that is empty or names a family ("10xx"): the device string's Ver prefix (1246-83) names it
    expected_model = stored_tag(named if named and "xx" not in named.lower() else "AvalonMiner 1246-83")
    assert rows[0].get("model") == expected_model and rows[0]["hashrate_ths"] == sample.hashrate_ths
    boards = influxdb.query(f"SELECT count(chips_ok) FROM miner_board WHERE site = '{site}'", influx_bucket)
    assert boards and boards[0]["count"] == len(sample.boards)  # no board point lost to the text either
