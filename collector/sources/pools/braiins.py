"""Braiins Pool (FPPS): its monitoring API as Braiins Academy documents it (docs/pools.md, "Braiins Pool").

    GET /accounts/workers/json/btc/                    per worker, keyed by the full `account.worker`
    GET /accounts/rewards/json/btc?from=&to=           closed UTC days (an entry with calculation_date)
    GET /accounts/profile/json/btc/                    today_reward: today's running credit (partial)
    GET /accounts/payouts/json/btc?from=D&to=D         payouts of a day, read once when it closes

The token goes in `Pool-Auth-Token`; the API documents about one request per five seconds as safe
(PoolConfig.min_interval). Hashrates come in the unit `hash_rate_unit` names; BTC as decimal strings.
Credited per day: total_reward less referral_reward (what referring others earned is not this site's
mining; BOS+ fee refunds and referral bonuses are). A day with two rows, or a referral_reward over its
total, is refused (which figure holds is not known), that day only.
"""

from __future__ import annotations

from datetime import date, datetime

from collector.sources.pools.base import PoolSource, paced, worker
from collector.sources.pools.reply import arr, key, num, obj, opt_num, text, unit_ths, unix_time, utc_day
from models.pool import DayStatus, PoolDay, PoolKind, PoolWorker

WINDOW_S = 300  # hash_rate_5m
SAT = 1e-8


class BraiinsSource(PoolSource):
    kind = PoolKind.BRAIINS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._payouts: dict[date, float] = {}  # closed days whose payouts have been read

    def auth_headers(self, token: str) -> dict[str, str]:
        return {"Pool-Auth-Token": token}

    async def read_workers(self, now: datetime) -> list[PoolWorker]:
        reply = obj(await self.client.get("/accounts/workers/json/btc/"), "workers")
        workers = obj(key(obj(key(reply, "btc", "workers"), "workers.btc"), "workers", "workers.btc"), "workers.btc.workers")
        out = []
        async for name, raw in paced(workers.items()):
            where = f"workers[{name[:60]!r}]"
            w = obj(raw, where)
            unit = unit_ths(key(w, "hash_rate_unit", where), f"{where}.hash_rate_unit")
            state = w.get("state")
            out.append(worker(
                name, hashrate_ths=num(key(w, "hash_rate_5m", where), f"{where}.hash_rate_5m", scale=unit),
                window_s=WINDOW_S, hashrate_24h_ths=opt_num(w, "hash_rate_24h", where, scale=unit),
                last_share=unix_time(w["last_share"], f"{where}.last_share", now) if w.get("last_share") is not None
                else None,
                state=None if state is None else text(state, f"{where}.state", max_chars=32)))
        return out

    async def read_days(self, now: datetime, days: list[date]) -> list[PoolDay]:
        reply = obj(await self.client.get("/accounts/rewards/json/btc", {"from": days[0].isoformat(),
                                                                        "to": days[-1].isoformat()}), "rewards")
        rows = arr(key(obj(key(reply, "btc", "rewards"), "rewards.btc"), "daily_rewards", "rewards.btc"),
                   "rewards.btc.daily_rewards")
        out: dict[date, PoolDay] = {}
        refused: set[date] = set()  # a day refused is not read again from the profile either
        for i, raw in enumerate(rows):
            where = f"daily_rewards[{i}]"
            row = obj(raw, where)
            day = utc_day(key(row, "date", where), f"{where}.date", now)
            if day not in days or row.get("calculation_date") is None:
                continue  # outside what was asked, or not calculated yet: not closed
            total = num(key(row, "total_reward", where), f"{where}.total_reward")
            referral = opt_num(row, "referral_reward", where) or 0.0
            if day in out or day in refused:  # which row holds is not known: neither
                self.refuse("duplicate_day", f"{day} credit", f"two daily_rewards rows for the day ({where})")
                out.pop(day, None)
                refused.add(day)
            elif referral > total:  # a part larger than its whole: the row is wrong, not a zero credit
                self.refuse("implausible_credit", f"{day} credit",
                            f"referral_reward {referral:.8f} over total_reward {total:.8f} BTC ({where})")
                refused.add(day)
            else:
                out[day] = PoolDay(day=day, status=DayStatus.CLOSED, credited_btc=total - referral)
        today = days[-1]
        if today not in out and today not in refused:
            profile = obj(key(obj(await self.client.get("/accounts/profile/json/btc/"), "profile"), "btc", "profile"),
                          "profile.btc")
            out[today] = PoolDay(day=today, status=DayStatus.PARTIAL,
                                 credited_btc=num(key(profile, "today_reward", "profile.btc"), "profile.btc.today_reward"))
        for day, closed in sorted(out.items()):
            if closed.status is DayStatus.CLOSED:
                if day not in self._payouts:
                    self._payouts[day] = await self._payouts_of(day)
                out[day] = closed.model_copy(update={"payouts_btc": self._payouts[day]})
        return list(out.values())

    async def _payouts_of(self, day: date) -> float:
        """Confirmed payouts (on chain and Lightning) the API lists for one day, in BTC."""
        reply = obj(await self.client.get("/accounts/payouts/json/btc", {"from": day.isoformat(), "to": day.isoformat()}),
                    "payouts")
        total = 0.0
        for rail in ("onchain", "lightning"):
            for i, raw in enumerate(arr(reply.get(rail, []), f"payouts.{rail}")):
                where = f"payouts.{rail}[{i}]"
                item = obj(raw, where)
                if item.get("status") == "confirmed":
                    total += num(key(item, "amount_sats", where), f"{where}.amount_sats", scale=SAT)
        return total
