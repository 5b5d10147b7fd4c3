"""Home Assistant after an upgrade from before the site's hash in node ids (5c2fa11, trial Q L1), against real
Mosquitto and simulated miners over TCP, wired as `hashfleet collect` wires MQTT.

Before 5c2fa11 a site's part of its node ids was its slug alone: site `TX1` had `hashfleet_tx1` and
`hashfleet_tx1_<mac>`; now `hashfleet_tx1_<hash>...`. The old retained configs read the same state and status
topics, so Home Assistant showed every device twice, live. The collector clears them itself (one empty
retained message per old config topic, once per run); a site in slug form kept its node ids and clears nothing.
"""

from __future__ import annotations

import pytest

from collector.mqtt.topics import Topics, fingerprint, slug
from collector.sinks import home_assistant as discovery
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.mqtt_support import NETWORK, Publisher, RunningCollector, Subscriber, mqtt_config, unique
from tests.collector.test_mqtt_availability import retained_until_marker

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
def fleet():
    with run_fleet("a1246:1,a1566:1", base="127.51.7.1:0", seed=7) as sims:
        yield sims


def run_cycles(mosquitto, fleet, site: str, watcher: Subscriber, cycles: int = 3) -> None:
    """The collector with curtailment (every entity announced) for `cycles` cycles published."""
    topics = Topics("hashfleet", site)
    running = RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2, "economics": ECONOMICS,
        "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port), "curtailment": CURTAILMENT})
    try:
        for _ in range(cycles):
            running.next_result(lambda r: r.curtailment is not None)
        watcher.wait_json(topics.site_state)
    finally:
        running.close()


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

    watcher = Subscriber(mosquitto.host, mosquitto.port, [*filters, f"hashfleet/{site}/#"])
    try:
        run_cycles(mosquitto, fleet, site, watcher)
    finally:
        watcher.close()
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
    cleared = [m.topic for m in watcher.seen if m.topic.startswith("homeassistant/") and not m.payload]
    assert sorted(cleared) == sorted(old)


def test_a_site_in_slug_form_clears_nothing(mosquitto, fleet):
    site = unique("tx")
    watcher = Subscriber(mosquitto.host, mosquitto.port, ["homeassistant/#", f"hashfleet/{site}/#"])
    try:
        run_cycles(mosquitto, fleet, site, watcher)
    finally:
        watcher.close()
    node = discovery.site_node_id(site)
    assert node == f"hashfleet_{site}"
    assert [m for m in watcher.seen if m.topic.startswith("homeassistant/") and node in m.topic and m.payload]
    assert not [m.topic for m in watcher.seen if m.topic.startswith("homeassistant/") and not m.payload]


def test_a_miner_named_after_the_sites_hash_does_not_get_a_live_device_cleared():
    # Old node id `hashfleet_tx1_<miner slug>`: a miner (an MQTT publisher names itself) called
    # `<hash of TX1>_aa_bb_cc_dd_ee_ff` had the node id the polled miner AA:BB:... has now, and one called
    # `<hash>` the site's own: clearing those would delete live devices.
    site = "TX1"
    hashed = fingerprint(site)
    assert discovery.old_miner_config_topics(site, f"{hashed}_aa_bb_cc_dd_ee_ff", "homeassistant") == []
    assert discovery.old_miner_config_topics(site, hashed, "homeassistant") == []
    assert discovery.old_miner_config_topics(site, "AA:BB:CC:DD:EE:FF", "homeassistant") == [
        f"homeassistant/{component}/hashfleet_tx1_aa_bb_cc_dd_ee_ff/{object_id}/config"
        for component, object_id in (*(("sensor", o) for o in ("hashrate", "power", "efficiency", "temp_chip_max",
                                                                 "state")), ("binary_sensor", "problem"),
                                     ("sensor", "plan"))]
    assert discovery.old_miner_config_topics("tx1", "AA:BB:CC:DD:EE:FF", "homeassistant") == []
    assert discovery.old_site_config_topics(Topics("hashfleet", "tx1"), "homeassistant") == []
