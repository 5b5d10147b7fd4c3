"""F2Pool's API v2 (FPPS), as its documentation (api.f2pool.com/v2/doc/en.html) and the OpenAPI
description derived from it define it (docs/pools.md has the sources).

POST only, JSON body, token in the `F2P-API-SECRET` header. Paths used here:
    /v2/hash_rate/info                {currency, mining_user_name} -> {info: HashRateInfo, currency}
    /v2/hash_rate/worker/list         {currency, mining_user_name} -> {workers: [WorkerMiningInfo]}
    /v2/assets/balance                {currency, mining_user_name} -> {balance_info: BalanceInfo}
    /v2/assets/transactions/list      {currency, mining_user_name, type, start_time, end_time}
                                      -> {transactions: [TransactionItem]} (one `revenue` per settled day)

Errors, documented as a uniform shape: `{"code": <ERR_CODE>, "msg": "error_type: description"}`.
The codes and HTTP statuses are not documented; the simulator's are listed in docs/pools.md.
Units: hashrates in H/s; amounts in BTC (floats); times in unix seconds; days are UTC.
"""

from __future__ import annotations

import math

from simulators.http import HttpRequest, HttpResponse, json_response
from simulators.pools.common import TokenAuth
from simulators.pools.engine import DAY_S, PoolEngine, PoolWorker

AUTH_HEADERS = ("F2P-API-SECRET",)
CURRENCY = "bitcoin"
CURRENT_WINDOW_S = 900  # "current hashrate": the simulator averages the last 15 minutes


def _hs(ths: float) -> float:
    return round(ths * 1e12, 2)


class F2PoolApi:
    kind = "f2pool"
    scheme = "fpps"
    base_path = "/v2"

    def __init__(self, engine: PoolEngine, token: str) -> None:
        self.engine = engine
        self.auth = TokenAuth(token, AUTH_HEADERS)

    def auth_state(self, request: HttpRequest) -> str:
        return self.auth.state(request)

    def error(self, status: int, message: str, kind: str | None = None) -> HttpResponse:
        kinds = {400: "invalid_params", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                 429: "too_many_requests", 500: "internal_error", 503: "service_unavailable"}
        return json_response({"code": status, "msg": f"{kind or kinds.get(status, 'error')}: {message}"}, status)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return self.error(405, "only POST requests with application/json are accepted")
        state = self.auth.state(request)
        if state != "ok":
            return self.error(401, "missing F2P-API-SECRET header" if state == "missing" else "invalid F2P-API-SECRET")
        if "application/json" not in request.headers.get("content-type", ""):
            return self.error(400, "Content-Type must be application/json")
        try:
            params = request.json()
        except ValueError:
            return self.error(400, "the body is not JSON")
        if not isinstance(params, dict):
            return self.error(400, "the body must be a JSON object")
        if params.get("currency") != CURRENCY:
            return self.error(400, f"currency must be one the hashrate module supports, e.g. {CURRENCY!r}")
        if params.get("mining_user_name") != self.engine.account:
            return self.error(404, f"mining user {params.get('mining_user_name')!r} not found")
        route = request.path.rstrip("/")
        if route == "/v2/hash_rate/info":
            return json_response({"info": self._info(list(self.engine.workers.values()), self.engine.account),
                                  "currency": CURRENCY})
        if route == "/v2/hash_rate/worker/list":
            return json_response({"workers": [self._worker(w) for w in self.engine.workers.values()]})
        if route == "/v2/assets/balance":
            return json_response({"balance_info": self._balance()})
        if route == "/v2/assets/transactions/list":
            return self._transactions(params)
        return self.error(404, f"no API {route}")

    def _info(self, workers: list[PoolWorker], name: str) -> dict[str, object]:
        e = self.engine

        def rate(window: int, what: str = "accepted") -> float:
            return _hs(sum(e.rate_ths(w.name, window, what) for w in workers))

        return {
            "name": name,
            "hash_rate": rate(CURRENT_WINDOW_S),
            "h1_hash_rate": rate(3600),
            "h24_hash_rate": rate(86400),
            "h1_stale_hash_rate": rate(3600, "rejected"),
            "h24_stale_hash_rate": rate(86400, "rejected"),
            "h24_delay_hash_rate": rate(86400, "stale"),
            "local_hash_rate": rate(CURRENT_WINDOW_S, "reported"),
            "h24_local_hash_rate": rate(86400, "reported"),
        }

    def _worker(self, worker: PoolWorker) -> dict[str, object]:
        e = self.engine
        online = e.rate_ths(worker.name, CURRENT_WINDOW_S) > 0
        return {
            "hash_rate_info": self._info([worker], worker.short_name),
            "last_share_at": int(worker.last_share_at),
            "status": 0 if online else 1,
            "host": getattr(worker.feed, "host", ""),
        }

    def _balance(self) -> dict[str, object]:
        e = self.engine
        closed = e.closed_days()
        today = e.today()
        settled = sum(e.account_day(d).credited_btc for d in closed)
        return {
            "balance": settled,
            "paid": 0.0,
            "total_income": settled,
            "yesterday_income": e.account_day(today - 1).credited_btc if today - 1 in closed else 0.0,
            "estimated_today_income": e.account_day(today).credited_btc,
        }

    def _transactions(self, params: dict[str, object]) -> HttpResponse:
        kinds = str(params.get("type") or "all").split(",")
        start, end = params.get("start_time"), params.get("end_time")
        for name, value in (("start_time", start), ("end_time", end)):
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                return self.error(400, f"{name} must be a unix timestamp")
        if start is not None and end is not None and end <= start:  # type: ignore[operator]
            return self.error(400, "end_time must be later than start_time")
        e = self.engine
        out = []
        if "all" in kinds or "revenue" in kinds:
            subsidy_share = e.network.subsidy_btc / e.network.reward_btc
            for day in reversed(e.closed_days()):
                created = int((day + 1) * DAY_S + e.settle_delay_s)
                if (start is not None and created < start) or (end is not None and created > end):  # type: ignore[operator]
                    continue
                totals = e.account_day(day)
                if totals.seconds <= 0:
                    continue
                out.append({
                    "id": day,
                    "type": "revenue",
                    "changed_balance": totals.credited_btc,
                    "created_at": created,
                    "mining_extra": {
                        "mining_date": day * DAY_S,
                        "settle_date": (day + 1) * DAY_S,
                        "pps": totals.credited_btc * subsidy_share,
                        "pps_fee_rate": e.fee,
                        "tx_fee": totals.credited_btc * (1 - subsidy_share),
                        "tx_fee_rate": e.fee,
                        "hash_rate": _hs(totals.accepted_ths / DAY_S),
                    },
                    "payout_extra": None,
                })
        return json_response({"transactions": out})
