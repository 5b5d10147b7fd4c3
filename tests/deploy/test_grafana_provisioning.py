"""The expander the stack rehearsal uses, against the rules of Grafana's provisioning (grafana_provisioning.py)."""

from __future__ import annotations

import pytest
from tests.deploy.grafana_provisioning import go_expand_env, influxql_request, interpolate

ENV = {"INFLUX_URL": "http://influxdb:8086", "BUCKET": "hashfleet", "EMPTY": ""}


def _no_files(path: str) -> str:
    raise AssertionError(f"no file expected, asked for {path}")


@pytest.mark.parametrize("raw,expanded", [
    ("${INFLUX_URL}", "http://influxdb:8086"),
    ("$INFLUX_URL/query", "http://influxdb:8086/query"),
    ("$__env{BUCKET}", "hashfleet"),
    ("${UNSET}x", "x"),
    ("$$INFLUX_URL", "$INFLUX_URL"),  # "$$" is a literal "$"
    ("cost $ 5", "cost $ 5"),  # "$" not followed by a name stays
    ("${}", ""),  # Go eats bad syntax
    ("a$", "a$"),
])
def test_values_expand_as_grafana_expands_them(raw, expanded):
    assert interpolate(raw, ENV, _no_files) == expanded


def test_file_values_are_read_trimmed_and_then_still_go_through_env_expansion(tmp_path):
    token = tmp_path / "token"
    token.write_text("  abc==\n")
    assert interpolate(f"Token $__file{{{token}}}", ENV, lambda p: open(p).read()) == "Token abc=="
    token.write_text("a$BUCKET\n")  # Grafana expands a file's content like any other text
    assert interpolate(f"$__file{{{token}}}", ENV, lambda p: open(p).read()) == "ahashfleet"


def test_maps_and_lists_are_walked_and_other_types_kept():
    raw = {"url": "${INFLUX_URL}", "jsonData": {"dbName": "${BUCKET}", "n": 5, "ok": True}, "list": ["$BUCKET"]}
    assert interpolate(raw, ENV, _no_files) == {"url": "http://influxdb:8086", "list": ["hashfleet"],
                                                "jsonData": {"dbName": "hashfleet", "n": 5, "ok": True}}


def test_special_shell_variables_follow_go():
    assert go_expand_env("$1x ${#} $", {"1": "one", "#": "hash"}) == "onex hash $"


def test_the_influxql_request_carries_the_database_and_the_custom_header():
    source = {"url": "http://h:1/", "jsonData": {"dbName": "db", "httpMode": "POST", "httpHeaderName1": "Authorization"},
              "secureJsonData": {"httpHeaderValue1": "Token t"}}
    url, headers, body = influxql_request(source, "SELECT 1")
    assert url == "http://h:1/query?db=db&epoch=ms"
    assert headers["Authorization"] == "Token t" and body == b"q=SELECT+1"
