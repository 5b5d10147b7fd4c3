"""The cost stage of the collect loop: the stateful glue around the pure engine.

Each cycle it takes the cycle's samples, the network state and the live inputs,
asks `collector.cost` for miner, site and fleet figures, and advances the
running totals (today, this month) over the time since the previous cycle.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from pathlib import Path

from collector import cost, totals_store
from collector.live_inputs import LiveInputs
from collector.network_state import NetworkSource, NetworkStateUnavailable, network_source
from models import CostSample, MinerSample, NetworkFeedConfig, NetworkState, SiteEconomics

log = logging.getLogger(__name__)

MAX_INTEGRATION_GAP_S = 600  # longer gaps (collector down) are not integrated: nothing is known about them


@dataclass
class CycleCost:
    miners: list[CostSample]
    site: CostSample
    fleet: CostSample
    network: NetworkState
    metered_gap_w: dict[str, float]  # reported - metered, by miner, where a meter reads


class CostStage:
    def __init__(self, site: str, economics: SiteEconomics, network: NetworkFeedConfig,
                 live: LiveInputs | None = None, network_refresh_s: float = 300.0,
                 totals_path: Path | None = None):
        self.site = site
        self.economics = economics
        self.source: NetworkSource = network_source(network)
        self.live = live or LiveInputs()
        self.network_refresh_s = network_refresh_s
        self.totals_path = totals_path  # where today's and this month's totals survive restarts
        self._totals: cost.RunningTotals | None = totals_store.load(totals_path) if totals_path else None
        self._last_ts: datetime | None = None
        self._last_refresh: datetime | None = None
        self._refreshing: asyncio.Task | None = None

    async def refresh_network(self, now: datetime) -> None:
        """Start a network-state fetch when one is due. The first one is awaited so the first cycle
        has values; later ones run in the background so a slow API never delays a cycle."""
        due = self._last_refresh is None or (now - self._last_refresh).total_seconds() >= self.network_refresh_s
        if not due or (self._refreshing is not None and not self._refreshing.done()):
            return
        first = self._last_refresh is None
        self._last_refresh = now
        self._refreshing = asyncio.create_task(self.source.refresh(now))
        if first:
            await self._refreshing

    def apply(self, samples: list[MinerSample], now: datetime) -> CycleCost | None:
        try:
            network = self.source.snapshot(now)
        except NetworkStateUnavailable as e:
            log.warning("no cost figures this cycle: %s", e)
            return None
        network = self._with_live_btc_price(network)
        samples, gaps = self._metered(samples, now)
        live_price = self.live.power_price
        costs = cost.site_cost(self.site, samples, self.economics, network, now, live_price=live_price)
        gap_s = None if self._last_ts is None else (now - self._last_ts).total_seconds()
        if gap_s is not None and 0 < gap_s <= MAX_INTEGRATION_GAP_S:
            self._totals = cost.advance(self._totals, samples, self.economics, network, self._last_ts, now,
                                        live_price=live_price)
        elif self._totals is not None and now >= self._totals.as_of:
            # After a long gap or a restart (totals loaded from disk): nothing is known about the
            # time in between, so it is not counted; the totals carry on from here.
            if gap_s is not None:
                log.warning("%.0f s since the last cycle: that gap is not counted in today's totals", gap_s)
            self._totals = cost.advance(self._totals, samples, self.economics, network, now, now,
                                        live_price=live_price)
        self._last_ts = now
        if self._totals is not None:
            costs = cost.attach_totals(costs, self._totals)
            if self.totals_path is not None:
                try:
                    totals_store.save(self.totals_path, self._totals)
                except OSError as e:
                    log.error("cannot save running totals to %s: %s", self.totals_path, e)
        return CycleCost(costs.miners, costs.site, cost.fleet_cost([costs.site], now), network, gaps)

    def _with_live_btc_price(self, network: NetworkState) -> NetworkState:
        if self.live.btc_price_usd is None:
            return network
        # A live price is fresh by construction (its feed sets it); it replaces a stale polled one.
        return network.model_copy(update={"btc_price_usd": self.live.btc_price_usd,
                                          "btc_price_as_of": self.live.btc_price_as_of,
                                          "stale": [s for s in network.stale if s != "btc_price"]})

    def _metered(self, samples: list[MinerSample], now: datetime) -> tuple[list[MinerSample], dict[str, float]]:
        """Samples with metered watts in place of reported ones, and the reported-minus-metered gaps."""
        if not self.live.metered_w:
            return samples, {}
        out, gaps = [], {}
        for sample in samples:
            metered = self.live.metered_power(sample.miner, now)
            if metered is None:
                out.append(sample)
                continue
            if sample.power_w is not None:
                gaps[sample.miner] = sample.power_w - metered
            efficiency = metered / sample.hashrate_ths if sample.hashrate_ths else None
            out.append(sample.model_copy(update={"power_w": metered, "efficiency_j_th": efficiency}))
        return out, gaps
