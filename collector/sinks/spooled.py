"""A cycle as line protocol into the spool, in batches of `batch_lines` lines as its parts arrive,
the last one with the cycle's end. A small site writes one batch per cycle; 10,000 miners write one
per ~1,000, so delivery starts while the rest of the cycle is still being polled and encoded.

Shared by the InfluxDB sink (which sends each batch as one write request) and the local history
(which keeps them).
"""

from __future__ import annotations

import asyncio

from collector import points
from collector.poller import CycleResult, MinersPart
from collector.spool import Spool

BATCH_LINES = 5000  # lines per spool batch; the InfluxDB sink uses its `batch_size`


class SpooledLines:
    def __init__(self, spool: Spool, *, batch_lines: int | None = None):
        self.spool = spool
        self.batch_lines = batch_lines or BATCH_LINES
        self._pending: list[str] = []  # lines of this cycle's parts not yet in a batch
        self._cycle_points = 0  # points the current cycle's parts wrote, for the collector's own point

    async def write_miners(self, part: MinersPart) -> None:
        lines = points.part_lines(part)
        self._cycle_points += len(lines)
        self._pending += lines
        size = self.batch_lines
        while len(self._pending) >= size:
            batch, self._pending = self._pending[:size], self._pending[size:]
            await self._append(batch, cycle_end=False)

    async def write(self, result: CycleResult) -> None:
        lines = self._pending + points.cycle_lines(result, self._cycle_points, self.spool.depth,
                                                   self.spool.dropped_batches, self.spool.rejected_batches)
        self._pending, self._cycle_points = [], 0
        size = self.batch_lines
        for start in range(0, len(lines), size):
            await self._append(lines[start:start + size], cycle_end=start + size >= len(lines))

    async def _append(self, lines: list[str], *, cycle_end: bool) -> None:
        await asyncio.to_thread(self.spool.append, lines)
        self.appended(cycle_end)

    def appended(self, cycle_end: bool) -> None:
        """Called after each batch reaches the spool; `cycle_end` for the cycle's last batch."""
