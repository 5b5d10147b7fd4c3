"""Health over MQTT and Home Assistant: each miner's problems and the site's repair queue on the broker,
a "Problem" binary sensor per miner, the site's problem sensors; and a facility meter over MQTT gives
the measured PUE the cost figures then use."""

from __future__ import annotations

import json
import subprocess

import yaml

from collector.mqtt.topics import Topics
from collector.sinks import home_assistant as discovery
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from tests.collector.mqtt_support import Publisher, Subscriber, unique
from tests.collector.test_mqtt_collect import environment
from tests.support import HASHFLEET

ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.04}, "pue": 1.1}
NETWORK = {"source": "static", "static": {"difficulty": 1.2e14, "height": 900_000, "btc_price_usd": 95_000}}


def test_problems_reach_mqtt_and_home_assistant_and_the_facility_meter_sets_the_pue(mosquitto, tmp_path):
    site = unique("health")
    topics = Topics("hashfleet", site)
    feeds = f"feeds/{site}"
    reader = Subscriber(mosquitto.host, mosquitto.port, [f"hashfleet/{site}/#", "homeassistant/#"])
    publisher = Publisher(mosquitto.host, mosquitto.port)
    with run_fleet("a1566:2", base="127.67.0.1:0", seed=9) as fleet:
        fleet[0].set_faults(dead_boards={1})
        sick, well = format_mac(fleet[0].mac), format_mac(fleet[1].mac)
        draw = sum(m.truth().power_true_w for m in fleet)
        config = tmp_path / "hashfleet.yaml"
        config.write_text(yaml.safe_dump({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "layout": {"miners": {fleet[0].address: {"container": "c7", "rack": "r3", "position": "12"}}},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port,
                     "ingest": [{"topic": f"{feeds}/facility/+", "kind": "meter", "facility": ["main"]}]}}))
        proc = subprocess.Popen([HASHFLEET, "collect", "--config", str(config), "--cycles", "8"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=environment(tmp_path))
        try:
            reader.wait_for(lambda m: m.topic == topics.status and m.payload == b"online", what="the collector")
            for _ in range(6):  # the facility meter reads the miners' draw and a quarter more
                publisher.publish(f"{feeds}/facility/main", {"watts": round(draw * 1.25, 1)})
                reader.wait_for(lambda m: m.topic == topics.collector, what="a cycle")
            health = reader.wait_json(topics.miner_health(sick), lambda d: d["problems"] > 0)
            site_health = reader.wait_json(topics.site_health,
                                           lambda d: d.get("measured_pue") is not None and d["problems"] > 0)
            # The next cycles' cost figures use it: facility draw = miners' draw x the measured PUE.
            cost = reader.wait_json(topics.site_cost, lambda d: abs(d["facility_power_w"] / d["power_w"] - 1.25) < 0.02)
        finally:
            _, stderr = proc.communicate(timeout=60)
            publisher.close()
    assert proc.returncode == 0, stderr
    assert health["cause"] == "board" and health["usd_lost_day"] > 0
    assert health["place"] == {"container": "c7", "row": None, "rack": "r3", "position": "12"}
    assert health["top"][0]["signal"] == "board_dead" and health["top"][0]["part"] == 1
    assert reader.wait_json(topics.miner_health(well))["problems"] == 0
    assert site_health["problems"] >= 1 and site_health["by_cause"]["board"] >= 1
    assert site_health["top_problem"].startswith(f"{sick}: board_dead (board)")
    assert site_health["queue"][0]["miner"] == sick
    # where to walk to (the queue named only the MAC: trial N L4)
    assert site_health["queue"][0]["address"] == fleet[0].address
    assert site_health["queue"][0]["place"] == {"container": "c7", "row": None, "rack": "r3", "position": "12"}
    assert abs(site_health["measured_pue"] - 1.25) < 0.02
    assert cost["facility_power_w"] > 1.2 * cost["power_w"]  # not the configured 1.1

    configs = {m.topic: json.loads(m.payload) for m in reader.seen
               if m.topic.startswith("homeassistant/") and m.topic.endswith("/config") and m.payload}
    problem = configs[f"homeassistant/binary_sensor/{discovery.miner_node_id(site, sick)}/problem/config"]
    assert problem["device_class"] == "problem" and problem["state_topic"] == topics.miner_health(sick)
    assert problem["json_attributes_topic"] == topics.miner_health(sick)
    assert problem["device"]["identifiers"] == [discovery.miner_node_id(site, sick)]
    site_node = discovery.site_node_id(site)
    lost = configs[f"homeassistant/sensor/{site_node}/usd_lost_day/config"]
    assert lost["state_topic"] == topics.site_health and lost["unit_of_measurement"] == "USD/d"
    assert f"homeassistant/sensor/{site_node}/top_problem/config" in configs
    reader.close()
