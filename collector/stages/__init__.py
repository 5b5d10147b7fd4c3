"""Stages: figures made from a cycle (and history), never from a socket.

    cost_engine     the pure cost engine: same inputs, same figures (docs/cost.md)
    cost_stage      the engine run over a cycle: per-miner figures part by part, roll-ups, running totals
    running_totals  today's and this month's totals kept across restarts
    health          each miner's problems, root cause and dollars lost (health_signals, root_cause,
                    health_dollars, power_truth, health_history); after the cost stage
    curtailment     the advice: run, sleep or another work mode at the price in force (curtailment_rules,
                    efficiency_book); backtest replays it over history
    pool_reconciliation  what the pools credited against what the miners' hashrate implied (pool_days,
                    pool_records)

A stage sees each cycle three times: `begin` before the first sample, `part` for each slice of
miners as they arrive (it adds its figures to the part, which then goes to the sinks), `finish`
once every source is done (its roll-ups go into the cycle, which then goes to the sinks); `close`
once when the pipeline stops (state kept across restarts is saved). A stage's figures reach the sinks
as fields of the part or cycle its sinks know (costs, cost roll-ups) or, for any other measurement
it defines in models/schema.py, as `collector.cycle.Record`s (part.records, cycle.records), which the
InfluxDB sink writes with no code of its own for them. A stage that fails costs its own figures for
that cycle, never the samples or the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collector.cycle import Cycle, MinersPart


class Stage(Protocol):
    def begin(self, cycle: Cycle) -> None: ...

    def part(self, cycle: Cycle, part: MinersPart) -> None: ...

    def finish(self, cycle: Cycle) -> None: ...

    def close(self) -> None: ...
