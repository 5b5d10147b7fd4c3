"""Fleet overview: how much the fleet hashes and draws now, which miners need a person, what a coin costs."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard as model

from dashboards import shards
from dashboards.common import (
    BUCKET, SITE, SITE_COST, bar_gauge_panel, finish, miner_detail_link, new_dashboard, per_miner_sum, pie_panel,
    query, site_variable, stat_panel, table_panel, thresholds, timeseries_panel, transform,
)
from models import schema

UID = "hashfleet-fleet"
TITLE = "Fleet overview"

# Efficiency is over the readings that have both a power and a hashrate: a miner mining with its power refused
# (or a chain that reports none) adds neither, rather than its hashrate alone (J/TH understated).
BOTH_READ = '"power_w" >= 0 AND "hashrate_ths" >= 0'
EFFICIENCY = (
    'SELECT sum("power") / sum("hashrate") AS "efficiency" FROM (SELECT mean("power_w") AS "power", '
    f'mean("hashrate_ths") AS "hashrate" FROM "{schema.MINER}" WHERE {SITE} AND $timeFilter AND {BOTH_READ} '
    f'{BUCKET}, "miner" fill(none)) WHERE $timeFilter {BUCKET} fill(none)'
)
MINERS_UP = (
    f'SELECT sum("up") AS "answering", count("up") AS "polled" FROM (SELECT last("up") AS "up" FROM "{schema.MINER}" '
    f'WHERE {SITE} AND $timeFilter {BUCKET}, "miner" fill(none)) WHERE $timeFilter {BUCKET} fill(none)'
)
LATEST_STATE = (
    f'SELECT last("state") AS "state", last("up") AS "up" FROM "{schema.MINER}" '
    f'WHERE {SITE} AND $timeFilter GROUP BY "miner", "model"'
)
OFFLINE = (
    'SELECT "up", "state", "error" FROM (SELECT last("up") AS "up", last("state") AS "state", '
    f'last("error") AS "error" FROM "{schema.MINER}" WHERE {SITE} AND $timeFilter GROUP BY "miner", "model") '
    'WHERE "up" = 0 GROUP BY "miner", "model"'
)
HOTTEST = (
    'SELECT last("temp_chip_max_c") AS "chip max", last("temp_board_max_c") AS "board max", '
    f'last("temp_env_c") AS "ambient" FROM "{schema.MINER}" '
    f'WHERE {SITE} AND $timeFilter GROUP BY "miner", "model"'
)
EFFICIENCY_BY_MODEL = (
    'SELECT sum("power") / sum("hashrate") AS "efficiency" FROM (SELECT last("power_w") AS "power", '
    f'last("hashrate_ths") AS "hashrate" FROM "{schema.MINER}" WHERE {SITE} AND $timeFilter AND "state" = \'mining\' '
    f'AND {BOTH_READ} '
    'GROUP BY "miner", "model") GROUP BY "model"'
)

EFFICIENCY_STEPS = thresholds((None, "green"), (25, "yellow"), (35, "red"))
CHIP_STEPS = thresholds((None, "green"), (80, "yellow"), (90, "red"))


def build() -> model.Dashboard:
    board = (
        new_dashboard(UID, TITLE, "Hashrate, power, efficiency and state of every miner, and the live cost per BTC.")
        .with_variable(site_variable())
        .with_row(dash.Row("Now"))
        .with_panel(stat_panel("Hashrate", [query(per_miner_sum({"hashrate": "hashrate_ths"}))], "THs",
                               description="Live hashrate summed over miners (offline miners add nothing)."))
        .with_panel(stat_panel("Power", [query(per_miner_sum({"power": "power_w"}))], "watt",
                               description="Wall power the miners report, summed."))
        .with_panel(stat_panel("Efficiency", [query(EFFICIENCY)], "suffix: J/TH", steps=EFFICIENCY_STEPS,
                               decimals=1, description="Fleet power / fleet hashrate over the readings with both (a power refused or not reported leaves that miner out): idle and soft-off watts count."))
        .with_panel(stat_panel("Miners answering", [query(MINERS_UP)], "none",
                               description="Miners that answered the last poll, of those polled."))
        .with_panel(stat_panel(
            "All-in cost per BTC",
            [query(shards.cost_per_btc(SITE_COST, {"all-in": "all-in"}, bucketed=False), alias="$tag_site")],
            "currencyUSD", decimals=0,
            description="Energy + cash opex + depreciation per net BTC mined, at this instant. See Economics."))
        .with_panel(stat_panel(
            "BTC price",
            [query(f'SELECT mean("btc_price_usd") AS "BTC price" FROM "{schema.NETWORK}" WHERE {SITE} AND $timeFilter '
                   f'{BUCKET} fill(none)')],
            "currencyUSD", decimals=0))
        .with_row(dash.Row("Fleet"))
        .with_panel(timeseries_panel(
            "Hashrate: live vs expected",
            [query(per_miner_sum({"live": "hashrate_ths", "expected": "expected_hashrate_ths"}), alias="$col")],
            "THs", description="Expected: the nameplate hashrate of the miners that answered."))
        .with_panel(timeseries_panel("Power", [query(per_miner_sum({"power": "power_w"}), alias="$col")], "watt"))
        .with_panel(timeseries_panel(
            "Hashrate by model", [query(per_miner_sum({"hashrate": "hashrate_ths"}, by="model"), alias="$tag_model")],
            "THs", stack=True, fill=30))
        .with_panel(timeseries_panel("Miners answering", [query(MINERS_UP, alias="$col")], "none", minimum=0))
        .with_panel(pie_panel(
            "Miners by state", [query(LATEST_STATE, table_format=True)], width=8,
            description="Each miner counted once, by the state of its last poll.",
            transformations=[
                transform("merge", {}),
                transform("groupBy", {"fields": {
                    "state": {"operation": "groupby", "aggregations": []},
                    "up": {"operation": "aggregate", "aggregations": ["count"]},
                }}),
                transform("organize", {"renameByName": {"up (count)": "miners"}}),
            ]))
        .with_panel(bar_gauge_panel(
            "Efficiency by model", [query(EFFICIENCY_BY_MODEL, alias="$tag_model")], "suffix: J/TH",
            width=16, steps=EFFICIENCY_STEPS, description="Power / hashrate of the mining units of each model that read both."))
        .with_row(dash.Row("Needs attention"))
        .with_panel(table_panel(
            "Offline miners", [query(OFFLINE, table_format=True)],
            description="Miners whose last poll got no answer, with the reason the collector recorded.",
            transformations=[transform("merge", {}),
                             transform("organize", {"excludeByName": {"Time": True, "up": True}})])
            .data_links([miner_detail_link()]))
        .with_panel(table_panel(
            "Hottest miners", [query(HOTTEST, table_format=True)], unit="celsius",
            description="The ten miners with the hottest chip in their last poll.",
            transformations=[
                transform("merge", {}),
                transform("organize", {"excludeByName": {"Time": True}}),
                transform("sortBy", {"sort": [{"field": "chip max", "desc": True}]}),
                transform("limit", {"limitField": 10}),
            ])
            .data_links([miner_detail_link()]).thresholds(CHIP_STEPS)
            .cell_options(common.TableColorTextCellOptions()))
    )
    return finish(board)
