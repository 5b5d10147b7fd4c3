"""The cost engine: miner telemetry + site economics + network state in, cost figures out.

Pure: no clock reads and no I/O; time is an argument, so the same inputs always give the same
outputs. Definitions, formulas and the reference checks are in docs/cost.md.

Two views:
- rates now (`miner_cost`, `site_cost`, `fleet_cost`): what a day would cost and mine at this
  instant's telemetry, tariff and network state;
- what really happened (`advance`): energy, money and BTC integrated over time since local
  midnight and the 1st of the month, split at every local hour so time-of-use bands, midnight and
  month starts are each charged at their own price.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from collector.network_revenue import SECONDS_PER_DAY, btc_per_day, network_subsidy_btc
from models.economics import (
    Capex,
    CostSample,
    CostScope,
    FlatTariff,
    LivePowerPrice,
    LiveTariff,
    NetworkState,
    SiteEconomics,
    TouTariff,
)
from models.base import is_fresh
from models.hardware import POWER_FACTOR, nameplate
from models.sample import MinerSample, MinerState

# Monthly figures become a daily rate with the average month, so rates do not jump on the 1st.
DAYS_PER_MONTH = 365.25 / 12
# Running-totals key for what no present miner carries: a site's fixed costs while it has no
# miners, and what miners unseen for longer than `forget_after_s` spent (MinerSample.miner is never "").
UNALLOCATED = ""

UTC = timezone.utc


# --- network revenue (the formulas: collector/network_revenue.py) ------------------------------


def hashprice_usd_ph_day(difficulty: float, subsidy_btc: float, fees_btc: float, btc_price_usd: float) -> float:
    """Gross revenue of 1 PH/s for a day, in USD."""
    return btc_per_day(1000.0, difficulty, subsidy_btc, fees_btc) * btc_price_usd


def hashcost_usd_ph_day(efficiency_j_th: float, usd_per_kwh: float, pue: float = 1.0) -> float:
    """Power cost of 1 PH/s for a day: J/TH x $/kWh x 24 (x PUE for the facility)."""
    return efficiency_j_th * usd_per_kwh * 24 * pue


def network_hashprice(network: NetworkState) -> float:
    return hashprice_usd_ph_day(
        network.difficulty, network_subsidy_btc(network), network.fees_btc_per_block, network.btc_price_usd
    )


# --- power price -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PowerPrice:
    usd_per_kwh: float
    stale: bool = False  # live tariff without a fresh price: the fallback was used


def power_price_at(economics: SiteEconomics, at: datetime, live: LivePowerPrice | None = None) -> PowerPrice:
    """The tariff in force at instant `at`; time-of-use bands are read in the site's time zone."""
    tariff = economics.tariff
    if isinstance(tariff, FlatTariff):
        return PowerPrice(tariff.usd_per_kwh)
    if isinstance(tariff, TouTariff):
        local = at.astimezone(ZoneInfo(economics.timezone))
        return PowerPrice(tariff.usd_per_kwh_at(local.weekday(), local.hour))
    assert isinstance(tariff, LiveTariff)
    if live is not None and is_fresh(live.as_of, at, tariff.max_age_s):
        return PowerPrice(live.usd_per_kwh)
    return PowerPrice(tariff.fallback_usd_per_kwh, stale=True)


# --- fixed costs -------------------------------------------------------------------------------


def fixed_shares(samples: Sequence[MinerSample],
                 carries: Callable[[MinerSample], bool] | None = None) -> Callable[[MinerSample], float]:
    """Each miner's part of the site's fixed costs (opex, fixed overhead watts): an even split over
    the miners that `carries` picks, 0 for the others; over every miner when `carries` is None or
    picks none (the costs must land somewhere)."""
    if carries is not None:
        carriers = sum(1 for s in samples if carries(s))
        if carriers:
            return lambda s: 1 / carriers if carries(s) else 0.0
    share = 1 / len(samples) if samples else 1.0
    return lambda s: share


# --- capex -------------------------------------------------------------------------------------


def _add_months(day: date, months: int) -> date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    next_first = date(year + month // 12, month % 12 + 1, 1)
    return date(year, month, min(day.day, (next_first - timedelta(days=1)).day))


def depreciation_usd_month(capex: Capex | None, on: date) -> float:
    """Straight line: (price - salvage) / life a month while in service, 0 before purchase and after life."""
    if capex is None:
        return 0.0
    if capex.purchase_date is not None:
        if not capex.purchase_date <= on < _add_months(capex.purchase_date, capex.life_months):
            return 0.0
    return (capex.price_usd - capex.salvage_usd) / capex.life_months


def capex_for(sample: MinerSample, economics: SiteEconomics) -> Capex | None:
    """The miner's own capex entry, else its model's."""
    if sample.miner in economics.capex_by_miner:
        return economics.capex_by_miner[sample.miner]
    return economics.capex_of_model(sample.model) if sample.model else None


# --- one miner's physical flows ----------------------------------------------------------------


@dataclass(frozen=True)
class MinerFlows:
    """What one miner draws and mines now. fixed_share is its part of the site's fixed costs."""

    mining: bool
    hashrate_ths: float
    power_w: float
    facility_w: float
    curtailed_w: float  # facility watts a soft-off miner is not drawing (earns curtailment credits)
    btc_per_day: float
    btc_per_day_net: float
    depreciation_usd_month: float
    fixed_share: float
    missing: tuple[str, ...]
    estimated: bool = False  # power_w is a nameplate estimate (`nameplate_draw_w`), not a reading


_HASHING_STATES = (MinerState.MINING, MinerState.ERROR)  # error: answered with a fault, may still hash
# A miner with either of these refused (MinerSample.unusable: not finite, implausible for its
# model) has no usable reading: its other one is not trusted either, and it counts as incomplete.
_COST_READINGS = frozenset({"hashrate_ths", "power_w"})
_BOTH_READINGS = ("hashrate_ths", "power_w")
_NO_POWER = ("power_w",)


def counted_readings(sample: MinerSample) -> tuple[float, float, tuple[str, ...]]:
    """The hashrate and power the cost counts for this miner, and the readings it lacks (refused ones
    included). A hashing miner needs both; any other one that answers, its power. A miner lacking one
    counts with neither: left out of its site's hashrate, power, BTC and energy alike, so that every
    figure is over the same miners (its BTC at 0 W would be free revenue; docs/cost.md)."""
    state, hashrate, power = sample.state, sample.hashrate_ths, sample.power_w
    if sample.unusable and not _COST_READINGS.isdisjoint(sample.unusable):
        return 0.0, 0.0, _BOTH_READINGS
    if state in _HASHING_STATES:
        if hashrate is not None and power is not None:  # (the common case first: this runs per miner per cycle)
            return hashrate, power, ()
        if hashrate is None:
            return 0.0, 0.0, ("hashrate_ths",) if power is not None else _BOTH_READINGS
        return 0.0, 0.0, _NO_POWER
    if state is MinerState.OFFLINE:
        return 0.0, power or 0.0, ()  # silence is expected: it mines nothing and draws what it reports, if anything
    return (0.0, power, ()) if power is not None else (0.0, 0.0, _NO_POWER)


def nameplate_draw_w(sample: MinerSample) -> float | None:
    """What a hashing miner that reports no power draws, estimated from its model's nameplate (docs/cost.md
    "Estimating a missing draw"); None where its nameplate lacks either figure or is a chain's module
    (a chain is many modules) or it hashes nothing. Linear in hashrate at the nameplate's J/TH: the hash
    boards draw most of the power and scale with the hashing they do (a dead board of three takes about
    a third of the draw with it); capped at POWER_FACTOR x the nameplate watts, the most a power reading
    of that model may say before the source refuses it, so a hashrate near its own 3x ceiling cannot make
    a draw no reading would be allowed."""
    plate = nameplate(sample.model)  # (cached per model string)
    hashrate = sample.hashrate_ths
    if plate is None or plate.module or not plate.hashrate_ths or not plate.power_w or not hashrate or hashrate < 0:
        return None
    return min(plate.power_w * hashrate / plate.hashrate_ths, POWER_FACTOR * plate.power_w)


def miner_flows(
    sample: MinerSample, economics: SiteEconomics, network: NetworkState, at: datetime, fixed_share: float = 1.0
) -> MinerFlows:
    """Hashrate, power and expected BTC of one miner. Off, idle and offline miners mine nothing,
    but what power they report still costs; a miner missing a reading (`counted_readings`) counts
    with neither hashrate nor power, flagged: only its fixed costs remain; unless the site opted in to
    `estimate_missing_power` and it hashes with no power reported (none refused) and its model has a
    nameplate: then it counts with its nameplate draw, flagged `estimated`."""
    hashrate, power, missing = counted_readings(sample)
    estimated = False
    if missing is _NO_POWER and economics.estimate_missing_power and sample.state in _HASHING_STATES:
        estimate = nameplate_draw_w(sample)
        if estimate is not None:
            hashrate, power, missing, estimated = sample.hashrate_ths, estimate, (), True
    if missing:
        # Left out: none of its share of the fixed costs either, so the cost per BTC is over the same miners as
        # the BTC (trial ZF: 4 stock Antminers of 14 left out put the site's all-in cost per BTC 16 % high).
        fixed_share = 0.0
    pue = economics.pue or 1.0
    if economics.overhead_w is not None:
        facility = power + economics.overhead_w * fixed_share
    else:
        facility = power * pue
    curtailed = 0.0
    if sample.state is MinerState.SOFT_OFF and sample.power_limit_w is not None and not missing:
        curtailed = max(0.0, sample.power_limit_w - power) * pue
    gross = btc_per_day(hashrate, network.difficulty, network_subsidy_btc(network), network.fees_btc_per_block)
    local_day = at.astimezone(ZoneInfo(economics.timezone)).date()
    return MinerFlows(
        mining=sample.state is MinerState.MINING,
        hashrate_ths=hashrate,
        power_w=power,
        facility_w=facility,
        curtailed_w=curtailed,
        btc_per_day=gross,
        btc_per_day_net=gross * (1 - economics.pool_fee_pct / 100),
        depreciation_usd_month=0.0 if missing else depreciation_usd_month(capex_for(sample, economics), local_day),
        fixed_share=fixed_share,
        missing=missing,
        estimated=estimated,
    )


# --- rates now: miner, site, fleet -------------------------------------------------------------

# Fields that add up across miners, sites and the fleet; every other number is derived from them.
_ADDITIVE_RATES = (
    "miners", "miners_mining", "miners_left_out", "miners_estimated", "estimated_power_w", "hashrate_ths", "power_w",
    "facility_power_w", "btc_per_day", "btc_per_day_net", "energy_kwh_day", "energy_usd_day", "demand_usd_day", "curtailment_credit_usd_day",
    "opex_usd_day", "depreciation_usd_day", "revenue_usd_day",
)
_ADDITIVE_TOTALS = (
    "energy_kwh_today", "power_usd_today", "cash_usd_today", "all_in_usd_today", "btc_today", "revenue_usd_today",
    "energy_kwh_month", "power_usd_month", "cash_usd_month", "all_in_usd_month", "btc_month", "revenue_usd_month",
)


def _per(numerator: float, denominator: float) -> float | None:
    # Cost per BTC with nothing mined is undefined, not infinite; so is one over a denormal (5e-324).
    if denominator > 0:
        ratio = numerator / denominator
        if math.isfinite(ratio):
            return ratio
    return None


def _derive(
    scope: CostScope,
    site: str | None,
    miner: str | None,
    ts: datetime,
    hashprice: float,
    power_price: float | None,
    sums: Mapping[str, float],
    totals: Mapping[str, float | None],
    stale: Sequence[str],
    missing: Sequence[str],
) -> CostSample:
    power_usd = sums["energy_usd_day"] + sums["demand_usd_day"] - sums["curtailment_credit_usd_day"]
    cash_usd = power_usd + sums["opex_usd_day"]
    all_in_usd = cash_usd + sums["depreciation_usd_day"]
    net = sums["btc_per_day_net"]
    hashrate = sums["hashrate_ths"]
    revenue = sums["revenue_usd_day"]
    profit = revenue - all_in_usd
    margin = _per(profit, revenue)
    return CostSample(
        scope=scope,
        site=site,
        miner=miner,
        ts=ts,
        **{name: sums[name] for name in _ADDITIVE_RATES},
        # Over the same miners as the BTC and the energy (counted_readings): the break-even's J/TH.
        efficiency_j_th=_per(sums["power_w"], hashrate),
        hashprice_usd_ph_day=hashprice,
        hashcost_usd_ph_day=_per(power_usd, hashrate / 1000),
        power_price_usd_kwh=power_price,
        energy_cost_per_btc=_per(power_usd, net),
        cash_cost_per_btc=_per(cash_usd, net),
        all_in_cost_per_btc=_per(all_in_usd, net),
        breakeven_power_price=_per(revenue, sums["energy_kwh_day"]),
        profit_usd_day=profit,
        margin_pct=None if margin is None else margin * 100,
        **totals,
        **_month_cost_per_btc(totals),
        stale_inputs=sorted(set(stale)),
        missing_inputs=sorted(set(missing)),
    )


def _month_cost_per_btc(totals: Mapping[str, float | None]) -> dict[str, float | None]:
    btc, cash, all_in = totals.get("btc_month"), totals.get("cash_usd_month"), totals.get("all_in_usd_month")
    if btc is None or cash is None or all_in is None:
        return {}
    return {"cash_cost_per_btc_month": _per(cash, btc), "all_in_cost_per_btc_month": _per(all_in, btc)}


def _stale_inputs(network: NetworkState, price: PowerPrice) -> list[str]:
    return [*network.stale, *(["power_price"] if price.stale else [])]


def _rate_sums(
    flows: MinerFlows | None, economics: SiteEconomics, network: NetworkState, price: PowerPrice
) -> dict[str, float]:
    """Daily rates of one miner, or (flows None) of an empty site's fixed costs alone."""
    if flows is None:
        facility_w, fixed_share = economics.overhead_w or 0.0, 1.0
        flows = MinerFlows(False, 0.0, 0.0, facility_w, 0.0, 0.0, 0.0, 0.0, fixed_share, ())
        miners = 0
    else:
        miners = 1
    energy_kwh_day = flows.facility_w * 24 / 1000
    return {
        "miners": miners,
        "miners_mining": int(flows.mining),
        "miners_left_out": int(bool(flows.missing)),
        "miners_estimated": int(flows.estimated),
        "estimated_power_w": flows.power_w if flows.estimated else 0.0,
        "hashrate_ths": flows.hashrate_ths,
        "power_w": flows.power_w,
        "facility_power_w": flows.facility_w,
        "btc_per_day": flows.btc_per_day,
        "btc_per_day_net": flows.btc_per_day_net,
        "energy_kwh_day": energy_kwh_day,
        "energy_usd_day": energy_kwh_day * price.usd_per_kwh,
        "demand_usd_day": flows.facility_w / 1000 * economics.demand_charge_usd_kw_month / DAYS_PER_MONTH,
        "curtailment_credit_usd_day": flows.curtailed_w * 24 / 1e6 * economics.curtailment_credit_usd_mwh,
        "opex_usd_day": economics.opex_usd_month * flows.fixed_share / DAYS_PER_MONTH,
        "depreciation_usd_day": flows.depreciation_usd_month / DAYS_PER_MONTH,
        "revenue_usd_day": flows.btc_per_day_net * network.btc_price_usd,
    }


def miner_cost(
    sample: MinerSample,
    economics: SiteEconomics,
    network: NetworkState,
    now: datetime,
    *,
    fixed_share: float = 1.0,
    live_price: LivePowerPrice | None = None,
    totals: tuple[Totals, Totals] | None = None,
) -> CostSample:
    """Cost figures of one miner now. fixed_share: its part of the site's opex and overhead watts
    (1.0 when it is the whole site, as in the what-if calculator; site_cost passes 1/n).
    totals: what it really used, spent and mined (today, this month), as `with_totals` adds them."""
    price = power_price_at(economics, now, live_price)
    flows = miner_flows(sample, economics, network, now, fixed_share)
    return _derive(
        CostScope.MINER, sample.site, sample.miner, now, network_hashprice(network), price.usd_per_kwh,
        _rate_sums(flows, economics, network, price), _totals_fields(*totals) if totals else {},
        _stale_inputs(network, price), flows.missing,
    )


class Rollup:
    """Children's figures summed as they arrive, so a site's roll-up needs no list of its miners
    (the collect loop costs 10,000 miners a chunk at a time). `rollup` is this over a list."""

    def __init__(self) -> None:
        self.children = 0
        self._sums: dict[str, float] = dict.fromkeys(_ADDITIVE_RATES, 0)  # int 0: `miners` stays an int
        self._totals: dict[str, float] = dict.fromkeys(_ADDITIVE_TOTALS, 0.0)
        self._all_have_totals = True
        self._prices: set[float | None] = set()
        self._hashprice = 0.0
        self._stale: set[str] = set()
        self._missing: set[str] = set()

    def add(self, child: CostSample) -> None:
        if not self.children:
            self._hashprice = child.hashprice_usd_ph_day
        self.children += 1
        sums = self._sums
        for name in _ADDITIVE_RATES:
            sums[name] += getattr(child, name)
        if child.btc_month is None:
            self._all_have_totals = False
        elif self._all_have_totals:
            for name in _ADDITIVE_TOTALS:
                self._totals[name] += getattr(child, name) or 0.0
        self._prices.add(child.power_price_usd_kwh)
        self._stale.update(child.stale_inputs)
        self._missing.update(child.missing_inputs)

    def result(self, scope: CostScope, site: str | None, ts: datetime) -> CostSample:
        """Every ratio recomputed from the sums (never an average of ratios)."""
        if not self.children:
            raise ValueError("a roll-up needs at least one child")
        sums = self._sums
        if sums["energy_kwh_day"] > 0:
            power_price: float | None = sums["energy_usd_day"] / sums["energy_kwh_day"]  # kWh-weighted
        else:
            power_price = next(iter(self._prices)) if len(self._prices) == 1 else None
        totals = self._totals if self._all_have_totals else {}
        return _derive(scope, site, None, ts, self._hashprice, power_price, sums, totals, self._stale, self._missing)


def rollup(children: Sequence[CostSample], scope: CostScope, site: str | None, ts: datetime) -> CostSample:
    """Sum children's additive figures and recompute every ratio from the sums (never average ratios)."""
    acc = Rollup()
    for child in children:
        acc.add(child)
    return acc.result(scope, site, ts)


@dataclass(frozen=True)
class SiteCost:
    site: CostSample
    miners: list[CostSample]


def site_cost(
    site: str,
    samples: Sequence[MinerSample],
    economics: SiteEconomics,
    network: NetworkState,
    now: datetime,
    *,
    live_price: LivePowerPrice | None = None,
) -> SiteCost:
    """Every miner of a site and their roll-up. Opex and fixed overhead watts are split evenly
    across the miners polled, so an offline miner keeps carrying its share; an empty site still
    shows its fixed costs."""
    check_site(site, samples)
    share = 1 / len(samples) if samples else 1.0
    miners = [miner_cost(s, economics, network, now, fixed_share=share, live_price=live_price) for s in samples]
    if miners:
        return SiteCost(rollup(miners, CostScope.SITE, site, now), miners)
    return SiteCost(empty_site_cost(site, economics, network, now, live_price=live_price), [])


def check_site(site: str, samples: Iterable[MinerSample]) -> None:
    strangers = sorted({s.site for s in samples if s.site != site})
    if strangers:
        raise ValueError(f"samples from site(s) {strangers} passed to the cost of site {site!r}")


def empty_site_cost(site: str, economics: SiteEconomics, network: NetworkState, now: datetime, *,
                    live_price: LivePowerPrice | None = None) -> CostSample:
    """A site with no miners still carries its fixed costs (opex, overhead watts)."""
    price = power_price_at(economics, now, live_price)
    return _derive(
        CostScope.SITE, site, None, now, network_hashprice(network), price.usd_per_kwh,
        _rate_sums(None, economics, network, price), {}, _stale_inputs(network, price), (),
    )


def fleet_cost(sites: Sequence[CostSample], now: datetime) -> CostSample:
    """The fleet: site figures summed; today/month totals are each site's own local day and month."""
    return rollup(sites, CostScope.FLEET, None, now)


# --- what really happened: running totals since local midnight and the 1st ---------------------


@dataclass(frozen=True)
class Totals:
    """Integrated amounts over a period. power_usd = energy at the tariff + demand charge - credits."""

    energy_kwh: float = 0.0
    power_usd: float = 0.0
    opex_usd: float = 0.0
    depreciation_usd: float = 0.0
    btc: float = 0.0  # net of pool fee
    revenue_usd: float = 0.0

    @property
    def cash_usd(self) -> float:
        return self.power_usd + self.opex_usd

    @property
    def all_in_usd(self) -> float:
        return self.cash_usd + self.depreciation_usd

    def __add__(self, other: Totals) -> Totals:
        # Spelled out: this runs per miner per interval, and reflection is several times slower.
        return Totals(
            self.energy_kwh + other.energy_kwh,
            self.power_usd + other.power_usd,
            self.opex_usd + other.opex_usd,
            self.depreciation_usd + other.depreciation_usd,
            self.btc + other.btc,
            self.revenue_usd + other.revenue_usd,
        )


def _sum_totals(values: Iterable[Totals]) -> Totals:
    out = Totals()
    for v in values:
        out = out + v
    return out


@dataclass(frozen=True)
class RolledAway:
    """What the last rollover took off the books, kept until the next one. A clock that is ahead (a box
    booted with a wrong time, NTP not answering yet) crosses midnight or the 1st early; stepped back to the
    day the books held before, the rollover is undone and these amounts come back (`_roll_calendar`)."""

    day: date  # the day `today` was of
    today: Mapping[str, Totals]
    demand_from: datetime | None
    # A month's rollover also reset the month's books and demand charge (None after a day's: they carried on).
    month_to_date: Mapping[str, Totals] | None = None
    peak_kw: float = 0.0
    demand_usd: float = 0.0


@dataclass(frozen=True)
class StepBack:
    """The clock stepped back under the books (`carried_back`), until it is where it was again. A clock
    that was ahead and is now right catches up cycle by cycle; one that is now behind (a box whose clock
    lost its time in a power cut boots days or years behind) jumps back when NTP answers. Then the step
    was the mistake: the books were `was_at`'s day's all along, and the times moved back return."""

    was_at: datetime  # the books' as_of when the clock was first stepped back
    moved: timedelta  # how far back their times were moved (the steps' sum)


@dataclass(frozen=True)
class RunningTotals:
    """Accumulator state for one site. Never mutated: `advance` returns a new one.

    today / month_to_date are keyed by miner id (UNALLOCATED for fixed costs of a site with no
    miners, and for miners forgotten after `forget_after_s` unseen). The month's demand charge is
    peak_kw x rate, accrued pro rata over the month from demand_from and trued up when the peak rises.
    rolled_away: what the last midnight or 1st took off the books, in case the clock goes back over it.
    step_back: the clock stepped back under them, until it is where it was again (`StepBack`).
    """

    as_of: datetime  # end of the last interval integrated
    day: date  # local date of `today`
    month: date  # first day of the local month of `month_to_date`
    today: Mapping[str, Totals] = field(default_factory=dict)
    month_to_date: Mapping[str, Totals] = field(default_factory=dict)
    peak_kw: float = 0.0
    demand_usd: float = 0.0
    demand_from: datetime | None = None
    last_seen: Mapping[str, datetime] = field(default_factory=dict)  # by miner: end of the last interval it was in
    rolled_away: RolledAway | None = None
    step_back: StepBack | None = None

    def site_today(self) -> Totals:
        return _sum_totals(self.today.values())

    def site_month(self) -> Totals:
        return _sum_totals(self.month_to_date.values())


def _next_local_hour(t: datetime, tz: ZoneInfo) -> datetime:
    """The next instant after t where the local wall clock shows a whole hour (DST-safe)."""
    wall = t.astimezone(tz).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    while True:
        wall += timedelta(hours=1)
        boundary = wall.replace(tzinfo=tz).astimezone(UTC)
        if boundary > t:
            return boundary


def _month_seconds(local: datetime, tz: ZoneInfo) -> float:
    first = datetime(local.year, local.month, 1, tzinfo=tz)
    following = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=tz)
    return (following.astimezone(UTC) - first.astimezone(UTC)).total_seconds()


def _roll_calendar(state: RunningTotals, start: datetime, tz: ZoneInfo) -> RunningTotals:
    local_day = start.astimezone(tz).date()
    if local_day == state.day:  # every cycle but one a day
        return state
    if local_day < state.day:  # the clock went back over midnight (carried_back)
        rolled = state.rolled_away
        if rolled is not None and local_day <= rolled.day:
            return _undo_rollover(state, rolled, local_day, start)
        return replace(state, day=local_day, month=local_day.replace(day=1))  # the books are kept, relabelled
    month = local_day.replace(day=1)
    if month != state.month:
        return RunningTotals(as_of=state.as_of, day=local_day, month=month, demand_from=start, rolled_away=RolledAway(
            state.day, state.today, state.demand_from, state.month_to_date, state.peak_kw, state.demand_usd))
    return replace(state, day=local_day, today={}, rolled_away=RolledAway(state.day, state.today, state.demand_from))


def _undo_rollover(state: RunningTotals, rolled: RolledAway, local_day: date, start: datetime) -> RunningTotals:
    """The clock went back over the last rollover: what was counted since was used on the day (and in the
    month) the clock shows now, so it is added to the amounts the rollover took off the books. The demand
    charge accrues from where it began before the rollover again (its time never moved with the clock),
    unless that is after now: the clock went back further than it had gone ahead."""
    demand_from = state.demand_from
    if rolled.demand_from is not None and rolled.demand_from <= start:
        demand_from = rolled.demand_from
    undone = replace(state, day=local_day, month=local_day.replace(day=1), today=_add(rolled.today, state.today),
                     demand_from=demand_from, rolled_away=None)
    if rolled.month_to_date is None:  # a day's rollover: the month's books carried on through it
        return undone
    return replace(undone, month_to_date=_add(rolled.month_to_date, state.month_to_date),
                   peak_kw=max(rolled.peak_kw, state.peak_kw), demand_usd=rolled.demand_usd + state.demand_usd)


def _add(book: Mapping[str, Totals], amounts: Mapping[str, Totals]) -> dict[str, Totals]:
    out = dict(book)
    for key, amount in amounts.items():
        out[key] = out.get(key, Totals()) + amount
    return out


def _integrate(
    state: RunningTotals,
    samples: Sequence[MinerSample],
    economics: SiteEconomics,
    network: NetworkState,
    start: datetime,
    end: datetime,
    live_price: LivePowerPrice | None,
    tz: ZoneInfo,
    carries: Callable[[MinerSample], bool] | None = None,
) -> RunningTotals:
    """Add one piece [start, end) that lies within one local hour: one price, one day, one month."""
    seconds = (end - start).total_seconds()
    hours = seconds / 3600
    month_s = _month_seconds(start.astimezone(tz), tz)
    price = power_price_at(economics, start, live_price).usd_per_kwh
    credit_usd_kwh = economics.curtailment_credit_usd_mwh / 1000
    share_of = fixed_shares(samples, carries)

    amounts: dict[str, Totals] = {}
    site_w = 0.0
    for sample in samples:
        share = share_of(sample)
        f = miner_flows(sample, economics, network, start, share)
        kwh = f.facility_w * hours / 1000
        btc = f.btc_per_day_net * seconds / SECONDS_PER_DAY
        amount = Totals(
            energy_kwh=kwh,
            power_usd=kwh * price - f.curtailed_w * hours / 1000 * credit_usd_kwh,
            opex_usd=economics.opex_usd_month * f.fixed_share * seconds / month_s,
            depreciation_usd=f.depreciation_usd_month * seconds / month_s,
            btc=btc,
            revenue_usd=btc * network.btc_price_usd,
        )
        amounts[sample.miner] = amounts[sample.miner] + amount if sample.miner in amounts else amount
        site_w += f.facility_w
    if not samples:
        site_w = economics.overhead_w or 0.0
        kwh = site_w * hours / 1000
        amounts[UNALLOCATED] = Totals(
            energy_kwh=kwh, power_usd=kwh * price, opex_usd=economics.opex_usd_month * seconds / month_s
        )

    # Demand charge: the month's peak sets the bill, so accrue peak x rate pro rata and true it
    # up when a higher peak appears; the increment is shared by this piece's kWh.
    peak_kw = max(state.peak_kw, site_w / 1000)
    demand_from = state.demand_from or start
    target = peak_kw * economics.demand_charge_usd_kw_month * (end - demand_from).total_seconds() / month_s
    extra = target - state.demand_usd
    if extra:
        total_kwh = sum(a.energy_kwh for a in amounts.values())
        for key, a in amounts.items():
            weight = a.energy_kwh / total_kwh if total_kwh > 0 else 1 / len(amounts)
            amounts[key] = replace(a, power_usd=a.power_usd + extra * weight)

    return replace(
        state,
        today=_add(state.today, amounts),
        month_to_date=_add(state.month_to_date, amounts),
        peak_kw=peak_kw,
        demand_usd=target,
        demand_from=demand_from,
    )


def advance(
    prev: RunningTotals | None,
    samples: Sequence[MinerSample],
    economics: SiteEconomics,
    network: NetworkState,
    t0: datetime,
    t1: datetime,
    *,
    live_price: LivePowerPrice | None = None,
    carries: Callable[[MinerSample], bool] | None = None,
    forget_after_s: float | None = None,
) -> RunningTotals:
    """Integrate one site over [t0, t1), holding `samples`, `network` and the live price constant.
    `carries`: the miners that share the fixed costs (`fixed_shares`); default every one.

    Pass t0 = the previous t1: a gap is not integrated (nothing is known about it) and an overlap
    is refused (it would count twice; `carried_back` when the clock went back). Totals reset at local
    midnight and on the local 1st; the clock going back over the last reset undoes it (`RolledAway`).
    A miner id not among the samples for longer than `forget_after_s` (a miner removed, or one whose
    MAC keeps changing) leaves the books: its amounts move to UNALLOCATED, so the site's totals keep
    them and the books stop growing.
    """
    if t0.tzinfo is None or t1.tzinfo is None:
        raise ValueError("t0 and t1 must carry a time zone")
    if t1 < t0:
        raise ValueError(f"interval ends ({t1.isoformat()}) before it starts ({t0.isoformat()})")
    tz = ZoneInfo(economics.timezone)
    t0, t1 = t0.astimezone(UTC), t1.astimezone(UTC)
    if prev is None:
        local = t0.astimezone(tz).date()
        prev = RunningTotals(as_of=t0, day=local, month=local.replace(day=1), demand_from=t0)
    elif t0 < prev.as_of:
        raise ValueError(f"interval starts at {t0.isoformat()}, before the totals' end {prev.as_of.isoformat()}")
    state, start = prev, t0
    if (back := state.step_back) is not None and t0 >= back.was_at and t0 - state.as_of >= back.moved:
        # The clock jumped at least as far forward as it had gone back (a restart's gap after a right step
        # back, past where the clock had been, is shorter than the step, unless the collector was down longer).
        state = _stepped_forward(state, back, t0, tz)
    while start < t1:
        end = min(t1, _next_local_hour(start, tz))
        state = _roll_calendar(state, start, tz)
        state = _integrate(state, samples, economics, network, start, end, live_price, tz, carries)
        start = end
    state = _roll_calendar(state, t1, tz)
    if state.step_back is not None and t1 >= state.step_back.was_at:  # caught up cycle by cycle: the step was right
        state = replace(state, step_back=None)
    seen = dict(state.last_seen)
    for sample in samples:
        seen[sample.miner] = t1
    state = replace(state, as_of=t1, last_seen=seen)
    if forget_after_s is not None:
        state = forget_unseen(state, t1 - timedelta(seconds=forget_after_s))
    return state


def _stepped_forward(state: RunningTotals, back: StepBack, now: datetime, tz: ZoneInfo) -> RunningTotals:
    """The clock jumped to where it was before it was stepped back (`StepBack`): the times moved back with
    the step move forward again (never past now), and books relabelled for an earlier day since are that
    day's again (from there, today and the month roll on as ever)."""
    moved = back.moved

    def forward(t: datetime) -> datetime:
        return min(t + moved, now)

    state = replace(state, step_back=None,
                    demand_from=None if state.demand_from is None else forward(state.demand_from),
                    last_seen={miner: forward(t) for miner, t in state.last_seen.items()})
    day = back.was_at.astimezone(tz).date()
    if state.day < day:
        state = replace(state, day=day, month=day.replace(day=1))
    return state


def carried_back(state: RunningTotals, now: datetime) -> RunningTotals:
    """The totals carried on from `now`, earlier than their `as_of`: the wall clock was stepped back (NTP,
    the date set by hand; collector/clock.py). Every amount is kept; the times they hold move back with
    the clock (the demand charge accrues on from where it was). Stepped back over midnight or the 1st,
    today's and the month's books are kept too, for the day the clock shows; back to the day before the
    last rollover, what it took off the books comes back as well (`advance`, `RolledAway`)."""
    step = state.as_of - now
    if step <= timedelta(0):
        return state
    back = state.step_back
    back = StepBack(state.as_of, step) if back is None else StepBack(max(back.was_at, state.as_of), back.moved + step)
    return replace(state, as_of=now, demand_from=None if state.demand_from is None else state.demand_from - step,
                   last_seen={miner: t - step for miner, t in state.last_seen.items()}, step_back=back)


def forget_unseen(state: RunningTotals, before: datetime) -> RunningTotals:
    """Move the amounts of every miner last seen before `before` to UNALLOCATED (the site keeps them)."""
    gone = [miner for miner, seen in state.last_seen.items() if seen < before and miner != UNALLOCATED]
    if not gone:
        return state
    today, month = dict(state.today), dict(state.month_to_date)
    for book in (today, month):
        moved = [book.pop(miner) for miner in gone if miner in book]
        if moved:
            book[UNALLOCATED] = _sum_totals([book.get(UNALLOCATED, Totals()), *moved])
    seen = {miner: t for miner, t in state.last_seen.items() if t >= before}
    return replace(state, today=today, month_to_date=month, last_seen=seen)


def _totals_fields(today: Totals, month: Totals) -> dict[str, float]:
    out: dict[str, float] = {}
    for suffix, t in (("today", today), ("month", month)):
        out |= {
            f"energy_kwh_{suffix}": t.energy_kwh,
            f"power_usd_{suffix}": t.power_usd,
            f"cash_usd_{suffix}": t.cash_usd,
            f"all_in_usd_{suffix}": t.all_in_usd,
            f"btc_{suffix}": t.btc,
            f"revenue_usd_{suffix}": t.revenue_usd,
        }
    return out


def with_totals(cost: CostSample, today: Totals, month: Totals) -> CostSample:
    """The cost sample with what was really used, spent and mined today and this month."""
    update = _totals_fields(today, month)
    update |= _month_cost_per_btc(update)
    return cost.model_copy(update=update)


def attach_totals(costs: SiteCost, totals: RunningTotals) -> SiteCost:
    """Fill every miner's and the site's today/month figures from the running totals."""
    miners = [
        with_totals(m, totals.today.get(m.miner or "", Totals()), totals.month_to_date.get(m.miner or "", Totals()))
        for m in costs.miners
    ]
    return SiteCost(with_totals(costs.site, totals.site_today(), totals.site_month()), miners)
