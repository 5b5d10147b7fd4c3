"""Site economics, network state and the cost figures the engine derives from them.

Units live in the names: _usd, _kwh, _w, _ths, _btc, _pct, _s. Cost per BTC
fields are US dollars per net BTC mined; `breakeven_power_price` is $/kWh.
Formulas and definitions: docs/cost.md.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from models.base import Settings, http_url
from models.base import Strict as _Strict
from models.base import as_utc as _utc
from models.hardware import nameplate

# --- power tariffs -----------------------------------------------------------------------------


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def index(self) -> int:
        """Monday 0 .. Sunday 6, as datetime.weekday() counts."""
        return _WEEKDAY_INDEX[self]


_WEEKDAY_INDEX = {day: i for i, day in enumerate(Weekday)}


MAX_TARIFF_USD_KWH = 20.0  # as a live price is bounded (mqtt.power_price_max_usd_kwh's default)


def _per_kwh(value: float) -> float:
    if value > MAX_TARIFF_USD_KWH:  # (45 read as $/kWh made every cost per BTC $98M, unsaid: trial ZJ)
        raise ValueError(f"{value:g} $/kWh is above any power price (at most {MAX_TARIFF_USD_KWH:g}): a $/MWh "
                         f"figure? write {value / 1000:g}")
    return value


UsdPerKwh = Annotated[float, Field(ge=0), AfterValidator(_per_kwh)]


class FlatTariff(Settings):
    kind: Literal["flat"] = "flat"
    usd_per_kwh: UsdPerKwh


class TouBand(Settings):
    """One price for the local hours [start_hour, end_hour) on the listed days."""

    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24, description="exclusive; 24 means midnight at the end of the day")
    days: list[Weekday] = Field(default_factory=lambda: list(Weekday), min_length=1, max_length=7)
    usd_per_kwh: UsdPerKwh

    @field_validator("days", mode="before")
    @classmethod
    def _lower_days(cls, days: object) -> object:
        if isinstance(days, list):
            return [d.lower() if isinstance(d, str) else d for d in days]
        return days

    @model_validator(mode="after")
    def _hours_in_order(self) -> TouBand:
        if self.end_hour <= self.start_hour:
            raise ValueError(
                f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour}); "
                f"split a band that runs past midnight in two, e.g. {self.start_hour}-24 and 0-{self.end_hour}"
            )
        return self

    def label(self) -> str:
        return f"{','.join(d.value for d in self.days)} {self.start_hour:02d}-{self.end_hour:02d}h"


class TouTariff(Settings):
    """Time-of-use: every hour of every weekday, in the site's time zone, has exactly one band."""

    kind: Literal["tou"] = "tou"
    bands: list[TouBand] = Field(min_length=1, max_length=7 * 24)

    @model_validator(mode="after")
    def _cover_week_once(self) -> TouTariff:
        owner: dict[tuple[int, int], int] = {}
        for i, band in enumerate(self.bands):
            for day in band.days:
                for hour in range(band.start_hour, band.end_hour):
                    j = owner.setdefault((day.index, hour), i)
                    if j != i:
                        raise ValueError(
                            f"bands[{i}] ({band.label()}) overlaps bands[{j}] ({self.bands[j].label()}) "
                            f"on {day.value} at {hour:02d}:00; each hour must have one price"
                        )
        gaps = [(d, h) for d in Weekday for h in range(24) if (d.index, h) not in owner]
        if gaps:
            day, hour = gaps[0]
            more = f" and {len(gaps) - 1} more hour(s)" if len(gaps) > 1 else ""
            raise ValueError(f"no band covers {day.value} {hour:02d}:00-{hour + 1:02d}:00{more}; add a band for it")
        return self

    def usd_per_kwh_at(self, weekday: int, hour: int) -> float:
        """The price for a local weekday (Monday 0) and hour (0-23)."""
        for band in self.bands:
            if band.start_hour <= hour < band.end_hour and any(d.index == weekday for d in band.days):
                return band.usd_per_kwh
        raise LookupError(f"no band for weekday {weekday} hour {hour}")  # unreachable after validation


class LiveTariff(Settings):
    """A price fed at run time (MQTT, later); the fallback is used, and flagged, when the feed is old or absent."""

    kind: Literal["live"] = "live"
    fallback_usd_per_kwh: UsdPerKwh
    max_age_s: float = Field(default=900, gt=0)


Tariff = Annotated[FlatTariff | TouTariff | LiveTariff, Field(discriminator="kind")]


class LivePowerPrice(Settings):
    """The latest live power price. Real-time markets do go negative, so no lower bound here."""

    usd_per_kwh: float
    as_of: datetime

    @field_validator("as_of")
    @classmethod
    def _as_of_utc(cls, ts: datetime) -> datetime | None:
        return _utc(ts)


# --- site economics ----------------------------------------------------------------------------


class Capex(Settings):
    """Hardware cost, depreciated straight-line from purchase_date over life_months down to salvage."""

    price_usd: float = Field(ge=0)
    life_months: int = Field(gt=0, le=1200)
    salvage_usd: float = Field(default=0, ge=0)
    purchase_date: date | None = Field(default=None, description="None: in service, depreciating, at any date")

    @field_validator("purchase_date")
    @classmethod
    def _plausible_date(cls, day: date | None) -> date | None:
        if day is not None and not 1970 <= day.year <= 2200:
            raise ValueError(f"{day.isoformat()} is not a plausible purchase date")
        return day

    @model_validator(mode="after")
    def _salvage_below_price(self) -> Capex:
        if self.salvage_usd > self.price_usd:
            raise ValueError(f"salvage_usd ({self.salvage_usd}) must not exceed price_usd ({self.price_usd})")
        return self


MAX_PUE = 3.0


class SiteEconomics(Settings):
    timezone: str = Field(default="UTC", description="IANA name; time-of-use bands, days and months are local to it")
    tariff: Tariff
    demand_charge_usd_kw_month: float = Field(default=0, ge=0, description="on the month's peak facility kW")
    pue: float | None = Field(default=None, ge=1, description="facility power / miner power; set this or overhead_w")
    overhead_w: float | None = Field(default=None, ge=0, description="fixed cooling and transformer watts for the site")
    pool_fee_pct: float = Field(default=0, ge=0, lt=100)
    opex_usd_month: float = Field(default=0, ge=0, description="hosting, staff, maintenance, SG&A share")
    capex_by_model: dict[str, Capex] = Field(default_factory=dict, max_length=10_000,
                                             description="keyed by the model as the miner reports it, or any of the "
                                                         "catalogue's names for it (models/hardware.py)")
    capex_by_miner: dict[str, Capex] = Field(default_factory=dict, max_length=100_000,
                                             description="keyed by MinerSample.miner; wins over model")
    curtailment_credit_usd_mwh: float = Field(default=0, ge=0, description="paid per MWh not drawn by soft-off miners")
    estimate_missing_power: Literal["nameplate"] | None = Field(
        default=None, description="nameplate: a hashing miner that reports no power is costed at its model's "
                                  "nameplate draw, scaled by its hashrate (marked miners_estimated) instead of left "
                                  "out; off (the default): left out (docs/cost.md)")

    @field_validator("estimate_missing_power", mode="before")
    @classmethod
    def _off_is_none(cls, value: object) -> object:
        # YAML reads a bare `off` (or `no`, `false`) as False: the documented default either way.
        return None if value is False or value == "off" else value

    @field_validator("pue")
    @classmethod
    def _pue_a_ratio(cls, pue: float | None) -> float | None:
        # No site draws three times its miners' power (air-cooled mining runs ~1.02-1.15); more is a percent
        # or a typo (trial ZB: `pue: 108` was taken, the cost per BTC 100 times over and no word said).
        if pue is not None and pue > MAX_PUE:
            raise ValueError(f"a PUE is facility power / miner power, e.g. 1.08 for 8 % overhead, at most {MAX_PUE:g} "
                             f"(got {pue:g}: a percent?)")
        return pue

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'America/Chicago' or 'UTC'") from None
        return name

    @model_validator(mode="after")
    def _one_overhead_model(self) -> SiteEconomics:
        if self.pue is not None and self.overhead_w is not None:
            raise ValueError("set pue or overhead_w, not both: overhead is either proportional or fixed")
        return self

    # capex_by_model's entries by the catalogue model their keys name ("A1566" -> "AvalonMiner 15-194"), resolved
    # once, at load (the validator below), not per miner per cycle; the first key naming a model is its entry.
    # (A cached property, not a pydantic private attribute: reading one of those costs ~1 us, per miner.)
    @functools.cached_property
    def capex_by_catalogue_model(self) -> dict[str, Capex]:
        resolved: dict[str, Capex] = {}
        for key, capex in self.capex_by_model.items():
            plate = nameplate(key)
            if plate is not None:
                resolved.setdefault(plate.model, capex)
        return resolved

    @model_validator(mode="after")
    def _resolve_capex_models(self) -> SiteEconomics:
        self.capex_by_catalogue_model  # resolved now, at load
        return self

    def capex_of_model(self, model: str) -> Capex | None:
        """The capex entry for a model as a miner reports it: its exact key, else the entry of a key that
        names the same catalogue model (a miner reporting "AvalonMiner 15-194" finds the key "A1566")."""
        found = self.capex_by_model.get(model)
        if found is None and self.capex_by_catalogue_model:
            plate = nameplate(model)  # (cached per model string)
            if plate is not None:
                found = self.capex_by_catalogue_model.get(plate.model)
        return found

    def uncatalogued_capex_models(self) -> list[str]:
        """capex_by_model's keys that name no catalogued model: they apply only to a miner reporting exactly that."""
        return [key for key in self.capex_by_model if nameplate(key) is None]


# --- network state -----------------------------------------------------------------------------

NetworkInput = Literal["difficulty", "height", "fees", "btc_price"]


class NetworkState(Settings):
    """Bitcoin network and market values. `*_as_of` is when each was fetched (None: a static config value)."""

    difficulty: float = Field(gt=0)
    height: int | None = Field(default=None, ge=0)
    subsidy_btc: float | None = Field(default=None, ge=0, le=50, description="overrides the subsidy derived from height")
    fees_btc_per_block: float = Field(default=0, ge=0, description="mean transaction fees per block")
    btc_price_usd: float = Field(gt=0)

    difficulty_as_of: datetime | None = None
    height_as_of: datetime | None = None
    fees_as_of: datetime | None = None
    btc_price_as_of: datetime | None = None
    stale: list[NetworkInput] = Field(default_factory=list, description="inputs older than the source's max age")

    @field_validator("difficulty_as_of", "height_as_of", "fees_as_of", "btc_price_as_of")
    @classmethod
    def _as_of_utc(cls, ts: datetime | None) -> datetime | None:
        return _utc(ts)

    @model_validator(mode="after")
    def _subsidy_known(self) -> NetworkState:
        if self.height is None and self.subsidy_btc is None:
            raise ValueError("give height (the subsidy follows from it) or subsidy_btc")
        return self


class NetworkFeedConfig(Settings):
    """Where network state comes from: static config values (the default, works offline) or HTTP polling.

    In http mode `static`, when given, stands in (flagged stale) for a value never fetched yet.
    The default URLs are mempool.space's; any server answering in the same format will do.
    """

    source: Literal["static", "http"] = "static"
    static: NetworkState | None = None
    difficulty_url: str = "https://mempool.space/api/v1/mining/hashrate/3d"
    height_url: str = "https://mempool.space/api/blocks/tip/height"
    fees_url: str = "https://mempool.space/api/v1/mining/blocks/fees/24h"
    price_url: str = "https://mempool.space/api/v1/prices"
    price_field: str = Field(default="USD", description="dotted path to the USD price in the price reply, e.g. data.amount")
    timeout_s: float = Field(default=10, gt=0, le=600)
    max_age_s: float = Field(default=900, gt=0, description="older values are flagged stale")

    @field_validator("difficulty_url", "height_url", "fees_url", "price_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return http_url(url, base=False)  # (an API's own ?query is allowed here: nothing is appended)

    @model_validator(mode="after")
    def _static_has_values(self) -> NetworkFeedConfig:
        if self.source == "static" and self.static is None:
            raise ValueError("source 'static' needs the values under 'static' (difficulty, height, btc_price_usd, ...)")
        return self


# --- cost figures ------------------------------------------------------------------------------


class CostScope(StrEnum):
    MINER = "miner"
    SITE = "site"
    FLEET = "fleet"


class CostSample(_Strict):
    """Cost figures for one miner, one site or the fleet at one instant.

    `*_day` fields are rates now (what a day at this instant would be); `*_today` and `*_month`
    are what was really used, spent and mined since local midnight / the 1st (None until the
    accumulator has run). Additive fields sum across miners; ratios are recomputed from sums.
    Every figure is finite: one that is not is a ValidationError, never a point.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scope: CostScope
    site: str | None
    miner: str | None = None
    ts: datetime

    miners: int = Field(ge=0)
    miners_mining: int = Field(ge=0)
    miners_left_out: int = Field(ge=0, description="miners without a usable hashrate or power reading: "
                                                   "in no figure but the fixed costs (missing_inputs)")
    miners_estimated: int = Field(default=0, ge=0, description="miners costed on a nameplate estimate of their draw "
                                                               "(economics.estimate_missing_power), not a reading")
    estimated_power_w: float = Field(default=0.0, description="the part of power_w that is those estimates")
    hashrate_ths: float
    power_w: float = Field(description="reported miner draw")
    facility_power_w: float = Field(description="miner draw with PUE or its share of overhead")
    efficiency_j_th: float | None

    btc_per_day: float
    btc_per_day_net: float = Field(description="after pool fee")
    hashprice_usd_ph_day: float = Field(description="gross network hashprice")
    hashcost_usd_ph_day: float | None = Field(description="power cost per PH/s per day")
    power_price_usd_kwh: float | None = Field(description="tariff in force now")

    energy_kwh_day: float
    energy_usd_day: float = Field(description="energy_kwh_day at the tariff in force now")
    demand_usd_day: float = Field(description="demand charge if the present draw were the month's peak")
    curtailment_credit_usd_day: float
    opex_usd_day: float
    depreciation_usd_day: float

    energy_cost_per_btc: float | None = Field(description="(energy + demand - credits) / net BTC, USD")
    cash_cost_per_btc: float | None = Field(description="energy cost + opex per net BTC, USD")
    all_in_cost_per_btc: float | None = Field(description="cash cost + depreciation per net BTC, USD")
    breakeven_power_price: float | None = Field(description="$/kWh at which energy equals revenue")
    revenue_usd_day: float
    profit_usd_day: float = Field(description="revenue - all-in cost")
    margin_pct: float | None = Field(description="profit / revenue x 100")

    energy_kwh_today: float | None = None
    power_usd_today: float | None = Field(default=None, description="energy + demand - credits")
    cash_usd_today: float | None = None
    all_in_usd_today: float | None = None
    btc_today: float | None = None
    revenue_usd_today: float | None = None
    energy_kwh_month: float | None = None
    power_usd_month: float | None = None
    cash_usd_month: float | None = None
    all_in_usd_month: float | None = None
    btc_month: float | None = None
    revenue_usd_month: float | None = None
    cash_cost_per_btc_month: float | None = None
    all_in_cost_per_btc_month: float | None = None

    stale_inputs: list[str] = Field(default_factory=list, description="inputs used although older than their max age")
    missing_inputs: list[str] = Field(default_factory=list, description="readings absent or refused: the miners "
                                                                       "lacking one are left out (miners_left_out)")

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, ts: datetime) -> datetime | None:
        return _utc(ts)

    @model_validator(mode="after")
    def _miner_scope_names_miner(self) -> CostSample:
        if (self.scope is CostScope.MINER) != (self.miner is not None):
            raise ValueError("miner is required for scope 'miner' and must be None otherwise")
        return self

    @property
    def stale(self) -> bool:
        return bool(self.stale_inputs)

    def tags(self) -> dict[str, str]:
        """InfluxDB tags for measurement `cost`."""
        tags = {"scope": self.scope.value}
        if self.site is not None:
            tags["site"] = self.site
        if self.miner is not None:
            tags["miner"] = self.miner
        return tags

    def fields(self) -> dict[str, float]:
        """InfluxDB fields: every known number as a float, plus stale and incomplete as 0/1."""
        out: dict[str, float] = {}
        for name, value in self:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = float(value)
        out["stale"] = 1.0 if self.stale_inputs else 0.0
        out["incomplete"] = 1.0 if self.missing_inputs else 0.0
        return out
