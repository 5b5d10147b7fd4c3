"""Fault switches a test (or an operator drill) turns on per simulated miner.

`Faults` is immutable: a miner swaps the whole value under its lock, so a test thread can
change faults while the server thread answers, and a reply never sees half a change.

Hardware faults change the physics (what the miner reports); network and wire faults change
how the answer travels. Reboot is an action, not a state: `SimulatedMiner.reboot()`.
"""

from __future__ import annotations

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


@dataclass(frozen=True, slots=True)
class Faults:
    # Hardware: these change the telemetry.
    dead_boards: frozenset[int] = field(default_factory=frozenset)
    overheat: Overheat | None = None  # "throttle": hashing slower; "shutdown": not hashing
    soft_off: bool = False  # also set/cleared by `ascset|0,softoff|softon,...`
    ambient_c: float | None = None  # override the site ambient (heat wave)
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
            raise ValueError(f"dead_boards must be board indexes >= 0, got {sorted(dead)}")
        object.__setattr__(self, "dead_boards", dead)
        if self.overheat not in (None, "throttle", "shutdown"):
            raise ValueError(f"overheat must be None, 'throttle' or 'shutdown', got {self.overheat!r}")
        if self.slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {self.slow_s}")
        keys = tuple(sorted(dict(self.device_keys).items()))
        for key, value in keys:
            if not _DEVICE_KEY_NAME.fullmatch(key) or any(c in value for c in _NOT_IN_DEVICE_VALUE):
                raise ValueError(f"device_keys: {key!r}={value[:40]!r}: a key is letters, digits and '_'; "
                                 f"a value has no ']', '\"' or '\\' (it sits inside the JSON string)")
        object.__setattr__(self, "device_keys", keys)

    def with_changes(self, **changes: Any) -> Faults:
        """A copy with some switches changed; unknown names raise TypeError naming the valid ones."""
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise TypeError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULT_NAMES)}")
        return replace(self, **changes)

    @property
    def active(self) -> tuple[str, ...]:
        """Names of the switches that differ from a healthy miner, for logs and reprs."""
        healthy = Faults()
        return tuple(f.name for f in fields(self) if getattr(self, f.name) != getattr(healthy, f.name))


FAULT_NAMES: frozenset[str] = frozenset(f.name for f in fields(Faults))
HEALTHY = Faults()
