"""An Avalon device string (`Key[value] Key[v1 v2] ...`) and its values read as numbers, hostile until checked.

Shared by the single-unit reader (collector/sources/avalon.py) and the controller-chain reader
(avalon_chain.py). A value that is not a finite number, is below what the field allows or overflows
a cap is refused: the reading is None and `Device.refused` maps the sample field it would have filled
to the reason (the reader leaves that field empty, names it in `unusable` and `errors`).
"""

from __future__ import annotations

import re
from typing import Any

from collector.sources import cgminer_client as cgminer
from models.base import printable
from models.sample import MAX_BOARDS, SENSOR_MAX_C, SENSOR_MIN_C

_DEVICE_KEY = re.compile(r"(\w+)\[([^\]]*)\]")
NO_READING_C = -273.0  # the firmware's "sensor absent" temperature
# A real device string is 2-20 KB (three boards' per-chip lists are most of it); the cap stops a
# hostile one (a million-entry list) before it is split into keys.
MAX_DEVICE_STRING_CHARS = 512 * 1024
MAX_CODE = 0xFFFF_FFFF  # error codes are 32-bit fields; past that a value is garbage, not bits to decode


def parse_device_string(text: str) -> dict[str, str]:
    """`Key[value] Key[v1 v2] ...` -> {"Key": "value", ...} (values kept as text)."""
    return dict(_DEVICE_KEY.findall(text))


def capped(text: str, key: str, where: str) -> str:
    """`text` itself; a MinerReplyError when it is longer than MAX_DEVICE_STRING_CHARS."""
    if len(text) > MAX_DEVICE_STRING_CHARS:
        raise cgminer.MinerReplyError(
            f"{where}: device string '{key}' is {len(text)} characters, more than the cap of "
            f"{MAX_DEVICE_STRING_CHARS} (MAX_DEVICE_STRING_CHARS; real units send 2-20 KB): not read")
    return text


class Device:
    """A device string's keys read as numbers. A value that cannot be used is refused: the reading
    is None and `refused` maps the sample field it would have filled to the reason."""

    __slots__ = ("keys", "refused")

    def __init__(self, keys: dict[str, str], refused: dict[str, str] | None = None):
        self.keys = keys
        self.refused: dict[str, str] = {} if refused is None else refused  # a chain's modules share one

    def refuse(self, field: str, key: str, text: str, why: str) -> None:
        shown = printable(text) if len(text) <= 40 else f"{printable(text[:40])}..."  # quoted in an error: no escapes
        self.refused.setdefault(field, f"reply value out of range: {key}[{shown}] {why}; {field} left empty")

    def num(self, key: str, field: str, low: float | None = 0.0) -> float | None:
        """The key's number (the first, for a list); None when absent, empty or NaN (the firmware's
        "no reading"); refused when infinite or below `low`."""
        text = self.keys.get(key)
        if not text:
            return None
        try:  # most keys hold one plain number: skip the split (parse runs ~20 of these per miner)
            value = float(text)
        except ValueError:
            value = first_number(text)
            if value is None:
                self.refuse(field, key, text, "is not a number")
                return None
        if value - value == 0.0:  # finite (inf - inf and NaN are NaN)
            if low is None or value >= low:
                return value
            self.refuse(field, key, text, f"must be greater than or equal to {low:g}")
        elif value == value:
            self.refuse(field, key, text, "is not a finite number")
        return None

    def nums(self, key: str, field: str, low: float | None = 0.0, cap: int = MAX_BOARDS) -> list[float | None] | None:
        """The key's numbers in their positions (None for one that is not a usable number); None, and
        the field refused, when there are more than `cap`."""
        text = self.keys.get(key)
        if not text:
            return []
        tokens = text.split(None, cap)  # stops splitting past the cap: a hostile list costs no more
        if len(tokens) > cap:
            self.refuse(field, key, text, f"has more than {cap} values (the cap for {field})")
            return None
        try:  # the common case: all plain numbers, all finite (a sum of finite numbers is finite)
            values: list[float | None] = [float(token) for token in tokens]
            total = sum(values)  # type: ignore[arg-type]
            if total - total == 0.0 and (low is None or not values or min(values) >= low):  # type: ignore[type-var]
                return values
        except ValueError:
            pass
        values = []
        for token in tokens:
            value = to_float(token.rstrip("%"))
            if value is None or value != value:  # not a number, or NaN: no reading
                values.append(None)
            elif value - value != 0.0:
                self.refuse(field, key, text, "is not a finite number")
                values.append(None)
            elif low is not None and value < low:
                self.refuse(field, key, text, f"must be greater than or equal to {low:g}")
                values.append(None)
            else:
                values.append(value)
        return values

    def temp(self, key: str, field: str) -> float | None:
        return self.valid_temp(self.num(key, field, low=None), key, field)

    def chip_temp(self, key: str, field: str) -> float | None:
        """A chip temperature: 0 is no reading (an idle or soft-off unit prints TMax[0], TAvg[0])."""
        return self.valid_temp(self.num(key, field, low=None) or None, key, field)

    def valid_temp(self, value: float | None, key: str, field: str) -> float | None:
        if value is None or value <= NO_READING_C:
            return None
        if not SENSOR_MIN_C <= value <= SENSOR_MAX_C:
            self.refuse(field, key, f"{value:g}", f"is outside {SENSOR_MIN_C:g}..{SENSOR_MAX_C:g} C, no temperature a "
                                                  "running miner's sensor reads")
            return None
        return value

    def codes(self, key: str, field: str) -> list[int]:
        """A list of error codes in their positions (a 32-bit field each; 0 where none or unusable)."""
        codes = []
        for value in self.nums(key, field) or ():
            if value is not None and value > MAX_CODE:
                self.refuse(field, key, self.keys[key], f"is more than {MAX_CODE} (a 32-bit code)")
                value = None
            codes.append(int(value) if value else 0)
        return codes


def to_float(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def first_number(text: str) -> float | None:
    """The first number in a value such as "0.512%" or "49% 50%"; NaN when that is what it is."""
    for token in text.replace("%", " ").split(None, 8):
        value = to_float(token)
        if value is not None:
            return value
    return None


def json_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (strings, objects, inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number if number - number == 0.0 else None
    return None
