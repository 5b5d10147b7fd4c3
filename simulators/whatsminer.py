"""MicroBT Whatsminer on stock btminer firmware: the API v2 on port 4028, privileged writes included.

Pure request -> reply code (no sockets here), built from the same `Snapshot` physics as the others.
Shapes follow real published replies (tests/data/replies/whatsminer/*/SOURCE.md): key order of a
2022 M30S+ VE40 capture for `summary`, `devs`/`edevs` and `pools`; the `STATUS` object of the
`get_*` commands as on the captured `get_psu`.

Wire facts kept here (API v2.0.x, as pyasic 0.79 reads it):
- CGMiner-style JSON on 4028, one request per connection, NUL-terminated reply; `summary`,
  `devs`, `edevs`, `pools`, `devdetails` may be joined (`summary+devs+pools`); the `get_*`
  commands and `status` answer alone with a flat `{"STATUS":"S","When":..,"Code":131,"Msg":{..}}`.
- `devdetails` names the make: `Driver` "bitmicro" (pyasic's detection) and `Model`
  "M30S+_VE40" (pyasic drops the underscore and zeroes the last digit to pick the class).
- `get_version` `Msg.fw_ver` is the firmware date; pyasic uses its API v3 client (port 4433) for
  firmware after 2024-11, so the simulated models carry earlier firmware.
- Writes are ciphertext only. `get_token` gives `time`, `salt`, `newsalt`; the client derives
  key = md5-crypt(password, salt) and sign = md5-crypt(key + time, newsalt) (the hash part of each),
  then sends `{"enc":1,"data":base64(AES-256-ECB(sha256(key), json + NUL padding))}` whose
  plaintext carries `"cmd"` and `"token": sign`. Replies to writes are `{"enc": base64(...)}`
  under the same key. A token lives 30 minutes. The salt belongs to the password (fixed per unit);
  `time` and `newsalt` change with every token.
- Codes: 131 command OK, 132 command error, 134 token OK, 135 check token error, 14 invalid
  command, 23 invalid JSON, 45 permission denied (a write sent in plaintext).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from passlib.hash import md5_crypt

from simulators.cgminer import NAN, NUL, POOL_URLS, encode_answer, encode_json, parse_request
from simulators.device import SwitchableDevice
from simulators.physics import BoardSnapshot, Snapshot
from simulators.specs import ModelSpec

PASSWORD = "admin"  # the factory password, which pyasic 0.79 also assumes
DESCRIPTION = "btminer"
TOKEN_LIFETIME_S = 30 * 60
MAX_TOKENS = 32  # the firmware keeps this many live tokens per client; older ones lapse
HOSTNAME = "WhatsMiner"
# Per-board chip readings around the board average, and the PCB sensor below the chips.
CHIP_MIN_BELOW_AVG_C = 9.0
PCB_BELOW_AVG_C = 12.0

CODE_INVALID_COMMAND = 14
CODE_INVALID_JSON = 23
CODE_PERMISSION_DENIED = 45
CODE_OK = 131
CODE_ERROR = 132
CODE_TOKEN_OK = 134
CODE_TOKEN_ERROR = 135
CODE_BASE64_ERROR = 137

# Error codes the simulator raises (pyasic's table names them): slot N not found, slot N overheat,
# intake (110) / exhaust (111) fan speed error.
ERROR_SLOT_NOT_FOUND = 530
ERROR_SLOT_TEMP_PROTECT = 350
ERROR_FAN_SPEED = 110

READ_COMMANDS = ("summary", "devs", "edevs", "pools", "devdetails", "get_version", "version", "status",
                 "get_psu", "get_miner_info", "get_error_code", "get_token")


class WhatsminerDevice(SwitchableDevice, Protocol):
    """What btminer needs from a simulated miner: power modes on top of sleep, LED and reboot."""

    def set_work_mode(self, mode: int) -> None: ...


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """One privileged command the unit accepted or refused: what a test asserts on."""

    cmd: str
    params: dict[str, Any]
    at: float
    ok: bool
    msg: str


@dataclass(slots=True)
class _Token:
    sign: str
    issued: float


def _crypt_part(word: str, salt: str) -> str:
    """The hash part of md5-crypt (`$1$salt$HASH` -> HASH), as btminer and its clients use it."""
    return md5_crypt.using(salt=salt).hash(word).split("$")[3]


def _aes(key: str) -> Cipher:
    return Cipher(algorithms.AES(binascii.unhexlify(hashlib.sha256(key.encode()).hexdigest())), modes.ECB())


def _pad(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 16)


def mac_text(dev: SwitchableDevice) -> str:
    mac = dev.traits.mac
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2)).upper()


def board_temps(board: BoardSnapshot) -> tuple[float, float, float, float]:
    """(pcb, chip min, chip max, chip avg) of one slot; zeros for a lost one."""
    if not board.alive or board.temp_chip_max_c is None:
        return 0.0, 0.0, 0.0, 0.0
    avg = float(board.chip_base_c)
    return avg - PCB_BELOW_AVG_C, avg - CHIP_MIN_BELOW_AVG_C, float(board.temp_chip_max_c), avg


def board_share_1m(s: Snapshot, board: BoardSnapshot) -> float:
    """A slot's share of the 1-minute hashrate (TH/s): the live split applied to the window, so the
    slots add up to the summary's `MHS 1m` (pyasic reports the sum of the slots)."""
    live = sum(b.hashrate_ths for b in s.boards)
    if live <= 0 or not board.alive:
        return 0.0
    return s.hashrate_1m_ths * board.hashrate_ths / live


class Whatsminer:
    """One unit's btminer: `rpc(data)` answers a request; `writes` logs every privileged command."""

    def __init__(self, dev: WhatsminerDevice, requests: Counter[str] | None = None,
                 password: str = PASSWORD, clock: Callable[[], float] = time.monotonic) -> None:
        self.dev = dev
        self.requests = requests
        self.password = password
        self.clock = clock  # token lifetimes run on real time, whatever clock drives the physics
        self.salt = dev.traits.dna[-8:]  # belongs to the password: fixed per unit
        self._key = _crypt_part(password, self.salt)
        self._tokens: list[_Token] = []
        self.writes: list[WriteCommand] = []
        self.power_limit_w: int | None = None  # None: the model's default for the mode
        self.power_mode = "Normal"
        self.led_auto = True
        user = f"hashfleet.{dev.traits.mac[-6:]}"
        self.pools = [{"url": url, "user": user} for url in POOL_URLS]

    @property
    def spec(self) -> ModelSpec:
        return self.dev.spec

    # -- dispatch -------------------------------------------------------------------------------

    def rpc(self, data: bytes, bare_nan: bool = False) -> bytes:
        """The reply to one request, NUL-terminated."""
        text = data.decode("utf-8", "replace").strip(" \t\r\n\x00")
        try:
            obj = json.loads(text) if text.startswith("{") else None
        except ValueError:
            return self._flat(CODE_INVALID_JSON, "invalid JSON message", "E") + NUL
        if isinstance(obj, dict) and "enc" in obj:
            return self._privileged(obj) + NUL
        if isinstance(obj, dict) and "cmd" in obj:  # a write in plaintext: refused, as the firmware does
            self._log(str(obj.get("cmd")), {}, ok=False, msg="permission denied")
            return self._flat(CODE_PERMISSION_DENIED, "permission denied", "E") + NUL
        req = parse_request(data)
        if req.error is not None:
            return self._flat(req.error[0], "invalid JSON message", "E") + NUL
        ctx = _Read(self, bare_nan)
        if len(req.commands) == 1:
            name = req.commands[0]
            flat = _FLAT.get(name)
            if flat is not None:
                return encode_json(flat(ctx), bare_nan) + NUL
            handler = _SECTIONS.get(name)
            body = handler(ctx) if handler is not None else ctx.invalid()
            return encode_answer([(name, body)], False, bare_nan)
        parts = []
        for name in req.commands:
            handler = _SECTIONS.get(name)
            parts.append((name, handler(ctx) if handler is not None else ctx.invalid()))
        return encode_answer(parts, True, bare_nan)

    def label(self, data: bytes) -> str:
        """How the request counter names a request: the command, or `cmd (enc)` for a write."""
        text = data.decode("utf-8", "replace").strip(" \t\r\n\x00")
        if text.startswith("{") and '"enc"' in text:
            try:
                plain = self._decrypt(json.loads(text)["data"])
                return f"{plain.get('cmd', '?')} (enc)"
            except (ValueError, KeyError, TypeError):
                return "? (enc)"
        return "+".join(parse_request(data).commands) or "?"

    # -- token flow -----------------------------------------------------------------------------

    def new_token(self) -> dict[str, str]:
        now = self.clock()
        stamp = f"{int(now) % 10000:04d}"
        newsalt = secrets.token_hex(4)
        sign = _crypt_part(self._key + stamp, newsalt)
        self._tokens = [t for t in self._tokens if now - t.issued < TOKEN_LIFETIME_S][-(MAX_TOKENS - 1):]
        self._tokens.append(_Token(sign, now))
        return {"time": stamp, "salt": self.salt, "newsalt": newsalt}

    def _token_ok(self, sign: Any) -> bool:
        now = self.clock()
        return any(t.sign == sign and now - t.issued < TOKEN_LIFETIME_S for t in self._tokens)

    def _decrypt(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, str):
            raise ValueError("no ciphertext")
        decryptor = _aes(self._key).decryptor()
        raw = decryptor.update(base64.b64decode(data, validate=False)) + decryptor.finalize()
        plain = json.loads(raw.rstrip(b"\0").decode("utf-8"))
        if not isinstance(plain, dict):
            raise ValueError("not an object")
        return plain

    def _encrypt(self, obj: dict[str, Any]) -> bytes:
        encryptor = _aes(self._key).encryptor()
        cipher = encryptor.update(_pad(json.dumps(obj, separators=(",", ":")).encode())) + encryptor.finalize()
        return encode_json({"enc": base64.b64encode(cipher).decode()})

    def _privileged(self, obj: dict[str, Any]) -> bytes:
        try:
            plain = self._decrypt(obj.get("data"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            self._log("?", {}, ok=False, msg="base64 decode error")
            return self._flat(CODE_BASE64_ERROR, "base64 decode error", "E")
        cmd = str(plain.pop("cmd", ""))
        sign = plain.pop("token", None)
        if not self._token_ok(sign):
            self._log(cmd, plain, ok=False, msg="check token error")
            return self._flat(CODE_TOKEN_ERROR, "check token error", "E")
        action = _WRITES.get(cmd)
        if action is None:
            self._log(cmd, plain, ok=False, msg="invalid cmd")
            return self._encrypt(self._status(CODE_INVALID_COMMAND, "invalid cmd", "E"))
        error = action(self, plain)
        self._log(cmd, plain, ok=error is None, msg=error or "API command OK")
        if error is not None:
            return self._encrypt(self._status(CODE_ERROR, error, "E"))
        return self._encrypt(self._status(CODE_OK, "API command OK"))

    def _log(self, cmd: str, params: dict[str, Any], *, ok: bool, msg: str) -> None:
        self.writes.append(WriteCommand(cmd, dict(params), self.dev.now(), ok, msg))
        self.dev.record_command(cmd, params, accepted=ok, msg=msg)

    # -- replies --------------------------------------------------------------------------------

    def _status(self, code: int, msg: Any, severity: str = "S") -> dict[str, Any]:
        return {"STATUS": severity, "When": int(self.dev.now()), "Code": code, "Msg": msg, "Description": ""}

    def _flat(self, code: int, msg: Any, severity: str = "S") -> bytes:
        return encode_json(self._status(code, msg, severity))

    def effective_power_limit(self, s: Snapshot) -> int:
        return self.power_limit_w if self.power_limit_w is not None else s.power_limit_w

    def error_codes(self, s: Snapshot) -> list[int]:
        codes = [ERROR_SLOT_NOT_FOUND + b.index for b in s.boards if not b.alive]
        if s.tripped:
            hottest = max((b for b in s.boards if b.alive), key=lambda b: b.chip_base_c, default=None)
            codes.append(ERROR_SLOT_TEMP_PROTECT + (hottest.index if hottest else 0))
        codes += [ERROR_FAN_SPEED + min(i, 1) for i in s.fans_failed]  # 110 intake, 111 exhaust
        if s.error_code:
            codes.append(s.error_code)  # the `error_code` fault: the code as given
        return codes


# -- privileged commands: each returns None when done, or the reason it was refused ------------------


def _power_off(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    fw.dev.set_soft_off(True)
    return None


def _power_on(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    fw.dev.set_soft_off(False)
    return None


def _adjust_power_limit(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    text = str(params.get("power_limit", "")).strip()
    if not text.isdigit():
        return "power_limit must be a whole number of watts"
    limit = int(text)
    top = int(fw.spec.modes[0].power_w * 1.03)  # "cannot be higher than the ordinary power of the machine"
    if not 0 < limit <= 99999 or limit > top:
        return f"power_limit out of range 1-{top}"
    fw.power_limit_w = limit
    fw.dev.set_power_limit(limit)  # the firmware clocks down until the draw fits
    return None


def _power_mode(mode: str) -> Callable[[Whatsminer, dict[str, Any]], str | None]:
    def act(fw: Whatsminer, params: dict[str, Any]) -> str | None:
        index = 1 if mode == "Low" and len(fw.spec.modes) > 1 else 0
        fw.dev.set_work_mode(index)
        fw.power_mode = mode
        return None

    return act


def _set_led(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    auto = params.get("param") == "auto"
    fw.led_auto = auto
    fw.dev.set_led(not auto)
    return None


def _reboot(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    fw.dev.reboot()
    return None


def _update_pools(fw: Whatsminer, params: dict[str, Any]) -> str | None:
    pools = [{"url": str(params[f"pool{i}"]), "user": str(params.get(f"worker{i}", ""))}
             for i in (1, 2, 3) if params.get(f"pool{i}")]
    if not pools:
        return "no pool given"
    fw.pools = pools
    return None


_WRITES: dict[str, Callable[[Whatsminer, dict[str, Any]], str | None]] = {
    "power_off": _power_off,
    "power_on": _power_on,
    "adjust_power_limit": _adjust_power_limit,
    "set_low_power": _power_mode("Low"),
    "set_normal_power": _power_mode("Normal"),
    "set_high_power": _power_mode("Normal"),  # the simulated models have no high mode
    "set_led": _set_led,
    "reboot": _reboot,
    "restart_btminer": _reboot,
    "update_pools": _update_pools,
}


# -- reads -------------------------------------------------------------------------------------------


class _Read:
    """One read request's view: the snapshot is taken once, only if a command needs it."""

    __slots__ = ("fw", "bare_nan", "_snap")

    def __init__(self, fw: Whatsminer, bare_nan: bool) -> None:
        self.fw = fw
        self.bare_nan = bare_nan
        self._snap: Snapshot | None = None

    @property
    def snap(self) -> Snapshot:
        if self._snap is None:
            self._snap = self.fw.dev.observe()
        return self._snap

    def when(self) -> int:
        return int(self._snap.at if self._snap is not None else self.fw.dev.now())

    def reply(self, code: int, msg: str, section: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        status = {"STATUS": "S", "When": self.when(), "Code": code, "Msg": msg, "Description": DESCRIPTION}
        return {"STATUS": [status], section: items, "id": 1}

    def invalid(self) -> dict[str, Any]:
        return {"STATUS": [{"STATUS": "E", "When": self.when(), "Code": CODE_INVALID_COMMAND, "Msg": "invalid cmd",
                            "Description": DESCRIPTION}], "id": 1}


def _mhs(ths: float) -> float:
    return round(ths * 1e6, 2)


def _summary(ctx: _Read) -> dict[str, Any]:
    s, fw, spec = ctx.snap, ctx.fw, ctx.fw.spec
    temps = [board_temps(b) for b in s.boards if b.alive]
    chip_min = min((t[1] for t in temps), default=0.0)
    chip_max = max((t[2] for t in temps), default=0.0)
    chip_avg = round(sum(t[3] for t in temps) / len(temps), 2) if temps else 0.0
    ths = s.hashrate_ths
    item = {
        "Elapsed": s.uptime_s, "MHS av": _mhs(s.hashrate_avg_ths), "MHS 5s": _mhs(ths), "MHS 1m": _mhs(s.hashrate_1m_ths),
        "MHS 5m": _mhs(s.hashrate_5m_ths), "MHS 15m": _mhs(s.hashrate_15m_ths), "HS RT": _mhs(s.hashrate_5m_ths),
        "Accepted": s.accepted, "Rejected": s.rejected, "Total MH": round(s.total_th_s * 1e6, 4),
        "Temperature": max((t[0] for t in temps), default=0.0), "freq_avg": spec.freq_mhz if ths else 0,
        "Fan Speed In": s.fans_rpm[0] if s.fans_rpm else 0, "Fan Speed Out": s.fans_rpm[-1] if s.fans_rpm else 0,
        "Power": int(s.power_w), "Power Rate": round(s.power_w / ths, 2) if ths else 0.0,
        "Pool Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Stale%": round(100.0 * s.stale / max(1, s.accepted + s.stale), 4), "Last getwork": 0,
        "Uptime": s.uptime_s + 37, "Security Mode": 0, "Hash Stable": s.uptime_s > 1800 and ths > 0,
        "Hash Stable Cost Seconds": min(s.uptime_s, 1538), "Hash Deviation%": NAN if ctx.bare_nan else 0.1061,
        "Target Freq": spec.freq_mhz, "Target MHS": int(s.expected_hashrate_ths * 1e6 * 0.97),
        "Env Temp": float(s.env_raw_c), "Power Mode": fw.power_mode,
        "Factory GHS": int(round(s.expected_hashrate_ths * 1000)), "Power Limit": fw.effective_power_limit(s),
        "Chip Temp Min": chip_min, "Chip Temp Max": chip_max, "Chip Temp Avg": chip_avg,
        "Debug": "-0.0_100.0_354", "Btminer Fast Boot": "disable",
    }
    return ctx.reply(11, "Summary", "SUMMARY", [item])


def _devs(ctx: _Read) -> dict[str, Any]:
    s, fw, spec = ctx.snap, ctx.fw, ctx.fw.spec
    items = []
    for b in s.boards:
        if not b.alive:
            continue  # btminer lists the slots it found
        pcb, cmin, cmax, cavg = board_temps(b)
        live = sum(x.hashrate_ths for x in s.boards)
        share = b.hashrate_ths / live if live else 0.0
        items.append({
            "ASC": b.index, "Slot": b.index, "Enabled": "Y", "Status": "Alive", "Temperature": pcb,
            "Chip Frequency": spec.freq_mhz if b.hashrate_ths else 0, "MHS av": _mhs(b.hashrate_avg_ths),
            "MHS 5s": _mhs(b.hashrate_ths), "MHS 1m": _mhs(board_share_1m(s, b)),
            "MHS 5m": _mhs(s.hashrate_5m_ths * share), "MHS 15m": _mhs(s.hashrate_15m_ths * share),
            "HS RT": _mhs(s.hashrate_5m_ths * share), "Accepted": s.accepted // spec.boards,
            "Rejected": s.rejected // spec.boards, "Last Valid Work": int(s.at) - 1, "Upfreq Complete": 1,
            "Effective Chips": b.chips_ok, "PCB SN": pcb_serial(fw, b.index),
            "Chip Data": f"{spec.core}-2039 BINV01-195001D", "Chip Temp Min": cmin, "Chip Temp Max": cmax,
            "Chip Temp Avg": cavg, "chip_vol_diff": 9,
        })
    return ctx.reply(9, f"{len(items)} ASC(s)", "DEVS", items)


def pcb_serial(fw: Whatsminer, board: int) -> str:
    return f"HEM1{fw.dev.traits.dna[-10:].upper()}{board:04d}"


def _pools(ctx: _Read) -> dict[str, Any]:
    s, fw = ctx.snap, ctx.fw
    diff = float(fw.spec.pool_diff)
    items = []
    for i, pool in enumerate(fw.pools):
        active = i == 0 and not s.soft_off
        acc, rej, stale = (s.accepted, s.rejected, s.stale) if i == 0 else (0, 0, 0)
        url = pool["url"]
        items.append({
            "POOL": i + 1, "URL": url, "Status": "Alive", "Priority": i, "Quota": 1, "Long Poll": "N",
            "Getworks": s.uptime_s // 30 if i == 0 else 0, "Accepted": acc, "Rejected": rej, "Works": acc * 4,
            "Discarded": s.uptime_s // 15 if i == 0 else 0, "Stale": stale, "Get Failures": 0, "Remote Failures": 0,
            "User": pool["user"], "Last Share Time": int(s.at) - 1 if acc else 0,
            "Diff1 Shares": int(s.total_th_s * 1e12 / 4294967296.0) if i == 0 else 0, "Proxy Type": "", "Proxy": "",
            "Difficulty Accepted": acc * diff, "Difficulty Rejected": rej * diff, "Difficulty Stale": stale * diff,
            "Last Share Difficulty": diff if acc else 0.0, "Work Difficulty": diff if active else 0.0,
            "Has Stratum": 1, "Stratum Active": active,
            "Stratum URL": url.split("://", 1)[-1].rsplit(":", 1)[0] if active else "",
            "Stratum Difficulty": diff if active else 0.0, "Best Share": int(diff * 1000) if acc else 0,
            "Pool Rejected%": round(100.0 * rej / max(1, acc + rej), 4),
            "Pool Stale%": round(100.0 * stale / max(1, acc + stale), 4), "Bad Work": 0,
            "Current Block Height": 900000 + int(s.at // 600) % 100000 if active else 0,
            "Current Block Version": 536870916,
        })
    return ctx.reply(7, f"{len(items)} Pool(s)", "POOLS", items)


def _devdetails(ctx: _Read) -> dict[str, Any]:
    spec = ctx.fw.spec
    items = [{"DEVDETAILS": b, "Name": spec.dev_name, "ID": b, "Driver": spec.driver, "Kernel": "", "Model": spec.model}
             for b in range(spec.boards)]
    return ctx.reply(69, "Device Details", "DEVDETAILS", items)


def _get_version(ctx: _Read) -> dict[str, Any]:
    spec = ctx.fw.spec
    return ctx.fw._status(CODE_OK, {"api_ver": spec.ver, "fw_ver": spec.firmware, "platform": spec.swtype})


def _status_cmd(ctx: _Read) -> dict[str, Any]:
    s, fw = ctx.snap, ctx.fw
    return fw._status(CODE_OK, {
        "FirmwareVersion": f"'{fw.spec.firmware}'", "hash_percent": "0",
        "mineroff": "true" if s.soft_off else "false", "mineroff_reason": "api" if s.soft_off else "",
        "mineroff_time": str(s.soft_off_time) if s.soft_off else "",
        "power_limit_set": str(fw.effective_power_limit(s)), "power_mode": fw.power_mode.lower(),
    })


def _get_psu(ctx: _Read) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    amps = int(round(s.power_w / (spec.ps_vin / 100.0) * 1000)) if s.power_w else 0  # mA at vin (centivolts)
    fan = int(round(6976 * (0.5 + 0.5 * s.power_w / spec.nominal_power_w))) if spec.nominal_power_w else 0
    return ctx.fw._status(CODE_OK, {
        "name": spec.hwtype, "hw_version": "V01.00", "sw_version": "V01.00.V01.03", "model": spec.hwtype,
        "iin": str(amps), "vin": str(spec.ps_vin), "fan_speed": str(fan), "version": "-1",
        "serial_no": f"A12{ctx.fw.dev.traits.dna[-13:].upper()}", "vender": "7",
    })


def _get_miner_info(ctx: _Read) -> dict[str, Any]:
    fw = ctx.fw
    return fw._status(CODE_OK, {"hostname": HOSTNAME, "ledstat": "auto" if fw.led_auto else "red", "mac": mac_text(fw.dev)})


def _get_error_code(ctx: _Read) -> dict[str, Any]:
    s = ctx.snap
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.at))
    return ctx.fw._status(CODE_OK, {"error_code": [{str(code): stamp} for code in ctx.fw.error_codes(s)]})


def _get_token(ctx: _Read) -> dict[str, Any]:
    return ctx.fw._status(CODE_TOKEN_OK, ctx.fw.new_token())


_SECTIONS: dict[str, Callable[[_Read], dict[str, Any]]] = {
    "summary": _summary,
    "devs": _devs,
    "edevs": _devs,  # no zombie slots to hide
    "pools": _pools,
    "devdetails": _devdetails,
}
_FLAT: dict[str, Callable[[_Read], dict[str, Any]]] = {
    "get_version": _get_version,
    "version": _get_version,
    "status": _status_cmd,
    "get_psu": _get_psu,
    "get_miner_info": _get_miner_info,
    "get_error_code": _get_error_code,
    "get_token": _get_token,
}
