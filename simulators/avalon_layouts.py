"""Avalon firmware layouts beyond the compact A-series string and the Q: each one key for key, in
order, with the value counts of a golden case in tests/data/replies/avalon/golden/ (every value
from the simulated unit's physics). `ModelSpec.layout` picks one:

- "a10_1910" A1066 19101244 (Canaan's A10 API manual): 6-slot PS (PS[4] DC watts, no wall figure),
  no GHSspd, ECHU[512 ..] on healthy boards, HS_RCD history records, summary `MHS 5s`;
- "a10_1912" A1047 19120401: the same family in another order, `Elapsed[..]BOOTBY[..]` unspaced;
- "a15_2024" the A15-194's 2024 string (WALLPOWER = PS[6], PVT_T/PVT_V/MW per chip), which the
  A13, A14, hydro A15 and A16 golden cases also use; GHSspd[0.00] for a while after a (re)start;
- "nano3_2024" Nano 3 24071801: watts in PS[5], PS[6] the active profile's third field, WORKLEVEL
  and ATA0..2 profiles but no WORKMODE;
- "mini3_2025" Mini 3 25011701: ITemp/OTemp/HBTemp, wall watts in PS[6], no per-chip lists;
- "auc" a cgminer 4.10 controller: one STATS entry per AUC (AV70, AV71, ...), modules in
  `MM ID1..n` (no MM ID0) with `Fan[..]`, `Vi[..]`, `Vo[..]`, `MW[..]` per board, no power, no
  GHSspd/MGHS/PS: the live rate only in summary; `version` without PROD.

Registers its command overrides in `cgminer.LAYOUT_COMMANDS`; `cgminer` answers the rest.
Per-unit constants (PLL counters, chip voltages, module DNAs) are drawn once from the unit's noise
seed and cached, so replies stay deterministic and cheap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulators import cgminer as cg
from simulators.physics import SOFT_OFF_CODE, Snapshot
from simulators.specs import ChainModule, ModelSpec

CGMINER_410 = "cgminer 4.10.0"  # the controllers of 7xx-9xx chains
# Formatted per-chip lists, keyed by unit and reading; a fleet's current ones stay, a full cache starts over.
_CACHE_MAX = 32768
_cache: dict[tuple[Any, ...], Any] = {}
_UNITS_MAX = 100_000  # per-unit constants: one entry per simulated unit, dearer to rebuild than a list
_units: dict[int, Any] = {}


def _cached(key: tuple[Any, ...], make: Callable[[], Any], cache: dict[Any, Any] = _cache,
            limit: int = _CACHE_MAX) -> Any:
    value = cache.get(key)
    if value is None:
        if len(cache) >= limit:
            cache.clear()
        value = cache[key] = make()
    return value


def _ints(values: Any) -> str:
    return " ".join([str(v) for v in values])


def _wide(values: Any) -> str:
    """Per-chip temperatures as these firmwares print them: right-aligned in 3 columns (`[ 68  64 ...]`)."""
    return " ".join([f"{v:3d}" for v in values])


# -- per-unit constants -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Unit:
    pll: tuple[str, ...]  # per board: 4 PLL counters
    chip_weight: tuple[tuple[float, ...], ...]  # per board, per chip: its share of the board's work
    volt_offset: tuple[tuple[int, ...], ...]  # per board, per chip: mV around the board's core voltage
    ping: int
    # Chains: per module.
    dna: tuple[str, ...]
    elapsed_lead: tuple[int, ...]  # seconds the module was up before cgminer started
    temp_offset: tuple[int, ...]
    freq_offset: tuple[float, ...]
    vi: tuple[tuple[int, int], ...]  # input centivolts, one per board pair
    vo: tuple[tuple[int, ...], ...]
    dh_offset: tuple[float, ...]
    auc_sensor: tuple[int, ...]


def _unit(spec: ModelSpec, seed: int) -> _Unit:
    def make() -> _Unit:
        rng = random.Random(f"hashfleet-layout:{seed}")
        n = spec.boards
        modules = spec.modules
        return _Unit(
            pll=tuple(_ints(sorted(rng.randint(200, 4000) for _ in range(3)) + [rng.randint(6000, 17000)])
                      for _ in range(n)),
            chip_weight=tuple(tuple(rng.uniform(0.55, 1.45) for _ in range(spec.chips_per_board)) for _ in range(n)),
            volt_offset=tuple(tuple(int(round(rng.gauss(0, 3.5))) for _ in range(spec.chips_per_board))
                              for _ in range(n)),
            ping=rng.randint(40, 220),
            dna=tuple(f"013{rng.getrandbits(52):013x}" for _ in modules),
            elapsed_lead=tuple(rng.randint(0, 18) for _ in modules),
            temp_offset=tuple(rng.randint(-2, 3) for _ in modules),
            freq_offset=tuple(rng.uniform(-3.0, 3.0) for _ in modules),
            vi=tuple((rng.randint(1188, 1226), rng.randint(1188, 1226)) for _ in modules),
            vo=tuple(tuple(m.vo_raw + rng.randint(-25, 25) for _ in range(4)) for m in modules),
            dh_offset=tuple(rng.uniform(-0.3, 0.3) for _ in modules),
            auc_sensor=tuple(rng.randint(13800, 18000) for _ in spec.chain),
        )

    return _cached(seed, make, _units, _UNITS_MAX)  # type: ignore[no-any-return]


# Per-chip lists take the board's dead chips (`BoardSnapshot.dead_chips`, chips_dying): a dead chip reads 0
# where it stood. Chips die in a fixed order per unit and board, so their count keys the caches.


def _dead_zero(values: list[Any], dead: tuple[int, ...]) -> list[Any]:
    for i in dead:
        values[i] = 0
    return values


def _chip_temps(ctx: cg._Ctx, board: int, base_c: int, dead: tuple[int, ...] = ()) -> str:
    """PVT_T<b> in the fixed-width form, from the unit's chip offsets (0 for every chip of a lost board)."""
    tr = ctx.dev.traits

    def make() -> str:
        if base_c == 0:
            return _wide([0] * ctx.dev.spec.chips_per_board)
        return _wide(_dead_zero([base_c + o for o in tr.chip_offsets[board]], dead))

    return _cached(("pvt_t", tr.noise_seed, board, base_c, len(dead)), make)  # type: ignore[no-any-return]


def _chip_volts(ctx: cg._Ctx, board: int, core_mv: int, dead: tuple[int, ...] = ()) -> tuple[str, float]:
    """PVT_V<b> (per-chip millivolts) and their mean over the chips that answer (MVavg)."""
    seed = ctx.dev.traits.noise_seed

    def make() -> tuple[str, float]:
        if core_mv == 0:
            return _ints([0] * ctx.dev.spec.chips_per_board), 0.0
        volts = _dead_zero([core_mv + o for o in _unit(ctx.dev.spec, seed).volt_offset[board]], dead)
        live = len(volts) - len(dead)
        return _ints(volts), sum(volts) / live if live else 0.0

    return _cached(("pvt_v", seed, board, core_mv, len(dead)), make)  # type: ignore[no-any-return]


def _chip_works(ctx: cg._Ctx, board: int, ghs: float, scale: float, dead: tuple[int, ...] = ()) -> str:
    """MW<b>: each chip's recent work count, from the board's rate (bucketed to 1 %: cached); the board's
    rate is its live chips' work, so a dead chip's 0 leaves the others' counts as they were."""
    spec, seed = ctx.dev.spec, ctx.dev.traits.noise_seed
    nominal = spec.nominal_ths * 1000.0 / spec.boards or 1.0
    bucket = int(round(100.0 * ghs / nominal))

    def make() -> str:
        live = spec.chips_per_board - len(dead)
        per_chip = bucket / 100.0 * nominal / live * scale if live else 0.0
        return _ints(_dead_zero([int(round(w * per_chip)) for w in _unit(spec, seed).chip_weight[board]], dead))

    return _cached(("mw", seed, board, bucket, scale, len(dead)), make)  # type: ignore[no-any-return]


# -- numbers every layout needs ------------------------------------------------------------------


def _spd_ghs(s: Snapshot) -> float:
    """GHSspd as shown: 0.00 while the firmware has not measured it yet (after a (re)start)."""
    return s.hashrate_ths * 1000.0 if s.live_source == "GHSspd" else 0.0


def _split(total: int, weights: list[float]) -> list[int]:
    """`total` split by `weights` in whole numbers that add up to it (MH per board vs HW)."""
    w = sum(weights)
    if w <= 0:
        return [0] * (len(weights) - 1) + [total]
    parts = [int(total * x / w) for x in weights[:-1]]
    return parts + [total - sum(parts)]


def _board_ghs(s: Snapshot) -> list[float]:
    return [b.hashrate_avg_ths * 1000.0 for b in s.boards]


def _lw(s: Snapshot) -> int:
    return int(s.total_th_s * 232.83)


def _status_text(s: Snapshot, sep: str) -> str:
    alive = sum(1 for b in s.boards if b.alive)
    return f"SYSTEMSTATU[Work: {s.system_status}, Hash Board: {alive}{sep}]"


def _temps(s: Snapshot) -> tuple[int, int]:
    """TMax/TAvg as the firmware shows them: 0 asleep or with no board (no reading, not 0 °C)."""
    return s.temp_chip_max_c or 0, s.temp_chip_avg_c or 0


def _freq_now(spec: ModelSpec, s: Snapshot) -> float:
    sf = spec.sf_mhz or (600,)
    return sum(sf) / len(sf) * s.hashrate_ths / s.expected_hashrate_ths if s.expected_hashrate_ths else 0.0


def _core_mv(spec: ModelSpec, s: Snapshot) -> int:
    """Chip core voltage (`Vo`, PVT_V around it): a quarter of the voltage level (the golden cases'
    ratio), one level step lower in a mode that draws less than the nameplate; 0 when not hashing."""
    if not s.ps[4]:
        return 0
    level = spec.volt_level or 1300
    if spec.modes[s.work_mode_index].power_w < spec.nameplate.power_w:
        level -= 12
    return int(round(level / 4.0))


# -- A-series 2024 (A13, A14, A15, A16) ------------------------------------------------------------


def _ataopts(spec: ModelSpec, s: Snapshot) -> list[str]:
    sf = spec.sf_mhz or (600, 620, 640, 660)
    span = sf[-1] - sf[0]
    low = ":".join(str(f - span) for f in sf)
    high = ":".join(str(f) for f in sf)
    volt = spec.volt_level or 1300
    chips = spec.chips_per_board
    return [f"ATAOPTS0[--avalon10-freq {low} --avalon10-voltage-level {volt - 12} --hash-asic {chips}]",
            f"ATAOPTS1[--avalon10-freq {high} --avalon10-voltage-level {volt} --hash-asic {chips}]",
            f"ATAOPTS2[--avalon10-freq {high} --avalon10-voltage-level {volt} --hash-asic {chips} --power-level 0]"]


def _a15_string(ctx: cg._Ctx, with_chips: bool) -> str:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    unit = _unit(spec, tr.noise_seed)
    n = spec.boards
    zeros = _ints([0] * n)
    board_ghs = _board_ghs(s)
    mh = _split(s.hw_errors, board_ghs)
    tmax, tavg = _temps(s)
    core = _core_mv(spec, s)
    sf = _ints(spec.sf_mhz or (600, 620, 640, 660))
    volts = [_chip_volts(ctx, b.index, core, b.dead_chips) for b in s.boards]
    p = [
        f"Ver[{spec.ver}]", f"DNA[{tr.dna}]", "MEMFREE[1386240.2560425]", "NETFAIL[0 0 0 0 0 0 0 0]",
        _status_text(s, " "), f"Elapsed[{s.uptime_s}]", "BOOTBY[0x04.00000000]", f"LW[{_lw(s)}]",
        f"MH[{_ints(mh)}]", "DHW[0]", f"HW[{s.hw_errors}]", f"DH[{s.hw_error_pct:.3f}%]",
        f"Temp[{s.env_raw_c}]", f"TMax[{tmax}]", f"TAvg[{tavg}]",
    ]
    p += [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
    p += [f"FanR[{s.fan_pct if spec.fans else 0}%]", f"Vo[{core}]", f"PS[{_ints(s.ps)}]"]
    if spec.has_wallpower:
        p.append(f"WALLPOWER[{s.power_w}]")
    p += [f"PLL{b}[{unit.pll[b]}]" for b in range(n)]
    p += [
        f"GHSspd[{_spd_ghs(s):.2f}]", f"DHspd[{s.hw_error_pct:.3f}%]",
        f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]", f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]",
        f"WU[{cg._work_utility(s):.2f}]", f"Freq[{_freq_now(spec, s):.2f}]", f"Led[{int(s.led)}]",
        f"MGHS[{' '.join(f'{g:.2f}' for g in board_ghs)}]",
        f"MTmax[{_ints([b.temp_chip_max_c or 0 for b in s.boards])}]",
        f"MTavg[{_ints([b.temp_chip_avg_c or 0 for b in s.boards])}]",
        f"MVavg[{' '.join(f'{v[1]:.1f}' for v in volts)}]",
        f"TA[{sum(b.chips_ok for b in s.boards)}]", f"Core[{spec.core}]", f"PING[{unit.ping}]", "POWS[0]",
        f"EEPROM[{_ints([spec.chips_per_board] * n)}]", f"HASHS[{zeros}]", "POOLS[0]",
        f"SoftOFF[{SOFT_OFF_CODE if s.soft_off else 0}]", f"ECHU[{_ints(s.echu)}]", f"ECMM[{s.ecmm}]",
    ]
    p += [f"SF{b}[{sf}]" for b in range(n)]
    if with_chips:
        p += [f"PVT_T{b.index}[{_chip_temps(ctx, b.index, b.chip_base_c, b.dead_chips)}]" for b in s.boards]
        p += [f"PVT_V{b}[{volts[b][0]}]" for b in range(n)]
    lw = _lw(s)
    p.append(f"MW[{_ints(_split(lw, board_ghs))}]")
    if with_chips:
        p += [f"MW{b.index}[{_chip_works(ctx, b.index, board_ghs[b.index], 1.6, b.dead_chips)}]" for b in s.boards]
    p += [f"CRC[{zeros}]", f"COMCRC[{zeros}]", "FACOPTS0[]", "FACOPTS1[]", "FACOPTS2[]"]
    p += _ataopts(spec, s)
    p += ["ADJ[1]", f"COP[{zeros}]", f"MPO[{s.power_limit_w}]", "MVL[87]"]
    p += [f"ATABD{b}[{sf}]" for b in range(n)]
    p.append(f"WORKMODE[{s.work_mode_index}]")
    return " ".join(p)


# -- A10 (2019 firmware) ----------------------------------------------------------------------------


def _hs_records(s: Snapshot, spec: ModelSpec) -> list[str]:
    """HS_RCD0..4: the firmware's last five hash-status records (we vary the newest reading a little)."""
    fans = list(s.fans_rpm[:2]) + [0] * (2 - len(s.fans_rpm[:2]))
    tmax, tavg = _temps(s)
    out = []
    for i in range(5):
        d = (i * 7) % 5 - 2  # small, deterministic differences between records
        out.append(f"HS_RCD{i}[Tenv:{s.env_raw_c} Tavg:{tavg + (d > 1)} Fan1:{max(0, fans[0] + 9 * d)} "
                   f"Fan2:{max(0, fans[1] - 7 * d)} V12:{spec.ps_vin} Vout:{s.ps[2] + (d > 0)} "
                   f"P_I:{s.ps[3]} P_P:{max(0, s.ps[4] + 4 * d) if s.ps[4] else 0}]")
    return out


def _a10_parts(ctx: cg._Ctx, with_chips: bool) -> dict[str, list[str]]:
    """The A10 device string's pieces by key group; the two firmwares put them in different orders."""
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    unit = _unit(spec, tr.noise_seed)
    n = spec.boards
    board_ghs = _board_ghs(s)
    tmax, tavg = _temps(s)
    core = _core_mv(spec, s)
    sf = _ints(spec.sf_mhz or (600, 620, 640, 660))
    ghs_live = s.hashrate_ths * 1000.0
    lw = _lw(s)
    return {
        "status": [_status_text(s, " ")],
        "mw": [f"MW[{_ints(_split(lw, board_ghs))}]"],
        "errors": [f"LW[{lw}]", f"MH[{_ints(_split(s.hw_errors, board_ghs))}]", f"HW[{s.hw_errors}]",
                   f"DH[{s.hw_error_pct:.3f}%]"],
        "heat": [f"Temp[{s.env_raw_c}]", f"TMax[{tmax}]", f"TAvg[{tavg}]"]
        + [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
        + [f"FanR[{s.fan_pct}%]", f"Vo[{core}]", f"PS[{_ints(s.ps[:6])}]"]  # 6 slots: no wall figure
        + [f"PLL{b}[{unit.pll[b]}]" for b in range(n)],
        "rates": [f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]", f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]",
                  f"WU[{cg._work_utility(s):.2f}]",
                  f"Freq[{_freq_now(spec, s) if ghs_live else 0.0:.2f}]", f"Led[{int(s.led)}]",
                  f"MGHS[{' '.join(f'{g:.2f}' for g in board_ghs)}]",
                  f"MTmax[{_ints([b.temp_chip_max_c or 0 for b in s.boards])}]",
                  f"MTavg[{_ints([b.temp_chip_avg_c or 0 for b in s.boards])}]",
                  f"TA[{sum(b.chips_ok for b in s.boards)}]", f"ECHU[{_ints(s.echu)}]", f"ECMM[{s.ecmm}]"]
        + [f"SF{b}[{sf}]" for b in range(n)],
        "chips_t": [f"PVT_T{b.index}[{_chip_temps(ctx, b.index, b.chip_base_c, b.dead_chips)}]" for b in s.boards]
        + [f"PVT_V{b.index}[{_chip_volts(ctx, b.index, core, b.dead_chips)[0]}]" for b in s.boards]
        if with_chips else [],
        "chips_w": [f"MW{b.index}[{_chip_works(ctx, b.index, board_ghs[b.index], 0.65, b.dead_chips)}]"
                    for b in s.boards] if with_chips else [],
        "tail": [f"CRC[{_ints([0] * n)}]", "POW_I2C_CONN[SUCCES]"] + _hs_records(s, spec),
    }


def _a10_1910_string(ctx: cg._Ctx, with_chips: bool) -> str:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    parts = _a10_parts(ctx, with_chips)
    p = [f"Ver[{spec.ver}]", f"DNA[{tr.dna}]", "NETFAIL[0 0 0 0 0 0 0 0]", *parts["status"],
         f"Elapsed[{s.uptime_s}]", *parts["mw"], *parts["errors"], *parts["heat"], *parts["rates"],
         *parts["chips_t"], *parts["chips_w"], *parts["tail"], "MEMFREE[271360 B]", "FACOPTS0[]", "FACOPTS1[]",
         f"WORKMODE[{s.work_mode_index}]"]
    return " ".join(p)


def _a10_1912_string(ctx: cg._Ctx, with_chips: bool) -> str:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    parts = _a10_parts(ctx, with_chips)
    p = [f"Ver[{spec.ver}]", f"DNA[{tr.dna}]", "MEMFREE[2583360 B]", "NETFAIL[0 0 0 0 0 0 0 0]",
         *parts["status"],
         f"Elapsed[{s.uptime_s}]BOOTBY[1]",  # no space between them on this firmware
         *parts["errors"], *parts["heat"], *parts["rates"], *parts["chips_t"], *parts["mw"], *parts["chips_w"],
         *parts["tail"], "FACOPTS0[]", "FACOPTS1[]", f"WORKMODE[{s.work_mode_index}]"]
    return " ".join(p)


# -- Nano 3 (2024) and Mini 3 (2025) --------------------------------------------------------------------


def _profile(spec: ModelSpec, s: Snapshot) -> list[str]:
    """The active ATA profile's fields ("90-85-324-100:441:461:481": MPO, TarT, a third value, SF)."""
    text = spec.modes[s.work_mode_index].profile or "0-0-0-0:0:0:0"
    return text.split("-")


def _nano3_string(ctx: cg._Ctx, with_chips: bool) -> str:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    unit = _unit(spec, tr.noise_seed)
    board = s.boards[0]
    tmax, tavg = _temps(s)
    prof = _profile(spec, s)
    hashing = bool(s.ps[4])
    env = s.env_raw_c
    otemp = env + int(round(0.1 * (tavg - env))) if tavg else env
    # PS on this firmware: [err, 0, 0, amps, volts x100, watts, profile value] (docs/avalon.md section 4).
    ps = (s.ps[0], 0, 0, s.ps[3], s.ps[2] if hashing else 0, s.power_w, int(prof[2]))
    p = [
        "HashStatus[1]", f"Ver[{spec.ver}]", "HVer[24071801_b906c52_6223725]", "DNA[0000000000000000]",
        f"HDNA[{tr.dna}]", "PFCnt[0]", "NETFAIL[0 0 0 0 0 0 0 0]", f"Elapsed[{s.uptime_s}]", f"LW[{_lw(s)}]",
        f"MH[{s.hw_errors}]", "DHW[0]", f"HW[{s.hw_errors}]", f"DH[{s.hw_error_pct:.3f}%]", f"Temp[{env}]",
        f"OTemp[{otemp}]", f"TMax[{tmax}]", f"TAvg[{tavg}]", f"TarT[{prof[1]}]",
    ]
    p += [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
    p += [
        f"FanR[{s.fan_pct}%]", "Vo[0]", f"PS[{_ints(ps)}]", f"GHSspd[{_spd_ghs(s):.2f}]",
        f"DHspd[{s.hw_error_pct:.3f}%]", f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]",
        f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]", f"WU[{cg._work_utility(s):.2f}]",
        "Freq[0.00]",  # as published: 0.00 on a hashing unit
        f"Led[{int(s.led)}]", f"MGHS[{board.hashrate_avg_ths * 1000.0:.2f}]",
        f"MTmax[{board.temp_chip_max_c or 0}]", f"MTavg[{board.temp_chip_avg_c or 0}]", f"TA[{board.chips_ok}]",
        f"Core[{spec.core}]", f"PING[{unit.ping}]", f"SoftOFF[{SOFT_OFF_CODE if s.soft_off else 0}]",
        f"ECHU[{s.echu[0]}]", f"ECMM[{s.ecmm}]", f"PLL0[{unit.pll[0]}]", f"SF0[{prof[3].replace(':', ' ')}]",
    ]
    if with_chips:
        core = _core_mv(spec, s) if hashing else 0
        dead = board.dead_chips
        p += [f"PVT_T0[{_chip_temps(ctx, 0, board.chip_base_c, dead)}]",
              f"PVT_V0[{_chip_volts(ctx, 0, core, dead)[0]}]",
              f"MW0[{_chip_works(ctx, 0, board.hashrate_avg_ths * 1000.0, 2.5, dead)}]"]
    p.append("CRC[0]")
    p += [f"ATA{i}[{m.profile}]" for i, m in enumerate(spec.modes)]
    p += [f"WORKLEVEL[{s.work_mode_index}]", f"MPO[{s.power_limit_w}]", "ADJ[1]"]
    return " ".join(p)


def _mini3_string(ctx: cg._Ctx, with_chips: bool) -> str:
    s, spec, tr = ctx.snap, ctx.dev.spec, ctx.dev.traits
    unit = _unit(spec, tr.noise_seed)
    board = s.boards[0]
    tmax, tavg = _temps(s)
    env = s.env_raw_c
    hbtemp = env + int(round(0.85 * (tavg - env))) if tavg else env
    sf = spec.sf_mhz or (440, 460, 480, 500)
    alive = sum(1 for b in s.boards if b.alive)
    p = [
        "HashStatus[0]", f"Ver[{spec.ver}]", f"LVer[{spec.firmware}]", f"BVer[{spec.firmware}]",
        "Mcu0Ver[Mini3_hb_v1.0]", "FW[Release]", f"DNA[{tr.dna}]", "MEMFREE[63904]", "NETFAIL[0 0 0 0 0 0 0 0]",
        f"SYSTEMSTATU[Work: {s.system_status}, Hash Board: {alive}]", f"Elapsed[{s.uptime_s}]",
        "BOOTBY[0x01.00000000]", f"LW[{_lw(s)}]", f"MH[{s.hw_errors}]", "DHW[0]", f"HW[{s.hw_errors}]",
        f"DH[{s.hw_error_pct:.3f}%]", f"ITemp[{env}]", f"OTemp[{s.temp_board_max_c or 0}]", f"HBTemp[{hbtemp}]",
        f"TMax[{tmax}]", f"TAvg[{tavg}]", f"TarT[{spec.target_temp_c}]",
    ]
    p += [f"Fan{i + 1}[{rpm}]" for i, rpm in enumerate(s.fans_rpm)]
    p += [
        f"FanR[{s.fan_pct}%]", f"PS[{_ints(s.ps)}]", "PCOMM_E[0]", f"GHSspd[{_spd_ghs(s):.2f}]",
        f"DHspd[{s.hw_error_pct:.3f}%]", f"GHSmm[{s.expected_hashrate_ths * 1000.0:.2f}]",
        f"GHSavg[{s.hashrate_avg_ths * 1000.0:.2f}]", f"WU[{cg._work_utility(s):.2f}]",
        f"Freq[{_freq_now(spec, s):.2f}]", f"MGHS[{board.hashrate_avg_ths * 1000.0:.2f}]",
        f"TA[{board.chips_ok}]", f"Core[{spec.core}]", f"PING[{unit.ping}]",
        f"SoftOFF[{SOFT_OFF_CODE if s.soft_off else 0}]", f"ECHU[{s.echu[0]}]", f"ECMM[{s.ecmm}]",
        f"PLL0[{unit.pll[0]}]", f"SF0[{_ints(sf)}]", "CRC[0]", "COMCRC[0]", f"WORKMODE[{s.work_mode_index}]",
        f"WORKLEVEL[{s.work_level}]", f"MPO[{s.power_limit_w}]", "ADJ[1]",
    ]
    return " ".join(p)


# -- AUC controller chains (7xx, 8xx, 9xx) ------------------------------------------------------------


def _module_string(ctx: cg._Ctx, m: int, module: ChainModule) -> str:
    """`MM ID<k>` of module `m` (index over the whole chain); boards 4m..4m+3."""
    s, spec = ctx.snap, ctx.dev.spec
    unit = _unit(spec, ctx.dev.traits.noise_seed)
    gen = module.model[0]
    boards = s.boards[4 * m: 4 * m + 4]
    board_ghs = [b.hashrate_avg_ths * 1000.0 for b in boards]
    share = sum(board_ghs) / (s.hashrate_avg_ths * 1000.0) if s.hashrate_avg_ths else 1.0 / len(spec.modules)
    total_work = int(s.total_th_s * 232.83 * share)
    mw = _split(total_work, board_ghs)
    hw = int(s.hw_errors * share)
    alive = [b for b in boards if b.alive]
    tmax = max((b.temp_chip_max_c or 0 for b in alive), default=0)
    rpm = s.fans_rpm[m] if m < len(s.fans_rpm) else 0
    fan_pct = int(round(100.0 * rpm / spec.fan_max_rpm)) if spec.fan_max_rpm else 0
    hashing = s.hashrate_ths > 0
    vi = unit.vi[m]
    wu = cg._work_utility(s) * share
    p = [f"Ver[{module.ver}]", f"DNA[{unit.dna[m]}]", f"Elapsed[{s.uptime_s + unit.elapsed_lead[m]}]",
         f"MW[{_ints(mw)}]", f"LW[{total_work}]", f"MH[{_ints(_split(hw, board_ghs))}]", f"HW[{hw}]"]
    if gen != "8":  # the 8xx string has no DH
        p.append(f"DH[{max(0.0, s.hw_error_pct + unit.dh_offset[m]):.3f}%]")
    p += [
        f"Temp[{s.env_raw_c + unit.temp_offset[m]}]", f"TMax[{tmax}]", f"Fan[{rpm}]", f"FanR[{fan_pct}%]",
        f"Vi[{vi[0]} {vi[0]} {vi[1]} {vi[1]}]",  # two boards per input rail
        f"Vo[{_ints(unit.vo[m]) if hashing else '0 0 0 0'}]",
        f"GHSmm[{module.ghs_mm:.2f}]", f"WU[{wu:.2f}]",
        f"Freq[{module.freq_mhz + unit.freq_offset[m] if hashing else 0.0:.2f}]", "PG[15]", f"Led[{int(s.led)}]",
    ]
    scale = 5.0 if gen == "9" else 0.04  # 9xx counts over a longer window than 7xx/8xx (captures)
    p += [f"MW{i}[{_chip_works(ctx, 4 * m + i, board_ghs[i], scale, b.dead_chips)}]" for i, b in enumerate(boards)]
    p += [f"TA[{sum(b.chips_ok for b in boards)}]", f"ECHU[{_ints(s.echu[4 * m: 4 * m + 4])}]",
          f"ECMM[{s.ecmm}]", "FM[1]", "CRC[0 0 0 0]"]
    if gen == "7":  # 7xx: PAIRS and a per-board chip-temperature summary `min chip-min/max chip-max/avg`
        summaries = [_pvt_summary(ctx, 4 * m + i, b.chip_base_c if b.alive else 0, b.dead_chips)
                     for i, b in enumerate(boards)]
        p += ["PAIRS[0 0 0]", f"PVT_T[{' '.join(summaries)}]"]
    return " ".join(p)


def _pvt_summary(ctx: cg._Ctx, board: int, base_c: int, dead: tuple[int, ...] = ()) -> str:
    """A 7xx board's `coolest chip-its temp/hottest chip-its temp/average` over the chips that answer
    (0-0/0-0/0 for a lost board)."""
    offsets = ctx.dev.traits.chip_offsets[board]

    def make() -> str:
        live = [(o, i) for i, o in enumerate(offsets) if i not in dead]
        if base_c == 0 or not live:
            return "0-0/0-0/0"
        (lo, lo_at), (hi, hi_at) = min(live), max(live, key=lambda x: (x[0], -x[1]))  # the first chip on ties
        return f"{lo_at}-{base_c + lo}/{hi_at}-{base_c + hi}/{base_c}"

    return _cached(("pvt_sum", ctx.dev.traits.noise_seed, board, base_c, len(dead)),  # type: ignore[no-any-return]
                   make)


def _chain_entries(ctx: cg._Ctx) -> list[dict[str, Any]]:
    s, spec = ctx.snap, ctx.dev.spec
    unit = _unit(spec, ctx.dev.traits.noise_seed)
    entries: list[dict[str, Any]] = []
    m = 0
    for a, auc in enumerate(spec.chain):
        gen = auc[0].model[0]
        entry: dict[str, Any] = {"STATS": a, "ID": f"AV{gen}{a}", "Elapsed": s.uptime_s, "Calls": 0, "Wait": 0,
                                 "Max": 0, "Min": 99999999}
        for k, module in enumerate(auc, start=1):  # slot 0 is unused: MM ID1..n
            entry[f"MM ID{k}"] = _module_string(ctx, m, module)
            m += 1
        entry.update({
            "MM Count": len(auc), "Smart Speed": 1, "Connecter": "AUC", "AUC VER": "AUC-20151208",
            "AUC I2C Speed": 400000, "AUC I2C XDelay": 24000 if gen == "9" else 19200,
            "AUC Sensor": unit.auc_sensor[a], "AUC Temperature": round(s.env_raw_c + 6.5 + 0.37 * a, 2),
            "Connection Overloaded": False,
        })
        if gen == "7":
            entry["Voltage Offset"] = -2
        else:
            entry["Voltage Level Offset"] = 0
        entry.update({"Nonce Mask": 29 if gen == "7" else 24, "USB Pipe": "0",
                      "USB Delay": "r0 0.000000 w0 0.000000", "USB tmo": "0 0"})
        entries.append(entry)
    return entries


def _auc_shares(s: Snapshot, spec: ModelSpec) -> list[float]:
    """Each AUC's share of the chain's rate (its modules' boards)."""
    out, b = [], 0
    for auc in spec.chain:
        n = 4 * len(auc)
        out.append(sum(x.hashrate_ths for x in s.boards[b: b + n]))
        b += n
    total = sum(out)
    return [x / total for x in out] if total else [1.0 / len(out)] * len(out)


# -- STATS envelopes -----------------------------------------------------------------------------------


_STRINGS: dict[str, Callable[[cg._Ctx, bool], str]] = {
    "a15_2024": _a15_string,
    "a10_1910": _a10_1910_string,
    "a10_1912": _a10_1912_string,
    "nano3_2024": _nano3_string,
    "mini3_2025": _mini3_string,
}


def _device_entry(ctx: cg._Ctx, with_chips: bool) -> dict[str, Any]:
    spec, s = ctx.dev.spec, ctx.snap
    entry: dict[str, Any] = {"STATS": 0, "ID": spec.stats_id, "Elapsed": s.uptime_s, "Calls": 0,
                             "Wait": 0.0, "Max": 0.0, "Min": 99999999.0,
                             "MM ID0": _STRINGS[spec.layout](ctx, with_chips), "MM Count": 1}
    if spec.layout == "a15_2024":
        entry.update({"Smart Speed": 1, "Voltage Level Offset": 0})
    elif spec.layout.startswith("a10"):
        entry.update({"Smart Speed": 1, "Connection Overloaded": False, "Voltage Level Offset": 0})
    entry["Nonce Mask"] = 1 if spec.layout == "nano3_2024" else 25
    return entry


def _pool_entries(ctx: cg._Ctx, first_index: int, int_times: bool) -> list[dict[str, Any]]:
    """One STATS entry per configured pool (the active one counts, the backups are idle)."""
    active = cg._pool_entry(ctx)
    out = []
    for i in range(len(cg.POOL_URLS)):
        item = dict(active) if i == 0 else {**active, "Min Diff Count": 0, "Max Diff Count": 0, "Times Sent": 2,
                                             "Bytes Sent": 151, "Times Recv": 4, "Bytes Recv": 1700,
                                             "Net Bytes Sent": 151, "Net Bytes Recv": 1700, "Work Diff": 0.0,
                                             "Min Diff": 0.0, "Max Diff": 0.0}
        item["STATS"], item["ID"] = first_index + i, f"POOL{i}"
        if int_times:  # cgminer 4.10 prints these as integers
            for key in ("Wait", "Max", "Min", "Pool Wait", "Pool Max", "Pool Min", "Pool Av"):
                item[key] = int(item[key])
        out.append(item)
    return out


def _stats(ctx: cg._Ctx) -> dict[str, Any]:
    spec = ctx.dev.spec
    if spec.layout == "auc":
        devices = _chain_entries(ctx)
        body = cg._reply(_status_410("S", 70, "CGMiner stats", ctx), "STATS",
                         devices + _pool_entries(ctx, len(devices), int_times=True))
        return body
    items = [_device_entry(ctx, with_chips=True)] + _pool_entries(ctx, 1, int_times=False)
    return cg._reply(cg._status("S", 70, "CGMiner stats", ctx.when()), "STATS", items)


def _litestats(ctx: cg._Ctx) -> dict[str, Any]:
    if not ctx.dev.spec.has_litestats:
        return cg._invalid(ctx)
    return cg._reply(cg._status("S", 70, "CGMiner stats", ctx.when()), "STATS", [_device_entry(ctx, with_chips=False)])


# -- version, summary, devs, pools per firmware ---------------------------------------------------------


def _status_410(severity: str, code: int, msg: str, ctx: cg._Ctx) -> dict[str, Any]:
    status = cg._status(severity, code, msg, ctx.when())
    status["Description"] = CGMINER_410
    return status


def _version(ctx: cg._Ctx) -> dict[str, Any]:
    spec, tr = ctx.dev.spec, ctx.dev.traits
    if spec.layout == "auc":  # the controller's cgminer: no PROD, no MAC
        return cg._reply(_status_410("S", 22, "CGMiner versions", ctx), "VERSION",
                         [{"CGMiner": "4.10.0", "API": cg.API_VERSION}])
    item: dict[str, Any] = {"CGMiner": cg.CGMINER_VERSION, "API": cg.API_VERSION}
    if spec.layout == "a15_2024":
        item["STM8"] = "20.08.01"
    item.update(PROD=spec.prod, MODEL=spec.model, HWTYPE=spec.hwtype, SWTYPE=spec.swtype)
    if spec.layout in ("nano3_2024", "mini3_2025"):
        item.update(LVERSION=spec.firmware, BVERSION=spec.firmware, CGVERSION=spec.firmware)
        if spec.layout == "mini3_2025":
            item["MCUVERSION"] = "Mini3_hb_v1.0"
    else:
        item["VERSION"] = spec.firmware
        if spec.layout == "a15_2024":
            item["LOADER"] = "d0d779de.00"
    item.update(DNA=tr.dna, MAC=tr.mac)
    if spec.layout != "mini3_2025":
        item["UPAPI"] = "2"
    return cg._reply(cg._status("S", 22, "CGMiner versions", ctx.when()), "VERSION", [item])


def _rename_5s(item: dict[str, Any]) -> dict[str, Any]:
    """cgminer 4.10 and the A10 2019 firmware name the short window `MHS 5s` (same place)."""
    return {("MHS 5s" if k == "MHS 30s" else k): v for k, v in item.items()}


def _summary(ctx: cg._Ctx) -> dict[str, Any]:
    body = cg._summary(ctx)
    layout = ctx.dev.spec.layout
    if layout in ("a10_1910", "auc"):
        body["SUMMARY"] = [_rename_5s(body["SUMMARY"][0])]
    if layout == "auc":
        body["STATUS"][0]["Description"] = CGMINER_410
    return body


def _devs(ctx: cg._Ctx) -> dict[str, Any]:
    body = cg._devs(ctx)
    spec = ctx.dev.spec
    if spec.layout == "a15_2024":  # this firmware's devs has no `Difficulty Stale`
        body["DEVS"] = [{k: v for k, v in body["DEVS"][0].items() if k != "Difficulty Stale"}]
    if spec.layout != "auc":
        return body
    # The controller lists each AUC as one ASC device, its share of every rate.
    s = ctx.snap
    base = _rename_5s(body["DEVS"][0])
    items = []
    for a, share in enumerate(_auc_shares(s, spec)):
        item = dict(base)
        item.update(ASC=a, ID=a, Name=spec.dev_name, Temperature=round(s.env_raw_c + 6.5 + 0.37 * a, 2))
        for key in ("MHS av", "MHS 5s", "MHS 1m", "MHS 5m", "MHS 15m", "Total MH"):
            item[key] = round(base[key] * share, 2)
        for key in ("Accepted", "Rejected", "Hardware Errors", "Diff1 Work"):
            item[key] = int(base[key] * share)
        for key in ("Difficulty Accepted", "Difficulty Rejected", "Difficulty Stale"):
            item[key] = float(int(base[key] / spec.pool_diff * share) * spec.pool_diff)
        items.append(item)
    return cg._reply(_status_410("S", 9, f"{len(items)} ASC(s)", ctx), "DEVS", items)


def _devdetails(ctx: cg._Ctx) -> dict[str, Any]:
    spec = ctx.dev.spec
    items = [{"DEVDETAILS": a, "Name": spec.dev_name, "ID": a, "Driver": spec.driver, "Kernel": "", "Model": "",
              "Device Path": f"1:{a + 2}"} for a in range(len(spec.chain))]
    return cg._reply(_status_410("S", 69, "Device Details", ctx), "DEVDETAILS", items)


def _pools(ctx: cg._Ctx) -> dict[str, Any]:
    body = cg._pools(ctx)
    body["POOLS"] = [{k: v for k, v in p.items() if k != "Has Vmask"} for p in body["POOLS"]]  # cgminer 4.10
    body["STATUS"][0]["Description"] = CGMINER_410
    return body


_SINGLE = {"version": _version, "summary": _summary, "devs": _devs, "stats": _stats, "estats": _stats,
           "litestats": _litestats}
cg.LAYOUT_COMMANDS.update({
    "a15_2024": _SINGLE,
    "a10_1910": _SINGLE,
    "a10_1912": _SINGLE,
    "nano3_2024": _SINGLE,
    "mini3_2025": _SINGLE,
    "auc": {**_SINGLE, "devdetails": _devdetails, "pools": _pools},
})
