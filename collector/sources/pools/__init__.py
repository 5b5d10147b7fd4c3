"""Pool sources: what each pool account's documented read-only API says, as `cycle.pools[name]`.

    base        the schedule, the last good values and their ages, the snapshot (a Source)
    client      HTTP: timeouts, capped replies, the pool's rate, Retry-After, backoff with jitter
    reply       reading decoded JSON: types, finite and plausible numbers, or a named error
    braiins     Braiins Pool (FPPS; token)
    ocean       OCEAN (TIDES; public by address)
    f2pool      F2Pool (FPPS; token)
    solo        public-pool and ckpool (solo; public by address)

A pool module turns its API's bytes into PoolWorker and PoolDay (models/pool.py) and nothing else; the
reconciliation stage (collector/stages/pool_reconciliation.py) matches them to the miners and weighs
them against what the miners reported. docs/pools.md has the APIs and the config.
"""

from __future__ import annotations

from collector.sources.pools.base import PoolSource
from collector.sources.pools.braiins import BraiinsSource
from collector.sources.pools.f2pool import F2PoolSource
from collector.sources.pools.ocean import OceanSource
from collector.sources.pools.solo import CkpoolSource, PublicPoolSource
from models.config import PoolConfig
from models.pool import PoolKind

SOURCES: dict[PoolKind, type[PoolSource]] = {
    PoolKind.BRAIINS: BraiinsSource,
    PoolKind.OCEAN: OceanSource,
    PoolKind.F2POOL: F2PoolSource,
    PoolKind.PUBLICPOOL: PublicPoolSource,
    PoolKind.CKPOOL: CkpoolSource,
}


def pool_source(config: PoolConfig) -> PoolSource:
    """The source of one configured pool account, its token read from its variable or file."""
    return SOURCES[config.kind](config, token=config.resolved_token())


__all__ = ["PoolSource", "SOURCES", "pool_source"]
