"""What a simulated pool knows: the shares each worker delivered and what the pool credited for them.

The engine integrates each worker's hashes from its miner (`HashFeed.total_th_s()`, the same
TH·s integral the miner's own counters come from), so the pool sees the fleet's real simulated
hashrate, then applies what happens between a miner and a pool:

    delivered = reported hashes x (1 - over_report) x (share of the interval the worker was online)
    accepted  = delivered x (1 - reject_rate - stale_rate) x noise      (rejected/stale likewise)

and credits BTC by the pool's payout scheme (DESIGN.md section 6, expected value of a hash):

    btc = accepted hashes x (subsidy + fees per block) / (difficulty x 2^32) x luck x (1 - fee)

- `fpps` (Braiins Pool, F2Pool): credited as the shares arrive, summed per UTC day;
- `tides` (OCEAN): the same expected value, credited at each pool block (every `block_interval_s`)
  for the shares since the previous block. The real TIDES window (8 x network difficulty of shares)
  spreads the same total over more blocks; over steady hashing the per-day sums agree.
- `solo` (public-pool, ckpool): nothing, unless the worker finds a block (`find_block`, or a
  deterministic draw with the probability its accepted hashes give): then the whole block reward.

A day's numbers are final ("closed") `settle_delay_s` after 00:00 UTC ends it, unless the
`day_not_closed` fault holds the latest day back.

Time comes from the fleet's clock (a ManualClock in tests); the engine advances lazily whenever it
is asked (every API request syncs it), so a test that moves the clock a day and then asks gets the
day's totals at once. Intervals are kept for `HISTORY_S` (rolling windows up to 24 h); longer
windows and per-day figures come from the day totals.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

from simulators.clock import Clock, wall_clock

Scheme = Literal["fpps", "tides", "solo"]

TWO_32 = 4294967296.0
DAY_S = 86400
# On a wall clock every question (a rate over a window) moved the clock on: one OCEAN request for 60 workers
# asks ~1,000 of them, and each appended an interval to every worker: 7 s for the first request, 20 s by the
# fourth (trial P M4). Time is integrated in steps of at least this; a question within one sees the last step.
MIN_ADVANCE_S = 1.0
HISTORY_S = 25 * 3600  # raw intervals kept: the longest rolling window served from them is 24 h


@dataclass(frozen=True, slots=True)
class NetworkParams:
    """The chain's state the payouts are computed from (held constant unless set)."""

    difficulty: float = 1.5e14
    subsidy_btc: float = 3.125  # from block 840,000
    fees_per_block_btc: float = 0.02
    height: int = 925_000

    @property
    def reward_btc(self) -> float:
        return self.subsidy_btc + self.fees_per_block_btc

    def btc_per_hash(self) -> float:
        """Expected BTC for one hash (DESIGN.md section 6)."""
        return self.reward_btc / (self.difficulty * TWO_32)


@dataclass(slots=True)
class WorkerConfig:
    """Per-worker knobs. None means: take the miner's own trait (reject/stale) or the pool's (fee)."""

    luck: float = 1.0
    reject_rate: float | None = None
    stale_rate: float | None = None
    fee: float | None = None
    over_report: float = 0.0  # the miner reports 1/(1 - x) times what reaches the pool
    noise: float = 0.0  # amplitude of a deterministic per-interval wobble of accepted shares
    offline: list[tuple[float, float]] = field(default_factory=list)  # [start, end) clock times

    def check(self) -> None:
        for name in ("luck", "over_report", "noise"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"worker {name} must be a finite number >= 0, got {value!r}")
        if self.over_report >= 1:
            raise ValueError(f"over_report is a fraction below 1, got {self.over_report!r}")
        for name in ("reject_rate", "stale_rate", "fee"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"worker {name} is a fraction in [0, 1), got {value!r}")
        if self.noise >= 1:
            raise ValueError(f"noise is a fraction below 1, got {self.noise!r}")


class HashFeed(Protocol):
    """Where a worker's hashes come from: a simulated miner (MinerFeed) or a test's own source."""

    def total_th_s(self) -> float: ...  # cumulative TH·s the miner reports having hashed

    @property
    def reject_ratio(self) -> float: ...

    @property
    def stale_ratio(self) -> float: ...

    @property
    def share_diff(self) -> float: ...


class MinerFeed:
    """A simulated miner as a pool sees it (thread-safe: `truth()` takes the miner's lock)."""

    def __init__(self, miner: object) -> None:
        self.miner = miner

    def total_th_s(self) -> float:
        return float(self.miner.truth().total_th_s)  # type: ignore[attr-defined]

    @property
    def reject_ratio(self) -> float:
        return float(self.miner.reject_ratio)  # type: ignore[attr-defined]  # the pool_rejects fault moves it

    @property
    def stale_ratio(self) -> float:
        return float(self.miner.stale_ratio)  # type: ignore[attr-defined]

    @property
    def share_diff(self) -> float:
        return float(self.miner.spec.pool_diff)  # type: ignore[attr-defined]

    @property
    def host(self) -> str:
        return str(self.miner.host)  # type: ignore[attr-defined]


@dataclass(slots=True)
class Interval:
    t0: float
    t1: float
    reported_ths: float  # TH·s the miner reported hashing in [t0, t1)
    accepted_ths: float
    rejected_ths: float
    stale_ths: float


@dataclass(slots=True)
class DayTotals:
    """One UTC day of one worker (TH·s and BTC)."""

    reported_ths: float = 0.0
    accepted_ths: float = 0.0
    rejected_ths: float = 0.0
    stale_ths: float = 0.0
    credited_btc: float = 0.0  # net of fee, as the pool credits it
    fee_btc: float = 0.0
    seconds: float = 0.0  # how much of the day has been integrated

    def add(self, other: DayTotals) -> None:
        for name in DayTotals.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class Credit:
    """One credit event: a TIDES block payout or a solo block."""

    at: float
    worker: str
    btc: float
    fee_btc: float
    accepted_ths: float  # the shares it paid for
    height: int
    block_hash: str


class PoolWorker:
    def __init__(self, name: str, feed: HashFeed, index: int, config: WorkerConfig | None = None) -> None:
        self.name = name  # the full stratum user, e.g. "hashfleet.a1b2c3"
        self.feed = feed
        self.index = index
        self.config = config or WorkerConfig()
        self.last_total: float | None = None
        self.intervals: list[Interval] = []
        self.days: dict[int, DayTotals] = {}
        self.pending_btc = 0.0  # TIDES: earned since the last pool block
        self.pending_fee = 0.0
        self.pending_ths = 0.0
        self.last_share_at: float = 0.0
        self.first_seen: float | None = None

    @property
    def account(self) -> str:
        return self.name.partition(".")[0]

    @property
    def short_name(self) -> str:
        """The part after the account (how OCEAN, F2Pool and public-pool name a worker)."""
        account, dot, rest = self.name.partition(".")
        return rest if dot else account

    def reject_rate(self) -> float:
        c = self.config
        return self.feed.reject_ratio if c.reject_rate is None else c.reject_rate

    def stale_rate(self) -> float:
        c = self.config
        return self.feed.stale_ratio if c.stale_rate is None else c.stale_rate

    def day(self, day: int) -> DayTotals:
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = DayTotals()
        return totals


def day_of(t: float) -> int:
    """UTC day number (days since 1970-01-01) of a clock reading."""
    return int(t // DAY_S)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def _unit(seed: int, *parts: object) -> float:
    """A deterministic value in [0, 1) from (seed, parts): the same question, the same answer."""
    h = hashlib.blake2b(repr((seed, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


def block_hash(seed: int, height: int, at: float) -> str:
    return hashlib.sha256(f"hashfleet-sim:{seed}:{height}:{at:.0f}".encode()).hexdigest()


class PoolEngine:
    """The shares and credits of one simulated pool account. Thread-safe."""

    def __init__(
        self,
        *,
        scheme: Scheme,
        account: str,
        clock: Clock = wall_clock,
        network: NetworkParams | None = None,
        fee: float = 0.02,
        settle_delay_s: float = 3600.0,
        block_interval_s: float = 4 * 3600.0,
        seed: int = 0,
    ) -> None:
        if scheme not in ("fpps", "tides", "solo"):
            raise ValueError(f"unknown payout scheme {scheme!r}: fpps, tides or solo")
        if not (math.isfinite(fee) and 0 <= fee < 1):
            raise ValueError(f"pool fee is a fraction in [0, 1), got {fee!r}")
        self.scheme = scheme
        self.account = account
        self.clock = clock
        self.network = network or NetworkParams()
        self.fee = fee
        self.settle_delay_s = settle_delay_s
        self.block_interval_s = block_interval_s
        self.seed = seed
        self.day_not_closed = False  # fault: the latest finished day is not closed yet
        self.workers: dict[str, PoolWorker] = {}
        self.credits: list[Credit] = []
        self.started_at = clock()
        self._last_t = self.started_at
        self._lock = threading.RLock()

    # -- setup ----------------------------------------------------------------------------------

    def add_worker(self, name: str, feed: HashFeed, config: WorkerConfig | None = None) -> PoolWorker:
        if "." not in name:
            raise ValueError(f"worker {name!r} must be ACCOUNT.WORKER, as a miner's pool user is")
        with self._lock:
            if name in self.workers:
                raise ValueError(f"worker {name!r} is already on this pool")
            worker = PoolWorker(name, feed, len(self.workers), config)
            (config or worker.config).check()
            worker.last_total = feed.total_th_s()
            worker.first_seen = self._last_t
            self.workers[name] = worker
            return worker

    def configure(self, name: str, **changes: object) -> WorkerConfig:
        """Change a worker's knobs from now on (what was integrated keeps its old settings)."""
        with self._lock:
            self.advance()
            worker = self._worker(name)
            config = WorkerConfig(**{**{f: getattr(worker.config, f) for f in WorkerConfig.__slots__},  # type: ignore[attr-defined]
                                     **changes})
            config.check()
            worker.config = config
            return config

    def set_offline(self, name: str, offline: bool) -> None:
        """Take a worker's shares off the pool from now (a cable pulled), or bring them back."""
        with self._lock:
            self.advance()
            worker = self._worker(name)
            now = self.clock()
            periods = worker.config.offline
            if offline:
                if not periods or periods[-1][1] <= now:
                    periods.append((now, math.inf))
            elif periods and periods[-1][1] == math.inf:
                periods[-1] = (periods[-1][0], now)

    def set_network(self, network: NetworkParams) -> None:
        with self._lock:
            self.advance()
            self.network = network

    def _worker(self, name: str) -> PoolWorker:
        try:
            return self.workers[name]
        except KeyError:
            raise KeyError(f"no worker {name!r} on pool account {self.account!r}") from None

    # -- time -----------------------------------------------------------------------------------

    def advance(self) -> float:
        """Integrate every worker up to the clock's now; returns now."""
        with self._lock:
            now = self.clock()
            # (the first question after the start integrates whatever has passed: a worker hashing since the
            # start shows a rate at once, as it did before the step)
            if now <= self._last_t or (now - self._last_t < MIN_ADVANCE_S and self._last_t > self.started_at):
                return self._last_t
            t0 = self._last_t
            rates = {name: self._reported_rate(worker, t0, now) for name, worker in self.workers.items()}
            for a, b, is_block in self._pieces(t0, now):
                for name, worker in self.workers.items():
                    rate = rates[name]
                    if rate > 0:
                        self._integrate(worker, a, b, rate * (b - a))
                    else:
                        worker.intervals.append(Interval(a, b, 0.0, 0.0, 0.0, 0.0))
                if is_block:
                    self._pay_block(b)
            self._last_t = now
            self._prune(now)
            return now

    @staticmethod
    def _reported_rate(worker: PoolWorker, t0: float, t1: float) -> float:
        """TH/s the miner hashed over [t0, t1), from its cumulative counter."""
        total = worker.feed.total_th_s()
        last = worker.last_total if worker.last_total is not None else total
        worker.last_total = total
        # A reboot (or a lost board) restarts the miner's integral: that interval counts nothing.
        return (total - last) / (t1 - t0) if total > last else 0.0

    def _pieces(self, t0: float, t1: float) -> list[tuple[float, float, bool]]:
        """[t0, t1) cut at UTC midnights and, for TIDES, at pool blocks (flagged True)."""
        cuts: dict[float, bool] = {t0: False, t1: False}
        d = math.floor(t0 / DAY_S) + 1
        while d * DAY_S < t1:
            cuts[float(d * DAY_S)] = False
            d += 1
        if self.scheme == "tides":
            k = math.floor(t0 / self.block_interval_s) + 1
            while k * self.block_interval_s <= t1:
                cuts[k * self.block_interval_s] = True
                k += 1
        points = sorted(cuts)
        return [(a, b, cuts[b]) for a, b in zip(points, points[1:], strict=False)]

    def _integrate(self, worker: PoolWorker, a: float, b: float, reported: float) -> None:
        c = worker.config
        online = (b - a) - sum(_overlap(a, b, s, e) for s, e in c.offline)
        online_share = max(0.0, online) / (b - a)
        delivered = reported * (1.0 - c.over_report) * online_share
        wobble = 1.0
        if c.noise:
            wobble += c.noise * (2.0 * _unit(self.seed, worker.index, round(a, 3)) - 1.0)
        reject, stale = worker.reject_rate(), worker.stale_rate()
        accepted = delivered * max(0.0, 1.0 - reject - stale) * wobble
        rejected = delivered * reject * wobble
        stale_ths = delivered * stale * wobble
        worker.intervals.append(Interval(a, b, reported, accepted, rejected, stale_ths))
        if accepted > 0:
            worker.last_share_at = b
        day = worker.day(day_of(a))
        day.reported_ths += reported
        day.accepted_ths += accepted
        day.rejected_ths += rejected
        day.stale_ths += stale_ths
        day.seconds += b - a
        fee = self.fee if c.fee is None else c.fee
        gross = accepted * 1e12 * self.network.btc_per_hash() * c.luck
        if self.scheme == "fpps":
            day.credited_btc += gross * (1.0 - fee)
            day.fee_btc += gross * fee
        elif self.scheme == "tides":
            worker.pending_btc += gross * (1.0 - fee)
            worker.pending_fee += gross * fee
            worker.pending_ths += accepted
        else:
            self._solo_draw(worker, a, b, accepted)

    def _pay_block(self, at: float) -> None:
        """A TIDES pool block at `at`: every worker is paid for its shares since the last one."""
        height = self.network.height + int(at // 600) % 100_000
        bhash = block_hash(self.seed, height, at)
        for worker in self.workers.values():
            if worker.pending_btc <= 0:
                continue
            self.credits.append(Credit(at, worker.name, worker.pending_btc, worker.pending_fee,
                                       worker.pending_ths, height, bhash))
            day = worker.day(day_of(at - 1e-6))  # a block at 00:00 pays the day that just ended
            day.credited_btc += worker.pending_btc
            day.fee_btc += worker.pending_fee
            worker.pending_btc = worker.pending_fee = worker.pending_ths = 0.0

    def _solo_draw(self, worker: PoolWorker, a: float, b: float, accepted: float) -> None:
        p = accepted * 1e12 / (self.network.difficulty * TWO_32) * worker.config.luck
        if p > 0 and _unit(self.seed, "block", worker.index, round(a, 3)) < min(1.0, p):
            self._credit_block(worker, b)

    def find_block(self, name: str, at: float | None = None) -> Credit:
        """The worker finds a block now (solo pools): the whole reward, less the pool's fee."""
        with self._lock:
            self.advance()
            return self._credit_block(self._worker(name), self.clock() if at is None else at)

    def _credit_block(self, worker: PoolWorker, at: float) -> Credit:
        fee = self.fee if worker.config.fee is None else worker.config.fee
        reward = self.network.reward_btc
        height = self.network.height + int(at // 600) % 100_000
        credit = Credit(at, worker.name, reward * (1.0 - fee), reward * fee, 0.0, height,
                        block_hash(self.seed, height, at))
        self.credits.append(credit)
        day = worker.day(day_of(at))
        day.credited_btc += credit.btc
        day.fee_btc += credit.fee_btc
        return credit

    def _prune(self, now: float) -> None:
        horizon = now - HISTORY_S
        for worker in self.workers.values():
            ivs = worker.intervals
            if ivs and ivs[0].t1 < horizon:
                worker.intervals = [iv for iv in ivs if iv.t1 >= horizon]

    # -- questions the APIs ask -------------------------------------------------------------------

    def now(self) -> float:
        return self.advance()

    def rate_ths(self, name: str, window_s: float, what: str = "accepted") -> float:
        """Average TH/s of `what` (accepted | rejected | stale | reported) over the last window."""
        with self._lock:
            now = self.advance()
            worker = self._worker(name)
            if window_s > HISTORY_S:
                return self._rate_from_days(worker, now, window_s, what)
            start = now - window_s
            total = 0.0
            for iv in reversed(worker.intervals):
                if iv.t1 <= start:
                    break
                span = iv.t1 - iv.t0
                if span > 0:
                    total += getattr(iv, f"{what}_ths") * _overlap(iv.t0, iv.t1, start, now) / span
            return total / window_s

    def _rate_from_days(self, worker: PoolWorker, now: float, window_s: float, what: str) -> float:
        start = now - window_s
        total = 0.0
        for day, totals in worker.days.items():
            d0, d1 = day * DAY_S, (day + 1) * DAY_S
            covered = totals.seconds or DAY_S
            total += getattr(totals, f"{what}_ths") * _overlap(d0, d1, start, now) / covered
        return total / window_s

    def shares(self, name: str, window_s: float, diff: float | None = None) -> int:
        """Accepted shares in the window, counted at the worker's share difficulty."""
        worker = self.workers[name]
        d = diff or worker.feed.share_diff
        return int(self.rate_ths(name, window_s) * window_s * 1e12 / (TWO_32 * d))

    def day_totals(self, name: str, day: int) -> DayTotals:
        with self._lock:
            self.advance()
            return self._worker(name).days.get(day, DayTotals())

    def account_day(self, day: int) -> DayTotals:
        """All workers of the account on one UTC day."""
        with self._lock:
            self.advance()
            out = DayTotals()
            for worker in self.workers.values():
                totals = worker.days.get(day)
                if totals is not None:
                    out.add(totals)
            return out

    def closed_days(self) -> list[int]:
        """UTC days whose credits are final, oldest first."""
        with self._lock:
            now = self.advance()
            first = day_of(self.started_at)
            last = day_of(now - self.settle_delay_s) - 1  # day d closes at (d + 1) x 86400 + delay
            if self.day_not_closed:
                last -= 1
            return list(range(first, last + 1))

    def today(self) -> int:
        return day_of(self.now())

    def credited_total(self) -> float:
        with self._lock:
            self.advance()
            return sum(t.credited_btc for w in self.workers.values() for t in w.days.values())

    def credits_between(self, t0: float, t1: float) -> list[Credit]:
        with self._lock:
            self.advance()
            return [c for c in self.credits if t0 <= c.at < t1]
