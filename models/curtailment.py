"""Curtailment: what the advice weighs, what demand response asks for, and what control may do.

The advice runs every cycle when `curtailment:` is in the config (collector/stages/curtailment.py);
control of miners is a separate, opt-in part of it (`curtailment.control`, off by default:
collector/sinks/curtailment_control.py). How it decides and what it writes: docs/curtailment.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from models.base import Settings, printable
from models.base import Strict as _Strict
from models.base import as_utc as _utc

_NAME = r"^[A-Za-z0-9_.:/-]{1,64}$"  # a layout group, a work mode: what models.config.Place accepts
MAX_DR_WINDOW_S = 7 * 86_400  # a demand-response target longer than a week is a mistake, not a call


class ControlMode(StrEnum):
    OFF = "off"  # nothing is ever sent to a miner (the default)
    DRY_RUN = "dry_run"  # every action is decided, logged and published, none is sent
    ON = "on"  # actions are sent, within the allowlist and the rate limits, and confirmed

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {ControlMode.OFF: 0, ControlMode.DRY_RUN: 1, ControlMode.ON: 2}


class ModePlate(Settings):
    """A work mode's nameplate: what the advice assumes for it until the miner has run in it long
    enough to be measured (`curtailment.min_samples`)."""

    mode: str = Field(pattern=_NAME, description="as the miner reports it (Avalon WORKMODE, e.g. '0')")
    hashrate_ths: float = Field(gt=0, le=5_000)
    power_w: float = Field(gt=0, le=30_000)


class CurtailmentGroups(Settings):
    """Layout groups (collector/layout.py: a group, container, row or rack name) the plan treats as one."""

    shed_whole: list[str] = Field(default_factory=list, max_length=1000,
                                  description="demand response sheds these whole or not at all (a PDU, a feeder)")
    always_on: list[str] = Field(default_factory=list, max_length=1000,
                                 description="never advised to sleep nor shed (a lower work mode is still advised)")

    @field_validator("shed_whole", "always_on")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        import re

        for name in names:
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"group {name[:70]!r}: 1-64 of letters, digits, _ . : / -")
        return names


class ControlConfig(Settings):
    """Control of miners: off unless set. When on, it acts only on fresh price and network data, on
    allow-listed miners, within the rate limits, confirms every change on the next poll and writes
    every action to the audit log."""

    mode: ControlMode = ControlMode.OFF
    allow: list[str] = Field(default_factory=list, max_length=100_000,
                             description="miner ids, MACs, addresses or layout groups it may act on; '*' for all")
    max_actions_per_cycle: int = Field(default=10, ge=1, le=10_000)
    max_actions_per_hour: int = Field(default=120, ge=1, le=1_000_000)
    confirm_retries: int = Field(default=2, ge=0, le=10,
                                 description="a change the next poll does not show is sent again this many times")
    failed_backoff_s: float = Field(default=3600, ge=0, le=86_400 * 7,
                                    description="a miner whose change was never confirmed is left alone this long")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="per command, connect and reply together")
    kill_switch_file: Path | None = Field(default=None,
                                          description="while this file exists nothing is sent (touch it to stop)")
    audit_log: Path | None = Field(default=None, description="JSON Lines, appended; default: "
                                                              "curtailment-actions.jsonl in the spool directory")
    mqtt_commands: bool = Field(default=False, description="Home Assistant may set the control mode (never above "
                                                           "`mode`) and a demand-response limit over MQTT")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_switch(cls, value: object) -> object:
        # YAML 1.1 reads an unquoted `mode: off` or `mode: on` (as the docs write them) as a boolean.
        if value is True or value is False:
            return ControlMode.ON if value else ControlMode.OFF
        return value

    @model_validator(mode="after")
    def _on_needs_allowlist(self) -> ControlConfig:
        if self.mode is not ControlMode.OFF and not self.allow:
            raise ValueError(f"control mode {self.mode.value!r} needs `allow`: the miners, MACs, addresses or layout "
                             "groups it may act on ('*' for every miner)")
        return self


class DrTarget(_Strict):
    """A demand-response target: keep the site's draw at most `limit_kw`, or `shed_kw` below what the
    advice alone would draw, from `start` (default: now) until `end`."""

    # strict: `true` or "8" from MQTT or a file is no kW figure (lax, `true` was a 1 kW limit: trial ZG)
    limit_kw: float | None = Field(default=None, ge=0, le=10_000_000, allow_inf_nan=False, strict=True)
    shed_kw: float | None = Field(default=None, gt=0, le=10_000_000, allow_inf_nan=False, strict=True)
    start: datetime | None = None
    end: datetime
    reason: str | None = Field(default=None, max_length=200, description="e.g. '4CP alert', 'utility call 1234'")

    @field_validator("start", "end")
    @classmethod
    def _ts_utc(cls, ts: datetime | None) -> datetime | None:
        return _utc(ts)

    @field_validator("reason")
    @classmethod
    def _printable_reason(cls, text: str | None) -> str | None:
        # From MQTT or a schedule file, it reaches the MQTT plan, InfluxDB's reason fields, the audit log and the
        # terminal: an escape sequence would act on a terminal, a newline forge a log or audit line.
        return None if text is None else printable(text)

    @model_validator(mode="after")
    def _one_target_and_a_window(self) -> DrTarget:
        if (self.limit_kw is None) == (self.shed_kw is None):
            raise ValueError("give exactly one of limit_kw (the site's draw at most) and shed_kw (less than the "
                             "advice alone would draw)")
        if self.start is not None:
            if self.end <= self.start:
                raise ValueError("end must be after start")
            if (self.end - self.start).total_seconds() > MAX_DR_WINDOW_S:
                raise ValueError(f"a window longer than {MAX_DR_WINDOW_S // 86400} days is refused")
        return self

    def active(self, at: datetime) -> bool:
        return (self.start is None or self.start <= at) and at < self.end

    def too_long_from(self, now: datetime) -> str | None:
        """Why a target without a `start` (it runs from `now`) is refused: it ends more than a week away
        (an `end` of 2099 would shed for ever); None when it is not."""
        if self.start is None and (self.end - now).total_seconds() > MAX_DR_WINDOW_S:
            return (f"no start, so it runs from now to {self.end.isoformat()}: longer than "
                    f"{MAX_DR_WINDOW_S // 86400} days")
        return None


class DrSchedule(_Strict):
    """A schedule file of demand-response targets (`curtailment.dr_schedule`, YAML)."""

    targets: list[DrTarget] = Field(max_length=10_000)


class CurtailmentConfig(Settings):
    """Advice every cycle: which miners to run, sleep or move to a lower work mode at the live power price.

    strategy `margin`: each miner by its own margin per kWh (revenue from its measured hashrate less the
    power it draws, per mode); `strike`: every miner sleeps above `strike_usd_kwh` (a fleet-wide strike
    price). Either way a change needs the price past the break-even by `hysteresis_usd_kwh`, and a
    miner keeps a state at least `min_on_s` / `min_off_s`."""

    strategy: Literal["margin", "strike"] = "margin"
    strike_usd_kwh: float | None = Field(default=None, ge=-1, le=20)
    hysteresis_usd_kwh: float = Field(default=0.003, ge=0, le=10,
                                      description="a change must gain at least this per kWh drawn")
    min_on_s: float = Field(default=900, ge=0, le=86_400)
    min_off_s: float = Field(default=900, ge=0, le=86_400)
    warmup_s: float = Field(default=300, ge=0, le=86_400,
                            description="after a boot or a wake, readings do not teach the miner's efficiency")
    min_samples: int = Field(default=30, ge=1, le=100_000,
                             description="readings of a miner in a mode before its measured efficiency replaces the "
                                         "nameplate (models/hardware.py, work_modes)")
    work_modes: dict[str, list[ModePlate]] = Field(
        default_factory=dict, max_length=1000,
        description="by model as the miner reports it: the work modes it has, as nameplates until measured")
    ramp_kw_per_min: float | None = Field(default=None, gt=0, le=1_000_000,
                                          description="the plan changes the site's draw by at most this per minute")
    groups: CurtailmentGroups = Field(default_factory=CurtailmentGroups)
    dr_schedule: Path | None = Field(default=None, description="YAML file of demand-response targets (DrSchedule)")
    dr_default_duration_s: float = Field(default=3600, gt=0, le=MAX_DR_WINDOW_S,
                                         description="a bare kW limit (Home Assistant's number entity) lasts this long")
    control: ControlConfig = Field(default_factory=ControlConfig)

    @model_validator(mode="after")
    def _strike_needs_price(self) -> CurtailmentConfig:
        if self.strategy == "strike" and self.strike_usd_kwh is None:
            raise ValueError("strategy 'strike' needs strike_usd_kwh (sleep every miner above this $/kWh)")
        for model, plates in self.work_modes.items():
            modes = [p.mode for p in plates]
            if len(set(modes)) != len(modes):
                raise ValueError(f"work_modes[{model!r}] lists a mode twice")
        return self


# --- MQTT payloads -----------------------------------------------------------------------------

class KillPayload(_Strict):
    """The kill switch over MQTT: `ON` / `OFF` (Home Assistant's switch), `true` / `false`, `1` / `0`, or this object."""

    killed: bool = Field(strict=True)  # (lax, "no" and 0.0 were OFF: trial ZG)


# --- the plan (made by collector/stages/curtailment.py, carried in the cycle to the sinks) ---------------


@dataclass(slots=True)
class MinerAdvice:
    """One miner the plan does not simply leave running as usual (asleep, another mode), or one that changed."""

    miner: str
    key: str  # SLEEP ("") or the work mode to run in
    action: str  # run | sleep | lower | raise
    reason: str
    kw: float  # facility kW in the planned option
    kw_always_on: float  # facility kW running as usual
    margin_usd_kwh: float | None  # break-even of its usual mode less the price now
    efficiency_j_th: float | None  # measured (or nameplate) in its usual mode
    profit_usd_day: float  # in the planned option, at this price
    changed: bool = False
    held: bool = False  # the rules wanted a change that hysteresis, a minimum time or the ramp held back
    dr: bool = False  # asleep for demand response
    usual: str = ""  # the mode it usually runs in (always-on)


@dataclass(slots=True)
class ActionEvent:
    """One step of one action on a miner (control sink): who, what, when, why, result."""

    ts: datetime
    miner: str
    action: str  # sleep | wake | mode
    # dry_run | sent | accepted | refused | error | confirmed | unconfirmed | skipped | taken_back | released
    result: str
    reason: str  # why the plan wants it
    detail: str = ""  # the firmware's answer, the error, what was checked
    # what was (or would have been) sent, e.g. ascset|0,softoff,1795780810 (`sent`, `dry_run`: <the miner's time>)
    command: str = ""
    host: str = ""
    kw: float = 0.0  # facility kW the change moves (negative: less draw)
    attempt: int = 0
    mode: str = ""  # the control mode that made it: dry_run | on


@dataclass
class CurtailmentPlan:
    site: str
    ts: datetime
    strategy: str
    price_usd_kwh: float
    price_source: str  # tariff | live | fallback | --price (`hashfleet advise --price`: a what-if)
    stale: bool  # the plan held: price or network data is stale
    stale_reason: str
    revenue_usd_th_day: float
    keys: dict[str, str] = field(default_factory=dict)  # every planned miner -> SLEEP or its mode
    advice: list[MinerAdvice] = field(default_factory=list)
    miners_planned: int = 0
    miners_run: int = 0
    miners_sleep: int = 0
    miners_lower: int = 0
    changes: int = 0
    held: int = 0
    deferred: int = 0  # changes the ramp limit kept for later cycles
    miners_off_plan: int = 0  # the polls show them otherwise than the plan had them (and has them now)
    planned_kw: float = 0.0  # the site's facility kW if the plan is followed (other miners and overhead included)
    always_on_kw: float = 0.0  # ... if every planned miner ran as usual
    drawn_kw: float = 0.0  # ... as this cycle's polls show it (a limit it is over is not met, whatever the plan)
    dr_target: DrTarget | None = None
    dr_need_kw: float = 0.0
    dr_met: bool = True
    # of the cover made this cycle (0: proven the cheapest, or none made): how much less the cheapest cover of
    # the kW needed could at most cost, $ of profit an hour (a large fleet's search stops at its node limit)
    dr_gap_usd_h: float = 0.0
    saved_usd_day: float = 0.0  # against always-on, at this price: rates now
    energy_saved_kwh_day: float = 0.0
    btc_forgone_day: float = 0.0
    saved_usd_total: float = 0.0  # integrated since `saved_since`
    energy_saved_kwh_total: float = 0.0
    btc_forgone_total: float = 0.0
    saved_since: float = 0.0
    control_mode: str = ControlMode.OFF.value  # set by the control sink
    killed: bool = False  # a kill switch is on (set by the control sink)
    events: list[ActionEvent] = field(default_factory=list)  # what control decided and learnt this cycle

    @property
    def dr_exact(self) -> bool:
        """The cover made this cycle is proven the cheapest (or none was made)."""
        return self.dr_gap_usd_h == 0

    @property
    def shed_kw(self) -> float:
        return self.always_on_kw - self.planned_kw
