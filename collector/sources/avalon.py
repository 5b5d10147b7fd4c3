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
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collector.sources import cgminer
from models import BoardSample, MinerSample, MinerState, PoolInfo, SampleSource

# The one request a poll sends; the parser below reads exactly these sections.
POLL_COMMAND = "version+summary+estats+pools"

MAKE = "Canaan"
_DEVICE_KEY = re.compile(r"(\w+)\[([^\]]*)\]")
_NO_READING = -273.0  # firmware's "sensor absent" temperature
_MAX_BOARDS = 16
_PVT_KEYS = tuple(f"PVT_T{i}" for i in range(_MAX_BOARDS))  # per-chip temperatures, one key per board
_MAC_HEX = re.compile(r"[0-9A-F]{12}")


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


def device_fields(estats: dict[str, Any]) -> dict[str, str]:
    """All device-string keys of an estats/stats section, merged.

    Classic units put the string under "MM ID0"; Avalon Q under
    "MM ID0:Summary" (as "'STATS':{...}") with per-board chip data in "HBinfo".
    """
    fields: dict[str, str] = {}
    first = _first(estats.get("STATS"))
    for key, value in first.items():
        if isinstance(value, str) and key.startswith("MM ID"):
            parsed = parse_device_string(value)
            if not fields:  # the usual single device string: no merge
                fields = parsed
                continue
            for k, v in parsed.items():
                fields.setdefault(k, v)
    if fields and isinstance(first.get("HBinfo"), str):  # per-board chip data only complements a device string
        for k, v in parse_device_string(first["HBinfo"]).items():
            fields.setdefault(k, v)
    return fields


def parse(reply: dict[str, Any], *, host: str, port: int, site: str, ts: datetime) -> MinerSample:
    where = f"{host}:{port}"
    version = _first(cgminer.section(reply, "version", where).get("VERSION"))
    dev = device_fields(cgminer.section(reply, "estats", where))
    if not dev:
        raise cgminer.MinerReplyError(f"{where}: estats carries no device string (empty 'MM ID0')")
    # summary and pools only refine the sample; a broken one must not cost the rest.
    summary = _first(_optional_section(reply, "summary", where).get("SUMMARY"))
    pools = _optional_section(reply, "pools", where).get("POOLS") or []

    mac = _mac(version.get("MAC"))
    soft_off = (_num(dev, "SoftOFF") or 0) > 0
    idle = "In Idle" in dev.get("SYSTEMSTATU", "")
    live_ghs = _num(dev, "GHSspd")
    if live_ghs is None and summary.get("MHS 1m") is not None:
        live_ghs = float(summary["MHS 1m"]) / 1000
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
    if state is not MinerState.MINING:
        live_ghs = 0.0  # MGHS/GHSavg of a sleeping unit still show old averages

    avg_ghs = _num(dev, "GHSavg")
    if avg_ghs is None and summary.get("MHS av") is not None:
        avg_ghs = float(summary["MHS av"]) / 1000
    boards = _boards(dev)
    return MinerSample(
        miner=mac or where, host=host, port=port, site=site, ts=ts, state=state, source=SampleSource.AVALON,
        make=MAKE, model=version.get("PROD") or version.get("MODEL"), firmware=version.get("VERSION"), mac=mac,
        hashrate_ths=_ths(live_ghs), hashrate_avg_ths=_ths(avg_ghs), expected_hashrate_ths=_ths(_num(dev, "GHSmm")),
        power_w=_wall_power(dev), power_limit_w=_num(dev, "MPO"),
        temp_env_c=_temp(dev, "Temp"), temp_chip_max_c=_temp(dev, "TMax"),
        temp_board_max_c=max((b.temp_out_c for b in boards if b.temp_out_c is not None), default=None),
        fans_rpm=_fans(dev), boards=boards, pool=_pool(pools),
        uptime_s=_int(_num(dev, "Elapsed") or summary.get("Elapsed")),
        hw_error_pct=_num(dev, "DH"), work_mode=dev.get("WORKMODE"), errors=error_codes,
    )


def _wall_power(dev: dict[str, str]) -> float | None:
    watts = _num(dev, "WALLPOWER")
    if watts:
        return watts
    ps = _nums(dev, "PS")
    # PS[err vcore? vout iout pout? ... wall]: the 7th slot is watts at the wall.
    return ps[6] if len(ps) >= 7 and ps[6] > 0 else None


def _boards(dev: dict[str, str]) -> list[BoardSample]:
    mghs = _nums(dev, "MGHS")
    tmax = _nums(dev, "MTmax")
    tavg = _nums(dev, "MTavg")
    # Per-chip temperature lists: only their length and zeros matter here (a chip reading 0 is not
    # answering), so they are split, never converted: they are most of an estats reply.
    pvt = [dev[key].split() for key in _PVT_KEYS if key in dev]
    count = max(len(mghs), len(tmax), len(pvt))
    if count == 0:
        return []
    # Chips per board: the longest per-chip list (a dead board's list is empty or zeros, and TA
    # counts only the chips that answer); TA / boards when there are no lists.
    pvt_len = max((len(chips) for chips in pvt), default=0)
    total_chips = _num(dev, "TA")
    per_board = pvt_len or (int(total_chips // count) if total_chips else None)
    # Inlet/outlet temperatures are the unit's, so they belong to a board only on single-board units.
    temp_in, temp_out = (_temp(dev, "HBITemp"), _temp(dev, "HBOTemp")) if count == 1 else (None, None)
    boards = []
    for i in range(count):
        chips = pvt[i] if i < len(pvt) else None
        boards.append(BoardSample(
            index=i,
            hashrate_avg_ths=_ths(mghs[i]) if i < len(mghs) else None,
            temp_chip_max_c=_valid_temp(tmax[i] if i < len(tmax) else _hottest(chips)),
            temp_chip_avg_c=_valid_temp(tavg[i] if i < len(tavg) else None),
            temp_in_c=temp_in,
            temp_out_c=temp_out,
            chips_ok=None if chips is None else len(chips) - chips.count("0"),
            chips_expected=per_board,
        ))
    return boards


def _hottest(chips: list[str] | None) -> float | None:
    values = [float(t) for t in chips or () if _is_number(t)]
    return max(values) if values else None


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _error_codes(dev: dict[str, str]) -> list[str]:
    errors = []
    for key, what in (("ECHU", "hashboard"), ("ECMM", "controller")):
        codes = [int(c) for c in _nums(dev, key) if c]
        if codes:
            errors.append(f"{what} error code {key}={' '.join(map(str, codes))}")
    return errors


def _fans(dev: dict[str, str]) -> list[int]:
    fans = []
    i = 1
    while (rpm := _num(dev, f"Fan{i}")) is not None:
        fans.append(int(rpm))
        i += 1
    return fans


def _pool(pools: list[dict[str, Any]]) -> PoolInfo | None:
    if not pools:
        return None
    active = next((p for p in pools if p.get("Stratum Active")), None) or next(
        (p for p in pools if p.get("Status") == "Alive"), pools[0])
    return PoolInfo(url=active.get("URL"), user=active.get("User"), accepted=active.get("Accepted"),
                    rejected=active.get("Rejected"), stale=active.get("Stale"),
                    active=bool(active.get("Stratum Active")))


def _mac(raw: Any) -> str | None:
    text = str(raw or "").replace(":", "").upper()
    if _MAC_HEX.fullmatch(text) is None:
        return None
    return ":".join(text[i:i + 2] for i in range(0, 12, 2))


def _optional_section(reply: dict[str, Any], command: str, where: str) -> dict[str, Any]:
    try:
        return cgminer.section(reply, command, where)
    except cgminer.MinerReplyError:
        return {}


def _first(items: Any) -> dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _num(dev: dict[str, str], key: str) -> float | None:
    text = dev.get(key)
    if not text:
        return None
    try:  # most keys hold one plain number: skip the split (parse runs ~20 of these per miner)
        value = float(text)
    except ValueError:
        values = _nums(dev, key)
        return values[0] if values else None
    return value if value == value else None  # NaN is no reading


def _nums(dev: dict[str, str], key: str) -> list[float]:
    text = dev.get(key)
    if not text:
        return []
    try:  # the common case: all numbers
        values = [float(token) for token in text.replace("%", " ").split()]
    except ValueError:
        values = [float(token) for token in text.replace("%", " ").split() if _is_number(token)]
    return [v for v in values if v == v]  # drop NaN


def _temp(dev: dict[str, str], key: str) -> float | None:
    return _valid_temp(_num(dev, key))


def _valid_temp(value: float | None) -> float | None:
    return None if value is None or value <= _NO_READING else value


def _ths(ghs: float | None) -> float | None:
    return None if ghs is None else max(ghs, 0.0) / 1000


def _int(value: Any) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None
