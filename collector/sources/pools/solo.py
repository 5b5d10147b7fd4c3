"""Solo pools: public-pool's REST API and ckpool's per-user statistics (docs/pools.md).

public-pool (no token; keyed by the payout address):
    GET /client/<address>     workers: name (the part after the dot), hashRate (H/s); several sessions
                              may share a name (summed)
    GET /pool                 blocksFound: {height, minerAddress, ...}; blockHeight (the chain tip)

ckpool, as solo.ckpool.org serves it (one file per user):
    GET /<address>            worker: workername (the full stratum user), hashrate5m ("71.9T": SI text)

A solo miner is paid by the block it finds: the coinbase pays its address, so neither API credits
anything. public-pool lists the blocks its users found, by height only: a block is counted on the UTC day
its height puts it at (the tip's height less ten minutes a block: derived, and flagged so), and its
reward is the network's subsidy and fees (the reconciliation stage). ckpool lists none: its days are
unknown, never zero.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from urllib.parse import quote

from collector.network_revenue import BLOCK_S
from collector.sources.pools.base import PoolSource, worker
from collector.sources.pools.reply import arr, iso_time, key, num, obj, si_hashrate_ths, text, unix_time
from models.pool import DayStatus, PoolDay, PoolKind, PoolWorker



class PublicPoolSource(PoolSource):
    kind = PoolKind.PUBLICPOOL

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        reply = obj(await self.client.get(f"/client/{quote(self.account, safe='')}"), "client")
        sums: dict[str, float] = {}
        seen: dict[str, datetime | None] = {}
        for i, raw in enumerate(arr(key(reply, "workers", "client"), "client.workers")):
            where = f"workers[{i}]"
            w = obj(raw, where)
            name = text(key(w, "name", where), f"{where}.name")
            sums[name] = sums.get(name, 0.0) + num(key(w, "hashRate", where), f"{where}.hashRate", scale=1e-12)
            last = w.get("lastSeen")
            at = None if last is None else iso_time(last, f"{where}.lastSeen", now)
            if at is not None and (seen.get(name) is None or at > seen[name]):  # type: ignore[operator]
                seen[name] = at
            seen.setdefault(name, None)
        return [worker(self.full_name(name), hashrate_ths=ths, window_s=600, last_share=seen[name])
                for name, ths in sums.items()]

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        reply = obj(await self.client.get("/pool"), "pool")
        tip = num(key(reply, "blockHeight", "pool"), "pool.blockHeight")
        blocks: dict[date, int] = {}
        for i, raw in enumerate(arr(key(reply, "blocksFound", "pool"), "pool.blocksFound")):
            where = f"blocksFound[{i}]"
            row = obj(raw, where)
            if row.get("minerAddress") != self.account:
                continue
            depth = max(0.0, tip - num(key(row, "height", where), f"{where}.height"))
            day = (now - timedelta(seconds=depth * BLOCK_S)).date()  # (a block's age from its depth below the tip)
            blocks[day] = blocks.get(day, 0) + 1
        today = days[-1]
        return [PoolDay(day=day, status=DayStatus.PARTIAL if day == today else DayStatus.CLOSED, blocks=blocks.get(day, 0))
                for day in days]


class CkpoolSource(PoolSource):
    kind = PoolKind.CKPOOL
    earnings_published = False

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        reply = obj(await self.client.get(f"/{quote(self.account, safe='')}"), "user")
        out = []
        for i, raw in enumerate(arr(key(reply, "worker", "user"), "user.worker")):
            where = f"worker[{i}]"
            w = obj(raw, where)
            name = text(key(w, "workername", where), f"{where}.workername")
            share = w.get("lastshare")
            out.append(worker(
                name, hashrate_ths=si_hashrate_ths(key(w, "hashrate5m", where), f"{where}.hashrate5m"), window_s=300,
                hashrate_24h_ths=si_hashrate_ths(w["hashrate1d"], f"{where}.hashrate1d") if "hashrate1d" in w else None,
                last_share=None if share is None else unix_time(share, f"{where}.lastshare", now)))
        return out

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        """No request: ckpool publishes no credit. The days are there so the pool-side part of each
        worker's day (over-reporting, rejects) is reconciled; the credit stays unknown, never zero."""
        today = days[-1]
        return [PoolDay(day=day, status=DayStatus.PARTIAL if day == today else DayStatus.CLOSED) for day in days]
