"""Values out of a miner's JSON reply, checked before they enter a sample.

The native readers of CGMiner-style JSON (Antminer, Whatsminer, Braiins OS) read each number through a
`Checked`: a value that is not a finite number, is negative where a count or a rate cannot be, or is
over its cap is refused field by field, as the Avalon reader refuses device-string values. The field
is left empty and named with the reason (`refused`) and the reading keeps the rest; the state is what
the unit does (a refused hashrate leaves that unknown: error). Absent values (a missing key, JSON null, an empty string: firmware's "no reading") are None and
refuse nothing. Error codes (`code`), board numbers (`board_number`) and the board a firmware's message names
(`board_named`) are read here too: anything but a small whole number (a JSON integer or ASCII digits),
or a board no unit has, is no value. Text (`text`) has
its control characters replaced; a MAC (`mac`) that cannot be a unit's own address is none.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from models import PoolInfo
from models.base import printable
from models.sample import MAX_BOARDS, MAX_TEXT_CHARS, SENSOR_MAX_C, SENSOR_MIN_C

MAX_POOLS = 64  # pool entries looked at for the active one
MAX_CODE = 10**9  # an error code is a small number; anything larger is garbage
_MAC_HEX = re.compile(r"[0-9A-F]{12}")
_NO_READING_C = -273.0  # firmware's "sensor absent"


class Checked:
    """The refusals of one reply. `where` names the miner in nothing here: reasons name the key."""

    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused: dict[str, str] = {}  # sample field -> why its value was refused

    def refuse(self, field: str, what: str, value: Any, why: str) -> None:
        self.refused.setdefault(field, f"reply value out of range: {what} {_shown(value)} {why}; {field} left empty")

    def number(self, value: Any, field: str, what: str, low: float | None = 0.0) -> float | None:
        """A JSON number, or a number written as text ("103.89": firmware does both), as a finite float."""
        if value is None or value == "":
            return None
        if type(value) is float or type(value) is int:  # the common case first: no conversion, no isinstance
            number = float(value)
        elif isinstance(value, str) and len(value) <= 64:
            try:
                number = float(value)
            except ValueError:
                self.refuse(field, what, value, "is not a number")
                return None
        else:  # bool, list, object, or text too long to be a number
            self.refuse(field, what, value, "is not a number")
            return None
        if number - number != 0.0:  # inf or NaN
            self.refuse(field, what, value, "is not a finite number")
            return None
        if low is not None and number < low:
            self.refuse(field, what, value, f"must be greater than or equal to {low:g}")
            return None
        return number

    def count(self, value: Any, field: str, what: str, high: float) -> int | None:
        number = self.number(value, field, what)
        if number is None:
            return None
        if number > high:
            self.refuse(field, what, value, f"is more than {high:g}")
            return None
        return int(number)

    def percent(self, value: Any, field: str, what: str) -> float | None:
        """A share in per cent, 0..100 (CGMiner's `Device Hardware%`: api.c prints the ratio x 100)."""
        number = self.number(value, field, what)
        if number is not None and number > 100.0:
            self.refuse(field, what, value, "is more than 100 %")
            return None
        return number

    def temp(self, value: Any, field: str, what: str) -> float | None:
        """A temperature in C; the firmware's "no sensor" (-273 and below) is None, one no running miner's
        sensor reads (outside SENSOR_MIN_C..SENSOR_MAX_C) refused."""
        number = self.number(value, field, what, low=None)
        if number is None or number <= _NO_READING_C:
            return None
        if not SENSOR_MIN_C <= number <= SENSOR_MAX_C:
            self.refuse(field, what, value, f"is outside {SENSOR_MIN_C:g}..{SENSOR_MAX_C:g} C, no temperature a "
                                            "running miner's sensor reads")
            return None
        return number

    def pool(self, pools: Any) -> PoolInfo | None:
        """The active pool of a CGMiner `POOLS` list (else the first alive, else the first)."""
        if not isinstance(pools, list) or not pools:
            return None
        pools = pools[:MAX_POOLS]
        active = next((p for p in pools if isinstance(p, dict) and p.get("Stratum Active") is True), None) or next(
            (p for p in pools if isinstance(p, dict) and p.get("Status") == "Alive"), pools[0])
        if not isinstance(active, dict):
            return None
        try:
            return PoolInfo(url=text(active.get("URL")), user=text(active.get("User")),
                            accepted=active.get("Accepted"), rejected=active.get("Rejected"),
                            stale=active.get("Stale"), active=active.get("Stratum Active") is True)
        except ValidationError as e:  # a count that is not a whole number >= 0
            bad = e.errors()[0]
            self.refuse("pool", f"pools {bad['loc'][0]}", bad.get("input"), f"is not a count ({bad['msg']})")
            return None


def text(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A text value of the reply, cut to `limit`, each control character a space (a model, firmware or message
    goes to the terminal, JSON and Home Assistant: an escape sequence there would act); anything but a
    non-empty string is no value."""
    if not isinstance(value, str) or not value:
        return None
    return printable(value if len(value) <= limit else value[:limit])


def mac(raw: Any) -> str | None:
    """`AA:BB:CC:DD:EE:FF` from a MAC in any of the forms firmware writes it; None for anything else, and for
    a group address (the multicast bit, the first octet's lowest, set: 23:90:5C:..., FF:FF:...), which no
    network card has as its own: taken as a miner's id, a firmware that makes one up each read would start a
    new miner, and a new series, every time."""
    if not isinstance(raw, str) or len(raw) > 20:
        return None
    bare = raw.replace(":", "").replace("-", "").upper()
    if _MAC_HEX.fullmatch(bare) is None or int(bare[1], 16) & 1:
        return None
    return ":".join(bare[i:i + 2] for i in range(0, 12, 2))


def whole(value: Any, max_digits: int) -> int | None:
    """A JSON integer, or one written in at most `max_digits` ASCII digits ("12": firmware writes both);
    None for anything else. (`str.isdigit` alone takes "²", which int() refuses, and "٣", which it reads as 3.)"""
    if type(value) is int:
        return value
    if isinstance(value, str) and len(value) <= max_digits and value.isascii() and value.isdigit():
        return int(value)
    return None


def code(value: Any) -> int | None:
    """An error code: a JSON integer or one written in digits, 1 to MAX_CODE; None for anything else
    (a timestamp, a float, garbage)."""
    number = whole(value, 9)
    return number if number is not None and 0 < number < MAX_CODE else None


def board_number(value: Any) -> int | None:
    """A board's number as firmware gives it (a Whatsminer's slot, a Braiins OS chain's ID): a JSON integer
    or one written in digits, when a unit can have that board; None for anything else."""
    number = whole(value, 3)
    return number if number is not None and 0 <= number < MAX_BOARDS else None


def board_named(message: str | None, word: str) -> int | None:
    """The board a firmware's message names by `word` and its number ("Error code 4096 on chain 0",
    "Slot 1 not found."), when that number can be a board index; else None."""
    if not message:
        return None
    found = re.search(rf"\b{word} (\d{{1,3}})\b", message, re.IGNORECASE | re.ASCII)  # not "chain ٣"
    return int(found.group(1)) if found and int(found.group(1)) < MAX_BOARDS else None


def first(items: Any) -> dict[str, Any]:
    """The first entry of a JSON list of objects, or {}."""
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _shown(value: Any) -> str:
    shown = repr(value) if not isinstance(value, str) else printable(value[:41])  # quoted in an error: no escapes
    return shown if len(shown) <= 40 else f"{shown[:40]}..."
