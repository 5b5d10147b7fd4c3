"""Network state from a real local HTTP server serving recorded-format replies (tests/data/network/)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collector.stages.cost_engine import miner_cost, network_subsidy_btc
from collector.sources.network import (
    HttpNetworkSource,
    NetworkStateUnavailable,
    StaticNetworkSource,
    network_source,
    parse_price_usd,
)
from collector.sinks.points import network_fields
from models import FlatTariff, MinerSample, MinerState, NetworkFeedConfig, NetworkState, SampleSource, SiteEconomics

UTC = timezone.utc
from tests.support import DATA as _DATA

DATA = _DATA / "network"
NOW = datetime(2025, 3, 25, 12, 0, tzinfo=UTC)
ROUTES = {
    "/api/v1/mining/hashrate/3d": "mempool-space_api-v1-mining-hashrate-3d.json",
    "/api/blocks/tip/height": "mempool-space_api-blocks-tip-height.txt",
    "/api/v1/mining/blocks/fees/24h": "mempool-space_api-v1-mining-blocks-fees-24h.json",
    "/api/v1/prices": "mempool-space_api-v1-prices.json",
    "/v2/prices/BTC-USD/spot": "coinbase_v2-prices-btc-usd-spot.json",
    "/no-core/api/v1/mining/hashrate/3d": "mempool-space_api-v1-mining-hashrate-3d_no-core.json",
}


@dataclass
class Fault:
    status: int = 200
    delay_s: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        fault = self.server.faults.get(self.path, Fault())
        time.sleep(fault.delay_s)
        name = ROUTES.get(self.path)
        if name is None or fault.status != 200:
            self.send_response(404 if name is None else fault.status)
            self.end_headers()
            return
        body = (DATA / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain" if name.endswith(".txt") else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        return


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    faults: dict[str, Fault]

    def handle_error(self, request: object, client_address: object) -> None:
        # The client gave up on a deliberately slow reply, so writing to its socket fails.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api() -> Iterator[_ApiServer]:
    server = _ApiServer(("127.0.0.1", 0), _Handler)
    server.faults = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def base(api: _ApiServer) -> Iterator[str]:
    api.faults.clear()
    yield f"http://127.0.0.1:{api.server_address[1]}"
    api.faults.clear()


def feed(base: str, **overrides: object) -> NetworkFeedConfig:
    return NetworkFeedConfig.model_validate({
        "source": "http",
        "difficulty_url": f"{base}/api/v1/mining/hashrate/3d",
        "height_url": f"{base}/api/blocks/tip/height",
        "fees_url": f"{base}/api/v1/mining/blocks/fees/24h",
        "price_url": f"{base}/api/v1/prices",
        "timeout_s": 2,
        "max_age_s": 600,
        **overrides,
    })


STATIC = NetworkState(difficulty=1.1e14, height=880_000, fees_btc_per_block=0.03, btc_price_usd=95_000)


def test_reads_every_value_from_mempool_style_replies(base: str) -> None:
    source = HttpNetworkSource(feed(base))
    asyncio.run(source.refresh(NOW))
    state = source.snapshot(NOW + timedelta(seconds=30))
    assert state.difficulty == 113_757_508_810_853.0
    assert state.height == 889_343 and network_subsidy_btc(state) == 3.125
    assert state.fees_btc_per_block == pytest.approx(0.0275)
    assert state.btc_price_usd == 87_321
    assert state.difficulty_as_of == state.height_as_of == state.fees_as_of == state.btc_price_as_of == NOW
    assert state.stale == []


def test_values_older_than_max_age_are_flagged_stale_not_dropped(base: str) -> None:
    source = HttpNetworkSource(feed(base))
    asyncio.run(source.refresh(NOW))
    state = source.snapshot(NOW + timedelta(seconds=601))
    assert state.stale == ["difficulty", "height", "fees", "btc_price"]
    assert state.btc_price_usd == 87_321
    fields = network_fields(state, NOW + timedelta(seconds=601))
    assert fields["stale"] == 1.0 and fields["btc_price_age_s"] == 601.0


def test_failed_fetch_keeps_the_last_value_and_logs_the_url(
    api: _ApiServer, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = HttpNetworkSource(feed(base))
    asyncio.run(source.refresh(NOW))
    api.faults["/api/v1/prices"] = Fault(status=503)
    later = NOW + timedelta(seconds=300)
    with caplog.at_level(logging.WARNING, logger="collector.sources.network"):
        asyncio.run(source.refresh(later))
    assert f"{base}/api/v1/prices" in caplog.text and "503" in caplog.text and "keeping 87321" in caplog.text
    state = source.snapshot(later + timedelta(seconds=400))  # price is now 700 s old, the rest 400 s
    assert state.btc_price_usd == 87_321 and state.btc_price_as_of == NOW
    assert state.difficulty_as_of == later
    assert state.stale == ["btc_price"]


def test_slow_server_times_out_and_static_value_stands_in_flagged(
    api: _ApiServer, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    api.faults["/api/v1/mining/hashrate/3d"] = Fault(delay_s=1.0)
    source = HttpNetworkSource(feed(base, timeout_s=0.2, static=STATIC.model_dump()))
    with caplog.at_level(logging.WARNING, logger="collector.sources.network"):
        asyncio.run(source.refresh(NOW))
    assert "Timeout" in caplog.text and f"{base}/api/v1/mining/hashrate/3d" in caplog.text
    state = source.snapshot(NOW)
    assert state.difficulty == 1.1e14 and state.difficulty_as_of is None
    assert state.stale == ["difficulty"]
    assert state.btc_price_usd == 87_321


def test_mempool_without_bitcoin_core_gives_no_difficulty(base: str, caplog: pytest.LogCaptureFixture) -> None:
    source = HttpNetworkSource(feed(base, difficulty_url=f"{base}/no-core/api/v1/mining/hashrate/3d"))
    with caplog.at_level(logging.WARNING, logger="collector.sources.network"):
        asyncio.run(source.refresh(NOW))
    assert "currentDifficulty" in caplog.text
    with pytest.raises(NetworkStateUnavailable, match="no-core"):
        source.snapshot(NOW)


def test_unreachable_server_without_fallback_is_an_error_naming_the_url() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = HttpNetworkSource(feed(f"http://127.0.0.1:{port}"))
    asyncio.run(source.refresh(NOW))
    with pytest.raises(NetworkStateUnavailable, match=f"127.0.0.1:{port}/api/v1/mining/hashrate/3d"):
        source.snapshot(NOW)


def test_price_api_with_a_nested_string_field(base: str) -> None:
    source = HttpNetworkSource(feed(base, price_url=f"{base}/v2/prices/BTC-USD/spot", price_field="data.amount"))
    asyncio.run(source.refresh(NOW))
    assert source.snapshot(NOW).btc_price_usd == pytest.approx(87_321.45)
    with pytest.raises(ValueError, match="USD"):
        parse_price_usd(b'{"data": {"amount": "1"}}', "USD")


def test_static_source_is_the_default_and_never_stale() -> None:
    config = NetworkFeedConfig(static=STATIC)
    source = network_source(config)
    assert isinstance(source, StaticNetworkSource)
    asyncio.run(source.refresh())
    assert source.snapshot(NOW + timedelta(days=30)) == STATIC
    with pytest.raises(ValueError, match="static"):
        NetworkFeedConfig(source="static")


def test_cost_built_on_stale_network_state_is_flagged(base: str) -> None:
    source = HttpNetworkSource(feed(base))
    asyncio.run(source.refresh(NOW))
    sample = MinerSample(miner="m", host="m", ts=NOW, state=MinerState.MINING, source=SampleSource.AVALON,
                         hashrate_ths=200, power_w=3_500)
    economics = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.05))
    fresh = miner_cost(sample, economics, source.snapshot(NOW), NOW)
    old_at = NOW + timedelta(hours=2)
    old = miner_cost(sample, economics, source.snapshot(old_at), old_at)
    assert not fresh.stale
    assert old.stale and old.stale_inputs == ["btc_price", "difficulty", "fees", "height"]
    assert old.all_in_cost_per_btc == pytest.approx(fresh.all_in_cost_per_btc)  # used, but flagged


def test_a_clock_stepped_back_refreshes_at_once_not_once_it_has_caught_up(base: str) -> None:
    """The values were fetched while the clock was 3 h fast; stepped back (collector/clock.py), the next
    cycle starts a fetch. It waited until the clock reached the last fetch again: 3 h of old prices."""
    from collector.cycle import Cycle
    from collector.sources.network import NetworkInputs

    inputs = NetworkInputs(feed(base), refresh_s=300)

    async def cycles() -> None:
        await inputs.announce(Cycle("s1", NOW))  # the first fetch is awaited
        back = NOW - timedelta(hours=3)
        await inputs.announce(Cycle("s1", back))
        assert inputs._refreshing is not None
        await inputs._refreshing
        assert inputs.source.snapshot(back).btc_price_as_of == back

    asyncio.run(cycles())
