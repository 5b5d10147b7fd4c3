"""hashfleet's line-protocol encoder writes exactly what influxdb-client's Point writes."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point

from collector.points import encode

names = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(list(", =\\\"\t\n")),
                min_size=1, max_size=12).filter(lambda t: not t.startswith("#") and t.strip() == t and "\\" not in t[-1:])
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**62, 2**62),
                   st.text(max_size=20), st.none())


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
