"""Simulated mining pools on their real HTTP APIs, fed by a simulated fleet's hashrate (issue 20).

One module per API (`braiins`, `ocean`, `f2pool`, `solo` for public-pool and ckpool), one shared
engine (`engine`: shares, payout schemes, UTC days), one HTTP server (`web`) with fault switches and
a request log, and `run` to start them beside a fleet. docs/pools.md holds the API facts and sources.

Public surface (collector code never imports this package; they meet on the wire):

    with run_fleet("a1246:2", base="127.20.0.1", clock=clock) as fleet, \\
         run_pools(fleet, "braiins,ocean", base="127.30.0.1:0") as pools:
        braiins = pools["braiins"]                 # .url .token .account .engine
        braiins.engine.configure("hashfleet.a1b2c3", luck=1.05, over_report=0.03)
        braiins.set_faults(rate_limited_s=30)     # or down=True, renamed={...}, day_not_closed=True
        braiins.requests()                         # RequestRecord per request (no credentials)
"""

from simulators.pools.engine import (
    DAY_S,
    Credit,
    DayTotals,
    HashFeed,
    MinerFeed,
    NetworkParams,
    PoolEngine,
    WorkerConfig,
    day_of,
)
from simulators.pools.faults import PoolFaults
from simulators.pools.run import APIS, PoolSim, Pools, PoolSpecError, parse_pools, pool_user, run_pools
from simulators.pools.web import RequestRecord

__all__ = [
    "APIS",
    "Credit",
    "DAY_S",
    "DayTotals",
    "HashFeed",
    "MinerFeed",
    "NetworkParams",
    "PoolEngine",
    "PoolFaults",
    "PoolSim",
    "PoolSpecError",
    "Pools",
    "RequestRecord",
    "WorkerConfig",
    "day_of",
    "parse_pools",
    "pool_user",
    "run_pools",
]
