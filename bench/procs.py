"""The processes a benchmark runs beside the one it measures: the simulated fleet and InfluxDB.

Both run in processes of their own, so what the benchmark process measures about itself (CPU
seconds, peak RSS) is the collector's alone; their CPU is read from /proc and reported apart.

- `SimulatorProcess`: `hashfleet simulate --fleet MODEL:N --base ADDR`; ready once it has printed
  its N `ADDRESS MODEL` lines (the CLI's contract: it prints them once every miner listens).
- `SimulatorFleet`: N miners over as many SimulatorProcesses as the open-file limit needs (one
  process up to 10,000 miners; 20,000 miners are two processes of 10,000).
- `InfluxProcess`: `python -m bench.influx_server`, which runs tests/servers' InfluxDB (influxd
  1.6.7 plus the v2-write shim) and prints one JSON line with its URLs once ready.
"""

from __future__ import annotations

import ipaddress
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


class BenchSetupError(RuntimeError):
    """A process the benchmark needs did not start; the message says why and where its log is."""


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a live process (0.0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of stat)


def box_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core; idle and iowait left out) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICKS  # user nice system idle iowait irq softirq steal


def rss_mb(pid: int | None) -> float | None:
    """Current resident set of a live process, MB."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _hashfleet_command() -> list[str]:
    script = Path(sys.executable).with_name("hashfleet")
    if script.exists():
        return [str(script)]
    found = shutil.which("hashfleet")
    if found:
        return [found]
    return [sys.executable, "-c", "from collector.commands import main; main()"]


def _fd_limit_for(listeners: int):
    """preexec_fn: room for every listening socket plus the clients' connections.

    simulators/fleet.py raises the soft limit itself, but only up to the hard limit (20,000 on this
    box), which 20,000 miners (40,000 sockets for Antminers) exceed; root may raise the hard limit."""
    want = listeners + 8192

    def raise_limit() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            except (ValueError, OSError):
                pass  # not root: the simulator will say which address it could not bind
        elif soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    return raise_limit


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class SimulatorProcess:
    """`hashfleet simulate` in its own process; `addresses` once every miner listens."""

    def __init__(self, fleet: str, base: str, workdir: Path, *, seed: int = 0, sockets_per_miner: int = 1,
                 start_timeout_s: float | None = None, faults: Sequence[str] = ()):
        self.fleet = fleet
        self.faults = list(faults)  # `--fault ADDRESS:NAME[=VALUE]` values (docs/drills.md)
        self.base = base
        self.seed = seed
        self.count = sum(int(part.partition(":")[2] or 1) for part in fleet.split(","))
        self.log_path = Path(workdir) / "simulator.log"
        self.sockets = self.count * sockets_per_miner
        self.start_timeout_s = start_timeout_s or 60 + self.count / 100
        self.proc: subprocess.Popen[str] | None = None
        self.addresses: list[str] = []
        self.models: list[str] = []
        self.start_seconds: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> SimulatorProcess:
        argv = [*_hashfleet_command(), "simulate", "--fleet", self.fleet, "--base", self.base, "--seed", str(self.seed),
                *(arg for fault in self.faults for arg in ("--fault", fault))]
        started = time.monotonic()
        log = open(self.log_path, "w")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                                     preexec_fn=_fd_limit_for(self.sockets), start_new_session=True)
        log.close()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, lines), daemon=True).start()
        deadline = started + self.start_timeout_s
        while len(self.addresses) < self.count:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise BenchSetupError(f"`{' '.join(argv)}` listed {len(self.addresses)} of {self.count} miners "
                                      f"in {self.start_timeout_s:.0f} s; log: {self.log_path}") from None
            if line is None:
                code = self.proc.wait()
                raise BenchSetupError(f"`{' '.join(argv)}` exited with code {code} after listing "
                                      f"{len(self.addresses)} of {self.count} miners:\n{_tail(self.log_path)}")
            address, _, model = line.strip().partition(" ")
            self.addresses.append(address)
            self.models.append(model)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hosts(base: str, count: int) -> set[str]:
    first = int(ipaddress.IPv4Address(base.rpartition(":")[0] or base))
    return {str(ipaddress.IPv4Address(first + i)) for i in range(count)}


def _next_address(address: str) -> str:
    host = address.rpartition(":")[0] or address
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address(host)) + 1))


def miners_per_process(sockets_per_miner: int, cap: int = 10_000) -> int:
    """How many simulated miners one simulator process may serve under this box's open-file hard limit
    (20,000 here, and not raisable without CAP_SYS_RESOURCE): each listener is a file, and so is every
    connection being answered."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return cap
    return max(1, min(cap, (hard - 4096) // sockets_per_miner))


class SimulatorFleet:
    """`count` simulated miners of one model from consecutive addresses, served by as few `hashfleet
    simulate` processes as the open-file limit allows (one up to 10,000 miners). Process i gets seed
    `seed + i`, so MACs (the miners' ids) never repeat across processes."""

    def __init__(self, model: str, count: int, base: str, workdir: Path, *, seed: int = 0, sockets_per_miner: int = 1,
                 per_process: int | None = None, faults: Sequence[str] = ()):
        self.model = model
        self.faults = list(faults)  # `--fault HOST:NAME[=VALUE]`, each given to the process serving HOST
        self.count = count
        self.base = base
        self.workdir = Path(workdir)
        self.seed = seed
        self.sockets_per_miner = sockets_per_miner
        self.per_process = per_process or miners_per_process(sockets_per_miner)
        self.processes: list[SimulatorProcess] = []
        self.addresses: list[str] = []
        self.start_seconds: float | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def start(self) -> SimulatorFleet:
        started = time.monotonic()
        base, left, index = self.base, self.count, 0
        try:
            while left > 0:
                n = min(left, self.per_process)
                workdir = self.workdir / f"simulator-{index}"
                workdir.mkdir(parents=True, exist_ok=True)
                hosts = _hosts(base, n)
                process = SimulatorProcess(f"{self.model}:{n}", base, workdir, seed=self.seed + index,
                                           sockets_per_miner=self.sockets_per_miner,
                                           faults=[f for f in self.faults if f.split(":", 1)[0] in hosts])
                self.processes.append(process)
                process.start()
                self.addresses += process.addresses
                base, left, index = _next_address(process.addresses[-1]), left - n, index + 1
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def __enter__(self) -> SimulatorFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class InfluxInfo:
    url: str  # the v2 shim: what the collector writes to
    raw_url: str  # influxd's own v1 API (queries)
    token: str
    org: str
    database: str
    influxd_pid: int | None
    helper_pid: int | None
    cache_snapshot_bytes: int | None = None  # None: influxd's own default (25 MiB)


class InfluxProcess:
    """A real influxd 1.6.7 + v2 shim (tests/servers) run by `python -m bench.influx_server`."""

    def __init__(self, workdir: Path, database: str = "hashfleet_bench", start_timeout_s: float = 60.0,
                 cache_snapshot_bytes: int | None = None):
        self.workdir = Path(workdir)
        self.database = database
        self.cache_snapshot_bytes = cache_snapshot_bytes  # None: docker-compose.yml's
        self.start_timeout_s = start_timeout_s
        self.log_path = self.workdir / "influx_server.log"
        self.proc: subprocess.Popen[str] | None = None
        self.info: InfluxInfo | None = None

    def start(self) -> InfluxInfo:
        argv = [sys.executable, "-m", "bench.influx_server", "--workdir", str(self.workdir / "influxdb"),
                "--database", self.database]
        if self.cache_snapshot_bytes is not None:
            argv += ["--cache-snapshot-bytes", str(self.cache_snapshot_bytes)]
        log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                     cwd=Path(__file__).resolve().parent.parent, start_new_session=True)
        log.close()
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=self.start_timeout_s)
        except queue.Empty:
            line = None
        if not line:
            self.stop()
            raise BenchSetupError(f"InfluxDB (`{' '.join(argv)}`) did not come up:\n{_tail(self.log_path)}")
        self.info = InfluxInfo(**json.loads(line))
        return self.info

    def count(self, influxql: str) -> int:
        """The first value of the first row of a query (e.g. `SELECT count("up") FROM "miner"`), 0 when empty."""
        assert self.info is not None
        data = urllib.parse.urlencode({"q": influxql, "db": self.info.database}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{self.info.raw_url}/query", data=data), timeout=60) as r:
            result = json.loads(r.read())
        for statement in result.get("results", []):
            for series in statement.get("series", []):
                return int(series["values"][0][1])
        return 0

    def influxd_cpu_seconds(self) -> float:
        return cpu_seconds(self.info.influxd_pid) if self.info else 0.0

    def shim_cpu_seconds(self) -> float:
        """The v2-write shim (a test-side Python HTTP proxy in the helper process): not part of a real site."""
        return cpu_seconds(self.info.helper_pid) if self.info else 0.0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # the helper stops influxd and exits when its stdin closes
            proc.wait(30)
        except (subprocess.TimeoutExpired, OSError):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def __enter__(self) -> InfluxProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
