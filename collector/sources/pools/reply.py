"""Reading a pool's decoded JSON: each value checked for its type, finiteness and range, or a
PoolReplyError that names where in the reply it was (`workers["x.y"].hash_rate_5m`).

Pools send numbers as JSON numbers or as decimal strings, inconsistently (docs/pools.md): both are
accepted, a boolean or an object never is. Nothing here guesses: a missing or renamed key is an
error (the pool changed its schema), never a zero.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

from collector.sources.pools.client import PoolReplyError
from models.base import parse_decimal

DAY_S = 86_400
MAX_CLOCK_SKEW = timedelta(minutes=10)  # a pool's timestamp further ahead than this is refused
_TEXT_MAX = 256


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PoolReplyError(f"{where}: expected an object, got {_kind(value)}")
    return value


def arr(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise PoolReplyError(f"{where}: expected an array, got {_kind(value)}")
    return value


def key(d: dict[str, Any], name: str, where: str) -> Any:
    """d[name]; missing is a changed schema."""
    if name not in d:
        shown = ", ".join(sorted(str(k)[:40] for k in d)[:12])
        raise PoolReplyError(f"{where}: no {name!r} (the reply has {shown or 'nothing'}): has the pool changed its API?")
    return d[name]


def num(value: Any, where: str, *, scale: float = 1.0, signed: bool = False) -> float:
    """A finite number (JSON number or decimal string), times `scale`; negative only when `signed`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PoolReplyError(f"{where}: expected a number, got {_kind(value)}")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            raise PoolReplyError(f"{where}: expected a number, got {value[:40]!r}")
        try:
            number = parse_decimal(text)  # not "1_000", "nan" or "inf"
        except ValueError:
            raise PoolReplyError(f"{where}: expected a number, got {value[:40]!r}") from None
    else:
        number = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    number *= scale
    if not math.isfinite(number):
        raise PoolReplyError(f"{where}: {str(value)[:40]} is not a finite number")
    if number < 0 and not signed:
        raise PoolReplyError(f"{where}: {str(value)[:40]} is negative")
    return number


def opt_num(d: dict[str, Any], name: str, where: str, *, scale: float = 1.0) -> float | None:
    """d[name] as num, None when the key is absent or null (an optional field)."""
    value = d.get(name)
    return None if value is None else num(value, f"{where}.{name}", scale=scale)


def text(value: Any, where: str, *, max_chars: int = _TEXT_MAX) -> str:
    if not isinstance(value, str):
        raise PoolReplyError(f"{where}: expected text, got {_kind(value)}")
    if len(value) > max_chars:
        raise PoolReplyError(f"{where}: text of {len(value)} characters, over {max_chars}")
    return value


def unix_time(value: Any, where: str, now: datetime) -> datetime | None:
    """Unix seconds (number or digits) as UTC; 0 is "never" (None); the future is refused."""
    seconds = num(value, where)
    if seconds == 0:
        return None
    if seconds > 1e11:
        raise PoolReplyError(f"{where}: {str(value)[:40]} is not a time in unix seconds")
    return _not_future(datetime.fromtimestamp(seconds, UTC), where, now)


def iso_time(value: Any, where: str, now: datetime) -> datetime:
    """An ISO 8601 time; without a zone it is UTC (OCEAN's `ts`); the future is refused."""
    raw = text(value, where, max_chars=40)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise PoolReplyError(f"{where}: {raw!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _not_future(parsed.astimezone(UTC), where, now)


def utc_day(value: Any, where: str, now: datetime) -> date:
    """A UTC day given as the unix time of its first second (Braiins `date`, F2Pool `mining_date`)."""
    seconds = num(value, where)
    if seconds % DAY_S:
        raise PoolReplyError(f"{where}: {str(value)[:40]} is not the first second of a UTC day")
    when = unix_time(seconds, where, now)
    if when is None:
        raise PoolReplyError(f"{where}: 0 is not a day")
    return when.date()


def _not_future(when: datetime, where: str, now: datetime) -> datetime:
    if when > now + MAX_CLOCK_SKEW:
        raise PoolReplyError(f"{where}: {when.isoformat()} is in the future (now {now.isoformat()})")
    return when


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"text {value[:40]!r}"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    return {dict: "an object", list: "an array"}.get(type(value), type(value).__name__)


# Hashrate units as pools name them (Braiins `hash_rate_unit`; ckpool's SI suffixes), as TH/s per unit.
_PREFIX_THS = {"": 1e-12, "k": 1e-9, "m": 1e-6, "g": 1e-3, "t": 1.0, "p": 1e3, "e": 1e6, "z": 1e9}


def unit_ths(unit: Any, where: str) -> float:
    """TH/s per one of `unit`: "Gh/s", "TH/s", "h/s" (case-insensitive); anything else is an error."""
    name = text(unit, where, max_chars=16).strip().lower()
    if not name.endswith("h/s") or name[:-3] not in _PREFIX_THS:
        raise PoolReplyError(f"{where}: unknown hashrate unit {unit!r}")
    return _PREFIX_THS[name[:-3]]


def si_hashrate_ths(value: Any, where: str) -> float:
    """ckpool's hashrate text, three significant digits and an SI suffix ("6.12G", "71.9T", "0"), in TH/s."""
    raw = text(value, where, max_chars=24).strip()
    suffix = raw[-1:].lower() if raw[-1:].isalpha() else ""
    if suffix and suffix not in _PREFIX_THS:
        raise PoolReplyError(f"{where}: unknown hashrate suffix in {raw!r}")
    return num(raw[:-1] if suffix else raw, where, scale=_PREFIX_THS[suffix])
