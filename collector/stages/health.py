"""The health stage: every miner's problems, their root causes and their dollars, every cycle.

It runs after the cost stage, so each part's cost figures are there to price with. For each miner:

    checks (health_signals)  ->  seen for long enough (MIN_CYCLES)  ->  cause (root_cause)
        ->  the shortfall shared out and priced (health_dollars)  ->  MinerHealth on the part

and at the cycle's end the site's roll-up (SiteHealth on the cycle: counts and dollars by cause, the
costliest problems in repair order), the peers' typical values for next cycle's outlier checks (one
reading, `hashfleet health`: this cycle's, every miner judged at its end: one_reading), the
learned power corrections (power_truth) and the measured PUE. Per miner the work is O(boards + fans):
what the stage remembers is a few numbers per miner and its daily sums (health_history), saved next to
the spool every SAVE_EVERY_S and when a day ends. With them the address each was last read at: after a
restart the poller knows an address only once it is identified again, and until then one that does not
answer is judged and priced as the unit last read there, unless something has answered there (or that
unit elsewhere) since. A failure with one miner costs that miner's health figures for the cycle (logged
once per miner), never the others' or the service.
"""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from statistics import median

from collector import clock
from collector.cycle import Cycle, MinersPart
from collector.layout import SiteLayout
from collector.sources.live_inputs import LiveInputs
from collector.stages import health_dollars, health_history, health_signals as checks, root_cause
from collector.stages.health_signals import Context, Finding, MinerMemory, PeerStats
from collector.stages.power_truth import PowerTruth
from models import CostSample, MinerSample, MinerState, SiteEconomics
from models.config import Place
from models.hardware import nameplate, thermal_limits, unit_thermal_limits
from models.health import NOWHERE, Cause, MinerHealth, Problem, Severity, Signal, SiteHealth, queue_order
from models.sample import MAX_TEXT_CHARS

log = logging.getLogger(__name__)

MIN_CYCLES = 2  # a problem is raised once seen in this many cycles in a row (one bad reading is not a fault)
_AT_ONCE = frozenset({Signal.READING, Signal.POOL_REJECTS, Signal.REBOOTS, Signal.CHIPS_LOSING,
                      Signal.BOARD_DEGRADING, Signal.EFFICIENCY_DRIFT})  # already judged over time, or a reading
QUEUE_SHOWN = 50  # problems in the site roll-up's repair queue (MQTT, `hashfleet health`)
LEARN_RATE = 0.05  # weight of a healthy cycle in a miner's usual draw and hashrate
FORGET_AFTER_S = 3 * 86_400  # a miner id unseen this long is forgotten (ids churn: a MAC that changes)
CROWDED_FORGET_AFTER_S = 600  # ... this long once more than half of MAX_MINERS ids are held
MAX_MINERS = 100_000  # ids remembered; past it a miner is judged afresh each cycle (nothing kept)
MAX_MODELS = 1024
# A miner with no problem has its `health` point written every this many cycles, and at least once
# every HEALTHY_POINT_S (the Maintenance dashboard reads the last 5 minutes), spread over the cycles by
# its id; one with a problem, every cycle. Its daily sums (the trends) and usual rates take the same
# cycles: a day still has over a thousand samples at 10 s.
HEALTHY_POINT_EVERY = 6
HEALTHY_POINT_S = 60.0
# States whose live hashrate measures the shortfall: mining, and in fault (error), where 0 TH/s is a unit
# that stopped. An idle unit's loss is its `idle` finding's; one asleep on purpose loses nothing.
_READ_LIVE = (MinerState.MINING, MinerState.ERROR)
# Stopped without being asked: in fault, or idle (Braiins OS+ past its dangerous temperature reads idle).
_STOPS = (MinerState.ERROR, MinerState.IDLE)


class HealthStage:
    """Hardware health for every cycle (collector.stages.Stage)."""

    def __init__(self, site: str, *, economics: SiteEconomics | None = None, layout: SiteLayout | None = None,
                 live: LiveInputs | None = None, truth: PowerTruth | None = None, state_path: Path | None = None,
                 save: bool = True) -> None:
        self.site = site
        self.economics = economics
        self.layout = layout or SiteLayout({})
        self.live = live or LiveInputs()
        self.truth = truth or PowerTruth()
        self.state_path = state_path
        self.save_state = save and state_path is not None
        self.min_cycles = MIN_CYCLES  # one_reading() sets 1
        self._held: list[MinersPart] | None = None  # one_reading(): the cycle's parts, judged at its end
        # (a command reads the collector's file and leaves it as it is, even unusable: it never writes it)
        kept = health_history.load(state_path, set_aside=self.save_state) if state_path is not None else {}
        self._memory: dict[str, MinerMemory] = {
            miner: MinerMemory(kept=h, slot=zlib.crc32(miner.encode("utf-8", "replace"))) for miner, h in kept.items()}
        self._last_at = _last_read_at(kept)  # address -> the id last read there, as saved: until one answers there
        self._peers: dict[tuple[str | None, str | None], PeerStats] = {}
        self._places: dict[str, Place] = {}
        self._models: dict[str | None, tuple] = {}  # model -> (nameplate, thermal limits)
        self._cycles = 0
        self._every = HEALTHY_POINT_EVERY
        self._last_ts_s: float | None = None
        self._failed: set[str] = set()
        self._last_save_s: float | None = None
        self._day: int | None = None
        self._last_cycle: datetime | None = None  # the last cycle's time: what close() saves as of
        self._cycle: _CycleWork | None = None

    def answered_at(self, since_s: float) -> dict[str, tuple[str, str | None]]:
        """Address -> (id, model) of the unit the saved history last read there, for those that answered there
        since `since_s` (epoch seconds): where the collector expects a miner after a restart."""
        out = {}
        for address, miner in self._last_at.items():
            memory = self._memory.get(miner)
            if memory is not None and (answered := memory.kept.answered_s) is not None and answered >= since_s:
                out[address] = (miner, memory.kept.model)
        return out

    def history_days(self) -> int:
        """The UTC days the kept history spans (taken up at the start, then added to)."""
        days = {day.day for memory in self._memory.values() for day in memory.kept.days}
        return max(days) - min(days) + 1 if days else 0

    def one_reading(self) -> None:
        """`hashfleet health` without --since: one cycle, nothing before it. Problems are raised at once,
        and peers are judged by this cycle's values, not the previous cycle's (there is none): each part
        is held, its peers' values noted, and every miner judged when the cycle ends. The parts' health
        is then set only at `finish` (the sinks' `write_miners` see none)."""
        self.min_cycles = 1
        self._held = []

    # -- the Stage seam ------------------------------------------------------------------------

    def begin(self, cycle: Cycle) -> None:
        self._cycles += 1
        now_s = cycle.ts.timestamp()
        if self._last_ts_s is not None and now_s > self._last_ts_s:  # cycles a healthy miner's point may skip
            self._every = max(1, min(HEALTHY_POINT_EVERY, int(HEALTHY_POINT_S // (now_s - self._last_ts_s))))
        self._last_ts_s = now_s
        self._cycle = _CycleWork(cycle.ts, self.truth.measured_pue(), self._cycles)

    def part(self, cycle: Cycle, part: MinersPart) -> None:
        work = self._cycle
        if work is None:  # begin failed
            return
        if self._held is not None:
            self._held.append(part)
            for sample in part.samples:
                self._note_peer(sample, work)
                if self._last_at and sample.state is not MinerState.OFFLINE:  # before any miner is judged
                    self._answered(sample, _address(sample))
            return
        self._judge(part, work)

    def _judge(self, part: MinersPart, work: _CycleWork) -> None:
        costs = part.costs
        out: list[MinerHealth] = []
        for i, sample in enumerate(part.samples):
            cost = costs[i] if costs is not None and i < len(costs) else None
            try:
                health = self._miner(sample, cost, work)
            except Exception:  # a bug or an input no check caught: this miner's figures, never the others'
                self._log_failure(sample.miner)
                health = MinerHealth(sample.miner, sample.model, NOWHERE, address=_address(sample))
            out.append(health)
            work.miners += 1
            if health.problems:
                work.add(health)
            work.unprofitable += health.unprofitable
            work.chips_dead += health.chips_dead or 0
        part.health = out

    def finish(self, cycle: Cycle) -> None:
        work, self._cycle = self._cycle, None
        if work is None:
            return
        self._peers = work.peer_stats()
        if self._held:  # one reading: judged now, by the peers just noted
            held, self._held = self._held, []
            for part in held:
                self._judge(part, work)
        self.truth.finish()
        pue = self.truth.observe_facility(self.live.facility_power(cycle.ts), _miners_w(cycle))
        cycle.health = work.rollup(self.site, pue, self.truth)
        self._keep(cycle.ts)

    # -- one miner -----------------------------------------------------------------------------

    def _miner(self, sample: MinerSample, cost: CostSample | None, work: _CycleWork) -> MinerHealth:
        miner, state = sample.miner, sample.state
        address = _address(sample)
        last_here = self._last_here(sample, address) if self._last_at else None
        # An address not identified since a restart is the unit last read there (what it made, its meter)
        memory = self._memory[last_here] if last_here else self._memory.get(miner) or self._remember(miner)
        kept = memory.kept
        model = sample.model or kept.model
        place = self._places.get(miner) or self._place(sample)
        plate, limits = self._models.get(model) or self._model(model)
        if sample.chip_hot_limit_c is not None:  # its firmware's own figures (Braiins OS+) before its model's
            limits = unit_thermal_limits(limits, sample.chip_hot_limit_c, sample.chip_stop_limit_c)
        rated = sample.expected_hashrate_ths or _expected(plate, kept)  # the firmware's figure, else the nameplate's
        expected = _usual(kept.healthy_ths, rated)  # what it makes when well: the loss is measured from there
        metered = self.live.metered_power(last_here or miner, work.now) if self.live.metered_w else None
        peers = self._peers_of(model, place.container)
        factor = self.truth.factor(model)
        ctx = Context(work.now_s, expected, plate, limits, peers, memory, metered, factor)

        doubtful, bad_boards, found = checks.doubtful_fields(sample)
        mining = state is MinerState.MINING
        if not mining:
            found += checks.not_mining(sample, ctx)
            if last_here:
                _name_last_unit(found, last_here, kept.model)
        asleep = state is MinerState.SOFT_OFF
        silent = bool(found) and any(f.signal is Signal.OFFLINE for f in found)
        if not asleep and not silent and sample.pool is not None:
            found += checks.pool(sample, ctx)
        if not asleep and not silent and not (found and any(f.signal is Signal.IDLE for f in found)):
            if sample.boards:
                found += checks.boards(sample, ctx, bad_boards)
            hw = sample.hw_error_pct
            if hw is not None and hw > checks.HW_ERROR_FLOOR_PCT and "hw_error_pct" not in doubtful:
                found += checks.hardware_errors(sample, ctx)
            if sample.fans_rpm and "fans_rpm" not in doubtful:
                found += checks.fans(sample, ctx)
            if mining:
                found += checks.temperatures(sample, ctx, doubtful)
            found += checks.power(sample, ctx, doubtful)
            if sample.fault_codes or sample.errors:
                found += checks.fault_codes(sample, ctx)
        if "uptime_s" not in doubtful:
            found += checks.reboots(sample, ctx)
        chips_now, chips_dead = _chips(sample, bad_boards)
        due = (memory.slot + work.number) % self._every == 0
        found += self._trends(sample, kept, chips_now, work.day, trusted=due and not doubtful and not bad_boards)

        hashrate = sample.hashrate_ths if "hashrate_ths" not in doubtful else None
        chip = sample.temp_chip_max_c if "temp_chip_max_c" not in doubtful else None
        if asleep:
            shortfall = 0.0
        elif found and any(f.signal in (Signal.OFFLINE, Signal.IDLE) for f in found):
            shortfall = expected or 0.0
        elif expected is not None and hashrate is not None and state in _READ_LIVE:
            # In fault at 0 TH/s (an overheat shutdown, every board lost) it lacks its whole usual rate.
            shortfall = max(0.0, expected - hashrate)
        else:
            shortfall = 0.0
        if state in _STOPS and hashrate == 0.0:
            if chip is not None and (memory.stopped_chip_c is None or chip > memory.stopped_chip_c):
                memory.stopped_chip_c = chip
        elif hashrate and memory.stopped_chip_c is not None:
            memory.stopped_chip_c = None  # hashing again: that stop is over
        settled = sample.uptime_s is None or sample.uptime_s >= checks.RAMP_S
        power_now = _draw_now(sample, cost, metered, doubtful)
        if found or (expected and shortfall >= health_dollars.UNEXPLAINED_SHARE * expected):
            problems = self._problems(sample, ctx, memory, found, shortfall, expected, settled, power_now, cost,
                                      plate, work)
        else:  # the common case: nothing seen, nothing short
            if memory.streaks:
                memory.streaks = {}
            problems = ()

        if due or kept.baseline_w is None or sample.model != kept.model:  # one cycle in a few is plenty
            self._learn(sample, kept, rated, hashrate, power_now, problems, found, settled, work)
        # Learned from settled readings only: while a start ramps, the meter's reading (up to
        # meter_max_age_s old) is of a lower draw than the miner's own (health_signals.power).
        if metered is not None and sample.power_w and state is MinerState.MINING and settled and not (
                found and any(f.signal is Signal.POWER_MISMATCH for f in found)):
            self.truth.observe(miner, model, sample.power_w, metered)
        if state is MinerState.MINING and chip is not None and self._held is None:  # held: noted as it came in
            work.peer(model, place.container, chip, sample.hw_error_pct if "hw_error_pct" not in doubtful else None)

        usd = None
        if problems:
            priced = [p.usd_lost_day for p in problems if p.usd_lost_day is not None]
            usd = sum(priced) if priced else None  # none priced: unknown, not $0
            lost = sum(p.lost_ths for p in problems)
        else:
            usd, lost = (0.0 if cost is not None else None), 0.0
        unprofitable = _unprofitable(cost, sample)
        return MinerHealth(miner, model, place, problems, expected, lost, usd,
                           cost.profit_usd_day if cost is not None else None, unprofitable,
                           chips_dead, kept.chips_lost_week(chips_now, work.day) if kept.trends.first_day else None,
                           chip, factor, report=due or unprofitable or bool(problems), address=address)

    def _problems(self, sample: MinerSample, ctx: Context, memory: MinerMemory, found: list[Finding],
                  shortfall: float, expected: float | None, settled: bool, power_now: float | None,
                  cost: CostSample | None, plate, work: _CycleWork) -> tuple[Problem, ...]:
        """What was seen, once seen long enough, classified, its shortfall shared out and priced."""
        streaks = memory.streaks
        memory.streaks = seen = {}
        for f in found:
            key = _key(f)
            seen[key] = streaks.get(key, 0) + 1
        found = [f for f in found if f.signal in _AT_ONCE or seen[_key(f)] >= self.min_cycles]
        items = root_cause.classify(found, sample, ctx)
        ramping = sample.uptime_s is not None and sample.uptime_s < checks.BOOT_SETTLE_S
        extra = health_dollars.share_shortfall(items, shortfall, expected, settled, ramping,
                                               root_cause.cooling_may_throttle(sample, ctx))
        if extra is not None:
            key = extra.signal.value
            seen[key] = streaks.get(key, 0) + 1
            if seen[key] >= self.min_cycles:
                items += root_cause.classify([extra, *(f for f, _, _ in items)], sample, ctx)[:1]
        if not items:
            return ()
        prices = work.prices(cost, self.economics)
        estimated_from = None
        if power_now is None and sample.state is not MinerState.OFFLINE:
            # Its draw is not read (stock Antminers put none on the wire): the same fault is priced as on a
            # unit that reads one, from its model's watts per TH/s. Not offline: a unit cut off from the
            # network may well still draw its power.
            saved_w, estimated_from = _estimated_saved_w(memory.kept.baseline_w, plate, expected,
                                                         [f for f, _, _ in items])
        else:
            saved_w = _saved_w(memory.kept.baseline_w, power_now, plate, expected)
            if not saved_w and memory.kept.baseline_w is None and not _plate_w(plate, expected) and power_now:
                saved_w = _saved_from_draw_now(power_now, expected, [f for f, _, _ in items])
                estimated_from = "its draw now" if saved_w else None
            if ramping and shortfall > 0 and any(f.signal is Signal.REBOOTS for f, _, _ in items):
                # The ramp's lower draw goes with the ramp's shortfall, which the loop's figure holds (priced
                # with no energy saved): the other problems are credited only their share of the watts.
                named = sum(f.lost_ths for f, _, _ in items if not f.extra_loss)
                saved_w *= min(1.0, named / shortfall)
        dollars = health_dollars.price([f for f, _, _ in items], prices, saved_w, expected)
        if estimated_from is not None:
            unknown = "no usual draw known yet" if power_now is not None else "no power reading"
            items = [(f, cause, f"{evidence}; energy saved estimated from {estimated_from}: {unknown}"
                      if f.lost_ths > 0 and not f.extra_loss else evidence) for f, cause, evidence in items]
        return tuple(Problem(sample.miner, f.signal, cause, f.severity, evidence, f.value, f.limit, f.part,
                             f.lost_ths, usd) for (f, cause, evidence), usd in zip(items, dollars))

    def _peers_of(self, model: str | None, container: str | None) -> PeerStats | None:
        """Its model's peers in its container; the whole site's when it has no container or too few there."""
        if container is not None:
            here = self._peers.get((model, container))
            if here is not None and here.count >= checks.MIN_PEERS:
                return here
        return self._peers.get((model, None))

    def _note_peer(self, sample: MinerSample, work: _CycleWork) -> None:
        """One reading (one_reading): the values its peers are judged by, as `_miner` notes them."""
        if sample.state is not MinerState.MINING:
            return
        doubtful = checks.doubtful_fields(sample)[0]
        chip = sample.temp_chip_max_c if "temp_chip_max_c" not in doubtful else None
        if chip is None:
            return
        memory = self._memory.get(sample.miner)
        model = sample.model or (memory.kept.model if memory is not None else None)
        place = self._places.get(sample.miner) or self._place(sample)
        work.peer(model, place.container, chip, sample.hw_error_pct if "hw_error_pct" not in doubtful else None)

    def _model(self, model: str | None) -> tuple:
        found = (nameplate(model), thermal_limits(model))
        if len(self._models) >= MAX_MODELS:  # model strings come from miners: bounded
            self._models.clear()
        self._models[model] = found
        return found

    def _trends(self, sample: MinerSample, kept: health_history.MinerHistory, chips_now: int | None,
                day: int, *, trusted: bool) -> list[Finding]:
        if trusted:  # one cycle in a few (HEALTHY_POINT_EVERY), never a doubtful reading
            kept.add(sample, day)
        t = kept.trends
        if t.first_day is None and not t.weak_boards and t.efficiency_rise is None:
            return []  # no closed day yet, or nothing drifting
        out = []
        rate = kept.chips_lost_week(chips_now, day)
        if rate is not None and rate >= health_history.CHIPS_LOST_WEEK and t.first_chips is not None:
            lost = t.first_chips - (chips_now or 0)
            out.append(Finding(Signal.CHIPS_LOSING, Severity.WARNING,
                               f"{lost:.0f} chips lost in {day - (t.first_day or day)} days ({rate:.1f} a week)",
                               value=rate, limit=health_history.CHIPS_LOST_WEEK))
        for board, ratio in t.weak_boards:
            out.append(Finding(Signal.BOARD_DEGRADING, Severity.INFO,
                               f"board {board} hashes {ratio:.0%} of what it did {t.days} days ago while the unit "
                               "holds steady", value=ratio, limit=1 - health_history.BOARD_DROP, part=board))
        if t.efficiency_rise is not None:
            hotter = t.temp_rise_c is not None and t.temp_rise_c >= health_history.TEMP_ROSE_C
            out.append(Finding(Signal.EFFICIENCY_DRIFT, Severity.INFO,
                               f"J/TH {t.efficiency_rise:+.0%} over {t.days} days"
                               + (f", chips {t.temp_rise_c:+.1f} C hotter: cooling (dust, paste)" if hotter else ""),
                               value=t.efficiency_rise, limit=health_history.EFFICIENCY_DRIFT,
                               cause=Cause.THERMAL if hotter else Cause.POWER))
        return out

    def _learn(self, sample: MinerSample, kept: health_history.MinerHistory, expected: float | None,
               hashrate: float | None, power_now: float | None, problems: Sequence[Problem], found: Sequence[Finding],
               settled: bool, work: _CycleWork) -> None:
        kept.seen_s = work.now_s
        if sample.model:
            kept.model = sample.model
        if sample.expected_hashrate_ths:
            kept.expected_ths = sample.expected_hashrate_ths
        # Under the MAC it showed: not a rival of a duplicate id nor a MAC that flaps (both under the address)
        if sample.mac is not None and sample.miner != (address := _address(sample)):
            kept.address, kept.answered_s = address, work.now_s
        healthy = (not problems and not found and sample.state is MinerState.MINING and settled and hashrate
                   and power_now is not None and power_now > 0
                   and (expected is None or hashrate >= (1 - checks.SHORTFALL_SHARE / 2) * expected))
        if healthy:
            kept.baseline_w = _ewma(kept.baseline_w, power_now)
            kept.healthy_ths = _ewma(kept.healthy_ths, hashrate)

    # -- memory, places, saving --------------------------------------------------------------------

    def _last_here(self, sample: MinerSample, address: str) -> str | None:
        """For a sample under its address that reads nothing (not identified since the restart): the id last
        read at that address, from the saved history. Any other sample answered: `_answered`."""
        if sample.state is not MinerState.OFFLINE:
            self._answered(sample, address)
            return None
        if sample.miner != address:  # it has an id of its own
            return None
        last = self._last_at.get(address)
        return last if last in self._memory else None

    def _answered(self, sample: MinerSample, address: str) -> None:
        """A unit answers at `address`: whoever was read there before the restart no longer stands for
        it (a unit swapped in), nor for the address this unit was read at then (it moved)."""
        self._last_at.pop(address, None)
        memory = self._memory.get(sample.miner)
        before = memory.kept.address if memory is not None else None
        if before is not None and self._last_at.get(before) == sample.miner:
            del self._last_at[before]

    def _remember(self, miner: str) -> MinerMemory:
        memory = self._memory.get(miner)
        if memory is None:
            memory = MinerMemory(slot=zlib.crc32(miner.encode("utf-8", "replace")))
            if len(self._memory) < MAX_MINERS:  # past it (ids churning wildly) a miner is judged afresh each cycle
                self._memory[miner] = memory
        return memory

    def _place(self, sample: MinerSample) -> Place:
        place = (self.layout.place(sample) or NOWHERE) if len(self.layout) else NOWHERE
        if len(self._places) >= MAX_MINERS:
            self._places.clear()
        self._places[sample.miner] = place
        return place

    def _keep(self, now: datetime) -> None:
        day = health_history.utc_day(now)
        now_s = now.timestamp()
        new_day = self._day is not None and day != self._day
        self._day = day
        self._last_cycle = now
        crowded = len(self._memory) > MAX_MINERS // 2  # ids churning (a MAC that changes every cycle)
        if new_day or crowded:
            after = CROWDED_FORGET_AFTER_S if crowded else FORGET_AFTER_S
            gone = [m for m, mem in self._memory.items() if now_s - mem.kept.seen_s > after]
            for miner in gone:
                memory = self._memory.pop(miner)
                self._places.pop(miner, None)
                if self._last_at.get(memory.kept.address) == miner:  # (None: not in it)
                    del self._last_at[memory.kept.address]
        if not self.save_state or self.state_path is None:
            return
        if self._last_save_s is None:
            self._last_save_s = now_s  # the first save one interval after start, not at once
        if not new_day and not clock.due(now_s - self._last_save_s, health_history.SAVE_EVERY_S):
            return
        self._last_save_s = now_s
        try:
            health_history.save(self.state_path, {m: mem.kept for m, mem in self._memory.items()}, now)
        except (OSError, ValueError) as e:
            log.error("cannot save the health history to %s: %s", self.state_path, e)

    def close(self) -> None:
        """On stop (service mode only: a command never writes the history): save what it knows."""
        if not self.save_state or self._last_cycle is None:
            return
        try:
            self.save_now(self._last_cycle)
        except (OSError, ValueError) as e:
            log.error("cannot save the health history to %s: %s", self.state_path, e)

    def save_now(self, now: datetime) -> None:
        """Write the history file now (tests, and a service stopping)."""
        if self.state_path is not None:
            health_history.save(self.state_path, {m: mem.kept for m, mem in self._memory.items()}, now)

    def _log_failure(self, miner: str) -> None:
        if miner not in self._failed and len(self._failed) < 10_000:
            self._failed.add(miner)
            log.exception("%s: health figures failed; this miner has none this cycle (logged once)", miner)


class _CycleWork:
    """One cycle's running roll-up and the values its peers will be judged by next cycle."""

    def __init__(self, now: datetime, pue: float | None, number: int = 0) -> None:
        self.now = now
        self.now_s = now.timestamp()
        self.day = health_history.utc_day(now)
        self.pue = pue
        self.number = number
        self._prices: tuple[tuple[float, float | None], health_dollars.Prices | None] | None = None
        self.miners = 0
        self.with_problems = 0
        self.problems: list[Problem] = []
        self.where: dict[str, tuple[str | None, Place]] = {}  # miner with problems -> its address and place
        self.unprofitable = 0
        self.chips_dead = 0
        self._temps: dict[tuple[str | None, str | None], list[float]] = defaultdict(list)
        self._hw: dict[tuple[str | None, str | None], list[float]] = defaultdict(list)

    def prices(self, cost: CostSample | None, economics: SiteEconomics | None) -> health_dollars.Prices | None:
        """The cycle's prices (one network state, one tariff: the same for every miner but a time-of-use
        boundary crossed mid-cycle)."""
        if cost is None:
            return None
        key = (cost.hashprice_usd_ph_day, cost.power_price_usd_kwh)
        if self._prices is None or self._prices[0] != key:
            self._prices = (key, health_dollars.prices(cost, economics, self.pue))
        return self._prices[1]

    def add(self, health: MinerHealth) -> None:
        """A miner with problems (HealthStage.part counts every miner)."""
        self.with_problems += 1
        self.problems += health.problems
        self.where[health.miner] = (health.address, health.place)

    def peer(self, model: str | None, container: str | None, temp: float, hw: float | None) -> None:
        for key in ((model, container), (model, None)) if container is not None else ((model, None),):
            self._temps[key].append(temp)
            if hw is not None:
                self._hw[key].append(hw)

    def peer_stats(self) -> dict[tuple[str | None, str | None], PeerStats]:
        out = {}
        for key, temps in self._temps.items():
            middle = median(temps)
            spread = median(abs(t - middle) for t in temps) * checks.MAD_TO_SIGMA
            hw = self._hw.get(key)
            out[key] = PeerStats(len(temps), middle, spread, median(hw) if hw else None)
        return out

    def rollup(self, site: str, pue: float | None, truth: PowerTruth) -> SiteHealth:
        queue = tuple(sorted(self.problems, key=queue_order)[:QUEUE_SHOWN])
        by_cause: dict[Cause, int] = {}
        usd_by_cause: dict[Cause, float] = {}
        for p in self.problems:
            by_cause[p.cause] = by_cause.get(p.cause, 0) + 1
            if p.usd_lost_day is not None:
                usd_by_cause[p.cause] = usd_by_cause.get(p.cause, 0.0) + p.usd_lost_day
        corrections = {model: (c.factor, c.samples, truth.factor(model) is not None)
                       for model, c in truth.corrections().items()}
        return SiteHealth(
            site=site, miners=self.miners, miners_with_problems=self.with_problems, problems=len(self.problems),
            critical=sum(1 for p in self.problems if p.severity is Severity.CRITICAL),
            # problems with no price (no economics) lose an unknown amount, not $0
            usd_lost_day=sum(usd_by_cause.values()) if usd_by_cause or not self.problems else None,
            lost_ths=sum(p.lost_ths for p in self.problems),
            unprofitable=self.unprofitable, chips_dead=self.chips_dead, by_cause=by_cause,
            usd_by_cause=usd_by_cause, measured_pue=pue, power_corrections=corrections,
            queue=queue, where={p.miner: self.where[p.miner] for p in queue if p.miner in self.where},
        )


def _address(sample: MinerSample) -> str:
    return f"{sample.host}:{sample.port}"


def _last_read_at(kept: dict[str, health_history.MinerHistory]) -> dict[str, str]:
    """Address -> the id last read there showing its MAC, from the saved history: the latest seen where two
    were read at one address (a unit swapped in). Ids longer than a sample's are no sample's: left out."""
    out: dict[str, str] = {}
    for miner, history in kept.items():
        address = history.address
        if address is None or len(miner) > MAX_TEXT_CHARS:
            continue
        other = out.get(address)
        if other is None or kept[other].seen_s < history.seen_s:
            out[address] = miner
    return out


def _name_last_unit(found: list[Finding], miner: str, model: str | None) -> None:
    """An offline finding of an address not identified since a restart says first which unit it stands for."""
    for f in found:
        if f.signal is Signal.OFFLINE:
            f.evidence = f"last read here as {miner}" + (f" ({model})" if model else "") + f"; {f.evidence}"


def _key(finding: Finding) -> str:
    return finding.signal.value if finding.part is None else f"{finding.signal.value}:{finding.part}"


def _expected(plate, kept: health_history.MinerHistory) -> float | None:
    """Without the miner's own figure: its model's nameplate, the last it said, what it made healthy."""
    if plate is not None and getattr(plate, "hashrate_ths", None) and not getattr(plate, "modes", ()):
        return plate.hashrate_ths
    return kept.expected_ths or kept.healthy_ths


USUAL_WITHIN = 0.15  # a learned hashrate this far from the rated one is stale (a new work mode): not used


def _usual(healthy_ths: float | None, rated: float | None) -> float | None:
    """The miner's own healthy hashrate when it has one that fits its rated figure, else the rated one."""
    if healthy_ths and (rated is None or abs(healthy_ths / rated - 1) <= USUAL_WITHIN):
        return healthy_ths
    return rated


def _draw_now(sample: MinerSample, cost: CostSample | None, metered: float | None,
              doubtful: set[str] | frozenset) -> float | None:
    """What the miner draws now: its meter's reading, else its own as costed (the model's learned
    correction applied); None when nothing reads it (no power on the wire, as stock Antminers; a
    refused reading; a miner that does not answer)."""
    if metered is not None:
        return metered
    if sample.power_w is None or "power_w" in doubtful:
        return None
    return cost.power_w if cost is not None and cost.power_w else sample.power_w  # 0: the cost stage refused it


def _miners_w(cycle: Cycle) -> float | None:
    """The miners' draw as costed, the facility meter's PUE is measured against; None when a miner that
    answers has no reading of it (counted as 0 W it would overstate the PUE)."""
    if cycle.cost is not None:
        site = cycle.cost.site
        return None if "power_w" in site.missing_inputs else site.power_w
    if any(s.power_w is None and s.state is not MinerState.OFFLINE for s in cycle.samples):
        return None
    return sum(s.power_w or 0.0 for s in cycle.samples)


def _saved_w(baseline_w: float | None, power_now: float | None, plate, expected: float | None) -> float:
    """Watts the miner no longer draws: its usual healthy draw, else its nameplate's at its expected
    hashrate, less its draw now. Nothing when either is unknown (with no reading of its draw now:
    _estimated_saved_w)."""
    if power_now is None:
        return 0.0
    if baseline_w is None:
        baseline_w = _plate_w(plate, expected)
    if baseline_w is None:
        return 0.0
    return max(0.0, baseline_w - power_now)


def _plate_w(plate, expected: float | None) -> float | None:
    """Its nameplate's draw at its expected hashrate (None: no nameplate with both figures)."""
    power_w, ths = getattr(plate, "power_w", None), getattr(plate, "hashrate_ths", None)
    return power_w * expected / ths if power_w and ths and expected else None


MIN_HASHING_SHARE = 0.25  # of its expected hashrate, what must still hash to take its usual draw from its draw now


def _saved_from_draw_now(power_now: float, expected: float | None, findings: Sequence[Finding]) -> float:
    """Watts its problems saved when neither a learned usual draw nor a nameplate says what it draws healthy
    (a model catalogued without figures, before its draw is learned): its draw follows its hashrate as in
    `_estimated_saved_w`, so what still hashes drew `power_now` for the share it kept. Nothing when less than
    MIN_HASHING_SHARE still hashes (the fans and controller are then too much of the draw to scale it).
    Counting nothing saved made a dead board on a unit that runs at a loss read as a loss to fix (trial ZC M1:
    +$0.67 a day on an A1066 until its draw was learned, -$0.73 after)."""
    lost = sum(f.lost_ths for f in findings if not f.extra_loss and f.signal is not Signal.BOARD_WEAK)
    if not expected or lost <= 0 or lost > expected * (1.0 - MIN_HASHING_SHARE):
        return 0.0
    return power_now * lost / (expected - lost)


STOPPED_DRAW_SHARE = 0.03  # of its usual draw, what a unit hashing nothing still draws: fans, controller


def _estimated_saved_w(baseline_w: float | None, plate, expected: float | None,
                       findings: Sequence[Finding]) -> tuple[float, str | None]:
    """Watts the miner no longer draws when its draw now is not read: its usual draw (learned, else its
    nameplate's at its expected hashrate) times the share of that hashrate its problems lost, as a
    unit's draw follows its hashrate (dead boards and chips draw nothing, a throttled unit clocks down).
    A weak board draws its full power; a unit that hashes nothing still runs its fans and controller
    (STOPPED_DRAW_SHARE). With the source of the usual draw; (0, None) when its model has no nameplate
    with both figures, or nothing is lost: no energy saving is assumed then."""
    plate_w = _plate_w(plate, expected)
    if not plate_w or not expected:
        return 0.0, None
    lost = sum(f.lost_ths for f in findings if not f.extra_loss and f.signal is not Signal.BOARD_WEAK)
    if lost <= 0:
        return 0.0, None
    usual_w, source = (baseline_w, "its usual draw") if baseline_w else (plate_w, "the nameplate")
    return usual_w * min(lost / expected, 1.0 - STOPPED_DRAW_SHARE), source


def _chips(sample: MinerSample, bad_boards: set[int]) -> tuple[int | None, int | None]:
    """Chips answering over every board (None unless every board counts them, while mining), and chips
    expected but silent over the boards that say both."""
    answering: int | None = 0
    dead: int | None = None
    for b in sample.boards:
        if b.index in bad_boards:
            continue
        ok, expected = b.chips_ok, b.chips_expected
        if ok is None:
            answering = None
        elif answering is not None:
            answering += ok
        if ok is not None and expected is not None:
            dead = (dead or 0) + expected - ok
    if not sample.boards or sample.state is not MinerState.MINING:
        answering = None
    return answering, dead


def _unprofitable(cost: CostSample | None, sample: MinerSample) -> bool:
    """Mining, and its power costs more than its BTC brings in (cash-negative at the margin)."""
    if cost is None or sample.state is not MinerState.MINING:
        return False
    return cost.revenue_usd_day < cost.energy_usd_day + cost.demand_usd_day - cost.curtailment_credit_usd_day


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + LEARN_RATE * (new - old)
