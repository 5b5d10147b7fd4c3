"""A simulated MQTT power meter: smart PDUs per rack reading the real draw of simulated miners.

Each rack is one PDU. Every `interval_s` it publishes, QoS 1, not retained:

    <prefix>/meter/<rack>/outlet/<n>   {"outlet": "<rack>-<n>", "watts": W, "ts": "..."}   one per miner
    <prefix>/meter/<rack>/total        {"rack": "<rack>", "watts": W, "ts": "..."}         the whole rack

Outlet watts are the miner's real draw (`SimulatedMiner.truth().power_true_w`: under the `psu_drift`
fault the miner's own reading walks away from it, the meter's does not) times `wall_factor`:
1.0 reads exactly what the miner says; 1.04 models a miner that under-reports its wall draw by
about 4% (firmware reading after the PSU, or a miscalibrated sensor), which is what a meter is
there to catch. A rack's total is the sum of its outlets plus `overhead_w` (PDU losses, rack fans,
switch). Racks are consecutive runs of `rack_size` miners named r1, r2, ...; outlets count from 1.

`MqttDevice` (also the base of simulators.mqtt_miner.MqttMiner) is one paho connection that
publishes a device's messages now (`publish_once`, waiting for the broker's acknowledgements) or
every `interval_s` from a thread (`start(periodic=True)`).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulators.miner import SimulatedMiner

__all__ = ["MqttDevice", "MqttDeviceError", "MqttPowerMeter", "format_mac"]


class MqttDeviceError(ConnectionError):
    """A simulated device could not connect to its broker; the message says which and why."""


def format_mac(mac: str) -> str:
    """`0a1b2c3d4e5f` -> `0A:1B:2C:3D:4E:5F`: how the collector names a miner whose MAC it knows."""
    text = mac.replace(":", "").upper()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


class MqttDevice:
    """One device's MQTT connection and publishing schedule."""

    name = "device"

    def __init__(self, host: str, port: int = 1883, *, username: str | None = None, password: str | None = None,
                 interval_s: float = 5.0, qos: int = 1, client_id: str | None = None) -> None:
        self.host, self.port = host, port
        self.interval_s = interval_s
        self.qos = qos
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"hashfleet-sim-{self.name}-{uuid.uuid4().hex[:8]}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._connack = threading.Event()
        self._reason: Any = None
        self.client.on_connect = self._on_connect
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.last: dict[str, dict[str, Any]] = {}  # the latest payload published per topic

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._reason is None:
            self._reason = reason_code
            if reason_code.is_failure:
                client.disconnect()
        self._connack.set()

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """(topic, JSON payload) pairs to publish now."""
        raise NotImplementedError

    def start(self, *, periodic: bool = True, timeout: float = 10.0) -> MqttDevice:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise MqttDeviceError(f"simulated {self.name}: MQTT broker {self.host}:{self.port} not reachable: "
                                  f"{e.strerror or e}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self.stop()
            raise MqttDeviceError(f"simulated {self.name}: no answer from MQTT broker {self.host}:{self.port}")
        if self._reason.is_failure:
            self.stop()
            raise MqttDeviceError(f"simulated {self.name}: MQTT broker {self.host}:{self.port} refused the "
                                  f"connection: {self._reason}")
        if periodic:
            self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once(timeout=self.interval_s)
            except (RuntimeError, ValueError, OSError):
                pass  # the broker is away: paho reconnects, the next round tries again
            self._stop.wait(self.interval_s)  # the publishing period, not a synchronisation

    def publish_once(self, timeout: float = 10.0) -> int:
        """Publish every message now; with QoS > 0 return once the broker acknowledged them all."""
        messages = self.messages()
        infos = [self.client.publish(topic, json.dumps(payload), qos=self.qos) for topic, payload in messages]
        self.last.update(messages)
        for info in infos:
            if self.qos:
                info.wait_for_publish(timeout)
        self.published += len(infos)
        return len(infos)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MqttPowerMeter(MqttDevice):
    """PDUs for racks of simulated miners: per-outlet and per-rack watts."""

    name = "meter"

    def __init__(self, miners: Sequence[SimulatedMiner], host: str, port: int = 1883, *, prefix: str = "sim",
                 rack_size: int = 10, overhead_w: float = 150.0, wall_factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        if rack_size < 1:
            raise ValueError("rack_size must be at least 1")
        self.prefix = prefix.rstrip("/")
        self.overhead_w = overhead_w
        self.wall_factor = wall_factor
        self.racks: dict[str, list[SimulatedMiner]] = {}
        for i, miner in enumerate(miners):
            self.racks.setdefault(f"r{i // rack_size + 1}", []).append(miner)

    def outlets(self) -> dict[str, SimulatedMiner]:
        """Outlet key (`r1-3`) -> the miner plugged into it."""
        return {f"{rack}-{n}": miner for rack, members in self.racks.items() for n, miner in enumerate(members, 1)}

    def outlet_watts(self, miner: SimulatedMiner) -> float:
        return round(miner.truth().power_true_w * self.wall_factor, 1)

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        ts = _now_iso()
        out: list[tuple[str, dict[str, Any]]] = []
        for rack, members in self.racks.items():
            total = 0.0
            for n, miner in enumerate(members, 1):
                watts = self.outlet_watts(miner)
                total += watts
                out.append((f"{self.prefix}/meter/{rack}/outlet/{n}", {"outlet": f"{rack}-{n}", "watts": watts, "ts": ts}))
            out.append((f"{self.prefix}/meter/{rack}/total",
                        {"rack": rack, "watts": round(total + self.overhead_w, 1), "ts": ts}))
        return out

    def collector_ingest(self) -> list[dict[str, Any]]:
        """The `mqtt.ingest` entries a collector needs for this meter, miners named by formatted MAC."""
        return [
            {"topic": f"{self.prefix}/meter/+/outlet/+", "kind": "meter",
             "outlets": {key: format_mac(m.mac) for key, m in self.outlets().items()}},
            {"topic": f"{self.prefix}/meter/+/total", "kind": "meter",
             "racks": {rack: [format_mac(m.mac) for m in members] for rack, members in self.racks.items()}},
        ]
