"""Fleet and cost summary over a period, from the local history (the spool without InfluxDB).

Read as InfluxDB would store it, and a second at a time. Only the miner and cost lines are parsed, and
of their fields only those summed are kept (every field is still checked: a line InfluxDB would refuse is
refused whole).
Each second's points are gathered one per series (the measurement and its tags) and second, the last
written winning, as InfluxDB keeps them: a copied batch, or a cycle written again on the same second
after the wall clock was stepped back, counts once. A first pass reads only each line's last word (its
time) to learn the last batch that writes each second; a second is summed into `PeriodSummary` once
that batch has been read. So memory grows with the fleet (running sums per miner, one second's
points) and by under 1 KB a cycle (the list of batches, each second's last batch, a few numbers in
`PeriodSummary`'s arrays), never with miners x cycles: a week of 10 s cycles of 25 miners peaks at
122 MB in all, in ~65 s (bench.history). The batches are read twice; the cheap pass is ~12 % of the time.

Energy and money are integrated over the time between cycles: each cycle stands for the time to the
next one. The last cycle, and one followed by a gap longer than three typical intervals (the collector
was down: nothing is known of the gap, which is not counted), stand for one typical interval; a period
of a single cycle, which has no step to take the typical one from, for the collector's `interval_s`.

The site's totals are over the miners its cost counted: a miner's cycle that its own cost point marks
`incomplete` (a hashrate or power reading missing or refused: docs/cost.md) is left out of the site's
hashrate, power and kWh as it is out of its BTC and money, and counted in the miner's `left_out_pct`.
A miner's cycle costed on a nameplate estimate of its draw (`estimated_power_w` on its cost point:
economics.estimate_missing_power) counts that draw in the site's power and kWh, as its cost did, and is
counted in the miner's `estimated_pct` and the report's `cycles_estimated`.

The spool's files are input like any other: a value this summary reads that is not a finite number
within what one miner can report (models.hardware, models.sample) or a plausible amount
(running_totals.MAX_AMOUNT) is skipped as if absent, and counted in `Report.skipped_values`. A batch
file that cannot be read whole (damaged, not a regular file: collector/spool_files.py) is skipped, counted
and named in a warning; of a file cut short the whole lines before the cut are read.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median

from collector.line_protocol import Line, LineProtocolError, line_time, parse_line
from collector.spool_files import Batch, DamagedBatch, list_batches, misnumbered, strays
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
    estimated_pct: float = 0.0  # of its cycles, costed on a nameplate estimate of its draw (no power reading)


@dataclass
class Report:
    site: str
    start: int  # unix seconds: the period asked
    end: int
    cycles: int
    first_cycle: int | None = None  # unix seconds: the history found in it (a --since longer than the history)
    last_cycle: int | None = None
    shard: str | None = None  # "K/N": one shard's history, its miners only (`collect --shard`)
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
    cycles_estimated: int = 0  # cycles whose site figures count a miner's estimated draw (its estimated_pct)
    skipped_values: int = 0  # not finite or implausible in the history: left out of every figure

    def as_dict(self) -> dict:
        return asdict(self)


def _intervals(times: Sequence[int], interval_s: float) -> list[float]:
    """Seconds each cycle (`times`: sorted, distinct) stands for: the time to the next one; the last, and
    one followed by a gap over three typical intervals (the gap is not counted), one typical interval; a
    lone cycle, `interval_s` (the collector's: there is no step to take a typical one from)."""
    if len(times) < 2:
        return [float(interval_s)] * len(times)
    steps = [b - a for a, b in zip(times, times[1:])]
    typical = median(steps)
    return [s if s <= 3 * typical else typical for s in steps] + [typical]


# The numbers this summary reads, and the range a real one is in.
_MINER_BOUNDS = {"hashrate_ths": (0.0, MAX_UNIT_THS), "power_w": (0.0, MAX_UNIT_W),
                 "temp_chip_max_c": (TEMP_MIN_C, TEMP_MAX_C), "up": (0, 1)}
_COST_FIELDS = ("energy_usd_day", "demand_usd_day", "opex_usd_day", "curtailment_credit_usd_day",
                "depreciation_usd_day", "energy_kwh_day", "btc_per_day_net", "revenue_usd_day")
_COST_BOUNDS = {name: (-MAX_AMOUNT, MAX_AMOUNT) for name in _COST_FIELDS}
_ESTIMATE_BOUNDS = {"estimated_power_w": (0.0, MAX_UNIT_W)}  # a miner cost point's estimated draw


def _checked(fields: dict, bounds: dict[str, tuple[float, float]]) -> tuple[dict, int]:
    """`fields` with each value in `bounds` that is not a number within them left out; how many were."""
    bad = [name for name, (low, high) in bounds.items() if name in fields
           and not (isinstance(v := fields[name], (int, float)) and low <= v <= high)]  # NaN fails too
    if not bad:
        return fields, 0
    return {k: v for k, v in fields.items() if k not in bad}, len(bad)


@dataclass
class _MinerSums:
    """One miner's running sums over the period."""
    cycles: int = 0
    up: int = 0
    mining: int = 0
    left_out: int = 0
    estimated: int = 0
    hashrates: int = 0  # cycles with a hashrate reading, and their sum
    hashrate_sum: float = 0.0
    powers: int = 0
    power_sum: float = 0.0
    temp_max: float | None = None
    model: str | None = None
    model_time: int = -1  # the time of the latest point that named a model


class PeriodSummary:
    """Pure: the points of one second at a time in (`add_second`), the period's Report out. Memory: a
    few numbers per miner, and per cycle its time and the site's figures (compact arrays). `interval_s`:
    the collector's, what a period of one cycle stands for."""

    def __init__(self, site: str, start: int, end: int, *, interval_s: float):
        self.site, self.start, self.end, self.interval_s = site, start, end, interval_s
        self.miners: dict[str, _MinerSums] = {}
        self.times = array("q")  # the seconds with miner points, as summed
        self.counted_power = array("d")  # in each, the draw of the miners the cost counted
        self.counted_hashrate = 0  # theirs, summed over every cycle
        self.cost_times = array("q")  # the site's cost points (normally one a second), as summed
        self.cost = {name: array("d") for name in _COST_FIELDS}
        self.cycles_incomplete = 0
        self.cycles_estimated = 0
        self.skipped = 0

    def add_second(self, time: int, points: Iterable[Line]) -> None:
        """The site's points of second `time`: its miner points and its miner and site cost points (one
        per series: duplicates already resolved)."""
        miners, site_costs, left_out, estimated = [], [], set(), {}
        for p in points:
            if p.measurement == schema.MINER.name:
                miners.append(p)
            elif p.tags.get("scope") == "site":
                site_costs.append(p)
            elif p.tags.get("scope") == "miner":
                if p.fields.get("incomplete"):
                    left_out.add(p.tags.get("miner", "?"))
                elif "estimated_power_w" in p.fields:
                    fields, skipped = _checked(p.fields, _ESTIMATE_BOUNDS)
                    self.skipped += skipped
                    if "estimated_power_w" in fields:
                        estimated[p.tags.get("miner", "?")] = float(fields["estimated_power_w"])
        if miners:
            self._add_miners(time, miners, left_out, estimated)
        for p in site_costs:
            fields, skipped = _checked(p.fields, _COST_BOUNDS)
            self.skipped += skipped
            self.cost_times.append(time)
            for name, values in self.cost.items():
                values.append(float(fields.get(name, 0.0)))
            self.cycles_incomplete += bool(fields.get("incomplete"))
            estimates = p.fields.get("miners_estimated")
            self.cycles_estimated += isinstance(estimates, (int, float)) and estimates > 0  # (NaN is not)

    def _add_miners(self, time: int, points: list[Line], left_out: set[str], estimated: dict[str, float]) -> None:
        counted_power = 0.0
        for p in points:
            fields, skipped = _checked(p.fields, _MINER_BOUNDS)
            self.skipped += skipped
            miner = p.tags.get("miner", "?")
            sums = self.miners.setdefault(miner, _MinerSums())
            sums.cycles += 1
            sums.up += int(fields.get("up", 0))
            sums.mining += fields.get("state") == "mining"
            if "hashrate_ths" in fields:
                sums.hashrates += 1
                sums.hashrate_sum += float(fields["hashrate_ths"])
            if "power_w" in fields:
                sums.powers += 1
                sums.power_sum += float(fields["power_w"])
            if "temp_chip_max_c" in fields:
                temp = float(fields["temp_chip_max_c"])
                sums.temp_max = temp if sums.temp_max is None else max(sums.temp_max, temp)
            # an offline miner's points carry no model: the latest point that names one
            if (model := p.tags.get("model")) and time >= sums.model_time:
                sums.model, sums.model_time = model, time
            if miner in left_out:
                sums.left_out += 1
                continue
            if miner in estimated and "power_w" not in fields:  # (its cost had no reading: it estimated)
                sums.estimated += 1
                counted_power += estimated[miner]
            else:
                counted_power += float(fields.get("power_w", 0.0))
            self.counted_hashrate += float(fields.get("hashrate_ths", 0.0))
        self.times.append(time)
        self.counted_power.append(counted_power)

    def report(self) -> Report:
        cycles = len(self.times)
        report = Report(site=self.site, start=self.start, end=self.end, cycles=cycles, skipped_values=self.skipped)
        if report.skipped_values:
            log.warning("%d value(s) in the local history of site %r skipped: not finite or out of range",
                        report.skipped_values, self.site)
        for miner, s in sorted(self.miners.items()):
            hashrate = s.hashrate_sum / s.cycles if s.hashrates else None  # offline cycles count as 0
            power = s.power_sum / s.cycles if s.powers else None
            report.miners.append(MinerSummary(
                miner=miner, model=s.model, cycles=s.cycles, up_pct=100 * s.up / s.cycles,
                mining_pct=100 * s.mining / s.cycles, hashrate_avg_ths=hashrate, power_avg_w=power,
                efficiency_j_th=power / hashrate if power is not None and hashrate else None,
                temp_chip_max_c=s.temp_max, left_out_pct=100 * s.left_out / s.cycles,
                estimated_pct=100 * s.estimated / s.cycles))
        if cycles:
            report.first_cycle, report.last_cycle = min(self.times), max(self.times)
            times, powers = _in_time_order(self.times, self.counted_power)
            report.power_avg_w = sum(powers) / cycles
            report.hashrate_avg_ths = self.counted_hashrate / cycles
            report.energy_kwh = sum(w * weight for w, weight in zip(powers, _intervals(times, self.interval_s))) / 3.6e6
        if self.cost_times:
            cost_times, *columns = _in_time_order(self.cost_times, *self.cost.values())
            cost = dict(zip(self.cost, columns))
            distinct = sorted(set(cost_times))
            weight = dict(zip(distinct, _intervals(distinct, self.interval_s)))
            weights = [weight[t] for t in cost_times]

            def integrate(name: str) -> float:
                return sum(v * w for v, w in zip(cost[name], weights)) / 86400

            report.energy_usd = integrate("energy_usd_day") + integrate("demand_usd_day") \
                - integrate("curtailment_credit_usd_day")
            report.cash_usd = report.energy_usd + integrate("opex_usd_day")
            report.all_in_usd = report.cash_usd + integrate("depreciation_usd_day")
            report.facility_energy_kwh = integrate("energy_kwh_day")
            report.btc = integrate("btc_per_day_net")
            report.revenue_usd = integrate("revenue_usd_day")
            report.cycles_incomplete = self.cycles_incomplete
            report.cycles_estimated = self.cycles_estimated
            if report.btc:
                report.energy_cost_per_btc = report.energy_usd / report.btc
                report.cash_cost_per_btc = report.cash_usd / report.btc
                report.all_in_cost_per_btc = report.all_in_usd / report.btc
        return report


def _in_time_order(times: Sequence[int], *columns: Sequence[float]) -> list[Sequence]:
    """`times` and the columns beside them, sorted by time (as summed, they are unless the clock went back)."""
    if all(a <= b for a, b in zip(times, times[1:])):
        return [times, *columns]
    order = sorted(range(len(times)), key=times.__getitem__)
    return [[column[i] for i in order] for column in (times, *columns)]


_USED = (schema.MINER.name, schema.COST.name)  # the measurements the summary reads: no other line is parsed
_READ = {*_MINER_BOUNDS, "state", *_COST_FIELDS, "incomplete", *_ESTIMATE_BOUNDS, "miners_estimated"}  # their fields it reads: no other is kept


class _OpenSeconds:
    """The site's points read so far of the seconds not yet summed, one per series and second (a later
    one replaces an earlier: InfluxDB's 'last write wins')."""

    def __init__(self, site: str, start: int, end: int):
        self.site, self.start, self.end = site, start, end
        self.points: dict[int, dict[tuple, Line]] = {}

    def add(self, p: Line) -> None:
        if p.measurement not in _USED or p.tags.get("site") != self.site or not self.start <= p.time <= self.end:
            return
        if p.measurement == schema.COST.name and p.tags.get("scope") not in ("site", "miner"):
            return
        series = (p.measurement, tuple(sorted(p.tags.items())))
        self.points.setdefault(p.time, {})[series] = p

    def pop(self, second: int) -> Iterable[Line]:
        return self.points.pop(second).values()


def from_spool(directory: Path, site: str, start: int, end: int, *, interval_s: float) -> Report:
    """Read the local history in `directory` (batches written since `start`) and summarise it, a second at
    a time: each second once the last batch that writes it has been read. `interval_s`: the collector's
    (`PeriodSummary`)."""
    damaged: list[str] = []
    _skip_strays(directory)
    batches, last_batch = _last_batch_of_each_second(directory, start, end, damaged)
    summary = PeriodSummary(site, start, end, interval_s=interval_s)
    pending = _OpenSeconds(site, start, end)
    bad = 0
    for batch, texts in _batch_lines(batches, start, _USED):
        for text in texts:
            try:
                pending.add(parse_line(text, _READ))
            except LineProtocolError:
                bad += 1
        for second in [s for s in pending.points if last_batch.get(s) == batch.seq]:
            summary.add_second(second, pending.pop(second))
    for second in sorted(pending.points):  # a batch gone since the first pass (delivered, trimmed)
        summary.add_second(second, pending.pop(second))
    if bad:
        log.warning("%d unreadable line(s) in %s skipped", bad, directory)
    _say_damaged(directory, damaged)
    return summary.report()


def _last_batch_of_each_second(directory: Path, start: int, end: int, damaged: list[str],
                               measurements: tuple[str, ...] = _USED) -> tuple[list[Batch], dict[int, int]]:
    """The batches to read (readable, written since `start`) and, for each second in the period that their
    lines of `measurements` carry, the sequence number of the last batch that writes it. Nothing is parsed:
    a line's time is its last word (the time parse_line reads, for every line it reads). Damaged batches
    are named in `damaged`."""
    batches: list[Batch] = []
    last: dict[int, int] = {}
    for batch, texts in _batch_lines(list_batches(directory), start, measurements, damaged):
        batches.append(batch)
        for text in texts:
            second = line_time(text)  # (None: not a line; the second pass counts it)
            if second is not None and start <= second <= end:
                last[second] = batch.seq
    return batches, last


def spool_points(directory: Path, start: int, measurements: tuple[str, ...] = ()) -> Iterator[Line]:
    """The points of the local history in `directory` written since `start`, one at a time (of these
    measurements, when given: other lines are not parsed), so a long history is never all in memory;
    unreadable lines are counted and logged once, damaged batches (collector/spool_files.py) counted and
    named in one warning: each costs its own lines only (but the whole lines before a cut)."""
    bad = 0
    damaged: list[str] = []
    _skip_strays(directory)
    for _, texts in _batch_lines(list_batches(directory), start, measurements, damaged):
        for text in texts:
            try:
                yield parse_line(text)
            except LineProtocolError:
                bad += 1
    if bad:
        log.warning("%d unreadable line(s) in %s skipped", bad, directory)
    _say_damaged(directory, damaged)


def spool_points_once(directory: Path, start: int, end: int, measurements: tuple[str, ...],
                      series: Callable[[Line], Hashable]) -> Iterator[Line]:
    """The points of `measurements` in the local history from `start` to `end`, streamed in the order written,
    each `series`' point of a second once: a copied batch, or a cycle written again on the same second after the
    clock was stepped back, counts once, the first written (a backtest replaying a copied batch counted its
    hours twice: trial ZH). `from_spool`, which sums rather than streams, keeps InfluxDB's last write instead:
    the two differ only for a second written twice with other values. Memory: the series seen of each second
    that a later batch writes too, until that batch is read (a first pass finds the last batch of each second)."""
    damaged: list[str] = []
    _skip_strays(directory)
    batches, last_batch = _last_batch_of_each_second(directory, start, end, damaged, measurements)
    seen: dict[int, set[Hashable]] = {}  # second -> its series read so far, while a later batch writes it too
    closing: dict[int, list[int]] = {}  # batch -> the seconds in `seen` it is the last to write
    bad = 0
    for batch, texts in _batch_lines(batches, start, measurements):
        for text in texts:
            try:
                p = parse_line(text)
            except LineProtocolError:
                bad += 1
                continue
            if not start <= p.time <= end:
                continue
            read = seen.get(p.time)
            if read is None and last_batch.get(p.time, batch.seq) == batch.seq:
                yield p  # (no other batch writes this second: nothing to remember)
                continue
            if read is None:
                read = seen[p.time] = set()
                closing.setdefault(last_batch[p.time], []).append(p.time)
            key = series(p)
            if key not in read:
                read.add(key)
                yield p
        for second in closing.pop(batch.seq, ()):
            del seen[second]
    if bad:
        log.warning("%d unreadable line(s) in %s skipped", bad, directory)
    _say_damaged(directory, damaged)


def _skip_strays(directory: Path) -> None:
    for name in strays(directory):
        log.warning("%s in %s is named like a spool file but is not a regular file: skipped", name, directory)
    for name in misnumbered(directory):
        log.warning("%r in %s is named like a spool batch but not numbered as the spool numbers them (16 digits): "
                    "skipped", name, directory)  # (%r: a name may hold a newline)


def _say_damaged(directory: Path, damaged: list[str]) -> None:
    if damaged:
        log.warning("%d damaged batch(es) in %s, skipped: %s", len(damaged), directory,
                    ", ".join(damaged[:10]) + (f", and {len(damaged) - 10} more" if len(damaged) > 10 else ""))


def _batch_lines(batches: list[Batch], start: int, measurements: tuple[str, ...],
                 damaged: list[str] | None = None) -> Iterator[tuple[Batch, list[str]]]:
    """Each batch written since `start`, with its lines (of these measurements, when given); a damaged one
    (collector/spool_files.py) with the whole lines before its damage, and named in `damaged`."""
    prefixes = tuple(m + sep for m in measurements for sep in (",", " "))
    for batch in batches:
        try:
            if batch.mtime < start:
                continue
            texts = batch.read()
        except FileNotFoundError:  # delivered or trimmed while we read: skip it
            continue
        except DamagedBatch as e:  # one damaged file costs that file (but the whole lines before a cut)
            if damaged is not None:
                kept = f"; its {len(e.lines)} whole line(s) before the cut read" if e.lines else ""
                damaged.append(f"{batch.path.name} ({e.reason}{kept})")
            texts = e.lines
        yield batch, [text for text in texts if text.startswith(prefixes)] if prefixes else texts
