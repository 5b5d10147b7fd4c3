"""The live terminal view of `hashfleet watch`: a sink that redraws the fleet table after every cycle."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler

from collector.clock import history_until
from collector.cycle import Cycle, MinersPart
from collector.history import Report, from_spool
from collector.terminal import COMPACT_BELOW, by_address, cost_summary, fleet_table, history_line, plain_console
from models import CostSample, MinerSample


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

    def __init__(self, history_dir: Path | None = None, interval_s: float = 10.0) -> None:
        console = plain_console()
        self._live = Live(console=console, auto_refresh=False)
        self._live.start()
        # Only when both would reach the same screen: `watch 2>log` keeps its log in the file.
        self._log_handlers = _log_through(console) if console.is_terminal and sys.stderr.isatty() else None
        self.history_dir = history_dir
        self.interval_s = interval_s  # the collector's, as far as the view knows (a lone cycle's span)
        self._history: Report | None = None
        self._history_read_at = float("-inf")

    async def write_miners(self, part: MinersPart) -> None:
        """Nothing: the view is redrawn once per cycle, from the whole cycle's samples."""

    async def write(self, cycle: Cycle) -> None:
        # The site's lines first and the miners last: a terminal too short for the fleet shows fewer miner
        # rows, never less of the cost per BTC. Narrow terminals get the compact tables (one line a miner).
        compact = self._live.console.width < COMPACT_BELOW
        parts: list = [f"site {cycle.site} · {cycle.ts:%Y-%m-%d %H:%M:%S} UTC · "
                       f"cycle {cycle.poll_s:.2f} s · {cycle.failed} failed"]
        if self.history_dir is not None:
            await self._refresh_history(cycle.site)
            if self._history is not None and self._history.cycles:
                parts.append(history_line(self._history))
        site = cycle.cost.site if cycle.cost is not None and cycle.network is not None else None
        if site is not None:
            parts.append(cost_summary(site, cycle.network, compact=compact))
        self._live.update(self._fitted(parts, by_address(cycle.samples), compact, site), refresh=True)

    def _fitted(self, parts: list, samples: list[MinerSample], compact: bool, site: CostSample | None) -> Group:
        """The parts and the fleet table, with as many miner rows as the terminal has lines for: the
        fleet's totals (the table's last lines) stay on screen, the rows left out are counted in it.
        Not on a terminal, every row (nothing is redrawn there: the last cycle is printed once, whole).
        The fleet's J/TH is the cost's (`site`): over the miners and watts of the break-even beside it."""
        console = self._live.console
        shown = len(samples)
        while True:
            view = Group(*parts, fleet_table(samples, compact=compact, shown=shown, cost=site))
            if not console.is_terminal or shown == 0:
                return view
            excess = len(console.render_lines(view, pad=False)) - console.height
            if excess <= 0:
                return view
            shown = max(0, shown - excess)  # a row is a line or more: the next pass sees what is still over

    async def _refresh_history(self, site: str) -> None:
        now = time.time()
        if now - self._history_read_at < self.HISTORY_REFRESH_S:
            return
        self._history_read_at = now
        self._history = await asyncio.to_thread(from_spool, self.history_dir, site, int(now - self.HISTORY_S),
                                                history_until(now), interval_s=self.interval_s)

    def close(self) -> None:
        if self._log_handlers is not None:
            root = logging.getLogger()
            for handler in list(root.handlers):
                root.removeHandler(handler)
            for handler in self._log_handlers:
                root.addHandler(handler)
        try:
            self._live.stop()
        except OSError:  # the terminal is gone (closed window, SIGHUP): its last redraw has nowhere to go (trial ZJ)
            pass


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
