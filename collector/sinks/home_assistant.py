"""Home Assistant MQTT discovery: the config messages that make every miner, and the site, a device.

Pure: samples and topics in, `(topic, payload)` pairs out; the sink publishes them retained. One
sensor per config message, on `<discovery_prefix>/sensor/<node_id>/<object_id>/config`, with
`node_id` = `hashfleet_<site>_<miner>` (a miner) or `hashfleet_<site>` (the site), slugged to
[a-z0-9_-]; a site or miner id the slug changes gets its fingerprint appended, so no two share a node
id. Every sensor carries what Home Assistant needs: `name`, `unique_id`, `state_topic`,
`value_template`, `device` (with `identifiers`), `availability` (the collector's status topic, so
every entity shows unavailable when the collector dies: its last will), `expire_after` (`expire_after_s`:
the sensor goes unavailable when its state stops coming, even when the last will never fires: a broker
that dies first and keeps `online`) and `unit_of_measurement`, `device_class` and `state_class` where they
apply. A text a sensor shows as its state is cut to MAX_STATE_CHARS (`state_text`). The node ids a site not in
slug form had before its hash (`old_site_node_id`, `old_miner_node_id`) are where the sink looks for its old
configs after an upgrade, and `config_reads_under` tells which retained config there is this site's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from collector.mqtt.topics import OFFLINE, ONLINE, Topics, fingerprint, hashed_shape, slug
from models import MinerSample, MinerState

try:
    _VERSION = version("hashfleet")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0"

ORIGIN = {"name": "hashfleet", "sw_version": _VERSION}
COMPONENT = "sensor"


@dataclass(frozen=True)
class Sensor:
    object_id: str
    name: str
    field: str  # key in the state topic's JSON
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    icon: str | None = None
    precision: int | None = None
    options: tuple[str, ...] = ()


MINER_SENSORS = (
    Sensor("hashrate", "Hashrate", "hashrate_ths", "TH/s", icon="mdi:pickaxe", precision=2),
    Sensor("power", "Power", "power_w", "W", "power", precision=0),
    Sensor("efficiency", "Efficiency", "efficiency_j_th", "J/TH", icon="mdi:flash", precision=1),
    Sensor("temp_chip_max", "Hottest chip", "temp_chip_max_c", "°C", "temperature", precision=0),
    Sensor("state", "State", "state", device_class="enum", state_class=None, icon="mdi:state-machine",
           options=tuple(s.value for s in MinerState)),
)
SITE_SENSORS = (  # from <prefix>/<site>/state
    Sensor("hashrate", "Hashrate", "hashrate_ths", "TH/s", icon="mdi:pickaxe", precision=1),
    Sensor("power", "Power", "power_w", "W", "power", precision=0),
    Sensor("miners_mining", "Miners mining", "miners_mining", icon="mdi:server", precision=0),
)
SITE_HEALTH_SENSORS = (  # from <prefix>/<site>/health
    Sensor("problems", "Problems", "problems", icon="mdi:wrench", precision=0),
    Sensor("usd_lost_day", "Lost to faults", "usd_lost_day", "USD/d", icon="mdi:cash-remove", precision=2),
    Sensor("miners_with_problems", "Miners with problems", "miners_with_problems", icon="mdi:server-remove",
           precision=0),
    Sensor("unprofitable", "Miners costing more than they earn", "unprofitable", icon="mdi:cash-minus", precision=0),
    Sensor("top_problem", "Top of the repair queue", "top_problem", state_class=None, icon="mdi:format-list-numbered"),
)
SITE_COST_SENSORS = (  # from <prefix>/<site>/cost
    Sensor("all_in_cost_per_btc", "Cost per BTC", "all_in_cost_per_btc", "USD/BTC", icon="mdi:bitcoin", precision=0),
    Sensor("cash_cost_per_btc", "Cash cost per BTC", "cash_cost_per_btc", "USD/BTC", icon="mdi:bitcoin", precision=0),
    Sensor("energy_cost_per_btc", "Energy cost per BTC", "energy_cost_per_btc", "USD/BTC", icon="mdi:bitcoin",
           precision=0),
    Sensor("power_price", "Power price", "power_price_usd_kwh", "USD/kWh", icon="mdi:cash", precision=4),
)


def expire_after_s(interval_s: float, keepalive_s: float, every_cycles: int = 1) -> int:
    """Seconds Home Assistant keeps a sensor's state that is published every `every_cycles` cycles: that
    period, plus two cycles (one late or lost), plus `keepalive_s` (how long the connection may wait on
    lost acknowledgements before it reconnects and publishes every retained state again)."""
    return math.ceil((every_cycles + 2) * interval_s + keepalive_s)


MAX_STATE_CHARS = 255  # Home Assistant refuses a longer state: the sensor shows unknown, an error is logged


def state_text(text: str) -> str:
    """`text` as a sensor's state Home Assistant takes: cut to MAX_STATE_CHARS, with an ellipsis."""
    return text if len(text) <= MAX_STATE_CHARS else text[:MAX_STATE_CHARS - 1] + "…"


def site_node_id(site: str) -> str:
    return f"hashfleet_{_site_slug(site)}"


def miner_node_id(site: str, miner: str) -> str:
    return f"hashfleet_{_site_slug(site)}_{_miner_slug(miner)}"


def _site_slug(site: str) -> str:
    """The site's part of its node ids. A slug folds case and punctuation, so sites `TX1` and `tx1` (two
    collectors on one broker) would share a device and its unique_ids: a site not in slug form already
    gets a hash of itself."""
    plain = slug(site)
    return plain if plain == site and not hashed_shape(site) else f"{plain}_{fingerprint(site)}"


# Ids whose slug is theirs alone: a MAC as the readers write it, an IPv4 host:port (the placeholder of a
# miner not identified yet), and an id already in slug form that does not look like one of those slugs
# or like a slug with its hash.
_MAC = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}")
_IPV4_PORT = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}:\d{1,5}")
_TAKEN_SHAPES = re.compile(r"[0-9a-f]{2}(?:_[0-9a-f]{2}){5}|\d{1,3}(?:_\d{1,3}){3}_\d{1,5}")


def _miner_slug(miner: str) -> str:
    """The miner's part of its node id. A slug folds case and punctuation, so `Rig.1` and `rig_1` (two MQTT
    miners) would share a device, and a publisher naming itself `aa_bb_cc_dd_ee_ff` would take over the
    device of the miner with that MAC (and delete it once evicted): any other id gets a hash of itself."""
    plain = slug(miner)
    if _MAC.fullmatch(miner) or _IPV4_PORT.fullmatch(miner) or (
            plain == miner and not _TAKEN_SHAPES.fullmatch(miner) and not hashed_shape(miner)):
        return plain
    return f"{plain}_{fingerprint(miner)}"


def config_topic(discovery_prefix: str, node_id: str, object_id: str, component: str = COMPONENT) -> str:
    return f"{discovery_prefix}/{component}/{node_id}/{object_id}/config"


PROBLEM = "problem"  # the per-miner binary sensor's object id


def miner_problem_config(sample: MinerSample, topics: Topics, discovery_prefix: str, *,
                         expire_after: int | None = None) -> tuple[str, dict[str, Any]]:
    """The miner's "Problem" binary sensor (device_class problem): on while the health stage lists a
    problem; its attributes are the miner's health JSON (root cause, dollars lost per day, evidence)."""
    node_id = miner_node_id(topics.site, sample.miner)
    state_topic = topics.miner_health(sample.miner)
    config: dict[str, Any] = {
        "name": "Problem", "unique_id": f"{node_id}_{PROBLEM}", "state_topic": state_topic,
        "value_template": "{{ 'ON' if value_json.problems > 0 else 'OFF' }}", "json_attributes_topic": state_topic,
        "device_class": "problem", "availability": _availability(topics), "device": miner_device(sample, topics.site),
        "origin": ORIGIN,
    }
    if expire_after is not None:
        config["expire_after"] = expire_after
    return config_topic(discovery_prefix, node_id, PROBLEM, "binary_sensor"), config


def device_signature(sample: MinerSample) -> tuple[str | None, ...]:
    """What the miner's device card shows; discovery is published again when it changes."""
    return (sample.make, sample.model, sample.firmware, sample.mac)


def _availability(topics: Topics) -> list[dict[str, str]]:
    return [{"topic": topics.status, "payload_available": ONLINE, "payload_not_available": OFFLINE}]


def sensor_config(sensor: Sensor, *, node_id: str, state_topic: str, device: dict[str, Any],
                  topics: Topics, expire_after: int | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": sensor.name,
        "unique_id": f"{node_id}_{sensor.object_id}",
        "state_topic": state_topic,
        "value_template": "{{ value_json.%s }}" % sensor.field,
        "availability": _availability(topics),
        "device": device,
        "origin": ORIGIN,
    }
    optional = {"unit_of_measurement": sensor.unit, "device_class": sensor.device_class,
                "state_class": sensor.state_class, "icon": sensor.icon,
                "suggested_display_precision": sensor.precision, "options": list(sensor.options) or None,
                "expire_after": expire_after}
    config.update({key: value for key, value in optional.items() if value is not None})
    return config


def site_device(site: str) -> dict[str, Any]:
    return {"identifiers": [site_node_id(site)], "name": f"Mining site {site}", "manufacturer": "hashfleet",
            "model": "mining site", "sw_version": _VERSION}


def miner_device(sample: MinerSample, site: str) -> dict[str, Any]:
    device: dict[str, Any] = {
        "identifiers": [miner_node_id(site, sample.miner)],
        "name": f"{sample.model or 'Miner'} {sample.miner}",
        "via_device": site_node_id(site),
    }
    if sample.make:
        device["manufacturer"] = sample.make
    if sample.model:
        device["model"] = sample.model
    if sample.firmware:
        device["sw_version"] = sample.firmware
    if sample.mac:
        device["connections"] = [["mac", sample.mac.lower()]]
    return device


def miner_configs(sample: MinerSample, topics: Topics, discovery_prefix: str, *,
                  expire_after: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """One config per miner sensor: hashrate, power, efficiency, hottest chip, state."""
    node_id = miner_node_id(topics.site, sample.miner)
    device = miner_device(sample, topics.site)
    state_topic = topics.miner_state(sample.miner)
    return [(config_topic(discovery_prefix, node_id, s.object_id),
             sensor_config(s, node_id=node_id, state_topic=state_topic, device=device, topics=topics,
                           expire_after=expire_after))
            for s in MINER_SENSORS]


def miner_config_topics(site: str, miner: str, discovery_prefix: str) -> list[str]:
    """The topics of a miner's configs: an empty retained message on each removes the device from
    Home Assistant and the broker."""
    return _miner_topics(miner_node_id(site, miner), discovery_prefix)


def _miner_topics(node_id: str, discovery_prefix: str) -> list[str]:
    return [*(config_topic(discovery_prefix, node_id, s.object_id) for s in MINER_SENSORS),
            config_topic(discovery_prefix, node_id, PROBLEM, "binary_sensor")]


def site_configs(topics: Topics, discovery_prefix: str, *, cost: bool, health: bool = False,
                 expire_after: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The site's sensors: hashrate, power and miners mining; cost per BTC and power price when `cost`;
    problems, dollars lost to them and the top of the repair queue when `health`."""
    node_id = site_node_id(topics.site)
    device = site_device(topics.site)
    pairs = [(s, topics.site_state) for s in SITE_SENSORS]
    if cost:
        pairs += [(s, topics.site_cost) for s in SITE_COST_SENSORS]
    if health:
        pairs += [(s, topics.site_health) for s in SITE_HEALTH_SENSORS]
    return [(config_topic(discovery_prefix, node_id, s.object_id),
             sensor_config(s, node_id=node_id, state_topic=state_topic, device=device, topics=topics,
                           expire_after=expire_after))
            for s, state_topic in pairs]


# --- curtailment (docs/curtailment.md) ---------------------------------------------------------

PLAN_ACTIONS = ("run", "sleep", "lower", "raise")
CONTROL_MODES = ("off", "dry_run", "on")  # in the order of ControlMode.rank
MAX_DR_KW = 10_000_000  # as the collector takes a limit (models.curtailment.DrTarget)
CURTAILMENT_SENSORS = (  # from <prefix>/<site>/curtailment/state
    Sensor("curtailment_asleep", "Miners asleep (plan)", "miners_sleep", icon="mdi:power-sleep", precision=0),
    Sensor("curtailment_shed", "Power shed (plan)", "shed_kw", "kW", "power", precision=1),
    Sensor("curtailment_saved", "Saved vs always-on", "saved_usd_day", "USD/d", icon="mdi:cash-plus", precision=2),
    Sensor("curtailment_off_plan", "Miners off plan", "miners_off_plan", icon="mdi:alert-circle-outline", precision=0),
    Sensor("curtailment_control", "Curtailment control mode", "control_mode", device_class="enum", state_class=None,
           icon="mdi:remote", options=CONTROL_MODES),
    # (fallback: the live price is stale, the plan holds; trial ZG: nothing in Home Assistant said so)
    Sensor("curtailment_price_source", "Power price source", "price_source", device_class="enum", state_class=None,
           icon="mdi:transmission-tower", options=("tariff", "live", "fallback")),
)
MINER_PLAN_SENSOR = Sensor("plan", "Plan", "action", device_class="enum", state_class=None, icon="mdi:power-sleep",
                           options=PLAN_ACTIONS)


def curtailment_configs(topics: Topics, discovery_prefix: str, *, commands: bool,
                        expire_after: int | None = None, mode_cap: str = "on") -> list[tuple[str, dict[str, Any]]]:
    """The site's curtailment sensors; with `commands` (curtailment.control.mqtt_commands) also the control
    mode (a select, offering the modes up to the config's `mode_cap`: one above it is not taken), the
    demand-response limit (a number, kW; 0 clears) and the kill switch (a switch).
    The select and the switch publish retained (`retain`): the broker keeps the latest for the next start
    (the collector keeps them too, collector/sources/live_inputs.py). Home Assistant has no `expire_after`
    for a select, a number or a switch: only the status topic makes them unavailable."""
    node_id = site_node_id(topics.site)
    device = site_device(topics.site)
    state = topics.curtailment_state
    out = [(config_topic(discovery_prefix, node_id, s.object_id),
            sensor_config(s, node_id=node_id, state_topic=state, device=device, topics=topics,
                          expire_after=expire_after))
           for s in CURTAILMENT_SENSORS]
    common = {"state_topic": state, "availability": _availability(topics), "device": device, "origin": ORIGIN}
    expiring = {"expire_after": expire_after} if expire_after is not None else {}
    # Whether the plan holds on stale inputs (control then sends nothing), and why; whether a demand-response
    # target in force is met (unknown with none): trial ZG found neither in Home Assistant.
    out.append((config_topic(discovery_prefix, node_id, "curtailment_stale", "binary_sensor"), {
        "name": "Curtailment holding (stale inputs)", "unique_id": f"{node_id}_curtailment_stale",
        "value_template": "{{ 'ON' if value_json.stale else 'OFF' }}", "device_class": "problem",
        "json_attributes_topic": state, "json_attributes_template": "{{ {'reason': value_json.stale_reason} | tojson }}",
        **common, **expiring}))
    out.append((config_topic(discovery_prefix, node_id, "curtailment_dr_met", "binary_sensor"), {
        "name": "Demand-response limit met", "unique_id": f"{node_id}_curtailment_dr_met",
        "value_template": "{% if value_json.dr_met is none %}None{% elif value_json.dr_met %}ON{% else %}OFF{% endif %}",
        "icon": "mdi:transmission-tower-export", **common, **expiring}))
    if not commands:
        return out
    out.append((config_topic(discovery_prefix, node_id, "curtailment_mode", "select"), {
        "name": "Curtailment control", "unique_id": f"{node_id}_curtailment_mode",
        "command_topic": topics.curtailment_set("mode"), "value_template": "{{ value_json.control_mode }}",
        "options": list(CONTROL_MODES[:CONTROL_MODES.index(mode_cap) + 1]), "icon": "mdi:remote", "retain": True,
        **common}))
    out.append((config_topic(discovery_prefix, node_id, "curtailment_dr_limit", "number"), {
        "name": "Demand-response limit", "unique_id": f"{node_id}_curtailment_dr_limit",
        "command_topic": topics.curtailment_set("dr_limit_kw"),
        "value_template": "{{ value_json.dr_limit_kw if value_json.dr_limit_kw is not none else 0 }}",
        "min": 0, "max": MAX_DR_KW, "step": 1, "mode": "box", "unit_of_measurement": "kW",
        "icon": "mdi:transmission-tower-export", **common}))
    out.append((config_topic(discovery_prefix, node_id, "curtailment_kill", "switch"), {
        "name": "Curtailment kill switch", "unique_id": f"{node_id}_curtailment_kill",
        "command_topic": topics.curtailment_set("kill"), "payload_on": "ON", "payload_off": "OFF",
        "value_template": "{{ 'ON' if value_json.killed else 'OFF' }}", "icon": "mdi:stop-circle", "retain": True,
        **common}))
    return out


def curtailment_config_topics(topics: Topics, discovery_prefix: str) -> list[str]:
    """The topics of every site-level curtailment entity (sensors and controls), for clearing."""
    return [topic for topic, _ in curtailment_configs(topics, discovery_prefix, commands=True)]


def miner_plan_config(topics: Topics, miner: str, discovery_prefix: str, *,
                      expire_after: int | None = None) -> tuple[str, dict[str, Any]]:
    """The miner's plan sensor, on the miner's device (matched by its identifier)."""
    node_id = miner_node_id(topics.site, miner)
    device = {"identifiers": [node_id]}
    return (config_topic(discovery_prefix, node_id, MINER_PLAN_SENSOR.object_id),
            sensor_config(MINER_PLAN_SENSOR, node_id=node_id, state_topic=topics.miner_plan(miner), device=device,
                          topics=topics, expire_after=expire_after))


# --- node ids before the site's hash (5c2fa11) --------------------------------------------------
# Until then a site's part of its node ids was its slug alone, so a site not in slug form (`TX1`) had
# `hashfleet_tx1` and `hashfleet_tx1_<miner>`. Its retained configs read the same state and status topics
# as today's, so Home Assistant showed every device twice, live, until they were cleared. Those node ids
# are today's of a site named `tx1` (a slug folds case): a config under one is this site's only when the
# topics it reads are under this site's root (`config_reads_under`).

MAX_CONFIG_BYTES = 16 * 1024  # a retained config read before clearing it (ours: ~1 KB with a 256-character id)
_TOPIC_KEYS = ("_topic", "_t")  # state_topic, command_topic, ... and Home Assistant's abbreviations (stat_t)


def old_site_node_id(site: str) -> str | None:
    """The site's node id under the old rule, or None where it is today's (a site in slug form)."""
    old = f"hashfleet_{slug(site)}"
    return None if old == site_node_id(site) else old


def old_miner_node_id(site: str, miner: str) -> str | None:
    """The miner's node id under the old rule; None where it has not changed, and where the old one is one of
    today's node ids of this site: a miner named `<site hash>_<x>` had the node id miner `x` has now (its
    configs read this site's topics too, and clearing them would delete a live device)."""
    old_site = old_site_node_id(site)
    if old_site is None:
        return None
    old = f"{old_site}_{_miner_slug(miner)}"
    today = site_node_id(site)
    return None if old == today or old.startswith(f"{today}_") else old


def node_configs_filter(discovery_prefix: str, node_id: str) -> str:
    """The topic filter of every config under `node_id` (any component, any object id)."""
    return f"{discovery_prefix}/+/{node_id}/+/config"


def config_reads_under(payload: bytes, root: str) -> bool:
    """Whether a retained discovery config (anyone's: hostile until checked) reads topics under `root` alone:
    at most MAX_CONFIG_BYTES of JSON, an object, with at least one topic (`~` expanded) and every one of them,
    availability's included, under `root/`. Anything else is someone else's, or not a config: left alone."""
    if len(payload) > MAX_CONFIG_BYTES:
        return False
    try:
        config = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return False
    if not isinstance(config, dict):
        return False
    base = config.get("~")
    topics = [value for key, value in config.items() if key.endswith(_TOPIC_KEYS)]
    availability = config.get("availability", config.get("avty", []))
    if not isinstance(availability, list):
        return False
    topics += [item.get("topic", item.get("t")) if isinstance(item, dict) else item for item in availability]
    if not topics:
        return False
    under = f"{root}/"
    for topic in topics:
        if not isinstance(topic, str):
            return False
        if isinstance(base, str):  # Home Assistant's shorthand: `~` at either end stands for the base topic
            if topic.startswith("~"):
                topic = base + topic[1:]
            elif topic.endswith("~"):
                topic = topic[:-1] + base
        if not topic.startswith(under):
            return False
    return True
