"""A cycle as line protocol into the spool, in batches of `batch_lines` lines as its parts arrive,
the last one with the cycle's end. A small site writes one batch per cycle; 10,000 miners write one
per ~1,000, so delivery starts while the rest of the cycle is still being polled and encoded.

Shared by the InfluxDB sink (which sends each batch as one write request) and the local history
(which keeps them).

A batch the disk refuses (full, read-only, failing) keeps what can be kept: it goes straight to its
destination when the sink has one (`deliver_directly`), else the oldest batches are dropped to make
room and it is stored on a second try; only if that fails too are its lines lost, counted
(`collector.spool_lost_lines`) and logged with the path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

from collector.bounded_log import BoundedLog
from collector.cycle import Cycle, MinersPart
from collector.sinks import points
from collector.sinks.spool import Spool, SpoolWriteError

log = logging.getLogger(__name__)

BATCH_LINES = 5000  # lines per spool batch; the InfluxDB sink uses its `batch_size`
STORE_ERRORS_EVERY_S = 300  # a disk that stays full or read-only is logged this often, not every batch
# This process, in its `collector` points: two collectors given one shard on two hosts both write the site's
# figures (every miner twice), and only their points can tell (the Collector health dashboard and an alert).
# The random part tells apart two containers that share a host name and pid 1.
INSTANCE = f"{socket.gethostname()[:64]}/{os.getpid()}/{secrets.token_hex(3)}"


class SpooledLines:
    def __init__(self, spool: Spool, *, batch_lines: int | None = None):
        self.spool = spool
        self.batch_lines = batch_lines or BATCH_LINES
        self._pending: list[str] = []  # lines of this cycle's parts not yet in a batch
        self._cycle_points = 0  # points the current cycle's parts wrote, for the collector's own point
        self.last_cycle_points = 0  # every point of the last whole cycle
        self._errors = BoundedLog(log, every_s=STORE_ERRORS_EVERY_S)  # (the counts are in the collector point)

    async def write_miners(self, part: MinersPart) -> None:
        lines = points.part_lines(part)
        self._cycle_points += len(lines)
        self._pending += lines
        size = self.batch_lines
        while len(self._pending) >= size:
            batch, self._pending = self._pending[:size], self._pending[size:]
            await self._append(batch, cycle_end=False)

    async def write(self, cycle: Cycle) -> None:
        spool = self.spool
        ending = points.cycle_lines(cycle, self._cycle_points, spool.depth, spool.dropped_batches,
                                    spool.rejected_lines, spool.lost_lines, INSTANCE, spool.expired_batches)
        lines = self._pending + ending
        self.last_cycle_points = self._cycle_points + len(ending)
        self._pending, self._cycle_points = [], 0
        size = self.batch_lines
        for start in range(0, len(lines), size):
            await self._append(lines[start:start + size], cycle_end=start + size >= len(lines))

    async def _append(self, lines: list[str], *, cycle_end: bool) -> None:
        try:
            await asyncio.to_thread(self._store, lines)
        finally:
            self.appended(cycle_end)  # whatever became of this batch, the ones before it are waiting

    def _store(self, lines: list[str]) -> None:
        try:
            self.spool.append(lines)
            return
        except SpoolWriteError as e:
            refused = e
        if self.deliver_directly(lines):
            self._errors.log(logging.ERROR, "direct", "%s; its %d line(s) were delivered directly instead", refused,
                             len(lines))
            return
        if refused.disk_full and self.spool.make_room(refused.size):
            try:
                self.spool.append(lines)
                return
            except SpoolWriteError as e:
                refused = e
        self.spool.count_lost(len(lines))
        self._errors.log(logging.ERROR, "lost", "%s; its %d line(s) are lost (%d in all, collector.spool_lost_lines)",
                         refused, len(lines), self.spool.lost_lines)

    def deliver_directly(self, lines: list[str]) -> bool:
        """A batch the spool could not store: send it now, without the spool. True if delivered."""
        return False

    def appended(self, cycle_end: bool) -> None:
        """Called after each batch reaches the spool (or failed to); `cycle_end` for the cycle's last batch."""
