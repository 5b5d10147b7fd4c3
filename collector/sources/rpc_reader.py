"""What the native readers of other makes share (antminer, whatsminer, braiins): one RPC request a poll,
read into the make's own reading; the fields read apart from the poll refreshed after it when due
(collector/sources/profile.py says when). Each make's module subclasses `RpcReader` with its request
and its reading, sample and refresh.

A reader whose answers show the unit is not the make identified at its address (a command the make's
firmware always knows refused as unknown, a reply of another make's shape: `OtherUnit`; another unit
swapped in at the same address) says so in `other_unit`, and its sample is an error stored under the
address; collector.sources.polled_miners then identifies the address again.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, ClassVar

from pydantic import ValidationError

from collector.sources import cgminer_client as cgminer
from collector.sources.profile import IDENTITY_EVERY_S, STATUS_EVERY_S, Profile, spread_due
from models import MinerSample, MinerState


class OtherUnit(cgminer.MinerReplyError):
    """An answer no unit of the reader's make gives: another unit answers at the address."""


class RpcReader:
    """One identified miner read over its RPC API. Subclasses set `poll_command` and give `read`,
    `sample`, `unread` and `refresh`."""

    __slots__ = ("host", "port", "profile", "mac", "status_due", "identity_due", "shape", "other_unit")
    poll_command: ClassVar[str]  # the one request a poll sends; `read` reads exactly its sections

    def __init__(self, host: str, port: int, profile: Profile) -> None:
        self.host, self.port, self.profile = host, port, profile
        self.mac: str | None = None
        self.status_due = self.identity_due = 0.0
        self.shape: tuple[bool, tuple[int | None, ...]] | None = None
        self.other_unit: str | None = None  # why the unit answering is not the one identified here

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def schedule(self) -> None:
        """After identification: the next refreshes, each miner on its own phase."""
        now = time.monotonic()
        self.identity_due = spread_due(now, IDENTITY_EVERY_S)
        self.status_due = spread_due(now, STATUS_EVERY_S)

    async def poll(self, *, site: str, ts: datetime, timeout_s: float, known_id: str | None) -> MinerSample:
        """Read the miner; never raises for a misbehaving miner."""
        where = self.where
        miner_id = known_id or self.mac or where
        started = time.monotonic()
        try:
            raw = await cgminer.request(self.host, self.port, self.poll_command, timeout_s=timeout_s)
            reading = self.read(cgminer.decode(raw, where))
            await self.refresh(reading, started + timeout_s)  # raises OtherUnit only
        except cgminer.MinerUnreachable as e:
            return self.unread(miner_id, site, ts, str(e), MinerState.OFFLINE)
        except (OtherUnit, cgminer.UnknownCommand) as e:  # (an unknown command: one of the poll's own)
            identified = " ".join(name for name in (self.profile.make, self.profile.model) if name) or "unit"
            self.other_unit = f"{str(e)[:300]}: not the {identified} identified here"  # (the firmware's words, cut)
            sample = self.unread(where, site, ts, f"{self.other_unit}; identifying it again", MinerState.ERROR)
            return sample.model_copy(update={"make": None})  # what answers is not known yet
        except cgminer.MinerReplyError as e:
            return self.unread(miner_id, site, ts, str(e), MinerState.ERROR)
        try:
            return self.sample(reading, site, ts)
        except ValidationError as e:  # a backstop: the checks should have refused it
            bad = "; ".join(f"{'.'.join(map(str, err['loc']))} ({err['msg']})" for err in e.errors()[:3])
            return self.unread(miner_id, site, ts, f"{where}: reply value out of range: {bad}", MinerState.ERROR)

    def read(self, reply: dict[str, Any]) -> Any:
        """The poll's reply read (cgminer.MinerReplyError when it is unusable, OtherUnit when it is
        another make's)."""
        raise NotImplementedError

    async def refresh(self, reading: Any, deadline: float) -> None:
        """The fields read apart from the poll, when due or when the reading changed shape. Their
        failures are kept as warnings; only OtherUnit is raised."""
        raise NotImplementedError

    def sample(self, reading: Any, site: str, ts: datetime) -> MinerSample:
        raise NotImplementedError

    def unread(self, miner_id: str, site: str, ts: datetime, reason: str, state: MinerState) -> MinerSample:
        raise NotImplementedError
