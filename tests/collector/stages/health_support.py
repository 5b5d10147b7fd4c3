"""Building blocks of the health tests: a healthy sample of a known model, and cycles through the
real loop's path (collector.service.run_cycle) with the cost stage before the health stage."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

from collector.cycle import Cycle, MinersPart
from collector.sources.live_inputs import LiveInputs
from collector.stages.cost_stage import CostStage
from collector.stages.health import HealthStage
from collector.stages.power_truth import PowerTruth
from models import BoardSample, FlatTariff, MinerSample, MinerState, NetworkFeedConfig, PoolInfo, SampleSource, SiteEconomics
from models.health import MinerHealth
from tests.support import deliver

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
ECONOMICS = SiteEconomics(tariff=FlatTariff(usd_per_kwh=0.05), pue=1.1, pool_fee_pct=2)
NETWORK = NetworkFeedConfig.model_validate({"source": "static", "static": {
    "difficulty": 1.2e14, "height": 900_000, "fees_btc_per_block": 0.03, "btc_price_usd": 95_000}})
A15 = "AvalonMiner 15-194"  # 194 TH/s, 3650 W, 3 boards x 160 chips, hot at 90 C


def a15(miner: str = "m1", ts: datetime = T0, **changes: Any) -> MinerSample:
    """A healthy A15-194 mid-life: each board a third of 194 TH/s, every chip answering, fans alike."""
    boards = [BoardSample(index=i, hashrate_avg_ths=194 / 3, chips_ok=160, chips_expected=160, temp_chip_max_c=75)
              for i in range(3)]
    values: dict[str, Any] = dict(
        miner=miner, host="10.0.0.1", site="s1", ts=ts, state=MinerState.MINING, source=SampleSource.AVALON,
        make="Canaan", model=A15, hashrate_ths=194.0, hashrate_avg_ths=194.0, expected_hashrate_ths=194.0,
        power_w=3600.0, power_limit_w=3760.0, temp_env_c=25.0, temp_chip_max_c=75.0, fans_rpm=[4200, 4250],
        boards=boards, pool=PoolInfo(url="stratum+tcp://pool:3333", accepted=100_000, rejected=200, stale=20,
                                     active=True),
        uptime_s=86_400, hw_error_pct=1.2)
    values.update(changes)
    return MinerSample(**values)


def with_board(sample: MinerSample, index: int, **changes: Any) -> MinerSample:
    boards = [b.model_copy(update=changes) if b.index == index else b for b in sample.boards]
    return sample.model_copy(update={"boards": boards})


class Captured:
    """A sink that keeps every part's health figures and each cycle's roll-up."""

    def __init__(self) -> None:
        self.parts: list[MinersPart] = []
        self.cycles: list[Cycle] = []

    async def write_miners(self, part: MinersPart) -> None:
        self.parts.append(part)

    async def write(self, cycle: Cycle) -> None:
        self.cycles.append(cycle)

    def close(self) -> None: ...

    def last(self, miner: str) -> MinerHealth:
        for part in reversed(self.parts):
            for health in part.health or ():
                if health.miner == miner:
                    return health
        raise AssertionError(f"no health figures for {miner}")


class Site:
    """The cost stage and the health stage, sharing live inputs and the power truth as pipeline.build wires them."""

    def __init__(self, *, economics: SiteEconomics | None = ECONOMICS, live: LiveInputs | None = None, **health: Any):
        self.live = live or LiveInputs()
        self.truth = PowerTruth()
        self.cost = CostStage("s1", economics, live=self.live, power_correction=self.truth.correction,
                              measured_pue=self.truth.measured_pue) if economics is not None else None
        self.health = HealthStage("s1", economics=economics, live=self.live, truth=self.truth, **health)
        self.captured = Captured()
        self.ts = T0

    def cycle(self, *samples: MinerSample, step_s: float = 10.0) -> Cycle:
        """One cycle of these samples (stamped with the cycle's time), `step_s` after the last."""
        self.ts += timedelta(seconds=step_s)
        stamped = [s.model_copy(update={"ts": self.ts}) for s in samples]
        stages = [s for s in (self.cost, self.health) if s is not None]
        return asyncio.run(deliver(stamped, [self.captured], stages, network=NETWORK if self.cost else None,
                                   ts=self.ts))

    def cycles(self, n: int, *samples: MinerSample, step_s: float = 10.0) -> Cycle:
        for _ in range(n):
            cycle = self.cycle(*samples, step_s=step_s)
        return cycle

    def problems(self, miner: str = "m1") -> dict[str, Any]:
        """The miner's problems this cycle, by key (signal, or signal:part)."""
        return {p.key: p for p in self.captured.last(miner).problems}
