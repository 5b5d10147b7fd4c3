"""What each miner model is on its nameplate, and how far a reading may stray from it.

A plain table: one `Nameplate` per model, with every spelling firmware and pyasic use for it
(`names`). Adding a model is one more entry in `CATALOGUE`. Figures are nameplate values
(DESIGN.md section 4).

The collector uses these figures to refuse readings no such unit can produce (a hashrate of
1e300 GH/s, 100 MW at the wall): see `ceilings`. Where no nameplate is known, the miner's own
expected hashrate and power limit stand in, and past those a ceiling for any single unit.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# A reading above this multiple of the reference is not a plausible reading of that unit.
# Overclocked firmware reaches ~1.3x nameplate hashrate; a PSU cannot deliver 2x its rating.
HASHRATE_FACTOR = 3.0
POWER_FACTOR = 2.0
# Where nothing is known about a unit: past any single miner made (the largest in 2025, a 3U
# hydro unit, is ~1,200 TH/s and ~11 kW).
MAX_UNIT_THS = 5_000.0
MAX_UNIT_W = 30_000.0


@dataclass(frozen=True, slots=True)
class Nameplate:
    make: str
    model: str
    hashrate_ths: float
    power_w: float
    boards: int
    chips_per_board: int
    names: tuple[str, ...]  # as firmware (Avalon `PROD`, `MODEL`) and pyasic (`device_info.model`) spell it


CATALOGUE: tuple[Nameplate, ...] = (
    Nameplate("Canaan", "AvalonMiner 1246", 90.0, 3420.0, 3, 120,
              ("AvalonMiner 1246", "Avalon 1246", "A1246", "1246")),
    Nameplate("Canaan", "AvalonMiner 1466", 150.0, 3230.0, 3, 176,
              ("AvalonMiner 1466", "Avalon 1466", "A1466", "1466")),
    Nameplate("Canaan", "AvalonMiner 15-194", 194.0, 3650.0, 3, 160,
              ("AvalonMiner 15-194", "Avalon 1566", "A1566", "A15-194", "15-194")),
    Nameplate("Canaan", "Avalon Q", 90.0, 1674.0, 1, 160, ("Avalon Q", "Avalon Q Home", "Q")),
    Nameplate("Canaan", "Avalon Nano 3S", 6.0, 140.0, 1, 12, ("Avalon Nano3s", "Avalon Nano 3s", "Nano3s")),
    Nameplate("Bitmain", "Antminer S19j Pro", 104.0, 3068.0, 3, 126, ("Antminer S19j Pro", "S19j Pro")),
    Nameplate("Bitmain", "Antminer S21", 200.0, 3500.0, 3, 108, ("Antminer S21", "S21")),
    Nameplate("Bitaxe", "Bitaxe Gamma", 1.224, 18.0, 1, 1, ("Bitaxe Gamma", "Gamma")),
)

_SPELLING = re.compile(r"[^0-9a-z]")
_VARIANT = re.compile(r"-\d+$")  # Canaan's hashrate variant: "AvalonMiner 1246-83", MODEL "1246-83"


def _key(name: str) -> str:
    return _SPELLING.sub("", name.lower())


_BY_NAME: dict[str, Nameplate] = {_key(name): plate for plate in CATALOGUE for name in plate.names}


@functools.lru_cache(maxsize=1024)  # model strings come from miners: bounded, not one entry per string ever seen
def nameplate(model: str | None) -> Nameplate | None:
    """The catalogue entry for a model as a miner reports it ("AvalonMiner 1246-83", "S19j Pro"), or None."""
    if not model:
        return None
    found = _BY_NAME.get(_key(model))
    if found is None and _VARIANT.search(model):
        found = _BY_NAME.get(_key(_VARIANT.sub("", model)))
    return found


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The highest plausible readings of one unit, and what each was derived from (for messages)."""

    hashrate_ths: float
    power_w: float
    hashrate_basis: str  # "nameplate", "expected" (its own), "any unit"
    power_basis: str  # "nameplate", "power limit" (its own), "any unit"
    plate: Nameplate | None

    def explain(self, what: str) -> str:
        """`what` is "hashrate" or "power": the ceiling in words, e.g. "3x the Avalon Q nameplate (90 TH/s)"."""
        if what == "hashrate":
            basis, limit, factor, unit = self.hashrate_basis, self.hashrate_ths, HASHRATE_FACTOR, "TH/s"
        else:
            basis, limit, factor, unit = self.power_basis, self.power_w, POWER_FACTOR, "W"
        if basis == "any unit":
            return f"the most any single miner {'hashes' if what == 'hashrate' else 'draws'} ({limit:g} {unit})"
        if basis == "nameplate":
            assert self.plate is not None
            return f"{factor:g}x the {self.plate.model} nameplate ({limit / factor:g} {unit})"
        return f"{factor:g}x its own {'expected hashrate' if what == 'hashrate' else 'power limit'} ({limit / factor:g} {unit})"


def ceilings(model: str | None, expected_ths: float | None, power_limit_w: float | None) -> Ceilings:
    """Plausible maxima for a unit of `model` that states `expected_ths` and `power_limit_w` itself.

    The nameplate wins when the model is known (a miner's own figures could be as wrong as its
    readings); otherwise its own expected hashrate and power limit, when they are themselves within
    the ceilings for any single unit; otherwise those ceilings."""
    plate = nameplate(model)
    if plate is not None:
        return _of_plate(plate)
    if expected_ths is not None and 0 < expected_ths <= MAX_UNIT_THS:
        ths, ths_basis = HASHRATE_FACTOR * expected_ths, "expected"
    else:
        ths, ths_basis = MAX_UNIT_THS, "any unit"
    if power_limit_w is not None and 0 < power_limit_w <= MAX_UNIT_W:
        watts, watts_basis = POWER_FACTOR * power_limit_w, "power limit"
    else:
        watts, watts_basis = MAX_UNIT_W, "any unit"
    return Ceilings(ths, watts, ths_basis, watts_basis, None)


@functools.cache  # one per catalogue entry
def _of_plate(plate: Nameplate) -> Ceilings:
    return Ceilings(HASHRATE_FACTOR * plate.hashrate_ths, POWER_FACTOR * plate.power_w, "nameplate", "nameplate", plate)


# --- thermal limits (the health stage: collector/stages/health_signals.py) -----------------------


@dataclass(frozen=True, slots=True)
class ThermalLimits:
    """Where a model's temperatures stop being normal. `chip_hot_c`: the hottest chip above this runs
    hot (below the firmware's own protection, so a person is warned before the unit throttles);
    `ambient_max_c`: the warmest intake air the maker rates it for. None where no source gives one:
    the unit is then compared with its peers only."""

    chip_hot_c: float | None
    ambient_max_c: float | None
    source: str


# Keyed by Nameplate.model. docs/health.md ("Thresholds") quotes the same figures and sources.
THERMAL_LIMITS: dict[str, ThermalLimits] = {
    **dict.fromkeys(("AvalonMiner 1246", "AvalonMiner 1466", "AvalonMiner 15-194"), ThermalLimits(
        90.0, 35.0, "D-Central, 'Avalon 1266 - Temperature Too High': the A11/A12 family trips over-temperature at "
                    "~95-105 C chip, and intake above 35 C exceeds Canaan's spec; hot = 5 C under the lowest trip")),
    "Avalon Q": ThermalLimits(90.0, None, "Canaan LW10583 API doc (docs/avalon.md s7): target chip temperature "
                                          "65/80/85 C by work mode; hot = 5 C over the highest target"),
    "Avalon Nano 3S": ThermalLimits(100.0, None, "Canaan LW10583 API doc (docs/avalon.md s7): target 80/85/90 C by "
                                                 "mode, healthy units run in the low 90s; hot = 10 C over the highest "
                                                 "target"),
    "Bitaxe Gamma": ThermalLimits(75.0, None, "ESP-Miner (skot/ESP-Miner) power management: THROTTLE_TEMP 75 C, "
                                              "where the firmware starts cutting frequency"),
}


def thermal_limits(model: str | None) -> ThermalLimits | None:
    """The thermal limits of a model as a miner reports it, or None (not catalogued, or no source)."""
    plate = nameplate(model)
    return None if plate is None else THERMAL_LIMITS.get(plate.model)
