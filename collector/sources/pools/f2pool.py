"""F2Pool (FPPS): its API v2 as its documentation defines it (docs/pools.md, "F2Pool").

    POST /hash_rate/worker/list        per worker (the part after the dot): hash_rate (accepted),
                                       h1_stale_hash_rate (rejected), h24_delay_hash_rate (delayed),
                                       local_hash_rate (what the miner says it hashes), H/s
    POST /assets/transactions/list     type all: one `revenue` row per settled UTC day
                                       (mining_extra.mining_date, pps_fee_rate), `payout` rows
    POST /assets/balance               estimated_today_income: today's running credit (partial)

POST only, JSON bodies naming `currency` and `mining_user_name`; the token in `F2P-API-SECRET`.
Errors come as `{"code": ..., "msg": "error_type: description"}`. Amounts are BTC, times unix seconds.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from collector.sources.pools.base import PoolSource, paced, worker
from collector.sources.pools.client import PoolReplyError
from collector.sources.pools.reply import arr, key, num, obj, opt_num, text, unix_time, utc_day
from models.pool import DayStatus, PoolDay, PoolKind, PoolWorker

HS = 1e-12  # H/s -> TH/s
CURRENCY = "bitcoin"


def _reply(value: Any, what: str, wanted: str) -> dict[str, Any]:
    reply = obj(value, what)
    if wanted not in reply and "msg" in reply:
        raise PoolReplyError(f"{what}: F2Pool says {str(reply.get('code'))[:12]} {str(reply['msg'])[:200]!r}")
    return reply


class F2PoolSource(PoolSource):
    kind = PoolKind.F2POOL

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"F2P-API-SECRET": token}

    def _body(self, **more: Any) -> dict[str, Any]:
        return {"currency": CURRENCY, "mining_user_name": self.account, **more}

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        reply = _reply(await self.client.post("/hash_rate/worker/list", self._body()), "worker/list", "workers")
        out = []
        async for i, raw in paced(enumerate(arr(key(reply, "workers", "worker/list"), "workers"))):
            where = f"workers[{i}]"
            info = obj(key(obj(raw, where), "hash_rate_info", where), f"{where}.hash_rate_info")
            name = text(key(info, "name", where), f"{where}.name")
            where = f"workers[{name[:60]!r}]"
            share = raw.get("last_share_at")
            status = raw.get("status")
            out.append(worker(
                self.full_name(name),
                hashrate_ths=num(key(info, "hash_rate", where), f"{where}.hash_rate", scale=HS),
                hashrate_24h_ths=opt_num(info, "h24_hash_rate", where, scale=HS),
                reported_hashrate_ths=opt_num(info, "local_hash_rate", where, scale=HS),
                rejected_ths=opt_num(info, "h1_stale_hash_rate", where, scale=HS),
                stale_ths=opt_num(info, "h24_delay_hash_rate", where, scale=HS),
                last_share=None if share is None else unix_time(share, f"{where}.last_share_at", now),
                state=None if status is None else {0: "online", 1: "offline", 2: "dead"}.get(
                    int(num(status, f"{where}.status")), "unknown")))
        return out

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        start = datetime.combine(days[0], datetime.min.time(), UTC)
        reply = _reply(await self.client.post("/assets/transactions/list", self._body(
            type="all", start_time=int(start.timestamp()), end_time=int(now.timestamp()) + 1)),
            "transactions/list", "transactions")
        credited: dict[date, tuple[float, float | None]] = {}
        paid: dict[date, float] = {}
        for i, raw in enumerate(arr(key(reply, "transactions", "transactions/list"), "transactions")):
            where = f"transactions[{i}]"
            row = obj(raw, where)
            kind = row.get("type")
            if kind == "revenue":
                extra = obj(key(row, "mining_extra", where), f"{where}.mining_extra")
                day = utc_day(key(extra, "mining_date", where), f"{where}.mining_extra.mining_date", now)
                amount = num(key(row, "changed_balance", where), f"{where}.changed_balance")
                rate = opt_num(extra, "pps_fee_rate", f"{where}.mining_extra")
                before, _ = credited.get(day, (0.0, None))
                credited[day] = (before + amount, rate)
            elif kind == "payout":
                extra = obj(row.get("payout_extra") or {}, f"{where}.payout_extra")
                at = unix_time(extra.get("paid_time") or key(row, "created_at", where), f"{where}.paid_time", now)
                value = extra.get("value")
                amount = num(value, f"{where}.payout_extra.value") if value is not None else abs(
                    num(key(row, "changed_balance", where), f"{where}.changed_balance", signed=True))
                if at is not None:
                    paid[at.date()] = paid.get(at.date(), 0.0) + amount
        out = []
        for day, (amount, rate) in credited.items():
            if day in days:
                usable = rate if rate is not None and 0 <= rate < 1 else None
                fee = amount * usable / (1 - usable) if usable is not None else None
                out.append(PoolDay(day=day, status=DayStatus.CLOSED, credited_btc=amount, fee_rate=usable, fee_btc=fee,
                                   payouts_btc=paid.get(day, 0.0)))
        today = days[-1]
        if today not in credited:
            balance = obj(key(_reply(await self.client.post("/assets/balance", self._body()), "balance", "balance_info"),
                              "balance_info", "balance"), "balance_info")
            out.append(PoolDay(day=today, status=DayStatus.PARTIAL, payouts_btc=paid.get(today),
                               credited_btc=num(key(balance, "estimated_today_income", "balance_info"),
                                                "balance_info.estimated_today_income")))
        return out
