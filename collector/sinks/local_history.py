"""No InfluxDB configured: the spool is the embedded store.

Each cycle's batches stay on disk for the retention period (SpoolConfig) or within the
spool's budget (`spool.max_mb`), whichever is shorter, and `hashfleet report` reads them
back, so a site with no servers still has history. After its first cycles the sink
estimates, from the bytes a cycle writes, how many hours the budget holds at this
fleet's rate, and says once (a warning) when that is less than the retention period,
with the `spool.max_mb` that would keep it.
"""

from __future__ import annotations

import logging
import math

from collector.sinks.spooled import SpooledLines
from collector.sinks.spool import Spool

log = logging.getLogger(__name__)

# The estimate is made from the third cycle's bytes: the first two write fewer points (health needs a
# cycle before it: 76 and 78 KB, then 84 KB a cycle at 300 Avalons).
ESTIMATE_AT_CYCLE = 3
SPARE = 1.1  # cycles vary (faults, events, miners coming and going): the suggested budget has a tenth spare
MIB = 1024 * 1024


class LocalHistorySink(SpooledLines):
    def __init__(self, spool: Spool, *, interval_s: float | None = None):
        super().__init__(spool)
        self.interval_s = interval_s  # None: no estimate
        self._cycles = 0
        self._bytes_before = 0  # appended when the cycle before the estimated one ended

    def appended(self, cycle_end: bool) -> None:
        if not cycle_end or self.interval_s is None or self.spool.retention_s is None:
            return
        self._cycles += 1
        if self._cycles == ESTIMATE_AT_CYCLE - 1:
            self._bytes_before = self.spool.appended_bytes
        elif self._cycles == ESTIMATE_AT_CYCLE:
            self._say_what_the_budget_holds(self.spool.appended_bytes - self._bytes_before)

    def _say_what_the_budget_holds(self, cycle_bytes: int) -> None:
        if cycle_bytes <= 0:
            return
        bytes_per_h = cycle_bytes * 3600 / self.interval_s
        max_mb = round(self.spool.max_bytes / MIB, 3)  # as configured (the spool holds it in whole bytes)
        held_h = self.spool.max_bytes / bytes_per_h
        retention_h = self.spool.retention_s / 3600
        if held_h >= retention_h:
            return
        log.warning("local history: this fleet writes ~%.1f MB an hour (%.0f KB a %g s cycle), so spool.max_mb %g "
                    "holds ~%.3g h of it, less than spool.retention_h %g; set spool.max_mb to ~%d to keep %g h",
                    bytes_per_h / MIB, cycle_bytes / 1024, self.interval_s, max_mb, held_h,
                    retention_h, math.ceil(bytes_per_h * retention_h * SPARE / MIB), retention_h)

    def close(self) -> None:
        self.spool.close()
