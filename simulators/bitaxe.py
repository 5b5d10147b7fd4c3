"""Bitaxe (ESP-Miner / AxeOS firmware): an HTTP API on port 80 and nothing on 4028.

Pure request -> reply code (no sockets here), built from the same `Snapshot` physics as the others.

Wire facts kept here (ESP-Miner 2.x, as pyasic 0.79 reads it):
- `GET /` is the AxeOS single-page app; the word "AxeOS" in it is how pyasic recognises a Bitaxe.
  ESP-Miner serves it from `index.html.gz` with `Content-Encoding: gzip` whatever the client asks for
  (main/http_server/http_server.c), so this page is gzip-encoded too.
- `GET /api/system/info` holds everything: `hashRate` (GH/s, live), `power` (W, a float from the
  board's power monitor), `temp` (ASIC, °C), `vrTemp` (voltage regulator), `fanrpm`, `fanspeed`
  (%), `uptimeSeconds`, `sharesAccepted`/`sharesRejected`, `bestDiff` ("4.21G"), `ASICModel`
  (pyasic picks the class from it: BM1370 -> Gamma), `asicCount`, `smallCoreCount` and
  `frequency` (pyasic's expected hashrate = smallCoreCount x asicCount x frequency MH/s),
  `macAddr`, `hostname`, `version`. pyasic's `get_data` also builds a config from `stratumURL`,
  `stratumPort`, `stratumUser`, `autofanspeed` (+ `fanspeed`): without them it fails outright.
- `GET /api/system/asic` (ASIC model and tuning options), `POST /api/system/restart` (plain text
  reply, as the firmware sends it), `PATCH /api/system` (settings; 200 with an empty body).
- No sleep mode exists: a soft-off simulated Bitaxe (fault `soft_off`) just shows 0 GH/s and idle
  power. Wire faults (`malformed`, `truncated`) damage the JSON replies; `/` stays intact.
"""

from __future__ import annotations

import gzip
from typing import Any

from simulators.cgminer import POOL_URLS
from simulators.device import Device
from simulators.http import HttpRequest, HttpResponse, json_response, text_response
from simulators.physics import Snapshot, Traits, noise
from simulators.specs import ModelSpec

HOSTNAME = "bitaxe"
IDF_VERSION = "v5.4.1"
INPUT_MV = 5000.0  # 5 V barrel jack

INDEX_HTML = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n  <title>AxeOS</title>\n'
    '  <base href="/">\n  <meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '  <link rel="icon" type="image/x-icon" href="favicon.ico">\n</head>\n<body>\n  <app-root></app-root>\n'
    '  <script src="main.js" type="module"></script>\n</body>\n</html>\n'
)
INDEX_PAGE = gzip.compress(INDEX_HTML.encode(), mtime=0)

# Settings `PATCH /api/system` may change, with their types (others are ignored, as the firmware does).
SETTINGS: dict[str, type] = {
    "stratumURL": str, "stratumPort": int, "stratumUser": str, "stratumPassword": str,
    "fallbackStratumURL": str, "fallbackStratumPort": int, "fallbackStratumUser": str,
    "fallbackStratumPassword": str, "hostname": str, "autofanspeed": int, "fanspeed": int, "temptarget": int,
    "overheat_mode": int, "rotation": int, "invertscreen": int, "displayTimeout": int, "statsFrequency": int,
}  # not `frequency`/`coreVoltage`: the physics does not model overclocking, so they stay as shipped


def mac_text(traits: Traits) -> str:
    return ":".join(traits.mac[i:i + 2] for i in range(0, 12, 2)).upper()


def power_w(s: Snapshot, traits: Traits) -> float:
    """The `power` field: the snapshot's watts with the decimals the board's power monitor shows.

    While the physics rounds power to whole watts, the decimals are added here and stay within
    half a watt, so `round(power)` (what pyasic reports) is `Snapshot.power_w`.
    """
    if not isinstance(s.power_w, int):
        return round(s.power_w, 2)  # the physics already keeps the decimals
    return round(s.power_w + 0.45 * noise(traits.noise_seed, 50, s.at, 5.0), 2)


def vr_temp_c(s: Snapshot, spec: ModelSpec) -> int:
    """`vrTemp`: the regulator runs a little cooler than the ASIC, closer to it when idle."""
    chip = s.boards[0].temp_chip_max_c if s.boards and s.boards[0].temp_chip_max_c is not None else 0
    load = s.power_w / spec.nominal_power_w if spec.nominal_power_w else 0.0
    return int(round(chip - 2 - 6 * min(1.2, load))) if chip else 0


def _si(value: float) -> str:
    """ESP-Miner's difficulty format: 4.21G, 87.3M, 512k."""
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f}{suffix}"
    return str(int(value))


class Bitaxe:
    """One unit's AxeOS: `web(request)` answers the HTTP API; settings persist across requests."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        host, _, port = POOL_URLS[0].split("://", 1)[1].rpartition(":")
        backup_host, _, backup_port = POOL_URLS[1].split("://", 1)[1].rpartition(":")
        user = f"hashfleet.{dev.traits.mac[-6:]}"
        spec = dev.spec
        self.settings: dict[str, Any] = {
            "stratumURL": host, "stratumPort": int(port), "stratumUser": user, "stratumPassword": "x",
            "fallbackStratumURL": backup_host, "fallbackStratumPort": int(backup_port),
            "fallbackStratumUser": user, "fallbackStratumPassword": "x", "hostname": HOSTNAME,
            "autofanspeed": 1, "fanspeed": 100, "temptarget": spec.target_temp_c, "frequency": spec.freq_mhz,
            "coreVoltage": spec.core_mv, "overheat_mode": 0, "rotation": 0, "invertscreen": 0,
            "displayTimeout": -1, "statsFrequency": 0,
        }

    def web(self, request: HttpRequest) -> HttpResponse:
        path, method = request.path.rstrip("/") or "/", request.method
        if path == "/" and method in ("GET", "HEAD"):
            return HttpResponse(200, INDEX_PAGE, "text/html", headers=[("Content-Encoding", "gzip")])
        routes = {
            ("GET", "/api/system/info"): lambda: json_response(self.system_info(self.dev.observe())),
            ("GET", "/api/system/asic"): lambda: json_response(self.asic_info()),
            ("POST", "/api/system/restart"): self._restart,
            ("PATCH", "/api/system"): lambda: self._patch(request),
        }
        route = routes.get(("GET" if method == "HEAD" else method, path))
        if route is None:
            known = {p for _, p in routes}
            status = 405 if path in known else 404
            return text_response("Method not allowed" if status == 405 else "Nothing matches the given URI", status)
        response = route()
        response.headers.append(("Access-Control-Allow-Origin", "*"))
        return response

    def asic_info(self) -> dict[str, Any]:
        spec = self.dev.spec
        return {
            "ASICModel": spec.core, "deviceModel": spec.model, "swarmColor": "purple",
            "asicCount": spec.chips_per_board * spec.boards, "defaultFrequency": spec.freq_mhz,
            "frequencyOptions": [400, 490, 525, 550, 600, 625], "defaultVoltage": spec.core_mv,
            "voltageOptions": [1000, 1060, 1100, 1150, 1200, 1250],
        }

    def system_info(self, s: Snapshot) -> dict[str, Any]:
        spec, tr, cfg = self.dev.spec, self.dev.traits, self.settings
        watts = power_w(s, tr)
        millivolts = round(INPUT_MV + 60.0 * noise(tr.noise_seed, 51, s.at, 11.0), 3)
        chip = s.boards[0].temp_chip_max_c if s.boards else None
        diff1_shares = s.total_th_s * 1e12 / 4294967296.0
        rejected = [{"message": "Above target", "count": s.rejected}] if s.rejected else []
        return {
            "power": watts, "voltage": millivolts, "current": round(watts / millivolts * 1e6, 2),
            "temp": float(chip) if chip is not None else -1.0, "vrTemp": vr_temp_c(s, spec),
            "maxPower": 40, "nominalVoltage": 5,
            "hashRate": round(s.hashrate_ths * 1000.0, 2), "expectedHashrate": round(s.expected_hashrate_ths * 1000.0),
            "bestDiff": _si(spec.pool_diff + diff1_shares * 0.7), "bestSessionDiff": _si(spec.pool_diff * 9.3),
            "poolDifficulty": spec.pool_diff, "isUsingFallbackStratum": 0, "isPSRAMAvailable": 1,
            "freeHeap": 8516432, "coreVoltage": cfg["coreVoltage"],
            "coreVoltageActual": int(round(cfg["coreVoltage"] - 6 + 3 * noise(tr.noise_seed, 52, s.at, 13.0))),
            "frequency": cfg["frequency"], "ssid": "hashfleet", "macAddr": mac_text(tr), "hostname": cfg["hostname"],
            "wifiStatus": "Connected!", "wifiRSSI": -48, "apEnabled": 0,
            "sharesAccepted": s.accepted, "sharesRejected": s.rejected, "sharesRejectedReasons": rejected,
            "uptimeSeconds": s.uptime_s, "smallCoreCount": spec.small_cores, "ASICModel": spec.core,
            "asicCount": spec.chips_per_board * spec.boards, "deviceModel": spec.model, "swarmColor": "purple",
            "stratumURL": cfg["stratumURL"], "stratumPort": cfg["stratumPort"], "stratumUser": cfg["stratumUser"],
            "stratumSuggestedDifficulty": spec.pool_diff, "stratumExtranonceSubscribe": 0,
            "fallbackStratumURL": cfg["fallbackStratumURL"], "fallbackStratumPort": cfg["fallbackStratumPort"],
            "fallbackStratumUser": cfg["fallbackStratumUser"],
            "version": spec.firmware, "axeOSVersion": spec.ver, "idfVersion": IDF_VERSION,
            "boardVersion": spec.hwtype, "runningPartition": "ota_0",
            "overheat_mode": 1 if s.tripped else cfg["overheat_mode"], "overclockEnabled": 0,
            "display": "SSD1306 (128x32)", "rotation": cfg["rotation"], "invertscreen": cfg["invertscreen"],
            "displayTimeout": cfg["displayTimeout"], "autofanspeed": cfg["autofanspeed"], "fanspeed": s.fan_pct,
            "temptarget": cfg["temptarget"], "fanrpm": s.fans_rpm[0] if s.fans_rpm else 0,
            "statsFrequency": cfg["statsFrequency"],
        }

    def _restart(self) -> HttpResponse:
        self.dev.reboot()
        self.dev.record_command("restart", {}, accepted=True, msg="System will restart shortly.")
        return text_response("System will restart shortly.")

    def _patch(self, request: HttpRequest) -> HttpResponse:
        try:
            changes = request.json()
            if not isinstance(changes, dict):
                raise ValueError("not an object")
            accepted = {key: SETTINGS[key](value) for key, value in changes.items() if key in SETTINGS}
        except (ValueError, TypeError, UnicodeDecodeError):
            self.dev.record_command("PATCH /api/system", {"body": request.body[:200].decode("utf-8", "replace")},
                                    accepted=False, msg="Invalid settings")
            return text_response("Invalid settings", 400)
        self.settings.update(accepted)
        self.dev.record_command("PATCH /api/system", changes, accepted=True,
                                msg=f"applied {', '.join(sorted(accepted)) or 'nothing'}")
        return HttpResponse(200, b"", "text/plain")
