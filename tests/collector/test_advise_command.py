"""`hashfleet advise`: the plan right now, from one real cycle of simulated miners; it never sends a command."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from collector.sources import curtailment_commands
from models.curtailment import ControlMode, DrTarget
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
        # A miner left running has its figures too, as its advice would give them (trial ZB: "-" for each).
        for running in (m for m in plan["miners"] if m["action"] == "run"):
            assert running["reason"] == "running as usual" and 10 < running["efficiency_j_th"] < 25, running
            assert running["margin_usd_kwh"] > 0 > old["margin_usd_kwh"]  # why one runs and the other sleeps
            assert running["kw"] == running["kw_always_on"] and 3 < running["kw"] < 5, running
            # break-even = revenue per kWh: the same TH/s revenue for both, so inversely as their J/TH
            assert (running["margin_usd_kwh"] + 0.06) * running["efficiency_j_th"] == pytest.approx(
                (old["margin_usd_kwh"] + 0.06) * old["efficiency_j_th"], rel=1e-6)

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
        usual_rows = [line for line in table.stdout.splitlines() if "running as usual" in line]
        assert len(usual_rows) == 2 and not any(" - " in row for row in usual_rows), table.stdout
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


def test_a_schedule_targets_reason_reaches_the_plan_printable(tmp_path):
    # A reason from the schedule file (or MQTT) went on unfiltered to the MQTT plan, InfluxDB and the audit log.
    config, schedule = tmp_path / "hashfleet.yaml", tmp_path / "dr.yaml"
    now = datetime.now(timezone.utc)
    schedule.write_text(yaml.safe_dump({"targets": [{
        "limit_kw": 5, "start": now - timedelta(hours=1), "end": now + timedelta(hours=1),
        "reason": "4CP\x1b[2J\nAUDIT forged line\u202e"}]}))  # an escape, a newline, a bidi override
    with run_fleet("a1566:1", base="127.50.0.41:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "dr-text", "miners": fleet.addresses, "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK,
            "curtailment": {"dr_schedule": str(schedule)}}))
        plan = advise_json(config, {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")})
    [target] = plan["dr_targets"]
    assert target["source"] == "schedule" and target["reason"] == "4CP [2J AUDIT forged line "


@pytest.mark.parametrize("control", ["on", "off"])
def test_advise_weighs_what_the_collector_measured_and_leaves_its_book_as_it_was(tmp_path, control):
    config = tmp_path / "hashfleet.yaml"
    spool = tmp_path / "spool"
    env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(spool)}
    with run_fleet("a1246:1,a1566:1", base="127.50.0.11:0", seed=6) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv-book", "miners": fleet.addresses, "interval_s": 1,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.5}, "pue": 1.1}, "network": NETWORK,
            "curtailment": {"warmup_s": 0, "min_samples": 2,
                            "control": {"mode": control, "allow": ["*"]}}}))
        collect = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--cycles", "4"],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert collect.returncode == 0, collect.stderr
        book_path = spool / "adv-book" / "curtailment-efficiency.json"
        book = book_path.read_bytes()
        saved_usd = json.loads(book)["saved"][1]
        if control == "on":
            assert saved_usd > 0.001  # both slept at 0.5 $/kWh from the first cycle: two intervals counted
        else:  # advised to sleep, never slept: the running savings count what the miners did
            assert saved_usd == 0.0
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


# What the service keeps in curtailment-commands.json (collector/sources/curtailment_commands.py) and advise takes up,
# read only: the MQTT demand-response targets, kill switch and mode of the running service.
FEED = "prices/dr"


def service_config(fleet, site: str, control: dict) -> dict:
    return {"site": site, "miners": fleet.addresses, "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK,
            # (advise does not connect: nothing listens on this port)
            "mqtt": {"host": "127.50.0.254", "port": 1, "ingest": [{"topic": FEED, "kind": "dr_target"}]},
            "curtailment": {"control": control}}


def advise_json(config, env, *args: str) -> dict:
    run = subprocess.run([HASHFLEET, "advise", "--config", str(config), "--json", *args],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_advise_holds_to_the_demand_response_limit_the_service_saved_and_leaves_the_file_as_it_was(tmp_path):
    """A utility's 5 kW limit came over MQTT and the service (control dry_run) keeps it in curtailment-commands.json:
    advise used to plan without it (three miners running, 10.9 kW) while the service slept miners for it."""
    config, spool = tmp_path / "hashfleet.yaml", tmp_path / "spool"
    env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(spool)}
    now = datetime.now(timezone.utc)
    with run_fleet("a1246:1,a1566:2", base="127.50.0.31:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump(service_config(
            fleet, "adv-saved", {"mode": "on", "allow": ["*"], "mqtt_commands": True})))
        path = spool / "adv-saved" / "curtailment-commands.json"
        path.parent.mkdir(parents=True)
        # as the service writes it: the utility's limit, and Home Assistant asked for dry_run (a reason holding an
        # escape sequence, as a version that took it as it came saved it: read back printable)
        curtailment_commands.save(path, curtailment_commands.SavedCommands(False, None, ControlMode.DRY_RUN, {
            FEED: (DrTarget.model_construct(limit_kw=5, shed_kw=None, start=None, end=now + timedelta(hours=1),
                                            reason="4CP alert\x1b[2J"),)}))
        assert b"4CP alert\\u001b[2J" in path.read_bytes()
        content = path.read_bytes()

        plan = advise_json(config, env)
        assert plan["dr_limit_kw"] == 5 and plan["planned_kw"] <= 5 and plan["dr_met"] is True
        assert plan["miners_sleep"] >= 1
        [target] = plan["dr_targets"]
        assert target["limit_kw"] == 5 and target["reason"] == "4CP alert [2J" and target["in_force"] is True
        assert target["source"] == "mqtt" and target["from"] == FEED and target["saved_in"] == str(path)
        assert plan["control_mode"] == "dry_run" and plan["killed"] is False and plan["notes"] == []

        # A stricter limit given to advise holds; the saved one is still named, active but not binding.
        plan = advise_json(config, env, "--limit-kw", "3")
        assert plan["dr_limit_kw"] == 3
        assert sorted((t["source"], t["from"], t["in_force"]) for t in plan["dr_targets"]) == [
            ("mqtt", FEED, False), ("override", "--limit-kw", True)]

        table = subprocess.run([HASHFLEET, "advise", "--config", str(config)], capture_output=True, text=True,
                               timeout=120, env=env)
        assert table.returncode == 0, table.stderr
        assert "demand-response target in force: site at most 5 kW" in table.stdout
        assert f"(from MQTT topic {FEED}, saved in {path})" in table.stdout and "sleep" in table.stdout
        assert "\x1b" not in table.stdout  # (the publisher's text: a terminal escape would clear the screen)

        # The kill switch turned ON over MQTT: the plan says the service's control is killed.
        curtailment_commands.save(path, curtailment_commands.SavedCommands(True, now, None, {}))
        killed = path.read_bytes()
        plan = advise_json(config, env)
        assert plan["killed"] is True and plan["control_mode"] == "on" and plan["dr_limit_kw"] is None
        assert path.read_bytes() == killed

        path.write_bytes(content)
        advise_json(config, env)
        assert path.read_bytes() == content and sorted(p.name for p in path.parent.iterdir()) == [path.name]
        assert fleet.commands() == []


def _saved(now: datetime, **target) -> bytes:
    return json.dumps({"version": 2, "killed": False, "killed_as_of": None, "mode": None,
                       "dr_targets": {FEED: [{"limit_kw": 5, "shed_kw": None, "start": None, "reason": "4CP",
                                              **target}]}},
                      default=datetime.isoformat).encode()


NOW = datetime.now(timezone.utc)


@pytest.mark.parametrize("control, content, words", [
    ({"mode": "dry_run", "allow": ["*"]}, _saved(NOW, end=NOW - timedelta(minutes=1)), "ended already"),
    ({"mode": "dry_run", "allow": ["*"]}, _saved(NOW, start=NOW + timedelta(days=8), end=NOW + timedelta(days=8, hours=1)),
     "more than 7 days ahead"),
    ({"mode": "dry_run", "allow": ["*"]}, _saved(NOW, end=NOW + timedelta(days=30)), "longer than 7 days"),
    ({"mode": "dry_run", "allow": ["*"]}, _saved(NOW, end=NOW + timedelta(hours=1), limit_kw="nan"), "is unusable"),
    ({"mode": "dry_run", "allow": ["*"]}, b"{not json \x1b[31m", "is unusable"),
    ({"mode": "dry_run", "allow": ["*"]}, b" " * (17 * 1024 * 1024), "is unusable"),
    # with control off the service neither reads nor writes the file: what it holds from MQTT is not known here
    ({"mode": "off"}, _saved(NOW, end=NOW + timedelta(hours=1)), "with control off it does not save them"),
])
def test_a_saved_demand_response_target_the_service_would_not_hold_is_left_out_and_said(tmp_path, control, content,
                                                                                         words):
    config, spool = tmp_path / "hashfleet.yaml", tmp_path / "spool"
    env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(spool)}
    with run_fleet("a1246:1,a1566:2", base="127.50.0.41:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump(service_config(fleet, "adv-bad", control)))
        path = spool / "adv-bad" / "curtailment-commands.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        plan = advise_json(config, env)
        # read only: not set aside, not rewritten (the service's start would do both to an unusable file)
        assert path.read_bytes() == content and sorted(p.name for p in path.parent.iterdir()) == [path.name]
        assert plan["dr_limit_kw"] is None and plan["dr_targets"] == [] and plan["miners_sleep"] == 0
        [note] = plan["notes"]
        assert words in note and "\x1b" not in note and plan["killed"] is False
        assert fleet.commands() == []


def test_advise_says_how_many_miners_its_one_cycle_left_out(tmp_path):
    # Trial P L3: a one-shot beside a busy site planned on part of the fleet with `notes: []`.
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1566:2", base="127.50.3.1:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": [*fleet.addresses, "127.50.3.200:4028"], "timeout_s": 1,  # nothing there
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}}, "network": NETWORK}))
        done = subprocess.run([HASHFLEET, "advise", "--config", str(config), "--json"], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")})
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["miners_run"] == 2
    assert "1 of 3 miner(s) did not answer or were not identified in this one cycle (the log above says why): the " \
           "plan leaves them out" in plan["notes"]


def test_a_miner_that_answered_but_cannot_be_planned_is_named_in_a_note(tmp_path):
    # Trial ZB, M4: an AvalonMiner 741 chain (no power reading, no nameplate draw) was missing from the plan's
    # table, the count one short, with no word; one that did not answer had its note.
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1566:1,avchain:1", base="127.50.9.1:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": fleet.addresses, "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK}))
        env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool"), "COLUMNS": "300"}
        run = lambda *args: subprocess.run([HASHFLEET, "advise", "--config", str(config), *args],  # noqa: E731
                                           capture_output=True, text=True, timeout=120, env=env)
        as_json, table = run("--json"), run()
    assert as_json.returncode == 0 and table.returncode == 0, as_json.stderr + table.stderr
    plan = json.loads(as_json.stdout)
    assert [m["address"] for m in plan["miners"]] == [fleet[0].address]
    [note] = [n for n in plan["notes"] if "not in the plan" in n]
    assert note.startswith("1 miner(s) that answered are not in the plan: ")
    assert note.endswith(f": {fleet[1].address} (AvalonMiner 741 chain, mining)")  # (its id is its address)
    assert note in " ".join(table.stdout.split())


def test_an_address_that_does_not_answer_is_tried_and_told_of_once(tmp_path):
    # Trial ZB, L8: advise identified every address again after the start's first round had: each failure logged
    # twice, and a range's silent addresses would have cost their timeouts twice.
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1566:1", base="127.50.10.1", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv", "miners": [fleet.addresses[0], "127.50.10.9"], "interval_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK}))
        env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
        done = subprocess.run([HASHFLEET, "advise", "--config", str(config), "--json"], capture_output=True, text=True,
                              timeout=120, env=env)
        ranged = subprocess.run([HASHFLEET, "--log-level", "DEBUG", "advise", "--config", str(config), "--json",
                                 "--miners", "127.50.10.0/29"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("did not identify as a miner") == 1, done.stderr
    assert "127.50.10.9:4028" in done.stderr and json.loads(done.stdout)["miners_planned"] == 1
    assert ranged.returncode == 0 and json.loads(ranged.stdout)["miners_planned"] == 1, ranged.stderr
    assert ranged.stderr.count("127.50.10.0/29: scanned ") == 1, ranged.stderr  # (its silent addresses once)


def test_advise_says_the_miners_that_publish_over_mqtt_are_not_in_its_plan(tmp_path):
    # Trial ZG L2: advise planned 6 miners where the service planned 8 (two publish their telemetry over MQTT), and its
    # notes said nothing of them.
    config = tmp_path / "hashfleet.yaml"
    with run_fleet("a1566:1", base="127.50.9.11:0", seed=5) as fleet:
        config.write_text(yaml.safe_dump({
            "site": "adv-mqtt", "miners": fleet.addresses, "timeout_s": 2,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}}, "network": NETWORK,
            "mqtt": {"host": "127.0.0.1", "ingest": [{"topic": "feeds/miner/+", "kind": "miner_telemetry"}]}}))
        plan = advise_json(config, {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")})
    assert plan["miners_planned"] == 1
    [note] = plan["notes"]
    assert "publish their telemetry over MQTT are not in this plan" in note
