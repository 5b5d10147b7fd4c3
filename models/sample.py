"""One poll of one miner, with units in every numeric field name.

A miner that does not answer still yields a MinerSample (state offline,
numbers None), so dashboards see silence as data, not as a gap.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from models.base import Reading
from models.base import as_utc

# Caps on what one miner's reply may make: each board is a point per cycle and every entry is
# memory, so a hostile or broken reply must not grow them without bound. Generous for real
# hardware: an Avalon controller chains dozens of modules, an Antminer has 3-4 boards of up to a
# few hundred chips. Past a cap a source leaves the field empty and names it (`unusable`).
MAX_BOARDS = 128
MAX_CHIPS_PER_BOARD = 1024
MAX_FANS = 32
MAX_ERRORS = 32
MAX_ERROR_CHARS = 500
MAX_TEXT_CHARS = 256  # model, firmware, work mode, pool URL and user
# Past these a number is not a reading of any miner: a wrapped counter or garbage.
MAX_UPTIME_S = 10**10  # ~317 years
MAX_FAN_RPM = 100_000
TEMP_MIN_C, TEMP_MAX_C = -273.15, 1000.0
# What a running miner's temperature sensor (chip, board, intake) can read: a value outside is refused as that
# field. The top: chips shut down well below it (Avalon A11/A12 firmware trips at ~95-105 C on the chips, D-Central
# "Avalon 1266 - Temperature Too High"; MicroBT's bin tables stop chips at 87 C and boards at 80 C,
# ap-rose/microbt-whatsminer powers/M6X.csv; ESP-Miner throttles a Bitaxe at 75 C). The bottom: MicroBT rates the
# M60S and M50S++ for intake from -5 C (product manuals, October 2024) and no miner's electronics are rated below
# the industrial -40 C. -273 and below is firmware's "no sensor": absent, not refused.
SENSOR_MIN_C, SENSOR_MAX_C = -40.0, 150.0
# What a unit's own chip temperature limits (its firmware's configuration: Braiins OS+'s hot and dangerous
# temperatures) can be: below 30 C no chip mines (healthy ones run at 60-90 C), and 130 C is past every
# chip protection above (Braiins OS+ ships 100/110 C). A figure outside is refused: the unit has no limit of its own.
CHIP_LIMIT_MIN_C, CHIP_LIMIT_MAX_C = 30.0, 130.0

_LIST_FIELDS = frozenset({"fans_rpm", "boards", "errors", "warnings", "fault_codes", "unusable"})
_Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
_Error = Annotated[str, StringConstraints(max_length=MAX_ERROR_CHARS)]
_Temp = Annotated[float, Field(ge=TEMP_MIN_C, le=TEMP_MAX_C)]
_ChipLimit = Annotated[float, Field(ge=CHIP_LIMIT_MIN_C, le=CHIP_LIMIT_MAX_C)]
_INF = float("inf")


class MinerState(StrEnum):
    MINING = "mining"
    IDLE = "idle"  # powered and answering, not hashing (e.g. waiting for a pool)
    SOFT_OFF = "soft_off"  # put to sleep on purpose (curtailment, schedule)
    # answered, but the reply was unusable, reports a fault, or its live hashrate was refused (whether it hashes
    # is unknown: `state_with_refusals`); another refused field costs that field, not the state
    ERROR = "error"
    OFFLINE = "offline"  # did not answer at all


def state_with_refusals(state: MinerState, refused: Collection[str]) -> MinerState:
    """The state of a unit whose fields `refused` were left empty: what the unit does, unless its live
    hashrate itself was refused, which leaves unknown whether it hashes (error). The one rule of every
    source: a fan at -1 rpm (firmware's absent fan), a temperature or a power no unit reads costs that
    field (named in `unusable` and `errors`), not the state of a unit hashing 126 TH/s."""
    return MinerState.ERROR if "hashrate_ths" in refused else state


class SampleSource(StrEnum):
    AVALON = "avalon"  # hashfleet's native CGMiner driver for Canaan Avalon
    ANTMINER = "antminer"  # hashfleet's native reader for Antminer stock firmware (BMMiner RPC + web UI)
    WHATSMINER = "whatsminer"  # hashfleet's native reader for Whatsminer btminer (API v2)
    BRAIINS = "braiins"  # hashfleet's native reader for Braiins OS+ (bosminer RPC)
    PYASIC = "pyasic"  # every other make, and any make an operator sends through pyasic (`readers`)
    MQTT = "mqtt"  # devices that publish their own telemetry




class BoardSample(Reading):
    index: int = Field(ge=0, lt=MAX_BOARDS)
    hashrate_ths: float | None = Field(default=None, ge=0, description="live, when the firmware reports it per board")
    hashrate_avg_ths: float | None = Field(default=None, ge=0, description="since boot (Avalon MGHS)")
    temp_in_c: _Temp | None = None
    temp_out_c: _Temp | None = None
    temp_chip_max_c: _Temp | None = None
    temp_chip_avg_c: _Temp | None = None
    chips_ok: int | None = Field(default=None, ge=0, le=MAX_CHIPS_PER_BOARD)
    chips_expected: int | None = Field(default=None, ge=0, le=MAX_CHIPS_PER_BOARD)


class FaultSeverity(StrEnum):
    INFO = "info"  # reported, no effect on hashing known (e.g. a code a healthy unit also shows)
    WARNING = "warning"  # something to look at: hashing may suffer
    FAULT = "fault"  # the miner says a part has failed or was shut down
    UNKNOWN = "unknown"  # a code or bit whose meaning is not published: never an error on its own


class FaultCode(Reading):
    """One code a miner reports, decoded where its meaning is published (the raw value is always kept).
    Avalon: one entry per set bit of ECHU (per board) / ECMM; other makes: their error list entries."""

    key: _Text = Field(description="where it came from: ECHU, ECMM, PS, a firmware's error code list...")
    code: int = Field(description="the raw value, or the bit's value for a bit field")
    board: int | None = Field(default=None, ge=0, lt=MAX_BOARDS)
    meaning: _Text | None = Field(default=None, description="None: not published")
    severity: FaultSeverity = FaultSeverity.UNKNOWN
    source: _Text | None = Field(default=None, description="where the meaning is published")


class PoolInfo(Reading):
    url: _Text | None = None
    user: _Text | None = None
    accepted: int | None = Field(default=None, ge=0)
    rejected: int | None = Field(default=None, ge=0)
    stale: int | None = Field(default=None, ge=0)
    active: bool | None = None


class MinerSample(Reading):
    miner: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="stable id: MAC when known, else host:port")
    host: _Text
    port: int = Field(default=4028, ge=1, le=65535)
    site: str = "default"
    ts: datetime
    state: MinerState
    source: SampleSource

    make: _Text | None = None
    model: _Text | None = None
    firmware: _Text | None = None
    mac: _Text | None = None

    hashrate_ths: float | None = Field(default=None, ge=0, description="live, about the last minute")
    hashrate_avg_ths: float | None = Field(default=None, ge=0, description="average since boot")
    expected_hashrate_ths: float | None = Field(default=None, ge=0)
    power_w: float | None = Field(default=None, ge=0)
    power_limit_w: float | None = Field(default=None, ge=0)
    efficiency_j_th: float | None = Field(default=None, ge=0, description="derived from power and live hashrate when not given")
    temp_env_c: _Temp | None = None
    temp_chip_max_c: _Temp | None = None
    temp_board_max_c: _Temp | None = None
    chip_hot_limit_c: _ChipLimit | None = Field(
        default=None, description="the unit's own hot chip temperature, as its firmware is configured (Braiins OS+ "
                                  "hot_temperature: fans at full, power scaled down); health's hot limit for it, "
                                  "before its model's")
    chip_stop_limit_c: _ChipLimit | None = Field(
        default=None, description="the unit's own chip temperature at which its firmware stops mining (Braiins OS+ "
                                  "dangerous_temperature); over chip_hot_limit_c when both are given")
    fans_rpm: list[Annotated[int, Field(ge=0, le=MAX_FAN_RPM)]] = Field(default_factory=list, max_length=MAX_FANS)
    boards: list[BoardSample] = Field(default_factory=list, max_length=MAX_BOARDS)
    pool: PoolInfo | None = None
    uptime_s: int | None = Field(default=None, ge=0, le=MAX_UPTIME_S)
    hw_error_pct: float | None = Field(default=None, ge=0)
    work_mode: _Text | None = None
    errors: list[_Error] = Field(default_factory=list, max_length=MAX_ERRORS)
    warnings: list[_Error] = Field(
        default_factory=list, max_length=MAX_ERRORS,
        description="named doubts about a reading that is still used (e.g. a power the miner's own figures contradict)")
    fault_codes: list[FaultCode] = Field(default_factory=list, max_length=MAX_ERRORS)
    unusable: list[_Text] = Field(
        default_factory=list, max_length=MAX_ERRORS,
        description="fields whose reported value was refused (not finite, out of range, implausible for the model, "
                    "over a cap): left empty, the value named in `errors`. The state stays what the unit does unless "
                    "hashrate_ths is among them (error: `state_with_refusals`). The cost engine uses no reading of a "
                    "miner whose hashrate_ths or power_w is among them.")

    @field_validator("ts")
    @classmethod
    def _ts_is_utc(cls, ts: datetime) -> datetime:
        return as_utc(ts)

    @model_validator(mode="after")
    def _derive_efficiency(self) -> MinerSample:
        # A stored field, not a computed one, so JSON round-trips through the
        # strict model (MQTT ingest reads what `poll --json` prints).
        if self.efficiency_j_th is None and self.power_w is not None and self.hashrate_ths:
            efficiency = self.power_w / self.hashrate_ths
            if efficiency < _INF:  # a denormal hashrate would make it infinite: no figure rather than inf
                # frozen: set once here, while the sample is still being made
                object.__setattr__(self, "efficiency_j_th", efficiency)
        return self

    @property
    def up(self) -> bool:
        return self.state is not MinerState.OFFLINE

    @property
    def fan_rpm_max(self) -> int | None:
        return max(self.fans_rpm) if self.fans_rpm else None

    def refused(self, reasons: Mapping[str, str], **values: Any) -> MinerSample:
        """A copy with each field named in `reasons` left empty (or set to `values`), named in `unusable`
        and its reason added to `errors`; the state as `state_with_refusals` says (error only when the
        live hashrate is refused). What every source does with a value it cannot use: that field is
        lost, the rest of the reading is kept."""
        update: dict[str, Any] = {name: [] if name in _LIST_FIELDS else None for name in reasons}
        if "efficiency_j_th" not in values and ("hashrate_ths" in reasons or "power_w" in reasons):
            update["efficiency_j_th"] = None  # derived from a refused reading
        update.update(values)
        errors = [*self.errors, *(reason[:MAX_ERROR_CHARS] for reason in reasons.values())]
        unusable = list(dict.fromkeys([*self.unusable, *reasons]))
        update.update(state=state_with_refusals(self.state, reasons), errors=errors[:MAX_ERRORS],
                      unusable=unusable[:MAX_ERRORS])
        return self.model_copy(update=update)

    @classmethod
    def offline(
        cls, *, miner: str, host: str, port: int, site: str, ts: datetime, source: SampleSource, reason: str,
        state: MinerState = MinerState.OFFLINE, make: str | None = None, model: str | None = None,
    ) -> MinerSample:
        """The sample for a miner that gave no reading: offline (it did not answer) or, with `state`
        ERROR, one whose answer was unusable. Numbers empty, the reason kept (at most 500 characters); `make`
        and `model` as last read, where known (one series per miner; capex keyed by model goes on)."""
        return cls(miner=miner, host=host, port=port, site=site, ts=ts, state=state, source=source, make=make,
                   model=model, errors=[reason[:MAX_ERROR_CHARS]])
