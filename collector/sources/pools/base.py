"""What every pool source shares: the schedule, the last good values with their ages, the snapshot each
cycle gets (collector.sources.Source), and failures that cost that pool's data and nothing else.

A pool's data changes slowly, so it is read on its own schedule in the background: a round every
`refresh_s` (workers), with the days' earnings every `days_refresh_s`, started from `announce` when due
(on the cycle's clock) and never awaited by a cycle. `announce` puts the latest snapshot in
`cycle.pools`, marked stale when its workers are older than `max_age_s` or were never read. A failed
round (outage, 429, a changed schema, a hostile reply) keeps the last good values with their ages and
says why in `error`: nothing is ever replaced by zeros. Days absent from a reply stay absent: a day the
pool has not closed is partial or missing, never zero.

Past the caps (models/pool.py), each figure is checked for plausibility (`_plausible`), and one that fails
costs that figure only (that worker, that day), logged once and counted in `refused`: a worker of another
account (its name not `<account>.`), a worker above a tenth of the network's hashrate, a day's credit over
PLAUSIBLE_CREDIT_FACTOR times what the account's hashrate earns at the network's difficulty and fees.
A reply's workers are built and checked in steps (`paced`) between turns of the event loop: an account
at the cap (100,000 workers) never holds a cycle.

A pool module (braiins.py, ocean.py, f2pool.py, solo.py) says how to read its API: `read_workers` and
`read_days`, and its auth header.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import ValidationError

from collector import clock
from collector.redact import redact_url
from collector.sources.pools.client import PoolBackingOff, PoolClient, PoolError, PoolReplyError
from collector.network_revenue import btc_per_day, network_hashrate_ths, network_subsidy_btc
from models.config import POOL_MIN_INTERVAL_S, PoolConfig
from models.economics import NetworkState
from models.pool import MAX_WORKERS, DayStatus, PoolDay, PoolKind, PoolSnapshot, PoolWorker

if TYPE_CHECKING:
    from collector.cycle import Cycle

log = logging.getLogger(__name__)

KEEP_DAYS = 35  # days of earnings held (each a few numbers): a month's view and then some
# One pool worker is one stratum connection, at most a farm proxy for a whole site: the largest sites are
# about a gigawatt, ~50 EH/s even at 20 J/TH, a twentieth of the ~1 ZH/s network of 2026. Above a tenth
# is a wrong unit (the trial's "Eh/s" for Th/s), not a site.
MAX_WORKER_NETWORK_SHARE = 0.1
# A day's credit against what the account's peak hashrate earns at today's network figures: fees can
# reach a few times the subsidy on a rare day (x4), TIDES pays per pool block (a lucky day several
# blocks over its mean, x5), the site may have been larger that day than at its peak since (x5). A
# credit past 100x is a wrong unit or decimal (the trial's 1,000x), not luck; smaller gaps are the
# reconciliation's to report.
PLAUSIBLE_CREDIT_FACTOR = 100.0
# Workers checked between turns of the event loop: building one is ~10 us, so a 100,000-worker reply
# (the cap) held the loop ~1 s at once and made a cycle late; in steps of 2,000 it holds it ~20 ms.
PACE_WORKERS = 2000

T = TypeVar("T")


class PoolSource:
    """One pool account as a source; a subclass per API."""

    kind: ClassVar[PoolKind]
    earnings_published: ClassVar[bool] = True

    def __init__(self, config: PoolConfig, *, token: str | None = None) -> None:
        if config.kind is not self.kind:
            raise ValueError(f"{type(self).__name__} reads {self.kind.value}, not {config.kind.value}")
        self.config = config
        self.name = config.label
        self.account = config.account
        self.client = PoolClient(
            self.name, config.base_url, headers=self.auth_headers(token) if token else None, token=token,
            timeout_s=config.timeout_s, min_interval_s=config.min_interval,
            max_reply_bytes=int(config.max_reply_mb * 1024 * 1024), backoff_s=config.backoff_s,
            backoff_max_s=config.backoff_max_s, retry_after_max_s=config.retry_after_max_s)
        self._workers: list[PoolWorker] | None = None
        self._workers_as_of: datetime | None = None
        self._days: dict[date, PoolDay] = {}
        self._days_as_of: datetime | None = None
        self._last_round: datetime | None = None
        self._last_days: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self.error: str | None = None
        self.rounds = 0  # rounds that read every part they set out to read
        self.network: NetworkState | None = None  # the latest cycle's (announce), for the plausibility checks
        self.refused: Counter[str] = Counter()  # figures refused by the plausibility checks, by reason
        self._warned: set[tuple[str, str]] = set()  # each refused figure is logged once
        self._peak_ths: dict[date, float] = {}  # the account's hashrate per UTC day, its highest read

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {redact_url(self.config.base_url)!r})"

    # -- what a pool module says ---------------------------------------------------------------------

    def auth_headers(self, token: str) -> dict[str, str]:
        """The headers that carry the read-only token (only the APIs that have one)."""
        return {}

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        raise NotImplementedError

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        """The days of `days` (oldest first, today last) the pool has figures for: closed ones and the
        running or unsettled ones as partial. A day left out is unknown, never zero."""
        return []

    def full_name(self, worker: str) -> str:
        """A worker's name as its miner reports the pool user, for APIs that drop the account."""
        return f"{self.account}.{worker}"

    # -- Source ------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.min_interval < POOL_MIN_INTERVAL_S[self.kind]:
            log.warning("pool %s: requests spaced by %g s, below the %g s %s documents or clients keep; "
                        "only for a simulated pool", self.name, self.config.min_interval,
                        POOL_MIN_INTERVAL_S[self.kind], self.kind.value)

    async def announce(self, cycle: Cycle) -> None:
        """Start a round in the background when one is due (never waited for); the latest snapshot goes in."""
        now = cycle.ts
        self.network = cycle.network or self.network
        elapsed = None if self._last_round is None else (now - self._last_round).total_seconds()
        # After a failed round, again as soon as the backoff (or Retry-After) has passed, not a whole refresh_s later.
        retry = self.error is not None and self.client.waiting_s == 0
        due = clock.due(elapsed, self.config.refresh_s) or retry
        if due and (self._task is None or self._task.done()):
            self._last_round = now
            self._task = asyncio.create_task(self._guarded_refresh(now))
        cycle.pools[self.name] = self.snapshot(now)

    async def collect(self, cycle: Cycle) -> None:
        return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.client.aclose()

    # -- rounds -----------------------------------------------------------------------------------

    async def settled(self) -> None:
        """Wait for a round in progress (the `pools` command, tests)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self, now: datetime, *, days: bool | None = None, network: NetworkState | None = None) -> bool:
        """One round: the workers, and the days when due (or `days`). A failure is logged and kept in
        `error`; the last good values stay. True when everything asked for was read. `network`: the figures
        the replies are checked against, when not from a cycle (`announce` keeps the latest cycle's)."""
        self._last_round = now
        self.network = network or self.network
        want_days = days if days is not None else clock.due(
            None if self._last_days is None else (now - self._last_days).total_seconds(), self.config.days_refresh_s)
        part = "workers"
        try:
            workers = await self.read_workers(now)
            if len(workers) > MAX_WORKERS:
                raise PoolReplyError(f"{len(workers):,} workers, over the {MAX_WORKERS:,} cap")
            self._workers, self._workers_as_of = await self._plausible_workers(workers, now), now
            if want_days:
                part = "earnings"
                window = [(now - timedelta(days=i)).date() for i in reversed(range(self.config.days_back))]
                read = await self.read_days(now, window)
                self._merge_days(self._plausible_days(read), window, now)
                self._last_days = now
        except PoolBackingOff as e:
            log.debug("%s", e)
            return False
        except (PoolError, ValidationError) as e:
            if isinstance(e, ValidationError):
                self.client.back_off()  # a value no real pool sends (negative, past a cap): the reply is refused
                e = PoolReplyError(f"{self.name}: {part}: {_validation_text(e)}")
            self._failed(part, e)
            return False
        except Exception as e:  # a bug or an input no check caught: that pool's data only, never the service
            self.client.back_off()
            log.exception("pool %s: reading %s failed unexpectedly; the last values stand", self.name, part)
            self.error = f"{part}: {type(e).__name__}"
            return False
        if self.error is not None:
            log.info("pool %s: read again (%s)", self.name, "workers and earnings" if want_days else "workers")
        self.error = None
        self.rounds += 1
        return True

    async def _guarded_refresh(self, now: datetime) -> None:
        try:
            await self.refresh(now)
        except asyncio.CancelledError:
            raise
        except Exception:  # refresh handles what it expects; nothing may end the service
            log.exception("pool %s: refresh failed", self.name)

    def _failed(self, part: str, error: Exception) -> None:
        message = self.client.masked(str(error))[:400]  # a value the pool sent may be quoted: its echo of the token too
        first = self.error is None
        self.error = f"{part}: {message}"
        kept = (f"keeping the workers read at {self._workers_as_of.isoformat()} (stale after {self.config.max_age_s:g} s)"
                if self._workers_as_of else "nothing read yet: no pool figures for it")
        (log.warning if first else log.info)("pool %s: reading %s failed: %s; %s", self.name, part, message, kept)

    # -- plausibility -------------------------------------------------------------------------------

    def refuse(self, reason: str, what: str, message: str) -> None:
        """Count a refused figure; log it the first time (`what` names it: a worker, a day)."""
        self.refused[reason] += 1
        if (reason, what) not in self._warned:
            self._warned.add((reason, what))
            log.warning("pool %s: %s refused: %s", self.name, what, message)

    async def _plausible_workers(self, workers: list[PoolWorker], now: datetime) -> list[PoolWorker]:
        prefix = f"{self.account}.".casefold()
        network = self.network
        most = None if network is None else MAX_WORKER_NETWORK_SHARE * network_hashrate_ths(network)
        kept = []
        async for w in paced(workers):
            if self.client.quotes_token(w.name):  # a pool or proxy echoing the request's token into a name
                self.refuse("token_in_worker", "a worker", "its name quotes the API token (an echo): not shown")
                continue
            if not (w.name.casefold().startswith(prefix) or w.name.casefold() == self.account.casefold()):
                self.refuse("other_account_worker", f"worker {w.name!r}",
                            f"not of account {self.account!r} (the pool names workers <account>.<worker>)")
                continue
            ths = max(v or 0.0 for v in (w.hashrate_ths, w.hashrate_24h_ths, w.reported_hashrate_ths))
            if most is not None and ths > most:
                self.refuse("implausible_worker", f"worker {w.name!r}",
                            f"{ths:,.0f} TH/s, over {MAX_WORKER_NETWORK_SHARE:.0%} of the network's {most / MAX_WORKER_NETWORK_SHARE:,.0f} "
                            "TH/s (a wrong hashrate unit?)")
                continue
            kept.append(w)
        total = sum(max(w.hashrate_ths or 0.0, w.hashrate_24h_ths or 0.0) for w in kept)
        today = now.date()
        self._peak_ths[today] = max(total, self._peak_ths.get(today, 0.0))
        oldest = today - timedelta(days=KEEP_DAYS)
        self._peak_ths = {d: v for d, v in self._peak_ths.items() if d >= oldest}
        return kept

    def _plausible_days(self, days: list[PoolDay]) -> list[PoolDay]:
        """Days whose credit the account's hashrate could have earned; unknown (no network figures, no
        hashrate read: a site curtailed since its start) is not refused."""
        network, peak = self.network, max(self._peak_ths.values(), default=0.0)
        if network is None or peak <= 0:
            return days
        earns = btc_per_day(peak, network.difficulty, network_subsidy_btc(network), network.fees_btc_per_block)
        kept = []
        for day in days:
            if day.credited_btc is not None and day.credited_btc > PLAUSIBLE_CREDIT_FACTOR * earns:
                self.refuse("implausible_credit", f"{day.day} credit",
                            f"{day.credited_btc:.8f} BTC is {day.credited_btc / earns:,.0f}x the {earns:.8f} BTC "
                            f"{peak:,.1f} TH/s (the account's peak) earns a day at difficulty {network.difficulty:.4g}"
                            f" (over {PLAUSIBLE_CREDIT_FACTOR:g}x: a wrong unit or decimal?)")
                continue
            kept.append(day)
        return kept

    def _merge_days(self, read: list[PoolDay], window: list[date], now: datetime) -> None:
        # Outside the window: as last read; a closed day the pool no longer lists stays closed.
        days = {d: v for d, v in self._days.items() if d not in window or v.status is DayStatus.CLOSED}
        for day in read:
            if day.day in window:
                days[day.day] = day
        oldest = now.date() - timedelta(days=KEEP_DAYS)
        self._days = {d: v for d, v in sorted(days.items()) if d >= oldest}

    # -- snapshot ---------------------------------------------------------------------------------

    def snapshot(self, now: datetime) -> PoolSnapshot:
        as_of = self._workers_as_of
        stale = as_of is None or (now - as_of).total_seconds() > self.config.max_age_s
        return PoolSnapshot.model_construct(
            pool=self.name, kind=self.kind, account=self.account, workers=self._workers, workers_as_of=as_of,
            days=list(self._days.values()), days_as_of=self._days_as_of,
            earnings_published=self.earnings_published, stale=stale, error=self.error)


def _validation_text(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']} (value {str(first.get('input'))[:40]!r})"


async def paced(items: Iterable[T]) -> AsyncIterator[T]:
    """`items`, giving the event loop its turn every PACE_WORKERS: for the loops over a reply's workers."""
    for i, item in enumerate(items):
        if i and i % PACE_WORKERS == 0:
            await asyncio.sleep(0)
        yield item


def worker(name: str, **values: Any) -> PoolWorker:
    """A PoolWorker, validated (a ValidationError is a refused reply)."""
    return PoolWorker(name=name, **values)
