"""Every make other than Avalon, read through pyasic (unchanged).

pyasic detects the make and firmware (Antminer stock, Whatsminer, Bitaxe,
Braiins OS, LuxOS, VNish, ...; one flaw of its detection corrected: `_detection`) and reads it; this module caches the detected
miner objects, bounds the time each call may take, and maps pyasic's MinerData
into MinerSample (its error list also as fault codes, as the native readers report
them). pyasic's own `limit` does not bound concurrency (DESIGN.md section 5); the
caller bounds it. pyasic's HTTP is bounded in size and kept on the miner's own
address by collector/sources/pyasic_http.py, its RPC and detection sockets in size and life by
collector/sources/pyasic_rpc.py, its gRPC messages (BOS+) in size by collector/sources/pyasic_grpc.py;
an answer any of them refused is the sample's reason.

Every call into pyasic goes through `within`, not asyncio.wait_for: pyasic can lose a cancel (its
detection's `concurrent_get_first_result`, and Python 3.11's wait_for when the read it cancels has just
completed), and wait_for then waits on for a task that reads on. `within` gives up on such a task
without waiting for it; pyasic_rpc ends its sockets with the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import warnings
from datetime import datetime
from collections.abc import Coroutine
from typing import Any, TypeVar

from collector.sources import plausibility, pyasic_grpc, pyasic_http, pyasic_rpc, reply_values, whatsminer
from collector.sources.reply_values import board_named, code
from models import BoardSample, FaultCode, MinerSample, MinerState, PoolInfo, SampleSource
from models.base import printable
from models.sample import (
    MAX_BOARDS,
    MAX_CHIPS_PER_BOARD,
    MAX_ERROR_CHARS,
    MAX_ERRORS,
    MAX_FAN_RPM,
    MAX_FANS,
    MAX_TEXT_CHARS,
    MAX_UPTIME_S,
    SENSOR_MAX_C,
    SENSOR_MIN_C,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_HASH_PER_TH = 1e12

# What MinerSample has no use for. Each is one more RPC or web request per miner per cycle
# (an Antminer's config and LED state are two digest-auth web calls).
_NOT_NEEDED = ["serial_number", "psu_serial_number", "api_ver", "hostname", "fan_psu", "fault_light", "config"]


def _import_pyasic():
    """Import pyasic on first use (~1 s and ~30 MB; Avalon-only sites never need it), undoing what its
    import does to logging: it sets the root logger to WARNING, which silenced the service's own log.
    The warnings its import raises (asyncssh's) are shown once the level is back, where the command
    sends them (the log at DEBUG: collector/commands/__init__.py). Every HTTP exchange pyasic makes
    from then on goes through collector/sources/pyasic_http.py (size caps, no redirect elsewhere), every
    RPC and detection socket through collector/sources/pyasic_rpc.py (size cap, no longer than its call),
    every gRPC message through collector/sources/pyasic_grpc.py (size cap)."""
    root = logging.getLogger()
    level = root.level
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("default")
        import pyasic

    root.setLevel(level)
    pyasic_http.install()
    pyasic_rpc.install()
    pyasic_grpc.install()
    for w in raised:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return pyasic


async def within(call: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """Await a call into pyasic for at most `timeout_s`, else TimeoutError. A call still running then is
    cancelled but not waited for (pyasic may swallow the cancel): the sockets it opened end now
    (pyasic_rpc.closing_at) and it can open no more, so it ends by itself. Cancelling the caller
    cancels it too."""
    loop = asyncio.get_running_loop()
    with pyasic_rpc.closing_at(loop.time() + timeout_s):
        task = asyncio.ensure_future(call)  # copies the context: the deadline, noting_refusals' list
    task.add_done_callback(_retrieve)
    try:
        await asyncio.wait({task}, timeout=timeout_s)
    finally:
        if not task.done():
            task.cancel()
    if not task.done():
        raise TimeoutError
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """An abandoned call's outcome is nobody's: read it, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def detect(host: str, timeout_s: float = 10.0, step_s: float | None = None) -> Any | None:
    """pyasic's miner object for `host` (port 4028/80 are pyasic's own), or None. `step_s`: how long each of
    its detection's steps may take, in place of its own `factory_get_timeout` (3 s), for this call only."""
    pyasic = _import_pyasic()
    _step_aware()
    step = _STEP_S.set(step_s)
    try:
        return await within(_detection(pyasic).get_miner(host), timeout_s)
    except TimeoutError:
        return None
    except Exception as e:  # pyasic raises many kinds; one odd miner must not stop a scan
        log.debug("%s: pyasic detection failed: %r", host, e)
        return None
    finally:
        _STEP_S.reset(step)


# One detection's step cap (`detect`'s step_s), in the context its tasks copy; None: pyasic's own setting.
_STEP_S: contextvars.ContextVar[float | None] = contextvars.ContextVar("pyasic_detection_step_s", default=None)


class _DetectionSettings:
    """pyasic's settings as its detection (pyasic.miners.factory, and only it: reads elsewhere are untouched)
    sees them: `factory_get_timeout`, its cap on each step, read at each step, from `_STEP_S` where a detection
    set one (a global setting would make every address's detection as patient as one slow miner's)."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings

    def get(self, key: str, other: Any = None) -> Any:
        if key == "factory_get_timeout" and (step := _STEP_S.get()) is not None:
            return step
        return self._settings.get(key, other)

    def __getattr__(self, name: str) -> Any:  # transport (pyasic_http's, looked up at each call), update, ...
        return getattr(self._settings, name)


def _step_aware() -> None:
    from pyasic.miners import factory

    if not isinstance(factory.settings, _DetectionSettings):
        factory.settings = _DetectionSettings(factory.settings)


@functools.cache
def _detection(pyasic: Any) -> Any:
    """pyasic 0.79's detection (its MinerFactory) with one correction. Its RPC probe sends `version` and
    `devdetails` at once and takes the first reply holding a make's word, "avalon" anywhere in the text
    among them: a Whatsminer whose `fw_ver` says "-avalon-compat" was an Avalon whenever `version`
    answered first. An Avalon verdict is checked against `devdetails` (btminer's `Driver` "bitmicro"),
    whose make wins; a real Avalon's names an Avalon there too."""
    from pyasic.miners.factory import MinerFactory, MinerTypes

    class Detection(MinerFactory):
        async def _get_miner_socket(self, ip: str) -> Any:
            found = await super()._get_miner_socket(ip)
            if found is MinerTypes.AVALONMINER:
                details = await self._socket_ping(ip, "devdetails")
                named = self._parse_socket_type(details) if details else None
                return named or found
            return found

    return Detection()


async def poll(
    miner: Any, *, host: str, port: int, site: str, ts: datetime, timeout_s: float = 10.0, known_id: str | None = None
) -> MinerSample:
    """Read one detected miner; never raises for a misbehaving miner."""
    miner_id = known_id or f"{host}:{port}"
    with pyasic_http.noting_refusals() as refused:
        try:
            data = await within(miner.get_data(exclude=_NOT_NEEDED), timeout_s)
        except TimeoutError:
            return _offline(miner_id, host, port, site, ts, f"{host}: no data within {timeout_s:g} s")
        except Exception as e:
            if refused:
                return _unread(miner_id, host, port, site, ts, f"{host}: {refused[0]}")
            if _caused_by_network(e):
                return _offline(miner_id, host, port, site, ts, f"{host}: not answering ({type(e).__name__})")
            return MinerSample(miner=miner_id, host=host, port=port, site=site, ts=ts, state=MinerState.ERROR,
                               source=SampleSource.PYASIC, errors=[f"{host}: pyasic failed: {e!r}"])
    # pyasic 0.79 hides connection errors: an unreachable Antminer comes back as empty data with
    # is_mining=True. No hashrate, no uptime and no MAC means nothing answered (or nothing was read).
    if data.hashrate is None and data.uptime is None and not data.mac:
        if refused:
            return _unread(miner_id, host, port, site, ts, f"{host}: {refused[0]}")
        # (pyasic hides which: "no answer" was said of a unit answering malformed replies too, trial ZF)
        return _offline(miner_id, host, port, site, ts, f"{host}: nothing read through pyasic (RPC 4028, web 80): no "
                                                        "answer, or one it could not read")
    sample = from_miner_data(data, host=host, port=port, site=site, ts=ts, make=_make_of(miner))
    if known_id and not sample.mac:
        sample = sample.model_copy(update={"miner": known_id})
    return sample


def _offline(miner_id: str, host: str, port: int, site: str, ts: datetime, reason: str) -> MinerSample:
    return MinerSample.offline(miner=miner_id, host=host, port=port, site=site, ts=ts, source=SampleSource.PYASIC,
                               reason=reason)


def _unread(miner_id: str, host: str, port: int, site: str, ts: datetime, reason: str) -> MinerSample:
    """It answered, but not an answer to read (pyasic_http refused it): in error, as the native readers
    report a reply over their cap."""
    return MinerSample.offline(miner=miner_id, host=host, port=port, site=site, ts=ts, source=SampleSource.PYASIC,
                               reason=reason, state=MinerState.ERROR)


def _caused_by_network(error: BaseException) -> bool:
    """True when a transport failure (refused, reset, unreachable) is anywhere in the exception chain."""
    import httpx

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (OSError, httpx.TransportError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _make_of(miner: Any) -> str | None:
    """The make pyasic's detection gave `miner`: its class's, else the family of its reader. A Bitaxe whose ASIC
    pyasic does not know is its bare BitAxe class, with no make and no model: still a Bitaxe, held to a
    Bitaxe's ceilings rather than to any unit's (plausibility)."""
    make = getattr(miner, "make", None)
    if make is not None:
        return _text(getattr(make, "value", make)) or None
    from pyasic.miners.backends.bitaxe import BitAxe

    return "BitAxe" if isinstance(miner, BitAxe) else None


def from_miner_data(data: Any, *, host: str, port: int, site: str, ts: datetime,
                    make: str | None = None) -> MinerSample:
    """pyasic's MinerData as a MinerSample (`make`: detection's, where the data names none). A value that is
    not a finite number in range, or a list over its cap, is refused like the native driver refuses it: that
    field is left empty and named, the rest is kept, and the state is what the unit does unless the hashrate
    itself is refused (MinerSample.refused). Implausible readings: collector.sources.plausibility."""
    refused: dict[str, str] = {}
    hashrate = _ths(data.hashrate, "hashrate_ths", refused)
    mac = reply_values.mac(data.mac)  # as the native readers take it: a group address, or garbage, is no id
    if "hashrate_ths" in refused:
        state = MinerState.ERROR
    elif not data.is_mining:
        state = MinerState.IDLE
    elif hashrate:
        state = MinerState.MINING
    else:
        state = MinerState.ERROR if data.errors else MinerState.IDLE
    info = data.device_info
    boards = _boards(data.hashboards, refused)
    board_temps = [t for b in data.hashboards[:MAX_BOARDS] for t in (b.temp, b.outlet_temp)]
    board_temps = [t for t in (_temp(t, "temp_board_max_c", refused) for t in board_temps) if t is not None]
    fans = _fans(data.fans, refused)
    errors = [_text(e.error_message if hasattr(e, "error_message") else e, MAX_ERROR_CHARS)
              for e in data.errors[:MAX_ERRORS]]
    codes = [_fault_code(e, text) for e, text in zip(data.errors[:MAX_ERRORS], errors) if text]
    sample = MinerSample(
        miner=mac or f"{host}:{port}", host=host, port=port, site=site, ts=ts, state=state,
        source=SampleSource.PYASIC,
        make=(_text(info.make) if info else "") or make, model=_text(info.model) or None if info else None,
        firmware=_text(data.fw_ver) or None, mac=mac,
        hashrate_ths=hashrate if state is MinerState.MINING or "hashrate_ths" in refused else 0.0,
        expected_hashrate_ths=_ths(data.expected_hashrate, "expected_hashrate_ths", refused),
        power_w=_number(data.wattage, "power_w", refused) or None,
        power_limit_w=_number(data.wattage_limit, "power_limit_w", refused),
        temp_env_c=_temp(data.env_temp, "temp_env_c", refused),
        temp_chip_max_c=max((b.temp_chip_max_c for b in boards if b.temp_chip_max_c is not None), default=None),
        temp_board_max_c=max(board_temps, default=None),
        fans_rpm=fans, boards=boards, pool=_pool(data.pools, refused),
        uptime_s=_count(data.uptime, "uptime_s", refused, MAX_UPTIME_S), errors=[e for e in errors if e],
        fault_codes=codes,
    )
    if refused:
        sample = sample.refused(refused, **{name: getattr(sample, name) for name in ("boards", "fans_rpm", "pool")
                                            if name in refused})
    return plausibility.check(sample)


def _fault_code(error: Any, text: str) -> FaultCode:
    """One of pyasic's errors as the native readers report it: a Whatsminer's code as the Whatsminer
    reader decodes it; any other (an Antminer's health list, a Braiins OS chain state: pyasic keeps
    their text only) with its text as the meaning and the chain it names ("on chain 0") as the board."""
    from pyasic.data.error_codes import WhatsminerError

    number = code(getattr(error, "error_code", None))
    if number is not None and isinstance(error, WhatsminerError):
        return whatsminer.fault_code(number)
    return FaultCode(key="pyasic", code=number or 0, board=board_named(text, "chain"),
                     meaning=text[:MAX_TEXT_CHARS])


def _boards(hashboards: list[Any], refused: dict[str, str]) -> list[BoardSample]:
    if len(hashboards) > MAX_BOARDS:
        refused["boards"] = f"{len(hashboards)} hash boards, more than the cap of {MAX_BOARDS} (MAX_BOARDS)"
        return []
    boards = []
    for position, b in enumerate(hashboards):
        index = b.slot if isinstance(b.slot, int) and 0 <= b.slot < MAX_BOARDS else position
        board = f"board {index}"
        boards.append(BoardSample(
            index=index, hashrate_ths=_ths(b.hashrate, "boards", refused, f"{board} hashrate"),
            temp_in_c=_temp(b.inlet_temp, "boards", refused, f"{board} inlet_temp"),
            temp_out_c=_temp(b.outlet_temp, "boards", refused, f"{board} outlet_temp"),
            temp_chip_max_c=_temp(b.chip_temp, "boards", refused, f"{board} chip_temp"),
            chips_ok=_count(b.chips, "boards", refused, MAX_CHIPS_PER_BOARD, f"{board} chips"),
            chips_expected=_count(b.expected_chips, "boards", refused, MAX_CHIPS_PER_BOARD, f"{board} expected_chips")))
    return boards


def _fans(fans: list[Any], refused: dict[str, str]) -> list[int]:
    if len(fans) > MAX_FANS:
        refused["fans_rpm"] = f"{len(fans)} fans, more than the cap of {MAX_FANS} (MAX_FANS)"
        return []
    speeds = (_count(f.speed, "fans_rpm", refused, MAX_FAN_RPM) for f in fans)
    return [speed for speed in speeds if speed is not None]


def _pool(pools: list[Any], refused: dict[str, str]) -> PoolInfo | None:
    pools = pools[:64]
    active = next((p for p in pools if p.active), None) or (pools[0] if pools else None)
    if active is None:
        return None
    return PoolInfo(url=_text(active.url) or None if active.url else None, user=_text(active.user) or None,
                    accepted=_count(active.accepted, "pool", refused), rejected=_count(active.rejected, "pool", refused),
                    active=active.active)


def _number(value: Any, field: str, refused: dict[str, str], low: float | None = 0.0,
            what: str | None = None) -> float | None:
    """A finite float (>= low), or None: absent, or refused with the reason under `field` (`what`
    names the value in the reason when it is part of the field, e.g. one board's)."""
    if value is None:
        return None
    what = what or field
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        refused.setdefault(field, f"reply value out of range: pyasic {what} {_shown(value)} is not a number; "
                                  f"{field} left empty")
        return None
    if number - number != 0.0:
        if number == number:  # NaN is no reading; inf is garbage
            refused.setdefault(field, f"reply value out of range: pyasic {what} {_shown(value)} is not a finite "
                                      f"number; {field} left empty")
        return None
    if low is not None and number < low:
        refused.setdefault(field, f"reply value out of range: pyasic {what} {_shown(value)} must be greater than "
                                  f"or equal to {low:g}; {field} left empty")
        return None
    return number


def _count(value: Any, field: str, refused: dict[str, str], high: float | None = None,
           what: str | None = None) -> int | None:
    number = _number(value, field, refused, what=what)
    if number is None:
        return None
    if high is not None and number > high:
        refused.setdefault(field, f"reply value out of range: pyasic {what or field} {_shown(value)} is more than "
                                  f"{high:g}; {field} left empty")
        return None
    return int(number)


def _temp(value: Any, field: str, refused: dict[str, str], what: str | None = None) -> float | None:
    number = _number(value, field, refused, low=None, what=what)
    if number is None or number <= -273:  # -273: the firmware's "no sensor"
        return None
    if not SENSOR_MIN_C <= number <= SENSOR_MAX_C:  # no running miner's sensor reads it (models/sample.py)
        refused.setdefault(field, f"reply value out of range: pyasic {what or field} {_shown(value)} is outside "
                                  f"{SENSOR_MIN_C:g}..{SENSOR_MAX_C:g} C; {field} left empty")
        return None
    return number


def _ths(rate: Any, field: str, refused: dict[str, str], what: str | None = None) -> float | None:
    if rate is None:
        return None
    try:
        number = float(rate.rate) * rate.unit.value / _HASH_PER_TH
    except (TypeError, ValueError, OverflowError, AttributeError):
        refused.setdefault(field, f"reply value out of range: pyasic {what or field} {_shown(rate)} is not a "
                                  f"hashrate; {field} left empty")
        return None
    return _number(number, field, refused, what=what)


def _text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """pyasic's text (firmware, model, an error, a pool) cut to `limit`, each control character a space."""
    return "" if value is None else printable(str(value)[:limit])


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}..."
