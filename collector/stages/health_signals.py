"""Per-miner health checks: one plain function per kind of signal, each reading one sample (and what
the stage remembers of the miner and of its peers) and returning what it found.

Nothing here prices or classifies: a `Finding` is what was seen, with its numbers and the hashrate it
takes away where that follows from the reading itself (a dead board, dead chips, a weak board, shares
the pool refuses). root_cause.py names the cause, health.py shares out the rest of the shortfall and
prices it. Every threshold is a named constant with its reason; docs/health.md lists them.

A value the source refused (`MinerSample.unusable`) or that no miner can report (more chips answering
than the board has, a chip at 400 C) is a reading problem and nothing else: no check reads it, so a
nonsense reading is never a dead board or a hot chip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from statistics import median

from collector.stages.health_history import MinerHistory
from models import FaultCode, FaultSeverity, MinerSample, MinerState, SampleSource
from models.sample import MAX_CHIPS_PER_BOARD, MAX_TEXT_CHARS, SENSOR_MAX_C, SENSOR_MIN_C
from models.hardware import Nameplate, ThermalLimits
from models.health import Cause, Severity, Signal

# --- thresholds (docs/health.md "Thresholds" gives the reasons at more length) --------------------

# Hashing this far below expected is a shortfall worth naming; a healthy unit's unit-to-unit spread is
# a few per cent (Canaan and Bitmain rate hashrate +-3 to 5 %) and live readings wobble.
SHORTFALL_SHARE = 0.10
# A board below this share of what its chips should make (relative to expected and to its sibling
# boards) is weak: boards of one unit differ by a few per cent.
WEAK_BOARD_SHARE = 0.85
# Live hashrate ramps for minutes after a start (docs/avalon.md s6: 60-160 s below GHSmm is normal).
RAMP_S = 600
# Since-boot board averages carry the ramp too: no weak-board verdict before this uptime (the ramp is
# then at most a few per cent of the average, and alike on every board: siblings are compared too).
BOARD_AVERAGE_SETTLE_S = RAMP_S
# Pool: rejected + stale above this share of the window's shares. Pools pay nothing for them; a healthy
# miner on a good connection loses well under 1 %.
REJECT_PCT = 2.0
MIN_WINDOW_SHARES = 100  # the share of a smaller window is noise
# Hardware errors: several times the model's peers, and above this absolute floor (a healthy unit of
# some models reports double-digit DH: docs/avalon.md, Nano 3 ~15 %).
HW_ERROR_PEER_FACTOR = 3.0
HW_ERROR_FLOOR_PCT = 5.0
HW_ERROR_ALONE_PCT = 25.0  # no peers to compare with: only this is clearly wrong
# Fans: a fan below this share of the miner's other fans is failing (firmware drives them alike).
FAN_SLOW_SHARE = 0.5
FAN_SPINNING_RPM = 500  # the others spin: a 0 there is a stopped fan, not a unit at rest
# Temperature against peers (same model, same container): hotter than the median by more than
# OUTLIER_MADS scaled MADs and by at least OUTLIER_MIN_C, with at least MIN_PEERS peers.
OUTLIER_MADS = 5.0
OUTLIER_MIN_C = 8.0
MIN_PEERS = 5
MAD_TO_SIGMA = 1.4826
CRITICAL_OVER_C = 5.0  # a chip this far over its hot limit is critical (or at the unit's own stop figure)
# Power: more than this over its own power limit; a J/TH outside this factor of the nameplate's.
OVER_LIMIT_SHARE = 1.10
EFFICIENCY_FACTOR = 2.0
# Meter against report: beyond this share of the expected ratio (the model's learned correction).
METER_MISMATCH_SHARE = 0.10
# Reboots: this many uptime resets within the window make a loop.
REBOOTS_IN_WINDOW = 2
REBOOTS_KEPT = 64  # the starts remembered: a loop of one a minute is still counted over the whole window
REBOOTS_CRITICAL = 4
REBOOT_WINDOW_S = 3600
# What a start costs is measured once per boot, at the first reading this far into it: the ramp is over
# by then (docs/avalon.md s6: 60-160 s below GHSmm; the 2024 A-series shows GHSspd[0.00] for 120 s), and
# the unit's own spread around its usual rate (a per cent or two, times the uptime) is still a few seconds.
BOOT_SETTLE_S = 180
BOOT_MEASURE_MAX_S = RAMP_S  # a boot first read later than this is not measured (that spread would dominate)
BOOTS_MEASURED = 4  # the boots whose time lost is averaged
# Readings no working miner reports (the sources refuse them already: models/sample.py SENSOR_MIN_C..SENSOR_MAX_C).
PLAUSIBLE_TEMP_C = (SENSOR_MIN_C, SENSOR_MAX_C)
PLAUSIBLE_FAN_RPM = 25_000
# Codes healthy units show (docs/avalon.md s5: ECHU 512 "normal" on A10-A12; 16, 512, 528 on hashing 741
# boards): not a finding when only the driver's raw text names them (the decoded ones say INFO).
HEALTHY_RAW_CODES = frozenset({512, 16, 528})
_TEMPERATURES = ("temp_chip_max_c", "temp_board_max_c", "temp_env_c")
_NON_NEGATIVE = ("hashrate_ths", "hashrate_avg_ths", "expected_hashrate_ths", "power_w", "power_limit_w",
                 "hw_error_pct", "uptime_s")
_INF = float("inf")


@dataclass(slots=True)
class Finding:
    """What a check saw. `lost_ths` is set where the reading itself says how much hashrate is lost."""

    signal: Signal
    severity: Severity
    evidence: str
    value: float | None = None
    limit: float | None = None
    part: int | None = None  # board index (fan index for fan signals)
    lost_ths: float = 0.0
    extra_loss: bool = False  # a loss on top of the reported hashrate (refused shares), not in the shortfall
    code: FaultCode | None = None
    cause: Cause | None = None  # decided by the check itself (trends), else by root_cause.py


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A peer group's typical values last cycle (same model, same container): median and scaled MAD."""

    count: int
    temp_median: float | None = None
    temp_spread: float | None = None  # MAD x 1.4826, a robust standard deviation
    hw_median: float | None = None


@dataclass(slots=True)
class MinerMemory:
    """What the stage remembers of one miner between cycles (O(1) per miner: no history scans); `kept`
    is the part saved across restarts (daily sums, usual draw and hashrate)."""

    kept: MinerHistory = field(default_factory=MinerHistory)
    uptime_s: int | None = None
    reboots: list[float] | None = None  # when it started again, the last REBOOTS_KEPT (None: never seen)
    boot_lost_s: list[float] | None = None  # the last BOOTS_MEASURED boots' time not hashing (s at the usual rate)
    boot_deficit_s: float | None = None  # this boot's so far (None: not measurable, or already taken)
    boot_live_ths: float = 0.0  # the live rate at the last reading of this boot
    boot_seen_s: float = 0.0  # when this boot was last read
    pool_base: tuple[int, int, int] | None = None  # accepted, rejected, stale at the window's start
    reject_pct: float | None = None  # of the last full window
    streaks: dict[str, int] = field(default_factory=dict)  # problem key -> consecutive cycles seen
    # The hottest chip read since it stopped hashing (in fault, or idle unasked: a Braiins OS+ unit past its
    # dangerous temperature), until it hashes again: once the unit stops,
    # its chips cool within minutes, and this is what still says the stop was heat's (root_cause).
    stopped_chip_c: float | None = None
    slot: int = 0  # a stable number of its id: which cycle in a few is its turn (health.HEALTHY_POINT_EVERY)


@dataclass(slots=True)  # made for every miner every cycle: not frozen, which costs twice as much to make
class Context:
    """What the checks know of one miner this cycle besides its sample. Not changed once made."""

    now_s: float
    expected_ths: float | None
    plate: Nameplate | None
    limits: ThermalLimits | None
    peers: PeerStats | None
    memory: MinerMemory
    metered_w: float | None = None
    power_ratio: float | None = None  # the model's learned metered / reported


_NOTHING: frozenset = frozenset()


def doubtful_fields(sample: MinerSample) -> tuple[set[str] | frozenset, set[int] | frozenset, list[Finding]]:
    """Fields (and boards) whose readings no check may use, and the reading findings naming them."""
    if _all_plausible(sample):  # the common case, in plain comparisons
        return _NOTHING, _NOTHING, []
    fields = set(sample.unusable)
    boards: set[int] = set()
    findings: list[Finding] = []
    if sample.unusable:
        refused = ", ".join(sample.unusable[:6])
        why = "; ".join(e for e in sample.errors if any(name in e for name in sample.unusable))[:300]
        findings.append(Finding(Signal.READING, Severity.WARNING,
                                f"the miner reported values no unit can ({refused}): refused"
                                + (f" - {why}" if why else "")))
    # Sources refuse these (models/sample.py), but a stage takes nothing for granted.
    for name in _NON_NEGATIVE:
        value = getattr(sample, name)
        if value is not None and not 0 <= value < _INF:
            fields.add(name)
            findings.append(Finding(Signal.READING, Severity.WARNING, f"{name} {value!r} is not a reading"))
    if sample.state is MinerState.OFFLINE:
        return fields, boards, findings
    low, high = PLAUSIBLE_TEMP_C
    for name in _TEMPERATURES:
        value = getattr(sample, name)
        if value is not None and not low <= value <= high:
            fields.add(name)
            findings.append(Finding(Signal.READING, Severity.WARNING,
                                    f"{name} {value:g} C is no temperature a working miner reports",
                                    value=value, limit=high))
    for board in sample.boards:
        ok, expected, live, average = board.chips_ok, board.chips_expected, board.hashrate_ths, board.hashrate_avg_ths
        if ((ok is not None and not 0 <= ok <= MAX_CHIPS_PER_BOARD)
                or (expected is not None and not 0 <= expected <= MAX_CHIPS_PER_BOARD)
                or (live is not None and not 0 <= live < _INF) or (average is not None and not 0 <= average < _INF)):
            boards.add(board.index)
            findings.append(Finding(Signal.READING, Severity.WARNING,
                                    f"board {board.index} reports {ok!r} of {expected!r} chips answering, "
                                    f"{live!r} TH/s: not a reading", part=board.index))
        elif ok is not None and expected is not None and ok > expected:
            boards.add(board.index)
            findings.append(Finding(Signal.READING, Severity.WARNING,
                                    f"board {board.index} reports {ok} chips answering of {expected}",
                                    value=ok, limit=expected, part=board.index))
        else:
            chip, out = board.temp_chip_max_c, board.temp_out_c
            if (chip is not None and not low <= chip <= high) or (out is not None and not low <= out <= high):
                boards.add(board.index)
                findings.append(Finding(Signal.READING, Severity.WARNING,
                                        f"board {board.index} reports a temperature no chip reaches",
                                        part=board.index))
    fans = sample.fans_rpm
    if fans and not 0 <= min(fans) <= max(fans) <= PLAUSIBLE_FAN_RPM:
        fields.add("fans_rpm")
        findings.append(Finding(Signal.READING, Severity.WARNING,
                                f"a fan at {max(fans)} rpm: no miner fan turns that fast",
                                value=max(fans), limit=PLAUSIBLE_FAN_RPM))
    hw = sample.hw_error_pct
    if hw is not None and "hw_error_pct" not in fields and hw > 100:
        fields.add("hw_error_pct")
        findings.append(Finding(Signal.READING, Severity.WARNING, f"hardware errors {hw:g} % (over 100 %)",
                                value=hw, limit=100))
    if "boards" in fields:
        boards.update(b.index for b in sample.boards)
    return fields, boards, findings


def _all_plausible(s: MinerSample) -> bool:
    """Nothing refused, and every number `doubtful_fields` checks within its range (a working miner's)."""
    if s.unusable:
        return False
    h, a, e, p, lim, hw, up = (s.hashrate_ths, s.hashrate_avg_ths, s.expected_hashrate_ths, s.power_w, s.power_limit_w,
                               s.hw_error_pct, s.uptime_s)
    if not ((h is None or 0 <= h < _INF) and (a is None or 0 <= a < _INF) and (e is None or 0 <= e < _INF)
            and (p is None or 0 <= p < _INF) and (lim is None or 0 <= lim < _INF) and (up is None or 0 <= up)
            and (hw is None or 0 <= hw <= 100)):
        return False
    if s.state is MinerState.OFFLINE:
        return True
    low, high = PLAUSIBLE_TEMP_C
    c, b, env = s.temp_chip_max_c, s.temp_board_max_c, s.temp_env_c
    if not ((c is None or low <= c <= high) and (b is None or low <= b <= high) and (env is None or low <= env <= high)):
        return False
    for board in s.boards:
        ok, chips, live, avg, chip, out = (board.chips_ok, board.chips_expected, board.hashrate_ths,
                                           board.hashrate_avg_ths, board.temp_chip_max_c, board.temp_out_c)
        if not ((ok is None or 0 <= ok) and (chips is None or 0 <= chips <= MAX_CHIPS_PER_BOARD)
                and (ok is None or chips is None or ok <= chips) and (live is None or 0 <= live < _INF)
                and (avg is None or 0 <= avg < _INF) and (chip is None or low <= chip <= high)
                and (out is None or low <= out <= high)):
            return False
    fans = s.fans_rpm
    return not fans or 0 <= min(fans) <= max(fans) <= PLAUSIBLE_FAN_RPM


def not_mining(sample: MinerSample, ctx: Context) -> list[Finding]:
    """Offline, an unusable answer, or idle when nobody put it to sleep."""
    state = sample.state
    if state is MinerState.OFFLINE or (state is MinerState.ERROR and sample.hashrate_ths is None
                                       and not sample.boards and not sample.unusable):
        reason = sample.errors[0][:200] if sample.errors else "no answer"
        return [Finding(Signal.OFFLINE, Severity.CRITICAL, f"not answering: {reason}",
                        lost_ths=ctx.expected_ths or 0.0)]
    if state is MinerState.IDLE and (sample.uptime_s is None or sample.uptime_s >= RAMP_S):
        return [Finding(Signal.IDLE, Severity.CRITICAL, "answers but does not hash (idle, not put to sleep)",
                        value=sample.hashrate_ths, lost_ths=ctx.expected_ths or 0.0)]
    return []


def pool(sample: MinerSample, ctx: Context) -> list[Finding]:
    """No alive pool; rejected and stale shares over a window of at least MIN_WINDOW_SHARES."""
    info = sample.pool
    if info is None:
        return []
    out = []
    if info.active is False and sample.state is not MinerState.MINING:
        out.append(Finding(Signal.NO_POOL, Severity.CRITICAL,
                           f"no pool alive ({info.url or 'no URL'}): the miner has no work"))
    mem = ctx.memory
    counts = (info.accepted, info.rejected, info.stale or 0)
    if info.accepted is None or info.rejected is None:
        return out
    base = mem.pool_base
    if base is None or counts[0] < base[0] or counts[1] < base[1] or counts[2] < base[2]:  # type: ignore[operator]
        mem.pool_base = counts  # type: ignore[assignment]  # the first window, or counters that went back
    else:
        accepted, rejected, stale = counts[0] - base[0], counts[1] - base[1], counts[2] - base[2]  # type: ignore[operator]
        total = accepted + rejected + stale
        if total >= MIN_WINDOW_SHARES:
            mem.reject_pct = 100.0 * (rejected + stale) / total
            mem.pool_base = counts  # type: ignore[assignment]
    pct = mem.reject_pct
    if pct is not None and pct > REJECT_PCT and sample.state is MinerState.MINING:
        out.append(Finding(Signal.POOL_REJECTS, Severity.WARNING,
                           f"{pct:.1f} % of shares rejected or stale (over {REJECT_PCT:g} %)", value=pct,
                           limit=REJECT_PCT, lost_ths=(sample.hashrate_ths or 0.0) * pct / 100, extra_loss=True))
    return out


def boards(sample: MinerSample, ctx: Context, doubtful: set[int]) -> list[Finding]:
    """Dead boards, dead chips, and boards well below their share of the expected hashrate."""
    if not sample.boards or sample.state not in (MinerState.MINING, MinerState.ERROR):
        return []
    out = []
    count = len(sample.boards)
    expected = ctx.expected_ths
    chips_total = 0
    for board in sample.boards:
        chips_total += board.chips_expected or 0
    rates: list[tuple[int, float, float]] = []  # (index, rate, what its live chips should make)
    weakest = 1.0  # the lowest rate / should of any board
    for board in sample.boards:
        index = board.index
        if index in doubtful:
            continue
        ok, chips = board.chips_ok, board.chips_expected
        share = None
        if expected:
            share = expected * chips / chips_total if chips_total and chips else expected / count
        rate = board.hashrate_ths if board.hashrate_ths is not None else board.hashrate_avg_ths
        if ok is not None and chips:
            if ok == 0:
                out.append(Finding(Signal.BOARD_DEAD, Severity.CRITICAL, f"board {index}: none of its {chips} chips "
                                   "answer", value=0, limit=chips, part=index, lost_ths=share or 0.0))
                continue
            if ok < chips:
                dead = chips - ok
                out.append(Finding(Signal.CHIPS_DEAD, Severity.WARNING,
                                   f"board {index}: {dead} of {chips} chips do not answer", value=dead,
                                   limit=chips, part=index, lost_ths=(share or 0.0) * dead / chips))
                if share is not None:
                    share = share * ok / chips
        if share is not None and rate is not None and share > 0:
            rates.append((index, rate, share))
            if rate < weakest * share:
                weakest = rate / share
    settled = sample.uptime_s is None or sample.uptime_s >= BOARD_AVERAGE_SETTLE_S
    if settled and weakest < WEAK_BOARD_SHARE:
        # A weak board is weak against its siblings too: a unit throttled as a whole is not a board fault.
        typical = median([rate / should for _, rate, should in rates]) if len(rates) > 2 else 1.0
        for index, rate, should in rates:
            if rate < WEAK_BOARD_SHARE * should and (len(rates) < 3 or rate < WEAK_BOARD_SHARE * typical * should):
                out.append(Finding(Signal.BOARD_WEAK, Severity.WARNING,
                                   f"board {index} makes {rate:.2f} TH/s of the {should:.2f} its chips should "
                                   f"({rate / should:.0%})", value=rate, limit=should, part=index,
                                   lost_ths=should - rate))
    return out


def hardware_errors(sample: MinerSample, ctx: Context) -> list[Finding]:
    pct = sample.hw_error_pct
    if pct is None or sample.state is not MinerState.MINING:
        return []
    peers = ctx.peers
    if peers is not None and peers.count >= MIN_PEERS and peers.hw_median is not None:
        limit = max(HW_ERROR_FLOOR_PCT, HW_ERROR_PEER_FACTOR * peers.hw_median)
        typical = peers.hw_median
        basis = f"{HW_ERROR_PEER_FACTOR:g}x its {peers.count} peers' median {typical:.2f} %"
    else:
        limit, typical, basis = HW_ERROR_ALONE_PCT, 0.0, "no peers to compare with"
    if pct <= limit:
        return []
    return [Finding(Signal.HW_ERRORS, Severity.WARNING, f"hardware errors {pct:.2f} % (limit {limit:.2f} %: {basis})",
                    value=pct, limit=limit, lost_ths=(sample.hashrate_ths or 0.0) * (pct - typical) / 100,
                    extra_loss=True)]


def fans(sample: MinerSample, ctx: Context) -> list[Finding]:
    """A stopped fan or one far below the others, while the miner hashes (asleep, fans may stop)."""
    rpms = sample.fans_rpm
    if not rpms or sample.state is not MinerState.MINING:
        return []
    if len(rpms) == 1:
        if rpms[0] == 0:
            return [Finding(Signal.FAN_STOPPED, Severity.CRITICAL, "its only fan is at 0 rpm while hashing",
                            value=0, part=0)]
        return []
    lowest, highest = min(rpms), max(rpms)
    if highest < FAN_SPINNING_RPM or (lowest > 0 and lowest >= FAN_SLOW_SHARE * highest):
        return []  # each fan then turns at least half as fast as the median of the others
    out = []
    for i, rpm in enumerate(rpms):
        others = median(rpms[:i] + rpms[i + 1:])
        if others < FAN_SPINNING_RPM:
            continue
        if rpm == 0:
            out.append(Finding(Signal.FAN_STOPPED, Severity.CRITICAL,
                               f"fan {i} at 0 rpm, the others at {others:.0f}", value=0, limit=others, part=i))
        elif rpm < FAN_SLOW_SHARE * others:
            out.append(Finding(Signal.FAN_SLOW, Severity.WARNING,
                               f"fan {i} at {rpm} rpm, {rpm / others:.0%} of the others' {others:.0f}",
                               value=rpm, limit=FAN_SLOW_SHARE * others, part=i))
    return out


def temperatures(sample: MinerSample, ctx: Context, doubtful: set[str]) -> list[Finding]:
    """Hottest chip against its hot limit (the unit's own, else its model's) and against its peers; intake
    air against the rating."""
    if sample.state is not MinerState.MINING:
        return []
    out = []
    chip = sample.temp_chip_max_c if "temp_chip_max_c" not in doubtful else None
    limits, peers = ctx.limits, ctx.peers
    if chip is not None and limits is not None and limits.chip_hot_c is not None and chip > limits.chip_hot_c:
        critical = limits.chip_hot_c + CRITICAL_OVER_C
        if limits.chip_stop_c is not None:  # the firmware stops there: critical by then at the latest
            critical = min(critical, limits.chip_stop_c)
        severity = Severity.CRITICAL if chip >= critical else Severity.WARNING
        out.append(Finding(Signal.CHIP_HOT, severity, f"hottest chip {chip:g} C, over {limits.hot_text}"
                           + (f" (it stops at {limits.chip_stop_c:g} C)" if limits.chip_stop_c is not None else ""),
                           value=chip, limit=limits.chip_hot_c))
    elif (chip is not None and peers is not None and peers.count >= MIN_PEERS and peers.temp_median is not None
          and peers.temp_spread is not None):
        limit = peers.temp_median + max(OUTLIER_MADS * peers.temp_spread, OUTLIER_MIN_C)
        if chip > limit:
            out.append(Finding(Signal.TEMP_OUTLIER, Severity.WARNING,
                               f"hottest chip {chip:g} C; its {peers.count} peers' median {peers.temp_median:g} C "
                               f"(limit {limit:.1f} C)", value=chip, limit=limit))
    ambient = sample.temp_env_c if "temp_env_c" not in doubtful else None
    if ambient is not None and limits is not None and limits.ambient_max_c is not None and ambient > limits.ambient_max_c:
        out.append(Finding(Signal.AMBIENT_HOT, Severity.WARNING,
                           f"intake air {ambient:g} C, over the {limits.ambient_max_c:g} C the model is rated for",
                           value=ambient, limit=limits.ambient_max_c))
    return out


def reboots(sample: MinerSample, ctx: Context) -> list[Finding]:
    """Uptime that went back: a reboot, at now - uptime. Repeated within the window: a loop, priced by
    what it costs on average whatever the phase of the loop now:

        lost_ths = usual x (time not hashing per start) / (time between starts)

    The time not hashing per start is measured on each boot from the firmware's since-boot average
    (`_measure_boot`) and averaged over the last BOOTS_MEASURED boots; the time between starts is the
    median interval between the starts in the window, or the current uptime when that is longer (a loop
    slowing or over). The shortfall the live hashrate shows while a start ramps is this same loss seen at
    one instant: health_dollars.share_shortfall does not count it again."""
    mem, uptime = ctx.memory, sample.uptime_s
    if uptime is None:
        return []
    last = mem.uptime_s
    starts = mem.reboots
    if last is not None and uptime < last:  # counted up since last time, unless it started again
        if starts is None:
            starts = mem.reboots = []
        start = ctx.now_s - uptime
        starts.append(start)
        if len(starts) > REBOOTS_KEPT:
            del starts[0]
        _boot_over(mem, start, ctx.expected_ths)
        mem.boot_deficit_s, mem.boot_live_ths, mem.boot_seen_s, since = 0.0, 0.0, start, 0
    elif last is None:  # first seen: its boot is measured only from its start on
        mem.boot_deficit_s = 0.0 if uptime < BOOT_SETTLE_S else None
        mem.boot_live_ths, mem.boot_seen_s, since = 0.0, ctx.now_s - uptime, 0
    else:
        since = last
    mem.uptime_s = uptime
    _measure_boot(sample, ctx, since)
    if starts is None or len(starts) < REBOOTS_IN_WINDOW:
        return []
    now = ctx.now_s
    recent = [t for t in starts if now - t <= REBOOT_WINDOW_S]
    if len(recent) < REBOOTS_IN_WINDOW:
        return []
    severity = Severity.CRITICAL if len(recent) >= REBOOTS_CRITICAL else Severity.WARNING
    period = max(median([b - a for a, b in zip(recent, recent[1:])]), now - recent[-1], 1.0)
    measured = mem.boot_lost_s
    per_start = sum(measured) / len(measured) if measured else (mem.boot_deficit_s or 0.0)  # none yet: this boot's
    usual = ctx.expected_ths
    lost = usual * min(1.0, per_start / period) if usual else 0.0
    return [Finding(Signal.REBOOTS, severity,
                    f"{len(recent)} reboots in the last hour, one every {_duration(period)} (uptime now {uptime} s); "
                    f"each costs about {per_start:.0f} s of hashing", value=len(recent), limit=REBOOTS_IN_WINDOW,
                    lost_ths=lost, extra_loss=True)]


def _measure_boot(sample: MinerSample, ctx: Context, since: int) -> None:
    """This boot's time not hashing so far, in seconds at the usual rate, taken as the boot's figure at the
    first reading BOOT_SETTLE_S into it (a boot that ends sooner: its last reading's, at the reboot).
    From the firmware's since-boot average (Avalon GHSavg / MHS av: `uptime x (usual - average) / usual`,
    exact whatever the polling; once ramped, a rate clearly short of usual stands for usual); without
    one, from the live readings (the trapezoids between them, from 0 at the start, against usual)."""
    mem, uptime, usual = ctx.memory, sample.uptime_s or 0, ctx.expected_ths
    so_far = mem.boot_deficit_s
    if so_far is None or not usual or uptime <= since:
        return
    if uptime > BOOT_MEASURE_MAX_S:
        mem.boot_deficit_s = None  # first read too late into the boot to tell its start's cost
        return
    live = sample.hashrate_ths if sample.state is MinerState.MINING and sample.hashrate_ths is not None else 0.0
    if not 0 <= live < _INF:
        return
    average = sample.hashrate_avg_ths
    if average is not None and 0 <= average < _INF:
        # Against the usual rate; once the ramp is over, against the rate it makes now when that is clearly
        # short of it: a dead board's share is that problem's, not each start's.
        full = live if uptime >= BOOT_SETTLE_S and live < (1 - SHORTFALL_SHARE) * usual else usual
        so_far = uptime * (full - average) / usual
    else:
        so_far += (uptime - since) * (1.0 - (mem.boot_live_ths + live) / 2 / usual)
    mem.boot_live_ths, mem.boot_seen_s = live, ctx.now_s
    mem.boot_deficit_s = min(float(uptime), max(0.0, so_far))
    if uptime >= BOOT_SETTLE_S:
        _boot_over(mem)


def _boot_over(mem: MinerMemory, next_start: float | None = None, usual: float | None = None) -> None:
    """This boot's time not hashing is known (its ramp is over, or it ended): one of the boots averaged.
    A boot that ended before BOOT_SETTLE_S (`next_start`: when the next one began) also lost the time
    from its last reading to its end at the rate that reading showed (a loop faster than the polls)."""
    if mem.boot_deficit_s is None:
        return
    if next_start is not None and usual and mem.uptime_s is not None:
        tail = min(next_start - mem.boot_seen_s, BOOT_SETTLE_S - mem.uptime_s)
        if tail > 0:
            mem.boot_deficit_s += tail * max(0.0, 1.0 - mem.boot_live_ths / usual)
    kept = mem.boot_lost_s
    if kept is None:
        kept = mem.boot_lost_s = []
    kept.append(mem.boot_deficit_s)
    if len(kept) > BOOTS_MEASURED:
        del kept[0]
    mem.boot_deficit_s = None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def power(sample: MinerSample, ctx: Context, doubtful: set[str]) -> list[Finding]:
    """Draw over its own limit, a J/TH no unit of the model has, a report the meter contradicts."""
    watts = sample.power_w if "power_w" not in doubtful else None
    if watts is None or sample.state is MinerState.OFFLINE:
        return []
    out = []
    limit = sample.power_limit_w
    if limit and sample.state is MinerState.MINING and watts > OVER_LIMIT_SHARE * limit:
        text = f"reports {watts:.0f} W, over its own power limit of {limit:.0f} W"
        if ctx.metered_w is None and ctx.expected_ths and (sample.hashrate_ths or 0.0) >= 0.9 * ctx.expected_ths:
            # Its firmware holds its draw to that limit: hashing as usual, a reading far over it is likelier a
            # reading that drifted than a real overdraw, and no meter says which (trial ZC: a drifting PSU
            # reading read as an overdraw in a one-shot `health`).
            text += "; no meter reads it and it hashes as usual: check its power reading (PSU) before its draw"
        out.append(Finding(Signal.POWER_OVER_LIMIT, Severity.WARNING, text, value=watts, limit=limit))
    plate, hashrate = ctx.plate, sample.hashrate_ths
    nameplate_ths = getattr(plate, "hashrate_ths", None)
    nameplate_w = getattr(plate, "power_w", None)
    if (nameplate_ths and nameplate_w and hashrate and ctx.expected_ths and sample.state is MinerState.MINING
            and hashrate >= 0.5 * ctx.expected_ths and "hashrate_ths" not in doubtful):
        rated = nameplate_w / nameplate_ths
        efficiency = watts / hashrate
        if not rated / EFFICIENCY_FACTOR <= efficiency <= rated * EFFICIENCY_FACTOR:
            out.append(Finding(Signal.POWER_OUT_OF_RANGE, Severity.WARNING,
                               f"{efficiency:.1f} J/TH while hashing {hashrate:.1f} TH/s; the model is rated "
                               f"{rated:.1f} J/TH", value=efficiency, limit=rated))
    metered = ctx.metered_w
    # Not in its first RAMP_S after a start: its draw climbs with its hashrate for a minute or more, and
    # the meter's reading (up to meter_max_age_s old) is of an earlier moment of the climb than its own.
    if metered is not None and metered > 0 and watts > 0 and (sample.uptime_s is None or sample.uptime_s >= RAMP_S):
        # The miner's own reading against what the meter says it should report (the meter's watts over
        # its model's usual metered / reported ratio): the share the evidence quotes is the one judged.
        off = watts * (ctx.power_ratio or 1.0) / metered - 1
        if abs(off) > METER_MISMATCH_SHARE:
            out.append(Finding(Signal.POWER_MISMATCH, Severity.WARNING,
                               _mismatch(watts, metered, off, ctx.power_ratio), value=watts, limit=metered))
            if off > 0 and limit and metered / (ctx.power_ratio or 1.0) <= OVER_LIMIT_SHARE * limit:
                # Over its limit by a reading the meter says is high: the reading is the problem (trial ZC: a
                # drifting PSU reading showed as an overdraw too).
                out = [f for f in out if f.signal is not Signal.POWER_OVER_LIMIT]
    return out


def _mismatch(watts: float, metered: float, off: float, usual_ratio: float | None) -> str:
    """Which reading is off and by how much: the miner's own, `off` (a share) high or low."""
    text = (f"reports {watts:.0f} W, the meter reads {metered:.0f} W: "
            f"its own reading is {abs(off):.0%} {'high' if off > 0 else 'low'}")
    if usual_ratio is not None:
        text += f" (its model's units usually report {1 / usual_ratio:.0%} of what their meters read)"
    return text


_OWN_NOTES = ("reply value out of range",)  # collector/sources/pyasic_makes.py: a value it refused
_NUMBER = re.compile(r"\b(\d{1,9})\b")


def _first_code(text: str) -> int:
    found = _NUMBER.search(text)
    return int(found.group(1)) if found else 0


# "hashboard error code ECHU=0 4096 0" (the driver before it decoded codes into FaultCode)
_RAW_CODES = re.compile(r"(hashboard|controller) error code (ECHU|ECMM)=([0-9 ]+)")


def reported_codes(sample: MinerSample) -> list[FaultCode]:
    """The codes the miner reports: `fault_codes`; else those the Avalon driver only wrote as text (kept
    raw, meaning unknown; the text leaves out zeros, so which board is not known), without the values
    healthy units show; else the error list pyasic read from other makes' firmware (its text is the
    meaning, the severity unknown), but for the collector's own notes on refused values."""
    if sample.fault_codes:
        return list(sample.fault_codes)
    if sample.source is SampleSource.PYASIC:
        return [FaultCode(key="pyasic", code=_first_code(error), meaning=error[:MAX_TEXT_CHARS])
                for error in sample.errors if not error.startswith(_OWN_NOTES) and "pyasic failed" not in error]
    codes = []
    for error in sample.errors:
        found = _RAW_CODES.search(error)
        if found is None:
            continue
        values = [int(v) for v in found.group(3).split()]
        if found.group(2) == "ECMM":
            codes += [FaultCode(key="ECMM", code=v) for v in values if v and v not in HEALTHY_RAW_CODES]
        else:
            codes += [FaultCode(key="ECHU", code=v) for v in values if v and v not in HEALTHY_RAW_CODES]
    return codes


_CODE_SEVERITY = {FaultSeverity.FAULT: Severity.CRITICAL, FaultSeverity.WARNING: Severity.WARNING,
                  FaultSeverity.UNKNOWN: Severity.INFO}


def fault_codes(sample: MinerSample, ctx: Context) -> list[Finding]:
    """Every code but those whose meaning says all is well (INFO)."""
    out = []
    for code in reported_codes(sample):
        severity = _CODE_SEVERITY.get(code.severity)
        if severity is None:
            continue
        where = f"board {code.board}: " if code.board is not None else ""
        meaning = code.meaning or "meaning not published"
        out.append(Finding(Signal.FAULT_CODE, severity, f"{where}{code.key} {code.code}: {meaning}"[:300],
                           value=code.code, part=code.board, code=code))
    return out
