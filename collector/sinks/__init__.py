"""Sinks write a cycle somewhere and nothing else; they know nothing about miners' protocols.

A cycle reaches a sink in two steps: `write_miners(part)` for each slice of its miners (samples and
their cost figures, in order), then `write(result)` once with the cycle's roll-ups and health
(`result.samples` still lists every miner, for summaries). A sink that only shows whole cycles
(the live terminal view) ignores the parts.
"""

from __future__ import annotations

from typing import Protocol

from collector.sources.polled_miners import CycleResult, MinersPart


class Sink(Protocol):
    async def write_miners(self, part: MinersPart) -> None: ...

    async def write(self, result: CycleResult) -> None: ...

    def close(self) -> None: ...
