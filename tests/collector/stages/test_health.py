"""The health stage on samples built for each signal: the problem, its root cause, its dollars, and
what it must never be taken for. (Simulated miners over TCP: test_health_drills.py.)"""

from __future__ import annotations

import pytest

from collector.layout import SiteLayout
from collector.stages import health_signals as checks
from collector.stages.cost_engine import network_hashprice
from models import FaultCode, FaultSeverity, MinerSample, MinerState, PoolInfo, SampleSource
from models.config import Place
from models.health import Cause, Severity, Signal, queue_order
from tests.collector.stages.health_support import A15, ECONOMICS, NETWORK, T0, Site, a15, with_board

_NET_TH_DAY = network_hashprice(NETWORK.static) / 1000 * (1 - ECONOMICS.pool_fee_pct / 100)
_ENERGY_W_DAY = 0.05 * 24 / 1000 * ECONOMICS.pue


def test_a_healthy_miner_has_no_problem_over_many_cycles():
    site = Site()
    site.cycles(20, a15())
    health = site.captured.last("m1")
    assert health.problems == () and health.usd_lost_day == 0 and not health.unprofitable
    assert site.captured.cycles[-1].health.problems == 0


def test_a_problem_is_raised_only_once_seen_in_two_cycles_in_a_row():
    site = Site()
    hot = a15(temp_chip_max_c=96.0)
    site.cycle(hot)
    assert site.problems() == {}
    site.cycle(a15())  # it went away: the count starts over
    site.cycle(hot)
    assert site.problems() == {}
    site.cycle(hot)
    assert set(site.problems()) == {"chip_hot"}


def test_a_dead_board_is_a_board_problem_priced_at_the_net_hashprice_less_the_energy_saved():
    site = Site()
    site.cycles(3, a15())  # learns its usual draw (3600 W) while healthy
    dead = with_board(a15(hashrate_ths=194 * 2 / 3, power_w=2400.0), 2, chips_ok=0, hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    problem = site.problems()["board_dead:2"]
    assert problem.cause is Cause.BOARD and problem.severity is Severity.CRITICAL
    assert problem.lost_ths == pytest.approx(194 / 3)
    net_th_day = network_hashprice(NETWORK.static) / 1000 * (1 - ECONOMICS.pool_fee_pct / 100)
    saved_w = 3600.0 - 2400.0
    energy_w_day = 0.05 * 24 / 1000 * ECONOMICS.pue
    assert problem.usd_lost_day == pytest.approx(194 / 3 * net_th_day - saved_w * energy_w_day, rel=1e-6)


def test_dead_chips_are_priced_by_the_share_of_the_board_they_were():
    site = Site()
    sick = with_board(a15(hashrate_ths=194 - 194 / 3 * 40 / 160), 1, chips_ok=120)
    site.cycles(2, sick)
    problem = site.problems()["chips_dead:1"]
    assert problem.cause is Cause.BOARD and problem.value == 40
    assert problem.lost_ths == pytest.approx(194 / 3 * 40 / 160)
    assert site.captured.last("m1").chips_dead == 40


def test_a_weak_board_is_weak_against_its_siblings_and_its_share():
    site = Site()
    weak = with_board(a15(hashrate_ths=194 - 194 / 3 * 0.4), 0, hashrate_avg_ths=194 / 3 * 0.6)
    site.cycles(2, weak)
    problem = site.problems()["board_weak:0"]
    assert problem.cause is Cause.BOARD and problem.lost_ths == pytest.approx(194 / 3 * 0.4)


def test_a_whole_unit_throttled_by_heat_is_thermal_not_three_weak_boards():
    site = Site()
    boards = {i: {"hashrate_avg_ths": 194 / 3 * 0.6} for i in range(3)}
    throttled = a15(hashrate_ths=194 * 0.6, temp_chip_max_c=93.0)
    for i, changes in boards.items():
        throttled = with_board(throttled, i, **changes)
    site.cycles(2, throttled)
    problems = site.problems()
    assert set(problems) == {"chip_hot"}
    assert problems["chip_hot"].cause is Cause.THERMAL
    assert problems["chip_hot"].lost_ths == pytest.approx(194 * 0.4)  # the whole shortfall is the heat's


def test_a_stopped_fan_names_the_fan_as_the_cause_of_hot_chips():
    site = Site()
    site.cycles(2, a15(fans_rpm=[0, 6000], temp_chip_max_c=94.0))
    problems = site.problems()
    assert problems["fan_stopped:0"].cause is Cause.THERMAL
    assert "fan 0 at 0 rpm" in problems["chip_hot"].evidence


def test_a_stopped_fan_takes_a_shortfall_only_when_the_chips_may_be_throttled():
    """Chips judged cool (the A15's hot limit is 90 C): the fan throttles nothing, the shortfall is
    hashrate_low of its own. Temperatures not judged (a model with no hot limit, no peers): the fan may
    be what holds it back, and takes it. Near the limit (a firmware holding its chips under it): the fan's."""
    short = dict(hashrate_ths=120.0, fans_rpm=[0, 6000])
    cool = Site()
    cool.cycles(2, a15(temp_chip_max_c=75.0, **short))
    problems = cool.problems()
    assert problems["fan_stopped:0"].lost_ths == 0 and problems["fan_stopped:0"].usd_lost_day == 0
    assert problems["hashrate_low"].lost_ths == pytest.approx(74) and problems["hashrate_low"].cause is Cause.FIRMWARE
    for chip, model in ((75.0, "Unknown Miner 1"), (88.0, A15)):
        site = Site()
        site.cycles(2, a15(temp_chip_max_c=chip, model=model, **short))
        problems = site.problems()
        assert set(problems) == {"fan_stopped:0"} and problems["fan_stopped:0"].lost_ths == pytest.approx(74), model


def test_hot_intake_air_is_named_as_the_ambient():
    site = Site()
    site.cycles(2, a15(temp_env_c=41.0, temp_chip_max_c=92.0))
    problems = site.problems()
    assert problems["ambient_hot"].cause is Cause.THERMAL and problems["ambient_hot"].value == 41
    assert "ambient: intake air 41 C" in problems["chip_hot"].evidence


def test_a_miner_far_hotter_than_its_peers_is_an_outlier_even_under_the_model_limit():
    site = Site()
    peers = [a15(f"p{i}", temp_chip_max_c=70.0 + i % 3) for i in range(8)]
    hot = a15("hot", temp_chip_max_c=86.0)  # under the A15's 90 C, 15 C over its peers
    site.cycles(3, *peers, hot)
    problems = site.problems("hot")
    assert set(problems) == {"temp_outlier"} and problems["temp_outlier"].cause is Cause.THERMAL
    assert all(site.captured.last(f"p{i}").problems == () for i in range(8))


def test_pool_rejects_are_counted_over_a_window_of_shares():
    site = Site()
    counts = [(100_000, 200, 20), (100_900, 290, 30), (101_800, 380, 40)]  # 10 % of each window refused
    for accepted, rejected, stale in counts:
        site.cycle(a15(pool=PoolInfo(accepted=accepted, rejected=rejected, stale=stale, active=True)))
    problem = site.problems()["pool_rejects"]
    assert problem.cause is Cause.POOL and problem.value == pytest.approx(100 * 100 / 1000)
    assert problem.lost_ths == pytest.approx(194 * 0.1)


def test_counters_that_go_back_start_a_new_window_instead_of_a_negative_rate():
    site = Site()
    site.cycle(a15(pool=PoolInfo(accepted=100_000, rejected=5_000, stale=0, active=True)))
    site.cycle(a15(pool=PoolInfo(accepted=10, rejected=0, stale=0, active=True)))  # rebooted
    site.cycle(a15(pool=PoolInfo(accepted=1_010, rejected=1, stale=0, active=True)))
    assert "pool_rejects" not in site.problems()


def test_hardware_errors_against_peers_of_the_model():
    site = Site()
    peers = [a15(f"p{i}", hw_error_pct=1.0 + 0.1 * i) for i in range(6)]
    site.cycles(3, *peers, a15("bad", hw_error_pct=9.0))
    assert site.problems("bad")["hw_errors"].cause is Cause.BOARD
    assert all("hw_errors" not in site.problems(f"p{i}") for i in range(6))


def test_a_container_with_too_few_of_a_model_judges_by_the_whole_sites_peers():
    # Six A15s; the layout puts two of them in container c1: too few to judge by, so the site's six
    # are the peers (the container's entry used to win and switch both peer checks off).
    fleet = [a15(f"p{i}", host=f"10.0.0.{i}", hw_error_pct=1.0 + 0.1 * i, temp_chip_max_c=74.0 + i % 3)
             for i in range(4)]
    fleet += [a15("errors", host="10.0.1.1", hw_error_pct=12.0), a15("hot", host="10.0.1.2", temp_chip_max_c=88.0)]
    for layout in (None, SiteLayout({"10.0.1.1": Place(container="c1"), "10.0.1.2": Place(container="c1")})):
        site = Site(layout=layout)
        site.cycles(3, *fleet)
        assert set(site.problems("errors")) == {"hw_errors"}, layout
        assert "6 peers" in site.problems("errors")["hw_errors"].evidence
        assert set(site.problems("hot")) == {"temp_outlier"}, layout  # under the A15's 90 C, 13 C over its peers
        assert all(site.captured.last(f"p{i}").problems == () for i in range(4))


def test_reboots_in_a_loop_are_the_firmwares_without_power_or_heat_evidence():
    site = Site()
    for uptime in (500, 520, 30, 50, 20):
        site.cycle(a15(uptime_s=uptime, hashrate_ths=150.0))
    problem = site.problems()["reboots"]
    assert problem.cause is Cause.FIRMWARE and problem.value == 2


def test_reboots_in_a_loop_beside_a_stopped_fan_name_the_fan_not_hot_chips():
    # Put down to heat (a firmware may restart on a fan fault), but its chips were not hot: the evidence
    # said "its chips run hot", sending the technician to look at the wrong thing (trial N).
    site = Site()
    for uptime in (500, 520, 30, 50, 20):
        site.cycle(a15(uptime_s=uptime, hashrate_ths=150.0, fans_rpm=[0, 6000], temp_chip_max_c=60.0))
    problem = site.problems()["reboots"]
    assert problem.cause is Cause.THERMAL and "fan: " in problem.evidence, problem.evidence
    assert "chips run hot" not in problem.evidence, problem.evidence


def test_a_miner_that_restarts_every_cycle_is_remembered_in_bounded_memory():
    site = Site()
    for cycle in range(3 * checks.REBOOTS_KEPT):
        site.cycle(a15(uptime_s=100 if cycle % 2 else 20, hashrate_ths=150.0))
    assert site.problems()["reboots"].value >= 4  # critical, and still counted
    memory = site.health._memory["m1"]
    assert len(memory.reboots) == checks.REBOOTS_KEPT and len(memory.boot_lost_s) == checks.BOOTS_MEASURED


RAMP = 60.0  # the units below ramp linearly to full over this long after each start, as the simulated ones


def _ramping(uptime: int, full: float = 194.0, *, average: bool = True, **changes) -> MinerSample:
    """An A15 `uptime` s after a start: live hashrate ramping from 0, and the since-boot average (GHSavg)
    as the firmware reports it, hashed TH·s / uptime (or none: firmware without one)."""
    hashed = full * (uptime * uptime / (2 * RAMP) if uptime < RAMP else uptime - RAMP / 2)
    return a15(uptime_s=uptime, hashrate_ths=full * min(1.0, uptime / RAMP),
               hashrate_avg_ths=(hashed / uptime if uptime else 0.0) if average else None, **changes)


def _loop(site: Site, period: int, cycles: int, step: int = 10, **changes) -> list[tuple[int, dict]]:
    """A loop of a reboot every `period` s read every `step` s: (uptime, problems) each cycle."""
    out = []
    t = 0
    for _ in range(cycles):
        t += step
        uptime = t % period or period  # read at the very start it would show 0
        site.cycle(_ramping(uptime, **changes), step_s=step)
        out.append((uptime, site.problems()))
    return out


def _lost_each_start(period: float, full: float = 194.0) -> float:
    """TH/s a linear-ramp loop takes on average: each start's TH·s short of full, over the period."""
    ramp = min(period, RAMP)  # hashing in full after it
    return full * (ramp - ramp * ramp / (2 * RAMP)) / period


def test_a_fast_reboot_loop_costs_each_starts_ramp_at_every_phase_counted_past_eight_an_hour():
    site = Site()
    site.cycles(3, a15())
    seen = _loop(site, 90, 180)[30:]  # a start every 90 s, 40 an hour; from its 3rd minute on
    truth = _lost_each_start(90)
    for uptime, problems in seen:
        assert set(problems) == {"reboots"}, uptime  # the ramp's live shortfall: the loop's, not added
        assert problems["reboots"].lost_ths == pytest.approx(truth, rel=0.02), uptime
    assert seen[-1][1]["reboots"].value > 8 and "one every 90 s" in seen[-1][1]["reboots"].evidence


def test_a_loop_after_an_old_reboot_is_priced_by_its_own_period():
    # One reboot, 40 minutes hashing, then a start every 5 minutes: the old start is in the hour's window,
    # but the loop's period is the median interval, not the window's mean (15 min here).
    site = Site()
    site.cycles(2, a15())
    for uptime in range(10, 2410, 10):
        site.cycle(_ramping(uptime), step_s=10)
    seen = _loop(site, 300, 90)[65:]  # its third loop on
    for uptime, problems in seen:
        assert problems["reboots"].lost_ths == pytest.approx(_lost_each_start(300), rel=0.02), uptime


def test_a_loop_faster_than_the_polls_counts_each_boots_end_it_did_not_see():
    # A start every 47 s read every 20 s: a boot is last read up to 20 s before its end, still ramping.
    site = Site()
    site.cycles(3, a15())
    seen = _loop(site, 47, 60, step=20)[10:]
    for uptime, problems in seen:
        assert problems["reboots"].lost_ths == pytest.approx(_lost_each_start(47), rel=0.08), uptime


def test_a_loop_without_a_since_boot_average_is_priced_from_the_live_readings():
    site = Site()
    site.cycles(3, a15())
    seen = _loop(site, 120, 60, average=False)[30:]
    for uptime, problems in seen:
        assert problems["reboots"].lost_ths == pytest.approx(_lost_each_start(120), rel=0.1), uptime


def test_a_ramp_in_a_loop_is_no_other_problems_shortfall():
    # A hot chip explains a unit's shortfall (throttling) - but not a start's ramp, which the loop's own
    # figure holds: the hot chip takes nothing while the unit ramps, and the miner costs the same throughout.
    site = Site()
    site.cycles(3, a15())
    seen = _loop(site, 120, 60, temp_chip_max_c=93.0)[30:]
    for uptime, problems in seen:
        assert set(problems) == {"reboots", "chip_hot"} and problems["chip_hot"].lost_ths == 0, uptime
    totals = [sum(p.usd_lost_day for p in problems.values()) for _, problems in seen]
    assert max(totals) - min(totals) < 0.01 * max(totals)


def test_a_loop_on_a_unit_short_after_its_ramp_costs_each_start_at_the_rate_it_makes():
    # It makes 85 % of its usual rate once ramped: a start costs its ramp at that rate, at every phase;
    # the shortfall after the ramp is not the loop's (the rest of the stage judges a unit after RAMP_S).
    site = Site()
    site.cycles(3, a15())
    seen = _loop(site, 300, 120, full=0.85 * 194)[65:]
    for uptime, problems in seen:
        assert problems["reboots"].lost_ths == pytest.approx(_lost_each_start(300, 0.85 * 194), rel=0.03), uptime


def test_a_dead_board_in_a_reboot_loop_costs_the_same_at_every_phase_of_it():
    # Board 0 dead: a third of the rate. While a start ramps the unit draws less, but that is the ramp's
    # (priced by the loop, with nothing saved): the dead board is credited only its own watts. And the
    # loop's cost is each start's at the rate the unit makes, not counting the dead board again.
    site = Site()
    site.cycles(3, a15())

    def sick(uptime: int) -> MinerSample:
        share = min(1.0, uptime / RAMP)
        sample = _ramping(uptime, full=194.0 * 2 / 3, power_w=150.0 + 3450.0 * 2 / 3 * share)
        return with_board(sample, 0, chips_ok=0, hashrate_avg_ths=0.0)

    t, seen = 0, []
    for _ in range(120):
        t += 10
        uptime = t % 300 or 300
        site.cycle(sick(uptime), step_s=10)
        seen.append((uptime, site.problems()))
    seen = seen[70:]
    dead = [p["board_dead:0"].usd_lost_day for _, p in seen]
    assert max(dead) - min(dead) < 0.05 * max(dead), sorted(zip((u for u, _ in seen), dead))
    for uptime, problems in seen:
        assert problems["reboots"].lost_ths == pytest.approx(_lost_each_start(300, 194.0 * 2 / 3), rel=0.03)


def test_reboots_with_a_psu_code_are_powers():
    site = Site()
    code = FaultCode(key="PS[0]", code=32, meaning="UV_out: PSU output voltage low", severity=FaultSeverity.FAULT)
    for uptime in (500, 520, 30, 50, 20):
        site.cycle(a15(uptime_s=uptime, fault_codes=[code]))
    problems = site.problems()
    assert problems["reboots"].cause is Cause.POWER and problems["fault_code"].cause is Cause.POWER


def test_offline_is_the_network_unless_its_meter_reads_no_power():
    site = Site()
    site.cycles(3, a15())
    offline = MinerSample.offline(miner="m1", host="10.0.0.1", port=4028, site="s1", ts=T0,
                                  source=SampleSource.AVALON, reason="connection refused")
    site.cycles(2, offline)
    problem = site.problems()["offline"]
    assert problem.cause is Cause.NETWORK and problem.lost_ths == pytest.approx(194)
    # No meter reads it: whether it still draws its 3600 W is unknown, so nothing is counted saved.
    assert problem.usd_lost_day == pytest.approx(194 * _NET_TH_DAY, rel=1e-6)
    from collector.sources.live_inputs import MeterReading

    site.live.metered_w["m1"] = MeterReading(12.0, site.ts)
    site.cycle(offline)
    problem = site.problems()["offline"]
    assert problem.cause is Cause.POWER  # the meter says it draws 12 W of its usual 3600: that is saved
    assert problem.usd_lost_day == pytest.approx(194 * _NET_TH_DAY - (3600 - 12) * _ENERGY_W_DAY, rel=1e-6)


def test_a_miner_with_no_power_reading_is_credited_the_draw_its_lost_hashrate_took():
    # Stock Antminers put no power on the wire. Its draw now was once taken as 0 W, so each problem "saved"
    # the model's whole nameplate draw (3650 W here) and cost less than nothing; then nothing was counted
    # saved, so the same dead board cost 7-10 times what it costs on a unit that reads its power, and kept
    # its sign where the unit runs at a loss (trial P, H2). Now: the nameplate's 3650 W / 194 TH/s for the
    # hashrate lost; a weak board draws its full power (nothing saved).
    site = Site()
    weak = with_board(a15(power_w=None, hashrate_ths=194 - 194 / 6), 0, hashrate_avg_ths=194 / 6)
    dead = with_board(a15("dead", power_w=None, hashrate_ths=194 * 2 / 3), 2, chips_ok=0, hashrate_avg_ths=0.0)
    cycle = site.cycles(2, weak, dead)
    board_weak, board_dead = site.problems()["board_weak:0"], site.problems("dead")["board_dead:2"]
    assert board_weak.usd_lost_day == pytest.approx(194 / 6 * _NET_TH_DAY, rel=1e-6)
    assert "energy saved estimated" not in board_weak.evidence
    assert board_dead.usd_lost_day == pytest.approx(194 / 3 * _NET_TH_DAY - 3650 / 3 * _ENERGY_W_DAY, rel=1e-6)
    assert board_dead.evidence.endswith("; energy saved estimated from the nameplate: no power reading")
    assert cycle.health.usd_lost_day == pytest.approx(board_weak.usd_lost_day + board_dead.usd_lost_day, rel=1e-6)


def test_a_stopped_miner_with_no_power_reading_is_credited_its_draw_less_its_fans_and_controller():
    site = Site()
    site.cycles(2, a15(state=MinerState.IDLE, hashrate_ths=0.0, power_w=None))
    idle = site.problems()["idle"]
    assert idle.lost_ths == pytest.approx(194)
    assert idle.usd_lost_day == pytest.approx(194 * _NET_TH_DAY - 3650 * 0.97 * _ENERGY_W_DAY, rel=1e-6)
    assert "energy saved estimated from the nameplate: no power reading" in idle.evidence


def test_a_model_with_no_nameplate_and_no_power_reading_is_priced_with_nothing_saved():
    site = Site()
    dead = with_board(a15(model="Nobody's X1", power_w=None, hashrate_ths=194 * 2 / 3), 2, chips_ok=0,
                      hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    board_dead = site.problems()["board_dead:2"]
    assert board_dead.usd_lost_day == pytest.approx(194 / 3 * _NET_TH_DAY, rel=1e-6)  # its whole revenue
    assert "energy saved" not in board_dead.evidence


def test_a_model_with_no_nameplate_is_credited_what_its_lost_hashrate_drew_from_its_draw_now():
    # Trial ZC (M1): an A1066 (catalogued without figures) with a board dead from its first reading was priced
    # with nothing saved (+$0.67 a day: its whole revenue) where, once its usual draw was learned, the same
    # board read -$0.73 (the unit runs at a loss). Its draw now follows the hashrate still hashing: 2400 W for
    # two boards of three, so the dead one drew 1200 W.
    site = Site()
    dead = with_board(a15(model="Nobody's X1", power_w=2400.0, hashrate_ths=194 * 2 / 3), 2, chips_ok=0,
                      hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    board_dead = site.problems()["board_dead:2"]
    assert board_dead.usd_lost_day == pytest.approx(194 / 3 * _NET_TH_DAY - 1200 * _ENERGY_W_DAY, rel=1e-6)
    assert board_dead.evidence.endswith("; energy saved estimated from its draw now: no usual draw known yet")


def test_a_model_with_no_nameplate_mostly_stopped_is_priced_with_nothing_saved():
    # Under a quarter of it hashing, its fans and controller are too much of its draw now to scale it up.
    site = Site()
    dead = with_board(with_board(a15(model="Nobody's X1", power_w=1300.0, hashrate_ths=194 / 6), 1, chips_ok=0,
                                 hashrate_avg_ths=0.0), 2, chips_ok=0, hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    problems = site.problems()
    assert sum(p.usd_lost_day for p in problems.values()) == pytest.approx(
        sum(p.lost_ths for p in problems.values()) * _NET_TH_DAY, rel=1e-6)
    assert not any("energy saved" in p.evidence for p in problems.values())


def test_a_refused_power_reading_costs_that_reading_only_the_fault_is_priced_from_its_usual_draw():
    # A unit that read 3600 W while healthy, then a board dies and its power reading is refused (a value
    # no unit can draw): the saving is its usual draw's third, not the refused figure's, nor nothing.
    site = Site()
    site.cycles(3, a15())
    dead = with_board(a15(power_w=None, unusable=["power_w"], errors=["power_w 9e+09 W: refused"],
                          hashrate_ths=194 * 2 / 3), 2, chips_ok=0, hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    problems = site.problems()
    assert "reading" in problems
    board_dead = problems["board_dead:2"]
    assert board_dead.usd_lost_day == pytest.approx(194 / 3 * _NET_TH_DAY - 3600 / 3 * _ENERGY_W_DAY, rel=0.01)
    assert board_dead.evidence.endswith("; energy saved estimated from its usual draw: no power reading")


def test_an_offline_miner_never_identified_loses_an_unknown_amount_not_zero():
    site = Site()
    never = MinerSample.offline(miner="never", host="10.0.0.9", port=4028, site="s1", ts=T0,
                                source=SampleSource.AVALON, reason="connection refused")
    cycle = site.cycles(2, never)
    problem = site.problems("never")["offline"]
    assert problem.usd_lost_day is None and site.captured.last("never").usd_lost_day is None
    assert cycle.health.usd_lost_day is None  # its only problem: the site's loss is unknown, not $0
    cycle = site.cycles(2, never, a15(hashrate_ths=150.0))
    priced = site.problems()["hashrate_low"].usd_lost_day
    assert priced > 0 and cycle.health.usd_lost_day == pytest.approx(priced)  # the priced problems' sum


def test_idle_with_no_pool_alive_is_the_pools():
    site = Site()
    idle = a15(state=MinerState.IDLE, hashrate_ths=0.0, pool=PoolInfo(url="stratum+tcp://pool:3333", active=False))
    site.cycles(2, idle)
    problems = site.problems()
    assert problems["idle"].cause is Cause.POOL and problems["no_pool"].cause is Cause.POOL
    assert problems["idle"].lost_ths == pytest.approx(194)


def test_a_miner_put_to_sleep_has_no_problem():
    site = Site()
    site.cycles(3, a15(state=MinerState.SOFT_OFF, hashrate_ths=0.0, power_w=60.0, fans_rpm=[0, 0]))
    assert site.problems() == {}


@pytest.mark.parametrize(("code", "cause"), [
    (FaultCode(key="ECHU", code=4, board=1, meaning="CODE_NOFAN: no fan found", severity=FaultSeverity.FAULT),
     Cause.THERMAL),
    (FaultCode(key="ECHU", code=2048, board=0, meaning="CODE_PGFAILED: power-good failed (PMU)",
               severity=FaultSeverity.FAULT), Cause.POWER),
    (FaultCode(key="ECHU", code=1, board=2, meaning="hash board abnormal (Canaan: ECHU 513)",
               severity=FaultSeverity.WARNING), Cause.BOARD),
    (FaultCode(key="ECMM", code=1, meaning="CODE_IDLE: module idle (check the network and the AUC)",
               severity=FaultSeverity.WARNING), Cause.NETWORK),
    (FaultCode(key="ECMM", code=65536), Cause.FIRMWARE),  # meaning not published
    (FaultCode(key="error_code", code=4096), Cause.FIRMWARE),  # a Whatsminer's code pyasic's table lacks
    (FaultCode(key="error_code", code=530, board=0, meaning="Slot 0 not found."), Cause.BOARD),  # no words: its board
    (FaultCode(key="error_code", code=710, meaning="Control board rebooted as an exception."), Cause.FIRMWARE),
    (FaultCode(key="summary.cgi error", code=4096, meaning="Error code 4096 on control board"), Cause.FIRMWARE),
])
def test_an_error_code_is_put_down_to_what_its_meaning_names(code, cause):
    site = Site()
    site.cycles(2, a15(fault_codes=[code]))
    [problem] = site.problems().values()
    assert problem.signal is Signal.FAULT_CODE and problem.cause is cause
    assert problem.severity is {FaultSeverity.FAULT: Severity.CRITICAL, FaultSeverity.WARNING: Severity.WARNING,
                                FaultSeverity.UNKNOWN: Severity.INFO}[code.severity]


def test_a_code_whose_meaning_says_all_is_well_is_no_problem():
    site = Site()
    normal = FaultCode(key="ECHU", code=512, board=0, meaning="normal: Canaan calls ECHU 512 normal on A10-A12",
                       severity=FaultSeverity.INFO)
    site.cycles(3, a15(fault_codes=[normal]))
    assert site.problems() == {}


def test_codes_the_driver_only_wrote_as_text_are_kept_raw_without_the_healthy_values():
    sample = a15(errors=["hashboard error code ECHU=512 4096 512", "controller error code ECMM=2"])
    codes = checks.reported_codes(sample)
    assert [(c.key, c.code, c.severity) for c in codes] == [("ECHU", 4096, FaultSeverity.UNKNOWN),
                                                           ("ECMM", 2, FaultSeverity.UNKNOWN)]


def test_a_boards_code_is_the_evidence_of_that_boards_problem_not_a_row_of_its_own():
    # Trial ZC (M3): every dead Avalon board came with a second, $0 row for the same board's ECHU code. One bad
    # part is one row; a code on a board nothing else names keeps its own row.
    site = Site()
    code = FaultCode(key="ECHU", code=4, board=1)  # as the Avalon driver decodes it, meaning not published
    dead = with_board(a15(hashrate_ths=194 * 2 / 3, fault_codes=[code]), 1, chips_ok=0, hashrate_avg_ths=0.0)
    site.cycles(2, dead)
    problems = site.problems()
    assert set(problems) == {"board_dead:1"}, problems
    assert problems["board_dead:1"].evidence.endswith("; its firmware says ECHU 4: meaning not published"), (
        problems["board_dead:1"].evidence)
    site = Site()
    site.cycles(2, a15(fault_codes=[code]))
    assert set(site.problems()) == {"fault_code:1"}


def test_power_over_its_own_limit_and_out_of_the_models_range():
    site = Site()
    site.cycles(2, a15(power_w=4300.0))  # limit 3760 W
    assert site.problems()["power_over_limit"].cause is Cause.POWER
    site = Site()
    site.cycles(2, a15(power_w=1500.0))  # 7.7 J/TH against the model's 18.8
    assert site.problems()["power_out_of_range"].cause is Cause.POWER


def test_a_reading_over_its_limit_that_the_meter_says_is_high_is_a_reading_problem_not_an_overdraw():
    # Trial ZC: a drifting PSU reading showed both `power_mismatch` and `power_over_limit` (an overdraw).
    from collector.sources.live_inputs import MeterReading

    site = Site()
    site.live.metered_w["m1"] = MeterReading(3500.0, site.ts)  # (the model's units report what their meters read)
    site.cycles(2, a15(power_w=4300.0, uptime_s=86_400))  # limit 3760 W; the meter: 3500 W
    assert set(site.problems()) == {"power_mismatch"}, site.problems()
    site.live.metered_w["m1"] = MeterReading(4300.0, site.ts)  # the meter agrees: an overdraw indeed
    site.cycles(2, a15(power_w=4300.0, uptime_s=86_400))
    assert set(site.problems()) == {"power_over_limit"}, site.problems()
    assert "check its power reading" not in site.problems()["power_over_limit"].evidence


def test_a_reading_over_its_limit_with_no_meter_while_it_hashes_as_usual_says_to_check_the_reading():
    # Trial ZC: in a one-shot `health` (no meter) a drifting PSU reading showed as an overdraw only. The firmware
    # holds its draw to its limit: hashing as usual, the reading is the likelier fault, and the row says so.
    site = Site()
    site.cycles(2, a15(power_w=4300.0))  # limit 3760 W, 194 of 194 TH/s
    assert site.problems()["power_over_limit"].evidence.endswith(
        "; no meter reads it and it hashes as usual: check its power reading (PSU) before its draw")
    site = Site()
    site.cycles(2, a15(power_w=4300.0, hashrate_ths=150.0))  # short of its usual: it may well be overdrawing
    assert "check its power reading" not in site.problems()["power_over_limit"].evidence


def test_a_shortfall_nothing_explains_is_named_as_such():
    site = Site()
    site.cycles(2, a15(hashrate_ths=150.0))
    problem = site.problems()["hashrate_low"]
    assert problem.cause is Cause.FIRMWARE and problem.lost_ths == pytest.approx(44)
    assert "look normal" in problem.evidence


def test_a_shortfall_does_not_call_temperatures_normal_when_nothing_judged_them():
    # A model with no published hot limit and no peers: its temperatures were not judged.
    site = Site()
    site.cycles(2, a15(model="Antminer S19j Pro", hashrate_ths=150.0, temp_chip_max_c=99.0))
    problem = site.problems()["hashrate_low"]
    assert problem.cause is Cause.FIRMWARE and "temperatures not judged" in problem.evidence
    assert "temperatures look normal" not in problem.evidence


def test_a_shortfall_is_put_down_to_what_the_miners_own_error_text_names():
    # pyasic's error list from other makes: codes of unknown severity (info), their text the meaning.
    site = Site()
    throttled = a15(model="Antminer S19j Pro", source=SampleSource.PYASIC, hashrate_ths=150.0,
                    errors=["Temperature too high: frequency lowered"])
    site.cycles(2, throttled)
    problem = site.problems()["hashrate_low"]
    assert problem.cause is Cause.THERMAL and "Temperature too high" in problem.evidence


def test_no_hashrate_low_while_ramping_after_a_start():
    site = Site()
    site.cycles(3, a15(hashrate_ths=120.0, uptime_s=200))
    assert "hashrate_low" not in site.problems()


def test_a_miner_whose_power_costs_more_than_it_mines_is_flagged():
    site = Site()
    site.cycles(2, a15(power_w=3600.0, hashrate_ths=194.0))
    assert not site.captured.last("m1").unprofitable
    dear = Site(economics=ECONOMICS.model_copy(update={"tariff": ECONOMICS.tariff.model_copy(
        update={"usd_per_kwh": 0.30})}))
    dear.cycles(2, a15())
    health = dear.captured.last("m1")
    assert health.unprofitable and health.profit_usd_day < 0


def test_without_cost_figures_problems_are_found_but_not_priced():
    site = Site(economics=None)
    site.cycles(2, with_board(a15(hashrate_ths=194 * 2 / 3), 2, chips_ok=0))
    problem = site.problems()["board_dead:2"]
    assert problem.usd_lost_day is None and problem.lost_ths == pytest.approx(194 / 3)


def test_the_repair_queue_is_sorted_by_dollars_lost():
    site = Site()
    fleet = [
        with_board(a15("dead-board", hashrate_ths=194 * 2 / 3, power_w=2400.0), 0, chips_ok=0),
        with_board(a15("few-chips", hashrate_ths=190.0), 1, chips_ok=150),
        a15("rejects", pool=PoolInfo(accepted=100_000, rejected=200, stale=20, active=True)),
        MinerSample.offline(miner="offline", host="10.0.0.9", port=4028, site="s1", ts=T0,
                            source=SampleSource.AVALON, reason="connection refused"),
        a15("hot", temp_chip_max_c=96.0),
    ]
    site.cycles(2, *fleet)
    queue = site.captured.cycles[-1].health.queue
    priced = [p.usd_lost_day for p in queue if p.usd_lost_day is not None]
    assert priced == sorted(priced, reverse=True) and len(priced) == len(queue) - 1
    assert queue == tuple(sorted(queue, key=queue_order))
    assert queue[0].miner == "dead-board"
    # the offline miner was never identified: what it loses is unknown (ranked as $0, by severity)
    assert [p.usd_lost_day for p in queue if p.miner == "offline"] == [None]


# --- nonsense -----------------------------------------------------------------------------------


def test_refused_values_are_a_reading_problem_never_a_dead_board():
    site = Site()
    refused = a15().refused({"boards": "TA -5 is not a count of chips", "temp_chip_max_c": "TMax 10000 is above 1000 C"})
    site.cycles(2, refused)
    problems = site.problems()
    assert {p.cause for p in problems.values()} == {Cause.READING}
    assert "board_dead" not in str(problems) and "chips_dead" not in str(problems)


@pytest.mark.parametrize("nonsense", [
    {"boards_chips": (500, 160)},  # more chips answering than the board has
    {"temp_chip_max_c": 400.0},
    {"temp_chip_max_c": -200.0},
    {"fans_rpm": [99_000, 4200]},
    {"hw_error_pct": 250.0},
])
def test_impossible_values_the_sample_allows_are_a_reading_problem(nonsense):
    site = Site()
    sample = a15()
    if "boards_chips" in nonsense:
        ok, expected = nonsense.pop("boards_chips")
        sample = with_board(sample, 0, chips_ok=ok, chips_expected=expected)
    sample = sample.model_copy(update=nonsense)
    site.cycles(2, sample)
    problems = site.problems()
    assert problems and {p.cause for p in problems.values()} == {Cause.READING}, problems


def test_a_reading_problem_is_raised_at_once():
    site = Site()
    site.cycle(a15(temp_chip_max_c=500.0))
    assert site.problems()["reading"].cause is Cause.READING


def _garbage():
    from hypothesis import strategies as st

    from models import BoardSample

    number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6))
    count = st.one_of(st.none(), st.integers(-10**4, 10**5))
    board = st.builds(lambda i, *v: BoardSample.model_construct(
        index=i, hashrate_ths=v[0], hashrate_avg_ths=v[1], temp_chip_max_c=v[2], temp_out_c=v[3], chips_ok=v[4],
        chips_expected=v[5]), st.integers(0, 5), number, number, number, number, count, count)
    pool = st.one_of(st.none(), st.builds(lambda a, r, s, act: PoolInfo.model_construct(
        accepted=a, rejected=r, stale=s, active=act, url=None), count, count, count, st.one_of(st.none(), st.booleans())))
    return st.builds(
        lambda state, h, e, p, lim, t, env, u, hw, fans, boards, pool, model, codes: MinerSample.model_construct(
            miner="x", host="h", port=4028, site="s1", ts=T0, state=state, source=SampleSource.AVALON, make=None,
            model=model, hashrate_ths=h, hashrate_avg_ths=h, expected_hashrate_ths=e, power_w=p, power_limit_w=lim,
            efficiency_j_th=None, temp_env_c=env, temp_chip_max_c=t, temp_board_max_c=None, fans_rpm=fans,
            boards=boards, pool=pool, uptime_s=u, hw_error_pct=hw, errors=codes, warnings=[], fault_codes=[],
            unusable=[], work_mode=None, firmware=None, mac=None),
        st.sampled_from(list(MinerState)), number, number, number, number, number, number, count, number,
        st.lists(st.integers(-10**6, 10**6), max_size=6), st.lists(board, max_size=4), pool,
        st.sampled_from([None, A15, "AvalonMiner 1246-83", "Avalon Nano3s", "junk"]),
        st.lists(st.sampled_from(["hashboard error code ECHU=4 9999999999", "controller error code ECMM=",
                                  "error code ECHU=x"]), max_size=2))


def test_no_reading_crashes_the_stage_or_becomes_a_dead_board():
    """Whatever a sample holds (values no source would let through, built past validation), the stage
    gives the miner figures without failing, and chips that are not a count are never dead chips."""
    from hypothesis import HealthCheck, given, settings

    from collector.cycle import Cycle, MinersPart
    from collector.stages.health import HealthStage

    stage = HealthStage("s1")

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_garbage(), _garbage())
    def run(first, second):
        for sample in (first, first, second, second):  # twice each: a problem needs two cycles
            cycle = Cycle("s1", T0)
            part = MinersPart("s1", T0, [sample])
            stage.begin(cycle)
            stage.part(cycle, part)
            stage.finish(cycle)
            assert stage._failed == set(), "a miner's health figures failed"
            [health] = part.health
            for p in health.problems:
                if p.signal in (Signal.BOARD_DEAD, Signal.CHIPS_DEAD):
                    board = next(b for b in sample.boards if b.index == p.board)
                    assert 0 <= board.chips_ok <= board.chips_expected <= 1024

    run()


def test_ids_that_churn_are_forgotten_and_never_grow_the_memory_without_bound(monkeypatch):
    """A miner whose MAC changes every cycle (cloned or broken firmware) is a new id each time: the stage
    forgets ids unseen for a while once it holds many, and past its cap keeps nothing for newcomers."""
    from collector.stages import health

    monkeypatch.setattr(health, "MAX_MINERS", 40)
    site = Site()
    for i in range(60):
        site.cycle(a15(f"churn-{i}"), step_s=300)
        assert len(site.health._memory) <= 40
    assert "churn-0" not in site.health._memory  # unseen for far longer than CROWDED_FORGET_AFTER_S
    assert site.captured.last("churn-59").problems == ()


@pytest.mark.parametrize(("interval_s", "every"), [(10, 6), (30, 2), (60, 1), (300, 1)])
def test_a_healthy_miners_point_is_written_at_least_once_a_minute(interval_s, every):
    site = Site()
    site.cycle(a15(), step_s=interval_s)  # the first cycle: the interval is not known yet
    written = []
    for _ in range(18):
        site.cycle(a15(), step_s=interval_s)
        written.append(site.captured.last("m1").report)
    assert all(any(written[i:i + every]) for i in range(len(written) - every + 1))  # never a gap of `every`
    assert sum(written) <= len(written) // every + 1  # and not more often
    sick = Site()
    sick.cycles(12, a15(temp_chip_max_c=96.0), step_s=interval_s)
    assert sick.captured.last("m1").report  # with a problem: every cycle


def test_error_lists_pyasic_reads_from_other_makes_are_codes_named_by_their_text():
    """pyasic's errors (Whatsminer's codes, Antminer's status) land in `errors`; the collector's own notes
    on values it refused do not count as the firmware's."""
    from models import SampleSource

    sample = a15(source=SampleSource.PYASIC, errors=["Fan speed error 110: fan 1 below target",
                                                     "reply value out of range: pyasic hashrate -1 must be >= 0"])
    [code] = checks.reported_codes(sample)
    assert (code.key, code.code, code.severity) == ("pyasic", 110, FaultSeverity.UNKNOWN)
    site = Site()
    site.cycles(2, sample)
    problem = site.problems()["fault_code"]
    assert problem.cause is Cause.THERMAL and problem.severity is Severity.INFO and "Fan speed error" in problem.evidence
