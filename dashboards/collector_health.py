"""Collector health: is the collector keeping up, failing to reach miners, or unable to write?"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from dashboards import shards
from dashboards.common import (
    BUCKET, SITE, finish, new_dashboard, query, site_variable, stat_panel, thresholds, timeseries_panel,
)
from models import schema

UID = "hashfleet-collector"
TITLE = "Collector health"

WHERE = f"{SITE} AND $timeFilter"
SPOOL_STEPS = thresholds((None, "green"), (1, "yellow"), (10_000, "red"))
FAILED_STEPS = thresholds((None, "green"), (1, "orange"))
AGE_STEPS = thresholds((None, "green"), (900, "orange"))
# What "Network data age" says with nothing to draw: the ages are written only for fetched values.
STATIC_NETWORK = "No fetched network values (network.source static has none: its values are the config's)"


def _last_cycle(fields: dict[str, str], how: str = "sum") -> str:
    """Each collector's last point, then over a site's shards (summed, or `how`)."""
    return shards.latest(schema.COLLECTOR.name, SITE, fields, how)


def _series(fields: dict[str, str], each: str = "mean", how: str = "sum") -> str:
    return shards.bucketed(schema.COLLECTOR.name, SITE, fields, each, how)


# MQTT payloads by outcome, counted since the collector started (a restart starts them again at 0).
MQTT_INGEST = (
    'SELECT ' + ", ".join(f'max("mqtt_{name}") AS "{name}"'
                          for name in ("accepted", "accepted_stale", "malformed", "unknown", "refused", "limited"))
    + f' FROM "{schema.COLLECTOR}" WHERE {WHERE} {BUCKET}, "site" fill(none)'
)

# Collector processes that wrote each shard (an unsharded site: the site) in the 2 minutes before the range's
# end: two means two collectors were given one shard (every miner polled and written twice); a restart shows
# two for a moment (the old process's last point and the new one's).
COLLECTORS = (f'SELECT count("cycles") AS "collectors" FROM (SELECT count("poll_duration_s") AS "cycles" '
              f'FROM "{schema.COLLECTOR}" WHERE {WHERE} AND time >= {shards.RANGE_END} - 2m '
              f'GROUP BY "site", "{shards.SHARD}", "instance") GROUP BY "site", "{shards.SHARD}"')
COLLECTORS_STEPS = thresholds((None, "green"), (2, "red"))

NETWORK_AGES = (
    'SELECT max("difficulty_age_s") AS "difficulty", max("height_age_s") AS "height", max("fees_age_s") AS "fees", '
    f'max("btc_price_age_s") AS "BTC price" FROM "{schema.NETWORK}" WHERE {WHERE} {BUCKET}, "site" fill(none)'
)


def build() -> model.Dashboard:
    board = (
        new_dashboard(UID, TITLE, "Poll duration, failures, points written, spool depth, network-data freshness.",
                      time_from="now-3h")
        .with_variable(site_variable())
        .with_row(dash.Row("Last cycle"))
        .with_panel(stat_panel("Poll duration", [query(_last_cycle({"poll": "poll_duration_s"}, "max"),
                                                       alias="$tag_site")],
                               "s", decimals=2, description="Wall time of one poll cycle over the whole fleet (a site "
                                                            "split with --shard: its slowest shard)."))
        .with_panel(stat_panel("Miners polled", [query(_last_cycle({"polled": "miners_polled"}), alias="$tag_site")],
                               "none"))
        .with_panel(stat_panel("Miners failed", [query(_last_cycle({"failed": "miners_failed"}), alias="$tag_site")],
                               "none", steps=FAILED_STEPS,
                               description="Miners that did not answer or answered garbage."))
        .with_panel(stat_panel("Points written", [query(_last_cycle({"points": "points_written"}),
                                                        alias="$tag_site")], "none",
                               description="Lines the last cycle wrote to the spool, on their way to InfluxDB (while "
                                           "it is down they wait there: spool depth)."))
        .with_panel(stat_panel("Spool depth", [query(_last_cycle({"spool": "spool_depth"}), alias="$tag_site")],
                               "none", steps=SPOOL_STEPS,
                               description="Batches waiting on disk because InfluxDB did not take them yet."))
        .with_panel(stat_panel(
            "Collectors per shard", [query(COLLECTORS, alias="$tag_site $tag_collector_shard")], "none",
            steps=COLLECTORS_STEPS,
            description="Collector processes writing each shard (or the site) in the last 2 minutes. 2 or more: two "
                        "collectors were given the same --shard (on two hosts), and every miner of it is polled and "
                        "written twice; a restart shows 2 for a moment."))
        .with_panel(stat_panel(
            "Network data stale",
            [query(f'SELECT max("stale") AS "stale" FROM "{schema.NETWORK}" WHERE {WHERE} {BUCKET}, "site" fill(none)',
                   alias="$tag_site")],
            "bool_yes_no", steps=thresholds((None, "green"), (1, "orange")),
            description="Yes: difficulty, fees or BTC price is older than its max age (or a static stand-in)."))
        .with_row(dash.Row("Over time"))
        .with_panel(timeseries_panel(
            "Poll duration",
            [query(_series({"mean": "poll_duration_s"}, how="max"), alias="$tag_site mean"),
             query(_series({"max": "poll_duration_s"}, "max", "max"), "B", alias="$tag_site max")],
            "s", fill=0, description="Near the collect interval means the collector cannot keep up (a site split "
                                     "with --shard: its slowest shard)."))
        .with_panel(timeseries_panel(
            "Miners polled and failed",
            [query(_series({"polled": "miners_polled", "failed": "miners_failed"}, "max"), alias="$tag_site $col")],
            "none", fill=0, minimum=0))
        .with_panel(timeseries_panel(
            "Points written per cycle", [query(_series({"points": "points_written"}), alias="$tag_site")],
            "none", fill=10, minimum=0))
        .with_panel(timeseries_panel(
            "Spool depth", [query(_series({"spool": "spool_depth"}, "max"), alias="$tag_site")],
            "none", fill=20, minimum=0).thresholds(SPOOL_STEPS))
        .with_panel(timeseries_panel(
            "Spool: dropped, refused, lost, expired",
            [query(_series({"dropped batches": "spool_dropped", "refused lines": "spool_rejected",
                            "lost lines": "spool_lost_lines", "expired batches": "spool_expired"}, "max"),
                   alias="$tag_site $col")],
            "none", fill=0, minimum=0,
            description="Counted since the spool was created (a rise is new): batches dropped for the disk budget "
                        "(with InfluxDB: data never delivered); lines InfluxDB refused (kept as .lp.rejected); lines "
                        "neither stored nor delivered (a full disk); batches of the local history deleted past its "
                        "retention (README, Durability)."))
        .with_panel(timeseries_panel(
            "Cycles per interval",
            [query(f'SELECT count("poll_duration_s") AS "cycles" FROM "{schema.COLLECTOR}" WHERE {WHERE} {BUCKET}, "site", '
                   f'"{shards.SHARD}" fill(0)', alias="$tag_site $tag_collector_shard")],
            "none", fill=0, minimum=0, description="A dip means cycles were skipped (overrun or collector down). A site "
                                                   "split with --shard: a line per shard."))
        .with_panel(timeseries_panel(
            "MQTT ingest", [query(MQTT_INGEST, alias="$tag_site $col")], "none", fill=0, minimum=0,
            description="Payloads since the collector started, by outcome: accepted; accepted_stale (a price already "
                        "older than its max age when it arrived: held, not used, the fallback applies: a dead feed); "
                        "malformed (oversized, not JSON, invalid); unknown (no subscription or meter mapping); refused "
                        "(future-dated, out of bounds, older, a retained command replayed); limited (over the MQTT "
                        "miner cap or not allow-listed). Only with MQTT ingest configured."))
        .with_panel(timeseries_panel(
            "Network data age", [query(NETWORK_AGES, alias="$tag_site $col")], "s", fill=0,
            description="Seconds since difficulty, height, fees and BTC price were last fetched (network.source http). "
                        "A site on network.source static has no line: its values are the config's, never fetched.")
            .thresholds(AGE_STEPS).no_value(STATIC_NETWORK))
    )
    return finish(board)
