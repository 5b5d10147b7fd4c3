"""`hashfleet collect` and `hashfleet simulate` with MQTT, as processes against the real Mosquitto:
refused credentials, Home Assistant discovery and the last will, the simulated meter and MQTT miner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from tests.support import HASHFLEET
from tests.collector.mqtt_support import ECONOMICS, NETWORK, Subscriber, unique

from collector.sinks import home_assistant as discovery
from collector.mqtt.topics import Topics
from models import MinerSample, SampleSource
from simulators.fleet import run_fleet

BAD_PASSWORD = "wrong-horse-battery-51"
HA_REQUIRED = {"name", "unique_id", "state_topic", "value_template", "device", "availability"}


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    return {**env, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool"), **extra}


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "hashfleet.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_collect_with_refused_mqtt_credentials_exits_non_zero_naming_the_broker(mosquitto, tmp_path):
    path = write_config(tmp_path, {"mqtt": {"host": mosquitto.host, "port": mosquitto.auth_port,
                                            "username": "hashfleet"}})
    result = subprocess.run([HASHFLEET, "collect", "--config", str(path), "--miners", "127.0.0.1:9", "--cycles", "1"],
                            capture_output=True, text=True, timeout=60,
                            env=environment(tmp_path, MQTT_PASSWORD=BAD_PASSWORD))

    assert result.returncode == 1, result.stderr
    assert (f"MQTT broker {mosquitto.host}:{mosquitto.auth_port} refused the connection: Not authorized"
            in result.stderr)
    assert BAD_PASSWORD not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_collect_runs_on_mqtt_miners_alone_and_starts_while_the_broker_is_down(mosquitto, tmp_path):
    telemetry_only = {"host": mosquitto.host, "port": mosquitto.port,
                      "ingest": [{"topic": "devices/+/telemetry", "kind": "miner_telemetry"}]}
    path = write_config(tmp_path, {"mqtt": telemetry_only})
    result = subprocess.run([HASHFLEET, "collect", "--config", str(path), "--cycles", "1"], capture_output=True,
                            text=True, timeout=60, env=environment(tmp_path))
    assert result.returncode == 0, result.stderr  # no `miners:` needed when miners publish their own telemetry

    with run_fleet("nano3s:1", base="127.46.2.1:0", seed=2) as fleet:
        down = {"host": "127.0.0.1", "port": 9, "connect_timeout_s": 1}  # nothing listens: refused at once
        path = write_config(tmp_path, {"miners": fleet.addresses, "mqtt": down})
        result = subprocess.run([HASHFLEET, "collect", "--config", str(path), "--cycles", "1"], capture_output=True,
                                text=True, timeout=60, env=environment(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "MQTT broker 127.0.0.1:9 not reachable" in result.stderr and "retrying in the background" in result.stderr
    assert "cycle 1: 1 miners, 0 failed" in result.stderr


def test_discovery_has_what_home_assistant_needs_and_the_last_will_marks_a_killed_collector_offline(
        mosquitto, tmp_path):
    site = unique("ha")
    topics = Topics("hashfleet", site)
    node_prefix = f"homeassistant/sensor/{discovery.site_node_id(site)}"
    reader = Subscriber(mosquitto.host, mosquitto.auth_port, [f"hashfleet/{site}/#", "homeassistant/sensor/#"],
                        user="reader", password=mosquitto.users["reader"])
    with run_fleet("a1566:1,q:1", base="127.46.0.1:0", seed=8) as fleet:
        path = write_config(tmp_path, {
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.auth_port, "username": "hashfleet"}})
        log = tmp_path / "collect.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen([HASHFLEET, "collect", "--config", str(path)], stdout=subprocess.DEVNULL,
                                    stderr=stderr, env=environment(tmp_path, MQTT_PASSWORD=mosquitto.users["hashfleet"]))
        try:
            reader.wait_for(lambda m: m.topic == topics.status and m.payload == b"online", timeout=30,
                            what=f"status online (collector log: {log})")
            expected = 2 * len(discovery.MINER_SENSORS) + len(discovery.SITE_SENSORS) + len(discovery.SITE_COST_SENSORS)
            configs: dict[str, dict] = {}

            def collect_config(message) -> bool:
                if message.topic.startswith(node_prefix) and message.topic.endswith("/config") and message.payload:
                    configs[message.topic] = json.loads(message.payload)
                return len(configs) == expected

            reader.wait_for(collect_config, timeout=20, what=f"{expected} discovery configs")
            for topic, config in configs.items():
                assert HA_REQUIRED <= config.keys(), topic
                assert config["device"]["identifiers"] and config["unique_id"].startswith(discovery.site_node_id(site))
                assert config["availability"][0]["topic"] == topics.status
                field = config["value_template"].removeprefix("{{ value_json.").removesuffix(" }}")
                state = reader.wait_json(config["state_topic"], lambda data, f=field: f in data)
                if config.get("state_class") == "measurement":
                    assert isinstance(state[field], (int, float)), (topic, state[field])
                if config.get("device_class") == "power":
                    assert config["unit_of_measurement"] == "W"
            unique_ids = [c["unique_id"] for c in configs.values()]
            assert len(set(unique_ids)) == len(unique_ids)

            proc.send_signal(signal.SIGKILL)  # no clean shutdown: only the broker's last will can say offline
            proc.wait(timeout=10)
            reader.wait_for(lambda m: m.topic == topics.status and m.payload == b"offline", what="the last will")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.close()


def test_simulated_meter_and_mqtt_miner_feed_collect_metered_cost_and_samples(mosquitto, tmp_path):
    site = unique("simchain")
    prefix = f"sim/{site}"
    topics = Topics("hashfleet", site)
    watcher = Subscriber(mosquitto.host, mosquitto.port, [f"{prefix}/#", f"hashfleet/{site}/#"])
    simulate = subprocess.Popen(
        [HASHFLEET, "simulate", "--fleet", "a1566:2", "--base", "127.46.1.1:0", "--seed", "9",
         "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--mqtt-prefix", prefix,
         "--mqtt-fleet", "nano3s:1", "--mqtt-interval", "0.5", "--meter-rack-size", "3",
         "--meter-overhead-w", "120", "--meter-wall-factor", "1.04"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collect = None
    try:
        addresses = [simulate.stdout.readline().split()[0] for _ in range(2)]  # printed once serving
        ingest = None
        while ingest is None:  # the devices' lines were written before the fleet's
            line = simulate.stderr.readline()
            assert line, f"simulate exited: {simulate.poll()}"
            if line.startswith("collector config: mqtt.ingest = "):
                ingest = json.loads(line.removeprefix("collector config: mqtt.ingest = "))

        # The devices publish on their own: one rack of three outlets, and the MQTT miner's telemetry.
        total = watcher.wait_json(f"{prefix}/meter/r1/total")
        outlets = [watcher.wait_json(f"{prefix}/meter/r1/outlet/{n}") for n in (1, 2, 3)]
        assert {o["outlet"] for o in outlets} == {"r1-1", "r1-2", "r1-3"}
        telemetry = watcher.wait_for(lambda m: m.topic.startswith(f"{prefix}/miner/"), what="MQTT miner telemetry")
        assert MinerSample.model_validate_json(telemetry.payload).source is SampleSource.MQTT
        assert total["watts"] > 120 and total["rack"] == "r1"

        path = write_config(tmp_path, {
            "site": site, "miners": addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "ingest": ingest}})
        collect = subprocess.Popen([HASHFLEET, "collect", "--config", str(path)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=environment(tmp_path))
        summary = watcher.wait_json(topics.site_state, lambda d: d["miners"] == 3 and "power_meter_gap_w" in d,
                                    timeout=30)
        # Metered at 1.04 x what the miners report: the miners under-report by about 4 %.
        assert summary["power_meter_gap_w"] < 0
        assert summary["power_w"] == pytest.approx(summary["power_reported_w"] * 1.04, rel=0.02)
        mqtt_miner = json.loads(telemetry.payload)["miner"]
        state = watcher.wait_json(topics.miner_state(mqtt_miner))
        assert state["source"] == "mqtt" and state["site"] == site
        cost = watcher.wait_json(topics.miner_cost(mqtt_miner), lambda d: "power_meter_gap_w" in d)
        assert cost["power_w"] > state["power_w"]
    finally:
        for proc in (collect, simulate):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (collect, simulate):
            if proc is not None:
                try:
                    assert proc.wait(timeout=20) == 0
                finally:
                    if proc.poll() is None:
                        proc.kill()
        watcher.close()


def test_a_miner_down_at_start_leaves_no_placeholder_device_once_identified(mosquitto, tmp_path):
    # Unidentified, an address is published under host:port; identified, under its MAC. The host:port
    # device stayed in Home Assistant for good, always offline, beside the real one.
    site = unique("ghost")
    topics = Topics("hashfleet", site)
    reader = Subscriber(mosquitto.host, mosquitto.port, [f"hashfleet/{site}/#", "homeassistant/#"])
    with run_fleet("a1566:1", base="127.46.5.1:0", seed=3) as fleet:
        fleet[0].set_faults(no_answer=True)
        address = fleet.addresses[0]
        node = discovery.miner_node_id(site, address)
        path = write_config(tmp_path, {"site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 1,
                                       "identify_backoff_s": 1, "identify_backoff_max_s": 1,
                                       "mqtt": {"host": mosquitto.host, "port": mosquitto.port}})
        log = tmp_path / "collect.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen([HASHFLEET, "collect", "--config", str(path)], stdout=subprocess.DEVNULL,
                                    stderr=stderr, env=environment(tmp_path))
        try:
            reader.wait_for(lambda m: m.topic == topics.miner_state(address) and bool(m.payload), timeout=30,
                            what=f"the unidentified address's state (collector log: {log})")
            reader.wait_for(lambda m: m.topic.startswith(f"homeassistant/sensor/{node}/") and bool(m.payload),
                            what="its Home Assistant device")
            fleet[0].set_faults(no_answer=False)
            identified = reader.wait_for(lambda m: m.topic.endswith("/state") and m.topic != topics.miner_state(address)
                                         and "/miner/" in m.topic and bool(m.payload)
                                         and bool(json.loads(m.payload).get("mac")), timeout=30,
                                         what="the miner's state under its MAC")
            assert MinerSample.model_validate_json(identified.payload).miner != address
            reader.wait_for(lambda m: m.topic == topics.miner_state(address) and m.payload == b"", timeout=30,
                            what="the placeholder's state cleared")
            for topic in discovery.miner_config_topics(site, address, "homeassistant"):
                reader.wait_for(lambda m, t=topic: m.topic == t and m.payload == b"", what=f"{topic} cleared")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            reader.close()
