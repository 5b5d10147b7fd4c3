"""`hashfleet health`: the repair queue and the site's health, now or over a period.

Three sources, one report:
- now: one cycle of the pipeline (collector/commands/health.py hands over its figures: `from_cycle`);
- a period, from InfluxDB: InfluxQL aggregates of the `health` points (`from_influx`);
- a period, from the local history (the spool, without InfluxDB): the same aggregates in Python
  (`from_lines`), read once as the lines come, so memory grows with the fleet's problems, not the period.

Over a period each problem (miner, signal, part) is listed once: its latest dollars lost per day, its
mean over the cycles it was priced, the hashrate it took, its last evidence, how many cycles it was
seen, when it was last seen and whether it is still open (seen in the last cycle recorded) or closed
during the period; open problems come first. The site: the mean dollars lost per day over the period
(empty when none of its problems was priced), chips dead at the start and the end (chips lost), the
problems by root cause, and the power corrections learned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from collector.line_protocol import Line
from models import InfluxConfig, schema
from models.health import MinerHealth, Severity, SiteHealth, queue_order

MAX_TEXT = 300


@dataclass
class ProblemSeen:
    miner: str
    signal: str
    cause: str
    part: str | None = None
    severity: str | None = None
    evidence: str | None = None
    usd_lost_day: float | None = None  # the latest
    usd_lost_day_mean: float | None = None  # over the cycles it was priced
    lost_ths: float | None = None
    cycles: int = 0
    container: str | None = None
    row: str | None = None
    rack: str | None = None
    last_seen: int | None = None  # its last point, Unix seconds (a period's report)
    open: bool = True  # seen in the last cycle recorded; False: it closed during the period
    model: str | None = None
    address: str | None = None  # host:port (the miner's id is its MAC when known): where to walk to

    @property
    def place(self) -> str:
        return "/".join(p for p in (self.container, self.row, self.rack) if p) or "-"


@dataclass
class HealthReport:
    site: str
    source: str  # "live", "influxdb", "local history"
    start: int | None = None
    end: int | None = None
    cycles: int = 0
    problems: list[ProblemSeen] = field(default_factory=list)  # the repair queue: dollars lost, descending
    usd_lost_day: float | None = None  # the site's, now or the mean over the period (not the rows' sum)
    chips_dead_first: float | None = None
    chips_dead_last: float | None = None
    unprofitable: int | None = None
    unprofitable_miners: list[str] = field(default_factory=list)  # which (one cycle, now: trial ZJ found none named)
    measured_pue: float | None = None
    by_cause: dict[str, int] = field(default_factory=dict)
    power_corrections: dict[str, float] = field(default_factory=dict)
    miners: int | None = None

    @property
    def chips_lost(self) -> float | None:
        if self.chips_dead_first is None or self.chips_dead_last is None:
            return None
        return self.chips_dead_last - self.chips_dead_first

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["chips_lost"] = self.chips_lost
        return out


_LEVELS = {s.value: s.level for s in Severity}


def _sorted(problems: list[ProblemSeen]) -> list[ProblemSeen]:
    """The repair queue: the open problems, then those that closed during the period; each by its latest
    dollars lost a day, severity and hashrate lost."""
    return sorted(problems, key=lambda p: (not p.open, -(p.usd_lost_day or 0.0), -_LEVELS.get(p.severity or "", -1),
                                           -(p.lost_ths or 0.0), p.miner, p.signal))


CURRENT_SHARD_S = 600  # a shard whose last cycle is this much older than the newest shard's is gone (a re-split)


def _mark_closed(problems: list[ProblemSeen], last_cycles: set[int]) -> None:
    """A problem is open when seen in the last cycle recorded (each shard's last, with several collectors:
    their problem points carry no shard), or after it (a cycle still being written); else it closed."""
    if not last_cycles:
        last_cycles = {max((p.last_seen for p in problems if p.last_seen is not None), default=0)}
    latest = max(last_cycles)
    for p in problems:
        p.open = p.last_seen is None or p.last_seen in last_cycles or p.last_seen > latest


def _period_usd(mean: float | None, problems: list[ProblemSeen]) -> float | None:
    """The site's mean dollars lost a day over a period, from the cycles that have one: those with no
    problem wrote 0 and those with unpriced problems none, so when no problem was ever priced that mean
    is a false $0: unknown (None), as the one-cycle total is."""
    if problems and all(p.usd_lost_day_mean is None for p in problems):
        return None
    return mean


def _by_cause(problems: list[ProblemSeen]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in problems:
        out[p.cause] = out.get(p.cause, 0) + 1
    return dict(sorted(out.items()))


def from_cycle(site: SiteHealth, miners: list[MinerHealth]) -> HealthReport:
    """One cycle, now: every open problem (not only the roll-up's first QUEUE_SHOWN)."""
    by_miner = {h.miner: h for h in miners}
    problems = sorted((p for h in miners for p in h.problems), key=queue_order)
    seen = []
    for p in problems:
        health = by_miner.get(p.miner)
        place = health.place if health else None
        part = None if p.board is None else f"{'fan' if p.signal.value.startswith('fan') else 'board'}{p.board}"
        seen.append(ProblemSeen(p.miner, p.signal.value, p.cause.value, part, p.severity.value, p.evidence,
                                p.usd_lost_day, p.usd_lost_day, p.lost_ths, 1,
                                place.container if place else None, place.row if place else None,
                                place.rack if place else None, model=health.model if health else None,
                                address=health.address if health else None))
    return HealthReport(site=site.site, source="live", cycles=1, problems=seen, usd_lost_day=site.usd_lost_day,
                        chips_dead_first=float(site.chips_dead), chips_dead_last=float(site.chips_dead),
                        unprofitable=site.unprofitable, measured_pue=site.measured_pue,
                        unprofitable_miners=sorted(h.miner for h in miners if h.unprofitable),
                        by_cause={c.value: n for c, n in sorted(site.by_cause.items())},
                        power_corrections={m: f for m, (f, _, _) in site.power_corrections.items()},
                        miners=site.miners)


def from_lines(site: str, lines: Iterable[Line], start: int, end: int) -> HealthReport | None:
    """A period of the local history (parsed `health` lines), read once as they come: what is kept grows
    with the problems and models seen, never with the cycles (the site's points are summed as they pass).
    None when no point of the site is in the period."""
    name = schema.HEALTH.name
    problems: dict[tuple[str, str, str | None], ProblemSeen] = {}
    sums: dict[tuple[str, str, str | None], tuple[float, int]] = {}  # dollars, cycles priced
    corrections: dict[str, tuple[int, float]] = {}
    found = False
    cycles = 0
    site_usd, site_priced = 0.0, 0
    first: Line | None = None  # the site's earliest point (the first read of its second) and latest (the last)
    last: Line | None = None
    for line in lines:
        tags = line.tags
        if line.measurement != name or tags.get("site") != site or not start <= line.time <= end:
            continue
        found = True
        scope = tags.get("scope")
        if scope == "site":
            cycles += 1
            if (usd := _number(line.fields.get("usd_lost_day"))) is not None:
                site_usd, site_priced = site_usd + usd, site_priced + 1
            if first is None or line.time < first.time:
                first = line
            if last is None or line.time >= last.time:
                last = line
        elif scope == "model" and "model" in tags:
            factor = _number(line.fields.get("power_correction"))
            if factor is not None and line.time >= corrections.get(tags["model"], (0, 0.0))[0]:
                corrections[tags["model"]] = (line.time, factor)
        elif scope == "problem":
            key = (tags.get("miner", "?"), tags.get("signal", "?"), tags.get("part"))
            seen = problems.get(key)
            if seen is None:
                seen = problems[key] = ProblemSeen(key[0], key[1], tags.get("cause", "?"), key[2])
            usd = _number(line.fields.get("usd_lost_day"))
            seen.cycles += 1
            if usd is not None:
                total, priced = sums.get(key, (0.0, 0))
                sums[key] = (total + usd, priced + 1)
            if line.time >= (seen.last_seen or 0):
                seen.last_seen = line.time
                seen.cause = tags.get("cause", seen.cause)
                seen.container, seen.row, seen.rack = tags.get("container"), tags.get("row"), tags.get("rack")
                seen.model = _text(tags.get("model")) or seen.model
                seen.address = _text(line.fields.get("address")) or seen.address
                seen.usd_lost_day, seen.lost_ths = usd, _number(line.fields.get("lost_ths"), 0.0)
                seen.severity, seen.evidence = _text(line.fields.get("severity")), _text(line.fields.get("evidence"))
    if not found:
        return None
    for key, (total, priced) in sums.items():
        problems[key].usd_lost_day_mean = total / priced
    seen_all = list(problems.values())
    _mark_closed(seen_all, {last.time} if last is not None else set())
    report = HealthReport(site=site, source="local history", start=start, end=end, cycles=cycles,
                          problems=_sorted(seen_all),
                          power_corrections={m: f for m, (_, f) in sorted(corrections.items())})
    report.by_cause = _by_cause(report.problems)
    if first is not None and last is not None:
        report.usd_lost_day = _period_usd(site_usd / site_priced if site_priced else None, report.problems)
        report.chips_dead_first = _number(first.fields.get("chips_dead"))
        report.chips_dead_last = _number(last.fields.get("chips_dead"))
        report.unprofitable = _count(last.fields.get("unprofitable"))
        report.measured_pue = _number(last.fields.get("measured_pue"))
        report.miners = _count(last.fields.get("miners"))
    return report


# A problem's InfluxDB groups: its cause and place are tags and may change while it is open.
_PROBLEM_GROUP = ("miner", "signal", "part", "cause", "container", "row", "rack", "model")


def influx_queries(site: str, start: int, end: int) -> dict[str, str]:
    """The InfluxQL queries of a period (`site` is a validated name: letters, digits, _ . -). A lone
    selector (`last`) answers with its point's time: when each problem was last seen, each shard's last cycle."""
    where = f"\"site\" = '{site}' AND time >= {start}s AND time <= {end}s"
    health = schema.HEALTH.name
    problem_groups = ", ".join(f'"{tag}"' for tag in _PROBLEM_GROUP)
    return {
        "problems": (
            'SELECT last("usd_lost_day") AS "usd_lost_day", mean("usd_lost_day") AS "usd_mean", '
            'count("usd_lost_day") AS "priced", '
            'last("lost_ths") AS "lost_ths", last("evidence") AS "evidence", last("severity") AS "severity", '
            'last("address") AS "address", '
            f'count("level") AS "cycles" FROM "{health}" WHERE "scope" = \'problem\' AND {where} '
            f'GROUP BY {problem_groups}'),
        "problems_last_seen": (
            f'SELECT last("level") AS "level" FROM "{health}" WHERE "scope" = \'problem\' AND {where} '
            f'GROUP BY {problem_groups}'),
        "site": (
            'SELECT first("chips_dead") AS "chips_first", last("chips_dead") AS "chips_last", '
            'mean("usd_lost_day") AS "usd_lost_day", last("unprofitable") AS "unprofitable", '
            'last("measured_pue") AS "measured_pue", last("miners") AS "miners", count("problems") AS "cycles" '
            f'FROM "{health}" WHERE "scope" = \'site\' AND {where} GROUP BY "collector_shard"'),
        "site_last_cycle": (
            f'SELECT last("problems") AS "problems" FROM "{health}" WHERE "scope" = \'site\' AND {where} '
            'GROUP BY "collector_shard"'),
        "models": (
            f'SELECT last("power_correction") AS "factor" FROM "{health}" WHERE "scope" = \'model\' AND {where} '
            'GROUP BY "model"'),
    }


async def from_influx(config: InfluxConfig, site: str, start: int, end: int) -> HealthReport:
    from collector.influx_query import query

    texts = influx_queries(site, start, end)
    report = HealthReport(site=site, source="influxdb", start=start, end=end)
    last_seen = {tuple(row.get(tag) for tag in _PROBLEM_GROUP): _count(row.get("time"))
                 for row in await query(config, texts["problems_last_seen"])}
    groups = []
    for row in await query(config, texts["problems"]):
        problem = ProblemSeen(
            miner=_text(row.get("miner")) or "?", signal=_text(row.get("signal")) or "?",
            cause=_text(row.get("cause")) or "?", part=_text(row.get("part")), severity=_text(row.get("severity")),
            evidence=_text(row.get("evidence")), usd_lost_day=_number(row.get("usd_lost_day")),
            usd_lost_day_mean=_number(row.get("usd_mean")), lost_ths=_number(row.get("lost_ths"), 0.0),
            cycles=_count(row.get("cycles")) or 0, container=_text(row.get("container")), row=_text(row.get("row")),
            rack=_text(row.get("rack")), last_seen=last_seen.get(tuple(row.get(tag) for tag in _PROBLEM_GROUP)),
            model=_text(row.get("model")), address=_text(row.get("address")))
        groups.append((problem, _count(row.get("priced")) or 0))
    # The same problem under two causes (or places) is two groups: the latest one's values win, the
    # cycles add up, and so do the dollars and cycles its mean is made of.
    merged: dict[tuple[str, str, str | None], ProblemSeen] = {}
    sums: dict[tuple[str, str, str | None], tuple[float, int]] = {}  # dollars, cycles priced
    for p, priced in sorted(groups, key=lambda g: (g[0].last_seen or 0, g[0].cycles)):
        key = (p.miner, p.signal, p.part)
        if key in merged:
            p.cycles += merged[key].cycles
        merged[key] = p
        if p.usd_lost_day_mean is not None and priced:
            total, n = sums.get(key, (0.0, 0))
            sums[key] = (total + p.usd_lost_day_mean * priced, n + priced)
    problems = list(merged.values())
    for key, p in merged.items():
        total, n = sums.get(key, (0.0, 0))
        p.usd_lost_day_mean = total / n if n else None
    last_cycles = {row.get("collector_shard"): t for row in await query(config, texts["site_last_cycle"])
                   if (t := _count(row.get("time"))) is not None}
    _mark_closed(problems, set(last_cycles.values()))
    report.problems = _sorted(problems)
    report.by_cause = _by_cause(report.problems)
    # The shards writing at the period's end: after a re-split (3 shards, then 2) the old split's were summed with the
    # new one's, 48 miners and 16 unprofitable of 24 and 8 (trial ZI); the dashboards' rule, 10 minutes.
    newest = max(last_cycles.values(), default=0)
    shards = [r for r in await query(config, texts["site"])
              if last_cycles.get(r.get("collector_shard"), newest) >= newest - CURRENT_SHARD_S]
    if shards:
        report.cycles = max(_count(r.get("cycles")) or 0 for r in shards)
        report.usd_lost_day = _period_usd(_sum(r.get("usd_lost_day") for r in shards), report.problems)
        report.chips_dead_first = _sum(r.get("chips_first") for r in shards)
        report.chips_dead_last = _sum(r.get("chips_last") for r in shards)
        report.unprofitable = int(_sum(r.get("unprofitable") for r in shards) or 0)
        report.miners = int(_sum(r.get("miners") for r in shards) or 0)
        report.measured_pue = next((v for r in shards if (v := _number(r.get("measured_pue"))) is not None), None)
    for row in await query(config, texts["models"]):
        model, factor = _text(row.get("model")), _number(row.get("factor"))
        if model and factor is not None:
            report.power_corrections[model] = factor
    return report


MAX_AMOUNT = 1e12  # dollars a day, TH/s, chips: past this in any of them a value is garbage, not a reading


def _number(value: Any, low: float = -MAX_AMOUNT) -> float | None:
    """A finite, plausible number from a stored point or InfluxDB's answer; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if low <= value <= MAX_AMOUNT else None  # NaN fails both


def _count(value: Any) -> int | None:
    number = _number(value, 0.0)
    return int(number) if number is not None else None


def _sum(values) -> float | None:
    numbers = [v for v in map(_number, values) if v is not None]
    return sum(numbers) if numbers else None


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) and value else None
