"""Native driver for Canaan Avalon miners over the CGMiner API (TCP 4028): bytes in, MinerSample out.

One TCP connection and one joined command per poll (`version+summary+estats+pools`); the estats
device string is parsed once. `parse` follows one of three paths:

- a unit with one controller (A10 and later, Nano, Mini, Q): the device string `MM ID0` (Q:
  `MM ID0:Summary` plus `HBinfo`), read here;
- a controller chain of 7xx/8xx/9xx modules (`MM ID1..n` in several STATS entries):
  collector/sources/avalon_chain.py;
- a reply without estats: what the summary says, with a warning.

The pieces each have a module: avalon_fields.py (the device string's grammar and its values read
as numbers, hostile until checked), avalon_power.py (where the watts are and whether the miner's
own figures agree), avalon_codes.py (ECHU/ECMM/PS[0] decoded where their meaning is published).
docs/avalon.md has the facts and their sources.

Where pyasic 0.79 is wrong on real Avalon replies, this is right:

- live hashrate from GHSspd (falling back to summary "MHS 1m" where the firmware has none, or shows
  GHSspd[0.00] while it says "In Work": a unit ramping after a restart), not the since-boot average
  (MGHS / GHSavg), which is kept as `hashrate_avg_ths`;
- power from WALLPOWER, else the PS[] slot the model's firmware puts the watts in (PS[6] on A12-A16,
  Mini 3, Q and Nano 3S, PS[5] on a 2024 Nano 3, the DC side PS[4] on A10), cross-checked;
- soft-off (SoftOFF[n>0]) and idle ("In Idle") units report that state with zero live hashrate and
  no chip temperatures (TMax[0] and stale per-chip lists are no reading), even though their MGHS
  still holds old averages; "In Fault" is an error;
- boards, chips and temperatures come from the device string itself, so models pyasic does not know
  (A10, A13-A16, chains) read the same way;
- -273 temperature sentinels are dropped and TA is a chip count, not a temperature.

Everything in a reply is hostile until checked: a value that is not a finite number, is negative
where a count or rate cannot be, or overflows a cap (models.sample MAX_*) is refused field by
field: that field is left empty and named in `errors` and `unusable`, and the rest of the reading
is kept; the state is what the unit does, unless the live hashrate itself is refused (error:
models.sample.state_with_refusals). A key present with a bad value never falls back to another
source (GHSspd to summary "MHS 1m", WALLPOWER to PS[]): the firmware is not to be trusted there.
Readings no unit of the model could produce are refused by collector.sources.plausibility; a
reading the miner's own figures contradict is kept with a named warning (`warnings`).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collector.sources import avalon_chain, avalon_codes, avalon_power, plausibility
from collector.sources import cgminer_client as cgminer
from collector.sources.reply_values import first as _first
from collector.sources.reply_values import mac as _mac
from collector.sources.reply_values import text as _text
from collector.sources.avalon_fields import (
    MAX_CODE,
    Device,
    capped,
    json_number,
    parse_device_string,
    to_float,
)
from models import BoardSample, FaultCode, FaultSeverity, MinerSample, MinerState, PoolInfo, SampleSource
from models.hardware import Nameplate, nameplate
from models.sample import (
    MAX_TEXT_CHARS,
    MAX_BOARDS,
    MAX_CHIPS_PER_BOARD,
    MAX_ERROR_CHARS,
    MAX_ERRORS,
    MAX_FAN_RPM,
    MAX_FANS,
    MAX_UPTIME_S,
    SENSOR_MAX_C,
    SENSOR_MIN_C,
    state_with_refusals,
)

__all__ = ["MAKE", "POLL_COMMAND", "mac_address", "parse", "parse_device_string", "poll"]

# The one request a poll sends; the parser below reads exactly these sections.
POLL_COMMAND = "version+summary+estats+pools"

MAKE = "Canaan"
_MAX_POOLS = 64  # pool entries looked at for the active one
_PVT_KEYS = tuple(f"PVT_T{i}" for i in range(MAX_BOARDS + 1))  # per-chip temperatures, one key per board
_FAN_KEYS = tuple(f"Fan{i}" for i in range(1, MAX_FANS + 2))
# `Ver[1246-83-21072802_4ec6bb0_211fc46]`: the model as the firmware names it, then the firmware.
_VER = re.compile(r"(.+?)-(\d{8}_\w+)$")
# SYSTEMSTATU[Work: In Work, ...] or STATE[n] (Avalon Q): N3S-src `sysstatus[]`.
WORKING, IDLE, FAULT, INIT = "In Work", "In Idle", "In Fault", "In Init"
_STATES = {"0": INIT, "1": WORKING, "2": IDLE, "3": FAULT}
_LIVE_FALLBACK = ("MHS 1m", "MHS 5s")  # summary rates for a unit without a usable GHSspd, in order
_SEVERITY_ORDER = {FaultSeverity.FAULT: 0, FaultSeverity.WARNING: 1, FaultSeverity.UNKNOWN: 2, FaultSeverity.INFO: 3}


async def poll(
    host: str, port: int, *, site: str, ts: datetime, timeout_s: float = 5.0, known_id: str | None = None
) -> MinerSample:
    """Poll one Avalon; never raises for a misbehaving miner."""
    where = f"{host}:{port}"
    miner_id = known_id or where
    try:
        raw = await cgminer.request(host, port, POLL_COMMAND, timeout_s=timeout_s)
        return parse(cgminer.decode(raw, where), host=host, port=port, site=site, ts=ts)
    except cgminer.MinerUnreachable as e:
        return _unread(miner_id, host, port, site, ts, str(e), MinerState.OFFLINE)
    except cgminer.MinerReplyError as e:
        return _unread(miner_id, host, port, site, ts, str(e), MinerState.ERROR)
    except ValidationError as e:  # e.g. a negative WALLPOWER or Elapsed: firmware garbage, not a sample
        bad = "; ".join(f"{'.'.join(map(str, err['loc']))}={err.get('input')!r} ({err['msg']})" for err in e.errors()[:3])
        return _unread(miner_id, host, port, site, ts, f"{where}: reply value out of range: {bad}", MinerState.ERROR)


def _unread(miner_id: str, host: str, port: int, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
    # An unusable answer still came from an Avalon (make known); silence says nothing about the make.
    return MinerSample.offline(miner=miner_id, host=host, port=port, site=site, ts=ts, source=SampleSource.AVALON,
                               reason=reason, state=state, make=MAKE if state is MinerState.ERROR else None)


def device_fields(estats: dict[str, Any], where: str = "miner") -> dict[str, str]:
    """All device-string keys of a single unit's estats/stats section, merged.

    Classic units put the string under "MM ID0"; Avalon Q under
    "MM ID0:Summary" (as "'STATS':{...}") with per-board chip data in "HBinfo".
    A string longer than MAX_DEVICE_STRING_CHARS is a MinerReplyError.
    """
    fields: dict[str, str] = {}
    first = _first(estats.get("STATS"))
    for key, value in first.items():
        if isinstance(value, str) and key.startswith("MM ID"):
            parsed = parse_device_string(capped(value, key, where))
            if not fields:  # the usual single device string: no merge
                fields = parsed
                continue
            for k, v in parsed.items():
                fields.setdefault(k, v)
    if fields and isinstance(first.get("HBinfo"), str):  # per-board chip data only complements a device string
        for k, v in parse_device_string(capped(first["HBinfo"], "HBinfo", where)).items():
            fields.setdefault(k, v)
    return fields


def parse(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime) -> MinerSample:
    where = f"{host}:{port}"
    # version, summary and pools only name and refine the sample; a broken one must not cost the rest.
    version = _first(_optional_section(reply, "version", where).get("VERSION"))
    summary = _first(_optional_section(reply, "summary", where).get("SUMMARY"))
    pools = _optional_section(reply, "pools", where).get("POOLS")
    if "estats" not in reply and "STATUS" not in reply and ("summary" in reply or "version" in reply):
        return _without_estats(version, summary, pools, host, port, site, ts)
    estats = cgminer.section(reply, "estats", where)
    first = _first(estats.get("STATS"))
    if "MM ID0" not in first and "MM ID0:Summary" not in first and avalon_chain.is_chain(estats):
        return _chain(version, summary, pools, estats, host, port, site, ts)
    return _unit(version, summary, pools, estats, host, port, site, ts)


# -- a unit with one controller ---------------------------------------------------------------------


def _unit(version: dict[str, Any], summary: dict[str, Any], pools: Any, estats: dict[str, Any],
          host: str, port: int, site: str, ts: datetime) -> MinerSample:
    where = f"{host}:{port}"
    dev = Device(device_fields(estats, where))
    if not dev.keys:
        raise cgminer.MinerReplyError(f"{where}: estats carries no device string (empty 'MM ID0')")
    ver = dev.keys.get("Ver")
    model, firmware, plate = _identity(version, ver)
    work_mode = _text(dev.keys.get("WORKMODE")) or _text(dev.keys.get("WORKLEVEL"))  # Nano 3: levels are its modes
    soft_off = (dev.num("SoftOFF", "state") or 0) > 0
    status = _work_status(dev.keys)
    live_ghs = dev.num("GHSspd", "hashrate_ths")
    ramping = live_ghs == 0 and status == WORKING and not soft_off  # GHSspd[0.00] while it says it works
    if "hashrate_ths" not in dev.refused and (live_ghs is None or ramping):
        # No GHSspd on this firmware, or a unit ramping after a restart: the summary's rate.
        live_ghs = _summary_ghs(summary, _LIVE_FALLBACK, "hashrate_ths", dev, default=live_ghs)
    asleep = soft_off or status == IDLE
    avg_ghs = dev.num("GHSavg", "hashrate_avg_ths")
    if avg_ghs is None and "hashrate_avg_ths" not in dev.refused:
        avg_ghs = _summary_ghs(summary, ("MHS av",), "hashrate_avg_ths", dev)
    # Every value is read before the sample is made: any of them may be refused (a refused live
    # hashrate puts the miner in error: `_sample`).
    boards = _boards(dev, plate, asleep)
    expected_ghs = dev.num("GHSmm", "expected_hashrate_ths")
    if expected_ghs is None and "expected_hashrate_ths" not in dev.refused and plate is not None:
        nominal = plate.nominal_ths(work_mode)
        expected_ghs = None if nominal is None else nominal * 1000
    power_limit_w = dev.num("MPO", "power_limit_w")
    power_w, warnings = avalon_power.read(dev, plate, power_limit_w)
    temp_env = dev.temp("Temp", "temp_env_c") if "Temp" in dev.keys else dev.temp("ITemp", "temp_env_c")
    temp_chip_max = dev.chip_temp("TMax", "temp_chip_max_c")
    if temp_chip_max is None and "TMax" not in dev.keys:
        temp_chip_max = max((b.temp_chip_max_c for b in boards if b.temp_chip_max_c is not None), default=None)
    fans, pool, uptime, hw_error = _fans(dev), _pool(pools, dev), _uptime(dev, summary), dev.num("DH", "hw_error_pct")
    codes = _codes(dev, ver)
    problems = avalon_codes.error_lines(codes) if codes else []
    if status == FAULT:
        said = dev.keys.get("SYSTEMSTATU", "STATE[3]").strip()
        problems.insert(0, f"the miner reports '{said if len(said) <= 80 else said[:80] + '...'}'")
    if live_ghs and not asleep:
        problems += [f"hashboard error: board {b.index} has no chip answering (0 of {b.chips_expected})"
                     for b in boards if b.chips_ok == 0 and b.chips_expected]

    if soft_off:
        state = MinerState.SOFT_OFF
    elif status == FAULT:
        state = MinerState.ERROR
    elif status == IDLE:
        state = MinerState.IDLE
    elif live_ghs or (live_ghs is None and status == WORKING and "hashrate_ths" not in dev.refused):
        state = MinerState.MINING  # hashing; with no live figure at all (A10 firmware without a summary) unknown
    elif problems:
        state = MinerState.ERROR
    else:
        state = MinerState.IDLE
    if state is not MinerState.MINING and "hashrate_ths" not in dev.refused:
        live_ghs = 0.0  # MGHS/GHSavg of a sleeping unit still show old averages
    return _sample(dev, host, port, site, ts, state, version, {
        "model": model, "firmware": firmware, "hashrate_ths": _ths(live_ghs), "hashrate_avg_ths": _ths(avg_ghs),
        "expected_hashrate_ths": _ths(expected_ghs), "power_w": power_w, "power_limit_w": power_limit_w,
        "temp_env_c": temp_env, "temp_chip_max_c": temp_chip_max,
        "temp_board_max_c": max((b.temp_out_c for b in boards if b.temp_out_c is not None), default=None),
        "fans_rpm": fans, "boards": boards, "pool": pool, "uptime_s": uptime, "hw_error_pct": hw_error,
        "work_mode": work_mode}, codes, problems, warnings)


def _work_status(keys: dict[str, str]) -> str | None:
    text = keys.get("SYSTEMSTATU")
    if text is None:
        return _STATES.get(keys.get("STATE", "").strip())
    if text.startswith("Work: In Work"):  # the usual answer: no search
        return WORKING
    return next((status for status in (WORKING, IDLE, FAULT, INIT) if status in text), None)


def _boards(dev: Device, plate: Nameplate | None, asleep: bool) -> list[BoardSample]:
    mghs = dev.nums("MGHS", "boards")
    tmax = dev.nums("MTmax", "boards", low=None)
    tavg = dev.nums("MTavg", "boards", low=None)
    if mghs is None or tmax is None or tavg is None:  # over the cap: no board is to be trusted
        return []
    # Per-chip temperature lists: only their length and zeros matter here (a chip reading 0 is not
    # answering), so they are split, never converted: they are most of an estats reply.
    pvt: list[list[str] | None] = []
    for key in _PVT_KEYS:
        text = dev.keys.get(key)
        if text is None:
            break
        chips = text.split(None, MAX_CHIPS_PER_BOARD)
        if len(chips) > MAX_CHIPS_PER_BOARD:
            dev.refuse("boards", key, text, f"has more than {MAX_CHIPS_PER_BOARD} chips (the cap per board)")
            chips = None
        pvt.append(chips)
    if len(pvt) > MAX_BOARDS:
        dev.refuse("boards", _PVT_KEYS[MAX_BOARDS], "...", f"is one board more than the cap of {MAX_BOARDS}")
        return []
    count = max(len(mghs), len(tmax), len(pvt))
    if count == 0:  # per-board lists the firmware prints even without hashrates or chip lists: local works, volts
        count = max(_list_length(dev, "MW"), _list_length(dev, "Vi"))
        if count == 0:
            return []
    pvt_len = max((len(chips) for chips in pvt if chips is not None), default=0)
    per_board = _chips_per_board(dev, plate, count, pvt_len)
    # A list as long as the board's chips is per chip; a shorter one on every board is a few sensors
    # (Avalon Q: 10 values for 160 chips) and says nothing about how many chips answer.
    per_chip = per_board is not None and pvt_len == per_board
    # Inlet/outlet temperatures are the unit's, so they belong to a board only on single-board units,
    # and so does the unit's hottest chip.
    if count == 1:
        temp_in, temp_out = dev.temp("HBITemp", "boards"), dev.temp("HBOTemp", "boards")
        unit_max = dev.chip_temp("TMax", "boards")
    else:
        temp_in = temp_out = unit_max = None
    boards = []
    for i in range(count):
        chips = pvt[i] if i < len(pvt) else None
        avg = mghs[i] if i < len(mghs) else None
        if asleep:  # TMax[0] and the per-chip lists of a sleeping unit are old or no readings
            chip_max = chip_avg = chips_ok = None
        else:
            if i < len(tmax):
                chip_max = tmax[i]
                if not (chip_max and SENSOR_MIN_C <= chip_max <= SENSOR_MAX_C):  # 0: no reading; the rest refused
                    chip_max = dev.valid_temp(chip_max or None, "MTmax", "boards")
            elif unit_max is not None:
                chip_max = unit_max
            else:
                chip_max = dev.valid_temp(_hottest(chips), "PVT_T", "boards")
            chip_avg = tavg[i] if i < len(tavg) else None
            if not (chip_avg and SENSOR_MIN_C <= chip_avg <= SENSOR_MAX_C):
                chip_avg = dev.valid_temp(chip_avg or None, "MTavg", "boards")
            if chips is None:
                chips_ok = None
            else:  # an empty or all-zero list: no chip answers on that board
                chips_ok = len(chips) - chips.count("0")
                if chips_ok and not per_chip:
                    chips_ok = None
        boards.append(BoardSample(
            index=i, hashrate_avg_ths=None if avg is None else avg / 1000, temp_chip_max_c=chip_max,
            temp_chip_avg_c=chip_avg, temp_in_c=temp_in, temp_out_c=temp_out, chips_ok=chips_ok,
            chips_expected=per_board,
        ))
    return boards


def _list_length(dev: Device, key: str) -> int:
    text = dev.keys.get(key)
    return min(len(text.split(None, MAX_BOARDS)), MAX_BOARDS) if text else 0


def _chips_per_board(dev: Device, plate: Nameplate | None, boards: int, pvt_len: int) -> int | None:
    """The model's chips per board (catalogue), else the longest per-chip list, else TA / boards. TA
    counts the chips that answer on some firmware and all of them on others, so it only stands in."""
    total = dev.num("TA", "boards")
    from_ta = int(total // boards) if total else None
    if from_ta is not None and from_ta > MAX_CHIPS_PER_BOARD:
        dev.refuse("boards", "TA", f"{total:g}", f"is more than {MAX_CHIPS_PER_BOARD} chips a board (the cap)")
        from_ta = None
    if plate is not None and plate.chips_per_board:
        return plate.chips_per_board
    return pvt_len or from_ta


def _hottest(chips: list[str] | None) -> float | None:
    values = [v for v in map(to_float, chips or ()) if v is not None and v - v == 0.0]
    return max(values) or None if values else None


def _fans(dev: Device) -> list[int]:
    fans = []
    for i, key in enumerate(_FAN_KEYS):
        if key not in dev.keys:
            break
        if i == MAX_FANS:
            dev.refuse("fans_rpm", key, dev.keys[key], f"is one fan more than the cap of {MAX_FANS}")
            return []
        _add_fan(dev, key, dev.num(key, "fans_rpm"), fans)
    if not fans and "Fan" in dev.keys:  # one key for all fans: Fan[...] (7xx-9xx modules, A9 firmware)
        for rpm in dev.nums("Fan", "fans_rpm", cap=MAX_FANS) or ():
            _add_fan(dev, "Fan", rpm, fans)
    return fans


def _add_fan(dev: Device, key: str, rpm: float | None, fans: list[int]) -> None:
    if rpm is None:
        return
    if rpm > MAX_FAN_RPM:
        dev.refuse("fans_rpm", key, dev.keys[key], f"is more than {MAX_FAN_RPM} rpm, no fan's speed")
        return
    fans.append(int(rpm))


def _codes(dev: Device, ver: str | None) -> list[FaultCode]:
    keys = dev.keys
    if (not keys.get("ECHU", "").strip("0 ") and not keys.get("ECMM", "").strip("0 ")
            and keys.get("PS", "")[:2] in ("", "0 ")):
        return []  # the healthy unit's every poll: nothing to decode
    return avalon_codes.unit_codes(dev.codes("ECHU", "errors"), dev.codes("ECMM", "errors"), _psu_code(dev),
                                   avalon_codes.generation(ver))


def _psu_code(dev: Device) -> int | None:
    first = dev.keys.get("PS", "").split(None, 1)
    value = to_float(first[0]) if first else None
    return int(value) if value is not None and 0 < value <= MAX_CODE else None


# -- a controller chain and a reply without estats --------------------------------------------------


def _chain(version: dict[str, Any], summary: dict[str, Any], pools: Any, estats: dict[str, Any],
           host: str, port: int, site: str, ts: datetime) -> MinerSample:
    dev = Device({})  # collects refusals from the modules and the summary
    chain = avalon_chain.read(estats, dev.refused, f"{host}:{port}")
    prod = _text(version.get("PROD"))
    model = prod if prod and not _family(prod) else chain.model
    live_ghs = _summary_ghs(summary, _LIVE_FALLBACK, "hashrate_ths", dev)
    problems = avalon_codes.error_lines(chain.fault_codes)
    state = MinerState.MINING if live_ghs else MinerState.ERROR if problems else MinerState.IDLE
    if state is not MinerState.MINING and "hashrate_ths" not in dev.refused:
        live_ghs = 0.0
    return _sample(dev, host, port, site, ts, state, version, {
        "model": model, "firmware": _text(version.get("VERSION")) or chain.firmware, "hashrate_ths": _ths(live_ghs),
        "hashrate_avg_ths": _ths(_summary_ghs(summary, ("MHS av",), "hashrate_avg_ths", dev)),
        "expected_hashrate_ths": _ths(chain.expected_ghs), "temp_chip_max_c": chain.temp_chip_max_c,
        "fans_rpm": chain.fans_rpm, "boards": chain.boards, "pool": _pool(pools, dev),
        "uptime_s": _uptime(dev, summary)}, chain.fault_codes, problems, [])


def _without_estats(version: dict[str, Any], summary: dict[str, Any], pools: Any,
                    host: str, port: int, site: str, ts: datetime) -> MinerSample:
    dev = Device({})
    model, firmware, _ = _identity(version, None)
    live_ghs = _summary_ghs(summary, _LIVE_FALLBACK, "hashrate_ths", dev)
    state = MinerState.MINING if live_ghs else MinerState.IDLE
    return _sample(dev, host, port, site, ts, state, version, {
        "model": model, "firmware": firmware, "hashrate_ths": _ths(live_ghs),
        "hashrate_avg_ths": _ths(_summary_ghs(summary, ("MHS av",), "hashrate_avg_ths", dev)),
        "pool": _pool(pools, dev), "uptime_s": _uptime(dev, summary)}, [], [],
        ["no_device_data: the reply has no estats section: boards, power, temperatures and error codes unknown; "
         "hashrate from the summary"])


# -- the sample -----------------------------------------------------------------------------------------


def _sample(dev: Device, host: str, port: int, site: str, ts: datetime, state: MinerState, version: dict[str, Any],
            readings: dict[str, Any], codes: list[FaultCode], problems: list[str], warnings: list[str]) -> MinerSample:
    """The MinerSample of `readings` (MinerSample fields), with the refusals, codes and warnings of the read."""
    mac = mac_address(version.get("MAC"))
    errors = problems
    if dev.refused:
        state = state_with_refusals(state, dev.refused)  # a refused fan or temperature costs that field only
        errors = [*problems, *dev.refused.values()]
        readings["unusable"] = list(dev.refused)[:MAX_ERRORS]
    if errors:  # each line within MinerSample's cap: one long text must not cost the whole sample
        readings["errors"] = [line[:MAX_ERROR_CHARS] for line in errors[:MAX_ERRORS]]
    if codes:
        if len(codes) > MAX_ERRORS:  # a long chain: faults first, the healthy-unit notices last
            warnings = [*warnings, f"fault_codes_capped: {len(codes)} codes reported, the first {MAX_ERRORS} "
                                   "kept (faults first)"]
            codes = sorted(codes, key=lambda c: _SEVERITY_ORDER[c.severity])[:MAX_ERRORS]
        readings["fault_codes"] = codes
    if warnings:
        readings["warnings"] = [line[:MAX_ERROR_CHARS] for line in warnings[:MAX_ERRORS]]
    sample = MinerSample(miner=mac or f"{host}:{port}", host=host, port=port, site=site, ts=ts, state=state,
                         source=SampleSource.AVALON, make=MAKE, mac=mac, **readings)
    return plausibility.check(sample)


def _identity(version: dict[str, Any], ver: str | None) -> tuple[str | None, str | None, Nameplate | None]:
    """(model, firmware, catalogue entry). The model is `version` PROD as the miner names itself, unless
    it is absent or only names a family (A10: "AvalonMiner 10xx"): then the device string's `Ver`
    prefix names it. The firmware is `version` VERSION (LVERSION on home miners), else `Ver`'s."""
    get = version.get
    key = (get("PROD"), get("MODEL"), get("VERSION") or get("LVERSION") or get("CGVERSION"), ver)
    try:
        return _identity_of(*key)
    except TypeError:  # a value that is not text (a list, an object): not cacheable, and not a name either
        return _identity_of.__wrapped__(*(value if isinstance(value, str) else None for value in key))


@functools.lru_cache(maxsize=4096)  # the same few strings every cycle from every unit of a model
def _identity_of(prod: Any, model_field: Any, version: Any,
                 ver: Any) -> tuple[str | None, str | None, Nameplate | None]:
    prod, model_field, version, ver = _text(prod), _text(model_field), _text(version), _text(ver)
    ver_match = _VER.match(ver) if ver else None
    ver_model = ver_match.group(1) if ver_match else None
    if prod and not _family(prod):
        model: str | None = prod
    elif ver_model:
        model = _ver_model_name(ver_model)
    else:
        model = model_field or prod
    firmware = version or (ver_match.group(2) if ver_match else ver)
    plate = nameplate(model)
    if plate is None and ver_model:
        plate = nameplate(ver_model)
    return model, firmware, plate


def _family(prod: str) -> bool:
    return "xx" in prod.lower()  # "AvalonMiner 10xx": the A10 family, not a model


def _ver_model_name(ver_model: str) -> str:
    """`Ver`'s model as a name: "1246-83" -> "AvalonMiner 1246-83" (as PROD spells it), "nano3" -> the
    catalogue's "Avalon Nano 3"."""
    if ver_model[:1].isdigit():
        return f"AvalonMiner {ver_model}"[:MAX_TEXT_CHARS]
    plate = nameplate(ver_model)
    return plate.model if plate is not None else f"Avalon {ver_model}"[:MAX_TEXT_CHARS]


def _summary_ghs(summary: dict[str, Any], keys: tuple[str, ...], field: str, dev: Device,
                 default: float | None = None) -> float | None:
    """The first of these summary hashrates (MH/s, a JSON number) in GH/s; refused like a device-string
    value; `default` when the summary has none of them."""
    for key in keys:
        value = summary.get(key)
        if value is None:
            continue
        number = json_number(value)
        if number is None or number < 0:
            dev.refuse(field, f"summary {key}", str(value), "is not a rate (a finite number >= 0)")
            return None
        return number / 1000
    return default


def _uptime(dev: Device, summary: dict[str, Any]) -> int | None:
    seconds = dev.num("Elapsed", "uptime_s")
    if seconds is None and "uptime_s" not in dev.refused:
        seconds = json_number(summary.get("Elapsed"))
        seconds = seconds if seconds is not None and seconds >= 0 else None
    if seconds is not None and seconds > MAX_UPTIME_S:
        dev.refuse("uptime_s", "Elapsed", f"{seconds:g}", f"is more than {MAX_UPTIME_S} s (a wrapped counter)")
        return None
    return None if seconds is None else int(seconds)


def _pool(pools: Any, dev: Device) -> PoolInfo | None:
    if not isinstance(pools, list) or not pools:
        return None
    pools = pools[:_MAX_POOLS]
    active = next((p for p in pools if isinstance(p, dict) and p.get("Stratum Active")), None) or next(
        (p for p in pools if isinstance(p, dict) and p.get("Status") == "Alive"), pools[0])
    if not isinstance(active, dict):
        return None
    try:
        return PoolInfo(url=_text(active.get("URL")), user=_text(active.get("User")), accepted=active.get("Accepted"),
                        rejected=active.get("Rejected"), stale=active.get("Stale"),
                        active=bool(active.get("Stratum Active")))
    except ValidationError as e:  # a count that is not a whole number >= 0
        bad = e.errors()[0]
        dev.refuse("pool", f"pools {bad['loc'][0]}", str(bad.get("input")), f"is not a count ({bad['msg']})")
        return None


def mac_address(raw: Any) -> str | None:
    """`version` MAC ("e0e1a9c5486b" or "E0:E1:A9:C5:48:6B") as AA:BB:CC:DD:EE:FF; None if it is not one."""
    if isinstance(raw, str) and len(raw) <= 20:
        return _mac_of(raw)  # every miner sends the same string every cycle
    return _mac_of(str(raw or "")[:20])


@functools.lru_cache(maxsize=32768)  # bounded: one entry per miner of a large collector, not per string ever seen
def _mac_of(raw: str) -> str | None:
    return _mac(raw)  # the rule every reader uses (reply_values.mac: a group address is no unit's own)



def _optional_section(reply: dict[str, Any], command: str, where: str) -> dict[str, Any]:
    try:
        return cgminer.section(reply, command, where)
    except cgminer.MinerReplyError:
        return {}


def _ths(ghs: float | None) -> float | None:
    return None if ghs is None else ghs / 1000
