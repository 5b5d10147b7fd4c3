"""InfluxDB line protocol, written and read back: the format, and nothing about miners.

Writing (`encode`, `Shape`): hashfleet writes line protocol itself, and one value must never reshape a
line; the rules per position are in the table below and in README "InfluxDB schema".
Reading (`parse_line`, for `hashfleet report` on the local history): the way InfluxDB 1.x reads it (its
`models/points.go`), so the local history shows what InfluxDB would store: in the measurement, tag keys
and values and field keys a separator (`,` `=` space) preceded by a backslash belongs to the text, and
only `\\,` `\\=` `\\ ` lose their backslash; any other backslash is literal. In a string field value
`\\"` and `\\\\` are escapes. Only the subset hashfleet emits is read: float, integer (`i`), boolean and
string fields; a timestamp of ASCII digits (no sign). The lines hashfleet writes are read by one regular
expression, any other character by character (`_parse_any`); both read a line the same (tested).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

PRECISION = "s"  # one timestamp per cycle, whole seconds: points stay small and re-sent ones overwrite


def seconds(ts: datetime) -> int:
    return int(ts.timestamp())


# Line-protocol encoding: hashfleet writes line protocol itself (influxdb-client's `Point` was a tenth of
# the collector's CPU at 10,000 miners: docs/benchmarks.md), and one value must never reshape a line.
# Position by position (InfluxDB's line protocol reference, "Special characters"; every rule checked
# against influxd's own parser in tests/test_lineprotocol_influxd.py; the table is in README "InfluxDB schema"):
#
#   position                 escaped with \      replaced                                 refused (ValueError)
#   measurement              , space             \ -> /, control characters -> space      empty, leading '#'
#   tag key, field key       , = space           the same                                 empty, 'time'
#   tag value                , = space           the same; cut to MAX_TAG_CHARS           (empty: tag left out)
#   string field value       " \                 control characters -> space; cut to MAX_STRING_CHARS
#   any text                                     lone surrogates (not UTF-8) -> U+FFFD
#   float / integer field                        NaN, +-inf, integers outside int64: the field is left out
#
# Why backslashes are replaced outside strings: InfluxDB 1.x/2.x take any backslash before a separator as
# escaping it (a tag value ending in one swallows the separator after it, and with it the lines that
# follow), while 3.x reads `\\` as one backslash; no text with a backslash beside a separator means the
# same to both, text without one does. Why control characters are replaced: a newline ends the line (what
# follows would be a point of its own) and InfluxDB's reference supports none in tags or field values.
MAX_TAG_CHARS = 256  # InfluxDB 1.x refuses a series key over 64 KB; 256 is far beyond any real model or id
MAX_STRING_CHARS = 4096  # InfluxDB caps string fields at 64 KB; hashfleet's longest is a 512-char error
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

_CONTROL = {c: " " for c in (*range(0x20), 0x7F)}
_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), "\ufffd")
_ESCAPE_MEASUREMENT = str.maketrans({**_SURROGATES, **{c: r"\ " for c in _CONTROL},
                                     "\\": "/", ",": r"\,", " ": r"\ "})
_ESCAPE_KEY = str.maketrans({**_SURROGATES, **{c: r"\ " for c in _CONTROL},
                             "\\": "/", ",": r"\,", "=": r"\=", " ": r"\ "})
_ESCAPE_STRING = str.maketrans({**_SURROGATES, **_CONTROL, '"': r'\"', "\\": "\\\\"})
_STRING_NEEDS_WORK = re.compile(r'["\\\x00-\x1f\x7f\ud800-\udfff]').search  # most strings need none: one C scan

Field = float | int | str | None


def encode(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, Field], ts: int) -> str:
    """One line: tags and fields sorted by key; None, empty and non-finite values (and integers outside
    int64) left out; floats without a trailing '.0', integers with 'i', strings quoted. '' when no field
    remains. Text is escaped or replaced as the table above says."""
    parts = [_escaped_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value:
            parts.append(_key_prefix(key) + _tag_value(value))
    encoded = []
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            continue
        kind = type(value)
        # Exact-type checks first: this loop runs for every field of every point (the isinstance chain,
        # float() and a cached-function call per key were half its time: docs/benchmarks.md).
        if kind is float:
            if not _isfinite(value):
                continue
            text = repr(value)
            if text.endswith(".0"):
                text = text[:-2]
        elif kind is int:
            if not _I64_MIN <= value <= _I64_MAX:
                continue
            text = f"{value}i"
        elif kind is str:
            text = _string(value)
        else:
            text = _encode_other(key, value)
            if text is None:
                continue
        encoded.append((_KEY_PREFIXES.get(key) or _key_prefix(key)) + text)
    if not encoded:
        return ""
    return f"{','.join(parts)} {','.join(encoded)} {ts}"


def _encode_other(key: str, value: object) -> str | None:
    """Subclasses of float, int and str (enums, numpy-free but possible); booleans refused."""
    if isinstance(value, bool):
        raise TypeError(f"field {key!r}: write booleans as 0/1 integers")
    if isinstance(value, float):
        if not _isfinite(value):
            return None
        text = repr(float(value))
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, int):
        return f"{int(value)}i" if _I64_MIN <= value <= _I64_MAX else None
    if isinstance(value, str):
        return _string(str(value))
    raise TypeError(f"field {key!r}: unsupported type {type(value).__name__}")


def _string(value: str) -> str:
    """A string field value, quoted."""
    if len(value) > MAX_STRING_CHARS:
        value = value[:MAX_STRING_CHARS]
    if _STRING_NEEDS_WORK(value) is None:
        return f'"{value}"'
    return f'"{value.translate(_ESCAPE_STRING)}"'


class Shape:
    """A point whose tag and field keys are known up front: the per-miner points, written ~50,000
    times a cycle at 10,000 miners. Keys are sorted and escaped once, each field has a fixed type
    (a float field given an int still writes a float: InfluxDB refuses a field that changes type),
    and the measurement-and-tags text of each tag combination is kept, since miners, boards and
    sites repeat every cycle. Writes exactly what `encode` writes for the same values (tested);
    faster (sorting, the dicts and tag escaping were a third of `encode`'s time; docs/benchmarks.md)."""

    _MAX_HEADS = 1 << 17  # tag combinations remembered per shape: ~40,000 miners of 3 boards fit

    def __init__(self, measurement: str, tags: Sequence[str], fields: Mapping[str, type]):
        self.tags = tuple(tags)
        self.fields = tuple(fields)
        bad = set(fields.values()) - {float, int, str}
        if bad:
            raise TypeError(f"{measurement}: field types must be float, int or str, not {bad}")
        self._measurement = _escaped_measurement(measurement)
        self._tag_order = sorted(range(len(self.tags)), key=self.tags.__getitem__)
        self._field_order = [(i, _key_prefix(self.fields[i]), fields[self.fields[i]])
                             for i in sorted(range(len(self.fields)), key=self.fields.__getitem__)]
        self._heads: dict[tuple[str | None, ...], str] = {}

    def line(self, tags: Sequence[str | None], values: Sequence[Field], ts: int) -> str:
        """`tags` and `values` in the order the shape names them; '' when no field has a value."""
        head = self._heads.get(tags := tuple(tags))
        if head is None:
            head = self._head(tags)
        encoded = []
        for i, prefix, kind in self._field_order:
            value = values[i]
            if value is None:
                continue
            if kind is float:
                if type(value) is not float:
                    try:
                        value = float(value)
                    except OverflowError:  # an integer beyond any float: no reading
                        continue
                if not _isfinite(value):
                    continue
                text = repr(value)
                if text.endswith(".0"):
                    text = text[:-2]
                encoded.append(prefix + text)
            elif kind is int:
                value = int(value)
                if _I64_MIN <= value <= _I64_MAX:
                    encoded.append(f"{prefix}{value}i")
            else:
                encoded.append(prefix + _string(value if type(value) is str else str(value)))
        if not encoded:
            return ""
        return f"{head} {','.join(encoded)} {ts}"

    def _head(self, tags: tuple[str | None, ...]) -> str:
        parts = [self._measurement]
        for i in self._tag_order:
            if tags[i]:
                parts.append(_key_prefix(self.tags[i]) + _tag_value(tags[i]))
        head = ",".join(parts)
        if len(self._heads) >= self._MAX_HEADS:  # a fleet that changed: start over rather than grow
            self._heads.clear()
        self._heads[tags] = head
        return head


def _tag_value(value: object) -> str:
    text = value if type(value) is str else str(value)
    return text[:MAX_TAG_CHARS].translate(_ESCAPE_KEY)


_isfinite = math.isfinite
_KEY_PREFIXES: dict[str, str] = {}  # "key=" with the key escaped, for every key seen (keys are few and fixed)


def _key_prefix(key: str) -> str:
    prefix = _KEY_PREFIXES.get(key)
    if prefix is None:
        if not key or key == "time":  # InfluxDB refuses the whole point (keys are hashfleet's own names)
            raise ValueError(f"{key!r} cannot be a tag or field key")
        prefix = key.translate(_ESCAPE_KEY) + "="
        if len(_KEY_PREFIXES) < 4096:
            _KEY_PREFIXES[key] = prefix
    return prefix


@functools.cache
def _escaped_measurement(name: str) -> str:
    if not name or name.startswith("#"):  # '#' starts a comment: InfluxDB would skip the line
        raise ValueError(f"{name!r} cannot be a measurement name")
    return name.translate(_ESCAPE_MEASUREMENT)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, float | int | str]
    time: int


class LineProtocolError(ValueError):
    pass


def _name_end(text: str, start: int, stops: str) -> int:
    """Index of the first of `stops` at or after `start` that no backslash precedes (len(text) if none)."""
    i = start
    while i < len(text):
        if text[i] in stops and (i == 0 or text[i - 1] != "\\"):
            return i
        i += 1
    return i


def _unescape_name(text: str, escapable: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the string field value whose opening quote is at `start`."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise ValueError("unbalanced quotes")


def _unescape_string(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\") if "\\" in text else text


def _number(raw: str) -> float | int:
    if raw.endswith("i"):
        return int(raw[:-1])
    if raw in ("t", "T", "true", "True", "TRUE"):
        return 1
    if raw in ("f", "F", "false", "False", "FALSE"):
        return 0
    return float(raw)


def line_time(line: str) -> int | None:
    """A line's timestamp, its last word, when that is one (ASCII digits, at most 19: int64's);
    None if not. Read without parsing the line (the spool's and the history's cheap passes)."""
    text = line.rpartition(" ")[2]
    return int(text) if _TIMESTAMP(text) else None


def parse_line(line: str, fields: Container[str] | None = None) -> Line:
    """The point a line holds, LineProtocolError when InfluxDB would refuse it. `fields`: the field keys
    to keep (`hashfleet report` reads a few of ~50); the others are still read, and refuse the line as
    InfluxDB would, but not kept."""
    point = _parse_common(line, fields)
    if point is None:
        point = _parse_any(line)
        if fields is not None:
            point = Line(point.measurement, point.tags, {k: v for k, v in point.fields.items() if k in fields},
                         point.time)
    return point


# The lines hashfleet writes, read by one regular expression (C) instead of character by character
# (Python): ~42 -> ~12 µs a line (docs/benchmarks.md). Narrower than `_parse_any`, so that what it reads
# is read the same: names without backslashes, a tag value escaping only spaces (a model's name),
# strings without backslashes or commas (so commas separate fields), numbers as `encode` writes them
# (float's repr, or an int64's digits and `i`). Any other line goes to `_parse_any`: a differential test
# holds the two to the same points (tests/collector/test_line_protocol_read.py).
_NAME = r"[^,= \\]+"
_NUMBER = r"-?(?:[0-9]{1,19}i|[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)"  # float() or int() read any of these
_FIELD = rf'[^,= \\"]+=(?:"[^"\\,]*"|{_NUMBER})'
_COMMON_LINE = re.compile(
    rf"({_NAME}(?:,{_NAME}=(?:[^,= \\]|\\ )*)*) ({_FIELD}(?:,{_FIELD})*) ([0-9]{{1,19}})").fullmatch
_TIMESTAMP = re.compile("[0-9]{1,19}").fullmatch  # not int()'s: it takes '1_000', ' 12' and other scripts' digits


def _parse_common(line: str, fields: Container[str] | None) -> Line | None:
    """`line` read as `_parse_any` reads it, if it is of the common form above; None if not."""
    match = _COMMON_LINE(line)
    if match is None:
        return None
    head, body, time = match.groups()
    measurement, *pairs = head.replace("\\ ", " ").split(",") if "\\" in head else head.split(",")
    tags = dict(pair.split("=", 1) for pair in pairs)
    values: dict[str, float | int | str] = {}
    for pair in body.split(","):
        key, _, text = pair.partition("=")
        if fields is None or key in fields:
            if text[0] == '"':
                values[key] = text[1:-1]
            elif text[-1] == "i":
                values[key] = int(text[:-1])
            else:
                values[key] = float(text)
    return Line(measurement, tags, values, int(time))


def _parse_any(line: str) -> Line:
    try:
        end = _name_end(line, 0, ", ")
        measurement = _unescape_name(line[:end], ", =")
        tags: dict[str, str] = {}
        i = end
        while line[i] == ",":
            key_end = _name_end(line, i + 1, "=")
            value_end = _name_end(line, key_end + 1, ", =")
            if line[value_end] == "=":
                raise ValueError("invalid tag format")
            tags[_unescape_name(line[i + 1:key_end], ",= ")] = _unescape_name(line[key_end + 1:value_end], ",= ")
            i = value_end
        fields: dict[str, float | int | str] = {}
        while line[i] in " ,":
            key_end = _name_end(line, i + 1, "=")
            key = _unescape_name(line[i + 1:key_end], ",= ")
            if line[key_end + 1] == '"':
                close = _string_end(line, key_end + 1)
                fields[key] = _unescape_string(line[key_end + 2:close])
                i = close + 1
            else:
                value_end = _name_end(line, key_end + 1, ", ")
                fields[key] = _number(line[key_end + 1:value_end])
                i = value_end
            if line[i] == " ":
                break
        if not fields or line[i] != " ":
            raise ValueError("missing fields or timestamp")
        if not _TIMESTAMP(line[i + 1:]):
            raise ValueError("the timestamp is not 1 to 19 ASCII digits")
        return Line(measurement, tags, fields, int(line[i + 1:]))
    except (ValueError, IndexError) as e:
        raise LineProtocolError(f"not hashfleet line protocol: {line[:120]!r} ({e})") from None
