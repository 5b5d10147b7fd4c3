"""One simulated miner as tests and the server see it: identity, address, faults, controls, truth.

Thread-safe: the server answers from its event-loop thread while a test thread flips faults or
reads the truth; a per-miner lock keeps the physics consistent between the two.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from simulators import avalon_layouts  # noqa: F401  (registers the firmware layouts' commands in cgminer)
from simulators.clock import Clock, wall_clock
from simulators.commands import MAX_TEXT, Command, CommandLog, clean_params
from simulators.faults import Faults
from simulators.physics import MinerPhysics, Snapshot, make_traits
from simulators.specs import ModelSpec


class SimulatedMiner:
    def __init__(
        self,
        spec: ModelSpec,
        index: int,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 4028,
        clock: Clock = wall_clock,
        ambient_c: float = 25.0,
        uptime_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.index = index
        self.seed = seed
        self.host = host
        self.port = port  # replaced by the bound port when asked for port 0
        self.traits = make_traits(spec, seed, index, uptime_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._physics = MinerPhysics(spec, self.traits, clock(), ambient_c)
        self.last_served: Snapshot | None = None  # the truth behind the last answer sent
        self.answers = 0  # replies sent (including ones a wire fault spoiled); counted by the server
        # Set by the server: reopens or closes the listener when `no_answer` flips.
        self.on_network_change: Callable[[SimulatedMiner], None] | None = None
        # Control commands received on the wire (a Fleet shares one log among its miners; a lone miner
        # makes its own at the first command, so 10,000 miners do not each carry an empty one).
        self.command_log: CommandLog | None = None
        # A soft-off (True) or soft-on (False) `ascset` asked for at a time still to come on this miner's clock.
        self._soft_off_at: tuple[float, bool] | None = None

    def __repr__(self) -> str:
        active = ",".join(self.faults.active) or "healthy"
        return f"<SimulatedMiner {self.spec.key} #{self.index} {self.address} mac={self.mac} {active}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def mac(self) -> str:
        return self.traits.mac

    @property
    def model(self) -> str:
        return self.spec.key

    # -- faults ------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        if self._soft_off_at is not None:  # (a soft-off or soft-on whose time has come shows here too)
            with self._lock:
                self._due()
        return self._physics.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        if not isinstance(value, Faults):
            raise TypeError(f"faults must be a Faults, got {type(value).__name__}")
        value.check(self.spec.boards, self.spec.fans, self.spec.key)
        with self._lock:
            old = self._physics.faults
            self._physics.set_faults(value, self._clock())
        if old.no_answer != value.no_answer and self.on_network_change is not None:
            self.on_network_change(self)

    def set_faults(self, **changes: Any) -> Faults:
        """Change some fault switches, keep the others: `miner.set_faults(soft_off=True)`."""
        new = self.faults.with_changes(**changes)
        self.faults = new
        return new

    def clear_faults(self) -> None:
        self.faults = Faults()

    # -- controls (also reached through `ascset`) -----------------------------------------------

    def set_soft_off(self, on: bool) -> None:
        with self._lock:
            self._due()
            phys = self._physics
            if on and phys.faults.ignores_soft_off:
                return  # (answered as done all the same)
            phys.set_faults(phys.faults.with_changes(soft_off=on), self._clock())

    def set_soft_off_at(self, on: bool, at: float) -> None:
        """Soft-off (or soft-on) at `at` on this miner's clock, as Canaan's `ascset|0,softoff,<ts>` does: a time
        that is now or past acts at once; a later one waits, and a newer command replaces it."""
        with self._lock:
            self._due()
            self._soft_off_at = (at, on)
            self._due()

    def _due(self) -> None:
        """Apply a scheduled soft-off or soft-on whose time has come (under the lock), at that time."""
        if self._soft_off_at is None or self._soft_off_at[0] > self._clock():
            return
        at, on = self._soft_off_at
        self._soft_off_at = None
        phys = self._physics
        if on and phys.faults.ignores_soft_off:
            return
        # At its time, or now for a time before the physics' last step (it cannot undo what it integrated).
        phys.set_faults(phys.faults.with_changes(soft_off=on), at if at >= phys.last_t else self._clock())

    def set_work_mode(self, mode: int) -> None:
        with self._lock:
            self._physics.set_work_mode(mode, self._clock())

    def set_work_level(self, level: int) -> None:
        with self._lock:
            self._physics.set_work_level(level, self._clock())

    def set_led(self, on: bool) -> None:
        with self._lock:
            self._physics.led = on

    def set_power_limit(self, watts: float | None) -> None:
        """Cap the draw (the firmware clocks down to meet it); None lifts the cap."""
        with self._lock:
            self._physics.set_power_cap(watts, self._clock())

    def record_command(self, command: str, params: dict[str, Any] | None = None, *, accepted: bool = True,
                       msg: str = "") -> None:
        """Log one control command this miner received on the wire (called by its firmware)."""
        if self.command_log is None:
            self.command_log = CommandLog()
        self.command_log.record(Command(self._clock(), self.spec.family, self.spec.key, self.address, command,
                                        clean_params(params or {}), accepted, msg[:MAX_TEXT]))

    @property
    def reject_ratio(self) -> float:
        """Share of shares the pool rejects now (the `pool_rejects` fault, else the unit's own)."""
        f = self.faults
        return f.pool_rejects[0] / 100.0 if f.pool_rejects is not None else self.traits.reject_ratio

    @property
    def stale_ratio(self) -> float:
        f = self.faults
        return f.pool_rejects[1] / 100.0 if f.pool_rejects is not None else self.traits.stale_ratio

    def set_ambient(self, celsius: float) -> None:
        """Move this miner's site ambient (a `Faults.ambient_c` override still wins)."""
        with self._lock:
            self._physics.advance(self._clock())
            self._physics.site_ambient_c = celsius

    def reboot(self) -> None:
        """Power-cycle now: Elapsed and averages restart, live hashrate ramps up again; a scheduled soft-off or
        soft-on is forgotten."""
        with self._lock:
            self._due()
            self._soft_off_at = None
            self._physics.reboot(self._clock())

    # -- observation ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def truth(self) -> Snapshot:
        """What the miner would report right now (does not count as served)."""
        with self._lock:
            if self._soft_off_at is not None:
                self._due()
            return self._physics.snapshot(self._clock())

    def observe(self) -> Snapshot:
        """The snapshot an answer is built from; remembered as `last_served`."""
        with self._lock:
            if self._soft_off_at is not None:  # (every answer passes here: one test when nothing is scheduled)
                self._due()
            snap = self._physics.snapshot(self._clock())
            self.last_served = snap
        return snap

    def pvt_text(self, board: int, base_c: int, dead_chips: tuple[int, ...] | None = None) -> str:
        with self._lock:
            return self._physics.pvt_text(board, base_c, dead_chips)
