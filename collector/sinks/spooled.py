"""A cycle as line protocol into the spool, in batches of at least BATCH_LINES lines as its parts
arrive, the last one with the cycle's end. A small site writes one batch per cycle; 10,000 miners
write one per part, so delivery starts while the rest of the cycle is still being encoded.

Shared by the InfluxDB sink (which then delivers the batches) and the local history (which keeps them).
"""

from __future__ import annotations

import asyncio

from collector import points
from collector.poller import CycleResult, MinersPart
from collector.spool import Spool

BATCH_LINES = 2000  # ~400 miners' points: below this, a cycle's parts wait for its end (one fsync)


class SpooledLines:
    def __init__(self, spool: Spool):
        self.spool = spool
        self._pending: list[str] = []  # lines of this cycle's parts not yet in a batch
        self._cycle_points = 0  # points the current cycle's parts wrote, for the collector's own point

    async def write_miners(self, part: MinersPart) -> None:
        lines = points.part_lines(part)
        self._cycle_points += len(lines)
        self._pending += lines
        if len(self._pending) >= BATCH_LINES:
            lines, self._pending = self._pending, []
            await self._append(lines, cycle_end=False)

    async def write(self, result: CycleResult) -> None:
        lines = self._pending + points.cycle_lines(result, self._cycle_points, self.spool.depth,
                                                   self.spool.dropped_batches)
        self._pending, self._cycle_points = [], 0
        await self._append(lines, cycle_end=True)

    async def _append(self, lines: list[str], *, cycle_end: bool) -> None:
        await asyncio.to_thread(self.spool.append, lines)
        self.appended(cycle_end)

    def appended(self, cycle_end: bool) -> None:
        """Called after each batch reaches the spool; `cycle_end` for the cycle's last batch."""
