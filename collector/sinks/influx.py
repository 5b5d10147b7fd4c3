"""InfluxDB sink: line protocol over the v2 write API with influxdb-client.

gzip on, batches of `batch_size` lines, and retry with exponential backoff
(influxdb-client's WritesRetry, which honours Retry-After). Works against
InfluxDB 2.x, 3.x and 1.8+ (which accept /api/v2/write).
"""

from __future__ import annotations

import asyncio
import logging

from influxdb_client import InfluxDBClient
from influxdb_client.client.write.retry import WritesRetry
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError

from collector import points
from collector.network_state import network_fields
from collector.poller import CycleResult
from models import InfluxConfig

log = logging.getLogger(__name__)


class InfluxWriteError(Exception):
    """A batch could not be written; the message names the server, never the token."""


class InfluxSink:
    def __init__(self, config: InfluxConfig, *, retries: int = 3):
        self.config = config
        self._client = InfluxDBClient(
            url=config.url, token=config.resolved_token(), org=config.org, enable_gzip=True,
            timeout=int(config.timeout_s * 1000),
            retries=WritesRetry(total=retries, retry_interval=1, exponential_base=2, max_retry_delay=30,
                                max_retry_time=0),
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.points_written = 0

    def write_lines(self, lines: list[str]) -> int:
        size = self.config.batch_size
        for start in range(0, len(lines), size):
            batch = lines[start:start + size]
            try:
                self._write_api.write(bucket=self.config.bucket, org=self.config.org, record=batch,
                                      write_precision=points.PRECISION)
            except ApiException as e:
                raise InfluxWriteError(
                    f"InfluxDB at {self.config.url} refused a write to bucket {self.config.bucket!r}: "
                    f"HTTP {e.status} {e.reason}: {(e.body or '')[:300]!s}") from None
            except (HTTPError, OSError) as e:
                raise InfluxWriteError(f"InfluxDB at {self.config.url} unreachable: {type(e).__name__}") from None
            self.points_written += len(batch)
        return len(lines)

    async def write(self, result: CycleResult) -> None:
        lines = points.fleet_lines(result.samples)
        if result.cost is not None:
            lines += points.cost_lines(result.cost, result.site, result.ts, network_fields(result.cost.network, result.ts))
        lines.append(points.collector_point(
            site=result.site, ts=result.ts, poll_duration_s=result.duration_s,
            miners_polled=len(result.samples), miners_failed=result.failed, points_written=len(lines) + 1,
        ))
        await asyncio.to_thread(self.write_lines, lines)

    def close(self) -> None:
        self._client.close()
