"""Days the collector saw only in part, through the real pipeline (trial S, H1).

The pools credit the whole UTC day; the collector's books hold only the seconds it observed. Three days of
tests/pool_site.py's SCENARIO (simulated miners over TCP, simulated pools over HTTP, a hand-driven clock):
- FULL: seen whole, the reference (the scenario is the same every day);
- STEP: the clock steps 30 min at 18:00 (97.9 % seen): its realized cost per BTC, with the spend brought to
  the whole day, agrees with FULL's within the 0.5 % the reconciliation tests use, and its luck is the
  pools' (1.07) with the unobserved half hour's work its own step (without: $1,030/BTC too low, -2.5 % luck);
- DOWN: the collector down 06:00-18:00 (50 % seen): no realized cost per BTC, luck or gap (without: half the
  true cost per BTC and luck -100 % of expected), the cost headline keeps STEP's, and `hashfleet pools`
  shows the day with its coverage and why there is no realized figure;
- and FULL, whose per-miner books were dropped before the restart, keeps its reconciliation (it was done
  again from nothing: accepted 0, luck -100 %).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import timedelta

import pytest
import yaml

from collector.stages import pool_days
from collector.stages.pool_reconciliation import MIN_COVERAGE
from models import schema
from models.pool import DayStatus
from tests.pool_site import LUCK, last_full_day, midnight, pooled_site
from tests.pool_site import STEP_S as CYCLE_S
from tests.support import HASHFLEET

RUN_END_H = 27  # hours after DOWN's 00:00: DOWN closed by the pools, every simulated time past
DOWN = last_full_day(ended_hours_ago=RUN_END_H - 24 + 1)
STEP = DOWN - timedelta(days=1)
FULL = DOWN - timedelta(days=2)
STEP_AT_H, JUMP_S = 18, 1800
UNSEEN_S = JUMP_S + CYCLE_S  # the interval across the step is not integrated (over max_gap_s)
DOWN_FROM_H, DOWN_H = 6, 12


@pytest.fixture(scope="module")
def days_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pool_coverage")
    (workdir / "spool").mkdir()
    with pooled_site(workdir, start=midnight(FULL) - 600, miners_base="127.91.2.1", pools_base="127.92.2.1:0") as site:
        async def run() -> object:
            built = site.build()
            await built.start()
            try:
                await site.run(built, midnight(STEP) + STEP_AT_H * 3600, events=site.scenario)
                site.clock.advance(JUMP_S)  # a clock step: no cycle in it
                await site.run(built, midnight(DOWN) + DOWN_FROM_H * 3600, events=site.scenario)
            finally:
                await built.stop()
                built.close()
            site.clock.advance(DOWN_H * 3600)  # the collector down; the miners hash on
            built = site.build()
            await built.start()
            try:
                return await site.run(built, midnight(DOWN) + RUN_END_H * 3600, events=site.scenario)
            finally:
                await built.stop()
                built.close()

        last = asyncio.run(run())
        config_path = workdir / "hashfleet.yaml"
        config_path.write_text(yaml.safe_dump(site.config().model_dump(mode="json", exclude_none=True)))
        env = {**os.environ, "HASHFLEET_LOG_LEVEL": "WARNING", "COLUMNS": "300"}
        as_json = subprocess.run([HASHFLEET, "pools", "--config", str(config_path), "--json"], env=env,
                                 capture_output=True, text=True, timeout=120)
        table = subprocess.run([HASHFLEET, "pools", "--config", str(config_path)], env=env,
                               capture_output=True, text=True, timeout=120)
        yield site, last, as_json, table


def _closed(site, day):
    """The site's closed day and its accounts' closed days, as last reconciled."""
    site_day, accounts = None, {}
    for cycle in reversed(site.cycles):
        for account in cycle.pool_report.days:
            if account.day == day and account.status is DayStatus.CLOSED:
                accounts.setdefault(account.pool, account)
        for candidate in cycle.pool_report.sites:
            if site_day is None and candidate.day == day and candidate.status is DayStatus.CLOSED:
                site_day = candidate
    assert site_day is not None and site_day.complete, f"no closed site reconciliation of {day}"
    return site_day, accounts


def _steps_add_up(figures) -> None:
    assert sum(figures.components().values()) == pytest.approx(figures.gap_btc, rel=1e-9, abs=1e-15)
    assert figures.gap_btc == pytest.approx(figures.potential_btc - figures.credited_btc, rel=1e-12, abs=1e-15)


def test_a_day_stepped_half_an_hour_keeps_its_realized_cost_and_luck(days_run):
    site, _, _, _ = days_run
    full, _ = _closed(site, FULL)
    step, accounts = _closed(site, STEP)
    assert full.coverage == pytest.approx(1.0, abs=1e-6)
    assert step.coverage == pytest.approx(1 - UNSEEN_S / 86_400, abs=1e-6) and step.coverage >= MIN_COVERAGE
    assert step.realized_all_in_cost_per_btc == pytest.approx(full.realized_all_in_cost_per_btc, rel=0.005)
    assert step.realized_energy_cost_per_btc == pytest.approx(full.realized_energy_cost_per_btc, rel=0.005)
    # the half hour's work is its own step, not bad luck: luck is the pools' own, as on the full day
    assert step.unobserved_btc == pytest.approx(-step.accepted_btc * UNSEEN_S / (86_400 - UNSEEN_S), rel=1e-6)
    whole_day = step.accepted_btc - step.unobserved_btc
    assert step.luck_btc == pytest.approx(-(LUCK - 1) * whole_day, rel=0.005 * LUCK / (LUCK - 1))
    assert step.luck_btc / whole_day == pytest.approx(full.luck_btc / full.accepted_btc, abs=0.005)
    for figures in [step, *accounts.values(), *(w for a in accounts.values() for w in a.workers)]:
        _steps_add_up(figures)


def test_a_day_seen_half_has_no_realized_cost_luck_or_gap(days_run):
    site, _, _, _ = days_run
    down, accounts = _closed(site, DOWN)
    assert down.coverage == pytest.approx(1 - DOWN_H / 24, abs=0.01) and down.coverage < MIN_COVERAGE
    assert down.credited_btc > 0 and down.all_in_usd > 0  # what is known is shown
    assert down.realized_all_in_cost_per_btc is None and down.realized_cash_cost_per_btc is None
    assert down.realized_energy_cost_per_btc is None
    assert set(accounts) == {"braiins", "f2pool"}
    for figures in [down, *accounts.values(), *(w for a in accounts.values() for w in a.workers)]:
        assert figures.luck_btc is None and figures.gap_btc is None and figures.unobserved_btc is None
        assert figures.credited_btc is not None


def test_a_restart_leaves_a_day_whose_books_were_dropped_as_it_was_reconciled(days_run):
    # FULL's per-miner books are dropped once it is reconciled and a day old; the pools still list it, and
    # the restarted collector reconciled it again from nothing: accepted 0, luck -100 % of credited
    site, _, _, _ = days_run
    full, accounts = _closed(site, FULL)
    assert full.accepted_btc > 0 and full.luck_btc == pytest.approx(-(LUCK - 1) * full.accepted_btc,
                                                             rel=0.005 * LUCK / (LUCK - 1))
    assert all(a.accepted_btc > 0 for a in accounts.values())
    kept = pool_days.load(site.workdir / "spool" / "pool-days.json", set_aside=False).results[FULL]
    assert kept.site.accepted_btc == pytest.approx(full.accepted_btc)
    assert all(a.accepted_btc > 0 for a in kept.accounts.values())


def test_the_cost_headline_keeps_the_last_day_seen_enough(days_run):
    site, last, _, _ = days_run
    step, _ = _closed(site, STEP)
    assert last.pool_report.last_closed.day == STEP
    [cost] = [r for r in last.records if r.measurement is schema.COST
              and "realized_all_in_cost_per_btc" in r.fields]
    assert cost.fields["realized_all_in_cost_per_btc"] == pytest.approx(step.realized_all_in_cost_per_btc)
    assert cost.fields["last_day_age_s"] > 86_400  # a day older than the last closed one: its age says so


def test_the_pools_command_shows_the_day_its_coverage_and_why_no_realized_cost(days_run):
    _, _, as_json, table = days_run
    assert as_json.returncode == 0, as_json.stderr
    out = json.loads(as_json.stdout)["reconciliation"]
    assert out["site"]["day"] == DOWN.isoformat() and out["site"]["coverage"] < MIN_COVERAGE
    assert out["site"]["realized_all_in_cost_per_btc"] is None and out["site"]["luck_btc"] is None
    assert "no realized cost per BTC" in out["coverage_note"] and "%" in out["coverage_note"]
    assert table.returncode == 0, table.stderr
    assert out["coverage_note"] in table.stdout.replace("\n", " ") or "no realized cost per BTC" in table.stdout
