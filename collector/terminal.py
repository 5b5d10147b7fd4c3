"""Terminal output: fleet tables and progress bars (rich), on stderr for progress."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from collector.sources.polled_miners import CycleResult, MinersPart
from collector.history import Report, from_spool
from models import CostSample, MinerSample, NetworkState


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fleet_table(samples: list[MinerSample]) -> Table:
    table = Table(show_footer=True)
    table.add_column("miner", footer="fleet")
    table.add_column("address")
    table.add_column("model")
    table.add_column("state", footer=f"{sum(s.state == 'mining' for s in samples)}/{len(samples)} mining")
    hashrate = sum(s.hashrate_ths or 0 for s in samples)
    power = sum(s.power_w or 0 for s in samples)
    table.add_column("TH/s", justify="right", footer=_fmt(hashrate))
    table.add_column("TH/s avg", justify="right")
    table.add_column("W", justify="right", footer=_fmt(power, 0))
    table.add_column("J/TH", justify="right", footer=_fmt(power / hashrate if hashrate else None))
    table.add_column("chip °C", justify="right",
                     footer=_fmt(max((s.temp_chip_max_c for s in samples if s.temp_chip_max_c is not None), default=None), 0))
    table.add_column("note")
    for s in samples:
        table.add_row(s.miner, f"{s.host}:{s.port}", s.model or "-", s.state.value, _fmt(s.hashrate_ths),
                      _fmt(s.hashrate_avg_ths), _fmt(s.power_w, 0), _fmt(s.efficiency_j_th),
                      _fmt(s.temp_chip_max_c, 0), "; ".join(s.errors)[:60])
    return table


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.0f}"


def cost_summary(site: CostSample, network: NetworkState) -> Table:
    """The site's cost per BTC, the number the product exists for, next to what a BTC sells for."""
    table = Table(title=f"cost per BTC · BTC ${network.btc_price_usd:,.0f}"
                        f"{' (stale: ' + ', '.join(network.stale) + ')' if network.stale else ''}")
    for name in ("energy", "cash", "all-in", "BTC/day (net)", "revenue/day", "profit/day", "margin",
                 "break-even $/kWh", "hashprice $/PH/day"):
        table.add_column(name, justify="right")
    table.add_row(_usd(site.energy_cost_per_btc), _usd(site.cash_cost_per_btc), _usd(site.all_in_cost_per_btc),
                  f"{site.btc_per_day_net:.6f}", _usd(site.revenue_usd_day), _usd(site.profit_usd_day),
                  "-" if site.margin_pct is None else f"{site.margin_pct:.1f}%",
                  "-" if site.breakeven_power_price is None else f"{site.breakeven_power_price:.4f}",
                  f"{site.hashprice_usd_ph_day:.2f}")
    return table


def print_table(samples: list[MinerSample]) -> None:
    Console().print(fleet_table(samples))


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr; yields `advance(done)`. Silent when stderr is not a terminal."""
    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not console.is_terminal)
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


class LiveView:
    """A sink that redraws the fleet table in the terminal after every cycle.

    With a local history (a collector running without InfluxDB for this site), it also shows the
    last hour from it, re-read every few minutes in a worker thread.

    While the view is up on a terminal that is also where the log goes, log records go through the
    view's own console, so they print above the live region instead of writing into it (which
    scrolled the table and left a copy of it, header and all, on screen at every refresh); close()
    gives logging its handlers back.
    """

    HISTORY_S = 3600
    HISTORY_REFRESH_S = 300

    def __init__(self, history_dir: Path | None = None) -> None:
        console = Console()
        self._live = Live(console=console, auto_refresh=False)
        self._live.start()
        # Only when both would reach the same screen: `watch 2>log` keeps its log in the file.
        self._log_handlers = _log_through(console) if console.is_terminal and sys.stderr.isatty() else None
        self.history_dir = history_dir
        self._history: Report | None = None
        self._history_read_at = float("-inf")

    async def write_miners(self, part: MinersPart) -> None:
        """Nothing: the view is redrawn once per cycle, from the whole cycle's samples."""

    async def write(self, result: CycleResult) -> None:
        caption = (f"site {result.site} · {result.ts:%Y-%m-%d %H:%M:%S} UTC · "
                   f"cycle {result.duration_s:.2f} s · {result.failed} failed")
        parts = [fleet_table(result.samples), caption]
        if result.cost is not None:
            parts.append(cost_summary(result.cost.site, result.cost.network))
        if self.history_dir is not None:
            await self._refresh_history(result.site)
            if self._history is not None and self._history.cycles:
                parts.append(history_line(self._history))
        self._live.update(Group(*parts), refresh=True)

    async def _refresh_history(self, site: str) -> None:
        now = time.time()
        if now - self._history_read_at < self.HISTORY_REFRESH_S:
            return
        self._history_read_at = now
        self._history = await asyncio.to_thread(from_spool, self.history_dir, site, int(now - self.HISTORY_S),
                                                int(now))

    def close(self) -> None:
        if self._log_handlers is not None:
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in self._log_handlers:
                root.addHandler(handler)
        self._live.stop()


def _log_through(console: Console) -> list[logging.Handler]:
    """Send the root logger's records to `console` (above its live region); return the handlers it had."""
    root = logging.getLogger()
    previous = list(root.handlers)
    for handler in previous:
        root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False,
                          log_time_format="%H:%M:%S")
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root.addHandler(handler)
    return previous


def history_line(report: Report) -> str:
    up = [m.up_pct for m in report.miners]
    return (f"last hour (local history, {report.cycles} cycles): up {sum(up) / len(up) if up else 0:.1f}% · "
            f"{_fmt(report.energy_kwh, 2)} kWh · cash {_usd(report.cash_usd)} · "
            f"{'-' if report.btc is None else f'{report.btc:.8f}'} BTC · cash {_usd(report.cash_cost_per_btc)}/BTC")


def print_report(report) -> None:
    """The `hashfleet report` tables: per miner, then the site's totals."""
    from datetime import datetime, timezone

    console = Console()
    start = datetime.fromtimestamp(report.start, timezone.utc)
    end = datetime.fromtimestamp(report.end, timezone.utc)
    table = Table(title=f"site {report.site} · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC · "
                        f"{report.cycles} cycles")
    for name in ("miner", "model", "up %", "mining %", "TH/s avg", "W avg", "J/TH", "chip °C max"):
        table.add_column(name, justify="left" if name in ("miner", "model") else "right")
    for m in report.miners:
        table.add_row(m.miner, m.model or "-", _fmt(m.up_pct, 1), _fmt(m.mining_pct, 1), _fmt(m.hashrate_avg_ths),
                      _fmt(m.power_avg_w, 0), _fmt(m.efficiency_j_th), _fmt(m.temp_chip_max_c, 0))
    console.print(table)
    totals = Table(title="site totals")
    for name in ("TH/s avg", "W avg", "energy kWh", "cash $", "all-in $", "BTC", "revenue $", "cash $/BTC",
                 "all-in $/BTC"):
        totals.add_column(name, justify="right")
    totals.add_row(_fmt(report.hashrate_avg_ths), _fmt(report.power_avg_w, 0), _fmt(report.energy_kwh, 2),
                   _usd(report.cash_usd), _usd(report.all_in_usd),
                   "-" if report.btc is None else f"{report.btc:.8f}", _usd(report.revenue_usd),
                   _usd(report.cash_cost_per_btc), _usd(report.all_in_cost_per_btc))
    console.print(totals)
