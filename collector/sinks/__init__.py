"""Sinks write a finished cycle somewhere and nothing else.

A sink is anything with `async write(result: CycleResult)` and `close()`;
it knows nothing about miners' protocols.
"""

from __future__ import annotations

from typing import Protocol

from collector.poller import CycleResult


class Sink(Protocol):
    async def write(self, result: CycleResult) -> None: ...

    def close(self) -> None: ...
