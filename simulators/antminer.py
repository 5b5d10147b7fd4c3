"""Bitmain Antminer stock firmware: BMMiner RPC on port 4028 and the digest-auth web UI on port 80.

Pure request -> reply code (no sockets here), built from the same `Snapshot` physics as the Avalons.

Wire facts kept here (real S19/S21 stock firmware, as pyasic 0.79 reads it):
- RPC: CGMiner-style JSON on 4028, one request per connection, NUL-terminated reply, joined
  commands `a+b`. `version` -> `VERSION[0]` with `BMMiner`, `API`, `Miner`, `CompileTime` (the
  firmware version the web UI shows) and `Type` ("Antminer S19j Pro": the only place the RPC
  names the make). `summary` -> `GHS 5s` (a string, GH/s), `GHS av`. `stats` -> `STATS[0]` the
  version block, `STATS[1]` the device: `Elapsed`, `fan1..4`, `chain_acn1..3` (chips),
  `chain_acs1..3` (chip status string), `chain_rate1..3` (GH/s, strings), `temp_pcb1` /
  `temp_chip1` ("in-in-out-out"), `total_rateideal` + `rate_unit`. A request with
  `"new_api": true` gets the web UI's JSON shapes instead (newer firmware).
- Web: every path wants HTTP Digest (realm "antMiner Configuration", user root, password root);
  without it, 401 — which is how pyasic recognises an Antminer. `/cgi-bin/get_system_info.cgi`
  (`minertype`, `macaddr`, `hostname`, `serinum`), `summary.cgi` (`SUMMARY[0].status[]`, where
  anything but "s" is an error), `stats.cgi` (`STATS[0].chain[]`: `index`, `rate_real` GH/s,
  `asic_num`, `temp_pcb`, `temp_chip`, `temp_pic`, `sn`; a lost board is missing from the list),
  `pools.cgi`, `get_miner_conf.cgi` (`bitmain-work-mode`: "0" normal, "1" sleep, "3" low power;
  `pools`), `get_blink_status.cgi`, `get_network_info.cgi`; POST `set_miner_conf.cgi` (the web UI and
  pyasic send `miner-mode` 0/1/3; `bitmain-work-mode` is read too), `blink.cgi`, `reboot.cgi`. Every
  write (and RPC `restart`) is logged as a control command with the firmware's verdict. Unknown paths are 404 with an HTML body (pyasic takes any JSON reply to
  `/kaonsu/v1/brief` for a Marathon firmware).
- Stock firmware reports no power draw anywhere: `Snapshot.power_w` stays truth-only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from simulators.cgminer import NAN, NUL, POOL_URLS, encode_answer, encode_json, parse_request
from simulators.device import SwitchableDevice
from simulators.http import DigestAuth, HttpRequest, HttpResponse, html_page, json_response
from simulators.physics import BoardSnapshot, Snapshot, Traits
from simulators.specs import ModelSpec

REALM = "antMiner Configuration"
WEB_USER = "root"
WEB_PASSWORD = "root"
SERVER_HEADER = "lighttpd/1.4.32"
HOSTNAME = "Antminer"
API_VERSION = "3.1"
WEB_API_VERSION = "1.0.0"
RATE_UNIT = "GH"

# The firmware's four sensors per chain: two at the air inlet, two at the outlet; chip readings
# sit above the PCB ones. The spread shrinks as a chain cools (asleep: all close together).
MAX_SPREAD_C = 15


CODE_INVALID_COMMAND = 14
CODE_INVALID_JSON = 23
CODE_MISSING_COMMAND = 24
CODE_ACCESS_DENIED = 45


# -- facts derived from a snapshot (public: tests compare pyasic's numbers with these) -----------


def board_sensors(board: BoardSnapshot) -> tuple[list[int], list[int]]:
    """(temp_pcb, temp_chip) of one chain, four sensors each: [in, in, out, out]; zeros when lost."""
    if not board.alive or board.temp_chip_max_c is None:
        return [0, 0, 0, 0], [0, 0, 0, 0]
    chip_out = board.temp_chip_max_c
    spread = max(0, min(MAX_SPREAD_C, round((chip_out - 30) * 0.35)))
    chip_in = chip_out - spread
    chip = [chip_in, chip_in, chip_out, chip_out]
    return [t - spread for t in chip], chip


def mac_text(traits: Traits) -> str:
    """`02:AB:CD:EF:01:23`, as get_system_info.cgi shows it."""
    return ":".join(traits.mac[i:i + 2] for i in range(0, 12, 2)).upper()


def serial(traits: Traits, spec: ModelSpec, board: int | None = None) -> str:
    base = f"{spec.hwtype[-5:]}{traits.dna[-10:].upper()}"
    return f"{base}{board}" if board is not None else f"JY{traits.dna[-14:].upper()}"


def _ghs(ths: float) -> float:
    return round(ths * 1000.0, 2)


def _chip_status(n_ok: int, n: int, dead: tuple[int, ...] = ()) -> str:
    """`chain_acs`: one `o` per healthy chip, `x` for a dead one (at its place when known), grouped by eight."""
    if dead:
        marks = ["o"] * n
        for i in dead:
            marks[i] = "x"
        s = "".join(marks)
    else:
        s = "o" * n_ok + "x" * (n - n_ok)
    return " " + " ".join(s[i:i + 8] for i in range(0, len(s), 8)) if n_ok else ""


# `miner-mode` / `bitmain-work-mode` values: 0 normal, 1 sleep, 3 low power (pyasic 0.79's mapping).
MODE_NORMAL, MODE_SLEEP, MODE_LOW = "0", "1", "3"


def low_mode_index(spec: ModelSpec) -> int | None:
    return next((i for i, m in enumerate(spec.modes) if m.name == "Low"), None)


class Antminer:
    """One unit's firmware: its RPC (`rpc`) and web UI (`web`) over shared settings.

    The web settings (`pools`, fan control) live here because a real unit keeps them in its own
    config file: set through `set_miner_conf.cgi`, they show in `pools` over RPC too.
    """

    def __init__(self, dev: SwitchableDevice) -> None:
        self.dev = dev
        self.auth = DigestAuth(REALM, {WEB_USER: WEB_PASSWORD})
        user = f"hashfleet.{dev.traits.mac[-6:]}"
        self.pools: list[dict[str, str]] = [{"url": url, "user": user, "pass": "x"} for url in POOL_URLS]
        self.fan_ctrl = False
        self.fan_pwm = 100
        self.freq_level = 100

    # -- shared ---------------------------------------------------------------------------------

    @property
    def spec(self) -> ModelSpec:
        return self.dev.spec

    def _version_block(self) -> dict[str, Any]:
        spec = self.spec
        return {"BMMiner": spec.ver, "API": API_VERSION, "Miner": spec.swtype, "CompileTime": spec.firmware,
                "Type": spec.prod}

    def _status_items(self, s: Snapshot) -> list[dict[str, Any]]:
        """The web summary's health list: anything not "s" is an error (pyasic reads `msg`)."""
        lost = [b.index for b in s.boards if not b.alive]
        rate: dict[str, Any] = {"type": "rate", "status": "s", "code": 0, "msg": ""}
        short = [b for b in s.boards if b.alive and b.dead_chips]
        if lost:
            rate = {"type": "rate", "status": "e", "code": 131,
                    "msg": f"Chain {', '.join(str(b) for b in lost)} lost: hashrate too low"}
        elif short:
            rate = {"type": "rate", "status": "w", "code": 132,
                    "msg": "; ".join(f"Chain {b.index} found {b.chips_ok} of {b.chips_expected} asic"
                                     for b in short)}
        temp: dict[str, Any] = {"type": "temp", "status": "s", "code": 0, "msg": ""}
        if s.tripped:
            temp = {"type": "temp", "status": "e", "code": 322, "msg": "Temperature protection: mining stopped"}
        elif "overheat throttle" in s.errors:
            temp = {"type": "temp", "status": "w", "code": 321, "msg": "Temperature too high: frequency lowered"}
        fans: dict[str, Any] = {"type": "fans", "status": "s", "code": 0, "msg": ""}
        if s.fans_failed:
            fans = {"type": "fans", "status": "e", "code": 241,
                    "msg": "; ".join(f"Fan {i + 1} speed too low: {s.fans_rpm[i]} rpm" for i in s.fans_failed)}
        items = [rate, {"type": "network", "status": "s", "code": 0, "msg": ""}, fans, temp]
        if s.error_code:  # the `error_code` fault: one more entry, as the firmware lists its faults
            where = "control board" if s.error_board < 0 else f"chain {s.error_board}"
            items.append({"type": "error", "status": "e", "code": s.error_code,
                          "msg": f"Error code {s.error_code} on {where}"})
        return items

    def _pool_items(self, s: Snapshot) -> list[dict[str, Any]]:
        diff = float(self.spec.pool_diff)
        items = []
        for i, pool in enumerate(self.pools):
            active = i == 0 and not s.soft_off
            acc, rej, stale = (s.accepted, s.rejected, s.stale) if i == 0 else (0, 0, 0)
            items.append({
                "POOL": i, "URL": pool["url"], "Status": "Alive", "Priority": i, "Quota": 1, "Long Poll": "N",
                "Getworks": s.uptime_s // 30 if i == 0 else 0, "Accepted": acc, "Rejected": rej,
                "Discarded": s.uptime_s // 15 if i == 0 else 0, "Stale": stale, "Get Failures": 0,
                "Remote Failures": 0, "User": pool["user"], "Last Share Time": "0:00:01" if acc else "0",
                "Diff": f"{diff / 1000:.1f}K", "Diff1 Shares": int(s.total_th_s * 1e12 / 4294967296.0) if i == 0 else 0,
                "Proxy Type": "", "Proxy": "", "Difficulty Accepted": acc * diff, "Difficulty Rejected": rej * diff,
                "Difficulty Stale": stale * diff, "Last Share Difficulty": diff if acc else 0.0,
                "Has Stratum": True, "Stratum Active": active,
                "Stratum URL": pool["url"].split("://", 1)[-1].rsplit(":", 1)[0] if active else "",
                "Has GBT": False, "Best Share": int(diff * 1000 + (acc * 7919) % 1000003) if acc else 0,
                "Pool Rejected%": round(100.0 * rej / max(1, acc + rej), 4),
                "Pool Stale%": round(100.0 * stale / max(1, acc + stale), 4),
            })
        return items

    # -- RPC (port 4028) --------------------------------------------------------------------------

    def rpc(self, data: bytes, bare_nan: bool = False) -> bytes:
        """The reply to one RPC request, NUL-terminated, as BMMiner sends it."""
        req = parse_request(data)
        new_api = False
        if req.is_json and req.error is None:
            try:
                new_api = bool(json.loads(data.decode("utf-8", "replace").strip(" \t\r\n\x00")).get("new_api"))
            except (ValueError, AttributeError):
                new_api = False
        ctx = _Rpc(self, bare_nan)
        if req.error is not None:
            return encode_json(ctx.error(*req.error), False) + NUL
        if new_api:
            return encode_json(self._new_api(req.commands[0], ctx.snap), False) + NUL
        parts = []
        joined = len(req.commands) > 1
        for name in req.commands:
            handler = _RPC_COMMANDS.get(name)
            if handler is None:
                body = ctx.error(CODE_INVALID_COMMAND, "Invalid command")
            elif joined and name in ("restart", "quit"):
                body = ctx.error(CODE_ACCESS_DENIED, f"Access denied to '{name}' command")
                self.dev.record_command(name, {}, accepted=False, msg=body["STATUS"][0]["Msg"])
            else:
                body = handler(ctx)
            parts.append((name, body))
        return encode_answer(parts, joined, bare_nan)

    def _new_api(self, command: str, s: Snapshot) -> dict[str, Any]:
        builders: dict[str, Callable[[Snapshot], dict[str, Any]]] = {
            "stats": self._web_stats, "summary": self._web_summary, "pools": self._web_pools,
        }
        builder = builders.get(command)
        if builder is None:
            return {"STATUS": {"STATUS": "E", "when": int(s.at), "Msg": "Invalid command",
                               "api_version": WEB_API_VERSION}}
        return builder(s)

    # -- web (port 80) ----------------------------------------------------------------------------

    def web(self, request: HttpRequest) -> HttpResponse:
        """Answer one HTTP request as the stock web UI (lighttpd + CGI) does."""
        if not self.auth.authorized(request):
            return self.auth.refuse()
        path = request.path
        if path in ("/", "/index.html"):
            return html_page(200, f"{self.spec.prod} — {HOSTNAME} configuration")
        if not path.startswith("/cgi-bin/") or not path.endswith(".cgi"):
            return html_page(404, f"{path} was not found on this server.")
        name = path[len("/cgi-bin/"):-len(".cgi")]
        reader = _WEB_GET.get(name)
        if reader is not None and request.method in ("GET", "HEAD"):
            return json_response(reader(self, self.dev.observe()))
        writer = _WEB_POST.get(name)
        if writer is not None and request.method in ("POST", "GET"):
            result = writer(self, request)
            self._record(name, request, result)
            return json_response(result)
        if reader is not None or writer is not None:
            return html_page(405, f"{request.method} is not allowed on {path}.")
        return html_page(404, f"{path} was not found on this server.")

    def _info(self) -> dict[str, Any]:
        return {"miner_version": self.spec.swtype, "CompileTime": self.spec.firmware, "type": self.spec.prod}

    def _web_status(self, s: Snapshot, msg: str) -> dict[str, Any]:
        return {"STATUS": "S", "when": int(s.at), "Msg": msg, "api_version": WEB_API_VERSION}

    def _rates(self, s: Snapshot) -> dict[str, Any]:
        return {"elapsed": s.uptime_s, "rate_5s": _ghs(s.hashrate_ths), "rate_30m": _ghs(s.hashrate_15m_ths),
                "rate_avg": _ghs(s.hashrate_avg_ths), "rate_ideal": _ghs(s.expected_hashrate_ths),
                "rate_unit": f"{RATE_UNIT}/s"}

    def _web_summary(self, s: Snapshot) -> dict[str, Any]:
        item = {**self._rates(s), "hw_all": s.hw_errors, "bestshare": int(self.spec.pool_diff * 1000),
                "status": self._status_items(s)}
        return {"STATUS": self._web_status(s, "summary"), "INFO": self._info(), "SUMMARY": [item]}

    def _web_stats(self, s: Snapshot) -> dict[str, Any]:
        spec = self.spec
        chains = []
        for b in s.boards:
            if not b.alive:
                continue  # the firmware lists only the chains it found
            pcb, chip = board_sensors(b)
            freq = round(spec.freq_mhz * (b.hashrate_ths / (s.expected_hashrate_ths / spec.boards))
                         if s.expected_hashrate_ths and b.hashrate_ths else 0.0)
            chains.append({
                "index": b.index, "freq_avg": freq, "rate_ideal": _ghs(s.expected_hashrate_ths / spec.boards),
                "rate_real": _ghs(b.hashrate_ths), "asic_num": b.chips_ok,
                "asic": _chip_status(b.chips_ok, spec.chips_per_board, b.dead_chips).strip(),
                "temp_pic": pcb, "temp_pcb": pcb, "temp_chip": chip, "hw": s.hw_errors // max(1, spec.boards),
                "eeprom_loaded": True, "sn": serial(self.dev.traits, spec, b.index), "hwp": 0.0,
            })
        item = {**self._rates(s), "chain_num": len(chains), "fan_num": spec.fans, "fan": list(s.fans_rpm),
                # No capture of Bitmain's web stats shows hwp_total (S23 Hyd.'s has none): unit unknown,
                # read by no reader; kept as it was.
                "hwp_total": round(s.hw_error_pct / 100.0, 4), "miner-mode": int(self.work_mode(s)),
                "freq-level": self.freq_level, "chain": chains}
        return {"STATUS": self._web_status(s, "stats"), "INFO": self._info(), "STATS": [item]}

    def _web_pools(self, s: Snapshot) -> dict[str, Any]:
        pools = [{"index": p["POOL"], "url": p["URL"], "user": p["User"], "status": p["Status"],
                  "priority": p["Priority"], "getworks": p["Getworks"], "accepted": p["Accepted"],
                  "rejected": p["Rejected"], "discarded": p["Discarded"], "stale": p["Stale"], "diff": p["Diff"],
                  "diff1": p["Diff1 Shares"], "diffa": p["Difficulty Accepted"], "diffr": p["Difficulty Rejected"],
                  "diffs": p["Difficulty Stale"], "lsdiff": p["Last Share Difficulty"], "lstime": p["Last Share Time"]}
                 for p in self._pool_items(s)]
        return {"STATUS": self._web_status(s, "pools"), "INFO": self._info(), "POOLS": pools}

    def _system_info(self, s: Snapshot) -> dict[str, Any]:
        tr, spec = self.dev.traits, self.spec
        return {
            "minertype": spec.prod, "nettype": "DHCP", "netdevice": "eth0", "macaddr": mac_text(tr),
            "hostname": HOSTNAME, "ipaddress": "", "netmask": "255.255.255.0", "gateway": "", "dnsservers": "",
            "system_mode": "GNU/Linux", "system_kernel_version": "Linux 4.9.38 #1 SMP PREEMPT",
            "system_filesystem_version": spec.firmware, "firmware_type": "Release", "serinum": serial(tr, spec),
        }

    def _network_info(self, s: Snapshot) -> dict[str, Any]:
        return {"nettype": "DHCP", "netdevice": "eth0", "macaddr": mac_text(self.dev.traits), "ipaddress": "",
                "netmask": "255.255.255.0", "conf_nettype": "DHCP", "conf_hostname": HOSTNAME,
                "conf_ipaddress": "", "conf_netmask": "", "conf_gateway": "", "conf_dnsservers": ""}

    def _miner_conf(self, s: Snapshot) -> dict[str, Any]:
        return {
            "pools": [dict(p) for p in self.pools], "api-listen": True, "api-network": True,
            "api-groups": "A:stats:pools:devs:summary:version", "api-allow": "A:0/0,W:*",
            "bitmain-fan-ctrl": self.fan_ctrl, "bitmain-fan-pwm": str(self.fan_pwm), "bitmain-use-vil": True,
            "bitmain-freq": str(self.spec.freq_mhz), "bitmain-voltage": "1400", "bitmain-ccdelay": "0",
            "bitmain-pwth": "0", "bitmain-work-mode": self.work_mode(s),
            "bitmain-freq-level": str(self.freq_level),
        }

    def _blink_status(self, s: Snapshot) -> dict[str, Any]:
        return {"blink": s.led}

    def work_mode(self, s: Snapshot) -> str:
        """`bitmain-work-mode` as get_miner_conf.cgi shows it."""
        if s.soft_off:
            return MODE_SLEEP
        return MODE_LOW if s.work_mode_index == low_mode_index(self.spec) else MODE_NORMAL

    def _set_miner_conf(self, request: HttpRequest) -> dict[str, Any]:
        try:
            conf = request.json()
            if not isinstance(conf, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return {"stats": "error", "code": "M001", "msg": "Invalid configuration"}
        key = "miner-mode" if "miner-mode" in conf else "bitmain-work-mode" if "bitmain-work-mode" in conf else None
        if key is not None:
            mode = str(conf[key]).strip()
            low = low_mode_index(self.spec)
            if mode not in (MODE_NORMAL, MODE_SLEEP, MODE_LOW) or (mode == MODE_LOW and low is None):
                return {"stats": "error", "code": "M002", "msg": f"Invalid work mode {mode!r}"}
            if mode != MODE_SLEEP:  # normal and low both hash; the mode picks power and speed
                self.dev.set_work_mode(low if mode == MODE_LOW and low is not None else 0)
            self.dev.set_soft_off(mode == MODE_SLEEP)
        pools = conf.get("pools")
        if isinstance(pools, list) and pools:
            self.pools = [{"url": str(p.get("url", "")), "user": str(p.get("user", "")), "pass": str(p.get("pass", ""))}
                          for p in pools if isinstance(p, dict)][:3]
        if "bitmain-fan-ctrl" in conf:
            self.fan_ctrl = bool(conf["bitmain-fan-ctrl"])
        if str(conf.get("bitmain-fan-pwm", "")).isdigit():
            self.fan_pwm = int(conf["bitmain-fan-pwm"])
        if str(conf.get("freq-level", "")).isdigit():
            self.freq_level = int(conf["freq-level"])
        return {"stats": "success", "code": "M000", "msg": "OK!"}

    def _record(self, name: str, request: HttpRequest, result: dict[str, Any]) -> None:
        """Log one web write: the parameters sent (JSON body) and whether the firmware took them."""
        try:
            sent = request.json() if request.body else {}
        except (ValueError, UnicodeDecodeError):
            sent = {"body": request.body[:200].decode("utf-8", "replace")}
        params = sent if isinstance(sent, dict) else {"body": sent}
        ok = result.get("stats", "success") == "success"
        self.dev.record_command(name, params, accepted=ok, msg=str(result.get("msg") or result.get("code", "")))

    def _blink(self, request: HttpRequest) -> dict[str, Any]:
        try:
            on = str(request.json().get("blink", "")).lower() == "true"
        except (ValueError, AttributeError):
            on = False
        self.dev.set_led(on)
        return {"code": "B000" if on else "B100"}

    def _reboot(self, request: HttpRequest) -> dict[str, Any]:
        self.dev.reboot()
        return {"code": "R000", "msg": "Reboot"}


_WEB_GET: dict[str, Callable[[Antminer, Snapshot], dict[str, Any]]] = {
    "get_system_info": Antminer._system_info,
    "get_network_info": Antminer._network_info,
    "get_miner_conf": Antminer._miner_conf,
    "get_blink_status": Antminer._blink_status,
    "summary": Antminer._web_summary,
    "stats": Antminer._web_stats,
    "pools": Antminer._web_pools,
}
_WEB_POST: dict[str, Callable[[Antminer, HttpRequest], dict[str, Any]]] = {
    "set_miner_conf": Antminer._set_miner_conf,
    "blink": Antminer._blink,
    "reboot": Antminer._reboot,
}


# -- RPC replies ----------------------------------------------------------------------------------


class _Rpc:
    """One RPC request's view: the snapshot is taken once, only if a command needs it."""

    __slots__ = ("fw", "bare_nan", "_snap")

    def __init__(self, fw: Antminer, bare_nan: bool) -> None:
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

    def status(self, code: int, msg: str, severity: str = "S") -> dict[str, Any]:
        return {"STATUS": severity, "When": self.when(), "Code": code, "Msg": msg,
                "Description": f"bmminer {self.fw.spec.ver}"}

    def reply(self, code: int, msg: str, section: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"STATUS": [self.status(code, msg)], section: items, "id": 1}

    def error(self, code: int, msg: str) -> dict[str, Any]:
        return {"STATUS": [self.status(code, msg, "E")], "id": 1}


def _rpc_version(ctx: _Rpc) -> dict[str, Any]:
    return ctx.reply(22, "BMMiner versions", "VERSION", [ctx.fw._version_block()])


def _rpc_devdetails(ctx: _Rpc) -> dict[str, Any]:
    spec = ctx.fw.spec
    items = [{"DEVDETAILS": b, "Name": spec.dev_name, "ID": b, "Driver": spec.driver, "Kernel": "", "Model": "",
              "Device Path": ""} for b in range(spec.boards)]
    return ctx.reply(69, "Device Details", "DEVDETAILS", items)


def _rpc_summary(ctx: _Rpc) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    minutes = max(s.uptime_s, 1) / 60.0
    diff1 = s.total_th_s * 1e12 / 4294967296.0
    diff = float(spec.pool_diff)
    item = {
        "Elapsed": s.uptime_s, "GHS 5s": f"{_ghs(s.hashrate_ths):.2f}", "GHS av": _ghs(s.hashrate_avg_ths),
        "GHS 30m": _ghs(s.hashrate_15m_ths), "Found Blocks": 0, "Getworks": s.uptime_s // 30,
        "Accepted": s.accepted, "Rejected": s.rejected, "Hardware Errors": s.hw_errors,
        "Utility": round(s.accepted / minutes, 2), "Discarded": s.uptime_s // 15, "Stale": s.stale,
        "Get Failures": 0, "Local Work": int(diff1 / 65536), "Remote Failures": 0,
        "Network Blocks": s.uptime_s // 600, "Total MH": round(s.total_th_s * 1e6, 4),
        "Work Utility": round(diff1 / minutes, 2), "Difficulty Accepted": s.accepted * diff,
        "Difficulty Rejected": s.rejected * diff, "Difficulty Stale": s.stale * diff,
        "Best Share": int(diff * 1000 + (s.accepted * 7919) % 1000003),
        # Per cent: BMMiner's API prints its ratio x 100 with four decimals (CGMiner's api.c API_PERCENT).
        "Device Hardware%": NAN if ctx.bare_nan else round(s.hw_error_pct, 4),
        "Device Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Rejected%": round(100.0 * s.rejected / max(1, s.accepted + s.rejected), 4),
        "Pool Stale%": round(100.0 * s.stale / max(1, s.accepted + s.stale), 4), "Last getwork": int(s.at),
    }
    return ctx.reply(11, "Summary", "SUMMARY", [item])


def _rpc_stats(ctx: _Rpc) -> dict[str, Any]:
    s, spec, fw = ctx.snap, ctx.fw.spec, ctx.fw
    dev: dict[str, Any] = {
        "STATS": 0, "ID": spec.stats_id, "Elapsed": s.uptime_s, "Calls": 0, "Wait": 0.0, "Max": 0.0,
        "Min": 99999999.0, "GHS 5s": f"{_ghs(s.hashrate_ths):.2f}", "GHS av": _ghs(s.hashrate_avg_ths),
        "rate_30m": _ghs(s.hashrate_15m_ths), "Mode": 2, "miner_count": spec.boards,
        "frequency": str(spec.freq_mhz), "fan_num": spec.fans,
    }
    for i in range(4):
        dev[f"fan{i + 1}"] = s.fans_rpm[i] if i < len(s.fans_rpm) else 0
    dev["temp_num"] = spec.boards
    sensors = [board_sensors(b) for b in s.boards]
    for b, (pcb, chip) in zip(s.boards, sensors, strict=True):
        dev[f"temp{b.index + 1}"] = max(pcb)
    for b, (pcb, chip) in zip(s.boards, sensors, strict=True):
        dev[f"temp2_{b.index + 1}"] = max(chip)
    for b, (pcb, chip) in zip(s.boards, sensors, strict=True):
        n = b.index + 1
        dev[f"temp_pcb{n}"] = "-".join(str(t) for t in pcb)
        dev[f"temp_chip{n}"] = "-".join(str(t) for t in chip)
        dev[f"temp_pic{n}"] = "-".join(str(t) for t in pcb)
    ideal = _ghs(s.expected_hashrate_ths)
    dev.update({
        "total_rateideal": ideal, "rate_unit": RATE_UNIT, "total_freqavg": float(spec.freq_mhz),
        "total_acn": sum(b.chips_ok for b in s.boards), "total_rate": _ghs(s.hashrate_ths),
        "temp_max": max((max(p) for p, _ in sensors), default=0), "no_matching_work": 0,
    })
    for b in s.boards:
        n = b.index + 1
        dev[f"chain_acn{n}"] = b.chips_ok
        dev[f"chain_acs{n}"] = _chip_status(b.chips_ok, spec.chips_per_board, b.dead_chips)
        dev[f"chain_hw{n}"] = s.hw_errors // max(1, spec.boards) if b.alive else 0
        dev[f"chain_rate{n}"] = f"{_ghs(b.hashrate_ths):.2f}"
        dev[f"chain_rateideal{n}"] = round(ideal / spec.boards, 2)
        dev[f"freq{n}"] = spec.freq_mhz if b.alive else 0
    dev["miner_version"] = spec.swtype
    dev["miner_id"] = fw.dev.traits.dna[-16:]
    return ctx.reply(70, "BMMiner stats", "STATS", [dict(fw._version_block(), STATS=0), dev])


def _rpc_pools(ctx: _Rpc) -> dict[str, Any]:
    items = ctx.fw._pool_items(ctx.snap)
    return ctx.reply(7, f"{len(items)} Pool(s)", "POOLS", items)


def _rpc_devs(ctx: _Rpc) -> dict[str, Any]:
    s, spec = ctx.snap, ctx.fw.spec
    items = []
    for b in s.boards:
        pcb, chip = board_sensors(b)
        items.append({
            "ASC": b.index, "Name": spec.dev_name, "ID": b.index, "Enabled": "Y",
            "Status": "Alive" if b.alive else "Dead", "Temperature": float(max(chip)),
            "MHS av": round(b.hashrate_avg_ths * 1e6, 2), "MHS 5s": round(b.hashrate_ths * 1e6, 2),
            "Accepted": 0, "Rejected": 0, "Hardware Errors": s.hw_errors // max(1, spec.boards) if b.alive else 0,
            "Device Elapsed": s.uptime_s,
        })
    return ctx.reply(9, f"{len(items)} ASC(s)", "DEVS", items)


def _rpc_restart(ctx: _Rpc) -> dict[str, Any]:
    ctx.fw.dev.reboot()
    ctx.fw.dev.record_command("restart", {}, accepted=True, msg="RESTART")
    return {"STATUS": "RESTART", "id": 1}


_RPC_COMMANDS: dict[str, Callable[[_Rpc], dict[str, Any]]] = {
    "version": _rpc_version,
    "devdetails": _rpc_devdetails,
    "summary": _rpc_summary,
    "stats": _rpc_stats,
    "pools": _rpc_pools,
    "devs": _rpc_devs,
    "restart": _rpc_restart,
}

