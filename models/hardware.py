"""What each miner model is on its nameplate, and how far a reading may stray from it.

A plain table: one `Nameplate` per model, with every spelling firmware and pyasic use for it
(`names`), its boards x chips, fans and work modes. Adding a model is one more entry in `CATALOGUE`.
Figures are nameplate values with their source (`source`; for Avalons docs/avalon.md section 8, where
"nameplate unsourced" marks a figure no public source was recorded for; the two Antminers record none;
Whatsminer and Bitaxe entries name theirs, and say so where a figure is an estimate); a figure no source
gives is None, never a guess.

The collector uses these figures to refuse readings no such unit can produce (a hashrate of
1e300 GH/s, 100 MW at the wall): see `ceilings`. Where no nameplate is known, a make whose line the
catalogue covers (`FAMILIES`: Whatsminer, Bitaxe) is held to the largest unit of that make; only for
other makes do the miner's own expected hashrate and power limit stand in, and past those a ceiling for
any single unit.
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
# A positive hashrate below this is no reading either: 1 kH/s, less than an ESP32 hobby miner
# (~50 kH/s) or any CPU makes. A denormal such as 5e-324 TH/s makes J/TH and cost per BTC infinite.
MIN_HASHING_THS = 1e-9


@dataclass(frozen=True, slots=True)
class WorkMode:
    """One work mode as the firmware names it (Avalon `WORKMODE[n]`, or `WORKLEVEL[n]` on a Nano 3),
    with the figures its maker published; None where nothing was published."""

    key: str  # the value the firmware reports: "0", "1", "2"
    name: str
    hashrate_ths: float | None = None
    power_w: float | None = None  # at the wall
    power_limit_w: float | None = None  # the limit the firmware sets in this mode (Avalon MPO)


@dataclass(frozen=True, slots=True)
class Nameplate:
    make: str
    model: str
    hashrate_ths: float | None  # nameplate (the highest published work mode); None: not published
    power_w: float | None  # at the wall, in that mode
    boards: int | None
    chips_per_board: int | None
    names: tuple[str, ...]  # as firmware (Avalon `PROD`, `MODEL`, `Ver` prefix) and pyasic spell it
    fans: int | None = None
    modes: tuple[WorkMode, ...] = ()
    module: bool = False  # a module of a controller chain (AvalonMiner 7xx-9xx): a chain is many of them
    source: str = ""  # where the figures come from (docs/avalon.md section 8 has the details)

    def mode(self, key: str | None) -> WorkMode | None:
        return next((m for m in self.modes if m.key == key), None) if key is not None else None

    def nominal_ths(self, mode: str | None) -> float | None:
        """What a unit in work mode `mode` should hash: that mode's figure, else the nameplate when the
        model lists no modes (one figure for every unit); None when the mode's figure is unknown."""
        found = self.mode(mode)
        if found is not None:
            return found.hashrate_ths
        return self.hashrate_ths if not self.modes else None


_A10_MODES = (WorkMode("0", "Normal"), WorkMode("1", "High Performance"))  # A10 API manual 2.4
_HOME_MODES = (WorkMode("0", "Eco"), WorkMode("1", "Standard"), WorkMode("2", "Super"))  # LW10583 API doc (Q, Nano 3S)

# Canaan Avalon: docs/avalon.md section 8 gives each figure's source. Nameplate TH/s and W are the
# maker's (or its launch as reported); boards x chips from captures, pyasic and asic-rs; None where no
# source gives a figure (a reading of one unit, such as GHSmm, is not a nameplate).
AVALON: tuple[Nameplate, ...] = (
    # Controller chains: cgminer on a controller reads AUCs of modules; figures per module.
    Nameplate("Canaan", "AvalonMiner 721", None, None, 4, 18, ("AvalonMiner 721", "Avalon 721", "721"), fans=1,
              module=True, source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 741", None, None, 4, 22, ("AvalonMiner 741", "Avalon 741", "741"), fans=1,
              module=True, source="capture a741 (TA[88]), pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 761", None, None, 4, 18, ("AvalonMiner 761", "Avalon 761", "761"), fans=1,
              module=True, source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 821", None, None, 4, 26, ("AvalonMiner 821", "Avalon 821", "821"), fans=1,
              module=True, source="capture a841-821 (TA[104]), pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 841", None, None, 4, 26, ("AvalonMiner 841", "Avalon 841", "841"), fans=1,
              module=True, source="capture a841-821 (TA[104]), pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 851", None, None, 4, 26, ("AvalonMiner 851", "Avalon 851", "851"), fans=1,
              module=True, source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 921", None, None, 4, 26, ("AvalonMiner 921", "Avalon 921", "921"), fans=1,
              module=True, source="capture a921 (TA[104]), pyasic, asic-rs"),
    # A10 and later: one controller, one device string.
    Nameplate("Canaan", "AvalonMiner 1026", None, None, 3, 80, ("AvalonMiner 1026", "Avalon 1026", "A1026", "1026"),
              fans=2, modes=_A10_MODES, source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 1047", 37.0, None, 2, 120, ("AvalonMiner 1047", "Avalon 1047", "A1047", "1047"),
              fans=2, modes=(WorkMode("0", "Normal", 31.0), WorkMode("1", "High Performance", 37.0)),
              source="A10 API manual (31T / 37T); 2 x 120 chips on two captures (pyasic and asic-rs say 3 x 80)"),
    Nameplate("Canaan", "AvalonMiner 1066", None, None, 3, 114, ("AvalonMiner 1066", "Avalon 1066", "A1066", "1066"),
              fans=4, modes=_A10_MODES, source="A10 API manual (capture), pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 1126 Pro", None, None, 3, 120,
              ("AvalonMiner 1126 Pro", "Avalon 1126 Pro", "A1126 Pro", "1126 Pro", "1126Pro", "1126"), fans=4,
              source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 1166 Pro", None, None, 3, 120,
              ("AvalonMiner 1166 Pro", "Avalon 1166 Pro", "A1166 Pro", "1166 Pro", "1166Pro", "1166"), fans=4,
              source="pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 1246", 90.0, 3420.0, 3, 120, ("AvalonMiner 1246", "Avalon 1246", "A1246", "1246"),
              fans=4, source="nameplate unsourced; capture a1246 (3 x 120), pyasic, asic-rs"),
    Nameplate("Canaan", "AvalonMiner 1346", 110.0, 3300.0, None, None,
              ("AvalonMiner 1346", "Avalon 1346", "A1346", "1346"),
              source="Canaan's A13 launch as reported by Zeus Mining: 110 TH/s at 30 J/TH"),
    Nameplate("Canaan", "AvalonMiner 1366", 130.0, 3250.0, None, None,
              ("AvalonMiner 1366", "Avalon 1366", "A1366", "1366"),
              source="Canaan's A13 launch as reported by Zeus Mining: 130 TH/s at 25 J/TH"),
    Nameplate("Canaan", "AvalonMiner 1466", 150.0, 3230.0, 3, 176, ("AvalonMiner 1466", "Avalon 1466", "A1466", "1466"),
              fans=2, source="nameplate unsourced; asic-rs (3 x 176)"),
    Nameplate("Canaan", "AvalonMiner 15-194", 194.0, 3650.0, 3, 160,
              ("AvalonMiner 15-194", "Avalon 1566", "A1566", "A15-194", "15-194", "AvalonMiner 15", "A15", "15"),
              fans=2, source="nameplate unsourced; capture a15-194, pyasic (1566), asic-rs"),
    Nameplate("Canaan", "AvalonMiner 15 Pro", None, None, None, None,
              ("AvalonMiner 15 Pro", "AvalonMiner 15Pro", "A15 Pro", "A15Pro", "15PRO", "15 Pro"),
              source="asic-rs (name only)"),
    Nameplate("Canaan", "AvalonMiner 1566 HA", None, None, 4, 160, ("AvalonMiner 1566HA", "1566HA", "1566 HA"), fans=0,
              source="asic-rs (hydro)"),
    Nameplate("Canaan", "AvalonMiner 1566 HU", None, None, 3, 160, ("AvalonMiner 1566HU", "1566HU", "1566 HU"), fans=0,
              source="asic-rs (hydro)"),
    Nameplate("Canaan", "AvalonMiner 16", 282.0, 3900.0, None, None,
              ("AvalonMiner 16", "Avalon A16", "A16", "16"),
              source="Hashrate Index, 'Hardware Review: Canaan's A16 Series' (Oct 2025)"),
    Nameplate("Canaan", "AvalonMiner 16 XP", 300.0, 3850.0, None, None,
              ("AvalonMiner 16XP", "AvalonMiner 16 XP", "Avalon A16 XP", "A16XP", "A16 XP", "16XP"),
              source="Hashrate Index, 'Hardware Review: Canaan's A16 Series' (Oct 2025)"),
    # Home miners (K230 controller).
    Nameplate("Canaan", "Avalon Q", 90.0, 1674.0, 1, 160, ("Avalon Q", "Avalon Q Home", "Q"), fans=4,
              modes=(WorkMode("0", "Eco", power_limit_w=800.0), WorkMode("1", "Standard"), WorkMode("2", "Super")),
              source="nameplate unsourced; capture q (1 x 160, Fan1..Fan4, Eco MPO 800); asic-rs; pyasic says 2 fans"),
    Nameplate("Canaan", "Avalon Mini 3", None, None, 1, 66, ("Avalon Mini3", "Avalon Mini 3", "Mini3", "Mini 3"),
              fans=1, source="pyasic (1 x 66); capture mini3 (MPO 800, ~824 W at the wall)"),
    Nameplate("Canaan", "Avalon Nano 3", None, None, 1, 10,
              ("Avalon Nano 3", "Avalon Nano3", "AvalonMiner Nano3", "Nano3", "nano3"), fans=1,
              modes=(WorkMode("0", "Low", power_limit_w=60.0), WorkMode("1", "Mid", power_limit_w=90.0),
                     WorkMode("2", "High", power_limit_w=125.0)),
              source="capture nano3 (WORKLEVEL 0/1/2 = ATA0..2 limits 60/90/125 W), pyasic, asic-rs"),
    Nameplate("Canaan", "Avalon Nano 3S", 6.0, 140.0, 1, 12, ("Avalon Nano3s", "Avalon Nano 3s", "Nano3s"), fans=1,
              modes=_HOME_MODES, source="nameplate unsourced; pyasic, asic-rs (1 x 12)"),
)


def _whatsminer(model: str, ths: float | None, watts: float | None, source: str) -> Nameplate:
    """A MicroBT model as pyasic names it without its bin ("M50S" of "M50S VH50"), the top of its published
    range (a higher bin, a hydro variant: the ceiling's factors cover them)."""
    return Nameplate("MicroBT", f"Whatsminer {model}", ths, watts, None, None,
                     (f"Whatsminer {model}", model), source=source)


_MANUAL = "MicroBT product manual (Oct 2024), as transcribed in auldsyababua/og-ai-inference-research"
_SHOP = "MicroBT's shop (shop.whatsminer.com), as quoted in a public hardware survey (2026)"
_THIRD = "third-party spec list (nhamilton1/asics-tools asicWattList.ts): an estimate, MicroBT's card not found"
# MicroBT Whatsminer: (highest hashrate, watts at the wall) of each model's published range, None where no
# source found here gives the figure (the family's ceiling then holds: `ceilings`). M53/M56/M63/M66/M73/M76 are
# the hydro and immersion units.
WHATSMINER: tuple[Nameplate, ...] = (
    _whatsminer("M30S", 102.0, 3496.0, _THIRD + " (the highest hashrate and watts of its bins)"),
    _whatsminer("M30S+", 102.0, 3468.0, _THIRD),
    _whatsminer("M30S++", 106.0, 3472.0, _THIRD),
    _whatsminer("M50", 118.0, 3422.0, _THIRD),
    _whatsminer("M50S", 126.0, 3276.0, "the simulator's figures, which public spec lists share (126 TH/s; "
                                       "3276-3480 W): an estimate, MicroBT's card not found"),
    _whatsminer("M50S+", None, None, "no source found"),
    _whatsminer("M50S++", 158.0, 3476.0, _MANUAL + " (138-158 TH/s, 3036-3476 W)"),
    _whatsminer("M53", None, None, "no source found"),
    _whatsminer("M53S", None, None, "no source found"),
    _whatsminer("M56S+", 220.0, None, "Riot Platforms' MicroBT order (June 2023) as Cointelegraph reported it"),
    _whatsminer("M56S++", 230.0, 5060.0, "Riot's order (June 2023), Decrypt: 230 TH/s at 22 J/TH (watts computed)"),
    _whatsminer("M60", None, None, "no source found"),
    _whatsminer("M60S", 186.0, 3441.0, _MANUAL + " (170-186 TH/s, 3145-3441 W, 18.5 J/TH)"),
    _whatsminer("M60S+", None, None, "no source found"),
    _whatsminer("M60S++", 218.0, 3379.0, _SHOP),
    _whatsminer("M63", None, None, "no source found"),
    _whatsminer("M63S", None, None, "no source found"),
    _whatsminer("M63S++", 464.0, 7192.0, _SHOP),
    _whatsminer("M66", None, None, "no source found"),
    _whatsminer("M66S", None, None, "no source found (18.5 J/TH: Riot's order, 2024)"),
    _whatsminer("M66S+", 314.0, 5338.0, "top-crypto-mining-asics.com, 'How to Calculate the ROI of WhatsMiner M66S+'"),
    _whatsminer("M66S++", 356.0, 5518.0, _SHOP),
    _whatsminer("M70S", 248.0, 3348.0, _SHOP),
    _whatsminer("M73", 512.0, 7424.0, _SHOP),
    _whatsminer("M73S+", 600.0, 7500.0, "Hashrate Index, 'MicroBT reveals the Whatsminer M70 series' (up to "
                                        "600 TH/s at 12.5 J/TH; watts computed): an estimate"),
    _whatsminer("M76S+", 440.0, 5500.0, "the same (up to 440 TH/s at 12.5 J/TH; watts computed): an estimate"),
)

# Bitaxe (open hardware, ESP-Miner): pyasic names a unit by its ASIC (BM1370 Gamma, BM1368 Supra, BM1366 Ultra,
# BM1397 Max); a GT (two BM1370s) is a "Gamma" to it.
BITAXE: tuple[Nameplate, ...] = (
    Nameplate("Bitaxe", "Bitaxe Gamma", 1.224, 18.0, 1, 1, ("Bitaxe Gamma", "Gamma"),
              source="1.224 TH/s: 2040 small cores x 600 MHz, as AxeOS and pyasic compute the expected rate; 18 W: "
                     "not sourced here (a public hardware survey quotes 1.2 TH/s at 17 W)"),
    Nameplate("Bitaxe", "Bitaxe Supra", 0.6, 14.0, 1, 1, ("Bitaxe Supra", "Supra"),
              source="bitaxeorg/bitaxeSupra, as quoted in a public hardware survey (2026)"),
    Nameplate("Bitaxe", "Bitaxe Ultra", 0.6, 15.0, 1, 1, ("Bitaxe Ultra", "Ultra"),
              source="skot/bitaxe-doc BitaxeUltra: 300-600 GH/s, up to 15 W"),
    Nameplate("Bitaxe", "Bitaxe Max", None, None, 1, 1, ("Bitaxe Max", "Max"), source="no source found"),
    Nameplate("Bitaxe", "Bitaxe GT", 2.15, 43.0, 1, 2, ("Bitaxe GT", "Bitaxe Gamma Turbo", "Gamma Turbo"),
              source="bitaxeorg/bitaxeGT, as quoted in a public hardware survey (2026)"),
)

CATALOGUE: tuple[Nameplate, ...] = (
    *AVALON,
    Nameplate("Bitmain", "Antminer S19j Pro", 104.0, 3068.0, 3, 126, ("Antminer S19j Pro", "S19j Pro")),
    Nameplate("Bitmain", "Antminer S21", 200.0, 3500.0, 3, 108, ("Antminer S21", "S21")),
    *WHATSMINER,
    *BITAXE,
)

# Makes whose line the catalogue covers, with the names firmware and pyasic give the make: a unit of one whose
# model is not catalogued (a new bin, a name pyasic does not know) is held to the make's largest unit, never to
# its own claims (a Whatsminer saying Factory GHS 900000 and Power Limit 30000 would pass those).
FAMILIES: dict[str, tuple[str, ...]] = {"MicroBT": ("MicroBT", "WhatsMiner"), "Bitaxe": ("Bitaxe", "BitAxe")}

_SPELLING = re.compile(r"[^0-9a-z+]")  # (a "+" is a model of its own: M50S, M50S+ and M50S++ differ)
_VARIANT = re.compile(r"-\d+$")  # Canaan's hashrate variant: "AvalonMiner 1246-83", MODEL "1246-83"
_BIN = re.compile(r"[ _]V[A-Z]{0,2}\d[0-9A-Z]*$")  # MicroBT's bin: "M50S VH50", "M50S_VH50", "M30S+ V100"


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
    if found is None and _BIN.search(model):
        found = _BY_NAME.get(_key(_BIN.sub("", model)))
    return found


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The highest plausible readings of one unit, and what each was derived from (for messages)."""

    hashrate_ths: float
    power_w: float
    hashrate_basis: str  # "nameplate", "family" (its make's largest unit), "expected" (its own), "any unit"
    power_basis: str  # "nameplate", "family", "power limit" (its own), "any unit"
    plate: Nameplate | None
    family: str | None = None  # the make a "family" basis is the largest unit of

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
        if basis == "family":
            return f"{factor:g}x the largest {self.family} unit catalogued ({limit / factor:g} {unit})"
        return f"{factor:g}x its own {'expected hashrate' if what == 'hashrate' else 'power limit'} ({limit / factor:g} {unit})"


def ceilings(model: str | None, expected_ths: float | None, power_limit_w: float | None,
             make: str | None = None) -> Ceilings:
    """Plausible maxima for a unit of `make` and `model` that states `expected_ths` and `power_limit_w` itself.

    The nameplate wins when the model is known (a miner's own figures could be as wrong as its
    readings); otherwise (or where its nameplate lacks that figure) the largest unit of its make where the
    catalogue covers the make's line (`FAMILIES`); otherwise its own expected hashrate and power limit, when
    they are themselves within the ceilings for any single unit; otherwise those ceilings."""
    plate = nameplate(model)
    if plate is not None and plate.hashrate_ths is not None and plate.power_w is not None:
        return _of_plate(plate)
    family = plate.make if plate is not None else family_of(make)
    top = _FAMILY_TOPS.get(family) if family is not None else None
    if plate is None and top is not None:
        return _of_family(family)
    if plate is not None and plate.hashrate_ths is not None:
        ths, ths_basis = HASHRATE_FACTOR * plate.hashrate_ths, "nameplate"
    elif top is not None:
        ths, ths_basis = HASHRATE_FACTOR * top[0], "family"
    elif expected_ths is not None and 0 < expected_ths <= MAX_UNIT_THS:
        ths, ths_basis = HASHRATE_FACTOR * expected_ths, "expected"
    else:
        ths, ths_basis = MAX_UNIT_THS, "any unit"
    if plate is not None and plate.power_w is not None:
        watts, watts_basis = POWER_FACTOR * plate.power_w, "nameplate"
    elif top is not None:
        watts, watts_basis = POWER_FACTOR * top[1], "family"
    elif power_limit_w is not None and 0 < power_limit_w <= MAX_UNIT_W:
        watts, watts_basis = POWER_FACTOR * power_limit_w, "power limit"
    else:
        watts, watts_basis = MAX_UNIT_W, "any unit"
    return Ceilings(ths, watts, ths_basis, watts_basis, plate, family if top is not None else None)


_FAMILY_BY_NAME = {_key(name): family for family, names in FAMILIES.items() for name in names}
# Each family's largest hashrate and largest draw (of any of its catalogued units).
_FAMILY_TOPS: dict[str, tuple[float, float]] = {
    family: (max(p.hashrate_ths for p in CATALOGUE if p.make == family and p.hashrate_ths is not None),
             max(p.power_w for p in CATALOGUE if p.make == family and p.power_w is not None))
    for family in FAMILIES}


@functools.lru_cache(maxsize=256)  # make strings come from miners: bounded
def family_of(make: str | None) -> str | None:
    """The catalogue's make (a key of FAMILIES) for a make as firmware or pyasic names it ("WhatsMiner"), or None."""
    return _FAMILY_BY_NAME.get(_key(make)) if make else None


@functools.cache  # one per catalogue entry
def _of_plate(plate: Nameplate) -> Ceilings:
    assert plate.hashrate_ths is not None and plate.power_w is not None
    return Ceilings(HASHRATE_FACTOR * plate.hashrate_ths, POWER_FACTOR * plate.power_w, "nameplate", "nameplate", plate)


@functools.cache  # one per family
def _of_family(family: str) -> Ceilings:
    ths, watts = _FAMILY_TOPS[family]
    return Ceilings(HASHRATE_FACTOR * ths, POWER_FACTOR * watts, "family", "family", None, family)


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
    chip_stop_c: float | None = None  # where the firmware stops mining (a unit's own configuration only)
    own: bool = False  # the chip figures are the unit's own (its firmware's configuration), not its model's

    @property
    def hot_text(self) -> str:
        """The hot limit as evidence names it."""
        return f"its own hot limit {self.chip_hot_c:g} C" if self.own else f"the model's {self.chip_hot_c:g} C"


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
    # MicroBT: the intake range of its air-cooled units; no citable chip temperature its firmware protects at
    # was found (codes 350-352, "SMn temperature protecting", name no figure): chips are judged by peers.
    # M60, M60S+, M60S++, M70S: no intake range found.
    **dict.fromkeys((f"Whatsminer {m}" for m in ("M30S", "M30S+", "M30S++", "M50", "M50S", "M50S+")), ThermalLimits(
        None, 35.0, "MicroBT after-sales page (microbt-whatsminer.com/repair_process): required ambient -5 to 35 C "
                    "for the air-cooled M2x/M3x/M5x series, 1 C less per 300 m above 2,000 m")),
    **dict.fromkeys(("Whatsminer M50S++", "Whatsminer M60S"), ThermalLimits(
        None, 35.0, _MANUAL + ": operating temperature -5 to +35 C")),
    # Bitmain (S19j Pro, S21): no maker's intake range or chip protection temperature was found in a citable
    # source, and neither stock firmware nor Braiins OS+ reports intake air (their "inlet" sensors are on the
    # hash board): peers only. Hydro and immersion Whatsminers are rated by water, not air: none here.
}


def thermal_limits(model: str | None) -> ThermalLimits | None:
    """The thermal limits of a model as a miner reports it, or None (not catalogued, or no source)."""
    plate = nameplate(model)
    return None if plate is None else THERMAL_LIMITS.get(plate.model)


def unit_thermal_limits(model_limits: ThermalLimits | None, hot_c: float | None,
                        stop_c: float | None) -> ThermalLimits | None:
    """A unit's limits: its own chip figures where its firmware gave them (a Braiins OS+ unit's hot and
    dangerous temperatures, set by its operator: MinerSample.chip_hot_limit_c) before its model's; the
    model's intake rating kept. A hot figure not under the stop figure is no limit (the source checks it too)."""
    if hot_c is None or (stop_c is not None and hot_c >= stop_c):
        return model_limits
    return ThermalLimits(hot_c, model_limits.ambient_max_c if model_limits is not None else None,
                         "the unit's own configuration", chip_stop_c=stop_c, own=True)
