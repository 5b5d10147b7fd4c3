"""Helpers shared by the MQTT tests (no tests here): a subscriber whose messages feed a queue, and
the collect service run in a background thread wired exactly as `hashfleet collect` wires MQTT.

Everything waits on queues and events with timeouts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector import pipeline
from collector.cycle import Cycle, MinersPart
from models import CollectorConfig, CostSample

WAIT = 10.0


def unique(stem: str) -> str:
    return f"{stem}{uuid.uuid4().hex[:8]}"


class Subscriber:
    """A paho client subscribed to `topics`; `wait_for` returns the first message, received before or
    during the call, that matches."""

    def __init__(self, host: str, port: int, topics: list[str], *, user: str | None = None,
                 password: str | None = None, qos: int = 1) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.seen: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, qos) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, codes, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT), f"no SUBACK from {host}:{port}"

    def wait_for(self, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = WAIT,
                 what: str = "a matching message") -> mqtt.MQTTMessage:
        for message in self.seen:  # already received while waiting for something else
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.messages.get(timeout=max(0.0, remaining))
            except queue.Empty:
                topics = sorted({m.topic for m in self.seen})[-20:]
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; topics seen: {topics}") from None
            self.seen.append(message)
            if predicate(message):
                return message

    def wait_json(self, topic: str, predicate: Callable[[Any], bool] = lambda data: True,
                  timeout: float = WAIT) -> Any:
        try:
            message = self.wait_for(lambda m: m.topic == topic and bool(m.payload) and predicate(json.loads(m.payload)),
                                    timeout, what=f"a message on {topic}")
        except AssertionError as e:
            last = [m.payload for m in self.seen if m.topic == topic][-1:]
            raise AssertionError(f"{e}; the last on that topic: {last[0][:400]!r}" if last else str(e)) from None
        return json.loads(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Publisher:
    """QoS 1 publishes that return once the broker acknowledged them."""

    def __init__(self, host: str, port: int, *, user: str | None = None, password: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(500)
        connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: connected.set()
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        assert connected.wait(WAIT)

    def publish(self, topic: str, payload: bytes | str | dict | float, *, retain: bool = False) -> None:
        self.publish_many([(topic, payload)], retain=retain)

    def publish_many(self, messages: list[tuple[str, Any]], *, retain: bool = False) -> None:
        infos = []
        for topic, payload in messages:
            if isinstance(payload, (dict, int, float)):
                payload = json.dumps(payload)
            infos.append(self.client.publish(topic, payload, qos=1, retain=retain))
        for info in infos:
            info.wait_for_publish(WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class CapturedCycle:
    """A cycle as a sink saw it: its end (the Cycle) and its miners' cost figures from the parts."""
    result: Cycle
    miner_costs: list[CostSample]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result, name)


class CaptureSink:
    def __init__(self) -> None:
        self.results: queue.Queue[CapturedCycle] = queue.Queue()
        self._costs: list[CostSample] = []

    async def write_miners(self, part: MinersPart) -> None:
        self._costs += part.costs or []

    async def write(self, cycle: Cycle) -> None:
        self.results.put(CapturedCycle(cycle, self._costs))
        self._costs = []

    def close(self) -> None:
        pass


class RunningCollector:
    """The collect service with MQTT in a background thread, as the composition root builds it for
    `hashfleet collect` (collector.pipeline.build, service mode), plus a sink that captures each cycle."""

    def __init__(self, config: CollectorConfig | dict[str, Any]) -> None:
        self.config = config if isinstance(config, CollectorConfig) else CollectorConfig.model_validate(config)
        assert self.config.mqtt is not None
        self.capture = CaptureSink()
        self.pipeline = pipeline.build(self.config, sinks=[self.capture], service_mode=True)
        self.bridge = self.pipeline.mqtt
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.cycles = 0
        self._thread = threading.Thread(target=self._run, name="collector", daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT + self.config.mqtt.connect_timeout_s), "collector did not start"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to the test thread
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.pipeline.start()
            self._ready.set()
            self.cycles = await self.pipeline.run_cycles(stop=self._stop)
        finally:
            await self.pipeline.stop()

    def next_result(self, predicate: Callable[[CapturedCycle], bool] = lambda r: True, timeout: float = WAIT,
                    what: str = "a cycle") -> CapturedCycle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = self.capture.results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from None
            if predicate(result):
                return result

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        self._thread.join(timeout=30)


def mqtt_config(host: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"host": host, "port": port, "connect_timeout_s": 5, **extra}


ECONOMICS = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1}
LIVE_ECONOMICS = {"tariff": {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 600}}
NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95000}}
