"""InfluxDB sink: every cycle goes through the durable spool, then to InfluxDB.

A cycle counts as done once its batches are on disk (collector.sinks.spool). A
background task delivers spooled batches oldest first over the v2 write API,
each batch file's gzip body sent as it is (one request per batch, at most
`batch_size` lines); while InfluxDB is down batches accumulate and the task
retries with exponential backoff; batches left at exit (or after a crash) are
delivered on the next start. Writes are idempotent (same series, same
whole-second timestamp), so at-least-once delivery is safe.

Only `204 No Content` is a delivered batch: any other answer (a 200 with a
body, a redirect, a proxy's error page) is a failure, retried. A batch
InfluxDB refuses as malformed (HTTP 400, 413, 422) is split in halves and each
half sent again, down to the lines it refuses one by one: those alone are set
aside (`<seq>.lp.rejected`), logged and counted, and every other line of the
batch is delivered. (InfluxDB 1.x may store the good lines of a refused batch
already, a "partial write": sending them again overwrites them with the same
values.) A batch file that cannot be read whole (damaged: collector/spool_files.py)
is moved aside as `<seq>.lp.bad`, logged, and the rest delivered. The delivery
task survives any error; were it to end, the next batch starts it again. Works against InfluxDB 2.x, 3.x and 1.8+.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import time
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError

from collector import line_protocol
from collector.bounded_log import BoundedLog
from collector.redact import hide_secrets, redact, redact_url
from collector.sinks.spooled import SpooledLines
from collector.sinks.spool import Spool
from collector.spool_files import Batch, DamagedBatch, lines_of
from models import InfluxConfig

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
FAILURE_CHANGES_EVERY_S = 60.0  # while failing, a new reason is logged at most this often
# While failing, the failure is said again this often, with what the spool holds (trial ZE: a refused token was
# logged once, then only "cycle N: ... 0 failed" lines until the spool's budget dropped data).
STILL_FAILING_EVERY_S = 300.0
AUTH_REFUSED = {401, 403}  # the token: its file is read again before the next try (re-minted, or restored)
NOT_RETRYABLE = {400, 413, 422}  # the request itself is wrong: sending it again as it is cannot help
MAX_ANSWER_BYTES = 4096  # of an answer's body, read for the error message; the rest is never read
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class InfluxWriteError(Exception):
    """A batch could not be written; the message names the server, never the token or URL credentials."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class InfluxWriter:
    """The transport: gzip'd line protocol to one bucket, one urllib3 POST to /api/v2/write per batch.

    The body is sent as given (Content-Encoding: gzip): spool batches are already gzip'd (letting
    influxdb-client compress again at its fixed level 9 was 8.6 % of the collector's CPU at 10,000
    miners). Not influxdb-client's write service: it counted a 200 with a body as written, decoded
    every answer as UTF-8 (a non-UTF-8 body raised out of it) and read answers whole."""

    def __init__(self, config: InfluxConfig):
        self.config = config
        # Retries are the spool's job (it survives restarts); each request is tried once.
        self._http = urllib3.PoolManager(num_pools=1, maxsize=2, retries=False, cert_reqs="CERT_REQUIRED",
                                         timeout=urllib3.Timeout(connect=config.timeout_s, read=config.timeout_s))
        query = urlencode({"org": config.org, "bucket": config.bucket, "precision": line_protocol.PRECISION})
        self._url = f"{config.url}/api/v2/write?{query}"
        self._headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8",
                         "User-Agent": "hashfleet"}
        self._secrets: list[str] = []  # hidden in what is quoted of an answer: a proxy's error page may echo headers
        self._use_token(config.resolved_token())

    def _use_token(self, token: str) -> None:
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self._secrets = [*self._secrets[-3:], token]

    def reload_token(self) -> bool:
        """Read the token file again (InfluxDB refused the token: it may have been minted anew, or restored
        with the database): True when it holds another token, which the next write uses."""
        if self.config.token_file is None:
            return False
        try:
            token = self.config.resolved_token()
        except ValueError as e:  # (names the file, never its contents)
            log.error("InfluxDB token not read again: %s", e)
            return False
        if token == self._secrets[-1]:
            return False
        self._use_token(token)
        log.warning("InfluxDB refused the token: %s holds another one now, used from the next write",
                    self.config.token_file)
        return True

    def write_gzip(self, body: bytes) -> None:
        """One request: `body` is gzip'd line protocol (at most `batch_size` lines). Returns only on
        204; InfluxWriteError for anything else."""
        try:
            answer = self._http.request("POST", self._url, body=body, headers=self._headers, preload_content=False)
        except (HTTPError, OSError) as e:
            raise InfluxWriteError(f"InfluxDB at {redact_url(self.config.url)} unreachable: {type(e).__name__}") from None
        except ValueError:  # http.client refused to send a header: its message quotes it, token and all
            raise InfluxWriteError(f"InfluxDB at {redact_url(self.config.url)}: the write could not be sent (a "
                                   "header value the HTTP client refused)") from None
        try:
            if answer.status == 204:
                return
            detail = answer.read(MAX_ANSWER_BYTES)
        except (HTTPError, OSError) as e:
            raise InfluxWriteError(f"InfluxDB at {redact_url(self.config.url)} broke off its answer: {type(e).__name__}") from None
        finally:
            if answer.status != 204:
                answer.close()  # a connection that answered wrongly is not reused
            answer.release_conn()
        text = _CONTROL.sub(" ", hide_secrets(detail.decode("utf-8", "replace"), self._secrets)).strip()[:300]
        what = "refused a write" if answer.status >= 300 else "did not confirm a write (only 204 does)"
        hint = ""
        if answer.status in AUTH_REFUSED and not self.reload_token():
            hint = (f" (the token, from {self.config.token_file}, is read again at each try)" if self.config.token_file
                    else " (check influx.token or INFLUX_TOKEN)")
        elif answer.status == 404 and "bucket" not in text.lower():  # (2.x's missing bucket says so: not this)
            # InfluxDB 1.6/1.7 (Debian's `apt install influxdb`) has no /api/v2/write: a bare "404 page not found"
            # (trial ZJ)
            hint = " (no /api/v2/write there: InfluxDB 1.8+ or 2.x is needed, docs/deployment.md)"
        raise InfluxWriteError(redact(
            f"InfluxDB at {redact_url(self.config.url)} {what} to bucket {self.config.bucket!r}: "
            f"HTTP {answer.status} {answer.reason or ''}: {text}{hint}"), retryable=answer.status not in NOT_RETRYABLE)

    def write_lines(self, lines: list[str]) -> None:
        self.write_gzip(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))

    def close(self) -> None:
        self._http.clear()


class InfluxSink(SpooledLines):
    def __init__(self, config: InfluxConfig, spool: Spool, *, flush_timeout_s: float = 10.0):
        super().__init__(spool, batch_lines=config.batch_size)  # one spool batch = one write request
        self.config = config
        self.writer = InfluxWriter(config)
        self.flush_timeout_s = flush_timeout_s
        self.delivered_batches = 0
        self.delivery_errors = 0  # unexpected errors in delivery (each logged, then retried)
        self._delivery: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None  # a new batch cuts a retry backoff short
        self._failing_since: float | None = None
        self._still_said = 0.0  # monotonic time the failure was last said again (STILL_FAILING_EVERY_S)
        self._failure_said = ""  # the failure last logged while failing: a new one is logged too (bounded)
        self._changes = BoundedLog(log, every_s=FAILURE_CHANGES_EVERY_S)

    def appended(self, cycle_end: bool) -> None:
        """A batch is on disk: deliver it now, while the rest of the cycle is still being encoded.
        While InfluxDB is failing, only a cycle's end cuts the retry backoff short (once a cycle,
        not once per part)."""
        if self._wake is None:
            self._wake = asyncio.Event()
        if cycle_end or self._failing_since is None:
            self._wake.set()
        if self._delivery is None or self._delivery.done():
            ended = self._delivery
            if ended is not None and not ended.cancelled() and ended.exception() is not None:
                self.delivery_errors += 1
                log.error("InfluxDB delivery stopped (%s: %s); started again", type(ended.exception()).__name__,
                          ended.exception())
            self._delivery = asyncio.create_task(self._deliver_all())

    async def _deliver_all(self) -> None:
        backoff = 1.0
        while True:
            try:
                self._wake.clear()  # a cycle ending while this write is under way cuts the next backoff short
                batches = self.spool.batches()
                if not batches:
                    return
                await asyncio.to_thread(self._deliver, batches[0])
            except Exception as e:  # noqa: BLE001 - this task must outlive anything InfluxDB or the disk does
                self._note_failure(e)
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
            body = batch.read_body()  # a damaged file must not reach InfluxDB
        except FileNotFoundError:  # the disk budget dropped it meanwhile (counted there)
            return
        except DamagedBatch as e:  # keep delivering the rest, say so
            self.spool.set_aside_damaged(batch, e)
            return
        try:
            self.writer.write_gzip(body)
        except InfluxWriteError as e:
            if e.retryable:
                raise
            try:
                lines = lines_of(batch.path, body)
            except DamagedBatch as damage:  # (more lines than a batch may hold: not sent again line by line)
                self.spool.set_aside_damaged(batch, damage)
                return
            refused = self._refused_lines(lines, e)
            if not refused:  # too large as a whole (413), every half taken
                self.spool.ack(batch)
                self.delivered_batches += 1
                return
            kept = self.spool.set_aside_lines(batch, [line for line, _ in refused])
            log.error("InfluxDB refused %d of the %d line(s) of batch %s (%s); they are moved aside (.rejected) "
                      "%s, the other lines are delivered", len(refused), len(lines), batch.path.name, refused[0][1],
                      f"to {kept}" if kept else "(but not kept: see above)")
            if len(refused) == len(lines):
                return
        else:
            self.spool.ack(batch)
        self.delivered_batches += 1

    def _refused_lines(self, lines: list[str], error: InfluxWriteError) -> list[tuple[str, str]]:
        """InfluxDB refused `lines` (with `error`): send each half again, down to single lines, so only
        the lines it refuses stay refused. Each with InfluxDB's reason."""
        if len(lines) <= 1:
            return [(line, str(error)) for line in lines]
        refused = []
        middle = len(lines) // 2
        for half in (lines[:middle], lines[middle:]):
            try:
                self.writer.write_lines(half)
            except InfluxWriteError as e:
                if e.retryable:  # InfluxDB went away meanwhile: the whole batch is retried (idempotent)
                    raise
                refused += self._refused_lines(half, e)
        return refused

    def deliver_directly(self, lines: list[str]) -> bool:
        """The spool could not store this batch: send it now unless InfluxDB is known to be failing
        (the cycle must not wait on a timeout per batch)."""
        if self._failing_since is not None:
            return False
        try:
            self.writer.write_lines(lines)
        except InfluxWriteError as e:
            if e.retryable:
                return False
            refused = self._refused_lines(lines, e)
            if not refused:
                return True
            self.spool.count_rejected(len(refused))  # the disk is full: counted and logged, not kept
            log.error("InfluxDB refused %d of %d line(s) sent directly (%s); the first: %.300s", len(refused),
                      len(lines), refused[0][1], refused[0][0])
        return True

    async def delivered(self, timeout_s: float) -> bool:
        """Wait until every spooled batch is delivered (or set aside); False after `timeout_s`. What a
        benchmark waits for before it calls a cycle done."""
        deadline = time.monotonic() + timeout_s
        while self.spool.batches():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            task = self._delivery
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=min(remaining, 0.5))
            else:
                await asyncio.sleep(0.01)  # the next append starts delivery; nothing to wait on meanwhile
        return True

    def _note_failure(self, error: Exception) -> None:
        first = self._failing_since is None
        now = time.monotonic()
        if first:
            self._failing_since = self._still_said = now
        elif now - self._still_said >= STILL_FAILING_EVERY_S:
            self._still_said = now
            log.error("InfluxDB still failing after %.0f min (%s): %d batch(es), %.1f of the spool's %.0f MB "
                      "(spool.max_mb) held; past it the oldest are dropped", (now - self._failing_since) / 60, error,
                      self.spool.depth, self.spool.bytes_held() / 1e6, self.spool.max_bytes / 1e6)
        if not isinstance(error, InfluxWriteError):
            self.delivery_errors += 1
            log.error("InfluxDB delivery failed unexpectedly (%s: %s); batches stay in the spool (%s) and are "
                      "retried", type(error).__name__, error, self.spool.directory)
        elif first:
            log.error("%s; batches are kept in the spool (%s) and retried", error, self.spool.directory)
            self._failure_said = str(error)
        elif str(error) != self._failure_said and self._changes.warning(
                "changed", "InfluxDB still failing, now: %s (batches stay in the spool)", error):
            # (an outage whose cause changes, e.g. a timeout then 503s: the first reason alone misled)
            self._failure_said = str(error)

    def _note_recovery(self) -> None:
        if self._failing_since is not None and not self.spool.batches():
            log.info("InfluxDB at %s is back: spool drained after %.0f s", redact_url(self.config.url),
                     time.monotonic() - self._failing_since)
            self._failing_since, self._failure_said = None, ""

    def close(self) -> None:
        """Last chance to deliver before exit, bounded in time; what remains waits on disk for the next start.
        Not tried while InfluxDB is failing: each try would wait out a timeout for an answer that is not
        coming, and a hung InfluxDB held the exit ~20 s, past Docker's 10 s grace (then SIGKILL)."""
        if self._failing_since is not None:
            if self.spool.depth:
                log.warning("InfluxDB at %s is failing: %d batch(es) stay in the spool for the next start",
                            redact_url(self.config.url), self.spool.depth)
            self.writer.close()
            self.spool.close()
            return
        deadline = time.monotonic() + self.flush_timeout_s
        try:
            for batch in self.spool.batches():
                if time.monotonic() > deadline:
                    break
                self._deliver(batch)
        except Exception as e:  # noqa: BLE001 - exit goes on: what is left waits on disk
            log.warning("%s; %d batch(es) stay in the spool for the next start", e, self.spool.depth)
        finally:
            self.writer.close()
            self.spool.close()
