"""What identification learnt about a miner that a native reader keeps, and how long the fields a
reader fetches apart from its poll are trusted.

pyasic's detection names the make, model and firmware family and knows each model's boards, chips
and fans; a native reader takes those from it once (`from_pyasic`) so that its samples carry the same
make and model as pyasic's (they are InfluxDB tags: a series must not change name with the reader).

The native readers read the fast-changing fields in one request per poll. Fields that change rarely
or that only another API carries (an Antminer's MAC and health list from its web UI, a Whatsminer's
error codes, a Braiins OS unit's MAC and nominal hashrate over gRPC) are fetched apart: at
identification, when the poll's reading changes shape (starts or stops hashing, a board or chips
come or go), and otherwise at most every STATUS_EVERY_S / IDENTITY_EVERY_S, each miner on its own
phase so that a fleet identified together does not refresh together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from collector.sources import reply_values

# Health lists, error codes, sleep state: how old they may get while the poll's reading keeps its shape.
STATUS_EVERY_S = 60.0
# MAC, firmware, nominal hashrate: read again this often (a unit swapped at the same address without
# 3 missed polls in between is noticed by then: a new MAC, or a refresh another make's firmware refuses;
# a poll of another make's shape shows it at once: collector.sources.rpc_reader).
IDENTITY_EVERY_S = 600.0


@dataclass(frozen=True, slots=True)
class Profile:
    make: str | None = None  # as pyasic names it ("AntMiner", "WhatsMiner"): the `make` tag
    model: str | None = None  # as pyasic names it ("S19j Pro", "M50S VH50"): the `model` tag
    boards: int | None = None  # hash boards the model has
    chips_per_board: int | None = None
    fans: int | None = None


def from_pyasic(miner: Any) -> Profile:
    """The profile of a miner pyasic detected (its attributes only: nothing is sent)."""
    info = getattr(miner, "device_info", None)
    return Profile(
        make=reply_values.text(_plain(getattr(info, "make", None))),
        model=reply_values.text(_plain(getattr(info, "model", None))),
        boards=_small(getattr(miner, "expected_hashboards", None)),
        chips_per_board=_small(getattr(miner, "expected_chips", None)),
        fans=_small(getattr(miner, "expected_fans", None)),
    )


def spread_due(now: float, every_s: float) -> float:
    """The first refresh of a miner identified now: somewhere in the next `every_s`."""
    return now + random.uniform(0.0, every_s)


def next_due(now: float, every_s: float) -> float:
    """The next refresh after one now: `every_s` give or take a quarter, so phases keep apart."""
    return now + every_s * random.uniform(0.75, 1.25)


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))  # pyasic's enums carry the display name as their value


def _small(value: Any) -> int | None:
    return value if type(value) is int and 0 < value <= 1024 else None
