"""The native readers of stock Antminers, Whatsminers and Braiins OS+ against the simulators, over real
TCP and HTTP, field by field: against the truth each answer was built from, and against pyasic 0.79's
reading of the same simulated unit (the collector's pyasic path, `readers: {MAKE: pyasic}`). A native
reader must be at least as right as pyasic on every field the collector stores.

The simulators run in a background thread on 127.51.0.x (pyasic's detection only knows ports 4028 and
80, so each unit has its own address); a ManualClock keeps the served truth still between the reads.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import datetime, timezone

import pytest
from tests.support import HASHFLEET

from collector.sources.polled_miners import PolledMiners
from models import CollectorConfig, MinerSample, MinerState, SampleSource
from simulators import ManualClock, run_fleet
from simulators import antminer as sim_antminer
from simulators import braiins as sim_braiins
from simulators import whatsminer as sim_whatsminer

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
KEYS = ("s19jpro", "s21", "m50s", "bos-s19jpro")
NATIVE = {"s19jpro": SampleSource.ANTMINER, "s21": SampleSource.ANTMINER, "m50s": SampleSource.WHATSMINER,
          "bos-s19jpro": SampleSource.BRAIINS}
FAMILY_READER = {"antminer": "antminer", "whatsminer": "whatsminer", "braiins": "braiins"}
ALL_PYASIC = {"antminer": "pyasic", "whatsminer": "pyasic", "braiins": "pyasic"}
POLL_COMMAND = {"antminer": "stats+pools+summary", "whatsminer": "summary+devs+pools",
                "braiins": "summary+devs+tunerstatus+fans+temps+devdetails+pools"}


@pytest.fixture(scope="module")
def sim():
    with run_fleet(",".join(f"{key}:1" for key in KEYS), base="127.51.0.1", seed=71, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
    yield
    for miner in sim.miners:
        miner.clear_faults()


def by_key(sim, key: str):
    return next(m for m in sim.miners if m.spec.key == key)


def poller(*hosts: str, readers: dict[str, str] | None = None, timeout_s: float = 5.0) -> PolledMiners:
    return PolledMiners(CollectorConfig(miners=list(hosts), timeout_s=timeout_s, readers=readers or {}))


def cycles(p: PolledMiners, n: int = 1) -> list[MinerSample]:
    """Identify what is not identified yet, then `n` cycles; the last cycle's samples."""
    async def run():
        await p.refresh()
        result = None
        for _ in range(n):
            result = await p.cycle(TS)
        return result.samples

    return asyncio.run(run())


def mac_id(miner) -> str:
    return ":".join(miner.mac[i:i + 2] for i in range(0, 12, 2)).upper()


# -- what each field should read, from the truth behind the answer ------------------------------------------


def truth_of(sim, miner) -> dict[str, object]:
    """Every field the collector stores (models/schema.py MINER, MINER_BOARD), as the firmware reported it.
    A set: any of its values is right (Braiins OS reports the live rate over 5 s and over 1 minute)."""
    t, spec = miner.last_served, miner.spec
    family = spec.family
    truth: dict[str, object] = {
        "miner": mac_id(miner), "mac": mac_id(miner), "state": MinerState.MINING,
        "hashrate_avg_ths": t.hashrate_avg_ths, "expected_hashrate_ths": t.expected_hashrate_ths,
        "fans_rpm": list(t.fans_rpm), "uptime_s": t.uptime_s, "firmware": spec.firmware,
        "temp_chip_max_c": t.temp_chip_max_c, "pool_accepted": t.accepted, "pool_rejected": t.rejected,
        "power_w": None, "power_limit_w": None, "temp_env_c": None,
    }
    boards = []
    if family == "antminer":
        truth["hashrate_ths"] = t.hashrate_ths
        truth["temp_board_max_c"] = max(max(sim_antminer.board_sensors(b)[0]) for b in t.boards)
        for b in t.boards:
            boards.append({"index": b.index, "hashrate_ths": b.hashrate_ths, "temp_chip_max_c": b.temp_chip_max_c,
                           "chips_ok": b.chips_ok, "chips_expected": spec.chips_per_board})
    elif family == "whatsminer":
        fw = sim.firmware(miner)
        truth.update(hashrate_ths=t.hashrate_1m_ths, power_w=int(t.power_w), power_limit_w=fw.effective_power_limit(t),
                     temp_env_c=float(t.env_raw_c),
                     temp_board_max_c=max(sim_whatsminer.board_temps(b)[0] for b in t.boards),
                     expected_hashrate_ths=round(t.expected_hashrate_ths * 1000) / 1000)
        for b in t.boards:
            _, _, chip_max, chip_avg = sim_whatsminer.board_temps(b)
            boards.append({"index": b.index, "hashrate_ths": sim_whatsminer.board_share_1m(t, b),
                           "temp_chip_max_c": chip_max, "temp_chip_avg_c": chip_avg, "chips_ok": b.chips_ok,
                           "chips_expected": spec.chips_per_board})
    else:
        fw = sim.firmware(miner)
        truth.update(hashrate_ths={t.hashrate_1m_ths, t.hashrate_ths}, power_w=int(t.power_w),
                     power_limit_w=fw.power_target(t), expected_hashrate_ths=spec.nominal_ths,
                     temp_board_max_c=max(sim_braiins.board_temp_c(b) for b in t.boards))
        for b in t.boards:
            share = b.hashrate_ths / t.hashrate_ths
            boards.append({"index": b.index, "hashrate_ths": {t.hashrate_1m_ths * share, b.hashrate_ths},
                           "temp_chip_max_c": b.temp_chip_max_c, "chips_ok": b.chips_ok,
                           "chips_expected": spec.chips_per_board})
    truth["boards"] = boards
    return truth


def reading_of(sample: MinerSample) -> dict[str, object]:
    return {
        "miner": sample.miner, "mac": sample.mac, "state": sample.state, "hashrate_ths": sample.hashrate_ths,
        "hashrate_avg_ths": sample.hashrate_avg_ths, "expected_hashrate_ths": sample.expected_hashrate_ths,
        "power_w": sample.power_w, "power_limit_w": sample.power_limit_w, "temp_env_c": sample.temp_env_c,
        "temp_chip_max_c": sample.temp_chip_max_c, "temp_board_max_c": sample.temp_board_max_c,
        "fans_rpm": sample.fans_rpm, "uptime_s": sample.uptime_s, "firmware": sample.firmware,
        "pool_accepted": sample.pool.accepted if sample.pool else None,
        "pool_rejected": sample.pool.rejected if sample.pool else None,
        "boards": [b.model_dump(exclude_none=True) for b in sample.boards],
    }


def right(value: object, truth: object) -> bool:
    if isinstance(truth, set):
        return any(right(value, t) for t in truth)
    if isinstance(truth, list):
        return isinstance(value, list) and len(value) == len(truth) and all(map(right, value, truth))
    if isinstance(truth, dict):
        return isinstance(value, dict) and all(right(value.get(k), v) for k, v in truth.items())
    if isinstance(truth, float) and isinstance(value, (int, float)):
        return value == pytest.approx(truth, rel=1e-6, abs=1e-6)
    return value == truth


@pytest.fixture(scope="module")
def readings(sim):
    """Each unit read once by its native reader and once by pyasic, the truth held still in between."""
    hosts = [m.host for m in sim.miners]
    native = {s.host: s for s in cycles(poller(*hosts))}
    truth = {m.host: truth_of(sim, m) for m in sim.miners}
    pyasic = {s.host: s for s in cycles(poller(*hosts, readers=ALL_PYASIC))}
    return native, pyasic, truth


@pytest.mark.parametrize("key", KEYS)
def test_the_native_reader_reads_every_stored_field_as_the_firmware_reported_it(sim, readings, key):
    native, _, truth = readings
    miner = by_key(sim, key)
    sample = native[miner.host]
    assert sample.source is NATIVE[key] and not sample.errors and not sample.unusable, sample
    got, want = reading_of(sample), truth[miner.host]
    wrong = {field: (got[field], expected) for field, expected in want.items() if not right(got[field], expected)}
    assert not wrong, wrong


@pytest.mark.parametrize("key", KEYS)
def test_the_native_reader_is_at_least_as_right_as_pyasic_on_every_field(sim, readings, key):
    native, pyasic, truth = readings
    miner = by_key(sim, key)
    got, theirs, want = reading_of(native[miner.host]), reading_of(pyasic[miner.host]), truth[miner.host]
    assert pyasic[miner.host].source is SampleSource.PYASIC
    pyasic_right = {field for field, expected in want.items() if right(theirs[field], expected)}
    native_right = {field for field, expected in want.items() if right(got[field], expected)}
    assert pyasic_right <= native_right
    # Where they differ, the native reader is the right one (recorded so a change shows up here).
    better = {
        "s19jpro": {"temp_chip_max_c", "hashrate_avg_ths", "temp_board_max_c", "boards"},
        "s21": {"temp_chip_max_c", "hashrate_avg_ths", "temp_board_max_c", "boards"},
        "m50s": {"temp_chip_max_c", "hashrate_avg_ths", "boards"},
        "bos-s19jpro": {"hashrate_avg_ths", "firmware"},
    }[key]
    assert native_right - pyasic_right == better


def test_the_chip_temperature_is_the_hottest_sensor_not_pyasics_average(sim, readings):
    native, pyasic, _ = readings
    for key in ("s19jpro", "m50s"):
        miner = by_key(sim, key)
        hottest = miner.last_served.temp_chip_max_c
        assert native[miner.host].temp_chip_max_c == hottest
        assert pyasic[miner.host].temp_chip_max_c < hottest - 4  # pyasic 0.79: an average


@pytest.mark.parametrize("key", KEYS)
def test_a_poll_is_one_rpc_request_and_the_rarely_read_fields_stay_rare(sim, key):
    miner = by_key(sim, key)
    p = poller(miner.host)
    cycles(p)  # identify (pyasic's detection, the reader's first rare reads) and read once
    before = dict(sim.requests(miner))
    samples = [cycles(p)[0] for _ in range(5)]
    after = sim.requests(miner)
    sent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert all(s.state is MinerState.MINING and s.source is NATIVE[key] for s in samples)
    assert sent.pop(POLL_COMMAND[miner.spec.family]) == 5
    # A refresh falls due at most once a minute (on its own phase): five cycles in a second see at most one.
    assert sum(sent.values()) <= 2, sent


@pytest.mark.parametrize("key", KEYS)
def test_a_unit_put_to_sleep_is_soft_off_where_pyasic_says_idle(sim, key):
    miner = by_key(sim, key)
    native, pyasic = poller(miner.host), poller(miner.host, readers=ALL_PYASIC)
    cycles(native), cycles(pyasic)
    miner.set_faults(soft_off=True)
    [asleep] = cycles(native)
    [theirs] = cycles(pyasic)
    assert miner.last_served.state == MinerState.SOFT_OFF
    assert (asleep.state, asleep.hashrate_ths) == (MinerState.SOFT_OFF, 0.0), asleep
    assert theirs.state is MinerState.IDLE
    miner.set_faults(soft_off=False)
    sim.clock.advance(600)  # past the restart's ramp
    [awake] = cycles(native)
    assert awake.state is MinerState.MINING, awake


@pytest.mark.parametrize(("key", "said"), [("s19jpro", "Chain 1 lost"), ("m50s", "Slot 1 not found"),
                                           ("bos-s19jpro", "failed to initialize hashchain")])
def test_a_lost_board_is_a_board_with_no_chips_and_its_error_is_read_at_once(sim, key, said):
    miner = by_key(sim, key)
    p = poller(miner.host)
    cycles(p)
    miner.set_faults(dead_boards=frozenset({1}))
    [sample] = cycles(p)  # the reading changed shape: the rarely read error list is read in the same poll
    assert [b.chips_ok for b in sample.boards] == [miner.spec.chips_per_board, 0, miner.spec.chips_per_board]
    assert any(said in e for e in sample.errors), sample.errors


@pytest.mark.parametrize("key", KEYS)
def test_a_unit_that_stops_answering_is_offline_keeps_its_id_and_is_identified_again(sim, key):
    miner = by_key(sim, key)
    p = poller(miner.host, timeout_s=1.0)
    [first] = cycles(p)
    assert first.miner == mac_id(miner)
    miner.set_faults(no_answer=True)
    gone = [cycles(p)[0] for _ in range(3)]
    assert all((s.state, s.miner, s.source) == (MinerState.OFFLINE, mac_id(miner), NATIVE[key]) for s in gone)
    assert miner.host in gone[0].errors[0]
    assert p.unidentified == sorted(p.targets)  # 3 offline polls: back to identification
    miner.set_faults(no_answer=False)
    [back] = cycles(p)  # `refresh` identifies it again (the service does so in the background)
    assert (back.state, back.miner, back.source) == (MinerState.MINING, mac_id(miner), NATIVE[key])


def test_a_hung_unit_costs_its_own_deadline_and_delays_no_other(sim):
    p = poller(*(m.host for m in sim.miners), timeout_s=1.0)
    cycles(p)
    hung = by_key(sim, "s21")
    hung.set_faults(hold_open=True)

    async def timed():
        started = asyncio.get_running_loop().time()
        result = await p.cycle(TS)
        return result, asyncio.get_running_loop().time() - started

    result, seconds = asyncio.run(timed())
    states = {s.host: s.state for s in result.samples}
    assert states.pop(hung.host) is MinerState.OFFLINE
    assert set(states.values()) == {MinerState.MINING}
    assert seconds < 2.5


def test_the_config_sends_one_make_through_pyasic_and_leaves_the_others_native(sim):
    hosts = [m.host for m in sim.miners]
    samples = {s.host: s for s in cycles(poller(*hosts, readers={"antminer": "pyasic"}))}
    sources = {m.spec.key: samples[m.host].source for m in sim.miners}
    assert sources == {"s19jpro": SampleSource.PYASIC, "s21": SampleSource.PYASIC,
                       "m50s": SampleSource.WHATSMINER, "bos-s19jpro": SampleSource.BRAIINS}
    samples = {s.host: s for s in cycles(poller(*hosts, readers={"whatsminer": "pyasic", "braiins": "native"}))}
    sources = {m.spec.key: samples[m.host].source for m in sim.miners}
    assert sources == {"s19jpro": SampleSource.ANTMINER, "s21": SampleSource.ANTMINER,
                       "m50s": SampleSource.PYASIC, "bos-s19jpro": SampleSource.BRAIINS}
    assert all(s.state is MinerState.MINING for s in samples.values())


def test_the_config_can_send_avalons_through_pyasic_too():
    with run_fleet("a1566:1", base="127.51.1.1", seed=72, clock=ManualClock()) as fleet:
        [native] = cycles(poller(fleet[0].host))
        [theirs] = cycles(poller(fleet[0].host, readers={"avalon": "pyasic"}))
    assert (native.source, native.state) == (SampleSource.AVALON, MinerState.MINING)
    assert (theirs.source, theirs.state) == (SampleSource.PYASIC, MinerState.MINING)


@pytest.mark.parametrize("readers", [{"antminers": "pyasic"}, {"antminer": "fast"}, {"bitaxe": "native"}])
def test_a_reader_switch_that_names_no_make_or_path_is_a_config_error(tmp_path, readers):
    import yaml

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"readers": readers}))
    done = subprocess.run([HASHFLEET, "poll", "127.0.0.1", "--config", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert "readers" in done.stderr and str(config) in done.stderr


# -- end to end: `hashfleet collect`, a mixed fleet, the real InfluxDB -----------------------------------------


MIXED = "a1566:1,s19jpro:1,s21:1,m50s:1,bos-s19jpro:1,bitaxe:1"


def test_collect_writes_every_miner_of_a_mixed_fleet_every_cycle(influxdb, influx_bucket):
    import os

    with run_fleet(MIXED, base="127.52.0.1", seed=73) as fleet:
        ids = {mac_id(m): m.spec.key for m in fleet}
        env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
               "INFLUX_TOKEN": influxdb.token}
        done = subprocess.run([HASHFLEET, "collect", "--miners", ",".join(m.host for m in fleet), "--cycles", "3",
                               "--interval", "2", "--site", "mixed"], capture_output=True, text=True, timeout=180,
                              env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        truth = {mac_id(m): m.last_served for m in fleet}
    counts = influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)
    assert {r["miner"]: r["count"] for r in counts} == dict.fromkeys(ids, 3)
    rows = influxdb.query("SELECT * FROM miner WHERE site = 'mixed'", influx_bucket)
    assert len(rows) == 3 * len(ids)
    assert all(r["state"] == "mining" and r["up"] == 1 and r["hashrate_ths"] > 0 for r in rows), rows
    assert all(r["temp_chip_max_c"] is not None for r in rows)  # chip temperature from every make
    makes = {r["miner"]: (r["make"], r["model"]) for r in rows}
    assert {ids[m]: mm for m, mm in makes.items()} == {
        "a1566": ("Canaan", "AvalonMiner 15-194"), "s19jpro": ("AntMiner", "S19j Pro"), "s21": ("AntMiner", "S21"),
        "m50s": ("WhatsMiner", "M50S VH50"), "bos-s19jpro": ("AntMiner", "S19j Pro"), "bitaxe": ("BitAxe", "Gamma")}
    last = {r["miner"]: r for r in influxdb.query("SELECT last(*) FROM miner GROUP BY miner", influx_bucket)}
    for miner, t in truth.items():  # the chip temperature of each make's last point is the hottest chip's
        assert last[miner]["last_temp_chip_max_c"] == t.temp_chip_max_c, ids[miner]
    boards = influxdb.query("SELECT count(chips_ok) FROM miner_board GROUP BY miner", influx_bucket)
    assert {r["miner"]: r["count"] for r in boards} == {m: 3 * (1 if ids[m] == "bitaxe" else 3) for m in ids}
