"""The collector as `hashfleet collect` runs it, timed per cycle and per stage.

`run_collector` builds the pipeline with the composition root (collector.pipeline.build: the polled
miners, the network state, the cost stage with a flat tariff and a static network) writing to the real
InfluxSink over a Spool, and runs it (collector.service.run): the code measured is the code that ships.
Nothing is patched: the service records where each cycle's time went (Cycle.timings), the sink is
wrapped (a Sink of its own) to wait for delivery, and `on_cycle_start` marks each cycle's start.

    poll    the sources (connect, request, parse into MinerSample; meanwhile the samples go to the
            cost stage and the sink in parts: costed, encoded, spooled, sent)
    cost    the cost stage's roll-ups after the poll (running totals, site and fleet)
    write   append: the parts left and the cycle's end until its last batch is on disk;
            deliver: until InfluxDB has it all (the delivery task's HTTP writes, awaited here so
            that a cycle ends when its points are in)

CPU is the whole process's (the spool's and the delivery's worker threads included), except cost: the
loop thread's own, since delivery runs in a worker thread meanwhile. The simulator's and InfluxDB's
CPU are read from /proc and reported apart.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.procs import InfluxInfo, box_cpu_seconds
from bench.stats import LatencyStats, peak_rss_mb

log = logging.getLogger("bench")

# Site economics for the cost stage: the example config's numbers (hashfleet.example.yaml).
ECONOMICS = {
    "timezone": "America/Chicago",
    "tariff": {"kind": "flat", "usd_per_kwh": 0.045},
    "pue": 1.08,
    "pool_fee_pct": 2,
    "opex_usd_month": 150,
    "capex_by_model": {"AvalonMiner 15-194": {"price_usd": 3100, "life_months": 36, "salvage_usd": 200},
                       "AvalonMiner 1246-83": {"price_usd": 1200, "life_months": 36, "salvage_usd": 100}},
}
NETWORK = {"source": "static",
           "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02, "btc_price_usd": 95000}}


@dataclass
class CycleStats(LatencyStats):
    index: int
    warmup: bool  # the first cycle also identifies every miner (one extra `version` request each)
    miners: int = 0
    failed: int = 0
    mining: int = 0  # samples in state mining
    poll_s: float = 0.0
    cost_s: float = 0.0  # costing after the poll (the roll-ups; per-miner figures too when MQTT miners join)
    cost_in_poll_s: float = 0.0  # costing the collect loop did while polling (inside poll_s)
    append_s: float = 0.0  # InfluxSink.write: line protocol + spool append (gzip, fsync)
    deliver_s: float = 0.0  # until the spool is empty: every point acknowledged by InfluxDB
    delivered: bool = True
    points: int = 0
    cpu_poll_s: float = 0.0
    cpu_cost_s: float = 0.0
    cpu_write_s: float = 0.0
    others_cpu_s: dict[str, float] = field(default_factory=dict)  # simulator, influxd, shim: CPU s this cycle
    box_busy_cores: float | None = None  # the whole machine's busy CPU over the cycle, in cores
    peak_rss_mb: float = 0.0  # this process's peak RSS so far, read at the end of the cycle
    gc_s: float = 0.0  # wall time in Python's garbage collector during the cycle and after it (all generations)
    gc_collections: int = 0
    gc_after_s: float = 0.0  # ... the part after it, before the next (collector.service.collect_garbage), in cpu_s
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # --tracemalloc: MB live / peak per stage
    memory_top: dict[str, list[tuple[str, float, int]]] = field(default_factory=dict)  # stage -> (site, MB, blocks)
    latencies_s: list[float] = field(default_factory=list, repr=False)

    @property
    def write_s(self) -> float:
        return self.append_s + self.deliver_s

    @property
    def total_s(self) -> float:
        return self.poll_s + self.cost_s + self.write_s

    @property
    def cpu_s(self) -> float:
        return self.cpu_poll_s + self.cpu_cost_s + self.cpu_write_s + self.gc_after_s

    @property
    def miners_per_s(self) -> float | None:
        """Poll throughput: miners / poll seconds (comparable with the pyasic and bare-client rounds)."""
        return self.miners / self.poll_s if self.poll_s else None

    @property
    def miners_per_s_total(self) -> float | None:
        """End to end: miners / (poll + cost + write) seconds."""
        return self.miners / self.total_s if self.total_s else None

    @property
    def points_per_s(self) -> float | None:
        """Points / write seconds (spool append + delivery)."""
        return self.points / self.write_s if self.write_s else None

    def as_dict(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k != "latencies_s" and (v or k not in ("memory", "memory_top"))}
        for name in ("write_s", "total_s", "cpu_s", "miners_per_s", "miners_per_s_total", "points_per_s",
                     "cpu_per_1k", "p50_ms", "p99_ms"):
            out[name] = getattr(self, name)
        return out


class _Memory:
    """--tracemalloc: Python memory per stage (live at its end, and its peak), and the biggest allocation
    sites still live after the poll and after the spool append of the last cycle. tracemalloc slows
    everything down several times: the timings of such a run mean nothing, the megabytes do."""

    def __init__(self, enabled: bool, last_cycle: int):
        self.enabled = enabled
        self.last_cycle = last_cycle

    def start(self) -> None:
        if self.enabled:
            import tracemalloc

            tracemalloc.start(1)

    def stop(self) -> None:
        if self.enabled:
            import tracemalloc

            tracemalloc.stop()

    def stage(self, stats: CycleStats, name: str, *, top: bool = False) -> None:
        if not self.enabled:
            return
        import tracemalloc

        current, peak = tracemalloc.get_traced_memory()
        stats.memory[name] = {"live_mb": current / 2**20, "peak_mb": peak / 2**20}
        if top and stats.index == self.last_cycle:
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            stats.memory_top[name] = [(_short(stat.traceback[0].filename) + f":{stat.traceback[0].lineno}",
                                       stat.size / 2**20, stat.count) for stat in snapshot.statistics("lineno")[:10]]
        tracemalloc.reset_peak()


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class _TimedSink:
    """Hands the cycle's parts and end to the real sink, then waits for delivery; records the cycle's
    numbers from its Cycle.timings. `deliver`: the wait until InfluxDB has every point."""

    def __init__(self, sink, recorder: Recorder, *, deliver: bool = True):
        self.sink = sink
        self.recorder = recorder
        self.deliver = deliver  # False: a spool-only sink, nothing to wait for

    async def write_miners(self, part) -> None:
        await self.sink.write_miners(part)

    async def write(self, cycle) -> None:
        rec = self.recorder
        stats = rec.current
        try:
            await self.sink.write(cycle)
            rec.polled(cycle)
            rec.memory.stage(stats, "cost + append", top=True)
            began, cpu = time.perf_counter(), time.process_time()
            if self.deliver:
                stats.delivered = await self.sink.delivered(rec.delivery_timeout_s)
            stats.deliver_s, cpu_deliver = time.perf_counter() - began, time.process_time() - cpu
            rec.memory.stage(stats, "deliver")
            stats.cpu_write_s += cpu_deliver
            stats.points = self.sink.last_cycle_points
        except BaseException:
            stats.delivered = False
            raise
        finally:
            rec.finish()

    def close(self) -> None:
        self.sink.close()  # and its spool


class _GcTimer:
    """Time spent in Python's garbage collector (gc.callbacks), for the cycle being recorded."""

    def __init__(self) -> None:
        self.seconds, self.collections, self._started = 0.0, 0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1

    def take(self) -> tuple[float, int]:
        """Seconds and collections since the last take."""
        taken, self.seconds, self.collections = (self.seconds, self.collections), 0.0, 0
        return taken


class Recorder:
    def __init__(self, *, warmup: int, others: dict[str, Callable[[], float]], delivery_timeout_s: float,
                 on_cycle: Callable[[int, CycleStats | None], None] | None = None, memory: _Memory | None = None):
        self.gc = _GcTimer()
        self.warmup = warmup
        self.memory = memory or _Memory(False, -1)
        self.others = others
        self.delivery_timeout_s = delivery_timeout_s
        self.on_cycle = on_cycle  # (index about to start, the cycle just finished or None)
        self.cycles: list[CycleStats] = []
        self.current: CycleStats | None = None
        self._others0: dict[str, float] = {}
        self._box0 = self._wall0 = 0.0

    def begin(self, cycle=None) -> None:
        index = len(self.cycles)
        # The service collects garbage once a cycle is over (collector.service.collect_garbage): the
        # collection between two cycles belongs to the one before.
        gc_s, collections = self.gc.take()
        if self.cycles:
            last = self.cycles[-1]
            last.gc_s, last.gc_collections, last.gc_after_s = last.gc_s + gc_s, last.gc_collections + collections, gc_s
        if self.on_cycle:
            self.on_cycle(index, self.cycles[-1] if self.cycles else None)
        self.current = CycleStats(index=index, warmup=index < self.warmup)
        self._others0 = {name: read() for name, read in self.others.items()}
        self._box0, self._wall0 = box_cpu_seconds(), time.perf_counter()
        self.memory.stage(self.current, "before")

    def polled(self, cycle) -> None:
        """The cycle's own account of its stages (collector.cycle.Timings)."""
        stats, timings = self.current, cycle.timings
        stats.poll_s, stats.cpu_poll_s = timings.collect_s, timings.collect_cpu_s
        stats.cost_in_poll_s = timings.stages_in_collect_s
        stats.cost_s, stats.cpu_cost_s = timings.finish_s, timings.finish_cpu_s
        stats.append_s = timings.drain_s + timings.write_s
        stats.cpu_write_s = timings.drain_cpu_s + timings.write_cpu_s
        stats.miners = len(cycle.samples)
        stats.failed = cycle.failed
        stats.mining = sum(1 for sample in cycle.samples if sample.state == "mining")
        stats.latencies_s = list(cycle.latencies_s)

    def finish(self) -> None:
        stats = self.current
        wall = time.perf_counter() - self._wall0
        stats.box_busy_cores = (box_cpu_seconds() - self._box0) / wall if wall > 0 else None
        stats.others_cpu_s = {name: read() - self._others0[name] for name, read in self.others.items()}
        stats.peak_rss_mb = peak_rss_mb()
        stats.gc_s, stats.gc_collections = self.gc.take()
        self.cycles.append(stats)
        self.current = None


def loop_runner():
    """The event-loop runner `hashfleet collect` uses (uvloop where installed, the service's garbage-
    collection threshold), so the benchmark measures the loop the service really runs on."""
    from collector.service import run_event_loop

    return run_event_loop


def running_loop_name() -> str:
    loop = asyncio.get_running_loop()
    return type(loop).__module__.split(".")[0]  # "uvloop" or "asyncio"


def collector_config(addresses: list[str], influx: InfluxInfo | None, *, concurrency: int, timeout_s: float,
                     site: str = "bench", extra: dict[str, object] | None = None):
    """The bench's collector config; `extra`: more settings (`readers`, `shard`, ...)."""
    from models import CollectorConfig

    # Cycles back to back (interval 1 s), each timed whole: no deadline may cut one short.
    settings = {"site": site, "miners": addresses, "interval_s": 1, "cycle_deadline_s": 3600, "timeout_s": timeout_s,
                "concurrency": concurrency, "economics": ECONOMICS, "network": NETWORK, **(extra or {})}
    if influx is not None:
        settings["influx"] = {"url": influx.url, "org": influx.org, "bucket": influx.database, "token": influx.token}
    return CollectorConfig.model_validate(settings)


async def run_collector(addresses: list[str], influx: InfluxInfo | None, spool_dir: Path, *, cycles: int, warmup: int = 1,
                        concurrency: int = 512, timeout_s: float = 5.0,
                        others: dict[str, Callable[[], float]] | None = None, delivery_timeout_s: float = 120.0,
                        on_cycle: Callable[[int, CycleStats | None], None] | None = None,
                        trace_memory: bool = False,
                        settings: dict[str, object] | None = None) -> tuple[list[CycleStats], str]:
    """`warmup + cycles` cycles of the real collect loop: one CycleStats per cycle, and the loop's name.

    Without `influx`, the sink is the one `hashfleet collect` uses when no InfluxDB is configured (the
    spool as local history): a diagnostic that takes the database's CPU out of the picture."""
    from collector import pipeline

    cfg = collector_config(addresses, influx, concurrency=concurrency, timeout_s=timeout_s, extra=settings)
    memory = _Memory(trace_memory, last_cycle=warmup + cycles - 1)
    recorder = Recorder(warmup=warmup, others=others or {}, delivery_timeout_s=delivery_timeout_s,
                        on_cycle=on_cycle, memory=memory)
    cfg = cfg.model_copy(update={"spool": cfg.spool.model_copy(update={"directory": spool_dir})})
    timed = _TimedSink(pipeline.storage_sink(cfg), recorder, deliver=cfg.influx is not None)
    built = pipeline.build(cfg, sinks=[timed])
    # "cycle took longer than the interval" would be logged every cycle: the bench runs cycles back to back.
    logging.getLogger("collector.service").setLevel(logging.ERROR)
    memory.start()
    try:
        await built.run(cycles=warmup + cycles, on_cycle_start=recorder.begin)
    finally:
        memory.stop()
        if recorder.on_cycle:
            recorder.on_cycle(len(recorder.cycles), recorder.cycles[-1] if recorder.cycles else None)
        timed.close()
    return recorder.cycles, running_loop_name()
