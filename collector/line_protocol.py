"""Read back the line protocol hashfleet writes (for `hashfleet report` on the local history).

Read the way InfluxDB 1.x reads it (its `models/points.go`), so the local history shows what InfluxDB
would store: in the measurement, tag keys and values and field keys a separator (`,` `=` space)
preceded by a backslash belongs to the text, and only `\\,` `\\=` `\\ ` lose their backslash; any other
backslash is literal. In a string field value `\\"` and `\\\\` are escapes. Only the subset hashfleet
emits is supported: float, integer (`i`), boolean and string fields; an integer timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def parse_line(line: str) -> Line:
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
        return Line(measurement, tags, fields, int(line[i + 1:]))
    except (ValueError, IndexError) as e:
        raise LineProtocolError(f"not hashfleet line protocol: {line[:120]!r} ({e})") from None
