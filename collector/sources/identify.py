"""Find out what answers at an address and which reader reads it: a native reader (Avalon,
stock Antminer, Whatsminer, Braiins OS+), pyasic, or nothing.

Avalons are recognised by their CGMiner `version` reply (one cheap request): its `PROD`, where Canaan's
firmware names the unit ("AvalonMiner 1246-83", "Avalon Q"; the word elsewhere, as in a Whatsminer's
`fw_ver`, names nothing); controllers of AvalonMiner 7xx-9xx chains (whose `version` names no make) by
their `estats`;
everything else goes through pyasic's detection, which probes the web UI and
port 4028 itself. A make and firmware a native reader covers is then handed to
it (it takes make, model, boards and chips from pyasic's detection and fetches
what it reads rarely, e.g. the MAC); pyasic reads everything else, and any make
the config's `readers` sends to pyasic. Every step has an explicit timeout, and
callers bound how many run at once (`Gates`): pyasic's own limit does not
(DESIGN.md section 5: an unbounded gather over 1,000 addresses found none).
pyasic's web answers are capped and not followed to another host
(collector/sources/pyasic_http.py); one it refused is named in the address's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.sources import antminer, avalon, avalon_chain, braiins, reply_values, whatsminer
from collector.sources import cgminer_client as cgminer
from collector.sources import pyasic_http
from collector.sources import pyasic_makes as pyasic_source
from collector.sources.profile import from_pyasic
from collector.sources.targets import CGMINER_PORT, Target

WEB_PORT = 80
# Canaan's firmware names the unit in `version` PROD ("AvalonMiner 15-194", "Avalon Nano3s": docs/avalon.md
# section 8). Read in the bytes, so that a reply that does not parse is still an Avalon's (its polls say
# what is wrong with it); the word anywhere else (a Whatsminer's fw_ver "...-avalon-compat") names nothing.
_AVALON_PROD = re.compile(rb'"PROD"\s*:\s*"\s*avalon', re.IGNORECASE)

AVALON = "avalon"
PYASIC = "pyasic"
ANTMINER = "antminer"
WHATSMINER = "whatsminer"
BRAIINS = "braiins"


def _antminer(target: Target, miner: Any) -> antminer.Antminer:
    return antminer.Antminer(target.host, target.port, from_pyasic(miner), antminer.web_auth(miner))


def _whatsminer(target: Target, miner: Any) -> whatsminer.Whatsminer:
    return whatsminer.Whatsminer(target.host, target.port, from_pyasic(miner))


def _braiins(target: Target, miner: Any) -> braiins.Braiins:
    return braiins.Braiins(target.host, target.port, from_pyasic(miner), miner)  # keeps pyasic's gRPC client


# The native readers of makes pyasic detects: which detected miners each covers, how it is made.
NATIVE: dict[str, tuple[Callable[[Any], bool], Callable[[Target, Any], Any]]] = {
    ANTMINER: (antminer.covers, _antminer),
    WHATSMINER: (whatsminer.covers, _whatsminer),
    BRAIINS: (braiins.covers, _braiins),
}


# pyasic's detection logs a warning per probe per address ("Socket ping timeout") on the root
# logger; callers report failed identifications themselves, counted and summed up.
PYASIC_DETECTION_LOG = "pyasic/miners/factory.py"

PYASIC_DETECT_S = 5.0  # pyasic probes with its own 3 s cap; this bounds the whole detection
# An address whose API answered our `version` is a miner, maybe a slow one, and pyasic's 3 s a step cut it
# off: a simulated S21 answering each request in 2.5 s was an "AntminerUnknown" without a model, or nothing,
# and never polled after a restart (trial Q, L3). pyasic detects in up to PYASIC_STEPS steps one after the
# other (the make, the model, a Whatsminer's firmware); its first sends `version` and `devdetails` at once,
# which an API answering one connection at a time (as the simulators' do) answers one after the other. So
# such an address gets 2 x timeout_s a step (at least pyasic's 3 s), PYASIC_STEPS of them in all.
PYASIC_STEPS = 3
PYASIC_STEP_S = 3.0  # pyasic's own factory_get_timeout


class NoMinerFound(Exception):
    """Nothing recognisable answers at an address; the message says what happened."""


class AnswersUnidentified(NoMinerFound):
    """The address's CGMiner API answered, but identification did not recognise what answers (or did not
    finish in time): a miner, most likely, to be counted and tried again, never dropped."""


class _QuietDetection(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.WARNING and record.pathname.replace("\\", "/").endswith(PYASIC_DETECTION_LOG))


logging.getLogger().addFilter(_QuietDetection())


@dataclass(frozen=True)
class Gates:
    """How many identifications may be at each step at once: the CGMiner probe is one cheap
    connection; pyasic's detection costs CPU (several probes and an HTTP client) and up to its cap."""

    probe: asyncio.Semaphore
    detect: asyncio.Semaphore

    @classmethod
    def of(cls, probes: int, detections: int) -> Gates:
        return cls(asyncio.Semaphore(probes), asyncio.Semaphore(detections))


@dataclass
class Identity:
    target: Target
    driver: str  # AVALON | PYASIC
    make: str | None = None
    model: str | None = None
    pyasic_miner: Any = None  # what pyasic reads (driver PYASIC)
    miner_id: str | None = None  # the MAC-based id its samples carry, when identification learnt the MAC
    reader: Any = None  # a native reader's per-miner object (ANTMINER, WHATSMINER, BRAIINS): `await reader.poll(...)`
    model_told: bool = True  # False: pyasic's detection fell back to the make's own class (`_model_untold`)


def may_need_pyasic(targets: list[Target]) -> bool:
    """Could identifying one of these take pyasic's detection? Only addresses on its fixed ports can."""
    return any(t.port in (CGMINER_PORT, WEB_PORT) for t in targets)


def load_pyasic() -> None:
    """Import pyasic now: its import takes ~1 s and blocks the event loop, so a service does it
    before its first cycle rather than in the middle of one."""
    pyasic_source._import_pyasic()


async def identify(target: Target, timeout_s: float = 5.0, gates: Gates | None = None,
                   readers: Mapping[str, str] | None = None) -> Identity:
    """What answers at `target`; raises NoMinerFound when nothing recognisable does (AnswersUnidentified when
    its API answered). Takes at most `timeout_s` for the CGMiner probe plus max(timeout_s, PYASIC_DETECT_S)
    for pyasic's detection (PYASIC_STEPS x `_patient_step_s` when the probe was answered) and `timeout_s`
    for a native reader's first rare reads, besides any wait at the `gates`.
    `readers` maps a make to "pyasic" to have pyasic read it instead of its native reader."""
    readers = readers or {}
    if target.port == WEB_PORT:  # a web-only device (Bitaxe): no CGMiner API to ask
        return await _pyasic_identity(target, timeout_s, f"{target.address}: no make pyasic knows answers", gates,
                                      readers)
    try:
        async with gates.probe if gates is not None else contextlib.nullcontext():
            raw = await cgminer.request(target.host, target.port, "version", timeout_s=timeout_s)
        why = f"{target.address}: answers, but neither as an Avalon nor as a make pyasic knows"
    except cgminer.MinerUnreachable as e:
        raw, why = b"", str(e)
    if readers.get(AVALON, "native") == "native" and _AVALON_PROD.search(raw):
        version = _version_entry(raw, target.address)  # {} if the reply is broken: its polls say how
        return Identity(target, AVALON, make=avalon.MAKE, model=reply_values.text(version.get("PROD")),
                        miner_id=reply_values.mac(version.get("MAC")))
    if readers.get(AVALON, "native") == "native" and _bare_cgminer(_version_entry(raw, target.address)):
        # A controller of AvalonMiner 7xx-9xx chains names neither make nor model in `version`
        # (cgminer's own fields only); its estats tell: AUC entries carrying `MM ID1..n` modules.
        async with gates.probe if gates is not None else contextlib.nullcontext():
            model = await _chain_model(target, timeout_s)
        if model is not None:
            return Identity(target, AVALON, make=avalon.MAKE, model=model)
    if target.port != CGMINER_PORT:  # pyasic's detection only knows the standard ports
        raise (AnswersUnidentified if raw else NoMinerFound)(why)
    return await _pyasic_identity(target, timeout_s, why, gates, readers, answered=bool(raw))


def _version_entry(raw: bytes, where: str) -> dict[str, Any]:
    """`VERSION[0]` of a CGMiner `version` reply; {} for anything else (no answer, another shape)."""
    try:
        version = (cgminer.section(cgminer.decode(raw, where), "version", where).get("VERSION") or [{}])[0]
    except (cgminer.MinerReplyError, AttributeError, IndexError, KeyError, TypeError):
        return {}
    return version if isinstance(version, dict) else {}


def _bare_cgminer(version: dict[str, Any]) -> bool:
    """A `version` entry with cgminer's own fields and nothing that names a make (no PROD, Type, ...)."""
    return "CGMiner" in version and set(version) <= _CGMINER_VERSION_KEYS


# What cgminer itself puts in `version`; makes add their own keys (PROD, Type, Miner, ...).
_CGMINER_VERSION_KEYS = frozenset({"CGMiner", "API"})


async def _chain_model(target: Target, timeout_s: float) -> str | None:
    """The chain's model ("AvalonMiner 741 chain") when the estats at `target` are a controller chain's."""
    try:
        raw = await cgminer.request(target.host, target.port, "estats", timeout_s=timeout_s)
        estats = cgminer.section(cgminer.decode(raw, target.address), "estats", target.address)
        if not avalon_chain.is_chain(estats):
            return None
        return avalon_chain.read(estats, {}, target.address).model
    except (cgminer.CGMinerError, ValueError, TypeError, AttributeError):
        return None


def _patient_step_s(timeout_s: float) -> float:
    """pyasic's cap on each detection step for an address whose API answered within `timeout_s`."""
    return max(PYASIC_STEP_S, 2.0 * timeout_s)


async def _pyasic_identity(target: Target, timeout_s: float, why: str, gates: Gates | None,
                           readers: Mapping[str, str], *, answered: bool = False) -> Identity:
    step_s = _patient_step_s(timeout_s) if answered else None
    cap_s = PYASIC_STEPS * step_s if step_s is not None else max(timeout_s, PYASIC_DETECT_S)
    async with gates.detect if gates is not None else contextlib.nullcontext():
        with pyasic_http.noting_refusals() as refused:
            miner = await pyasic_source.detect(target.host, timeout_s=cap_s, step_s=step_s)
    if miner is None:
        if answered:
            why = f"{why} within {cap_s:g} s"
        raise (AnswersUnidentified if answered else NoMinerFound)(f"{why}; {refused[0]}" if refused else why)
    make = str(getattr(miner, "make", None) or "") or None
    model = str(getattr(miner, "model", None) or "") or None
    if target.port == CGMINER_PORT:  # the native readers speak to the port pyasic found the miner on
        for name, (covers, make_reader) in NATIVE.items():
            if readers.get(name, "native") == "native" and covers(miner):
                reader = make_reader(target, miner)
                await reader.prepare(timeout_s)
                return Identity(target, name, make=make, model=model, reader=reader, miner_id=reader.mac)
    return Identity(target, PYASIC, make=make, model=model, pyasic_miner=miner, model_told=not _model_untold(miner))


def _model_untold(miner: Any) -> bool:
    """pyasic's detection fell back to a make's own class: the make answered, its model did not (a reply it
    could not read just then, or a model it does not know); such a class reads less (a bare BitAxe: no
    temperatures, fans or boards)."""
    from pyasic.miners.factory import MINER_CLASSES

    return any(type(miner) is classes.get(None) for classes in MINER_CLASSES.values())


async def listening(target: Target, timeout_s: float, gates: Gates | None = None) -> bool:
    """Does anything accept a TCP connection at `target` (and, for the CGMiner port, on the web port, where
    pyasic's detection finds a miner whose API is off)? One connect each, nothing sent: a cheap test of whether
    identification can find anything (both refused: ~0.2 ms of CPU; pyasic's detection of a refusing address
    ~2 ms; docs/benchmarks.md)."""
    ports = (target.port, WEB_PORT) if target.port == CGMINER_PORT else (target.port,)
    async with gates.probe if gates is not None else contextlib.nullcontext():
        return any(await asyncio.gather(*(_accepts(target.host, port, timeout_s) for port in ports)))


async def _accepts(host: str, port: int, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, host, port)
    except (OSError, TimeoutError):
        return False
    transport.close()  # nothing sent: a bare protocol, no stream objects
    return True


async def attempt(target: Target, timeout_s: float, gates: Gates | None = None,
                  readers: Mapping[str, str] | None = None) -> Identity | str:
    """`identify`, never raising: the Identity, or why nothing was identified (a message that
    names the address)."""
    outcome = await _attempt(target, timeout_s, gates, readers)
    return outcome if isinstance(outcome, Identity) else str(outcome)


async def _attempt(target: Target, timeout_s: float, gates: Gates | None,
                   readers: Mapping[str, str] | None) -> Identity | NoMinerFound:
    try:
        return await identify(target, timeout_s, gates, readers)
    except NoMinerFound as e:
        return e
    except Exception as e:  # pyasic raises many kinds; one odd address must not stop the others
        return NoMinerFound(f"{target.address}: identification failed: {type(e).__name__}: {e}")


async def scan(
    targets: list[Target], *, concurrency: int = 256, timeout_s: float = 3.0, detect_concurrency: int = 50,
    on_progress: Callable[[int, int], None] | None = None, on_found: Callable[[Identity], None] | None = None,
    readers: Mapping[str, str] | None = None, on_unidentified: Callable[[Target, str], None] | None = None,
) -> list[Identity]:
    """Identify many addresses at once: at most `concurrency` probes and `detect_concurrency` pyasic
    detections in flight. `on_found` is called with each miner as it is found, `on_unidentified` with each
    address whose API answered but that was not identified, and why."""
    gates = Gates.of(concurrency, min(concurrency, detect_concurrency))
    found: list[Identity | None] = [None] * len(targets)
    queue = enumerate(targets)
    done = 0

    # `concurrency` workers taking the next address as they finish one: a coroutine per address held a
    # /16's 65,536 at once (~370 MB at its peak; docs/benchmarks.md).
    async def worker() -> None:
        nonlocal done
        for i, target in queue:
            try:
                outcome = await _attempt(target, timeout_s, gates, readers)
            finally:
                done += 1
                if on_progress:
                    on_progress(done, len(targets))
            if isinstance(outcome, NoMinerFound):
                if isinstance(outcome, AnswersUnidentified) and on_unidentified:
                    on_unidentified(target, str(outcome))
                continue
            found[i] = outcome
            if on_found:
                on_found(outcome)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(targets)))))
    return [identity for identity in found if identity is not None]
