"""Refuse readings no unit of the miner's model could produce.

Every source (native Avalon, pyasic, MQTT telemetry) passes its samples through `check`. A finite
but absurd number (GHSspd[1e300], WALLPOWER[99999999], an MQTT hashrate of 1e308) would otherwise
reach InfluxDB and the cost engine, where one miner turns the site's cost per BTC into 0 or
millions. Ceilings come from the model's nameplate (models.hardware), else from the largest unit of its
make where the catalogue covers the make (Whatsminer, Bitaxe), else from the miner's own expected hashrate
and power limit, else from the most any single unit does. A positive hashrate below 1 kH/s
(MIN_HASHING_THS: a denormal 5e-324 TH/s) is refused too: J/TH and cost per BTC on it are infinite.

A refused reading is left empty and named (MinerSample.refused). The state stays what the unit does
(an implausible power or average rate costs that figure, not "mining"), unless the live hashrate is
the one refused (error: whether it hashes is unknown). With its hashrate or power refused, the cost
engine uses none of its readings (counted as incomplete).
"""

from __future__ import annotations

from models import MinerSample
from models.hardware import MIN_HASHING_THS, Ceilings, ceilings

_HASHRATES = ("hashrate_ths", "hashrate_avg_ths", "expected_hashrate_ths")
_POWERS = ("power_w", "power_limit_w")


def check(sample: MinerSample) -> MinerSample:
    """`sample` itself when every reading is plausible for its model, else a copy with the others refused."""
    limits = ceilings(sample.model, sample.expected_hashrate_ths, sample.power_limit_w, sample.make)
    low, top_ths, top_w = MIN_HASHING_THS, limits.hashrate_ths, limits.power_w
    # The common case in as few steps as possible: this runs for every miner every cycle. None and 0 pass.
    if (low <= (sample.hashrate_ths or low) <= top_ths and low <= (sample.hashrate_avg_ths or low) <= top_ths
            and low <= (sample.expected_hashrate_ths or low) <= top_ths and (sample.power_w or 0.0) <= top_w
            and (sample.power_limit_w or 0.0) <= top_w
            and all(low <= (b.hashrate_ths or low) <= top_ths and low <= (b.hashrate_avg_ths or low) <= top_ths
                    for b in sample.boards)):
        return sample
    return _refuse(sample, limits)


def _implausible_ths(value: float | None, limits: Ceilings) -> str | None:
    """Why a hashrate is no reading of this unit, or None when it may be."""
    if value is None or value == 0 or MIN_HASHING_THS <= value <= limits.hashrate_ths:
        return None
    if value > limits.hashrate_ths:
        return f"{value:.6g} TH/s is more than {limits.explain('hashrate')}"
    return f"{value:.6g} TH/s is less than any hashing device makes ({MIN_HASHING_THS:g} TH/s, 1 kH/s)"


def _refuse(sample: MinerSample, limits: Ceilings) -> MinerSample:
    reasons: dict[str, str] = {}
    for name in _HASHRATES:
        why = _implausible_ths(getattr(sample, name), limits)
        if why is not None:
            reasons[name] = f"{name} {why}: not a plausible reading"
    for name in _POWERS:
        value = getattr(sample, name)
        if value is not None and value > limits.power_w:
            reasons[name] = f"{name} {value:.6g} W is more than {limits.explain('power')}: not a plausible reading"
    values = {}
    boards = []
    for board in sample.boards:
        bad = {name: why for name in ("hashrate_ths", "hashrate_avg_ths")
               if (why := _implausible_ths(getattr(board, name), limits)) is not None}
        if bad:
            board = board.model_copy(update=dict.fromkeys(bad))
            shown = ", ".join(f"{name} {why}" for name, why in bad.items())
            reasons.setdefault("boards", f"board {board.index}: {shown}: not a plausible reading")
        boards.append(board)
    if "boards" in reasons:
        values["boards"] = boards  # the boards keep their other readings
    return sample.refused(reasons, **values)
