"""The curtailment commands set over MQTT (the kill switch, the control mode, demand-response targets),
kept on disk so that a restart keeps them: a publisher that does not retain (Home Assistant's switch before
its discovery said `retain`, its number, a script) or a broker that lost its retained messages must not turn
a kill switch off, nor end a utility's limit in the middle of its window (the miners control slept for it
would be woken).

    <spool>/curtailment-commands.json, next to curtailment-control.json:
    {"version": 2, "killed": true, "killed_as_of": "2026-12-06T10:23:50+00:00", "mode": "off",
     "dr_targets": {"prices/dr": [{"limit_kw": 800.0, "shed_kw": null, "start": null,
                                   "end": "2026-12-06T21:00:00Z", "reason": "4CP"}]}}

Version 1 (no `dr_targets`) is still read. Written whole (a temp file renamed, synced) on every change;
read at start as hostile input: `load` raises ValueError for anything but exactly this shape
(collector/sources/live_inputs.py decides what follows). `hashfleet advise` reads it the same way and
never writes it (collector/commands/advise.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from collector import durable_file
from models.base import read_capped
from models.curtailment import ControlMode, DrTarget

log = logging.getLogger(__name__)

VERSION = 2
_KEYS = {1: {"version", "killed", "killed_as_of", "mode"}, 2: {"version", "killed", "killed_as_of", "mode", "dr_targets"}}
MAX_BYTES = 16 * 1024 * 1024  # room for every target the ingest can hold (16 a source), read once at start


@dataclass(frozen=True)
class SavedCommands:
    killed: bool
    killed_as_of: datetime | None
    mode: ControlMode | None
    dr_targets: dict[str, tuple[DrTarget, ...]] = field(default_factory=dict)  # by source (collector/sources/dr_targets.py)


def load(path: Path) -> SavedCommands | None:
    """What `path` holds (None: no file); ValueError (or OSError) when it is unusable."""
    if not path.exists():
        return None
    return _checked(orjson.loads(read_capped(path, MAX_BYTES)))


def save(path: Path, commands: SavedCommands) -> None:
    data = {"version": VERSION, "killed": commands.killed,
            "killed_as_of": commands.killed_as_of.isoformat() if commands.killed_as_of else None,
            "mode": commands.mode.value if commands.mode else None,
            "dr_targets": {source: [t.model_dump(mode="json") for t in targets]
                           for source, targets in commands.dr_targets.items()}}
    try:
        durable_file.replace_synced(path, orjson.dumps(data))  # (a kill switch must survive a power cut)
    except OSError as e:
        log.error("cannot save the curtailment commands set over MQTT to %s (a restart would forget them): %s",
                  path, e)


def set_aside(path: Path) -> Path | None:
    """The unusable file moved out of the way, never over one set aside before (collector/durable_file.py);
    None when it cannot be moved."""
    try:
        return durable_file.set_aside(path)
    except OSError:
        return None


def _checked(data: Any) -> SavedCommands:
    if newer := durable_file.newer_version(data, VERSION, "commands file"):
        raise ValueError(newer)
    version = data.get("version") if isinstance(data, dict) else None
    if type(version) is not int or set(data) != _KEYS.get(version):
        raise ValueError(f"not a version 1 or {VERSION} commands file")
    killed, as_of, mode = data["killed"], data["killed_as_of"], data["mode"]
    if not isinstance(killed, bool):
        raise ValueError(f"killed = {str(killed)[:40]!r} is not true or false")
    if as_of is not None:  # (when it was turned on: only ever logged, so a clock stepped back since is harmless)
        if not isinstance(as_of, str) or len(as_of) > 64:
            raise ValueError("killed_as_of is not a time")
        as_of = datetime.fromisoformat(as_of)  # ValueError
        if as_of.tzinfo is None:
            raise ValueError("killed_as_of has no time zone")
    if mode is not None and (not isinstance(mode, str) or mode not in {m.value for m in ControlMode}):
        raise ValueError(f"mode = {str(mode)[:40]!r} is not one of off, dry_run, on")
    return SavedCommands(killed, as_of, ControlMode(mode) if mode is not None else None,
                         _dr_targets(data.get("dr_targets", {})))


def _dr_targets(data: Any) -> dict[str, tuple[DrTarget, ...]]:
    if not isinstance(data, dict) or not all(isinstance(s, str) and isinstance(t, list) for s, t in data.items()):
        raise ValueError("dr_targets is not a list of targets by source")
    return {source: tuple(DrTarget.model_validate(t) for t in targets)  # (ValidationError is a ValueError)
            for source, targets in data.items()}
