"""Fault switches a test (or an operator drill) turns on per simulated miner.

`Faults` is immutable: a miner swaps the whole value under its lock, so a test thread can
change faults while the server thread answers, and a reply never sees half a change.

Hardware faults change the physics (what the miner reports); network and wire faults change
how the answer travels. Reboot is an action, not a state: `SimulatedMiner.reboot()`.

Faults that evolve over days (`chips_dying`, `fan_failing`, `psu_drift`) run on fault time:
`days_per_hour` simulated days per hour of the miner's clock (1/24: real time; 3600: a day per
second, for tests on a ManualClock). Clearing one of them is a repair: the chips, the fan or the
PSU's calibration come back. Every switch has a text form for the command line and schedule
files (`parse_value`): `chips_dying=1:40` is board 1 losing 40 chips a day.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

Overheat = Literal["throttle", "shutdown"]

# Error codes the simulator puts on the wire. Canaan does not publish the bit meanings; these
# are fixed here so tests and collectors can assert on them.
ECHU_BOARD_LOST = 0x0004  # ECHU[b]: hash board b stopped answering
ECMM_OVERHEAT = 0x0040  # ECMM: controller cut power after an over-temperature

_DEVICE_KEY_NAME = re.compile(r"\w+")
_NOT_IN_DEVICE_VALUE = ('"', "\\", "]")
CONTROLLER = -1  # `error_code` board index meaning the control board (Avalon ECMM), not a hash board
REAL_TIME_DAYS_PER_HOUR = 1.0 / 24.0
MAX_CHIPS_PER_DAY = 1e6
MAX_PCT_PER_DAY = 1e6
MAX_DRIFT_PCT_PER_DAY = 1e4
MAX_DAYS_PER_HOUR = 1e7  # a day in ~0.4 ms of clock: beyond it float time steps stop meaning anything


class FaultValueError(ValueError):
    """A fault switch given a value it cannot take; the message names the switch and the form."""


@dataclass(frozen=True, slots=True)
class Faults:
    # Hardware: these change the telemetry.
    dead_boards: frozenset[int] = field(default_factory=frozenset)
    overheat: Overheat | None = None  # "throttle": hashing slower; "shutdown": not hashing
    soft_off: bool = False  # also set/cleared by `ascset|0,softoff|softon,...`
    ignores_soft_off: bool = False  # the firmware accepts a soft-off (or sleep, pause) command and keeps mining
    ambient_c: float | None = None  # override the site ambient (heat wave)
    chips_dying: tuple[tuple[int, float], ...] = ()  # (board, chips lost per fault day), per board
    fan_failing: tuple[int, float] | None = None  # (fan, % of its rpm lost per fault day)
    psu_drift: float = 0.0  # reported watts walk away from the true draw by this % per fault day
    error_code: tuple[int, int] | None = None  # (board or CONTROLLER, code the firmware shows)
    pool_rejects: tuple[float, float] | None = None  # (% of shares rejected, % stale) from now on
    reboot_loop: float | None = None  # the miner reboots every this many seconds
    hw_errors: float | None = None  # hardware error % (Avalon DH) instead of the unit's own
    weak_board: tuple[int, float] | None = None  # (board, share of its hashrate it still makes)
    days_per_hour: float = REAL_TIME_DAYS_PER_HOUR  # fault days per clock hour (time compression)
    # Network: these change whether and when an answer arrives.
    no_answer: bool = False  # listener closed: connections are refused
    hold_open: bool = False  # accept and read the request, never answer, never close
    drop: bool = False  # read the request, close with no data
    slow_s: float = 0.0  # answer after this many seconds
    # Wire: these damage the answer itself.
    malformed: bool = False  # JSON that no parser accepts
    truncated: bool = False  # cut mid-reply, no NUL terminator
    bare_nan: bool = False  # a bare `nan` token (devs Temperature, summary Device Hardware%)
    # Firmware that reports garbage: device-string keys served with these raw values instead of the
    # physics' (added when the key is absent), e.g. {"GHSspd": "inf", "MGHS": "1 " * 1_000_000}.
    device_keys: tuple[tuple[str, str], ...] | dict[str, str] = ()

    def __post_init__(self) -> None:
        dead = frozenset(int(b) for b in self.dead_boards)
        if any(b < 0 for b in dead):
            raise FaultValueError(f"dead_boards must be board indexes >= 0, got {sorted(dead)}")
        object.__setattr__(self, "dead_boards", dead)
        if self.overheat not in (None, "throttle", "shutdown"):
            raise FaultValueError(f"overheat must be None, 'throttle' or 'shutdown', got {self.overheat!r}")
        _number("slow_s", self.slow_s, 0.0, 3600.0)
        if self.ambient_c is not None:
            _number("ambient_c", self.ambient_c, -40.0, 70.0)
        rates: dict[int, float] = {}
        pairs = self.chips_dying.items() if isinstance(self.chips_dying, dict) else self.chips_dying
        for board, rate in (tuple(p) for p in pairs):
            rates[_index("chips_dying", board)] = _number("chips_dying", rate, 0.0, MAX_CHIPS_PER_DAY)
        object.__setattr__(self, "chips_dying", tuple(sorted((b, r) for b, r in rates.items() if r > 0)))
        if self.fan_failing is not None:
            fan, pct = self.fan_failing
            object.__setattr__(self, "fan_failing", (_index("fan_failing", fan),
                                                     _number("fan_failing", pct, 0.0, MAX_PCT_PER_DAY, low_open=True)))
        _number("psu_drift", self.psu_drift, -MAX_DRIFT_PCT_PER_DAY, MAX_DRIFT_PCT_PER_DAY)
        if self.error_code is not None:
            board, code = self.error_code
            if isinstance(board, bool) or not isinstance(board, int) or not CONTROLLER <= board < 1000:
                raise FaultValueError(f"error_code board must be a board index >= 0 (or {CONTROLLER} for the "
                                      f"controller), got {board!r}")
            if isinstance(code, bool) or not isinstance(code, int) or not 0 < code < 2**31:
                raise FaultValueError(f"error_code must be a whole number 1..2^31-1, got {code!r}")
            object.__setattr__(self, "error_code", (board, code))
        if self.pool_rejects is not None:
            rej, stale = (_number("pool_rejects", v, 0.0, 90.0) for v in self.pool_rejects)
            if rej + stale > 90.0:
                raise FaultValueError(f"pool_rejects: rejected + stale must stay <= 90 %, got {rej} + {stale}")
            object.__setattr__(self, "pool_rejects", (rej, stale))
        if self.reboot_loop is not None:
            _number("reboot_loop", self.reboot_loop, 1.0, 30 * 86400.0)
        if self.hw_errors is not None:
            _number("hw_errors", self.hw_errors, 0.0, 100.0)
        if self.weak_board is not None:
            board, share = self.weak_board
            object.__setattr__(self, "weak_board", (_index("weak_board", board),
                                                    _number("weak_board", share, 0.0, 1.0)))
        _number("days_per_hour", self.days_per_hour, 0.0, MAX_DAYS_PER_HOUR, low_open=True)
        keys = tuple(sorted(dict(self.device_keys).items()))
        for key, value in keys:
            if not _DEVICE_KEY_NAME.fullmatch(key) or any(c in value for c in _NOT_IN_DEVICE_VALUE):
                raise FaultValueError(f"device_keys: {key!r}={value[:40]!r}: a key is letters, digits and '_'; "
                                      f"a value has no ']', '\"' or '\\' (it sits inside the JSON string)")
        object.__setattr__(self, "device_keys", keys)

    def with_changes(self, **changes: Any) -> Faults:
        """A copy with some switches changed; unknown names raise TypeError naming the valid ones."""
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise TypeError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULT_NAMES)}")
        return replace(self, **changes)

    def check(self, boards: int, fans: int, model: str = "this model") -> None:
        """Board and fan indexes exist on a unit with `boards` hash boards and `fans` fans."""
        used = [("dead_boards", b) for b in sorted(self.dead_boards)]
        used += [("chips_dying", b) for b, _ in self.chips_dying]
        if self.weak_board is not None:
            used.append(("weak_board", self.weak_board[0]))
        if self.error_code is not None and self.error_code[0] != CONTROLLER:
            used.append(("error_code", self.error_code[0]))
        for name, b in used:
            if b >= boards:
                raise FaultValueError(f"{model} has {boards} hash board(s), indexes 0-{boards - 1}; "
                                      f"got {name} on board {b}")
        if self.fan_failing is not None and self.fan_failing[0] >= fans:
            raise FaultValueError(f"{model} has {fans} fan(s), indexes 0-{fans - 1}; "
                                  f"got fan_failing on fan {self.fan_failing[0]}")

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the switches that differ from a healthy miner, for logs and reprs."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != getattr(HEALTHY, f.name))

    def as_json(self) -> dict[str, Any]:
        """The switches that differ from a healthy miner, in their text form (`chips_dying: "1:40"`)."""
        return {name: format_value(name, getattr(self, name)) for name in self.active}

    @property
    def evolving(self) -> bool:
        """A switch that changes the miner as fault time passes is on."""
        return bool(self.chips_dying) or self.fan_failing is not None or self.psu_drift != 0.0


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultValueError(f"{name} needs a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        raise FaultValueError(f"{name} must be {bound} and <= {high:g}, got {value!r}")
    return v


def _index(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1000:
        raise FaultValueError(f"{name}: index must be a whole number 0-999, got {value!r}")
    return value


FAULT_NAMES: frozenset[str] = frozenset(f.name for f in fields(Faults))
HEALTHY = Faults()

# -- text forms (command line, schedule files, the control endpoint) ---------------------------------

_BOOL_WORDS = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False, "no": False}
_CLEAR_WORDS = frozenset({"off", "none", "clear", "healthy"})
FORMS: dict[str, str] = {
    "dead_boards": "BOARD[,BOARD...]",
    "overheat": "throttle|shutdown",
    "ambient_c": "CELSIUS",
    "chips_dying": "[BOARD:]CHIPS_PER_DAY[,BOARD:CHIPS_PER_DAY...]",
    "fan_failing": "FAN[:PCT_PER_DAY] (default 100: stopped after a fault day)",
    "psu_drift": "PCT_PER_DAY (negative: the miner under-reports)",
    "error_code": "[BOARD:]CODE (no board: the controller; 0x.. for hex)",
    "pool_rejects": "REJECT_PCT[:STALE_PCT]",
    "reboot_loop": "SECONDS",
    "hw_errors": "PCT",
    "weak_board": "BOARD:SHARE (0-1 of its hashrate kept)",
    "days_per_hour": "FAULT_DAYS_PER_CLOCK_HOUR (1/24 = real time)",
    "slow_s": "SECONDS",
    "device_keys": "KEY=VALUE[;KEY=VALUE...] (device-string keys served with these raw values)",
}
_BOOLS = frozenset(f.name for f in fields(Faults) if isinstance(f.default, bool))


def form(name: str) -> str:
    return "true|false" if name in _BOOLS else FORMS.get(name, "VALUE")


def _text_number(name: str, text: str) -> float:
    t = text.strip()
    try:
        if "/" in t:  # days_per_hour=1/24
            num, _, den = t.partition("/")
            return float(num) / float(den)
        return float(t)
    except (ValueError, ZeroDivisionError):
        raise FaultValueError(f"{name}: {text!r} is not a number; write {name}={form(name)}") from None


def _text_int(name: str, text: str) -> int:
    t = text.strip().lower()
    try:
        return int(t, 16) if t.startswith("0x") else int(t)
    except ValueError:
        raise FaultValueError(f"{name}: {text!r} is not a whole number; write {name}={form(name)}") from None


def parse_value(name: str, raw: Any) -> Any:
    """The value of switch `name` from its text form (or a YAML/JSON scalar); None = no value given.

    `off`/`none`/`clear` (or None for a switch that needs a value) give the healthy value; a bare
    boolean switch means on. FaultValueError names the switch and its form.
    """
    if name not in FAULT_NAMES:
        raise FaultValueError(f"unknown fault {name!r}; known: {', '.join(sorted(FAULT_NAMES))}")
    healthy = getattr(HEALTHY, name)
    if name in _BOOLS:
        if raw is None or isinstance(raw, bool):
            return True if raw is None else raw
        word = str(raw).strip().lower()
        if word not in _BOOL_WORDS:
            raise FaultValueError(f"{name}: {raw!r} is not true/false")
        return _BOOL_WORDS[word]
    if raw is None:
        raise FaultValueError(f"{name} needs a value: write {name}={form(name)} (or {name}=off)")
    if not isinstance(raw, (str, int, float)):  # a list or mapping from YAML: never str() it (alias bombs)
        raise FaultValueError(f"{name}: give its value as text or a number ({form(name)}), "
                              f"not a {type(raw).__name__}")
    if isinstance(raw, str) and raw.strip().lower() in _CLEAR_WORDS:
        return healthy
    if isinstance(raw, bool):
        raise FaultValueError(f"{name}: {raw!r} is not a value for it; write {name}={form(name)}")
    if isinstance(raw, (int, float)) and name in ("ambient_c", "psu_drift", "reboot_loop", "hw_errors",
                                                    "days_per_hour", "slow_s"):
        return float(raw)
    text = str(raw).strip()
    if len(text) > 200:
        raise FaultValueError(f"{name}: value longer than 200 characters")
    if name == "dead_boards":
        return frozenset(_text_int(name, p) for p in text.split(",") if p.strip())
    if name == "overheat":
        if text not in ("throttle", "shutdown"):
            raise FaultValueError(f"overheat: {text!r}; write overheat=throttle or overheat=shutdown")
        return text
    if name == "chips_dying":
        pairs = []
        for part in text.split(","):
            board, sep, rate = part.rpartition(":")
            pairs.append((_text_int(name, board) if sep else 0, _text_number(name, rate)))
        return tuple(pairs)
    if name == "fan_failing":
        fan, sep, pct = text.partition(":")
        return (_text_int(name, fan), _text_number(name, pct) if sep else 100.0)
    if name == "error_code":
        board, sep, code = text.rpartition(":")
        return (_text_int(name, board) if sep else CONTROLLER, _text_int(name, code))
    if name == "pool_rejects":
        rej, sep, stale = text.partition(":")
        return (_text_number(name, rej), _text_number(name, stale) if sep else 0.0)
    if name == "device_keys":  # the characters a value may hold are checked by Faults itself
        pairs: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise FaultValueError(f"device_keys: {part!r}; write device_keys={form(name)}, "
                                      f"e.g. device_keys=GHSspd=inf")
            pairs[key.strip()] = value
        return tuple(pairs.items())
    if name == "weak_board":
        board, sep, share = text.partition(":")
        if not sep:
            raise FaultValueError(f"weak_board: {text!r}; write weak_board={form(name)}, e.g. weak_board=1:0.6")
        return (_text_int(name, board), _text_number(name, share))
    return _text_number(name, text)


def format_value(name: str, value: Any) -> Any:
    """The text form `parse_value` reads back (numbers and booleans stay JSON scalars)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if name == "dead_boards":
        return ",".join(str(b) for b in sorted(value))
    if name == "chips_dying":
        return ",".join(f"{b}:{r:g}" for b, r in value)
    if name == "error_code":
        board, code = value
        return str(code) if board == CONTROLLER else f"{board}:{code}"
    if name == "device_keys":
        return ";".join(f"{key}={text}" for key, text in value)
    return ":".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
