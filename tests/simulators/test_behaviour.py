"""Simulated miners behave like machines, not recordings: driven by a hand-moved clock."""

from __future__ import annotations

import re
import statistics
from dataclasses import replace

import pytest

from simulators import MODELS, ManualClock, SimulatedMiner, run_fleet
from simulators.probe import query, query_json


def miner(key: str, *, seed: int = 3, index: int = 0, clock: ManualClock | None = None, **kw) -> SimulatedMiner:
    return SimulatedMiner(MODELS[key], index, seed=seed, clock=clock or ManualClock(), **kw)


def series(m: SimulatedMiner, clock: ManualClock, seconds: float, step: float):
    out = []
    for _ in range(int(seconds / step)):
        clock.advance(step)
        out.append(m.truth())
    return out


@pytest.mark.parametrize("key", list(MODELS))
def test_live_hashrate_wobbles_within_a_band_around_nameplate(key):
    clock = ManualClock()
    m = miner(key, clock=clock)
    nominal = MODELS[key].nameplate.hashrate_ths
    live = [s.hashrate_ths for s in series(m, clock, 4 * 3600, 37)]
    assert min(live) > 0.93 * nominal and max(live) < 1.08 * nominal
    assert statistics.pstdev(live) > 0.002 * nominal  # it moves
    avg = m.truth().hashrate_avg_ths
    assert 0.97 * nominal < avg < 1.05 * nominal


@pytest.mark.parametrize("key", list(MODELS))
def test_power_follows_hashrate(key):
    clock = ManualClock()
    m = miner(key, clock=clock)
    snaps = series(m, clock, 2 * 3600, 29)
    hashrate = [s.hashrate_ths for s in snaps]
    power = [s.power_w for s in snaps]
    assert statistics.correlation(hashrate, power) > 0.8
    spec = MODELS[key]
    assert 0.93 * spec.nameplate.power_w < statistics.mean(power) < 1.08 * spec.nameplate.power_w


def test_lower_work_mode_hashes_less_draws_less_runs_cooler():
    clock = ManualClock()
    m = miner("q", clock=clock)
    clock.advance(600)
    super_ = m.truth()
    m.set_work_mode(0)  # Eco
    clock.advance(600)
    eco = m.truth()
    assert eco.work_mode == "Eco" and super_.work_mode == "Super"
    assert eco.hashrate_ths < 0.7 * super_.hashrate_ths
    assert eco.power_w < 0.6 * super_.power_w
    assert eco.temp_chip_avg_c < super_.temp_chip_avg_c
    assert eco.fan_pct < super_.fan_pct


def test_heat_raises_chip_temperatures_and_fan_speed():
    clock = ManualClock()
    cool = miner("a1566", clock=clock, ambient_c=18.0)
    hot = miner("a1566", clock=clock, ambient_c=38.0)
    c, h = cool.truth(), hot.truth()
    assert h.temp_env_c - c.temp_env_c == pytest.approx(20, abs=2)
    assert h.temp_chip_max_c > c.temp_chip_max_c
    assert h.fan_pct > c.fan_pct and max(h.fans_rpm) > max(c.fans_rpm)


def test_a15_194_reads_like_the_real_capture():
    # A real one: 197 TH/s live, 3731 W, ambient 31 °C, chips 60-78 °C, fans ~4280 rpm at 49 %.
    clock = ManualClock()
    m = miner("a1566", clock=clock)
    m.set_faults(ambient_c=31.0)
    s = m.truth()
    assert 188 < s.hashrate_ths < 205
    assert 3500 < s.power_w < 3900
    assert 40 <= s.fan_pct <= 60 and all(3400 < rpm < 5400 for rpm in s.fans_rpm)
    chips = [int(t) for b in s.boards for t in m.pvt_text(b.index, b.chip_base_c).split()]
    assert 50 <= min(chips) and max(chips) <= 88
    assert 64 <= statistics.mean(chips) <= 76


def test_uptime_and_shares_advance_with_the_clock():
    clock = ManualClock()
    m = miner("a1246", clock=clock)
    before = m.truth()
    clock.advance(600)
    after = m.truth()
    assert after.uptime_s - before.uptime_s == 600
    shares = (after.accepted + after.rejected + after.stale) - (before.accepted + before.rejected + before.stale)
    expected = after.hashrate_avg_ths * 1e12 * 600 / (MODELS["a1246"].pool_diff * 2**32)
    assert shares == pytest.approx(expected, rel=0.1)


def test_after_reboot_live_ramps_and_average_lags():
    clock = ManualClock()
    m = miner("a1566", clock=clock)
    m.reboot()
    s = m.truth()
    assert (s.uptime_s, s.hashrate_ths, s.hashrate_avg_ths, s.accepted) == (0, 0.0, 0.0, 0)
    assert s.state == "idle"  # "In Init"
    clock.advance(40)
    s = m.truth()
    assert s.state == "mining" and s.uptime_s == 40
    assert 0 < s.hashrate_avg_ths < s.hashrate_ths < 0.7 * 194
    clock.advance(3600)
    s = m.truth()
    assert s.hashrate_avg_ths == pytest.approx(s.hashrate_ths, rel=0.04)


def test_average_is_the_same_however_often_the_miner_is_polled():
    busy_clock, idle_clock = ManualClock(), ManualClock()
    busy, idle = miner("q", clock=busy_clock), miner("q", clock=idle_clock)
    busy.reboot()
    idle.reboot()
    for _ in range(300):
        busy_clock.advance(1)
        busy.truth()
    idle_clock.advance(300)
    b, i = busy.truth(), idle.truth()
    # Integrated in 300 steps or one: equal up to float summation order, identical on the wire.
    assert b.total_th_s == pytest.approx(i.total_th_s, rel=1e-12)
    assert replace(b, total_th_s=0.0) == replace(i, total_th_s=0.0)


def test_same_seed_and_clock_give_identical_replies_other_seed_differs():
    request = {"command": "version+summary+estats+devs+pools"}
    replies = []
    for seed in (7, 7, 8):
        clock = ManualClock(1_760_000_000)
        with run_fleet("a1246:1,q:1", base="127.0.0.1:0", seed=seed, clock=clock) as sim:
            clock.advance(95)
            replies.append([query(m.address, request) for m in sim.miners])
    assert replies[0] == replies[1]
    assert replies[0][0] != replies[2][0] and replies[0][1] != replies[2][1]


def test_different_indexes_are_different_units():
    a, b = miner("a1246", index=0), miner("a1246", index=1)
    assert a.mac != b.mac
    assert a.truth().hashrate_ths != b.truth().hashrate_ths


def test_last_served_is_what_the_wire_said():
    clock = ManualClock()
    with run_fleet("a1566:1", base="127.0.0.1:0", seed=5, clock=clock) as sim:
        m = sim.miners[0]
        assert m.last_served is None
        query_json(m.address, "version")  # identity only: no telemetry served
        assert m.last_served is None
        reply = query_json(m.address, "summary+estats")
        served = m.last_served
        assert served is not None and m.answers == 2
        dev = dict(re.findall(r"(\w+)\[([^\]]*)\]", reply["estats"][0]["STATS"][0]["MM ID0"]))
        assert float(dev["GHSspd"]) == pytest.approx(served.hashrate_ths * 1000, abs=0.005)
        assert float(dev["GHSavg"]) == pytest.approx(served.hashrate_avg_ths * 1000, abs=0.005)
        assert int(dev["WALLPOWER"]) == served.power_w
        assert int(dev["TMax"]) == served.temp_chip_max_c
        assert int(dev["Temp"]) == served.temp_env_c
        assert [int(dev[f"Fan{i + 1}"]) for i in range(2)] == list(served.fans_rpm)
        mghs = [float(v) for v in dev["MGHS"].split()]
        assert mghs == pytest.approx([b.hashrate_avg_ths * 1000 for b in served.boards], abs=0.005)
        assert reply["summary"][0]["SUMMARY"][0]["Accepted"] == served.accepted
        assert reply["summary"][0]["SUMMARY"][0]["Elapsed"] == served.uptime_s
        assert served.state == "mining"
        clock.advance(10)
        assert m.truth().uptime_s == served.uptime_s + 10  # truth() moves on, last_served stays
        assert m.last_served is served
