"""Solo pools: public-pool's REST API and ckpool's per-user JSON (docs/pools.md has the sources).

public-pool (benjamin-wilson/public-pool, NestJS; GET, no auth, under /api):
    /api/client/<address>   {bestDifficulty, workersCount, workers: [{sessionId, name, bestDifficulty,
                            hashRate, startTime, lastSeen}]}; `name` is the part after the dot,
                            hashRate in H/s, times ISO 8601 UTC, bestDifficulty a 2-decimal string
    /api/pool               {totalHashRate, blockHeight, totalMiners, blocksFound, fee: 0}

ckpool's solo pool (solo.ckpool.org serves one file per user; GET, no auth):
    /users/<address>        {hashrate1m, hashrate5m, hashrate1hr, hashrate1d, hashrate7d (strings with
                            an SI suffix: "6.12G", "71.9T"), lastshare, workers, shares, bestshare,
                            bestever, authorised, worker: [{workername (the full stratum user), ...}]}

Neither reports earnings: a solo miner is paid by the block it finds (the coinbase pays its address),
so a day earns nothing unless `engine.find_block(...)` (or a lucky draw) says a block was found.
"""

from __future__ import annotations

from simulators.http import HttpRequest, HttpResponse, html_page, json_response
from simulators.pools.common import best_share, iso_utc, session_id
from simulators.pools.engine import PoolEngine, PoolWorker

TWO_32 = 4294967296.0
ACTIVE_S = 30 * 60  # public-pool lists sessions active in the last 30 minutes
SUFFIXES = ("", "K", "M", "G", "T", "P", "E", "Z")


def si_text(hs: float) -> str:
    """ckpool's suffix_string: three significant digits and an SI suffix ("6.12G", "71.9T", "126T")."""
    if hs < 1:
        return "0"
    k = 0
    while hs >= 1000 and k < len(SUFFIXES) - 1:
        hs /= 1000.0
        k += 1
    if k == 0:
        return str(int(hs))
    text = f"{hs:.0f}" if hs >= 100 else f"{hs:.1f}" if hs >= 10 else f"{hs:.2f}"
    return text + SUFFIXES[k]


class PublicPoolApi:
    kind = "publicpool"
    scheme = "solo"
    base_path = "/api"

    def __init__(self, engine: PoolEngine, token: str | None = None) -> None:
        self.engine = engine

    def auth_state(self, request: HttpRequest) -> str:
        return "public"

    def error(self, status: int, message: str) -> HttpResponse:
        text = {404: "Not Found", 429: "ThrottlerException: Too Many Requests"}.get(status, message)
        return json_response({"statusCode": status, "message": text}, status)

    def handle(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return self.error(404, "Not Found")
        parts = [p for p in request.path.split("/") if p]
        if parts == ["api", "pool"]:
            return json_response(self._pool())
        if len(parts) == 3 and parts[:2] == ["api", "client"]:
            return json_response(self._client(parts[2]))
        return self.error(404, "Not Found")

    def _client(self, address: str) -> dict[str, object]:
        e = self.engine
        now = e.now()
        workers = [w for w in e.workers.values()
                   if address == e.account and e.rate_ths(w.name, 600) > 0 and now - w.last_share_at < ACTIVE_S]
        out: dict[str, object] = {}
        if workers:  # public-pool keeps the address's best in its settings; absent for a new address
            out["bestDifficulty"] = max(best_share(e, w) for w in workers)
        out["workersCount"] = len(workers)
        out["workers"] = [{
            "sessionId": session_id(w),
            "name": w.short_name,
            "bestDifficulty": f"{best_share(e, w):.2f}",
            "hashRate": round(e.rate_ths(w.name, 600) * 1e12, 3),
            "startTime": iso_utc(w.first_seen or e.started_at, millis=True),
            "lastSeen": iso_utc(w.last_share_at, millis=True),
        } for w in workers]
        return out

    def _pool(self) -> dict[str, object]:
        e = self.engine
        now = e.now()
        return {
            "totalHashRate": round(sum(e.rate_ths(w.name, 600) for w in e.workers.values()) * 1e12, 3),
            "blockHeight": e.network.height + int(now // 600) % 100_000,
            "totalMiners": sum(1 for w in e.workers.values() if e.rate_ths(w.name, 600) > 0),
            "blocksFound": [{"height": c.height, "minerAddress": c.worker.partition(".")[0],
                             "worker": c.worker.partition(".")[2], "sessionId": session_id(e.workers[c.worker])}
                            for c in e.credits],
            "fee": 0,
        }


class CkpoolApi:
    kind = "ckpool"
    scheme = "solo"
    base_path = "/users"

    def __init__(self, engine: PoolEngine, token: str | None = None) -> None:
        self.engine = engine

    def auth_state(self, request: HttpRequest) -> str:
        return "public"

    def error(self, status: int, message: str) -> HttpResponse:
        return html_page(status, message)  # a static file server's page, not JSON

    def handle(self, request: HttpRequest) -> HttpResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method not in ("GET", "HEAD") or len(parts) != 2 or parts[0] != "users":
            return self.error(404, "Not Found")
        if parts[1] != self.engine.account or not self.engine.workers:
            return self.error(404, "Not Found")
        return json_response(self._user(list(self.engine.workers.values())))

    def _rates(self, workers: list[PoolWorker]) -> dict[str, str]:
        e = self.engine
        windows = (("hashrate1m", 60), ("hashrate5m", 300), ("hashrate1hr", 3600), ("hashrate1d", 86400),
                   ("hashrate7d", 7 * 86400))
        return {key: si_text(sum(e.rate_ths(w.name, s) for w in workers) * 1e12) for key, s in windows}

    def _shares(self, worker: PoolWorker) -> int:
        """ckpool counts shares weighted by their difficulty: diff-1 shares accepted."""
        return int(sum(d.accepted_ths for d in worker.days.values()) * 1e12 / TWO_32)

    def _user(self, workers: list[PoolWorker]) -> dict[str, object]:
        e = self.engine
        e.advance()
        rows = [{
            "workername": w.name,
            **self._rates([w]),
            "lastshare": int(w.last_share_at),
            "shares": self._shares(w),
            "bestshare": best_share(e, w),
            "bestever": int(best_share(e, w)),
        } for w in workers]
        return {
            **self._rates(workers),
            "lastshare": int(max(w.last_share_at for w in workers)),
            "workers": sum(1 for w in workers if e.rate_ths(w.name, 300) > 0),
            "shares": sum(self._shares(w) for w in workers),
            "bestshare": max(best_share(e, w) for w in workers),
            "bestever": int(max(best_share(e, w) for w in workers)),
            "authorised": int(min((w.first_seen or e.started_at) for w in workers)),
            "worker": rows,
        }
