"""Pool figures under the caps but not plausible (trial S, M2), from a hostile Braiins pool over real HTTP:
another account's workers, a worker in the wrong hashrate unit, a credit 1,000x too high, two rows for one
day, a referral larger than its total. Each costs that figure (that worker, that day) only, logged once and
counted; the account's other workers and days, and the other pools, are read as sent."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import json_by_path

from collector.sources.pools import SOURCES
from models.config import PoolConfig
from models.economics import NetworkState
from models.pool import DayStatus, PoolKind

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = datetime.combine(NOW.date(), datetime.min.time(), UTC)
DAY_S = 86_400
# The trial's hp.yaml network: difficulty 1.2e14, ~859 EH/s; 270 TH/s earns ~0.000144 BTC a day.
NETWORK = NetworkState(difficulty=1.2e14, subsidy_btc=3.125, fees_btc_per_block=0.05, btc_price_usd=100_000)
MINERS = ["hashfleet.a1", "hashfleet.a2", "hashfleet.a3"]
CREDIT = "0.00048119"  # a real day's credit as Braiins writes it (docs/pools.md)


def worker(value=90_000.0, unit="Gh/s") -> dict:
    return {"state": "ok", "last_share": int(NOW.timestamp()) - 60, "hash_rate_unit": unit,
            "hash_rate_5m": value, "hash_rate_60m": value, "hash_rate_24h": value}


def day_row(days_ago: int, total: str = CREDIT, referral: str = "0") -> dict:
    return {"date": int(TODAY.timestamp()) - days_ago * DAY_S, "total_reward": total, "mining_reward": total,
            "bos_plus_reward": "0", "referral_bonus": "0", "referral_reward": referral,
            "calculation_date": int(TODAY.timestamp()) - days_ago * DAY_S + 2 * DAY_S // 24}


def honest() -> dict[str, dict]:
    return {
        "/accounts/workers/json/btc": {"btc": {"workers": {name: worker() for name in MINERS}}},
        "/accounts/rewards/json/btc": {"btc": {"daily_rewards": [day_row(1), day_row(2)]}},
        "/accounts/profile/json/btc": {"btc": {"today_reward": "0.0001"}},
        "/accounts/payouts/json/btc": {"onchain": [{"amount_sats": 48119, "status": "confirmed"}], "lightning": []},
    }


@pytest.fixture
def pool():
    with json_by_path(honest()) as server:
        yield server


def braiins(server, name="hostile"):
    config = PoolConfig(kind="braiins", name=name, url=f"http://127.0.0.1:{server.server_address[1]}",
                        account="hashfleet", token_env="UNUSED", min_interval_s=0, days_back=3)
    src = SOURCES[PoolKind.BRAIINS](config, token="s3cret-token-value")
    src.network = NETWORK
    return src


def rounds(src, n=1) -> bool:
    async def go():
        try:
            return all([await src.refresh(NOW + timedelta(seconds=i), days=True) for i in range(n)])
        finally:
            await src.client.aclose()
    return asyncio.run(go())


def warnings(caplog, text):
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_the_honest_site_is_read_whole(pool):
    src = braiins(pool)
    assert rounds(src), src.error
    snap = src.snapshot(NOW)
    assert [w.name for w in snap.workers] == MINERS
    closed = [d for d in snap.days if d.status is DayStatus.CLOSED]
    assert [d.credited_btc for d in closed] == [0.00048119, 0.00048119] and not src.refused


def test_workers_of_another_account_are_refused_counted_and_logged_once(pool, caplog):
    pool.replies["/accounts/workers/json/btc"]["btc"]["workers"].update(
        {f"victim.rig{i}": worker(5e8) for i in range(3)})  # 500,000 TH/s each, under another account
    src = braiins(pool)
    assert rounds(src, 2), src.error
    assert [w.name for w in src.snapshot(NOW).workers] == MINERS
    assert src.refused["other_account_worker"] == 6  # three a round
    assert len(warnings(caplog, "'victim.rig0' refused: not of account 'hashfleet'")) == 1


def test_a_worker_in_the_wrong_unit_is_refused_alone(pool, caplog):
    pool.replies["/accounts/workers/json/btc"]["btc"]["workers"][MINERS[0]] = worker(90.0, unit="Eh/s")
    src = braiins(pool)
    assert rounds(src), src.error
    assert [w.name for w in src.snapshot(NOW).workers] == MINERS[1:]
    assert src.refused["implausible_worker"] == 1
    [line] = warnings(caplog, f"worker '{MINERS[0]}' refused")
    assert "90,000,000 TH/s, over 10% of the network's 858,993,459 TH/s" in line.getMessage()


def test_a_credit_1000x_too_high_costs_that_day_only(pool, caplog):
    pool.replies["/accounts/rewards/json/btc"]["btc"]["daily_rewards"][0]["total_reward"] = "0.48119"
    src = braiins(pool)
    assert rounds(src, 2), src.error
    days = {d.day: d for d in src.snapshot(NOW).days}
    assert (TODAY - timedelta(days=1)).date() not in days  # refused: not a zero, not the 0.48119
    assert days[(TODAY - timedelta(days=2)).date()].credited_btc == 0.00048119
    assert src.refused["implausible_credit"] == 2
    [line] = warnings(caplog, "credit refused")
    text = line.getMessage()
    assert f"pool hostile: {(TODAY - timedelta(days=1)).date()} credit refused: 0.48119000 BTC is 3,348x" in text
    assert "270.0 TH/s" in text


def test_two_rows_for_one_day_refuse_that_day(pool, caplog):
    pool.replies["/accounts/rewards/json/btc"]["btc"]["daily_rewards"].append(day_row(1, total="0.00000001"))
    src = braiins(pool)
    assert rounds(src), src.error
    days = {d.day: d for d in src.snapshot(NOW).days}
    assert (TODAY - timedelta(days=1)).date() not in days
    assert days[(TODAY - timedelta(days=2)).date()].credited_btc == 0.00048119
    assert src.refused["duplicate_day"] == 1 and len(warnings(caplog, "two daily_rewards rows")) == 1


def test_a_referral_over_its_total_refuses_that_day(pool, caplog):
    pool.replies["/accounts/rewards/json/btc"]["btc"]["daily_rewards"][0]["referral_reward"] = "0.001"
    src = braiins(pool)
    assert rounds(src), src.error
    days = {d.day: d for d in src.snapshot(NOW).days}
    assert (TODAY - timedelta(days=1)).date() not in days  # was: a closed day of 0 BTC
    assert src.refused["implausible_credit"] == 1 and len(warnings(caplog, "over total_reward")) == 1


def test_a_refused_day_keeps_the_day_as_last_read(pool):
    src = braiins(pool)
    assert rounds(src), src.error
    pool.replies["/accounts/rewards/json/btc"]["btc"]["daily_rewards"][0]["total_reward"] = "0.48119"
    assert rounds(src), src.error
    assert src.snapshot(NOW).day((TODAY - timedelta(days=1)).date()).credited_btc == 0.00048119
