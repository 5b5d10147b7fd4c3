"""The pool reconciliation stage: what the pools credited against what the miners reported, per UTC day,
per worker, per account and per site (models/reconciliation.py has the waterfall; docs/pools.md the rest).

Every cycle it integrates the interval since the previous one into per-day books (collector/stages/
pool_days.py, on disk next to the spool so a restart does not lose the day):
- per miner (by the pool user it reports, or last reported): seconds hashing, offline and curtailed,
  reported TH·s and their expected BTC at that moment's difficulty and fees (the cost engine's formula),
  its share counters' increments;
- per pool worker, while its pool's snapshot is fresh: pool-side accepted (and, where published,
  rejected and stale) hashrate, and the matching miners' reported hashrate over the same seconds (of a
  large account, those the miners report and MAX_LISTED others; the rest summed in one book, OTHERS);
- per site: subsidy and fees, and the spend the cost stage counted (its month totals' increments).

When a pool's figures for a day change (closed, or the running day read again) the day is reconciled:
each worker's expected BTC against its share of the account's credit (no pool publishes per-worker
credit: the account's is split by accepted work, and flagged derived), the gap broken down into
offline and curtailed time, over-reporting (named per worker), unmatched work, rejected and stale
shares, fee and residual luck; the site's day likewise, and its realized cost per BTC (spend over credited
BTC) once every pool has closed the day. Stale pool data is not integrated; a day a pool has not closed
is partial; nothing unknown is ever counted as zero: the pools credit the whole day, so the seconds the
collector did not observe are taken at the observed ones' rate when they are few (MIN_COVERAGE), and
realized cost, luck and gap are left unknown when they are not.
"""

from __future__ import annotations

import heapq
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from collector import clock
from collector.bounded_log import BoundedLog
from collector.cycle import Cycle, MinersPart
from collector.stages import pool_days
from collector.stages.pool_records import pool_records, realized_cost_record
from collector.network_revenue import SECONDS_PER_DAY, btc_per_day, network_subsidy_btc
from collector.stages.pool_days import (
    M,
    P,
    S,
    CURTAILED_EXP_BTC,
    CURTAILED_S,
    CURTAILED_V,
    HASHING_BTC,
    HASHING_S,
    HASHING_THS_S,
    OBSERVED_S,
    OFFLINE_EXP_BTC,
    OFFLINE_S,
    OFFLINE_V,
    POOL_BTC,
    POOL_S,
    POOL_THS_S,
    RATED_POOL_BTC,
    REJECTED_BTC,
    REPORTED_BTC,
    REPORTED_THS_S,
    SHARES_ACCEPTED,
    SHARES_REJECTED,
    SHARES_STALE,
    STALE_BTC,
    DayBook,
    DayResults,
    State,
)
from models import MinerSample, MinerState, SiteEconomics
from models.base import printable
from models.config import PoolConfig, ReconciliationConfig
from models.pool import MAX_HASHRATE_THS, SOLO_KINDS, DayStatus, PoolDay, PoolKind, PoolSnapshot, PoolWorker
from models.reconciliation import (
    AccountDay,
    Matching,
    PoolReport,
    PoolStatus,
    SiteDay,
    Unmatched,
    WorkerDay,
    WorkerNow,
)

log = logging.getLogger(__name__)

# Of cycle time: a crash loses at most this much of the day (0.35 %); a save of 10,000 miners' books takes
# ~0.2 s of the loop's thread (docs/benchmarks.md), so not every cycle.
SAVE_EVERY_S = 300.0
# Unmatched workers or miners listed (all are counted); also the unmatched workers written one by one
# (the `pool` and `pool_day` worker points): an account shared with other sites may hold ~100,000 workers
# (MAX_WORKERS), whose points were 99,000 lines a read, 0.8 GB of the collector and seconds of its loop.
MAX_LISTED = 1000
# The day's book of those other unmatched workers, summed (no pool names a worker ""): their accepted work
# counts in the account's `unmatched_btc` as it did worker by worker, at ~1 ms a cycle instead of ~250 ms.
OTHERS = ""
MIN_POOL_S_TO_NAME = 3600.0  # a worker is named over-reporting only after an hour of pool-side data
# The pools credit the whole day; the books hold only the seconds the collector observed. From this share of
# the day up, the rest (at most 72 min: a restart, a clock step) is taken at the observed seconds' rate: the
# spend brought to the whole day, the unobserved accepted work its own step. Below it, realized cost, luck and
# gap are not known (a collector down 12 h made realized cost half the true figure and luck -100 %): at worst,
# hours that spent or earned nothing, the estimate is 1/0.95 - 1 = 5.3 % off.
MIN_COVERAGE = 0.95
# A worker's pool-side rate this many times what the miners reporting it hash is a wrong unit in the pool's
# answer, not over-reporting the other way (honest pool-side rates sit within a few per cent of the miners', a
# 5-minute average within a few times): its pool figures are left out while it lasts. The source's own check
# (a tenth of the network) let 90 "Eh/s" for an Avalon's 90 TH/s through as 90,000,000 TH/s (trial ZD, M2).
WRONG_UNIT_FACTOR = 100.0
_HASHING = (MinerState.MINING, MinerState.ERROR)


class PoolReconciliation:
    """A collector.stages.Stage: integrates every cycle, reconciles days as the pools close them."""

    def __init__(self, site: str, pools: Sequence[PoolConfig], *, economics: SiteEconomics | None = None,
                 settings: ReconciliationConfig | None = None, state_path: Path | None = None,
                 save: bool = True) -> None:
        self.site = site
        self.pools = {p.label: p for p in pools}
        self.economics = economics
        self.settings = settings or ReconciliationConfig()
        self.state_path = state_path
        self.save_enabled = save and state_path is not None
        self.state: State = pool_days.load(state_path, set_aside=self.save_enabled) if state_path is not None else State()
        self._last_save: datetime | None = None
        self._pieces: list[tuple[date, float, float, float]] = []  # this cycle: (day, seconds, BTC per TH·s, reward)
        self._books: list[tuple[DayBook, float, float, float]] = []  # the same: (day's book, seconds, BTC/TH·s, share)
        self._reported_now: dict[str, float] = defaultdict(float)  # pool user (lower case) -> TH/s reported now
        self._miners_now: dict[str, list[str]] = defaultdict(list)  # pool user (lower case) -> miners this cycle
        self._reconciled: dict[tuple[str, date], tuple[object, ...]] = {}  # what each account-day was made from
        self._since_read: dict[tuple[str, str], list[float]] = {}  # (pool, worker) -> [reported TH·s, seconds]
        self._prepared_workers: dict[str, _Prepared] = {}
        self._booked_rows: dict[str, tuple[list[_Row], int, datetime, tuple[list[_Row], tuple[float, ...] | None]]] = {}
        self._matching_key: tuple[object, ...] | None = None  # what the last matching was made from
        self._matching_at: datetime | None = None
        self._last_matching = Matching()
        self._read_at: dict[str, datetime | None] = {}  # pool -> workers_as_of of the last snapshot shown
        self._unmatched_logged: tuple[int, int] | None = None
        self._wrong_units = BoundedLog(log, every_s=600.0)

    # -- Stage -----------------------------------------------------------------------------------

    def begin(self, cycle: Cycle) -> None:
        self._reported_now.clear()
        self._miners_now.clear()
        self._pieces = []
        self._books = []
        prev, now, network = self.state.as_of, cycle.ts, cycle.network
        if prev is None or network is None:
            return
        gap = (now - prev).total_seconds()
        if not 0 < gap <= self.settings.max_gap_s:
            if gap > self.settings.max_gap_s:
                log.info("%.0f s since the last cycle: that gap is not in the pool reconciliation's books", gap)
            return
        reward = network_subsidy_btc(network) + network.fees_btc_per_block
        per_ths_s = btc_per_day(1.0, network.difficulty, network_subsidy_btc(network),
                                network.fees_btc_per_block) / SECONDS_PER_DAY
        start = prev
        while start < now:
            midnight = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), UTC)
            end = min(now, midnight)
            self._pieces.append((start.date(), (end - start).total_seconds(), per_ths_s, reward))
            start = end
        self._books = [(self.state.day(day), seconds, per_ths_s, seconds / gap) for day, seconds, per_ths_s, _ in
                       self._pieces]

    def part(self, cycle: Cycle, part: MinersPart) -> None:
        for sample in part.samples:
            self._miner(sample)

    def finish(self, cycle: Cycle) -> None:
        self._pools(cycle.pools, cycle.ts)
        self._spend(cycle)
        report = PoolReport(ts=cycle.ts)
        report.matching = self._current_matching(cycle)
        report.pools = self._statuses(cycle)
        report.workers_now = self._workers_now(cycle)
        self.state.as_of = cycle.ts
        days, sites = self._reconcile(cycle)
        report.days, report.sites = days, sites
        report.last_closed = self.last_closed()
        cycle.pool_report = report
        cycle.records += pool_records(report, cycle.site)
        if report.last_closed is not None and cycle.cost is not None:
            cycle.records.append(realized_cost_record(report.last_closed, cycle.ts, cycle.shard))
        self._prune(cycle.ts)
        self._save(cycle.ts, force=bool(days))

    def close(self) -> None:
        """The books as of the last cycle, saved on a clean stop (between stops every SAVE_EVERY_S)."""
        if self.state.as_of is not None:
            self._save(self.state.as_of, force=True)

    # -- integration ---------------------------------------------------------------------------

    def _miner(self, sample: MinerSample) -> None:
        # Runs for every miner every cycle: plain list indexes and locals (pool_days' constants).
        state = self.state
        miner, pool = sample.miner, sample.pool
        user = pool.user if pool is not None else None
        if user:
            user = user.strip()
            if state.users.get(miner) != user:
                state.users[miner] = user
        else:
            user = state.users.get(miner, "")
        key = user.lower()
        self._miners_now[key].append(miner)
        hashrate = sample.hashrate_ths
        refused = bool(sample.unusable) and "hashrate_ths" in sample.unusable
        hashing = sample.state in _HASHING and bool(hashrate) and not refused
        if hashing:
            self._reported_now[key] += hashrate  # type: ignore[operator]
        deltas = self._share_deltas(sample) if pool is not None and pool.accepted is not None else None
        if not self._books or refused:
            return  # nothing known about this interval, or a refused reading: not observed
        curtailed = sample.state is MinerState.SOFT_OFF
        expected = sample.expected_hashrate_ths or 0.0
        for day_book, seconds, per_ths_s, share in self._books:
            book = day_book.miners.get((miner, user))
            if book is None:
                book = day_book.miner(miner, user)
            book[OBSERVED_S] += seconds
            if hashing:
                book[HASHING_S] += seconds
                book[HASHING_THS_S] += hashrate * seconds  # type: ignore[operator]
                book[HASHING_BTC] += hashrate * seconds * per_ths_s  # type: ignore[operator]
            elif curtailed:
                book[CURTAILED_S] += seconds
                book[CURTAILED_V] += seconds * per_ths_s
                book[CURTAILED_EXP_BTC] += expected * seconds * per_ths_s
            else:
                book[OFFLINE_S] += seconds
                book[OFFLINE_V] += seconds * per_ths_s
                book[OFFLINE_EXP_BTC] += expected * seconds * per_ths_s
            if deltas is not None:
                book[SHARES_ACCEPTED] += deltas[0] * share
                book[SHARES_REJECTED] += deltas[1] * share
                book[SHARES_STALE] += deltas[2] * share

    def _share_deltas(self, sample: MinerSample) -> tuple[float, float, float] | None:
        """The miner's share counters' increase since the last cycle (None: unknown, or first seen)."""
        pool = sample.pool
        assert pool is not None and pool.accepted is not None
        now = (float(pool.accepted), float(pool.rejected or 0), float(pool.stale or 0))
        last = self.state.counters.get(sample.miner)
        self.state.counters[sample.miner] = now
        if last is None:
            return None
        if all(n >= p for n, p in zip(now, last, strict=True)):
            return now[0] - last[0], now[1] - last[1], now[2] - last[2]
        return now  # the counters restarted (a reboot): what they hold is new since

    def _pools(self, pools: Mapping[str, PoolSnapshot], now: datetime) -> None:
        # Every worker of every fresh pool, every cycle: the workers' fixed parts are prepared once per read.
        total_s = sum(piece[1] for piece in self._pieces)
        reported_now, miners_now = self._reported_now, self._miners_now
        for name, snap in pools.items():
            if snap.stale or not snap.workers:
                continue
            rows, others = self._booked(name, snap.workers, now)
            wrong = 0
            for worker, key, ths, rejected, stale in rows:
                reported = reported_now.get(key, 0.0)
                if ths > WRONG_UNIT_FACTOR * reported > 0:
                    wrong += 1
                    if wrong == 1:
                        example = (worker, ths, reported)
                    continue
                if key in miners_now:  # the mean since the read is only written for a worker with miners
                    since = self._since_read.get((name, worker))
                    if since is None:
                        since = self._since_read[(name, worker)] = [0.0, 0.0]
                    since[0] += reported * total_s
                    since[1] += total_s
                for day_book, seconds, per_ths_s, _ in self._books:
                    book = day_book.pools.get((name, worker))
                    if book is None:
                        book = day_book.pool(name, worker)
                    book[POOL_S] += seconds
                    book[POOL_THS_S] += ths * seconds
                    book[POOL_BTC] += ths * seconds * per_ths_s
                    book[REPORTED_BTC] += reported * seconds * per_ths_s
                    book[REPORTED_THS_S] += reported * seconds
                    if rejected is not None:
                        book[RATED_POOL_BTC] += ths * seconds * per_ths_s
                        book[REJECTED_BTC] += rejected * seconds * per_ths_s
                        book[STALE_BTC] += stale * seconds * per_ths_s  # type: ignore[operator]
            if wrong:
                worker, ths, reported = example
                self._wrong_units.warning(name, "pool %s: %d worker(s) at over %gx what their miners hash, e.g. %s at "
                                          "%.4g TH/s against %.4g TH/s: a wrong unit in the pool's answer; their "
                                          "pool-side figures are left out while it lasts", name, wrong,
                                          WRONG_UNIT_FACTOR, printable(worker[:80]), ths, reported)
            if others is not None:
                ths, rated, rejected, stale = others
                for day_book, seconds, per_ths_s, _ in self._books:
                    book = day_book.pool(name, OTHERS)
                    book[POOL_S] += seconds
                    book[POOL_THS_S] += ths * seconds
                    book[POOL_BTC] += ths * seconds * per_ths_s
                    book[RATED_POOL_BTC] += rated * seconds * per_ths_s
                    book[REJECTED_BTC] += rejected * seconds * per_ths_s
                    book[STALE_BTC] += stale * seconds * per_ths_s

    def _prepared(self, pool: str, workers: list[PoolWorker]) -> _Prepared:
        """A read's rows: (name, lower-case name, pool-side TH/s, rejected and stale TH/s or None) per worker,
        the rows of each lower-case name, and the rows' sums (TH/s, rated TH/s, rejected, stale); kept per read."""
        cached = self._prepared_workers.get(pool)
        if cached is not None and cached[0] is workers:
            return cached
        rows: list[_Row] = []
        by_key: dict[str, list[int]] = {}
        for w in workers:  # up to 100,000 of them once a read: plain locals
            ths = w.hashrate_ths
            if ths is None:
                continue
            name, rejected, stale = w.name, w.rejected_ths, w.stale_ths
            key = name.lower()
            same = by_key.get(key)
            if same is None:
                by_key[key] = [len(rows)]
            else:
                same.append(len(rows))
            if rejected is None and stale is None:
                rows.append((name, key, ths, None, None))
            else:
                rows.append((name, key, ths, rejected or 0.0, stale or 0.0))
        prepared = (workers, rows, by_key, _sums(rows))
        self._prepared_workers[pool] = prepared
        return prepared

    def _booked(self, pool: str, workers: list[PoolWorker], now: datetime) -> tuple[list[_Row], tuple[float, ...] | None]:
        """The rows booked worker by worker this cycle (those miners report and the first MAX_LISTED others),
        and the sums of the rest (None: no rest): found from the miners' names, not by a pass over every worker;
        made again as the matching is (a new read, the miners' users changed in number, or a minute)."""
        _, rows, by_key, totals = self._prepared(pool, workers)
        if len(rows) <= MAX_LISTED:
            return rows, None
        cached = self._booked_rows.get(pool)
        if cached is not None and cached[0] is rows and cached[1] == len(self._miners_now) and \
                (now - cached[2]).total_seconds() < 60:
            return cached[3]
        result = self._split(rows, by_key, totals)
        self._booked_rows[pool] = (rows, len(self._miners_now), now, result)
        return result

    def _split(self, rows: list[_Row], by_key: dict[str, list[int]],
               totals: tuple[float, ...]) -> tuple[list[_Row], tuple[float, ...] | None]:
        matched = {i for key in self._miners_now for i in by_key.get(key, ())}
        if len(rows) - len(matched) <= MAX_LISTED:  # a site's own account: every worker, as read
            return rows, None
        listed = set(matched)
        unmatched = 0
        for i in range(len(rows)):
            if unmatched == MAX_LISTED:
                break
            if i not in matched:
                listed.add(i)
                unmatched += 1
        booked = [rows[i] for i in sorted(listed)]
        # The rest's sums: what the whole account hashes at most (a hostile sum past the network would make
        # the saved books unreadable: pool_days' caps).
        others = tuple(min(MAX_HASHRATE_THS, max(0.0, total - part)) for total, part in zip(totals, _sums(booked),
                                                                                             strict=True))
        return booked, others

    def _spend(self, cycle: Cycle) -> None:
        """The spend the cost stage counted since the last cycle (its month totals' increase) into the days."""
        for day, seconds, _, reward in self._pieces:
            site = self.state.day(day).site
            site[S["observed_s"]] += seconds
            site[S["reward_btc_s"]] += reward * seconds
        cost = cycle.cost.site if cycle.cost is not None else None
        if cost is None or None in (cost.all_in_usd_month, cost.cash_usd_month, cost.power_usd_month, cost.btc_month):
            return
        tz = ZoneInfo(self.economics.timezone) if self.economics is not None else UTC
        month = cycle.ts.astimezone(tz).strftime("%Y-%m")
        now = (cost.all_in_usd_month or 0.0, cost.cash_usd_month or 0.0, cost.power_usd_month or 0.0,
               cost.btc_month or 0.0)
        last = self.state.spend
        self.state.spend = (month, *now)
        if last is None:
            return
        # A new month, or totals that went down (the cost stage started its totals over: a lost totals file,
        # or `hashfleet pools` with fresh ones): what they hold now is what was spent since.
        restarted = last[0] != month or now[0] < last[1] - 1e-9
        increase = now if restarted else tuple(n - p for n, p in zip(now, last[1:], strict=True))
        pieces = self._pieces or [(cycle.ts.date(), 1.0, 0.0, 0.0)]
        total_s = sum(piece[1] for piece in pieces)
        for day, seconds, _, _ in pieces:
            site = self.state.day(day).site
            for i, name in enumerate(("all_in_usd", "cash_usd", "power_usd", "spend_btc")):
                site[S[name]] += increase[i] * seconds / total_s

    # -- matching and the pools now --------------------------------------------------------------

    def _current_matching(self, cycle: Cycle) -> Matching:
        """The matching, made again when a pool was read anew, the miners' users changed in number, or a
        minute has passed (a miner's new pool user shows within a minute): at 10,000 miners it costs ~10 ms."""
        key = (tuple((name, id(snap.workers)) for name, snap in cycle.pools.items()), len(self._miners_now),
               sum(len(miners) for miners in self._miners_now.values()))
        fresh = self._matching_at is not None and (cycle.ts - self._matching_at).total_seconds() < 60
        if key != self._matching_key or not fresh:
            self._last_matching = self._matching(cycle.pools)
            self._matching_key, self._matching_at = key, cycle.ts
        return self._last_matching

    def _matching(self, pools: Mapping[str, PoolSnapshot]) -> Matching:
        matching = Matching()
        listed: set[str] = set()
        unmatched_workers = 0
        for name, snap in pools.items():
            if snap.workers is None:
                matching.pools_unread.append(name)
                continue  # never read: nothing to say about its workers yet
            matched: dict[str, list[str]] = {}
            for w in snap.workers:
                key = w.name.lower()
                listed.add(key)
                miners = self._miners_now.get(key)
                if miners:
                    matched[w.name] = list(miners)
                else:
                    unmatched_workers += 1
                    matching.workers_unmatched[name] = matching.workers_unmatched.get(name, 0) + 1
                    if len(matching.unmatched_workers) < MAX_LISTED:
                        matching.unmatched_workers.append(Unmatched.model_construct(pool=name, worker=w.name))
            matching.matched[name] = matched
        unmatched_miners = 0
        if any(snap.workers is not None for snap in pools.values()):
            for user, miners in self._miners_now.items():
                if user in listed:
                    continue
                unmatched_miners += len(miners)
                for miner in miners:
                    if len(matching.unmatched_miners) < MAX_LISTED:
                        matching.unmatched_miners.append(
                            Unmatched.model_construct(miner=miner, user=self.state.users.get(miner) or None))
        matching.miners_unmatched = unmatched_miners
        counts = (unmatched_workers, unmatched_miners)
        if counts != self._unmatched_logged and (unmatched_workers or unmatched_miners):
            log.info("pool matching: %d pool worker(s) no miner reports (%s), %d miner(s) whose pool user no pool "
                     "lists (%s)%s", unmatched_workers,
                     ", ".join(f"{u.pool}:{u.worker}" for u in matching.unmatched_workers[:3]) or "-",
                     unmatched_miners, ", ".join(f"{u.miner}={u.user}" for u in matching.unmatched_miners[:3]) or "-",
                     _unread_words(matching.pools_unread))
        self._unmatched_logged = counts
        return matching

    def _statuses(self, cycle: Cycle) -> list[PoolStatus]:
        out = []
        for name, snap in cycle.pools.items():
            status = PoolStatus(pool=name, kind=snap.kind, account=snap.account, stale=snap.stale, error=snap.error,
                                age_s=(cycle.ts - snap.workers_as_of).total_seconds() if snap.workers_as_of else None)
            if not snap.stale and snap.workers is not None:
                _, _, by_key, totals = self._prepared(name, snap.workers)
                status = status.model_copy(update={
                    "workers": len(snap.workers), "hashrate_ths": totals[0],
                    "reported_hashrate_ths": sum(ths * len(by_key[key]) for key, ths in self._reported_now.items()
                                                 if key in by_key)})
            out.append(status)
        return out

    def _workers_now(self, cycle: Cycle) -> list[WorkerNow]:
        """Each worker of a pool read anew since the last cycle, with its miners' mean reported hashrate since:
        those miners report, and the first MAX_LISTED of the others."""
        out = []
        for name, snap in cycle.pools.items():
            if snap.workers_as_of is None or snap.workers is None or self._read_at.get(name) == snap.workers_as_of:
                continue
            self._read_at[name] = snap.workers_as_of
            unmatched = 0
            for w in snap.workers:
                key = w.name.lower()
                since = self._since_read.pop((name, w.name), None)
                miners = self._miners_now.get(key, [])
                if not miners:
                    unmatched += 1
                    if unmatched > MAX_LISTED:
                        continue
                if since is not None and since[1] > 0:
                    reported: float | None = since[0] / since[1]
                else:
                    reported = self._reported_now.get(key) if miners else None
                out.append(WorkerNow(
                    pool=name, worker=w.name, miners=list(miners), hashrate_ths=w.hashrate_ths,
                    reported_hashrate_ths=reported if miners else None,
                    pool_reported_hashrate_ths=w.reported_hashrate_ths, rejected_ths=w.rejected_ths,
                    stale_ths=w.stale_ths, state=w.state,
                    last_share_age_s=max(0.0, (cycle.ts - w.last_share).total_seconds()) if w.last_share else None))
        return out

    # -- reconciliation ----------------------------------------------------------------------------

    def _reconcile(self, cycle: Cycle) -> tuple[list[AccountDay], list[SiteDay]]:
        touched: set[date] = set()
        accounts: list[AccountDay] = []
        for name, snap in cycle.pools.items():
            config = self.pools.get(name)
            if config is None:
                continue
            for pday in snap.days:
                book = self.state.days.get(pday.day)
                if book is None or pday.day > cycle.ts.date() or not (book.miners or book.pools):
                    # no miner history for that day here, or only its site totals (its per-miner books dropped
                    # once reconciled, _prune): nothing to weigh it against, its results stay as they are
                    continue
                signature = (pday, snap.days_as_of if pday.status is DayStatus.PARTIAL else None)
                if self._reconciled.get((name, pday.day)) == signature:
                    continue
                self._reconciled[(name, pday.day)] = signature
                try:
                    account = self.account_day(config, snap, pday, book)
                except (ValueError, ArithmeticError) as e:  # a figure that is not finite: this day's, not the service
                    log.error("pool %s: the reconciliation of %s failed (%s)", name, pday.day, e)
                    continue
                self.state.results.setdefault(pday.day, DayResults()).accounts[name] = account
                accounts.append(account)
                touched.add(pday.day)
                if account.status is DayStatus.CLOSED:
                    self._log_day(account)
        sites = []
        for day in sorted(touched):
            try:
                site = self.site_day(day, cycle.pools)
            except (ValueError, ArithmeticError) as e:
                log.error("the site's reconciliation of %s failed (%s)", day, e)
                continue
            self.state.results[day].site = site
            sites.append(site)
        return accounts, sites

    def _fee_rate(self, config: PoolConfig, pday: PoolDay) -> float:
        if pday.fee_rate is not None:
            return pday.fee_rate
        if config.fee_pct is not None:
            return config.fee_pct / 100
        if config.kind in SOLO_KINDS or self.economics is None:
            return 0.0
        return self.economics.pool_fee_pct / 100

    def account_day(self, config: PoolConfig, snap: PoolSnapshot, pday: PoolDay, book: DayBook) -> AccountDay:
        """One account's day: each worker's waterfall, the account's credit split by accepted work."""
        name, day = config.label, pday.day
        by_user: dict[str, list[tuple[str, list[float]]]] = defaultdict(list)
        for (miner, user), vector in book.miners.items():
            by_user[user.lower()].append((miner, vector))
        observed_s = book.site[S["observed_s"]]
        day_s = _day_length(day, self.state.as_of)
        whole = _whole_day_factor(observed_s / day_s)
        workers: list[WorkerDay] = []
        for (pool, worker), p in book.pools.items():
            if pool != name:
                continue
            miners = [] if worker == OTHERS else by_user.get(worker.lower(), [])
            workers.append(self._worker_day(worker, miners, p, observed_s, day_s))
        accepted_total = sum(w.accepted_btc or 0.0 for w in workers)
        credited = pday.credited_btc
        reward_estimated = False
        if config.kind is PoolKind.PUBLICPOOL and pday.blocks is not None:
            reward = book.site[S["reward_btc_s"]] / observed_s if observed_s > 0 else None
            fee_rate = self._fee_rate(config, pday)
            credited = None if reward is None else pday.blocks * reward * (1 - fee_rate)
            reward_estimated = True
        published = snap.earnings_published and credited is not None
        fee_rate = self._fee_rate(config, pday) if published else None
        fee = None
        if published and credited is not None and fee_rate is not None:
            fee = pday.fee_btc if pday.fee_btc is not None else credited * fee_rate / (1 - fee_rate)
        gross = credited + fee if credited is not None and fee is not None else None
        # The account's sums are of every worker; the workers kept and written one by one are those miners
        # report and the MAX_LISTED others with the most accepted work (the rest are in `unmatched_btc`).
        listed = [w for w in workers if w.miners] + heapq.nlargest(
            MAX_LISTED, (w for w in workers if not w.miners and w.worker != OTHERS), key=lambda w: w.accepted_btc or 0.0)
        for i, w in enumerate(listed):
            share = (w.accepted_btc or 0.0) / accepted_total if accepted_total > 0 else 0.0
            if gross is not None and credited is not None and fee is not None and w.accepted_btc is not None:
                w_credited, w_fee = credited * share, fee * share
                update: dict[str, float | None] = {"credited_btc": w_credited, "fee_btc": w_fee,
                                                   "unobserved_btc": None, "luck_btc": None, "gap_btc": None}
                if whole is not None:
                    update.update(unobserved_btc=w.accepted_btc * (1 - whole),
                                  luck_btc=w.accepted_btc * whole - gross * share,
                                  gap_btc=w.potential_btc - w_credited)
                listed[i] = w.model_copy(update=update)
        account = AccountDay(
            pool=name, kind=config.kind, account=snap.account, day=day, status=pday.status, credit_published=published,
            fee_rate=fee_rate, payouts_btc=pday.payouts_btc, blocks=pday.blocks, reward_estimated=reward_estimated,
            workers=sorted(listed, key=lambda w: w.worker),
            over_reporting=sorted(w.worker for w in workers if w.over_reporting))
        matched = [w for w in workers if w.miners]
        sums = _sum_breakdowns(matched, ("potential_btc", "offline_btc", "curtailed_btc", "expected_btc",
                                         "over_report_btc"))
        sums["rejected_stale_btc"] = sum(w.rejected_stale_btc for w in workers)
        sums["unmatched_btc"] = sum(w.unmatched_btc for w in workers)
        sums["accepted_btc"] = accepted_total
        if gross is not None and credited is not None:
            sums.update(credited_btc=credited, fee_btc=fee, unobserved_btc=None, luck_btc=None, gap_btc=None)
            if whole is not None:
                sums.update(unobserved_btc=accepted_total * (1 - whole), luck_btc=accepted_total * whole - gross,
                            gap_btc=sums["potential_btc"] - credited)
        return account.model_copy(update=sums)

    def _worker_day(self, worker: str, miners: list[tuple[str, list[float]]], p: list[float], observed_s: float,
                    day_s: float) -> WorkerDay:
        m = [sum(v[i] for _, v in miners) for i in range(len(pool_days.MINER_FIELDS))]
        rate = m[M["hashing_ths_s"]] / m[M["hashing_s"]] if m[M["hashing_s"]] > 0 else None
        offline = rate * m[M["offline_v"]] if rate is not None else m[M["offline_exp_btc"]]
        curtailed = rate * m[M["curtailed_v"]] if rate is not None else m[M["curtailed_exp_btc"]]
        expected = m[M["hashing_btc"]]
        pool_s = p[P["pool_s"]]
        if p[P["reported_btc"]] > 0:
            accepted: float | None = expected * p[P["pool_btc"]] / p[P["reported_btc"]]
        elif pool_s > 0:
            accepted = p[P["pool_btc"]] * max(observed_s, pool_s) / pool_s  # no miner hashed while read: scale to the day
        else:
            accepted = None
        if accepted is None:
            rejected_stale = 0.0
        elif p[P["rated_pool_btc"]] > 0:
            rejected_stale = accepted * (p[P["rejected_btc"]] + p[P["stale_btc"]]) / p[P["rated_pool_btc"]]
        else:  # the pool publishes no rejects: the miners' own counters say what share was refused
            shares = m[M["shares_accepted"]] + m[M["shares_rejected"]] + m[M["shares_stale"]]
            refused = (m[M["shares_rejected"]] + m[M["shares_stale"]]) / shares if shares > 0 else 0.0
            rejected_stale = accepted * refused / (1 - refused) if refused < 1 else 0.0
        delivered = (accepted or 0.0) + rejected_stale
        over = expected - delivered if miners else 0.0
        unmatched = 0.0 if miners else -delivered  # pool work no miner reports: credit with nothing expected
        pct = over / expected * 100 if miners and expected > 0 else None
        nameable = miners and p[P["reported_btc"]] > 0 and pool_s >= min(MIN_POOL_S_TO_NAME, 0.25 * day_s)
        observed = max((v[M["observed_s"]] for _, v in miners), default=0.0)
        return WorkerDay(
            worker=worker, miners=sorted(miner for miner, _ in miners),
            potential_btc=expected + offline + curtailed, offline_btc=offline, curtailed_btc=curtailed,
            expected_btc=expected, over_report_btc=over, unmatched_btc=unmatched, rejected_stale_btc=rejected_stale,
            accepted_btc=accepted,
            reported_ths=m[M["hashing_ths_s"]] / m[M["observed_s"]] if m[M["observed_s"]] > 0 else None,
            pool_ths=p[P["pool_ths_s"]] / pool_s if pool_s > 0 else None, over_report_pct=pct,
            over_reporting=bool(nameable and pct is not None and pct > self.settings.over_report_pct),
            coverage=min(1.0, observed / day_s) if day_s > 0 else 0.0)

    def site_day(self, day: date, pools: Mapping[str, PoolSnapshot]) -> SiteDay:
        """The site's day from every miner and every pool's latest account day."""
        book = self.state.days[day]
        results = self.state.results.get(day, DayResults())
        m = [sum(v[i] for v in book.miners.values()) for i in range(len(pool_days.MINER_FIELDS))]
        miners_by_user: dict[str, list[list[float]]] = defaultdict(list)
        for (_, user), vector in book.miners.items():
            miners_by_user[user.lower()].append(vector)
        potential = offline = curtailed = 0.0
        for vectors in miners_by_user.values():  # each user's down time valued at its own miners' rate
            w = [sum(v[i] for v in vectors) for i in range(len(pool_days.MINER_FIELDS))]
            rate = w[M["hashing_ths_s"]] / w[M["hashing_s"]] if w[M["hashing_s"]] > 0 else None
            offline += rate * w[M["offline_v"]] if rate is not None else w[M["offline_exp_btc"]]
            curtailed += rate * w[M["curtailed_v"]] if rate is not None else w[M["curtailed_exp_btc"]]
        expected = m[M["hashing_btc"]]
        potential = expected + offline + curtailed
        accounts = list(results.accounts.values())
        closed = all(name in results.accounts and results.accounts[name].status is DayStatus.CLOSED
                     for name in self.pools)
        complete = all(name in results.accounts and results.accounts[name].credit_published for name in self.pools)
        matched_expected = sum(a.expected_btc for a in accounts)
        fields: dict[str, object] = dict(
            potential_btc=potential, offline_btc=offline, curtailed_btc=curtailed, expected_btc=expected,
            over_report_btc=sum(a.over_report_btc for a in accounts),
            unmatched_btc=sum(a.unmatched_btc for a in accounts) + (expected - matched_expected),
            rejected_stale_btc=sum(a.rejected_stale_btc for a in accounts),
            accepted_btc=sum(a.accepted_btc or 0.0 for a in accounts))
        fee_pct = self.economics.pool_fee_pct if self.economics is not None else 0.0
        site_s = book.site[S["observed_s"]]
        spend_known = self.economics is not None and site_s > 0
        coverage = min(1.0, site_s / _day_length(day, self.state.as_of))
        whole = _whole_day_factor(coverage)
        fields.update(
            site=self.site, day=day, status=DayStatus.CLOSED if closed else DayStatus.PARTIAL, complete=complete,
            pools=sorted(results.accounts), coverage=coverage, expected_net_btc=expected * (1 - fee_pct / 100))
        if spend_known:
            fields.update(all_in_usd=book.site[S["all_in_usd"]], cash_usd=book.site[S["cash_usd"]],
                          power_usd=book.site[S["power_usd"]])
        if complete and accounts and all(a.credited_btc is not None for a in accounts):
            credited = sum(a.credited_btc or 0.0 for a in accounts)
            fee = sum(a.fee_btc or 0.0 for a in accounts)
            fields.update(credited_btc=credited, fee_btc=fee, unobserved_btc=None)
            seen = whole is not None and all(a.luck_btc is not None and a.unobserved_btc is not None
                                             for a in accounts)
            if seen:
                fields.update(unobserved_btc=sum(a.unobserved_btc or 0.0 for a in accounts),
                              luck_btc=sum(a.luck_btc or 0.0 for a in accounts), gap_btc=potential - credited)
            if seen and spend_known and closed and credited > 0:
                # the spend of the observed seconds brought to the whole day the credit is for
                fields.update(realized_all_in_cost_per_btc=book.site[S["all_in_usd"]] * whole / credited,
                              realized_cash_cost_per_btc=book.site[S["cash_usd"]] * whole / credited,
                              realized_energy_cost_per_btc=book.site[S["power_usd"]] * whole / credited)
        # Spend over the BTC the cost stage counted with it: the same intervals (not the miners' expected BTC,
        # which also covers a restart's gap the spend does not, nor a day with no spend counted yet: $0).
        spend_btc = book.site[S["spend_btc"]]
        if spend_known and spend_btc > 0:
            fields["expected_all_in_cost_per_btc"] = book.site[S["all_in_usd"]] / spend_btc
        return SiteDay(**fields)  # type: ignore[arg-type]

    def miners_no_pool_lists(self, day: date) -> list[tuple[str, str, float]] | None:
        """(miner, pool user, BTC it was expected to earn) of each miner whose pool user no configured pool's
        worker had on `day`, the most first: what the site's `unmatched` step nets against the pool work no
        miner reports (trial ZD: a miner hashing for a mistyped account, 17 % of the site's BTC, read as 2 %
        unmatched beside a worker no miner reports). None: the day's books are gone (kept from yesterday on)."""
        book, results = self.state.days.get(day), self.state.results.get(day)
        if book is None or not book.miners or results is None:
            return None
        listed = {w.worker.lower() for account in results.accounts.values() for w in account.workers}
        expected: dict[tuple[str, str], float] = defaultdict(float)
        for (miner, user), vector in book.miners.items():
            if user.lower() not in listed:
                expected[(miner, user)] += vector[HASHING_BTC]
        return sorted(((miner, user, btc) for (miner, user), btc in expected.items()), key=lambda t: -t[2])

    def last_closed(self, *, with_realized: bool = True) -> SiteDay | None:
        """The latest day every pool has closed. `with_realized`: and credited, and the collector saw enough of
        it, for a realized cost per BTC: what the headline is written from (a day seen less keeps the last).
        Without: what `hashfleet pools` shows, whether or not every pool publishes its credit (a ckpool
        account publishes none: its day was never shown, nor the other pools', trial ZD)."""
        for day in sorted(self.state.results, reverse=True):
            site = self.state.results[day].site
            if site is not None and site.status is DayStatus.CLOSED and (not with_realized or (
                    site.complete and site.realized_all_in_cost_per_btc is not None)):
                return site
        return None

    def _log_day(self, account: AccountDay) -> None:
        liars = ", ".join(f"{w.worker} ({w.over_report_pct:.1f} %)" for w in account.workers if w.over_reporting)
        credited = "not published" if account.credited_btc is None else f"{account.credited_btc:.8f} BTC"
        log.info("pool %s: %s closed: expected %.8f BTC, credited %s, gap %s%s", account.pool, account.day,
                 account.expected_btc, credited,
                 "-" if account.gap_btc is None else f"{account.gap_btc:.8f} BTC",
                 f"; over-reporting: {liars}" if liars else "")

    # -- upkeep ----------------------------------------------------------------------------------

    def _prune(self, now: datetime) -> None:
        """Drop days past `keep_days`; per-miner books of closed days before yesterday (their results stay),
        and per-worker results except the latest closed day's."""
        oldest = now.date() - timedelta(days=self.settings.keep_days)
        state = self.state
        for day in [d for d in state.days if d < oldest]:
            del state.days[day]
        for day in [d for d in state.results if d < oldest]:
            del state.results[day]
        shown = {site.day for site in (self.last_closed(), self.last_closed(with_realized=False)) if site}
        for day, results in state.results.items():
            site = results.site
            if site is None or site.status is not DayStatus.CLOSED or day >= now.date() - timedelta(days=1):
                continue
            if day in state.days and (state.days[day].miners or state.days[day].pools):
                state.days[day] = DayBook(site=state.days[day].site)
            if day not in shown:
                for name, account in results.accounts.items():
                    if account.workers:
                        results.accounts[name] = account.model_copy(update={"workers": []})
        for key in [k for k in self._reconciled if k[1] < oldest]:
            del self._reconciled[key]

    def _save(self, now: datetime, *, force: bool = False) -> None:
        if not self.save_enabled or self.state_path is None:
            return
        if not force and not clock.due(None if self._last_save is None else (now - self._last_save).total_seconds(),
                                       SAVE_EVERY_S):
            return
        self._last_save = now
        try:
            pool_days.save(self.state_path, self.state)
        except (OSError, ValueError) as e:
            log.error("cannot save the pool reconciliation's books to %s: %s", self.state_path, e)


_Row = tuple[str, str, float, float | None, float | None]
_Prepared = tuple[list[PoolWorker], list[_Row], dict[str, list[int]], tuple[float, float, float, float]]


def _sums(rows: Sequence[_Row]) -> tuple[float, float, float, float]:
    """Rows' TH/s, TH/s of the rows with rejects published, rejected and stale TH/s."""
    ths = rated = rejected = stale = 0.0
    for _, _, t, r, s in rows:
        ths += t
        if r is not None:
            rated += t
            rejected += r
            stale += s or 0.0
    return ths, rated, rejected, stale


def _day_length(day: date, as_of: datetime | None) -> float:
    """Seconds of `day` so far: a whole day, or up to `as_of` when the day is still running."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    if as_of is not None and start <= as_of < start + timedelta(days=1):
        return max(1.0, (as_of - start).total_seconds())
    return float(SECONDS_PER_DAY)


def _whole_day_factor(coverage: float) -> float | None:
    """What brings a day's observed figures to the whole day the pools credit: 1 / coverage, or None when the
    collector saw less than MIN_COVERAGE of it (too much unknown to estimate)."""
    return 1 / min(1.0, coverage) if coverage >= MIN_COVERAGE else None


def _sum_breakdowns(items: Sequence[WorkerDay], names: Sequence[str]) -> dict[str, float]:
    return {name: sum(getattr(w, name) for w in items) for name in names}


def _unread_words(unread: list[str]) -> str:
    """What the unmatched miners' count holds while a pool is unread: its miners, whose workers are unknown."""
    if not unread:
        return ""
    return f"; not read yet: {', '.join(unread)}, whose miners are counted unmatched until it is"
