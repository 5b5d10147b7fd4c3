"""Sinks: where figures go; a sink writes and nothing else, and knows nothing of miners' protocols.

    influx          InfluxDB through the durable spool (spool, spooled, points)
    local_history   no InfluxDB: the spool itself keeps the local history (`hashfleet report`)
    mqtt_publish    fleet state and cost as JSON over MQTT, Home Assistant discovery (home_assistant)
    live_view       the live terminal view of `hashfleet watch`

A cycle reaches a sink in two steps: `write_miners(part)` for each slice of its miners (samples and
the stages' per-miner figures, in order, while the sources are still at work), then `write(cycle)`
once with the cycle's roll-ups (`cycle.samples` still lists every miner, for summaries). A sink that
only shows whole cycles (the live view) ignores the parts. A sink with work still running on the event
loop when the cycles end (control's commands) also has `async def drain()`, which the pipeline awaits
before the loop ends; `close()` comes after, outside the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collector.cycle import Cycle, MinersPart


class Sink(Protocol):
    async def write_miners(self, part: MinersPart) -> None: ...

    async def write(self, cycle: Cycle) -> None: ...

    def close(self) -> None: ...
