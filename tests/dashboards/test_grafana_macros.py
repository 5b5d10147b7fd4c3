"""Grafana's InfluxQL macro and template-variable expansion, reproduced so dashboard queries can run
against a real InfluxDB in tests (`expand`), and the tests that pin it to what Grafana does.

What Grafana 11's InfluxDB data source does with a raw InfluxQL query before sending it:
- `$timeFilter` becomes `time >= now() - 6h and time <= now()` for a relative range (frontend), or
  `time >= 1700000000000ms and time <= 1700000360000ms` for an absolute one (backend, alerting);
- `$__interval` becomes the panel interval (`10s`, `1m`), `$__interval_ms` the same in milliseconds;
- `${__to}` (a global variable) becomes the end of the range in epoch milliseconds (now, for a relative one);
- template variables `$var`, `${var}` and `[[var]]` become their value. A multi-value or include-all
  variable, or any variable in a query that uses a regex (`=~ /.../`), is regex-escaped and a list
  becomes `(a|b)`; "All" without a custom all value is the list of every option. Otherwise the value
  goes in as it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

# Grafana's escapeRegex (@grafana/data): every regex metacharacter and `/` gets a backslash.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
# The test the data source uses to decide whether a query holds a regex (datasource.ts, interpolateQueryExpr).
_HAS_REGEX = re.compile(r"(\s*(=|!)~\s*)/((?![*+?])(?:[^\r\n\[/\\]|\\.|\[(?:[^\r\n\]\\]|\\.)*\])+)/")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
ALL = "$__all"


@dataclass(frozen=True)
class Variable:
    """A dashboard variable as Grafana holds it at query time."""

    value: str | Sequence[str]
    multi: bool = False
    include_all: bool = False
    options: Sequence[str] = ()  # every option, for "All"


def escape_regex(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _format(variable: Variable, query: str) -> str:
    value = variable.value
    if value == ALL or value == [ALL]:
        value = list(variable.options)
    if isinstance(value, str) and not variable.multi and not variable.include_all:
        try:
            float(value)
            return value  # numbers go in unescaped
        except ValueError:
            pass
        return escape_regex(value) if _HAS_REGEX.search(query) else value
    values = [value] if isinstance(value, str) else list(value)
    if not (variable.multi or variable.include_all or _HAS_REGEX.search(query)):
        return ",".join(values)
    if len(values) == 1 and isinstance(variable.value, str) and variable.value != ALL:
        return escape_regex(values[0])
    return "(" + "|".join(escape_regex(v) for v in values) + ")"


def time_filter(range_: str | tuple[int, int]) -> str:
    """`"6h"` (now-6h to now, as the frontend writes it) or (from_ms, to_ms) (absolute, as the backend does)."""
    if isinstance(range_, str):
        return f"time >= now() - {range_} and time <= now()"
    start, end = range_
    return f"time >= {start}ms and time <= {end}ms"


def interval_ms(interval: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", interval).groups()
    return int(number) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit]


def expand(query: str, variables: Mapping[str, Variable] | None = None, *, range_: str | tuple[int, int] = "6h",
           interval: str = "10s") -> str:
    """The query text Grafana would send to InfluxDB."""
    text = query.replace("$timeFilter", time_filter(range_))
    text = text.replace("$__interval_ms", str(interval_ms(interval))).replace("$__interval", interval)
    end_ms = int(time.time() * 1000) if isinstance(range_, str) else range_[1]
    text = text.replace("${__to}", str(end_ms)).replace("$__to", str(end_ms))
    variables = variables or {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            return match.group(0)  # unknown: Grafana leaves it as it is
        return _format(variables[name], query)

    return _VARIABLE.sub(replace, text)


# --- what the expander must do ---------------------------------------------------------------------


def test_time_filter_relative_and_absolute():
    assert expand("SELECT x FROM m WHERE $timeFilter") == "SELECT x FROM m WHERE time >= now() - 6h and time <= now()"
    assert expand("WHERE $timeFilter", range_=(1_700_000_000_000, 1_700_000_360_000)) == (
        "WHERE time >= 1700000000000ms and time <= 1700000360000ms")


def test_the_ranges_end_in_milliseconds():
    assert expand("time >= ${__to}ms - 10m", range_=(1_700_000_000_000, 1_700_000_360_000)) == (
        "time >= 1700000360000ms - 10m")
    before = int(time.time() * 1000)
    end = int(expand("${__to}"))
    assert before <= end <= int(time.time() * 1000)


def test_interval_and_interval_ms():
    assert expand("GROUP BY time($__interval)", interval="1m") == "GROUP BY time(1m)"
    assert expand("$__interval_ms", interval="10s") == "10000"


def test_single_value_in_a_regex_is_escaped_as_grafana_does():
    query = 'WHERE "miner" =~ /^$miner$/'
    assert expand(query, {"miner": Variable("10.0.0.5:4028")}) == r'WHERE "miner" =~ /^10\.0\.0\.5:4028$/'
    assert expand('WHERE "miner" = \'$miner\'', {"miner": Variable("10.0.0.5:4028")}) == (
        "WHERE \"miner\" = '10.0.0.5:4028'")  # no regex in the query: the value goes in as it is


def test_multi_value_and_all_become_an_alternation():
    site = Variable(["tx.1", "ks/2"], multi=True, include_all=True, options=["tx.1", "ks/2", "nd"])
    assert expand('"site" =~ /^$site$/', {"site": site}) == r'"site" =~ /^(tx\.1|ks\/2)$/'
    every = Variable(ALL, multi=True, include_all=True, options=["a", "b"])
    assert expand('"site" =~ /^${site}$/', {"site": every}) == '"site" =~ /^(a|b)$/'


def test_unknown_variables_and_braced_forms():
    assert expand("[[site]] ${site} $other", {"site": Variable("x")}) == "x x $other"


@pytest.mark.parametrize("value", ["a.b", "(x)", "a|b", "[1]", "^$", "1+1", "a*b", "a/b"])
def test_escaped_value_matches_only_itself(value):
    pattern = re.compile("^" + escape_regex(value) + "$")
    assert pattern.match(value) and not pattern.match(value + "x")
