"""Sources: what arrives from outside, turned into samples and inputs for a cycle, and nothing else.

Every input comes through one door, `Source`, polled or pushed: the service asks each source, in the
order the composition root (collector/pipeline.py) lists them, to `announce` what it will bring to a
cycle (the miners it expects; inputs such as network state), then to `collect` it (`cycle.add`
for each sample). So the loop has one path and each miner is costed and written once per cycle,
whatever brought it in.

    polled_miners   the miners collector/ polls: identification, deadline, native Avalon or pyasic
    avalon          Canaan Avalon over the CGMiner API (cgminer_client: the transport)
    pyasic_makes    every other make, through pyasic
    mqtt_ingest     MQTT: miners that publish their own telemetry, meters, power and BTC prices
    network         difficulty, fees, BTC price (static or an HTTP API)

A source never raises for a misbehaving device: a miner that does not answer still yields a sample
(offline), one whose answer is unusable an `error` sample with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collector.cycle import Cycle


class Source(Protocol):
    async def start(self) -> None:
        """Once, before the first cycle: connections, background work (identification, feeds)."""

    async def announce(self, cycle: Cycle) -> None:
        """Before any source collects: the miners this source will bring (`cycle.expect`), and inputs
        the stages need from the first sample on (e.g. `cycle.network`). Quick: no waiting on devices."""

    async def collect(self, cycle: Cycle) -> None:
        """Bring this cycle's samples (`cycle.add`), within the cycle's deadline."""

    async def close(self) -> None:
        """Stop background work and connections."""
