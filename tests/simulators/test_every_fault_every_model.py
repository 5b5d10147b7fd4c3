"""Every fault switch on every simulated model, read back over TCP: the reply still comes (a layout that
cannot build it would close the connection instead), and on the Avalons the fault shows where the
firmware's layout has the field — dead chips as zeros in the per-chip lists (PVT_T, PVT_V, MW<b>) and
in `TA`, the code in `ECHU[b]` or `ECMM`, PSU drift in the power slot the layout reports (`WALLPOWER` /
last `PS`, Nano 3 `PS[5]`, A10 `PS[4]` DC watts), a stopped fan in `Fan1` / a module's `Fan`.

The per-make details of each fault are in test_faults_health.py; this module is the cross product,
including the Avalon layouts added beside it (simulators.avalon_layouts).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from simulators import CONTROLLER, ECHU_BOARD_LOST, ECMM_OVERHEAT, MODELS, FaultValueError, ManualClock, run_fleet
from simulators.probe import query, query_json
from simulators.specs import ModelSpec

KEYS = sorted(MODELS)
DAY_PER_S = 3600.0  # days_per_hour: one fault day per second of the clock
ROOT = httpx.DigestAuth("root", "root")
CODE = 8192  # the board fault's code (CODE_VOL_ERR on the 7xx tables); any bits would do
FIELD = re.compile(r"(\w+)\[([^\]]*)\]")


def _dying(spec: ModelSpec) -> dict[str, Any]:
    return {"chips_dying": ((0, spec.chips_per_board / 4.0),), "days_per_hour": DAY_PER_S}  # 2 days: half


# name -> (switches for this model, clock seconds to let them work)
FAULTS: dict[str, tuple[Callable[[ModelSpec], dict[str, Any]], float]] = {
    "dead_boards": (lambda spec: {"dead_boards": frozenset({0})}, 5.0),
    "overheat_throttle": (lambda spec: {"overheat": "throttle"}, 5.0),
    "overheat_shutdown": (lambda spec: {"overheat": "shutdown"}, 5.0),
    "soft_off": (lambda spec: {"soft_off": True}, 5.0),
    "ambient_c": (lambda spec: {"ambient_c": 45.0}, 5.0),
    "chips_dying": (_dying, 2.0),
    "fan_failing": (lambda spec: {"fan_failing": (0, 100.0), "days_per_hour": DAY_PER_S}, 1.0),
    "psu_drift": (lambda spec: {"psu_drift": 20.0, "days_per_hour": DAY_PER_S}, 1.0),
    "error_code_board": (lambda spec: {"error_code": (spec.boards - 1, CODE)}, 5.0),
    "error_code_controller": (lambda spec: {"error_code": (CONTROLLER, 2)}, 5.0),
    "pool_rejects": (lambda spec: {"pool_rejects": (5.0, 2.0)}, 600.0),
    "reboot_loop": (lambda spec: {"reboot_loop": 30.0}, 45.0),
    "hw_errors": (lambda spec: {"hw_errors": 3.0}, 600.0),
    "weak_board": (lambda spec: {"weak_board": (0, 0.5)}, 600.0),
    "bare_nan": (lambda spec: {"bare_nan": True}, 5.0),
    "malformed": (lambda spec: {"malformed": True}, 5.0),
    "truncated": (lambda spec: {"truncated": True}, 5.0),
    "device_keys": (lambda spec: {"device_keys": {"GHSspd": "inf", "TA": "-1", "Junk": "x"}}, 5.0),
}
WIRE = {"bare_nan", "malformed", "truncated", "device_keys"}


@pytest.fixture(scope="module")
def sim():
    with run_fleet(",".join(f"{key}:1" for key in KEYS), base="127.71.0.1", seed=71, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
    sim.clock.advance(120)
    yield
    for miner in sim.miners:
        miner.clear_faults()


def unit(sim, key: str):
    return next(m for m in sim.miners if m.spec.key == key)


# -- reading each make over TCP ------------------------------------------------------------------------


def http_get(host: str, path: str) -> bytes:
    """One plain HTTP/1.1 GET read to close: the bytes as they came, even when a wire fault spoilt them."""
    with socket.create_connection((host, 80), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


RPC_READS = {
    "avalon": (b'{"command":"summary+estats+pools"}', b'{"command":"version+devdetails+devs+stats+litestats"}',
               b"summary|"),
    "antminer": (b'{"command":"version+devdetails+summary+stats+pools+devs"}',),
    "whatsminer": (b'{"command":"summary+devs+pools+devdetails"}', b'{"command":"get_error_code"}',
                   b'{"command":"get_psu"}', b'{"command":"status"}'),
    "braiins": (b'{"command":"summary+devs+devdetails+fans+tunerstatus+pools+temps"}',),
}


def read_all(m, wire: bool) -> list[bytes]:
    """Every read the model's firmware answers, raw; each one must arrive."""
    if m.spec.family == "bitaxe":
        raws = [http_get(m.host, "/api/system/info")]
    else:
        raws = [query(m.address, request) for request in RPC_READS[m.spec.family]]
        if m.spec.family == "antminer" and not wire:
            for page in ("stats", "summary"):
                reply = httpx.get(f"http://{m.host}/cgi-bin/{page}.cgi", auth=ROOT, timeout=5)
                assert reply.status_code == 200, (page, reply.text[:200])
                raws.append(reply.content)
    for raw in raws:
        assert raw, f"{m.spec.key}: no reply"
    if not wire:
        for raw in raws:
            body = raw.split(b"\r\n\r\n", 1)[1] if raw.startswith(b"HTTP/") else raw
            if not body.startswith(b"STATUS="):  # the plain-text form of `summary|`
                json.loads(body.rstrip(b"\x00"))
    return raws


def devices(m) -> list[dict[str, str]]:
    """The Avalon's device strings (`MM ID0`, a chain's `MM ID1..n`, the Q's `HBinfo` joined to its
    summary), each as its keys, in board order."""
    out: list[dict[str, str]] = []
    for entry in query_json(m.address, "estats")["STATS"]:
        for key, value in entry.items():
            if key.startswith("MM ID") and isinstance(value, str):
                out.append(dict(FIELD.findall(value)))
        if "HBinfo" in entry:
            out[-1].update(FIELD.findall(entry["HBinfo"]))
    assert out, f"{m.spec.key}: no device string"
    return out


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split()]


def echu(devs: list[dict[str, str]]) -> list[int]:
    return [v for d in devs for v in ints(d["ECHU"])]


def power_reading(spec: ModelSpec, dev: dict[str, str]) -> float:
    """The power figure of this layout (docs/avalon.md section 4: the PS[] layouts)."""
    ps = ints(dev["PS"])
    if spec.layout.startswith("a10"):
        return ps[4]  # DC watts to the boards; no wall figure
    if spec.layout == "nano3_2024":
        return ps[5]
    return float(dev["WALLPOWER"]) if "WALLPOWER" in dev else ps[-1]


# -- the cross product -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("key", KEYS)
def test_every_fault_on_every_model_is_answered_over_tcp(sim, key, fault):
    m = unit(sim, key)
    make, settle_s = FAULTS[fault]
    changes = make(m.spec)
    if fault == "device_keys" and m.spec.family != "avalon":
        changes = {"device_keys": {"Ver": "x"}}  # only Avalon firmware has a device string; harmless elsewhere
    if fault == "fan_failing" and not m.spec.fans:
        with pytest.raises(FaultValueError, match="fan"):
            m.set_faults(**changes)
        return
    healthy_devs = devices(m) if m.spec.family == "avalon" else []
    m.set_faults(**changes)
    sim.clock.advance(settle_s)
    raws = read_all(m, wire=fault in WIRE)
    if fault == "truncated":
        assert all(not raw.endswith(b"\x00") for raw in raws if not raw.startswith(b"HTTP/"))
    if fault == "bare_nan" and m.spec.family == "avalon":
        assert b":nan" in raws[0]
    if m.spec.family == "avalon":
        check_avalon(m, fault, healthy_devs)
    m.clear_faults()
    read_all(m, wire=False)  # and it still answers properly once healed


def check_avalon(m, fault: str, healthy_devs: list[dict[str, str]]) -> None:
    spec = m.spec
    if fault == "device_keys":  # each key once per device string, with the value given, present or not before
        devs = devices(m)
        raw = query(m.address, b'{"command":"estats"}')
        for key, value in (("GHSspd", "inf"), ("TA", "-1"), ("Junk", "x")):
            assert raw.count(f"{key}[".encode()) == len(devs), (key, raw.count(f"{key}[".encode()), len(devs))
            assert all(d[key] == value for d in devs)
    if fault in WIRE:
        return
    devs = devices(m)
    truth = m.last_served
    n, chips = spec.boards, spec.chips_per_board
    ta = sum(int(d["TA"]) for d in devs)
    if fault == "chips_dying":
        dead = chips // 2
        assert ta == n * chips - dead, (ta, n, chips)
        dev = devs[0]  # board 0: the first module's first board on a chain
        lists = {k: ints(dev[k]) for k in ("PVT_T0", "PVT_V0", "MW0") if k in dev}
        assert lists or spec.layout in ("mini3_2025",), f"{spec.key}: no per-chip list"  # Mini 3: none
        zeros = {k: [i for i, v in enumerate(vs) if v == 0] for k, vs in lists.items()}
        for k, at in zeros.items():
            assert len(lists[k]) == chips and len(at) == dead, (k, lists[k])
        assert len({tuple(at) for at in zeros.values()}) <= 1, zeros  # the same chips in every list
        if "PVT_T" in dev:  # 7xx: per-board `coolest-temp/hottest-temp/avg` summary over the chips that answer
            coolest, hottest = (int(part.split("-")[0]) for part in dev["PVT_T"].split()[0].split("/")[:2])
            assert coolest not in zeros["MW0"] and hottest not in zeros["MW0"], (dev["PVT_T"], zeros)
    elif fault == "dead_boards":
        assert echu(devs)[0] == ECHU_BOARD_LOST
        assert ta == (n - 1) * chips
    else:
        assert ta == n * chips, (fault, ta)
    if fault == "error_code_board":
        got, before = echu(devs), echu(healthy_devs)
        assert got[-1] == CODE and got[:-1] == before[:-1], (got, before)  # the code as given, the rest as healthy
    if fault == "error_code_controller":
        assert {int(d["ECMM"]) for d in devs} == {2}
    if fault == "overheat_shutdown":
        assert all(int(d["ECMM"]) & ECMM_OVERHEAT for d in devs)
    if fault == "psu_drift":
        if spec.power_reading == "none":  # chains: no power on the wire at all
            assert not any("PS" in d or "WALLPOWER" in d for d in devs) and truth.reported_power_w is None
        else:
            reading = power_reading(spec, devs[0])
            assert reading == truth.reported_power_w
            to_wall = 0.945 if spec.power_reading == "dc" else 1.0  # A10: PS[4] is DC, ~94.5 % of the wall
            assert abs(reading - 1.2 * to_wall * truth.power_true_w) <= 2.0, (reading, truth.power_true_w)
    if fault == "fan_failing":
        rpm = ints(devs[0]["Fan"])[0] if "Fan" in devs[0] else int(devs[0]["Fan1"])
        assert rpm == 0
    if fault == "soft_off" and "SoftOFF" in devs[0]:
        assert int(devs[0]["SoftOFF"]) != 0
