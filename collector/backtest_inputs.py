"""What `hashfleet backtest` replays: the site's own history, in periods of `resolution` seconds, and a
power price series. History comes from the local spool (what a collector without InfluxDB keeps,
collector/history.py reads the same files) or from InfluxDB over InfluxQL with a read token; prices from
a CSV file or from the `power_price` points the collector stored. Both are streamed period by period, so a
month of a large fleet never sits in memory.

Outside input like any other: the CSV is capped in size and rows, every price must be a finite number in
the MQTT ingest's bounds (-1 to 20 $/kWh by default), a time must parse and an error names the line.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import statistics
import math
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from statistics import median

from collector.history import spool_points_once
from collector.influx_query import InfluxQueryError, get_answer, quoted, rows, tokens
from collector.redact import redact_url
from collector.stages.backtest import Period, PriceSeries, Reading
from collector.stages.cost_stage import MAX_INTEGRATION_GAP_S
from models import InfluxConfig, schema
from models.base import parse_decimal, read_capped
from models.hardware import MAX_UNIT_THS, MAX_UNIT_W

log = logging.getLogger(__name__)

MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_PRICE_ROWS = 2_000_000  # a year of 5-minute prices is ~105,000
PRICE_MIN, PRICE_MAX = -1.0, 20.0  # $/kWh, as the MQTT ingest bounds a live price
UNIT_SLIP_USD_KWH = 0.001  # $1/MWh: single hours go below it (even negative), a series' median does not
MAX_ROWS_PER_QUERY = 2_000_000
# A stored network figure past these is no market's (a bad writer, a damaged file): left out as unread.
MAX_HASHPRICE = 1e7  # $/PH/day (its highest ever, 2017, was ~$1,000 a TH/day: 1e6 $/PH/day)
MAX_BTC_USD = 1e8


class BacktestInputError(ValueError):
    """A price file or stored history that cannot be used (exit 2); the message names the file and line.
    InfluxDB that cannot be read, or answers in another shape, raises InfluxQueryError (exit 1)."""


# --- prices ------------------------------------------------------------------------------------


def read_prices_csv(path: Path, *, max_hold_s: float = 7200.0) -> PriceSeries:
    """`time,usd_per_kwh` (or `time,usd_per_mwh`): time ISO 8601 with a zone, or unix seconds."""
    try:
        data = read_capped(path, MAX_CSV_BYTES)
    except (OSError, ValueError) as e:
        raise BacktestInputError(f"--prices {path}: {e}") from None
    rows = _rows(csv.reader(_lines(data, path)), path)
    header = [h.strip().lower() for h in next(rows, (1, []))[1]]
    if len(header) < 2 or header[0] != "time" or header[1] not in ("usd_per_kwh", "usd_per_mwh"):
        raise BacktestInputError(f"--prices {path}: the first line must be `time,usd_per_kwh` (or usd_per_mwh), "
                                 f"got {','.join(header)[:80]!r}")
    scale, unit = (1000.0, "$/MWh") if header[1] == "usd_per_mwh" else (1.0, "$/kWh")
    # Kept compact (arrays; the file read a line at a time; a map of times only for a file out of time order):
    # 2,000,000 rows peaked at 686 MB as text, a dict of tuples and sorted pairs (docs/benchmarks.md).
    times, prices = array("q"), array("d")
    lines = array("l")  # each kept price's line
    seen: dict[int, int] | None = None  # time -> its place in `times`, once a time is not after the last one
    for number, row in rows:
        if not row or not "".join(row).strip():
            continue
        if len(times) >= MAX_PRICE_ROWS:
            raise BacktestInputError(f"--prices {path}: more than {MAX_PRICE_ROWS:,} rows")
        if len(row) < 2:
            raise BacktestInputError(f"--prices {path} line {number}: {len(row)} field(s), a row is `time,{header[1]}`")
        try:
            ts = _time(row[0])
            price = _decimal(row[1]) / scale
        except ValueError as e:
            raise BacktestInputError(f"--prices {path} line {number}: {e}") from None
        if not math.isfinite(price) or not PRICE_MIN <= price <= PRICE_MAX:  # (the bounds said in the file's unit)
            raise BacktestInputError(f"--prices {path} line {number}: {row[1][:30]!r} is not a price in "
                                     f"[{PRICE_MIN * scale:g}, {PRICE_MAX * scale:g}] {unit}")
        if times and ts <= times[-1]:  # a time given before, or a file not in time order
            if seen is None:
                seen = {t: i for i, t in enumerate(times)}
            i = seen.get(ts)
            if i is not None:
                if prices[i] != price:  # (the same price twice is harmless)
                    raise BacktestInputError(
                        f"--prices {path} line {number}: {row[0].strip()[:40]!r} has a price on line {lines[i]} already "
                        f"({prices[i] * scale:g} {unit}): which one holds is not known")
                continue
        if seen is not None:
            seen[ts] = len(times)
        times.append(ts)
        prices.append(price)
        lines.append(number)
    if not times:
        raise BacktestInputError(f"--prices {path}: no prices")
    typical = statistics.median(prices)
    if abs(typical) < UNIT_SLIP_USD_KWH:  # real, but not as a series' middle: the slip of a header (trial S)
        log.warning("--prices %s: its median price is %g %s, below any market's middle: a unit slip (a series "
                    "of $/kWh under a `usd_per_mwh` header)? Replayed as written", path, typical * scale, unit)
    _say_missing_rows(path, times, lines, max_hold_s)
    return PriceSeries(times, prices, max_hold_s=max_hold_s)


def _say_missing_rows(path: Path, times: array, lines: array, max_hold_s: float) -> None:
    """Warn of the gaps longer than the file's own step (the median time between its rows): a row missing there
    (an export in local time loses an hour at a DST change) lets the price before it hold across, up to
    `max_hold_s`; a spike so stretched made savings 62 % high, unsaid (trial ZH)."""
    if len(times) < 3:
        return
    order = sorted(range(len(times)), key=times.__getitem__) if any(a >= b for a, b in pairwise(times)) else None
    ordered = array("q", (times[i] for i in order)) if order is not None else times
    step = statistics.median(b - a for a, b in pairwise(ordered[:10_001]))  # (the file's rhythm: its first rows)
    gaps = [i for i, (a, b) in enumerate(pairwise(ordered), 1) if b - a > 1.5 * step]
    if not gaps or step <= 0:
        return
    line_of = (lambda i: lines[order[i]]) if order is not None else (lambda i: lines[i])
    shown = ", ".join(f"after line {line_of(i - 1)} ({(ordered[i] - ordered[i - 1]) / 3600:g} h)" for i in gaps[:5])
    log.warning("--prices %s: %d gap(s) longer than the file's step of %g s: %s%s; the price before each gap holds "
                "across it, for at most %g h (then none: periods without a price are not replayed)", path, len(gaps),
                step, shown, ", ..." if len(gaps) > 5 else "", max_hold_s / 3600)


def _lines(data: bytes, path: Path) -> Iterator[str]:
    """The file's lines as text, one at a time (a BOM first is dropped); invalid UTF-8 names its line."""
    for number, line in enumerate(io.BytesIO(data), 1):
        try:
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise BacktestInputError(f"--prices {path} line {number}: not UTF-8 text (byte {e.start + 1} of the "
                                     "line)") from None


def _rows(reader, path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, row); what the csv module refuses (a field past its 128 KiB limit, a NUL) names the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise BacktestInputError(f"--prices {path} line {reader.line_num}: {e}") from None
        yield reader.line_num, row


_decimal = parse_decimal  # a number as a spreadsheet writes one: not 0_05 (5.0), nan or inf


def _time(text: str) -> int:
    text = text.strip()
    try:
        value = _decimal(text)
    except ValueError:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            raise ValueError(f"time {text[:40]!r} has no time zone (write 2025-06-01T12:00:00Z)") from None
        value = ts.timestamp()
        if not 0 <= value < 1e11:  # (as a unix time: 1970 to the year 5138)
            raise ValueError(f"time {text[:40]!r} is not between 1970 and the year 5138")
        return int(value)
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise ValueError(f"time {text[:40]!r} is not a unix time")
    return int(value)


# --- history: buckets of readings --------------------------------------------------------------


@dataclass(slots=True)
class _Acc:
    """One miner's readings in a bucket, each weighed by the seconds it stands for."""

    seen_s: float = 0.0
    mining_s: float = 0.0
    ths_s: float = 0.0  # TH/s x seconds mining
    powered_s: float = 0.0  # of the seconds mining, those with a power reading
    w_s: float = 0.0  # W x seconds mining with a power reading
    other_s: float = 0.0
    other_w_s: float = 0.0  # W x seconds read but not mining


class _Buckets:
    """Per-miner readings summed into buckets; a bucket becomes a Period once time has moved past it."""

    def __init__(self, resolution_s: int) -> None:
        self.resolution = resolution_s
        self.miners: dict[int, dict[str, _Acc]] = defaultdict(dict)
        self.network: dict[int, tuple[float, float]] = {}
        self.spans: dict[int, list[float]] = {}  # bucket -> [from, to]: the time its readings stand for
        self._last_network: tuple[float, float] | None = None

    def bucket(self, ts: int) -> int:
        return ts - ts % self.resolution

    def miner(self, ts: int, miner: str, state: str | None, ths: float | None, w: float | None,
              seconds: float) -> None:
        """One reading at `ts` that stands for `seconds` from then (an offline one for none)."""
        b = self.bucket(ts)
        acc = self.miners[b].get(miner)
        if acc is None:
            acc = self.miners[b][miner] = _Acc()
        if state in (None, "offline") or seconds <= 0:
            return
        acc.seen_s += seconds
        if state == "mining" and ths:  # (with no power reading too: mining, its draw unknown)
            acc.mining_s += seconds
            acc.ths_s += ths * seconds
            if w:
                acc.powered_s += seconds
                acc.w_s += w * seconds
        elif w is not None:
            acc.other_s += seconds
            acc.other_w_s += w * seconds
        span = self.spans.get(b)
        if span is None:
            self.spans[b] = [ts, ts + seconds]
        else:
            span[0], span[1] = min(span[0], ts), max(span[1], ts + seconds)

    def periods(self, before: int | None = None) -> Iterator[Period]:
        """The finished buckets (all when `before` is None), oldest first."""
        for start in sorted(b for b in self.miners if before is None or b + self.resolution <= before):
            accs = self.miners.pop(start)
            span = self.spans.pop(start, None)
            network = self.network.pop(start, None) or self._last_network
            if network is None:
                continue
            self._last_network = network
            readings = tuple(
                Reading(miner, a.seen_s, a.mining_s, a.ths_s / a.mining_s if a.mining_s else 0.0,
                        a.w_s / a.powered_s if a.powered_s else 0.0, a.other_w_s / a.other_s if a.other_s else 0.0)
                for miner, a in accs.items() if a.seen_s > 0)
            yield Period(start, float(self.resolution), network[0], network[1], readings,
                         None if span is None else (span[0], span[1]))


class _Weights:
    """What each stored reading of the local spool stands for, from the timestamps (not the config's
    interval, which the history may not have been collected at): the time until that miner's next
    reading, as `hashfleet report` integrates (collector/history.py); a gap over three cycle steps (the
    collector was down: nothing is known of it), and a miner's last reading, count one cycle step. The
    cycle step is the median of the site's last STEPS spacings between cycles (each at most
    MAX_INTEGRATION_GAP_S), `interval_s` while none is known: an outage does not move it, a new interval
    does within a few cycles. (The cost stage's running totals bridge up to MAX_INTEGRATION_GAP_S: a 90 s stop
    at a 3 s interval counted as mining made the backtest's energy 40 % over the report's, trial ZH.)
    Readings arrive in time order; each waits for its miner's next one."""

    STEPS = 15

    def __init__(self, buckets: _Buckets, interval_s: float) -> None:
        self.buckets = buckets
        self.step: float = interval_s
        self._spacings: deque[int] = deque(maxlen=self.STEPS)
        self._last_cycle: int | None = None
        self.pending: dict[str, tuple[int, str | None, float | None, float | None]] = {}

    def reading(self, ts: int, miner: str, state: str | None, ths: float | None, w: float | None) -> None:
        last = self._last_cycle
        if last is None or ts > last:
            if last is not None and ts - last <= MAX_INTEGRATION_GAP_S:
                self._spacings.append(ts - last)
                self.step = float(median(self._spacings))
            self._last_cycle = ts
        before = self.pending.get(miner)
        if before is not None and ts < before[0]:  # out of order: it stands for one step of its own
            self._add(miner, (ts, state, ths, w), None)
            return
        if before is not None:
            self._add(miner, before, ts)
        self.pending[miner] = (ts, state, ths, w)

    def settle(self, before: int | None = None) -> None:
        """Weigh the readings older than `before` (all when None) that no next reading can follow within
        MAX_INTEGRATION_GAP_S: each stands for one step."""
        for miner in [m for m, r in self.pending.items() if before is None or r[0] < before]:
            self._add(miner, self.pending.pop(miner), None)

    def _add(self, miner: str, reading: tuple[int, str | None, float | None, float | None], until: int | None) -> None:
        ts, state, ths, w = reading
        step = self.step
        gap = None if until is None else until - ts
        seconds = gap if gap is not None and gap <= min(MAX_INTEGRATION_GAP_S, 3 * step) else step
        self.buckets.miner(ts, miner, state, ths, w, seconds)


def _series(p) -> tuple[str, str | None, str | None]:
    return p.measurement, p.tags.get("site"), p.tags.get("miner")


def local_prices(directory: Path, site: str, start: int, end: int,
                 skipped: Counter[str] | None = None) -> list[tuple[int, float]]:
    """The power prices the collector stored in the local spool (not the fallback ones); one outside the
    live price's bounds is counted in `skipped` and left out."""
    prices = []
    for p in spool_points_once(directory, start, end, (schema.POWER_PRICE.name,), _series):
        if p.tags.get("site") == site and not p.fields.get("stale"):
            price = _within(p.fields.get("usd_per_kwh"), PRICE_MIN, PRICE_MAX, "usd_per_kwh", skipped)
            if price is not None:
                prices.append((p.time, price))
    return prices


def local_periods(directory: Path, site: str, start: int, end: int, resolution_s: int,
                  interval_s: float, skipped: Counter[str] | None = None) -> Iterator[Period]:
    """Periods from the local spool, streamed: batches are in time order, so a bucket is done once the
    history has moved past it by a bucket and by MAX_INTEGRATION_GAP_S (its readings' weights known). Each
    miner's point of a second counts once (a copied batch: `spool_points_once`); a value no miner or market
    gives (over a unit's ceilings, not finite) is left out as if not read, and counted in `skipped` by field,
    as `hashfleet report` skips it: one such reading made a month's figures NaN (trial ZH)."""
    buckets = _Buckets(resolution_s)
    weights = _Weights(buckets, interval_s)
    newest = 0
    for p in spool_points_once(directory, start, end, (schema.MINER.name, schema.NETWORK.name), _series):
        if p.tags.get("site") != site:
            continue
        fields = p.fields
        if p.measurement == schema.MINER.name:
            weights.reading(p.time, p.tags.get("miner", "?"), _str(fields.get("state")),
                            _within(fields.get("hashrate_ths"), 0.0, MAX_UNIT_THS, "hashrate_ths", skipped),
                            _within(fields.get("power_w"), 0.0, MAX_UNIT_W, "power_w", skipped))
        else:
            hashprice = _within(fields.get("hashprice_usd_ph_day"), 0.0, MAX_HASHPRICE, "hashprice_usd_ph_day", skipped)
            btc = _within(fields.get("btc_price_usd"), 0.0, MAX_BTC_USD, "btc_price_usd", skipped)
            if hashprice is not None and btc:
                buckets.network[buckets.bucket(p.time)] = (hashprice, btc)
        if p.time > newest:
            newest = p.time
            before = newest - max(resolution_s, MAX_INTEGRATION_GAP_S)
            weights.settle(before)
            yield from buckets.periods(before=before)
    weights.settle()
    yield from buckets.periods()


def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _within(value: object, low: float, high: float, name: str, skipped: Counter[str] | None) -> float | None:
    """`value` as a number in [low, high]; None when absent, and when not such a number (counted in `skipped`)."""
    if value is None:
        return None
    number = _num(value)
    if number is None or not low <= number <= high:
        if skipped is not None:
            skipped[name] += 1
        return None
    return number


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- history: InfluxDB ---------------------------------------------------------------------------


class InfluxHistory:
    """InfluxQL over HTTP `/query` (InfluxDB 1.x, 2.x with its DBRP mapping, 3.x), a day at a time."""

    CHUNK_S = 86400

    def __init__(self, config: InfluxConfig, *, timeout_s: float | None = None) -> None:
        self.config = config
        self.connect_s = timeout_s or config.timeout_s
        self.deadline_s = self.connect_s * 6  # one query, its whole answer included: a day's aggregates take a while
        self._headers = {"Accept": "application/json", "User-Agent": "hashfleet"}
        token = config.resolved_read_token()
        if token:
            self._headers["Authorization"] = f"Token {token}"
        self._secrets = tokens(config)

    def query(self, text: str) -> list[dict]:
        """Every row of every series of the answer, as {column or tag: value}; the answer is outside input:
        capped, bounded in time, and any other shape than InfluxDB's raises InfluxQueryError naming the server
        (the tokens hidden in what it quotes)."""
        where = f"InfluxDB at {redact_url(self.config.url)}"
        params = {"db": self.config.bucket, "q": text, "epoch": "s"}
        status, body = asyncio.run(get_answer(where, f"{self.config.url}/query", params, self._headers,
                                              self.deadline_s, self.connect_s))
        if status != 200:
            raise InfluxQueryError(f"{where} answered HTTP {status}: {quoted(body, self._secrets, 200)} "
                                   f"(a read token for bucket {self.config.bucket!r}?)")
        try:
            data = json.loads(body)
        except ValueError:
            raise InfluxQueryError(f"{where}: the answer is not JSON") from None
        found = rows(data, where, self._secrets)
        if len(found) > MAX_ROWS_PER_QUERY:
            raise InfluxQueryError(f"{where}: more than {MAX_ROWS_PER_QUERY:,} rows a day: use a coarser --resolution")
        return found

    def periods(self, site: str, start: int, end: int, resolution_s: int, interval_s: float,
                prices: list[tuple[int, float]], skipped: Counter[str] | None = None) -> Iterator[Period]:
        """Periods a day at a time; the stored power prices are appended to `prices` as they are read.

        A value no miner gives is left out as in the local history: a hashrate over a unit's ceiling by the
        query (that reading is not counted mining), a bucket's mean draw past a unit's (one reading of 1e308
        in it) as that bucket's draw unread, and a price or network figure past its bounds as unread; each
        counted in `skipped` by field (for InfluxDB, the miner's bucket).

        InfluxDB answers counts of readings per bucket; each counts for the miner's cycle step in that
        bucket, measured from the timestamps (the median time between its readings, gaps over
        MAX_INTEGRATION_GAP_S left out), not the config's interval_s, which the history may not have been
        collected at. A bucket without a measured step takes the median of the day's, else the last day's,
        else interval_s. Exact for any constant interval and for an interval changed between buckets;
        within a bucket, readings missed while the collector was down are simply not counted."""
        where = f"InfluxDB at {redact_url(self.config.url)}"
        where_site = f"\"site\" = '{_quote(site)}'"
        group = f"GROUP BY time({resolution_s}s), \"miner\" fill(none)"
        price_step = min(resolution_s, 300)  # a price change inside a coarse period is seen (to 5 minutes)
        for t0 in range(start - start % resolution_s, end, self.CHUNK_S):
            t1 = min(end, t0 + self.CHUNK_S)
            when = f"time >= {t0}s AND time < {t1}s"
            buckets = _Buckets(resolution_s)
            m = schema.MINER.name
            steps: dict[tuple[int, str], float] = {}
            try:  # a subquery with elapsed(): InfluxDB 1.x and 2.x; a server without them counts interval_s
                answer = self.query(f'SELECT median("e") AS "step" FROM (SELECT elapsed("up", 1s) AS "e" FROM "{m}" '
                                    f'WHERE {where_site} AND {when} GROUP BY "miner") WHERE "e" > 0 AND '
                                    f'"e" <= {MAX_INTEGRATION_GAP_S} {group}')
            except InfluxQueryError as e:
                if not self._warned:
                    log.warning("%s: the cycle step cannot be measured (%s); each reading counts interval_s", where, e)
                    self._warned = True
                answer = []
            for row in answer:
                step = _mean(row, "step", where)
                if 0 < step <= MAX_INTEGRATION_GAP_S:
                    steps[(_ts(row, where), _tag(row, "miner", where))] = step
            if steps:
                self._step = median(steps.values())
            fallback = self._step if self._step is not None else interval_s

            def seconds(row: dict, n: int) -> float:
                step = steps.get((_ts(row, where), _tag(row, "miner", where)), fallback)
                return min(n * step, max(resolution_s, step))

            for row in self.query(f'SELECT count("up") AS "n" FROM "{m}" WHERE {where_site} AND "up" = 1 AND {when} {group}'):
                acc = buckets.miners[_ts(row, where)].setdefault(_tag(row, "miner", where), _Acc())
                acc.seen_s = seconds(row, _count(row, "n", where))
            mining = f'"hashrate_ths" > 0 AND "hashrate_ths" <= {MAX_UNIT_THS:g}'
            if skipped is not None:
                for row in self.query(f'SELECT count("hashrate_ths") AS "n" FROM "{m}" WHERE {where_site} AND '
                                      f'"hashrate_ths" > {MAX_UNIT_THS:g} AND {when}'):
                    skipped["hashrate_ths"] += _count(row, "n", where)
            for row in self.query(f'SELECT count("hashrate_ths") AS "n", mean("hashrate_ths") AS "ths", count("power_w") '
                                  f'AS "np", mean("power_w") AS "w" FROM "{m}" WHERE {where_site} AND {mining} '
                                  f'AND {when} {group}'):
                acc = buckets.miners[_ts(row, where)].setdefault(_tag(row, "miner", where), _Acc())
                acc.mining_s = seconds(row, _count(row, "n", where))
                # of those, the readings with a power (a count of none may come back null)
                w = _mean_within(row, "w", where, MAX_UNIT_W, "power_w", skipped)
                acc.powered_s = seconds(row, _count(row, "np", where)) if row.get("np") is not None and w else 0.0
                acc.ths_s, acc.w_s = _mean(row, "ths", where) * acc.mining_s, (w or 0.0) * acc.powered_s
            for row in self.query(f'SELECT count("power_w") AS "n", mean("power_w") AS "w" FROM "{m}" WHERE {where_site} '
                                  f'AND "up" = 1 AND "hashrate_ths" = 0 AND {when} {group}'):
                acc = buckets.miners[_ts(row, where)].setdefault(_tag(row, "miner", where), _Acc())
                w = _mean_within(row, "w", where, MAX_UNIT_W, "power_w", skipped)
                acc.other_s = seconds(row, _count(row, "n", where)) if w is not None else 0.0
                acc.other_w_s = (w or 0.0) * acc.other_s
            for row in self.query(f'SELECT last("hashprice_usd_ph_day") AS "hashprice", last("btc_price_usd") AS "btc" '
                                  f'FROM "{schema.NETWORK.name}" WHERE {where_site} AND {when} '
                                  f'GROUP BY time({resolution_s}s) fill(none)'):
                hashprice = _within(row.get("hashprice"), 0.0, MAX_HASHPRICE, "hashprice_usd_ph_day", skipped)
                btc = _within(row.get("btc"), 0.0, MAX_BTC_USD, "btc_price_usd", skipped)
                if hashprice is not None and btc:
                    buckets.network[_ts(row, where)] = (hashprice, btc)
            for row in self.query(f'SELECT mean("usd_per_kwh") AS "price" FROM "{schema.POWER_PRICE.name}" WHERE '
                                  f'{where_site} AND "stale" = 0 AND {when} GROUP BY time({price_step}s) fill(none)'):
                price = _within(row.get("price"), PRICE_MIN, PRICE_MAX, "usd_per_kwh", skipped)
                if price is not None:
                    prices.append((_ts(row, where), price))
            buckets._last_network = self._last_network
            yield from buckets.periods()
            self._last_network = buckets._last_network

    _step: float | None = None  # the last day's median cycle step
    _warned = False
    _last_network: tuple[float, float] | None = None


def _ts(row: dict, where: str) -> int:
    ts = row.get("time")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 10**11:
        raise InfluxQueryError(f"{where}: a row's time {str(ts)[:40]!r} is not unix seconds")
    return ts


def _tag(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value:
        raise InfluxQueryError(f"{where}: a row without the {name!r} tag (a series without `tags`?)")
    return value


def _count(row: dict, name: str, where: str) -> int:
    value = row.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InfluxQueryError(f"{where}: a count {str(value)[:40]!r} that is not a whole number")
    return value


def _mean(row: dict, name: str, where: str) -> float:
    """A mean beside a count: a number, or null for none."""
    value = row.get(name)
    if value is None:
        return 0.0
    number = _num(value)
    if number is None:
        raise InfluxQueryError(f"{where}: a mean {str(value)[:40]!r} that is not a finite number")
    return number


def _mean_within(row: dict, name: str, where: str, high: float, field: str, skipped: Counter[str] | None) -> float | None:
    """A bucket's mean beside a count, 0.0 for none; None, counted in `skipped`, when past one unit's `high`
    or not finite (InfluxDB's mean of a 1e308 and a real reading: inf)."""
    value = row.get(name)
    if value is None:
        return 0.0
    return _within(value, 0.0, high, field, skipped)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")
