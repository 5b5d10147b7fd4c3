"""The pool sources against the simulated pools over real HTTP, and against hostile replies.

What they must read (workers named as the miners report them, closed days' credits, partial days), and
what they must survive: an API down, 503, 429 with Retry-After (the simulated pool's request log shows
the waits), a changed schema, a day not closed yet, replies that are huge, not finite, of the wrong type
or from the future, compressed (gzip, deflate, a gzip bomb); the token never in a message or a log line, even
when the pool echoes it. A failure costs that pool's data, marked
stale, never replaced by zeros.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import time
import tracemalloc
import zlib
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collector.redact import SECRET_START
from collector.sources.pools import SOURCES
from collector.sources.pools.client import retry_after_s
from models.config import PoolConfig
from models.pool import DayStatus, PoolKind
from simulators import ManualClock, run_fleet
from simulators.pools import DAY_S, NetworkParams, pool_user, run_pools

MIDNIGHT = 1_750_032_000.0  # 2025-06-16 00:00 UTC
NET = NetworkParams(difficulty=1.2e14, subsidy_btc=3.125, fees_per_block_btc=0.05)
ALL = "braiins,ocean,f2pool,publicpool,ckpool"


@pytest.fixture(scope="module")
def site():
    """Three miners on every pool (split=False), the pools' clock at 2025-06-16 00:00 UTC."""
    clock = ManualClock(MIDNIGHT - 1800)
    with run_fleet("a1246:2,q:1", base="127.93.0.1", clock=clock, seed=3) as fleet:
        clock.advance(1800)
        with run_pools(fleet, ALL, base="127.94.0.1:0", split=False, network=NET, seed=9) as pools:
            yield fleet, pools, clock


@pytest.fixture
def fresh(site):
    """The shared site with its pools' faults and request logs cleared after each test."""
    fleet, pools, clock = site
    yield fleet, pools, clock
    for pool in pools:
        pool.clear_faults()
        pool.server.clear_requests()


def source(pool, **overrides):
    config = PoolConfig(kind=pool.kind, url=pool.url, account=pool.account, token_env="UNUSED",
                        **{"min_interval_s": 0, "backoff_s": 0.2, "backoff_max_s": 2, **overrides})
    return SOURCES[config.kind](config, token=pool.token)


def at(clock) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


def read(src, now, **kw) -> bool:
    async def go():
        try:
            return await src.refresh(now, **kw)
        finally:
            await src.client.aclose()
    return asyncio.run(go())


def gaps(records) -> list[float]:
    return [b.mono - a.mono for a, b in zip(records, records[1:])]


# -- what they read -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["braiins", "ocean", "f2pool", "publicpool", "ckpool"])
def test_each_source_reads_workers_as_the_miners_name_them_and_closed_days(fresh, kind):
    fleet, pools, clock = fresh
    if clock() < MIDNIGHT + DAY_S + 2 * 3600:
        clock.set(MIDNIGHT + DAY_S + 2 * 3600)  # day 0 closed (one hour after midnight), blocks found
    pool = pools[kind]
    src = source(pool)
    assert read(src, at(clock)), src.error
    snap = src.snapshot(at(clock))
    assert not snap.stale and snap.error is None
    assert {w.name for w in snap.workers} == {pool_user(m) for m in fleet.miners}
    for w in snap.workers:
        truth = pool.engine.rate_ths(w.name, w.window_s or 300)
        assert w.hashrate_ths == pytest.approx(truth, rel=0.01 if kind == "ckpool" else 1e-6)  # ckpool: 3 digits
    day0 = datetime.fromtimestamp(MIDNIGHT, UTC).date()
    closed = snap.day(day0)
    credited = pool.engine.account_day(int(MIDNIGHT // DAY_S)).credited_btc
    if kind == "ocean":  # TIDES: what the blocks found that day paid (a block at 00:00 pays on the new day)
        credited = sum(c.btc for c in pool.engine.credits_between(MIDNIGHT, MIDNIGHT + DAY_S))
    if kind in ("braiins", "f2pool", "ocean"):
        assert closed.status is DayStatus.CLOSED
        assert closed.credited_btc == pytest.approx(credited, abs=2e-8 if kind == "ocean" else 1e-8)
    elif kind == "publicpool":
        assert closed.status is DayStatus.CLOSED and closed.blocks == 0 and closed.credited_btc is None
    else:
        assert closed.status is DayStatus.CLOSED and closed.credited_btc is None  # ckpool publishes none
    today = snap.day(at(clock).date())
    assert today.status is DayStatus.PARTIAL


def test_a_solo_block_is_counted_on_its_day(fresh):
    fleet, pools, clock = fresh
    pool = pools["publicpool"]
    pool.engine.find_block(pool_user(fleet.miners[0]))
    src = source(pool)
    assert read(src, at(clock))
    assert src.snapshot(at(clock)).day(at(clock).date()).blocks == 1


# -- faults ---------------------------------------------------------------------------------------------


def test_429_waits_out_retry_after_and_writes_no_figures(fresh):
    _, pools, clock = fresh
    pool = pools["braiins"]
    pool.set_faults(rate_limited_s=2)
    src = source(pool)

    async def hammer(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await src.refresh(at(clock), days=False)
            await asyncio.sleep(0.05)
        await src.client.aclose()

    asyncio.run(hammer(4.5))
    records = pool.requests()
    assert [r.status for r in records] == [429] * len(records) and 2 <= len(records) <= 3
    assert all(gap >= 2.0 for gap in gaps(records)), gaps(records)  # never before Retry-After
    snap = src.snapshot(at(clock))
    assert snap.stale and snap.workers is None  # nothing read: no figures at all, never zeros
    assert "429" in snap.error and "Retry-After" in snap.error and pool.token not in snap.error
    pool.clear_faults()
    time.sleep(src.client.waiting_s)
    assert read(src, at(clock), days=False) and not src.snapshot(at(clock)).stale


def test_503_and_an_outage_back_off_exponentially_with_jitter(fresh):
    _, pools, clock = fresh
    pool = pools["f2pool"]
    pool.set_faults(server_error=True)
    src = source(pool, backoff_s=0.2, backoff_max_s=1.6)

    async def hammer(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await src.refresh(at(clock), days=False)
            await asyncio.sleep(0.02)
        await src.client.aclose()

    asyncio.run(hammer(4.0))
    records = pool.requests()
    assert all(r.status == 503 for r in records)
    waits = gaps(records)
    assert len(waits) >= 4
    for n, wait in enumerate(waits, start=1):
        delay = min(1.6, 0.2 * 2 ** (n - 1))
        assert 0.5 * delay - 0.01 <= wait <= delay + 0.25, (n, waits)  # equal jitter: half the delay or more
    assert len({round(w / min(1.6, 0.2 * 2 ** n), 3) for n, w in enumerate(waits)}) > 1  # jittered, not fixed
    pool.clear_faults()
    pool.set_faults(down=True)
    time.sleep(src.client.waiting_s)
    assert not read(src, at(clock), days=False)
    assert "f2pool" in src.error and pool.url.split("//")[1].split("/")[0] in src.error  # which pool, where


def test_braiins_is_never_asked_faster_than_its_documented_rate(fresh):
    _, pools, clock = fresh
    pool = pools["braiins"]
    config = PoolConfig(kind="braiins", url=pool.url, account=pool.account, token_env="UNUSED")
    src = SOURCES[PoolKind.BRAIINS](config, token=pool.token)
    assert config.min_interval == 5.0

    async def twice() -> None:
        await src.refresh(at(clock), days=False)
        await src.refresh(at(clock), days=False)
        await src.client.aclose()

    asyncio.run(twice())
    records = pool.requests()
    assert [r.status for r in records] == [200, 200] and gaps(records)[0] >= 5.0


def test_a_changed_schema_keeps_the_last_values_stale_and_names_the_field(fresh):
    _, pools, clock = fresh
    clock.set(max(clock(), MIDNIGHT + 2 * DAY_S + 12 * 3600))  # closed days to read (whichever tests ran before)
    pool = pools["braiins"]
    src = source(pool, max_age_s=600)
    first = at(clock)
    assert read(src, first, days=False)
    before = src.snapshot(first).workers
    pool.set_faults(renamed={"hash_rate_5m": "hashrate_5m"})
    time.sleep(src.client.waiting_s)
    clock.advance(300)
    assert not read(src, at(clock), days=False)
    assert "hash_rate_5m" in src.error
    snap = src.snapshot(at(clock))
    assert snap.workers == before and snap.workers_as_of == first and not snap.stale  # within max_age
    assert src.snapshot(datetime.fromtimestamp(clock() + 600, UTC)).stale  # past it: stale, still not zero
    pool.set_faults(renamed={}, removed={"total_reward"})
    time.sleep(src.client.waiting_s)
    assert not read(src, at(clock), days=True) and "total_reward" in src.error


def test_a_day_not_closed_is_absent_or_partial_never_zero(fresh):
    _, pools, clock = fresh
    clock.set(max(clock(), MIDNIGHT + 5 * DAY_S) // DAY_S * DAY_S + 1800)  # 00:30: yesterday not settled yet
    yesterday = datetime.fromtimestamp(clock() - DAY_S, UTC).date()
    for kind in ("braiins", "f2pool"):
        src = source(pools[kind])
        assert read(src, at(clock), days=True)
        snap = src.snapshot(at(clock))
        assert snap.day(yesterday) is None  # not closed: unknown, not zero
        assert snap.day(at(clock).date()).status is DayStatus.PARTIAL
    clock.advance(2 * 3600)
    for kind in ("braiins", "f2pool"):
        pools[kind].set_faults(day_not_closed=True)  # the pool is late settling
        src = source(pools[kind])
        assert read(src, at(clock), days=True)
        assert src.snapshot(at(clock)).day(yesterday) is None
        pools[kind].clear_faults()
        assert read(src, at(clock), days=True)
        assert src.snapshot(at(clock)).day(yesterday).status is DayStatus.CLOSED


# -- hostile replies ------------------------------------------------------------------------------------


class _Hostile(BaseHTTPRequestHandler):
    """Answers `reply`; `{token}` in its body is the Pool-Auth-Token the request carried (a server that echoes
    it); with `compress` set, the body is compressed that way when the request's Accept-Encoding asks for it,
    as nginx does."""
    reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")
    trickle = False
    compress: str | None = None

    def do_GET(self) -> None:  # noqa: N802
        status, headers, body = self.reply
        body = body.replace(b"{token}", self.headers.get("Pool-Auth-Token", "").encode())
        if self.compress and self.compress in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body) if self.compress == "gzip" else zlib.compress(body)
            headers = {**headers, "Content-Encoding": self.compress}
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if self.trickle:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.5)
        else:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hostile.compress = None
    yield server
    _Hostile.compress = None
    server.shutdown()
    server.server_close()


def _worker(value: str) -> bytes:
    return ('{"btc":{"workers":{"hashfleet.a1":{"state":"ok","last_share":1750000000,"hash_rate_unit":"Gh/s",'
            f'"hash_rate_5m":{value},"hash_rate_60m":1,"hash_rate_24h":1}}}}}}}}').encode()


# reply -> what the error must say (each case refused for its own reason, not for being malformed)
HOSTILE_REPLIES = {
    "not finite": (_worker("1e999"), "not JSON"),  # orjson refuses a number past a double
    "NaN literal": (_worker("NaN"), "not JSON"),
    "a string that is not a number": (_worker('"lots"'), "expected a number"),
    "digits with an underscore": (_worker('"1_000"'), "expected a number, got '1_000'"),  # float() reads 1000
    "a boolean": (_worker("true"), "expected a number, got true"),
    "an object": (_worker('{"v":1}'), "expected a number, got an object"),
    "negative": (_worker("-5"), "negative"),
    "beyond any worker": (_worker("1e15"), "less than or equal"),  # Gh/s: 1e12 TH/s, 1000 x the network
    "an unknown unit": (_worker("1").replace(b"Gh/s", b"furlongs"), "unknown hashrate unit"),
    "the future": (_worker("1").replace(b"1750000000", b"4102444800"), "in the future"),
    "not JSON": (b"<html>Bad gateway</html>", "not JSON"),
    "an array": (b"[1,2,3]", "expected an object"),
    "huge": (b'{"btc":{"workers":{' + b'"w":1,' * 400_000 + b'"x":1}}}', "cap"),
}


def test_the_well_formed_hostile_replies_are_json():
    import orjson

    orjson.loads(_worker("1"))  # the base reply is valid: each case differs from it in one place only



@pytest.mark.parametrize("what", HOSTILE_REPLIES)
def test_a_hostile_reply_costs_that_pool_only(hostile, fresh, what):
    _, pools, clock = fresh
    body, reason = HOSTILE_REPLIES[what]
    _Hostile.reply, _Hostile.trickle = (200, {}, body), False
    config = PoolConfig(kind="braiins", url=f"http://127.0.0.1:{hostile.server_address[1]}", account="hashfleet",
                        token_env="UNUSED", min_interval_s=0, max_reply_mb=1)
    bad = SOURCES[PoolKind.BRAIINS](config, token="s3cret-token-value")
    good = source(pools["ocean"])
    now = at(clock)
    assert not read(bad, now, days=False)
    assert bad.snapshot(now).workers is None and bad.snapshot(now).stale
    assert reason in bad.error and "s3cret-token-value" not in bad.error
    assert read(good, now, days=False) and not good.snapshot(now).stale  # the other pool is untouched


def test_a_trickling_reply_costs_its_timeout_and_no_more(hostile, fresh):
    _, _, clock = fresh
    _Hostile.reply, _Hostile.trickle = (200, {}, _worker("1")), True
    config = PoolConfig(kind="braiins", url=f"http://127.0.0.1:{hostile.server_address[1]}", account="hashfleet",
                        token_env="UNUSED", min_interval_s=0, timeout_s=1.0)
    src = SOURCES[PoolKind.BRAIINS](config, token="t")
    began = time.monotonic()
    assert not read(src, at(clock), days=False)
    assert time.monotonic() - began < 2.0 and "within 1 s" in src.error


@pytest.mark.parametrize("header, wait", [("30", 30.0), ("0", 0.0), ("soon", None), ("-1", None),
                                          ("99999999999999999999", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
                                          ("\u00b2", None), ("\u0663", None)])
def test_retry_after_values(header, wait):
    assert retry_after_s(header) == wait


def test_a_huge_retry_after_is_capped(hostile, fresh):
    _, _, clock = fresh
    _Hostile.reply, _Hostile.trickle = (429, {"Retry-After": "999999"}, b"slow down"), False
    config = PoolConfig(kind="braiins", url=f"http://127.0.0.1:{hostile.server_address[1]}", account="hashfleet",
                        token_env="UNUSED", min_interval_s=0, retry_after_max_s=60)
    src = SOURCES[PoolKind.BRAIINS](config, token="t")
    assert not read(src, at(clock), days=False)
    assert 59 <= src.client.waiting_s <= 60


def test_a_retry_after_in_other_digits_is_no_retry_after(hostile, fresh):
    """`Retry-After: ²` (latin-1, as HTTP headers are read): str.isdigit takes it, float() refuses it, and the
    pool's read ended in a ValueError instead of the 429 it is."""
    _, _, clock = fresh
    _Hostile.reply, _Hostile.trickle = (429, {"Retry-After": "\u00b2"}, b"slow down"), False
    src = braiins_at(hostile)
    assert not read(src, at(clock), days=False)
    assert "HTTP 429 rate limited (no Retry-After)" in src.error, src.error


def braiins_at(server, token="s3cret-token-value", **overrides):
    config = PoolConfig(kind="braiins", url=f"http://127.0.0.1:{server.server_address[1]}", account="hashfleet",
                        token_env="UNUSED", **{"min_interval_s": 0, **overrides})
    return SOURCES[PoolKind.BRAIINS](config, token=token)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_answer_is_inflated_and_read(hostile, fresh, coding):
    """The client asks for gzip and deflate (as httpx does by default), so it must read them: pool APIs
    behind nginx or Cloudflare compress. The server compresses only when asked."""
    _, _, clock = fresh
    _Hostile.reply, _Hostile.trickle, _Hostile.compress = (200, {}, _worker("1500")), False, coding
    src = braiins_at(hostile)
    assert read(src, at(clock), days=False), src.error
    assert [w.hashrate_ths for w in src.snapshot(at(clock)).workers] == [1.5]


def test_a_gzip_bomb_is_refused_at_the_cap_without_expanding_past_it(hostile, fresh):
    """64 MiB of JSON gzipped to about 64 KiB, read with a 1 MiB cap: refused, naming the cap, and the
    client never holds much more than the cap (the inflated bytes are counted as they come)."""
    _, _, clock = fresh
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = deflate.compress(b'{"btc":{"workers":{"' + b" " * (64 << 20)) + deflate.flush()
    assert len(bomb) < 100_000
    _Hostile.reply, _Hostile.trickle = (200, {"Content-Encoding": "gzip"}, bomb), False
    src = braiins_at(hostile, max_reply_mb=1)
    tracemalloc.start()
    try:
        assert not read(src, at(clock), days=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "over the 1,048,576-byte cap" in src.error and "inflated from gzip" in src.error
    assert peak < 8 << 20, f"{peak:,} bytes held at most while reading a reply capped at 1 MiB"


def test_an_encoding_not_asked_for_is_refused_by_name(hostile, fresh):
    _, _, clock = fresh
    _Hostile.reply, _Hostile.trickle = (200, {"Content-Encoding": "br"}, b"\x0b\x02\x80{}\x03"), False
    src = braiins_at(hostile)
    assert not read(src, at(clock), days=False)
    assert "encoded 'br', not asked for" in src.error


# -- secrets ---------------------------------------------------------------------------------------------


def test_tokens_are_in_no_message_or_log_line(fresh, caplog):
    _, pools, clock = fresh
    caplog.set_level(logging.DEBUG)
    sources = [source(pools["braiins"]), source(pools["f2pool"])]
    wrong = [SOURCES[s.kind](s.config, token="wrong-" + pools[s.kind.value].token) for s in sources]
    for faults in ({"rate_limited_s": 1}, {"server_error": True}, {"renamed": {"workers": "w"}}, {"down": True}):
        for kind in ("braiins", "f2pool"):
            pools[kind].clear_faults()
            pools[kind].set_faults(**faults)
        for src in [*sources, *wrong]:
            time.sleep(src.client.waiting_s)
            read(src, at(clock), days=True)
            assert src.error
    for kind in ("braiins", "f2pool"):
        pools[kind].clear_faults()
    for src in wrong:  # a wrong token: refused, said so, not shown
        time.sleep(src.client.waiting_s)
        assert not read(src, at(clock), days=False) and "refused the read-only token" in src.error
    text = caplog.text + "".join(repr(s) + repr(s.client) + str(s.error) for s in [*sources, *wrong])
    for kind in ("braiins", "f2pool"):
        assert pools[kind].token not in text
    assert "pool braiins" in caplog.text  # the failures were logged, without the token
    assert all(r.auth != "ok" for r in pools["braiins"].requests() if r.status == 403)


def test_a_header_the_http_client_refuses_is_an_error_without_the_token(hostile):
    # Tokens are checked at start; should one get past, h11's refusal quotes the header, token and all.
    from collector.sources.pools.client import PoolClient, PoolUnavailable

    client = PoolClient("braiins", f"http://127.0.0.1:{hostile.server_address[1]}", min_interval_s=0,
                        headers={"Pool-Auth-Token": "first-SECRET\nsecond-SECRET"})

    async def ask() -> None:
        try:
            await client.get("/accounts/workers/json/btc")
        finally:
            await client.aclose()

    with pytest.raises(PoolUnavailable) as err:
        asyncio.run(ask())
    assert "could not be sent" in str(err.value) and "SECRET" not in str(err.value)


TOKEN = "af5cda09147f8688bf2b3778e4d80918"
# Answers that echo the token the request carried (`{token}`), as error pages, proxies and WAFs do.
ECHOES = {
    "an error body": (400, b'{"code": 400, "msg": "bad request for token {token}"}'),
    "an HTML page": (200, b"<html><body>Access denied: {token}</body></html>"),
    "cut short in the excerpt": (404, b"x" * 100 + b"{token}" + b"y" * 100),
    "a refused value": (200, _worker('"{token}"')),
    "a gzipped error body": (400, b"<html>bad request for {token}</html>"),
}


@pytest.mark.parametrize("what", ECHOES)
def test_a_token_the_pool_echoes_is_masked_in_errors_and_logs(hostile, fresh, caplog, what):
    _, _, clock = fresh
    caplog.set_level(logging.DEBUG)
    status, body = ECHOES[what]
    _Hostile.reply, _Hostile.trickle = (status, {}, body), False
    _Hostile.compress = "gzip" if "gzip" in what else None
    src = braiins_at(hostile, token=TOKEN)
    assert not read(src, at(clock), days=False)
    assert "***" in src.error
    text = src.error + caplog.text + repr(src.snapshot(at(clock)).model_dump())
    assert TOKEN[:SECRET_START] not in text, text


def test_a_worker_name_that_quotes_the_token_is_refused_and_shown_nowhere(hostile, fresh, caplog):
    # Trial ZD (L1): a pool or proxy putting the token into a worker's name had it printed whole in the `pools`
    # table, the matching log line and the `worker` tag: only errors were masked.
    _, _, clock = fresh
    caplog.set_level(logging.DEBUG)
    body = _worker("1").replace(b'"hashfleet.a1"', b'"hashfleet.{token}"')
    _Hostile.reply, _Hostile.trickle = (200, {}, body), False
    src = braiins_at(hostile, token=TOKEN)
    assert read(src, at(clock), days=False)
    assert src.snapshot(at(clock)).workers == [] and src.refused["token_in_worker"] == 1
    # A name that only starts like the token (a MAC's hex digits) is a name: kept.
    alike = _worker("1").replace(b'"hashfleet.a1"', f'"hashfleet.{TOKEN[:6]}"'.encode())
    _Hostile.reply = (200, {}, alike)
    kept = braiins_at(hostile, token=TOKEN)
    assert read(kept, at(clock), days=False)
    assert [w.name for w in kept.snapshot(at(clock)).workers] == [f"hashfleet.{TOKEN[:6]}"]
    text = caplog.text + repr(src.snapshot(at(clock)).model_dump())
    assert "quotes the API token" in caplog.text and TOKEN[:SECRET_START] not in text, text


def test_a_missing_token_is_a_config_error_naming_where_to_put_it(tmp_path):
    from collector import config as config_loader

    path = tmp_path / "c.yaml"
    path.write_text("pools:\n  - {kind: braiins, account: me}\n")
    with pytest.raises(config_loader.ConfigError, match="BRAIINS_POOL_TOKEN"):
        config_loader.load(path, environ={})
    loaded = config_loader.load(path, environ={"BRAIINS_POOL_TOKEN": "abc123secret"})
    assert loaded.pools[0].resolved_token({"BRAIINS_POOL_TOKEN": "abc123secret"}) == "abc123secret"
    assert "abc123secret" not in repr(loaded)
    # the one rule for every token (models.base.checked_token): the ends stripped, one word of visible ASCII
    assert loaded.pools[0].resolved_token({"BRAIINS_POOL_TOKEN": "abc123secret\n"}) == "abc123secret"
    for bad in ("abc123\nsecret", "abc123 secret"):
        with pytest.raises(config_loader.ConfigError, match="BRAIINS_POOL_TOKEN") as refused:
            config_loader.load(path, environ={"BRAIINS_POOL_TOKEN": bad})
        assert "abc123" not in str(refused.value)
    path.write_text("pools:\n  - {kind: publicpool, account: bc1q}\n")
    with pytest.raises(config_loader.ConfigError, match="url"):
        config_loader.load(path, environ={})


def test_control_characters_in_a_worker_name_reach_no_log_or_terminal_as_such(hostile, fresh):
    # ESC sequences recolour a terminal and a newline forges a log line: shown escaped, the name kept.
    _, _, clock = fresh
    name = "hashfleet.a1\x1b[31mRED\x1b[0m\n[fake] line"
    body = _worker("1").replace(b"hashfleet.a1", json.dumps(name)[1:-1].encode())
    _Hostile.reply, _Hostile.trickle = (200, {}, body), False
    config = PoolConfig(kind="braiins", url=f"http://127.0.0.1:{hostile.server_address[1]}", account="hashfleet",
                        token_env="UNUSED", min_interval_s=0)
    pool = SOURCES[PoolKind.BRAIINS](config, token="t")
    now = at(clock)
    assert read(pool, now, days=False)
    (worker,) = pool.snapshot(now).workers
    assert worker.name == "hashfleet.a1\\x1b[31mRED\\x1b[0m\\n[fake] line" and worker.name.isprintable()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/api?token=abc123secret", "http://127.0.0.1:9000/api#x"])
def test_a_pool_url_with_a_query_is_a_config_error_that_does_not_echo_it(tmp_path, url):
    # Paths are appended to it (`?token=abc/client/acct` was requested) and the whole was logged.
    from collector import config as config_loader

    path = tmp_path / "c.yaml"
    path.write_text(f"pools:\n  - {{kind: publicpool, account: bc1q, url: '{url}'}}\n")
    with pytest.raises(config_loader.ConfigError, match="without a .query") as caught:
        config_loader.load(path, environ={})
    assert "abc123secret" not in str(caught.value)


def test_httpx_does_not_log_every_pool_request_unless_asked(hostile, tmp_path):
    import os
    import subprocess

    from tests.support import HASHFLEET

    _Hostile.reply, _Hostile.trickle = (200, {}, _worker("1")), False
    config = tmp_path / "c.yaml"
    config.write_text(f"pools:\n  - {{kind: braiins, account: hashfleet, token_env: T, min_interval_s: 0, "
                      f"url: 'http://127.0.0.1:{hostile.server_address[1]}'}}\n")
    env = {**os.environ, "T": "token-value"}

    def pools(*flags: str) -> str:
        return subprocess.run([HASHFLEET, *flags, "pools", "--config", str(config)], capture_output=True, text=True,
                              timeout=60, env=env).stderr

    assert "HTTP Request:" not in pools()  # (INFO: one line per request, every refresh of every pool)
    assert "HTTP Request:" in pools("--log-level", "DEBUG")


def test_a_clock_stepped_back_starts_a_round_at_once_not_once_it_has_caught_up(fresh):
    """A round while the clock was 3 h fast; stepped back (collector/clock.py), the next cycle starts the
    next round, the days with it. It waited until the clock reached the last round again (the days until
    it reached their last read), the old snapshot shown as fresh meanwhile."""
    from datetime import timedelta

    from collector.cycle import Cycle

    fleet, pools, clock = fresh
    pool = pools["ocean"]
    src = source(pool)
    rounds: list[set[str]] = []

    async def cycles() -> None:
        try:
            for ts in (at(clock) + timedelta(hours=3), at(clock)):
                pool.server.clear_requests()
                await src.announce(Cycle("s1", ts))
                await src.settled()
                assert src.error is None
                rounds.append({r.path for r in pool.requests()})
        finally:
            await src.client.aclose()

    asyncio.run(cycles())
    assert len(rounds[0]) > 1 and rounds[1] == rounds[0]  # the workers and the days, again
