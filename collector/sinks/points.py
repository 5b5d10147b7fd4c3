"""A cycle as InfluxDB line protocol, in the layout models/schema.py defines.

    miner        one point per miner per cycle
    miner_board  one point per hashboard per cycle
    cost         MINER_COST_FIELDS per miner (scope miner); every figure per site and fleet
    network      difficulty, subsidy, fees, BTC price, hashprice, their ages
    collector    the service's own health per cycle
    health       per miner and per open problem per cycle; the site's roll-up and power corrections
    curtailment  the plan (site) and the miners it does not leave running as usual (miner)
    action       what curtailment control did, step by step
    power_price  the power price the cycle used
    and every Record a stage adds to a part or the cycle (`record_line`), in its measurement

The per-miner points (~5 a miner, ~50,000 a cycle at 10,000 miners) go through a `Shape` each; the
cycle's few others through `encode`.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from collector.line_protocol import Shape, encode, seconds
from collector.redact import redact_url
from collector.network_revenue import network_subsidy_btc
from collector.stages.cost_engine import network_hashprice
from models.curtailment import CurtailmentPlan
from models import CostSample, MinerSample, NetworkState
from models import schema
from models.health import MinerHealth, Signal, SiteHealth

if TYPE_CHECKING:
    from collector.cycle import Cycle, MinersPart, Record


log = logging.getLogger(__name__)


def _shape(measurement: schema.Measurement) -> Shape:
    return Shape(measurement.name, measurement.tags, measurement.fields)


MINER = _shape(schema.MINER)
_MINER_READINGS = operator.attrgetter(*MINER.fields[:schema.MINER_SAMPLE_FIELDS])
MINER_BOARD = _shape(schema.MINER_BOARD)
_BOARD_READINGS = operator.attrgetter(*MINER_BOARD.fields)
_BOARD_NAMES = tuple(str(i) for i in range(64))  # board index -> tag text, without str() per board


def miner_points(sample: MinerSample) -> list[str]:
    ts = seconds(sample.ts)
    pool = sample.pool
    errors = sample.errors
    lines = [MINER.line((sample.site, sample.miner, sample.make, sample.model), (
        *_MINER_READINGS(sample), sample.fan_rpm_max,
        pool.accepted if pool else None, pool.rejected if pool else None,
        sample.state.value, int(sample.up), "; ".join(errors)[:512] if errors else None,
        redact_url(pool.url) if pool and pool.url else None, pool.user if pool else None,
    ), ts)]
    for board in sample.boards:
        index = board.index
        name = _BOARD_NAMES[index] if index < len(_BOARD_NAMES) else str(index)
        line = MINER_BOARD.line((sample.site, sample.miner, name), _BOARD_READINGS(board), ts)
        if line:  # a board with no readings at all has no fields and no line
            lines.append(line)
    return lines


def fleet_lines(samples: Iterable[MinerSample]) -> list[str]:
    return [line for sample in samples for line in miner_points(sample)]


def collector_point(
    *, site: str, ts: datetime, poll_duration_s: float, miners_polled: int, miners_failed: int,
    points_written: int, spool_depth: int = 0, spool_dropped: int = 0, spool_rejected: int = 0,
    spool_lost: int = 0, spool_expired: int = 0, shard: str | None = None,
    counters: Mapping[str, int] | None = None, instance: str | None = None,
) -> str:
    """`spool_rejected`: lines InfluxDB refused (kept as .lp.rejected); `spool_lost`: lines neither stored
    nor delivered (a full disk); `spool_dropped`: batches dropped for the disk budget or for room;
    `spool_expired`: batches of the local history deleted past its retention;
    `counters`: the sources' own (models.schema.COLLECTOR names them; others are not written); `instance`:
    the collector process's own id."""
    fields = schema.COLLECTOR.fields
    return encode(schema.COLLECTOR.name, {"site": site, "collector_shard": shard, "instance": instance}, {
        "poll_duration_s": float(poll_duration_s), "miners_polled": int(miners_polled),
        "miners_failed": int(miners_failed), "points_written": int(points_written),
        "spool_depth": int(spool_depth), "spool_dropped": int(spool_dropped), "spool_rejected": int(spool_rejected),
        "spool_lost_lines": int(spool_lost), "spool_expired": int(spool_expired),
        **{name: int(value) for name, value in (counters or {}).items() if fields.get(name) is int},
    }, seconds(ts))


MINER_COST = Shape(schema.COST.name, ("site", "scope", "miner", "model"), {
    **dict.fromkeys(schema.MINER_COST_FIELDS, float), "stale": float, "incomplete": float, "power_meter_gap_w": float,
    "estimated_power_w": float})
_MINER_COST_READINGS = operator.attrgetter(*schema.MINER_COST_FIELDS)


def miner_cost_point(cost: CostSample, ts: int, meter_gap_w: float | None = None, model: str | None = None) -> str:
    return MINER_COST.line((cost.site, cost.scope.value, cost.miner, model), (
        *_MINER_COST_READINGS(cost), 1.0 if cost.stale_inputs else 0.0, 1.0 if cost.missing_inputs else 0.0,
        meter_gap_w, cost.estimated_power_w if cost.miners_estimated else None), ts)


def rollup_cost_point(cost: CostSample, ts: datetime, shard: str | None = None) -> str:
    """A site or fleet point: every figure, tagged with the shard when the site is split over collectors."""
    return encode(schema.COST.name, {**cost.tags(), "collector_shard": shard}, cost.fields(), seconds(ts))


def network_fields(network: NetworkState, now: datetime) -> dict[str, float]:
    """Fields of `network`: the values, derived subsidy and hashprice, ages, stale."""
    out: dict[str, float] = {
        "difficulty": network.difficulty,
        "subsidy_btc": network_subsidy_btc(network),
        "fees_btc_per_block": network.fees_btc_per_block,
        "btc_price_usd": network.btc_price_usd,
        "hashprice_usd_ph_day": network_hashprice(network),
        "stale": 1.0 if network.stale else 0.0,
    }
    if network.height is not None:
        out["height"] = float(network.height)
    for name in ("difficulty", "height", "fees", "btc_price"):
        as_of: datetime | None = getattr(network, f"{name}_as_of")
        if as_of is not None:
            out[f"{name}_age_s"] = (now - as_of).total_seconds()
    return out


def record_line(record: Record, ts: datetime) -> str:
    """A stage's figure in its measurement's layout: tags and fields must be ones models/schema.py defines
    for it (ValueError otherwise: a stage's bug, not data), each field given the schema's type."""
    measurement = record.measurement
    unknown = [k for k in record.tags if k not in measurement.tags] + [
        k for k in record.fields if k not in measurement.fields]
    if unknown:
        raise ValueError(f"{measurement.name}: {', '.join(unknown)} not in models/schema.py")
    types = measurement.fields
    fields = {k: v if v is None or isinstance(v, bool) else types[k](v) for k, v in record.fields.items()}
    return encode(measurement.name, record.tags, fields, seconds(record.ts or ts))


def record_lines(records: Iterable[Record], ts: datetime) -> list[str]:
    """Every record's line; a record the schema does not allow (a stage's bug) is left out and logged,
    so it costs its own figure, never the cycle's other points."""
    lines = []
    for record in records:
        try:
            line = record_line(record, ts)
        except (ValueError, TypeError) as e:
            log.error("a %s figure not written: %s", record.measurement.name, e)
            continue
        if line:
            lines.append(line)
    return lines


_PLACE_TAGS = ("container", "row", "rack")
HEALTH_MINER = Shape(schema.HEALTH.name, ("site", "scope", "miner", "model", *_PLACE_TAGS), {
    name: schema.HEALTH.fields[name] for name in (
        "usd_lost_day", "lost_ths", "severity", "level", "position", "problems", "expected_ths", "profit_usd_day",
        "unprofitable", "chips_dead", "chips_lost_week", "temp_chip_max_c", "main_cause", "power_correction")})
HEALTH_PROBLEM = Shape(schema.HEALTH.name, ("site", "scope", "miner", "model", "cause", "signal", "part",
                                            *_PLACE_TAGS), {
    name: schema.HEALTH.fields[name] for name in (
        "usd_lost_day", "lost_ths", "severity", "level", "position", "value", "limit", "evidence", "address")})
_FAN_SIGNALS = frozenset({Signal.FAN_STOPPED, Signal.FAN_SLOW})


def health_points(site: str, health: MinerHealth, ts: int) -> list[str]:
    """One miner's health point and one point per open problem."""
    place = health.place
    where = (place.container, place.row, place.rack)
    severity = health.severity
    lines = [HEALTH_MINER.line((site, "miner", health.miner, health.model, *where), (
        health.usd_lost_day, health.lost_ths, severity.value if severity else None, severity.level if severity else 0,
        place.position, len(health.problems), health.expected_ths, health.profit_usd_day, int(health.unprofitable),
        health.chips_dead, health.chips_lost_week, health.temp_chip_max_c,
        cause.value if (cause := health.cause) is not None else None, health.power_correction), ts)]
    for p in health.problems:
        part = None if p.board is None else f"{'fan' if p.signal in _FAN_SIGNALS else 'board'}{p.board}"
        lines.append(HEALTH_PROBLEM.line(
            (site, "problem", health.miner, health.model, p.cause.value, p.signal.value, part, *where),
            (p.usd_lost_day, p.lost_ths, p.severity.value, p.severity.level, place.position, p.value, p.limit,
             p.evidence, health.address), ts))
    return lines


def site_health_lines(health: SiteHealth, ts: datetime, shard: str | None = None) -> list[str]:
    """The site's roll-up (counts and dollars by cause) and each model's learned power correction."""
    at = seconds(ts)
    fields: dict[str, float | int | str] = {
        "miners": health.miners, "miners_with_problems": health.miners_with_problems, "problems": health.problems,
        "critical": health.critical, "lost_ths": float(health.lost_ths),
        "unprofitable": health.unprofitable, "chips_dead": float(health.chips_dead),
    }
    if health.usd_lost_day is not None:  # unpriced problems: no dollar fields rather than $0
        fields["usd_lost_day"] = float(health.usd_lost_day)
    if health.measured_pue is not None:
        fields["measured_pue"] = health.measured_pue
    for cause in schema.HEALTH_CAUSES:
        fields[f"problems_{cause}"] = sum(n for c, n in health.by_cause.items() if c.value == cause)
        if health.usd_lost_day is not None:
            fields[f"usd_lost_day_{cause}"] = float(sum(v for c, v in health.usd_by_cause.items() if c.value == cause))
    lines = [encode(schema.HEALTH.name, {"site": health.site, "scope": "site", "collector_shard": shard}, fields, at)]
    for model, (factor, samples, _used) in sorted(health.power_corrections.items()):
        lines.append(encode(schema.HEALTH.name, {"site": health.site, "scope": "model", "model": model,
                                                 "collector_shard": shard},
                            {"power_correction": factor, "power_samples": samples}, at))
    return lines


def part_lines(part: MinersPart) -> list[str]:
    """A slice of a cycle's miners: their miner and board points, their cost and their health points."""
    lines = fleet_lines(part.samples)
    if part.costs is not None:
        ts, gaps = seconds(part.ts), part.metered_gap_w
        models = {sample.miner: sample.model for sample in part.samples}
        lines += [miner_cost_point(c, ts, gaps.get(c.miner or ""), models.get(c.miner or "")) for c in part.costs]
    lines += record_lines(part.records, part.ts)
    if part.health is not None:
        ts = seconds(part.ts)
        for health in part.health:
            if health.report:  # a miner with no problem: now and then (collector/stages/health.py)
                lines += health_points(part.site, health, ts)
    return lines


_CURTAILED = Shape(schema.CURTAILMENT.name, ("site", "scope", "miner"),
                   {name: schema.CURTAILMENT.fields[name] for name in schema.CURTAILMENT_MINER_FIELDS})


def curtailment_lines(plan: CurtailmentPlan) -> list[str]:
    """The plan's site point, a point per miner it advises (asleep, another mode, changed), the power
    price, and control's events."""
    ts = seconds(plan.ts)
    dr = plan.dr_target
    site = encode(schema.CURTAILMENT.name, {"site": plan.site, "scope": "site"}, {
        "price_usd_kwh": plan.price_usd_kwh, "revenue_usd_th_day": plan.revenue_usd_th_day,
        "stale": int(plan.stale), "strategy": plan.strategy, "control_mode": plan.control_mode,
        "killed": int(plan.killed), "miners_planned": plan.miners_planned, "miners_run": plan.miners_run, "miners_sleep": plan.miners_sleep,
        "miners_lower": plan.miners_lower, "changes": plan.changes, "held": plan.held, "deferred": plan.deferred,
        "miners_off_plan": plan.miners_off_plan, "planned_kw": plan.planned_kw, "always_on_kw": plan.always_on_kw, "drawn_kw": plan.drawn_kw, "shed_kw": plan.shed_kw,
        "dr_limit_kw": dr.limit_kw if dr is not None else None, "dr_shed_kw": dr.shed_kw if dr is not None else None,
        "dr_need_kw": plan.dr_need_kw if dr is not None else None, "dr_met": int(plan.dr_met) if dr is not None else None,
        "dr_gap_usd_h": plan.dr_gap_usd_h if dr is not None else None,
        "saved_usd_day": plan.saved_usd_day, "energy_saved_kwh_day": plan.energy_saved_kwh_day,
        "btc_forgone_day": plan.btc_forgone_day, "saved_usd_total": plan.saved_usd_total,
        "energy_saved_kwh_total": plan.energy_saved_kwh_total, "btc_forgone_total": plan.btc_forgone_total,
    }, ts)
    lines = [site, encode(schema.POWER_PRICE.name, {"site": plan.site, "source": plan.price_source},
                          {"usd_per_kwh": plan.price_usd_kwh, "stale": int(plan.price_source == "fallback")}, ts)]
    for a in plan.advice:
        lines.append(_CURTAILED.line((plan.site, "miner", a.miner), (
            a.action, a.key or "sleep", a.reason, a.kw, a.kw_always_on, a.margin_usd_kwh, a.efficiency_j_th,
            a.profit_usd_day, int(a.changed), int(a.held), int(a.dr)), ts))
    for e in plan.events:
        lines.append(encode(schema.ACTION.name, {"site": plan.site, "miner": e.miner, "action": e.action,
                                                  "result": e.result}, {
            "reason": e.reason, "detail": e.detail or None, "command": e.command or None, "host": e.host or None,
            "kw": e.kw, "attempt": e.attempt, "control_mode": e.mode or None}, seconds(e.ts)))
    return [line for line in lines if line]


def cycle_lines(cycle: Cycle, points_before: int = 0, spool_depth: int = 0,
                spool_dropped: int = 0, spool_rejected: int = 0, spool_lost: int = 0,
                instance: str | None = None, spool_expired: int = 0) -> list[str]:
    """The end of a cycle: site and fleet cost, network, and the collector's own health.
    `points_before`: the points its parts wrote (collector.points_written counts the whole cycle)."""
    lines = []
    if cycle.cost is not None:
        lines += [rollup_cost_point(cycle.cost.site, cycle.ts, cycle.shard),
                  rollup_cost_point(cycle.cost.fleet, cycle.ts, cycle.shard)]
    if cycle.health is not None:
        lines += site_health_lines(cycle.health, cycle.ts, cycle.shard)
    if cycle.curtailment is not None:
        lines += curtailment_lines(cycle.curtailment)
    if cycle.network is not None:
        lines.append(encode(schema.NETWORK.name, {"site": cycle.site}, network_fields(cycle.network, cycle.ts),
                            seconds(cycle.ts)))
    # Before the collector point: a cycle's last line carries its own time (Spool.newest_timestamp), and
    # a record may carry another (a pool's day, at its midnight).
    lines += record_lines(cycle.records, cycle.ts)
    lines.append(collector_point(
        site=cycle.site, ts=cycle.ts, poll_duration_s=cycle.poll_s, miners_polled=len(cycle.samples),
        miners_failed=cycle.failed, points_written=points_before + len(lines) + 1, spool_depth=spool_depth,
        spool_dropped=spool_dropped, spool_rejected=spool_rejected, spool_lost=spool_lost,
        spool_expired=spool_expired, shard=cycle.shard,
        counters=cycle.counters, instance=instance,
    ))
    return lines
