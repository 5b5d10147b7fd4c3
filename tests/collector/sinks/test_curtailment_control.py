"""Curtailment control against the simulators over real TCP, the pipeline as `hashfleet collect` builds it
(collector.pipeline.build, service mode): `off` and `dry_run` send nothing (the simulators' command log
stays empty), `on` sends exactly what the plan asks, within the allowlist and the rate limits, confirms
each change on the next poll, wakes only what it slept, stops on a kill switch or stale data, and writes
every step to the audit log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector import config as config_loader
from collector.pipeline import build
from collector.sinks import audit_log, curtailment_control
from collector.sources import curtailment_commands
from collector.sinks.miner_commands import avalon_parameter, read_avalon_reply
from collector.sinks.points import curtailment_lines
from collector.stages.curtailment_rules import SLEEP
from models import CollectorConfig, LivePowerPrice
from models.curtailment import ActionEvent
from simulators.fleet import run_fleet
from tests.collector.mqtt_support import CaptureSink
from tests.support import HASHFLEET, TS, fill, small_disk, until, wait_for

NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
FLEET = "a1246:2,a1566:2"  # the A1246s (~38 J/TH) lose money above ~0.040 $/kWh, the A15s (~19 J/TH) above ~0.081
OLD = (0, 1)  # fleet indexes of the A1246s
SPIKE, CHEAP = 0.06, 0.02


def config(fleet, site: str, *, price: float | None, control: dict | None, **curtailment) -> CollectorConfig:
    tariff = ({"kind": "flat", "usd_per_kwh": price} if price is not None
              else {"kind": "live", "fallback_usd_per_kwh": 0.05})
    return CollectorConfig.model_validate({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
        "economics": {"tariff": tariff, "pue": 1.1}, "network": NETWORK,
        "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                        **({"control": control} if control is not None else {}), **curtailment},
    })


def run(cfg: CollectorConfig, cycles: int) -> list:
    capture = CaptureSink()
    pipeline = build(cfg, sinks=[capture], service_mode=True)
    asyncio.run(pipeline.run(cycles=cycles))
    pipeline.close()
    out = []
    while not capture.results.empty():
        out.append(capture.results.get())
    return out


def audit(cfg: CollectorConfig) -> list[dict]:
    path = config_loader.spool_directory(cfg) / "curtailment-actions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def commands(fleet, index: int | None = None) -> list[str]:
    return [c.command for c in fleet.commands(None if index is None else fleet[index])]


@pytest.fixture(scope="module")
def sims():
    with run_fleet(FLEET, base="127.48.0.1:0", seed=19) as fleet:
        yield fleet


@pytest.fixture
def fleet(sims):
    """The module's fleet, every miner awake and the command log read from here on."""
    for miner in sims:
        miner.set_faults(soft_off=False, device_keys={})
    sims.command_log._kept.clear()
    return sims


def test_off_sends_nothing_while_the_plan_says_sleep(fleet):
    cfg = config(fleet, "ctl-off", price=1.0, control=None)
    cycles = run(cfg, 3)
    plan = cycles[-1].curtailment
    assert plan.control_mode == "off" and plan.miners_sleep == 4 and plan.events == []
    assert fleet.commands() == []
    assert audit(cfg) == []


def test_dry_run_sends_nothing_and_logs_what_it_would_do_once_per_change(fleet):
    cfg = config(fleet, "ctl-dry", price=SPIKE, control={"mode": "dry_run", "allow": ["*"]})
    cycles = run(cfg, 4)
    assert fleet.commands() == []
    lines = audit(cfg)
    old = {fleet[i].mac.upper() for i in OLD}
    assert {line["miner"].replace(":", "") for line in lines} == {m.replace(":", "") for m in old}
    assert all(line["result"] == "dry_run" and line["action"] == "sleep" for line in lines)
    assert len(lines) == 2  # once per change, not once per cycle
    first = lines[0]
    assert first["who"] == "hashfleet curtailment control (dry_run)" and first["command"].startswith("ascset|0,softoff,")
    assert "above its break-even" in first["why"] and first["site"] == "ctl-dry"
    events = [e for c in cycles for e in c.curtailment.events]
    assert len(events) == 2 and any('result=dry_run' in line for c in cycles
                                    for line in curtailment_lines(c.curtailment) if line.startswith("action,"))


def test_on_sleeps_the_losing_miners_confirms_on_the_next_poll_and_wakes_only_what_it_slept(fleet):
    fleet[2].set_soft_off(True)  # an operator stopped this A15 by hand: control must never wake it
    cfg = config(fleet, "ctl-on", price=SPIKE, control={"mode": "on", "allow": ["*"]})
    cycles = run(cfg, 3)
    for i in OLD:
        assert commands(fleet, i) == ["ascset softoff"]
    assert commands(fleet, 2) == [] and commands(fleet, 3) == []
    assert cycles[-1].samples and {s.state.value for s in cycles[-1].samples if s.model.startswith("AvalonMiner 1246")} == {"soft_off"}
    results = [(line["action"], line["result"]) for line in audit(cfg)]
    assert results.count(("sleep", "sent")) == 2 and results.count(("sleep", "accepted")) == 2
    assert results.count(("sleep", "confirmed")) == 2
    # The price falls: it wakes the two it slept (its state survived the restart), not the hand-stopped A15.
    run(config(fleet, "ctl-on", price=CHEAP, control={"mode": "on", "allow": ["*"]}), 3)
    for i in OLD:
        assert commands(fleet, i) == ["ascset softoff", "ascset softon"]
    assert commands(fleet, 2) == []
    assert ("wake", "confirmed") in [(line["action"], line["result"]) for line in audit(cfg)]


def control_state(cfg: CollectorConfig) -> dict:
    return json.loads((config_loader.spool_directory(cfg) / "curtailment-control.json").read_text())


def test_a_miner_an_operator_woke_by_hand_is_no_longer_controls_to_wake(fleet):
    # Control sleeps it; the operator wakes it by hand; later stops it by hand for maintenance. Control must not
    # wake it then: its sleep ended when the operator took the miner back (it once woke it, the sleep kept for
    # ever in its state file).
    allow = {"mode": "on", "allow": [fleet[0].address]}
    dear, cheap = (config(fleet, "ctl-taken", price=p, control=allow) for p in (SPIKE, CHEAP))
    run(dear, 2)
    assert commands(fleet, 0) == ["ascset softoff"] and ("sleep", "confirmed") in [
        (line["action"], line["result"]) for line in audit(dear)]
    fleet[0].set_soft_off(False)  # the operator wakes it by hand
    run(cheap, 2)
    slept_then = control_state(cheap)["slept"]
    fleet[0].set_soft_off(True)  # the operator stops it for maintenance
    run(cheap, 3)
    assert commands(fleet, 0) == ["ascset softoff"]  # never woken by control
    assert slept_then == {}  # control let it go as soon as a poll showed it awake, and said so
    taken = [line for line in audit(cheap) if line["result"] == "taken_back"]
    assert [(line["action"], line["why"]) for line in taken] == [("sleep", "an operator took it back")]
    assert taken[0]["detail"].startswith("the poll shows state mining") and "it will not wake it" in taken[0]["detail"]


def test_a_miner_an_operator_woke_is_left_alone_while_the_price_still_says_sleep(fleet):
    # The operator wakes a miner control slept, the spike not over: control slept it again at the next cycle,
    # overriding the operator's hand. It is left alone for failed_backoff_s instead, as after a failed change.
    allow = {"mode": "on", "allow": [fleet[0].address]}
    dear = config(fleet, "ctl-hold", price=SPIKE, control=allow)
    run(dear, 2)
    assert commands(fleet, 0) == ["ascset softoff"]
    fleet[0].set_soft_off(False)  # the operator wakes it by hand
    run(dear, 3)
    assert commands(fleet, 0) == ["ascset softoff"]  # not slept again
    taken = [line for line in audit(dear) if line["result"] == "taken_back"]
    assert len(taken) == 1 and "leaves it alone for 3600 s" in taken[0]["detail"]
    assert fleet[0].mac.upper().replace(":", "") in {m.replace(":", "") for m in control_state(dear)["failed"]}


def test_a_sleep_the_first_poll_does_not_show_yet_is_still_controls_own(fleet):
    # The poll right after the command still reads it not soft-off (slow firmware): that is control's own
    # action under way, not an operator's; once the sleep shows, control still wakes it when the price falls.
    fleet[0].set_faults(device_keys={"SoftOFF": "0", "GHSspd": "88000.00"})
    allow = {"mode": "on", "allow": [fleet[0].address]}
    dear, cheap = (config(fleet, "ctl-slow-sleep", price=p, control=allow) for p in (SPIKE, CHEAP))
    polls = []

    def firmware_catches_up(cycle) -> None:
        polls.append(cycle.ts)
        if len(polls) == 2:  # the poll after the send read it awake: from now on it shows the soft-off
            fleet[0].set_faults(device_keys={})

    pipeline = build(dear, sinks=[_Site(firmware_catches_up)], service_mode=True)
    asyncio.run(pipeline.run(cycles=4))
    pipeline.close()
    assert [(line["result"], line["attempt"]) for line in audit(dear) if line["result"] in ("sent", "confirmed")] == [
        ("sent", 1), ("sent", 2), ("confirmed", 2)]
    run(cheap, 2)
    assert commands(fleet, 0) == ["ascset softoff", "ascset softoff", "ascset softon"]
    assert "taken_back" not in [line["result"] for line in audit(cheap)]


def ident(miner) -> str:
    return miner.mac.upper()


def miner_id(miner) -> str:
    """The id the collector gives a simulated miner (its MAC, with colons)."""
    mac = ident(miner).replace(":", "")
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2))


def of(line: dict) -> str:
    """The simulated miner's MAC an audit line is about (ids are MACs with colons)."""
    return line["miner"].replace(":", "")


REBOOTED = "rebooted since control slept it (power loss?)"


def test_after_a_power_cut_control_sleeps_its_miners_again_and_blames_no_operator(fleet, caplog):
    # The site lost power, the collector with it: the miners come back mining (soft-off is not kept through a
    # power loss). Control took each for an operator's hand ("an operator took it back", `taken_back`) and left
    # them running against the plan for failed_backoff_s (an hour: a trial's 100 miners, 350 kW). Here one A1246
    # lost power; the other an operator woke by hand (no reboot): that one only is the operator's.
    dear = config(fleet, "ctl-power-cut", price=SPIKE, control={"mode": "on", "allow": ["*"], "max_actions_per_cycle": 1})
    run(dear, 3)
    assert [line["result"] for line in audit(dear)].count("confirmed") == 2
    before = len(audit(dear))
    fleet[0].reboot()  # the power cut: Elapsed starts again, soft-off forgotten
    fleet[1].set_soft_off(False)  # the operator's hand
    caplog.set_level(logging.WARNING, logger="collector.sinks.curtailment_control")
    cycles = run(dear, 3)  # (the collector restarted with the site)
    lines = audit(dear)[before:]
    released = [line for line in lines if line["result"] == "released"]
    assert [(of(line), line["action"], line["why"]) for line in released] == [(ident(fleet[0]), "sleep", REBOOTED)]
    assert "uptime" in released[0]["detail"] and "no operator backoff" in released[0]["detail"]
    assert [of(line) for line in lines if line["result"] == "taken_back"] == [ident(fleet[1])]
    # Slept again through the ordinary path (audited, within the limits: one send a cycle) while the plan wants it
    assert commands(fleet, 0) == ["ascset softoff", "ascset softoff"]
    assert (ident(fleet[0]), "sleep", "confirmed") in [(of(line), line["action"], line["result"]) for line in lines]
    assert all(len([e for e in c.curtailment.events if e.result == "sent"]) <= 1 for c in cycles)
    assert commands(fleet, 1) == ["ascset softoff"]  # the operator's: left alone for the backoff
    state = control_state(dear)
    assert {m.replace(":", "") for m in state["failed"]} == {ident(fleet[1])}
    assert {m.replace(":", "") for m in state["slept"]} == {ident(fleet[0])}
    # One line for the rebooted (a power cut is hundreds of them), one per operator's take-back
    logged = [r.getMessage() for r in caplog.records]
    assert len([m for m in logged if REBOOTED in m]) == 1 and "1 miner(s)" in next(m for m in logged if REBOOTED in m)
    assert len([m for m in logged if "an operator took" in m]) == 1


def test_miners_that_lose_power_while_the_collector_runs_are_slept_again():
    # The collector on a UPS, the miners not: they read offline, then come back mining. Their uptime went back:
    # not an operator's hand. (A fleet of its own: one that stops answering listens again on its own address.)
    with run_fleet("a1246:2", base="127.48.5.1", seed=31) as old:
        dear = config(old, "ctl-ups", price=SPIKE, control={"mode": "on", "allow": ["*"]})
        dear = dear.model_copy(update={"identify_backoff_max_s": 2.0})
        stop, phase, states = asyncio.Event(), [], []

        def power(cycle) -> None:
            read = {s.host: s.state.value for s in cycle.samples}
            now = [read.get(m.host) for m in old]
            states.append(now)
            if not phase and now == ["soft_off"] * 2:
                for miner in old:
                    miner.set_faults(no_answer=True)  # the power goes
                phase.append("cut")
            elif phase == ["cut"] and now == ["offline"] * 2:
                for miner in old:
                    miner.reboot()  # ... and comes back: they boot mining
                    miner.set_faults(no_answer=False)
                phase.append("back")
            elif phase == ["cut", "back"] and now == ["soft_off"] * 2:
                stop.set()

        pipeline = build(dear, sinks=[_Site(power)], service_mode=True)
        asyncio.run(pipeline.run(cycles=40, stop=stop))
        pipeline.close()
        assert stop.is_set(), (states, audit(dear))
        lines = audit(dear)
        assert not [line for line in lines if line["result"] == "taken_back"], lines
        assert sorted(of(line) for line in lines if line["result"] == "released") == sorted(map(ident, old))
        assert all(line["why"] == REBOOTED for line in lines if line["result"] == "released")
        assert [c.command for c in old.commands()] == ["ascset softoff"] * 4  # each slept, then again
        assert control_state(dear)["failed"] == {}


def test_a_kill_right_after_wakes_were_sent_is_resolved_by_the_next_poll_not_blamed_on_an_operator(fleet, tmp_path):
    # kill -9 in the seconds after control sent wakes (they reached the miners, no poll confirmed them yet): the
    # in-flight wakes were memory only, so after the restart the awake miners read as taken back by an operator
    # (a trial: 40 of 100), left alone for an hour, and the audit's "sent" lines were never closed.
    site = "ctl-kill9"
    dear = config(fleet, site, price=SPIKE, control={"mode": "on", "allow": ["*"]})
    cheap = config(fleet, site, price=CHEAP, control={"mode": "on", "allow": ["*"]})
    run(dear, 2)
    assert [(line["action"], line["result"]) for line in audit(dear)].count(("sleep", "confirmed")) == 2
    path = tmp_path / "cheap.json"
    path.write_text(json.dumps({
        "site": site, "miners": fleet.addresses, "interval_s": 600, "timeout_s": 2,  # (no second poll before the kill)
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": CHEAP}, "pue": 1.1}, "network": NETWORK,
        "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                        "control": {"mode": "on", "allow": ["*"]}}}))
    with (tmp_path / "collect.log").open("w") as log_file:
        collector = subprocess.Popen([HASHFLEET, "collect", "--config", str(path)], stdout=subprocess.DEVNULL,
                                     stderr=log_file)
        try:
            wait_for(lambda: all(commands(fleet, i) == ["ascset softoff", "ascset softon"] for i in OLD), timeout=60,
                     what="the wakes to reach the miners")
        finally:
            collector.kill()  # SIGKILL: no drain, no last word
            collector.wait(timeout=10)
    sent = [line for line in audit(cheap) if line["action"] == "wake"]
    assert [line["result"] for line in sent] == ["sent", "sent"], (tmp_path / "collect.log").read_text()
    saved = control_state(cheap)  # on disk before the commands left
    assert sorted(m.replace(":", "") for m in saved.get("pending", {})) == sorted(ident(fleet[i]) for i in OLD)
    before = len(audit(cheap))
    run(cheap, 2)  # the restart
    after = audit(cheap)[before:]
    assert [line["result"] for line in after if line["result"] in ("taken_back", "released")] == []
    # the audit closes each action the kill left open: the first poll shows it done
    closed = [(of(line), line["action"], line["result"]) for line in after]
    assert sorted(closed) == sorted((ident(fleet[i]), "wake", "confirmed") for i in OLD), after
    assert control_state(cheap)["slept"] == {} and control_state(cheap)["pending"] == {}
    assert control_state(cheap)["failed"] == {}
    run(dear, 2)  # the next spike sleeps them again (none left alone for an operator's backoff)
    for i in OLD:
        assert commands(fleet, i) == ["ascset softoff", "ascset softon", "ascset softoff"]


def write_state(cfg: CollectorConfig, state: dict) -> None:
    path = config_loader.spool_directory(cfg) / "curtailment-control.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))


def test_an_action_a_kill_cut_before_it_left_is_closed_by_the_next_poll_and_decided_anew(fleet):
    # The state file (synced before the commands leave) says a wake was in flight; the kill came before it reached
    # the miner, which still reads asleep. The audit once kept that "sent" open for ever.
    fleet[0].set_soft_off(True)
    cheap = config(fleet, "ctl-never-left", price=CHEAP, control={"mode": "on", "allow": ["*"]})
    miner = miner_id(fleet[0])
    now = datetime.now(timezone.utc).timestamp()
    write_state(cheap, {"version": 1, "slept": {miner: now - 120}, "slept_uptime": {miner: 3600}, "moved": {},
                        "moved_to": {}, "failed": {}, "sent": [now - 120, now - 5],
                        "pending": {miner: ["wake", "default", "price below its break-even", "ascset|0,softon,1",
                                            fleet[0].host, 3.7, 1]}})
    run(cheap, 3)
    assert [(line["result"], line["attempt"]) for line in audit(cheap)] == [
        ("unconfirmed", 1), ("sent", 1), ("accepted", 1), ("confirmed", 1)]
    assert "in flight when the collector stopped; the first poll since shows state soft_off" in audit(cheap)[0]["detail"]
    assert commands(fleet, 0) == ["ascset softon"]  # once: the plan's, not a retry of the lost one
    assert control_state(cheap)["failed"] == {} and control_state(cheap)["slept"] == {}


def test_a_miner_found_awake_under_a_state_saved_without_what_was_in_flight_is_not_an_operators(fleet):
    # A state file from before control kept its actions in flight: whether a wake was under way at the stop is
    # unknown, so a slept miner found awake at its first poll is not blamed on an operator; the plan decides it.
    dear = config(fleet, "ctl-unwatched", price=SPIKE, control={"mode": "on", "allow": [fleet[0].address]})
    now = datetime.now(timezone.utc).timestamp()
    write_state(dear, {"version": 1, "slept": {miner_id(fleet[0]): now - 30}, "moved": {}, "failed": {}, "sent": []})
    run(dear, 2)
    lines = audit(dear)
    assert [(line["result"], line["why"]) for line in lines if line["result"] in ("released", "taken_back")] == [
        ("released", curtailment_control.UNWATCHED)]
    assert commands(fleet, 0) == ["ascset softoff"]  # slept again at once, the plan wanting it asleep


WORK_MODES = {"Avalon Q": [{"mode": "0", "hashrate_ths": 56, "power_w": 850},
                           {"mode": "1", "hashrate_ths": 75, "power_w": 1300},
                           {"mode": "2", "hashrate_ths": 90, "power_w": 1674}]}


def test_a_work_mode_an_operator_set_by_hand_is_not_raised_by_control():
    # Control lowers an Avalon Q 2 -> 0 at a dear price; the operator sets mode 1 by hand. When power is cheap
    # again control must leave mode 1 alone (it once sent mode 2, over the operator's choice).
    with run_fleet("q:1", base="127.48.4.1", seed=29) as q:
        allow = {"mode": "on", "allow": ["*"]}
        dear, cheap = (config(q, "ctl-mode-taken", price=p, control=allow, work_modes=WORK_MODES) for p in (0.08, 0.03))
        run(dear, 3)
        assert [(c.command, c.params["parameter"]) for c in q.commands()] == [("ascset workmode", "0,workmode,set,0")]
        assert control_state(dear)["moved"] and ("mode", "confirmed") in [
            (line["action"], line["result"]) for line in audit(dear)]
        q[0].set_work_mode(1)  # the operator's choice
        run(cheap, 3)
        assert len(q.commands()) == 1  # mode 1 left as the operator set it
        assert control_state(cheap)["moved"] == {} and control_state(cheap)["moved_to"] == {}
        taken = [line for line in audit(cheap) if line["result"] == "taken_back"]
        assert [line["action"] for line in taken] == ["mode"]
        assert "work mode 1" in taken[0]["detail"] and "not in work mode 0 as control left it" in taken[0]["detail"]


def test_an_avalon_whose_clock_is_a_day_behind_ours_is_slept_and_woken_at_once():
    # Canaan's firmware acts on `ascset|0,softoff,<ts>` at <ts> on its own clock. A collector booted with its clock
    # a day ahead (or a miner's a day behind) stamped the sleep with its own time: the miner did nothing now (the
    # change unconfirmed, disowned) and slept a day later, at whatever price, never to be woken by control.
    def a_day_behind() -> float:
        return time.time() - 86400

    with run_fleet("a1246:1", base="127.48.5.1", seed=37, clock=a_day_behind) as behind:
        allow = {"mode": "on", "allow": ["*"]}
        dear, cheap = (config(behind, "ctl-clock", price=p, control=allow) for p in (SPIKE, CHEAP))
        run(dear, 2)
        assert [(line["action"], line["result"], line["attempt"]) for line in audit(dear)
                if line["result"] in ("sent", "confirmed")] == [("sleep", "sent", 1), ("sleep", "confirmed", 1)]
        run(cheap, 2)
        assert ("wake", "confirmed") in [(line["action"], line["result"]) for line in audit(cheap)]
        sent = [c.params["parameter"] for c in behind.commands()]
        assert [p.rsplit(",", 1)[0] for p in sent] == ["0,softoff", "0,softon"]
        # each stamped with the miner's own time (read from it just before), not ours
        assert all(abs(int(p.rsplit(",", 1)[1]) - a_day_behind()) < 60 for p in sent), sent
        confirmed = next(line for line in audit(dear) if line["result"] == "confirmed")
        assert confirmed["command"] == f"ascset|{sent[0]}"  # the audit shows what was sent


def test_only_allow_listed_miners_are_touched(fleet):
    allowed = fleet[0]
    run(config(fleet, "ctl-allow", price=SPIKE, control={"mode": "on", "allow": [allowed.address]}), 2)
    assert commands(fleet, 0) == ["ascset softoff"] and commands(fleet, 1) == []


class _Site:
    """A sink after control's (every sink is): `step(cycle)` after each cycle stands in for what happens on the
    site between two polls (a DHCP move, an operator's hand), from what that cycle read."""

    def __init__(self, step) -> None:
        self.step = step

    async def write_miners(self, part) -> None:
        return None

    async def write(self, cycle) -> None:
        self.step(cycle)

    def close(self) -> None:
        pass


def test_a_miner_that_moves_to_an_address_not_allowed_is_not_touched_there():
    # The allowlist names an address. The miner there is slept, then moves (DHCP) to an address not in it,
    # keeping its id (its MAC), and reads awake there while the price still says sleep: control must leave
    # it alone (it once kept the verdict of the old address for the id, for the life of the process).
    with (run_fleet("a1246:1", base="127.48.3.11", seed=23) as old, run_fleet("a1246:1", base="127.48.3.12", seed=23) as new):
        assert old[0].mac == new[0].mac
        new[0].set_faults(no_answer=True)
        cfg = config(old, "ctl-moved", price=SPIKE, control={"mode": "on", "allow": [old[0].address]})
        cfg = cfg.model_copy(update={"miners": [old[0].address, new[0].address], "identify_backoff_max_s": 2.0})
        stop, slept_id, seen_there = asyncio.Event(), [], []

        def dhcp(cycle) -> None:
            read = {s.host: s for s in cycle.samples}
            if not slept_id and read[old[0].host].state.value == "soft_off":
                slept_id.append(read[old[0].host].miner)
                old[0].set_faults(no_answer=True)  # gone from the allowed address ...
                new[0].set_faults(no_answer=False)  # ... back at the other one, with the same MAC, awake
            elif (moved := read.get(new[0].host)) is not None and moved.miner in slept_id:
                seen_there.append(moved.state.value)
                if len(seen_there) == 3:
                    stop.set()

        pipeline = build(cfg, sinks=[_Site(dhcp)], service_mode=True)
        asyncio.run(pipeline.run(cycles=40, stop=stop))
        pipeline.close()
        assert [c.command for c in old.commands()] == ["ascset softoff"]
        assert new.commands() == []
        assert seen_there == ["mining"] * 3  # read there, by its id, cycle after cycle
        assert {line["host"] for line in audit(cfg) if line["result"] == "sent"} == {old[0].host}


def test_a_retry_is_not_sent_to_an_address_the_allowlist_does_not_name():
    # Firmware that says yes to the sleep and never shows it, and the miner moves (DHCP) to an address not in
    # `allow` while control retries: the retries followed it there (6 of 9 sleeps), as only a new action
    # asked the allowlist.
    stuck = {"SoftOFF": "0", "GHSspd": "88000.00"}
    with (run_fleet("a1246:1", base="127.48.3.21", seed=29) as old, run_fleet("a1246:1", base="127.48.3.22", seed=29) as new):
        old[0].set_faults(device_keys=stuck)
        new[0].set_faults(no_answer=True, device_keys=stuck)
        cfg = config(old, "ctl-moved-retry", price=SPIKE,
                     control={"mode": "on", "allow": [old[0].address], "confirm_retries": 8})
        cfg = cfg.model_copy(update={"miners": [old[0].address, new[0].address], "identify_backoff_max_s": 2.0})
        stop, seen_there = asyncio.Event(), []

        def dhcp(cycle) -> None:
            read = {s.host: s for s in cycle.samples}
            if len(old.commands()) >= 2 and not seen_there:
                old[0].set_faults(no_answer=True)  # gone from the allowed address, its sleep being retried ...
                new[0].set_faults(no_answer=False, device_keys=stuck)  # ... back at the other one
                seen_there.append("moved")
            elif seen_there and (moved := read.get(new[0].host)) is not None and moved.mac:
                seen_there.append(moved.state.value)
                if len(seen_there) == 4:
                    stop.set()

        pipeline = build(cfg, sinks=[_Site(dhcp)], service_mode=True)
        asyncio.run(pipeline.run(cycles=40, stop=stop))
        pipeline.close()
        assert new.commands() == [] and len(old.commands()) >= 2, ([c.command for c in old.commands()], audit(cfg))
        assert seen_there[0] == "moved" and "offline" not in seen_there, seen_there  # read there, by its id
        skipped = [line for line in audit(cfg) if line["result"] == "skipped" and line["miner"] != "*"]
        assert skipped and "which the allowlist does not name" in skipped[0]["detail"], audit(cfg)


def test_actions_per_cycle_and_per_hour_are_capped(fleet):
    run(config(fleet, "ctl-cycle", price=SPIKE, control={"mode": "on", "allow": ["*"], "max_actions_per_cycle": 1}), 1)
    assert len(fleet.commands()) == 1
    fleet.command_log._kept.clear()
    for miner in fleet:
        miner.set_faults(soft_off=False)
    run(config(fleet, "ctl-hour", price=SPIKE, control={"mode": "on", "allow": ["*"], "max_actions_per_hour": 1}), 4)
    assert len(fleet.commands()) == 1


def each_cycle_at(fleet, site: str, prices: list[float], control: dict, plans: list | None = None,
                  **curtailment) -> list[list[tuple[str, str]]]:
    """One run, a live price per cycle (as the MQTT price feed would set it): each cycle's actions as
    (model, action), sorted: those `on` sent, or those dry_run announced (each cycle's plan into `plans`). In
    `on`, the simulators' command log must hold what the audit says was sent (each miner's commands in order)."""
    cfg = config(fleet, f"{site}-{control['mode']}", price=None, control=control, **curtailment)
    model = {m.mac.upper(): m.spec.key for m in fleet}
    pipeline = build(cfg, sinks=[_Site(lambda cycle: set_price(len(cycles)))], service_mode=True)
    live = next(s for s in pipeline.sinks if isinstance(s, curtailment_control.CurtailmentControl)).live
    cycles: list[list[tuple[str, str]]] = []

    def set_price(n: int) -> None:
        if n < len(prices):
            live.power_price = LivePowerPrice(usd_per_kwh=prices[n], as_of=datetime.now(timezone.utc))

    def acts(cycle) -> None:
        if plans is not None:
            plans.append(cycle.curtailment)
        cycles.append(sorted((model[e.miner.replace(":", "")], e.action) for e in cycle.curtailment.events
                             if e.result in ("sent", "dry_run")))

    pipeline.sinks.insert(1, _Site(acts))  # (before the price step: it counts the cycles)
    set_price(0)
    asyncio.run(pipeline.run(cycles=len(prices)))
    pipeline.close()
    words = {"ascset softoff": "sleep", "ascset softon": "wake"}
    logged = {m.spec.key + m.address: [words[c.command] for c in fleet.commands(m)] for m in fleet}
    audited = {m.spec.key + m.address: [line["action"] for line in audit(cfg) if line["result"] == "sent"
                                        and line["miner"].replace(":", "") == m.mac.upper()] for m in fleet}
    assert logged == audited if control["mode"] == "on" else not any(logged.values()), (logged, audited)
    return cycles


def on_and_dry_run(fleet, site: str, prices: list[float], control: dict, plans: list | None = None,
                   **curtailment) -> tuple[list, list]:
    """The same scenario run by `on` and by dry_run, the fleet as it was before each (`on`'s plans into `plans`)."""
    runs = []
    for mode in ("on", "dry_run"):
        for miner in fleet:
            miner.set_faults(soft_off=False)
        fleet.command_log._kept.clear()
        runs.append(each_cycle_at(fleet, site, prices, {**control, "mode": mode}, plans if mode == "on" else None,
                                  **curtailment))
    return runs[0], runs[1]


def test_a_retry_the_plan_no_longer_wants_is_not_sent(fleet):
    # Trial Y: control retried a demand-response sleep 2 and 5 s after its target had ended, citing it. Here the
    # price falls the cycle after a sleep an A1246 ignored: the retry would sleep a miner the plan wants running.
    fleet[0].set_faults(ignores_soft_off=True)
    try:
        each_cycle_at(fleet, "ctl-retry-moot", [SPIKE, CHEAP, CHEAP, CHEAP], {"mode": "on", "allow": ["*"]})
    finally:
        fleet[0].set_faults(ignores_soft_off=False)
    assert commands(fleet, 0) == ["ascset softoff"]
    assert commands(fleet, 1) == ["ascset softoff", "ascset softon"]  # the one that slept is woken
    skipped = [line for line in audit(config(fleet, "ctl-retry-moot-on", price=None, control=None))
               if line["result"] == "skipped"]
    assert [(line["action"], line["detail"]) for line in skipped] == [
        ("sleep", "not sent again: the plan no longer wants it")], skipped


def test_dry_run_announces_what_on_sends_within_the_same_limits(fleet, caplog):
    # Every miner losing money, more of them than the hour allows: dry_run once took no budget from the hour
    # (a 2,000-miner trial announced 440 sleeps in 7 minutes under max_actions_per_hour 120).
    control = {"allow": ["*"], "max_actions_per_cycle": 2, "max_actions_per_hour": 3}
    caplog.set_level(logging.WARNING, logger="collector.sinks.curtailment_control")
    on, dry = on_and_dry_run(fleet, "ctl-same-budget", [1.0] * 4, control)
    assert [len(c) for c in on] == [2, 1, 0, 0]  # two a cycle, three in the hour
    assert dry == on
    # The plan outpacing control was silent (its savings assume every change made): one line a run, bounded.
    waiting = [r.getMessage() for r in caplog.records if "wait for the action limits" in r.getMessage()]
    assert len(waiting) == 2, waiting  # (on, then dry_run: a control each, one line each per 10 minutes)
    assert "(max_actions_per_cycle 2, max_actions_per_hour 3: 0 sent in the last hour)" in waiting[0]
    assert waiting[1].endswith("[dry_run]")


def test_dry_run_announces_again_a_miner_the_plan_sleeps_again_after_waking_it(fleet):
    # dry_run once announced each miner's sleep once for the life of the process: the second spike said nothing,
    # and the wake between went unannounced (the miner, never sent to sleep, read awake).
    prices = [SPIKE, SPIKE, CHEAP, CHEAP, SPIKE, SPIKE]
    on, dry = on_and_dry_run(fleet, "ctl-two-spikes", prices, {"allow": ["*"]})
    old = [("a1246", "sleep")] * 2
    assert on == [old, [], [("a1246", "wake")] * 2, [], old, []]
    assert dry == on


def test_a_miner_the_ramp_holds_asleep_after_the_price_falls_is_not_slept(fleet):
    # The spike sleeps both A1246s in the plan, control one a cycle; the price falls before the second is slept,
    # and the ramp holds both "asleep" while they wait to wake (their advice: "deferred by the ramp limit: price
    # below its break-even"). Neither `on` nor dry_run may sleep the second then: the plan wants it running (the
    # trial's dry_run worked through such a backlog at 10 a cycle after the price had fallen).
    plans: list = []
    on, dry = on_and_dry_run(fleet, "ctl-ramp-held", [SPIKE, CHEAP, CHEAP, CHEAP], {
        "allow": ["*"], "max_actions_per_cycle": 1}, plans, ramp_kw_per_min=8)  # both sleeps, then ~28 s a wake
    assert plans[0].miners_sleep == 2 and all(p.miners_sleep == 2 and p.deferred == 2 for p in plans[1:])
    assert all(a.held and a.reason.startswith("deferred by the ramp limit") and "below its break-even" in a.reason
               for p in plans[1:] for a in p.advice if a.key == "")
    assert on == [[("a1246", "sleep")], [], [], []]
    assert dry == on


def test_under_a_ramp_the_budget_goes_to_the_changes_control_makes_not_to_advice_for_miners_off_its_allowlist(fleet):
    # Every miner loses at 1 $/kWh; a 5 kW/min ramp lets one sleep through in this run (~3.7 kW an A1246, ~4 kW
    # an A15). The A1246s lose the most per kW, but only the A15s are on the allowlist: the ramp's budget went to
    # an A1246's sleep, which control never sends, and the A15s waited behind it (trial X; trial ZA: off-list
    # sleeps smaller than an A15's fitted first cycle after cycle). Now the off-list advice is not paced (nobody
    # here carries it out) and the budget is the A15s'. With control off the whole plan is advice, paced.
    allow = [fleet[i].address for i in (2, 3)]
    plans: list = []
    on, dry = on_and_dry_run(fleet, "ctl-ramp-allow", [1.0] * 3, {"allow": allow}, plans, ramp_kw_per_min=5)
    assert on == [[("a1566", "sleep")], [], []]
    assert dry == on
    asleep = {m for m, key in plans[0].keys.items() if key == SLEEP}
    old = {miner_id(fleet[i]) for i in OLD}
    assert old < asleep and len(asleep - old) == 1 and plans[0].deferred == 1, plans[0]  # the advice at once
    [advice] = run(config(fleet, "ctl-ramp-allow-off", price=1.0, control=None, ramp_kw_per_min=5), 1)
    assert [m for m, key in advice.curtailment.keys.items() if key == SLEEP] in ([miner_id(fleet[i])] for i in OLD)


def test_lifting_the_kill_switch_mid_ramp_does_not_send_the_backlog_at_once(fleet, tmp_path):
    # Trial ZA: killed through a spike, the plan let 3 sleeps through a 12 kW/min ramp (its minute's budget), none
    # sent; lifted, control sent all 3 in that cycle. Now what the plan moved while nothing was sent is planned
    # anew from the polls, through the ramp: its budget, spent while killed, lets nothing through for a while.
    stop = tmp_path / "stop"
    stop.touch()
    cfg = config(fleet, "ctl-kill-backlog", price=1.0, control={"mode": "on", "allow": ["*"],
                                                                "kill_switch_file": str(stop)}, ramp_kw_per_min=12)
    plans: list = []

    def step(cycle) -> None:
        plans.append(cycle.curtailment)
        if len(plans) == 3:
            stop.unlink()

    pipeline = build(cfg, sinks=[_Site(step)], service_mode=True)
    asyncio.run(pipeline.run(cycles=6))
    pipeline.close()
    assert len({m for m, key in plans[2].keys.items() if key == SLEEP}) == 3 and plans[2].killed  # the backlog
    assert fleet.commands() == [] and not plans[3].killed, commands(fleet)
    assert all(p.changes == 0 for p in plans[3:]) and plans[3].deferred == 4


def test_dry_runs_books_forget_the_oldest_miners_beyond_their_bound(monkeypatch):
    # Miner churn (ids that come and go) must not grow dry_run's books without limit.
    from collections import deque
    from models import MinerSample, SampleSource

    monkeypatch.setattr(curtailment_control, "MAX_TRACKED", 2)
    dry = curtailment_control._DryRun({}, {}, {}, deque())
    for n in range(3):
        sample = MinerSample.offline(miner=f"m{n}", host="127.0.0.1", port=4028, site="s", ts=TS,
                                      source=SampleSource.AVALON, reason="")
        dry.record(sample, "sleep", "", 1_800_000_000.0 + n)
    assert list(dry.left) == ["m1", "m2"] and list(dry.slept) == ["m1", "m2"] and len(dry.sent) == 3


def test_retries_share_the_cycles_budget_with_new_actions(fleet):
    # Firmware that says yes and never shows the change (it keeps reporting SoftOFF[0]): every sleep is sent
    # again each cycle. With one action a cycle, one command a cycle in all: retries once each got a budget of
    # their own, and the sends grew 1, 2, 3, 4... a cycle.
    for miner in fleet:
        miner.set_faults(device_keys={"SoftOFF": "0", "GHSspd": "88000.00"})
    cfg = config(fleet, "ctl-retry-budget", price=1.0,
                 control={"mode": "on", "allow": ["*"], "max_actions_per_cycle": 1, "confirm_retries": 5})
    cycles = run(cfg, 6)
    sent = [[e.attempt for e in c.curtailment.events if e.result == "sent"] for c in cycles]
    assert sent == [[1], [1], [1], [1], [2], [2]]  # each miner once, then the retries, one a cycle
    assert len(fleet.commands()) == 6


def test_a_command_in_flight_when_the_last_cycle_ends_still_reaches_the_miner_and_the_audit(fleet):
    # A slow miner: its reply comes after the cycle (and the run) ended. Ending the event loop would cancel
    # the send before the miner acted on it; the pipeline lets it finish instead (Pipeline.stop, drain).
    fleet[0].set_faults(slow_s=0.3)
    try:
        cfg = config(fleet, "ctl-last", price=SPIKE, control={"mode": "on", "allow": [fleet[0].address]})
        run(cfg, 1)
    finally:
        fleet[0].set_faults(slow_s=0.0)
    assert commands(fleet, 0) == ["ascset softoff"]
    results = [(line["action"], line["result"]) for line in audit(cfg)]
    # ... and no poll after it: the audit's last word on it says so
    assert results == [("sleep", "sent"), ("sleep", "accepted"), ("sleep", "unconfirmed")]
    assert audit(cfg)[-1]["detail"] == "the collector stopped before a poll could confirm it"


def test_a_command_with_no_answer_by_the_end_of_the_stop_grace_is_cancelled_and_the_audit_says_so(fleet, monkeypatch):
    monkeypatch.setattr(curtailment_control, "SEND_GRACE_S", 0.1)
    fleet[0].set_faults(slow_s=0.6)  # the poll waits for it (timeout_s 2); the stop does not
    try:
        cfg = config(fleet, "ctl-cancelled", price=SPIKE, control={"mode": "on", "allow": [fleet[0].address]})
        run(cfg, 1)
    finally:
        fleet[0].set_faults(slow_s=0.0)
    lines = audit(cfg)
    assert [(line["action"], line["result"]) for line in lines] == [("sleep", "sent"), ("sleep", "error")]
    # Cancelled while its clock was read (the first of a sleep's two requests): the command never left. Cancelled
    # while the command itself waited for its answer, the miner may have acted all the same: why the audit says
    # no more than that.
    assert commands(fleet, 0) == []
    assert lines[-1]["detail"] == "no answer within 0.1 s of the stop: cancelled"
    assert lines[-1]["command"] == lines[0]["command"] and lines[-1]["miner"] == lines[0]["miner"]


def test_a_kill_switch_file_stops_every_send_and_the_audit_says_so(fleet, tmp_path):
    kill = tmp_path / "stop"
    kill.touch()
    cfg = config(fleet, "ctl-kill", price=SPIKE, control={"mode": "on", "allow": ["*"], "kill_switch_file": str(kill)})
    cycles = run(cfg, 3)
    assert fleet.commands() == []
    assert cycles[-1].curtailment.killed
    assert [(line["result"], line["why"]) for line in audit(cfg)] == [("skipped", f"kill switch file {kill} exists")]
    site_line = next(line for line in curtailment_lines(cycles[-1].curtailment) if "scope=site" in line)
    assert "killed=1i" in site_line and 'control_mode="on"' in site_line  # (Grafana's Control and Kill switch)


def test_a_kill_switch_on_is_shown_on_while_the_mode_asked_is_off(fleet):
    # Trial ZG M1: with the mode set to off over MQTT, the plan (and so the state topic, Home Assistant's switch,
    # InfluxDB) said killed false while the switch was on; back to dry_run it read on again.
    cfg = config(fleet, "ctl-kill-off", price=SPIKE, control={"mode": "dry_run", "allow": ["*"], "mqtt_commands": True})
    path = config_loader.spool_directory(cfg) / "curtailment-commands.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 2, "killed": True, "killed_as_of": None, "mode": "off", "dr_targets": {}}))
    plan = run(cfg, 2)[-1].curtailment
    assert plan.control_mode == "off" and plan.killed
    assert fleet.commands() == []


@pytest.mark.parametrize("entry", ["dangling link", "looping link", "a folder that loops", "a file for a folder"])
def test_a_kill_switch_file_that_cannot_be_followed_or_checked_still_stops_every_send(fleet, tmp_path, entry):
    # Path.exists() follows links and swallows errors: a link leading nowhere read as "no kill switch", and
    # a name that cannot be checked (a folder the collector may not search, as these) raised every cycle,
    # unaudited (trial T, 6).
    kill = tmp_path / "stop"
    said = f"kill switch file {kill} exists"
    if entry == "dangling link":
        kill.symlink_to(tmp_path / "nowhere")
    elif entry == "looping link":
        kill.symlink_to(kill)
    elif entry == "a folder that loops":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        kill = tmp_path / "loop" / "stop"
        said = f"kill switch file {kill} cannot be checked (Too many levels of symbolic links): taken as ON"
    else:
        (tmp_path / "file").touch()
        kill = tmp_path / "file" / "stop"
        said = f"kill switch file {kill} cannot be checked (Not a directory): taken as ON"
    cfg = config(fleet, f"ctl-kill-{entry[:6].replace(' ', '')}", price=SPIKE,
                 control={"mode": "on", "allow": ["*"], "kill_switch_file": str(kill)})
    cycles = run(cfg, 3)
    assert fleet.commands() == []
    assert cycles[-1].curtailment.killed
    assert [(line["result"], line["why"]) for line in audit(cfg)] == [("skipped", said)]

def test_nothing_is_sent_to_a_miner_whose_id_another_address_claims_too(caplog):
    # A device on the LAN answering with a real miner's MAC took its id, and control would have acted on
    # whichever address held it (trial T, 7). The same seed and index give the same MAC: two units, one id.
    with run_fleet("a1246:1", base="127.48.7.1:0", seed=23) as one, \
            run_fleet("a1246:1", base="127.48.7.2:0", seed=23) as clone:
        assert one[0].mac == clone[0].mac
        both = type("Both", (), {"addresses": [*one.addresses, *clone.addresses]})()
        cfg = config(both, "ctl-clone", price=SPIKE, control={"mode": "on", "allow": ["*"]})
        cycles = run(cfg, 4)
        sent = one.commands() + clone.commands()
    plan = cycles[-1].curtailment
    assert plan is not None and SLEEP in plan.keys.values()  # the plan wants them asleep: control holds back
    assert sent == [] and not [line for line in audit(cfg) if line["result"] in ("sent", "accepted")]
    assert any("whose id another address claims too" in r.getMessage() for r in caplog.records)

def test_a_stale_price_means_no_action(fleet):
    # A live tariff and no price feed: the plan runs on the fallback price, flagged stale, and holds.
    cfg = config(fleet, "ctl-stale", price=None, control={"mode": "on", "allow": ["*"]})
    cycles = run(cfg, 3)
    assert fleet.commands() == []
    assert all(c.curtailment.stale for c in cycles)
    assert [line["result"] for line in audit(cfg)] == ["skipped"]
    assert "no fresh live price" in audit(cfg)[0]["why"]


def test_a_change_the_next_poll_does_not_show_is_retried_then_reported_unconfirmed(fleet, caplog):
    # This A1246's firmware keeps reporting SoftOFF[0] whatever it is told (it idles, but never says soft-off).
    fleet[0].set_faults(device_keys={"SoftOFF": "0", "GHSspd": "88000.00"})
    cfg = config(fleet, "ctl-unconfirmed", price=SPIKE,
                 control={"mode": "on", "allow": [fleet[0].address], "confirm_retries": 1})
    run(cfg, 5)
    assert commands(fleet, 0) == ["ascset softoff", "ascset softoff"]  # sent, then once more
    results = [line["result"] for line in audit(cfg)]
    assert results.count("unconfirmed") == 1 and "confirmed" not in results
    unconfirmed = next(line for line in audit(cfg) if line["result"] == "unconfirmed")
    assert "the poll shows state idle" in unconfirmed["detail"] and unconfirmed["attempt"] == 2
    # and the log says so (it was only in the audit: a unit ignoring curtailment went unnoticed, trial V)
    said = [r.getMessage() for r in caplog.records if "did not sleep" in r.getMessage()]
    assert len(said) == 1 and fleet[0].address.split(":")[0] in said[0] and unconfirmed["detail"] in said[0], said


@pytest.fixture
def full_power():
    """A fleet of its own, every miner at full power: the module's wakes those earlier tests slept, and a woken
    Avalon ramps for 60 s (the demand-response tests weigh the draw the polls show)."""
    with run_fleet(FLEET, base="127.48.1.1:0", seed=23) as fleet:
        yield fleet


def dr_schedule(tmp_path: Path, limit_kw: float) -> str:
    schedule = tmp_path / "dr.yaml"
    end = datetime.fromtimestamp(time.time() + 3600, timezone.utc).isoformat()
    schedule.write_text(f"targets:\n  - limit_kw: {limit_kw}\n    end: '{end}'\n    reason: 4CP\n")
    return str(schedule)


def test_a_demand_response_limit_is_met_in_the_polls_when_shed_miners_ignore_their_sleep(full_power, tmp_path):
    # Trial W: an A1246 that accepts soft-off and keeps mining left the site over its limit for the whole window
    # while the plan counted it as shed (`dr_met` true); now, once control reports it unconfirmed, the plan sheds
    # another in its place. Here both A1246s ignore it: in the end an A1566 is shed too.
    fleet = full_power
    for i in OLD:
        fleet[i].set_faults(ignores_soft_off=True)
    cfg = config(fleet, "ctl-dr-ignored", price=CHEAP, control={"mode": "on", "allow": ["*"], "confirm_retries": 0},
                 dr_schedule=dr_schedule(tmp_path, 13))  # of 15.6 kW: one A1246 would do
    results = run(cfg, 9)
    assert all(commands(fleet, i) == ["ascset softoff"] for i in OLD), [commands(fleet, i) for i in OLD]
    assert [i for i in (2, 3) if commands(fleet, i) == ["ascset softoff"]], [commands(fleet, i) for i in range(4)]
    last = results[-1].curtailment
    assert last.drawn_kw <= 13 and last.dr_met and last.miners_off_plan == 2, last
    drawn_kw = sum(s.power_w for s in results[-1].samples if s.power_w is not None) * 1.1 / 1000
    assert drawn_kw == pytest.approx(last.drawn_kw)


def test_a_demand_response_limit_under_action_limits_sheds_what_it_needs_not_more(full_power, tmp_path):
    # Trial X: with one action a cycle, the miners waiting their turn counted as not following, the plan shed
    # replacements (which waited too), and a 45 kW limit planned the whole 74 kW site off.
    fleet = full_power
    cfg = config(fleet, "ctl-dr-budget", price=CHEAP, control={"mode": "on", "allow": ["*"], "max_actions_per_cycle": 1},
                 dr_schedule=dr_schedule(tmp_path, 4.5))  # of 15.6 kW: three miners to shed, one sent a cycle
    results = run(cfg, 7)
    asleep = [r.curtailment.miners_sleep for r in results]
    assert asleep[0] == 3 and max(asleep) == 3, asleep
    assert sum(len(commands(fleet, i)) for i in range(4)) == 3  # one sleep a cycle, no replacement, no wake
    assert results[-1].curtailment.drawn_kw <= 4.5 and results[-1].curtailment.dr_met


def test_a_restart_in_a_demand_response_window_sends_nothing_new(full_power, tmp_path):
    # Trial Z: at the first cycle after a restart the miner slept for the limit was woken (the price says run)
    # and another shed in its place: two commands, and a wake that ignored min_off_s.
    fleet = full_power
    cfg = config(fleet, "ctl-dr-restart", price=CHEAP, control={"mode": "on", "allow": ["*"]},
                 dr_schedule=dr_schedule(tmp_path, 13))  # of 15.6 kW: one A1246
    run(cfg, 3)
    sent = [commands(fleet, i) for i in range(4)]
    assert sorted(map(len, sent)) == [0, 0, 0, 1] and sent.index(["ascset softoff"]) in OLD, sent
    results = run(cfg, 3)  # the service again, mid-window
    assert [commands(fleet, i) for i in range(4)] == sent
    assert all(r.curtailment.changes == 0 and r.curtailment.drawn_kw <= 13 and r.curtailment.dr_met for r in results)


def test_demand_response_sheds_only_what_control_may_touch_while_it_acts(full_power, tmp_path):
    # The cheapest kW to shed are an A1246's, but only the A1566s are on the allowlist: with control on (and in
    # dry_run, its rehearsal) the plan sheds an A1566, which control sends; before, it planned an A1246 that
    # control would never touch, and the site stayed over its limit all window with nothing else shed.
    fleet = full_power
    new = [fleet[i].address for i in (2, 3)]
    schedule = dr_schedule(tmp_path, 13)  # of 15.6 kW: any one miner will do
    shed = {}
    for mode in ("off", "dry_run"):
        [first] = run(config(fleet, f"ctl-dr-allow-{mode}", price=CHEAP, control={"mode": mode, "allow": new},
                             dr_schedule=schedule), 1)
        shed[mode] = [i for i in range(4) if first.curtailment.keys.get(miner_id(fleet[i])) == SLEEP]
    assert shed["off"] in ([0], [1]) and shed["dry_run"] in ([2], [3]), shed  # the advice as if followed: an A1246
    assert commands(fleet) == []
    results = run(config(fleet, "ctl-dr-allow-on", price=CHEAP, control={"mode": "on", "allow": new},
                         dr_schedule=schedule), 4)
    assert [commands(fleet, i) for i in OLD] == [[], []]
    assert sorted(len(commands(fleet, i)) for i in (2, 3)) == [0, 1], commands(fleet)
    last = results[-1].curtailment
    assert last.drawn_kw <= 13 and last.dr_met, last


def test_demand_response_counts_the_draw_of_miners_the_plan_sleeps_but_control_may_not_touch(full_power, tmp_path):
    # At this price the rules sleep both A1246s, which leaves the plan under a 13 kW limit; but they are off the
    # allowlist, so they keep mining: the plan counts their polled draw and sheds an A1566 instead (before, it
    # counted them asleep, shed nothing, and the site drew 15.6 kW against 13 all window).
    fleet = full_power
    cfg = config(fleet, "ctl-dr-allow-spike", price=SPIKE,
                 control={"mode": "on", "allow": [fleet[i].address for i in (2, 3)]}, dr_schedule=dr_schedule(tmp_path, 13))
    results = run(cfg, 5)
    assert [commands(fleet, i) for i in OLD] == [[], []]
    assert sorted(len(commands(fleet, i)) for i in (2, 3)) == [0, 1], commands(fleet)
    assert all(results[-1].curtailment.keys[miner_id(fleet[i])] == SLEEP for i in OLD)  # still the advice
    last = results[-1].curtailment
    assert last.drawn_kw <= 13 and last.dr_met and last.miners_off_plan == 2, last


# --- the replies real firmware sends -------------------------------------------------------------

def test_avalon_reply_variants_are_read_as_the_firmware_means_them():
    ok_info = b'{"STATUS":[{"STATUS":"I","When":1,"Code":118,"Msg":"ASC 0 set info: success softoff:1795780805"}],"id":1}\x00'
    ok_set = b'{"STATUS":[{"STATUS":"S","When":1,"Code":119,"Msg":"ASC 0 set OK"}],"id":1}'
    refused = b'{"STATUS":[{"STATUS":"E","When":1,"Code":120,"Msg":"ASC 0 set failed: mode 9 out of range"}],"id":1}'
    assert read_avalon_reply(ok_info, "m").result == "accepted"
    assert read_avalon_reply(ok_set, "m").result == "accepted"
    assert read_avalon_reply(b"", "m").result == "accepted"  # closed without a reply
    assert read_avalon_reply(refused, "m") .result == "refused"
    assert read_avalon_reply(b"<html>", "m").result == "error"
    assert read_avalon_reply(b'{"no": "status"}', "m").result == "error"


class _Firmware:
    """A loopback API port answering `ascset` as an A1466 does: soft-off with STATUS S 'ASC 0 set OK',
    soft-on by closing without a byte; `version` with `version_reply` (its clock, When, by default)."""

    VERSION = (b'{"STATUS":[{"STATUS":"S","When":1795780805,"Code":22,"Msg":"CGMiner versions"}],'
               b'"VERSION":[],"id":1}\x00')

    def __init__(self, version_reply: bytes = VERSION) -> None:
        self.sock = socket.create_server(("127.48.9.1", 0))
        self.port = self.sock.getsockname()[1]
        self.version_reply = version_reply
        self.received: list[str] = []  # the ascset parameters
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                request = json.loads(conn.recv(4096))
                if request["command"] == "version":
                    conn.sendall(self.version_reply)
                    continue
                self.received.append(request["parameter"])
                if ",softoff," in request["parameter"]:
                    conn.sendall(b'{"STATUS":[{"STATUS":"S","When":1,"Code":119,"Msg":"ASC 0 set OK"}],"id":1}\x00')


def test_a1466_style_replies_over_tcp_are_accepted():
    from collector.sinks import miner_commands

    firmware = _Firmware()
    off = asyncio.run(miner_commands.avalon("127.48.9.1", firmware.port, "sleep", timeout_s=2))
    on = asyncio.run(miner_commands.avalon("127.48.9.1", firmware.port, "wake", timeout_s=2))
    firmware.sock.close()
    assert (off.result, off.detail) == ("accepted", "ASC 0 set OK")
    assert on.result == "accepted" and "closed without a reply" in on.detail
    assert firmware.received == ["0,softoff,1795780805", "0,softon,1795780805"]  # its own time (When)
    assert (off.command, on.command) == ("ascset|0,softoff,1795780805", "ascset|0,softon,1795780805")


def test_a_miner_clock_far_from_ours_is_logged_once_an_hour_with_the_count(caplog, monkeypatch):
    # The command goes out in the miner's time either way; the operator learns that one clock is wrong.
    from collector.sinks import miner_commands

    def version(when: float) -> bytes:
        return (b'{"STATUS":[{"STATUS":"S","When":%d,"Code":22,"Msg":"CGMiner versions"}],"VERSION":[],"id":1}\x00'
                % int(when))

    def sleep(firmware: _Firmware) -> None:
        assert asyncio.run(miner_commands.avalon("127.48.9.1", firmware.port, "sleep", timeout_s=2)).result == "accepted"

    clocks = miner_commands.BoundedLog(miner_commands.log, every_s=3600)
    monkeypatch.setattr(miner_commands, "_clocks", clocks)
    in_step, ahead = _Firmware(version(time.time() + 20)), _Firmware(version(time.time() + 86_400 + 30))
    with caplog.at_level(logging.WARNING, logger=miner_commands.log.name):
        sleep(in_step)
        assert not caplog.records  # 20 s apart: no clock is wrong enough to say
        sleep(ahead)
        sleep(ahead)  # (held back: the next line an hour on says how many)
    in_step.sock.close(), ahead.sock.close()
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"127.48.9.1:{ahead.port}: its clock reads 1 day, 0:00:") and message.endswith(
        " ahead of ours: the sleep is stamped with its time, which it acts by; one of the two clocks is wrong (check "
        "NTP on the miner and on this box)")
    assert clocks._held == {"clocks": 1}


@pytest.mark.parametrize("version_reply", [
    b'{"STATUS":[{"STATUS":"S","Code":22,"Msg":"CGMiner versions"}],"id":1}',  # no When
    b'{"STATUS":[{"STATUS":"S","When":"soon","Code":22}],"id":1}',
    b'{"STATUS":[{"STATUS":"S","When":-5,"Code":22}],"id":1}',
    b'{"STATUS":[{"STATUS":"S","When":0,"Code":22}],"id":1}',
    b'{"STATUS":[{"STATUS":"S","When":1795780805.5,"Code":22}],"id":1}',
    b'{"STATUS":[{"STATUS":"S","When":true,"Code":22}],"id":1}',
    b'{"STATUS":[{"STATUS":"S","When":17957808050000,"Code":22}],"id":1}',
    b'{"STATUS":"S","When":1795780805}',  # not a list of objects
    b'<html>', b"",
])
def test_an_avalon_whose_time_cannot_be_read_is_sent_no_sleep_or_wake(version_reply):
    # A time from our clock instead could be the very fault (a box booted ahead): the change would wait for it.
    from collector.sinks import miner_commands

    firmware = _Firmware(version_reply)
    results = [asyncio.run(miner_commands.avalon("127.48.9.1", firmware.port, action, timeout_s=2))
               for action in ("sleep", "wake")]
    mode = asyncio.run(miner_commands.avalon("127.48.9.1", firmware.port, "mode", mode="1", timeout_s=2))
    firmware.sock.close()
    assert firmware.received == ["0,workmode,set,1"]  # a work mode carries no time: sent all the same
    assert mode.result == "accepted"
    for result in results:
        assert result.result == "error" and result.command == ""
        assert result.detail.startswith("not sent: its clock could not be read"), result.detail


def test_other_makes_sleep_and_wake_through_pyasic(tmp_path):
    with run_fleet("s19jpro:1", base="127.48.2.1", seed=3) as antminers:
        cfg = config(antminers, "ctl-pyasic", price=0.5, control={"mode": "on", "allow": ["*"]})
        run(cfg, 3)
        assert [c.command for c in antminers.commands()] == ["set_miner_conf"]
        assert antminers.commands()[0].params.get("miner-mode") in (1, "1")
        results = [(line["action"], line["result"], line["command"]) for line in audit(cfg)]
        # (what pyasic puts on the wire: trial P L2, a sleep rewrites the whole web config)
        assert ("sleep", "confirmed", "pyasic stop_mining: set_miner_conf, miner-mode 1 (the whole web config "
                "written back as read)") in results
        run(config(antminers, "ctl-pyasic", price=CHEAP, control={"mode": "on", "allow": ["*"]}), 3)
        conf = [c for c in antminers.commands() if c.command == "set_miner_conf"]
        assert len(conf) >= 2 and conf[-1].params.get("miner-mode") in (0, "0")


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 2, "slept": {}, "moved": {}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {"m": 1e30}, "moved": {}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {"m": "yesterday"}, "moved": {}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {}, "moved": {"m": 3}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {}, "moved": {"m": "2"}, "moved_to": {"m": ["0"]}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [NaN]}',
    b'{"version": 1, "slept": {"": 1}, "moved": {}, "failed": {}, "sent": []}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "slept_uptime": {"m": 5}}',
    b'{"version": 1, "slept": {"m": 1}, "moved": {}, "failed": {}, "sent": [], "slept_uptime": {"m": -5}}',
    b'{"version": 1, "slept": {"m": 1}, "moved": {}, "failed": {}, "sent": [], "slept_uptime": {"m": 1.5}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": []}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["reboot", "", "", "", "", 0, 1]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", "2", "", "", "", 0, 1]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["wake", "", "", "", "", 0, 1]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", "", "", "", "", "3.7", 1]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", "", "", "", "", 0, 0]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", "", 7, "", "", 0, 1]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", ""]}}',
    b'{"version": 1, "slept": {}, "moved": {}, "failed": {}, "sent": [], "pending": {"m": ["sleep", "", "' + b"x" * 1001 + b'", "", "", 0, 1]}}',
])
def test_an_unusable_control_state_is_set_aside_and_nothing_is_woken_from_it(tmp_path, content, caplog):
    from collector.sinks.curtailment_control import CurtailmentControl
    from models.curtailment import ControlConfig

    path = tmp_path / "curtailment-control.json"
    path.write_bytes(content)
    control = CurtailmentControl(ControlConfig(mode="on", allow=["*"]), "s1", state_path=path)
    assert control.slept == {} and control.moved == {} and not control.sent
    assert (tmp_path / "curtailment-control.json.unusable.1").read_bytes() == content
    assert "are not woken by it" in caplog.text


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b'{"version": 1, "killed": "no", "killed_as_of": null, "mode": null}',
    b'{"version": 1, "killed": false, "killed_as_of": null, "mode": "full"}',
    b'{"version": 1, "killed": false, "killed_as_of": "soon", "mode": null}',
    b'{"version": 1, "killed": false, "killed_as_of": null, "mode": ["on"]}',
    b'{"version": 1, "killed": false}', b" " * 5000,
])
def test_unusable_saved_mqtt_commands_are_set_aside_and_control_starts_killed(fleet, content, caplog):
    # The kill switch may have been on: nothing is sent until it is turned off (over MQTT).
    cfg = config(fleet, "ctl-cmds", price=SPIKE, control={"mode": "on", "allow": ["*"]})
    path = config_loader.spool_directory(cfg) / "curtailment-commands.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    cycles = run(cfg, 2)
    assert all(c.curtailment.killed for c in cycles) and fleet.commands() == []
    assert [line["why"] for line in audit(cfg)] == ["kill switch ON over MQTT"]
    assert (path.parent / "curtailment-commands.json.unusable.1").read_bytes() == content
    assert json.loads(path.read_bytes())["killed"] is True and "starts killed" in caplog.text


def test_a_control_state_saved_before_the_clock_was_stepped_back_is_kept_and_carried_on_from_now(tmp_path, caplog):
    # Saved while the clock was 3 h fast, then NTP stepped it back and the collector restarted: the miners
    # control put to sleep are still its own to wake, and the hour's sends count from now, not for 4 h.
    from collector.sinks.curtailment_control import CurtailmentControl
    from models.curtailment import ControlConfig

    now, ahead = 1_800_000_000.0, 3 * 3600.0
    path = tmp_path / "curtailment-control.json"
    state = {"version": 1, "slept": {"m1": now + ahead - 60}, "moved": {"m3": "1"},
             "failed": {"m2": now + ahead + 600}, "sent": [now + ahead - 60, now + ahead]}
    path.write_text(json.dumps(state))
    control = CurtailmentControl(ControlConfig(mode="on", allow=["*"]), "s1", state_path=path, clock=lambda: now)
    assert control.slept == {"m1": now - 60} and control.failed == {"m2": now + 600} and control.moved == {"m3": "1"}
    assert list(control.sent) == [now - 60, now]
    assert "3:00:00 ahead of the clock" in caplog.text and not list(tmp_path.glob("*.unusable*"))
    # Dated past any clock: garbage, as before.
    path.write_text(json.dumps({**state, "sent": [4_102_444_800]}))  # 2100-01-01
    control = CurtailmentControl(ControlConfig(mode="on", allow=["*"]), "s1", state_path=path, clock=lambda: now)
    assert control.slept == {} and (tmp_path / "curtailment-control.json.unusable.1").exists()


def test_a_control_state_dated_days_ahead_keeps_what_control_slept_and_no_backoff_outlasts_its_own(tmp_path, caplog):
    # The clock 3 days behind (a real-time clock that lost its time in a power cut, NTP not answering yet): the
    # miners control slept are still its own to wake; a miner's backoff runs no longer than failed_backoff_s
    # from now, whatever date the file gave it.
    from collector.sinks.curtailment_control import CurtailmentControl
    from models.curtailment import ControlConfig

    now, ahead = 1_800_000_000.0, 3 * 86400.0
    path = tmp_path / "curtailment-control.json"
    path.write_text(json.dumps({"version": 1, "slept": {"m1": now + ahead - 60}, "moved": {},
                                "failed": {"m2": now + ahead + 600, "m3": now + 40 * 86400}, "sent": [now + ahead]}))
    control = CurtailmentControl(ControlConfig(mode="on", allow=["*"], failed_backoff_s=3600), "s1", state_path=path,
                                 clock=lambda: now)
    assert control.slept == {"m1": now - 60} and list(control.sent) == [now]
    assert control.failed == {"m2": now + 600, "m3": now + 3600}
    assert "3 days, 0:00:00 ahead of the clock" in caplog.text and "the clock is likely behind" in caplog.text
    assert not list(tmp_path.glob("*.unusable*"))


def test_a_clock_stepped_back_while_running_moves_the_hours_sends_back_with_it():
    from collector.cycle import Cycle
    from collector.sinks.curtailment_control import CurtailmentControl
    from models.curtailment import ControlConfig, CurtailmentPlan

    wall = [1_800_000_000.0]
    control = CurtailmentControl(ControlConfig(mode="on", allow=["*"]), "s1", clock=lambda: wall[0])

    def cycle_at(t: float) -> Cycle:
        wall[0] = t
        cycle = Cycle("s1", curtailment_control._utc(t))
        cycle.curtailment = CurtailmentPlan("s1", cycle.ts, "margin", 0.05, "tariff", False, "", 1.0)
        return cycle

    asyncio.run(control.write(cycle_at(wall[0])))
    control.sent.extend([wall[0] - 10, wall[0]])
    control.slept["m1"], control.failed["m2"] = wall[0], wall[0] + 600
    asyncio.run(control.write(cycle_at(wall[0] - 3 * 3600 + 10)))  # NTP: the clock was 3 h fast
    now = wall[0]  # the times kept are as far from the clock as before the step
    assert list(control.sent) == [now - 10, now] and control.slept == {"m1": now} and control.failed == {"m2": now + 600}


def test_nothing_more_is_sent_once_the_audit_log_cannot_be_written(fleet, tmp_path):
    # A real full disk (a tmpfs filled by ballast): the first cycle's send was decided before the write
    # failed (it is kept to be written later, and logged); after it, nothing is done that the audit could
    # not record. One action a cycle: the second miner's sleep would come in cycle 2.
    with small_disk(tmp_path / "disk", "64k") as disk:
        fill(disk / "ballast")
        path = disk / "audit.jsonl"
        cfg = config(fleet, "ctl-full", price=SPIKE,
                     control={"mode": "on", "allow": ["*"], "audit_log": str(path), "max_actions_per_cycle": 1})
        cycles = run(cfg, 3)
    assert len(fleet.commands()) == 1
    events = [(e.result, e.miner) for c in cycles for e in c.curtailment.events]
    assert events[0][0] == "sent" and ("skipped", "*") in events and [r for r, _ in events].count("sent") == 1
    skipped = next(e for c in cycles for e in c.curtailment.events if e.result == "skipped")
    assert f"the audit log cannot be written ({path}: No space left on device)" in skipped.reason
    assert any("result=skipped" in line for c in cycles for line in curtailment_lines(c.curtailment)
               if line.startswith("action,"))


def test_lines_the_full_disk_kept_from_the_audit_log_are_logged_in_full_at_stop(fleet, tmp_path, caplog):
    with small_disk(tmp_path / "disk", "64k") as disk:
        fill(disk / "ballast")
        cfg = config(fleet, "ctl-full-stop", price=SPIKE, control={
            "mode": "on", "allow": ["*"], "audit_log": str(disk / "audit.jsonl"), "max_actions_per_cycle": 2})
        with caplog.at_level("ERROR", logger=audit_log.__name__):
            cycles = run(cfg, 2)
        assert (disk / "audit.jsonl").read_bytes() == b""
    stop = [r.getMessage() for r in caplog.records if "lost from it with this stop" in r.getMessage()]
    assert len(stop) == 1
    lost = [json.loads(line) for line in stop[0].splitlines()[1:]]
    # every event of the run in order (the stop's own last words after them): the two sleeps sent, the replies
    events = [(e.miner, e.result) for c in cycles for e in c.curtailment.events]
    assert [(e["miner"], e["result"]) for e in lost][:len(events)] == events
    results = [e["result"] for e in lost]
    assert results.count("sent") == 2 and results.count("accepted") == 2


def test_a_write_the_full_disk_cuts_short_leaves_only_whole_lines_and_the_rest_follows_once_it_has_room(tmp_path):
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "audit.jsonl"
        path.write_bytes(json.dumps({"pre": "x" * 3880}).encode() + b"\n")  # 3,892 bytes: 204 left in its page
        before = path.read_bytes()
        fill(disk / "ballast")
        log = audit_log.AuditLog(path, "s")
        event = lambda n: ActionEvent(TS, f"m{n}", "sleep", "sent", "why " * 80)  # noqa: E731  (~450 bytes)
        log.append([event(1), event(2)])  # the disk takes 204 bytes of the first line, then no more
        assert log.broken is not None and "No space left on device" in log.broken
        assert path.read_bytes() == before
        (disk / "ballast").unlink()
        log.append([event(3)])
        assert log.broken is None
        lines = path.read_bytes().splitlines()
    assert [json.loads(line).get("miner") for line in lines] == [None, "m1", "m2", "m3"]


@pytest.mark.parametrize("tail", [b'{"ts": "2026-11-27T12:00:05Z", "site": "ctl-torn", "mi', b"\0" * 4096],
                         ids=["cut short", "zeros"])
def test_an_audit_log_torn_by_a_power_cut_is_cut_back_to_its_last_whole_line_at_the_start(fleet, tmp_path, tail,
                                                                                          caplog):
    # A power cut in the middle of a write leaves a last line cut short (or, on some file systems, a tail of
    # zeros): the next start glued its first event to it, one line no JSON reader could read past.
    path = tmp_path / "audit.jsonl"
    whole = json.dumps({"ts": "2026-11-27T11:59:55Z", "site": "ctl-torn", "action": "sleep", "result": "sent"})
    path.write_bytes(whole.encode() + b"\n" + tail)
    cfg = config(fleet, "ctl-torn", price=SPIKE, control={"mode": "dry_run", "allow": ["*"], "audit_log": str(path)})
    with caplog.at_level("WARNING", logger=audit_log.__name__):
        run(cfg, 2)
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]  # every line reads
    assert lines[0] == json.loads(whole) and len(lines) > 1 and all(line["site"] == "ctl-torn" for line in lines)
    torn = [r.getMessage() for r in caplog.records if "its last line was torn" in r.getMessage()]
    assert len(torn) == 1 and (tail.decode() in torn[0] if tail.strip(b"\0") else "zeros" in torn[0]), torn


def test_collect_refuses_an_audit_log_it_cannot_append_to(fleet, tmp_path):
    path = tmp_path / "hashfleet.yaml"
    path.write_text(json.dumps({
        "site": "ctl-dir", "miners": fleet.addresses, "spool": {"directory": str(tmp_path / "spool")},
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": SPIKE}}, "network": NETWORK,
        "curtailment": {"control": {"mode": "on", "allow": ["*"], "audit_log": str(tmp_path)}}}))  # a directory
    result = subprocess.run([HASHFLEET, "collect", "--config", str(path), "--cycles", "1"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"curtailment.control.audit_log {tmp_path}: cannot be appended to (Is a directory)" in result.stderr
    assert fleet.commands() == []


def test_collect_refuses_an_audit_log_that_is_a_fifo_instead_of_hanging(fleet, tmp_path):
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)  # no reader: opening it to append would block for ever
    path = tmp_path / "hashfleet.yaml"
    path.write_text(json.dumps({
        "site": "ctl-fifo", "miners": fleet.addresses, "spool": {"directory": str(tmp_path / "spool")},
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": SPIKE}}, "network": NETWORK,
        "curtailment": {"control": {"mode": "on", "allow": ["*"], "audit_log": str(fifo)}}}))
    result = subprocess.run([HASHFLEET, "collect", "--config", str(path), "--cycles", "1"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"curtailment.control.audit_log {fifo}: cannot be appended to (not a regular file)" in result.stderr
    assert fleet.commands() == []
    with pytest.raises(OSError, match="not a regular file"):  # a device would swallow the lines
        audit_log.AuditLog(Path("/dev/null"), "s").check()


def test_the_audit_log_keeps_what_it_could_not_write_and_writes_it_first_once_it_can(tmp_path, monkeypatch):
    monkeypatch.setattr(audit_log, "MAX_BACKLOG", 3)
    path = tmp_path / "audit.jsonl"
    path.mkdir()  # not a file: every write fails
    log = audit_log.AuditLog(path, "s")
    event = lambda n: ActionEvent(TS, f"m{n}", "sleep", "sent", "why")  # noqa: E731
    log.append([event(1), event(2)])
    log.append([event(3), event(4)])
    assert log.broken is not None and "Is a directory" in log.broken and log.dropped == 1
    log.retry()
    assert log.broken is not None  # still a directory
    path.rmdir()
    log.retry()
    assert log.broken is None and log.dropped == 0
    assert [json.loads(line)["miner"] for line in path.read_text().splitlines()] == ["m2", "m3", "m4"]
    log.append([event(5)])
    assert [json.loads(line)["miner"] for line in path.read_text().splitlines()] == ["m2", "m3", "m4", "m5"]



def test_logrotate_moving_the_audit_log_as_the_docs_configure_it_loses_no_line(tmp_path):
    """docs/curtailment.md's logrotate stanza, run by the real logrotate on a live AuditLog: the lines
    before the move stay in the rotated file, the next ones go to a new file (the log is opened per write,
    so a rotation needs no signal and no copytruncate)."""
    logrotate = shutil.which("logrotate") or pytest.fail(
        "`logrotate` is missing: sudo apt-get install logrotate (or run ./scripts/test.sh)", pytrace=False)
    docs = (Path(__file__).parents[3] / "docs" / "curtailment.md").read_text()
    stanza = docs.split("/var/lib/hashfleet/spool/*/curtailment-actions.jsonl {", 1)[1].split("```", 1)[0]
    site = tmp_path / "spool" / "tx1"
    site.mkdir(parents=True)
    path = site / "curtailment-actions.jsonl"
    conf = tmp_path / "hashfleet.logrotate"
    conf.write_text(f"{tmp_path}/spool/*/curtailment-actions.jsonl {{{stanza}")
    log = audit_log.AuditLog(path, "tx1")
    log.check()
    event = lambda n: ActionEvent(TS, f"m{n}", "sleep", "sent", "why")  # noqa: E731
    log.append([event(1), event(2)])
    subprocess.run([logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)], check=True,
                   capture_output=True, timeout=30)
    log.append([event(3)])
    miners = lambda p: [json.loads(line)["miner"] for line in p.read_text().splitlines()]  # noqa: E731
    assert miners(site / "curtailment-actions.jsonl.1") == ["m1", "m2"]  # (compressed at the next rotation)
    assert miners(path) == ["m3"] and log.broken is None

@pytest.fixture
def disk_syncs(monkeypatch):
    """The files synced to disk (their paths then) and the renames made, in order, from here on."""
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return synced, replaced


def test_what_control_acts_on_after_a_restart_is_on_disk_before_its_commands_leave(fleet, disk_syncs):
    # A power cut (what curtailment is about) must not lose the audit's "sent" lines or which miners control
    # slept: their file is synced, then renamed over the old one. Written only when it changes: the sync is not
    # paid every cycle.
    synced, replaced = disk_syncs
    cfg = config(fleet, "ctl-sync", price=SPIKE, control={"mode": "on", "allow": ["*"]})
    run(cfg, 5)
    assert len([line for line in audit(cfg) if line["result"] == "sent"]) == 2
    spool = config_loader.spool_directory(cfg)
    assert str(spool / "curtailment-actions.jsonl") in synced
    state = [src for src, dst in replaced if dst == str(spool / "curtailment-control.json")]
    assert state and all(src in synced for src in state), (state, synced)
    assert len(state) < 5, state  # (one a cycle before)
    assert {m.replace(":", "") for m in control_state(cfg)["slept"]} == {fleet[i].mac.upper() for i in OLD}


def test_a_kill_switch_set_over_mqtt_is_on_disk_once_saved(tmp_path, disk_syncs):
    synced, replaced = disk_syncs
    path = tmp_path / "curtailment-commands.json"
    saved = curtailment_commands.SavedCommands(True, TS, None)
    curtailment_commands.save(path, saved)
    assert replaced == [(str(path.with_suffix(".tmp")), str(path))] and synced[0] == str(path.with_suffix(".tmp"))
    assert curtailment_commands.load(path) == saved


def test_a_flood_of_commands_over_mqtt_is_saved_a_few_times_and_its_last_word_reaches_the_disk(tmp_path, disk_syncs):
    # Each change was a synced write on the event loop: 20,000 kill-switch toggles held the cycles 16 s (trial T).
    from collector.sources.live_inputs import CurtailmentInputs

    synced, replaced = disk_syncs
    path = tmp_path / "curtailment-commands.json"
    inputs = CurtailmentInputs()
    inputs.keep_in(path)
    last = datetime(2026, 12, 7, 4, 0, 0, tzinfo=timezone.utc)

    async def flood() -> None:
        for i in range(2001):  # ON, OFF, ..., ON
            inputs.switch_kill(i % 2 == 0, last.replace(second=0, microsecond=i), topic="hashfleet/s/curtailment/kill/set")
        await until(lambda: (saved := curtailment_commands.load(path)) is not None and
                    saved.killed_as_of == last.replace(microsecond=2000), 10, "the last toggle on disk")

    asyncio.run(flood())
    writes = [src for src, dst in replaced if dst == str(path)]
    assert 1 <= len(writes) <= 3 and all(src in synced for src in writes), writes  # (2,001 before)
    assert curtailment_commands.load(path).killed

@pytest.mark.parametrize("mode", ["²", "٣", "1²", "", "-1", " 1"])
def test_a_work_mode_that_is_not_ascii_digits_is_never_sent(mode):
    # A miner's WORKMODE is its own text, and the plan's modes come from it: isdigit took "²" (int() then
    # raised) and "٣" (sent as work mode 3, one the miner never reported).
    with pytest.raises(ValueError, match="is not a WORKMODE number"):
        avalon_parameter("mode", ts=1, mode=mode)
    assert avalon_parameter("mode", ts=1, mode="2") == "0,workmode,set,2"
