"""Native driver for Canaan Avalon miners over the CGMiner API (TCP 4028).

One TCP connection and one joined command per poll; the estats device string
is parsed once. Where pyasic 0.79 is wrong on real Avalon replies, this is right:

- live hashrate from GHSspd (falling back to summary "MHS 1m"), not the
  since-boot average (MGHS / GHSavg), which is kept as `hashrate_avg_ths`;
- power from WALLPOWER, else the wall-power slot of PS[], so 2021 A1246
  firmware and Avalon Q still report watts;
- soft-off (SoftOFF[n>0]) and idle ("In Idle") units report that state with
  zero live hashrate, even though their MGHS still holds old averages;
- boards, chips and temperatures come from the device string itself, so models
  pyasic does not know (A1466, A16 series) read the same way;
- -273 temperature sentinels are dropped and TA is a chip count, not a temperature.

Everything in a reply is hostile until checked: a value that is not a finite number, is negative
where a count or rate cannot be, or overflows a cap (models.sample MAX_*) is refused field by
field: that field is left empty and named in `errors` and `unusable`, the miner is in error, and
the rest of the reading is kept. A key present with a bad value never falls back to another
source (GHSspd to summary "MHS 1m", WALLPOWER to PS[]): the firmware is not to be trusted there.
Readings no unit of the model could produce are refused by collector.sources.plausibility.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collector.sources import plausibility
from collector.sources import cgminer_client as cgminer
from collector.sources.reply_values import first as _first
from collector.sources.reply_values import mac as _mac
from collector.sources.reply_values import text as _text
from models import BoardSample, MinerSample, MinerState, PoolInfo, SampleSource
from models.sample import (
    MAX_BOARDS,
    MAX_CHIPS_PER_BOARD,
    MAX_ERRORS,
    MAX_FAN_RPM,
    MAX_FANS,
    MAX_UPTIME_S,
    TEMP_MAX_C,
)

# The one request a poll sends; the parser below reads exactly these sections.
POLL_COMMAND = "version+summary+estats+pools"

MAKE = "Canaan"
_DEVICE_KEY = re.compile(r"(\w+)\[([^\]]*)\]")
_NO_READING = -273.0  # firmware's "sensor absent" temperature
# A real device string is 2-20 KB (three boards' per-chip lists are most of it); the cap stops a
# hostile one (a million-entry list) before it is split into keys.
MAX_DEVICE_STRING_CHARS = 512 * 1024
_MAX_POOLS = 64  # pool entries looked at for the active one
_PVT_KEYS = tuple(f"PVT_T{i}" for i in range(MAX_BOARDS + 1))  # per-chip temperatures, one key per board
_FAN_KEYS = tuple(f"Fan{i}" for i in range(1, MAX_FANS + 2))


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


def parse_device_string(text: str) -> dict[str, str]:
    """`Key[value] Key[v1 v2] ...` -> {"Key": "value", ...} (values kept as text)."""
    return dict(_DEVICE_KEY.findall(text))


def device_fields(estats: dict[str, Any], where: str = "miner") -> dict[str, str]:
    """All device-string keys of an estats/stats section, merged.

    Classic units put the string under "MM ID0"; Avalon Q under
    "MM ID0:Summary" (as "'STATS':{...}") with per-board chip data in "HBinfo".
    A string longer than MAX_DEVICE_STRING_CHARS is a MinerReplyError.
    """
    fields: dict[str, str] = {}
    first = _first(estats.get("STATS"))
    for key, value in first.items():
        if isinstance(value, str) and key.startswith("MM ID"):
            parsed = parse_device_string(_capped(value, key, where))
            if not fields:  # the usual single device string: no merge
                fields = parsed
                continue
            for k, v in parsed.items():
                fields.setdefault(k, v)
    if fields and isinstance(first.get("HBinfo"), str):  # per-board chip data only complements a device string
        for k, v in parse_device_string(_capped(first["HBinfo"], "HBinfo", where)).items():
            fields.setdefault(k, v)
    return fields


def _capped(text: str, key: str, where: str) -> str:
    if len(text) > MAX_DEVICE_STRING_CHARS:
        raise cgminer.MinerReplyError(
            f"{where}: device string '{key}' is {len(text)} characters, more than the cap of "
            f"{MAX_DEVICE_STRING_CHARS} (MAX_DEVICE_STRING_CHARS; real units send 2-20 KB): not read")
    return text


class _Device:
    """A device string's keys read as numbers. A value that cannot be used is refused: the reading
    is None and `refused` maps the sample field it would have filled to the reason."""

    __slots__ = ("keys", "refused")

    def __init__(self, keys: dict[str, str]):
        self.keys = keys
        self.refused: dict[str, str] = {}

    def refuse(self, field: str, key: str, text: str, why: str) -> None:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        self.refused.setdefault(field, f"reply value out of range: {key}[{shown}] {why}; {field} left empty")

    def num(self, key: str, field: str, low: float | None = 0.0) -> float | None:
        """The key's number (the first, for a list); None when absent, empty or NaN (the firmware's
        "no reading"); refused when infinite or below `low`."""
        text = self.keys.get(key)
        if not text:
            return None
        try:  # most keys hold one plain number: skip the split (parse runs ~20 of these per miner)
            value = float(text)
        except ValueError:
            value = _first_number(text)
            if value is None:
                self.refuse(field, key, text, "is not a number")
                return None
        if value - value == 0.0:  # finite (inf - inf and NaN are NaN)
            if low is None or value >= low:
                return value
            self.refuse(field, key, text, f"must be greater than or equal to {low:g}")
        elif value == value:
            self.refuse(field, key, text, "is not a finite number")
        return None

    def nums(self, key: str, field: str, low: float | None = 0.0, cap: int = MAX_BOARDS) -> list[float | None] | None:
        """The key's numbers in their positions (None for one that is not a usable number); None, and
        the field refused, when there are more than `cap`."""
        text = self.keys.get(key)
        if not text:
            return []
        tokens = text.split(None, cap)  # stops splitting past the cap: a hostile list costs no more
        if len(tokens) > cap:
            self.refuse(field, key, text, f"has more than {cap} values (the cap for {field})")
            return None
        try:  # the common case: all plain numbers, all finite (a sum of finite numbers is finite)
            values: list[float | None] = [float(token) for token in tokens]
            total = sum(values)  # type: ignore[arg-type]
            if total - total == 0.0 and (low is None or not values or min(values) >= low):  # type: ignore[type-var]
                return values
        except ValueError:
            pass
        values = []
        for token in tokens:
            value = _to_float(token.rstrip("%"))
            if value is None or value != value:  # not a number, or NaN: no reading
                values.append(None)
            elif value - value != 0.0:
                self.refuse(field, key, text, "is not a finite number")
                values.append(None)
            elif low is not None and value < low:
                self.refuse(field, key, text, f"must be greater than or equal to {low:g}")
                values.append(None)
            else:
                values.append(value)
        return values

    def temp(self, key: str, field: str) -> float | None:
        return self.valid_temp(self.num(key, field, low=None), key, field)

    def valid_temp(self, value: float | None, key: str, field: str) -> float | None:
        if value is None or value <= _NO_READING:
            return None
        if value > TEMP_MAX_C:
            self.refuse(field, key, f"{value:g}", f"is above {TEMP_MAX_C:g} C, no temperature a miner reports")
            return None
        return value


def parse(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime) -> MinerSample:
    where = f"{host}:{port}"
    version = _first(cgminer.section(reply, "version", where).get("VERSION"))
    dev = _Device(device_fields(cgminer.section(reply, "estats", where), where))
    if not dev.keys:
        raise cgminer.MinerReplyError(f"{where}: estats carries no device string (empty 'MM ID0')")
    # summary and pools only refine the sample; a broken one must not cost the rest.
    summary = _first(_optional_section(reply, "summary", where).get("SUMMARY"))
    pools = _optional_section(reply, "pools", where).get("POOLS")

    mac = _mac(version.get("MAC"))
    soft_off = (dev.num("SoftOFF", "state") or 0) > 0
    idle = "In Idle" in dev.keys.get("SYSTEMSTATU", "")
    live_ghs = dev.num("GHSspd", "hashrate_ths")
    if live_ghs is None and "hashrate_ths" not in dev.refused:
        live_ghs = _summary_ghs(summary, "MHS 1m", "hashrate_ths", dev)
    error_codes = _error_codes(dev)

    if soft_off:
        state = MinerState.SOFT_OFF
    elif idle:
        state = MinerState.IDLE
    elif live_ghs:
        state = MinerState.MINING
    elif error_codes:
        state = MinerState.ERROR
    else:
        state = MinerState.IDLE
    if state is not MinerState.MINING and "hashrate_ths" not in dev.refused:
        live_ghs = 0.0  # MGHS/GHSavg of a sleeping unit still show old averages

    avg_ghs = dev.num("GHSavg", "hashrate_avg_ths")
    if avg_ghs is None and "hashrate_avg_ths" not in dev.refused:
        avg_ghs = _summary_ghs(summary, "MHS av", "hashrate_avg_ths", dev)
    # Every value is read before the sample is made: any of them may be refused, and a refusal
    # puts the miner in error.
    boards = _boards(dev)
    expected_ghs = dev.num("GHSmm", "expected_hashrate_ths")
    power_w, power_limit_w = _wall_power(dev), dev.num("MPO", "power_limit_w")
    temp_env, temp_chip_max = dev.temp("Temp", "temp_env_c"), dev.temp("TMax", "temp_chip_max_c")
    fans, pool, uptime, hw_error = _fans(dev), _pool(pools, dev), _uptime(dev, summary), dev.num("DH", "hw_error_pct")
    errors, unusable = error_codes, []
    if dev.refused:
        state = MinerState.ERROR
        errors = [*error_codes, *dev.refused.values()][:MAX_ERRORS]
        unusable = list(dev.refused)[:MAX_ERRORS]
    sample = MinerSample(
        miner=mac or where, host=host, port=port, site=site, ts=ts, state=state, source=SampleSource.AVALON,
        make=MAKE, model=_text(version.get("PROD")) or _text(version.get("MODEL")),
        firmware=_text(version.get("VERSION")), mac=mac,
        hashrate_ths=_ths(live_ghs), hashrate_avg_ths=_ths(avg_ghs), expected_hashrate_ths=_ths(expected_ghs),
        power_w=power_w, power_limit_w=power_limit_w, temp_env_c=temp_env, temp_chip_max_c=temp_chip_max,
        temp_board_max_c=max((b.temp_out_c for b in boards if b.temp_out_c is not None), default=None),
        fans_rpm=fans, boards=boards, pool=pool, uptime_s=uptime, hw_error_pct=hw_error,
        work_mode=_text(dev.keys.get("WORKMODE")), errors=errors, unusable=unusable,
    )
    return plausibility.check(sample)


def _summary_ghs(summary: dict[str, Any], key: str, field: str, dev: _Device) -> float | None:
    """A summary hashrate (MH/s, a JSON number) in GH/s; refused like a device-string value."""
    value = summary.get(key)
    if value is None:
        return None
    number = _json_number(value)
    if number is None or number < 0:
        dev.refuse(field, f"summary {key}", str(value), "is not a rate (a finite number >= 0)")
        return None
    return number / 1000


def _uptime(dev: _Device, summary: dict[str, Any]) -> int | None:
    seconds = dev.num("Elapsed", "uptime_s")
    if seconds is None and "uptime_s" not in dev.refused:
        seconds = _json_number(summary.get("Elapsed"))
        seconds = seconds if seconds is not None and seconds >= 0 else None
    if seconds is not None and seconds > MAX_UPTIME_S:
        dev.refuse("uptime_s", "Elapsed", f"{seconds:g}", f"is more than {MAX_UPTIME_S} s (a wrapped counter)")
        return None
    return None if seconds is None else int(seconds)


def _wall_power(dev: _Device) -> float | None:
    watts = dev.num("WALLPOWER", "power_w")
    if watts or "power_w" in dev.refused:
        return watts
    # PS[err vcore? vout iout pout? ... wall]: the 7th slot is watts at the wall; only it is read.
    slots = dev.keys.get("PS", "").split(None, 7)
    if len(slots) < 7:
        return None
    wall = _to_float(slots[6])
    if wall is None or wall != wall or wall == 0:  # text, NaN or 0: no reading
        return None
    if wall - wall != 0.0 or wall < 0:
        dev.refuse("power_w", "PS", dev.keys["PS"], "slot 7 (wall watts) is not a finite number >= 0")
        return None
    return wall


def _boards(dev: _Device) -> list[BoardSample]:
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
    if count == 0:
        return []
    # Chips per board: the longest per-chip list (a dead board's list is empty or zeros, and TA
    # counts only the chips that answer); TA / boards when there are no lists.
    pvt_len = max((len(chips) for chips in pvt if chips is not None), default=0)
    total_chips = dev.num("TA", "boards")
    per_board = pvt_len or (int(total_chips // count) if total_chips else None)
    if per_board is not None and per_board > MAX_CHIPS_PER_BOARD:
        dev.refuse("boards", "TA", f"{total_chips:g}", f"is more than {MAX_CHIPS_PER_BOARD} chips a board (the cap)")
        per_board = None
    # Inlet/outlet temperatures are the unit's, so they belong to a board only on single-board units.
    if count == 1:
        temp_in, temp_out = dev.temp("HBITemp", "boards"), dev.temp("HBOTemp", "boards")
    else:
        temp_in = temp_out = None
    boards = []
    for i in range(count):
        chips = pvt[i] if i < len(pvt) else None
        avg = mghs[i] if i < len(mghs) else None
        boards.append(BoardSample(
            index=i,
            hashrate_avg_ths=None if avg is None else avg / 1000,
            temp_chip_max_c=dev.valid_temp(tmax[i] if i < len(tmax) else _hottest(chips), "MTmax", "boards"),
            temp_chip_avg_c=dev.valid_temp(tavg[i] if i < len(tavg) else None, "MTavg", "boards"),
            temp_in_c=temp_in,
            temp_out_c=temp_out,
            chips_ok=None if chips is None else len(chips) - chips.count("0"),
            chips_expected=per_board,
        ))
    return boards


def _hottest(chips: list[str] | None) -> float | None:
    values = [v for v in map(_to_float, chips or ()) if v is not None and v - v == 0.0]
    return max(values) if values else None


def _to_float(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _first_number(text: str) -> float | None:
    """The first number in a value such as "0.512%" or "49% 50%"; NaN when that is what it is."""
    for token in text.replace("%", " ").split(None, 8):
        value = _to_float(token)
        if value is not None:
            return value
    return None


def _json_number(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (strings, objects, inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        return number if number - number == 0.0 else None
    return None


def _error_codes(dev: _Device) -> list[str]:
    errors = []
    for key, what in (("ECHU", "hashboard"), ("ECMM", "controller")):
        codes = [int(c) for c in dev.nums(key, "errors") or () if c]
        if codes:
            errors.append(f"{what} error code {key}={' '.join(map(str, codes))}"[:200])
    return errors


def _fans(dev: _Device) -> list[int]:
    fans = []
    for i, key in enumerate(_FAN_KEYS):
        if key not in dev.keys:
            break
        if i == MAX_FANS:
            dev.refuse("fans_rpm", key, dev.keys[key], f"is one fan more than the cap of {MAX_FANS}")
            return []
        rpm = dev.num(key, "fans_rpm")
        if rpm is None:
            continue
        if rpm > MAX_FAN_RPM:
            dev.refuse("fans_rpm", key, dev.keys[key], f"is more than {MAX_FAN_RPM} rpm, no fan's speed")
            continue
        fans.append(int(rpm))
    return fans


def _pool(pools: Any, dev: _Device) -> PoolInfo | None:
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


def _optional_section(reply: dict[str, Any], command: str, where: str) -> dict[str, Any]:
    try:
        return cgminer.section(reply, command, where)
    except cgminer.MinerReplyError:
        return {}


def _ths(ghs: float | None) -> float | None:
    return None if ghs is None else ghs / 1000
