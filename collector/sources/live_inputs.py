"""Values that arrive while the service runs (MQTT meters and price topics) and
feed the cost stage: the seam between ingest and costing.

Metered power is the truth for cost where it exists (miners misreport); the
gap between reported and metered watts is kept so it can be recorded. A value
is fresh up to its max age and never when dated ahead of the instant it is
used at (beyond the small tolerance of models.base.is_fresh): ingest
refuses those, and this holds if the clock steps back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from models.base import is_fresh
from models import LivePowerPrice
from models.curtailment import ControlMode, DrTarget


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
