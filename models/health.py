"""Hardware health: the problems a miner shows, what caused each, and what it costs in dollars a day.

The vocabulary of the health stage (collector/stages/health.py) and of everything that shows its
figures (InfluxDB `health` points, MQTT, Home Assistant, `hashfleet health`, the Maintenance
dashboard). Plain frozen dataclasses, not pydantic: the stage makes them for every miner every
cycle, and they are made from values it has already checked. docs/health.md has every signal,
threshold and rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from models.config import Place


class Cause(StrEnum):
    """The root cause a problem is put down to: where a person looks first."""

    NETWORK = "network"  # the miner does not answer
    POOL = "pool"  # shares rejected or stale, no pool alive, idle waiting for work
    THERMAL = "thermal"  # hot chips: the room (ambient) or the miner's own cooling (fans)
    BOARD = "board"  # hash boards and their chips: dead, weak, erring
    POWER = "power"  # the PSU, or a reported draw the meter or the miner's own limits contradict
    FIRMWARE = "firmware"  # the miner's software: reboots, codes, hashing short with no hardware cause
    READING = "reading"  # the miner reports nonsense: the numbers cannot be trusted, nothing else is said


class Severity(StrEnum):
    INFO = "info"  # worth knowing, nothing lost yet (a code with no published meaning, a trend)
    WARNING = "warning"  # look at it: it costs, or will
    CRITICAL = "critical"  # a part has failed or the miner is not mining

    @property
    def level(self) -> int:
        """0 info, 1 warning, 2 critical: for sorting and for an integer field."""
        return _LEVELS[self]


_LEVELS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Signal(StrEnum):
    """What was seen. Each signal has one usual cause (root_cause.py may name another from evidence)."""

    OFFLINE = "offline"  # no answer
    IDLE = "idle"  # answers, does not hash, not put to sleep
    NO_POOL = "no_pool"  # the miner says no pool is alive
    POOL_REJECTS = "pool_rejects"  # rejected + stale shares over the window
    BOARD_DEAD = "board_dead"  # a hash board hashes nothing, every chip silent
    CHIPS_DEAD = "chips_dead"  # chips that do not answer on a board
    BOARD_WEAK = "board_weak"  # a board well below its share of the expected hashrate
    HW_ERRORS = "hw_errors"  # hardware error rate well above the model's peers
    FAN_STOPPED = "fan_stopped"  # a fan at 0 rpm while the others spin
    FAN_SLOW = "fan_slow"  # a fan far below the miner's other fans
    CHIP_HOT = "chip_hot"  # hottest chip above the model's limit
    TEMP_OUTLIER = "temp_outlier"  # far hotter than its peers (same model, same place)
    AMBIENT_HOT = "ambient_hot"  # intake air above what the model is rated for
    HASHRATE_LOW = "hashrate_low"  # short of expected, what no other signal explains
    REBOOTS = "reboots"  # uptime went back to zero, repeatedly
    POWER_OVER_LIMIT = "power_over_limit"  # draws more than its own power limit
    POWER_OUT_OF_RANGE = "power_out_of_range"  # a draw no unit of the model makes while hashing like this
    POWER_MISMATCH = "power_mismatch"  # what it reports is not what the meter reads
    FAULT_CODE = "fault_code"  # an error code the firmware reports
    READING = "reading"  # a value refused or impossible
    CHIPS_LOSING = "chips_losing"  # trend: chips lost per week
    BOARD_DEGRADING = "board_degrading"  # trend: a board's hashrate falling over days
    EFFICIENCY_DRIFT = "efficiency_drift"  # trend: J/TH rising over days


# Where a miner stands (models.config.Place, from collector/layout.py): written as tags (container,
# row, rack) and a field (position: one per miner, too many values for a tag).
NOWHERE = Place()


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one miner (or one of its boards or fans), priced.

    `lost_ths` is the hashrate this problem takes away (its share of the miner's shortfall);
    `usd_lost_day` the revenue that hashrate would earn at the live net hashprice, less the energy the
    miner no longer draws for it (None when there are no cost figures). `value` and `limit` are the
    numbers the evidence quotes (e.g. 0 rpm against the other fans' 4,200)."""

    miner: str
    signal: Signal
    cause: Cause
    severity: Severity
    evidence: str
    value: float | None = None
    limit: float | None = None
    board: int | None = None  # the hash board (or fan, for fan signals) it concerns
    lost_ths: float = 0.0
    usd_lost_day: float | None = None

    @property
    def key(self) -> str:
        """Identifies the problem across cycles: the signal and the part."""
        return self.signal.value if self.board is None else f"{self.signal.value}:{self.board}"


@dataclass(slots=True)  # made for every miner every cycle: a frozen dataclass's __init__ costs twice as much
class MinerHealth:
    """One miner's health this cycle: its problems, its economics, its place. Not changed once made."""

    miner: str
    model: str | None
    place: Place
    problems: tuple[Problem, ...] = ()
    expected_ths: float | None = None  # what it should hash (own figure, else the model's, else learned)
    lost_ths: float = 0.0  # shortfall against expected that the problems explain
    usd_lost_day: float | None = None  # sum over its problems
    profit_usd_day: float | None = None  # CostSample.profit_usd_day (all-in)
    unprofitable: bool = False  # its power costs more than the BTC it mines (cash-negative at the margin)
    chips_dead: int | None = None  # chips expected and not answering, over every board
    chips_lost_week: float | None = None  # trend from the daily history
    temp_chip_max_c: float | None = None
    power_correction: float | None = None  # metered / reported for its model, learned
    report: bool = True  # its `health` point is written this cycle (one with no problem: now and then)
    address: str | None = None  # host:port, where it answers (its id is its MAC when known)

    @property
    def cause(self) -> Cause | None:
        """The root cause of its costliest problem (the most severe when none is priced)."""
        worst = self.worst
        return None if worst is None else worst.cause

    @property
    def worst(self) -> Problem | None:
        if not self.problems:
            return None
        return max(self.problems, key=_rank)

    @property
    def severity(self) -> Severity | None:
        return max((p.severity for p in self.problems), key=lambda s: s.level, default=None)


def _rank(problem: Problem) -> tuple[float, int, float]:
    return (problem.usd_lost_day if problem.usd_lost_day is not None else 0.0, problem.severity.level,
            problem.lost_ths)


def queue_order(problem: Problem) -> tuple[float, int, float, str]:
    """Sort key of the repair queue: dollars lost per day, then severity, then hashrate lost (all
    descending), then the miner id for a stable order."""
    usd, level, ths = _rank(problem)
    return (-usd, -level, -ths, problem.miner)


@dataclass(frozen=True, slots=True)
class SiteHealth:
    """The site's roll-up of one cycle."""

    site: str
    miners: int = 0
    miners_with_problems: int = 0
    problems: int = 0
    critical: int = 0
    usd_lost_day: float | None = 0.0  # None: problems, none of them priced (no economics configured)
    lost_ths: float = 0.0
    unprofitable: int = 0
    chips_dead: int = 0
    by_cause: dict[Cause, int] = field(default_factory=dict)
    usd_by_cause: dict[Cause, float] = field(default_factory=dict)
    measured_pue: float | None = None  # facility meter / miners' draw, when a facility meter reads
    # Per model: metered / reported watts learned so far, the ratios it is the median of, and whether
    # the cost figures use it (collector/stages/power_truth.py).
    power_corrections: dict[str, tuple[float, int, bool]] = field(default_factory=dict)
    queue: tuple[Problem, ...] = ()  # the costliest problems, in repair order (at most QUEUE_SHOWN)
    where: dict[str, tuple[str | None, Place]] = field(default_factory=dict)  # queue's miner -> address, place
