"""The InfluxDB layout, defined once: every measurement hashfleet writes, its tags, its fields and their types.

The line-protocol encoder (collector/sinks/points.py), the local-history report (collector/history.py),
the container healthcheck (deploy/collector/healthcheck.py) and the dashboards (dashboards/) take their
names from here; a test fails when a dashboard or alert query names a measurement or field that is not
defined here. README "InfluxDB schema" describes the same layout for people.

A field's type never changes between points (InfluxDB refuses a field whose type differs from what the
shard already holds): measures are floats, counts and flags written as 0/1 integers where noted.
Firmware strings and addresses are fields or nothing, never tags (cardinality).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from models.economics import CostSample


def _numeric(annotation: object) -> bool:
    """float, int, or either or None: the CostSample figures written as floats (CostSample.fields())."""
    return annotation in (float, int) or bool(get_args(annotation)) and set(get_args(annotation)) <= {
        float, int, type(None)}


@dataclass(frozen=True)
class Measurement:
    name: str
    tags: tuple[str, ...]
    fields: dict[str, type]  # name -> float | int | str, in the order the encoder reads them

    def __str__(self) -> str:
        return self.name


MINER = Measurement("miner", ("site", "miner", "make", "model"), {
    # read straight off MinerSample, in this order
    "hashrate_ths": float, "hashrate_avg_ths": float, "expected_hashrate_ths": float, "power_w": float,
    "power_limit_w": float, "efficiency_j_th": float, "temp_chip_max_c": float, "temp_board_max_c": float,
    "temp_env_c": float, "hw_error_pct": float, "uptime_s": int,
    # derived
    "fan_rpm_max": float, "pool_accepted": float, "pool_rejected": float, "state": str, "up": int, "error": str,
    # the pool the miner says it mines on (fields, not tags: URLs and worker names are many)
    "pool_url": str, "pool_user": str,
})
MINER_SAMPLE_FIELDS = 11  # the first fields of MINER, named as MinerSample names them

MINER_BOARD = Measurement("miner_board", ("site", "miner", "board"), {
    "hashrate_ths": float, "hashrate_avg_ths": float, "temp_in_c": float, "temp_out_c": float,
    "temp_chip_max_c": float, "temp_chip_avg_c": float, "chips_ok": float, "chips_expected": float,
})

# Site and fleet points carry every CostSample figure; per-miner points (scope miner) carry the figures
# that differ between miners and that a miner's panels use (MINER_COST_FIELDS) — the rest (network
# hashprice, tariff, the miner's own power and hashrate, already in `miner`) lives on the site point.
# `collector_shard` (not `shard`: an InfluxQL keyword) keeps the roll-ups of a site's shards apart;
# per-miner points carry the miner's `model` too (one model per miner: no more series), so cost per BTC
# by model is one query. `incomplete` (0/1) marks a miner left out for a missing or refused reading, and a
# site or fleet with one; `miners_left_out` (site, fleet) counts them (docs/cost.md). `estimated_power_w` on a
# miner point: its draw is a nameplate estimate (economics.estimate_missing_power); `miners_estimated` counts them.
# Realized cost per BTC (site scope, every cycle): the last UTC day every pool has closed and credited, its
# spend over the BTC the pools credited, beside the same day's spend over the BTC expected from reported hashrate.
REALIZED_COST_FIELDS = (
    "realized_all_in_cost_per_btc", "realized_cash_cost_per_btc", "realized_energy_cost_per_btc",
    "expected_all_in_cost_per_btc_last_day", "credited_btc_last_day", "expected_net_btc_last_day",
    "all_in_usd_last_day", "last_day_age_s",
)
COST = Measurement("cost", ("site", "scope", "miner", "model", "collector_shard"), {
    **{name: float for name, info in CostSample.model_fields.items() if _numeric(info.annotation)},
    "stale": float, "incomplete": float, "power_meter_gap_w": float,
    **dict.fromkeys(REALIZED_COST_FIELDS, float),
})
MINER_COST_FIELDS = (
    "btc_per_day_net", "revenue_usd_day", "energy_usd_day", "demand_usd_day", "curtailment_credit_usd_day",
    "opex_usd_day", "depreciation_usd_day", "profit_usd_day", "margin_pct", "breakeven_power_price",
    "energy_cost_per_btc", "cash_cost_per_btc", "all_in_cost_per_btc", "btc_today", "all_in_usd_today",
)

NETWORK = Measurement("network", ("site",), {
    "difficulty": float, "height": float, "subsidy_btc": float, "fees_btc_per_block": float,
    "btc_price_usd": float, "hashprice_usd_ph_day": float, "stale": float,
    "difficulty_age_s": float, "height_age_s": float, "fees_age_s": float, "btc_price_age_s": float,
})

# `instance`: which collector process wrote it (host/pid/random), a tag so that two writing one site's shard at
# once (given the same --shard on two hosts) keep a point each, and show as two (a new series per start).
COLLECTOR = Measurement("collector", ("site", "collector_shard", "instance"), {
    "poll_duration_s": float, "miners_polled": int, "miners_failed": int,  # this cycle's
    "points_written": int,  # lines of this cycle's batch, its own included, into the spool (InfluxDB down or not)
    "spool_depth": int,  # batches waiting for InfluxDB
    "spool_dropped": int,  # batches dropped over the disk budget (or for room on a full disk), since created
    "spool_rejected": int,  # lines InfluxDB refused as malformed, kept aside as .lp.rejected
    "spool_lost_lines": int,  # lines neither stored nor delivered (a full disk)
    "spool_expired": int,  # local history only: batches past spool.retention_h deleted, since created
    # MQTT ingest, payloads since start (with MQTT ingest configured): accepted; malformed (oversized, not
    # JSON, invalid); unknown (no subscription or meter mapping matches); refused (future-dated, out of
    # bounds, older, replayed); limited (over the MQTT miner cap, or not allow-listed); accepted_stale (a
    # price already older than its max age on arrival: held, not used). Fields refused in accepted telemetry
    # (left empty and named in the sample's `unusable`), since start.
    "mqtt_accepted": int, "mqtt_malformed": int, "mqtt_unknown": int, "mqtt_refused": int, "mqtt_limited": int,
    "mqtt_accepted_stale": int,
    "mqtt_fields_refused": int,
})

# Pool accounts and workers as the pools show them (collector/sources/pools/, the reconciliation stage).
# scope `account`: every cycle, one point per pool; scope `worker`: one point per worker each time its pool
# is read; scope `site` (no `pool` tag): the miners whose pool user no pool lists.
POOL = Measurement("pool", ("site", "pool", "scope", "worker"), {
    "hashrate_ths": float,  # pool-side accepted
    "reported_hashrate_ths": float,  # what the matching miners reported meanwhile
    "hashrate_ratio": float,  # pool-side / reported (worker scope)
    "pool_reported_hashrate_ths": float,  # what the miner told the pool (F2Pool)
    "rejected_ths": float, "stale_ths": float, "last_share_age_s": float,
    "age_s": float, "stale": float, "workers": float, "workers_unmatched": float, "miners": float,
    "miners_unmatched": float, "matched": float, "error": str, "state": str,
})

# One point per UTC day (timestamped at its 00:00 UTC, rewritten as the day's figures change) per worker,
# account (tag `pool`) and site: the waterfall of models/reconciliation.py, and realized cost (site).
POOL_DAY_BREAKDOWN = ("potential_btc", "offline_btc", "curtailed_btc", "expected_btc", "over_report_btc",
                      "unmatched_btc", "rejected_stale_btc", "accepted_btc", "unobserved_btc", "luck_btc", "fee_btc",
                      "credited_btc", "gap_btc")
POOL_DAY = Measurement("pool_day", ("site", "pool", "scope", "worker"), {
    **dict.fromkeys(POOL_DAY_BREAKDOWN, float),
    "status": str, "closed": float, "complete": float, "derived": float, "coverage": float,
    "reported_ths": float, "pool_ths": float, "over_report_pct": float, "over_reporting": float,
    "fee_rate": float, "payouts_btc": float, "blocks": float, "expected_net_btc": float,
    "all_in_usd": float, "cash_usd": float, "power_usd": float, "realized_all_in_cost_per_btc": float,
    "realized_cash_cost_per_btc": float, "realized_energy_cost_per_btc": float, "expected_all_in_cost_per_btc": float,
})

# Hardware health (collector/stages/health.py, docs/health.md). `scope`: `problem` (one point per open
# problem per cycle: what the repair queue lists), `miner` (one per miner per cycle: heat map, chips),
# `site` (the roll-up, with per-cause counts and dollars), `model` (the learned power correction).
# Place tags (container, row, rack) come from the site layout; `position` is a field (one per miner:
# too many values for a tag). `part` names the board or fan a problem concerns (board1, fan0).
HEALTH_CAUSES = ("network", "pool", "thermal", "board", "power", "firmware", "reading")  # models.health.Cause
HEALTH = Measurement("health", ("site", "scope", "miner", "model", "cause", "signal", "part", "container", "row",
                                "rack", "collector_shard"), {
    # problem and miner
    "usd_lost_day": float, "lost_ths": float, "severity": str, "level": int, "position": str,
    # problem
    "value": float, "limit": float, "evidence": str, "address": str,
    # miner
    "problems": int, "expected_ths": float, "profit_usd_day": float, "unprofitable": int, "chips_dead": float,
    "chips_lost_week": float, "temp_chip_max_c": float, "main_cause": str, "power_correction": float,
    # site
    "miners": int, "miners_with_problems": int, "critical": int, "measured_pue": float,
    **{f"problems_{cause}": int for cause in HEALTH_CAUSES},
    **{f"usd_lost_day_{cause}": float for cause in HEALTH_CAUSES},
    # model
    "power_samples": int,
})

# Curtailment (collector/stages/curtailment.py, docs/curtailment.md). Scope `site`: the plan's summary
# every cycle; scope `miner`: each miner the plan does not simply leave running as usual (asleep, another
# work mode) and each one whose plan changed, so the last point of a miner is its plan now.
CURTAILMENT_SITE_FIELDS = (
    "price_usd_kwh", "revenue_usd_th_day", "stale", "strategy", "control_mode", "killed",
    "miners_planned", "miners_run", "miners_sleep", "miners_lower", "changes", "held", "deferred",
    "miners_off_plan", "planned_kw", "always_on_kw", "drawn_kw", "shed_kw", "dr_limit_kw", "dr_shed_kw", "dr_need_kw", "dr_met",
    "dr_gap_usd_h", "saved_usd_day", "energy_saved_kwh_day", "btc_forgone_day", "saved_usd_total", "energy_saved_kwh_total",
    "btc_forgone_total",
)
CURTAILMENT_MINER_FIELDS = (
    "action", "mode", "reason", "kw", "kw_always_on", "margin_usd_kwh", "efficiency_j_th", "profit_usd_day",
    "changed", "held", "dr",
)
_CURTAILMENT_TYPES: dict[str, type] = {
    "stale": int, "strategy": str, "control_mode": str, "killed": int, "miners_planned": int, "miners_run": int,
    "miners_sleep": int, "miners_lower": int, "changes": int, "held": int, "deferred": int, "miners_off_plan": int, "dr_met": int,
    "action": str, "mode": str, "reason": str, "changed": int, "dr": int,
}
CURTAILMENT = Measurement("curtailment", ("site", "scope", "miner"), {
    name: _CURTAILMENT_TYPES.get(name, float) for name in dict.fromkeys(CURTAILMENT_SITE_FIELDS + CURTAILMENT_MINER_FIELDS)
})

# Every step of every action curtailment control takes on a miner (collector/sinks/curtailment_control.py),
# the same events as its audit log: dry_run, sent, accepted, refused, error, confirmed, unconfirmed, skipped,
# taken_back (an operator took a miner back from control), released (a change undone otherwise: a reboot).
ACTION = Measurement("action", ("site", "miner", "action", "result"), {
    "reason": str, "detail": str, "command": str, "host": str, "kw": float, "attempt": int, "control_mode": str,
})

# The power price each cycle used: `source` tariff (flat, time of use), live (a fresh feed price) or
# fallback (the live tariff's fallback: no fresh price). What `hashfleet backtest` replays without --prices.
POWER_PRICE = Measurement("power_price", ("site", "source"), {"usd_per_kwh": float, "stale": int})

MEASUREMENTS = {m.name: m for m in (MINER, MINER_BOARD, COST, NETWORK, COLLECTOR, POOL, POOL_DAY, HEALTH,
                                             CURTAILMENT, ACTION, POWER_PRICE)}
