"""What a pool's API says, once checked: per worker (pool-side hashrate, rejects) and per UTC day (credited BTC).

The pool sources (collector/sources/pools/) turn each API's replies into these and nothing else; the
reconciliation stage (collector/stages/pool_reconciliation.py) compares them with what the miners
reported. docs/pools.md holds the API facts each field comes from.

Every number is checked here as a reading is (finite, not negative, below a cap no real account
reaches): a pool's reply is as hostile as a miner's.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import Field, field_validator

from models.base import Reading, as_utc

# Past these a number is garbage, not a reading: the whole network hashes ~1e9 TH/s and mines ~450 BTC a day.
MAX_HASHRATE_THS = 1e9
MAX_BTC_PER_DAY = 1000.0
MAX_WORKERS = 100_000  # per account and reply
MAX_DAYS = 400
MAX_NAME_CHARS = 256


class PoolKind(StrEnum):
    BRAIINS = "braiins"  # Braiins Pool, FPPS
    OCEAN = "ocean"  # OCEAN, TIDES
    F2POOL = "f2pool"  # F2Pool, FPPS
    PUBLICPOOL = "publicpool"  # public-pool, solo
    CKPOOL = "ckpool"  # ckpool solo (solo.ckpool.org)


SOLO_KINDS = frozenset({PoolKind.PUBLICPOOL, PoolKind.CKPOOL})
# Full pay per share: the pool pays every accepted share its expected value less its fee, whatever blocks it finds.
FPPS_KINDS = frozenset({PoolKind.BRAIINS, PoolKind.F2POOL})


class DayStatus(StrEnum):
    CLOSED = "closed"  # the pool's figures for the day are final
    PARTIAL = "partial"  # the day is running or not settled yet: the figures may still grow


class PoolWorker(Reading):
    """One worker as the pool sees it now."""

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS,
                      description="the full stratum user, account.worker, as the miner reports it")
    hashrate_ths: float | None = Field(default=None, ge=0, le=MAX_HASHRATE_THS,
                                       description="accepted work, the pool's shortest published window")
    window_s: int | None = Field(default=None, gt=0, description="that window's length")
    hashrate_24h_ths: float | None = Field(default=None, ge=0, le=MAX_HASHRATE_THS)
    reported_hashrate_ths: float | None = Field(default=None, ge=0, le=MAX_HASHRATE_THS,
                                                description="what the miner told the pool it hashes (F2Pool)")
    rejected_ths: float | None = Field(default=None, ge=0, le=MAX_HASHRATE_THS, description="pool-side rejected rate")
    stale_ths: float | None = Field(default=None, ge=0, le=MAX_HASHRATE_THS, description="pool-side stale rate")
    last_share: datetime | None = None
    state: str | None = Field(default=None, max_length=32, description="the pool's own word: ok, low, off, ...")

    @field_validator("last_share")
    @classmethod
    def _utc(cls, ts: datetime | None) -> datetime | None:
        return as_utc(ts)

    @field_validator("name", "state")
    @classmethod
    def _printable(cls, text: str | None) -> str | None:
        # A pool's words reach the log and the terminal: an escape sequence would recolour it, a newline
        # forge a log line. Shown escaped (distinct names stay distinct).
        if text is not None and not text.isprintable():
            return text.encode("unicode_escape").decode("ascii")
        return text


class PoolDay(Reading):
    """One UTC day of one pool account."""

    day: date
    status: DayStatus
    credited_btc: float | None = Field(default=None, ge=0, le=MAX_BTC_PER_DAY,
                                       description="net of the pool's fee; None: not published")
    fee_btc: float | None = Field(default=None, ge=0, le=MAX_BTC_PER_DAY)
    fee_rate: float | None = Field(default=None, ge=0, lt=1)
    payouts_btc: float | None = Field(default=None, ge=0, le=100 * MAX_BTC_PER_DAY)
    blocks: int | None = Field(default=None, ge=0, le=10_000, description="solo: blocks the account found")


class PoolSnapshot(Reading):
    """The latest of one pool account as its source holds it: workers and days, each with its own age."""

    pool: str = Field(min_length=1, max_length=64, description="the config's name for it")
    kind: PoolKind
    account: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    workers: list[PoolWorker] | None = Field(default=None, max_length=MAX_WORKERS, description="None: never read")
    workers_as_of: datetime | None = None
    days: list[PoolDay] = Field(default_factory=list, max_length=MAX_DAYS)
    days_as_of: datetime | None = None
    earnings_published: bool = Field(default=True, description="False: the API publishes no credits (ckpool)")
    stale: bool = Field(default=True, description="the workers are older than the source's max age, or never read")
    error: str | None = Field(default=None, max_length=500, description="why the last read failed, if it did")

    @field_validator("workers_as_of", "days_as_of")
    @classmethod
    def _utc(cls, ts: datetime | None) -> datetime | None:
        return as_utc(ts)

    def day(self, day: date) -> PoolDay | None:
        for d in self.days:
            if d.day == day:
                return d
        return None
