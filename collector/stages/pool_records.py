"""The pool reconciliation's figures as Records for the sinks (measurements `pool`, `pool_day` and the
realized cost per BTC on the site's `cost` point; their layout is in models/schema.py).

    pool         pool accounts every cycle, pool workers each time their pool is read
    pool_day     the reconciliation of a UTC day (worker, account, site), at the day's 00:00 UTC
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from collector.cycle import Record
from models import schema
from models.pool import DayStatus
from models.reconciliation import AccountDay, Breakdown, PoolReport, SiteDay, WorkerDay


def _breakdown(figures: Breakdown) -> dict[str, float | None]:
    return {name: getattr(figures, name) for name in schema.POOL_DAY_BREAKDOWN}


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


def account_day_records(site: str, account: AccountDay) -> list[Record]:
    """An account's day and each of its workers', at the day's 00:00 UTC."""
    ts = _midnight(account.day)
    closed = account.status is DayStatus.CLOSED
    common = {"status": account.status.value, "closed": _flag(closed)}
    records = [Record(schema.POOL_DAY, {"site": site, "pool": account.pool, "scope": "account"}, {
        **_breakdown(account), **common, "derived": _flag(account.reward_estimated), "fee_rate": account.fee_rate,
        "payouts_btc": account.payouts_btc, "blocks": None if account.blocks is None else float(account.blocks),
        "complete": _flag(account.credit_published)}, ts)]
    for worker in account.workers:
        records.append(Record(schema.POOL_DAY, {"site": site, "pool": account.pool, "scope": "worker",
                                                "worker": worker.worker}, _worker_day_fields(worker, common), ts))
    return records


def _worker_day_fields(worker: WorkerDay, common: dict[str, float | str]) -> dict[str, float | str | None]:
    return {**_breakdown(worker), **common, "derived": _flag(worker.credit_derived), "coverage": worker.coverage,
            "reported_ths": worker.reported_ths, "pool_ths": worker.pool_ths, "over_report_pct": worker.over_report_pct,
            "over_reporting": _flag(worker.over_reporting)}


def site_day_record(day: SiteDay) -> Record:
    ts = _midnight(day.day)
    return Record(schema.POOL_DAY, {"site": day.site, "scope": "site"}, {
        **_breakdown(day), "status": day.status.value, "closed": _flag(day.status is DayStatus.CLOSED),
        "complete": _flag(day.complete), "coverage": day.coverage, "expected_net_btc": day.expected_net_btc,
        "all_in_usd": day.all_in_usd, "cash_usd": day.cash_usd, "power_usd": day.power_usd,
        "realized_all_in_cost_per_btc": day.realized_all_in_cost_per_btc,
        "realized_cash_cost_per_btc": day.realized_cash_cost_per_btc,
        "realized_energy_cost_per_btc": day.realized_energy_cost_per_btc,
        "expected_all_in_cost_per_btc": day.expected_all_in_cost_per_btc}, ts)


def _midnight(day: date) -> datetime:
    """A UTC day's first second: a day's point is rewritten in place as its figures change."""
    return datetime.combine(day, time(), tzinfo=timezone.utc)


def pool_records(report: PoolReport, site: str) -> list[Record]:
    """Pool accounts (every cycle), workers read anew, days reconciled this cycle."""
    ts = report.ts
    records = []
    for status in report.pools:
        read = status.workers is not None  # stale or never read: the flag and the age, no figures
        records.append(Record(schema.POOL, {"site": site, "pool": status.pool, "scope": "account"}, {
            "hashrate_ths": status.hashrate_ths, "reported_hashrate_ths": status.reported_hashrate_ths,
            "age_s": status.age_s, "stale": _flag(status.stale),
            "workers": float(status.workers) if read else None,
            "workers_unmatched": float(report.matching.workers_unmatched.get(status.pool, 0)) if read else None,
            "error": status.error}, ts))
    if any(status.workers is not None for status in report.pools):
        records.append(Record(schema.POOL, {"site": site, "scope": "site"}, {
            "miners_unmatched": float(report.matching.miners_unmatched),
            "workers_unmatched": float(sum(report.matching.workers_unmatched.values()))}, ts))
    for w in report.workers_now:  # up to one a miner and MAX_LISTED unmatched, each time a pool is read
        reported = w.reported_hashrate_ths
        ratio = w.hashrate_ths / reported if w.hashrate_ths is not None and reported else None
        records.append(Record(schema.POOL, {"site": site, "pool": w.pool, "scope": "worker", "worker": w.worker}, {
            "hashrate_ths": w.hashrate_ths, "reported_hashrate_ths": reported, "hashrate_ratio": ratio,
            "pool_reported_hashrate_ths": w.pool_reported_hashrate_ths, "rejected_ths": w.rejected_ths,
            "stale_ths": w.stale_ths, "last_share_age_s": w.last_share_age_s, "miners": float(len(w.miners)),
            "matched": _flag(bool(w.miners)), "state": w.state}, ts))
    for account in report.days:
        records += account_day_records(site, account)
    records += [site_day_record(day) for day in report.sites]
    return records


def realized_cost_record(last: SiteDay, ts: datetime, shard: str | None = None) -> Record:
    """The realized figures of the last closed day on the site's `cost` point (same series and time:
    InfluxDB keeps them as one row)."""
    end = _midnight(last.day).timestamp() + 86_400
    return Record(schema.COST, {"site": last.site, "scope": "site", "collector_shard": shard}, {
        "realized_all_in_cost_per_btc": last.realized_all_in_cost_per_btc,
        "realized_cash_cost_per_btc": last.realized_cash_cost_per_btc,
        "realized_energy_cost_per_btc": last.realized_energy_cost_per_btc,
        "expected_all_in_cost_per_btc_last_day": last.expected_all_in_cost_per_btc,
        "credited_btc_last_day": last.credited_btc, "expected_net_btc_last_day": last.expected_net_btc,
        "all_in_usd_last_day": last.all_in_usd, "last_day_age_s": max(0.0, ts.timestamp() - end)}, ts)
