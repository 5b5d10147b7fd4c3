"""`hashfleet cost`: the what-if calculator, one hypothetical miner through the same cost engine."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import typer
from pydantic import ValidationError
from rich.table import Table

from collector.commands.common import decimal_option
from collector.stages.cost_engine import miner_cost
from collector.stages.power_truth import MAX_PUE
from collector.stages.running_totals import MAX_AMOUNT
from collector.terminal import plain_console
from models.economics import Capex, CostSample, FlatTariff, NetworkState, SiteEconomics
from models.hardware import MAX_UNIT_THS, MAX_UNIT_W, MIN_HASHING_THS
from models.mqtt import MqttConfig
from models.sample import MinerSample, MinerState, SampleSource

_WHAT_IF = "what-if"
# Running totals mean nothing for a hypothetical miner; ts would make the output vary run to run.
_NOT_PRINTED = {
    "ts", "energy_kwh_today", "power_usd_today", "cash_usd_today", "all_in_usd_today", "btc_today",
    "revenue_usd_today", "energy_kwh_month", "power_usd_month", "cash_usd_month", "all_in_usd_month", "btc_month",
    "revenue_usd_month", "cash_cost_per_btc_month", "all_in_cost_per_btc_month",
}


def _bad(option: str, message: str) -> typer.BadParameter:
    # A usage error: click prints "Invalid value for '--option': ..." and exits with code 2.
    return typer.BadParameter(message, param_hint=f"'{option}'")


def _default(model: type, field: str) -> float:
    return model.model_fields[field].default


def _le(model: type, field: str) -> float:
    """The model's own upper bound on `field` (its Field(le=...))."""
    return next(m.le for m in model.model_fields[field].metadata if hasattr(m, "le"))


# Bounds the code already holds: one miner (models.hardware), what the MQTT ingest accepts as a live
# power or BTC price, a subsidy (NetworkState), a depreciation life (Capex), a measured PUE
# (power_truth), a plausible amount of dollars (running_totals). The rest are facts of Bitcoin:
# difficulty runs from 1 to ~2^224 (a target of 1), and no block's fees exceed the 21M coins.
_MAX_POWER_PRICE = _default(MqttConfig, "power_price_max_usd_kwh")
_MAX_BTC_PRICE = _default(MqttConfig, "btc_price_max_usd")
_MAX_SUBSIDY_BTC = _le(NetworkState, "subsidy_btc")
_MAX_LIFE_MONTHS = _le(Capex, "life_months")
_MAX_DIFFICULTY = 2.0**224
_MAX_BTC = 21e6


def _within(option: str, value: float | None, low: float, high: float = math.inf, *, strict: bool = False) -> None:
    """`value` is finite and in [low, high] (low excluded if `strict`); else a usage error naming `option`."""
    if value is None:
        return
    if not math.isfinite(value):
        raise _bad(option, f"must be a finite number, got {value}")
    if value < low or (strict and value == low):
        raise _bad(option, f"must be {'greater than' if strict else 'at least'} {low:g}, got {value:g}")
    if value > high:
        raise _bad(option, f"must be at most {high:g}, got {value:g}")


def cost(
    hashrate_ths: float = typer.Option(..., "--hashrate-ths", parser=decimal_option, help="Hashrate in TH/s."),
    power_w: float = typer.Option(..., "--power-w", parser=decimal_option, help="Wall power of the miner in W."),
    difficulty: float = typer.Option(..., "--difficulty", parser=decimal_option, help="Network difficulty, e.g. 1.1e14."),
    btc_price: float = typer.Option(..., "--btc-price", parser=decimal_option, help="BTC price in USD."),
    fees_btc: float = typer.Option(..., "--fees-btc", parser=decimal_option, help="Mean transaction fees per block, BTC."),
    pool_fee: float = typer.Option(..., "--pool-fee", parser=decimal_option, help="Pool fee in percent, e.g. 2 for 2%."),
    power_price: float = typer.Option(..., "--power-price", parser=decimal_option, help="Power price in USD per kWh."),
    uptime: float = typer.Option(1.0, "--uptime", parser=decimal_option, help="Fraction of time hashing, 0 < u <= 1."),
    pue: float = typer.Option(1.0, "--pue", parser=decimal_option, help="Facility power / miner power (cooling, transformers), >= 1."),
    opex_usd_month: float = typer.Option(0.0, "--opex-usd-month", parser=decimal_option, help="Fixed cash opex per month, USD."),
    capex_usd: float | None = typer.Option(None, "--capex-usd", parser=decimal_option, help="Hardware price, USD (with --life-months)."),
    life_months: int | None = typer.Option(None, "--life-months", help="Depreciation life in months."),
    salvage_usd: float | None = typer.Option(None, "--salvage-usd", parser=decimal_option,
                                             help="Value left at the end of life, USD (with --capex-usd; default 0)."),
    height: int | None = typer.Option(None, "--height", help="Block height; the subsidy follows from it."),
    subsidy_btc: float | None = typer.Option(None, "--subsidy-btc", parser=decimal_option, help="Block subsidy, BTC (default 3.125)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """What-if: expected BTC, hashprice and cost per BTC of one miner under given conditions."""
    _within("--hashrate-ths", hashrate_ths, MIN_HASHING_THS, MAX_UNIT_THS)  # (below 1 kH/s: no reading's figures)
    _within("--power-w", power_w, 0, MAX_UNIT_W)
    _within("--difficulty", difficulty, 1, _MAX_DIFFICULTY)
    _within("--btc-price", btc_price, 0, _MAX_BTC_PRICE, strict=True)
    _within("--fees-btc", fees_btc, 0, _MAX_BTC)
    _within("--pool-fee", pool_fee, 0)
    if pool_fee >= 100:
        raise _bad("--pool-fee", f"is a percentage below 100, got {pool_fee:g}")
    _within("--power-price", power_price, 0, _MAX_POWER_PRICE)
    _within("--uptime", uptime, 0, 1, strict=True)
    _within("--pue", pue, 1, MAX_PUE)
    _within("--opex-usd-month", opex_usd_month, 0, MAX_AMOUNT)
    _within("--capex-usd", capex_usd, 0, MAX_AMOUNT)
    _within("--life-months", life_months, 1, _MAX_LIFE_MONTHS)
    _within("--salvage-usd", salvage_usd, 0, MAX_AMOUNT)
    _within("--height", height, 0)
    _within("--subsidy-btc", subsidy_btc, 0, _MAX_SUBSIDY_BTC)
    if (capex_usd is None) != (life_months is None):
        raise _bad("--capex-usd" if capex_usd is None else "--life-months", "give --capex-usd and --life-months together")
    if salvage_usd is not None and capex_usd is None:
        raise _bad("--salvage-usd", "is the value left of --capex-usd: give --capex-usd and --life-months with it")
    if capex_usd is not None and salvage_usd is not None and salvage_usd > capex_usd:
        raise _bad("--salvage-usd", f"must not exceed --capex-usd ({capex_usd:g}), got {salvage_usd:g}")
    if height is not None and subsidy_btc is not None:
        raise _bad("--subsidy-btc", "give --height or --subsidy-btc, not both")

    now = datetime.now(timezone.utc)
    sample = MinerSample(
        miner=_WHAT_IF, host=_WHAT_IF, ts=now, state=MinerState.MINING,
        source=SampleSource.PYASIC,  # required by the model; the engine does not read it
        hashrate_ths=hashrate_ths * uptime, power_w=power_w * uptime,  # downtime: no hashes, no draw
    )
    economics = SiteEconomics(
        tariff=FlatTariff(usd_per_kwh=power_price),
        pue=pue,
        pool_fee_pct=pool_fee,
        opex_usd_month=opex_usd_month,
        capex_by_miner={}
        if capex_usd is None or life_months is None
        else {_WHAT_IF: Capex(price_usd=capex_usd, life_months=life_months, salvage_usd=salvage_usd or 0.0)},
    )
    network = NetworkState(
        difficulty=difficulty,
        height=height,
        subsidy_btc=3.125 if height is None and subsidy_btc is None else subsidy_btc,
        fees_btc_per_block=fees_btc,
        btc_price_usd=btc_price,
    )
    try:
        result = miner_cost(sample, economics, network, now)
    except ValidationError as e:  # the bounds above keep every figure finite; should one still not be
        fields = ", ".join(str(err["loc"][0]) for err in e.errors() if err["loc"])
        typer.echo(f"hashfleet: cost: these inputs make {fields or 'a figure'} too large to compute", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json", exclude=_NOT_PRINTED)))
    else:
        plain_console().print(_table(result))


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _table(c: CostSample) -> Table:
    table = Table(title="What-if cost (one miner)", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    rows = [
        ("Expected BTC/day (gross)", _fmt(c.btc_per_day, 8), "BTC"),
        ("Expected BTC/day (net of pool fee)", _fmt(c.btc_per_day_net, 8), "BTC"),
        ("Hashprice", _fmt(c.hashprice_usd_ph_day, 2), "$/PH/day"),
        ("Hashcost (power)", _fmt(c.hashcost_usd_ph_day, 2), "$/PH/day"),
        ("Efficiency", _fmt(c.efficiency_j_th, 2), "J/TH"),
        ("Energy", _fmt(c.energy_kwh_day, 2), "kWh/day"),
        ("Energy cost", _fmt(c.energy_usd_day, 2), "$/day"),
        ("Opex", _fmt(c.opex_usd_day, 2), "$/day"),
        ("Depreciation", _fmt(c.depreciation_usd_day, 2), "$/day"),
        ("Energy cost per BTC", _fmt(c.energy_cost_per_btc, 0), "$/BTC"),
        ("Cash cost per BTC", _fmt(c.cash_cost_per_btc, 0), "$/BTC"),
        ("All-in cost per BTC", _fmt(c.all_in_cost_per_btc, 0), "$/BTC"),
        ("Break-even power price", _fmt(c.breakeven_power_price, 4), "$/kWh"),
        ("Revenue", _fmt(c.revenue_usd_day, 2), "$/day"),
        ("Profit (all-in)", _fmt(c.profit_usd_day, 2), "$/day"),
        ("Margin", _fmt(c.margin_pct, 1), "%"),
    ]
    for row in rows:
        table.add_row(*row)
    return table
