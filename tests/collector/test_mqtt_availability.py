"""Home Assistant's view of a collector that is gone, against real Mosquitto and simulated miners over TCP,
wired as `hashfleet collect` wires MQTT (trial O, F5 and F6):

- a site power cut: the broker (persistence on) dies first, the collector next, the broker comes back with
  the retained `online` and the last states: the last will never fired, so only `expire_after` on the
  discovery configs makes Home Assistant's sensors go unavailable, and nothing publishes the states again;
- a restart without `curtailment:` (or with `mqtt_commands` off) clears the discovery configs of the
  curtailment entities the previous run left: no control in Home Assistant that nothing listens to.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone

import pytest

from collector.mqtt.topics import Topics
from collector.sinks import home_assistant as discovery
from collector.sinks.mqtt_publish import PLAN_REFRESH_CYCLES
from simulators.fleet import run_fleet
from tests.collector.mqtt_support import NETWORK, Publisher, RunningCollector, Subscriber, mqtt_config, unique
from tests.servers.mosquitto import MosquittoBroker

ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1}
CONTROLS = ("select", "number", "switch")
KEEPALIVE_S = 30  # MqttConfig's default


class PersistentBroker(MosquittoBroker):
    """The test broker with `persistence true`, as the trial's: retained messages survive its restart, and
    SIGUSR1 makes it write them to disk now (autosave is an hour away)."""

    def _write_config(self) -> None:
        super()._write_config()
        store = self.workdir / "store"
        store.mkdir(exist_ok=True)
        store.chmod(0o777)  # mosquitto drops root for its own user
        text = self.config_path.read_text().replace(
            "persistence false", f"persistence true\npersistence_location {store}/\nautosave_interval 3600")
        self.config_path.write_text(text)

    def save(self, timeout: float = 10.0) -> None:
        """Make the broker write its database, and wait until the new file is there."""
        db = self.workdir / "store" / "mosquitto.db"
        before = db.stat().st_mtime_ns if db.exists() else None
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not (db.exists() and db.stat().st_mtime_ns != before):
            assert time.monotonic() < deadline, f"mosquitto did not save {db}: {self.log_tail()}"
            time.sleep(0.05)

    def crash(self) -> None:
        """SIGKILL: no will published, nothing saved since the last save."""
        assert self._process is not None and self._process.proc is not None
        self._process.proc.kill()
        self._process.proc.wait(10)


@pytest.fixture
def broker():
    server = PersistentBroker()
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def fleet():
    with run_fleet("a1246:1,a1566:1", base="127.51.0.1:0", seed=5) as sims:
        yield sims


def config(host: str, port: int, fleet, site: str, *, curtailment: dict | None) -> dict:
    data = {"site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2, "economics": ECONOMICS,
            "network": NETWORK, "mqtt": mqtt_config(host, port)}
    if curtailment is not None:
        data["curtailment"] = {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, **curtailment}
    return data


CURTAILMENT = {"control": {"mode": "dry_run", "allow": ["*"], "mqtt_commands": True}}


def retained_until_marker(host: str, port: int, filters: list[str]) -> tuple[dict, list[str]]:
    """What a new subscriber (Home Assistant reconnecting) gets: the retained messages (topic -> payload), and
    the topics of any live message, up to a marker published after the subscription (no waiting on time)."""
    marker = unique("marker/")
    watcher = Subscriber(host, port, [*filters, marker])
    publisher = Publisher(host, port)
    try:
        publisher.publish(marker, "end")
        watcher.wait_for(lambda m: m.topic == marker, what="the marker")
        retained = {m.topic: m.payload for m in watcher.seen if m.retain}
        live = [m.topic for m in watcher.seen if not m.retain and m.topic != marker]
        return retained, live
    finally:
        watcher.close()
        publisher.close()


def test_a_broker_dead_before_the_collector_leaves_online_and_the_sensors_expire_on_their_own(broker, fleet):
    site = unique("powercut")
    topics = Topics("hashfleet", site)
    node = discovery.site_node_id(site)
    watcher = Subscriber(broker.host, broker.port, ["homeassistant/#", f"hashfleet/{site}/#"])
    running = RunningCollector(config(broker.host, broker.port, fleet, site, curtailment=CURTAILMENT))
    try:
        watcher.wait_json(topics.curtailment_state)
        plan_config = watcher.wait_for(lambda m: m.topic.startswith(f"homeassistant/sensor/{node}_")
                                       and m.topic.endswith("/plan/config"), what="a miner's plan sensor")
        # A cycle after every discovery config went out, then the broker saves and dies; the collector next.
        last = running.next_result(what="a cycle")
        watcher.wait_json(topics.site_state, lambda d: datetime.fromisoformat(d["ts"]) >= last.ts)
        broker.save()
        crashed_at = datetime.now(timezone.utc)
        broker.crash()
    finally:
        watcher.close()
        running.close()  # its `offline` goes nowhere: the broker is down
    broker.start()
    retained, live = retained_until_marker(broker.host, broker.port, ["homeassistant/#", f"hashfleet/{site}/#"])
    # The trial's finding: the persisted `online` is back, the last will never fired...
    assert retained[topics.status] == b"online"
    # ...and nothing publishes the states again: only what the broker kept.
    assert not [t for t in live if t.startswith(f"hashfleet/{site}/")], live
    state = json.loads(retained[topics.site_state])
    assert last.ts <= datetime.fromisoformat(state["ts"]) <= crashed_at
    # So the sensors must expire on their own: every sensor and binary sensor of the site and its miners
    # carries expire_after, a margin over the 1 s cycle; the plan (published again every 5 cycles) a longer one.
    configs = {t: json.loads(p) for t, p in retained.items() if t.startswith("homeassistant/") and p
               and json.loads(p)["device"]["identifiers"][0].startswith(node)}
    sensors = {t: c for t, c in configs.items() if t.split("/")[1] in ("sensor", "binary_sensor")}
    assert len(sensors) >= 2 * 6 + 3 + 4 + 2  # 2 miners x 6, the site's 3 + cost's 4, 2 plans (at least)
    every_cycle = discovery.expire_after_s(1, KEEPALIVE_S)
    plan = discovery.expire_after_s(1, KEEPALIVE_S, PLAN_REFRESH_CYCLES)
    assert (every_cycle, plan) == (33, 37)
    for topic, c in sensors.items():
        assert c.get("expire_after") == (plan if topic.endswith("/plan/config") else every_cycle), topic
    assert plan_config.topic in sensors
    # Home Assistant has no expire_after on controls: the status alone speaks for them (docs/mqtt.md).
    controls = [t for t in configs if t.split("/")[1] in CONTROLS]
    assert len(controls) == 3 and not any("expire_after" in configs[t] for t in controls)


def test_an_unchanged_plan_is_published_again_before_its_sensor_expires(mosquitto, fleet):
    site = unique("plan-refresh")
    topics = Topics("hashfleet", site)
    running = RunningCollector(config(mosquitto.host, mosquitto.port, fleet, site, curtailment=CURTAILMENT))
    miner = running.next_result(lambda r: r.curtailment is not None).samples[0].miner
    watcher = Subscriber(mosquitto.host, mosquitto.port, [topics.miner_plan(miner)])
    try:
        plans = [watcher.wait_json(topics.miner_plan(miner))]
        plans.append(watcher.wait_json(topics.miner_plan(miner), lambda d: d["ts"] != plans[0]["ts"],
                                       timeout=PLAN_REFRESH_CYCLES * 1 + 10))
        assert plans[0]["action"] == plans[1]["action"]  # the same plan, published again
        gap = datetime.fromisoformat(plans[1]["ts"]) - datetime.fromisoformat(plans[0]["ts"])
        assert gap.total_seconds() < discovery.expire_after_s(1, KEEPALIVE_S, PLAN_REFRESH_CYCLES)
    finally:
        watcher.close()
        running.close()


@pytest.mark.parametrize("second", [None, {"control": {"mode": "dry_run", "allow": ["*"], "mqtt_commands": False}}],
                         ids=["curtailment removed", "mqtt_commands off"])
def test_a_restart_without_the_curtailment_entities_clears_their_discovery_configs(mosquitto, fleet, second):
    site = unique("no-curtail")
    topics = Topics("hashfleet", site)
    node = discovery.site_node_id(site)
    filters = [f"homeassistant/+/{node}/#", "homeassistant/sensor/+/plan/config", f"hashfleet/{site}/#"]
    watcher = Subscriber(mosquitto.host, mosquitto.port, filters)
    running = RunningCollector(config(mosquitto.host, mosquitto.port, fleet, site, curtailment=CURTAILMENT))
    try:
        watcher.wait_json(f"homeassistant/switch/{node}/curtailment_kill/config")
        watcher.wait_for(lambda m: m.topic.startswith(f"homeassistant/sensor/{node}_") and m.topic.endswith("/plan/config")
                         and m.payload, what="a plan sensor")
        running.next_result(lambda r: r.curtailment is not None)
        watcher.wait_json(topics.curtailment_state)
    finally:
        running.close()
    every = discovery.curtailment_config_topics(topics, "homeassistant")
    retained, _ = retained_until_marker(mosquitto.host, mosquitto.port, filters)
    assert set(every) <= set(retained)  # the first run left them
    mine = (f"homeassistant/sensor/{node}_", f"hashfleet/{site}/")
    plans = [t for t in retained if t.startswith(mine) and t.endswith("/plan/config")]
    assert len(plans) == 2
    running = RunningCollector(config(mosquitto.host, mosquitto.port, fleet, site, curtailment=second))
    try:
        running.next_result(lambda r: True)
        running.next_result(lambda r: True)  # a whole cycle published after the first
        watcher.wait_json(topics.site_state)
    finally:
        running.close()
        watcher.close()
    retained, _ = retained_until_marker(mosquitto.host, mosquitto.port, filters)
    controls = [t for t in every if t.split("/")[1] in CONTROLS]
    assert len(controls) == 3 and not set(controls) & set(retained)
    if second is None:  # everything curtailment left is gone: sensors, state, each miner's plan
        assert not set(every) & set(retained)
        assert topics.curtailment_state not in retained
        assert not [t for t in retained if t.startswith(mine) and t.endswith(("/plan/config", "/plan"))]
    else:  # the sensors stay: curtailment still plans
        assert set(every) - set(controls) <= set(retained)
