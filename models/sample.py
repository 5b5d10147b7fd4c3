"""One poll of one miner, with units in every numeric field name.

A miner that does not answer still yields a MinerSample (state offline,
numbers None), so dashboards see silence as data, not as a gap.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from models.base import Reading
from models.base import as_utc


class MinerState(StrEnum):
    MINING = "mining"
    IDLE = "idle"  # powered and answering, not hashing (e.g. waiting for a pool)
    SOFT_OFF = "soft_off"  # put to sleep on purpose (curtailment, schedule)
    ERROR = "error"  # answered, but the reply was unusable or reports a fault
    OFFLINE = "offline"  # did not answer at all


class SampleSource(StrEnum):
    AVALON = "avalon"  # hashfleet's native CGMiner driver for Canaan Avalon
    PYASIC = "pyasic"  # every other make, through pyasic
    MQTT = "mqtt"  # devices that publish their own telemetry




class BoardSample(Reading):
    index: int = Field(ge=0)
    hashrate_ths: float | None = Field(default=None, ge=0, description="live, when the firmware reports it per board")
    hashrate_avg_ths: float | None = Field(default=None, ge=0, description="since boot (Avalon MGHS)")
    temp_in_c: float | None = None
    temp_out_c: float | None = None
    temp_chip_max_c: float | None = None
    temp_chip_avg_c: float | None = None
    chips_ok: int | None = Field(default=None, ge=0)
    chips_expected: int | None = Field(default=None, ge=0)


class PoolInfo(Reading):
    url: str | None = None
    user: str | None = None
    accepted: int | None = Field(default=None, ge=0)
    rejected: int | None = Field(default=None, ge=0)
    stale: int | None = Field(default=None, ge=0)
    active: bool | None = None


class MinerSample(Reading):
    miner: str = Field(min_length=1, description="stable id: MAC when known, else host:port")
    host: str
    port: int = Field(default=4028, ge=1, le=65535)
    site: str = "default"
    ts: datetime
    state: MinerState
    source: SampleSource

    make: str | None = None
    model: str | None = None
    firmware: str | None = None
    mac: str | None = None

    hashrate_ths: float | None = Field(default=None, ge=0, description="live, about the last minute")
    hashrate_avg_ths: float | None = Field(default=None, ge=0, description="average since boot")
    expected_hashrate_ths: float | None = Field(default=None, ge=0)
    power_w: float | None = Field(default=None, ge=0)
    power_limit_w: float | None = Field(default=None, ge=0)
    efficiency_j_th: float | None = Field(default=None, ge=0, description="derived from power and live hashrate when not given")
    temp_env_c: float | None = None
    temp_chip_max_c: float | None = None
    temp_board_max_c: float | None = None
    fans_rpm: list[int] = Field(default_factory=list)
    boards: list[BoardSample] = Field(default_factory=list)
    pool: PoolInfo | None = None
    uptime_s: int | None = Field(default=None, ge=0)
    hw_error_pct: float | None = Field(default=None, ge=0)
    work_mode: str | None = None
    errors: list[str] = Field(default_factory=list)

    @field_validator("ts")
    @classmethod
    def _ts_is_utc(cls, ts: datetime) -> datetime:
        return as_utc(ts)

    @model_validator(mode="after")
    def _derive_efficiency(self) -> MinerSample:
        # A stored field, not a computed one, so JSON round-trips through the
        # strict model (MQTT ingest reads what `poll --json` prints).
        if self.efficiency_j_th is None and self.power_w is not None and self.hashrate_ths:
            # frozen: set once here, while the sample is still being made
            object.__setattr__(self, "efficiency_j_th", self.power_w / self.hashrate_ths)
        return self

    @property
    def up(self) -> bool:
        return self.state is not MinerState.OFFLINE

    @property
    def fan_rpm_max(self) -> int | None:
        return max(self.fans_rpm) if self.fans_rpm else None

    @classmethod
    def offline(
        cls, *, miner: str, host: str, port: int, site: str, ts: datetime, source: SampleSource, reason: str,
        state: MinerState = MinerState.OFFLINE, make: str | None = None,
    ) -> MinerSample:
        """The sample for a miner that gave no reading: offline (it did not answer) or, with `state`
        ERROR, one whose answer was unusable. Numbers empty, the reason kept (at most 500 characters)."""
        return cls(miner=miner, host=host, port=port, site=site, ts=ts, state=state, source=source, make=make,
                   errors=[reason[:500]])
