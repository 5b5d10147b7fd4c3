"""What the pool API modules share: number formats, date parameters, the token check."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from simulators.http import HttpRequest, HttpResponse, json_response, text_response
from simulators.pools.engine import DAY_S, PoolEngine, PoolWorker

SAT = Decimal("0.00000001")


def btc_text(btc: float) -> str:
    """BTC as pools print it: a decimal string with 8 places."""
    return str(Decimal(repr(btc)).quantize(SAT, rounding=ROUND_HALF_EVEN))


def sats(btc: float) -> int:
    return int((Decimal(repr(btc)) / SAT).to_integral_value(rounding=ROUND_HALF_EVEN))


def iso_utc(t: float, *, z: bool = True, millis: bool = False) -> str:
    dt = datetime.fromtimestamp(t, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{dt.microsecond // 1000:03d}"
    return text + ("Z" if z else "")


def parse_day(text: str) -> int:
    """`YYYY-MM-DD` -> UTC day number (ValueError otherwise)."""
    d = date.fromisoformat(text)
    return (d - date(1970, 1, 1)).days


def parse_time(text: str) -> float:
    """A time as OCEAN takes it: unix seconds, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS` (UTC)."""
    if text.isdigit():
        return float(text)
    if len(text) == 10:
        return parse_day(text) * DAY_S
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def session_id(worker: PoolWorker) -> str:
    return hashlib.blake2b(worker.name.encode(), digest_size=4).hexdigest()


def best_share(engine: PoolEngine, worker: PoolWorker) -> float:
    """A plausible best share: the best of N diff-1 hashes is about N (deterministic per worker)."""
    total = sum(d.accepted_ths for d in worker.days.values()) * 1e12 / 4294967296.0
    spread = 0.5 + (int(hashlib.blake2b(worker.name.encode(), digest_size=2).hexdigest(), 16) / 65535.0)
    return round(total * spread, 3)


class TokenAuth:
    """A token in one of the named headers; compared in constant time; never logged."""

    def __init__(self, token: str, headers: tuple[str, ...]) -> None:
        self._token = token.encode()
        self.headers = tuple(h.lower() for h in headers)

    def state(self, request: HttpRequest) -> str:
        values = [request.headers[h] for h in self.headers if h in request.headers]
        if not values:
            return "missing"
        return "ok" if any(hmac.compare_digest(v.encode(), self._token) for v in values) else "wrong"


def json_ok(obj: object) -> HttpResponse:
    return json_response(obj, 200)


def plain(status: int, text: str) -> HttpResponse:
    return text_response(text, status, "text/plain; charset=utf-8")
