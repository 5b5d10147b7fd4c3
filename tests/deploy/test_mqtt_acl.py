"""The stack's MQTT users and ACL (trial O F1, F2), against the real Mosquitto run with the shipped config and
ACL (paths and ports changed only) and the users deploy/secrets/init-secrets.sh creates, and a real collector:

- a device's credentials can publish its readings, and cannot publish the kill switch, the control mode, a
  demand-response limit or a price, nor overwrite the collector's status or discovery: the collector never
  sees them (Home Assistant, which reads every hashfleet topic, does not either) and nothing changes;
- Home Assistant's kill switch ON reaches the collector (curtailment-commands.json, curtailment/state);
- the collector's own publishes all go through (none refused);
- docs/mqtt.md's ACL example lets the collector read its command topics (F1: an ACL written from the old
  sentence acknowledged the subscription and dropped every command, silently).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from paho.mqtt.client import topic_matches_sub

from collector.mqtt.topics import Topics
from collector.sinks import home_assistant as discovery
from simulators.fleet import run_fleet
from tests.collector.mqtt_support import NETWORK, Publisher, RunningCollector, Subscriber, unique
from tests.deploy.site_broker import SITE_ACL, run_init_secrets, shipped_broker
from tests.support import REPO as ROOT

COMMANDS = ("kill", "mode", "dr_limit_kw")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    secrets = tmp_path_factory.mktemp("secrets")
    done = run_init_secrets(secrets)
    assert done.returncode == 0, done.stderr
    with shipped_broker(secrets) as running:
        yield running


def test_a_device_cannot_drive_control_nor_pose_as_the_collector_and_home_assistant_can(broker, tmp_path):
    site = unique("acl")
    topics = Topics("hashfleet", site)
    node = discovery.site_node_id(site)
    kill_config = f"homeassistant/switch/{node}/curtailment_kill/config"
    ha = broker.passwords["homeassistant"]
    with run_fleet("a1246:2", base="127.62.0.1:0", seed=5) as fleet:
        running = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
            "economics": {"tariff": {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 60}},
            "network": NETWORK, "spool": {"directory": str(tmp_path / "spool")},
            "mqtt": {"host": broker.host, "port": broker.port, "connect_timeout_s": 5, "username": "hashfleet",
                     "password_file": str(broker.secrets / "mqtt_password"),
                     "ingest": [{"topic": "devices/+/telemetry", "kind": "miner_telemetry"},
                                {"topic": "prices/power", "kind": "power_price"}]},
            "curtailment": {"control": {"mode": "dry_run", "allow": ["*"], "mqtt_commands": True}},
        })
        watcher = Subscriber(broker.host, broker.port, [f"hashfleet/{site}/#", f"homeassistant/+/{node}/#"],
                             user="homeassistant", password=ha)
        device = Publisher(broker.host, broker.port, user="devices", password=broker.passwords["devices"])
        device_reader = Subscriber(broker.host, broker.port, ["#"], user="devices", password=broker.passwords["devices"])
        home_assistant = Publisher(broker.host, broker.port, user="homeassistant", password=ha)
        try:
            # The collector's publishes reach Home Assistant: status, discovery, curtailment state.
            watcher.wait_for(lambda m: m.topic == topics.status and m.payload == b"online", what="status online")
            assert watcher.wait_json(kill_config)["command_topic"] == topics.curtailment_set("kill")
            watcher.wait_json(topics.curtailment_state, lambda d: d["killed"] is False)

            # A device: its telemetry is taken; control, prices and the collector's own topics are not its.
            device.publish("devices/bitaxe-7/telemetry", {"hashrate_ths": 1.2, "power_w": 18.0})
            hostile = [(topics.curtailment_set("kill"), "true"), (topics.curtailment_set("mode"), "off"),
                       (topics.curtailment_set("dr_limit_kw"), json.dumps(
                           {"limit_kw": 0.5, "end": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()})),
                       ("prices/power", "0.9")]
            device.publish_many(hostile)
            device.publish(topics.status, "offline", retain=True)
            device.publish(kill_config, "", retain=True)  # would remove the switch from Home Assistant
            # Barrier: published after the device's were acknowledged, so it arrives after them, if they arrived.
            home_assistant.publish("prices/power", {"usd_per_kwh": 0.02})
            priced = running.next_result(lambda r: r.curtailment is not None and r.curtailment.price_usd_kwh == 0.02,
                                         what="Home Assistant's price")
            assert not priced.curtailment.killed and priced.curtailment.control_mode == "dry_run"
            assert priced.curtailment.dr_target is None
            assert any(s.source == "mqtt" and s.hashrate_ths == 1.2 for s in priced.samples), "the device's telemetry"
            health = watcher.wait_json(topics.collector, lambda d: d["ingest"]["accepted"].get("power_price"))
            assert health["ingest"]["accepted"]["power_price"] == 1, health["ingest"]  # Home Assistant's only
            assert not any(m.topic.startswith(topics.curtailment + "/") and m.topic.endswith("/set") for m in watcher.seen)
            assert not any(m.topic in (topics.status, kill_config) and m.payload in (b"offline", b"")
                           for m in watcher.seen)
            late = Subscriber(broker.host, broker.port, [topics.status, kill_config], user="homeassistant", password=ha)
            try:  # what the broker keeps: the collector's
                assert late.wait_for(lambda m: m.topic == topics.status).payload == b"online"
                assert json.loads(late.wait_for(lambda m: m.topic == kill_config).payload)["name"]
            finally:
                late.close()
            commands = tmp_path / "spool" / "curtailment-commands.json"
            assert not commands.exists() or json.loads(commands.read_text()).get("killed") is not True

            # Home Assistant's switch (retained, as its discovery asks): the collector obeys.
            home_assistant.publish(topics.curtailment_set("kill"), "ON", retain=True)
            running.next_result(lambda r: r.curtailment is not None and r.curtailment.killed, what="killed")
            assert watcher.wait_json(topics.curtailment_state, lambda d: d["killed"] is True)
            assert json.loads(commands.read_text())["killed"] is True
            # ... and a device cannot turn it off again.
            device.publish(topics.curtailment_set("kill"), "OFF")
            home_assistant.publish("prices/power", {"usd_per_kwh": 0.03})
            after = running.next_result(lambda r: r.curtailment is not None and r.curtailment.price_usd_kwh == 0.03,
                                        what="the second price")
            assert after.curtailment.killed

            # None of the collector's publishes was refused (MQTT v5 counts each refusal), and the device read nothing.
            counted = watcher.wait_json(topics.collector, lambda d: d["mqtt"]["published"] > 100)
            assert counted["mqtt"]["refused"] == 0, counted["mqtt"]
            assert device_reader.seen == [] and device_reader.messages.empty()
        finally:
            home_assistant.publish(topics.curtailment_set("kill"), b"", retain=True)
            running.close()
            for client in (watcher, device, device_reader, home_assistant):
                client.close()


# --- the ACL as written: docs/mqtt.md's example and the shipped file ------------------------------------------


def _rules(text: str) -> dict[str, list[tuple[str, str]]]:
    """Mosquitto ACL lines -> {user: [(access, filter)]} (`topic [read|write|readwrite] FILTER` after `user NAME`)."""
    rules: dict[str, list[tuple[str, str]]] = {}
    user = None
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            user = words[1]
            rules.setdefault(user, [])
        elif words[:1] == ["topic"] and user is not None:
            access, pattern = (words[1], words[2]) if len(words) == 3 else ("readwrite", words[1])
            rules[user].append((access, pattern))
    return rules


def _may(rules, user: str, access: str, topic: str) -> bool:
    return any(access in granted and topic_matches_sub(pattern, topic) for granted, pattern in rules.get(user, []))


def _check(rules) -> None:
    topics = Topics("hashfleet", "tx1")
    for what in COMMANDS:
        command = topics.curtailment_set(what)
        assert _may(rules, "hashfleet", "read", command), f"the collector cannot read {command}: the switch is dead"
        assert _may(rules, "homeassistant", "write", command), command
        assert not _may(rules, "devices", "write", command) and not _may(rules, "devices", "read", command), command
        assert not _may(rules, "hashfleet", "write", command), command
    own = [topics.status, topics.site_state, topics.site_cost, topics.collector, topics.site_health,
           topics.miner_state("m"), topics.miner_cost("m"), topics.miner_health("m"), topics.miner_plan("m"),
           topics.curtailment_state, topics.curtailment_actions, "homeassistant/sensor/hashfleet_tx1/power/config"]
    for topic in own:
        assert _may(rules, "hashfleet", "write", topic), topic
        assert not _may(rules, "devices", "write", topic) and not _may(rules, "homeassistant", "write", topic), topic
    old_config = "homeassistant/sensor/hashfleet_tx1/power/config"  # TX1's before the site's hash
    assert _may(rules, "hashfleet", "read", old_config), "the collector cannot read its old configs to clear them"
    assert _may(rules, "devices", "write", "devices/bitaxe-7/telemetry") and _may(rules, "hashfleet", "read",
                                                                                 "devices/bitaxe-7/telemetry")
    assert not _may(rules, "devices", "write", "prices/power") and _may(rules, "homeassistant", "write", "prices/power")


def test_the_shipped_acl_gives_each_user_its_own_topics():
    _check(_rules(SITE_ACL.read_text()))


def test_docs_mqtt_acl_example_grants_the_collector_its_command_topics():
    text = (ROOT / "docs/mqtt.md").read_text()
    block = re.search(r"\*\*ACL\.\*\*.*?```text\n(.*?)```", text, re.S)
    assert block, "docs/mqtt.md: the ACL paragraph has no ```text example"
    _check(_rules(block.group(1)))
    # The sentence trial O followed (F1) grants no command topic: the check catches it.
    before = "user hashfleet\ntopic write hashfleet/#\ntopic write homeassistant/#\ntopic read prices/power\n"
    with pytest.raises(AssertionError, match="cannot read"):
        _check(_rules(before))
