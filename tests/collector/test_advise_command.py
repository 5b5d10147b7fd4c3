"""`hashfleet advise`: the plan right now, from one real cycle of simulated miners; it never sends a command."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from simulators.fleet import run_fleet
from tests.support import HASHFLEET

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}


def test_advise_shows_the_plan_at_a_price_and_a_demand_response_limit_and_sends_nothing(tmp_path):
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1246:1,a1566:2", base="127.50.0.1:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": fleet.addresses, "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK,
            # control `on` in the config: advise still sends nothing (it is not the service)
            "curtailment": {"control": {"mode": "on", "allow": ["*"]}}}))
        env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
        run = lambda *args: subprocess.run([HASHFLEET, "advise", "--config", str(config), *args],  # noqa: E731
                                           capture_output=True, text=True, timeout=120, env=env)
        spike = run("--json", "--price", "0.06")
        assert spike.returncode == 0, spike.stderr
        assert "Warning" not in spike.stderr  # (the tariff was once put in as a dict: pydantic warned)
        plan = json.loads(spike.stdout)
        actions = {m["address"]: m["action"] for m in plan["miners"]}
        assert actions == {fleet[0].address: "sleep", fleet[1].address: "run", fleet[2].address: "run"}
        old = next(m for m in plan["miners"] if m["action"] == "sleep")
        assert "above its break-even" in old["reason"] and old["efficiency_j_th"] > 30
        assert plan["price_usd_kwh"] == 0.06 and plan["miners_sleep"] == 1 and plan["saved_usd_day"] > 0
        assert plan["price_source"] == "--price"  # a what-if, not the tariff

        limited = run("--json", "--limit-kw", "5")
        assert limited.returncode == 0, limited.stderr
        plan = json.loads(limited.stdout)
        assert plan["dr_limit_kw"] == 5 and plan["planned_kw"] <= 5 and plan["dr_met"] is True
        assert plan["dr_gap_usd_h"] == 0  # three miners: the cheapest cover is proven

        # A market price below zero (a what-if the live feed's bounds allow): paid to draw, every miner runs.
        negative = run("--json", "--price", "-0.02")
        assert negative.returncode == 0, negative.stderr
        plan = json.loads(negative.stdout)
        assert plan["price_usd_kwh"] == -0.02 and plan["miners_sleep"] == 0 and plan["miners_run"] == 3
        assert run("--price", "-1.5").returncode == 2

        table = run("--price", "0.06")
        assert table.returncode == 0 and "sleep" in table.stdout and "break-even" in table.stdout
        assert fleet.commands() == []

        # Numbers as people write them: 0_05 is a typo, not 5 $/kWh; nan is no limit (not "negative").
        for option, value in (("--price", "0_05"), ("--limit-kw", "nan"), ("--limit-kw", "inf"), ("--shed-kw", "1_0")):
            bad = run(option, value)
            assert bad.returncode == 2 and f"'{value}' is not a decimal number" in bad.stderr, bad.stderr
        bad = run("--limit-kw", "-1")
        assert bad.returncode == 2 and "--limit-kw -1: " in bad.stderr and "greater than or equal to 0" in bad.stderr

        bad = run("--limit-kw", "5", "--shed-kw", "3")
        assert bad.returncode == 2 and "not both" in bad.stderr
        # Out of the target's bounds: a usage error naming the option, not a pydantic traceback.
        for option, value, words in (("--limit-kw", "1e8", "10000000"),
                                     ("--shed-kw", "0", "greater than 0"), ("--shed-kw", "1e12", "10000000")):
            bad = run(option, value)
            assert bad.returncode == 2 and f"{option} " in bad.stderr and words in bad.stderr, bad.stderr
            assert "Traceback" not in bad.stderr

        # No miner answers: no plan, said so (exit 1), not an empty table.
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": ["127.50.0.250"], "timeout_s": 1, "economics": {
                "tariff": {"kind": "flat", "usd_per_kwh": 0.03}}, "network": NETWORK}))
        silent = run("--json")
        assert silent.returncode == 1 and "no miner answered" in silent.stderr and silent.stdout == ""


def test_overlapping_demand_response_targets_the_strictest_holds_whatever_the_order_or_source(tmp_path):
    """Two targets over the same hour in the schedule file: the lower limit applies in either order (the first
    listed used to, so a 5 kW limit listed after a 20 kW one was ignored while the plan said "met"). The same
    across sources: `--limit-kw 20` does not loosen the file's 5 kW. A limit and a shed both active: both hold,
    the one that needs more is the plan's."""
    config, schedule = tmp_path / "hashfleet.yaml", tmp_path / "dr.yaml"
    now = datetime.now(timezone.utc)
    window = {"start": now - timedelta(hours=1), "end": now + timedelta(hours=2)}
    with run_fleet("a1246:1,a1566:2", base="127.50.0.21:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "dr", "miners": fleet.addresses, "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK,
            "curtailment": {"dr_schedule": str(schedule)}}))
        env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}

        def plan(targets: list[dict], *args: str) -> dict:
            schedule.write_text(yaml.safe_dump({"targets": [{**t, **window} for t in targets]}))
            run = subprocess.run([HASHFLEET, "advise", "--config", str(config), "--json", *args],
                                 capture_output=True, text=True, timeout=120, env=env)
            assert run.returncode == 0, run.stderr
            return json.loads(run.stdout)

        for targets in ([{"limit_kw": 5}, {"limit_kw": 20}], [{"limit_kw": 20}, {"limit_kw": 5}]):
            limited = plan(targets)
            assert limited["dr_limit_kw"] == 5 and limited["planned_kw"] <= 5 and limited["dr_met"] is True
            assert limited["miners_sleep"] >= 1
        assert plan([{"limit_kw": 5}], "--limit-kw", "20")["dr_limit_kw"] == 5
        shed = plan([{"shed_kw": 2}, {"shed_kw": 6}])
        assert shed["dr_shed_kw"] == 6 and shed["always_on_kw"] - shed["planned_kw"] >= 6
        both = plan([{"limit_kw": 1000}, {"shed_kw": 6}])  # the limit is loose: the shed binds
        assert both["dr_shed_kw"] == 6 and both["always_on_kw"] - both["planned_kw"] >= 6
        both = plan([{"limit_kw": 5}, {"shed_kw": 1}])  # the limit binds
        assert both["dr_limit_kw"] == 5 and both["planned_kw"] <= 5
        assert fleet.commands() == []


def test_advise_weighs_what_the_collector_measured_and_leaves_its_book_as_it_was(tmp_path):
    config = tmp_path / "hashfleet.yaml"
    spool = tmp_path / "spool"
    env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(spool)}
    with run_fleet("a1246:1,a1566:1", base="127.50.0.11:0", seed=6) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv-book", "miners": fleet.addresses, "interval_s": 1,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.5}, "pue": 1.1}, "network": NETWORK,
            "curtailment": {"warmup_s": 0, "min_samples": 2}}))
        collect = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--cycles", "4"],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert collect.returncode == 0, collect.stderr
        book_path = spool / "adv-book" / "curtailment-efficiency.json"
        book = book_path.read_bytes()
        saved_usd = json.loads(book)["saved"][1]
        assert saved_usd > 0.001  # both were advised to sleep at 0.5 $/kWh for three intervals
        advice = subprocess.run([HASHFLEET, "advise", "--config", str(config), "--json"], capture_output=True,
                                text=True, timeout=120, env=env)
        assert advice.returncode == 0, advice.stderr
        # the collector's book: its running savings (without it, advise started from nothing: 0.0)
        assert json.loads(advice.stdout)["saved_usd_total"] == pytest.approx(saved_usd, abs=1e-4)  # (4 decimals)
        assert book_path.read_bytes() == book  # read, never written


def test_a_model_whose_nameplate_publishes_no_power_is_planned_by_its_reading_and_harms_no_other_miner(tmp_path):
    # The Nano 3's catalogue entry has no power (Canaan published none) and an AvalonMiner 741 chain reports none:
    # `plate.power_w * pue` raised TypeError in the stage, which lost the whole part (the demo fleet: 7 of 9
    # planned, an ERROR with a traceback), and advise on such a miner alone said "no miner answered".
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1246:1,nano3:1,av741:1,a1566:1", base="127.50.0.31:0", seed=7) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": fleet.addresses, "interval_s": 2, "network": NETWORK,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}}, "curtailment": {}}))
        env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
        run = lambda *args: subprocess.run([HASHFLEET, "advise", "--config", str(config), *args],  # noqa: E731
                                           capture_output=True, text=True, timeout=120, env=env)
        whole = run("--json")
        assert whole.returncode == 0, whole.stderr
        assert "Traceback" not in whole.stderr and "ERROR" not in whole.stderr, whole.stderr
        plan = json.loads(whole.stdout)
        planned = {m["address"] for m in plan["miners"]}
        # every miner with a power reading is planned, the Nano 3 by what it reads (its nameplate has no watts)
        assert {fleet[0].address, fleet[1].address, fleet[3].address} <= planned, plan["miners"]
        assert fleet[2].address not in planned  # the chain: no power read, none published
        chain = run("--miners", fleet[2].address)
        assert chain.returncode == 1
        assert "no miner that answered could be planned: each needs a hashrate and a power" in chain.stderr, chain.stderr
