"""`hashfleet backtest`: replay the site's own history against a power price series and a curtailment
strategy; what it would have saved against what happened (collector/stages/backtest.py counts it)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from collector import backtest_inputs as inputs
from collector import config as config_loader
from collector import terminal
from collector.clock import history_until
from collector.commands.common import CONFIG_OPTION, SITE_OPTION, fail_usage, load_config, parse_period
from collector.influx_query import InfluxQueryError
from collector.layout import SiteLayout, curtailment_groups
from collector.stages.backtest import BacktestResult, Period, PriceSeries, Strategy, replay
from collector.stages.curtailment import load_schedule
from collector.stages.curtailment_rules import Rules
from collector.terminal import plain_console
from models import CollectorConfig
from models.base import parse_decimal
from models.curtailment import CurtailmentConfig

SINCE_EXAMPLE = "24h, 7d or 30d"
RESOLUTION_EXAMPLE = "1m, 5m or 1h"


def backtest(
    config: Path | None = CONFIG_OPTION,
    site: str | None = SITE_OPTION,
    since: str = typer.Option("30d", "--since", help=f"How far back to replay: e.g. {SINCE_EXAMPLE}."),
    prices: Path | None = typer.Option(None, "--prices", help="CSV of time,usd_per_kwh (or usd_per_mwh); default: "
                                                               "the prices the collector stored (power_price)."),
    strategy: str | None = typer.Option(None, "--strategy", help="margin | strike:USD_PER_KWH | dr:SCHEDULE.yaml "
                                                                  "(default: the config's curtailment strategy)"),
    resolution: str = typer.Option("5m", "--resolution", help=f"Length of a replayed period: e.g. {RESOLUTION_EXAMPLE}."),
    source: str = typer.Option("auto", "--source", help="local | influx | auto (InfluxDB when configured)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of the table."),
) -> None:
    """Replay stored history against a price series and a curtailment strategy: energy saved, BTC forgone, net."""
    cfg = load_config(config, pools=False, site=site)
    if cfg.economics is None:
        fail_usage("the backtest needs `economics` in the config (PUE, pool fee)")
    seconds = parse_period("--since", since, SINCE_EXAMPLE)
    step = parse_period("--resolution", resolution, RESOLUTION_EXAMPLE)
    if source not in ("auto", "local", "influx"):
        fail_usage(f"--source {source!r}: local, influx or auto")
    curtailment = cfg.curtailment or CurtailmentConfig()
    chosen = _strategy(strategy, curtailment)
    if curtailment.groups.always_on or curtailment.groups.shed_whole:  # the live rules' groups (layout.py)
        layout, groups = SiteLayout.load(cfg.layout), curtailment.groups
        chosen = dataclasses.replace(chosen, groups=lambda miner: curtailment_groups(
            layout.place_of(miner), groups.always_on, groups.shed_whole))
    now = time.time()
    end = history_until(now)
    start = end - seconds
    skipped: Counter[str] = Counter()
    try:  # (errors said once the bar is gone: it is drawn over the last line of the terminal)
        with terminal.progress(f"replaying the last {since}", max(1, -(-seconds // step))) as advance:
            result = _replay(cfg, prices, source, chosen, since, start, end, step, advance, skipped)
    except inputs.BacktestInputError as e:
        fail_usage(str(e))
    except InfluxQueryError as e:  # the server, not the usage: a runtime failure
        typer.echo(f"hashfleet: {e}", err=True)
        raise typer.Exit(1) from None
    if result.periods == 0:
        fail_usage(f"nothing to replay: no history of site {cfg.site!r} in the last {since} with a price "
                   f"({_count(result.periods_without_price, 'period')} had none)")
    if result.end is not None:
        result.end = min(result.end, int(now))  # the last period is cut short by now: not an end in the future
    if as_json:
        typer.echo(json.dumps({"site": cfg.site, "resolution_s": step, **result.as_dict(),
                               "skipped_values": dict(sorted(skipped.items()))}))
    else:
        print_result(result, cfg, step, skipped)


def _replay(cfg: CollectorConfig, prices: Path | None, source: str, chosen: Strategy, since: str, start: int, end: int,
            step: int, advance: Callable[[int], None], skipped: Counter[str]) -> BacktestResult:
    """Read the history (InfluxDB or the local spool, streamed) and the prices, and replay them: BacktestInputError
    for what the user can mend (exit 2), InfluxQueryError for a server that fails (exit 1)."""
    assert cfg.economics is not None
    stored: list[tuple[int, float]] = []
    series = inputs.read_prices_csv(prices) if prices is not None else None
    if source == "influx" or (source == "auto" and cfg.influx is not None):
        if cfg.influx is None:
            raise inputs.BacktestInputError("--source influx needs InfluxDB (INFLUX_URL, INFLUX_BUCKET, INFLUX_TOKEN "
                                            "or the config)")
        history = inputs.InfluxHistory(cfg.influx)
        periods = _nonempty(history.periods(cfg.site, start, end, step, cfg.interval_s, stored, skipped), cfg.site,
                            since)
        periods = _advancing(periods, start, step, advance)
        if series is None:
            periods = iter(list(periods))  # the stored prices arrive with the history
            series = _stored(stored)
    else:
        directory = config_loader.spool_directory(cfg)
        if not directory.is_dir():
            raise inputs.BacktestInputError(f"no local history for site {cfg.site!r} in {directory} (run `hashfleet "
                                            "collect` without InfluxDB first, or pass --config/--site)")
        periods = _nonempty(inputs.local_periods(directory, cfg.site, start, end, step, cfg.interval_s, skipped),
                            cfg.site, since)
        periods = _advancing(periods, start, step, advance)
        if series is None:
            series = _stored(inputs.local_prices(directory, cfg.site, start, end, skipped))
    return replay(periods, series, chosen, pue=cfg.economics.pue or 1.0, pool_fee_pct=cfg.economics.pool_fee_pct)


def _advancing(periods: Iterator[Period], start: int, step: int, advance: Callable[[int], None]) -> Iterator[Period]:
    """`periods`, the progress bar moved to each as it is read (a week of a large site reads for minutes)."""
    for period in periods:
        advance((period.ts - start) // step + 1)
        yield period


def _strategy(text: str | None, curtailment: CurtailmentConfig) -> Strategy:
    base = Rules(curtailment.strategy, curtailment.strike_usd_kwh, curtailment.hysteresis_usd_kwh,
                 curtailment.min_on_s, curtailment.min_off_s)
    if text is None:
        return Strategy(curtailment.strategy, base)
    kind, _, value = text.partition(":")
    if kind == "margin" and not value:
        return Strategy("margin", Rules("margin", None, base.hysteresis_usd_kwh, base.min_on_s, base.min_off_s))
    if kind == "strike":
        try:
            strike = parse_decimal(value)
            if not -1 <= strike <= 20:
                raise ValueError
        except ValueError:
            fail_usage(f"--strategy {text!r}: write strike:USD_PER_KWH, e.g. strike:0.10")
        return Strategy("strike", Rules("strike", strike, base.hysteresis_usd_kwh, base.min_on_s, base.min_off_s))
    if kind == "dr" and value:
        try:
            targets = load_schedule(Path(value), f"--strategy dr:{value}")
        except ValueError as e:
            fail_usage(str(e))
        for i, target in enumerate(targets):
            if target.start is None:  # "from now" (as live): it would never touch the past, not all of it
                fail_usage(f"--strategy dr:{value}: targets.{i} has no start; a target without one starts now, "
                           "after the history a backtest replays: give its start")
        return Strategy("dr", Rules("margin", None, base.hysteresis_usd_kwh, base.min_on_s, base.min_off_s),
                        tuple(targets))
    fail_usage(f"--strategy {text!r}: margin, strike:USD_PER_KWH or dr:SCHEDULE.yaml")


def _nonempty(periods: Iterator[Period], site: str, since: str) -> Iterator[Period]:
    """`periods`, once at least one is known to come: else BacktestInputError saying there is no history (before
    any word about prices)."""
    first = next(periods, None)
    if first is None:
        raise inputs.BacktestInputError(f"no history of site {site!r} in the last {since} (check --site and --since)")
    return itertools.chain((first,), periods)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _stored(prices: list[tuple[int, float]]) -> PriceSeries:
    if not prices:
        raise inputs.BacktestInputError("no stored power prices in that period (the collector writes them with "
                                        "`curtailment:` configured): pass --prices FILE.csv")
    return PriceSeries([t for t, _ in prices], [p for _, p in prices])


def print_result(result: BacktestResult, cfg: CollectorConfig, step: int, skipped: Counter[str] | None = None) -> None:
    console = plain_console()
    if result.start is not None and result.end is not None:
        console.print(Text.assemble(
            ("backtest", "bold"), f" site {cfg.site}: {inputs.utc(result.start)} to {inputs.utc(result.end)}, "
            f"{_count(result.periods, 'period')} of {step} s replayed"
            # (read "48 periods (24 without a price)" as 24 of the 48: trial ZH)
            + (f", {result.periods_without_price} more without a price, not replayed"
               if result.periods_without_price else "")
            + f", {_count(result.miners, 'miner')}"))
    console.print(f"strategy: {result.strategy}")
    a, s = result.actual, result.with_strategy
    table = Table()
    table.add_column("")
    table.add_column("as happened", justify="right")
    table.add_column("with the strategy", justify="right")
    table.add_column("difference", justify="right")
    rows = [
        ("energy (kWh)", a.energy_kwh, s.energy_kwh, 1),
        ("electricity ($)", a.energy_usd, s.energy_usd, 2),
        ("BTC mined", a.btc, s.btc, 6),
        ("revenue ($)", a.revenue_usd, s.revenue_usd, 2),
        ("uptime (%)", a.uptime_pct, s.uptime_pct, 2),
        ("price paid ($/kWh)", a.price_paid_usd_kwh, s.price_paid_usd_kwh, 4),
    ]
    for name, x, y, digits in rows:
        diff = None if x is None or y is None else y - x
        table.add_row(name, _fmt(x, digits), _fmt(y, digits), _fmt(diff, digits, sign=True))
    console.print(table)
    pct = result.cost_saved_pct
    share = "" if pct is None else f"{pct:.1f} % of it, "  # none of a bill that is not positive
    console.print(f"saved {result.cost_saved_usd:,.2f} $ on electricity ({share}"
                  f"{result.energy_saved_kwh:,.1f} kWh), forwent {result.revenue_forgone_usd:,.2f} $ of revenue "
                  f"({result.btc_forgone:.6f} BTC): net {result.net_usd:+,.2f} $")
    if skipped:
        fields = ", ".join(f"{name} {n:,}" for name, n in sorted(skipped.items()))
        console.print(f"note: {sum(skipped.values()):,} stored value(s) not finite or beyond what one miner or market "
                      f"gives, left out as unread ({fields})", style="yellow")
    if result.miners_without_power:
        console.print(f"note: {_count(result.miners_without_power, 'miner')} mined with no power reading: counted "
                      "mining and earning, left as they were by the strategy, their energy in neither column",
                      style="yellow")


def _fmt(value: float | None, digits: int, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    value = round(value, digits) + 0.0  # (no "-0.0000": a negative that rounds to nothing, or -0.0, is 0)
    return f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"
