"""MinerSample -> InfluxDB line protocol, the schema of README "InfluxDB schema".

Measurements written here:
  miner        tags site, miner, make, model; one point per miner per cycle
  miner_board  tags site, miner, board; one point per hashboard per cycle
  collector    tags site; the service's own health per cycle
  cost         tags site, scope (miner|site|fleet), miner; CostSample.fields()
  network      tags site; difficulty, subsidy, fees, BTC price, hashprice, ages

Field types never change between points (InfluxDB rejects a field whose type
differs from what the shard already holds): measures are always floats, `up`
and `uptime_s` integers, `state` a string.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from typing import TYPE_CHECKING

from influxdb_client import Point, WritePrecision

from models import CostSample, MinerSample

if TYPE_CHECKING:
    from collector.costing import CycleCost
    from collector.poller import CycleResult

PRECISION = WritePrecision.S  # one timestamp per cycle; seconds keep points small and idempotent


def _time(ts: datetime) -> int:
    return int(ts.timestamp())


def _floats(point: Point, **fields: float | int | None) -> Point:
    for name, value in fields.items():
        if value is not None:
            point.field(name, float(value))
    return point


def miner_points(sample: MinerSample) -> list[str]:
    point = Point("miner").tag("site", sample.site).tag("miner", sample.miner)
    if sample.make:
        point.tag("make", sample.make)
    if sample.model:
        point.tag("model", sample.model)
    _floats(
        point,
        hashrate_ths=sample.hashrate_ths,
        hashrate_avg_ths=sample.hashrate_avg_ths,
        expected_hashrate_ths=sample.expected_hashrate_ths,
        power_w=sample.power_w,
        power_limit_w=sample.power_limit_w,
        efficiency_j_th=sample.efficiency_j_th,
        temp_chip_max_c=sample.temp_chip_max_c,
        temp_board_max_c=sample.temp_board_max_c,
        temp_env_c=sample.temp_env_c,
        fan_rpm_max=sample.fan_rpm_max,
        hw_error_pct=sample.hw_error_pct,
    )
    if sample.uptime_s is not None:
        point.field("uptime_s", int(sample.uptime_s))
    if sample.pool is not None:
        _floats(point, pool_accepted=sample.pool.accepted, pool_rejected=sample.pool.rejected)
    point.field("state", sample.state.value).field("up", int(sample.up))
    if sample.errors:
        point.field("error", "; ".join(sample.errors)[:512])
    lines = [point.time(_time(sample.ts), PRECISION).to_line_protocol()]
    for board in sample.boards:
        bp = Point("miner_board").tag("site", sample.site).tag("miner", sample.miner).tag("board", str(board.index))
        _floats(
            bp,
            hashrate_ths=board.hashrate_ths,
            hashrate_avg_ths=board.hashrate_avg_ths,
            temp_in_c=board.temp_in_c,
            temp_out_c=board.temp_out_c,
            temp_chip_max_c=board.temp_chip_max_c,
            temp_chip_avg_c=board.temp_chip_avg_c,
            chips_ok=board.chips_ok,
            chips_expected=board.chips_expected,
        )
        line = bp.time(_time(sample.ts), PRECISION).to_line_protocol()
        if line:  # a board with no readings at all has no fields and no line
            lines.append(line)
    return lines


def fleet_lines(samples: Iterable[MinerSample]) -> list[str]:
    return [line for sample in samples for line in miner_points(sample)]


def collector_point(
    *, site: str, ts: datetime, poll_duration_s: float, miners_polled: int, miners_failed: int,
    points_written: int, spool_depth: int = 0, spool_dropped: int = 0,
) -> str:
    return (
        Point("collector").tag("site", site)
        .field("poll_duration_s", float(poll_duration_s))
        .field("miners_polled", int(miners_polled))
        .field("miners_failed", int(miners_failed))
        .field("points_written", int(points_written))
        .field("spool_depth", int(spool_depth))
        .field("spool_dropped", int(spool_dropped))
        .time(_time(ts), PRECISION)
        .to_line_protocol()
    )


def _cost_point(cost: CostSample, ts: datetime, extra: dict[str, float] | None = None) -> str:
    point = Point("cost")
    for key, value in cost.tags().items():
        point.tag(key, value)
    for key, value in {**cost.fields(), **(extra or {})}.items():
        point.field(key, float(value))
    return point.time(_time(ts), PRECISION).to_line_protocol()


def cost_lines(cycle_cost: CycleCost, site: str, ts: datetime, network_fields: dict[str, float]) -> list[str]:
    lines = [
        _cost_point(c, ts, {"power_meter_gap_w": cycle_cost.metered_gap_w[c.miner]}
                    if c.miner in cycle_cost.metered_gap_w else None)
        for c in cycle_cost.miners
    ]
    lines.append(_cost_point(cycle_cost.site, ts))
    lines.append(_cost_point(cycle_cost.fleet, ts))
    network = Point("network").tag("site", site)
    for key, value in network_fields.items():
        network.field(key, float(value))
    lines.append(network.time(_time(ts), PRECISION).to_line_protocol())
    return lines


def cycle_lines(result: CycleResult, spool_depth: int = 0, spool_dropped: int = 0) -> list[str]:
    """Everything one cycle writes: miners, boards, cost, network and the collector's own health."""
    from collector.network_state import network_fields

    lines = fleet_lines(result.samples)
    if result.cost is not None:
        lines += cost_lines(result.cost, result.site, result.ts, network_fields(result.cost.network, result.ts))
    lines.append(collector_point(
        site=result.site, ts=result.ts, poll_duration_s=result.duration_s, miners_polled=len(result.samples),
        miners_failed=result.failed, points_written=len(lines) + 1, spool_depth=spool_depth,
        spool_dropped=spool_dropped,
    ))
    return lines
