"""One miner id per miner in a cycle.

A sample's id is its MAC when known (MinerSample.miner). Two miners claiming one MAC (cloned
control-board firmware, or one miner configured under two addresses) would silently overwrite each
other's points and share one running total. So the first address seen with an id keeps it; any
other address claiming it is stored under its own host:port, and while the clash lasts both carry
a `duplicate miner id` error (the first one from the next cycle on: its sample may already be on
its way to the sinks when the second arrives). The clash is logged once; it is forgotten after a
cycle in which no second address claimed the id.

That rule is for addresses that show the MAC (the miner answered with it). An address that does not
answer only remembers its last known id, and never keeps it over an address that shows it this
cycle or did last cycle (a miner that moved, e.g. by DHCP): its sample is stored under its own
host:port. When the silent address's sample came first in a cycle, it is already on its way under
the id: the live one is stored under its address for that one cycle and keeps the id from the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from models import MinerSample
from models.sample import MAX_ERRORS

log = logging.getLogger(__name__)

MAX_CLASHES = 10_000  # ids in dispute remembered at once; each holds a few addresses
DUPLICATE_ID = "duplicate miner id"  # how the error each address in a clash carries begins (`disputed`)
_MAX_RIVALS = 8  # addresses named per id


@dataclass
class _Clash:
    owner: str  # the address that keeps the id
    shows: bool  # the owner's last sample showed the id (it answered), not only remembered it
    rivals: set[str] = field(default_factory=set)
    last: datetime | None = None  # the last cycle a second address claimed the id


class DuplicateIds:
    """Call `check` with every sample of every cycle, in any order (a new `ts` starts a cycle)."""

    def __init__(self) -> None:
        self._cycle: datetime | None = None
        self._claims: dict[str, str] = {}  # id -> the first address with it, this cycle
        self._shown: dict[str, str] = {}  # id -> the first address that showed it (its MAC read), this cycle
        self._shown_before: dict[str, str] = {}  # the same, last cycle
        self._clashes: dict[str, _Clash] = {}

    def check(self, sample: MinerSample) -> MinerSample:
        """`sample` itself, or a copy that names the clash (and, for a rival, carries its host:port as id)."""
        if sample.ts != self._cycle:
            self._start(sample.ts)
        address = f"{sample.host}:{sample.port}"
        miner = sample.miner
        shows = sample.mac is not None  # a sample that did not read the MAC carries the last known id, if any
        if shows:
            self._shown.setdefault(miner, address)
        elif (holder := self._shown.get(miner) or self._shown_before.get(miner)) and holder != address:
            return _with_error(sample, f"its last known id {miner} is reported by {holder} now; stored under "
                                       f"its address {address}", miner=address)
        first = self._claims.setdefault(miner, address)
        clash = self._clashes.get(miner)
        if clash is None:
            if first == address or len(self._clashes) >= MAX_CLASHES:
                return sample
            if shows and self._shown.get(miner) != first:
                # The first claim this cycle only remembered the id (its sample is out under it): this
                # live miner gets it from the next cycle on.
                self._clashes[miner] = _Clash(owner=address, shows=True, last=sample.ts)
                return _with_error(sample, f"{DUPLICATE_ID} {miner}: {first}, which did not answer, had it "
                                           f"this cycle; this miner is stored under its address {address} this "
                                           "cycle and keeps the id from the next", miner=address)
            clash = self._clashes[miner] = _Clash(owner=first, shows=self._shown.get(miner) == first)
            log.warning(DUPLICATE_ID + " %s: reported by %s and by %s; the second is stored under its address "
                        "(logged once while it lasts)", miner, first, address)
        if first != address:
            clash.last = sample.ts
        if address == clash.owner:
            clash.shows = shows
            if not clash.rivals:
                return sample
            others = ", ".join(sorted(clash.rivals))
            return _with_error(sample, f"{DUPLICATE_ID} {miner}: also reported by {others}, stored under "
                                       "their own address")
        if shows and not clash.shows:  # the owner stopped answering: the live miner takes the id over
            clash.owner, clash.shows, clash.rivals = address, True, set()
            if first == address:  # nothing went out under the id yet this cycle
                return sample
            return _with_error(sample, f"{DUPLICATE_ID} {miner}: {first}, which did not answer, had it this "
                                       f"cycle; this miner is stored under its address {address} this cycle and "
                                       "keeps the id from the next", miner=address)
        if len(clash.rivals) < _MAX_RIVALS:
            clash.rivals.add(address)
        return _with_error(sample, f"{DUPLICATE_ID} {miner}: {clash.owner} reports it too and keeps it; this "
                                   f"miner is stored under its address {address}", miner=address)

    def _start(self, ts: datetime) -> None:
        previous = self._cycle
        self._cycle = ts
        self._claims = {}
        self._shown_before, self._shown = self._shown, {}
        # A clash that no second address claimed in the cycle just ended is over.
        self._clashes = {m: c for m, c in self._clashes.items() if c.last is not None and c.last == previous}


def _with_error(sample: MinerSample, error: str, **update: str) -> MinerSample:
    errors = [*sample.errors, error][-MAX_ERRORS:]
    return sample.model_copy(update={"errors": errors, **update})


def disputed(sample: MinerSample) -> bool:
    """Whether another address claims this sample's id (a clone, or a device on the LAN answering with a real
    miner's MAC): which one is the miner is not known."""
    return any(error.startswith(DUPLICATE_ID) for error in sample.errors)
