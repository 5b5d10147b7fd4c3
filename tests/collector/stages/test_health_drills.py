"""Every simulated fault, end to end: simulated miners over TCP, the real pipeline (poll, cost, health),
and the diagnosis — the problem, its root cause and its dollars — within N cycles of the fault.

The simulators run on a ManualClock moved DT seconds per cycle (evolving faults are time-compressed
with `days_per_hour`); the collector reads them as it reads real miners. Before the faults, WARMUP
healthy cycles let the stage learn each miner's usual draw (what a fault's saved energy is priced from).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from collector import pipeline
from collector.stages.cost_engine import network_hashprice
from collector.stages.health import HealthStage
from models import CollectorConfig, NetworkState
from models.health import Cause, MinerHealth, Signal
from simulators.clock import ManualClock
from simulators.faults import CONTROLLER
from simulators.fleet import run_fleet
from simulators.mqtt_meter import MqttPowerMeter, format_mac
from tests.collector.stages.health_support import Captured

N = 4  # cycles after a fault is switched on by which it must be diagnosed
WARMUP = 3
DT = 240.0  # simulated seconds per cycle: a rebooted miner's board averages settle (600 s) by cycle 3
STATIC = {"difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03, "btc_price_usd": 95_000}
ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1, "pool_fee_pct": 2}
# A fleet with peers for each model: the faulty miners are judged against healthy ones.
FLEET = "a1566:10,a1246:4"

# fleet index -> (fault switches, expected signal key, expected cause, hashrate lost?)
DRILLS = {
    "chips_dying": (0, {"chips_dying": ((1, 60.0),), "days_per_hour": 1.0}, "chips_dead:1", Cause.BOARD, True),
    "dead_board": (1, {"dead_boards": {2}}, "board_dead:2", Cause.BOARD, True),
    "weak_board": (2, {"weak_board": (0, 0.5)}, "board_weak:0", Cause.BOARD, True),
    "fan_failing": (3, {"fan_failing": (1, 100.0), "days_per_hour": 24.0}, "fan_stopped:1", Cause.THERMAL, False),
    "overheat": (4, {"overheat": "throttle"}, "chip_hot", Cause.THERMAL, True),
    "ambient_c": (10, {"ambient_c": 40.0}, "ambient_hot", Cause.THERMAL, False),
    "pool_rejects": (5, {"pool_rejects": (8.0, 1.0)}, "pool_rejects", Cause.POOL, True),
    "hw_errors": (6, {"hw_errors": 12.0}, "hw_errors", Cause.BOARD, True),
    "reboot_loop": (7, {"reboot_loop": 300.0}, "reboots", Cause.FIRMWARE, True),
    "error_code": (11, {"error_code": (0, 4096)}, "fault_code:0", Cause.BOARD, False),  # on board 0
    "no_answer": (8, {"no_answer": True}, "offline", Cause.NETWORK, True),
}


def _config(addresses: list[str], spool, **more) -> CollectorConfig:
    return CollectorConfig.model_validate({
        "site": "drill", "miners": addresses, "interval_s": 2, "timeout_s": 1.5, "spool": {"directory": str(spool)},
        "economics": ECONOMICS, "network": {"source": "static", "static": STATIC}} | more)


def _run(built, cycles: int, clock: ManualClock, captured: Captured, before_cycle=None):
    async def go():
        for _ in range(cycles):
            clock.advance(DT)
            if before_cycle is not None:
                await before_cycle()
            await built.run_cycles(cycles=1)
    return go()


def _health(captured: Captured, miner: str) -> MinerHealth:
    return captured.last(miner)


def _net_usd_per_th_day() -> float:
    return network_hashprice(NetworkState(**STATIC)) / 1000 * (1 - ECONOMICS["pool_fee_pct"] / 100)


def _energy_usd_per_w_day() -> float:
    return ECONOMICS["tariff"]["usd_per_kwh"] * 24 / 1000 * ECONOMICS["pue"]


@pytest.fixture(scope="module")
def drilled(tmp_path_factory):
    """The fleet read WARMUP cycles healthy, then N cycles with every drill's fault on its own miner."""
    clock = ManualClock()
    with run_fleet(FLEET, base="127.48.0.1:0", seed=11, clock=clock) as fleet:
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path_factory.mktemp("spool")), sinks=[captured])
        stage = next(s for s in built.stages if isinstance(s, HealthStage))

        async def everything():
            await built.start()
            try:
                await _run(built, WARMUP, clock, captured)
                healthy = captured.cycles[-1].health
                before = {i: m.last_served.hashrate_ths for i, m in enumerate(fleet)}
                for index, faults, _, _, _ in DRILLS.values():
                    fleet[index].set_faults(**faults)
                    if "weak_board" in faults:
                        fleet[index].reboot()  # its since-boot board averages start from the fault
                baselines = {m: mem.kept.baseline_w for m, mem in stage._memory.items()}
                await _run(built, N, clock, captured)
                return healthy, baselines, before
            finally:
                await built.stop()

        healthy, baselines, before = asyncio.run(everything())
        ids = {i: _id(m) for i, m in enumerate(fleet)}
        truth = {i: (before[i], m.last_served) for i, m in enumerate(fleet)}
        yield fleet, captured, healthy, baselines, ids, truth


def _id(miner) -> str:
    return format_mac(miner.mac)


def test_the_healthy_fleet_raised_nothing_before_the_faults(drilled):
    _, _, healthy, _, _, _ = drilled
    assert healthy.problems == 0 and healthy.miners == 14


@pytest.mark.parametrize("drill", list(DRILLS))
def test_each_fault_is_found_with_its_root_cause_and_its_dollars(drilled, drill):
    fleet, captured, _, baselines, ids, truth = drilled
    index, _, key, cause, loses_hashrate = DRILLS[drill]
    health = _health(captured, ids[index])
    problems = {p.key: p for p in health.problems}
    assert key in problems, f"{drill}: {key} not among {list(problems)}"
    problem = problems[key]
    assert problem.cause is cause, f"{drill}: {problem.cause} ({problem.evidence})"
    assert problem.usd_lost_day is not None and math.isfinite(problem.usd_lost_day)
    if not loses_hashrate:
        return
    assert problem.lost_ths > 0 and problem.usd_lost_day > 0, f"{drill}: {problem}"
    if drill in ("pool_rejects", "hw_errors", "reboot_loop"):  # refused, wasted, or lost to restarts: no energy saved
        assert problem.usd_lost_day == pytest.approx(problem.lost_ths * _net_usd_per_th_day())
        return
    # The hashrate the fault takes, against what the simulator really hashed before and after it (within
    # the live wobble of two readings), priced less the energy the miner no longer draws (its usual draw
    # less its draw now).
    healthy, served = truth[index]
    hashed = 0.0 if drill == "no_answer" else served.hashrate_ths
    assert sum(p.lost_ths for p in health.problems if p.signal not in (Signal.POOL_REJECTS, Signal.HW_ERRORS)) \
        == pytest.approx(healthy - hashed, rel=0.05, abs=0.04 * healthy)
    if drill == "no_answer":
        saved = 0.0  # no meter reads it: whether it still draws is unknown (the simulated one does)
    else:
        saved = max(0.0, baselines[ids[index]] - served.power_w)
    share = problem.lost_ths / sum(p.lost_ths for p in health.problems
                                   if p.signal not in (Signal.POOL_REJECTS, Signal.HW_ERRORS))
    assert problem.usd_lost_day == pytest.approx(problem.lost_ths * _net_usd_per_th_day()
                                                 - saved * share * _energy_usd_per_w_day(), rel=0.05, abs=0.02)


def test_healthy_miners_stay_healthy_beside_the_sick_ones(drilled):
    fleet, captured, _, _, ids, _ = drilled
    sick = {index for index, *_ in DRILLS.values()}
    for index in range(len(fleet)):
        if index not in sick:
            assert _health(captured, ids[index]).problems == (), index


def test_the_repair_queue_is_in_order_of_dollars_lost(drilled):
    _, captured, _, _, _, _ = drilled
    queue = captured.cycles[-1].health.queue
    dollars = [p.usd_lost_day for p in queue]
    assert dollars == sorted(dollars, reverse=True) and len(queue) >= len(DRILLS)


def test_a_stopped_fan_that_throttles_nothing_costs_nothing_beside_a_weak_board(tmp_path):
    """A1246s (hot limit 90 C) with one fan of four stopped: the others spin up, the chips stay cool, the
    unit is not throttled. A board that weakened long after boot barely moves its since-boot average, so
    it is not named board_weak; the shortfall it makes is not the fan's. Under SHORTFALL_SHARE (10 %) it
    is named by nothing (the documented limit); over it, it is hashrate_low, not put down to the fan,
    and it stays when the fan is replaced."""
    clock = ManualClock()
    with run_fleet("a1246:4", base="127.48.6.1:0", seed=15, clock=clock) as fleet:
        captured = Captured()
        (tmp_path / "spool").mkdir()
        built = pipeline.build(_config(fleet.addresses, tmp_path / "spool"), sinks=[captured])
        ids = [_id(m) for m in fleet]
        failing = {"fan_failing": (1, 100.0), "days_per_hour": 24.0}  # stopped within a cycle

        async def go():
            await built.start()
            try:
                await _run(built, WARMUP, clock, captured)
                fleet[0].set_faults(weak_board=(0, 0.8), **failing)  # a third of the unit at 80 %: ~7 % short
                fleet[1].set_faults(weak_board=(0, 0.5), **failing)  # ~17 % short
                fleet[2].set_faults(**failing)
                await _run(built, N, clock, captured)
                stopped = [_health(captured, i) for i in ids]
                fleet[1].set_faults(fan_failing=None)  # the fan replaced
                await _run(built, 2, clock, captured)
                return stopped
            finally:
                await built.stop()

        stopped = asyncio.run(go())
        served = [m.last_served for m in fleet]
    for index in (0, 1, 2):
        problems = {p.key: p for p in stopped[index].problems}
        fan = problems["fan_stopped:1"]
        assert fan.cause is Cause.THERMAL and fan.lost_ths == 0 and fan.usd_lost_day == 0, (index, fan)
        assert served[index].temp_chip_max_c < 87  # not near the hot limit: nothing throttled
    assert set(p.key for p in stopped[0].problems) == {"fan_stopped:1"}
    low = {p.key: p for p in stopped[1].problems}["hashrate_low"]
    assert low.cause is Cause.FIRMWARE and "fan" not in low.evidence, low
    assert low.lost_ths == pytest.approx(stopped[1].expected_ths / 3 * 0.5, rel=0.2)
    assert low.usd_lost_day > 0
    after = {p.key: p for p in _health(captured, ids[1]).problems}
    assert set(after) == {"hashrate_low"} and after["hashrate_low"].lost_ths == pytest.approx(low.lost_ths, rel=0.2)


# The `error_code` drill where the native Antminer and Whatsminer readers read it: a stock S19j Pro's
# web health list (`summary.cgi`) and an M50S's `get_error_code`. Each miner on its own address (the
# web UI is on port 80); fleet index -> (board or CONTROLLER, code, expected signal key, expected cause).
OTHER_MAKES = "s19jpro:3,m50s:3"
CODE_DRILLS = {
    "antminer_chain": (0, (0, 4096), "fault_code:0", Cause.BOARD),  # "Error code 4096 on chain 0"
    "antminer_controller": (1, (CONTROLLER, 4096), "fault_code", Cause.FIRMWARE),  # "... on control board"
    "whatsminer_controller": (3, (CONTROLLER, 4096), "fault_code", Cause.FIRMWARE),  # no published meaning
    "whatsminer_slot": (4, (CONTROLLER, 531), "fault_code:1", Cause.BOARD),  # "Slot 1 not found."
}


@pytest.fixture(scope="module")
def other_makes_drilled(tmp_path_factory):
    """Those makes read N cycles with the codes set. The readers read these lists at identification and
    then at most a minute old (wall time), so the codes are set before the collector first reads them."""
    yield from _drilled(tmp_path_factory, OTHER_MAKES, "127.48.2.1", 13,
                        {index: {"error_code": code} for index, code, _, _ in CODE_DRILLS.values()})


def _drilled(tmp_path_factory, makes: str, base: str, seed: int, faults: dict[int, dict]):
    """`makes` simulated with `faults` (miner index -> set_faults arguments) set before the collector's first
    read, read N cycles: the fleet, what the sink captured, and each miner's id by index."""
    clock = ManualClock()
    with run_fleet(makes, base=base, seed=seed, clock=clock) as fleet:
        for index, switches in faults.items():
            fleet[index].set_faults(**switches)
        captured = Captured()
        built = pipeline.build(_config(fleet.addresses, tmp_path_factory.mktemp("spool"), timeout_s=5.0),
                               sinks=[captured])

        async def cycles():
            await built.start()
            try:
                await _run(built, N, clock, captured)
            finally:
                await built.stop()

        asyncio.run(cycles())
        yield fleet, captured, {i: _id(m) for i, m in enumerate(fleet)}


@pytest.mark.parametrize("drill", list(CODE_DRILLS))
def test_an_error_code_on_an_antminer_or_a_whatsminer_is_a_fault_code_with_its_cause(other_makes_drilled, drill):
    fleet, captured, ids = other_makes_drilled
    index, (_, code), key, cause = CODE_DRILLS[drill]
    problems = {p.key: p for p in _health(captured, ids[index]).problems}
    assert key in problems, f"{drill}: {key} not among {list(problems)}"
    problem = problems[key]
    assert problem.cause is cause, f"{drill}: {problem.cause} ({problem.evidence})"
    assert problem.value == code and str(code) in problem.evidence
    assert problem.usd_lost_day is not None and math.isfinite(problem.usd_lost_day)


def test_the_other_makes_without_a_code_raise_nothing(other_makes_drilled):
    fleet, captured, ids = other_makes_drilled
    for index in (2, 5):
        assert _health(captured, ids[index]).problems == (), index


# The `hw_errors` drill where the native readers read it: CGMiner `summary` `Device Hardware%`, in per cent
# (a stock S19j Pro's BMMiner, a BOS+ S19j Pro's bosminer). Whatsminers on API 2.x (the simulated M50S)
# report no hardware error rate. Six of each model: the faulty unit is judged against its peers.
HW_MAKES = "s19jpro:6,bos-s19jpro:6"
HW_FAULTY = (0, 6)
HW_PCT = 20.0


@pytest.fixture(scope="module")
def hw_drilled(tmp_path_factory):
    yield from _drilled(tmp_path_factory, HW_MAKES, "127.48.7.1", 17, {index: {"hw_errors": HW_PCT} for index in HW_FAULTY})


def _last_sample(captured: Captured, miner: str):
    return next(s for part in reversed(captured.parts) for s in part.samples if s.miner == miner)


@pytest.mark.parametrize("index", HW_FAULTY, ids=["antminer stock", "braiins os+"])
def test_hardware_errors_on_an_antminer_or_bos_are_read_in_per_cent_and_raise_hw_errors(hw_drilled, index):
    fleet, captured, ids = hw_drilled
    sample = _last_sample(captured, ids[index])
    served = fleet[index].last_served.hw_error_pct
    assert served == pytest.approx(HW_PCT, rel=0.01)  # the simulator's truth, in per cent
    assert sample.hw_error_pct == pytest.approx(served, abs=1e-4), sample  # as served, not / 100
    problem = {p.key: p for p in _health(captured, ids[index]).problems}.get("hw_errors")
    assert problem is not None, _health(captured, ids[index]).problems
    assert problem.cause is Cause.BOARD and problem.value == pytest.approx(served, abs=1e-4)
    assert problem.lost_ths > 0 and problem.usd_lost_day > 0


def test_their_peers_without_the_fault_raise_no_hw_errors(hw_drilled):
    fleet, captured, ids = hw_drilled
    for index, miner in enumerate(fleet):
        if index in HW_FAULTY:
            continue
        sample = _last_sample(captured, ids[index])
        assert sample.hw_error_pct == pytest.approx(miner.last_served.hw_error_pct, abs=1e-4), sample
        assert sample.hw_error_pct < 1, sample
        assert "hw_errors" not in {p.key for p in _health(captured, ids[index]).problems}, index


def test_psu_drift_against_the_simulated_meter_is_a_power_problem(mosquitto, tmp_path):
    """The PSU's own reading walks away from the true draw that the simulated PDU publishes over MQTT."""
    clock = ManualClock()
    with run_fleet("a1566:3", base="127.48.1.1:0", seed=12, clock=clock) as fleet:
        meter = MqttPowerMeter(list(fleet), mosquitto.host, mosquitto.port, prefix=f"drill-{tmp_path.name}",
                               rack_size=3).start(periodic=False)
        config = _config(fleet.addresses, tmp_path / "spool", mqtt={
            "host": mosquitto.host, "port": mosquitto.port, "discovery": False,
            "ingest": meter.collector_ingest()[:1]})
        captured = Captured()
        built = pipeline.build(config, sinks=[captured], service_mode=True)
        live = built.mqtt.live
        drifting = _id(fleet[0])

        async def metered():
            meter.publish_once()
            for _ in range(100):  # the ingest applies readings on the loop's thread
                readings = [live.metered_w.get(_id(m)) for m in fleet]
                if all(r is not None and abs(r.watts - m.truth().power_true_w) < 1 for r, m in zip(readings, fleet)):
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("meter readings did not arrive")

        async def go():
            await built.start()
            try:
                await _run(built, WARMUP, clock, captured, metered)
                fleet[0].set_faults(psu_drift=-20.0, days_per_hour=24.0)  # -20 % a fault day, 1.6 fault days a cycle
                await _run(built, N, clock, captured, metered)
            finally:
                await built.stop()

        try:
            asyncio.run(go())
        finally:
            meter.stop()
            built.close()
    problems = {p.key: p for p in captured.last(drifting).problems}
    problem = problems["power_mismatch"]
    assert problem.cause is Cause.POWER and problem.value < 0.9 * problem.limit  # reports well under the meter
    # The evidence says which reading is off, and by how much (the miner's own: low, against the meter's).
    assert f"its own reading is {1 - problem.value / problem.limit:.0%} low" in problem.evidence, problem.evidence
    assert problem.lost_ths == 0 and problem.usd_lost_day == 0  # a reading problem of the PSU: nothing lost
    assert all(captured.last(_id(m)).problems == () for m in list(fleet)[1:])


def test_a_restart_ramp_against_an_older_meter_reading_is_no_power_problem(mosquitto, tmp_path):
    """After a start a miner's draw climbs with its hashrate (the simulator's over 60 s); the meter's reading
    is a few seconds older than the miner's own (a PDU publishes every few seconds; the collector uses
    readings up to meter_max_age_s old), so it reads a lower draw. Neither a restarted healthy miner nor a
    reboot loop is a power problem (the loop is put down to the firmware, not to a PSU), and no ramp
    reading teaches its model's metered / reported ratio."""
    clock = ManualClock()
    with run_fleet("a1246:3", base="127.48.5.1:0", seed=14, clock=clock) as fleet:
        meter = MqttPowerMeter(list(fleet), mosquitto.host, mosquitto.port, prefix=f"ramp-{tmp_path.name}",
                               rack_size=3).start(periodic=False)
        (tmp_path / "spool").mkdir()
        config = _config(fleet.addresses, tmp_path / "spool", mqtt={
            "host": mosquitto.host, "port": mosquitto.port, "discovery": False,
            "ingest": meter.collector_ingest()[:1]})
        captured = Captured()
        built = pipeline.build(config, sinks=[captured], service_mode=True)
        live = built.mqtt.live
        truth = next(s for s in built.stages if isinstance(s, HealthStage)).truth
        ids = [_id(m) for m in fleet]

        async def cycle(step_s: float, meter_lag_s: float):
            clock.advance(step_s - meter_lag_s)
            meter.publish_once()
            for _ in range(100):  # the ingest applies readings on the loop's thread
                readings = [live.metered_w.get(i) for i in ids]
                if all(r is not None and abs(r.watts - m.truth().power_true_w) < 1 for r, m in zip(readings, fleet)):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("meter readings did not arrive")
            clock.advance(meter_lag_s)  # the miners are read this much after the meter
            await built.run_cycles(cycles=1)

        def ratios_of(miner: str) -> int:  # metered / reported ratios learned from it
            return sum(1 for ring in truth._ratios.values() for m, _ in ring if m == miner)

        async def go():
            await built.start()
            try:
                for _ in range(WARMUP):
                    await cycle(DT, 0.0)
                learned = [ratios_of(i) for i in ids]
                fleet[1].reboot()  # a technician's restart
                fleet[2].set_faults(reboot_loop=120.0)  # a loop from now: restarts now, at 120 s, 240 s, ...
                fleet[2].reboot()
                first = len(captured.parts)
                for _ in range(40):  # 400 s at 10 s cycles: 3 starts of the loop, none past RAMP_S
                    await cycle(10.0, 5.0)
                return learned, first
            finally:
                await built.stop()

        try:
            learned, first = asyncio.run(go())
        finally:
            meter.stop()
            built.close()
    seen = [(h.miner, p) for part in captured.parts[first:] for h in part.health or () for p in h.problems]
    assert not [p for _, p in seen if p.signal is Signal.POWER_MISMATCH], [p.evidence for _, p in seen]
    assert not [p for miner, p in seen if miner in ids[:2]], [p.evidence for _, p in seen]
    loop = [p for miner, p in seen if miner == ids[2] and p.signal is Signal.REBOOTS]
    assert loop and all(p.cause is Cause.FIRMWARE for p in loop), [p.evidence for p in loop]
    assert [ratios_of(i) - before for i, before in zip(ids, learned)] == [40, 0, 0]  # the healthy one, every cycle
