"""OCEAN's public API v1 (TIDES), as its documentation lists it (docs/pools.md has the sources).

Paths (GET, no auth; the "username" is the payout address, here the account the miners use):
    /v1/ping
    /v1/pool_stat
    /v1/statsnap/<user>[.<worker>]              hashrate 60 s / 300 s, TIDES shares, estimates, unpaid
    /v1/user_hashrate/<user>                    hashrate windows 60 s ... 86400 s, active workers
    /v1/user_hashrate_full/<user>               the same per worker: {"user_hashrate", "workers"}
    /v1/earnpay/<user>[/<start>[/<end>]]        per pool block: what the user earned; payouts

Every answer is an envelope: `{"result": ...}` or `{"error": "..."}`; numbers are strings
(hashrates in H/s, BTC as decimal strings, satoshis as integers in strings, unix seconds).
OCEAN does not document the HTTP status of its error envelope; the simulator sends it with 200,
so a client that checks only the status will take an error for data.
"""

from __future__ import annotations

from simulators.http import HttpRequest, HttpResponse, json_response
from simulators.pools.common import btc_text, iso_utc, parse_time, sats
from simulators.pools.engine import DAY_S, PoolEngine, PoolWorker

WINDOWS = (60, 300, 600, 1800, 3600, 10800, 43200, 86400)
NO_USER = "No such user or user has no active workers"
DEFAULT_EARNPAY_S = 30 * DAY_S


def _hs(ths: float) -> str:
    return str(int(round(ths * 1e12)))


def _envelope(result: object) -> HttpResponse:
    return json_response({"result": result}, 200)


class OceanApi:
    kind = "ocean"
    scheme = "tides"
    base_path = "/v1"

    def __init__(self, engine: PoolEngine, token: str | None = None) -> None:
        self.engine = engine  # OCEAN's API is public: no token

    def auth_state(self, request: HttpRequest) -> str:
        return "public"

    def error(self, status: int, message: str) -> HttpResponse:
        return json_response({"error": message}, status)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return self.error(405, "method not allowed")
        parts = [p for p in request.path.split("/") if p]
        if parts[:1] != ["v1"] or len(parts) < 2:
            return self.error(404, "not found")
        name, args = parts[1], parts[2:]
        if name == "ping":
            return _envelope("PONG")
        if name == "pool_stat":
            return _envelope(self._pool_stat())
        if name in ("statsnap", "user_hashrate", "user_hashrate_full", "earnpay") and args:
            user, _, worker = args[0].partition(".")
            workers = self._workers(user, worker)
            if not workers:
                return json_response({"error": NO_USER}, 200)
            if name == "statsnap":
                return _envelope(self._statsnap(workers, "worker" if worker else "user"))
            if name == "user_hashrate":
                return _envelope(self._hashrate(workers))
            if name == "user_hashrate_full":
                return _envelope({"user_hashrate": self._hashrate(workers),
                                  "workers": {w.short_name: [self._hashrate([w], worker=True)] for w in workers}})
            try:
                now = self.engine.now()
                start = parse_time(args[1]) if len(args) > 1 else now - DEFAULT_EARNPAY_S
                end = parse_time(args[2]) if len(args) > 2 else now
            except ValueError:
                return json_response({"error": "Invalid time format"}, 200)
            return _envelope(self._earnpay(workers, start, end))
        return self.error(404, "not found")

    def _workers(self, user: str, worker: str) -> list[PoolWorker]:
        if user != self.engine.account:
            return []
        found = [w for w in self.engine.workers.values() if not worker or w.short_name == worker]
        return found

    # -- bodies ------------------------------------------------------------------------------------

    def _pool_stat(self) -> dict[str, object]:
        e = self.engine
        now = e.now()
        return {
            "snap_ts": str(int(now)),
            "active_users": "1",
            "active_workers": str(sum(1 for w in e.workers.values() if e.rate_ths(w.name, 300) > 0)),
            "network_difficulty": str(int(e.network.difficulty)),
            "current_tides_shares": str(int(8 * e.network.difficulty)),
            "max_tides_shares": str(int(8 * e.network.difficulty)),
            "current_estimated_block_reward": btc_text(e.network.reward_btc),
        }

    def _statsnap(self, workers: list[PoolWorker], snap_type: str) -> dict[str, object]:
        e = self.engine
        now = e.now()
        r60 = sum(e.rate_ths(w.name, 60) for w in workers)
        r300 = sum(e.rate_ths(w.name, 300) for w in workers)
        pending = sum(w.pending_btc for w in workers)
        window_shares = sum(w.pending_ths for w in workers) * 1e12 / 4294967296.0
        unpaid = sum(t.credited_btc for w in workers for t in w.days.values())
        return {
            "snap_type": snap_type,
            "snap_ts": str(int(now)),
            "shares_60s": str(int(r60 * 60 * 1e12 / 4294967296.0)),
            "shares_300s": str(int(r300 * 300 * 1e12 / 4294967296.0)),
            "hashrate_60s": _hs(r60),
            "hashrate_300s": _hs(r300),
            "lastest_share_ts": str(int(max((w.last_share_at for w in workers), default=0))),  # sic: OCEAN's spelling
            "shares_in_tides": str(int(window_shares)),
            "estimated_earn_next_block": btc_text(pending),
            "estimated_bonus_earn_next_block": "0.00000000",
            "estimated_total_earn_next_block": btc_text(pending),
            "estimated_payout_next_block": btc_text(unpaid + pending),
            "unpaid": btc_text(unpaid),
        }

    def _hashrate(self, workers: list[PoolWorker], *, worker: bool = False) -> dict[str, object]:
        e = self.engine
        now = e.now()
        out: dict[str, object] = {"snap_ts": str(int(now)), "db_ts": iso_utc(now, z=False, millis=True)}
        for w in WINDOWS:
            out[f"hashrate_{w}s"] = _hs(sum(e.rate_ths(x.name, w) for x in workers))
        if not worker:
            out["active_worker_count"] = sum(1 for x in workers if e.rate_ths(x.name, 300) > 0)
        out["lastest_share_ts"] = str(int(max((x.last_share_at for x in workers), default=0)))
        return out

    def _earnpay(self, workers: list[PoolWorker], start: float, end: float) -> dict[str, object]:
        names = {w.name for w in workers}
        blocks: dict[str, dict[str, object]] = {}
        for credit in self.engine.credits_between(start, end):
            if credit.worker not in names:
                continue
            row = blocks.setdefault(credit.block_hash, {
                "block_hash": credit.block_hash, "ts": iso_utc(credit.at, z=False),
                "shares_in_window": 0, "fees_colected_satoshis": 0, "satoshis_net_earned": 0})  # sic: OCEAN's spelling
            row["shares_in_window"] = int(row["shares_in_window"]) + int(credit.accepted_ths * 1e12 / 4294967296.0)  # type: ignore[call-overload]
            row["fees_colected_satoshis"] = int(row["fees_colected_satoshis"]) + sats(credit.fee_btc)  # type: ignore[call-overload]
            row["satoshis_net_earned"] = int(row["satoshis_net_earned"]) + sats(credit.btc)  # type: ignore[call-overload]
        earnings = [{k: (str(v) if isinstance(v, int) else v) for k, v in row.items()}
                    for row in sorted(blocks.values(), key=lambda r: str(r["ts"]), reverse=True)]
        return {"start_ts": str(int(start)), "end_ts": str(int(end)), "earnings": earnings, "payouts": []}
