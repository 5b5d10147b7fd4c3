"""Small helpers shared by test modules: `from tests.support import HASHFLEET, wait_for`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent  # the checkout
DATA = REPO / "tests" / "data"  # replies, network answers, pool answers: each with its source note

# The `hashfleet` entry point installed next to this interpreter (the venv's bin/).
HASHFLEET = str(Path(sys.executable).with_name("hashfleet"))

# A fixed poll time for tests that build samples without a collector process.
TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def local_history_env(spool: Path) -> dict[str, str]:
    """The environment of a `hashfleet` command keeping its history in `spool`, with no InfluxDB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["HASHFLEET_SPOOL_DIR"] = str(spool)
    return env


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy and return that; AssertionError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pyasic_data(host: str):
    """pyasic 0.79, unchanged: detect the miner at `host` and read it (its warnings silenced)."""
    import pyasic

    async def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = await pyasic.get_miner(host)
            return found, await found.get_data()

    return asyncio.run(go())


def refused(host: str, port: int) -> bool:
    """Nothing listens there: a connection is refused (not merely slow or dropped)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@contextmanager
def small_disk(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (`64k`) mounted at `directory` (made here), unmounted afterwards. Mounting needs
    root (CI runs as root here); a test that cannot mount fails, it never skips."""
    import pytest

    directory.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs at {directory} (run the tests as root): {mounted.stderr.strip()}",
                    pytrace=False)
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)  # something still open: detach it


def fill(path: Path) -> None:
    """Write `path` until the file system has no room left."""
    with open(path, "ab", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError:
                continue


class Samples:
    """A source of fixed samples (collector.sources.Source): a cycle's miners without a network."""

    def __init__(self, samples, *, carry: bool = True):
        self.samples = list(samples)
        self.carry = carry

    async def start(self) -> None: ...

    async def announce(self, cycle) -> None:
        for sample in self.samples:
            cycle.expect(sample.miner, carries_fixed_costs=self.carry)

    async def collect(self, cycle) -> None:
        for sample in self.samples:
            cycle.add(sample)

    async def close(self) -> None: ...


async def deliver(samples, sinks, stages=(), *, network=None, site: str = "s1", ts: datetime = TS):
    """One cycle of `samples` through the real loop's path (collector.service.run_cycle) to `sinks`,
    with the network state of `network` (a NetworkFeedConfig, dict or NetworkInputs) when stages
    cost it. Returns the Cycle."""
    from collector import service
    from collector.cycle import Cycle
    from collector.sources.network import NetworkInputs
    from models import NetworkFeedConfig

    sources = [Samples(samples)]
    if network is not None:
        if not isinstance(network, NetworkInputs):
            network = NetworkInputs(network if isinstance(network, NetworkFeedConfig)
                                    else NetworkFeedConfig.model_validate(network))
        sources.insert(0, network)
    cycle = Cycle(site, ts)
    await service.run_cycle(cycle, sources, list(stages), list(sinks))
    return cycle


def _tmux() -> str:
    import pytest

    path = shutil.which("tmux")
    if path is None:
        pytest.fail("`tmux` is missing: sudo apt-get install tmux (or run ./scripts/test.sh)", pytrace=False)
    return path


class Pane:
    """A real terminal: one tmux server on a private socket, one window of `width` x `height` running
    `command`."""

    def __init__(self, socket: Path, command: str, *, width: int, height: int) -> None:
        self.tmux = [_tmux(), "-S", str(socket), "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "watch", "-x", str(width), "-y", str(height),
                        command], check=True, timeout=10)
        subprocess.run([*self.tmux, "set-option", "-t", "watch", "remain-on-exit", "on"], timeout=10)

    def screen(self) -> list[str]:
        """The visible screen, line by line (not the scrollback)."""
        out = subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "watch"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return out.splitlines()

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=10)


# Runs ARGV with stdout and stderr to files, an address-space limit (0: none), and reports its exit code and
# its own peak resident memory. A launcher of its own, because ru_maxrss survives exec: a child forked (or
# vforked) from the test's process counts the test's memory as its own (pytest grows to ~450 MB over the
# suite: every measured command "peaked" at 453 MB there, and at ~100 MB run alone).
_MEASURED = r"""
import json, os, resource, sys
limit, out, err, report, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
pid = os.fork()
if pid == 0:
    try:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "peak_kib": usage.ru_maxrss}, f)
"""


def run_measured(argv: list[str], directory: Path, *, address_space: int = 0, timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    """Run `argv` to its end: (exit code, stdout, stderr, its own peak resident memory in MB). Past
    `timeout` it is killed (exit code -9): a hang is a failure, never a wait."""
    out, err, report = directory / "measured.out", directory / "measured.err", directory / "measured.json"
    launcher = subprocess.Popen([sys.executable, "-c", _MEASURED, str(address_space), str(out), str(err), str(report),
                                 *argv], env=env, start_new_session=True)
    try:
        launcher.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        return -9, out.read_text(), err.read_text(), 0.0
    measured = json.loads(report.read_text())
    return measured["code"], out.read_text(), err.read_text(), measured["peak_kib"] / 1024  # KiB on Linux


def read_once(address: str, ts: datetime = TS, *, timeout_s: float = 3.0):
    """Identify `address` and poll it once, as `hashfleet poll` does (the service identifies in the
    background): the one MinerSample."""
    from collector.sources.polled_miners import PolledMiners
    from models import CollectorConfig

    poller = PolledMiners(CollectorConfig(miners=[address], timeout_s=timeout_s))

    async def identify_then_poll():
        await poller.refresh()
        return await poller.cycle(ts)

    [sample] = asyncio.run(identify_then_poll()).samples
    return sample


@contextmanager
def json_by_path(replies: dict[str, object], address: tuple[str, int] = ("127.0.0.1", 0)) -> Iterator[ThreadingHTTPServer]:
    """An HTTP server in a daemon thread answering a GET of each path in `replies` (its query and a trailing
    slash ignored) with that reply: bytes as they are, anything else as JSON. Replies are looked up at each
    request (`server.replies`: a test may change them between requests); shut down and closed on leaving."""

    class ByPath(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            reply = server.replies[self.path.split("?")[0].rstrip("/")]
            body = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(address, ByPath)
    server.daemon_threads = True
    server.replies = replies  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class ServedInThread:
    """Test servers on an event loop of their own in a daemon thread, for synchronous tests: inside
    `with Server(...) as server:` every listener is bound; leaving closes them, then stops the loop.
    A subclass writes the coroutines `_bind_all` and `_close` (`_call` runs one on the loop) and calls
    `super().__init__()` after checking its arguments, so that a refused one leaves no loop behind."""

    thread_name = "test-servers"

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            self._call(self._bind_all())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop.is_running():
            self._call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _bind_all(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError


class KeptSamples:
    """A pipeline sink that keeps the samples of every cycle it is handed: `cycles`, one list a cycle."""

    def __init__(self) -> None:
        self.cycles: list[list] = []

    async def write_miners(self, part) -> None: ...

    async def write(self, cycle) -> None:
        self.cycles.append(list(cycle.samples))


async def until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """`wait_for` inside an event loop: `condition()` polled every 50 ms until it is truthy (returned)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value
