"""The daily history behind the trends: chips lost per week, a board fading, efficiency drifting, kept
across restarts in a file that is checked like any outside input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from collector.stages import health, health_history
from collector.stages.health import HealthStage
from models import MinerSample, SampleSource
from models.health import Cause, Signal
from tests.collector.stages.health_support import A15, T0, Site, a15, with_board


@pytest.fixture(autouse=True)
def every_cycle_counts(monkeypatch):
    """The service adds one cycle in HEALTHY_POINT_EVERY to the daily sums; here every cycle, to keep days short."""
    monkeypatch.setattr(health, "HEALTHY_POINT_EVERY", 1)
    monkeypatch.setattr(health, "HEALTHY_POINT_S", 0.0)


def _days(site: Site, days: int, make, per_day: int = 40) -> None:
    """`per_day` cycles on each of `days` days; `make(day)` is that day's sample."""
    start = site.ts
    for day in range(days):
        site.ts = start + timedelta(days=day) - timedelta(seconds=10)
        for _ in range(per_day):
            site.cycle(make(day), step_s=60)


def test_chips_lost_per_week_from_the_first_day_kept():
    site = Site()
    _days(site, 4, lambda day: with_board(a15(), 1, chips_ok=160 - 3 * day))
    health = site.captured.last("m1")
    assert health.chips_lost_week == pytest.approx(3 * 7)
    problems = site.problems()
    assert problems["chips_losing"].cause is Cause.BOARD and problems["chips_losing"].value == pytest.approx(21)


def test_a_board_fading_over_days_while_the_unit_holds_is_the_boards():
    site = Site()

    def fading(day: int):
        sample = a15()
        sample = with_board(sample, 0, hashrate_avg_ths=194 / 3 * (1 - 0.04 * day))
        return with_board(sample, 1, hashrate_avg_ths=194 / 3 * (1 + 0.04 * day))  # the unit holds steady

    _days(site, 4, fading)
    problem = site.problems()["board_degrading:0"]
    assert problem.cause is Cause.BOARD and problem.value == pytest.approx(1 - 0.08, abs=0.01)


def test_efficiency_drift_with_hotter_chips_is_the_cooling():
    site = Site()
    _days(site, 4, lambda day: a15(power_w=3600.0 * (1 + 0.04 * day), temp_chip_max_c=75.0 + 2 * day))
    problem = site.problems()["efficiency_drift"]
    assert problem.signal is Signal.EFFICIENCY_DRIFT and problem.cause is Cause.THERMAL
    site = Site()
    _days(site, 4, lambda day: a15(power_w=3600.0 * (1 + 0.04 * day)))
    assert site.problems()["efficiency_drift"].cause is Cause.POWER


def test_a_miner_keeps_at_most_max_days_of_daily_sums():
    site = Site()
    _days(site, health_history.MAX_DAYS + 3, lambda day: a15(), per_day=2)
    days = site.health._memory["m1"].kept.days
    assert len(days) == health_history.MAX_DAYS and days == sorted(days, key=lambda d: d.day)


def test_the_history_survives_a_restart(tmp_path):
    path = tmp_path / "health-state.json"
    site = Site(state_path=path)
    _days(site, 3, lambda day: with_board(a15(), 1, chips_ok=160 - 2 * day), per_day=35)
    site.health.save_now(site.ts)
    again = HealthStage("s1", state_path=path)
    kept = again._memory["m1"].kept
    assert [d.day for d in kept.days] == [d.day for d in site.health._memory["m1"].kept.days]
    assert kept.trends.first_chips == pytest.approx(480) and kept.baseline_w == pytest.approx(3600.0)


A_MAC, B_MAC = "AA:00:00:00:00:01", "BB:00:00:00:00:02"
HERE = "10.0.0.1:4028"


def _restarted(tmp_path) -> Site:
    """Unit A read at HERE (showing its MAC), its history saved, and a stage started again reading it back."""
    path = tmp_path / "health-state.json"
    site = Site(state_path=path)
    site.cycles(3, a15(A_MAC, mac=A_MAC))
    site.health.save_now(site.ts)
    again = Site(state_path=path)
    again.ts = site.ts
    return again


def _not_identified_yet() -> MinerSample:
    """What the poller yields for HERE after a restart until it is identified: offline, under its address."""
    return MinerSample.offline(miner=HERE, host="10.0.0.1", port=4028, site="s1", ts=T0, source=SampleSource.AVALON,
                               reason=f"not identified yet: {HERE}: connection refused")


def test_after_a_restart_an_address_not_identified_again_is_priced_as_the_unit_last_read_there(tmp_path):
    site = _restarted(tmp_path)
    site.cycles(2, _not_identified_yet())
    health = site.captured.last(HERE)
    [problem] = health.problems
    assert problem.signal is Signal.OFFLINE and problem.lost_ths == pytest.approx(194.0) and problem.usd_lost_day > 0
    assert health.model == A15 and problem.evidence.startswith(f"last read here as {A_MAC} ({A15}); not answering")


def test_after_a_restart_a_unit_that_answers_at_the_address_ends_the_link(tmp_path):
    # A unit swapped in answers there, then is identified again (another make's reply): not the old unit
    site = _restarted(tmp_path)
    site.cycle(a15(B_MAC, mac=B_MAC))
    site.cycles(2, _not_identified_yet())
    problem = site.problems(HERE)["offline"]
    assert problem.usd_lost_day is None and "last read here" not in problem.evidence


def test_after_a_restart_a_unit_read_at_another_address_is_no_longer_the_one_at_its_old_one(tmp_path):
    # It moved (DHCP): its old address, silent, is not it (in the first cycle it may be, before it is read)
    site = _restarted(tmp_path)
    site.cycles(3, _not_identified_yet(), a15(A_MAC, mac=A_MAC, host="10.0.0.2"))
    problem = site.problems(HERE)["offline"]
    assert problem.usd_lost_day is None and "last read here" not in problem.evidence
    assert site.problems(A_MAC) == {}


def test_one_reading_knows_a_unit_moved_whatever_order_its_miners_come_in(tmp_path):
    # `hashfleet health` judges its one reading at the end: every sample's address is noted before
    site = _restarted(tmp_path)
    site.health.one_reading()
    site.cycle(_not_identified_yet(), a15(A_MAC, mac=A_MAC, host="10.0.0.2"))
    assert site.problems(HERE)["offline"].usd_lost_day is None


def test_the_service_saves_after_an_interval_and_when_a_day_ends(tmp_path):
    path = tmp_path / "health-state.json"
    site = Site(state_path=path)
    site.cycles(3, a15())
    assert not path.exists()  # not at once after start
    site.cycle(a15(), step_s=health_history.SAVE_EVERY_S)
    assert path.exists()


def test_a_stopping_service_saves_what_it_learnt_since_the_last_save(tmp_path):
    path = tmp_path / "health-state.json"
    site = Site(state_path=path)
    site.cycles(3, a15())
    assert not path.exists()
    site.health.close()  # Pipeline.stop
    assert list(HealthStage("s1", state_path=path)._memory) == ["m1"]


def test_a_command_reads_the_history_and_never_writes_it(tmp_path):
    path = tmp_path / "health-state.json"
    site = Site(state_path=path, save=False)
    site.cycles(3, a15())
    site.cycle(a15(), step_s=health_history.SAVE_EVERY_S)
    site.health.close()
    assert not path.exists()


def _valid(now: datetime) -> dict:
    day = now.date().toordinal()
    return {"version": 1, "as_of": now.isoformat(), "miners": {"m1": {
        "days": [[day - 1, 40, 7760.0, 144000.0, 7760.0, 3000.0, 40, 19200.0, 40, 40, [2586.0, 2586.0, 2586.0]]],
        "seen": now.timestamp() - 60, "model": "AvalonMiner 15-194", "expected_ths": 194.0, "baseline_w": 3600.0,
        "healthy_ths": 194.0}}}


def test_a_valid_file_loads(tmp_path):
    now = datetime.now(timezone.utc)
    path = tmp_path / "h.json"
    path.write_text(json.dumps(_valid(now)))
    assert list(health_history.load(path, now)) == ["m1"]


@pytest.mark.parametrize(("attack", "edit"), [
    ("not JSON", lambda d: "{"),
    ("a list", lambda d: []),
    ("another version", lambda d: {**d, "version": 2}),
    ("as_of past any clock", lambda d: {**d, "as_of": "2999-01-01T00:00:00+00:00"}),
    ("as_of without a zone", lambda d: {**d, "as_of": "2026-01-01T00:00:00"}),
    ("a day in the future", lambda d: _day(d, 0, 9_999_999)),
    ("a day before any miner", lambda d: _day(d, 0, 3)),
    ("a negative sum", lambda d: _day(d, 2, -1.0)),
    ("NaN", lambda d: _day(d, 2, "NaN")),
    ("a huge sum", lambda d: _day(d, 3, 1e300)),
    ("a count that is a bool", lambda d: _day(d, 1, True)),
    ("a text where a number goes", lambda d: _day(d, 2, "1")),
    ("a short day", lambda d: _set(d, "days", [[1, 2, 3]])),
    ("too many days", lambda d: _set(d, "days", d["miners"]["m1"]["days"] * 20)),
    ("too many boards", lambda d: _day(d, 10, [1.0] * 200)),
    ("days out of order", lambda d: _set(d, "days", d["miners"]["m1"]["days"] * 2)),
    ("a baseline of infinity", lambda d: _set(d, "baseline_w", 1e308)),
    ("a model that is a number", lambda d: _set(d, "model", 5)),
    ("an address that is a number", lambda d: _set(d, "address", 5)),
    ("an address longer than any", lambda d: _set(d, "address", "h" * 300)),
    ("seen in the future", lambda d: _set(d, "seen", 1e11)),
    ("miners not an object", lambda d: {**d, "miners": [1]}),
])
def test_a_poisoned_file_is_set_aside_and_history_starts_over(tmp_path, caplog, attack, edit):
    now = datetime.now(timezone.utc)
    path = tmp_path / "health-state.json"
    data = edit(_valid(now))
    path.write_text(data if isinstance(data, str) else json.dumps(data).replace('"NaN"', "NaN"))
    assert health_history.load(path, now) == {}
    assert not path.exists() and (tmp_path / "health-state.json.unusable.1").exists()
    assert "health history" in caplog.text and "start over" in caplog.text


def test_the_stage_starts_on_a_poisoned_file(tmp_path):
    path = tmp_path / "health-state.json"
    path.write_bytes(b"\x00" * 100)
    site = Site(state_path=path)
    site.cycles(2, a15())
    assert site.captured.last("m1").problems == ()


def test_an_oversized_file_is_set_aside(tmp_path, monkeypatch):
    monkeypatch.setattr(health_history, "MAX_FILE_BYTES", 1000)
    now = datetime.now(timezone.utc)
    path = tmp_path / "health-state.json"
    data = _valid(now)
    data["miners"] = {f"m{i}": data["miners"]["m1"] for i in range(50)}
    path.write_text(json.dumps(data))
    assert health_history.load(path, now) == {}


def _day(data: dict, index: int, value) -> dict:
    data["miners"]["m1"]["days"][0][index] = value
    return data


def _set(data: dict, key: str, value) -> dict:
    data["miners"]["m1"][key] = value
    return data


def test_utc_days():
    assert health_history.utc_day(T0) == T0.date().toordinal()
