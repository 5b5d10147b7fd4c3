"""Every control command a simulated miner receives, for tests and drills to assert on.

A control command is anything that asks a miner to change: Avalon `ascset` (soft-off/on, work
mode and level, reboot, LED) and `restart`; Antminer `set_miner_conf.cgi`, `blink.cgi`,
`reboot.cgi` and RPC `restart`; Whatsminer's privileged writes; Braiins OS+ gRPC writes; Bitaxe
`PATCH /api/system` and `POST /api/system/restart`. Reads (`summary`, `ascset|0,workmode,get`,
`GET /cgi-bin/stats.cgi`) are not commands; `Fleet.requests()` counts those.

Each command is recorded once, when the firmware has answered it, accepted or refused, with the
time on the miner's clock. `CommandLog` keeps them in memory (`Fleet.commands()`) and, given a
path, appends each as one JSON line, flushed at once (`hashfleet simulate --command-log FILE`).
Parameters named like secrets (passwords, tokens) are written as "***".
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

MAX_KEPT = 100_000  # in memory; the file keeps everything
MAX_TEXT = 500  # a parameter's text is cut here: a client cannot grow the log without bound per command
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "key")


@dataclass(frozen=True, slots=True)
class Command:
    """One control command as the miner received it."""

    at: float  # the miner's clock (Unix seconds on the wall clock)
    make: str  # firmware family: avalon, antminer, whatsminer, braiins, bitaxe
    model: str  # fleet key, e.g. a1246
    address: str  # host:port of the miner's main port
    command: str  # e.g. "ascset softoff", "set_miner_conf", "power_off", "PauseMining"
    params: dict[str, Any] = field(default_factory=dict)
    accepted: bool = True
    msg: str = ""  # what the firmware answered (its message, or why it refused)

    def as_json(self) -> dict[str, Any]:
        return {
            "ts": datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="milliseconds"),
            "at": round(self.at, 3), "make": self.make, "model": self.model, "address": self.address,
            "command": self.command, "params": self.params, "accepted": self.accepted, "msg": self.msg,
        }


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe parameters with secrets masked and long texts cut (what a client sent is hostile)."""
    def clean(key: str, value: Any, depth: int) -> Any:
        if any(word in key.lower() for word in _SECRET_WORDS):
            return "***"
        if depth > 4:
            return "..."
        if isinstance(value, dict):
            return {str(k)[:64]: clean(str(k), v, depth + 1) for k, v in list(value.items())[:32]}
        if isinstance(value, (list, tuple)):
            return [clean(key, v, depth + 1) for v in list(value)[:32]]
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            return value if value == value and abs(value) != float("inf") else str(value)
        return str(value)[:MAX_TEXT]

    return {str(k)[:64]: clean(str(k), v, 0) for k, v in list(params.items())[:32]}


class CommandLog:
    """Commands in arrival order; thread-safe (firmwares record from the server's event loop)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self._lock = threading.Lock()
        self._kept: deque[Command] = deque(maxlen=MAX_KEPT)
        self.total = 0
        self.path = Path(path) if path is not None else None
        self._file: IO[str] | None = None
        if self.path is not None:
            # Opened now, so a bad path is an error at start-up, not at the first command.
            self._file = self.path.open("a", encoding="utf-8")

    def record(self, command: Command) -> None:
        line = json.dumps(command.as_json(), separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._kept.append(command)
            self.total += 1
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def commands(self, address: str | None = None) -> list[Command]:
        """What was received so far (by every miner, or by the one at `address`)."""
        with self._lock:
            kept = list(self._kept)
        return kept if address is None else [c for c in kept if c.address == address]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
