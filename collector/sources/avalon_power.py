"""Where an Avalon's watts are, and whether the miner's own figures agree with them.

The layout of `PS[...]` depends on model and firmware (docs/avalon.md section 4, with the captures
behind each row):

| firmware | PS | watts |
| --- | --- | --- |
| A10 (2019-2020) | `[err, Vin, Vout x0.01, Iout A, DC W, Vset]` | PS[4] is the DC power to the hash boards: no wall figure |
| A12, A13-A16, Mini 3, Q | `[err, Vin, Vout x0.01, Iout A, DC W, Vset, wall W]` | `WALLPOWER` where printed, else PS[6] |
| Nano 3S (2025) | `[err, 0, Vout mV, Iout A, 0, Vset, wall W]` | PS[6] |
| Nano 3 (2024) | `[err, 0, 0, Iout A, Vout x0.01, W, ?]` | PS[5]; PS[6] is a profile value, not watts |
| 7xx-9xx chains | none | none |

A figure is checked against the PSU's own volts x amps (DC), against the miner's own power limit
(MPO, a DC-side limit) and against the model's nameplate. A power they contradict is still reported,
with a named warning (`MinerSample.warnings`) that says which figure disagrees; a value that is not
a finite number >= 0 is refused (the reader's rules). On A10 firmware, which reports only the DC
side, `power_w` is that figure divided by PSU_EFFICIENCY, with the warning `power_estimated_from_dc`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.sources.avalon_fields import Device
from models.hardware import Nameplate

# Wall = DC / PSU_EFFICIENCY for firmware that reports only the DC side (A10). The captures that show
# both figures: A1246 0.91, A15-194 0.945, Mini 3 0.92 (docs/avalon.md section 4).
PSU_EFFICIENCY = 0.92
# How far a wall figure may sit from the PSU's own DC reading: PSU loss above it (~5-10 %), whole
# amps on small units (Nano 3S: 4 A x 27.6 V = 110 W for 133 W at the wall) and a few watts of
# controller and fans.
WALL_OVER_DC = (0.95, 1.35)
SLACK_W = 15.0
# MPO limits the DC side; the wall figure may exceed it by the PSU's loss (A1246: 3504 W at MPO 3200).
OVER_LIMIT = 1.10  # x (MPO / PSU_EFFICIENCY)
OVER_NAMEPLATE = 1.5  # x the model's nameplate watts (2x is refused by collector.sources.plausibility)
MAX_PS_SLOTS = 16  # 7 on current firmware, 9 after `ascset|0,voltage`


@dataclass(frozen=True, slots=True)
class Layout:
    name: str
    watts_slots: tuple[int, ...]  # where the watts are, in order of preference
    wall: bool  # False: the slot is the DC side (A10)
    dc: Callable[[list[float]], float | None]  # the PSU's own DC figure, for the cross-check


def _volts(raw: float) -> float:
    """A PS[] voltage: centivolts on most firmware (1312 = 13.12 V), millivolts on the Nano 3S (27541)."""
    return raw / 1000 if raw >= 5000 else raw / 100


def _dc_a12(ps: list[float]) -> float | None:
    return ps[4] or _volts(ps[2]) * ps[3] or None


A10 = Layout("A10 (6 slots, DC only)", (4,), False, lambda ps: _volts(ps[2]) * ps[3] or None)
A12 = Layout("A12 and later", (6,), True, _dc_a12)  # also the Nano 3S: [err, 0, Vout mV, Iout A, 0, Vset, wall]
NANO3_2024 = Layout("Nano 3 (2024)", (5, 6), True, lambda ps: _volts(ps[4]) * ps[3] or None)
_BY_MODEL = {"Avalon Nano 3": NANO3_2024}


def layout(plate: Nameplate | None, slots: int) -> Layout:
    if slots == 6:
        return A10
    found = _BY_MODEL.get(plate.model) if plate is not None else None
    return found or A12


def read(dev: Device, plate: Nameplate | None, limit_w: float | None) -> tuple[float | None, list[str]]:
    """(power_w, warnings). power_w is None when the miner reports no watts (or all zeros), or a value
    was refused (then named in dev.refused)."""
    wall = dev.num("WALLPOWER", "power_w")
    if "power_w" in dev.refused:
        return None, []
    text = dev.keys.get("PS")
    if wall:  # PS only cross-checks it: a broken PS costs the check, not the reading
        return wall, _checks(wall, "WALLPOWER", _soft_dc(text, plate), True, plate, limit_w)
    if not text:
        return None, []
    slots = dev.nums("PS", "power_w", cap=MAX_PS_SLOTS)
    if slots is None or "power_w" in dev.refused or len(slots) < 6:
        return None, []
    ps: list[float] = slots if None not in slots else [v or 0.0 for v in slots]  # type: ignore[assignment]
    shape = layout(plate, len(ps))
    if shape is A12:  # the usual layout, without the search: the wall figure in PS[6]
        watts = ps[6]
        if watts <= 0:
            return None, []
        return watts, _checks(watts, "PS[6]", _dc_a12(ps), True, plate, limit_w)
    candidates = [(i, ps[i]) for i in shape.watts_slots if i < len(ps) and ps[i] > 0]
    if not candidates:
        return None, []  # PS[0 0 0 0 0 0] (a ramping A1047): no reading, not 0 W
    dc = shape.dc(ps)
    # The first slot the PSU's own volts x amps agree with; else the first, with a warning.
    slot, watts = candidates[0]
    if len(candidates) > 1 and not _agrees(watts, dc, shape.wall):
        slot, watts = next(((i, w) for i, w in candidates if _agrees(w, dc, shape.wall)), candidates[0])
    if shape.wall:
        return watts, _checks(watts, f"PS[{slot}]", dc, True, plate, limit_w)
    estimate = watts / PSU_EFFICIENCY
    warnings = [f"power_estimated_from_dc: power_w {estimate:.0f} W is PS[{slot}] {watts:g} W, the DC power to "
                f"the hash boards ({shape.name} firmware reports no wall figure), divided by {PSU_EFFICIENCY:g} "
                "(PSU efficiency)"]
    return estimate, warnings + _checks(watts, f"PS[{slot}]", dc, False, plate, limit_w)


def _agrees(watts: float, dc: float | None, wall: bool) -> bool:
    if not dc:
        return True  # nothing to check against (boards off: 0 V x 0 A)
    low, high = WALL_OVER_DC if wall else (0.9, 1.1)
    return low * dc - SLACK_W <= watts <= high * dc + SLACK_W


def _checks(watts: float, where: str, dc: float | None, wall: bool, plate: Nameplate | None,
            limit_w: float | None) -> list[str]:
    """The named warnings for `watts` (at the wall, or the DC side when not `wall`) read from `where`."""
    dc_side = watts * PSU_EFFICIENCY if wall else watts
    at_wall = watts if wall else watts / PSU_EFFICIENCY
    over_limit = limit_w is not None and dc_side > OVER_LIMIT * limit_w
    over_plate = plate is not None and plate.power_w is not None and at_wall > OVER_NAMEPLATE * plate.power_w
    if wall and dc:  # the usual case, inline: a wall figure against the PSU's DC reading
        psu_agrees = WALL_OVER_DC[0] * dc - SLACK_W <= watts <= WALL_OVER_DC[1] * dc + SLACK_W
    else:
        psu_agrees = _agrees(watts, dc, wall)
    if psu_agrees and not over_limit and not over_plate:
        return []
    warnings = []
    if not psu_agrees:
        warnings.append(f"power_vs_psu: {where} {watts:g} W disagrees with the PSU's own reading of "
                        f"{dc:.0f} W DC (volts x amps in PS[]): kept, but one of them is wrong")
    if over_limit:
        warnings.append(f"power_over_limit: {where} {watts:g} W is above the miner's own power limit "
                        f"(MPO[{limit_w:g}], DC side): kept, but the limit or the reading is wrong")
    if over_plate:
        warnings.append(f"power_vs_nameplate: {where} {watts:g} W is more than {OVER_NAMEPLATE:g}x the "
                        f"{plate.model} nameplate ({plate.power_w:g} W)")  # type: ignore[union-attr]
    return warnings


def _soft_dc(text: str | None, plate: Nameplate | None) -> float | None:
    """The PSU's DC reading beside a WALLPOWER figure, for the cross-check only (None: nothing to check)."""
    if not text:
        return None
    if plate is not None and plate.model not in _BY_MODEL:  # the usual layout: PS[4] is the DC watts
        tokens = text.split(None, MAX_PS_SLOTS)
        if len(tokens) > 6:
            try:
                dc = float(tokens[4])
            except ValueError:
                return None
            if 0 < dc < 1e9:
                return dc
    ps = _soft_slots(text)
    return layout(plate, len(ps)).dc(ps) if len(ps) >= 6 else None


def _soft_slots(text: str) -> list[float]:
    """PS[] for a cross-check only: every slot a finite number >= 0, else no check at all ([])."""
    try:
        values = [float(token) for token in text.split(None, MAX_PS_SLOTS)[:MAX_PS_SLOTS]]
    except ValueError:
        return []
    total = sum(values)
    return values if total - total == 0.0 and (not values or min(values) >= 0) else []
