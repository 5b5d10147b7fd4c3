"""One cycle's data: one timestamp, the samples the sources bring, the figures the stages make of them.

The service makes a Cycle every interval and hands it to the sources (they announce what they will
bring, then add it), the stages (figures) and the sinks (see collector/service.py). Samples reach the
stages and sinks in parts while the sources are still at work (`MinersPart`, PART_MINERS at a time),
so a large fleet's per-miner figures and lines are never all in memory at once; the cycle's roll-ups
follow when every source is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from models import CostSample, MinerSample, MinerState, NetworkState
from models.curtailment import CurtailmentPlan
from models.health import MinerHealth, SiteHealth
from models.pool import PoolSnapshot
from models.reconciliation import PoolReport
from models.schema import Measurement

# Miners per part handed to the stages and sinks: bounds a cycle's per-miner figures and lines in
# memory, and each part is one spool batch that delivery can send while the next is worked on.
PART_MINERS = 1000


@dataclass(frozen=True, slots=True)
class Record:
    """A figure for the sinks, in the layout models/schema.py defines: a stage adds Records to a part
    or the cycle, and the InfluxDB sink writes them (collector/sinks/points.py checks the names against
    the schema and gives each field the schema's type) — no encoder change for a new stage's measurement."""

    measurement: Measurement
    tags: Mapping[str, str | None]
    fields: Mapping[str, float | int | str | None]
    ts: datetime | None = None  # None: the cycle's timestamp


@dataclass
class MinersPart:
    """A slice of a cycle's miners, in the order they arrived, with the figures the stages add to it."""

    site: str
    ts: datetime
    samples: Sequence[MinerSample] = ()
    costs: list[CostSample] | None = None  # None: no cost figures (no economics, or no network state)
    metered_gap_w: Mapping[str, float] = field(default_factory=dict)  # reported - metered watts, by miner
    records: list[Record] = field(default_factory=list)  # the stages' other per-miner figures
    health: list[MinerHealth] | None = None  # None: no health stage; else one per sample, in order


@dataclass
class CycleCost:
    """The cost stage's roll-ups of a cycle (its per-miner figures go to the sinks part by part)."""
    site: CostSample
    fleet: CostSample
    metered_gap_w: dict[str, float]  # reported - metered, by miner, where a meter reads


@dataclass
class Timings:
    """Where a cycle's time went: wall seconds, and CPU seconds of the whole process (its worker threads
    spool and deliver meanwhile) or, for the stages' roll-ups, of the loop's thread. Logged, and what
    the benchmarks report."""

    collect_s: float = 0.0  # the sources, from the first announce to the last sample
    collect_cpu_s: float = 0.0
    stages_in_collect_s: float = 0.0  # the stages' per-miner figures, made while the sources wait on miners
    drain_s: float = 0.0  # handing on the parts left when the sources were done
    drain_cpu_s: float = 0.0
    finish_s: float = 0.0  # the stages' roll-ups
    finish_cpu_s: float = 0.0
    write_s: float = 0.0  # the sinks' end of cycle (roll-ups, the last spool appends)
    write_cpu_s: float = 0.0


@dataclass
class Cycle:
    site: str
    ts: datetime
    shard: str | None = None  # "K/N" when this collector reads one shard of the site
    samples: list[MinerSample] = field(default_factory=list)  # every miner, in the order they arrived
    network: NetworkState | None = None  # difficulty, fees, BTC price (the network source); None: unknown
    # Miner id -> whether it carries a share of the site's fixed costs, announced by the miner sources
    # before they collect (a miner's share is 1 / the number that carry).
    expected: dict[str, bool] = field(default_factory=dict)
    poll_s: float = 0.0  # the polled miners' part of the cycle
    past_deadline: int = 0  # polled miners that had not answered when the cycle's deadline passed
    latencies_s: list[float] = field(default_factory=list)  # per polled miner (benchmarks)
    cost: CycleCost | None = None  # the cost stage's roll-ups
    health: SiteHealth | None = None  # the health stage's roll-up
    curtailment: CurtailmentPlan | None = None  # the curtailment advice (and what control did with it)
    # Counters a source keeps since the collector started (e.g. MQTT payloads accepted and dropped), for
    # the `collector` point: names and types in models.schema.COLLECTOR.
    counters: dict[str, int] = field(default_factory=dict)
    pools: dict[str, PoolSnapshot] = field(default_factory=dict)  # pool name -> its latest snapshot (pool sources)
    pool_report: PoolReport | None = None  # the pool reconciliation stage's figures (`hashfleet pools`)
    records: list[Record] = field(default_factory=list)  # the stages' figures for the sinks, at the cycle's end
    timings: Timings = field(default_factory=Timings)
    # The service's hand-on to stages and sinks; it may give the sample another id (collector.identity).
    on_sample: Callable[[MinerSample], MinerSample] | None = field(default=None, repr=False)
    _ids: set[str] = field(default_factory=set, repr=False)

    def expect(self, miner: str, *, carries_fixed_costs: bool = True) -> bool:
        """A source will bring `miner` this cycle; False if another source announced it first."""
        if miner in self.expected:
            return False
        self.expected[miner] = carries_fixed_costs
        return True

    def add(self, sample: MinerSample) -> None:
        """A source brings a sample: it joins the cycle and goes on to the stages and sinks."""
        if self.on_sample is not None:
            sample = self.on_sample(sample)
        self.samples.append(sample)
        self._ids.add(sample.miner)

    def has(self, miner: str) -> bool:
        """Has a source brought this miner already (a miner both polled and publishing keeps its poll)?"""
        return miner in self._ids

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if s.state in (MinerState.OFFLINE, MinerState.ERROR))
