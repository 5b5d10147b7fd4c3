"""A simulated miner's body: hashrate, power, heat, fans and shares, evolving with a clock.

Determinism: everything a miner reports is a function of (seed, index, the clock readings at
which it was observed or changed, and the changes themselves). Static traits (MAC, chip
temperature offsets, per-unit bias) come from a `random.Random` seeded from (seed, index);
time-varying noise is a hash of (trait seed, channel, time), never a draw from a shared
stream, so how often a miner is polled does not change what it says.

Averages since boot are integrated exactly: rates are piecewise constant between changes
except for the start-up ramp, which has a closed-form integral, so integrating lazily at
each observation gives the same numbers however often it happens. Faults that evolve over
fault days (chips dying, a fan wearing out, PSU drift) change linearly in time; each step is
integrated at its midpoint, exact for a linear change (chips die one at a time, so a step that
crosses a chip's death is off by at most that chip's share of the step).

Control: work modes and levels, soft-off, and a power cap (`power_cap_w`, what Whatsminer's
power limit and Braiins' power target set) which the firmware meets by clocking down: hashrate
follows the cap's share of the dynamic power to the 0.8th power, so J/TH improves a little.

Not thread-safe on its own; `SimulatedMiner` serialises access with a lock.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

from models.sample import MinerState
from simulators.faults import CONTROLLER, ECHU_BOARD_LOST, ECMM_OVERHEAT, HEALTHY, Faults
from simulators.specs import ModelSpec

INIT_S = 0.0  # seconds after boot or soft-on before chips hash ("In Init"); 0: the ramp starts at once
RAMP_S = 60.0  # then live hashrate ramps linearly to full over this long
LIVE_NOISE = 0.015  # live hashrate wobble (fraction), smooth over ~12 s
THROTTLE_FACTOR = 0.6  # overheat throttle: share of normal hashrate kept
SHUTDOWN_COOL_S = 180.0  # overheat shutdown: chips cool toward ambient with this time constant
SOFT_OFF_CODE = 4  # SoftOFF[4] as real units show when asleep
CAP_MARGIN = 0.975  # a capped unit holds its draw this far under the cap (live noise stays below it)
CAP_EXPONENT = 0.8  # hashrate share = power share ** this when clocked down to a cap
MIN_CAP_SHARE = 0.05  # the deepest a cap clocks a unit down (share of its dynamic power)
FAN_ERROR_SHARE = 0.6  # a fan turning slower than this share of its target is a fan error
MAX_PSU_OFFSET = 0.5  # PSU drift stops at +-50 %: a reading beyond it is a dead sensor, not drift
OVERHEAT_SHUTDOWN = "overheat shutdown"  # how `Snapshot.errors` names the protection's power cut
_MASK64 = (1 << 64) - 1
# Averaging windows (30 s, 1 m, 5 m, 15 m): noise channel, seconds, wobble (less over longer windows).
_WINDOWS = tuple((ch, w, LIVE_NOISE * math.sqrt(12.0 / w))
                 for ch, w in ((2, 30.0), (3, 60.0), (4, 300.0), (5, 900.0)))
_INT_TEXT = tuple(str(v) for v in range(256))  # chip temperatures as text, looked up not formatted


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=1024)
def _knot_key(channel: int, k: int) -> int:
    """The seed-free half of `_knot`: every miner of a fleet needs the same few at a time."""
    return _mix64((channel << 40) ^ (k & 0xFFFFFFFFFF))


def _knot(seed: int, channel: int, k: int) -> float:
    """A pseudo-random value in [-1, 1) for one knot of one noise channel."""
    h = _mix64(seed ^ _knot_key(channel, k))
    return (h >> 11) * (2.0 / (1 << 53)) - 1.0


def noise(seed: int, channel: int, t: float, period: float) -> float:
    """Smooth value noise in [-1, 1]: knots every `period` seconds, smoothstep in between."""
    x = t / period
    k = math.floor(x)
    f = x - k
    f = f * f * (3.0 - 2.0 * f)
    a = _knot(seed, channel, k)
    return a + (_knot(seed, channel, k + 1) - a) * f


def ramp(e: float) -> float:
    """Share of full hashrate `e` seconds after hashing (re)started."""
    if e <= INIT_S:
        return 0.0
    if e < INIT_S + RAMP_S:
        return (e - INIT_S) / RAMP_S
    return 1.0


def ramp_integral(e: float) -> float:
    """Integral of `ramp` from 0 to e (seconds at full rate)."""
    if e <= INIT_S:
        return 0.0
    if e < INIT_S + RAMP_S:
        d = e - INIT_S
        return d * d / (2.0 * RAMP_S)
    return RAMP_S / 2.0 + (e - INIT_S - RAMP_S)


@dataclass(frozen=True, slots=True)
class Traits:
    """What makes one unit differ from its siblings; fixed at manufacture (seed, index)."""

    index: int
    mac: str  # 12 lowercase hex digits, no colons
    dna: str
    noise_seed: int
    unit_bias: float  # this unit's hashrate vs nameplate
    power_bias: float
    board_shares: tuple[float, ...]  # mean 1.0
    board_temp_bias: tuple[float, ...]
    chip_offsets: tuple[tuple[int, ...], ...]  # per board, per chip, around the board average
    fan_bias: tuple[float, ...]
    ambient_offset_c: float
    dh_pct: float
    reject_ratio: float
    stale_ratio: float
    uptime_s: float  # uptime when the simulation starts


@functools.cache
def _chip_offset_table(spread_c: float) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """A discretised normal distribution (clipped at 2.6 sigma) of whole-degree chip offsets.

    Drawing from a table with `Random.choices` is several times cheaper than `gauss` per chip,
    which matters when a fleet of 10,000 miners (millions of chips) is built.
    """
    lim = int(round(2.6 * spread_c))
    values = tuple(range(-lim, lim + 1))
    weights = [math.exp(-0.5 * (v / spread_c) ** 2) for v in values]
    total, acc, cum = sum(weights), 0.0, []
    for w in weights:
        acc += w / total
        cum.append(acc)
    return values, tuple(cum)


def make_traits(spec: ModelSpec, seed: int, index: int, uptime_s: float | None = None) -> Traits:
    rng = random.Random(f"hashfleet:{seed}:{index}")
    # MAC: a per-seed locally administered prefix plus a bijection of the index, so every miner
    # of a fleet has a distinct MAC (random draws would collide among thousands of miners).
    prefix = (_mix64(seed & _MASK64) >> 40) & 0xFCFFFF | 0x020000
    suffix = (index * 0x9E3779 + (_mix64(seed + 1) & 0xFFFFFF)) & 0xFFFFFF
    mac = f"{prefix:06x}{suffix:06x}"
    shares = [rng.uniform(0.97, 1.03) for _ in range(spec.boards)]
    mean_share = sum(shares) / len(shares)
    values, cum_weights = _chip_offset_table(spec.chip_spread_c)
    offsets: list[tuple[int, ...]] = []
    for _ in range(spec.boards):
        raw = rng.choices(values, cum_weights=cum_weights, k=spec.chips_per_board)
        centre = round(sum(raw) / len(raw))
        offsets.append(tuple([v - centre for v in raw]))
    return Traits(
        index=index,
        mac=mac,
        dna="0201" + f"{rng.getrandbits(48):012x}",
        noise_seed=rng.getrandbits(63),
        unit_bias=rng.uniform(-0.015, 0.03),
        power_bias=rng.uniform(-0.01, 0.015),
        board_shares=tuple(s / mean_share for s in shares),
        board_temp_bias=tuple(rng.uniform(-1.5, 1.5) for _ in range(spec.boards)),
        chip_offsets=tuple(offsets),
        fan_bias=tuple(rng.uniform(-0.02, 0.02) for _ in range(spec.fans)),
        ambient_offset_c=rng.uniform(-1.5, 4.5),
        dh_pct=spec.hw_error_pct * rng.uniform(0.7, 1.3),
        reject_ratio=rng.uniform(0.001, 0.005),
        stale_ratio=rng.uniform(0.0001, 0.001),
        uptime_s=uptime_s if uptime_s is not None else rng.uniform(2 * 3600.0, 20 * 86400.0),
    )


def _board_weights(spec: ModelSpec, traits: Traits) -> tuple[float, ...]:
    """Each board's share of the unit's rate: its unit-to-unit spread times, on a chain of mixed modules
    (an 841 beside 821s), its module's nominal against the chain's average board."""
    if not spec.chain:
        return traits.board_shares
    nominal = [m.ghs_mm for m in spec.modules for _ in range(4)]
    mean = sum(nominal) / len(nominal)
    return tuple(s * n / mean for s, n in zip(traits.board_shares, nominal, strict=True))


def _healthy_echu(spec: ModelSpec, traits: Traits) -> tuple[int, ...]:
    """ECHU per board on a healthy unit: 512 on A10 (Canaan's manual); on a 7xx chain a few boards show
    16, 512 or 528 while hashing at nominal (capture a741). Drawn from its own stream so the traits'
    draws, and so every older model's numbers, stay as they were."""
    if spec.chain and spec.modules[0].model.startswith("7"):
        rng = random.Random(f"hashfleet-echu:{traits.noise_seed}")
        return tuple(rng.choices((0, 512, 16, 528), weights=(80, 12, 6, 2))[0] for _ in range(spec.boards))
    return (spec.healthy_echu,) * spec.boards


# BoardSnapshot and Snapshot are built once per answer and never changed afterwards, but not `frozen`: a
# frozen dataclass sets each field through object.__setattr__, a fifth of a snapshot's cost (docs/benchmarks.md).
@dataclass(slots=True)
class BoardSnapshot:
    index: int
    alive: bool
    hashrate_avg_ths: float  # MGHS[b] as served: since-boot average
    hashrate_ths: float  # live share of GHSspd (not on the wire: Avalon reports no live per board)
    temp_chip_max_c: int | None  # MTmax[b] (None when the board is lost)
    temp_chip_avg_c: int | None  # MTavg[b]
    temp_in_c: int | None  # HBITemp (Avalon Q; computed but not shown on the Nano)
    temp_out_c: int | None  # HBOTemp (Avalon Q) / OTemp (Nano 3S)
    chips_ok: int  # chips reporting a temperature
    chips_expected: int
    error_code: int  # ECHU[b]
    chip_base_c: int  # board average; PVT_T = chip_base_c + per-chip offsets (0 when lost)
    dead_chips: tuple[int, ...] = ()  # indexes of chips that stopped (PVT_T reads 0 there)


@dataclass(slots=True)
class Snapshot:
    """The truth one answer was built from (never changed once built). Field names follow models.MinerSample.

    Numbers are rounded the way the wire shows them, so a collector that parsed the reply
    exactly should hold these values.
    """

    at: float  # clock reading
    model: str  # fleet key
    mac: str
    firmware: str
    state: MinerState  # mining | idle | soft_off | error
    hashrate_ths: float  # GHSspd (live)
    hashrate_avg_ths: float  # GHSavg (since boot) == sum of boards' hashrate_avg_ths
    hashrate_30s_ths: float  # devs/summary MHS 30s
    hashrate_1m_ths: float  # devs/summary MHS 1m
    hashrate_5m_ths: float
    hashrate_15m_ths: float
    expected_hashrate_ths: float  # GHSmm
    power_w: float  # last PS slot (and WALLPOWER where the firmware has it)
    power_limit_w: int  # MPO
    temp_env_c: int | None  # Temp / ITemp (None where the sensor reads -273)
    temp_chip_max_c: int | None  # TMax (None when the firmware reports 0: asleep)
    temp_chip_avg_c: int | None  # TAvg
    temp_board_max_c: int | None  # HBOTemp (Avalon Q) / OTemp (Nano 3S), else None
    fans_rpm: tuple[int, ...]
    fan_pct: int
    boards: tuple[BoardSnapshot, ...]
    uptime_s: int  # Elapsed
    accepted: int
    rejected: int
    stale: int
    hw_errors: int
    hw_error_pct: float  # DH
    work_mode: str  # name of WORKMODE
    work_mode_index: int
    work_level: int
    soft_off: bool
    led: bool
    echu: tuple[int, ...]
    ecmm: int
    errors: tuple[str, ...]
    # Wire-only details.
    system_status: str  # e.g. "In Work"
    env_raw_c: int  # what the ambient key shows (may be -273)
    ps: tuple[int, ...]
    total_th_s: float  # TH·s hashed since boot (drives shares and Total MH)
    soft_off_time: int
    soft_on_time: int
    # What only a meter, or a firmware's own error list, shows.
    power_true_w: float  # the real draw (a meter on the outlet); power_w walks away from it under psu_drift
    fans_failed: tuple[int, ...]  # fans turning under FAN_ERROR_SHARE of their target
    error_code: int  # the `error_code` fault's code (0: none), for firmwares that list codes
    error_board: int  # its hash board, or -1 (faults.CONTROLLER) for the control board
    # Where the live rate a correct reader reports comes from: "GHSspd" (the device string), or
    # "MHS 1m" (summary) on firmware without GHSspd and while GHSspd reads 0.00 after a (re)start.
    live_source: str = "GHSspd"
    # The power a correct reader reports: `power_w` where the firmware shows wall watts, PS[4] where it
    # shows only the DC power to the boards (A10), None where it shows none (7xx-9xx chains).
    reported_power_w: float | None = None

    @property
    def reported_hashrate_ths(self) -> float:
        """The live rate a reader following the documented fallback reports (docs/avalon.md section 6)."""
        return self.hashrate_ths if self.live_source == "GHSspd" else self.hashrate_1m_ths

    @property
    def tripped(self) -> bool:
        """The overheat protection cut power (ECMM may also carry an `error_code` fault's bits)."""
        return any(e.startswith(OVERHEAT_SHUTDOWN) for e in self.errors)


class MinerPhysics:
    """State and time evolution of one miner. Call `advance(now)` before any change."""

    def __init__(self, spec: ModelSpec, traits: Traits, now: float, site_ambient_c: float = 25.0) -> None:
        self.spec = spec
        self.traits = traits
        self.site_ambient_c = site_ambient_c
        self.faults: Faults = HEALTHY
        self.work_mode = spec.default_mode
        self.work_level = 0
        self.led = False
        self.soft_off_time = 0
        self.soft_on_time = 0
        self.overheat_since = now
        self.power_cap_w: float | None = None  # a power limit set by a control command
        # Evolving faults' progress: chips lost per board, wear per fan (0-1), PSU reading offset.
        self.chips_lost = [0.0] * spec.boards
        self.fan_wear = [0.0] * spec.fans
        self.psu_offset = 0.0
        self.next_reboot = math.inf  # reboot_loop: when the next forced reboot happens
        # TH·s-weighted shares beyond the unit's own reject/stale/HW-error ratios (pool_rejects, hw_errors).
        self.extra_rej_th_s = 0.0
        self.extra_stale_th_s = 0.0
        self.extra_hw_th_s = 0.0
        self._death_order: dict[int, tuple[int, ...]] = {}
        self._pvt_cache: dict[tuple[int, int, int], str] = {}
        self._knots: dict[int, tuple[int, float, float]] = {}  # channel -> (k, knot k, knot k+1)
        # Per board: coolest and hottest chip vs the board average (fixed at manufacture).
        self._offset_range = tuple((min(offs), max(offs)) for offs in traits.chip_offsets)
        self._shares = _board_weights(spec, traits)
        self._healthy_echu = _healthy_echu(spec, traits)
        self._level_steps = spec.mode_key == "WORKMODE"  # WORKLEVEL models: the level is the mode
        # Pretend the unit has been up for a while, hashing since boot.
        up = traits.uptime_s
        self.boot_at = now - up
        self.run_start = self.boot_at  # when hashing last (re)started: boot or soft-on
        self.last_t = now
        self.work_s = up
        full = ramp_integral(up)
        self.acc_th_s = [r * full for r in self._board_rates()]

    # -- rates -------------------------------------------------------------------------------

    def _hashing(self) -> bool:
        f = self.faults
        return not f.soft_off and f.overheat != "shutdown"

    def _board_rates(self) -> list[float]:
        """Per-board TH/s at full ramp under the current mode and faults (no noise)."""
        return self._rates()[0]

    def _rates(self) -> tuple[list[float], float]:
        """Per-board TH/s at full ramp, and the share of the mode's dynamic power the unit draws at full
        ramp (before noise and the unit's power bias). A weak board makes less but draws its full share;
        dead chips draw nothing."""
        spec = self.spec
        if not self._hashing():
            return [0.0] * spec.boards, 0.0
        f = self.faults
        mode = spec.modes[self.work_mode]
        per_board = mode.hashrate_ths * self._level_factor() * (1.0 + self.traits.unit_bias)
        per_board /= spec.boards
        cap_hash, cap_power = (1.0, 1.0) if self.power_cap_w is None else self._cap_shares()
        per_board *= cap_hash
        if f.overheat == "throttle" or (f.fan_failing is not None and self._throttled()):
            per_board *= THROTTLE_FACTOR
        dead, weak, n, shares = f.dead_boards, f.weak_board, spec.chips_per_board, self._shares
        if weak is None and not f.chips_dying:  # the common case, kept cheap for 10,000-miner fleets
            rates = [0.0 if b in dead else per_board * shares[b] for b in range(spec.boards)]
            return rates, sum(rates) / mode.hashrate_ths * (cap_power / cap_hash)
        rates = []
        load = 0.0
        for b in range(spec.boards):
            if b in dead:
                rates.append(0.0)
                continue
            r = per_board * shares[b]
            lost = int(self.chips_lost[b])
            if lost:
                r *= (n - min(lost, n)) / n
            load += r
            if weak is not None and weak[0] == b:
                r *= weak[1]
            rates.append(r)
        return rates, load / mode.hashrate_ths * (cap_power / cap_hash)

    def _level_factor(self) -> float:
        """WORKLEVEL n takes 5 % per step off the mode's rate, except where the level is the mode."""
        return 1.0 - 0.05 * self.work_level if self._level_steps else 1.0

    def _cap_shares(self) -> tuple[float, float]:
        """(hashrate share, dynamic power share) the power cap leaves; (1, 1) when it does not bind."""
        cap = self.power_cap_w
        if cap is None:
            return 1.0, 1.0
        spec, tr = self.spec, self.traits
        idle = spec.idle_power_w
        dynamic = (spec.modes[self.work_mode].power_w - idle) * (1.0 + tr.unit_bias) * (1.0 + tr.power_bias)
        share = (cap * CAP_MARGIN - idle) / dynamic if dynamic > 0 else 1.0
        if share >= 1.0:
            return 1.0, 1.0
        share = max(MIN_CAP_SHARE, share)
        return share ** CAP_EXPONENT, share

    def _ambient_base(self) -> float:
        f = self.faults
        return f.ambient_c if f.ambient_c is not None else self.site_ambient_c + self.traits.ambient_offset_c

    def _airflow(self) -> float:
        """Cooling left by the fans, 0-1: the mean fan health squared (air leaks back through a slow fan)."""
        wear = self.fan_wear
        health = 1.0 - sum(wear) / len(wear) if wear else 1.0
        return health * health

    def _throttled(self) -> bool:
        """Overheat throttle: switched on, or the firmware's own protection when worn fans at full speed
        can no longer hold the chips under the protection temperature."""
        f = self.faults
        if f.overheat == "throttle":
            return True
        if f.fan_failing is None or not any(self.fan_wear):
            return False
        spec = self.spec
        cooling = 0.3 + 0.7 * self._airflow()
        load = spec.modes[self.work_mode].power_w / spec.nameplate.power_w
        d_ref = spec.typical_fan_pct / 100.0
        rise = (spec.typical_chip_avg_c - 25.0) * (0.3 + 0.7 * d_ref)
        return self._ambient_base() + load * rise / cooling > spec.overheat_c - 6.0

    # -- changes -------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Integrate hashes (and evolve the faults) from the last change or observation up to `now`."""
        if now <= self.last_t:
            return  # a clock that steps back (tests) freezes the integrals instead of undoing them
        loop = self.faults.reboot_loop
        if loop is not None and self.next_reboot <= now:
            # Only the last forced reboot before `now` matters: each one restarts the integrals.
            at = self.next_reboot + math.floor((now - self.next_reboot) / loop) * loop
            self._integrate(at)
            self.reboot(at)
            self.next_reboot = at + loop
        self._integrate(now)

    def _integrate(self, now: float) -> None:
        if now <= self.last_t:
            return
        f = self.faults
        evolving = bool(f.chips_dying) or f.fan_failing is not None or f.psu_drift != 0.0  # Faults.evolving, inlined
        half_days = (now - self.last_t) * f.days_per_hour / 3600.0 / 2.0 if evolving else 0.0
        if evolving:
            self._evolve(half_days)  # rates at the step's midpoint
        if self._hashing():
            e0 = max(0.0, self.last_t - self.run_start)
            e1 = now - self.run_start
            gained = ramp_integral(e1) - ramp_integral(e0)
            hashed = 0.0
            for b, r in enumerate(self._rates()[0]):
                self.acc_th_s[b] += r * gained
                hashed += r * gained
            tr = self.traits
            if f.pool_rejects is not None:
                self.extra_rej_th_s += hashed * (f.pool_rejects[0] / 100.0 - tr.reject_ratio)
                self.extra_stale_th_s += hashed * (f.pool_rejects[1] / 100.0 - tr.stale_ratio)
            if f.hw_errors is not None:
                self.extra_hw_th_s += hashed * (f.hw_errors - tr.dh_pct) / 100.0
            self.work_s += now - self.last_t
        if evolving:
            self._evolve(half_days)
        self.last_t = now

    def _evolve(self, days: float) -> None:
        """Move the evolving faults on by `days` fault days."""
        f = self.faults
        n = float(self.spec.chips_per_board)
        for b, rate in f.chips_dying:
            self.chips_lost[b] = min(n, self.chips_lost[b] + rate * days)
        if f.fan_failing is not None:
            fan, pct = f.fan_failing
            self.fan_wear[fan] = min(1.0, self.fan_wear[fan] + pct / 100.0 * days)
        if f.psu_drift:
            self.psu_offset = max(-MAX_PSU_OFFSET, min(MAX_PSU_OFFSET, self.psu_offset + f.psu_drift / 100.0 * days))

    def set_faults(self, faults: Faults, now: float) -> None:
        self.advance(now)
        old = self.faults
        was_hashing = self._hashing()
        self.faults = faults
        for b in faults.dead_boards - old.dead_boards:
            if b < self.spec.boards:
                self.acc_th_s[b] = 0.0  # the firmware lost the board: its MGHS reads 0
        if faults.overheat != old.overheat:
            self.overheat_since = now
        if faults.soft_off and not old.soft_off:
            self.soft_off_time = int(now)
        if old.soft_off and not faults.soft_off:
            self.soft_on_time = int(now)
        if self._hashing() and not was_hashing:
            self.run_start = now  # waking up re-inits the chips: live ramps again
        # Clearing an evolving fault is the repair: the chips, the fan, the PSU's calibration come back.
        dying = {b for b, _ in faults.chips_dying}
        for b in range(self.spec.boards):
            if b not in dying:
                self.chips_lost[b] = 0.0
        failing = faults.fan_failing[0] if faults.fan_failing is not None else None
        for i in range(self.spec.fans):
            if i != failing:
                self.fan_wear[i] = 0.0
        if not faults.psu_drift:
            self.psu_offset = 0.0
        if faults.reboot_loop != old.reboot_loop:
            self.next_reboot = now + faults.reboot_loop if faults.reboot_loop is not None else math.inf

    def set_power_cap(self, watts: float | None, now: float) -> None:
        """A power limit the firmware meets by clocking down (None: the mode's own draw)."""
        if watts is not None and not (math.isfinite(watts) and watts > 0):
            raise ValueError(f"power cap must be a positive number of watts, got {watts!r}")
        self.advance(now)
        self.power_cap_w = watts

    def set_work_mode(self, mode: int, now: float) -> None:
        if not 0 <= mode < len(self.spec.modes):
            raise ValueError(f"work mode {mode} out of range 0-{len(self.spec.modes) - 1}")
        self.advance(now)
        self.work_mode = mode
        if not self._level_steps:
            self.work_level = mode

    def set_work_level(self, level: int, now: float) -> None:
        if not self._level_steps:  # Nano 3: WORKLEVEL picks the profile (mode) itself
            if not 0 <= level < len(self.spec.modes):
                raise ValueError(f"work level {level} out of range 0-{len(self.spec.modes) - 1}")
            self.set_work_mode(level, now)
            return
        if not 0 <= level <= 2:
            raise ValueError(f"work level {level} out of range 0-2")
        self.advance(now)
        self.work_level = level

    def reboot(self, now: float) -> None:
        """Power-cycle: Elapsed, averages and shares restart from zero; soft-off is forgotten."""
        self.advance(now)
        self.boot_at = self.run_start = self.last_t = now
        self.work_s = 0.0
        self.acc_th_s = [0.0] * self.spec.boards
        self.extra_rej_th_s = self.extra_stale_th_s = self.extra_hw_th_s = 0.0
        self.led = False
        if self.faults.soft_off:
            self.faults = self.faults.with_changes(soft_off=False)
            self.soft_on_time = int(now)

    # -- observation ----------------------------------------------------------------------------

    def _noise(self, channel: int, t: float, period: float) -> float:
        """`noise(traits.noise_seed, channel, t, period)`, remembering each channel's two current
        knots: polls a few seconds apart mostly fall between the same knots, and hashing the knots
        was a third of a snapshot's cost."""
        x = t / period
        k = math.floor(x)
        cached = self._knots.get(channel)
        if cached is not None and cached[0] == k:
            a, b = cached[1], cached[2]
        else:
            seed = self.traits.noise_seed
            a = cached[2] if cached is not None and cached[0] == k - 1 else _knot(seed, channel, k)
            b = _knot(seed, channel, k + 1)
            self._knots[channel] = (k, a, b)
        f = x - k
        f = f * f * (3.0 - 2.0 * f)
        return a + (b - a) * f

    def dead_chips(self, board: int) -> tuple[int, ...]:
        """Indexes of the chips `chips_dying` has stopped on `board` so far (they die in a fixed order)."""
        lost = min(int(self.chips_lost[board]), self.spec.chips_per_board)
        if not lost:
            return ()
        order = self._death_order.get(board)
        if order is None:
            n = self.spec.chips_per_board
            order = self._death_order[board] = tuple(
                random.Random(f"{self.traits.noise_seed}:chips:{board}").sample(range(n), n))
        return tuple(sorted(order[:lost]))

    def pvt_text(self, board: int, base_c: int, dead_chips: tuple[int, ...] | None = None) -> str:
        """PVT_T list for one board ("t1 t2 ..."), cached: chip offsets never change. Dead chips read 0
        (`dead_chips`: as served in a snapshot's BoardSnapshot; None: as of now)."""
        dead = self.dead_chips(board) if dead_chips is None else dead_chips
        key = (board, base_c, len(dead))  # chips die in a fixed order: the count says which
        text = self._pvt_cache.get(key)
        if text is None:
            offsets = self.traits.chip_offsets[board]
            lo, hi = self._offset_range[board]
            if base_c == 0:
                temps = ["0"] * self.spec.chips_per_board
            elif 0 <= base_c + lo and base_c + hi < len(_INT_TEXT):
                temps = [_INT_TEXT[base_c + o] for o in offsets]  # twice as fast as str()
            else:
                temps = [str(base_c + o) for o in offsets]
            for i in dead:
                temps[i] = "0"
            text = " ".join(temps)
            if len(self._pvt_cache) > 256:
                self._pvt_cache.clear()
            self._pvt_cache[key] = text
        return text

    def snapshot(self, now: float) -> Snapshot:
        self.advance(now)
        spec, tr, f = self.spec, self.traits, self.faults
        mode = spec.modes[self.work_mode]
        hashing = self._hashing()
        throttled = f.overheat == "throttle" or (f.fan_failing is not None and self._throttled())
        rates, power_share = self._rates()
        full = sum(rates)
        e = max(0.0, now - self.run_start)
        elapsed = max(0, int(now - self.boot_at))

        wobble = 1.0 + LIVE_NOISE * self._noise(1, now, 12.0)
        ramped = ramp(e)
        live = full * ramped * wobble
        windows = []
        for ch, w, scale in _WINDOWS:
            avg = full * (ramp_integral(e) - ramp_integral(max(0.0, e - w))) / w
            windows.append(round(avg * (1.0 + scale * self._noise(ch, now, w)), 5))

        ghs_live = round(live * 1000.0, 2)
        work_s = self.work_s
        board_avg_ghs = [round(a / work_s * 1000.0, 2) if work_s > 0 else 0.0 for a in self.acc_th_s]
        ghs_avg = round(sum(board_avg_ghs), 2)  # sum of MGHS equals GHSavg, as on real captures

        # Power follows live hashrate; asleep or tripped the controller still draws a little.
        idle = spec.idle_power_w
        if hashing:
            ratio = power_share * ramped * wobble
            power = idle + (mode.power_w - idle) * ratio * (1.0 + tr.power_bias)
        elif f.overheat == "shutdown":
            power = idle * 1.6  # fans at full
        else:
            power = idle
        power *= 1.0 + 0.003 * self._noise(6, now, 7.0)
        step = spec.power_step_w
        power_w = int(round(power)) if step >= 1 else round(round(power / step) * step, 2)
        power_true_w = power_w
        if self.psu_offset:  # psu_drift: the PSU's own reading walks away from the real draw
            drifted = power * (1.0 + self.psu_offset)
            power_w = int(round(drifted)) if step >= 1 else round(round(drifted / step) * step, 2)

        # Heat: chips sit above ambient by load over cooling; fans push harder with load and heat.
        amb = self._ambient_base() + 0.4 * self._noise(10, now, 120.0)
        d_ref = spec.typical_fan_pct / 100.0
        rise = (spec.typical_chip_avg_c - 25.0) * (0.3 + 0.7 * d_ref)
        airflow = self._airflow() if f.fan_failing is not None else 1.0
        if f.soft_off:
            duty = 0.0
            chip_avg = amb + 3.0
        elif f.overheat == "shutdown":
            duty = 1.0
            cool = math.exp(-max(0.0, now - self.overheat_since) / SHUTDOWN_COOL_S)
            trip_c = max(spec.overheat_c, spec.dangerous_c)  # the protection that stopped it
            chip_avg = amb + (trip_c + 2.0 - amb) * cool
        elif throttled:
            duty = 1.0
            chip_avg = spec.overheat_c - 6.0 + 0.8 * self._noise(11, now, 20.0)
        else:
            load = power / spec.nameplate.power_w  # the true draw (psu_drift moves only the reading), unrounded
            duty = min(1.0, max(0.1, d_ref * load * (1.0 + 0.04 * (amb - 25.0))))
            if airflow < 1.0:  # the firmware spins the good fans up to make up for a slow one
                duty = min(1.0, duty / airflow) if airflow > 0 else 1.0
            cooling = 0.3 + 0.7 * duty * airflow
            chip_avg = amb + load * rise / cooling + 0.6 * self._noise(11, now, 20.0)

        health = [1.0 - w for w in self.fan_wear] if f.fan_failing is not None else None
        fans = tuple(
            int(round((spec.fan_max_rpm * duty * (1.0 + tr.fan_bias[i]) + 20.0 * self._noise(20 + i, now, 9.0))
                      * (health[i] if health else 1.0)))
            if duty > 0 else 0
            for i in range(spec.fans)
        )
        fans_failed = () if not health or duty <= 0 else tuple(
            i for i, h in enumerate(health) if h < FAN_ERROR_SHARE)

        boards: list[BoardSnapshot] = []
        n_alive = 0
        # Intake/outlet board sensors exist on the home units: HBITemp/HBOTemp (Q), OTemp (Nano).
        hbi = hbo = None
        if spec.env_key == "ITemp":
            hbi = int(round(amb + (0.85 * (chip_avg - amb) if not f.soft_off else 8.0)))
            share = 0.93 if spec.layout == "q" else 0.6
            hbo = int(round(amb + (share * (chip_avg - amb) if not f.soft_off else 8.0)))
        n_chips = spec.chips_per_board
        # The `error_code` fault: its code, as given, is what ECHU[b] (or ECMM) shows.
        code_board, code = f.error_code if f.error_code is not None else (CONTROLLER, 0)
        for b in range(spec.boards):
            dead_chips = self.dead_chips(b) if f.chips_dying else ()
            alive = b not in f.dead_boards and (not dead_chips or len(dead_chips) < n_chips)  # all dead: lost
            if alive:
                n_alive += 1
                base = int(round(chip_avg + tr.board_temp_bias[b]))
                boards.append(BoardSnapshot(
                    index=b, alive=True, hashrate_avg_ths=round(board_avg_ghs[b] / 1000.0, 5),
                    hashrate_ths=round(live * (rates[b] / full) if full else 0.0, 5),
                    temp_chip_max_c=base + self._offset_range[b][1], temp_chip_avg_c=base,
                    temp_in_c=hbi if spec.layout == "q" else None, temp_out_c=hbo,
                    chips_ok=n_chips - len(dead_chips), chips_expected=n_chips,
                    error_code=code if b == code_board else self._healthy_echu[b], chip_base_c=base,
                    dead_chips=dead_chips,
                ))
            else:
                boards.append(BoardSnapshot(
                    index=b, alive=False, hashrate_avg_ths=0.0, hashrate_ths=0.0,
                    temp_chip_max_c=None, temp_chip_avg_c=None, temp_in_c=None, temp_out_c=None,
                    chips_ok=0, chips_expected=spec.chips_per_board,
                    error_code=ECHU_BOARD_LOST | code if b == code_board else ECHU_BOARD_LOST, chip_base_c=0,
                ))

        alive_boards = [bd for bd in boards if bd.alive]
        if f.soft_off or not alive_boards:
            tmax = tavg = None  # asleep, the firmware zeroes TMax/TAvg
        else:
            tmax = max(bd.temp_chip_max_c for bd in alive_boards)  # type: ignore[type-var]
            tavg = int(round(sum(bd.chip_base_c for bd in alive_boards) / len(alive_boards)))

        errors: list[str] = []
        for bd in boards:
            if not bd.alive:
                errors.append(f"hash board {bd.index} lost (ECHU {bd.error_code})")
            elif bd.dead_chips:
                errors.append(f"hash board {bd.index}: {len(bd.dead_chips)} of {n_chips} chips dead")
        ecmm = 0
        if f.overheat == "shutdown":
            ecmm = ECMM_OVERHEAT
            errors.append(f"{OVERHEAT_SHUTDOWN} (ECMM {ecmm})")
        elif throttled:
            errors.append("overheat throttle")
        for i in fans_failed:
            errors.append(f"fan {i} failing ({fans[i]} rpm)")
        if code:
            if code_board == CONTROLLER:
                ecmm |= code
                errors.append(f"controller error code {code}")
            else:
                errors.append(f"hash board {code_board} error code {code}")

        if f.soft_off:
            state, status = MinerState.SOFT_OFF, "In Idle"
        elif f.overheat == "shutdown" or n_alive == 0:
            state, status = MinerState.ERROR, "In Fault"
        elif ghs_live <= 0.0:
            state, status = MinerState.IDLE, "In Init"
        else:
            state, status = MinerState.MINING, "In Work"

        total_th_s = sum(self.acc_th_s)
        per_th_s = 1e12 / (spec.pool_diff * 4294967296.0)
        shares = total_th_s * per_th_s
        # pool_rejects / hw_errors add what they changed since switched on (counters never go back).
        rejected = int(shares * tr.reject_ratio + self.extra_rej_th_s * per_th_s)
        stale = int(shares * tr.stale_ratio + self.extra_stale_th_s * per_th_s)
        accepted = int(shares) - rejected - stale
        dh_pct = tr.dh_pct if f.hw_errors is None else f.hw_errors
        dh = round(max(0.0, dh_pct + 0.15 * self._noise(30, now, 60.0)), 3)
        env_raw = int(round(amb)) if spec.ambient_sensor else -273

        # PS[err vin vout amps dc_watts vout2 wall_watts], as the A-series and Q print it.
        if hashing:
            dc = int(power_w * 0.945)
            vout = spec.ps_vout + int(4 * self._noise(40, now, 30.0))
            amps = int(round(dc / (vout / 100.0))) if vout else 0
        else:
            dc, vout, amps = 0, 1, 0
        ps = (0, spec.ps_vin, vout, amps, dc, spec.ps_vout + 1, power_w)

        return Snapshot(
            at=now,
            model=spec.key,
            mac=tr.mac,
            firmware=spec.firmware,
            state=state,
            hashrate_ths=round(ghs_live / 1000.0, 5),
            hashrate_avg_ths=round(ghs_avg / 1000.0, 5),
            hashrate_30s_ths=windows[0],
            hashrate_1m_ths=windows[1],
            hashrate_5m_ths=windows[2],
            hashrate_15m_ths=windows[3],
            expected_hashrate_ths=round(mode.hashrate_ths * self._level_factor()
                                        * (self._cap_shares()[0] if self.power_cap_w is not None else 1.0), 5),
            power_w=power_w,
            power_limit_w=(int(self.power_cap_w) if self.power_cap_w is not None
                           else mode.power_limit_w or int(round(mode.power_w * 1.03 / 10.0) * 10)),
            temp_env_c=env_raw if spec.ambient_sensor else None,
            temp_chip_max_c=tmax,
            temp_chip_avg_c=tavg,
            temp_board_max_c=hbo,
            fans_rpm=fans,
            fan_pct=int(round(duty * 100)),
            boards=tuple(boards),
            uptime_s=elapsed,
            accepted=max(0, accepted),
            rejected=rejected,
            stale=stale,
            hw_errors=int(shares * tr.dh_pct / 100.0 + self.extra_hw_th_s * per_th_s),
            hw_error_pct=dh,
            work_mode=mode.name,
            work_mode_index=self.work_mode,
            work_level=self.work_level,
            soft_off=f.soft_off,
            led=self.led,
            echu=tuple(bd.error_code for bd in boards),
            ecmm=ecmm,
            errors=tuple(errors),
            system_status=status,
            env_raw_c=env_raw,
            ps=ps,
            total_th_s=total_th_s,
            soft_off_time=self.soft_off_time,
            soft_on_time=self.soft_on_time,
            power_true_w=power_true_w,
            fans_failed=fans_failed,
            error_code=code,
            error_board=code_board,
            live_source="GHSspd" if spec.has_ghsspd and (e >= spec.spd_blank_s or not hashing) else "MHS 1m",
            reported_power_w=(power_w if spec.power_reading == "wall"
                              else ps[4] if spec.power_reading == "dc" else None),
        )
