"""The collect service: a poll cycle every interval, each cycle handed to the sinks.

Cycles start on a fixed grid (start + k * interval); a cycle that overruns
skips the ticks it missed rather than bunching up. A cycle's poll ends by its
deadline (the poller's), whatever the miners do. Finding out what answers at
an address (identification, range scans, DNS) runs beside the cycles, never in
them; the first cycle waits for the first round of it, at most one deadline.
Stopping (SIGTERM, Ctrl-C) lets the running cycle finish and be written before
the service exits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from collector.stages.cost_stage import CostStage, CycleCosting
from collector.sources.polled_miners import CycleResult, MinersPart, Poller
from collector.sinks import Sink
from models import MinerSample

log = logging.getLogger(__name__)

# Miners per part handed to the sinks (collector.sinks): bounds the cycle's per-miner cost figures and
# lines in memory, and each part is one spool batch that delivery can send while the next is worked on.
PART_MINERS = 1000

# Samples that arrive outside the poll (MQTT telemetry): called with the cycle's timestamp and polled samples.
ExtraSamples = Callable[[datetime, list[MinerSample]], list[MinerSample]]


def cycle_timestamp() -> datetime:
    # One timestamp for the whole cycle, whole seconds: re-sent points overwrite, never duplicate.
    return datetime.now(timezone.utc).replace(microsecond=0)


async def run(poller: Poller, sinks: list[Sink], *, cycles: int | None = None,
              stop: asyncio.Event | None = None, cost_stage: CostStage | None = None,
              extra_samples: ExtraSamples | None = None, after: datetime | None = None) -> int:
    """Run until `cycles` are done or `stop` is set; return the number of cycles run.
    Cycle timestamps are strictly increasing and later than `after`.

    `extra_samples(ts, polled)`, when given, is called after each poll with the cycle's timestamp
    and polled samples and returns samples from elsewhere (MQTT devices) that join the cycle before
    costing and the sinks."""
    stop = stop or asyncio.Event()
    poller.prepare()
    ready = asyncio.Event()
    discovering = asyncio.create_task(poller.discover(ready))
    discovering.add_done_callback(_discovery_ended)
    try:
        return await _cycles(poller, sinks, ready, cycles=cycles, stop=stop, cost_stage=cost_stage,
                             extra_samples=extra_samples, after=after)
    finally:
        discovering.cancel()
        await asyncio.gather(discovering, return_exceptions=True)  # a failure was logged when it happened


async def _cycles(poller: Poller, sinks: list[Sink], ready: asyncio.Event, *, cycles: int | None,
                  stop: asyncio.Event, cost_stage: CostStage | None, extra_samples: ExtraSamples | None,
                  after: datetime | None) -> int:
    # Miners are polled once identified: give the first round a cycle's deadline, so that a (re)start
    # does not report the whole fleet offline for a cycle, and never longer.
    waits = [asyncio.ensure_future(ready.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waits, timeout=poller.config.cycle_deadline, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    interval = poller.config.interval_s
    start = time.monotonic()
    done = 0
    last_ts = after
    while not stop.is_set() and (cycles is None or done < cycles):
        ts = cycle_timestamp()
        if last_ts is not None and ts <= last_ts:
            # Timers may fire a hair early; two cycles must never share a timestamp (one would overwrite the other).
            ts = last_ts + timedelta(seconds=1)
        last_ts = ts
        costing = None
        # Without MQTT miners the cycle's miners are the poller's targets: cost them as they come.
        cost_as_polled = cost_stage is not None and extra_samples is None
        if cost_stage is not None:
            await cost_stage.refresh_network(ts)
            if cost_as_polled:
                costing = cost_stage.begin(ts, len(poller.targets))  # None: no network state, no figures
        parts = _SampleParts(poller.config.site, ts, sinks, costing)
        try:
            result = await poller.cycle(ts, on_sample=parts.add)
            if extra_samples is not None:
                extra = extra_samples(ts, result.samples)
                result.samples.extend(extra)
                for sample in extra:
                    parts.add(sample)
        finally:
            await parts.close()
        if cost_as_polled:
            await deliver(result, sinks, costing=costing, samples_written=True)
        else:  # MQTT miners join after the poll: the fixed-cost share needs their count first
            await deliver(result, sinks, cost_stage, samples_written=True)
        done += 1
        log.info("cycle %d: %d miners, %d failed, %.2f s", done, len(result.samples), result.failed,
                 result.duration_s)
        if result.past_deadline:
            log.warning("cycle %d: %d miner(s) had not answered by the cycle deadline (%g s) and are offline "
                        "this cycle", done, result.past_deadline, poller.config.cycle_deadline)
        if cycles is not None and done >= cycles:
            break
        elapsed = time.monotonic() - start
        next_tick = start + (int(elapsed // interval) + 1) * interval
        if result.duration_s > interval:
            log.warning("cycle took %.1f s, longer than the %.1f s interval; skipping missed ticks",
                        result.duration_s, interval)
        del result  # at 10,000 miners a cycle's samples are ~26 MB: never hold two cycles at once
        try:
            async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                await stop.wait()
        except TimeoutError:
            pass
    return done


def _discovery_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        # Identified miners are still polled; new and failing addresses are not identified any more.
        log.error("background identification stopped: %s: %s", type(error).__name__, error, exc_info=error)


class _SampleParts:
    """Hands samples to the sinks PART_MINERS at a time while the poll is still running, with their
    cost figures when the cycle is costed as it goes, so their lines are encoded, spooled and
    delivered in the poll's idle time (it mostly waits on miners)."""

    def __init__(self, site: str, ts: datetime, sinks: list[Sink], costing: CycleCosting | None = None):
        self.site, self.ts, self.sinks, self.costing = site, ts, sinks, costing
        self._buffer: list[MinerSample] = []
        self._queue: asyncio.Queue[list[MinerSample] | None] = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_parts())

    def add(self, sample: MinerSample) -> None:
        self._buffer.append(sample)
        if len(self._buffer) >= PART_MINERS:
            self._queue.put_nowait(self._buffer)
            self._buffer = []

    async def close(self) -> None:
        """Hand over what is left and wait until the sinks have every part (in order, one at a time)."""
        if self._buffer:
            self._queue.put_nowait(self._buffer)
            self._buffer = []
        self._queue.put_nowait(None)
        try:
            await asyncio.shield(self._writer)
        except asyncio.CancelledError:
            self._writer.cancel()
            raise

    async def _write_parts(self) -> None:
        costing = self.costing
        while (chunk := await self._queue.get()) is not None:
            costs = costing.miners(chunk) if costing is not None else None
            await _write_miners(self.sinks, MinersPart(self.site, self.ts, chunk, costs,
                                                       costing.metered_gap_w if costing is not None else {}))


async def deliver(result: CycleResult, sinks: list[Sink], cost_stage: CostStage | None = None, *,
                  costing: CycleCosting | None = None, samples_written: bool = False) -> None:
    """Hand the cycle to the sinks: its miners a slice at a time with their cost figures, then its
    roll-ups. `costing`: the miners' figures already went out with the samples (the collect loop
    costs them as the poll brings them in); only the roll-ups are left. `samples_written`: the
    sinks already have the samples; send only cost figures."""
    if costing is None:
        costing = cost_stage.begin_samples(result.ts, result.samples) if cost_stage is not None else None
        for start in range(0, len(result.samples), PART_MINERS):
            chunk = result.samples[start:start + PART_MINERS]
            part = MinersPart(result.site, result.ts, () if samples_written else chunk,
                              costing.miners(chunk) if costing is not None else None,
                              costing.metered_gap_w if costing is not None else {})
            if part.samples or part.costs:
                await _write_miners(sinks, part)
    if costing is not None:
        result.cost = costing.finish(result.samples)
    for sink in sinks:
        await _guarded(sink, sink.write(result))


async def _write_miners(sinks: list[Sink], part: MinersPart) -> None:
    for sink in sinks:
        await _guarded(sink, sink.write_miners(part))


async def _guarded(sink: Sink, write: Awaitable[None]) -> None:
    try:
        await write
    except Exception as e:  # one failing sink must not stop polling or the other sinks
        log.error("%s: %s", type(sink).__name__, e)
