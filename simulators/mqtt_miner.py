"""A simulated miner that publishes its own telemetry over MQTT (an agent on the miner, or a
firmware with an MQTT client), instead of, or as well as, answering polls.

Every `interval_s` it publishes, QoS 1, not retained, one MinerSample JSON object (the collector's
`miner_telemetry` ingest kind) built from the simulated miner's physics:

    <prefix>/miner/<mac>/telemetry     {"miner": "0A:1B:...", "ts": "...", "state": "mining", "hashrate_ths": ...}

`<mac>` is the 12 hex digits; `miner` is the formatted MAC, the id the native driver would use.
The payload is validated here against models.MinerSample (source "mqtt") before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from models import BoardSample, MinerSample, MinerState, PoolInfo, SampleSource
from simulators.miner import SimulatedMiner
from simulators.mqtt_meter import MqttDevice, MqttPowerMeter, format_mac

__all__ = ["MqttMiner", "build_mqtt_miners", "mqtt_devices", "telemetry"]

_MAKES = {"avalon": "Canaan", "antminer": "Bitmain", "bitaxe": "Bitaxe"}


def telemetry(miner: SimulatedMiner) -> MinerSample:
    """What `miner` would say about itself now, as a MinerSample (source mqtt)."""
    snap = miner.observe()
    boards = [BoardSample(index=b.index, hashrate_ths=b.hashrate_ths, hashrate_avg_ths=b.hashrate_avg_ths,
                          temp_in_c=b.temp_in_c, temp_out_c=b.temp_out_c, temp_chip_max_c=b.temp_chip_max_c,
                          temp_chip_avg_c=b.temp_chip_avg_c, chips_ok=b.chips_ok, chips_expected=b.chips_expected)
              for b in snap.boards]
    return MinerSample(
        miner=format_mac(snap.mac), host=miner.host, port=miner.port, ts=datetime.now(timezone.utc),
        state=MinerState(snap.state), source=SampleSource.MQTT,
        make=_MAKES.get(getattr(miner.spec, "family", "avalon"), "Canaan"), model=miner.spec.prod,
        firmware=snap.firmware, mac=format_mac(snap.mac),
        hashrate_ths=snap.hashrate_ths, hashrate_avg_ths=snap.hashrate_avg_ths,
        expected_hashrate_ths=snap.expected_hashrate_ths, power_w=float(snap.power_w),
        power_limit_w=float(snap.power_limit_w), temp_env_c=snap.temp_env_c, temp_chip_max_c=snap.temp_chip_max_c,
        temp_board_max_c=snap.temp_board_max_c, fans_rpm=list(snap.fans_rpm), boards=boards,
        pool=PoolInfo(accepted=snap.accepted, rejected=snap.rejected, stale=snap.stale),
        uptime_s=snap.uptime_s, hw_error_pct=snap.hw_error_pct, work_mode=snap.work_mode, errors=list(snap.errors),
    )


class MqttMiner(MqttDevice):
    name = "miner"

    def __init__(self, miner: SimulatedMiner, host: str, port: int = 1883, *, prefix: str = "sim",
                 **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.miner = miner
        self.prefix = prefix.rstrip("/")

    @property
    def topic(self) -> str:
        return f"{self.prefix}/miner/{self.miner.mac}/telemetry"

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        return [(self.topic, telemetry(self.miner).model_dump(mode="json"))]

    def collector_ingest(self) -> dict[str, Any]:
        """The `mqtt.ingest` entry a collector needs for miners publishing like this one."""
        return {"topic": f"{self.prefix}/miner/+/telemetry", "kind": "miner_telemetry"}


def build_mqtt_miners(fleet: str, *, seed: int = 0, first_index: int = 0, ambient_c: float = 25.0,
                      host: str = "mqtt", port: int = 1883) -> list[SimulatedMiner]:
    """Miners for `fleet` (`nano3s:2,q:1`) that exist only on MQTT; indexes from `first_index` so their
    MACs differ from a TCP fleet built with the same seed."""
    from simulators.fleet import parse_fleet

    specs = [spec for spec, count in parse_fleet(fleet) for _ in range(count)]
    return [SimulatedMiner(spec, first_index + i, seed=seed, host=host, port=port, ambient_c=ambient_c)
            for i, spec in enumerate(specs)]


@contextmanager
def mqtt_devices(fleet_miners: list[SimulatedMiner], *, host: str, port: int = 1883, username: str | None = None,
                 password: str | None = None, prefix: str = "sim", mqtt_fleet: str | None = None, seed: int = 0,
                 ambient_c: float = 25.0, interval_s: float = 5.0, rack_size: int = 10, overhead_w: float = 150.0,
                 wall_factor: float = 1.0, log: Callable[[str], None] = print) -> Iterator[list[MqttDevice]]:
    """What `hashfleet simulate --mqtt-host` runs: a power meter over every simulated miner (the TCP
    fleet and the MQTT-only ones) and one MqttMiner per `mqtt_fleet` miner, all publishing every
    `interval_s` until the block ends. `log` gets one line per device and the collector's ingest config."""
    auth: dict[str, Any] = {"username": username, "password": password, "interval_s": interval_s}
    own = build_mqtt_miners(mqtt_fleet, seed=seed, first_index=len(fleet_miners), ambient_c=ambient_c,
                            port=port) if mqtt_fleet else []
    meter = MqttPowerMeter([*fleet_miners, *own], host, port, prefix=prefix, rack_size=rack_size,
                           overhead_w=overhead_w, wall_factor=wall_factor, **auth)
    devices: list[MqttDevice] = [meter, *(MqttMiner(m, host, port, prefix=prefix, **auth) for m in own)]
    started: list[MqttDevice] = []
    try:
        for device in devices:
            started.append(device.start())
        for rack, members in meter.racks.items():
            log(f"meter {prefix}/meter/{rack}: {len(members)} outlet(s), overhead {overhead_w:g} W")
        for device in devices[1:]:
            assert isinstance(device, MqttMiner)
            log(f"mqtt miner {format_mac(device.miner.mac)} {device.miner.spec.key} -> {device.topic}")
        ingest = meter.collector_ingest() + ([devices[1].collector_ingest()] if own else [])  # type: ignore[attr-defined]
        log("collector config: mqtt.ingest = " + json.dumps(ingest))
        yield devices
    finally:
        for device in started:
            device.stop()
