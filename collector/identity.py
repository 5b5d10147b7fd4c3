"""One miner id per miner in a cycle.

A sample's id is its MAC when known (MinerSample.miner). Two miners claiming one MAC (cloned
control-board firmware, or one miner configured under two addresses) would silently overwrite each
other's points and share one running total. So the first address seen with an id keeps it; any
other address claiming it is stored under its own host:port, and while the clash lasts both carry
a `duplicate miner id` error (the first one from the next cycle on: its sample may already be on
its way to the sinks when the second arrives). The clash is logged once; it is forgotten after a
cycle without it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from models import MinerSample
from models.sample import MAX_ERRORS

log = logging.getLogger(__name__)

MAX_CLASHES = 10_000  # ids in dispute remembered at once; each holds a few addresses
_MAX_RIVALS = 8  # addresses named per id


@dataclass
class _Clash:
    owner: str  # the address that keeps the id
    rivals: set[str] = field(default_factory=set)
    last: datetime | None = None  # the cycle it was last seen in


class DuplicateIds:
    """Call `check` with every sample of every cycle, in any order (a new `ts` starts a cycle)."""

    def __init__(self) -> None:
        self._cycle: datetime | None = None
        self._claims: dict[str, str] = {}  # id -> address, this cycle
        self._clashes: dict[str, _Clash] = {}

    def check(self, sample: MinerSample) -> MinerSample:
        """`sample` itself, or a copy that names the clash (and, for a rival, carries its host:port as id)."""
        if sample.ts != self._cycle:
            self._start(sample.ts)
        address = f"{sample.host}:{sample.port}"
        miner = sample.miner
        first = self._claims.setdefault(miner, address)
        clash = self._clashes.get(miner)
        if clash is None:
            if first == address or len(self._clashes) >= MAX_CLASHES:
                return sample
            clash = self._clashes[miner] = _Clash(owner=first)
            log.warning("duplicate miner id %s: reported by %s and by %s; the second is stored under its address "
                        "(logged once while it lasts)", miner, first, address)
        clash.last = sample.ts
        if address == clash.owner:
            if not clash.rivals:
                return sample
            others = ", ".join(sorted(clash.rivals))
            return _with_error(sample, f"duplicate miner id {miner}: also reported by {others}, stored under "
                                       "their own address")
        if len(clash.rivals) < _MAX_RIVALS:
            clash.rivals.add(address)
        return _with_error(sample, f"duplicate miner id {miner}: {clash.owner} reports it too and keeps it; this "
                                   f"miner is stored under its address {address}", miner=address)

    def _start(self, ts: datetime) -> None:
        previous = self._cycle
        self._cycle = ts
        self._claims = {}
        # A clash not seen in the cycle just ended is over.
        self._clashes = {m: c for m, c in self._clashes.items() if c.last is not None and c.last == previous}


def _with_error(sample: MinerSample, error: str, **update: str) -> MinerSample:
    errors = [*sample.errors, error][-MAX_ERRORS:]
    return sample.model_copy(update={"errors": errors, **update})
