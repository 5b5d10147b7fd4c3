"""Simulated Canaan Avalon miners speaking the CGMiner API, for tests, demos and benchmarks.

Public surface (collector code never imports this package; they meet on the wire):

    with run_fleet("a1246:2,q:1", base="127.20.0.1", seed=7) as fleet:
        miner = fleet.miners[0]          # .host .port .address .spec .mac
        miner.set_faults(soft_off=True)  # or miner.faults = Faults(...)
        miner.last_served, miner.truth() # Snapshot: what was / would be reported
"""

from simulators.clock import ManualClock, wall_clock
from simulators.faults import ECHU_BOARD_LOST, ECMM_OVERHEAT, FAULT_NAMES, Faults
from simulators.fleet import Fleet, FleetSpecError, allocate_addresses, build_miners, parse_fleet, run_fleet
from simulators.miner import SimulatedMiner
from simulators.physics import BoardSnapshot, Snapshot
from simulators.server import BindError
from simulators.specs import MODELS, ModelSpec, WorkMode, resolve_model

__all__ = [
    "BindError",
    "BoardSnapshot",
    "ECHU_BOARD_LOST",
    "ECMM_OVERHEAT",
    "FAULT_NAMES",
    "Faults",
    "Fleet",
    "FleetSpecError",
    "MODELS",
    "ManualClock",
    "ModelSpec",
    "SimulatedMiner",
    "Snapshot",
    "WorkMode",
    "allocate_addresses",
    "build_miners",
    "parse_fleet",
    "resolve_model",
    "run_fleet",
    "wall_clock",
]
