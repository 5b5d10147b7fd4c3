"""A flood on the ingest topics against `hashfleet collect` (a process) and the real Mosquitto.

Mosquitto drops every packet to a client whose outgoing queue is full, PUBACKs included: a flood the
collector reads slower than it arrives leaves its QoS 1 publishes unacknowledged for good (MQTT sends
nothing again on a live connection), which stopped its publishing while it stayed connected.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from tests.servers.fixtures import _finish, _start
from tests.servers.mosquitto import MosquittoBroker
from tests.support import HASHFLEET, wait_for
from tests.collector.mqtt_support import Publisher, Subscriber, unique
from tests.servers.process import require_binary

from collector.mqtt.connection import MAX_UNACKED, MqttConnection
from collector.cycle import Cycle
from collector.mqtt.topics import Topics
from collector.sinks.mqtt_publish import MqttSink
from models import MqttConfig

MINERS = 300  # MQTT miners: every cycle publishes their state and health at QoS 1
TELEMETRY = {"hashrate_ths": 200.5, "power_w": 3500, "model": "S21", "temp_chip_max_c": 71.5,
             "fans_rpm": [6000, 6010, 5990, 6020],
             "boards": [{"index": i, "hashrate_ths": 66.8, "temp_in_c": 55, "temp_out_c": 70, "temp_chip_max_c": 71.5,
                         "chips_ok": 108, "chips_expected": 108} for i in range(3)]}
FLOOD_CHUNK = 5_000  # messages (about 540 bytes each)
FLOOD_MAX = 400_000


@pytest.fixture(scope="module")
def mosquitto():
    """A broker of this module's own: a flood (and a paused broker) leaves a backlog the session's shared
    broker would carry into other tests (a refusal's CONNACK came after their connect timeout)."""
    server = _start(MosquittoBroker)
    try:
        yield server
    finally:
        _finish(server)


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for pid {pid}")


def ts(data: dict) -> datetime:
    return datetime.fromisoformat(data["ts"].replace("Z", "+00:00"))


class FloodedCollector:
    """`hashfleet collect` with MINERS MQTT miners, then a flood on its telemetry topic."""

    def __init__(self, mosquitto, tmp_path: Path) -> None:
        self.mosquitto = mosquitto
        self.site = unique("flood")
        self.client_id = f"hashfleet-{self.site}"
        self.topics = Topics("hashfleet", self.site)
        self.telemetry = f"{self.site}/devices/+/telemetry"
        config = {"site": self.site, "interval_s": 1, "mqtt": {
            "host": mosquitto.host, "port": mosquitto.port, "client_id": self.client_id, "keepalive_s": 5,
            "discovery": False, "telemetry_max_miners": MINERS,
            "ingest": [{"topic": self.telemetry, "kind": "miner_telemetry"}]}}
        path = tmp_path / "hashfleet.yaml"
        path.write_text(yaml.safe_dump(config))
        self.reader = Subscriber(mosquitto.host, mosquitto.port,
                                 [self.topics.status, self.topics.site_state, self.topics.collector], qos=0)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
        self.log = tmp_path / "collect.log"
        with self.log.open("w") as stderr:
            self.proc = subprocess.Popen([HASHFLEET, "collect", "--config", str(path)], stdout=subprocess.DEVNULL,
                                         stderr=stderr, env={**env, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")})

    def start_miners(self) -> None:
        self.reader.wait_for(lambda m: m.topic == self.topics.status and m.payload == b"online", timeout=30,
                             what=f"status online (collector log: {self.log})")
        publisher = Publisher(self.mosquitto.host, self.mosquitto.port)
        # Retained, so the collector gets them whenever its subscription is made, and dated: `online` comes before
        # the subscription, and a retained reading without a ts is dropped (its age unknown), so undated ones
        # published in between were lost (the miners never reached MINERS in one CI run).
        dated = {**TELEMETRY, "ts": datetime.now(timezone.utc).isoformat()}
        try:
            publisher.publish_many([(self.telemetry.replace("+", f"m{i}"), dated) for i in range(MINERS)], retain=True)
        finally:
            publisher.close()
        self.reader.wait_json(self.topics.site_state, lambda data: data["miners"] == MINERS, timeout=30)

    def flood(self) -> datetime:
        """QoS 0 telemetry, faster than the collector reads it, until the broker drops packets to the
        collector (its log says so), then for two more cycles; returns when the flood ended."""
        log_from = self.mosquitto.log_path.stat().st_size
        dropping = f"Outgoing messages are being dropped for client {self.client_id}."
        mosquitto_pub = require_binary("mosquitto_pub", "mosquitto-clients")
        flood = subprocess.Popen([mosquitto_pub, "-h", self.mosquitto.host, "-p", str(self.mosquitto.port),
                                  "-t", self.telemetry.replace("+", "m0"), "-l"], stdin=subprocess.PIPE)
        chunk = (json.dumps(TELEMETRY) + "\n").encode() * FLOOD_CHUNK
        assert flood.stdin is not None
        sent, until = 0, None
        while until is None or time.monotonic() < until:
            flood.stdin.write(chunk)
            sent += FLOOD_CHUNK
            if until is None:
                assert sent < FLOOD_MAX, f"the broker did not drop packets to the collector in {sent} messages"
                with self.mosquitto.log_path.open("rb") as log:
                    log.seek(log_from)
                    if dropping.encode() in log.read():
                        until = time.monotonic() + 2.0  # two cycles' publishes meet the full queue
        flood.stdin.close()
        assert flood.wait(timeout=30) == 0
        return datetime.now(timezone.utc)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.close()


def test_publishing_recovers_after_an_ingest_flood_and_memory_stays_bounded(mosquitto, tmp_path):
    collector = FloodedCollector(mosquitto, tmp_path)
    try:
        collector.start_miners()
        before_mb = memory_mb(collector.proc.pid, "VmRSS")
        flood_end = collector.flood()

        state = collector.reader.wait_json(collector.topics.site_state, lambda data: ts(data) > flood_end, timeout=30)
        assert state["miners"] == MINERS
        # The stall was noticed and the connection made again; soon what waits for the broker's
        # acknowledgement is about a cycle's messages (the out-queue drained), not every cycle's since.
        health = collector.reader.wait_json(
            collector.topics.collector, lambda data: ts(data) > flood_end and data["mqtt"]["unacked"] <= 4 * MINERS,
            timeout=20)
        assert health["mqtt"]["connects"] >= 2, health
        peak_mb = memory_mb(collector.proc.pid, "VmHWM")
        assert peak_mb - before_mb < 100, (before_mb, peak_mb)  # the trial's grew by 200 MB and went on
        assert "acknowledged none of the" in collector.log.read_text()
    finally:
        collector.close()


def test_a_clean_stop_during_the_stall_still_leaves_the_status_offline(mosquitto, tmp_path):
    collector = FloodedCollector(mosquitto, tmp_path)
    try:
        collector.start_miners()
        collector.flood()
        collector.proc.send_signal(signal.SIGTERM)  # before the stall is noticed (keepalive_s: 5)
        assert collector.proc.wait(timeout=30) == 0

        status = Subscriber(mosquitto.host, mosquitto.port, [collector.topics.status])
        try:
            message = status.wait_for(lambda m: m.topic == collector.topics.status, what="the retained status")
        finally:
            status.close()
        assert message.payload == b"offline", collector.log.read_text()[-2000:]
    finally:
        collector.close()


def test_at_most_max_unacked_messages_wait_for_the_broker_and_the_rest_are_skipped(mosquitto):
    connection = MqttConnection(MqttConfig(host=mosquitto.host, port=mosquitto.port), client_id=unique("unacked"),
                                status_topic=f"hashfleet/{unique('unacked')}/status")
    connection.start()
    topic = f"hashfleet/{unique('unacked')}/state"
    try:
        os.kill(mosquitto.pid, signal.SIGSTOP)  # connected, and acknowledging nothing
        try:
            sent = [connection.publish(topic, b"{}", qos=1, retain=False) for _ in range(MAX_UNACKED + 100)]
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
        assert sent.count(True) == MAX_UNACKED and sent[-100:] == [False] * 100
        assert connection.unacked == MAX_UNACKED and connection.skipped == 100

        wait_for(lambda: connection.unacked == 0, what="the broker's acknowledgements once it answers")
        assert connection.connects == 1
        assert connection.publish(topic, b"{}", qos=1, retain=False)
    finally:
        connection.close()


def test_retained_messages_skipped_for_want_of_room_go_out_once_there_is_room(mosquitto):
    # A discovery config is published once a run: skipped while MAX_UNACKED waited (a 10,000-miner first cycle
    # skipped ~85,000 of ~110,000 messages), it reached Home Assistant only at a reconnect.
    prefix = f"hashfleet/{unique('held')}"
    connection = MqttConnection(MqttConfig(host=mosquitto.host, port=mosquitto.port), client_id=unique("held"),
                                status_topic=f"{prefix}/status")
    connection.start()
    topics = [f"{prefix}/config/{i}" for i in range(MAX_UNACKED + 100)]
    try:
        os.kill(mosquitto.pid, signal.SIGSTOP)  # connected, and acknowledging nothing
        try:
            sent = [connection.publish(topic, b"{}", qos=1, retain=True) for topic in topics]
        finally:
            os.kill(mosquitto.pid, signal.SIGCONT)
        assert sent.count(False) == 100 and connection.skipped == 100
        wait_for(lambda: connection.unacked == 0, what="the broker's acknowledgements once it answers")

        assert connection.publish(f"{prefix}/state", b"{}", qos=1, retain=False)  # the next cycle's first message
        wait_for(lambda: connection.unacked == 0, what="the held messages' acknowledgements")
        assert connection.connects == 1  # no reconnect sent them
    finally:
        connection.close()
    mosquitto_sub = require_binary("mosquitto_sub", "mosquitto-clients")
    retained = subprocess.run([mosquitto_sub, "-h", mosquitto.host, "-p", str(mosquitto.port), "-t", f"{prefix}/config/#",
                               "--retained-only", "-C", str(len(topics)), "-W", "30", "-F", "%t"], capture_output=True, text=True, timeout=60)
    assert set(retained.stdout.split()) == set(topics)


def test_the_sink_waits_for_room_at_the_broker_within_its_budget_rather_than_skip(mosquitto):
    # A 10,000-miner cycle is ~30,000 messages and a local Mosquitto acknowledges ~16,000 a second: past
    # MAX_UNACKED waiting, part of every cycle was skipped (a retained one held for a later cycle).
    site = unique("room")
    topics = Topics("hashfleet", site)
    config = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    connection = MqttConnection(config, client_id=unique("room"), status_topic=topics.status)
    connection.start()
    sink = MqttSink(connection, topics, config, interval_s=40.0)  # a budget of 2.5 s (ROOM_WAIT_MAX_S) a cycle
    try:
        # the broker answers again a while into the cycle's write (the scenario's pace, not a readiness wait)
        resume = threading.Timer(0.5, os.kill, (mosquitto.pid, signal.SIGCONT))
        os.kill(mosquitto.pid, signal.SIGSTOP)  # connected, and acknowledging nothing
        try:
            assert all(connection.publish(f"hashfleet/{site}/x/{i}", b"{}", qos=1, retain=False)
                       for i in range(MAX_UNACKED))
            resume.start()
            asyncio.run(sink.write(Cycle(site, datetime.now(timezone.utc))))
        finally:
            resume.cancel()
            os.kill(mosquitto.pid, signal.SIGCONT)
        assert connection.skipped == 0  # every message of the cycle went out, none skipped or held
    finally:
        connection.close()
