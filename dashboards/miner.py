"""Miner detail: one miner (the `miner` variable) in depth: hashrate, power, boards, fans, chips, pool, cost."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard as model

from dashboards.common import (
    BUCKET, MINER, SITE, bar_gauge_panel, finish, miner_variable, new_dashboard, query, site_variable, stat_panel,
    state_mappings, state_timeline_panel, table_panel, text_stat, timeseries_panel, transform,
)
from models import schema

UID = "hashfleet-miner"
TITLE = "Miner detail"

# The site too: a host:port id (a miner that reports no MAC) can name a miner at each of two sites.
WHERE = f"{SITE} AND {MINER} AND $timeFilter"


def _series(measurement: str, fields: dict[str, str], *, by: str = "") -> str:
    selected = ", ".join(f'mean("{field}") AS "{name}"' for name, field in fields.items())
    split = f', "{by}"' if by else ""
    return f'SELECT {selected} FROM "{measurement}" WHERE {WHERE} {BUCKET}{split} fill(null)'


def build() -> model.Dashboard:
    board = (
        new_dashboard(UID, TITLE, "One miner: live vs average vs expected hashrate, power, boards, fans, chips, pool.")
        .with_variable(site_variable())
        .with_variable(miner_variable())
        .with_row(dash.Row("$miner"))
        .with_panel(text_stat("State", query(f'SELECT last("state") AS "state" FROM "{schema.MINER}" WHERE {WHERE}'),
                              mappings=state_mappings()))
        .with_panel(stat_panel(
            "Model", [query(f'SELECT last("up") AS "up" FROM "{schema.MINER}" WHERE {WHERE} GROUP BY "make", "model"',
                            alias="$tag_make $tag_model")], "none",
            description="Make and model as the miner reports them.")
            .text_mode(common.BigValueTextMode.NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(stat_panel("Hashrate (live)", [query(_series("miner", {"live": "hashrate_ths"}))], "THs"))
        .with_panel(stat_panel("Power", [query(_series("miner", {"power": "power_w"}))], "watt"))
        .with_panel(stat_panel("Efficiency", [query(_series("miner", {"efficiency": "efficiency_j_th"}))],
                               "suffix: J/TH", decimals=1))
        .with_panel(stat_panel("Uptime", [query(f'SELECT last("uptime_s") AS "uptime" FROM "{schema.MINER}" WHERE {WHERE}')],
                               "s").graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(timeseries_panel(
            "Hashrate: live vs average vs expected",
            [query(_series("miner", {"live": "hashrate_ths", "average since boot": "hashrate_avg_ths",
                                     "expected": "expected_hashrate_ths"}), alias="$col")],
            "THs", description="Live: the last minute or so. Average: since boot. Expected: nameplate."))
        .with_panel(timeseries_panel(
            "Power", [query(_series("miner", {"power": "power_w", "power limit": "power_limit_w"}), alias="$col")],
            "watt"))
        .with_panel(timeseries_panel(
            "Board temperatures",
            [query(_series("miner_board", {"chip max": "temp_chip_max_c", "outlet": "temp_out_c",
                                           "inlet": "temp_in_c"}, by="board"), alias="board $tag_board $col"),
             query(_series("miner", {"ambient": "temp_env_c"}), "B", alias="$col")],
            "celsius", fill=0))
        .with_panel(timeseries_panel(
            "Board hashrate", [query(_series("miner_board", {"average": "hashrate_avg_ths"}, by="board"),
                                     alias="board $tag_board")],
            "THs", stack=True, fill=30,
            description="Per board, the average since boot (MGHS): Avalons report no live per-board speed."))
        .with_panel(timeseries_panel(
            "Fans", [query(_series("miner", {"fastest fan": "fan_rpm_max"}), alias="$col")], "rotrpm", width=8,
            description="The fastest fan of the miner in each poll."))
        .with_panel(bar_gauge_panel(
            "Chips per board",
            [query(f'SELECT last("chips_ok") AS "answering", last("chips_expected") AS "expected" '
                   f'FROM "{schema.MINER_BOARD}" WHERE {WHERE} GROUP BY "board"', alias="board $tag_board $col")],
            "none", width=8, description="Chips that answer, against the board's chip count."))
        .with_panel(stat_panel(
            "Pool shares",
            [query(f'SELECT last("pool_accepted") AS "accepted", last("pool_rejected") AS "rejected", '
                   f'last("hw_error_pct") AS "hardware errors %" FROM "{schema.MINER}" WHERE {WHERE}')],
            "short", width=8, height=8,
            description="Accepted and rejected shares since the miner's boot, and its hardware error rate.")
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(state_timeline_panel(
            "State", [query(f'SELECT last("state") AS "state" FROM "{schema.MINER}" WHERE {WHERE} {BUCKET} fill(none)',
                            alias="$col")], width=12, height=6))
        .with_panel(timeseries_panel(
            "Cost per BTC of this miner",
            [query(f'SELECT mean("all_in_cost_per_btc") AS "all-in", mean("cash_cost_per_btc") AS "cash", '
                   f'mean("energy_cost_per_btc") AS "energy" FROM "{schema.COST}" WHERE "scope" = \'miner\' AND {WHERE} '
                   f'{BUCKET} fill(null)', alias="$col")],
            "currencyUSD", height=6, fill=0))
        .with_panel(table_panel(
            "Last errors",
            [query(f'SELECT last("state") AS "state", last("error") AS "error" FROM "{schema.MINER}" WHERE {WHERE}',
                   table_format=True)],
            width=24, height=4, description="The last error the collector recorded for this miner, if any.",
            transformations=[transform("organize", {"excludeByName": {"Time": True}})]))
    )
    return finish(board)
