"""The cost stage: the stateful glue around the pure engine (collector/stages/cost_engine.py).

Each cycle it takes the cycle's samples, its network state and the live inputs (power price,
metered watts), asks the engine for miner, site and fleet figures, and advances the running totals
(today, this month) over the time since the previous cycle. The totals are saved every
SAVE_EVERY_S of cycle time and on stop (`close`), not every cycle: at 2,000 miners the file is ~870 KB
(~1.3 MB with the day before's amounts, kept for a clock stepped back over midnight: docs/cost.md).

A failure here never stops the service: a miner whose figures cannot be computed is costed as
one with no reading, a cycle whose roll-up fails has no cost figures (logged; its samples are
still written), and totals that would become unusable (not finite) are not advanced or saved.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from collector import clock
from collector.bounded_log import BoundedLog
from collector.cycle import Cycle, CycleCost, MinersPart
from collector.sources.live_inputs import LiveInputs
from collector.stages import cost_engine as cost
from collector.stages import running_totals as totals_store
from models import CostSample, CostScope, MinerSample, NetworkState, SampleSource, SiteEconomics

log = logging.getLogger(__name__)

MAX_INTEGRATION_GAP_S = 600  # longer gaps (collector down) are not integrated: nothing is known about them
# The running totals are saved this often (and on stop). Every cycle was ~314 MB/h of synced writes at
# 2,000 miners; a crash loses at most this much counting (docs/cost.md), as the efficiency book and the
# pool books (also every 300 s) lose theirs.
SAVE_EVERY_S = 300
SAVE_ERRORS_EVERY_S = 300  # a spool directory that stays unwritable is logged this often, not every cycle
DEFAULT_FORGET_AFTER_S = 24 * 3600  # CollectorConfig.forget_unseen_miners_h's default


class CycleCosting:
    """One cycle's cost work, a chunk of miners at a time. The service asks for each chunk's figures
    as the poll brings the samples in and hands them to the sinks at once, so 10,000 miners'
    CostSamples (~5 KB each) never sit in memory together and the costing overlaps the poll;
    `finish` then advances the running totals over the whole cycle and gives the roll-ups.

    A miner's today/month figures are its running totals up to the previous cycle (this cycle's
    interval is integrated in `finish`, over every miner: the demand charge is shared by energy);
    the site's and fleet's include this cycle."""

    def __init__(self, stage: CostStage, now: datetime, network: NetworkState, fixed_share: float,
                 carries: Callable[[MinerSample], bool] | None = None):
        self._stage = stage
        self.now = now
        self.network = network
        self.fixed_share = fixed_share  # of each miner that carries fixed costs (every one unless `carries`)
        self.carries = carries
        self.metered_w: dict[str, float] = {}  # by miner, where a meter reads
        self.metered_gap_w: dict[str, float] = {}  # reported - metered, by miner
        self._totals_before = stage.totals  # as of the previous cycle
        self._rollup = cost.Rollup()
        self._live_price = stage.live.power_price
        self.failed = False  # a chunk's costing failed: no roll-up this cycle

    def miners(self, samples: Sequence[MinerSample]) -> list[CostSample] | None:
        """The chunk's per-miner figures; None (logged) when this cycle's costing has failed."""
        if self.failed:
            return None
        try:
            cost.check_site(self._stage.site, samples)
            return [self._miner(sample) for sample in samples]
        except Exception:  # a bug or an input no check caught: the cycle's figures, never the service
            self.failed = True
            log.exception("cost figures of the cycle at %s failed: none are written for it", self.now.isoformat())
            return None

    def _miner(self, sample: MinerSample) -> CostSample:
        stage, book = self._stage, self._totals_before
        totals = None if book is None else (book.today.get(sample.miner, _NOTHING),
                                            book.month_to_date.get(sample.miner, _NOTHING))
        share = self.fixed_share if self.carries is None or self.carries(sample) else 0.0
        try:
            figures = cost.miner_cost(self._metered(sample), stage.economics, self.network, self.now,
                                      fixed_share=share, live_price=self._live_price, totals=totals)
        except (ValueError, ArithmeticError) as e:  # e.g. a figure that is not finite: costed as one with no reading
            stage.log_miner_failure(sample.miner, e)
            figures = cost.miner_cost(_no_reading(sample), stage.economics, self.network, self.now,
                                      fixed_share=share, live_price=self._live_price, totals=totals)
        self._rollup.add(figures)
        return figures

    def finish(self, samples: Sequence[MinerSample]) -> CycleCost | None:
        """`samples`: every sample of the cycle (each already through `miners`). None (logged) when
        the cycle's figures failed; the running totals still advance where they can."""
        stage = self._stage
        stage.advance([_with_metered(s, self.metered_w) for s in samples] if self.metered_w else samples,
                      self.network, self.now, self.carries)
        if self.failed:
            return None
        try:
            return self._rollups()
        except Exception:
            log.exception("cost roll-ups of the cycle at %s failed: none are written for it", self.now.isoformat())
            return None

    def _rollups(self) -> CycleCost:
        stage = self._stage
        if self._rollup.children:
            site = self._rollup.result(CostScope.SITE, stage.site, self.now)
        else:
            site = cost.empty_site_cost(stage.site, stage.economics, self.network, self.now,
                                        live_price=self._live_price)
        if stage.totals is not None:
            site = cost.with_totals(site, stage.totals.site_today(), stage.totals.site_month())
        return CycleCost(site, cost.fleet_cost([site], self.now), self.metered_gap_w)

    def _metered(self, sample: MinerSample) -> MinerSample:
        """Metered watts in place of reported ones where a meter reads (the gap is recorded); where
        none does, the reported watts times the model's learned correction, when there is one."""
        live = self._stage.live
        metered = live.metered_power(sample.miner, self.now) if live.metered_w else None
        if metered is None:
            return self._corrected(sample)
        self.metered_w[sample.miner] = metered
        if sample.power_w is not None:
            self.metered_gap_w[sample.miner] = sample.power_w - metered
        return _with_metered(sample, self.metered_w)

    def _corrected(self, sample: MinerSample) -> MinerSample:
        correction = self._stage.power_correction
        if correction is None or sample.power_w is None:
            return sample
        factor = correction(sample)
        if factor is None:
            return sample
        self.metered_w[sample.miner] = sample.power_w * factor  # what the running totals integrate too
        return _with_metered(sample, self.metered_w)


def _with_metered(sample: MinerSample, metered_w: dict[str, float]) -> MinerSample:
    """The sample with metered watts in place of reported ones, where a meter reads."""
    metered = metered_w.get(sample.miner)
    if metered is None:
        return sample
    efficiency = metered / sample.hashrate_ths if sample.hashrate_ths else None
    if efficiency is not None and not efficiency < float("inf"):
        efficiency = None
    return sample.model_copy(update={"power_w": metered, "efficiency_j_th": efficiency})


_NOTHING = cost.Totals()


def _no_reading(sample: MinerSample) -> MinerSample:
    return sample.refused({"hashrate_ths": "cost figures could not be computed from this reading",
                           "power_w": "cost figures could not be computed from this reading"})


class CostStage:
    """Cost figures for every cycle (collector.stages.Stage): each miner's as its part goes by, the
    site's and fleet's roll-ups and the running totals (today, this month) at the end."""

    def __init__(self, site: str, economics: SiteEconomics, *, live: LiveInputs | None = None,
                 totals_path: Path | None = None, forget_after_s: float | None = DEFAULT_FORGET_AFTER_S,
                 power_correction: Callable[[MinerSample], float | None] | None = None,
                 measured_pue: Callable[[], float | None] | None = None):
        self.site = site
        self._errors = BoundedLog(log, every_s=SAVE_ERRORS_EVERY_S)
        self.economics = economics  # this cycle's: the configured ones, with the measured PUE when there is one
        self.configured = economics
        # From the health stage's power truth (collector/stages/power_truth.py): a learned metered /
        # reported factor for miners no meter reads, and the PUE a facility meter measures.
        self.power_correction = power_correction
        self.measured_pue = measured_pue
        self.live = live or LiveInputs()  # power price and metered watts, as the MQTT ingest last set them
        self.totals_path = totals_path  # where today's and this month's totals survive restarts
        self.forget_after_s = forget_after_s  # miner ids unseen this long leave the running totals
        self._totals: cost.RunningTotals | None = totals_store.load(totals_path) if totals_path else None
        self._failed_miners: set[str] = set()  # logged once each
        self._last_ts: datetime | None = None
        self._last_save: datetime | None = None  # the cycle time of the last save
        self._saved: cost.RunningTotals | None = self._totals  # the totals the file holds
        self._costing: CycleCosting | None = None

    @property
    def totals(self) -> cost.RunningTotals | None:
        return self._totals

    def begin(self, cycle: Cycle) -> None:
        pue = self.measured_pue() if self.measured_pue is not None else None
        self.economics = self.configured if pue is None else self.configured.model_copy(
            update={"pue": pue, "overhead_w": None})
        self._costing = self.costing(cycle)

    def part(self, cycle: Cycle, part: MinersPart) -> None:
        if self._costing is not None:
            part.costs = self._costing.miners(part.samples)
            part.metered_gap_w = self._costing.metered_gap_w

    def finish(self, cycle: Cycle) -> None:
        costing, self._costing = self._costing, None
        if costing is not None:
            cycle.cost = costing.finish(cycle.samples)

    def close(self) -> None:
        """On stop: save the running totals as of the last cycle (between stops, every SAVE_EVERY_S)."""
        self._save()

    def costing(self, cycle: Cycle) -> CycleCosting | None:
        """The cycle's cost work; None when there is no network state to cost against (the network
        source said why). The site's fixed costs (opex, fixed overhead watts) are shared by the miners
        the sources announced as carrying them: polled ones and allow-listed MQTT ones, since anyone
        who can publish can invent MQTT miner ids; by every miner only when none carries them."""
        if cycle.network is None:
            return None
        expected = cycle.expected
        carriers = sum(expected.values())
        if carriers:
            def carries(sample: MinerSample) -> bool:
                return expected.get(sample.miner, sample.source is not SampleSource.MQTT)
        else:
            carries, carriers = None, len(expected)
        return CycleCosting(self, cycle.ts, cycle.network, 1 / carriers if carriers else 1.0, carries)

    def log_miner_failure(self, miner: str, error: Exception) -> None:
        if miner not in self._failed_miners and len(self._failed_miners) < 10_000:
            self._failed_miners.add(miner)
            log.error("%s: cost figures failed (%s); costed as a miner with no reading (logged once)", miner, error)

    def advance(self, samples: Sequence[MinerSample], network: NetworkState, now: datetime,
                carries: Callable[[MinerSample], bool] | None = None) -> None:
        """Integrate the running totals from the previous cycle to `now` over these samples; save them
        when SAVE_EVERY_S has passed since the last save (or the clock went back past it)."""
        if self._totals is not None and now < self._totals.as_of:
            # The wall clock was stepped back (the service logs it): the totals are kept and carry on from now.
            self._totals = cost.carried_back(self._totals, now)
        try:
            advanced = self._advanced(samples, network, now, carries)
        except Exception:  # a bug or an input no check caught: this interval is not counted
            log.exception("running totals not advanced to %s", now.isoformat())
            advanced = None
        if advanced is not None:
            problem = totals_store.check(advanced, thorough=False)
            if problem is None:
                self._totals = advanced
            else:
                log.error("running totals not advanced to %s: %s (an input no check caught); the interval is "
                          "not counted", now.isoformat(), problem)
        self._last_ts = now
        if self._totals is not None and clock.due(
                None if self._last_save is None else (now - self._last_save).total_seconds(), SAVE_EVERY_S):
            self._last_save = now  # the first totals are saved at once: a new file shows
            self._save()

    def _save(self) -> None:
        if self._totals is None or self.totals_path is None or self._totals is self._saved:
            return
        try:  # every totals this stage holds passed `check` (loaded, or just advanced)
            totals_store.save(self.totals_path, self._totals, checked=True)
            self._saved = self._totals
        except (OSError, ValueError) as e:
            self._errors.log(logging.ERROR, "save", "cannot save running totals to %s: %s", self.totals_path, e)

    def _advanced(self, samples: Sequence[MinerSample], network: NetworkState, now: datetime,
                  carries: Callable[[MinerSample], bool] | None) -> cost.RunningTotals | None:
        live_price = self.live.power_price
        gap_s = None if self._last_ts is None else (now - self._last_ts).total_seconds()
        if gap_s is not None and 0 < gap_s <= MAX_INTEGRATION_GAP_S:
            start = self._last_ts
        elif self._totals is not None and now >= self._totals.as_of:
            # After a long gap or a restart (totals loaded from disk): nothing is known about the
            # time in between, so it is not counted; the totals carry on from here.
            if gap_s is not None and gap_s > 0:
                log.warning("%.0f s since the last cycle: that gap is not counted in today's totals", gap_s)
            start = now
        else:
            return None
        return cost.advance(self._totals, samples, self.economics, network, start, now, live_price=live_price,
                            carries=carries, forget_after_s=self.forget_after_s)
