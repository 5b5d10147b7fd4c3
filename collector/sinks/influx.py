"""InfluxDB sink: every cycle goes through the durable spool, then to InfluxDB.

A cycle counts as done once its batches are on disk (collector.spool). A
background task delivers spooled batches oldest first over the v2 write API,
each batch file's gzip body sent as it is (one request per batch, at most
`batch_size` lines); while InfluxDB is down batches accumulate and the task
retries with exponential backoff; batches left at exit (or after a crash) are
delivered on the next start. Writes are idempotent (same series, same
whole-second timestamp), so at-least-once delivery is safe. A batch InfluxDB
refuses as malformed (HTTP 400, 413, 422) can never succeed: it is moved aside
(`.rejected`), logged and counted instead of blocking every batch behind it.
Works against InfluxDB 2.x, 3.x and 1.8+.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib

from influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError

from collector import points
from collector.redact import redact, redact_url
from collector.sinks.spooled import SpooledLines
from collector.spool import Batch, Spool
from models import InfluxConfig

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
NOT_RETRYABLE = {400, 413, 422}  # the request itself is wrong: sending it again cannot help


class InfluxWriteError(Exception):
    """A batch could not be written; the message names the server, never the token or URL credentials."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class InfluxWriter:
    """The transport: gzip'd line protocol to one bucket, through influxdb-client's write service.

    The body is sent as given (Content-Encoding: gzip): spool batches are already gzip'd, and letting
    the client compress again at its fixed level 9 was 8.6 % of the collector's CPU at 10,000 miners."""

    def __init__(self, config: InfluxConfig):
        self.config = config
        # Retries are the spool's job (it survives restarts); the client itself tries once.
        self._client = InfluxDBClient(url=config.url, token=config.resolved_token(), org=config.org,
                                      enable_gzip=False, timeout=int(config.timeout_s * 1000), retries=False)
        self._service = WriteService(self._client.api_client)

    def write_gzip(self, body: bytes) -> None:
        """One request: `body` is gzip'd line protocol (at most `batch_size` lines)."""
        try:
            self._service.post_write(org=self.config.org, bucket=self.config.bucket, body=body,
                                     precision=points.PRECISION, content_encoding="gzip",
                                     content_type="text/plain; charset=utf-8")
        except ApiException as e:
            raise InfluxWriteError(redact(
                f"InfluxDB at {redact_url(self.config.url)} refused a write to bucket {self.config.bucket!r}: "
                f"HTTP {e.status} {e.reason}: {(e.body or '')[:300]!s}"),
                retryable=e.status not in NOT_RETRYABLE) from None
        except (HTTPError, OSError) as e:
            raise InfluxWriteError(f"InfluxDB at {redact_url(self.config.url)} unreachable: {type(e).__name__}") from None

    def close(self) -> None:
        self._client.close()


class InfluxSink(SpooledLines):
    def __init__(self, config: InfluxConfig, spool: Spool, *, flush_timeout_s: float = 10.0):
        super().__init__(spool, batch_lines=config.batch_size)  # one spool batch = one write request
        self.config = config
        self.writer = InfluxWriter(config)
        self.flush_timeout_s = flush_timeout_s
        self.delivered_batches = 0
        self._delivery: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None  # a new batch cuts a retry backoff short
        self._failing_since: float | None = None

    def appended(self, cycle_end: bool) -> None:
        """A batch is on disk: deliver it now, while the rest of the cycle is still being encoded.
        While InfluxDB is failing, only a cycle's end cuts the retry backoff short (once a cycle,
        not once per part)."""
        if self._wake is None:
            self._wake = asyncio.Event()
        if cycle_end or self._failing_since is None:
            self._wake.set()
        if self._delivery is None or self._delivery.done():
            self._delivery = asyncio.create_task(self._deliver_all())

    async def _deliver_all(self) -> None:
        backoff = 1.0
        while batches := self.spool.batches():
            try:
                await asyncio.to_thread(self._deliver, batches[0])
            except InfluxWriteError as e:
                self._note_failure(e)
                self._wake.clear()
                try:  # retry after the backoff, or sooner when the next cycle brings a batch
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
                    # races the event, and this task would then outlive the loop's shutdown.
                    async with asyncio.timeout(backoff):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            self._note_recovery()

    def _deliver(self, batch: Batch) -> None:
        try:
            body = batch.path.read_bytes()
            zlib.decompressobj(wbits=31).decompress(body)  # a damaged file must not reach InfluxDB
        except FileNotFoundError:  # the disk budget dropped it meanwhile (counted there)
            return
        except (OSError, zlib.error) as e:  # unreadable file: keep delivering the rest, say so
            log.error("spool batch %s unreadable (%s): moved aside", batch.path, e)
            self.spool.set_aside(batch, "bad")
            return
        try:
            self.writer.write_gzip(body)
        except InfluxWriteError as e:
            if e.retryable:
                raise
            # Malformed for InfluxDB: it will never be accepted. Keep it for inspection (counted in the
            # collector point's spool_rejected), go on.
            log.error("%s; batch %s moved aside (.rejected), the spool goes on", e, batch.path.name)
            self.spool.set_aside(batch, "rejected")
            return
        self.spool.ack(batch)
        self.delivered_batches += 1

    def _note_failure(self, error: InfluxWriteError) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("%s; batches are kept in the spool (%s) and retried", error, self.spool.directory)

    def _note_recovery(self) -> None:
        if self._failing_since is not None and not self.spool.batches():
            log.info("InfluxDB at %s is back: spool drained after %.0f s", redact_url(self.config.url),
                     time.monotonic() - self._failing_since)
            self._failing_since = None

    def close(self) -> None:
        """Last chance to deliver before exit, bounded in time; what remains waits on disk for the next start."""
        deadline = time.monotonic() + self.flush_timeout_s
        try:
            for batch in self.spool.batches():
                if time.monotonic() > deadline:
                    break
                self._deliver(batch)
        except InfluxWriteError as e:
            log.warning("%s; %d batch(es) stay in the spool for the next start", e, self.spool.depth)
        finally:
            self.writer.close()
            self.spool.close()
