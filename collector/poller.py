"""One poll cycle over the whole fleet: every known miner, bounded concurrency,
a hard per-miner deadline, one timestamp for the cycle.

A hung or slow miner costs at most its own deadline and never delays the
others; a miner that stops answering yields offline samples, not silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from collector import discovery
from collector.identity import DuplicateIds
from collector.sources import avalon, pyasic_source
from collector.targets import Spec, Target, in_shard, parse_specs, range_targets, resolve_name
from models import CollectorConfig, MinerSample, MinerState, SampleSource

if TYPE_CHECKING:
    from collector.costing import CycleCost
    from models import CostSample

log = logging.getLogger(__name__)


@dataclass
class _Known:
    driver: str | None = None
    pyasic_miner: Any = None
    miner_id: str | None = None  # kept so an offline miner keeps its MAC-based id
    error_logged: bool = False  # an unexpected driver error's traceback was logged for this miner


@dataclass
class CycleResult:
    site: str
    ts: datetime
    samples: list[MinerSample]
    duration_s: float
    cost: CycleCost | None = None  # the roll-ups, filled by the cost stage when economics are configured
    latencies_s: list[float] = field(default_factory=list)  # per miner, in poll order (for benchmarks)
    shard: str | None = None  # "K/N" when this collector polls one shard of the site

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if s.state in (MinerState.OFFLINE, MinerState.ERROR))


@dataclass
class MinersPart:
    """A slice of a cycle's miners (samples, cost figures, or both), handed to the sinks while the
    cycle is still being worked through: samples as the poll brings them in, cost figures once the
    poll is over. At 10,000 miners the per-miner figures and lines of a whole cycle would be ~100 MB;
    a slice of 1,000 is a tenth of that. The cycle's roll-ups follow in its CycleResult."""

    site: str
    ts: datetime
    samples: Sequence[MinerSample] = ()
    costs: list[CostSample] | None = None  # None: no figures in this part (or no economics)
    metered_gap_w: Mapping[str, float] = field(default_factory=dict)  # reported - metered, by miner


@dataclass
class Poller:
    config: CollectorConfig
    specs: list[Spec] = field(init=False)
    targets: set[Target] = field(init=False)
    _known: dict[Target, _Known] = field(init=False, default_factory=dict)
    _last_refresh: float = field(init=False, default=float("-inf"))
    _ids: DuplicateIds = field(init=False, default_factory=DuplicateIds)  # two miners claiming one MAC

    def __post_init__(self) -> None:
        self._pyasic_gate = asyncio.Semaphore(self.config.pyasic_concurrency)
        self.specs = parse_specs(self.config.miners)
        self.shard = self.config.shard_k_n
        self.targets = {t for t in (Target(s.text, s.port) for s in self.specs if s.kind == "address")
                        if in_shard(t, self.shard)}

    @property
    def needs_refresh(self) -> bool:
        dynamic = any(s.kind != "address" for s in self.specs)
        return dynamic and time.monotonic() - self._last_refresh >= self.config.rescan_interval_s

    async def refresh(self, on_progress=None) -> None:
        """Re-resolve DNS names and re-scan CIDR ranges; new miners join, known ones stay."""
        self._last_refresh = time.monotonic()
        for spec in self.specs:
            if spec.kind == "name":
                found = await resolve_name(spec)
                if not found:
                    log.warning("%s: DNS name resolves to no address", spec.text)
                self.targets.update(t for t in found if in_shard(t, self.shard))
            elif spec.kind == "range":
                fresh = [t for t in range_targets(spec) if t not in self.targets and in_shard(t, self.shard)]
                identities = await discovery.scan(fresh, concurrency=self.config.concurrency,
                                                  timeout_s=min(self.config.timeout_s, 3.0), on_progress=on_progress)
                for identity in identities:
                    self.targets.add(identity.target)
                    self._known[identity.target] = _Known(identity.driver, identity.pyasic_miner)
                log.info("%s: %d miner(s) found", spec.text, len(identities))

    async def cycle(self, ts: datetime, on_sample: Callable[[MinerSample], None] | None = None) -> CycleResult:
        """Poll every target once. `on_sample` is called with each sample as it arrives (the service
        hands them to the sinks while the rest of the fleet is still being polled)."""
        started = time.monotonic()
        targets = sorted(self.targets)
        samples: list[MinerSample] = [None] * len(targets)  # type: ignore[list-item]  # all filled below
        latencies: list[float] = []
        queue = iter(enumerate(targets))

        # `concurrency` workers taking the next miner as they finish one: the same bound as a task
        # per miner behind a semaphore, without 10,000 tasks and semaphore round trips a cycle
        # (~5 % of the collector's CPU, profiled).
        async def worker() -> None:
            for i, target in queue:
                begun = time.monotonic()
                sample = samples[i] = self._ids.check(await self.poll_one(target, ts))
                latencies.append(time.monotonic() - begun)
                if on_sample is not None:
                    on_sample(sample)

        await asyncio.gather(*(worker() for _ in range(min(self.config.concurrency, len(targets)))))
        return CycleResult(self.config.site, ts, samples, time.monotonic() - started, latencies_s=latencies,
                           shard=self.config.shard)

    async def poll_one(self, target: Target, ts: datetime) -> MinerSample:
        known = self._known.setdefault(target, _Known())
        deadline = self.config.timeout_s
        # pyasic costs ~13 ms of CPU per Antminer: 512 of them at once would each take longer than the
        # deadline and none would be read. They (and unidentified addresses, which may need pyasic's
        # detection) go through a narrower gate; the deadline starts once through it.
        try:
            if known.driver == discovery.AVALON:
                # The native driver's request timeout covers connect and the whole read, and parsing cannot
                # block: no second timer (at 10,000 miners the pair was ~3 % of the collector's CPU).
                sample = await avalon.poll(target.host, target.port, site=self.config.site, ts=ts,
                                           timeout_s=deadline, known_id=known.miner_id)
            else:
                async with self._pyasic_gate:
                    try:
                        async with asyncio.timeout(deadline + 1.0):  # a hard stop whatever pyasic does
                            sample = await self._poll(target, known, ts, deadline)
                    except TimeoutError:
                        sample = self._offline(target, known, ts, f"{target.address}: no answer within {deadline:g} s")
        except Exception as e:  # a driver bug must cost one miner's sample, never the cycle
            if not known.error_logged:  # the traceback once per miner, not every cycle
                known.error_logged = True
                log.exception("%s: unexpected error while polling", target.address)
            sample = self._offline(target, known, ts, f"{target.address}: internal error: {type(e).__name__}: {e}",
                                   MinerState.ERROR)
        if sample.mac:
            known.miner_id = sample.miner
        return sample

    async def _poll(self, target: Target, known: _Known, ts: datetime, timeout_s: float) -> MinerSample:
        if known.driver is None:
            try:
                identity = await discovery.identify(target, timeout_s)
            except discovery.NoMinerFound as e:
                return self._offline(target, known, ts, str(e))
            known.driver, known.pyasic_miner = identity.driver, identity.pyasic_miner
        site = self.config.site
        if known.driver == discovery.AVALON:
            return await avalon.poll(target.host, target.port, site=site, ts=ts, timeout_s=timeout_s,
                                     known_id=known.miner_id)
        return await pyasic_source.poll(known.pyasic_miner, host=target.host, port=target.port, site=site, ts=ts,
                                        timeout_s=timeout_s, known_id=known.miner_id)

    def _offline(self, target: Target, known: _Known, ts: datetime, reason: str,
                 state: MinerState = MinerState.OFFLINE) -> MinerSample:
        source = SampleSource.PYASIC if known.driver == discovery.PYASIC else SampleSource.AVALON
        return MinerSample.offline(miner=known.miner_id or target.address, host=target.host, port=target.port,
                                   site=self.config.site, ts=ts, source=source, reason=reason, state=state)
