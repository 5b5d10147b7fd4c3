"""A cycle as InfluxDB line protocol, in the layout models/schema.py defines.

    miner        one point per miner per cycle
    miner_board  one point per hashboard per cycle
    cost         MINER_COST_FIELDS per miner (scope miner); every figure per site and fleet
    network      difficulty, subsidy, fees, BTC price, hashprice, their ages
    collector    the service's own health per cycle
    pool         pool accounts every cycle, pool workers each time their pool is read
    pool_day     the reconciliation of a UTC day (worker, account, site), at the day's 00:00 UTC

The per-miner points (~5 a miner, ~50,000 a cycle at 10,000 miners) go through a `Shape` each; the
cycle's few others through `encode`.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timezone
from typing import TYPE_CHECKING

from collector.line_protocol import Shape, encode, seconds
from collector.redact import redact_url
from collector.stages.cost_engine import network_hashprice, network_subsidy_btc
from models import CostSample, MinerSample, NetworkState
from models import schema
from models.pool import DayStatus
from models.reconciliation import AccountDay, Breakdown, PoolReport, SiteDay, WorkerDay

if TYPE_CHECKING:
    from collector.cycle import Cycle, MinersPart


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
    spool_lost: int = 0, shard: str | None = None, counters: Mapping[str, int] | None = None,
) -> str:
    """`spool_rejected`: lines InfluxDB refused (kept as .lp.rejected); `spool_lost`: lines neither stored
    nor delivered (a full disk); `spool_dropped`: batches dropped for the disk budget or for room;
    `counters`: the sources' own (models.schema.COLLECTOR names them; others are not written)."""
    fields = schema.COLLECTOR.fields
    return encode(schema.COLLECTOR.name, {"site": site, "collector_shard": shard}, {
        "poll_duration_s": float(poll_duration_s), "miners_polled": int(miners_polled),
        "miners_failed": int(miners_failed), "points_written": int(points_written),
        "spool_depth": int(spool_depth), "spool_dropped": int(spool_dropped), "spool_rejected": int(spool_rejected),
        "spool_lost_lines": int(spool_lost),
        **{name: int(value) for name, value in (counters or {}).items() if fields.get(name) is int},
    }, seconds(ts))


MINER_COST = Shape(schema.COST.name, ("site", "scope", "miner", "model"), {
    **dict.fromkeys(schema.MINER_COST_FIELDS, float), "stale": float, "incomplete": float, "power_meter_gap_w": float})
_MINER_COST_READINGS = operator.attrgetter(*schema.MINER_COST_FIELDS)


def miner_cost_point(cost: CostSample, ts: int, meter_gap_w: float | None = None, model: str | None = None) -> str:
    return MINER_COST.line((cost.site, cost.scope.value, cost.miner, model), (
        *_MINER_COST_READINGS(cost), 1.0 if cost.stale_inputs else 0.0, 1.0 if cost.missing_inputs else 0.0,
        meter_gap_w), ts)


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


def _breakdown(figures: Breakdown) -> dict[str, float | None]:
    return {name: getattr(figures, name) for name in schema.POOL_DAY_BREAKDOWN}


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def pool_day_points(site: str, account: AccountDay) -> list[str]:
    """An account's day and each of its workers', at the day's 00:00 UTC."""
    ts = _midnight(account.day)
    closed = account.status is DayStatus.CLOSED
    common = {"status": account.status.value, "closed": _flag(closed)}
    lines = [encode(schema.POOL_DAY.name, {"site": site, "pool": account.pool, "scope": "account"}, {
        **_breakdown(account), **common, "derived": _flag(account.reward_estimated), "fee_rate": account.fee_rate,
        "payouts_btc": account.payouts_btc, "blocks": None if account.blocks is None else float(account.blocks),
        "complete": _flag(account.credit_published)}, ts)]
    for worker in account.workers:
        lines.append(encode(schema.POOL_DAY.name, {"site": site, "pool": account.pool, "scope": "worker",
                                                   "worker": worker.worker}, _worker_day_fields(worker, common), ts))
    return [line for line in lines if line]


def _worker_day_fields(worker: WorkerDay, common: dict[str, float | str]) -> dict[str, float | str | None]:
    return {**_breakdown(worker), **common, "derived": _flag(worker.credit_derived), "coverage": worker.coverage,
            "reported_ths": worker.reported_ths, "pool_ths": worker.pool_ths, "over_report_pct": worker.over_report_pct,
            "over_reporting": _flag(worker.over_reporting)}


def site_day_point(day: SiteDay) -> str:
    ts = _midnight(day.day)
    return encode(schema.POOL_DAY.name, {"site": day.site, "scope": "site"}, {
        **_breakdown(day), "status": day.status.value, "closed": _flag(day.status is DayStatus.CLOSED),
        "complete": _flag(day.complete), "coverage": day.coverage, "expected_net_btc": day.expected_net_btc,
        "all_in_usd": day.all_in_usd, "cash_usd": day.cash_usd, "power_usd": day.power_usd,
        "realized_all_in_cost_per_btc": day.realized_all_in_cost_per_btc,
        "realized_cash_cost_per_btc": day.realized_cash_cost_per_btc,
        "realized_energy_cost_per_btc": day.realized_energy_cost_per_btc,
        "expected_all_in_cost_per_btc": day.expected_all_in_cost_per_btc}, ts)


def _midnight(day: date) -> int:
    """A UTC day's first second: a day's point is rewritten in place as its figures change."""
    return int(datetime.combine(day, time(), tzinfo=timezone.utc).timestamp())


POOL_WORKER = Shape(schema.POOL.name, ("site", "pool", "scope", "worker"), {
    name: schema.POOL.fields[name] for name in (
        "hashrate_ths", "reported_hashrate_ths", "hashrate_ratio", "pool_reported_hashrate_ths", "rejected_ths",
        "stale_ths", "last_share_age_s", "miners", "matched", "state")})


def pool_lines(report: PoolReport, site: str) -> list[str]:
    """Pool accounts (every cycle), workers read anew, days reconciled this cycle."""
    ts = seconds(report.ts)
    lines = []
    for status in report.pools:
        read = status.workers is not None  # stale or never read: the flag and the age, no figures
        lines.append(encode(schema.POOL.name, {"site": site, "pool": status.pool, "scope": "account"}, {
            "hashrate_ths": status.hashrate_ths, "reported_hashrate_ths": status.reported_hashrate_ths,
            "age_s": status.age_s, "stale": _flag(status.stale),
            "workers": float(status.workers) if read else None,
            "workers_unmatched": float(report.matching.workers_unmatched.get(status.pool, 0)) if read else None,
            "error": status.error}, ts))
    if any(status.workers is not None for status in report.pools):
        lines.append(encode(schema.POOL.name, {"site": site, "scope": "site"}, {
            "miners_unmatched": float(report.matching.miners_unmatched),
            "workers_unmatched": float(sum(report.matching.workers_unmatched.values()))}, ts))
    for w in report.workers_now:  # up to one a miner, each time a pool is read: through a Shape
        reported = w.reported_hashrate_ths
        ratio = w.hashrate_ths / reported if w.hashrate_ths is not None and reported else None
        lines.append(POOL_WORKER.line((site, w.pool, "worker", w.worker), (
            w.hashrate_ths, reported, ratio, w.pool_reported_hashrate_ths, w.rejected_ths, w.stale_ths,
            w.last_share_age_s, float(len(w.miners)), _flag(bool(w.miners)), w.state), ts))
    for account in report.days:
        lines += pool_day_points(site, account)
    lines += [site_day_point(day) for day in report.sites]
    return [line for line in lines if line]


def realized_cost_point(last: SiteDay, ts: datetime, shard: str | None = None) -> str:
    """The realized figures of the last closed day on the site's `cost` point (same series and time:
    InfluxDB keeps them as one row)."""
    end = _midnight(last.day) + 86_400
    return encode(schema.COST.name, {"site": last.site, "scope": "site", "collector_shard": shard}, {
        "realized_all_in_cost_per_btc": last.realized_all_in_cost_per_btc,
        "realized_cash_cost_per_btc": last.realized_cash_cost_per_btc,
        "realized_energy_cost_per_btc": last.realized_energy_cost_per_btc,
        "expected_all_in_cost_per_btc_last_day": last.expected_all_in_cost_per_btc,
        "credited_btc_last_day": last.credited_btc, "expected_net_btc_last_day": last.expected_net_btc,
        "all_in_usd_last_day": last.all_in_usd, "last_day_age_s": max(0.0, ts.timestamp() - end)}, seconds(ts))


def part_lines(part: MinersPart) -> list[str]:
    """A slice of a cycle's miners: their miner and board points and their cost points."""
    lines = fleet_lines(part.samples)
    if part.costs is not None:
        ts, gaps = seconds(part.ts), part.metered_gap_w
        models = {sample.miner: sample.model for sample in part.samples}
        lines += [miner_cost_point(c, ts, gaps.get(c.miner or ""), models.get(c.miner or "")) for c in part.costs]
    return lines


def cycle_lines(cycle: Cycle, points_before: int = 0, spool_depth: int = 0,
                spool_dropped: int = 0, spool_rejected: int = 0, spool_lost: int = 0) -> list[str]:
    """The end of a cycle: site and fleet cost, network, and the collector's own health.
    `points_before`: the points its parts wrote (collector.points_written counts the whole cycle)."""
    lines = []
    if cycle.cost is not None:
        lines += [rollup_cost_point(cycle.cost.site, cycle.ts, cycle.shard),
                  rollup_cost_point(cycle.cost.fleet, cycle.ts, cycle.shard)]
    if cycle.network is not None:
        lines.append(encode(schema.NETWORK.name, {"site": cycle.site}, network_fields(cycle.network, cycle.ts),
                            seconds(cycle.ts)))
    report = cycle.pool_report
    if report is not None:
        # Before the collector point: a cycle's last line carries its own time (Spool.newest_timestamp);
        # pool_day points carry their day's.
        lines += pool_lines(report, cycle.site)
        if report.last_closed is not None and cycle.cost is not None:
            lines.append(realized_cost_point(report.last_closed, cycle.ts, cycle.shard))
    lines.append(collector_point(
        site=cycle.site, ts=cycle.ts, poll_duration_s=cycle.poll_s, miners_polled=len(cycle.samples),
        miners_failed=cycle.failed, points_written=points_before + len(lines) + 1, spool_depth=spool_depth,
        spool_dropped=spool_dropped, spool_rejected=spool_rejected, spool_lost=spool_lost, shard=cycle.shard,
        counters=cycle.counters,
    ))
    return lines
