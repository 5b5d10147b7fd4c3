"""Values that arrive while the service runs (MQTT meters and price topics) and
feed the cost stage: the seam between ingest and costing.

Metered power is the truth for cost where it exists (miners misreport); the
gap between reported and metered watts is kept so it can be recorded. A value
is fresh up to its max age and never when dated ahead of the instant it is
used at (beyond the small tolerance of models.base.is_fresh): ingest
refuses those, and this holds if the clock steps back.

The kill switch and the control mode set over MQTT are kept on disk in service mode
(CurtailmentInputs.keep_in, collector/sources/curtailment_commands.py): a kill switch stays on until
someone turns it off, whatever the restarts and whatever the broker kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from collector.sources import curtailment_commands
from collector.sources.curtailment_commands import SavedCommands
from models.base import is_fresh
from models import LivePowerPrice
from models.curtailment import ControlMode, DrTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeterReading:
    watts: float
    as_of: datetime


@dataclass
class CurtailmentInputs:
    """What MQTT (Home Assistant's entities, a utility's feed) asks of curtailment (docs/curtailment.md)."""

    dr_target: DrTarget | None = None  # a demand-response target from a `dr_target` topic
    mode: ControlMode | None = None  # the control mode Home Assistant asked for (never above the config's)
    killed: bool = False  # the kill switch topic: nothing is sent while it is ON
    killed_as_of: datetime | None = None
    saved_in: Path | None = None  # where the kill switch and the mode are kept across restarts (keep_in)

    def switch_kill(self, killed: bool, now: datetime, *, replayed: bool = False) -> bool:
        """The kill switch set over MQTT; False (ignored) for OFF `replayed` by the broker (a retained message,
        handed again at every start and reconnect: of unknown age) while killed: only an OFF published
        while the collector listens turns it off."""
        if replayed and self.killed and not killed:
            return False
        self.killed, self.killed_as_of = killed, now
        self._save()
        return True

    def ask_mode(self, mode: ControlMode, *, replayed: bool = False) -> bool:
        """The control mode asked over MQTT; False (ignored) for a `replayed` one above the mode asked before
        (as for the kill switch: a replayed command may make control more careful, never less)."""
        if replayed and self.mode is not None and mode.rank > self.mode.rank:
            return False
        self.mode = mode
        self._save()
        return True

    def keep_in(self, path: Path) -> None:
        """Take up the kill switch and mode saved in `path` by the run before, and save each change there.
        A file that cannot be used (hostile until checked) is set aside and control starts killed: the
        switch may have been on."""
        self.saved_in = path
        try:
            saved = curtailment_commands.load(path)
        except Exception as e:  # whatever is in the file, the service starts (killed)
            aside = curtailment_commands.set_aside(path)
            self.killed, self.killed_as_of = True, None
            self._save()
            log.error("curtailment commands %s are unusable (%s): set aside as %s; curtailment control starts "
                      "killed, as the kill switch may have been on: turn it OFF over MQTT to resume", path,
                      str(e)[:300], aside)
            return
        if saved is None:
            return
        self.killed, self.killed_as_of, self.mode = saved.killed, saved.killed_as_of, saved.mode
        if saved.killed:
            since = f" at {saved.killed_as_of.isoformat()}" if saved.killed_as_of else ""
            log.warning("curtailment control starts killed: the kill switch was turned ON over MQTT%s and not OFF "
                        "since (kept in %s); turn it OFF over MQTT to resume", since, path)
        if saved.mode is not None:
            log.warning("curtailment control mode %s asked over MQTT before the restart (kept in %s); never above "
                        "the config's", saved.mode.value, path)

    def _save(self) -> None:
        if self.saved_in is not None:
            curtailment_commands.save(self.saved_in, SavedCommands(self.killed, self.killed_as_of, self.mode))


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
