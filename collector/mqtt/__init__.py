"""MQTT in and out for the collect service (docs/mqtt.md).

- `client.py`    one paho connection: auth, TLS, last will, reconnect, resubscribe, retained replay
- `publish.py`   MqttSink: fleet state, cost and health as JSON under <prefix>/<site>/...
- `discovery.py` Home Assistant discovery configs (pure)
- `ingest.py`    subscriptions -> validated payloads -> MinerSamples and LiveInputs
- `topics.py`    the published topic tree

`MqttBridge` wires them for one site, the way `hashfleet collect` uses them:

    bridge = MqttBridge(cfg.mqtt, cfg.site)
    await bridge.start()                       # MqttConnectError if the broker refuses
    cost = CostStage(..., live=bridge.live)
    await service.run(poller, [*sinks, bridge.sink], cost_stage=cost,
                      extra_samples=bridge.ingest.cycle_samples)
    bridge.close()                             # status offline, disconnect
"""

from __future__ import annotations

import asyncio
import secrets

from collector.sources.live_inputs import LiveInputs
from collector.mqtt.connection import MqttConnectError, MqttConnection
from collector.sources.mqtt_ingest import MqttIngest
from collector.sinks.mqtt_publish import MqttSink
from collector.mqtt.topics import Topics, slug
from models.mqtt import MqttConfig

__all__ = ["MqttBridge", "MqttConnectError", "MqttConnection", "MqttIngest", "MqttSink", "Topics"]


class MqttBridge:
    """The connection, the publishing sink and the ingest of one collector."""

    def __init__(self, config: MqttConfig, site: str, *, live: LiveInputs | None = None) -> None:
        self.config = config
        self.topics = Topics(config.topic_prefix, site)
        self.live = live or LiveInputs(meter_max_age_s=config.meter_max_age_s)
        self.ingest = MqttIngest(config, site, self.live)
        client_id = config.client_id or f"hashfleet-{slug(site)}-{secrets.token_hex(3)}"
        self.connection = MqttConnection(config, status_topic=self.topics.status, client_id=client_id,
                                         subscriptions=self.ingest.subscriptions, on_message=self.ingest.handle)
        self.sink = MqttSink(self.connection, self.topics, config, stats=self.ingest.stats,
                             evicted=self.ingest.take_evicted)

    async def start(self) -> None:
        """Bind the ingest to the running loop and connect (waits for the first CONNACK, bounded)."""
        self.ingest.bind(asyncio.get_running_loop())
        await asyncio.to_thread(self.connection.start)

    def close(self) -> None:
        self.connection.close()
