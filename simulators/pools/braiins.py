"""Braiins Pool's monitoring API (FPPS), as documented in Braiins Academy "Braiins Pool > Monitoring"
(docs/pools.md has the sources).

Paths (GET, coin `btc`; with or without the trailing slash):
    /stats/json/btc/                                  pool stats
    /accounts/profile/json/btc/                       account: hashrate windows, worker states, rewards
    /accounts/workers/json/btc/                       per worker, keyed by the full `account.worker`
    /accounts/rewards/json/btc?from=YYYY-MM-DD&to=    closed UTC days (default: the last 90)
    /accounts/hash_rate_daily/json/<group>/btc        per closed day: hashrate and shares
    /accounts/block_rewards/json/btc?from=&to=        FPPS pays no per-block rewards: empty
    /accounts/payouts/json/btc?from=&to=              no payouts simulated: empty lists

Auth: the access-profile token in `Pool-Auth-Token` or `X-Pool-Auth-Token` (academy), or the older
`SlushPool-Auth-Token` / `X-SlushPool-Auth-Token` (help centre). Missing or wrong: 403 text/plain
(observed live by a public exporter; the pool does not document its error body).
Units: hashrates in the unit `hash_rate_unit` names (Gh/s here); BTC as 8-decimal strings.
"""

from __future__ import annotations

from simulators.http import HttpRequest, HttpResponse
from simulators.pools.common import TokenAuth, btc_text, json_ok, parse_day, plain
from simulators.pools.engine import DAY_S, PoolEngine, PoolWorker

GH = 1000.0  # TH/s -> Gh/s
AUTH_HEADERS = ("Pool-Auth-Token", "X-Pool-Auth-Token", "SlushPool-Auth-Token", "X-SlushPool-Auth-Token")
DEFAULT_DAYS = 90


def _gh(ths: float) -> float:
    return round(ths * GH, 4)


class BraiinsApi:
    kind = "braiins"
    scheme = "fpps"
    base_path = ""

    def __init__(self, engine: PoolEngine, token: str) -> None:
        self.engine = engine
        self.auth = TokenAuth(token, AUTH_HEADERS)

    def auth_state(self, request: HttpRequest) -> str:
        return self.auth.state(request)

    def error(self, status: int, message: str) -> HttpResponse:
        return plain(status, message)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return plain(405, "Method Not Allowed")
        parts = [p for p in request.path.split("/") if p]
        if self.auth.state(request) != "ok":
            return plain(403, "Forbidden")
        if parts[-1:] != ["btc"]:
            return plain(404, "Not Found")
        route = parts[:-1]
        if route == ["stats", "json"]:
            return json_ok({"btc": self._pool_stats()})
        if len(route) >= 3 and route[0] == "accounts" and route[-1] == "json":
            return self._accounts(route[1], request)
        if len(route) == 4 and route[:2] == ["accounts", "hash_rate_daily"] and route[2] == "json":
            return json_ok({"btc": self._daily_hashrate()})
        return plain(404, "Not Found")

    def _accounts(self, what: str, request: HttpRequest) -> HttpResponse:
        if what == "profile":
            return json_ok({"username": self.engine.account, "btc": self._profile()})
        if what == "workers":
            return json_ok({"btc": {"workers": {w.name: self._worker(w) for w in self.engine.workers.values()}}})
        if what in ("rewards", "block_rewards", "payouts"):
            try:
                days = self._range(request)
            except ValueError:
                return plain(400, "Bad Request: from/to must be YYYY-MM-DD")
            if what == "rewards":
                return json_ok({"btc": {"daily_rewards": self._daily_rewards(days)}})
            if what == "block_rewards":
                return json_ok({"btc": {"block_rewards": []}})
            return json_ok({"onchain": [], "lightning": []})
        return plain(404, "Not Found")

    # -- bodies ------------------------------------------------------------------------------------

    def _pool_stats(self) -> dict[str, object]:
        e = self.engine
        now = e.now()
        names = list(e.workers)
        rate = {w: sum(e.rate_ths(n, w) for n in names) for w in (300, 3600, 86400)}
        height = e.network.height + int(now // 600) % 100_000
        reward = e.network.reward_btc
        return {
            "hash_rate_unit": "Gh/s",
            "pool_5m_hash_rate": _gh(rate[300]),
            "pool_60m_hash_rate": _gh(rate[3600]),
            "pool_24h_hash_rate": _gh(rate[86400]),
            "update_ts": int(now),
            "blocks": {
                str(height - i * 7): {
                    "date_found": int(now) - i * 4200 - 600,
                    "mining_duration": 4200,
                    "total_shares": 0,
                    "state": "confirmed" if i >= 2 else "new",
                    "confirmations_left": max(0, 100 - (i * 7 + 1)),
                    "value": btc_text(reward),
                    "user_reward": "0.00000000",  # FPPS: paid per share, not per block
                    "pool_scoring_hash_rate": _gh(rate[3600]),
                }
                for i in range(3)
            },
            # BTC per TH/s per day the pool pays now, before its fee (FPPS rate)
            "fpps_rate": round(1e12 * 86400 * e.network.btc_per_hash(), 8),
        }

    def _profile(self) -> dict[str, object]:
        e = self.engine
        today = e.today()
        closed = e.closed_days()
        names = list(e.workers)
        rate = {w: sum(e.rate_ths(n, w) for n in names) for w in (300, 3600, 86400)}
        yesterday = e.account_day(today - 1)
        today_totals = e.account_day(today)
        states = [self._state(w) for w in e.workers.values()]
        balance = sum(e.account_day(d).credited_btc for d in closed)
        all_time = sum(t.credited_btc for w in e.workers.values() for t in w.days.values())
        remaining = (today + 1) * DAY_S - e.now()
        estimated = today_totals.credited_btc + rate[300] * 1e12 * remaining * e.network.btc_per_hash() * (1 - e.fee)
        return {
            "all_time_reward": btc_text(all_time),
            "hash_rate_unit": "Gh/s",
            "hash_rate_5m": _gh(rate[300]),
            "hash_rate_60m": _gh(rate[3600]),
            "hash_rate_24h": _gh(rate[86400]),
            "hash_rate_yesterday": _gh(yesterday.accepted_ths / DAY_S),
            "low_workers": states.count("low"),
            "off_workers": states.count("off"),
            "ok_workers": states.count("ok"),
            "dis_workers": states.count("dis"),
            "current_balance": btc_text(balance),
            "today_reward": btc_text(today_totals.credited_btc),
            "estimated_reward": btc_text(estimated),
            "shares_5m": sum(e.shares(n, 300) for n in names),
            "shares_60m": sum(e.shares(n, 3600) for n in names),
            "shares_24h": sum(e.shares(n, 86400) for n in names),
            "shares_yesterday": sum(int(e.day_totals(n, today - 1).accepted_ths * 1e12 / (4294967296.0 * w.feed.share_diff))
                                    for n, w in e.workers.items()),
        }

    def _state(self, worker: PoolWorker) -> str:
        """ok / low / off, as the pool's monitoring compares 5-minute hashrate with its alert limit."""
        e = self.engine
        r5, r24 = e.rate_ths(worker.name, 300), e.rate_ths(worker.name, 86400)
        if r5 <= 0:
            return "off"
        return "low" if r24 > 0 and r5 < 0.5 * r24 else "ok"

    def _worker(self, worker: PoolWorker) -> dict[str, object]:
        e, n = self.engine, worker.name
        return {
            "state": self._state(worker),
            "last_share": int(worker.last_share_at),
            "hash_rate_unit": "Gh/s",
            "hash_rate_scoring": _gh(e.rate_ths(n, 3600)),
            "hash_rate_5m": _gh(e.rate_ths(n, 300)),
            "hash_rate_60m": _gh(e.rate_ths(n, 3600)),
            "hash_rate_24h": _gh(e.rate_ths(n, 86400)),
            "shares_5m": e.shares(n, 300),
            "shares_60m": e.shares(n, 3600),
            "shares_24h": e.shares(n, 86400),
        }

    def _range(self, request: HttpRequest) -> range:
        today = self.engine.today()
        first = parse_day(request.query["from"]) if "from" in request.query else today - DEFAULT_DAYS
        last = parse_day(request.query["to"]) if "to" in request.query else today
        return range(first, last + 1)

    def _daily_rewards(self, days: range) -> list[dict[str, object]]:
        e = self.engine
        out = []
        for day in reversed(e.closed_days()):
            if day not in days:
                continue
            totals = e.account_day(day)
            diff = next(iter(e.workers.values())).feed.share_diff if e.workers else 1.0
            shares = int(totals.accepted_ths * 1e12 / (4294967296.0 * diff))
            out.append({
                "date": day * DAY_S,
                "total_reward": btc_text(totals.credited_btc),
                "mining_reward": btc_text(totals.credited_btc),
                "bos_plus_reward": "0.00000000",
                "referral_bonus": "0.00000000",
                "referral_reward": "0.00000000",
                # seen live by a public exporter, not in the documentation's table
                "shares": shares,
                "share_prices": [{"from_ts": day * DAY_S, "to_ts": (day + 1) * DAY_S,
                                  "share_price": f"{totals.credited_btc / shares:.16f}" if shares else "0"}],
                "calculation_date": int((day + 1) * DAY_S + e.settle_delay_s),
            })
        return out

    def _daily_hashrate(self) -> list[dict[str, object]]:
        e = self.engine
        out = []
        for day in reversed(e.closed_days()):
            totals = e.account_day(day)
            diff = next(iter(e.workers.values())).feed.share_diff if e.workers else 1.0
            out.append({"date": day * DAY_S, "hash_rate_unit": "Gh/s",
                        "hash_rate_24h": _gh(totals.accepted_ths / DAY_S),
                        "total_shares": int(totals.accepted_ths * 1e12 / (4294967296.0 * diff))})
        return out
