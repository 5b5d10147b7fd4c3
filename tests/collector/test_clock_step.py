"""The collector when the wall clock is stepped back (NTP correcting a fast clock, an operator fixing the
date; collector/clock.py): cycles are stamped with the clock again, with one WARNING a step saying how
far; the running totals and the other state files saved while the clock was ahead are kept and carry
on; what is done every so often by the cycles' time goes on at once. The clock is injected: the real
service loop's `now`, or the `now` a state file is read at; a restart goes through `hashfleet collect`."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector import pipeline
from collector.clock import MAX_STAMP_AHEAD, CycleClock
from collector.line_protocol import parse_line
from collector.sinks.spool import Spool
from collector.spool_files import list_batches
from collector.stages import health_history, pool_days
from collector.stages import running_totals as totals_store
from collector.stages.cost_engine import advance, carried_back
from collector.stages.efficiency_book import EfficiencyBook
from models import CollectorConfig, FlatTariff, MinerSample, MinerState, NetworkState, SampleSource, SiteEconomics
from simulators.fleet import run_fleet
from tests.support import HASHFLEET, local_history_env

UTC = timezone.utc
ECONOMICS = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.06))
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95_000}}
STATE = NetworkState(difficulty=1.5e14, height=925_000, fees_btc_per_block=0.02, btc_price_usd=95_000)


def mining(miner: str, ts: datetime) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.1", site="s1", ts=ts, state=MinerState.MINING,
                       source=SampleSource.AVALON, hashrate_ths=194.0, power_w=3600.0, uptime_s=86_400)


def site_month_kwh(path: Path) -> float:
    return sum(t["energy_kwh"] for t in json.loads(path.read_text())["month_to_date"].values())


class SteppedClock:
    """The wall clock, `ahead` of the real one until the test steps it back."""

    def __init__(self, ahead: timedelta):
        self.ahead = ahead

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


def test_a_clock_stepped_back_mid_run_stamps_cycles_with_the_clock_warns_once_and_the_totals_carry_on(
        tmp_path, caplog):
    """The real loop, a simulated miner, the spool as the sink (no InfluxDB): the clock is 3 h fast for
    two cycles, then NTP steps it back. Cycles 3 and 4 were stamped a second apart after cycle 2 (3 h in
    the future) and the running totals stood still until the clock caught up; the health history was not
    saved either (its every-10-minutes save waited for the clock)."""
    caplog.set_level(logging.WARNING)
    clock = SteppedClock(timedelta(hours=3))
    totals, history = tmp_path / "cost-totals.json", tmp_path / "health-state.json"
    stamps: list[datetime] = []
    month_kwh: list[float | None] = []  # as of the cycle before
    history_saved: list[bool] = []

    def on_cycle_start(cycle) -> None:
        stamps.append(cycle.ts)
        month_kwh.append(site_month_kwh(totals) if totals.exists() else None)
        history_saved.append(history.exists())
        if len(stamps) == 2:
            clock.ahead = timedelta(0)  # stepped back between the second cycle and the third

    with run_fleet("a1566:1", base="127.58.0.1", seed=1) as fleet:
        config = CollectorConfig.model_validate({
            "site": "s1", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 5,
            "spool": {"directory": tmp_path}, "economics": ECONOMICS.model_dump(), "network": NETWORK})
        built = pipeline.build(config, sinks=[pipeline.storage_sink(config)], service_mode=True)
        try:
            assert asyncio.run(built.run(cycles=4, on_cycle_start=on_cycle_start, now=clock)) == 4
        finally:
            built.close()
    real = datetime.now(UTC)

    assert stamps[0] < stamps[1] and stamps[2] < stamps[3] <= real
    behind = stamps[1] - stamps[2]
    assert behind > timedelta(hours=2, minutes=59)  # with the clock again, not a second after the last
    written = sorted(p.time for b in list_batches(tmp_path) for p in map(parse_line, b.read())
                     if p.measurement == "collector")
    assert written == sorted(int(ts.timestamp()) for ts in stamps)
    steps = [r for r in caplog.records if "stepped back" in r.getMessage()]
    assert len(steps) == 1 and steps[0].levelname == "WARNING"
    assert f"{behind} behind the last cycle" in steps[0].getMessage()
    assert "since the last cycle: that gap" not in caplog.text  # the step is no gap of -3 h

    saved = totals_store.load(totals, now=real)
    assert saved is not None and saved.as_of == stamps[3]
    assert month_kwh[2] is not None and sum(t.energy_kwh for t in saved.month_to_date.values()) > month_kwh[2]
    assert history_saved == [False, False, False, True]  # saved at the end of the first cycle after the step


def test_a_restart_after_the_clock_was_stepped_back_keeps_the_totals_and_stamps_with_the_clock(tmp_path):
    """`hashfleet collect` restarted after NTP stepped the clock back 3 h: the spool holds an undelivered
    batch from while it was fast (and one damaged time no date can hold), the running totals are dated
    3 h ahead. The totals were set aside and started over, and the cycles were stamped a second apart
    after the future batch, with no word in the log (the damaged time crashed the start)."""
    spool, site = tmp_path / "spool", tmp_path / "spool" / "s2"
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    site.mkdir(parents=True)
    seeded = advance(None, [mining("gone", ahead)], ECONOMICS, STATE, ahead - timedelta(minutes=10), ahead)
    totals_store.save(site / "cost-totals.json", seeded)
    batch = Spool(site)
    try:
        batch.append([f"collector,site=s2 points_written=1i {int(ahead.timestamp())}",
                      "collector,site=s2 points_written=1i 10000000000000"])
    finally:
        batch.close()
    config = tmp_path / "c.yaml"
    config.write_text(f"site: s2\neconomics: {{tariff: {{kind: flat, usd_per_kwh: 0.06}}}}\nnetwork: {json.dumps(NETWORK)}\n")
    env = local_history_env(spool)
    with run_fleet("a1566:1", base="127.58.1.1", seed=2) as fleet:
        run = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", fleet.addresses[0],
                              "--cycles", "2", "--interval", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert "the wall clock was stepped back" in run.stderr and "behind the newest spooled batch" in run.stderr
    assert "running cost totals in" in run.stderr and "ahead of the clock" in run.stderr
    assert not (site / "cost-totals.json.unusable").exists()
    new = [p.time for b in list_batches(site)[1:] for p in map(parse_line, b.read()) if p.measurement == "collector"]
    assert len(new) == 2 and max(new) <= time.time()
    kept = totals_store.load(site / "cost-totals.json")
    assert kept is not None and kept.as_of <= datetime.now(UTC)
    assert kept.month_to_date["gone"] == seeded.month_to_date["gone"]  # kept as it was
    assert sum(t.energy_kwh for t in kept.month_to_date.values()) > seeded.month_to_date["gone"].energy_kwh


def test_a_restart_within_a_second_of_the_last_spooled_cycle_stamps_a_second_after_it_silently(caplog):
    """The newest spooled cycle is a second ahead of the clock (itself a second after the one before);
    the restarted collector's cycles, a second apart, keep their order: never two on one second."""
    readings = iter([datetime(2026, 3, 2, 12, 0, 0, 400_000, tzinfo=UTC), datetime(2026, 3, 2, 12, 0, 1, 400_000, tzinfo=UTC)])
    clock = CycleClock(after=datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC), now=lambda: next(readings))
    assert clock.next() == datetime(2026, 3, 2, 12, 0, 2, tzinfo=UTC)
    assert clock.next() == datetime(2026, 3, 2, 12, 0, 3, tzinfo=UTC)
    assert "stepped back" not in caplog.text


def test_totals_carried_back_over_the_first_of_the_month_keep_today_and_the_month():
    """A clock an hour fast crossed midnight into April 1st; stepped back to March 31st 23:30, the
    books are March's again, with everything counted since (they were emptied: a new day and month)."""
    fast = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    book = advance(None, [mining("m", fast)], ECONOMICS, STATE, fast, fast + timedelta(minutes=30))
    back = carried_back(book, datetime(2026, 3, 31, 23, 30, tzinfo=UTC))
    assert back.as_of == datetime(2026, 3, 31, 23, 30, tzinfo=UTC) and back.demand_from < back.as_of
    later = advance(back, [mining("m", back.as_of)], ECONOMICS, STATE, back.as_of, back.as_of + timedelta(minutes=10))
    assert later.day == datetime(2026, 3, 31).date() and later.month == datetime(2026, 3, 1).date()
    assert later.today["m"].energy_kwh == pytest.approx(book.today["m"].energy_kwh * 40 / 30)
    assert later.month_to_date["m"].energy_kwh == pytest.approx(book.month_to_date["m"].energy_kwh * 40 / 30)


# -- a clock ahead past midnight (a box booted before NTP answers), then stepped back -----------------------

DEMAND_RATE = 12.0  # $/kW-month
# How far ahead the clock is at each cycle: right for 4 cycles (the morning: 3 intervals counted), a day
# ahead for 2 (the first counts nothing: a day since the last), stepped back for 2 (the first counts nothing).
AHEAD = [timedelta(0)] * 4 + [timedelta(days=1)] * 2 + [timedelta(0)] * 2
MORNING, WHILE_AHEAD, BACK = 4, 6, 7  # the cycles whose start sees the totals after each (as of the cycle before)


class HandClock:
    """The cycles' wall clock, driven by the test: a minute further at each reading, plus `ahead`."""

    def __init__(self, start: datetime, ahead: timedelta):
        self.real, self.ahead = start, ahead

    def __call__(self) -> datetime:
        now, self.real = self.real + self.ahead, self.real + timedelta(minutes=1)
        return now


def collect_across_a_wrong_clock(addresses: list[str], spool: Path, start: datetime, restart: bool,
                                 ahead: list[timedelta] = AHEAD):
    """The real loop over `ahead`'s cycles (AHEAD's shape: right, wrong, right): each one's stamp and the
    running totals as it starts, and the totals saved at the end. `restart`: stopped and started where the
    clock changes (the totals saved, then loaded), as at the boot after a power cut and at a restart once
    NTP answered."""
    config = CollectorConfig.model_validate({
        "site": "s1", "miners": addresses, "interval_s": 1, "timeout_s": 5, "spool": {"directory": spool},
        "economics": {**ECONOMICS.model_dump(), "demand_charge_usd_kw_month": DEMAND_RATE}, "network": NETWORK})
    clock = HandClock(start, ahead[0])
    stamps: list[datetime] = []
    before: list = []
    for cycles in ([4, 2, 2] if restart else [len(ahead)]):
        built = pipeline.build(config, sinks=[], service_mode=True)
        stage = next(s for s in built.stages if type(s).__name__ == "CostStage")

        def on_cycle_start(cycle, stage=stage) -> None:
            stamps.append(cycle.ts)
            before.append(stage.totals)
            clock.ahead = ahead[min(len(stamps), len(ahead) - 1)]  # for the next cycle

        assert asyncio.run(built.run(cycles=cycles, on_cycle_start=on_cycle_start, now=clock)) == cycles
    return stamps, before, totals_store.load(spool / "cost-totals.json")


def _amounts(book) -> dict:
    return {(miner, name): getattr(t, name) for miner, t in book.items() for name in ("energy_kwh", "power_usd", "btc")}


def _added(*books) -> dict:
    out: dict = {}
    for book in books:
        for key, value in _amounts(book).items():
            out[key] = out.get(key, 0.0) + value
    return out


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
@pytest.mark.parametrize("month_end", [False, True], ids=["midnight", "month_end"])
def test_a_clock_a_day_ahead_then_stepped_back_gives_the_day_and_month_their_amounts_back(tmp_path, month_end, restart):
    """Trial M M3: the box booted with its clock a day ahead, past local midnight (into the next month at a
    month's end), and NTP then stepped it back. The rollover at the wrong midnight emptied today (and the month,
    whose demand charge began again at the wrong 1st); the step back only relabelled the books, so the real
    day's morning (and month) was gone and today held the hours ahead alone."""
    day = datetime(2025, 11, 30, 10, 0, tzinfo=UTC) if month_end else datetime(2025, 12, 10, 10, 0, tzinfo=UTC)
    with run_fleet("a1566:2", base="127.58.2.1", seed=5) as fleet:
        stamps, before, final = collect_across_a_wrong_clock(fleet.addresses, tmp_path, day, restart)
    morning, ahead, back = before[MORNING], before[WHILE_AHEAD], before[BACK]
    assert ahead.day == stamps[WHILE_AHEAD - 1].date() > day.date()  # the wrong day
    assert back.day == day.date() and back.month == day.date().replace(day=1)

    # What was counted while the clock was ahead was used on the real day: today is the morning and that.
    assert _amounts(back.today) == pytest.approx(_added(morning.today, ahead.today))
    if month_end:  # the month's books too, and its demand charge
        assert _amounts(back.month_to_date) == pytest.approx(_added(morning.month_to_date, ahead.month_to_date))
        assert back.peak_kw == max(morning.peak_kw, ahead.peak_kw)
    else:
        assert _amounts(back.month_to_date) == pytest.approx(_amounts(ahead.month_to_date))
    # The demand charge accrues from the first cycle, as it did before the clock went ahead: not from a
    # day before it (moved back with the clock), nor from the wrong 1st.
    assert back.demand_from == final.demand_from == stamps[0]
    # Every amount of the run was counted on the real day, the books' first.
    assert final is not None and final.day == day.date() and final.rolled_away is None
    assert _amounts(final.today) == pytest.approx(_amounts(final.month_to_date))
    month_s = 30 * 86_400 if month_end else 31 * 86_400
    assert final.demand_usd == pytest.approx(final.peak_kw * DEMAND_RATE * (final.as_of - stamps[0]).total_seconds() / month_s)


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
@pytest.mark.parametrize("behind", [timedelta(days=2), timedelta(days=700)], ids=["two_days", "years"])
def test_a_clock_behind_then_stepped_forward_keeps_the_day_and_month_and_their_demand_charge(tmp_path, behind, restart):
    """A box whose clock lost its time in a power cut boots behind (a Pi's saved time, or its build date years
    back) until NTP answers. The books, dated ahead, were kept and relabelled for the clock's day; NTP's step
    forward was then an ordinary midnight (and a 1st, years back): today and the month emptied, the real
    day's morning and month gone. And the demand charge's start, moved back with the clock, stayed back:
    accrued over the step too (700 days: 23 months' charge at once)."""
    day = datetime(2025, 12, 10, 10, 0, tzinfo=UTC)
    profile = [timedelta(0)] * 4 + [-behind] * 2 + [timedelta(0)] * 2
    with run_fleet("a1566:2", base="127.58.2.1", seed=5) as fleet:
        stamps, before, final = collect_across_a_wrong_clock(fleet.addresses, tmp_path, day, restart, profile)
    wrong, back = before[WHILE_AHEAD], before[BACK]
    assert wrong.day == (day - behind).date() and wrong.step_back is not None  # relabelled, the step kept
    assert back.day == day.date() and back.month == day.date().replace(day=1) and back.step_back is None
    # Everything counted, in the morning and while the clock was behind, was the real day's.
    assert back.today and _amounts(back.today) == pytest.approx(_amounts(wrong.today))
    assert _amounts(back.month_to_date) == pytest.approx(_amounts(wrong.month_to_date))
    assert back.demand_from == final.demand_from == stamps[0]
    assert all(seen > day for seen in back.last_seen.values())
    assert final is not None and final.day == day.date() and final.step_back is None
    assert _amounts(final.today) == pytest.approx(_amounts(final.month_to_date))
    assert final.demand_usd == pytest.approx(final.peak_kw * DEMAND_RATE * (final.as_of - stamps[0]).total_seconds()
                                             / (31 * 86_400))


def test_a_clock_stepped_back_that_catches_up_cycle_by_cycle_was_right_and_keeps_what_the_step_moved():
    """The other way round: a clock that was ahead, stepped back by NTP, then runs on. Its step was right:
    the demand charge's start stays moved back, whether the clock catches up cycle by cycle or the collector
    is down a while (a gap shorter than the step) past where the clock had been."""
    fast = datetime(2025, 12, 10, 12, 0, tzinfo=UTC)
    book = advance(None, [mining("m", fast)], ECONOMICS, STATE, fast, fast + timedelta(minutes=30))
    back = carried_back(book, fast - timedelta(hours=1))
    assert back.step_back is not None and back.step_back.moved == timedelta(hours=1, minutes=30)
    on, runs = back, []
    for _ in range(10):  # 100 minutes cycle by cycle: past where the clock was (12:30)
        on = advance(on, [mining("m", on.as_of)], ECONOMICS, STATE, on.as_of, on.as_of + timedelta(minutes=10))
        runs.append(on)
    assert runs[5].step_back is not None and on.step_back is None and on.demand_from == back.demand_from
    hour_on = runs[5]  # 12:00; down 40 minutes: past 12:30, a gap shorter than the step
    after_gap = hour_on.as_of + timedelta(minutes=40)
    restarted = advance(hour_on, [mining("m", after_gap)], ECONOMICS, STATE, after_gap, after_gap + timedelta(minutes=1))
    assert restarted.step_back is None and restarted.demand_from == back.demand_from


# -- state files saved while the clock was ahead ------------------------------------------------------------

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _totals(path: Path, at: datetime) -> None:
    totals_store.save(path, advance(None, [mining("m1", at)], ECONOMICS, STATE, at - timedelta(minutes=10), at))


def _load_totals(path: Path, now: datetime):
    loaded = totals_store.load(path, now)
    return None if loaded is None else [loaded.as_of, loaded.demand_from, *loaded.last_seen.values()]


def _book(path: Path, at: datetime) -> None:
    book = EfficiencyBook()
    book.learn(mining("m1", at), at.timestamp(), "0", 0.0)
    book.saved.since = at.timestamp() - 600
    book.save(path)


def _load_book(path: Path, now: datetime):
    book = EfficiencyBook.load(path, now.timestamp())
    times = [book.saved.since] + [b.seen for b in book.miners.values()]
    return [datetime.fromtimestamp(t, UTC) for t in times] if book.miners else None


def _history(path: Path, at: datetime) -> None:
    kept = health_history.MinerHistory(days=[health_history.Day(health_history.utc_day(at), n=40)],
                                       seen_s=at.timestamp())
    health_history.save(path, {"m1": kept}, at)


def _load_history(path: Path, now: datetime):
    miners = health_history.load(path, now)
    return [datetime.fromtimestamp(h.seen_s, UTC) for h in miners.values()] or None


def _pool_books(path: Path, at: datetime) -> None:
    state = pool_days.State(as_of=at)
    state.day(at.date()).miner("m1", "acct.w1")[0] = 300.0
    pool_days.save(path, state)


def _load_pool_books(path: Path, now: datetime):
    state = pool_days.load(path, now)
    return [state.as_of] if state.days else None


STORES = {"running cost totals": (_totals, _load_totals), "measured efficiencies": (_book, _load_book),
          "health history": (_history, _load_history), "pool reconciliation books": (_pool_books, _load_pool_books)}


@pytest.mark.parametrize("store", list(STORES))
def test_a_state_file_saved_before_the_clock_was_stepped_back_is_kept_dated_no_later_than_now(tmp_path, caplog, store):
    save, load = STORES[store]
    path = tmp_path / "state.json"
    save(path, NOW + timedelta(hours=3))
    times = load(path, NOW)
    assert times is not None and all(t <= NOW for t in times if t is not None), times
    assert not (tmp_path / "state.json.unusable").exists()
    assert store in caplog.text and "3:00:00 ahead of the clock" in caplog.text


@pytest.mark.parametrize("store", list(STORES))
def test_a_state_file_dated_days_ahead_is_kept_the_clock_is_likely_behind(tmp_path, caplog, store):
    # A box whose real-time clock lost its time in a power cut boots days (or years) behind until NTP
    # answers (trial M H4): the books are the site's all the same, kept and carried on from now.
    save, load = STORES[store]
    path = tmp_path / "state.json"
    save(path, NOW + timedelta(days=3))
    times = load(path, NOW)
    assert times is not None and all(t <= NOW for t in times if t is not None), times
    assert not list(tmp_path.glob("state.json.unusable*"))
    assert "3 days, 0:00:00 ahead of the clock" in caplog.text and "the clock is likely behind" in caplog.text


@pytest.mark.parametrize("store", list(STORES))
def test_a_state_file_dated_past_any_clock_is_set_aside(tmp_path, store):
    save, load = STORES[store]
    path = tmp_path / "state.json"
    save(path, datetime(2100, 1, 2, tzinfo=UTC))
    assert load(path, NOW) is None
    assert (tmp_path / "state.json.unusable.1").exists()


def test_cycles_a_restart_stamped_ahead_of_the_clock_are_read_by_report_health_and_backtest(tmp_path):
    """A restart within a second of the last spooled cycle stamps its cycles up to MAX_STAMP_AHEAD ahead of
    the clock (CycleClock). `report`, `health --since` and `backtest` run right after read up to the clock's
    second: they left those cycles out (a report's count one short, now and then, in test_damaged_spool).
    Here real history from `hashfleet collect`, then one cycle of it stamped that far ahead, its miner
    renamed so that each command shows whether it read it."""
    spool, site = tmp_path / "spool", tmp_path / "spool" / "s3"
    config = tmp_path / "c.yaml"
    config.write_text(f"site: s3\neconomics: {{tariff: {{kind: flat, usd_per_kwh: 0.06}}}}\nnetwork: {json.dumps(NETWORK)}\n")
    env = local_history_env(spool)
    with run_fleet("a1566:1", base="127.58.2.1", seed=3) as fleet:
        run = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", fleet.addresses[0], "--cycles", "1"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    [collected] = list_batches(site)
    lines = collected.read()
    [miner] = {p.tags["miner"] for p in map(parse_line, lines) if "miner" in p.tags}
    ahead = int(time.time()) + int(MAX_STAMP_AHEAD.total_seconds())
    restarted = [line.replace(f"miner={miner}", "miner=restarted").rsplit(" ", 1)[0] + f" {ahead}" for line in lines]
    batch = Spool(site)
    try:
        batch.append(restarted)
    finally:
        batch.close()
    prices = tmp_path / "prices.csv"
    prices.write_text("time,usd_per_kwh\n" + "".join(f"{ahead + h * 3600},0.06\n" for h in range(-2, 2)))
    common = ["--config", str(config), "--since", "1h", "--json"]
    read = {name: subprocess.run([HASHFLEET, *args, *common], capture_output=True, text=True, timeout=120, env=env)
            for name, args in (("report", ["report"]), ("health", ["health"]),
                               ("backtest", ["backtest", "--source", "local", "--prices", str(prices),
                                             "--resolution", "5m"]))}
    for name, done in read.items():
        assert done.returncode == 0, (name, done.stderr)
    report = json.loads(read["report"].stdout)
    assert report["cycles"] == 2 and {m["miner"] for m in report["miners"]} == {miner, "restarted"}
    assert json.loads(read["health"].stdout)["cycles"] == 2
    assert json.loads(read["backtest"].stdout)["miners"] == 2
