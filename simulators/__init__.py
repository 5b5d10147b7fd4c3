"""Simulated miners on their real APIs, for tests, demos and benchmarks: Canaan Avalons (CGMiner
API on 4028: `a1246`, `a1566`, `a1466`, `q`, `nano3s`, and in the layouts of the golden cases in
tests/data/replies/avalon/golden/ `nano3` (2024 firmware, watts in PS[5]), `mini3`, `a1066`/`a1047`
(A10, 2019 firmware), `a1346`/`a1366` (A13), `a1566hu` (hydro A15), `a16`/`a16xp`, and AUC controller
chains of 7xx/8xx/9xx modules `av741` (alias `avchain`), `av841`, `av921`; simulators.avalon_layouts), Antminer S19j Pro / S21 on stock firmware (BMMiner RPC on 4028 + digest-auth web UI
on 80), Whatsminer M30S+ / M50S / M60S (btminer API v2 on 4028, with the token-authenticated,
AES-encrypted writes: `m30splus`, `m50s`, `m60s`), Antminer S19j Pro / S21 on Braiins OS+
(bosminer RPC on 4028 + gRPC on 50051: `bos-s19jpro`, `bos-s21`) and a Bitaxe Gamma (AxeOS HTTP
on 80).

Public surface (collector code never imports this package; they meet on the wire):

    with run_fleet("a1246:2,q:1", base="127.20.0.1", seed=7, clock=ManualClock()) as fleet:
        miner = fleet.miners[0]          # .host .port .address .spec .mac
        miner.set_faults(soft_off=True)  # or miner.faults = Faults(...)
        miner.set_faults(chips_dying=((1, 40.0),), days_per_hour=3600)  # health faults on fault time
        fleet.clock.advance(2)           # two fault days: 80 chips of board 1 dead
        miner.last_served, miner.truth() # Snapshot: what was / would be reported (.power_true_w: the meter's)
        fleet.requests(miner)            # Counter of what clients asked: "version", "GET /", ...
        fleet.commands(miner)            # control commands received (soft-off, work mode, power limit, ...)
        fleet.firmware(miner).writes     # Whatsminer: privileged commands; Braiins: .actions

Fault switches (`Faults`, simulators.faults): hardware (dead boards, overheat, soft-off, ambient heat,
chips dying, a failing fan, PSU drift, error codes, pool rejects, a reboot loop, HW errors, a weak board),
network and wire faults. Control commands are answered as each firmware does and move the physics
(soft-off, work modes and levels, power limits/targets); every one lands in `fleet.commands()` and,
with a path, a JSON Lines file (simulators.commands). Drills from outside the process: `--fault`,
`--faults FILE` and a loopback control endpoint (simulators.drills; docs/drills.md).

Simulated pools (Braiins Pool, OCEAN, F2Pool, public-pool, ckpool) fed by a fleet's hashrate:
`simulators.pools` (`run_pools(fleet, "braiins,ocean")`; docs/pools.md).
"""

from simulators.clock import ManualClock, wall_clock
from simulators.commands import Command, CommandLog
from simulators.faults import CONTROLLER, ECHU_BOARD_LOST, ECMM_OVERHEAT, FAULT_NAMES, Faults, FaultValueError
from simulators.fleet import Fleet, FleetSpecError, allocate_addresses, build_miners, parse_fleet, run_fleet
from simulators.miner import SimulatedMiner
from simulators.physics import BoardSnapshot, Snapshot
from simulators.http import WEB_PORT
from simulators.server import BindError
from simulators.specs import MODELS, ChainModule, Family, ModelSpec, WorkMode, resolve_model

__all__ = [
    "BindError",
    "BoardSnapshot",
    "CONTROLLER",
    "ChainModule",
    "Command",
    "CommandLog",
    "ECHU_BOARD_LOST",
    "ECMM_OVERHEAT",
    "FAULT_NAMES",
    "Family",
    "FaultValueError",
    "Faults",
    "Fleet",
    "FleetSpecError",
    "MODELS",
    "ManualClock",
    "ModelSpec",
    "SimulatedMiner",
    "Snapshot",
    "WEB_PORT",
    "WorkMode",
    "allocate_addresses",
    "build_miners",
    "parse_fleet",
    "resolve_model",
    "run_fleet",
    "wall_clock",
]
