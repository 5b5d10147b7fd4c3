"""Read back the line protocol hashfleet writes (for `hashfleet report` on the local history).

Only the subset hashfleet emits is supported: escaped measurement, tag keys and
values; float, integer (`i`) and string fields; an integer timestamp.
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


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside backslash escapes and double-quoted strings; escapes are kept."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _value(raw: str) -> float | int | str:
    if raw.startswith('"'):
        return _unescape(raw[1:-1])
    if raw.endswith("i"):
        return int(raw[:-1])
    if raw in ("t", "T", "true", "True"):
        return 1
    if raw in ("f", "F", "false", "False"):
        return 0
    return float(raw)


def parse_line(line: str) -> Line:
    try:
        head, fields_text, time_text = _split(line, " ")
        key, *tag_parts = _split(head, ",")
        tags = {}
        for part in tag_parts:
            k, v = _split(part, "=")
            tags[_unescape(k)] = _unescape(v)
        fields = {}
        for part in _split(fields_text, ","):
            k, v = _split(part, "=")
            fields[_unescape(k)] = _value(v)
        return Line(_unescape(key), tags, fields, int(time_text))
    except (ValueError, IndexError) as e:
        raise LineProtocolError(f"not hashfleet line protocol: {line[:120]!r} ({e})") from None
