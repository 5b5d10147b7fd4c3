"""The real Mosquitto fixture: paho-mqtt 2.x publishes and receives, the
password/ACL listener refuses what it should, and clients survive a restart."""

from __future__ import annotations

import queue
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

WAIT = 5.0  # seconds for any single broker round trip


class Probe:
    """A paho client whose callbacks feed queues, so tests wait with timeouts."""

    def __init__(self, host: str, port: int, *, user: str | None = None, password: str | None = None,
                 protocol: int = mqtt.MQTTv311) -> None:
        self.host, self.port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.connacks: queue.Queue[ReasonCode] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.pubacks: queue.Queue[tuple[int, ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.resubscribe: list[str] = []  # topics (re)subscribed in on_connect
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put(codes)
        self.client.on_publish = lambda c, u, mid, code, props: self.pubacks.put((mid, code))
        self.client.on_message = lambda c, u, message: self.messages.put(message)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            client.disconnect()  # refused: do not let paho retry in the background
        else:
            for topic in self.resubscribe:
                client.subscribe(topic, qos=1)
        self.connacks.put(reason_code)

    def connect(self) -> ReasonCode:
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        return self.connacks.get(timeout=WAIT)

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        [code] = self.subacks.get(timeout=WAIT)
        assert not code.is_failure, code

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        """QoS 1 publish; returns the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        mid, code = self.pubacks.get(timeout=WAIT)
        assert mid == info.mid
        return code

    def next_message(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes():
    """Factory for connected-on-demand probes, all closed after the test."""
    made: list[Probe] = []

    def make(*args, **kwargs) -> Probe:
        probe = Probe(*args, **kwargs)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


def unique_topic(prefix: str = "hashfleet/test") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def test_anonymous_publish_is_received(mosquitto, probes):
    topic = unique_topic()
    subscriber = probes(mosquitto.host, mosquitto.port)
    publisher = probes(mosquitto.host, mosquitto.port)
    assert subscriber.connect() == "Success"
    assert publisher.connect() == "Success"
    subscriber.subscribe(topic)

    assert publisher.publish(topic, b'{"hashrate_ths": 90.1}') == "Success"

    message = subscriber.next_message()
    assert (message.topic, message.payload) == (topic, b'{"hashrate_ths": 90.1}')


def test_retained_message_reaches_a_later_subscriber(mosquitto, probes):
    topic = unique_topic("homeassistant/sensor")
    publisher = probes(mosquitto.host, mosquitto.port)
    publisher.connect()
    publisher.publish(topic, b"online", retain=True)
    publisher.close()

    late = probes(mosquitto.host, mosquitto.port)
    late.connect()
    late.subscribe(topic)

    message = late.next_message()
    assert (message.topic, message.payload, message.retain) == (topic, b"online", True)


def test_auth_listener_accepts_correct_credentials(mosquitto, probes):
    topic = unique_topic()
    user = "hashfleet"
    client = probes(mosquitto.host, mosquitto.auth_port, user=user, password=mosquitto.users[user])
    assert client.connect() == "Success"
    client.subscribe(topic)

    assert client.publish(topic, b"42") == "Success"
    assert client.next_message().payload == b"42"


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize(
    ("user", "password"),
    [("hashfleet", "wrong-password"), ("nobody", "whatever"), (None, None)],
    ids=["bad-password", "unknown-user", "anonymous"],
)
def test_auth_listener_refuses_bad_credentials(mosquitto, probes, protocol, user, password):
    client = probes(mosquitto.host, mosquitto.auth_port, user=user, password=password, protocol=protocol)

    reason = client.connect()

    assert reason.is_failure
    assert reason == "Not authorized"  # 135 under v5; return code 5 under 3.1.1


def test_reader_publish_is_refused_and_not_delivered(mosquitto, probes):
    topic = unique_topic()
    writer = probes(mosquitto.host, mosquitto.auth_port, user="hashfleet",
                    password=mosquitto.users["hashfleet"])
    reader = probes(mosquitto.host, mosquitto.auth_port, user="reader", password=mosquitto.users["reader"],
                    protocol=mqtt.MQTTv5)
    writer.connect()
    reader.connect()
    writer.subscribe(topic)
    reader.subscribe(topic)  # reading is allowed

    refused = reader.publish(topic, b"from reader")
    writer.publish(topic, b"from writer")  # sent after the broker answered the reader

    assert refused == "Not authorized"
    assert refused.value == 135
    # Had the reader's message been routed, it would have been queued first.
    assert writer.next_message().payload == b"from writer"
    assert reader.next_message().payload == b"from writer"


def test_acl_denied_publish_is_silently_dropped_under_mqtt311(mosquitto, probes):
    topic = unique_topic()
    writer = probes(mosquitto.host, mosquitto.auth_port, user="hashfleet",
                    password=mosquitto.users["hashfleet"])
    reader = probes(mosquitto.host, mosquitto.auth_port, user="reader", password=mosquitto.users["reader"])
    writer.connect()
    reader.connect()
    writer.subscribe(topic)

    assert reader.publish(topic, b"from reader") == "Success"  # 3.1.1 PUBACK has no reason
    writer.publish(topic, b"from writer")

    assert writer.next_message().payload == b"from writer"


def test_client_reconnects_and_resubscribes_after_broker_restart(mosquitto, probes):
    topic = unique_topic()
    client = probes(mosquitto.host, mosquitto.port)
    client.resubscribe.append(topic)
    assert client.connect() == "Success"
    client.subacks.get(timeout=WAIT)
    old_ports = (mosquitto.port, mosquitto.auth_port)

    mosquitto.restart()

    assert (mosquitto.port, mosquitto.auth_port) == old_ports
    assert client.connacks.get(timeout=15) == "Success"  # paho's automatic reconnect
    client.subacks.get(timeout=WAIT)
    publisher = probes(mosquitto.host, mosquitto.port)
    publisher.connect()
    publisher.publish(topic, b"after restart")
    assert client.next_message().payload == b"after restart"
