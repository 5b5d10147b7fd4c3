"""The MQTT connection one collector shares between a source and a sink (docs/mqtt.md).

- `connection.py`  one paho connection: auth, TLS, last will, reconnect, resubscribe, retained replay
- `topics.py`      the published topic tree
- `bounded_log.py` log lines about hostile publishers, bounded

The ingest (subscriptions -> MinerSamples and live inputs) is a source,
collector/sources/mqtt_ingest.py; publishing (state, cost, Home Assistant discovery) is a sink,
collector/sinks/mqtt_publish.py. The composition root (collector/pipeline.py, `MqttBridge`) wires both to one connection for one
site, connects before the sources start and closes after they stop.
"""
