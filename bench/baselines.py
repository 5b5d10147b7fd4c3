"""What the collector is compared with, against the same simulated fleet in the same run.

- plain pyasic: `pyasic.get_miner` then `get_data()` per miner, each bounded by a semaphore (50 by
  default: pyasic's own `limit` does not bound concurrency, DESIGN.md section 5). Detection is timed
  apart; miners/s is for `get_data()` only.
- the collector's poll alone: `PolledMiners.cycle` over the whole fleet (connect, the joined request,
  parse into MinerSample) with no cost stage and no sinks, as the two rounds below only poll. In the
  collect loop the poll stage also encodes and spools the samples as they arrive (collector.service),
  which neither pyasic nor the bare client does.
- the bare client (the ceiling): one `{"command": "summary+estats+pools"}` per miner over a bare
  asyncio Protocol, read until the miner closes, `json.loads` and nothing else (no parsing into
  samples, no timeouts, no cost, no writes), as many in flight as the collector's concurrency.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench.procs import box_cpu_seconds
from bench.stats import LatencyStats

BARE_COMMAND = "summary+estats+pools"


@dataclass
class RoundStats(LatencyStats):
    name: str
    miners: int  # attempted
    ok: int  # answered with data
    seconds: float
    cpu_s: float
    sim_cpu_s: float = 0.0
    concurrency: int = 0
    latencies_s: list[float] = field(default_factory=list, repr=False)
    box_busy_cores: float | None = None  # the whole machine's busy CPU over the round, in cores
    detect_s: float | None = None  # pyasic only: get_miner over the sample
    detected: int | None = None
    error: str | None = None

    @property
    def miners_per_s(self) -> float | None:
        return self.ok / self.seconds if self.seconds and self.ok else None

    def as_dict(self) -> dict[str, object]:
        out = {k: getattr(self, k) for k in ("name", "miners", "ok", "seconds", "cpu_s", "sim_cpu_s", "concurrency",
                                             "box_busy_cores", "detect_s", "detected", "error", "miners_per_s", "cpu_per_1k",
                                             "p50_ms", "p99_ms")}
        return out


def sample(addresses: list[str], n: int) -> list[str]:
    """`n` addresses spread evenly over the fleet."""
    if n >= len(addresses):
        return list(addresses)
    step = len(addresses) / n
    return [addresses[int(i * step)] for i in range(n)]


async def pyasic_round(addresses: list[str], *, concurrency: int = 50, detect_timeout_s: float = 30.0,
                       sim_cpu=lambda: 0.0) -> RoundStats:
    """Detect `addresses` with pyasic, then time `get_data()` over the ones detected."""
    import pyasic

    semaphore = asyncio.Semaphore(concurrency)
    hosts = [a.rpartition(":")[0] or a for a in addresses]

    async def detect(host: str):
        async with semaphore:
            try:
                return await asyncio.wait_for(pyasic.get_miner(host), detect_timeout_s)
            except Exception:  # noqa: BLE001 - a miner pyasic cannot detect is counted, not fatal
                return None

    started = time.perf_counter()
    miners = [m for m in await asyncio.gather(*(detect(h) for h in hosts)) if m is not None]
    detect_s = time.perf_counter() - started
    if not miners:
        return RoundStats("pyasic get_data", len(hosts), 0, 0.0, 0.0, concurrency=concurrency, detect_s=detect_s,
                          detected=0, error="pyasic detected none of the sampled miners")

    latencies: list[float] = []

    async def data(miner) -> bool:
        async with semaphore:
            begun = time.monotonic()
            try:
                got = await miner.get_data()
            except Exception:  # noqa: BLE001
                return False
            finally:
                latencies.append(time.monotonic() - begun)
            return got.hashrate is not None

    sim0, box0, cpu0, wall0 = sim_cpu(), box_cpu_seconds(), time.process_time(), time.perf_counter()
    ok = sum(await asyncio.gather(*(data(m) for m in miners)))
    seconds, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return RoundStats("pyasic get_data", len(miners), ok, seconds, cpu, sim_cpu() - sim0, concurrency, latencies,
                      (box_cpu_seconds() - box0) / seconds, detect_s=detect_s, detected=len(miners))


async def poller_round(addresses: list[str], *, concurrency: int, timeout_s: float = 5.0,
                       sim_cpu=lambda: 0.0) -> RoundStats:
    """The collector's PolledMiners alone, one timed cycle after an untimed one that identifies every miner."""
    from datetime import datetime, timedelta, timezone

    from collector.sources.polled_miners import PolledMiners
    from models import CollectorConfig

    poller = PolledMiners(CollectorConfig(site="bench", miners=addresses, concurrency=concurrency, timeout_s=timeout_s,
                                    cycle_deadline_s=3600))  # timed whole, never cut short
    ts = datetime.now(timezone.utc).replace(microsecond=0)
    await poller.refresh()  # identify every miner (the service does it in the background)
    await poller.cycle(ts)
    sim0, box0, cpu0, wall0 = sim_cpu(), box_cpu_seconds(), time.process_time(), time.perf_counter()
    result = await poller.cycle(ts + timedelta(seconds=1))
    seconds, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ok = sum(1 for s in result.samples if s.hashrate_ths)
    return RoundStats("collector poll only", len(addresses), ok, seconds, cpu, sim_cpu() - sim0, concurrency,
                      result.latencies_s, (box_cpu_seconds() - box0) / seconds)


class _Bare(asyncio.Protocol):
    __slots__ = ("payload", "done", "chunks")

    def __init__(self, payload: bytes, done: asyncio.Future[bytes]):
        self.payload = payload
        self.done = done
        self.chunks: list[bytes] = []

    def connection_made(self, transport) -> None:
        transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            if exc is not None and not self.chunks:
                self.done.set_exception(exc)
            else:
                self.done.set_result(b"".join(self.chunks))


async def bare_round(addresses: list[str], *, concurrency: int, command: str = BARE_COMMAND,
                     timeout_s: float = 300.0, sim_cpu=lambda: 0.0) -> RoundStats:
    """One joined request per miner, read to close, json.loads: the most a Python client can do here."""
    loop = asyncio.get_running_loop()
    payload = json.dumps({"command": command}).encode()
    targets = [(host, int(port or 4028)) for host, _, port in (a.rpartition(":") for a in addresses)]
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(host: str, port: int) -> bool:
        async with semaphore:
            begun = time.monotonic()
            done: asyncio.Future[bytes] = loop.create_future()
            try:
                transport, _ = await loop.create_connection(lambda: _Bare(payload, done), host, port)
                try:
                    raw = await done
                finally:
                    transport.close()
                json.loads(raw.rstrip(b"\x00"))
                return True
            except (OSError, ValueError):
                return False
            finally:
                latencies.append(time.monotonic() - begun)

    sim0, box0, cpu0, wall0 = sim_cpu(), box_cpu_seconds(), time.process_time(), time.perf_counter()
    error = None
    try:
        async with asyncio.timeout(timeout_s):
            ok = sum(await asyncio.gather(*(one(h, p) for h, p in targets)))
    except TimeoutError:
        ok, error = 0, f"not finished within {timeout_s:g} s"
    seconds, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return RoundStats(f"bare {command}", len(targets), ok, seconds, cpu, sim_cpu() - sim0, concurrency, latencies,
                      (box_cpu_seconds() - box0) / seconds, error=error)
