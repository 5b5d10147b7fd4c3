"""Demand-response targets over MQTT, kept apart by source (collector/sources/dr_targets.py): what a source's
message may change (its own targets only), the bound on each source, what a replayed (retained) message may
do, and how they are kept across a restart (curtailment-commands.json). Against the real broker, with the
plan: tests/collector/test_curtailment_mqtt.py."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from collector.bounded_log import BoundedLog
from collector.sources import curtailment_commands
from collector.sources.dr_targets import MAX_PER_SOURCE, DrTargets
from collector.sources.live_inputs import CurtailmentInputs, LiveInputs
from collector.sources.mqtt_ingest import MAX_SEEN_COMMANDS, MqttIngest
from models import MqttConfig
from models.curtailment import DrTarget

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
FEED, HA = "prices/dr", "hashfleet/tx1/curtailment/dr_limit_kw/set"


def limit(kw: float, start_h: float | None = None, hours: float = 1) -> DrTarget:
    start = T0 + timedelta(hours=start_h) if start_h is not None else None
    return DrTarget(limit_kw=kw, start=start, end=(start or T0) + timedelta(hours=hours))


def test_a_source_keeps_the_targets_that_start_soonest_never_an_active_one_for_a_later_one():
    held = DrTargets()
    today = limit(1, -1, 2)
    assert held.take(FEED, today, T0) is True
    for day in range(1, MAX_PER_SOURCE):  # a feed announcing the coming days' windows
        assert held.take(FEED, limit(500, 24 * day), T0) is True
    assert held.take(FEED, limit(400, 24 * MAX_PER_SOURCE), T0) is None  # full: later than every held one
    sooner = limit(300, 2)
    assert held.take(FEED, sooner, T0) is True  # ... one sooner takes the latest one's place
    kept = list(held)
    assert len(kept) == MAX_PER_SOURCE and today in kept and sooner in kept and limit(500, 24 * 15) not in kept


def test_the_same_target_again_changes_nothing_and_ended_ones_are_dropped():
    held = DrTargets()
    assert held.take(FEED, limit(1), T0) is True
    assert held.take(FEED, limit(1), T0) is False  # a feed repeating itself, the broker replaying it
    assert held.take(FEED, limit(2, 1, 2), T0 + timedelta(minutes=90)) is True  # the first ended at T0 + 1 h
    assert list(held) == [limit(2, 1, 2)]


def test_a_bare_limit_replaces_its_own_sources_targets_and_a_withdrawal_touches_its_own_only():
    held = DrTargets()
    held.take(FEED, limit(1), T0)
    held.take(FEED, limit(2, 24), T0)
    held.take(HA, limit(50), T0, replace=True)
    held.take(HA, limit(1_000_000), T0, replace=True)  # Home Assistant's number changed: its own limit
    assert held.held() == {FEED: (limit(1), limit(2, 24)), HA: (limit(1_000_000),)}
    assert held.withdraw(HA) is True and held.withdraw(HA) is False
    assert held.held() == {FEED: (limit(1), limit(2, 24))}


def ingest() -> tuple[MqttIngest, LiveInputs]:
    cfg = MqttConfig.model_validate({"host": "b", "ingest": [{"topic": FEED, "kind": "dr_target"},
                                                             {"topic": HA, "kind": "dr_target"}]})
    live = LiveInputs()
    return MqttIngest(cfg, "tx1", live, clock=lambda: T0), live


def test_a_replayed_withdrawal_is_ignored_and_a_retained_bare_limit_refused():
    # Of unknown age, a replayed message may make curtailment more careful, never less (as the kill switch's OFF).
    mqtt, live = ingest()
    mqtt.handle(FEED, json.dumps({"limit_kw": 1, "end": (T0 + timedelta(hours=1)).isoformat()}).encode())
    mqtt.handle(FEED, b"null", retained=True)
    mqtt.handle(FEED, b"0", retained=True)
    mqtt.handle(HA, b"5", retained=True)  # undated: its hour would start again at every start and reconnect
    assert list(live.curtailment.dr_targets) == [limit(1)]
    assert mqtt.stats()["dropped"] == {"older": 2, "retained_undated": 1}
    mqtt.handle(FEED, b"null")  # published while the collector listens
    assert list(live.curtailment.dr_targets) == []


def test_a_target_a_full_source_cannot_hold_is_counted_refused():
    mqtt, live = ingest()
    for day in range(MAX_PER_SOURCE + 1):
        start = T0 + timedelta(days=day / 4)
        mqtt.handle(FEED, json.dumps({"limit_kw": 9, "start": start.isoformat(),
                                      "end": (start + timedelta(hours=1)).isoformat()}).encode())
    assert len(list(live.curtailment.dr_targets)) == MAX_PER_SOURCE
    assert mqtt.stats()["dropped"] == {"out_of_bounds": 1}


def test_targets_are_kept_across_a_restart_but_a_topic_no_longer_configured_loses_its_own(tmp_path):
    path = tmp_path / "curtailment-commands.json"
    now = datetime.now(timezone.utc)
    active = DrTarget(limit_kw=1, end=now + timedelta(minutes=30), reason="4CP")
    before = CurtailmentInputs(dr_sources=frozenset({FEED, HA, "old/dr"}))
    before.keep_in(path)
    before.take_dr_target(FEED, active, now)
    before.take_dr_target(HA, DrTarget(limit_kw=5, start=now, end=now + timedelta(hours=1)), now, replace=True)
    before.take_dr_target("old/dr", DrTarget(shed_kw=3, end=now + timedelta(hours=1)), now)
    after = CurtailmentInputs(dr_sources=frozenset({FEED, HA}))
    after.keep_in(path)
    assert after.dr_targets.held() == {s: t for s, t in before.dr_targets.held().items() if s != "old/dr"}
    assert not after.killed


def test_a_version_1_commands_file_is_still_read_and_a_bad_target_in_one_is_refused(tmp_path):
    path = tmp_path / "curtailment-commands.json"
    path.write_bytes(b'{"version": 1, "killed": true, "killed_as_of": null, "mode": "dry_run"}')
    saved = curtailment_commands.load(path)
    assert saved is not None and saved.killed and saved.dr_targets == {}
    path.write_bytes(b'{"version": 2, "killed": false, "killed_as_of": null, "mode": null, '
                     b'"dr_targets": {"prices/dr": [{"limit_kw": 1, "shed_kw": 2, "end": "2026-12-06T13:00:00Z"}]}}')
    with pytest.raises(ValueError):
        curtailment_commands.load(path)


KILL, MODE = "hashfleet/tx1/curtailment/kill/set", "hashfleet/tx1/curtailment/mode/set"


def commands_ingest(log_every_s: float = 1.0) -> tuple[MqttIngest, LiveInputs]:
    cfg = MqttConfig.model_validate({"host": "b", "ingest": [{"topic": FEED, "kind": "dr_target"},
                                                             {"topic": KILL, "kind": "curtailment_kill"},
                                                             {"topic": MODE, "kind": "curtailment_mode"}]})
    logger = logging.getLogger("collector.sources.live_inputs")
    live = LiveInputs(curtailment=CurtailmentInputs(change_log=BoundedLog(logger, every_s=log_every_s)))
    return MqttIngest(cfg, "tx1", live, clock=lambda: T0), live


def test_a_retained_command_handled_before_is_a_replay_that_never_undoes_what_came_after_it_nor_loosens_control():
    # Trial O F4: a broker restart (persistence on) handed back a retained 550 kW target withdrawn since, a retained
    # kill OFF turned ON since and an older retained `on`: each came back in force. Handled before: a target or a
    # withdrawal ignored; a switch or mode only where it makes control more careful.
    mqtt, live = commands_ingest()
    target = json.dumps({"limit_kw": 550, "end": (T0 + timedelta(hours=1)).isoformat()}).encode()
    mqtt.handle(MODE, b"on")  # retained by its publisher: the collector, listening, gets it live
    mqtt.handle(FEED, target)
    mqtt.handle(KILL, b"OFF")
    mqtt.handle(FEED, b"0")  # live, not retained
    mqtt.handle(KILL, b"ON")
    mqtt.handle(MODE, b"dry_run")
    for topic, payload in ((FEED, target), (KILL, b"OFF"), (MODE, b"on")):  # the reconnect's replays
        mqtt.handle(topic, payload, retained=True)
    asked = live.curtailment
    assert list(asked.dr_targets) == [] and asked.killed and asked.mode.value == "dry_run"
    assert mqtt.stats()["dropped"] == {"replayed": 3} and mqtt.counters()["mqtt_refused"] == 3
    mqtt.handle(KILL, b"OFF")  # live
    for i in range(MAX_SEEN_COMMANDS + 1):  # garbage on a command topic pushes no command out of memory
        mqtt.handle(FEED, b"maybe-%d" % i)
    mqtt.handle(FEED, target, retained=True)
    assert list(asked.dr_targets) == [] and mqtt.stats()["dropped"]["replayed"] == 4
    # First seen retained (at a start), the rules of a first sight hold: more careful only.
    fresh, live = commands_ingest()
    fresh.handle(KILL, b"ON", retained=True)
    fresh.handle(KILL, b"OFF", retained=True)
    assert live.curtailment.killed and fresh.stats()["dropped"] == {"older": 1}


def test_a_kill_switch_or_mode_published_again_while_the_collector_was_away_is_applied_where_it_is_more_careful():
    # Trial ZG H2: Home Assistant's switch ON, OFF (retained, as it sends them), a broker outage, ON again while the
    # collector reconnected: handed as the broker's retained copy, the same payload as the first ON, it was dropped
    # as a replay and control stayed un-killed. The same for the mode's select: off, on, then off while away.
    mqtt, live = commands_ingest()
    asked = live.curtailment
    for payload in (b"ON", b"OFF"):
        mqtt.handle(KILL, payload)
    for payload in (b"off", b"on"):
        mqtt.handle(MODE, payload)
    assert not asked.killed and asked.mode.value == "on"
    mqtt.handle(KILL, b"ON", retained=True)  # the reconnect: what the broker holds now
    mqtt.handle(MODE, b"off", retained=True)
    assert asked.killed and asked.mode.value == "off"
    assert mqtt.stats()["dropped"] == {} and mqtt.stats()["accepted"] == {"curtailment_kill": 3, "curtailment_mode": 3}
    changes, _ = asked.take_changes()
    assert [(c.what, c.old, c.new) for c in changes][-2:] == [("kill_switch", "OFF", "ON"), ("control_mode", "on", "off")]
    # A loosening one handed again changes nothing: OFF, then a live ON, then the retained OFF.
    mqtt.handle(KILL, b"OFF")
    mqtt.handle(KILL, b"ON")
    mqtt.handle(KILL, b"OFF", retained=True)
    assert asked.killed and mqtt.stats()["dropped"] == {"replayed": 1}


def test_a_target_or_switch_of_the_wrong_type_is_refused_not_read_as_a_figure():
    # Trial ZG H1: `{"limit_kw": true}` was a 1 kW limit (the plan slept the whole site) and "8" an 8 kW one; LOW 1:
    # `{"killed": "no"}` turned the switch off. The docs say `true` or "2500" where a number belongs is invalid.
    mqtt, live = commands_ingest()
    end = (T0 + timedelta(hours=1)).isoformat()
    for payload in ({"limit_kw": True, "end": end}, {"limit_kw": "8", "end": end}, {"shed_kw": "3", "end": end}):
        mqtt.handle(FEED, json.dumps(payload).encode())
    mqtt.handle(KILL, b"ON")
    for payload in ({"killed": "no"}, {"killed": 0.0}, {"killed": "OFF"}):
        mqtt.handle(KILL, json.dumps(payload).encode())
    asked = live.curtailment
    assert list(asked.dr_targets) == [] and asked.killed
    assert mqtt.stats()["dropped"] == {"invalid": 6}
    mqtt.handle(FEED, json.dumps({"limit_kw": 8, "end": end}).encode())  # a JSON number, whole or not, is one
    mqtt.handle(KILL, json.dumps({"killed": False}).encode())
    assert [t.limit_kw for t in asked.dr_targets] == [8.0] and not asked.killed


def test_each_change_over_mqtt_is_logged_old_to_new_and_kept_for_the_audit_log(caplog):
    # Trial O F4: the kill switch OFF and dry_run -> on (writes to miners again) left no log or audit line.
    mqtt, live = commands_ingest(log_every_s=0)  # (one line per kind a second: the flood bound, tested apart)
    target = json.dumps({"limit_kw": 550, "end": (T0 + timedelta(hours=1)).isoformat()}).encode()
    with caplog.at_level("WARNING", logger="collector.sources.live_inputs"):
        mqtt.handle(KILL, b"ON")
        mqtt.handle(KILL, b"ON")  # no change: no line
        mqtt.handle(MODE, b"dry_run")
        mqtt.handle(FEED, target)
        mqtt.handle(KILL, b"OFF")
        mqtt.handle(FEED, b"null")
    changes, not_kept = live.curtailment.take_changes()
    assert [(c.topic, c.what, c.old, c.new) for c in changes] == [
        (KILL, "kill_switch", "OFF", "ON"), (MODE, "control_mode", "the config's", "dry_run"),
        (FEED, "dr_target", "none", f"limit 550 kW until {(T0 + timedelta(hours=1)).isoformat()}"),
        (KILL, "kill_switch", "ON", "OFF"),
        (FEED, "dr_target", f"limit 550 kW until {(T0 + timedelta(hours=1)).isoformat()}", "none (withdrawn)")]
    assert not_kept == 0 and all(c.ts == T0 for c in changes) and live.curtailment.take_changes() == ([], 0)
    lines = [r.getMessage() for r in caplog.records]
    assert f"curtailment kill switch set over MQTT on {KILL}: ON -> OFF" in lines
    assert f"curtailment control mode set over MQTT on {MODE}: the config's -> dry_run" in lines
    assert sum("kill switch" in line for line in lines) == 2


def test_a_flood_of_commands_keeps_the_log_and_the_changes_bounded(caplog):
    mqtt, live = commands_ingest()
    with caplog.at_level("WARNING", logger="collector.sources.live_inputs"):
        for i in range(3_000):
            mqtt.handle(KILL, b"ON" if i % 2 == 0 else b"OFF")
    changes, not_kept = live.curtailment.take_changes()
    assert len(changes) == 1_000 and not_kept == 2_000 and not live.curtailment.killed
    assert len(caplog.records) <= 2  # one line per kind a second
