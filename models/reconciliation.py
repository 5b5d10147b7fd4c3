"""What the pools paid against what the miners reported: the reconciliation stage's figures
(collector/stages/pool_reconciliation.py; definitions in docs/pools.md, "Reconciliation").

Per UTC day, a waterfall in BTC from what the miners could have mined to what the pool credited, each
step measured on its own; luck is what is left:

    potential        the miners' own hashrate over every second observed, up or down
  - offline          down time (offline, idle, in error without hashrate), at the miner's own rate
  - curtailed        soft-off time, at the miner's own rate
  = expected         the hashrate the miners reported, integrated (the cost engine's expected BTC, gross)
  - over_report      reported, but never reached the pool (pool-side accepted + rejected below it)
  - unmatched        miners no pool worker matches, less pool workers no miner matches
  - rejected_stale   work the pool refused
  = accepted         pool-side accepted work, at its expected value, over the seconds the collector observed
  - unobserved       the accepted work of the seconds it did not (down, a clock step), at its rate over those
                     it did: negative, credit no observed work stands for (None below MIN_COVERAGE)
  - luck             accepted and unobserved less what the pool paid before its fee (the residual)
  - fee              the pool's fee
  = credited         what the pool credited (per worker: the account's split by accepted work: derived)

gap = potential - credited. Every figure is finite (a ValidationError otherwise, never a point). A day the
collector saw less than MIN_COVERAGE of (collector/stages/pool_reconciliation.py) has no unobserved, luck, gap
or realized cost: None, the unobserved hours are never counted as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from pydantic import ConfigDict, Field

from models.base import Strict
from models.pool import DayStatus, PoolKind


class _Figures(Strict):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Breakdown(_Figures):
    """The waterfall above; None where the pool publishes no credit (ckpool)."""

    potential_btc: float = 0.0
    offline_btc: float = 0.0
    curtailed_btc: float = 0.0
    expected_btc: float = 0.0
    over_report_btc: float = 0.0
    unmatched_btc: float = 0.0
    rejected_stale_btc: float = 0.0
    accepted_btc: float | None = None
    unobserved_btc: float | None = None
    luck_btc: float | None = None
    fee_btc: float | None = None
    credited_btc: float | None = None
    gap_btc: float | None = None

    def components(self) -> dict[str, float | None]:
        """The steps of the waterfall that make up the gap."""
        return {"offline_btc": self.offline_btc, "curtailed_btc": self.curtailed_btc,
                "over_report_btc": self.over_report_btc, "unmatched_btc": self.unmatched_btc,
                "rejected_stale_btc": self.rejected_stale_btc, "unobserved_btc": self.unobserved_btc,
                "luck_btc": self.luck_btc, "fee_btc": self.fee_btc}


class WorkerDay(Breakdown):
    """One pool worker's day, with the miners that report its name."""

    worker: str
    miners: list[str] = Field(default_factory=list)
    reported_ths: float | None = Field(default=None, description="the miners' mean reported hashrate while observed")
    pool_ths: float | None = Field(default=None, description="mean pool-side accepted hashrate while the pool was read")
    over_report_pct: float | None = Field(default=None, description="over_report / expected x 100")
    over_reporting: bool = False
    credit_derived: bool = Field(default=True, description="the account's credit split by accepted work")
    coverage: float = Field(default=0.0, description="share of the day the miners were observed")


class AccountDay(Breakdown):
    """One pool account's day."""

    pool: str
    kind: PoolKind
    account: str
    day: date
    status: DayStatus
    credit_published: bool = Field(default=True, description="False: the API publishes no credit (ckpool)")
    fee_rate: float | None = None
    payouts_btc: float | None = None
    blocks: int | None = None
    reward_estimated: bool = Field(default=False, description="solo: blocks valued at the day's subsidy and fees")
    workers: list[WorkerDay] = Field(default_factory=list)
    over_reporting: list[str] = Field(default_factory=list, description="workers named as over-reporting")


class SiteDay(Breakdown):
    """The site's day: every miner, every pool; realized cost per BTC once every pool's day is closed."""

    site: str
    day: date
    status: DayStatus
    complete: bool = Field(default=True, description="every pool's credit is known (no ckpool, none missing)")
    pools: list[str] = Field(default_factory=list)
    coverage: float = Field(default=0.0, description="share of the day the collector observed")
    expected_net_btc: float = Field(default=0.0, description="expected less the configured pool fee (the cost engine's)")
    all_in_usd: float | None = None
    cash_usd: float | None = None
    power_usd: float | None = None
    realized_all_in_cost_per_btc: float | None = None
    realized_cash_cost_per_btc: float | None = None
    realized_energy_cost_per_btc: float | None = None
    expected_all_in_cost_per_btc: float | None = None


class Unmatched(Strict):
    pool: str | None = None
    worker: str | None = None
    miner: str | None = None
    user: str | None = None


class Matching(Strict):
    """Pool workers and miners, matched by the pool user each miner reports."""

    matched: dict[str, dict[str, list[str]]] = Field(default_factory=dict, description="pool -> worker -> miners")
    unmatched_workers: list[Unmatched] = Field(default_factory=list, description="pool workers no miner reports")
    unmatched_miners: list[Unmatched] = Field(default_factory=list, description="miners whose user no pool lists")
    workers_unmatched: dict[str, int] = Field(default_factory=dict, description="per pool: all, listed or not")
    miners_unmatched: int = 0
    # A miner on a pool not read (an error, a timeout) is among the unmatched: its pool's workers are unknown.
    pools_unread: list[str] = Field(default_factory=list, description="pools whose workers could not be read yet")


@dataclass(frozen=True, slots=True)
class WorkerNow:
    """One pool worker as the pool last showed it, beside what its miners reported meanwhile. A plain
    dataclass: 10,000 of them each time a large account is read (pydantic's construction cost 12 µs each),
    every value from a checked PoolWorker or the stage's books."""

    pool: str
    worker: str
    miners: list[str]
    hashrate_ths: float | None = None
    reported_hashrate_ths: float | None = None
    pool_reported_hashrate_ths: float | None = None
    rejected_ths: float | None = None
    stale_ths: float | None = None
    last_share_age_s: float | None = None
    state: str | None = None


class PoolStatus(_Figures):
    """One pool account now. The figures are None while its data is stale or was never read: a pool that
    does not answer shows as stale, never as zero."""

    pool: str
    kind: PoolKind
    account: str
    stale: bool
    age_s: float | None = None
    error: str | None = None
    workers: int | None = None
    hashrate_ths: float | None = None
    reported_hashrate_ths: float | None = None


@dataclass
class PoolReport:
    """The reconciliation stage's output for one cycle (`cycle.pool_report`)."""

    ts: datetime
    pools: list[PoolStatus] = field(default_factory=list)
    matching: Matching = field(default_factory=Matching)
    workers_now: list[WorkerNow] = field(default_factory=list)  # only pools read anew since the last cycle
    days: list[AccountDay] = field(default_factory=list)  # accounts' days reconciled this cycle
    sites: list[SiteDay] = field(default_factory=list)  # the site's days reconciled this cycle
    last_closed: SiteDay | None = None  # the latest closed, complete day: realized cost per BTC
