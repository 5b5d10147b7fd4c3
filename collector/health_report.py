"""`hashfleet health`: the repair queue and the site's health, now or over a period.

Three sources, one report:
- now: one cycle of the pipeline (collector/commands/health.py hands over its figures: `from_cycle`);
- a period, from InfluxDB: InfluxQL aggregates of the `health` points (`from_influx`);
- a period, from the local history (the spool, without InfluxDB): the same aggregates in Python
  (`from_lines`).

Over a period each problem (miner, signal, part) is listed once: its last dollars lost per day, its
mean over the cycles it was open, the hashrate it took, its last evidence and how many cycles it
was seen; the site: the mean dollars lost per day, chips dead at the start and the end (chips lost),
the problems by root cause, and the power corrections learned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from collector.line_protocol import Line
from models import InfluxConfig, schema
from models.health import MinerHealth, SiteHealth, queue_order

MAX_TEXT = 300


@dataclass
class ProblemSeen:
    miner: str
    signal: str
    cause: str
    part: str | None = None
    severity: str | None = None
    evidence: str | None = None
    usd_lost_day: float | None = None  # the last
    usd_lost_day_mean: float | None = None  # over the cycles it was open
    lost_ths: float | None = None
    cycles: int = 0
    container: str | None = None
    row: str | None = None
    rack: str | None = None

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
    usd_lost_day: float | None = None  # the site's, now or the mean over the period
    chips_dead_first: float | None = None
    chips_dead_last: float | None = None
    unprofitable: int | None = None
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


def _sorted(problems: list[ProblemSeen]) -> list[ProblemSeen]:
    return sorted(problems, key=lambda p: (-(p.usd_lost_day or 0.0), -(p.lost_ths or 0.0), p.miner, p.signal))


def _by_cause(problems: list[ProblemSeen]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in problems:
        out[p.cause] = out.get(p.cause, 0) + 1
    return dict(sorted(out.items()))


def from_cycle(site: SiteHealth, miners: list[MinerHealth]) -> HealthReport:
    """One cycle, now: every open problem (not only the roll-up's first QUEUE_SHOWN)."""
    places = {h.miner: h.place for h in miners}
    problems = sorted((p for h in miners for p in h.problems), key=queue_order)
    seen = []
    for p in problems:
        place = places.get(p.miner)
        part = None if p.board is None else f"{'fan' if p.signal.value.startswith('fan') else 'board'}{p.board}"
        seen.append(ProblemSeen(p.miner, p.signal.value, p.cause.value, part, p.severity.value, p.evidence,
                                p.usd_lost_day, p.usd_lost_day, p.lost_ths, 1,
                                place.container if place else None, place.row if place else None,
                                place.rack if place else None))
    return HealthReport(site=site.site, source="live", cycles=1, problems=seen, usd_lost_day=site.usd_lost_day,
                        chips_dead_first=float(site.chips_dead), chips_dead_last=float(site.chips_dead),
                        unprofitable=site.unprofitable, measured_pue=site.measured_pue,
                        by_cause={c.value: n for c, n in sorted(site.by_cause.items())},
                        power_corrections={m: f for m, (f, _, _) in site.power_corrections.items()},
                        miners=site.miners)


def from_lines(site: str, lines: list[Line], start: int, end: int) -> HealthReport:
    """A period of the local history (parsed `health` lines)."""
    name = schema.HEALTH.name
    problems: dict[tuple[str, str, str | None], ProblemSeen] = {}
    last_time: dict[tuple[str, str, str | None], int] = {}
    sums: dict[tuple[str, str, str | None], float] = {}
    site_points: list[Line] = []
    corrections: dict[str, tuple[int, float]] = {}
    for line in lines:
        tags = line.tags
        if line.measurement != name or tags.get("site") != site or not start <= line.time <= end:
            continue
        scope = tags.get("scope")
        if scope == "site":
            site_points.append(line)
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
                sums[key] = sums.get(key, 0.0) + usd
            if line.time >= last_time.get(key, 0):
                last_time[key] = line.time
                seen.cause = tags.get("cause", seen.cause)
                seen.container, seen.row, seen.rack = tags.get("container"), tags.get("row"), tags.get("rack")
                seen.usd_lost_day, seen.lost_ths = usd, _number(line.fields.get("lost_ths"), 0.0)
                seen.severity, seen.evidence = _text(line.fields.get("severity")), _text(line.fields.get("evidence"))
    for key, seen in problems.items():
        if key in sums:
            seen.usd_lost_day_mean = sums[key] / seen.cycles
    site_points.sort(key=lambda p: p.time)
    report = HealthReport(site=site, source="local history", start=start, end=end, cycles=len(site_points),
                          problems=_sorted(list(problems.values())),
                          power_corrections={m: f for m, (_, f) in sorted(corrections.items())})
    report.by_cause = _by_cause(report.problems)
    if site_points:
        usd = [v for p in site_points if (v := _number(p.fields.get("usd_lost_day"))) is not None]
        report.usd_lost_day = sum(usd) / len(usd) if usd else None
        report.chips_dead_first = _number(site_points[0].fields.get("chips_dead"))
        report.chips_dead_last = _number(site_points[-1].fields.get("chips_dead"))
        report.unprofitable = _count(site_points[-1].fields.get("unprofitable"))
        report.measured_pue = _number(site_points[-1].fields.get("measured_pue"))
        report.miners = _count(site_points[-1].fields.get("miners"))
    return report


def influx_queries(site: str, start: int, end: int) -> dict[str, str]:
    """The three InfluxQL queries of a period (`site` is a validated name: letters, digits, _ . -)."""
    where = f"\"site\" = '{site}' AND time >= {start}s AND time <= {end}s"
    health = schema.HEALTH.name
    return {
        "problems": (
            'SELECT last("usd_lost_day") AS "usd_lost_day", mean("usd_lost_day") AS "usd_mean", '
            'last("lost_ths") AS "lost_ths", last("evidence") AS "evidence", last("severity") AS "severity", '
            f'count("level") AS "cycles" FROM "{health}" WHERE "scope" = \'problem\' AND {where} '
            'GROUP BY "miner", "signal", "part", "cause", "container", "row", "rack"'),
        "site": (
            'SELECT first("chips_dead") AS "chips_first", last("chips_dead") AS "chips_last", '
            'mean("usd_lost_day") AS "usd_lost_day", last("unprofitable") AS "unprofitable", '
            'last("measured_pue") AS "measured_pue", last("miners") AS "miners", count("problems") AS "cycles" '
            f'FROM "{health}" WHERE "scope" = \'site\' AND {where} GROUP BY "collector_shard"'),
        "models": (
            f'SELECT last("power_correction") AS "factor" FROM "{health}" WHERE "scope" = \'model\' AND {where} '
            'GROUP BY "model"'),
    }


async def from_influx(config: InfluxConfig, site: str, start: int, end: int) -> HealthReport:
    from collector.influx_query import query

    texts = influx_queries(site, start, end)
    report = HealthReport(site=site, source="influxdb", start=start, end=end)
    seen = []
    for row in await query(config, texts["problems"]):
        cycles = _count(row.get("cycles")) or 0
        # A cause changes as evidence changes: the same problem under two causes is two groups; the latest wins below.
        seen.append(ProblemSeen(
            miner=_text(row.get("miner")) or "?", signal=_text(row.get("signal")) or "?",
            cause=_text(row.get("cause")) or "?", part=_text(row.get("part")), severity=_text(row.get("severity")),
            evidence=_text(row.get("evidence")), usd_lost_day=_number(row.get("usd_lost_day")),
            usd_lost_day_mean=_number(row.get("usd_mean")), lost_ths=_number(row.get("lost_ths"), 0.0), cycles=cycles,
            container=_text(row.get("container")), row=_text(row.get("row")), rack=_text(row.get("rack"))))
    merged: dict[tuple[str, str, str | None], ProblemSeen] = {}
    for p in seen:
        key = (p.miner, p.signal, p.part)
        if key not in merged or p.cycles > merged[key].cycles:
            merged[key] = p
    report.problems = _sorted(list(merged.values()))
    report.by_cause = _by_cause(report.problems)
    shards = await query(config, texts["site"])
    if shards:
        report.cycles = max(_count(r.get("cycles")) or 0 for r in shards)
        report.usd_lost_day = _sum(r.get("usd_lost_day") for r in shards)
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
