"""Terminal output shared by the commands and the live view: fleet and cost tables, progress bars (on
stderr), the report's tables (rich)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from collector.history import Report
from collector.stages.cost_engine import counted_readings
from models import CostSample, MinerSample, NetworkState
from models.base import printable  # (the commands show miners' text through it: terminal.printable)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def by_address(samples: list[MinerSample]) -> list[MinerSample]:
    """Samples in address order (they arrive in the order miners answer), numeric where they are IPs."""
    def key(sample: MinerSample) -> tuple:
        try:
            return (0, ipaddress.ip_address(sample.host).packed, sample.port)
        except ValueError:
            return (1, sample.host.encode(), sample.port)
    return sorted(samples, key=key)


COMPACT_BELOW = 120  # columns: a terminal narrower than this gets the compact tables (watch at 80x24)
# Columns when stdout is no terminal (a pipe, a file, cron): nothing wraps the lines there, so tables are printed
# at their full width instead of squeezed into rich's default 80 (every column cut to `…`).
NO_TERMINAL_WIDTH = 10_000


NOTE_CHARS = 60  # of a miner's errors in the note column on a terminal (one line a row); whole through a pipe


def fleet_table(samples: list[MinerSample], *, compact: bool = False, shown: int | None = None,
                cost: CostSample | None = None, note_chars: int | None = NOTE_CHARS) -> Table:
    """One row a miner and the fleet's totals. Compact (80 columns): no MAC, average or note column, one
    line a row (the address identifies a miner on the floor and in the view; a long model name is cut).
    `shown`: rows for the first `shown` miners only and one that counts the rest (the totals count all).
    `note_chars`: of each miner's errors, shown in its note (None: all).
    With the site's `cost`, the fleet's J/TH is the cost's: over the miners and watts its break-even uses."""
    table = Table(show_footer=True, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, pad_edge=not compact)
    if not compact:
        table.add_column("miner", footer="fleet")
    table.add_column("address", footer="fleet" if compact else "", no_wrap=True)
    table.add_column("model", no_wrap=compact, max_width=20 if compact else None)
    mining = f"{sum(s.state == 'mining' for s in samples)}/{len(samples)}"
    table.add_column("state", footer=mining if compact else f"{mining} mining", no_wrap=True)
    hashrate = sum(s.hashrate_ths or 0 for s in samples)
    power = sum(s.power_w or 0 for s in samples)
    table.add_column("TH/s", justify="right", footer=_fmt(hashrate), no_wrap=True)
    if not compact:
        table.add_column("TH/s avg", justify="right")
    # Hashing miners that read no power are in the TH/s above and not in these watts: at least this much.
    unread = any(s.power_w is None and s.hashrate_ths for s in samples)
    table.add_column("W", justify="right", footer=("≥" if unread else "") + _fmt(power, 0), no_wrap=True)
    table.add_column("J/TH", justify="right", footer=_fmt(cost.efficiency_j_th if cost else _efficiency(samples)),
                     no_wrap=True)
    table.add_column("chip °C" if not compact else "°C", justify="right", no_wrap=True,
                     footer=_fmt(max((s.temp_chip_max_c for s in samples if s.temp_chip_max_c is not None), default=None), 0))
    if not compact:
        table.add_column("note")
    rows = samples if shown is None or shown >= len(samples) else _worth_a_row(samples, shown)
    for s in rows:
        row = [f"{s.host}:{s.port}", printable(s.model or "-"), s.state.value, _fmt(s.hashrate_ths)]
        if not compact:
            row = [printable(s.miner), *row, _fmt(s.hashrate_avg_ths)]
        row += [_fmt(s.power_w, 0), _fmt(s.efficiency_j_th), _fmt(s.temp_chip_max_c, 0)]
        if not compact:
            row.append(printable("; ".join(s.errors)[:note_chars]))  # the sources clean a miner's words; this too
        table.add_row(*row)
    if len(rows) < len(samples):
        trouble = sum(map(_needs_eyes, samples)) - sum(map(_needs_eyes, rows))
        # (short: it sits in the address column, which it must not widen)
        table.add_row(f"+{len(samples) - len(rows)} more, " + (f"{trouble} not ok" if trouble else "mining"), style="dim")
    return table


def _needs_eyes(sample: MinerSample) -> bool:
    return sample.state != "mining" or bool(sample.errors)


def _worth_a_row(samples: list[MinerSample], shown: int) -> list[MinerSample]:
    """The `shown` miners that get a row when not all fit, in the fleet's order: first every one that is not
    mining or reports an error (what the operator is watching for), then the others."""
    attention = [i for i, s in enumerate(samples) if _needs_eyes(s)]
    if len(attention) >= shown:
        keep = attention[:shown]
    else:
        chosen = set(attention)
        keep = sorted(attention + [i for i in range(len(samples)) if i not in chosen][:shown - len(attention)])
    return [samples[i] for i in keep]


def _efficiency(samples: list[MinerSample]) -> float | None:
    """The fleet's J/TH as the cost counts it: idle miners' draw included, a miner missing a reading left
    out (unknown power is no 0 W)."""
    counted = [counted_readings(s) for s in samples]
    ths = sum(hashrate for hashrate, _, _ in counted)
    return sum(watts for _, watts, _ in counted) / ths if ths else None


def left_out_note(site: CostSample) -> str | None:
    """What the site's figures leave out, in one line of at most 80 columns; None when nothing is."""
    n = site.miners_left_out
    if not n:
        return None
    what = {("power_w",): "no power reading", ("hashrate_ths",): "no hashrate reading"}.get(
        tuple(site.missing_inputs), "no usable reading")
    return f"incomplete: {n} miner{'s' if n > 1 else ''} left out ({what}): not in cost, BTC or J/TH"


def estimated_note(site: CostSample) -> str | None:
    """How many of the site's miners are costed on a nameplate draw, not a reading (economics.
    estimate_missing_power), in one line of at most 80 columns; None when none is."""
    n = site.miners_estimated
    if not n:
        return None
    return (f"estimated: {n} miner{'s' if n > 1 else ''} costed at nameplate W "
            f"({site.estimated_power_w / 1000:,.1f} of {site.power_w / 1000:,.1f} kW), not read")


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.0f}" if abs(value) >= 1000 else f"${value:,.2f}"  # (an hour's cash is cents: not "$0")


def cost_summary(site: CostSample, network: NetworkState, *, compact: bool = False) -> RenderableType:
    """The site's cost per BTC, the number the product exists for, next to what a BTC sells for, and the
    miners it leaves out (`left_out_note`) or costs on an estimate (`estimated_note`). Compact: the costs, the profit, the margin and the break-even
    only, with no blank edge lines (80x24 holds the note too)."""
    table = Table(title=f"cost per BTC · BTC ${network.btc_price_usd:,.0f}"
                        f"{' (stale: ' + ', '.join(network.stale) + ')' if network.stale else ''}",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, show_edge=not compact)
    cells = {
        "all-in": _usd(site.all_in_cost_per_btc), "cash": _usd(site.cash_cost_per_btc),
        "energy": _usd(site.energy_cost_per_btc), "BTC/day (net)": f"{site.btc_per_day_net:.6f}",
        "revenue/day": _usd(site.revenue_usd_day), "profit/day": _usd(site.profit_usd_day),
        "margin": "-" if site.margin_pct is None else f"{site.margin_pct:.1f}%",
        "break-even $/kWh": "-" if site.breakeven_power_price is None else f"{site.breakeven_power_price:.4f}",
        "hashprice $/PH/day": f"{site.hashprice_usd_ph_day:.2f}",
    }
    names = (("all-in", "cash", "energy", "profit/day", "margin", "break-even $/kWh") if compact else
             ("energy", "cash", "all-in", "BTC/day (net)", "revenue/day", "profit/day", "margin", "break-even $/kWh",
              "hashprice $/PH/day"))
    for name in names:
        table.add_column(name, justify="right", no_wrap=compact)
    table.add_row(*(cells[name] for name in names))
    notes = [Text(note, style="bold yellow") for note in (left_out_note(site), estimated_note(site)) if note]
    return Group(table, *notes) if notes else table


def plain_console(**kwargs) -> Console:
    """A console that prints text as it is, markup and emoji codes off: text from miners, pools and the
    config reaches every table and line (a `[/b]` in a miner's reply value raised MarkupError and ended
    `watch`). Styles are given as `style=` or `Text`, never as markup. Not on a terminal: NO_TERMINAL_WIDTH
    (COLUMNS too is set aside there: a pipe gets every table whole)."""
    console = Console(markup=False, emoji=False, **kwargs)
    if not console.is_terminal and "width" not in kwargs:
        console.width = NO_TERMINAL_WIDTH
    return console


def print_table(samples: list[MinerSample]) -> None:
    console = plain_console()
    terminal = console.is_terminal
    compact = terminal and console.width < COMPACT_BELOW
    console.print(fleet_table(samples, compact=compact, note_chars=NOTE_CHARS if terminal else None))
    if compact:  # (no note column: a mistyped address read just "offline" on an 80- or 100-column terminal, trial ZJ)
        for s in samples:
            if s.errors:
                console.print(Text(f"{s.host}:{s.port}: " + printable("; ".join(s.errors)[:NOTE_CHARS]), no_wrap=True,
                                   overflow="ellipsis"))


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields `advance(done)`. Silent when stderr is not a terminal."""
    console = plain_console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


def history_line(report: Report) -> str:
    up = [m.up_pct for m in report.miners]
    left_out = sum(1 for m in report.miners if m.left_out_pct)
    estimated = sum(1 for m in report.miners if m.estimated_pct)
    return (f"last hour (local history, {report.cycles} cycles): up {sum(up) / len(up) if up else 0:.1f}% · "
            f"{_fmt(report.facility_energy_kwh, 2)} kWh · cash {_usd(report.cash_usd)} · "
            f"{'-' if report.btc is None else f'{report.btc:.8f}'} BTC · cash {_usd(report.cash_cost_per_btc)}/BTC"
            + (f" · incomplete: {left_out} miner{'s' if left_out > 1 else ''} left out" if left_out else "")
            + (f" · {estimated} miner{'s' if estimated > 1 else ''} on estimated W" if estimated else ""))


def _figures_table(title: str, figures: list[tuple[str, str]], console: Console) -> Table:
    """Six figures or so in one row under their names (fits 80 columns), else one line a figure."""
    table = Table(title=title)
    for name, _ in figures:
        table.add_column(name, justify="right")
    table.add_row(*(value for _, value in figures))
    if _fits(console, table):
        return table
    table = Table(title=title, box=box.SIMPLE, show_header=False)
    table.add_column()
    table.add_column(justify="right")
    for name, value in figures:
        table.add_row(name, value)
    return table


def _fits(console: Console, table: Table) -> bool:
    """The table at its natural width fits the console (measured unbounded: rich gives the squeezed width)."""
    unbounded = console.options.update_width(NO_TERMINAL_WIDTH)
    return console.measure(table, options=unbounded).maximum <= console.width


def _report_miners(report: Report, title: str, *, compact: bool = False) -> Table:
    """One row a miner. Compact: shorter headings, one line a row, the model cut to what is left."""
    table = Table(title=title, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, pad_edge=not compact)
    names = (("miner", "model", "up %", "mining %", "TH/s", "W", "J/TH", "°C max") if compact else
             ("miner", "model", "up %", "mining %", "TH/s avg", "W avg", "J/TH", "chip °C max"))
    for name in names:
        # The model's column alone may narrow (its cells do not wrap: an ellipsis); the others keep their width.
        table.add_column(name, justify="left" if name in ("miner", "model") else "right",
                         no_wrap=compact and name != "model")
    for m in report.miners:
        model = Text(printable(m.model or "-"), no_wrap=True, overflow="ellipsis") if compact else printable(m.model or "-")
        table.add_row(m.miner, model, _fmt(m.up_pct, 1), _fmt(m.mining_pct, 1), _fmt(m.hashrate_avg_ths),
                      _fmt(m.power_avg_w, 0), _fmt(m.efficiency_j_th), _fmt(m.temp_chip_max_c, 0))
    return table


def print_report(report) -> None:
    """The `hashfleet report` tables: per miner, then the site's totals; each in its compact layout where the
    wide one does not fit the terminal (a miner's id and a $/BTC are never cut)."""
    from datetime import datetime, timezone

    console = plain_console()
    start = datetime.fromtimestamp(report.start, timezone.utc)
    end = datetime.fromtimestamp(report.end, timezone.utc)
    site = f"site {report.site}" + (f" shard {report.shard} (its miners only)" if report.shard else "")
    title = f"{site} · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC · {report.cycles} cycles"
    if report.first_cycle is not None and report.last_cycle is not None:
        # The history found, when it covers less than the period asked (trial ZH: 6 hours read as `--since 90d`'s).
        first = datetime.fromtimestamp(report.first_cycle, timezone.utc)
        last = datetime.fromtimestamp(report.last_cycle, timezone.utc)
        if (first - start).total_seconds() > 3600 or (end - last).total_seconds() > 3600:
            title = (f"{site} · history {first:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC, "
                     f"{report.cycles} cycles, of the period asked {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC")
    table = _report_miners(report, title)
    if not _fits(console, table):
        table = _report_miners(report, title, compact=True)
    console.print(table)
    figures = [("TH/s avg", _fmt(report.hashrate_avg_ths)), ("miner W avg", _fmt(report.power_avg_w, 0)),
               ("miner kWh", _fmt(report.energy_kwh, 2)), ("facility kWh", _fmt(report.facility_energy_kwh, 2)),
               ("BTC", "-" if report.btc is None else f"{report.btc:.8f}"), ("revenue $", _usd(report.revenue_usd))]
    totals = _figures_table("site totals", figures, console)
    console.print(totals)
    console.print(_figures_table("site cost", [
        ("energy $", _usd(report.energy_usd)), ("cash $", _usd(report.cash_usd)), ("all-in $", _usd(report.all_in_usd)),
        ("energy $/BTC", _usd(report.energy_cost_per_btc)), ("cash $/BTC", _usd(report.cash_cost_per_btc)),
        ("all-in $/BTC", _usd(report.all_in_cost_per_btc))], console))
    partial = [m for m in report.miners if m.cycles < report.cycles]
    if partial:  # (trial ZH: a miner removed halfway read "100.0 up %", of its own cycles, with no word)
        console.print(Text(
            f"read in fewer than the site's {report.cycles} cycles (added, removed or renamed in the period; its "
            "percentages are of its own cycles): "
            + ", ".join(f"{m.miner} ({m.cycles})" for m in partial[:10])
            + (f", and {len(partial) - 10} more" if len(partial) > 10 else ""), style="yellow"))
    left_out = [m for m in report.miners if m.left_out_pct]
    if left_out:
        console.print(Text(
            f"incomplete in {report.cycles_incomplete} of {report.cycles} cycles: left out of the site's totals and "
            "cost (a hashrate or power reading missing or refused): "
            + ", ".join(f"{m.miner} ({m.left_out_pct:.0f}% of its cycles"
                        f"{', no power reading' if m.power_avg_w is None else ''})" for m in left_out),
            style="bold yellow"))
    estimated = [m for m in report.miners if m.estimated_pct]
    if estimated:
        console.print(Text(
            f"estimated in {report.cycles_estimated} of {report.cycles} cycles: counted at their model's nameplate "
            "draw scaled by hashrate (no power reading; economics.estimate_missing_power), not a reading: "
            + ", ".join(f"{m.miner} ({m.estimated_pct:.0f}% of its cycles)" for m in estimated),
            style="bold yellow"))
    if report.skipped_values:
        console.print(f"{report.skipped_values} value(s) in the history were not finite or out of range: skipped")
