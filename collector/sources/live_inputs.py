"""Values that arrive while the service runs (MQTT meters and price topics) and
feed the cost stage: the seam between ingest and costing.

Metered power is the truth for cost where it exists (miners misreport); the
gap between reported and metered watts is kept so it can be recorded. A value
is fresh up to its max age and never when dated ahead of the instant it is
used at (beyond the small tolerance of models.base.is_fresh): ingest
refuses those, and this holds if the clock steps back.

The kill switch, the control mode and the demand-response targets set over MQTT are kept on disk when
control is dry_run or on (CurtailmentInputs.keep_in, collector/sources/curtailment_commands.py): a kill
switch stays on until someone turns it off, and a utility's limit until its end or its withdrawal, whatever
the restarts and whatever the broker kept (saved at most every SAVE_EVERY_S, always before a cycle's
sends). Demand-response targets are kept apart by source
(collector/sources/dr_targets.py), so one source's message never loosens another's target.

Every change asked over MQTT and made (the kill switch, the control mode, a topic's demand-response targets
set or withdrawn) is logged, naming the topic, old -> new (at most one line per kind a second: a flood of
commands must not flood the log), and kept as a CommandChange until the control sink writes it to the
audit log (collector/sinks/curtailment_control.py, `take_changes`): who re-enabled control, and when, is
on record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from collector.bounded_log import BoundedLog
from collector.sources import curtailment_commands
from collector.sources.curtailment_commands import SavedCommands
from collector.sources.dr_targets import DrTargets
from models.base import is_fresh, printable
from models import LivePowerPrice
from models.curtailment import ControlConfig, ControlMode, DrTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterReading:
    watts: float
    as_of: datetime


MAX_CHANGES_KEPT = 1_000  # changes waiting for the audit log (a cycle's worth); more are counted, not kept


@dataclass(frozen=True)
class CommandChange:
    """A change asked over MQTT and made: the audit log's record of an operator's command."""

    ts: datetime
    topic: str  # where it came from (the publisher's text: made printable, capped)
    what: str  # kill_switch | control_mode | dr_target
    old: str
    new: str


def _switch_text(killed: bool) -> str:
    return "ON" if killed else "OFF"


def _targets_text(targets: tuple[DrTarget, ...]) -> str:
    if not targets:
        return "none"
    shown = ", ".join(f"{'limit' if t.limit_kw is not None else 'shed'} "
                      f"{t.limit_kw if t.limit_kw is not None else t.shed_kw:g} kW until {t.end.isoformat()}"
                      for t in targets[:3])
    return shown + (f" (+{len(targets) - 3} more)" if len(targets) > 3 else "")


# Commands are saved at most this often: a flood of valid ones (anyone who may publish them) was a synced
# write each, on the event loop: 20,000 toggles held the cycles 16 s (trial T). The last is saved this long
# after at most (a timer), and before each cycle's sends and at stop (save_pending).
SAVE_EVERY_S = 0.5


@dataclass
class CurtailmentInputs:
    """What MQTT (Home Assistant's entities, a utility's feed) asks of curtailment (docs/curtailment.md)."""

    # demand-response targets by source: each `dr_target` topic (a utility's feed, Home Assistant's number)
    dr_targets: DrTargets = field(default_factory=DrTargets)
    dr_sources: frozenset[str] = frozenset()  # those topics (MqttBridge): a saved target from another is dropped
    mode: ControlMode | None = None  # the control mode Home Assistant asked for (never above the config's)
    killed: bool = False  # the kill switch topic: nothing is sent while it is ON
    killed_as_of: datetime | None = None
    saved_in: Path | None = None  # where the commands above are kept across restarts (keep_in)
    mode_cap: ControlMode | None = None  # the config's control mode: a mode asked above it is kept, not in force
    # changes made over MQTT, for the audit log (take_changes), and how many more were not kept
    changes: list[CommandChange] = field(default_factory=list)
    changes_not_kept: int = 0
    # at most a line a second per kind of change: a flood of commands must not flood the log
    change_log: BoundedLog = field(default_factory=lambda: BoundedLog(log, every_s=1.0), repr=False)
    _saved_at: float = field(default=-math.inf, repr=False)  # time.monotonic() of the last save
    _unsaved: bool = field(default=False, repr=False)  # a change waits for its save (SAVE_EVERY_S)

    def switch_kill(self, killed: bool, now: datetime, *, replayed: bool = False, topic: str = "") -> bool:
        """The kill switch set over MQTT (on `topic`); False (ignored) for OFF `replayed` by the broker (a
        retained message seen first at this start: of unknown age) while killed: only an OFF published while
        the collector listens turns it off."""
        if replayed and self.killed and not killed:
            return False
        was = self.killed
        self.killed, self.killed_as_of = killed, now
        self._save()
        if was != killed:
            self._changed(now, topic, "kill_switch", _switch_text(was), _switch_text(killed))
        return True

    def ask_mode(self, mode: ControlMode, *, replayed: bool = False, topic: str = "",
                 now: datetime | None = None) -> bool:
        """The control mode asked over MQTT (on `topic`); False (ignored) for a `replayed` one above the mode
        asked before (as for the kill switch: a replayed command may make control more careful, never less)."""
        if replayed and self.mode is not None and mode.rank > self.mode.rank:
            return False
        was = self.mode
        self.mode = mode
        self._save()
        if was is not mode:
            cap = self.mode_cap
            said = mode.value if cap is None or mode.rank <= cap.rank else (
                f"{mode.value}, over the config's {cap.value}: control stays {cap.value}")
            self._changed(now, topic, "control_mode", was.value if was is not None else "the config's", said)
        return True

    def take_dr_target(self, source: str, target: DrTarget, now: datetime, *, replace: bool = False,
                       topic: str = "") -> bool:
        """A demand-response target from `source` (a `dr_target` topic), added to what it holds (`replace`: a
        bare kW limit, instead of it); False when refused: the source is full of targets that start sooner."""
        was = self.dr_targets.held().get(source, ())
        taken = self.dr_targets.take(source, target, now, replace=replace)
        if taken:
            self._save()
            self._changed(now, topic or source, "dr_target", _targets_text(was),
                          _targets_text(self.dr_targets.held().get(source, ())))
        return taken is not None

    def withdraw_dr_targets(self, source: str, *, replayed: bool = False, topic: str = "",
                            now: datetime | None = None) -> bool:
        """`source`'s targets withdrawn (0 or null on its topic); False (ignored) when `replayed` by the broker:
        of unknown age, it may be older than the targets held (as for the kill switch's OFF)."""
        if replayed:
            return False
        was = self.dr_targets.held().get(source, ())
        if self.dr_targets.withdraw(source):
            self._save()
            self._changed(now, topic or source, "dr_target", _targets_text(was), "none (withdrawn)")
        return True

    def take_changes(self) -> tuple[list[CommandChange], int]:
        """The changes made over MQTT since the last call, and how many more were not kept (MAX_CHANGES_KEPT)."""
        changes, not_kept = self.changes, self.changes_not_kept
        self.changes, self.changes_not_kept = [], 0
        return changes, not_kept

    def _changed(self, now: datetime | None, topic: str, what: str, old: str, new: str) -> None:
        shown = printable(topic[:200])
        self.change_log.warning(what, "curtailment %s set over MQTT on %s: %s -> %s", what.replace("_", " "), shown,
                                old, new)
        if len(self.changes) < MAX_CHANGES_KEPT:  # (nothing drains them while control is off: bounded)
            self.changes.append(CommandChange(now or datetime.now(timezone.utc), shown, what, old, new))
        else:
            self.changes_not_kept += 1

    def keep_in(self, path: Path) -> None:
        """Take up the kill switch, mode and demand-response targets saved in `path` by the run before, and
        save each change there. A file that cannot be used (hostile until checked) is set aside and control
        starts killed: the switch may have been on. A saved target from a topic no longer in `dr_sources`
        is dropped: nothing could withdraw it."""
        self.saved_in = path
        try:
            saved = curtailment_commands.load(path)
        except Exception as e:  # whatever is in the file, the service starts (killed)
            aside = curtailment_commands.set_aside(path)
            self.killed, self.killed_as_of = True, None
            self._save()
            log.error("curtailment commands %s are unusable (%s): %s; curtailment control starts killed, as the "
                      "kill switch may have been on: turn it OFF over MQTT to resume", path, str(e)[:300],
                      f"set aside as {aside}" if aside is not None else "it could not be set aside")
            return
        if saved is None:
            return
        gone, refused = self.take_up(saved)
        if saved.killed:
            since = f" at {saved.killed_as_of.isoformat()}" if saved.killed_as_of else ""
            log.warning("curtailment control starts killed: the kill switch was turned ON over MQTT%s and not OFF "
                        "since (kept in %s); turn it OFF over MQTT to resume", since, path)
        if saved.mode is not None:
            log.warning("curtailment control mode %s asked over MQTT before the restart (kept in %s); never above "
                        "the config's", saved.mode.value, path)
        if gone:
            log.warning("demand-response targets saved from %s dropped: no longer a dr_target topic (kept in %s)",
                        ", ".join(s[:80] for s in gone[:5]), path)
        for why in refused[:5]:
            log.warning("a demand-response target saved in %s is dropped: %s", path, why)
        held = len(list(self.dr_targets))
        if held:
            log.warning("%d demand-response target(s) set over MQTT before the restart hold again (kept in %s), "
                        "until they end or their source withdraws them", held, path)

    def take_up(self, saved: SavedCommands) -> tuple[list[str], list[str]]:
        """Take up what the run before saved (`keep_in`; `hashfleet advise`, which only reads the file): the
        kill switch, the mode, and the targets of the topics still in `dr_sources`, each checked as if it
        arrived now. The sources dropped (nothing could withdraw their targets) and why each target not
        ended was refused."""
        self.killed, self.killed_as_of, self.mode = saved.killed, saved.killed_as_of, saved.mode
        gone = sorted(source for source in saved.dr_targets if source not in self.dr_sources)
        refused = self.dr_targets.restore({s: t for s, t in saved.dr_targets.items() if s in self.dr_sources},
                                          datetime.now(timezone.utc))
        return gone, refused

    def save_pending(self) -> None:
        """Save a change still waiting (SAVE_EVERY_S): before a cycle's sends, and at stop."""
        if self._unsaved:
            self._write()

    def _save(self) -> None:
        if self.saved_in is None:
            return
        since = time.monotonic() - self._saved_at
        if since >= SAVE_EVERY_S:
            self._write()
        elif not self._unsaved:
            try:
                asyncio.get_running_loop().call_later(SAVE_EVERY_S - since, self.save_pending)
            except RuntimeError:  # no loop running (`hashfleet advise`): nothing else would save it
                self._write()
                return
            self._unsaved = True

    def _write(self) -> None:
        assert self.saved_in is not None
        self._unsaved, self._saved_at = False, time.monotonic()
        curtailment_commands.save(self.saved_in, SavedCommands(self.killed, self.killed_as_of, self.mode,
                                                               self.dr_targets.held()))


@dataclass
class LiveInputs:
    power_price: LivePowerPrice | None = None
    btc_price_usd: float | None = None
    btc_price_as_of: datetime | None = None
    metered_w: dict[str, MeterReading] = field(default_factory=dict)  # by miner id
    meter_max_age_s: float = 120.0
    # MQTT miners whose id is allow-listed (mqtt.allowed_miners): with the polled miners, the only
    # ones that share the site's fixed costs. Anyone who can publish can invent an id.
    verified_mqtt_miners: set[str] = field(default_factory=set)
    # Facility meters (`facility` keys of MQTT meter subscriptions): the whole site's draw, the sum of
    # every key's latest reading; measured PUE = that / the miners' draw (collector/stages/power_truth.py).
    facility_w: dict[str, MeterReading] = field(default_factory=dict)  # by meter key
    facility_keys: frozenset[str] = frozenset()
    curtailment: CurtailmentInputs = field(default_factory=CurtailmentInputs)

    def metered_power(self, miner: str, now: datetime) -> float | None:
        reading = self.metered_w.get(miner)
        if reading is None or not is_fresh(reading.as_of, now, self.meter_max_age_s):
            return None
        return reading.watts

    def facility_power(self, now: datetime) -> float | None:
        """The site's metered draw: every facility key read, all fresh; else None."""
        keys = self.facility_keys
        if not keys:
            return None
        readings = [self.facility_w.get(key) for key in keys]
        if any(r is None or not is_fresh(r.as_of, now, self.meter_max_age_s) for r in readings):
            return None
        return sum(r.watts for r in readings)  # type: ignore[union-attr]


def control_mode(config: ControlConfig, asked: CurtailmentInputs) -> ControlMode:
    """The config's mode, or lower when Home Assistant asked for lower (never higher)."""
    mode = asked.mode if config.mqtt_commands else None
    if mode is not None and mode.rank < config.mode.rank:
        return mode
    return config.mode


def kill_switch(config: ControlConfig, asked: CurtailmentInputs) -> str | None:
    """Which kill switch is on (nothing is sent), or None."""
    path = config.kill_switch_file
    if path is not None:
        try:
            os.lstat(path)  # whatever is there, a dangling or looping link too (exists() follows it: False)
            return f"kill switch file {path} exists"
        except FileNotFoundError:
            pass
        except OSError as e:  # it may be there: nothing is sent until it can be told (trial T)
            return f"kill switch file {path} cannot be checked ({e.strerror or e}): taken as ON"
    if asked.killed:
        return "kill switch ON over MQTT"
    return None
