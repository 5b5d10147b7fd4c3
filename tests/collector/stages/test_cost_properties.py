"""Properties the cost engine must hold for any inputs (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.stages.cost_engine import advance, miner_cost, site_cost
from models import Capex, FlatTariff, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics

UTC = timezone.utc
T0 = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)

hashrates = st.floats(min_value=0.5, max_value=1_000)
efficiencies = st.floats(min_value=5, max_value=120)  # J/TH: from S21 XP hydro to an S9
prices = st.floats(min_value=0.0, max_value=0.5)
difficulties = st.floats(min_value=1e12, max_value=1e15)
btc_prices = st.floats(min_value=1_000, max_value=500_000)
fees = st.floats(min_value=0, max_value=2)
pool_fees = st.floats(min_value=0, max_value=10)
opex = st.floats(min_value=0, max_value=10_000)
pues = st.floats(min_value=1, max_value=2)


def sample(name: str, hashrate_ths: float, power_w: float) -> MinerSample:
    return MinerSample(miner=name, host=name, site="s1", ts=T0, state=MinerState.MINING,
                       source=SampleSource.AVALON, model="X", hashrate_ths=hashrate_ths, power_w=power_w)


def economics(price: float, *, pue: float = 1.0, pool_fee: float = 0.0, opex_usd_month: float = 0.0) -> SiteEconomics:
    return SiteEconomics(tariff=FlatTariff(usd_per_kwh=price), pue=pue, pool_fee_pct=pool_fee,
                         opex_usd_month=opex_usd_month,
                         capex_by_model={"X": Capex(price_usd=3_000, life_months=36)})


def network(difficulty: float, btc_price: float = 95_000, fee: float = 0.03) -> NetworkState:
    return NetworkState(difficulty=difficulty, subsidy_btc=3.125, fees_btc_per_block=fee, btc_price_usd=btc_price)


@given(hashrates, efficiencies, difficulties, prices, prices, pues, opex)
def test_cost_per_btc_rises_with_power_price(
    ths: float, j_th: float, difficulty: float, p1: float, p2: float, pue: float, opex_month: float
) -> None:
    low, high = sorted((p1, p2))
    m = sample("m", ths, ths * j_th)
    cheap = miner_cost(m, economics(low, pue=pue, opex_usd_month=opex_month), network(difficulty), T0)
    dear = miner_cost(m, economics(high, pue=pue, opex_usd_month=opex_month), network(difficulty), T0)
    for field in ("energy_cost_per_btc", "cash_cost_per_btc", "all_in_cost_per_btc"):
        assert getattr(dear, field) >= getattr(cheap, field) * (1 - 1e-12)
    if high - low > 1e-6:
        assert dear.energy_cost_per_btc > cheap.energy_cost_per_btc
    assert dear.margin_pct <= cheap.margin_pct + 1e-9


@given(hashrates, efficiencies, difficulties, difficulties, prices, opex)
def test_cost_per_btc_rises_with_difficulty(
    ths: float, j_th: float, d1: float, d2: float, price: float, opex_month: float
) -> None:
    easy, hard = sorted((d1, d2))
    m = sample("m", ths, ths * j_th)
    e = economics(price, opex_usd_month=opex_month)
    a, b = miner_cost(m, e, network(easy), T0), miner_cost(m, e, network(hard), T0)
    assert b.btc_per_day <= a.btc_per_day
    assert b.all_in_cost_per_btc >= a.all_in_cost_per_btc * (1 - 1e-12)
    # Costs are fixed per day and BTC falls as 1/D, so cost per BTC scales exactly with D.
    assert b.all_in_cost_per_btc == pytest.approx(a.all_in_cost_per_btc * hard / easy, rel=1e-9)


@given(hashrates, efficiencies, efficiencies, difficulties, st.floats(min_value=0.001, max_value=0.5), pues)
def test_cost_per_btc_falls_with_efficiency(
    ths: float, j1: float, j2: float, difficulty: float, price: float, pue: float
) -> None:
    better, worse = sorted((j1, j2))  # lower J/TH is better
    e = economics(price, pue=pue)
    good = miner_cost(sample("m", ths, ths * better), e, network(difficulty), T0)
    bad = miner_cost(sample("m", ths, ths * worse), e, network(difficulty), T0)
    assert good.all_in_cost_per_btc <= bad.all_in_cost_per_btc * (1 + 1e-12)
    assert good.breakeven_power_price >= bad.breakeven_power_price * (1 - 1e-12)


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=60), hashrates, efficiencies, difficulties, prices, pool_fees,
       st.floats(min_value=0, max_value=500))
def test_cost_per_btc_does_not_depend_on_fleet_size(
    n: int, ths: float, j_th: float, difficulty: float, price: float, pool_fee: float, opex_per_miner: float
) -> None:
    # Identical miners; fixed opex grows with the fleet (as hosting does), capex is per miner.
    one = site_cost("s1", [sample("m0", ths, ths * j_th)],
                    economics(price, pool_fee=pool_fee, opex_usd_month=opex_per_miner), network(difficulty), T0)
    many = site_cost("s1", [sample(f"m{i}", ths, ths * j_th) for i in range(n)],
                     economics(price, pool_fee=pool_fee, opex_usd_month=opex_per_miner * n), network(difficulty), T0)
    for field in ("energy_cost_per_btc", "cash_cost_per_btc", "all_in_cost_per_btc", "breakeven_power_price",
                  "hashcost_usd_ph_day", "efficiency_j_th", "margin_pct"):
        assert getattr(many.site, field) == pytest.approx(getattr(one.site, field), rel=1e-9, abs=1e-9)
    assert many.site.btc_per_day == pytest.approx(n * one.site.btc_per_day, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=6 * 3600), min_size=1, max_size=12),
       st.sampled_from(["UTC", "America/Chicago", "Asia/Kathmandu"]), efficiencies, prices)
def test_running_totals_do_not_depend_on_how_time_is_cut(
    steps_s: list[int], zone: str, j_th: float, price: float
) -> None:
    e = SiteEconomics(timezone=zone, tariff=FlatTariff(usd_per_kwh=price), opex_usd_month=1_000,
                      demand_charge_usd_kw_month=5.0)
    miners = [sample("a", 100, 100 * j_th), sample("b", 200, 200 * j_th)]
    net = network(1.1e14)
    start = datetime(2025, 3, 12, 3, 17, tzinfo=UTC)
    cut, t = None, start
    for step in steps_s:
        cut = advance(cut, miners, e, net, t, t + timedelta(seconds=step))
        t += timedelta(seconds=step)
    whole = advance(None, miners, e, net, start, t)
    assert cut is not None
    for a, b in ((cut.site_month(), whole.site_month()), (cut.site_today(), whole.site_today())):
        assert a.energy_kwh == pytest.approx(b.energy_kwh, rel=1e-9)
        assert a.power_usd == pytest.approx(b.power_usd, rel=1e-9, abs=1e-9)
        assert a.all_in_usd == pytest.approx(b.all_in_usd, rel=1e-9)
        assert a.btc == pytest.approx(b.btc, rel=1e-9)
