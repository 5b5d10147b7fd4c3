"""Fleet and cost summary over a period, from the local history (the spool without InfluxDB).

Pure: parsed line-protocol points in, a Report out. Energy and money are
integrated over the time between cycles (a gap longer than three typical
intervals — the collector was down — is not counted).

The site's totals are over the miners its cost counted: a miner's cycle that its own cost point marks
`incomplete` (a hashrate or power reading missing or refused: docs/cost.md) is left out of the site's
hashrate, power and kWh as it is out of its BTC and money, and counted in the miner's `left_out_pct`.

The spool's files are input like any other: a value this summary reads that is not a finite number
within what one miner can report (models.hardware, models.sample) or a plausible amount
(running_totals.MAX_AMOUNT) is skipped as if absent, and counted in `Report.skipped_values`. A batch
file that cannot be read whole (damaged, not a regular file: collector/sinks/spool.py) is skipped, counted
and named in a warning; of a file cut short the whole lines before the cut are read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from collector.line_protocol import Line, LineProtocolError, parse_line
from collector.sinks.spool import DamagedBatch, list_batches, strays
from collector.stages.running_totals import MAX_AMOUNT
from models import schema
from models.hardware import MAX_UNIT_THS, MAX_UNIT_W
from models.sample import TEMP_MAX_C, TEMP_MIN_C

log = logging.getLogger(__name__)


@dataclass
class MinerSummary:
    miner: str
    model: str | None = None
    cycles: int = 0
    up_pct: float = 0.0
    mining_pct: float = 0.0
    hashrate_avg_ths: float | None = None
    power_avg_w: float | None = None
    efficiency_j_th: float | None = None
    temp_chip_max_c: float | None = None
    left_out_pct: float = 0.0  # of its cycles, left out of the site's figures (a reading missing or refused)


@dataclass
class Report:
    site: str
    start: int  # unix seconds
    end: int
    cycles: int
    miners: list[MinerSummary] = field(default_factory=list)
    hashrate_avg_ths: float | None = None  # of the miners the cost counted, cycle by cycle
    power_avg_w: float | None = None  # their reported draw
    energy_kwh: float | None = None  # ... over the period
    facility_energy_kwh: float | None = None  # with PUE or overhead, as the cost is (docs/cost.md: energy_kwh_day)
    energy_usd: float | None = None  # energy + demand charge - curtailment credits
    cash_usd: float | None = None
    all_in_usd: float | None = None
    btc: float | None = None
    revenue_usd: float | None = None
    energy_cost_per_btc: float | None = None
    cash_cost_per_btc: float | None = None
    all_in_cost_per_btc: float | None = None
    cycles_incomplete: int = 0  # cycles whose site figures left a miner out (its left_out_pct says which)
    skipped_values: int = 0  # not finite or implausible in the history: left out of every figure

    def as_dict(self) -> dict:
        return asdict(self)


def _intervals(times: list[int]) -> dict[int, float]:
    """Seconds each cycle stands for: the time to the next one, gaps capped out."""
    if len(times) < 2:
        return {t: 0.0 for t in times}
    steps = [b - a for a, b in zip(times, times[1:])]
    typical = median(steps)
    out = {t: (s if s <= 3 * typical else 0.0) for t, s in zip(times, steps)}
    out[times[-1]] = typical  # the last cycle stands for one typical interval
    return out


# The numbers this summary reads, and the range a real one is in.
_MINER_BOUNDS = {"hashrate_ths": (0.0, MAX_UNIT_THS), "power_w": (0.0, MAX_UNIT_W),
                 "temp_chip_max_c": (TEMP_MIN_C, TEMP_MAX_C), "up": (0, 1)}
_COST_FIELDS = ("energy_usd_day", "demand_usd_day", "opex_usd_day", "curtailment_credit_usd_day",
                "depreciation_usd_day", "energy_kwh_day", "btc_per_day_net", "revenue_usd_day")
_COST_BOUNDS = {name: (-MAX_AMOUNT, MAX_AMOUNT) for name in _COST_FIELDS}


def _checked(points: list[Line], bounds: dict[str, tuple[float, float]]) -> tuple[list[Line], int]:
    """The points with each value in `bounds` that is not a number within them left out; how many were."""
    out, skipped = [], 0
    for p in points:
        bad = [name for name, (low, high) in bounds.items() if name in p.fields
               and not (isinstance(v := p.fields[name], (int, float)) and low <= v <= high)]  # NaN fails too
        if bad:
            skipped += len(bad)
            p = Line(p.measurement, p.tags, {k: v for k, v in p.fields.items() if k not in bad}, p.time)
        out.append(p)
    return out, skipped


def build(site: str, lines: list[Line], start: int, end: int) -> Report:
    miner_points = [p for p in lines if p.measurement == schema.MINER.name and p.tags.get("site") == site
                    and start <= p.time <= end]
    cost_points = [p for p in lines if p.measurement == schema.COST.name and p.tags.get("scope") == "site"
                   and p.tags.get("site") == site and start <= p.time <= end]
    # (miner, time) of every cycle a miner's cost left it out of the site's figures
    left_out = {(p.tags.get("miner", "?"), p.time) for p in lines
                if p.measurement == schema.COST.name and p.tags.get("scope") == "miner" and p.tags.get("site") == site
                and start <= p.time <= end and p.fields.get("incomplete")}
    miner_points, skipped_miner = _checked(miner_points, _MINER_BOUNDS)
    cost_points, skipped_cost = _checked(cost_points, _COST_BOUNDS)
    times = sorted({p.time for p in miner_points})
    weight = _intervals(times)
    report = Report(site=site, start=start, end=end, cycles=len(times), skipped_values=skipped_miner + skipped_cost)
    if report.skipped_values:
        log.warning("%d value(s) in the local history of site %r skipped: not finite or out of range",
                    report.skipped_values, site)

    per_miner: dict[str, list[Line]] = defaultdict(list)
    for point in miner_points:
        per_miner[point.tags.get("miner", "?")].append(point)
    for miner, points in sorted(per_miner.items()):
        points.sort(key=lambda p: p.time)
        hashrates = [float(p.fields["hashrate_ths"]) for p in points if "hashrate_ths" in p.fields]
        powers = [float(p.fields["power_w"]) for p in points if "power_w" in p.fields]
        temps = [float(p.fields["temp_chip_max_c"]) for p in points if "temp_chip_max_c" in p.fields]
        hashrate = sum(hashrates) / len(points) if hashrates else None  # offline cycles count as 0
        power = sum(powers) / len(points) if powers else None
        report.miners.append(MinerSummary(
            # an offline miner's points carry no model: the last point that names one
            miner=miner, model=next((m for p in reversed(points) if (m := p.tags.get("model"))), None),
            cycles=len(points),
            up_pct=100 * sum(int(p.fields.get("up", 0)) for p in points) / len(points),
            mining_pct=100 * sum(p.fields.get("state") == "mining" for p in points) / len(points),
            hashrate_avg_ths=hashrate, power_avg_w=power,
            efficiency_j_th=power / hashrate if power is not None and hashrate else None,
            temp_chip_max_c=max(temps) if temps else None,
            left_out_pct=100 * sum((miner, p.time) in left_out for p in points) / len(points),
        ))

    if times:
        counted = [p for p in miner_points if (p.tags.get("miner", "?"), p.time) not in left_out]
        totals = defaultdict(float)
        for p in counted:
            totals[p.time] += float(p.fields.get("power_w", 0.0))
        report.power_avg_w = sum(totals.values()) / len(times)
        report.hashrate_avg_ths = sum(float(p.fields.get("hashrate_ths", 0.0)) for p in counted) / len(times)
        report.energy_kwh = sum(totals[t] * weight[t] for t in times) / 3.6e6
    if cost_points:
        cost_times = sorted(p.time for p in cost_points)
        cost_weight = _intervals(cost_times)

        def integrate(name: str) -> float:
            return sum(float(p.fields.get(name, 0.0)) * cost_weight[p.time] for p in cost_points) / 86400

        report.energy_usd = integrate("energy_usd_day") + integrate("demand_usd_day") \
            - integrate("curtailment_credit_usd_day")
        report.cash_usd = report.energy_usd + integrate("opex_usd_day")
        report.all_in_usd = report.cash_usd + integrate("depreciation_usd_day")
        report.facility_energy_kwh = integrate("energy_kwh_day")
        report.btc = integrate("btc_per_day_net")
        report.revenue_usd = integrate("revenue_usd_day")
        report.cycles_incomplete = sum(1 for p in cost_points if p.fields.get("incomplete"))
        if report.btc:
            report.energy_cost_per_btc = report.energy_usd / report.btc
            report.cash_cost_per_btc = report.cash_usd / report.btc
            report.all_in_cost_per_btc = report.all_in_usd / report.btc
    return report


def from_spool(directory: Path, site: str, start: int, end: int) -> Report:
    """Read the local history in `directory` (batches written since `start`) and summarise it."""
    return build(site, spool_lines(directory, start), start, end)


def spool_lines(directory: Path, start: int, measurement: str | None = None) -> list[Line]:
    """The points of the local history in `directory` written since `start` (of one measurement, when
    given: other lines are not parsed)."""
    return list(spool_points(directory, start, () if measurement is None else (measurement,)))


def spool_points(directory: Path, start: int, measurements: tuple[str, ...] = ()) -> Iterator[Line]:
    """The same, one point at a time (of these measurements, when given), so a long history is never
    all in memory; unreadable lines are counted and logged once, damaged batches (collector/sinks/spool.py)
    counted and named in one warning: each costs its own lines only (but the whole lines before a cut)."""
    prefixes = tuple(m + sep for m in measurements for sep in (",", " "))
    bad = 0
    damaged: list[str] = []
    for name in strays(directory):
        log.warning("%s in %s is named like a spool file but is not a regular file: skipped", name, directory)
    for batch in list_batches(directory):
        try:
            if batch.mtime < start:
                continue
            texts = batch.read()
        except FileNotFoundError:  # delivered or trimmed while we read: skip it
            continue
        except DamagedBatch as e:  # one damaged file costs that file (but the whole lines before a cut)
            kept = f"; its {len(e.lines)} whole line(s) before the cut read" if e.lines else ""
            damaged.append(f"{batch.path.name} ({e.reason}{kept})")
            texts = e.lines
        for text in texts:
            if prefixes and not text.startswith(prefixes):
                continue
            try:
                yield parse_line(text)
            except LineProtocolError:
                bad += 1
    if bad:
        log.warning("%d unreadable line(s) in %s skipped", bad, directory)
    if damaged:
        log.warning("%d damaged batch(es) in %s, skipped: %s", len(damaged), directory,
                    ", ".join(damaged[:10]) + (f", and {len(damaged) - 10} more" if len(damaged) > 10 else ""))
