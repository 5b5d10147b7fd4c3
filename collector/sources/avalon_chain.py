"""Controller chains: one address, many AvalonMiner 7xx/8xx/9xx modules (docs/avalon.md section 2).

cgminer runs on a controller (a Raspberry Pi); each AUC converter is one cgminer device and one
`STATS` entry (`ID` AV70, AV71, AV80, AV90...), carrying up to six modules as `MM ID1`..`MM ID6`
(there is no `MM ID0`). Each module string has its own `Ver`, `DNA`, `Elapsed`, `GHSmm`, `Temp`,
`TMax`, `Fan[...]`, per-board `MW`/`Vi`/`Vo` and `ECHU`, and `ECMM`; no live hashrate, no per-board
hashrate and no power (the live rate is the summary's).

cgminer keeps a device entry after its AUC is lost and re-detected, so one physical module can
appear in several entries: each DNA counts once, read from its latest detection (the smallest
module `Elapsed`). Every module's boards count, numbered in one sequence across modules (module 0's
four boards are 0-3, module 1's 4-7, ...); maxima are over all modules; expected hashrate is the
sum of their GHSmm.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from collector.sources import avalon_codes
from collector.sources import cgminer_client as cgminer
from collector.sources.avalon_fields import MAX_DEVICE_STRING_CHARS, Device, parse_device_string
from collector.sources.reply_values import text as reply_text
from models import BoardSample, FaultCode
from models.hardware import nameplate
from models.sample import MAX_BOARDS, MAX_CHIPS_PER_BOARD, MAX_FAN_RPM, MAX_FANS, MAX_TEXT_CHARS

_MODULE_KEY = re.compile(r"MM ID([1-9]\d*)$")
_MODULE_VER = re.compile(r"([789]\d\d)\d{4}(?:-|$)")  # 7411706-...: model 741, firmware 2017-06
MAX_MODULE_STRINGS = 512  # before de-duplication; a real chain has at most a few dozen


@dataclass
class Chain:
    """What the modules of a chain say together (the reader adds summary, pools and version)."""

    model: str | None = None
    firmware: str | None = None
    expected_ghs: float | None = None
    temp_chip_max_c: float | None = None
    fans_rpm: list[int] = field(default_factory=list)
    boards: list[BoardSample] = field(default_factory=list)
    fault_codes: list[FaultCode] = field(default_factory=list)
    modules: int = 0
    entries: int = 0  # module strings before de-duplication


def is_chain(stats: dict[str, Any]) -> bool:
    """Does this estats section come from a controller chain (modules in `MM ID1..n`, no `MM ID0`)?"""
    entries = stats.get("STATS")
    if not isinstance(entries, list) or not entries:
        return False
    first = entries[0]
    if isinstance(first, dict) and ("MM ID0" in first or "MM ID0:Summary" in first):
        return False  # a single unit, the common case: decided without looking at every key
    found = False
    for entry in entries[:MAX_MODULE_STRINGS]:
        if not isinstance(entry, dict):
            continue
        for key in entry:
            if key.startswith("MM ID0"):
                return False
            if not found and _MODULE_KEY.match(key):
                found = True
    return found


def read(stats: dict[str, Any], refused: dict[str, str], where: str) -> Chain:
    """The chain's modules, each DNA once. Values that cannot be used are refused into `refused`."""
    modules, entries = _distinct_modules(stats, where)
    chain = Chain(modules=len(modules), entries=entries)
    if not modules:
        return chain
    models: list[str] = []
    firmwares: list[str] = []
    expected = 0.0
    expected_seen = False
    temps = []
    board = 0
    for number, keys in enumerate(modules):
        dev = Device(keys, refused)
        ver = keys.get("Ver", "")
        match = _MODULE_VER.match(ver)
        if match and match.group(1) not in models:
            models.append(match.group(1))
        if ver and ver not in firmwares:
            firmwares.append(ver[:64])
        ghs = dev.num("GHSmm", "expected_hashrate_ths")
        if ghs is not None:
            expected, expected_seen = expected + ghs, True
        temp = dev.chip_temp("TMax", "temp_chip_max_c")
        if temp is not None:
            temps.append(temp)
        chain.fans_rpm += _module_fans(dev)
        count = _board_count(dev)
        if board + count > MAX_BOARDS:
            dev.refuse("boards", f"MM ID (module {number})", "...", f"is a board more than the cap of {MAX_BOARDS}")
            break
        chips = _chips_per_board(dev, count, match.group(1) if match else None)
        chain.boards += [BoardSample(index=board + i, chips_expected=chips) for i in range(count)]
        echu = dev.codes("ECHU", "errors")
        ecmm = dev.codes("ECMM", "errors")
        chain.fault_codes += avalon_codes.unit_codes(echu, ecmm, None, avalon_codes.generation(ver),
                                                     first_board=board, ecmm_key=f"ECMM module {number}")
        board += count
    chain.model = (f"AvalonMiner {'/'.join(models)} chain" if models else "AvalonMiner chain")[:MAX_TEXT_CHARS]
    chain.firmware = reply_text(" / ".join(firmwares)) or None  # (the modules' words: cut, no control characters)
    chain.expected_ghs = expected if expected_seen else None
    chain.temp_chip_max_c = max(temps, default=None)
    if len(chain.fans_rpm) > MAX_FANS:
        refused.setdefault("fans_rpm", f"reply value out of range: {len(chain.fans_rpm)} module fans are more "
                                       f"than the cap of {MAX_FANS}; fans_rpm left empty")
        chain.fans_rpm = []
    return chain


def _distinct_modules(stats: dict[str, Any], where: str) -> tuple[list[dict[str, str]], int]:
    """Every module string's keys, each DNA once (its latest detection, in the place of its first)."""
    order: list[str] = []
    latest: dict[str, tuple[float, dict[str, str]]] = {}
    strings = chars = 0
    for entry in stats.get("STATS") or ():
        if not isinstance(entry, dict):
            continue
        for key, text in entry.items():
            if not isinstance(text, str) or not _MODULE_KEY.match(key):
                continue
            strings += 1
            chars += len(text)
            if strings > MAX_MODULE_STRINGS or chars > MAX_DEVICE_STRING_CHARS:
                raise cgminer.MinerReplyError(
                    f"{where}: the chain's module strings pass the cap ({MAX_MODULE_STRINGS} strings, "
                    f"{MAX_DEVICE_STRING_CHARS} characters; a real chain sends a few dozen): not read")
            keys = parse_device_string(text)
            dna = keys.get("DNA") or f"{entry.get('ID')}/{key}"  # no DNA: cannot be a duplicate of another
            elapsed = _number(keys.get("Elapsed"))
            if dna not in latest:
                order.append(dna)
                latest[dna] = (elapsed, keys)
            elif elapsed < latest[dna][0]:
                latest[dna] = (elapsed, keys)
    return [latest[dna][1] for dna in order], strings


def _number(text: str | None) -> float:
    try:
        value = float(text or "")
    except ValueError:
        return float("inf")
    return value if value == value else float("inf")


def _board_count(dev: Device) -> int:
    """Per-board lists: MW (local works), Vi, Vo (voltages), ECHU; 7xx-9xx modules have four."""
    count = 0
    for key in ("MW", "Vi", "Vo", "ECHU"):
        text = dev.keys.get(key)
        if text:
            count = max(count, len(text.split(None, MAX_BOARDS)))
    return min(count, MAX_BOARDS)


def _chips_per_board(dev: Device, boards: int, model: str | None) -> int | None:
    total = dev.num("TA", "boards")
    if total and boards:
        chips = int(total // boards)
        if chips <= MAX_CHIPS_PER_BOARD:
            return chips
        dev.refuse("boards", "TA", f"{total:g}", f"is more than {MAX_CHIPS_PER_BOARD} chips a board (the cap)")
        return None
    plate = nameplate(model)
    return plate.chips_per_board if plate is not None else None


def _module_fans(dev: Device) -> list[int]:
    """A module's fan: `Fan[rpm]` on 7xx-9xx (Fan1..N where a firmware prints those)."""
    keys = ["Fan"] if "Fan" in dev.keys else [k for k in (f"Fan{i}" for i in range(1, 9)) if k in dev.keys]
    fans = []
    for key in keys:
        for rpm in dev.nums(key, "fans_rpm", cap=MAX_FANS) or ():
            if rpm is None:
                continue
            if rpm > MAX_FAN_RPM:
                dev.refuse("fans_rpm", key, dev.keys[key], f"is more than {MAX_FAN_RPM} rpm, no fan's speed")
                continue
            fans.append(int(rpm))
    return fans
