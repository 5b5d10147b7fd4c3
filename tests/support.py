"""Small helpers shared by test modules: `from tests.support import HASHFLEET, wait_for`."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent  # the checkout
DATA = REPO / "tests" / "data"  # replies, network answers, pool answers: each with its source note

# The `hashfleet` entry point installed next to this interpreter (the venv's bin/).
HASHFLEET = str(Path(sys.executable).with_name("hashfleet"))

# A fixed poll time for tests that build samples without a collector process.
TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.1) -> T:
    """Poll `condition` until it returns something truthy and return that; AssertionError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def pyasic_data(host: str):
    """pyasic 0.79, unchanged: detect the miner at `host` and read it (its warnings silenced)."""
    import pyasic

    async def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = await pyasic.get_miner(host)
            return found, await found.get_data()

    return asyncio.run(go())


def refused(host: str, port: int) -> bool:
    """Nothing listens there: a connection is refused (not merely slow or dropped)."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class Samples:
    """A source of fixed samples (collector.sources.Source): a cycle's miners without a network."""

    def __init__(self, samples, *, carry: bool = True):
        self.samples = list(samples)
        self.carry = carry

    async def start(self) -> None: ...

    async def announce(self, cycle) -> None:
        for sample in self.samples:
            cycle.expect(sample.miner, carries_fixed_costs=self.carry)

    async def collect(self, cycle) -> None:
        for sample in self.samples:
            cycle.add(sample)

    async def close(self) -> None: ...


async def deliver(samples, sinks, stages=(), *, network=None, site: str = "s1", ts: datetime = TS):
    """One cycle of `samples` through the real loop's path (collector.service.run_cycle) to `sinks`,
    with the network state of `network` (a NetworkFeedConfig, dict or NetworkInputs) when stages
    cost it. Returns the Cycle."""
    from collector import service
    from collector.cycle import Cycle
    from collector.sources.network import NetworkInputs
    from models import NetworkFeedConfig

    sources = [Samples(samples)]
    if network is not None:
        if not isinstance(network, NetworkInputs):
            network = NetworkInputs(network if isinstance(network, NetworkFeedConfig)
                                    else NetworkFeedConfig.model_validate(network))
        sources.insert(0, network)
    cycle = Cycle(site, ts)
    await service.run_cycle(cycle, sources, list(stages), list(sinks))
    return cycle
