"""What each problem costs: its share of the miner's lost hashrate, priced at the live net hashprice,
less the energy the miner no longer draws for it.

    usd_lost_day = lost_ths x net hashprice [$/TH/day] - saved_w x energy price [$/W/day]

The net hashprice is the network's (the cost figures' `hashprice_usd_ph_day`) after the pool fee; the
energy price is the tariff in force now (`power_price_usd_kwh`) times the PUE, so it is the money the
site would spend on the watts a fixed miner draws again. The watts saved are the miner's usual draw
when healthy (learned) less its draw now, shared among the problems by the hashrate each takes away;
shares the pool refuses and hardware errors lose hashrate the miner still draws power for: nothing
saved. With either draw unknown (no power reading: stock Antminers, a miner that does not answer and
no meter reads) nothing is saved: the figure is the revenue lost, never less than the true loss.
A figure is None without cost figures (no economics or network state), and for a loss that is the
usual hashrate (or a share of it) when that is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.stages.health_signals import SHORTFALL_SHARE, Finding
from models import CostSample, SiteEconomics
from models.health import Cause, Severity, Signal

# What may explain the part of the shortfall no board reading accounts for, in this order: heat throttles
# a whole unit, a PSU or a code may hold it back. (A reboot loop explains a start's ramp, which its own
# figure already counts: `share_shortfall`.)
_EXPLAINERS = (Signal.CHIP_HOT, Signal.TEMP_OUTLIER, Signal.FAN_STOPPED, Signal.FAN_SLOW, Signal.AMBIENT_HOT,
               Signal.POWER_OUT_OF_RANGE, Signal.POWER_OVER_LIMIT, Signal.FAULT_CODE)
# A fan or the room holds hashrate back only through hot chips (throttling): not when chips are cool.
_COOLING = frozenset({Signal.FAN_STOPPED, Signal.FAN_SLOW, Signal.AMBIENT_HOT})
_DIRECT = frozenset({Signal.OFFLINE, Signal.IDLE, Signal.BOARD_DEAD, Signal.CHIPS_DEAD, Signal.BOARD_WEAK})
# Less than this share of expected left unexplained is the unit's own spread, not a problem.
UNEXPLAINED_SHARE = 0.03
READINGS_SLACK = 0.05  # live hashrate wobble the board readings are allowed over the shortfall


@dataclass(frozen=True, slots=True)
class Prices:
    usd_per_th_day: float  # net hashprice
    usd_per_w_day: float  # energy, with PUE, at the tariff now


def prices(cost: CostSample | None, economics: SiteEconomics | None, pue: float | None = None) -> Prices | None:
    """From the miner's cost figures (same network state and tariff as its CostSample)."""
    if cost is None or cost.power_price_usd_kwh is None:
        return None
    fee = economics.pool_fee_pct / 100 if economics is not None else 0.0
    if pue is None:
        pue = economics.pue if economics is not None and economics.pue is not None else 1.0
    return Prices(cost.hashprice_usd_ph_day / 1000 * (1 - fee), cost.power_price_usd_kwh * 24 / 1000 * pue)


def share_shortfall(items: list[tuple[Finding, Cause, str]], shortfall: float, expected: float | None,
                    settled: bool, ramping: bool = False, cooling_throttles: bool = True) -> Finding | None:
    """Set each finding's `lost_ths` so that together they account for `shortfall` (expected - live)
    at most: what the board readings name first, the rest to the first finding that can explain it
    (a fan or hot intake air only when `cooling_throttles`: root_cause.cooling_may_throttle).
    Returns a HASHRATE_LOW finding for a remainder nothing explains (None when too small, or the unit
    is still ramping after a start: `settled` False), critical when the unit hashes nothing.

    A unit in a reboot loop whose start is still ramping (`ramping`: uptime under BOOT_SETTLE_S) is short
    by that ramp: the loop's own figure is every start's ramp averaged over the loop, so the rest is its
    and nothing is added (counted again, a loop cost 30 times more just after a start than a minute on)."""
    direct = [f for f, _, _ in items if f.signal in _DIRECT]
    named = sum(f.lost_ths for f in direct)
    # Chip counts and board readings are better evidence than one live reading, which wobbles by a few
    # per cent: they are only scaled down when they clearly overstate the shortfall.
    if named > shortfall + READINGS_SLACK * (expected or 0.0) and named > 0:
        scale = shortfall / named
        for f in direct:
            f.lost_ths *= scale
        named = shortfall
    rest = max(0.0, shortfall - named)
    if expected is None or rest < UNEXPLAINED_SHARE * expected:
        return None
    if ramping and any(f.signal is Signal.REBOOTS for f, _, _ in items):
        return None
    for signal in _EXPLAINERS:
        if signal in _COOLING and not cooling_throttles:
            continue
        for f, _, _ in items:
            if f.signal is signal and (signal is not Signal.FAULT_CODE or f.severity.level > 0):
                f.lost_ths += rest
                return None
    if not settled or rest < SHORTFALL_SHARE * expected:
        return None
    stopped = shortfall >= expected  # hashing nothing, in fault: as critical as offline or idle
    return Finding(Signal.HASHRATE_LOW, Severity.CRITICAL if stopped else Severity.WARNING,
                   f"hashes {expected - shortfall:.2f} of {expected:.2f} TH/s expected; {rest:.2f} TH/s short",
                   value=expected - shortfall, limit=expected, lost_ths=rest)


def price(findings: Sequence[Finding], prices_now: Prices | None, saved_w: float,
          expected: float | None = None) -> list[float | None]:
    """Dollars lost per day of each finding; `saved_w` (the miner's usual draw less its draw now) is
    shared by the findings whose lost hashrate is part of the shortfall. A finding whose loss is the
    usual hashrate or a share of it (offline, idle, boards) is None when that is unknown (`expected`
    None: a miner never identified), not $0."""
    if prices_now is None:
        return [None] * len(findings)
    in_shortfall = sum(f.lost_ths for f in findings if not f.extra_loss)
    out: list[float | None] = []
    for f in findings:
        if expected is None and f.signal in _DIRECT:
            out.append(None)
            continue
        saved = saved_w * f.lost_ths / in_shortfall if in_shortfall > 0 and not f.extra_loss else 0.0
        out.append(f.lost_ths * prices_now.usd_per_th_day - saved * prices_now.usd_per_w_day)
    return out
