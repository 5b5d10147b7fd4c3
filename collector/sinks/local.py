"""No InfluxDB configured: the spool is the embedded store.

Each cycle's batch stays on disk for the retention period (SpoolConfig), and
`hashfleet report` reads it back, so a site with no servers still has history.
"""

from __future__ import annotations

import asyncio

from collector import points
from collector.poller import CycleResult
from collector.spool import Spool


class LocalHistorySink:
    def __init__(self, spool: Spool):
        self.spool = spool

    async def write(self, result: CycleResult) -> None:
        await asyncio.to_thread(self.spool.append, points.cycle_lines(result, self.spool.depth, self.spool.dropped_batches))

    def close(self) -> None:
        self.spool.close()
