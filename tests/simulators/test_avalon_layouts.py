"""The simulated Avalons answer in the layouts of the golden cases (tests/data/replies/avalon/golden/):
the same device-string keys in the same order with the same value counts, the same envelopes, the
firmware quirks (Nano 3's PS[5], A10's 6-slot PS and ECHU 512, AUC chains of modules, GHSspd[0.00]
while ramping) - and pyasic 0.79, unchanged, reads them as it reads the golden replies.

Structure is compared, never values: the golden replies are ours in a publisher's layout, the
simulators' values come from their physics. Everything goes over real TCP on loopback.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.avalon_golden import golden
from tests.simulators.replies import shape_mismatches
from tests.support import pyasic_data

from simulators import MODELS, ManualClock, parse_fleet, run_fleet
from simulators.probe import query_json

# Simulated model -> the golden case whose layout it follows. a1346 shares the A1366's 3 x 120 layout
# and a16xp the A16's; the hydro A15 is the A15-194 layout without fans (see DROPPED).
CASES = {
    "nano3": "nano3_24071801_mining",
    "mini3": "mini3_25011701_mining",
    "a1066": "a1066_19101244_mining",
    "a1047": "a1047_19120401_mining",
    "a1346": "a1366_24032201_mining-doc",
    "a1366": "a1366_24032201_mining-doc",
    "a1466": "a1466_24060501_mining-doc",
    "a1566hu": "a15-194_24102401_mining",
    "a16": "a16-282_25091901_mining-doc",
    "a16xp": "a16-282_25091901_mining-doc",
    "av741": "a741_7411706_auc-chain-2x5",
    "av841": "a841-821_8411803_auc-chain-1x3",
    "av921": "a921_9211809_auc-chain-10x5",
}
DROPPED = {"a1566hu": {"Fan1", "Fan2"}}  # a hydro unit has no fans to print
BORROWED = {"a1346", "a16xp", "a1566hu"}  # models in another model's golden layout: identity their own
FLEET = ",".join(f"{key}:1" for key in CASES)
TOKEN = re.compile(r"([A-Za-z_][\w ]*?)\[([^\]]*)\]")


def layout(device_string: str, drop: set[str] = frozenset()) -> list[tuple[str, int]]:
    """`Key[v1 v2] ...` -> [(key, value count), ...] in order."""
    return [(k.strip(), len(v.split())) for k, v in TOKEN.findall(device_string) if k.strip() not in drop]


def device_entries(stats: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in stats["STATS"] if any(k.startswith("MM ID") for k in e)]


def module_strings(entry: dict[str, Any]) -> list[str]:
    return [v for k, v in entry.items() if k.startswith("MM ID")]


def envelope(entry: dict[str, Any]) -> list[str]:
    """An entry's keys, the module keys folded into one place holder."""
    out: list[str] = []
    for key in entry:
        name = "MM ID*" if key.startswith("MM ID") else key
        if not out or out[-1] != name:
            out.append(name)
    return out


@pytest.fixture(scope="module")
def sim():
    with run_fleet(FLEET, base="127.206.0.1", seed=23) as fleet:
        yield fleet


def by_model(fleet, key: str):
    return next(m for m in fleet.miners if m.spec.key == key)


def test_fleet_spec_takes_the_new_models_and_their_aliases():
    groups = parse_fleet("nano3:1,mini3:1,a1366:1,a16:1,avchain:1,a13:2,A16-XP,nano-3:1")
    assert [(spec.key, n) for spec, n in groups] == [
        ("nano3", 1), ("mini3", 1), ("a1366", 1), ("a16", 1), ("av741", 1), ("a1366", 2), ("a16xp", 1), ("nano3", 1)]


# -- layouts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(CASES))
def test_device_strings_have_the_golden_keys_order_and_value_counts(sim, key):
    spec = MODELS[key]
    real = device_entries(golden(CASES[key], "estats"))
    ours = device_entries(query_json(by_model(sim, key).address, "estats"))
    real_layouts = {tuple(layout(s, DROPPED.get(key, set()))) for e in real for s in module_strings(e)}
    assert len(real_layouts) == 1  # every module of a golden case has one layout
    (expected,) = real_layouts
    if key in ("a1346", "a16xp"):
        assert spec.chips_per_board == MODELS[{"a1346": "a1366", "a16xp": "a16"}[key]].chips_per_board
    for entry in ours:
        assert envelope(entry) == envelope(real[0])
        assert shape_mismatches({k: v for k, v in real[0].items() if not k.startswith("MM ID")}, entry) == []
        for text in module_strings(entry):
            assert layout(text) == list(expected)
    if spec.chain:
        assert [len(module_strings(e)) for e in ours] == [len(auc) for auc in spec.chain]
    else:
        assert len(ours) == 1 and list(module_strings(ours[0])) == [ours[0]["MM ID0"]]


# Only the replies a golden case has (some were published with stats alone).
ENVELOPES = [(key, command) for key in CASES for command in ("version", "summary", "pools", "devs")
             if golden(CASES[key], command) is not None]


@pytest.mark.parametrize(("key", "command"), ENVELOPES)
def test_other_replies_have_the_golden_keys_in_order(sim, key, command):
    real = golden(CASES[key], command)
    ours = query_json(by_model(sim, key).address, command)
    section = next(k for k in real if k not in ("STATUS", "id"))
    assert list(ours) == list(real)
    assert list(ours[section][0]) == list(real[section][0])
    assert ours["STATUS"][0]["Description"] == real["STATUS"][0]["Description"]


def test_stats_lists_one_pool_entry_per_configured_pool(sim):
    for key in CASES:
        miner = by_model(sim, key)
        stats = query_json(miner.address, "stats")["STATS"]
        pools = query_json(miner.address, "pools")["POOLS"]
        devices = len(device_entries({"STATS": stats}))
        assert [e["ID"] for e in stats[devices:]] == [f"POOL{i}" for i in range(len(pools))]
        assert [e["STATS"] for e in stats] == list(range(len(stats)))


# -- what the layouts say --------------------------------------------------------------------------------


def fields(text: str) -> dict[str, str]:
    return {k.strip(): v for k, v in TOKEN.findall(text)}


def test_nano3_puts_watts_in_ps5_and_a_profile_value_in_ps6(sim):
    miner = by_model(sim, "nano3")
    dev = fields(query_json(miner.address, "estats")["STATS"][0]["MM ID0"])
    truth = miner.last_served
    ps = [int(v) for v in dev["PS"].split()]
    assert len(ps) == 7 and ps[:3] == [0, 0, 0]
    assert ps[5] == truth.power_w == truth.reported_power_w and 75 <= ps[5] <= 95  # Mid profile, MPO[90]
    assert abs(ps[3] * ps[4] / 100 - ps[5]) <= 0.2 * ps[5]  # amps x volts ~ watts
    assert ps[6] == 324 and ps[6] > 3 * ps[5]  # not watts: the ATA1 profile's third field
    assert dev["MPO"] == "90" and "WORKMODE" not in dev and dev["WORKLEVEL"] == "1"
    assert "WALLPOWER" not in dev


def test_nano3_worklevel_switches_profile_power_and_rate():
    clock = ManualClock()
    with run_fleet("nano3:1", base="127.0.0.1:0", seed=4, clock=clock) as fleet:
        miner = fleet.miners[0]
        before = miner.truth()
        reply = query_json(miner.address, "ascset", "0,worklevel,set,2")
        assert reply["STATUS"][0]["Msg"] == "ASC 0 set OK"
        clock.advance(600)
        dev = fields(query_json(miner.address, "estats")["STATS"][0]["MM ID0"])
        after = miner.last_served
        ps = [int(v) for v in dev["PS"].split()]
        assert (dev["WORKLEVEL"], dev["MPO"], dev["TarT"], ps[6]) == ("2", "125", "90", 344)
        assert after.work_mode == "High" and after.work_level == 2
        assert after.power_w > 1.25 * before.power_w and ps[5] == after.power_w <= 125
        assert float(dev["GHSmm"]) == pytest.approx(4050.0)
        assert 3.7 < after.hashrate_ths < 4.4


def test_a10_shows_a_six_slot_ps_no_ghsspd_and_echu_512_on_healthy_boards(sim):
    for key in ("a1066", "a1047"):
        miner = by_model(sim, key)
        dev = fields(query_json(miner.address, "estats")["STATS"][0]["MM ID0"])
        truth = miner.last_served
        ps = [int(v) for v in dev["PS"].split()]
        assert len(ps) == 6 and ps[4] < truth.power_w  # DC watts to the boards; no wall figure
        assert truth.reported_power_w == ps[4]
        assert "GHSspd" not in dev and "WALLPOWER" not in dev
        assert dev["ECHU"].split() == ["512"] * MODELS[key].boards
        assert truth.state == "mining" and truth.errors == ()
        assert truth.live_source == "MHS 1m"
        summary = query_json(miner.address, "summary")["SUMMARY"][0]
        assert summary["MHS 1m"] / 1e6 == pytest.approx(truth.reported_hashrate_ths, abs=1e-4)


def test_a1047_keeps_elapsed_and_bootby_unspaced(sim):
    text = query_json(by_model(sim, "a1047").address, "estats")["STATS"][0]["MM ID0"]
    assert re.search(r"Elapsed\[\d+\]BOOTBY\[1\] ", text)


def test_chain_answers_one_address_for_every_module(sim):
    for key in ("av741", "av841", "av921"):
        miner, spec = by_model(sim, key), MODELS[key]
        stats = query_json(miner.address, "estats")
        entries = device_entries(stats)
        gen = spec.modules[0].model[0]
        assert [e["ID"] for e in entries] == [f"AV{gen}{i}" for i in range(len(spec.chain))]
        assert all("MM ID0" not in e for e in entries)
        assert [e["MM Count"] for e in entries] == [len(auc) for auc in spec.chain]
        modules = [fields(s) for e in entries for s in module_strings(e)]
        assert [m["Ver"] for m in modules] == [m.ver for m in spec.modules]
        assert len({m["DNA"] for m in modules}) == len(modules)
        for absent in ("GHSspd", "MGHS", "PS", "WALLPOWER", "PVT_T0", "Fan1", "MPO"):
            assert all(absent not in m for m in modules), absent
        for m in modules:
            assert len(m["Vi"].split()) == len(m["Vo"].split()) == len(m["MW"].split()) == 4
            assert int(m["TA"]) == 4 * spec.chips_per_board
        truth = miner.last_served
        assert [int(m["Fan"]) for m in modules] == list(truth.fans_rpm)
        assert max(int(m["TMax"]) for m in modules) == truth.temp_chip_max_c
        assert sum(float(m["GHSmm"]) for m in modules) / 1000 == pytest.approx(truth.expected_hashrate_ths, rel=1e-3)
        assert [int(c) for m in modules for c in m["ECHU"].split()] == list(truth.echu)
        version = query_json(miner.address, "version")["VERSION"][0]
        assert "PROD" not in version and "MAC" not in version
        summary = query_json(miner.address, "summary")["SUMMARY"][0]
        assert "MHS 5s" in summary and "MHS 30s" not in summary
        assert truth.live_source == "MHS 1m" and truth.reported_power_w is None
        devs = query_json(miner.address, "devs")["DEVS"]
        assert len(devs) == len(spec.chain)
        assert sum(d["MHS 1m"] for d in devs) == pytest.approx(summary["MHS 1m"], rel=0.01)


def test_mixed_chain_modules_hash_at_their_own_nominal(sim):
    miner = by_model(sim, "av841")
    truth = miner.truth()
    per_module = [sum(b.hashrate_ths for b in truth.boards[4 * m: 4 * m + 4]) for m in range(3)]
    nominal = [m.ghs_mm / 1000.0 for m in MODELS["av841"].modules]
    for rate, nom in zip(per_module, nominal, strict=True):
        assert 0.9 * nom < rate < 1.1 * nom  # the 841 above the 821s


def test_ghsspd_reads_zero_while_ramping_after_a_reboot_then_measures():
    clock = ManualClock()
    with run_fleet("a1366:1", base="127.0.0.1:0", seed=6, clock=clock) as fleet:
        miner = fleet.miners[0]
        miner.reboot()
        clock.advance(95)
        reply = query_json(miner.address, "summary+estats")
        dev = fields(reply["estats"][0]["STATS"][0]["MM ID0"])
        truth = miner.last_served
        assert dev["GHSspd"] == "0.00" and dev["SYSTEMSTATU"].startswith("Work: In Work")
        mhs_1m = reply["summary"][0]["SUMMARY"][0]["MHS 1m"]
        assert mhs_1m > 0.5 * 130e6
        assert truth.state == "mining" and truth.live_source == "MHS 1m"
        assert truth.reported_hashrate_ths == pytest.approx(mhs_1m / 1e6, abs=1e-4)
        clock.advance(60)
        dev = fields(query_json(miner.address, "estats")["STATS"][0]["MM ID0"])
        assert float(dev["GHSspd"]) > 120000 and miner.last_served.live_source == "GHSspd"


@pytest.mark.parametrize("key", ["nano3", "mini3", "a1066", "a1366", "a16"])
def test_soft_off_shows_tmax_zero_and_no_live_rate(key):
    clock = ManualClock()
    with run_fleet(f"{key}:1", base="127.0.0.1:0", seed=8, clock=clock) as fleet:
        miner = fleet.miners[0]
        reply = query_json(miner.address, "ascset", "0,softoff,1:1750000000")
        assert "success" in reply["STATUS"][0]["Msg"]
        clock.advance(30)
        dev = fields(query_json(miner.address, "estats")["STATS"][0]["MM ID0"])
        assert (dev["TMax"], dev["TAvg"]) == ("0", "0")  # no reading, not 0 °C
        if key == "a1066":  # the 2019 A10 string has neither SoftOFF nor GHSspd
            assert "SoftOFF" not in dev and "GHSspd" not in dev
        else:
            assert (dev["SoftOFF"], dev["GHSspd"]) == ("4", "0.00")
        if "SYSTEMSTATU" in dev:
            assert dev["SYSTEMSTATU"].startswith("Work: In Idle")
        assert miner.last_served.state == "soft_off"


# -- pyasic 0.79, unchanged ---------------------------------------------------------------------------------

# What pyasic makes of each layout (its factory maps PROD; the A10's "10xx", the A13-A16 and the
# chain's PROD-less version are unknown to it).
PYASIC_CLASSES = {
    "nano3": "CGMinerAvalonNano3",
    "mini3": "CGMinerAvalonMini3",
    "a1066": "AvalonUnknown",
    "a1047": "AvalonUnknown",
    "a1346": "AvalonUnknown",
    "a1366": "AvalonUnknown",
    "a1466": "AvalonUnknown",
    "a1566hu": "AvalonUnknown",
    "a16": "AvalonUnknown",
    "a16xp": "AvalonUnknown",
    "av741": "AvalonUnknown",
    "av841": "AvalonUnknown",
    "av921": "AvalonUnknown",
}


class _Replay(socketserver.BaseRequestHandler):
    """A miner that answers from a golden case's files (the commands it lacks from the simulated unit)."""

    def handle(self) -> None:
        self.request.settimeout(5)
        data = b""
        while True:
            chunk = self.request.recv(65536)
            data += chunk
            try:
                request = json.loads(data.rstrip(b"\x00"))
                break
            except ValueError:
                if not chunk:
                    return
        commands = str(request.get("command", "")).split("+")
        parts = {}
        for command in commands:
            real = golden(self.server.case, command)  # type: ignore[attr-defined]
            if real is None or (command == "version" and self.server.own_version):  # type: ignore[attr-defined]
                real = query_json(self.server.fallback, command, request.get("parameter"))  # type: ignore[attr-defined]
            parts[command] = real
        body = parts[commands[0]] if len(commands) == 1 else {**{c: [r] for c, r in parts.items()}, "id": 1}
        self.request.sendall(json.dumps(body).encode() + b"\x00")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


@pytest.fixture(scope="module")
def replays(sim) -> Iterator[dict[str, str]]:
    """One replay server per model on 127.207.0.x:4028 (pyasic only talks to port 4028)."""
    servers, hosts = [], {}
    try:
        for i, key in enumerate(CASES, start=1):
            host = f"127.207.0.{i}"
            server = _Server((host, 4028), _Replay)
            server.case, server.fallback = CASES[key], by_model(sim, key).address  # type: ignore[attr-defined]
            server.own_version = key in BORROWED  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            hosts[key] = host
        yield hosts
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def shape(data) -> dict[str, Any]:
    """What pyasic could read, not the numbers: which fields it filled, boards and fans it found."""
    return {
        "hashrate": data.hashrate is not None,
        "expected_hashrate": data.expected_hashrate is not None,
        "wattage": data.wattage is not None,
        "wattage_limit": data.wattage_limit is not None,
        "env_temp": data.env_temp is not None,
        "boards": [(b.missing, b.chips is not None, b.hashrate is not None, b.chip_temp is not None)
                   for b in data.hashboards],
        "fans": [f.speed is not None for f in data.fans],
        "mac": data.mac is not None,
    }


@pytest.mark.parametrize("key", list(CASES))
def test_pyasic_reads_the_simulated_model_as_it_reads_the_golden_reply(sim, replays, key):
    miner = by_model(sim, key)
    found, data = pyasic_data(miner.host)
    real_found, real_data = pyasic_data(replays[key])
    assert type(found).__name__ == type(real_found).__name__ == PYASIC_CLASSES[key]
    assert shape(data) == shape(real_data)
    truth = miner.truth()
    unit = 1e12 if type(found).__name__ == "AvalonUnknown" else 1.0  # the unknown-model class reports H/s
    if data.expected_hashrate is not None:
        assert float(data.expected_hashrate) / unit == pytest.approx(truth.expected_hashrate_ths, rel=1e-3)
    if data.hashrate is not None:  # pyasic reads devs[0] `MHS 1m`: a chain's first AUC only
        share = 1.0 if not MODELS[key].chain else len(MODELS[key].chain[0]) / len(MODELS[key].modules)
        assert float(data.hashrate) / unit == pytest.approx(truth.hashrate_1m_ths * share, rel=0.1)


def test_pyasic_misses_the_nano3_watts_as_on_the_real_layout(sim, replays):
    # pyasic reads WALLPOWER (absent here) for the Nano 3, and PS[6] only for the Nano 3S: no power,
    # the same on the golden reply, rather than the PS[6] profile value.
    _, data = pyasic_data(by_model(sim, "nano3").host)
    _, real = pyasic_data(replays["nano3"])
    assert data.wattage is None and real.wattage is None
    assert data.wattage_limit == 90
