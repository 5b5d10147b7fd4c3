"""The pool reconciliation's day books, kept across restarts (`pool-days.json` next to the spool).

A day's reconciliation needs the whole day of the miners: what they reported, how long they were up,
down or curtailed, and what the pools showed of them meanwhile. The stage adds every cycle's interval
to per-UTC-day books (lists of floats in a fixed order, so 10,000 miners' days stay a few MB), and
keeps its results; this module writes them atomically, the version replaced kept as `<name>.prev`
(collector/durable_file.py), and reads them back checked, as running_totals.py does: a value that is
not a finite, plausible number, a key of the wrong kind or a date past any clock (collector/clock.py)
makes the file unusable; it is set aside as `<name>.unusable.<n>`, the reason logged, and the `.prev`
copy read instead; when that is unusable too the books start over (a poisoned file must never stop
the service). Books dated ahead of the clock (stepped back since, or behind now) are kept (logged) and
carried on from now.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from collector import clock, durable_file
from models.base import read_capped
from models.reconciliation import AccountDay, SiteDay

log = logging.getLogger(__name__)

VERSION = 1
MAX_STATE_BYTES = 512 * 1024 * 1024
MAX_DAYS = 64
MAX_KEY_CHARS = 256

# Per miner and pool user, per UTC day. `*_v`: seconds weighted by the expected BTC of one TH/s then
# (the network changes during a day), so down time is valued at the day's own difficulty and fees.
MINER_FIELDS = ("observed_s", "hashing_s", "hashing_ths_s", "hashing_btc", "offline_s", "offline_v",
                "offline_exp_btc", "curtailed_s", "curtailed_v", "curtailed_exp_btc", "shares_accepted",
                "shares_rejected", "shares_stale")
# Per pool and worker, per UTC day, over the seconds a fresh pool snapshot was there; `reported_*` is
# what the miners that report this worker's name reported over the same seconds.
POOL_FIELDS = ("pool_s", "pool_ths_s", "pool_btc", "rated_pool_btc", "rejected_btc", "stale_btc", "reported_btc",
               "reported_ths_s")
# Per UTC day: seconds observed, subsidy + fees integrated, and the spend the cost stage counted with the
# BTC (net of the pool fee) it counted over the same intervals (`spend_btc`: the expected cost per BTC is
# their ratio; the miners' expected BTC above also covers a restart's gap, which the spend does not).
SITE_FIELDS = ("observed_s", "reward_btc_s", "all_in_usd", "cash_usd", "power_usd", "spend_btc")

M = {name: i for i, name in enumerate(MINER_FIELDS)}
# The per-miner indexes as constants: the stage adds to them for every miner every cycle.
(OBSERVED_S, HASHING_S, HASHING_THS_S, HASHING_BTC, OFFLINE_S, OFFLINE_V, OFFLINE_EXP_BTC, CURTAILED_S, CURTAILED_V,
 CURTAILED_EXP_BTC, SHARES_ACCEPTED, SHARES_REJECTED, SHARES_STALE) = range(len(MINER_FIELDS))
P = {name: i for i, name in enumerate(POOL_FIELDS)}
(POOL_S, POOL_THS_S, POOL_BTC, RATED_POOL_BTC, REJECTED_BTC, STALE_BTC, REPORTED_BTC,
 REPORTED_THS_S) = range(len(POOL_FIELDS))
S = {name: i for i, name in enumerate(SITE_FIELDS)}

_DAY_S = 86_400.0
# What no real day holds, per unit (the whole network mines ~450 BTC a day and hashes ~1e9 TH/s).
_CAPS = {"s": 2 * _DAY_S, "v": 1.0, "btc": 1000.0, "ths_s": 1e9 * 2 * _DAY_S, "shares": 1e18, "btc_s": 50 * 2 * _DAY_S,
         "usd": 1e12}


def _cap(name: str) -> tuple[float, float]:
    """(low, high) for a field by its unit suffix; money may be negative (negative real-time prices)."""
    for suffix, high in sorted(_CAPS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith("_" + suffix) or name.startswith(suffix):
            return (-high if suffix == "usd" else 0.0), high
    return 0.0, _CAPS["shares"]


_MINER_CAPS = [_cap(n) for n in MINER_FIELDS]
_POOL_CAPS = [_cap(n) for n in POOL_FIELDS]
_SITE_CAPS = [_cap(n) for n in SITE_FIELDS]


@dataclass
class DayBook:
    miners: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (miner, pool user) -> MINER_FIELDS
    pools: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (pool, worker) -> POOL_FIELDS
    site: list[float] = field(default_factory=lambda: [0.0] * len(SITE_FIELDS))

    def miner(self, miner: str, user: str) -> list[float]:
        book = self.miners.get((miner, user))
        if book is None:
            book = self.miners[(miner, user)] = [0.0] * len(MINER_FIELDS)
        return book

    def pool(self, pool: str, worker: str) -> list[float]:
        book = self.pools.get((pool, worker))
        if book is None:
            book = self.pools[(pool, worker)] = [0.0] * len(POOL_FIELDS)
        return book


@dataclass
class DayResults:
    accounts: dict[str, AccountDay] = field(default_factory=dict)  # pool -> its account's day
    site: SiteDay | None = None


@dataclass
class State:
    as_of: datetime | None = None  # the end of the last interval integrated
    days: dict[date, DayBook] = field(default_factory=dict)
    results: dict[date, DayResults] = field(default_factory=dict)
    counters: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # miner -> accepted, rejected, stale
    users: dict[str, str] = field(default_factory=dict)  # miner -> the pool user it last reported
    # local month, all-in, cash, power, BTC: the cost stage's month so far
    spend: tuple[str, float, float, float, float] | None = None

    def day(self, day: date) -> DayBook:
        book = self.days.get(day)
        if book is None:
            book = self.days[day] = DayBook()
        return book


class UnusableState(durable_file.UnusableFile):
    """The saved books cannot be used; the message says which value and why."""


def save(path: Path, state: State) -> None:
    """Write the state atomically; UnusableState (nothing written) if a value is not finite."""
    days = {}
    for day, book in state.days.items():
        if not _finite_sum(book):
            raise UnusableState(f"not saved: a value of {day} is not finite")
        days[day.isoformat()] = {
            "miners": [[m, u, *v] for (m, u), v in book.miners.items()],
            "pools": [[p, w, *v] for (p, w), v in book.pools.items()],
            "site": book.site,
        }
    results = {day.isoformat(): {"accounts": [a.model_dump(mode="json") for a in r.accounts.values()],
                                 "site": r.site.model_dump(mode="json") if r.site else None}
               for day, r in state.results.items()}
    data = {
        "version": VERSION,
        "as_of": state.as_of.isoformat() if state.as_of else None,
        "days": days,
        "results": results,
        "counters": {m: list(c) for m, c in state.counters.items()},
        "users": state.users,
        "spend": list(state.spend) if state.spend else None,
    }
    durable_file.replace(path, orjson.dumps(data))


def _finite_sum(book: DayBook) -> bool:
    total = math.fsum(book.site) + math.fsum(x for v in book.miners.values() for x in v) + math.fsum(
        x for v in book.pools.values() for x in v)
    return math.isfinite(total)


def load(path: Path, now: datetime | None = None, *, set_aside: bool = True) -> State:
    """The saved state (or the copy kept before it, logged), or a new one: a first start, or no usable file
    (logged; set aside unless `set_aside` is False: a reader such as `hashfleet pools` leaves the
    collector's files alone)."""
    at = now or datetime.now(timezone.utc)

    def read(file: Path) -> State:
        state = _read(orjson.loads(read_capped(file, MAX_STATE_BYTES)), at)
        if state.as_of is not None:
            state.as_of = clock.kept_ahead(f"the pool reconciliation books in {file}", state.as_of, at)
        return state

    state = durable_file.read_book(path, read, what="pool reconciliation books", lost="they start over",
                                   set_aside=set_aside)
    return state if state is not None else State()


def _read(data: Any, now: datetime) -> State:
    if not isinstance(data, dict):
        raise UnusableState(f"the file holds a {type(data).__name__}, not an object")
    if newer := durable_file.newer_version(data, VERSION, "pool books file"):
        raise UnusableState(newer)
    if data.get("version") != VERSION:
        raise UnusableState(f"version {data.get('version')!r}, expected {VERSION}")
    as_of = None if data.get("as_of") is None else _instant(data["as_of"], "as_of")
    if as_of is not None and (problem := clock.implausible(as_of)) is not None:
        raise UnusableState(f"as_of {as_of.isoformat()} {problem}")
    latest = (as_of or now).date()
    days_raw, results_raw = _dict(data.get("days", {}), "days"), _dict(data.get("results", {}), "results")
    if len(days_raw) > MAX_DAYS or len(results_raw) > MAX_DAYS:
        raise UnusableState(f"more than {MAX_DAYS} days")
    state = State(as_of=as_of)
    for text, raw in days_raw.items():
        day = _day(text, latest)
        raw = _dict(raw, f"days[{text}]")
        site = raw.get("site")
        if isinstance(site, list) and len(site) == len(SITE_FIELDS) - 1:  # saved before spend_btc: not known
            site = [*site, 0.0]
        book = DayBook(site=_vector(site, _SITE_CAPS, f"days[{text}].site"))
        book.miners = _rows(raw.get("miners", []), _MINER_CAPS, f"days[{text}].miners")
        book.pools = _rows(raw.get("pools", []), _POOL_CAPS, f"days[{text}].pools")
        state.days[day] = book
    for text, raw in results_raw.items():
        day = _day(text, latest)
        raw = _dict(raw, f"results[{text}]")
        try:
            accounts = [AccountDay.model_validate(a) for a in _list(raw.get("accounts", []), f"results[{text}]")]
            site = None if raw.get("site") is None else SiteDay.model_validate(raw["site"])
        except ValidationError as e:
            raise UnusableState(f"results[{text}]: {str(e).splitlines()[0]}: {e.errors()[0]['loc']}") from None
        state.results[day] = DayResults({a.pool: a for a in accounts}, site)
    for miner, raw in _dict(data.get("counters", {}), "counters").items():
        c = _vector(raw, [(0.0, _CAPS["shares"])] * 3, f"counters[{miner[:40]!r}]")
        state.counters[_key(miner, "counters")] = (c[0], c[1], c[2])
    for miner, user in _dict(data.get("users", {}), "users").items():
        if not isinstance(user, str) or len(user) > MAX_KEY_CHARS:
            raise UnusableState(f"users[{miner[:40]!r}] is not a pool user")
        state.users[_key(miner, "users")] = user
    spend = data.get("spend")
    if spend is not None and not (isinstance(spend, list) and len(spend) == 4):  # (saved before its BTC: dropped)
        if not isinstance(spend, list) or len(spend) != 5 or not isinstance(spend[0], str) or len(spend[0]) > 16:
            raise UnusableState("spend is not [month, all_in, cash, power, btc]")
        values = _vector(spend[1:], [_cap("usd")] * 3 + [(0.0, 20_000.0)], "spend")  # (BTC: more than the network mines in a month)
        state.spend = (spend[0], values[0], values[1], values[2], values[3])
    return state


def _rows(raw: Any, caps: list[tuple[float, float]], where: str) -> dict[tuple[str, str], list[float]]:
    out = {}
    for i, row in enumerate(_list(raw, where)):
        if not isinstance(row, list) or len(row) != 2 + len(caps):
            raise UnusableState(f"{where}[{i}] is not [name, name, {len(caps)} numbers]")
        out[(_key(row[0], where), _key(row[1], where))] = _vector(row[2:], caps, f"{where}[{i}]")
    return out


def _vector(raw: Any, caps: list[tuple[float, float]], where: str) -> list[float]:
    if not isinstance(raw, list) or len(raw) != len(caps):
        raise UnusableState(f"{where} is not a list of {len(caps)} numbers")
    for value, (low, high) in zip(raw, caps, strict=True):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:  # NaN fails
            raise UnusableState(f"{where} = {str(value)[:40]} is not a finite, plausible amount")
    return [float(v) for v in raw]


def _key(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or len(raw) > MAX_KEY_CHARS:
        raise UnusableState(f"{where}: a name that is not text of at most {MAX_KEY_CHARS} characters")
    return raw


def _dict(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise UnusableState(f"{where} is not an object")
    return raw


def _list(raw: Any, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise UnusableState(f"{where} is not a list")
    return raw


def _day(text: Any, latest: date) -> date:
    if not isinstance(text, str):
        raise UnusableState("a day that is not a date")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UnusableState(f"day {text[:20]!r} is not a date") from None
    if day > latest + timedelta(days=1):
        raise UnusableState(f"day {day} is after the books' end ({latest})")
    return day


def _instant(raw: Any, name: str) -> datetime:
    if not isinstance(raw, str):
        raise UnusableState(f"{name} is not a timestamp")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise UnusableState(f"{name} {raw[:40]!r} is not a timestamp") from None
    if value.tzinfo is None:
        raise UnusableState(f"{name} {raw!r} has no time zone")
    return value.astimezone(timezone.utc)
