"""One connection to the MQTT broker (paho-mqtt 2.x), shared by publishing and ingest.

- username/password, TLS (CA, client certificate), client id, MQTT v5 or 3.1.1;
- last will: `<prefix>/<site>/status` = `offline`, retained; `online` is published (retained) on
  every connect, after the subscriptions (so `online` means listening), and `offline` on a clean close;
- paho's network thread (`loop_start`) reconnects with exponential backoff from 1 s up to
  `reconnect_max_s`; on every connect the subscriptions are made again and every retained message
  sent so far is published again (a broker restarted without persistence has forgotten them);
- while disconnected nothing is queued: retained messages are remembered (the latest per topic)
  and go out on reconnect, the rest is skipped and counted; an empty retained message (it clears
  the topic on the broker) is remembered only until it has gone out once;
- a message whose topic a broker may refuse (topics.topic_problem: a control character, a wildcard, too
  long) is dropped, counted and logged (once per reason per 10 s), and never remembered: Mosquitto drops
  the connection that sends one, and replayed on every reconnect it would keep the collector off the
  broker for good;
- while connected, at most MAX_UNACKED messages wait for the broker's acknowledgement (paho's own
  queue has no bound but its 65,535 message ids); more are skipped and counted like while
  disconnected: each cycle's messages replace the last's anyway. A retained one skipped so is held and
  goes out, oldest first, ahead of the next publishes once there is room: a discovery config is
  published once a run, and a 10,000-miner first cycle (~110,000 messages, most of them configs) had
  ~85,000 skipped, which reached Home Assistant only at a reconnect;
- a lost acknowledgement is never sent again on a live connection, and paho sends at most
  MAX_INFLIGHT messages unacknowledged, so lost ones stop publishing for good. Mosquitto drops
  every packet to a client whose outgoing queue is full (max_queued_messages), PUBACKs included:
  a flood on the ingest topics that this client reads slower than it arrives does that. So when
  nothing has been acknowledged for `keepalive_s` while messages wait, the connection is dropped:
  paho reconnects and sends the unacknowledged messages again (the broker publishes the last will
  meanwhile, and `online` again on reconnect);
- paho callbacks run in paho's thread; `on_message` is called there and must hand data on safely;
- `look_retained` hands what the broker holds retained on some topic filters to a handler, once: LOOK_FILTERS
  filters at a time are subscribed (QoS 0) and unsubscribed at once; the broker sends the retained messages
  of a subscription before it answers the unsubscription that follows it (one client's packets in order),
  so the UNSUBACK ends the batch and the next one goes out. A batch cut by a disconnect is sent again on
  reconnect. What the look's filters deliver goes to its handler, never to `on_message`.

Exceptions:
    MqttConnectError   the broker refused the first connection (bad credentials, banned, bad
                       client id) or TLS could not be set up; the message names host:port and the
                       broker's reason, never the password. Later refusals are logged and retried.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from collector.bounded_log import BoundedLog
from collector.mqtt.topics import OFFLINE, ONLINE, topic_problem
from models.mqtt import MqttConfig, MqttTls

log = logging.getLogger(__name__)

_CREDENTIAL_REASONS = {"Not authorized", "Bad user name or password", "Bad authentication method", "Banned"}
MAX_INFLIGHT = 100  # QoS 1 messages sent and not yet acknowledged; the rest wait in paho's queue
ROOM_POLL_S = 0.005  # wait_for_room's look at the acknowledgements (a local Mosquitto acknowledges ~16 a ms)
MAX_UNACKED = 20_000  # messages waiting for the broker's acknowledgement (~50 MB); more are skipped
# Topic filters a retained look subscribes at once (a discovery node holds ~7 configs: ~1,400 retained messages
# a batch). Measured on a local Mosquitto 2.0.11, 10,000 nodes x 7 configs, every one seen: 50 a batch 10.3 s
# (a round trip each), 200 3.0 s, 2,000 3.2 s; all 10,000 in one SUBSCRIBE had no answer within 300 s.
LOOK_FILTERS = 200
MAX_LOOK_QUEUE = 200_000  # filters waiting for a look (one per miner id); more are dropped and logged


class MqttConnectError(Exception):
    """The broker refused the connection or TLS failed; the message says where, why and what to check."""


def describe_refusal(address: str, reason: ReasonCode | str) -> str:
    text = f"MQTT broker {address} refused the connection: {reason}"
    if str(reason) in _CREDENTIAL_REASONS:
        text += (". Check mqtt.username and the password (mqtt.password_file, MQTT_PASSWORD or MQTT_PASSWORD_FILE)"
                 " and that the broker knows this user")
    elif "identifier" in str(reason).lower():
        text += ". Check mqtt.client_id"
    return text


class MqttConnection:
    """A paho client that connects, stays connected, and says clearly when it cannot."""

    def __init__(self, config: MqttConfig, *, status_topic: str, client_id: str,
                 subscriptions: Sequence[tuple[str, int]] = (),
                 on_message: Callable[[str, bytes, bool], None] | None = None) -> None:
        self.config = config
        self.address = config.address
        self.status_topic = status_topic
        self.client_id = client_id
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._retained: dict[str, tuple[bytes, int]] = {}
        # Retained topics skipped while connected (MAX_UNACKED waiting), oldest first: sent from _retained
        # ahead of the next publishes once there is room, not only at a reconnect.
        self._held: dict[str, None] = {}
        self._lock = threading.Lock()  # the retained cache, and the order of publishes against it
        self._state = threading.Condition()
        self._first_answer: ReasonCode | None = None
        self._waiting = False  # start() is waiting for the first answer (it reports a refusal itself)
        self._close_called = False  # close() was called: a start() waiting for the first answer gives up
        self._closing = False
        # paho's loop_start and loop_stop never interleave: a stop (another thread) while start() is between
        # creating paho's thread and starting it failed ("cannot join thread before it is started")
        self._loop = threading.Lock()
        self._log = BoundedLog(log)
        self.connects = 0  # successful connects, reconnects included
        self.published = 0  # handed to paho
        self.skipped = 0  # not sent: disconnected, or MAX_UNACKED waiting (retained ones go out later: _held)
        self.ack_timeout_s = float(config.keepalive_s)
        # QoS 1+ messages handed to paho, oldest first, until acknowledged: (monotonic time, paho's info)
        self._unacked: deque[tuple[float, mqtt.MQTTMessageInfo]] = deque()
        self._progress_at = time.monotonic()  # the last acknowledgement seen, or the last connect
        self.refused = 0  # publishes the broker answered with a failure (MQTT v5)
        self.invalid_topics = 0  # messages dropped unsent: a topic the broker may refuse
        # look_retained: filters waiting, the batch under way and the mid of its UNSUBSCRIBE (None: not sent)
        self._look_lock = threading.Lock()
        self._look_queue: deque[tuple[str, Callable[[str, bytes], None]]] = deque()
        self._look_batch: list[str] = []
        self._look_mid: int | None = None
        self._subscribe_mid: int | None = None  # the SUBSCRIBE of `subscriptions` (not a look's)

        protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        client.suppress_exceptions = True  # a bug in a callback must not end the network thread
        if config.username:
            client.username_pw_set(config.username, config.resolved_password())
        if config.tls is not None:
            self._set_tls(client, config.tls)
        client.will_set(status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=int(config.reconnect_max_s))
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message_cb
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        self._client = client

    def _set_tls(self, client: mqtt.Client, tls: MqttTls) -> None:
        try:
            client.tls_set(ca_certs=str(tls.ca_file) if tls.ca_file else None,
                           certfile=str(tls.cert_file) if tls.cert_file else None,
                           keyfile=str(tls.key_file) if tls.key_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise MqttConnectError(f"TLS settings for MQTT broker {self.address} cannot be used: {e}; "
                                   "check mqtt.tls (ca_file, cert_file, key_file)") from None
        if tls.insecure:
            client.tls_insecure_set(True)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the network thread; wait up to `connect_timeout_s` for the first answer.

        Raises MqttConnectError when the broker refuses or TLS fails. An unreachable broker is
        only logged, at once (no answer can come before a retry: the first cycle does not wait for
        one): the network thread keeps trying with backoff.
        """
        client = self._client
        try:
            client.connect(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        except ssl.SSLError as e:
            raise MqttConnectError(f"TLS with MQTT broker {self.address} failed: {e.reason or e}; "
                                   "check mqtt.tls (ca_file, cert_file, key_file, insecure)") from None
        except OSError as e:
            log.warning("MQTT broker %s not reachable (%s); retrying in the background",
                        self.address, e.strerror or e)
            self._loop_start()
            return
        with self._state:
            self._waiting = True
        self._loop_start()
        with self._state:
            # (close() ends the wait: a stop while starting need not wait out the timeout. Its own flag, not
            # `_closing`: a refusal sets that before `_first_answer`, and start() must see the refusal.)
            answered = self._state.wait_for(lambda: self._first_answer is not None or self._close_called,
                                            self.config.connect_timeout_s)
            reason = self._first_answer
            self._waiting = False
        if not answered:
            log.warning("no answer from MQTT broker %s within %g s; retrying in the background",
                        self.address, self.config.connect_timeout_s)
            return
        if reason is not None and reason.is_failure:
            self._stop()
            raise MqttConnectError(describe_refusal(self.address, reason))

    def close(self, timeout: float = 5.0) -> None:
        """Publish `offline` (a clean disconnect sends no last will), disconnect, stop the thread."""
        if self._closing:
            return
        with self._state:
            self._closing = self._close_called = True
            self._state.notify_all()  # a start() waiting for the first answer returns
        if self._client.is_connected():
            info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
                acknowledged = info.is_published()
            except (RuntimeError, ValueError):
                acknowledged = False
            if not acknowledged:
                # Behind messages the broker never acknowledges, or the connection is going: without a
                # DISCONNECT the broker publishes the last will, `offline`, in its place.
                log.warning("MQTT broker %s did not acknowledge the status `offline` within %g s; closing "
                            "the connection without a DISCONNECT so that the broker publishes the last will "
                            "(offline) instead", self.address, timeout)
                self._drop_connection()
        self._stop()

    def _loop_start(self) -> None:
        with self._loop:
            if not self._closing:  # (closed meanwhile: no thread to leave running)
                self._client.loop_start()

    def _stop(self) -> None:
        self._closing = True
        self._client.disconnect()
        with self._loop:
            self._client.loop_stop()

    def _drop_connection(self) -> None:
        """Close the socket under paho without a DISCONNECT: the broker publishes the last will, and paho's
        thread reconnects (unless stopping) and sends the unacknowledged messages again."""
        sock = self._client.socket()
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's (under TLS too)
            except OSError:
                pass  # closed already

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    @property
    def unacked(self) -> int:
        """Messages waiting for the broker's acknowledgement (about: counted up to the oldest waiting)."""
        with self._lock:
            self._forget_acknowledged()
            return len(self._unacked)

    def wait_connects(self, count: int, timeout: float) -> bool:
        """Wait until `count` successful connects have happened (tests, reconnect checks)."""
        with self._state:
            return self._state.wait_for(lambda: self.connects >= count, timeout)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, *, qos: int, retain: bool) -> bool:
        """Hand a message to paho; False when it was not sent now (disconnected, MAX_UNACKED waiting, or refused)."""
        problem = topic_problem(topic)
        if problem is not None:
            with self._lock:
                self.invalid_topics += 1
            self._log.warning(f"topic:{problem}", "MQTT publish to %r dropped: %s, and a broker may answer such a "
                              "topic by dropping the connection", topic[:200], problem)
            return False
        data = payload.encode() if isinstance(payload, str) else payload
        info = None
        with self._lock:
            if retain:
                self._retained[topic] = (data, qos)
            if not self._client.is_connected():
                self.skipped += 1
                return False
            self._forget_acknowledged()
            if self._held:
                self._send_held()
            waiting = len(self._unacked)
            if waiting < MAX_UNACKED:
                info = self._send(topic, data, qos, retain)
                self.published += 1
                if retain:
                    self._held.pop(topic, None)  # this one supersedes it
                    if not data:
                        del self._retained[topic]  # cleared on the broker: nothing to publish again
            else:
                self.skipped += 1
                if retain:
                    self._held[topic] = None  # goes out once there is room (_send_held)
            stalled = self._stalled()
        if stalled:
            self._log.warning("stalled", "MQTT broker %s has acknowledged none of the %d message(s) waiting for %g s "
                              "(mosquitto drops acknowledgements to a client whose queue is full, e.g. during a "
                              "flood on the ingest topics); reconnecting, which sends them again",
                              self.address, waiting, self.ack_timeout_s)
            self._drop_connection()
        if info is None:
            self._log.warning("unacked", "MQTT publish to %s skipped: %d messages are waiting for the broker's "
                              "acknowledgement", topic, waiting)
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._log.warning("publish", "MQTT publish to %s not sent: %s", topic, mqtt.error_string(info.rc))
            return False
        return True

    @property
    def full(self) -> bool:
        """MAX_UNACKED messages wait for the broker (as last counted: a hint, read without the lock)."""
        return len(self._unacked) >= MAX_UNACKED

    def wait_for_room(self, until: float) -> bool:
        """Wait (this thread, never the event loop's) until fewer than MAX_UNACKED messages wait for the broker,
        up to the monotonic time `until`; whether there is room. Not while disconnected: nothing would drain."""
        while True:
            with self._lock:
                self._forget_acknowledged()
                if len(self._unacked) < MAX_UNACKED:
                    return True
                if not self._client.is_connected() or time.monotonic() >= until:
                    return False
            time.sleep(ROOM_POLL_S)

    def _send(self, topic: str, data: bytes, qos: int, retain: bool) -> mqtt.MQTTMessageInfo:
        """paho's publish; a QoS 1+ message it took is watched until acknowledged (under self._lock)."""
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if qos > 0 and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._unacked.append((time.monotonic(), info))
        return info

    def _send_held(self) -> None:
        """The held retained messages, oldest first, while fewer than MAX_UNACKED wait (under self._lock)."""
        held, retained = self._held, self._retained
        while held and len(self._unacked) < MAX_UNACKED:
            topic = next(iter(held))
            del held[topic]
            kept = retained.get(topic)
            if kept is None:
                continue
            data, qos = kept
            self._send(topic, data, qos, True)
            self.published += 1
            if not data:
                del retained[topic]

    def _forget_acknowledged(self) -> None:
        """Drop the acknowledged messages from the front of the watch list (under self._lock)."""
        unacked = self._unacked
        while unacked:
            try:
                done = unacked[0][1].is_published()
            except (RuntimeError, ValueError):  # paho gave up on it
                done = True
            if not done:
                return
            unacked.popleft()
            self._progress_at = time.monotonic()

    def _stalled(self) -> bool:
        """The broker has acknowledged nothing for ack_timeout_s while a message waits (under self._lock)."""
        if not self._unacked:
            return False
        now = time.monotonic()
        if now - max(self._unacked[0][0], self._progress_at) <= self.ack_timeout_s:
            return False
        self._progress_at = now  # one reconnect per timeout
        return True

    def _republish_retained(self) -> int:
        with self._lock:
            self._progress_at = time.monotonic()  # a new connection: what waits is sent again
            kept, count = {}, 0
            self._held = {}
            for topic, (data, qos) in self._retained.items():
                if len(self._unacked) >= MAX_UNACKED:
                    kept[topic] = (data, qos)
                    self._held[topic] = None  # goes out once there is room, ahead of the next publishes
                    continue
                self._send(topic, data, qos, True)
                count += 1
                if data:  # a clear that went out is done
                    kept[topic] = (data, qos)
            self._retained = kept
            return count

    # -- looking at retained messages --------------------------------------------------------

    def look_retained(self, filters: Iterable[str], handler: Callable[[str, bytes], None]) -> None:
        """Call `handler(topic, payload)` (in paho's thread) for each message the broker holds retained on
        `filters`, once, as soon as the batches before have been answered (any thread; never blocks)."""
        with self._look_lock:
            queue = self._look_queue
            for topic_filter in filters:
                if len(queue) >= MAX_LOOK_QUEUE:
                    self._log.warning("look-queue", "MQTT look at retained %s skipped: %d filters wait already",
                                      topic_filter[:200], len(queue))
                    continue
                queue.append((topic_filter, handler))
        self._look_next()

    def _look_next(self) -> None:
        """Send the look's batch under way, or the next one, unless it waits for its answer (any thread)."""
        client = self._client
        with self._look_lock:
            if self._look_mid is not None or self._closing:
                return
            if not self._look_batch:
                queue = self._look_queue
                for _ in range(min(LOOK_FILTERS, len(queue))):
                    topic_filter, handler = queue.popleft()
                    client.message_callback_add(topic_filter, _retained_to(handler, self._log))
                    self._look_batch.append(topic_filter)
            if not self._look_batch:
                return
            rc, _ = client.subscribe([(f, 0) for f in self._look_batch])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # disconnected: sent again on connect
            rc, mid = client.unsubscribe(self._look_batch)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._look_mid = mid

    @property
    def looking(self) -> int:
        """Topic filters of retained looks not answered yet."""
        with self._look_lock:
            return len(self._look_queue) + len(self._look_batch)

    # -- paho callbacks (paho's network thread) -----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:
            with self._state:
                reported_by_start = self._waiting and self._first_answer is None
            if reported_by_start:
                self._closing = True  # quiet: no "lost the connection" for a refusal start() reports
                client.disconnect()  # start() raises MqttConnectError; no retries meanwhile
            else:
                self._log.error("refused", "%s; retrying with backoff", describe_refusal(self.address, reason_code))
        else:
            # Subscribed first: the broker handles one client's packets in order, so whoever sees `online` may
            # publish a command at once (not retained) and it is heard.
            if self._subscriptions:
                self._subscribe_mid = client.subscribe(self._subscriptions)[1]
            client.publish(self.status_topic, ONLINE, qos=1, retain=True)
            again = self._republish_retained()
            with self._look_lock:
                self._look_mid = None  # a new session: a batch under way is sent again
            self._look_next()
            log.info("%s MQTT broker %s as %s%s", "reconnected to" if self.connects else "connected to",
                     self.address, self.client_id, f"; {again} retained message(s) published again" if again else "")
        with self._state:
            if self._first_answer is None:
                self._first_answer = reason_code
            if not reason_code.is_failure:
                self.connects += 1
            self._state.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._closing:
            self._log.warning("disconnect", "lost the connection to MQTT broker %s (%s); reconnecting with backoff "
                              "(up to %g s between tries)", self.address, reason_code, self.config.reconnect_max_s)

    def _on_message_cb(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(message.topic, message.payload, bool(message.retain))
        except Exception as e:  # never let one message end the network thread
            self._log.error("on_message", "MQTT message could not be handled: %s: %s", type(e).__name__, e)

    def _on_publish(self, client, userdata, mid, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:  # MQTT v5 only: 3.1.1 brokers drop refused publishes silently
            self.refused += 1
            self._log.error("publish-refused", "MQTT broker %s refused a publish: %s (does the ACL let user %r "
                            "write %s/# and the discovery prefix?)", self.address, reason_code,
                            self.config.username, self.config.topic_prefix)

    def _on_subscribe(self, client, userdata, mid, reason_codes: list[ReasonCode], properties) -> None:
        if mid != self._subscribe_mid:  # a look's: a refused filter shows nothing, so nothing is done for it
            if any(code.is_failure for code in reason_codes):
                self._log.warning("subscribe:look", "MQTT broker %s refused to let this client read retained "
                                  "messages (%s); what they would show is left as it is", self.address,
                                  next(code for code in reason_codes if code.is_failure))
            return
        for (topic, _), code in zip(self._subscriptions, reason_codes):
            if code.is_failure:
                self._log.error(f"subscribe:{topic}", "MQTT broker %s refused the subscription to %s: %s",
                                self.address, topic, code)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._look_lock:
            if mid != self._look_mid:
                return
            for topic_filter in self._look_batch:  # the batch's retained messages all came before this answer
                client.message_callback_remove(topic_filter)
            self._look_batch, self._look_mid = [], None
        self._look_next()


def _retained_to(handler: Callable[[str, bytes], None], bounded: BoundedLog) -> Callable[..., None]:
    """paho's callback for a look's filter: a retained message with a payload goes to `handler`; a live one
    (published meanwhile) is not what the broker holds, and is left."""
    def on_message(client, userdata, message: mqtt.MQTTMessage) -> None:
        if not message.retain or not message.payload:
            return
        try:
            handler(message.topic, message.payload)
        except Exception as e:  # never let one message end the network thread
            bounded.error("look", "MQTT retained message could not be handled: %s: %s", type(e).__name__, e)
    return on_message
