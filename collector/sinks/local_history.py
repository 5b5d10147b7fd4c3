"""No InfluxDB configured: the spool is the embedded store.

Each cycle's batches stay on disk for the retention period (SpoolConfig), and
`hashfleet report` reads them back, so a site with no servers still has history.
"""

from __future__ import annotations

from collector.sinks.spooled import SpooledLines
from collector.sinks.spool import Spool


class LocalHistorySink(SpooledLines):
    def __init__(self, spool: Spool):
        super().__init__(spool)

    def close(self) -> None:
        self.spool.close()
