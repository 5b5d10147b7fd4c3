"""Root cause: which of network, pool, thermal, board, power, firmware or reading each finding is put
down to, and the evidence that named it.

Each signal has its usual cause; a few are decided by what else the miner shows in the same cycle:
a hot chip with a failing fan is the fan's (thermal, fan), with hot intake air the room's (thermal,
ambient), a shortfall too but only when its chips may be throttled (`cooling_may_throttle`); a reboot
loop with PSU codes or a draw its limits contradict is power's, with hot chips thermal's, else the
firmware's; a unit stopped in fault (or idle unasked) whose chips read hot since it stopped is heat's
(hot: its own limit where its firmware gave one, else its model's); an error code by
what its published meaning names. docs/health.md ("Root cause") has the table.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.stages.health_signals import MIN_PEERS, Context, Finding
from models import MinerSample, MinerState
from models.health import Cause, Signal

_USUAL: dict[Signal, Cause] = {
    Signal.READING: Cause.READING,
    Signal.OFFLINE: Cause.NETWORK,
    Signal.NO_POOL: Cause.POOL,
    Signal.POOL_REJECTS: Cause.POOL,
    Signal.BOARD_DEAD: Cause.BOARD,
    Signal.CHIPS_DEAD: Cause.BOARD,
    Signal.BOARD_WEAK: Cause.BOARD,
    Signal.HW_ERRORS: Cause.BOARD,
    Signal.FAN_STOPPED: Cause.THERMAL,
    Signal.FAN_SLOW: Cause.THERMAL,
    Signal.CHIP_HOT: Cause.THERMAL,
    Signal.TEMP_OUTLIER: Cause.THERMAL,
    Signal.AMBIENT_HOT: Cause.THERMAL,
    Signal.POWER_OVER_LIMIT: Cause.POWER,
    Signal.POWER_OUT_OF_RANGE: Cause.POWER,
    Signal.POWER_MISMATCH: Cause.POWER,
    Signal.CHIPS_LOSING: Cause.BOARD,
    Signal.BOARD_DEGRADING: Cause.BOARD,
    Signal.EFFICIENCY_DRIFT: Cause.POWER,
    Signal.IDLE: Cause.FIRMWARE,
    Signal.REBOOTS: Cause.FIRMWARE,
    Signal.HASHRATE_LOW: Cause.FIRMWARE,
    Signal.FAULT_CODE: Cause.FIRMWARE,
}

_FANS = frozenset({Signal.FAN_STOPPED, Signal.FAN_SLOW})
_HOT_CHIPS = frozenset({Signal.CHIP_HOT, Signal.TEMP_OUTLIER})
_HEAT = _HOT_CHIPS | {Signal.AMBIENT_HOT}
_POWER = frozenset({Signal.POWER_OVER_LIMIT, Signal.POWER_OUT_OF_RANGE, Signal.POWER_MISMATCH})
_BOARD_PARTS = frozenset({Signal.BOARD_DEAD, Signal.CHIPS_DEAD, Signal.BOARD_WEAK, Signal.CHIPS_LOSING,
                          Signal.BOARD_DEGRADING})
# Words of a code's published meaning (models.FaultCode.meaning) and the cause they name, first match wins.
_MEANING_WORDS: tuple[tuple[tuple[str, ...], Cause], ...] = (
    (("psu", "volt", "power", "pg", "over current", "pmu", "vcore"), Cause.POWER),
    (("fan", "temp", "hot", "ntc"), Cause.THERMAL),
    (("idle", "network", "stratum"), Cause.NETWORK),
    (("chip", "core", "hash", "board", "pll", "loop", "crc", "i2c", "lock"), Cause.BOARD),
)
# A meter reading below this share of the miner's usual draw: the miner has no power, the network is innocent.
NO_POWER_SHARE = 0.05
NEAR_HOT_C = 3.0  # a chip this close under its hot limit runs hot: firmware throttles to hold it there


def classify(findings: Sequence[Finding], sample: MinerSample, ctx: Context) -> list[tuple[Finding, Cause, str]]:
    """Each finding with its cause and the evidence that named it (its own, plus what decided it). A hash
    board's code on a board another finding names (dead, weak, losing chips) is that finding's evidence, not
    a row of its own: one bad part, one row (trial ZC: every dead Avalon board came with a $0 `ECHU 4` row)."""
    signals = {f.signal for f in findings}
    boards = {f.part: f for f in findings if f.signal in _BOARD_PARTS and f.part is not None}
    codes: dict[int, list[str]] = {}
    out = []
    for f in findings:
        if f.signal is Signal.FAULT_CODE and f.part in boards and _code_cause(f)[0] is Cause.BOARD:
            codes.setdefault(f.part, []).append(f.evidence.removeprefix(f"board {f.part}: "))  # type: ignore[arg-type]
            continue
        out.append(f)
    classified = []
    for f in out:
        cause, evidence = _cause(f, findings, signals, sample, ctx)
        if f.signal in _BOARD_PARTS and f.part in codes:
            evidence = f"{evidence}; its firmware says {', '.join(codes[f.part])}"
        classified.append((f, cause, evidence))
    return classified


def _cause(finding: Finding, findings: Sequence[Finding], signals: set[Signal], sample: MinerSample,
           ctx: Context) -> tuple[Cause, str]:
    signal, evidence = finding.signal, finding.evidence
    if finding.cause is not None:
        return finding.cause, evidence
    if signal is Signal.OFFLINE:
        baseline = ctx.memory.kept.baseline_w
        metered = ctx.metered_w
        if metered is not None and baseline and metered < NO_POWER_SHARE * baseline:
            return Cause.POWER, f"{evidence}; its meter reads {metered:.0f} W (usually {baseline:.0f} W): no power"
        return Cause.NETWORK, evidence
    if signal is Signal.IDLE:
        pool = sample.pool
        if Signal.NO_POOL in signals or (pool is not None and pool.active is False):
            return Cause.POOL, f"{evidence}; no pool alive"
        stopped_hot = _stopped_hot(sample, ctx)
        if stopped_hot is not None:  # Braiins OS+ stopped past its dangerous temperature
            return Cause.THERMAL, f"{evidence}; {stopped_hot}"
        return Cause.FIRMWARE, f"{evidence}; its pool is not said to be down"
    if signals & _FANS and (signal in (Signal.CHIP_HOT, Signal.TEMP_OUTLIER)
                            or (signal is Signal.HASHRATE_LOW and cooling_may_throttle(sample, ctx))):
        fan = next(f for f in findings if f.signal in _FANS)
        return Cause.THERMAL, f"{evidence}; fan: {fan.evidence}"
    if signal in (Signal.CHIP_HOT, Signal.TEMP_OUTLIER) and Signal.AMBIENT_HOT in signals:
        air = next(f for f in findings if f.signal is Signal.AMBIENT_HOT)
        return Cause.THERMAL, f"{evidence}; ambient: {air.evidence}"
    if signal is Signal.HASHRATE_LOW:
        stopped_hot = _stopped_hot(sample, ctx)
        if stopped_hot is not None:
            return Cause.THERMAL, f"{evidence}; {stopped_hot}"
        if (signals & _HOT_CHIPS or _near_hot(sample, ctx)
                or (Signal.AMBIENT_HOT in signals and cooling_may_throttle(sample, ctx))):
            return Cause.THERMAL, f"{evidence}; its chips run hot (throttling)"
        if signals & _POWER:
            return Cause.POWER, f"{evidence}; its power readings are off"
        code = _worst_code(findings)
        if code is not None:
            cause, _ = _code_cause(code)
            return cause, f"{evidence}; it reports {code.evidence}"
        if _temperatures_judged(sample, ctx):
            if signals & (_FANS | _HEAT):  # a fan or the room, but chips not hot: nothing throttled
                return Cause.FIRMWARE, f"{evidence}; chips and boards look normal, its chips are not hot: not throttled"
            return Cause.FIRMWARE, f"{evidence}; chips, boards, fans and temperatures look normal"
        return Cause.FIRMWARE, (f"{evidence}; chips, boards and fans look normal; temperatures not judged (no hot "
                                f"limit for its model, fewer than {MIN_PEERS} peers)")
    if signal is Signal.REBOOTS:
        codes = [f for f in findings if f.signal is Signal.FAULT_CODE and _code_cause(f)[0] is Cause.POWER]
        if signals & _POWER or codes:
            why = (codes[0] if codes else next(f for f in findings if f.signal in _POWER)).evidence
            return Cause.POWER, f"{evidence}; power: {why}"
        if signals & _HOT_CHIPS or _near_hot(sample, ctx):
            return Cause.THERMAL, f"{evidence}; its chips run hot"
        # (a firmware may restart on a fan fault or hot air before its chips read hot: heat's, named as it is)
        cooling = next((f for f in findings if f.signal in _FANS or f.signal is Signal.AMBIENT_HOT), None)
        if cooling is not None:
            return Cause.THERMAL, f"{evidence}; {'fan' if cooling.signal in _FANS else 'ambient'}: {cooling.evidence}"
        return Cause.FIRMWARE, f"{evidence}; no power or heat problem seen"
    if signal is Signal.FAULT_CODE:
        cause, why = _code_cause(finding)
        return cause, f"{evidence} ({why})"
    return _USUAL[signal], evidence


def _code_cause(finding: Finding) -> tuple[Cause, str]:
    code = finding.code
    if code is None:
        return Cause.FIRMWARE, "a firmware code"
    if code.key.upper().startswith("PS"):
        return Cause.POWER, "the PSU's code"
    # "Control board ..." (Whatsminer's 7xx codes, an Antminer's controller) names the controller, not a hash board.
    meaning = (code.meaning or "").lower().replace("control board", "controller")
    for words, cause in _MEANING_WORDS:
        if any(word in meaning for word in words):
            return cause, "by its published meaning"
    if code.board is not None or code.key.upper() == "ECHU":
        return Cause.BOARD, "a hash board's code"
    return Cause.FIRMWARE, "the controller's code"


def _worst_code(findings: Sequence[Finding]) -> Finding | None:
    """The most severe code it reports, one of unknown severity (its text the meaning) included: the
    miner's own words are better evidence of a shortfall's cause than none."""
    codes = [f for f in findings if f.signal is Signal.FAULT_CODE]
    return max(codes, key=lambda f: f.severity.level) if codes else None


def _temperatures_judged(sample: MinerSample, ctx: Context) -> bool:
    """Its hottest chip was held against a hot limit or enough peers (else "normal" would be a guess)."""
    if sample.temp_chip_max_c is None:
        return False
    if ctx.limits is not None and ctx.limits.chip_hot_c is not None:
        return True
    peers = ctx.peers
    return peers is not None and peers.count >= MIN_PEERS and peers.temp_median is not None


def cooling_may_throttle(sample: MinerSample, ctx: Context) -> bool:
    """Whether a failing fan or hot intake air can be what holds its hashrate back: its hottest chip near
    its hot limit (a throttling firmware holds it just under), or its temperatures not judged
    (then it may be). Chips judged and not hot are not throttled: the other fans make up for a slow one."""
    return _near_hot(sample, ctx) or not _temperatures_judged(sample, ctx)


def _near_hot(sample: MinerSample, ctx: Context) -> bool:
    """The hottest chip within NEAR_HOT_C of its hot limit: a throttling firmware holds it just under."""
    limits, chip = ctx.limits, sample.temp_chip_max_c
    return (chip is not None and limits is not None and limits.chip_hot_c is not None
            and chip >= limits.chip_hot_c - NEAR_HOT_C)


def _stopped_hot(sample: MinerSample, ctx: Context) -> str | None:
    """Why a unit in fault (or idle unasked: Braiins OS+ past its dangerous temperature) that hashes nothing
    stopped, when its chips say heat: the hottest chip read since it stopped (remembered: they cool within
    minutes of the stop) near or over its hot limit (the unit's own, else the model's). The
    codes of most firmware have no published meaning (docs/avalon.md s5): the chips are the evidence."""
    hottest, limits = ctx.memory.stopped_chip_c, ctx.limits
    if (hottest is None or sample.state not in (MinerState.ERROR, MinerState.IDLE) or limits is None
            or limits.chip_hot_c is None or hottest < limits.chip_hot_c - NEAR_HOT_C):
        return None
    since = "in fault" if sample.state is MinerState.ERROR else "stopped"
    whose = "its own" if limits.own else "the model's"
    return (f"{since} since its chips read {hottest:g} C ({whose} hot limit {limits.chip_hot_c:g} C): stopped "
            "by heat, look at its cooling")
