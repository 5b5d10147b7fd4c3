"""The CGMiner API as Canaan Avalon firmware speaks it: request parsing and reply building.

Pure bytes in, bytes out (plus calls on an `AvalonDevice` for `ascset`); no sockets here. Plain
dicts and string joins only, because a 10,000-miner benchmark builds every reply on one core.

Wire facts kept here (DESIGN.md section 4):
- a request is JSON `{"command":"a+b","parameter":"..."}` or plain text `a+b|parameter`;
  JSON requests get JSON replies, plain-text requests get CGMiner's `KEY=value,...|` text;
- every reply ends with a NUL byte;
- a joined request `a+b` is answered `{"a":[{...,"id":1}],"b":[{...,"id":1}],"id":1}`;
- an unknown command is answered with STATUS "E", Code 14, "Invalid command".
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from simulators.device import SwitchableDevice
from simulators.faults import Faults
from simulators.physics import SOFT_OFF_CODE, Snapshot, Traits
from simulators.specs import ModelSpec

DESCRIPTION = "cgminer 4.11.1"
CGMINER_VERSION = "4.11.1"
API_VERSION = "3.7"
NUL = b"\x00"
POOL_URLS = (
    "stratum+tcp://btc.pool.hashfleet.test:3333",
    "stratum+tcp://btc-backup.pool.hashfleet.test:443",
    "stratum+tcp://solo.hashfleet.test:3333",
)

# CGMiner message codes (api.c) used here.
CODE_INVALID_COMMAND = 14
CODE_INVALID_JSON = 23
CODE_MISSING_COMMAND = 24
CODE_ACCESS_DENIED = 45
CODE_INVALID_ASC = 107
CODE_ASC_INFO = 118
CODE_ASC_OK = 119
CODE_ASC_FAILED = 120

# Commands that cannot be part of a joined request (they act rather than report).
NOT_JOINABLE = frozenset({"ascset", "restart"})

NAN = "__hashfleet_bare_nan__"  # replaced by a bare `nan` token after JSON encoding
_NAN_JSON = json.dumps(NAN).encode()


class AvalonDevice(SwitchableDevice, Protocol):
    """What the API needs from a simulated miner: Canaan's adds a soft-off or soft-on at a time, work modes
    and levels (`ascset`) and per-chip PVT readings (`estats`) to what the other firmwares need."""

    def set_soft_off_at(self, on: bool, at: float) -> None: ...

    def set_work_mode(self, mode: int) -> None: ...

    def set_work_level(self, level: int) -> None: ...

    def pvt_text(self, board: int, base_c: int, dead_chips: tuple[int, ...] | None = None) -> str: ...


@dataclass(frozen=True, slots=True)
class Request:
    commands: tuple[str, ...]
    parameter: str
    is_json: bool
    error: tuple[int, str] | None = None  # the request itself was unusable


@functools.lru_cache(maxsize=256)  # a fleet is polled with the same few requests over and over
def parse_request(data: bytes) -> Request:
    """Decode one request: JSON object or plain `command|parameter` text."""
    text = data.decode("utf-8", errors="replace").strip(" \t\r\n\x00")
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return Request((), "", True, (CODE_INVALID_JSON, "Invalid JSON"))
        command = obj.get("command") if isinstance(obj, dict) else None
        if not isinstance(command, str) or not command:
            return Request((), "", True, (CODE_MISSING_COMMAND, "Missing JSON 'command'"))
        param = obj.get("parameter", "")
        return Request(tuple(command.split("+")), "" if param is None else str(param), True)
    command, _, param = text.partition("|")
    return Request(tuple(command.split("+")), param, False)


@functools.lru_cache(maxsize=256)
def request_complete(buf: bytes) -> bool:
    """Whether `buf` holds a whole request (clients send one request and wait, no terminator)."""
    head = buf.lstrip()
    if not head.startswith(b"{"):
        return bool(head)
    try:
        json.loads(head.rstrip(b"\x00\r\n "))
    except ValueError:
        return False
    return True


# -- reply building -------------------------------------------------------------------------


def _status(severity: str, code: int, msg: str, when: int) -> dict[str, Any]:
    return {"STATUS": severity, "When": when, "Code": code, "Msg": msg, "Description": DESCRIPTION}


def _reply(
    status: dict[str, Any], section: str | None = None, items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"STATUS": [status]}
    if section is not None:
        body[section] = items
    body["id"] = 1
    return body


class _Ctx:
    """One request's view of the device: the snapshot is taken once, only if a command needs it."""

    __slots__ = ("dev", "param", "bare_nan", "_snap")

    def __init__(self, dev: AvalonDevice, param: str, bare_nan: bool) -> None:
        self.dev = dev
        self.param = param
        self.bare_nan = bare_nan
        self._snap: Snapshot | None = None

    @property
    def snap(self) -> Snapshot:
        if self._snap is None:
            self._snap = self.dev.observe()
        return self._snap

    def when(self) -> int:
        return int(self._snap.at if self._snap is not None else self.dev.now())


def _pool_user(traits: Traits) -> str:
    return f"hashfleet.{traits.mac[-6:]}"


def _version(ctx: _Ctx) -> dict[str, Any]:
    spec, tr = ctx.dev.spec, ctx.dev.traits
    item: dict[str, Any] = {
        "CGMiner": CGMINER_VERSION,
        "API": API_VERSION,
        "PROD": spec.prod,
        "MODEL": spec.model,
        "HWTYPE": spec.hwtype,
        "SWTYPE": spec.swtype,
        "VERSION": spec.firmware,
    }
    if spec.env_key == "ITemp":  # home units report their loader/board builds separately
        item.update(LVERSION=spec.firmware, BVERSION=spec.firmware, CGVERSION=spec.firmware)
    else:
        item.update(LOADER="d0d779de.00")
    item.update(DNA=tr.dna, MAC=tr.mac, UPAPI="2")
    return _reply(_status("S", 22, "CGMiner versions", ctx.when()), "VERSION", [item])


def _devdetails(ctx: _Ctx) -> dict[str, Any]:
    spec = ctx.dev.spec
    item = {"DEVDETAILS": 0, "Name": spec.dev_name, "ID": 0, "Driver": spec.driver,
            "Kernel": "", "Model": "", "Device Path": ""}
    return _reply(_status("S", 69, "Device Details", ctx.when()), "DEVDETAILS", [item])


def _mhs(th: float) -> float:
    return round(th * 1e6, 2)


def _share_numbers(s: Snapshot, spec: ModelSpec) -> dict[str, Any]:
    diff = float(spec.pool_diff)
    return {
        "Difficulty Accepted": s.accepted * diff,
        "Difficulty Rejected": s.rejected * diff,
        "Difficulty Stale": s.stale * diff,
    }


def _summary(ctx: _Ctx) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.dev.spec
    minutes = max(s.uptime_s, 1) / 60.0
    diff1 = s.total_th_s * 1e12 / 4294967296.0
    item: dict[str, Any] = {
        "Elapsed": s.uptime_s,
        "MHS av": _mhs(s.hashrate_avg_ths),
        "MHS 30s": _mhs(s.hashrate_30s_ths),
        "MHS 1m": _mhs(s.hashrate_1m_ths),
        "MHS 5m": _mhs(s.hashrate_5m_ths),
        "MHS 15m": _mhs(s.hashrate_15m_ths),
        "Found Blocks": 0,
        "Getworks": s.uptime_s // 30,
        "Accepted": s.accepted,
        "Rejected": s.rejected,
        "Hardware Errors": s.hw_errors,
        "Utility": round(s.accepted / minutes, 2),
        "Discarded": s.uptime_s // 15,
        "Stale": s.stale,
        "Get Failures": 0,
        "Local Work": int(diff1 / 65536),
        "Remote Failures": 0,
        "Network Blocks": s.uptime_s // 600,
        "Total MH": round(s.total_th_s * 1e6, 4),
        "Work Utility": round(diff1 / minutes, 2),
        **_share_numbers(s, spec),
        "Best Share": int(spec.pool_diff * 1000 + (s.accepted * 7919) % 1000003),
        "Device Hardware%": NAN if ctx.bare_nan else round(s.hw_error_pct / 100.0, 4),
        "Device Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Stale%": round(100.0 * s.stale / max(1, s.accepted + s.stale), 4),
        "Last getwork": int(s.at),
    }
    return _reply(_status("S", 11, "Summary", ctx.when()), "SUMMARY", [item])


def _devs(ctx: _Ctx) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.dev.spec
    minutes = max(s.uptime_s, 1) / 60.0
    temperature: Any = -273.0 if spec.devs_temp_sentinel else float(s.env_raw_c)
    item: dict[str, Any] = {
        "ASC": 0,
        "Name": spec.dev_name,
        "ID": 0,
        "Enabled": "Y",
        "Status": "Alive",
        "Temperature": NAN if ctx.bare_nan else temperature,
        "MHS av": _mhs(s.hashrate_avg_ths),
        "MHS 30s": _mhs(s.hashrate_30s_ths),
        "MHS 1m": _mhs(s.hashrate_1m_ths),
        "MHS 5m": _mhs(s.hashrate_5m_ths),
        "MHS 15m": _mhs(s.hashrate_15m_ths),
        "Accepted": s.accepted,
        "Rejected": s.rejected,
        "Hardware Errors": s.hw_errors,
        "Utility": round(s.accepted / minutes, 2),
        "Last Share Pool": 0,
        "Last Share Time": int(s.at) - 1 if s.accepted else 0,
        "Total MH": round(s.total_th_s * 1e6, 4),
        "Diff1 Work": int(s.total_th_s * 1e12 / 4294967296.0),
        **_share_numbers(s, spec),
        "Last Share Difficulty": float(spec.pool_diff),
        "Last Valid Work": int(s.at) - 1,
        "Device Hardware%": round(s.hw_error_pct / 100.0, 4),
        "Device Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Device Elapsed": s.uptime_s,
    }
    return _reply(_status("S", 9, "1 ASC(s)", ctx.when()), "DEVS", [item])


def _pool_item(i: int, url: str, user: str, pool_diff: int, s: Snapshot) -> dict[str, Any]:
    """One `POOLS[]` entry; pool 0 is the active one, the others are idle backups."""
    active = i == 0
    diff = float(pool_diff)
    acc, rej, stale = (s.accepted, s.rejected, s.stale) if active else (0, 0, 0)
    return {
        "POOL": i,
        "URL": url,
        "Status": "Alive",
        "Priority": i,
        "Quota": 1,
        "Long Poll": "N",
        "Getworks": s.uptime_s // 30 if active else 0,
        "Accepted": acc,
        "Rejected": rej,
        "Works": acc * 4,
        "Discarded": s.uptime_s // 15 if active else 0,
        "Stale": stale,
        "Get Failures": 0,
        "Remote Failures": 0,
        "User": user,
        "Last Share Time": int(s.at) - 1 if active and acc else 0,
        "Diff1 Shares": int(s.total_th_s * 1e12 / 4294967296.0) if active else 0,
        "Proxy Type": "",
        "Proxy": "",
        "Difficulty Accepted": acc * diff,
        "Difficulty Rejected": rej * diff,
        "Difficulty Stale": stale * diff,
        "Last Share Difficulty": diff if active else 0.0,
        "Work Difficulty": diff if active else 0.0,
        "Has Stratum": True,
        "Stratum Active": active,
        "Stratum URL": url.split("://", 1)[1].rsplit(":", 1)[0] if active else "",
        "Stratum Difficulty": diff if active else 0.0,
        "Has Vmask": True,
        "Has GBT": False,
        "Best Share": int(pool_diff * 1000 + (s.accepted * 7919) % 1000003) if active else 0,
        "Pool Rejected%": round(100.0 * rej / max(1, acc + rej), 4),
        "Pool Stale%": round(100.0 * stale / max(1, acc + stale), 4),
        "Bad Work": 0,
        "Current Block Height": _block_height(s),
        "Current Block Version": 536870912,
    }


def _block_height(s: Snapshot) -> int:
    return 900000 + int(s.at // 600) % 100000


# Idle backup pools differ from miner to miner and poll to poll only in User and block height:
# built once per (pool, difficulty) and copied with those two set (keys keep their places).
_IDLE_POOLS: dict[tuple[int, int], dict[str, Any]] = {}


def _pools(ctx: _Ctx) -> dict[str, Any]:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    user, diff = _pool_user(tr), spec.pool_diff
    items = [_pool_item(0, POOL_URLS[0], user, diff, s)]
    height = _block_height(s)
    for i in range(1, len(POOL_URLS)):
        idle = _IDLE_POOLS.get((i, diff))
        if idle is None:
            idle = _IDLE_POOLS[(i, diff)] = _pool_item(i, POOL_URLS[i], user, diff, s)
        items.append({**idle, "User": user, "Current Block Height": height})
    return _reply(_status("S", 7, f"{len(items)} Pool(s)", ctx.when()), "POOLS", items)


def _ints(values: tuple[int, ...] | list[int]) -> str:
    return " ".join([str(v) for v in values])


def _freq(s: Snapshot, spec: ModelSpec) -> float:
    nominal = spec.nameplate.hashrate_ths
    return round(600.0 * s.hashrate_ths / nominal, 2) if nominal else 0.0


def _work_utility(s: Snapshot) -> float:
    return round(s.total_th_s * 1e12 / 4294967296.0 / (max(s.uptime_s, 1) / 60.0), 2)


def _mm_string(ctx: _Ctx, with_chips: bool) -> str:
    """The `MM ID0` device string of the A-series and the Nano 3S."""
    s, spec = ctx.snap, ctx.dev.spec
    home = spec.env_key == "ITemp"
    n = spec.boards
    alive = sum(1 for b in s.boards if b.alive)
    sep = " " if n > 1 else ""  # multi-board firmware pads the SYSTEMSTATU value
    p: list[str] = [f"Ver[{spec.ver}]"]
    if home:
        p += [f"LVer[{spec.firmware}]", f"BVer[{spec.firmware}]", "FW[Release]", f"LED[{int(s.led)}-0]"]
    p += [f"DNA[{ctx.dev.traits.dna}]", "MEMFREE[63728]"]
    if home:
        p.append("PFCnt[0]")
    p += [
        "NETFAIL[0 0 0 0 0 0 0 0]",
        f"SYSTEMSTATU[Work: {s.system_status}, Hash Board: {alive}{sep}]",
        f"Elapsed[{s.uptime_s}]",
        "BOOTBY[0x04.00000000]",
        f"LW[{int(s.total_th_s * 232.83)}]",
        f"MH[{_ints([0] * n)}]",
    ]
    if home:
        p.append("DHW[0]")
    p += [f"HW[{s.hw_errors}]", f"DH[{s.hw_error_pct:.3f}%]"]
    tmax = s.temp_chip_max_c or 0
    tavg = s.temp_chip_avg_c or 0
    if home:
        p += [f"ITemp[{s.env_raw_c}]", f"OTemp[{s.temp_board_max_c or 0}]", f"TMax[{tmax}]", f"TAvg[{tavg}]",
              f"TarT[{spec.target_temp_c}]"]
    else:
        p += [f"Temp[{s.env_raw_c}]", f"TMax[{tmax}]", f"TAvg[{tavg}]"]
    p += [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
    p.append(f"FanR[{s.fan_pct}%]")
    if not home:
        p.append(f"Vo[{300 if s.ps[4] else 0}]")  # chip core voltage (cV): fixed while hashing
    p.append(f"PS[{_ints(s.ps)}]")
    if spec.has_wallpower:
        p.append(f"WALLPOWER[{s.power_w}]")
    ghs_avg = [f"{b.hashrate_avg_ths * 1000.0:.2f}" for b in s.boards]
    p += [
        f"GHSspd[{s.hashrate_ths * 1000.0:.2f}]",
        f"DHspd[{s.hw_error_pct:.3f}%]",
        f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]",
        f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]",
        f"WU[{_work_utility(s):.2f}]",
        f"Freq[{_freq(s, spec):.2f}]",
    ]
    if not home:
        p.append(f"Led[{int(s.led)}]")
    p += [
        f"MGHS[{' '.join(ghs_avg)}]",
        f"MTmax[{_ints([b.temp_chip_max_c or 0 for b in s.boards])}]",
        f"MTavg[{_ints([b.temp_chip_avg_c or 0 for b in s.boards])}]",
        f"TA[{sum(b.chips_ok for b in s.boards)}]",
        f"Core[{spec.core}]",
    ]
    if home:
        p.append("BIN[60]")
    p.append("PING[78]")
    if not home:
        p += ["POWS[0]", f"HASHS[{_ints([0] * n)}]", "POOLS[0]"]
    p += [
        f"SoftOFF[{SOFT_OFF_CODE if s.soft_off else 0}]",
        f"ECHU[{_ints(s.echu)}]",
        f"ECMM[{s.ecmm}]",
    ]
    if with_chips:
        for b in s.boards:
            p.append(f"PVT_T{b.index}[{ctx.dev.pvt_text(b.index, b.chip_base_c, b.dead_chips)}]")
    p += [f"WORKMODE[{s.work_mode_index}]", f"WORKLEVEL[{s.work_level}]", f"MPO[{s.power_limit_w}]"]
    return " ".join(p)


def _q_summary(ctx: _Ctx) -> str:
    """The Avalon Q `MM ID0:Summary` value: `'STATS':{Key[value] ...}`."""
    s, spec = ctx.snap, ctx.dev.spec
    alive = sum(1 for b in s.boards if b.alive)
    board = s.boards[0]
    p = [
        f"Ver[{spec.ver}]", f"LVer[{spec.firmware}]", f"BVer[{spec.firmware}]", "HashMcu0Ver[Q_hb_v1.1]",
        "FanMcuVer[Q_fb_v1.2]", "CPU[K230]", "FW[Release]", f"DNA[{ctx.dev.traits.dna}]",
        f"STATE[{2 if s.soft_off else 1}]", "MEMFREE[67952]", "NETFAIL[0 0 0 0 0 0 0 0]", "SSID[]", "RSSI[0]",
        "NetDevType[0]", f"SYSTEMSTATU[Work: {s.system_status}, Hash Board: {alive}]", f"Elapsed[{s.uptime_s}]",
        "BOOTBY[0x01.00000000]", f"LW[{int(s.total_th_s * 232.83)}]", "MH[0]", "DHW[0]", f"HW[{s.hw_errors}]",
        f"DH[{s.hw_error_pct:.3f}%]", f"ITemp[{s.env_raw_c}]", f"HBITemp[{board.temp_in_c or 0}]",
        f"HBOTemp[{board.temp_out_c or 0}]", f"TMax[{s.temp_chip_max_c or 0}]", f"TAvg[{s.temp_chip_avg_c or 0}]",
        f"TarT[{spec.target_temp_c}]",
    ]
    p += [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
    p += [
        f"FanR[{s.fan_pct}%]", f"SoftOffTime[{s.soft_off_time}]", f"SoftOnTime[{s.soft_on_time}]", "Filter[16882]",
        "FanErr[0]", "SoloAllowed[1]", f"PS[{_ints(s.ps)}]", "PCOMM_E[0]",
        f"GHSspd[{s.hashrate_ths * 1000.0:.2f}]", f"DHspd[{s.hw_error_pct:.3f}%]",
        f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]", f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]",
        f"WU[{_work_utility(s):.2f}]", f"Freq[{_freq(s, spec):.2f}]",
        f"MGHS[{' '.join(f'{b.hashrate_avg_ths * 1000.0:.2f}' for b in s.boards)}]",
        f"TA[{sum(b.chips_ok for b in s.boards)}]", f"Core[{spec.core}]", "PING[22]",
        f"SoftOFF[{SOFT_OFF_CODE if s.soft_off else 0}]", f"ECHU[{_ints(s.echu)}]", f"ECMM[{s.ecmm}]",
        f"WORKMODE[{s.work_mode_index}]", f"WORKLEVEL[{s.work_level}]", f"MPO[{s.power_limit_w}]",
        f"Led[{int(s.led)}]",
    ]
    return "'STATS':{" + " ".join(p) + "}"


def _q_hbinfo(ctx: _Ctx) -> str:
    s = ctx.snap
    parts = [f"PVT_T{b.index}[{ctx.dev.pvt_text(b.index, b.chip_base_c, b.dead_chips)}]" for b in s.boards]
    return "'HB0':{" + " ".join(parts) + "}"


def _device_entry(ctx: _Ctx, with_chips: bool) -> dict[str, Any]:
    spec, s = ctx.dev.spec, ctx.snap
    entry: dict[str, Any] = {"STATS": 0, "ID": spec.stats_id, "Elapsed": s.uptime_s, "Calls": 0,
                             "Wait": 0.0, "Max": 0.0, "Min": 99999999.0}
    if spec.layout == "q":
        entry["MM ID0:Summary"] = _q_summary(ctx)
        if with_chips:
            entry["HBinfo"] = _q_hbinfo(ctx)
    else:
        entry["MM ID0"] = _mm_string(ctx, with_chips)
    entry["MM Count"] = 1
    entry["Nonce Mask"] = 25
    return entry


def _pool_entry(ctx: _Ctx) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.dev.spec
    diff = float(spec.pool_diff)
    sent = s.uptime_s // 30
    return {
        "STATS": 1, "ID": "POOL0", "Elapsed": s.uptime_s, "Calls": 0, "Wait": 0.0, "Max": 0.0,
        "Min": 99999999.0, "Pool Calls": 0, "Pool Attempts": 0, "Pool Wait": 0.0, "Pool Max": 0.0,
        "Pool Min": 99999999.0, "Pool Av": 0.0, "Work Had Roll Time": False, "Work Can Roll": False,
        "Work Had Expire": False, "Work Roll Time": 0, "Work Diff": diff, "Min Diff": diff, "Max Diff": diff,
        "Min Diff Count": s.accepted, "Max Diff Count": s.accepted, "Times Sent": s.accepted + sent,
        "Bytes Sent": (s.accepted + sent) * 160, "Times Recv": sent * 2, "Bytes Recv": sent * 900,
        "Net Bytes Sent": (s.accepted + sent) * 160, "Net Bytes Recv": sent * 900,
    }


def _stats(ctx: _Ctx) -> dict[str, Any]:
    items = [_device_entry(ctx, with_chips=True), _pool_entry(ctx)]
    return _reply(_status("S", 70, "CGMiner stats", ctx.when()), "STATS", items)


def _litestats(ctx: _Ctx) -> dict[str, Any]:
    if not ctx.dev.spec.has_litestats:
        return _invalid(ctx)
    spec = ctx.dev.spec
    if spec.layout == "q":
        items: list[dict[str, Any]] = [{"MM ID0:Summary": _q_summary(ctx)}]
    else:
        items = [_device_entry(ctx, with_chips=False)]
    return _reply(_status("S", 70, "CGMiner stats", ctx.when()), "STATS", items)


def _invalid(ctx: _Ctx) -> dict[str, Any]:
    return _reply(_status("E", CODE_INVALID_COMMAND, "Invalid command", ctx.when()))


def _asc_info(ctx: _Ctx, msg: str) -> dict[str, Any]:
    return _reply(_status("I", CODE_ASC_INFO, f"ASC 0 set info: {msg}", ctx.when()))


def _asc_ok(ctx: _Ctx) -> dict[str, Any]:
    return _reply(_status("S", CODE_ASC_OK, "ASC 0 set OK", ctx.when()))


def _asc_failed(ctx: _Ctx, why: str) -> dict[str, Any]:
    return _reply(_status("E", CODE_ASC_FAILED, f"ASC 0 set failed: {why}", ctx.when()))


def _ascset(ctx: _Ctx) -> dict[str, Any]:
    """`ascset|0,<option>[,<values>]`: softoff, softon, workmode/worklevel set, reboot, led."""
    parts = [p.strip() for p in ctx.param.split(",")]
    if not parts[0].isdigit() or int(parts[0]) != 0:
        return _reply(_status("E", CODE_INVALID_ASC, f"Invalid ASC id {parts[0] or '?'} - range is 0 - 0", ctx.when()))
    if len(parts) < 2 or not parts[1]:
        return _asc_failed(ctx, "missing option")
    opt, args = parts[1].lower(), parts[2:]
    dev = ctx.dev
    if opt in ("softoff", "softon"):
        # `<unix-ts>` or `1:<unix-ts>`: the firmware acts at that time on its own clock, so a sender whose clock
        # is ahead of the miner's schedules the change for later. A time now or past, or none, acts at once.
        stamp = args[0].rsplit(":", 1)[-1] if args else ""
        at = int(stamp) if stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 else 0
        dev.set_soft_off_at(opt == "softoff", at)
        return _asc_info(ctx, f"success {opt}:{stamp or int(dev.now())}")
    if opt in ("workmode", "worklevel"):
        if len(args) == 2 and args[0] == "set" and args[1].lstrip("-").isdigit():
            try:
                (dev.set_work_mode if opt == "workmode" else dev.set_work_level)(int(args[1]))
            except ValueError as exc:
                return _asc_failed(ctx, str(exc))
            return _asc_ok(ctx)
        if not args or args[0] == "get":
            snap = ctx.snap
            level = snap.work_mode_index if opt == "workmode" else snap.work_level
            return _asc_info(ctx, f"{opt.upper()}[{level}]")
        return _asc_failed(ctx, f"usage: 0,{opt},set,<n>")
    if opt == "reboot":
        dev.reboot()
        return _asc_info(ctx, "success reboot")
    if opt == "led":
        value = args[0] if args else ""
        if value in ("1-1", "1-0"):
            dev.set_led(value == "1-1")
            return _asc_ok(ctx)
        if value == "1-255":
            return _asc_info(ctx, f"LED[{int(ctx.snap.led)}]")
        return _asc_failed(ctx, "usage: 0,led,1-1|1-0|1-255")
    return _asc_failed(ctx, f"unknown option '{opt}'")


_QUERIES = frozenset({("workmode", "get"), ("worklevel", "get"), ("workmode", ""), ("worklevel", ""),
                      ("led", "1-255")})


def _record_command(dev: AvalonDevice, name: str, parameter: str, body: dict[str, Any]) -> None:
    """Log a control command (`ascset`, `restart`) with the firmware's verdict; `ascset` queries
    (`workmode,get`, `led,1-255`) are reads, not commands."""
    parts = [p.strip() for p in parameter.split(",")]
    if name == "ascset" and len(parts) >= 2 and (parts[1].lower(), parts[2] if len(parts) > 2 else "") in _QUERIES:
        return
    status = body["STATUS"]
    if isinstance(status, str):  # restart
        dev.record_command(name, {}, accepted=True, msg=status)
        return
    first = status[0]
    command = f"ascset {parts[1].lower()}" if name == "ascset" and len(parts) >= 2 and parts[1] else name
    params = {"parameter": parameter} if parameter else {}
    dev.record_command(command, params, accepted=first["STATUS"] in ("S", "I"), msg=str(first["Msg"]))


def _restart(ctx: _Ctx) -> dict[str, Any]:
    ctx.dev.reboot()
    return {"STATUS": "RESTART", "id": 1}


COMMANDS: dict[str, Callable[[_Ctx], dict[str, Any]]] = {
    "version": _version,
    "devdetails": _devdetails,
    "summary": _summary,
    "devs": _devs,
    "pools": _pools,
    "stats": _stats,
    "estats": _stats,  # no zombie devices to hide: same as stats
    "litestats": _litestats,
    "ascset": _ascset,
    "restart": _restart,
}

# Firmware layouts other than "mm" and "q" answer some commands their own way: layout -> command ->
# handler, filled in by simulators.avalon_layouts (which simulators.miner imports: every simulated
# Avalon has them; this module imports neither, so the two do not import each other).
LAYOUT_COMMANDS: dict[str, dict[str, Callable[[_Ctx], dict[str, Any]]]] = {}


# -- encoding -----------------------------------------------------------------------------------


def encode_json(obj: dict[str, Any], bare_nan: bool = False) -> bytes:
    """A reply as CGMiner-derived firmware writes it (Avalon and Antminer alike): compact JSON, with
    every NAN placeholder turned into the bare `nan` token some firmware emits when `bare_nan`."""
    # orjson: the same compact JSON as json.dumps(separators=(",", ":")) (non-ASCII as UTF-8, not
    # \u escapes; floats below 1e-4 as 0.00001, not 1e-05), 5-10x faster on these replies.
    raw = orjson.dumps(obj)
    return raw.replace(_NAN_JSON, b"nan") if bare_nan else raw


def _text_value(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v == NAN:
        return "nan"
    return str(v)


def _text(obj: dict[str, Any]) -> bytes:
    """CGMiner's plain-text form: `STATUS=S,When=..|SECTION,Key=v,..|`."""
    out: list[str] = []
    status = obj["STATUS"]
    if isinstance(status, str):  # restart
        return f"{status}|".encode()
    for key, items in obj.items():
        if key == "id":
            continue
        for item in items:
            fields = ",".join(f"{k}={_text_value(v)}" for k, v in item.items())
            first = next(iter(item), None)
            # Items that carry their own index (POOL=0, ASC=0, STATS=0) need no section name.
            out.append(fields if key == "STATUS" or first in ("POOL", "ASC", "STATS", "DEVDETAILS")
                       else f"{key},{fields}")
    return ("|".join(out) + "|").encode()


def answer(data: bytes, dev: AvalonDevice, bare_nan: bool = False) -> bytes:
    """The reply to one request, NUL-terminated, exactly as the firmware would send it."""
    req = parse_request(data)
    ctx = _Ctx(dev, req.parameter, bare_nan)
    if req.error is not None:
        code, msg = req.error
        return encode_json(_reply(_status("E", code, msg, ctx.when())), False) + NUL
    joined = len(req.commands) > 1
    parts: list[tuple[str, dict[str, Any]]] = []
    own = LAYOUT_COMMANDS.get(dev.spec.layout)
    for name in req.commands:
        handler = (own.get(name) if own else None) or COMMANDS.get(name)
        if handler is None:
            body = _invalid(ctx)
        elif joined and name in NOT_JOINABLE:
            body = _reply(_status("E", CODE_ACCESS_DENIED, f"Access denied to '{name}' command", ctx.when()))
        else:
            body = handler(ctx)
        if name in NOT_JOINABLE:
            _record_command(dev, name, req.parameter, body)
        parts.append((name, body))
    if not req.is_json:
        if not joined:
            return _text(parts[0][1]) + NUL
        return b"".join(f"CMD={name}|".encode() + _text(body) for name, body in parts) + NUL
    return encode_answer(parts, joined, bare_nan)


def encode_answer(parts: list[tuple[str, dict[str, Any]]], joined: bool, bare_nan: bool = False) -> bytes:
    """The bytes answering a JSON request, NUL-terminated: one command's reply as it is; a joined
    `a+b` request's as {"a":[reply],"b":[reply],"id":1}, built by hand so repeated names (a+a)
    survive, as they do on the firmware."""
    if not joined:
        return encode_json(parts[0][1], bare_nan) + NUL
    inner = b",".join(json.dumps(name).encode() + b":[" + encode_json(body, bare_nan) + b"]" for name, body in parts)
    return b"{" + inner + b',"id":1}' + NUL


def damage(reply: bytes, faults: Faults) -> bytes:
    """Apply the wire faults that spoil a reply's bytes (bare nan is applied while encoding)."""
    for key, value in faults.device_keys:
        reply = _with_device_key(reply, key.encode(), value.encode())
    if faults.malformed:
        # Drop the colon after the first key: `{"STATUS"[{...` — no lenient fix-up repairs that.
        i = reply.find(b'":')
        reply = reply[:i + 1] + reply[i + 2:] if i >= 0 else b"{" + reply
    if faults.truncated:
        body = reply[:-1] if reply.endswith(NUL) else reply
        reply = body[: max(1, len(body) // 2)]  # cut mid-reply, no terminator
    return reply


_DEVICE_STRING_START = re.compile(rb"(?<![A-Za-z0-9_])Ver\[[^\]]*\]")  # not LVer/BVer/HVer/...Ver


def _with_device_key(reply: bytes, key: bytes, value: bytes) -> bytes:
    """`key[value]` in every device string of the reply: in place of the key's own value, or after
    `Ver[...]` where the firmware does not send the key."""
    pattern = re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(key) + rb"\[[^\]]*\]")
    replacement = key + b"[" + value + b"]"
    replaced, count = pattern.subn(lambda _: replacement, reply)
    if count:
        return replaced
    return _DEVICE_STRING_START.sub(lambda m: m.group(0) + b" " + replacement, reply)

