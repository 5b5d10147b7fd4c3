"""Network state for the cost engine: static config values, or HTTP polling of a mempool.space-style API.

This is the I/O side; the cost engine (collector/stages/cost_engine.py) stays pure. `NetworkInputs`
is the source the pipeline runs: it refreshes on a schedule in the background and puts the latest
state into each cycle. Each value (difficulty, height, fees, BTC price)
is kept with the time it was fetched. A failed fetch keeps the last value and logs the URL (without
credentials: collector.redact) and reason; a reply is read up to MAX_REPLY_BYTES and a number in it
must be finite; a value older than `max_age_s`, or a static stand-in for one never fetched, is listed in
NetworkState.stale so cost figures built on it are flagged, never passed off as fresh.

Endpoints (defaults are mempool.space's, any server with the same reply format will do):
- difficulty: /api/v1/mining/hashrate/3d -> {"currentDifficulty": float, ...}
- height:     /api/blocks/tip/height     -> plain-text integer
- fees:       /api/v1/mining/blocks/fees/24h -> [{"avgHeight", "timestamp", "avgFees" (sat), "USD"}, ...];
              the last day's blocks, so the mean of avgFees is the mean fee per block
- price:      /api/v1/prices -> {"time": ..., "USD": float, ...}; `price_field` picks the number
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import httpx

from collector import clock
from collector.redact import redact, redact_url
from models.economics import NetworkFeedConfig, NetworkInput, NetworkState

if TYPE_CHECKING:
    from collector.cycle import Cycle

log = logging.getLogger(__name__)

UTC = timezone.utc
SAT_PER_BTC = 100_000_000
MAX_REPLY_BYTES = 1024 * 1024  # the largest reply (fees over a day, ~144 blocks) is ~20 KB


class NetworkStateUnavailable(RuntimeError):
    """A value was never fetched and the config has no static stand-in for it."""


# --- reply parsers: bytes in, one number out; ValueError names what was wrong -------------------


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _json(body: bytes) -> object:
    return json.loads(body, parse_constant=_no_constants)  # NaN and Infinity are not numbers


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}, not a finite number")
    return value


def parse_difficulty(body: bytes) -> float:
    reply = _json(body)
    difficulty = float(reply["currentDifficulty"]) if isinstance(reply, dict) and "currentDifficulty" in reply else 0.0
    if _finite(difficulty, "currentDifficulty") <= 0:
        # mempool answers 0 when its Bitcoin Core is unreachable: that is no reading.
        raise ValueError("reply has no positive currentDifficulty")
    return difficulty


def parse_height(body: bytes) -> float:
    text = body.decode("ascii", errors="replace").strip()
    if not text.isdigit():
        raise ValueError(f"expected a block height, got {text[:40]!r}")
    return float(int(text))


def parse_fees_btc_per_block(body: bytes) -> float:
    reply = _json(body)
    if not isinstance(reply, list) or not reply:
        raise ValueError("expected a non-empty list of blocks with avgFees")
    try:
        sats = [float(block["avgFees"]) for block in reply]
    except (KeyError, TypeError):
        raise ValueError("a block in the reply has no avgFees") from None
    return _finite(sum(sats) / len(sats) / SAT_PER_BTC, "mean avgFees")


def parse_price_usd(body: bytes, field: str = "USD") -> float:
    value: object = _json(body)
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"reply has no {field!r}")
        value = value[key]
    price = _finite(float(value), field)  # type: ignore[arg-type]  # some APIs send the price as a string
    if price <= 0:
        raise ValueError(f"{field!r} is {price}, not a price")
    return price


# --- sources -----------------------------------------------------------------------------------


class StaticNetworkSource:
    """Values from config: never fetched, never stale."""

    def __init__(self, state: NetworkState) -> None:
        self._state = state

    async def refresh(self, now: datetime | None = None) -> None:
        return None

    def snapshot(self, now: datetime | None = None) -> NetworkState:
        return self._state


@dataclass(frozen=True)
class Reading:
    value: float
    as_of: datetime


class HttpNetworkSource:
    """Polls the configured URLs; keeps the last good value of each with its age."""

    def __init__(self, config: NetworkFeedConfig) -> None:
        self.config = config
        self.readings: dict[NetworkInput, Reading] = {}
        self._endpoints: dict[NetworkInput, tuple[str, Callable[[bytes], float]]] = {
            "difficulty": (config.difficulty_url, parse_difficulty),
            "height": (config.height_url, parse_height),
            "fees": (config.fees_url, parse_fees_btc_per_block),
            "btc_price": (config.price_url, lambda body: parse_price_usd(body, config.price_field)),
        }

    async def refresh(self, now: datetime | None = None) -> None:
        """Fetch every value at once; each failure is logged and leaves that value as it was."""
        fetched_at = now or datetime.now(UTC)
        async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
            await asyncio.gather(*(self._fetch(client, name, fetched_at) for name in self._endpoints))

    async def _fetch(self, client: httpx.AsyncClient, name: NetworkInput, fetched_at: datetime) -> None:
        url, parse = self._endpoints[name]
        try:
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                value = parse(await _read_capped(response))
        except (httpx.HTTPError, ValueError) as e:
            last = self.readings.get(name)
            kept = (
                f"keeping {last.value:g} fetched at {last.as_of.isoformat()}"
                if last
                else "no earlier value; the static config value, if any, stands in (flagged stale)"
            )
            log.warning("network %s: fetch from %s failed (%s: %s); %s", name, redact_url(url), type(e).__name__,
                        redact(str(e))[:300], kept)
            return
        self.readings[name] = Reading(value, fetched_at)

    def snapshot(self, now: datetime | None = None) -> NetworkState:
        """The last known values; those older than max_age_s or never fetched are listed as stale."""
        now = now or datetime.now(UTC)
        static = self.config.static
        values: dict[str, object] = {}
        stale: list[NetworkInput] = []
        for name, key in _STATE_KEYS:
            reading = self.readings.get(name)
            if reading is not None:
                values[key] = int(reading.value) if name == "height" else reading.value
                values[f"{name}_as_of"] = reading.as_of
                if (now - reading.as_of).total_seconds() > self.config.max_age_s:
                    stale.append(name)
            elif static is not None:
                values[key] = getattr(static, key)
                if name == "height":
                    values["subsidy_btc"] = static.subsidy_btc
                stale.append(name)
            else:
                raise NetworkStateUnavailable(
                    f"no {name} yet: {redact_url(self._endpoints[name][0])} has not answered "
                    "and the config's network.static gives no stand-in value"
                )
        return NetworkState.model_validate({**values, "stale": stale})


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_REPLY_BYTES:
            raise ValueError(f"reply larger than {MAX_REPLY_BYTES // 1024} KiB")
    return bytes(body)


_STATE_KEYS: tuple[tuple[NetworkInput, str], ...] = (
    ("difficulty", "difficulty"),
    ("height", "height"),
    ("fees", "fees_btc_per_block"),
    ("btc_price", "btc_price_usd"),
)


NetworkSource = StaticNetworkSource | HttpNetworkSource


def network_source(config: NetworkFeedConfig) -> NetworkSource:
    if config.source == "static":
        assert config.static is not None  # the config model requires it
        return StaticNetworkSource(config.static)
    return HttpNetworkSource(config)


class NetworkInputs:
    """The network state as a source (collector.sources.Source): each cycle gets the latest values in
    `cycle.network` (None, with a warning, when there are none to cost against). A fetch is started
    every `refresh_s`; the first is awaited so the first cycle has values, later ones run in the
    background so a slow API never delays a cycle."""

    def __init__(self, config: NetworkFeedConfig, refresh_s: float = 300.0) -> None:
        self.source = network_source(config)
        self.refresh_s = refresh_s
        self._last_refresh: datetime | None = None
        self._refreshing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        return None

    async def announce(self, cycle: Cycle) -> None:
        now = cycle.ts
        due = clock.due(None if self._last_refresh is None else (now - self._last_refresh).total_seconds(),
                        self.refresh_s)
        if due and (self._refreshing is None or self._refreshing.done()):
            first = self._last_refresh is None
            self._last_refresh = now
            self._refreshing = asyncio.create_task(self._refresh(now))
            if first:
                await self._refreshing
        try:
            cycle.network = self.source.snapshot(now)
        except NetworkStateUnavailable as e:
            log.warning("no cost figures this cycle: %s", e)
        except Exception:  # whatever the values are, the cycle goes on without them
            log.exception("no cost figures this cycle: the network state could not be read")

    async def collect(self, cycle: Cycle) -> None:
        return None

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)

    async def _refresh(self, now: datetime) -> None:
        try:
            await self.source.refresh(now)
        except Exception:  # the source logs what it expects; anything else must not stop the service
            log.exception("network state refresh failed; the last values stand")
