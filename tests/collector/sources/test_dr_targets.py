"""Demand-response targets over MQTT, kept apart by source (collector/sources/dr_targets.py): what a source's
message may change (its own targets only), the bound on each source, what a replayed (retained) message may
do, and how they are kept across a restart (curtailment-commands.json). Against the real broker, with the
plan: tests/collector/test_curtailment_mqtt.py."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from collector.sources import curtailment_commands
from collector.sources.dr_targets import MAX_PER_SOURCE, DrTargets
from collector.sources.live_inputs import CurtailmentInputs, LiveInputs
from collector.sources.mqtt_ingest import MqttIngest
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
