"""One pool account with as many workers as the caps allow (trial S, M1): an account shared by other sites,
100,000 workers of which this site's miners report three, ~11 MB of JSON from a Braiins-shaped API over
real HTTP, read every cycle beside simulated miners by a real `hashfleet collect`. It costs that account's
read, never a cycle: every cycle on its tick, a bounded memory (the code before: 846 MB and cycles lost),
and per-worker points only for the workers this site's miners report and MAX_LISTED others; every worker
still counted on the account's point."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from datetime import UTC, datetime

from tests.support import HASHFLEET, json_by_path, run_measured

from collector.line_protocol import parse_line
from collector.sources.pools import SOURCES
from collector.sources.pools.base import PACE_WORKERS
from collector.stages.pool_reconciliation import MAX_LISTED
from models.config import PoolConfig
from models.pool import MAX_WORKERS, PoolKind
from simulators import run_fleet
from simulators.pools import pool_user

FLEET = "127.121.0.1"
POOL = ("127.121.1.1", 8000)
INTERVAL_S = 2
CYCLES = 6


def _body(ours: list[str]) -> bytes:
    share = int(time.time()) - 30
    workers = {name: {"state": "ok", "last_share": share, "hash_rate_unit": "Gh/s", "hash_rate_5m": 90_000.0}
               for name in ours}
    for i in range(MAX_WORKERS - len(ours)):  # the other sites' workers: the trial's shape
        workers[f"hashfleet.x{i:06d}"] = {"state": "ok", "last_share": share, "hash_rate_unit": "Gh/s",
                                          "hash_rate_5m": 1000.0}
    body = json.dumps({"btc": {"workers": workers}}).encode()
    assert 10e6 < len(body) < 16 * 1024 * 1024  # ~11 MB, under the 16 MB reply cap
    return body


def _replies(body: bytes) -> dict[str, object]:
    now = int(time.time())
    days = {"btc": {"daily_rewards": [
        {"date": now // 86_400 * 86_400 - 86_400, "total_reward": "0.00048119", "referral_reward": "0",
         "calculation_date": now // 86_400 * 86_400}]}}
    return {"/accounts/workers/json/btc": body, "/accounts/rewards/json/btc": days,
            "/accounts/profile/json/btc": {"btc": {"today_reward": "0.0001"}},
            "/accounts/payouts/json/btc": {"onchain": [], "lightning": []}}


def test_an_account_of_100000_workers_costs_no_cycle_and_bounded_memory(tmp_path):
    with run_fleet("a1246:3", base=f"{FLEET}:0", seed=3) as fleet:
        ours = [pool_user(m) for m in fleet.miners]
        pool = json_by_path(_replies(_body(ours)), POOL)
        (tmp_path / "token").write_text("t" * 32)
        config = tmp_path / "c.yaml"
        config.write_text(
            f"site: big\nminers: [{', '.join(fleet.addresses)}]\ninterval_s: {INTERVAL_S}\n"
            f"spool: {{directory: {tmp_path / 'spool'}}}\n"
            "economics: {tariff: {kind: flat, usd_per_kwh: 0.05}, pool_fee_pct: 2, pue: 1.1}\n"
            "network: {source: static, static: {difficulty: 1.2e14, subsidy_btc: 3.125, fees_btc_per_block: 0.05,"
            " btc_price_usd: 100000}}\n"
            f"pools:\n- {{kind: braiins, name: shared, url: 'http://{POOL[0]}:{POOL[1]}', account: hashfleet,"
            f" token_file: {tmp_path / 'token'}, min_interval_s: 0, refresh_s: {INTERVAL_S},"
            f" days_refresh_s: {INTERVAL_S}}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "MQTT_"))}
        with pool:
            code, _, err, peak_mb = run_measured([HASHFLEET, "collect", "--config", str(config), "--cycles",
                                                  str(CYCLES)], tmp_path, env=env, timeout=240)
    assert code == 0, err[-3000:]
    points = [parse_line(line) for path in sorted((tmp_path / "spool").rglob("*.lp.gz"))
              for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    stamps = sorted({p.time for p in points if p.measurement == "miner"})  # seconds: the spool's precision
    # every cycle on its tick: none skipped for a late one (the code before lost one in two at this interval)
    assert len(stamps) == CYCLES
    assert {b - a for a, b in zip(stamps, stamps[1:])} == {INTERVAL_S}, stamps
    assert "longer than the" not in err
    accounts = [p for p in points if p.measurement == "pool" and p.tags.get("scope") == "account"
                and p.fields.get("workers") is not None]
    assert accounts and all(p.fields["workers"] == MAX_WORKERS for p in accounts)  # every worker counted
    assert accounts[-1].fields["workers_unmatched"] == MAX_WORKERS - len(ours)
    for measurement in ("pool", "pool_day"):
        named = {p.tags["worker"] for p in points if p.measurement == measurement and p.tags.get("scope") == "worker"}
        assert set(ours) <= named and len(named) == len(ours) + MAX_LISTED, (measurement, len(named))
    # the others' work is still the account's unmatched work (its day's waterfall)
    account_days = [p for p in points if p.measurement == "pool_day" and p.tags.get("scope") == "account"]
    assert account_days and account_days[-1].fields["unmatched_btc"] < 0
    # the code before: 846 MB at this account (the trial's 877 MB); this: ~330 MB, the reply's parse and
    # its 100,000 checked workers most of it
    assert peak_mb < 500, peak_mb


def test_reading_100000_workers_gives_the_event_loop_its_turns():
    # The reply's workers are built and checked in steps (PACE_WORKERS), each followed by a turn of the loop
    # for the cycle's other work; the code before built all 100,000 (~1 s) and only then let the loop run.
    source = SOURCES[PoolKind.BRAIINS](PoolConfig(kind="braiins", name="shared", url=f"http://{POOL[0]}:{POOL[1]}",
                                                  account="hashfleet", min_interval_s=0), token="t" * 32)
    turns, at_reply = [0], []
    get = source.client.get

    async def get_then_note(path, params=None):
        reply = await get(path, params)
        at_reply.append(turns[0])  # the turns the loop had once the reply was parsed
        return reply

    source.client.get = get_then_note

    async def other_work() -> None:
        while True:
            await asyncio.sleep(0)
            turns[0] += 1

    async def read() -> int:
        task = asyncio.create_task(other_work())
        assert await source.refresh(datetime.now(UTC), days=False)
        task.cancel()
        await source.close()
        return turns[0] - at_reply[0]

    with json_by_path(_replies(_body(["hashfleet.a1"])), POOL):
        between = asyncio.run(read())
    assert len(source.snapshot(datetime.now(UTC)).workers) == MAX_WORKERS
    # a turn every PACE_WORKERS built, and again every PACE_WORKERS checked
    assert between >= 2 * (MAX_WORKERS // PACE_WORKERS - 1), between
