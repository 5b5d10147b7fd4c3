"""Maintenance: what to fix first, in dollars. The repair queue (every open problem, its root cause and
what it costs a day), where the miners stand (heat map by rack and position), chips lost over time,
root causes over time, miners that cost more to run than they earn, and power truth.

Figures are the health stage's (measurement `health`, docs/health.md): `scope` `problem` (one point per
open problem per cycle), `miner` (one per miner per cycle), `site` (the roll-up), `model` (the learned
power correction).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard as model

from dashboards import shards
from dashboards.common import (
    SITE, finish, miner_detail_link, new_dashboard, query, site_variable, stat_panel, table_panel, thresholds,
    timeseries_panel, transform,
)
from models import schema

UID = "hashfleet-maintenance"
TITLE = "Maintenance"

HEALTH = schema.HEALTH.name
PROBLEMS = f"\"scope\" = 'problem' AND {SITE}"
MINERS = f"\"scope\" = 'miner' AND {SITE}"
ROLLUP = f"\"scope\" = 'site' AND {SITE}"
NOW = "time > now() - 5m"  # a problem is written every cycle while it is open: the last 5 minutes are "now"
PLACE = '"container", "row", "rack"'


def _site_latest(fields: dict[str, str]) -> str:
    """Counts and dollars now: each shard's last roll-up, summed over the site's shards."""
    return shards.latest(HEALTH, ROLLUP, fields)


def _site_series(fields: dict[str, str]) -> str:
    return shards.bucketed(HEALTH, ROLLUP, fields)


# Not a sum over shards: each shard measures, and its cost figures use, its own. Shown per shard.
MEASURED_PUE = (f'SELECT last("measured_pue") AS "PUE" FROM "{HEALTH}" WHERE {ROLLUP} AND $timeFilter '
                f'GROUP BY "site", "{shards.SHARD}"')


REPAIR_QUEUE = (
    'SELECT last("usd_lost_day") AS "$ lost/day", last("lost_ths") AS "TH/s lost", last("severity") AS "severity", '
    f'last("evidence") AS "evidence", last("position") AS "position" FROM "{HEALTH}" '
    f'WHERE {PROBLEMS} AND $timeFilter AND {NOW} GROUP BY "miner", "cause", "signal", "part", {PLACE}'
)
# Heat map: each miner's hottest chip at its rack (columns) and position (rows).
HEAT_MAP = (
    'SELECT last("temp_chip_max_c") AS "chip C", last("position") AS "position" '
    f'FROM "{HEALTH}" WHERE {MINERS} AND $timeFilter AND {NOW} GROUP BY "rack", "miner"'
)
LOSS_BY_RACK = (
    f'SELECT sum("usd") AS "$ lost/day" FROM (SELECT last("usd_lost_day") AS "usd" FROM "{HEALTH}" '
    f'WHERE {MINERS} AND $timeFilter AND {NOW} GROUP BY {PLACE}, "miner") GROUP BY {PLACE}'
)
UNPROFITABLE = (
    'SELECT "profit", "lost" FROM (SELECT last("profit_usd_day") AS "profit", last("usd_lost_day") AS "lost", '
    f'last("unprofitable") AS "unprofitable" FROM "{HEALTH}" WHERE {MINERS} AND $timeFilter AND {NOW} '
    f'GROUP BY "miner", "model", {PLACE}) WHERE "unprofitable" = 1 GROUP BY "miner", "model", {PLACE}'
)
POWER_CORRECTION = (
    'SELECT last("power_correction") AS "metered / reported", last("power_samples") AS "ratios" '
    f'FROM "{HEALTH}" WHERE "scope" = \'model\' AND {SITE} AND $timeFilter GROUP BY "site", "model", "{shards.SHARD}"'
)
CAUSES = schema.HEALTH_CAUSES

USD = "currencyUSD"
LOSS_STEPS = thresholds((None, "green"), (0.5, "yellow"), (5, "red"))
CHIP_STEPS = thresholds((None, "blue"), (60, "green"), (80, "yellow"), (90, "red"))


def build() -> model.Dashboard:
    board = (
        new_dashboard(UID, TITLE, "What to fix first: every problem with its root cause and the dollars it loses a "
                                  "day; where miners stand; chips lost; root causes over time.", time_from="now-24h")
        .with_variable(site_variable())
        .with_row(dash.Row("Now"))
        .with_panel(stat_panel("Lost to faults", [query(_site_latest({"$/day": "usd_lost_day"}), alias="$tag_site")],
                               USD, decimals=2, steps=LOSS_STEPS,
                               description="Revenue the open problems cost a day at the live net hashprice, less the "
                                           "energy the miners no longer draw."))
        .with_panel(stat_panel("Problems", [query(_site_latest({"problems": "problems", "critical": "critical"}),
                                                  alias="$tag_site $col")], "none",
                               description="Open problems, and how many are critical (a part failed, or not mining)."))
        .with_panel(stat_panel("Miners with problems", [query(_site_latest({"miners": "miners_with_problems"}),
                                                              alias="$tag_site")], "none"))
        .with_panel(stat_panel("Costing more than they earn", [query(_site_latest({"miners": "unprofitable"}),
                                                                     alias="$tag_site")], "none",
                               description="Mining miners whose power costs more than the BTC they mine."))
        .with_panel(stat_panel("Chips dead", [query(_site_latest({"chips": "chips_dead"}), alias="$tag_site")], "none",
                               description="Chips expected and not answering, over every board of every miner."))
        .with_panel(stat_panel("Measured PUE", [query(MEASURED_PUE, alias="$tag_site $tag_collector_shard")],
                               "none", decimals=3,
                               description="Facility meter / the miners' draw; the cost figures use it in place of "
                                           "the configured PUE. A site split with --shard: a value per shard, as "
                                           "each shard measured and used it."))
        .with_row(dash.Row("What to fix first"))
        .with_panel(table_panel(
            "Repair queue", [query(REPAIR_QUEUE, table_format=True)], width=24, height=10,
            description="Every open problem, the costliest first: root cause, the place, the evidence.",
            transformations=[
                transform("merge", {}),
                transform("organize", {"excludeByName": {"Time": True},
                                       "indexByName": {"$ lost/day": 0, "miner": 1, "cause": 2, "signal": 3, "part": 4,
                                                       "container": 5, "row": 6, "rack": 7, "position": 8,
                                                       "severity": 9, "TH/s lost": 10, "evidence": 11}}),
                transform("sortBy", {"sort": [{"field": "$ lost/day", "desc": True}]}),
            ])
            .data_links([miner_detail_link()]).decimals(2))
        .with_row(dash.Row("Where"))
        .with_panel(table_panel(
            "Heat map: hottest chip by rack and position", [query(HEAT_MAP, table_format=True)], width=16, height=10,
            unit="celsius", description="Each miner's hottest chip, at its rack (columns) and position (rows), from "
                                        "the site layout.",
            transformations=[
                transform("merge", {}),
                transform("groupingToMatrix", {"columnField": "rack", "rowField": "position", "valueField": "chip C",
                                               "emptyValue": "null"}),
            ])
            .thresholds(CHIP_STEPS).cell_options(common.TableColoredBackgroundCellOptions()))
        .with_panel(table_panel(
            "Dollars lost by rack", [query(LOSS_BY_RACK, table_format=True)], width=8, height=10, unit=USD,
            description="Open problems' dollars a day, summed over each rack's miners.",
            transformations=[transform("merge", {}), transform("organize", {"excludeByName": {"Time": True}}),
                             transform("sortBy", {"sort": [{"field": "$ lost/day", "desc": True}]})])
            .thresholds(LOSS_STEPS).cell_options(common.TableColorTextCellOptions()))
        .with_row(dash.Row("Over time"))
        .with_panel(timeseries_panel(
            "Chips dead", [query(_site_series({"chips dead": "chips_dead"}), alias="$tag_site")], "none", fill=0,
            description="Chips that do not answer, summed over the site: a rising line is chips being lost."))
        .with_panel(timeseries_panel(
            "Root causes", [query(_site_series({cause: f"problems_{cause}" for cause in CAUSES}),
                                  alias="$tag_site $col")], "none", stack=True, fill=30,
            description="Open problems by root cause."))
        .with_panel(timeseries_panel(
            "Dollars lost by root cause", [query(_site_series({cause: f"usd_lost_day_{cause}" for cause in CAUSES}),
                                                 alias="$tag_site $col")], USD, stack=True, fill=30, width=24))
        .with_row(dash.Row("Economics and power truth"))
        .with_panel(table_panel(
            "Miners costing more than they earn", [query(UNPROFITABLE, table_format=True)], unit=USD,
            description="Mining, and their power costs more than the BTC they mine: profit is all-in per day.",
            transformations=[transform("merge", {}), transform("organize", {"excludeByName": {"Time": True}}),
                             transform("sortBy", {"sort": [{"field": "profit", "desc": False}]})])
            .data_links([miner_detail_link()]))
        .with_panel(table_panel(
            "Power correction by model", [query(POWER_CORRECTION, table_format=True)],
            description="Metered / reported watts learned from meters (the median over metered miners); the cost "
                        "figures apply it where no meter reads a miner once enough ratios are in. A site split "
                        "with --shard: a row per shard (each learns and applies its own).",
            transformations=[transform("merge", {}), transform("organize", {"excludeByName": {"Time": True}})]))
    )
    return finish(board)
