"""Home Assistant after an upgrade from before the site's hash in node ids (5c2fa11, trial Q L1), against real
Mosquitto and simulated miners over TCP, wired as `hashfleet collect` wires MQTT.

Before 5c2fa11 a site's part of its node ids was its slug alone: site `TX1` had `hashfleet_tx1` and
`hashfleet_tx1_<mac>`; now `hashfleet_tx1_<hash>...`. The old retained configs read the same state and status
topics, so Home Assistant showed every device twice, live. The collector looks at what the broker holds under
the old node ids, once per run, and clears (one empty retained message) the configs that read its own topics;
those node ids are today's of a site named `tx1`, whose configs read `hashfleet/tx1/...` and are left, like
anything else found there. A site in slug form kept its node ids and looks at nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest

from collector.mqtt.topics import Topics, fingerprint, slug
from collector.sinks import home_assistant as discovery
from models import MinerSample, MinerState, SampleSource
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.mqtt_support import NETWORK, Publisher, RunningCollector, Subscriber, mqtt_config, unique
from tests.collector.test_mqtt_availability import retained_until_marker
from tests.servers.fixtures import _finish, _start
from tests.servers.mosquitto import MosquittoBroker

ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1}
CURTAILMENT = {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0,
               "control": {"mode": "dry_run", "allow": ["*"], "mqtt_commands": True}}

# What the collector before 5c2fa11 announced (`git show 5c2fa11^:collector/sinks/home_assistant.py`),
# as (component, object_id): each miner's sensors, Problem and plan; the site's sensors, cost, health and
# curtailment entities.
OLD_MINER_ENTITIES = [*(("sensor", o) for o in ("hashrate", "power", "efficiency", "temp_chip_max", "state", "plan")),
                      ("binary_sensor", "problem")]
OLD_SITE_ENTITIES = [*(("sensor", o) for o in (
    "hashrate", "power", "miners_mining", "all_in_cost_per_btc", "cash_cost_per_btc", "energy_cost_per_btc",
    "power_price", "problems", "usd_lost_day", "miners_with_problems", "unprofitable", "top_problem",
    "curtailment_asleep", "curtailment_shed", "curtailment_saved", "curtailment_control")),
    ("select", "curtailment_mode"), ("number", "curtailment_dr_limit"), ("switch", "curtailment_kill")]


def old_configs(site: str, miners: list[str]) -> dict[str, dict]:
    """The retained configs the old code left, by topic: node ids `hashfleet_<slug(site)>` and
    `hashfleet_<slug(site)>_<slug(mac)>` (a MAC's slug is its own, then as now)."""
    topics = Topics("hashfleet", site)
    availability = [{"topic": topics.status, "payload_available": "online", "payload_not_available": "offline"}]
    site_node = f"hashfleet_{slug(site)}"
    out = {}
    for component, object_id in OLD_SITE_ENTITIES:
        out[f"homeassistant/{component}/{site_node}/{object_id}/config"] = {
            "name": object_id, "unique_id": f"{site_node}_{object_id}", "state_topic": topics.site_state,
            "availability": availability, "device": {"identifiers": [site_node]}}
    for miner in miners:
        node = f"{site_node}_{slug(miner)}"
        for component, object_id in OLD_MINER_ENTITIES:
            out[f"homeassistant/{component}/{node}/{object_id}/config"] = {
                "name": object_id, "unique_id": f"{node}_{object_id}", "state_topic": topics.miner_state(miner),
                "availability": availability, "device": {"identifiers": [node], "via_device": site_node}}
    return out


@pytest.fixture(scope="module")
def mosquitto():
    """A broker of this module's own: its watchers subscribe to `homeassistant/#`, and on the session's shared
    broker every retained config the tests before left came first (after the curtailment and MQTT suites, more
    than its watchers read in their 10 s: four tests timed out when run after them)."""
    server = _start(MosquittoBroker)
    try:
        yield server
    finally:
        _finish(server)


@pytest.fixture(scope="module")
def fleet():
    with run_fleet("a1246:1,a1566:1", base="127.51.7.1:0", seed=7) as sims:
        yield sims


def run_cycles(mosquitto, fleet, site: str, watcher: Subscriber, cycles: int = 3, *,
               cleared: list[str] = ()) -> None:
    """The collector with curtailment (every entity announced) for `cycles` cycles published, and until the
    watcher has seen the `cleared` topics cleared (the look at the old node ids is the connection's, apart from
    the cycles)."""
    topics = Topics("hashfleet", site)
    running = RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2, "economics": ECONOMICS,
        "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port), "curtailment": CURTAILMENT})
    try:
        for _ in range(cycles):
            running.next_result(lambda r: r.curtailment is not None)
        watcher.wait_json(topics.site_state)
        for topic in cleared:
            watcher.wait_for(lambda m: m.topic == topic and not m.payload, what=f"{topic} cleared")
    finally:
        running.close()


def run_watched(mosquitto, fleet, site: str, *, cleared: list[str] = ()) -> list:
    """`run_cycles` watched: every message under homeassistant/ and the site's topics while it ran, up to a
    marker published after it."""
    watcher = Subscriber(mosquitto.host, mosquitto.port, ["homeassistant/#", f"hashfleet/{site}/#", f"marker/{site}"])
    try:
        run_cycles(mosquitto, fleet, site, watcher, cleared=cleared)
        publisher = Publisher(mosquitto.host, mosquitto.port)
        try:
            publisher.publish(f"marker/{site}", "end")
            watcher.wait_for(lambda m: m.topic == f"marker/{site}", what="the marker")
        finally:
            publisher.close()
        return watcher.seen
    finally:
        watcher.close()


def test_an_upgraded_site_not_in_slug_form_clears_the_old_node_ids_configs_once(mosquitto, fleet):
    site = unique("TX")  # upper case: not a slug
    topics = Topics("hashfleet", site)
    macs = [format_mac(m.mac) for m in fleet.miners]
    old = old_configs(site, macs)
    assert len(old) == 19 + 2 * 7
    old_node, node = f"hashfleet_{slug(site)}", discovery.site_node_id(site)
    assert node != old_node
    publisher = Publisher(mosquitto.host, mosquitto.port)
    try:
        publisher.publish_many(list(old.items()), retain=True)
    finally:
        publisher.close()
    filters = ["homeassistant/#"]
    retained, _ = retained_until_marker(mosquitto.host, mosquitto.port, filters)
    assert set(old) <= set(retained)  # the broker holds what the old version left

    seen = run_watched(mosquitto, fleet, site, cleared=list(old))
    retained, _ = retained_until_marker(mosquitto.host, mosquitto.port, filters)
    assert not set(old) & set(retained), sorted(set(old) & set(retained))
    # Today's configs are there: the site's (with cost, health and curtailment) and each miner's.
    new = [t for t, _ in discovery.site_configs(topics, "homeassistant", cost=True, health=True)]
    new += discovery.curtailment_config_topics(topics, "homeassistant")
    for mac in macs:
        new += discovery.miner_config_topics(site, mac, "homeassistant")
        new.append(discovery.miner_plan_config(topics, mac, "homeassistant")[0])
    assert set(new) <= set(retained), sorted(set(new) - set(retained))
    # Bounded: one empty message per old config topic over three cycles, none anywhere else.
    cleared = [m.topic for m in seen if m.topic.startswith("homeassistant/") and not m.payload]
    assert sorted(cleared) == sorted(old)


def test_a_site_in_slug_form_clears_nothing(mosquitto, fleet):
    site = unique("tx")
    seen = run_watched(mosquitto, fleet, site)
    node = discovery.site_node_id(site)
    assert node == f"hashfleet_{site}"
    assert [m for m in seen if m.topic.startswith("homeassistant/") and node in m.topic and m.payload]
    assert not [m.topic for m in seen if m.topic.startswith("homeassistant/") and not m.payload]


def test_a_miner_named_after_the_sites_hash_does_not_get_a_live_device_cleared():
    # Old node id `hashfleet_tx1_<miner slug>`: a miner (an MQTT publisher names itself) called
    # `<hash of TX1>_aa_bb_cc_dd_ee_ff` had the node id the polled miner AA:BB:... has now, and one called
    # `<hash>` the site's own: its configs read this site's topics too, so no look may be made there.
    site = "TX1"
    hashed = fingerprint(site)
    assert discovery.old_miner_node_id(site, f"{hashed}_aa_bb_cc_dd_ee_ff") is None
    assert discovery.old_miner_node_id(site, hashed) is None
    assert discovery.old_miner_node_id(site, "AA:BB:CC:DD:EE:FF") == "hashfleet_tx1_aa_bb_cc_dd_ee_ff"
    assert discovery.node_configs_filter("homeassistant", "hashfleet_tx1_aa_bb_cc_dd_ee_ff") == \
        "homeassistant/+/hashfleet_tx1_aa_bb_cc_dd_ee_ff/+/config"
    assert discovery.old_miner_node_id("tx1", "AA:BB:CC:DD:EE:FF") is None
    assert discovery.old_site_node_id("tx1") is None


def publish_retained(mosquitto, messages: dict[str, Any]) -> None:
    publisher = Publisher(mosquitto.host, mosquitto.port)
    try:
        publisher.publish_many(list(messages.items()), retain=True)
    finally:
        publisher.close()


@contextmanager
def retained_for_this_test(mosquitto, messages: dict[str, Any]) -> Iterator[None]:
    """`messages` retained on the broker, cleared once the test is over: the broker is the session's, and
    other tests read every config under homeassistant/ (a hostile one would fail them)."""
    publish_retained(mosquitto, messages)
    try:
        yield
    finally:
        publish_retained(mosquitto, {topic: b"" for topic in messages})


def tx1_configs(site: str, miner: str) -> dict[str, Any]:
    """What a collector for site `site` (in slug form) retains today for its site device and one miner,
    built by today's code: its node ids are those `site.upper()` had before 5c2fa11."""
    topics = Topics("hashfleet", site)
    sample = MinerSample(miner=miner, host="10.0.0.9", site=site, ts=datetime.now(timezone.utc),
                         state=MinerState.MINING, source=SampleSource.MQTT, model="S19")
    pairs = discovery.site_configs(topics, "homeassistant", cost=True, health=True)
    pairs += discovery.curtailment_configs(topics, "homeassistant", commands=True)
    pairs += discovery.miner_configs(sample, topics, "homeassistant")
    pairs += [discovery.miner_problem_config(sample, topics, "homeassistant"),
              discovery.miner_plan_config(topics, miner, "homeassistant")]
    return {topic: json.dumps(payload).encode() for topic, payload in pairs}


def start_beside(mosquitto, fleet, site: str, *, others: dict[str, Any], own: dict[str, Any]) -> dict[str, bytes]:
    """Site `site` run a few cycles with `others` (not its own) and `own` (its old configs) retained beside it:
    exactly its own are cleared, one empty message each. What the broker then holds, by topic."""
    with retained_for_this_test(mosquitto, {**others, **own}):
        seen = run_watched(mosquitto, fleet, site, cleared=list(own))
        retained, _ = retained_until_marker(mosquitto.host, mosquitto.port, ["homeassistant/#"])
    assert not set(own) & set(retained)
    cleared = [m.topic for m in seen if m.topic.startswith("homeassistant/") and not m.payload]
    assert sorted(cleared) == sorted(own)
    return retained

def test_a_site_tx1_on_the_same_broker_keeps_its_devices_when_TX1_starts(mosquitto, fleet):
    site = unique("TX")
    low = site.lower()  # site `tx1`: in slug form, its node ids today are `TX1`'s before the hash
    macs = [format_mac(m.mac) for m in fleet.miners]
    theirs = tx1_configs(low, macs[0])  # a miner id both sites have: TX1's first miner's old node id
    old_node = f"hashfleet_{slug(site)}"
    assert discovery.site_node_id(low) == old_node == discovery.old_site_node_id(site)
    assert f"homeassistant/sensor/{old_node}_{slug(macs[0])}/hashrate/config" in theirs
    # TX1's own leftovers beside them: its second miner's old configs and an entity of an older version on the
    # site's old node (cleared: the look at each node ran).
    own = {t: c for t, c in old_configs(site, macs[1:]).items() if f"_{slug(macs[1])}/" in t}
    own[f"homeassistant/sensor/{old_node}/retired_entity/config"] = {
        "name": "retired", "state_topic": Topics("hashfleet", site).site_state}
    retained = start_beside(mosquitto, fleet, site, others=theirs, own=own)
    assert {t: retained.get(t) for t in theirs} == theirs  # tx1's site device and miner, untouched


def test_hostile_retained_payloads_on_the_old_topics_are_left_and_cost_nothing_else(mosquitto, fleet):
    site = unique("TX")
    topics = Topics("hashfleet", site)
    macs = [format_mac(m.mac) for m in fleet.miners]
    old = old_configs(site, macs)
    node = f"hashfleet_{slug(site)}_{slug(macs[0])}"
    ours = {"name": "x", "state_topic": topics.miner_state(macs[0]),
            "availability": [{"topic": topics.status}]}
    hostile = {  # on the first miner's old node, in the place of its own old configs
        f"homeassistant/sensor/{node}/hashrate/config": json.dumps({**ours, "pad": "x" * 20_000}).encode(),
        f"homeassistant/sensor/{node}/power/config": b"\xff\xfe not JSON {",
        f"homeassistant/sensor/{node}/efficiency/config": json.dumps(
            {**ours, "state_topic": "hashfleet/elsewhere/state", "availability": []}).encode(),
        f"homeassistant/sensor/{node}/temp_chip_max/config": json.dumps([ours]).encode(),
        f"homeassistant/sensor/{node}/state/config": json.dumps(
            {**ours, "availability": [{"topic": "hashfleet/elsewhere/status"}]}).encode(),
        f"homeassistant/sensor/{node}/plan/config": b"[" * 8000 + b"]" * 8000,
        f"homeassistant/sensor/{node}/no_topics/config": b'{"name": "nothing read"}',
    }
    own = {t: c for t, c in old.items() if t not in hostile}  # the rest, the site's 19 too: cleared
    assert len(own) == 19 + 7 + 1
    retained = start_beside(mosquitto, fleet, site, others=hostile, own=own)
    assert {t: retained.get(t) for t in hostile} == hostile
    # Nothing else went: today's configs are all there.
    new = [t for t, _ in discovery.site_configs(topics, "homeassistant", cost=True, health=True)]
    new += discovery.curtailment_config_topics(topics, "homeassistant")
    for mac in macs:
        new += discovery.miner_config_topics(site, mac, "homeassistant")
    assert set(new) <= set(retained), sorted(set(new) - set(retained))
