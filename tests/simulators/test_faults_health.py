"""The health fault switches (issue 18): each root cause shows in every make's own reply, read over real
TCP/HTTP on loopback, the way the firmware would show it. Faults that evolve over days run on fault time
(`days_per_hour=3600`: a fault day per second of a ManualClock), so days pass in a test without waiting.

Each make's reply is read by a small `view_*` function into the same few facts (chips per board, fans,
reported watts, error codes, pool counters, uptime, HW error %, per-board hashrate), so one test per
fault can say what every make must show; make-specific details are checked beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from tests.support import pyasic_data, wait_for

from simulators import Faults, ManualClock, run_fleet
from simulators.faults import CONTROLLER, FaultValueError, parse_value
from simulators.mqtt_meter import MqttPowerMeter
from simulators.probe import query_json

FLEET = "a1566:1,q:1,nano3s:1,s19jpro:1,m50s:1,bos-s19jpro:1,bitaxe:1"
DAY_PER_S = 3600.0  # days_per_hour: one fault day per second of the clock
ROOT = httpx.DigestAuth("root", "root")


@pytest.fixture(scope="module")
def sim():
    with run_fleet(FLEET, base="127.62.0.1", seed=61, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
        miner.set_power_limit(None)
    sim.clock.advance(120)
    yield
    for miner in sim.miners:
        miner.clear_faults()


def unit(sim, key):
    return next(m for m in sim.miners if m.spec.key == key)


# -- each make's reply, read into the same facts ------------------------------------------------------


@dataclass
class View:
    chips: list[int] | None = None  # per board, as counted by the firmware
    fans: list[int] = field(default_factory=list)
    power_w: float | None = None  # what the miner says it draws (None: the firmware does not say)
    codes: list[int] = field(default_factory=list)  # error codes as the firmware lists them
    messages: list[str] = field(default_factory=list)
    pool: tuple[int, int, int] = (0, 0, 0)  # accepted, rejected, stale of the active pool
    uptime_s: int = 0
    hw_pct: float | None = None
    board_ths: list[float] | None = None  # per board: live where the firmware has it, else since boot
    hashrate_ths: float = 0.0
    chip_max_c: float = 0.0
    raw: dict = field(default_factory=dict)


def fields_of(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)\[([^\]]*)\]", text))


def view_avalon(m) -> View:
    reply = query_json(m.address, "summary+estats+pools")
    entry = reply["estats"][0]["STATS"][0]
    dev = fields_of(entry.get("MM ID0") or entry["MM ID0:Summary"])
    if "HBinfo" in entry:
        dev.update(fields_of(entry["HBinfo"]))
    pvt = [[int(t) for t in dev[f"PVT_T{b}"].split()] for b in range(m.spec.boards)]
    pool = reply["pools"][0]["POOLS"][0]
    power = dev.get("WALLPOWER") or dev["PS"].split()[-1]
    return View(
        chips=[sum(1 for t in temps if t) for temps in pvt], fans=[int(dev[f"Fan{i + 1}"]) for i in range(m.spec.fans)],
        power_w=float(power), codes=[int(c) for c in dev["ECHU"].split()] + [int(dev["ECMM"])],
        pool=(pool["Accepted"], pool["Rejected"], pool["Stale"]), uptime_s=reply["summary"][0]["SUMMARY"][0]["Elapsed"],
        hw_pct=float(dev["DH"].rstrip("%")), board_ths=[float(v) / 1000 for v in dev["MGHS"].split()],
        hashrate_ths=float(dev["GHSspd"]) / 1000, chip_max_c=float(dev["TMax"]), raw={"dev": dev, "pvt": pvt})


def web(m, path: str, **kw) -> dict:
    method = "POST" if "json" in kw else "GET"
    return httpx.request(method, f"http://{m.host}{path}", auth=ROOT, timeout=5, **kw).json()


def view_antminer(m) -> View:
    reply = query_json(m.address, "summary+stats+pools")
    dev = reply["stats"][0]["STATS"][1]
    summary = web(m, "/cgi-bin/summary.cgi")["SUMMARY"][0]
    stats = web(m, "/cgi-bin/stats.cgi")["STATS"][0]
    pool = reply["pools"][0]["POOLS"][0]
    bad = [item for item in summary["status"] if item["status"] != "s"]
    n = m.spec.boards
    return View(
        chips=[dev[f"chain_acn{b + 1}"] for b in range(n)], fans=[dev[f"fan{i + 1}"] for i in range(m.spec.fans)],
        power_w=None, codes=[item["code"] for item in bad], messages=[item["msg"] for item in bad],
        pool=(pool["Accepted"], pool["Rejected"], pool["Stale"]), uptime_s=reply["summary"][0]["SUMMARY"][0]["Elapsed"],
        hw_pct=stats["hwp_total"] * 100, board_ths=[float(dev[f"chain_rate{b + 1}"]) / 1000 for b in range(n)],
        hashrate_ths=float(reply["summary"][0]["SUMMARY"][0]["GHS 5s"]) / 1000, chip_max_c=float(dev["temp_max"]),
        raw={"dev": dev, "web_stats": stats})


def view_whatsminer(m) -> View:
    reply = query_json(m.address, "summary+devs+pools")
    summary = reply["summary"][0]["SUMMARY"][0]
    devs = {d["Slot"]: d for d in reply["devs"][0]["DEVS"]}
    codes = [int(code) for entry in query_json(m.address, "get_error_code")["Msg"]["error_code"] for code in entry]
    pool = reply["pools"][0]["POOLS"][0]
    n = m.spec.boards
    return View(
        chips=[devs[b]["Effective Chips"] if b in devs else 0 for b in range(n)],
        fans=[summary["Fan Speed In"], summary["Fan Speed Out"]], power_w=float(summary["Power"]), codes=codes,
        pool=(pool["Accepted"], pool["Rejected"], pool["Stale"]), uptime_s=summary["Elapsed"],
        board_ths=[devs[b]["MHS 5s"] / 1e6 if b in devs else 0.0 for b in range(n)],
        hashrate_ths=summary["MHS 5s"] / 1e6, chip_max_c=summary["Chip Temp Max"], raw={"summary": summary})


def view_braiins(m) -> View:
    reply = query_json(m.address, "summary+devs+devdetails+fans+tunerstatus+pools+temps")
    summary = reply["summary"][0]["SUMMARY"][0]
    pool = reply["pools"][0]["POOLS"][0]
    tuner = reply["tunerstatus"][0]["TUNERSTATUS"][0]
    return View(
        chips=[d["Chips"] for d in reply["devdetails"][0]["DEVDETAILS"]],
        fans=[f["RPM"] for f in reply["fans"][0]["FANS"]], power_w=float(tuner["ApproximateMinerPowerConsumption"]),
        messages=[c["Status"] for c in tuner["TunerChainStatus"] if c["Status"] != "Stable"],
        pool=(pool["Accepted"], pool["Rejected"], pool["Stale"]), uptime_s=summary["Elapsed"],
        hw_pct=summary["Device Hardware%"], board_ths=[d["MHS 5s"] / 1e6 for d in reply["devs"][0]["DEVS"]],
        hashrate_ths=summary["MHS 5s"] / 1e6, chip_max_c=max(t["Chip"] for t in reply["temps"][0]["TEMPS"]),
        raw={"tuner": tuner})


def view_bitaxe(m) -> View:
    info = httpx.get(f"http://{m.host}/api/system/info", timeout=5).json()
    return View(
        fans=[info["fanrpm"]], power_w=float(info["power"]), pool=(info["sharesAccepted"], info["sharesRejected"], 0),
        uptime_s=info["uptimeSeconds"], hashrate_ths=info["hashRate"] / 1000, chip_max_c=info["temp"], raw=info)


VIEWS = {"avalon": view_avalon, "antminer": view_antminer, "whatsminer": view_whatsminer, "braiins": view_braiins,
         "bitaxe": view_bitaxe}


def view(m) -> View:
    return VIEWS[m.spec.family](m)


ALL = ["a1566", "q", "nano3s", "s19jpro", "m50s", "bos-s19jpro", "bitaxe"]
WITH_CHIPS = ["a1566", "q", "s19jpro", "m50s", "bos-s19jpro"]  # Bitaxe: one chip; Nano: see test_dead_board...
WITH_POWER = ["a1566", "m50s", "bos-s19jpro", "bitaxe"]  # stock Antminer firmware reports no power


# -- chips dying over days --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", WITH_CHIPS)
def test_chips_dying_over_days_show_in_the_firmwares_chip_counts(sim, key):
    m = unit(sim, key)
    n, board = m.spec.chips_per_board, m.spec.boards - 1
    m.set_faults(chips_dying=((board, 10.0),), days_per_hour=DAY_PER_S)
    sim.clock.advance(2.0)  # two fault days
    first = view(m)
    truth = m.last_served
    assert first.chips == [n] * board + [n - 20]
    assert truth.boards[board].chips_ok == n - 20 and len(truth.boards[board].dead_chips) == 20
    assert any("20 of" in e for e in truth.errors)
    # The board makes its share less the dead chips: exact against a healthy sibling (same noise).
    if board:
        rates = [b.hashrate_ths for b in truth.boards]
        tr = m.traits
        assert rates[board] / rates[0] == pytest.approx((n - 20) / n * tr.board_shares[board] / tr.board_shares[0],
                                                        rel=1e-3)
    sim.clock.advance(3.0)  # three more days: 30 more, and the first 20 stay dead
    later = m.truth()
    assert later.boards[board].chips_ok == n - 50
    assert set(truth.boards[board].dead_chips) < set(later.boards[board].dead_chips)
    m.clear_faults()  # the repair: a new board
    assert view(m).chips == [n] * m.spec.boards


def test_dead_chips_read_zero_at_their_places_in_the_avalon_pvt_lists(sim):
    m = unit(sim, "a1566")
    m.set_faults(chips_dying=((1, 40.0),), days_per_hour=DAY_PER_S)
    sim.clock.advance(1.0)
    v = view_avalon(m)
    dead = m.last_served.boards[1].dead_chips
    assert [i for i, t in enumerate(v.raw["pvt"][1]) if t == 0] == list(dead) and len(dead) == 40
    assert all(v.raw["pvt"][0]) and all(v.raw["pvt"][2])
    assert int(v.raw["dev"]["TA"]) == 3 * 160 - 40


def test_a_board_whose_chips_all_died_is_lost(sim):
    m = unit(sim, "nano3s")
    m.set_faults(chips_dying=((0, 6.0),), days_per_hour=DAY_PER_S)
    sim.clock.advance(1.0)
    half = view_avalon(m)
    assert half.chips == [6]
    sim.clock.advance(1.5)
    gone = view_avalon(m)
    assert gone.chips == [0] and gone.hashrate_ths == 0.0
    assert gone.raw["dev"]["SYSTEMSTATU"].startswith("Work: In Fault")


def test_antminer_chip_status_marks_each_dead_chip_and_pyasic_counts_them(sim):
    m = unit(sim, "s19jpro")
    m.set_faults(chips_dying=((1, 12.0),), days_per_hour=DAY_PER_S)
    sim.clock.advance(1.0)
    v = view_antminer(m)
    marks = v.raw["dev"]["chain_acs2"].replace(" ", "")
    assert [i for i, c in enumerate(marks) if c == "x"] == list(m.last_served.boards[1].dead_chips)
    assert v.raw["web_stats"]["chain"][1]["asic_num"] == 126 - 12
    assert any("found 114 of 126" in msg for msg in v.messages)
    _, data = pyasic_data(m.host)
    assert [b.chips for b in data.hashboards] == [126, 114, 126]


# -- a failing fan ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_a_failing_fan_slows_to_zero_the_others_make_up_and_chips_warm(sim, key):
    m = unit(sim, key)
    before = view(m)
    m.set_faults(fan_failing=(0, 100.0), days_per_hour=DAY_PER_S)  # stops after one fault day
    sim.clock.advance(0.3)
    slowing = view(m)
    target = m.spec.fan_max_rpm * m.last_served.fan_pct / 100  # the firmware drives it harder, in vain
    assert 0 < slowing.fans[0] < 0.8 * target
    sim.clock.advance(1.0)
    stopped = view(m)
    assert stopped.fans[0] == 0
    assert all(after > was for after, was in zip(stopped.fans[1:], before.fans[1:]))  # spun up
    assert stopped.chip_max_c >= before.chip_max_c
    assert m.last_served.fans_failed == (0,)
    if m.spec.fans == 1:  # nothing left to cool: the firmware protects the chips by clocking down
        assert stopped.hashrate_ths < 0.7 * m.spec.nominal_ths
        assert "overheat throttle" in m.last_served.errors


def test_a_stopped_fan_is_in_the_firmwares_error_lists(sim):
    for key in ("s19jpro", "m50s"):
        unit(sim, key).set_faults(fan_failing=(0, 100.0), days_per_hour=DAY_PER_S)
    sim.clock.advance(1.5)
    antminer, whatsminer = view_antminer(unit(sim, "s19jpro")), view_whatsminer(unit(sim, "m50s"))
    assert any(msg.startswith("Fan 1 speed too low") for msg in antminer.messages)
    assert 110 in whatsminer.codes  # intake fan speed error
    _, data = pyasic_data(unit(sim, "s19jpro").host)
    assert data.fans[0].speed == 0 and any("Fan 1" in e.error_message for e in data.errors)


def test_a_four_fan_unit_holds_its_temperature_on_three_two_fan_unit_runs_hot(sim):
    four, two = unit(sim, "q"), unit(sim, "a1566")
    cool = {m.spec.key: m.truth().temp_chip_avg_c for m in (four, two)}
    for m in (four, two):
        m.set_faults(fan_failing=(0, 100.0), days_per_hour=DAY_PER_S)
    sim.clock.advance(1.5)
    assert four.truth().temp_chip_avg_c <= cool["q"] + 6
    assert two.truth().temp_chip_avg_c >= cool["a1566"] + 6


# -- PSU drift: the miner's watts walk away from the meter ---------------------------------------------------


@pytest.mark.parametrize("key", WITH_POWER)
def test_psu_drift_walks_the_reported_watts_away_from_the_true_draw(sim, key):
    m = unit(sim, key)
    m.set_faults(psu_drift=5.0, days_per_hour=DAY_PER_S)  # +5 % per fault day
    sim.clock.advance(2.0)
    v = view(m)
    truth = m.last_served
    assert v.power_w == pytest.approx(truth.power_w, abs=0.5)
    assert truth.power_w == pytest.approx(truth.power_true_w * 1.10, rel=0.002)
    m.set_faults(psu_drift=-5.0)  # drifts back, past the truth
    sim.clock.advance(4.0)
    low = m.truth()
    assert low.power_w == pytest.approx(low.power_true_w * 0.90, rel=0.002)


def test_a_meter_publishes_the_true_draw_while_the_miner_reports_the_drifted_one(sim, mosquitto):
    m = unit(sim, "a1566")
    m.set_faults(psu_drift=10.0, days_per_hour=DAY_PER_S)
    sim.clock.advance(1.0)
    reported = view_avalon(m).power_w
    got: list[dict] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    sub.on_subscribe = lambda c, u, mid, codes, props: subscribed.append(mid)
    subscribed: list[int] = []
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    try:
        sub.subscribe("drill/meter/r1/outlet/1", qos=1)
        wait_for(lambda: subscribed, what="subscription")
        with MqttPowerMeter([m], mosquitto.host, mosquitto.port, prefix="drill") as meter:
            meter.start(periodic=False)
            meter.publish_once()
            wait_for(lambda: got, what="the meter's outlet reading")
    finally:
        sub.loop_stop()
        sub.disconnect()
    metered = got[0]["watts"]
    assert metered == pytest.approx(m.last_served.power_true_w, abs=0.5)
    assert reported == pytest.approx(metered * 1.10, rel=0.003)


def test_stock_antminer_shows_no_watts_so_drift_is_truth_only(sim):
    m = unit(sim, "s19jpro")
    m.set_faults(psu_drift=5.0, days_per_hour=DAY_PER_S)
    sim.clock.advance(1.0)
    raw = json.dumps(query_json(m.address, "summary+stats"))
    assert "ower" not in raw  # no Power / power anywhere on the wire
    truth = m.truth()
    assert truth.power_w == pytest.approx(truth.power_true_w * 1.05, rel=0.002)


# -- error codes ----------------------------------------------------------------------------------------


def test_error_codes_show_where_each_firmware_lists_them(sim):
    a15, s19, m50 = unit(sim, "a1566"), unit(sim, "s19jpro"), unit(sim, "m50s")
    a15.set_faults(error_code=parse_value("error_code", "2:8192"))  # ECHU[2]: CODE_VOL_ERR on 7xx tables
    s19.set_faults(error_code=(1, 2131))
    m50.set_faults(error_code=(CONTROLLER, 211))  # "Power iout error, please reboot."
    assert view_avalon(a15).codes == [0, 0, 8192, 0]
    a15.set_faults(error_code=(CONTROLLER, 2))
    assert view_avalon(a15).codes == [0, 0, 0, 2]  # ECMM
    antminer = view_antminer(s19)
    assert 2131 in antminer.codes and any("chain 1" in msg for msg in antminer.messages)
    assert view_whatsminer(m50).codes == [211]
    _, data = pyasic_data(m50.host)
    assert [e.error_code for e in data.errors] == [211]
    assert data.errors[0].error_message == "Power iout error, please reboot."


# -- pool rejects and stale shares ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_pool_rejects_raise_the_reject_and_stale_counters_by_the_rate_set(sim, key):
    m = unit(sim, key)
    before = view(m).pool
    m.set_faults(pool_rejects=(8.0, 2.0))
    sim.clock.advance(3600)
    after = view(m).pool
    acc, rej, stale = (a - b for a, b in zip(after, before))
    assert acc > 0 and rej > 0
    total = acc + rej + stale
    assert rej / total == pytest.approx(0.08, abs=0.01)
    if m.spec.family != "bitaxe":  # AxeOS counts no stale shares
        assert stale / total == pytest.approx(0.02, abs=0.01)
    m.clear_faults()
    sim.clock.advance(600)
    settled = view(m).pool
    assert all(s >= a for s, a in zip(settled, after))  # counters never go back


def test_the_pool_sees_the_rejects_too(sim):
    m = unit(sim, "a1566")
    assert m.reject_ratio == m.traits.reject_ratio
    m.set_faults(pool_rejects=(12.0, 1.0))
    assert (m.reject_ratio, m.stale_ratio) == (0.12, 0.01)  # what simulators.pools' MinerFeed reads


# -- a reboot loop -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ALL)
def test_a_reboot_loop_resets_uptime_every_period(sim, key):
    m = unit(sim, key)
    assert view(m).uptime_s > 3600
    m.set_faults(reboot_loop=300.0)
    sim.clock.advance(299)
    assert view(m).uptime_s > 3600  # not yet
    sim.clock.advance(101)
    assert view(m).uptime_s == 100
    sim.clock.advance(3 * 300 + 50)
    assert view(m).uptime_s == 150
    m.set_faults(reboot_loop=None)
    sim.clock.advance(600)
    assert view(m).uptime_s == 750


# -- hardware errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a1566", "q", "s19jpro", "bos-s19jpro"])
def test_hw_errors_set_the_hardware_error_rate_the_firmware_reports(sim, key):
    m = unit(sim, key)
    before = m.truth()
    m.set_faults(hw_errors=6.5)
    sim.clock.advance(600)
    v = view(m)
    after = m.last_served
    assert v.hw_pct == pytest.approx(6.5, abs=0.2)
    shares = sum((after.accepted, after.rejected, after.stale)) - sum((before.accepted, before.rejected, before.stale))
    assert (after.hw_errors - before.hw_errors) / shares == pytest.approx(0.065, abs=0.01)


# -- a weak board -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a1566", "s19jpro", "m50s", "bos-s19jpro"])
def test_a_weak_board_hashes_at_a_fraction_of_its_share_with_normal_temperatures(sim, key):
    m = unit(sim, key)
    if m.spec.family == "avalon":
        m.reboot()  # Avalons report only since-boot averages per board: start them afresh
    m.set_faults(weak_board=(1, 0.5))
    sim.clock.advance(3600)
    v = view(m)
    shares = m.traits.board_shares
    expected = 0.5 * shares[1] / shares[0]
    assert v.board_ths[1] / v.board_ths[0] == pytest.approx(expected, rel=0.02)
    boards = m.last_served.boards
    assert abs(boards[1].temp_chip_max_c - boards[0].temp_chip_max_c) <= 6  # not a cooling problem
    assert m.last_served.power_w > 0.95 * m.spec.nominal_power_w  # the weak board still draws its share


# -- heat ------------------------------------------------------------------------------------------------------


def test_ambient_heat_shows_in_the_intake_readings(sim):
    a15, m50 = unit(sim, "a1566"), unit(sim, "m50s")
    cool = view_avalon(a15).chip_max_c
    for m in (a15, m50):
        m.set_faults(ambient_c=41.0)
    hot = view_avalon(a15)
    assert abs(int(hot.raw["dev"]["Temp"]) - 41) <= 1 and hot.chip_max_c > cool
    assert abs(view_whatsminer(m50).raw["summary"]["Env Temp"] - 41) <= 1


# -- switches are checked --------------------------------------------------------------------------------------


def test_bad_switch_values_are_refused_naming_the_switch(sim):
    m = unit(sim, "a1566")
    with pytest.raises(FaultValueError, match="fan 2"):
        m.set_faults(fan_failing=(2, 50.0))  # two fans: 0 and 1
    with pytest.raises(FaultValueError, match="chips_dying on board 3"):
        m.set_faults(chips_dying=((3, 1.0),))
    for bad in ({"psu_drift": float("nan")}, {"pool_rejects": (80.0, 20.0)}, {"days_per_hour": 0.0},
                {"weak_board": (0, 1.5)}, {"reboot_loop": 0.0}, {"error_code": (0, -1)}, {"hw_errors": 101.0}):
        with pytest.raises(FaultValueError, match=next(iter(bad))):
            Faults(**bad)
    assert m.faults == Faults()
