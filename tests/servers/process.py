"""Process control shared by the real test servers (influxd, mosquitto).

Exceptions (both carry a message a developer can act on):

- :class:`MissingBinaryError` -- a server binary is not installed; the message
  says how to install it. The pytest fixtures turn it into ``pytest.fail``
  (the suite never skips because a server is missing).
- :class:`ServerStartError` -- the server did not become ready in time or
  exited during start-up; the message ends with the tail of its log.

:class:`ManagedProcess` runs one server binary with stdout+stderr appended to a
log file (a ``=== start N ===`` marker separates restarts) and stops it with
SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "INSTALL_HINT",
    "MissingBinaryError",
    "ServerStartError",
    "ManagedProcess",
    "require_binary",
    "log_tail",
    "wait_until_ready",
]

INSTALL_HINT = (
    "The tests run real servers from Debian packages. Install them with\n"
    "    sudo apt-get install influxdb mosquitto mosquitto-clients\n"
    "or run ./scripts/test.sh, which installs them before running the tests."
)

# mosquitto lives in /usr/sbin, which is not on a normal user's PATH.
_EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


class MissingBinaryError(RuntimeError):
    """A server binary the tests need is not installed."""


class ServerStartError(RuntimeError):
    """A server exited during start-up or did not become ready in time."""


def require_binary(name: str, package: str) -> str:
    """Return the absolute path of ``name`` or raise :class:`MissingBinaryError`."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    path = shutil.which(name, path=search)
    if path is None:
        raise MissingBinaryError(
            f"`{name}` (Debian package `{package}`) was not found on PATH or in "
            f"{', '.join(_EXTRA_DIRS)}.\n{INSTALL_HINT}"
        )
    return path


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One server process with its output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        self._starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self._starts}: {' '.join(self.argv)} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.proc = None

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


def wait_until_ready(
    process: ManagedProcess,
    probe: Callable[[], bool],
    timeout: float,
    interval: float = 0.05,
) -> float:
    """Poll ``probe()`` until it returns True; return the seconds it took.

    Raises :class:`ServerStartError` (with the log tail) if the process exits
    first or ``timeout`` seconds pass.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if not process.running:
            raise ServerStartError(
                f"{process.name} exited with code {process.exit_code} during start-up.\n"
                f"--- last lines of {process.log_path} ---\n{process.tail()}"
            )
        if probe():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise ServerStartError(
                f"{process.name} was not ready after {timeout:.0f} s.\n"
                f"--- last lines of {process.log_path} ---\n{process.tail()}"
            )
        time.sleep(interval)


class Server:
    """The lifecycle every test server shares (InfluxDB, Mosquitto): start on free ports, retrying on
    fresh ones only before the first successful start (later starts must come back where clients
    expect them: outage tests), stop, restart, an outage as a `with` block, the log's tail.

    A subclass says how to spawn its process (`_spawn`), when it is ready (`_ready`), which ports to
    take instead after a clash (`_new_ports`), and what else runs beside it (`_started`, `_stopping`)."""

    name = "server"

    def __init__(self) -> None:
        self._process: ManagedProcess | None = None
        self._ever_ready = False
        self.last_start_seconds: float | None = None

    def _spawn(self) -> ManagedProcess:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _new_ports(self) -> None:
        raise NotImplementedError

    def _started(self) -> None:
        """Called once the process is ready (OSError: its ports clash)."""

    def _stopping(self) -> None:
        """Called before the process is stopped."""

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        return self._process.proc.pid if self._process is not None and self._process.proc is not None else None

    def start(self, timeout: float = 30.0) -> float:
        """Start; return the seconds until it was ready."""
        if self.is_running:
            return 0.0
        self.stop()
        attempts = 1 if self._ever_ready else 3
        for attempt in range(1, attempts + 1):
            self._process = self._spawn()
            try:
                seconds = wait_until_ready(self._process, self._ready, timeout)
                self._started()
                break
            except (ServerStartError, OSError) as exc:
                self._stopping()
                self._process.stop()
                clash = isinstance(exc, OSError) or "address already in use" in str(exc).lower()
                if not clash or attempt == attempts:
                    if isinstance(exc, OSError):
                        raise ServerStartError(f"{self.name} could not listen: {exc}") from exc
                    raise
                self._new_ports()
        self._ever_ready = True
        self.last_start_seconds = seconds
        return seconds

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        self._stopping()
        if self._process is not None:
            self._process.stop(timeout)

    def restart(self) -> float:
        self.stop()
        return self.start()

    def ensure_running(self) -> None:
        if not self.is_running:
            self.start()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Stopped for the duration of the `with` block, then started again."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self._process.tail(lines) if self._process else ""
