"""OCEAN (TIDES): its public API v1 as its documentation lists it (docs/pools.md, "OCEAN").

    GET /user_hashrate_full/<address>                  per worker (the part after the dot): hashrate_300s, H/s
    GET /earnpay/<address>/<first day>/<day after>     per pool block: satoshis earned and fees; payouts

No token: everything is public by the payout address. Every answer is an envelope, `{"result": ...}`
or `{"error": "..."}` whatever the HTTP status, so the envelope is read, not only the status.

TIDES pays per pool block, for the shares in its window, so a day is never closed the way an FPPS day
is: a credit counts on the UTC day of its block (as OCEAN's monthly reports count it), and a day is
closed once a block after its end has paid this address; until then it is partial.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from collector.sources.pools.base import PoolSource, paced, worker
from collector.sources.pools.client import PoolReplyError
from collector.sources.pools.reply import arr, iso_time, key, num, obj, opt_num, unix_time
from models.pool import DayStatus, PoolDay, PoolKind, PoolWorker

WINDOW_S = 300  # hashrate_300s
HS = 1e-12  # H/s -> TH/s
SAT = 1e-8


def _result(reply: Any, what: str) -> Any:
    envelope = obj(reply, what)
    if "error" in envelope:
        raise PoolReplyError(f"{what}: OCEAN says {str(envelope['error'])[:200]!r}")
    return key(envelope, "result", what)


def _time(value: Any, where: str, now: datetime) -> datetime | None:
    """OCEAN's times: unix seconds, or ISO 8601 without a zone (UTC)."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        return unix_time(value, where, now)
    return iso_time(value, where, now)


class OceanSource(PoolSource):
    kind = PoolKind.OCEAN

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        result = obj(_result(await self.client.get(f"/user_hashrate_full/{quote(self.account, safe='')}"),
                             "user_hashrate_full"), "user_hashrate_full.result")
        workers = obj(key(result, "workers", "result"), "result.workers")
        out = []
        async for name, raw in paced(workers.items()):
            where = f"workers[{name[:60]!r}]"
            entries = arr(raw, where)
            if not entries:
                raise PoolReplyError(f"{where}: no hashrate entry")
            w = obj(entries[0], f"{where}[0]")
            share = w.get("lastest_share_ts")  # sic: OCEAN's spelling
            out.append(worker(
                self.full_name(name),
                hashrate_ths=num(key(w, "hashrate_300s", where), f"{where}.hashrate_300s", scale=HS), window_s=WINDOW_S,
                hashrate_24h_ths=opt_num(w, "hashrate_86400s", where, scale=HS),
                last_share=None if share is None else _time(share, f"{where}.lastest_share_ts", now)))
        return out

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        end = days[-1] + timedelta(days=1)
        result = obj(_result(await self.client.get(
            f"/earnpay/{quote(self.account, safe='')}/{days[0].isoformat()}/{end.isoformat()}"), "earnpay"),
            "earnpay.result")
        net: dict[date, float] = {}
        fees: dict[date, float] = {}
        latest: datetime | None = None
        for i, raw in enumerate(arr(key(result, "earnings", "earnpay"), "earnpay.earnings")):
            where = f"earnings[{i}]"
            row = obj(raw, where)
            at = _time(key(row, "ts", where), f"{where}.ts", now)
            if at is None:
                raise PoolReplyError(f"{where}.ts: no time")
            latest = at if latest is None or at > latest else latest
            day = at.date()
            net[day] = net.get(day, 0.0) + num(key(row, "satoshis_net_earned", where), f"{where}.satoshis_net_earned",
                                               scale=SAT)
            fee = opt_num(row, "fees_colected_satoshis", where, scale=SAT)  # sic: OCEAN's spelling
            fees[day] = fees.get(day, 0.0) + (fee or 0.0)
        paid: dict[date, float] = {}
        for i, raw in enumerate(arr(result.get("payouts", []), "earnpay.payouts")):
            where = f"payouts[{i}]"
            row = obj(raw, where)
            at = _time(key(row, "ts", where), f"{where}.ts", now)
            if at is not None:
                paid[at.date()] = paid.get(at.date(), 0.0) + num(
                    key(row, "total_satoshis_net_paid", where), f"{where}.total_satoshis_net_paid", scale=SAT)
        out = []
        for day in days:
            day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
            closed = latest is not None and latest >= day_end  # a later block has paid: the day's blocks are all in
            credited, fee = net.get(day, 0.0), fees.get(day, 0.0)
            out.append(PoolDay(
                day=day, status=DayStatus.CLOSED if closed else DayStatus.PARTIAL, credited_btc=credited, fee_btc=fee,
                fee_rate=fee / (fee + credited) if fee + credited > 0 else None, payouts_btc=paid.get(day, 0.0)))
        return out
