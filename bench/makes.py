"""`python -m bench.makes --miners 100`: CPU per miner per steady-state cycle, pyasic 0.79 vs pyasic-rs.

For each make (simulated Whatsminer M50S, Braiins OS+ S19j Pro, stock Antminer S19j Pro by default)
it starts `hashfleet simulate` in its own process, detects every miner once with each library
(bounded to --concurrency at a time), then times --cycles read cycles: `get_data()` per miner with
the fields the collector leaves out excluded (pyasic, loaded as the collector loads it: its HTTP through
collector/sources/pyasic_http.py) or all fields (pyasic-rs, whose `get_data`
takes no timeout: each call is wrapped in asyncio.wait_for here). CPU is this process's
(`time.process_time`, all threads, so pyasic-rs's Rust runtime counts); the simulators' CPU is
reported apart. pyasic-rs is optional: without it only pyasic is measured.

Run it in a private network namespace (`unshare -n`): the simulated miners take fixed ports on
127.x addresses. Numbers are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.procs import BenchSetupError, SimulatorFleet

EXCLUDE = ["serial_number", "psu_serial_number", "api_ver", "hostname", "fan_psu", "fault_light", "config"]
BASES = {"m50s": "127.81.0.1", "bos-s19jpro": "127.82.0.1", "s19jpro": "127.83.0.1", "m30splus": "127.84.0.1",
         "bos-s21": "127.85.0.1", "m60s": "127.86.0.1", "s21": "127.87.0.1", "bitaxe": "127.89.0.1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.makes", description=__doc__.split("\n\n")[0])
    p.add_argument("--miners", type=int, default=100, help="miners per make")
    p.add_argument("--cycles", type=int, default=3, help="timed read cycles after detection")
    p.add_argument("--makes", default="m50s,bos-s19jpro,s19jpro", help="fleet keys, comma separated")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--timeout", type=float, default=10.0, help="per-miner timeout, s")
    return p.parse_args(argv)


async def _bounded(items: list[Any], limit: int, call: Callable[[Any], Awaitable[Any]], timeout: float) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(item: Any) -> Any:
        async with gate:
            try:
                return await asyncio.wait_for(call(item), timeout)
            except Exception as exc:  # one failing miner is counted, not fatal
                return exc

    return await asyncio.gather(*(one(i) for i in items))


async def _measure(name: str, hosts: list[str], detect: Callable[[str], Awaitable[Any]],
                   read: Callable[[Any], Awaitable[Any]], ok: Callable[[Any], bool], args: argparse.Namespace,
                   sim_cpu: Callable[[], float]) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    found = await _bounded(hosts, args.concurrency, detect, args.timeout)
    miners = [m for m in found if m is not None and not isinstance(m, Exception)]
    detect_cpu, detect_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cycles = []
    for _ in range(args.cycles):
        sim0, cpu0, wall0 = sim_cpu(), time.process_time(), time.perf_counter()
        results = await _bounded(miners, args.concurrency, read, args.timeout)
        cycles.append({"cpu_ms_per_miner": (time.process_time() - cpu0) / max(1, len(miners)) * 1000,
                       "wall_s": time.perf_counter() - wall0, "read_ok": sum(1 for r in results if ok(r)),
                       "sim_cpu_ms_per_miner": (sim_cpu() - sim0) / max(1, len(miners)) * 1000})
    best = min(cycles, key=lambda c: c["cpu_ms_per_miner"]) if cycles else {}
    return {"library": name, "detected": len(miners), "detect_cpu_ms_per_miner": detect_cpu / max(1, len(hosts)) * 1000,
            "detect_wall_s": detect_wall, "cycles": cycles, "best": best}


def _pyasic_ok(data: Any) -> bool:
    return not isinstance(data, Exception) and data.hashrate is not None and bool(data.hashboards)


def _pyasic_rs_ok(data: Any) -> bool:
    return not isinstance(data, Exception) and data.hashrate is not None


async def _run_make(model: str, hosts: list[str], args: argparse.Namespace, sim_cpu) -> list[dict[str, Any]]:
    from collector.sources import identify

    identify.load_pyasic()  # as the collector loads it: its HTTP through collector/sources/pyasic_http.py
    import pyasic

    async def detect(host: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return await pyasic.get_miner(host)

    async def read(miner: Any) -> Any:
        return await miner.get_data(exclude=EXCLUDE)

    out = [await _measure("pyasic 0.79", hosts, detect, read, _pyasic_ok, args, sim_cpu)]
    try:
        from pyasic_rs import MinerFactory
    except ImportError:
        return out
    factory = MinerFactory()

    async def detect_rs(host: str) -> Any:
        return await factory.get_miner(host)

    async def read_rs(miner: Any) -> Any:
        return await miner.get_data()

    out.append(await _measure("pyasic-rs", hosts, detect_rs, read_rs, _pyasic_rs_ok, args, sim_cpu))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="hashfleet-bench-makes-"))
    print(f"bench.makes: {args.miners} miners per make, {args.cycles} timed cycles, concurrency {args.concurrency}")
    print(f"{'make':<12} {'library':<12} {'found':>5} {'detect ms/miner':>16} {'read ms CPU/miner':>18} "
          f"{'read ok':>8} {'cycle s':>8} {'sim ms CPU/miner':>17}")
    for model in [m.strip() for m in args.makes.split(",") if m.strip()]:
        base = BASES.get(model, "127.88.0.1")
        try:
            with SimulatorFleet(model, args.miners, base, workdir, sockets_per_miner=2) as sim:
                hosts = [a.rsplit(":", 1)[0] for a in sim.addresses]
                results = asyncio.run(_run_make(model, hosts, args, sim.cpu_seconds))
        except BenchSetupError as exc:
            print(f"{model}: setup failed: {exc}")
            return 1
        for r in results:
            best = r["best"]
            print(f"{model:<12} {r['library']:<12} {r['detected']:>5} {r['detect_cpu_ms_per_miner']:>16.2f} "
                  f"{best.get('cpu_ms_per_miner', float('nan')):>18.2f} {best.get('read_ok', 0):>8} "
                  f"{best.get('wall_s', float('nan')):>8.2f} {best.get('sim_cpu_ms_per_miner', float('nan')):>17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
