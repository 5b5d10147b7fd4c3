"""What a firmware module needs from a simulated miner (a `SimulatedMiner` is all of these).

The firmware modules (`cgminer`, `antminer`, `bitaxe`) build replies from a device and never
import `SimulatedMiner`; these Protocols say what they call on it. `Device` is what every
firmware needs; the others add what only some firmwares offer.
"""

from __future__ import annotations

from typing import Any, Protocol

from simulators.physics import Snapshot, Traits
from simulators.specs import ModelSpec


class Device(Protocol):
    """Identity, the reported state, a reboot and the command log: what every firmware needs (Bitaxe: no
    more)."""

    @property
    def spec(self) -> ModelSpec: ...

    @property
    def traits(self) -> Traits: ...

    def observe(self) -> Snapshot: ...

    def reboot(self) -> None: ...

    def record_command(self, command: str, params: dict[str, Any] | None = None, *, accepted: bool = True,
                       msg: str = "") -> None: ...


class SwitchableDevice(Device, Protocol):
    """A firmware with sleep, work modes, a power limit and a locate LED, stamping replies with the time
    (Antminer, CGMiner, btminer, BOS+)."""

    def now(self) -> float: ...

    def set_soft_off(self, on: bool) -> None: ...

    def set_led(self, on: bool) -> None: ...

    def set_work_mode(self, mode: int) -> None: ...

    def set_power_limit(self, watts: float | None) -> None: ...

