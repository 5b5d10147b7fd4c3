"""The collect loop: one path from sources through stages to sinks, every interval.

    for each cycle (one timestamp, whole seconds: collector/clock.py):
        sources announce what they will bring     (miners expected, network state)
        stages begin
        sources collect: each sample joins the cycle and, PART_MINERS at a time, goes to the
            stages (per-miner figures) and then the sinks, while the rest is still being read
        stages finish (roll-ups), sinks write the cycle's end

Cycles start on a fixed grid (start + k * interval); a cycle that overruns skips the ticks it missed
rather than bunching up. A cycle's polling ends by its deadline (the polled source's), whatever the
miners do. Stopping (SIGTERM, Ctrl-C) lets the running cycle finish and be written before the loop
returns. A stage or sink that fails costs its own work for that cycle, logged, never the others'.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from collector.clock import CycleClock, utc_now
from collector.cycle import PART_MINERS, Cycle, MinersPart
from collector.identity import DuplicateIds
from models import MinerSample

if TYPE_CHECKING:
    from collector.sinks import Sink
    from collector.sources import Source
    from collector.stages import Stage

log = logging.getLogger(__name__)

T = TypeVar("T")

# Garbage collection between cycles (docs/benchmarks.md, "Garbage collection between cycles"). A cycle's
# samples live until it ends and are then freed by reference counting; a collection during the cycle
# scans them (and every miner's kept state, when it reaches the older generations) for nothing. So the
# automatic threshold is set above what a cycle keeps alive (a safety net, not the rule), and the service
# collects once a cycle is over: the youngest generation each time, the middle one every
# GC_MIDDLE_EVERY cycles, everything every GC_FULL_EVERY (reference cycles are freed no later).
GC_GEN0_THRESHOLD = 500_000
GC_MIDDLE_EVERY = 10
GC_FULL_EVERY = 360


def collect_garbage(cycles_done: int) -> None:
    """The collection due after `cycles_done` cycles (between cycles: nothing of the last one is live)."""
    gc.collect(2 if cycles_done % GC_FULL_EVERY == 0 else 1 if cycles_done % GC_MIDDLE_EVERY == 0 else 0)


def run_event_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run the collector's event loop as the service does: uvloop where installed (less CPU per miner,
    docs/benchmarks.md) and the garbage-collection threshold above."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cycle_timestamp() -> datetime:
    """A one-off cycle's timestamp (`poll`, `pools`): the wall clock in whole seconds, as `run` stamps cycles."""
    return CycleClock().next()


async def run(sources: Sequence[Source], stages: Sequence[Stage], sinks: Sequence[Sink], *, site: str,
              interval_s: float, shard: str | None = None, cycles: int | None = None,
              stop: asyncio.Event | None = None, after: datetime | None = None,
              on_cycle_start: Callable[[Cycle], None] | None = None, now: Callable[[], datetime] = utc_now) -> int:
    """Run until `cycles` are done or `stop` is set; return the number of cycles run. Cycle timestamps
    are strictly increasing and later than `after` unless the wall clock `now` is stepped back
    (collector/clock.py). `on_cycle_start` (benchmarks) sees each cycle before its sources do."""
    stop = stop or asyncio.Event()
    ids = DuplicateIds()
    start = time.monotonic()
    done = 0
    clock = CycleClock(after, now)
    while not stop.is_set() and (cycles is None or done < cycles):
        cycle = Cycle(site, clock.next(), shard)
        if on_cycle_start is not None:
            on_cycle_start(cycle)
        await run_cycle(cycle, sources, stages, sinks, ids)
        done += 1
        log.info("cycle %d: %d miners, %d failed, %.2f s", done, len(cycle.samples), cycle.failed,
                 cycle.timings.collect_s)
        if cycles is not None and done >= cycles:
            break
        elapsed = time.monotonic() - start
        next_tick = start + (int(elapsed // interval_s) + 1) * interval_s
        if cycle.timings.collect_s > interval_s:
            log.warning("cycle took %.1f s, longer than the %.1f s interval; skipping missed ticks",
                        cycle.timings.collect_s, interval_s)
        del cycle  # at 10,000 miners a cycle's samples are tens of MB: never hold two cycles at once
        collect_garbage(done)
        try:
            async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                await stop.wait()
        except TimeoutError:
            pass
    return done


async def run_cycle(cycle: Cycle, sources: Sequence[Source], stages: Sequence[Stage], sinks: Sequence[Sink],
                    ids: DuplicateIds | None = None) -> None:
    """One cycle through the pipeline (`run` calls it every interval with one DuplicateIds for the run)."""
    ids = ids or DuplicateIds()
    timings = cycle.timings
    wall, cpu = time.perf_counter(), time.process_time()
    for source in sources:
        await source.announce(cycle)
    for stage in stages:
        _guarded(stage, "begin", stage.begin, cycle)
    parts = _Parts(cycle, stages, sinks, ids)
    try:
        for source in sources:
            await source.collect(cycle)
    finally:
        timings.collect_s, timings.collect_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        await parts.close()
        timings.drain_s, timings.drain_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.thread_time()
    for stage in stages:
        _guarded(stage, "finish", stage.finish, cycle)
    timings.finish_s, timings.finish_cpu_s = time.perf_counter() - wall, time.thread_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    for sink in sinks:
        await _guarded_write(sink, sink.write(cycle))
    timings.write_s, timings.write_cpu_s = time.perf_counter() - wall, time.process_time() - cpu


class _Parts:
    """Takes each sample the sources add to the cycle (one id per miner: DuplicateIds) and hands them on
    PART_MINERS at a time, in order, to the stages and then the sinks, while the sources are still at
    work: lines are encoded, spooled and delivered in the poll's idle time (it mostly waits on miners)."""

    def __init__(self, cycle: Cycle, stages: Sequence[Stage], sinks: Sequence[Sink], ids: DuplicateIds):
        self.cycle, self.stages, self.sinks, self.ids = cycle, stages, sinks, ids
        self._buffer: list[MinerSample] = []
        self._queue: asyncio.Queue[list[MinerSample] | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._hand_on())
        cycle.on_sample = self.add

    def add(self, sample: MinerSample) -> MinerSample:
        sample = self.ids.check(sample)
        self._buffer.append(sample)
        if len(self._buffer) >= PART_MINERS:
            self._queue.put_nowait(self._buffer)
            self._buffer = []
        return sample

    async def close(self) -> None:
        """Hand over what is left and wait until the sinks have every part."""
        self.cycle.on_sample = None
        if self._buffer:
            self._queue.put_nowait(self._buffer)
            self._buffer = []
        self._queue.put_nowait(None)
        try:
            await asyncio.shield(self._worker)
        except asyncio.CancelledError:
            self._worker.cancel()
            raise

    async def _hand_on(self) -> None:
        cycle, timings = self.cycle, self.cycle.timings
        while (samples := await self._queue.get()) is not None:
            part = MinersPart(cycle.site, cycle.ts, samples)
            began = time.perf_counter()
            for stage in self.stages:
                _guarded(stage, "part", stage.part, cycle, part)
            timings.stages_in_collect_s += time.perf_counter() - began
            for sink in self.sinks:
                await _guarded_write(sink, sink.write_miners(part))


def _guarded(stage: Stage, step: str, call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # a stage's failure costs its figures, never the samples or the other stages
        log.exception("%s.%s failed; this cycle goes on without its figures", type(stage).__name__, step)


async def _guarded_write(sink: Sink, write: Coroutine[Any, Any, None]) -> None:
    try:
        await write
    except Exception as e:  # one failing sink must not stop polling or the other sinks
        log.error("%s: %s", type(sink).__name__, e)
