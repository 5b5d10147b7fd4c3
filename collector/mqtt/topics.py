"""The published topic tree, in one place (docs/mqtt.md shows it):

    <prefix>/<site>/status                 online | offline (retained; offline is also the last will)
    <prefix>/<site>/state                  site summary: miners, hashrate, power (retained)
    <prefix>/<site>/cost                   site CostSample JSON (retained)
    <prefix>/<site>/collector              the collector's own health and ingest counters
    <prefix>/<site>/health                 the site's hardware health: problems, dollars lost, repair queue
    <prefix>/<site>/miner/<miner>/state    MinerSample JSON (retained)
    <prefix>/<site>/miner/<miner>/cost     miner CostSample JSON (retained)
    <prefix>/<site>/miner/<miner>/health   the miner's problems, root cause and dollars lost (retained)
    <prefix>/<site>/miner/<miner>/plan     the curtailment plan for the miner (retained, on change)
    <prefix>/<site>/curtailment/state      the curtailment plan's summary (retained)
    <prefix>/<site>/curtailment/actions    what curtailment control did (each event)
    <prefix>/<site>/curtailment/mode/set   commands in (Home Assistant): control mode,
    <prefix>/<site>/curtailment/dr_limit_kw/set   demand-response limit,
    <prefix>/<site>/curtailment/kill/set   the kill switch

A miner id becomes one topic level: `/`, `+` and `#` (which MQTT reserves) are replaced by `_`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESERVED = re.compile(r"[/+#\x00]")
_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")


def topic_level(text: str) -> str:
    """`text` usable as one topic level."""
    return _RESERVED.sub("_", text) or "_"


def slug(text: str) -> str:
    """`text` as a Home Assistant id ([a-z0-9_-]): `AA:BB:CC:00:11:22` -> `aa_bb_cc_00_11_22`."""
    return _NOT_SLUG.sub("_", text.lower()).strip("_") or "_"


@dataclass(frozen=True)
class Topics:
    prefix: str
    site: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{topic_level(self.site)}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def site_state(self) -> str:
        return f"{self.root}/state"

    @property
    def site_cost(self) -> str:
        return f"{self.root}/cost"

    @property
    def collector(self) -> str:
        return f"{self.root}/collector"

    @property
    def site_health(self) -> str:
        return f"{self.root}/health"

    def miner_health(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/health"

    def miner_state(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/state"

    def miner_cost(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/cost"

    def miner_plan(self, miner: str) -> str:
        return f"{self.root}/miner/{topic_level(miner)}/plan"

    @property
    def curtailment(self) -> str:
        return f"{self.root}/curtailment"

    @property
    def curtailment_state(self) -> str:
        return f"{self.curtailment}/state"

    @property
    def curtailment_actions(self) -> str:
        return f"{self.curtailment}/actions"

    def curtailment_set(self, what: str) -> str:
        """The command topic of a curtailment entity: mode, dr_limit_kw or kill."""
        return f"{self.curtailment}/{what}/set"


ONLINE = "online"
OFFLINE = "offline"
