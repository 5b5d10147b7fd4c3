"""Fault drills on a running fleet: fault changes from the command line, a schedule file, or a loopback
control endpoint.

One change names miners and the switches to set or clear; three ways to write it:

    --fault 127.10.0.1:4028:chips_dying=1:40       ADDRESS:NAME[=VALUE]; NAME=off clears it
    --fault '*:ambient_c=40'                       ADDRESS: HOST:PORT, HOST (every miner on it) or *

    # --faults FILE (YAML or JSON): a list of changes, each at seconds after serving began
    - at: 0
      address: 127.10.0.1:4028
      set: {chips_dying: "1:40", days_per_hour: 3600}
    - at: 5m                                       # seconds, or 90s / 5m / 2h
      address: "*"
      clear: all                                   # or a list of switch names
    - at: 600
      fault: "127.10.0.2:4028:fan_failing=0:50"    # the --fault form also works here

    # --control 127.0.0.1:4999 (loopback only): the same entries over HTTP
    curl -d '{"address": "127.10.0.1:4028", "set": {"psu_drift": 5}}' http://127.0.0.1:4999/faults
    curl http://127.0.0.1:4999/faults              # every miner's active switches
    curl http://127.0.0.1:4999/commands            # control commands received (simulators.commands)

Everything is checked before anything is applied: an unknown address or switch, a value out of
range, a board or fan the model does not have is a `DrillError` naming the entry and saying what
to write instead (the CLI turns it into exit status 2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulators.faults import FAULT_NAMES, HEALTHY, Faults, FaultValueError, form, parse_value
from simulators.http import HttpConnection, HttpRequest, HttpResponse, json_response
from simulators.miner import SimulatedMiner
from simulators.server import open_listening_socket

MAX_SCHEDULE_BYTES = 1 << 20
MAX_ENTRIES = 10_000
MAX_AT_S = 366 * 86400.0
MAX_PENDING = 64  # control requests with changes still waiting for their `at`
_ENTRY_KEYS = frozenset({"at", "address", "set", "clear", "fault"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


class _ScheduleLoader(yaml.SafeLoader):
    """YAML without 1.1's base-60 numbers: unquoted `chips_dying: 1:40` is the text "1:40" (board 1, 40 a
    day), not the integer 100 that `yaml.safe_load` makes of it; `weak_board: 1:0.5` is not 60.5."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_ScheduleLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ScheduleLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
_ScheduleLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


class DrillError(ValueError):
    """A fault change that cannot be applied; the message names it and what to write instead."""


class ControlBindError(OSError):
    """The control endpoint could not listen on its address."""


@dataclass(frozen=True, slots=True)
class FaultChange:
    """Set and clear some switches on the miners `address` names, `at` seconds after serving began."""

    address: str
    set: dict[str, Any] = field(default_factory=dict)  # switch -> parsed value
    clear: tuple[str, ...] = ()  # switch names; every switch when `clear_all`
    clear_all: bool = False
    at: float = 0.0
    source: str = ""  # where it was written, for messages

    def faults_for(self, current: Faults) -> Faults:
        base = HEALTHY if self.clear_all else current.with_changes(**{n: getattr(HEALTHY, n) for n in self.clear})
        return base.with_changes(**self.set)

    def describe(self) -> str:
        parts = ["clear all"] if self.clear_all else [f"clear {','.join(self.clear)}"] if self.clear else []
        parts += [f"{name}={HEALTHY.with_changes(**{name: value}).as_json().get(name, 'off')}"
                  for name, value in self.set.items()]
        return f"{self.address}: {' '.join(parts) or 'no change'}"


# -- parsing --------------------------------------------------------------------------------------


def parse_fault_arg(text: str, source: str = "--fault") -> FaultChange:
    """`ADDRESS:NAME[=VALUE]` -> a change (NAME=off clears it)."""
    where = f"{source} {text!r}"
    if len(text) > 1000:
        raise DrillError(f"{source}: longer than 1000 characters")
    left, eq, value = text.partition("=")
    address, colon, name = left.strip().rpartition(":")
    name = name.strip()
    if not colon or not address or not name or name.isdigit():  # `HOST:PORT` alone: a port, no switch
        raise DrillError(f"{where}: write ADDRESS:NAME[=VALUE], e.g. 127.10.0.1:4028:fan_failing=0 "
                         f"(ADDRESS: HOST:PORT, HOST or *)")
    return FaultChange(address.strip(), _parse_set({name: value if eq else None}, where), source=where)


def _parse_set(values: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in values.items():
        if not isinstance(name, str) or name not in FAULT_NAMES:
            raise DrillError(f"{where}: unknown fault {name!r}; known: {', '.join(sorted(FAULT_NAMES))}")
        try:
            out[name] = parse_value(name, raw)
            HEALTHY.with_changes(**{name: out[name]})  # range checks happen here
        except FaultValueError as exc:
            raise DrillError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise DrillError(f"{where}: {name}: {exc}; write {name}={form(name)}") from None
    return out


def _parse_at(raw: Any, where: str) -> float:
    if raw is None:
        return 0.0
    if isinstance(raw, bool):
        raise DrillError(f"{where}: at must be seconds (or 90s / 5m / 2h), got {raw!r}")
    if isinstance(raw, (int, float)):
        at = float(raw)
    else:
        m = _DURATION.match(str(raw))
        if m is None:
            raise DrillError(f"{where}: at must be seconds (or 90s / 5m / 2h), got {raw!r}")
        at = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if not math.isfinite(at) or not 0 <= at <= MAX_AT_S:
        raise DrillError(f"{where}: at must be between 0 and {MAX_AT_S:g} seconds, got {raw!r}")
    return at


def parse_change(entry: Any, where: str) -> FaultChange:
    """One schedule entry or control request: {at?, address, set?: {...}, clear?: [...] | all} or
    {at?, fault: "ADDRESS:NAME[=VALUE]"}."""
    if not isinstance(entry, dict):
        raise DrillError(f"{where}: expected a mapping with address and set/clear, got {type(entry).__name__}")
    unknown = set(entry) - _ENTRY_KEYS
    if unknown:
        raise DrillError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; an entry has "
                         "at, address, set, clear (or at, fault)")
    at = _parse_at(entry.get("at"), where)
    if "fault" in entry:
        if set(entry) - {"fault", "at"}:
            raise DrillError(f"{where}: `fault` stands alone (with `at`); use address/set/clear instead")
        if not isinstance(entry["fault"], str):
            raise DrillError(f"{where}: fault must be text: ADDRESS:NAME[=VALUE]")
        change = parse_fault_arg(entry["fault"], where)
        return FaultChange(change.address, change.set, at=at, source=where)
    address = entry.get("address")
    if not isinstance(address, str) or not address.strip():
        raise DrillError(f"{where}: address missing: HOST:PORT, HOST or *")
    raw_set = entry.get("set") or {}
    if not isinstance(raw_set, dict):
        raise DrillError(f"{where}: set must map switch names to values, e.g. set: {{fan_failing: '0:50'}}")
    raw_clear = entry.get("clear") or []
    clear_all = raw_clear == "all"
    if clear_all:
        raw_clear = []
    if isinstance(raw_clear, str):
        raw_clear = [raw_clear]
    if not isinstance(raw_clear, list) or not all(isinstance(n, str) for n in raw_clear):
        raise DrillError(f"{where}: clear must be `all` or a list of switch names")
    bad = [n for n in raw_clear if n not in FAULT_NAMES]
    if bad:
        raise DrillError(f"{where}: cannot clear unknown fault(s) {bad}; known: {', '.join(sorted(FAULT_NAMES))}")
    if not raw_set and not raw_clear and not clear_all:
        raise DrillError(f"{where}: nothing to do: give set and/or clear")
    return FaultChange(address.strip(), _parse_set(raw_set, where), tuple(raw_clear), clear_all, at, where)


def load_schedule(path: Path) -> list[FaultChange]:
    """A schedule file (YAML or JSON): a list of entries, or {faults: [...]}; sorted by `at`."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SCHEDULE_BYTES + 1)
    except OSError as exc:
        raise DrillError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SCHEDULE_BYTES:
        raise DrillError(f"{path}: larger than {MAX_SCHEDULE_BYTES // 1024} KiB; split the drill")
    try:
        doc = yaml.load(data.decode("utf-8"), Loader=_ScheduleLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DrillError(f"{path}: not YAML or JSON: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise DrillError(f"{path}: nested too deeply to be a drill") from None
    if isinstance(doc, dict) and set(doc) == {"faults"}:
        doc = doc["faults"]
    if not isinstance(doc, list) or not doc:
        raise DrillError(f"{path}: expected a list of entries (at, address, set/clear), got "
                         f"{type(doc).__name__ if doc is not None else 'nothing'}")
    if len(doc) > MAX_ENTRIES:
        raise DrillError(f"{path}: {len(doc)} entries, at most {MAX_ENTRIES}")
    changes = [parse_change(entry, f"{path} entry {i + 1}") for i, entry in enumerate(doc)]
    return sorted(changes, key=lambda c: c.at)


# -- applying -------------------------------------------------------------------------------------


# `fleet` below is a simulators.fleet.Fleet (not imported: fleet.py imports the firmwares, this the miner only).


def targets(fleet: Any, change: FaultChange) -> list[SimulatedMiner]:
    try:
        return fleet.select(change.address)
    except KeyError as exc:
        raise DrillError(f"{change.source}: {exc.args[0]}") from None


def check(fleet: Any, changes: Sequence[FaultChange]) -> None:
    """Every change names miners that exist and fits each one's boards and fans (applies nothing)."""
    for change in changes:
        for miner in targets(fleet, change):
            try:
                change.faults_for(HEALTHY).check(miner.spec.boards, miner.spec.fans, miner.spec.key)
            except FaultValueError as exc:
                raise DrillError(f"{change.source}: {miner.address}: {exc}") from None


def apply(fleet: Any, change: FaultChange) -> list[SimulatedMiner]:
    """Apply to every miner it names (all checked first, so it applies to all or to none)."""
    miners = targets(fleet, change)
    new: list[tuple[SimulatedMiner, Faults]] = []
    for miner in miners:
        try:
            faults = change.faults_for(miner.faults)
            faults.check(miner.spec.boards, miner.spec.fans, miner.spec.key)
        except (FaultValueError, TypeError) as exc:
            raise DrillError(f"{change.source}: {miner.address}: {exc}") from None
        new.append((miner, faults))
    for miner, faults in new:
        miner.faults = faults
    return miners


async def run_schedule(fleet: Any, changes: Sequence[FaultChange], log: Callable[[str], None] = lambda _: None,
                       started: float | None = None) -> None:
    """Apply each change when its `at` comes (seconds of the event loop's clock after `started`)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() if started is None else started
    for change in sorted(changes, key=lambda c: c.at):
        delay = t0 + change.at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            apply(fleet, change)
        except DrillError as exc:  # a board index the model has not: checked at start, but say so, go on
            log(f"fault change skipped: {exc}")
            continue
        log(f"fault +{change.at:g}s {change.describe()}")


# -- the control endpoint -------------------------------------------------------------------------


def check_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise DrillError(f"--control {host}: the control endpoint takes no credentials, so it listens on "
                         "loopback only; give 127.0.0.1:PORT")


class ControlServer:
    """`GET /faults`, `POST /faults` (one entry or a list; `at` = seconds from now), `GET /commands`."""

    server_header = "hashfleet-simulate"

    def __init__(self, fleet: Any, host: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] = lambda _: None) -> None:
        check_loopback(host)
        self.fleet = fleet
        self.host, self.port = host, port
        self.log = log
        self.conns: set[HttpConnection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            sock = open_listening_socket(self.host, self.port)
        except OSError as exc:
            raise ControlBindError(exc.errno, f"cannot listen for the control endpoint on {self.host}:{self.port}: "
                                              f"{exc.strerror or exc}. Pick another --control port, or free it.") from exc
        self.port = sock.getsockname()[1]
        self._server = await self.loop.create_server(lambda: HttpConnection(self), sock=sock)  # type: ignore[arg-type]

    async def stop(self) -> None:
        for task in self._pending:
            task.cancel()
        if self._server is not None:
            self._server.close()
            for conn in list(self.conns):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()
            self._server = None

    def dispatch(self, conn: HttpConnection, request: HttpRequest) -> None:
        try:
            response = self.handle(request)
        except Exception as exc:  # a bug must cost this answer, not the simulator
            response = json_response({"error": f"internal error: {exc}"}, 500)
        conn.write(response, head_only=request.method == "HEAD", keep_alive=request.keep_alive)

    def handle(self, request: HttpRequest) -> HttpResponse:
        route = (request.method, request.path.rstrip("/"))
        if route == ("GET", "/faults"):
            return json_response({"miners": [{"address": m.address, "model": m.spec.key, "faults": m.faults.as_json()}
                                             for m in self.fleet.miners]})
        if route == ("GET", "/commands"):
            commands = self.fleet.commands()
            return json_response({"total": self.fleet.command_log.total, "commands": [c.as_json() for c in commands]})
        if route == ("POST", "/faults"):
            return self._post_faults(request)
        if request.path.rstrip("/") in ("/faults", "/commands"):
            return json_response({"error": f"{request.method} not allowed on {request.path}"}, 405)
        return json_response({"error": "not found: GET /faults, POST /faults, GET /commands"}, 404)

    def _post_faults(self, request: HttpRequest) -> HttpResponse:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError, RecursionError):  # (100,000 '[' is too deep for json: not a 500)
            return json_response({"error": "body must be JSON: {\"address\": ..., \"set\": {...}, \"clear\": [...]}"}, 400)
        entries = body if isinstance(body, list) else [body]
        if len(entries) > MAX_ENTRIES:
            return json_response({"error": f"at most {MAX_ENTRIES} entries"}, 400)
        try:
            changes = [parse_change(e, f"POST /faults entry {i + 1}") for i, e in enumerate(entries)]
            check(self.fleet, changes)
            now = [c for c in changes if c.at == 0]
            later = [c for c in changes if c.at > 0]
            if later and len(self._pending) >= MAX_PENDING:
                return json_response({"error": f"{MAX_PENDING} requests with changes still to come are pending; "
                                               "wait for them, or restart the simulator"}, 429)
            for change in now:
                apply(self.fleet, change)
                self.log(f"fault (control) {change.describe()}")
        except DrillError as exc:
            return json_response({"error": str(exc)}, 400)
        if later:
            task = asyncio.ensure_future(run_schedule(self.fleet, later, self.log))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return json_response({"applied": [c.describe() for c in now], "scheduled": [c.describe() for c in later]})
