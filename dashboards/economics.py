"""Economics: what a bitcoin costs this site now (all-in, cash, energy) against what it sells for.

Figures are the cost engine's (measurement `cost`, scope `site` unless said otherwise; definitions
in docs/cost.md): `*_day` are rates at this instant, `*_today`/`*_month` what was really spent and
mined since local midnight / the 1st. "What the pools paid" compares them with the pools' credits
(measurements `pool` and `pool_day`; docs/pools.md): realized cost per BTC (spend over credited BTC)
of the last UTC day every pool has closed, and where the gap between expected and credited went.
A site split with --shard: its shards' roll-ups summed, ratios of the sums (dashboards/shards.py).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common, dashboard as model

from dashboards import shards
from dashboards.common import (
    BUCKET, MINER_COST, SITE, SITE_COST, finish, new_dashboard, query, site_variable, stat_panel, table_panel,
    text_stat, thresholds, timeseries_panel, transform,
)
from dashboards.alerts import POOL_SHORTFALL_ALERT
from models import schema

UID = "hashfleet-economics"
TITLE = "Economics"

MARGIN_STEPS = thresholds((None, "red"), (0, "yellow"), (20, "green"))
LEFT_OUT_STEPS = thresholds((None, "green"), (1, "orange"))
# Pool-side hashrate below this share of what a worker's miners report: listed (the alert rule's threshold).
POOL_SHARE_LISTED = 1 - POOL_SHORTFALL_ALERT


def _site_series(fields: dict[str, str], *, by_site: bool = True) -> str:
    """The mean of each field per bucket, for figures every shard of a site holds alike (prices)."""
    selected = ", ".join(f'mean("{field}") AS "{name}"' for name, field in fields.items())
    split = ', "site"' if by_site else ""
    return f'SELECT {selected} FROM "{schema.COST}" WHERE {SITE_COST} AND $timeFilter {BUCKET}{split} fill(none)'


def _latest(fields: dict[str, str]) -> str:
    """Amounts now (name -> field): each shard's last, summed over the site's shards."""
    return shards.latest(schema.COST.name, SITE_COST, fields)


def _per_day(fields: dict[str, str]) -> str:
    """Daily rates over time (name -> field): each shard's mean per bucket, summed."""
    return shards.bucketed(schema.COST.name, SITE_COST, fields)


COST_NOW = {"all-in": "all-in", "cash": "cash", "energy": "energy"}
# The rest of the cost engine's ratios, from the site's sums (collector/stages/cost_engine.py, _derive).
BREAKEVEN_NOW = shards.over_shards(
    schema.COST.name, SITE_COST, {"revenue": 'last("revenue_usd_day")', "kwh": 'last("energy_kwh_day")'},
    {"break-even": 'sum("revenue") / sum("kwh")'}, bucketed=False, guard=("kwh", 'sum("kwh")'))
BREAKEVEN = shards.over_shards(
    schema.COST.name, SITE_COST, {"revenue": 'mean("revenue_usd_day")', "kwh": 'mean("energy_kwh_day")'},
    {"break-even": 'sum("revenue") / sum("kwh")'}, bucketed=True, guard=("kwh", 'sum("kwh")'))
HASHCOST = shards.over_shards(
    schema.COST.name, SITE_COST,
    {"power": 'mean("energy_usd_day") + mean("demand_usd_day") - mean("curtailment_credit_usd_day")',
     "ths": 'mean("hashrate_ths")'},
    {"hashcost": 'sum("power") / (sum("ths") / 1000)'}, bucketed=True, guard=("ths", 'sum("ths")'))
MARGIN = shards.over_shards(
    schema.COST.name, SITE_COST, {"profit": 'mean("profit_usd_day")', "revenue": 'mean("revenue_usd_day")'},
    {"margin": '100 * sum("profit") / sum("revenue")'}, bucketed=True, guard=("revenue", 'sum("revenue")'))
MONTH_COST_PER_BTC = shards.over_shards(
    schema.COST.name, SITE_COST, {"usd": 'last("all_in_usd_month")', "btc": 'last("btc_month")'},
    {"all-in per BTC": 'sum("usd") / sum("btc")'}, bucketed=False, guard=("btc", 'sum("btc")'))

BTC_PRICE = (f'SELECT mean("btc_price_usd") AS "BTC price" FROM "{schema.NETWORK}" WHERE {SITE} AND $timeFilter '
             f'{BUCKET} fill(none)')

# Curtailment (docs/curtailment.md): the plan's site points, the miners it advises, control's actions.
PLAN = f"\"scope\" = 'site' AND {SITE}"
_PLAN_SERIES = 'SELECT {fields} FROM "%s" WHERE %s AND $timeFilter %s, "site" fill(none)' % (schema.CURTAILMENT, PLAN, BUCKET)
CURTAILED_NOW = (
    'SELECT last("action") AS "action", last("mode") AS "mode", last("kw") AS "kW planned", '
    'last("kw_always_on") AS "kW always-on", last("margin_usd_kwh") AS "margin $/kWh", '
    'last("efficiency_j_th") AS "J/TH", last("reason") AS "why" '
    f'FROM "{schema.CURTAILMENT}" WHERE "scope" = \'miner\' AND {SITE} AND $timeFilter GROUP BY "site", "miner"'
)
ACTIONS = (f'SELECT "reason" AS "why", "detail", "command", "kw", "attempt", "control_mode" FROM "{schema.ACTION}" '
           f'WHERE {SITE} AND $timeFilter GROUP BY "site", "miner", "action", "result"')

# Cost per BTC by model: each miner's latest $/day and BTC/day (per-miner `cost` points carry its model),
# summed per model, then divided: a ratio of sums, not a mean of ratios. A miner never identified
# (offline since the collector started) has no model and sums into the blank one.
_PER_MINER = (
    'SELECT last("energy_usd_day") + last("demand_usd_day") - last("curtailment_credit_usd_day") AS "energy", '
    'last("opex_usd_day") AS "opex", last("depreciation_usd_day") AS "depreciation", '
    f'last("btc_per_day_net") AS "btc" FROM "{schema.COST}" WHERE {MINER_COST} AND $timeFilter GROUP BY "site", "miner", "model"'
)
BY_MODEL = (
    'SELECT (sum("energy") + sum("opex") + sum("depreciation")) / sum("btc") AS "all-in $/BTC", '
    '(sum("energy") + sum("opex")) / sum("btc") AS "cash $/BTC", sum("energy") / sum("btc") AS "energy $/BTC", '
    f'sum("btc") AS "BTC/day" FROM ({_PER_MINER}) GROUP BY "model"'
)


# --- what the pools paid (docs/pools.md) -------------------------------------------------------------

REALIZED = (f'SELECT last("realized_all_in_cost_per_btc") AS "realized all-in", '
            f'last("expected_all_in_cost_per_btc_last_day") AS "expected all-in", '
            f'last("realized_cash_cost_per_btc") AS "realized cash" FROM "{schema.COST}" WHERE {SITE_COST} '
            'AND $timeFilter GROUP BY "site"')
CREDITED = (f'SELECT last("credited_btc_last_day") AS "credited", last("expected_net_btc_last_day") AS "expected" '
            f'FROM "{schema.COST}" WHERE {SITE_COST} AND $timeFilter GROUP BY "site"')
_CLOSED_SITE_DAY = f"\"scope\" = 'site' AND \"closed\" = 1 AND {SITE}"
REALIZED_BY_DAY = (f'SELECT last("realized_all_in_cost_per_btc") AS "realized all-in", '
                   f'last("expected_all_in_cost_per_btc") AS "expected all-in" FROM "{schema.POOL_DAY}" '
                   f'WHERE {_CLOSED_SITE_DAY} AND $timeFilter GROUP BY time(1d), "site" fill(none)')
GAP_STEPS = {"offline": "offline_btc", "curtailed": "curtailed_btc", "over-reported": "over_report_btc",
             "unmatched": "unmatched_btc", "rejected/stale": "rejected_stale_btc", "unobserved": "unobserved_btc",
             "luck": "luck_btc",
             "fee": "fee_btc"}
GAP_BY_POOL = ('SELECT last("potential_btc") AS "potential", last("expected_btc") AS "expected", '
               + ", ".join(f'last("{field}") AS "{name}"' for name, field in GAP_STEPS.items())
               + f', last("credited_btc") AS "credited" FROM "{schema.POOL_DAY}" WHERE "scope" = \'account\' '
               f'AND "closed" = 1 AND {SITE} AND $timeFilter GROUP BY "site", "pool"')
WORKERS_LAST_DAY = (f'SELECT last("expected_btc") AS "expected", last("credited_btc") AS "credited (derived)", '
                    f'last("over_report_pct") AS "over-reported %", last("over_reporting") AS "named", '
                    f'last("coverage") AS "coverage" FROM "{schema.POOL_DAY}" WHERE "scope" = \'worker\' '
                    f'AND "closed" = 1 AND {SITE} AND $timeFilter GROUP BY "site", "pool", "worker"')
SHORT_WORKERS = (f'SELECT "share" FROM (SELECT mean("hashrate_ratio") AS "share" FROM "{schema.POOL}" '
                 f'WHERE "scope" = \'worker\' AND {SITE} AND $timeFilter GROUP BY "site", "pool", "worker") '
                 f'WHERE "share" < {POOL_SHARE_LISTED}')
POOL_STATE = (f'SELECT last("stale") AS "stale", last("age_s") AS "age s", last("workers") AS "workers", '
              f'last("workers_unmatched") AS "unmatched workers" FROM "{schema.POOL}" '
              f'WHERE "scope" = \'account\' AND {SITE} AND $timeFilter GROUP BY "site", "pool"')




def build() -> model.Dashboard:
    usd = "currencyUSD"
    board = (
        new_dashboard(UID, TITLE, "All-in, cash and energy cost per BTC against the BTC price; hashprice, "
                                  "break-even power price, margin; money spent vs BTC mined today and this month.")
        .with_variable(site_variable())
        .with_row(dash.Row("Cost per BTC now"))
        .with_panel(stat_panel("All-in cost per BTC", [query(shards.cost_per_btc(SITE_COST, {"all-in": "all-in"},
                                                                                 bucketed=False),
                                                             alias="$tag_site")], usd, decimals=0,
                               description="Cash cost + hardware depreciation, per net BTC."))
        .with_panel(stat_panel("Cash cost per BTC", [query(shards.cost_per_btc(SITE_COST, {"cash": "cash"},
                                                                               bucketed=False),
                                                           alias="$tag_site")], usd, decimals=0,
                               description="Energy + hosting, staff, maintenance, SG&A, per net BTC."))
        .with_panel(stat_panel("Energy cost per BTC", [query(shards.cost_per_btc(SITE_COST, {"energy": "energy"},
                                                                                 bucketed=False),
                                                             alias="$tag_site")], usd, decimals=0,
                               description="Power (with PUE, demand charges, less curtailment credits) per net BTC."))
        .with_panel(stat_panel("BTC price", [query(BTC_PRICE)], usd, width=3, decimals=0))
        .with_panel(stat_panel("Hashprice", [query(_site_series({"hashprice": "hashprice_usd_ph_day"},
                                                                by_site=False))],
                               "suffix: $/PH/day", width=3, decimals=2,
                               description="Gross network revenue per PH/s per day."))
        .with_panel(stat_panel("Break-even power price",
                               [query(BREAKEVEN_NOW, alias="$tag_site")],
                               "suffix: $/kWh", width=3, decimals=3,
                               description="The power price at which energy cost equals revenue."))
        .with_panel(stat_panel("Miners left out, estimated",
                               [query(_latest({"left out": "miners_left_out"}), alias="$tag_site left out"),
                                query(_latest({"estimated": "miners_estimated"}), "B", alias="$tag_site estimated")],
                               "none", width=3, decimals=0, steps=LEFT_OUT_STEPS,
                               description="Left out: miners without a usable hashrate or power reading (an AUC chain "
                                           "reports no power), out of every figure here, their BTC as well as their "
                                           "draw; an outlet meter over MQTT brings them back. Estimated: miners that "
                                           "report no power (stock Antminers) costed at their model's nameplate draw "
                                           "(economics.estimate_missing_power: nameplate), in every figure on an "
                                           "estimate, not a reading (docs/cost.md)."))
        .with_panel(timeseries_panel(
            "Cost per BTC vs BTC price",
            [query(shards.cost_per_btc(SITE_COST, COST_NOW, bucketed=True), alias="$tag_site $col"),
             query(BTC_PRICE, "B", alias="$col")],
            usd, width=24, fill=0, description="Above the BTC price line, a coin costs more than it sells for."))
        .with_panel(timeseries_panel(
            "Hashprice vs hashcost",
            [query(_site_series({"hashprice": "hashprice_usd_ph_day"}), alias="$tag_site $col"),
             query(HASHCOST, "B", alias="$tag_site $col")],
            "suffix: $/PH/day", fill=0, description="Revenue and power cost per PH/s per day."))
        .with_panel(timeseries_panel(
            "Break-even vs actual power price",
            [query(BREAKEVEN, alias="$tag_site $col"),
             query(_site_series({"tariff now": "power_price_usd_kwh"}), "B", alias="$tag_site $col")],
            "suffix: $/kWh", fill=0))
        .with_panel(timeseries_panel(
            "Margin", [query(MARGIN, alias="$tag_site")], "percent",
            fill=20, description="(revenue - all-in cost) / revenue, at this instant.")
            .thresholds(MARGIN_STEPS))
        .with_panel(timeseries_panel(
            "Revenue vs cost per day",
            [query(_per_day({"revenue": "revenue_usd_day", "profit": "profit_usd_day", "energy": "energy_usd_day",
                             "opex": "opex_usd_day", "depreciation": "depreciation_usd_day"}),
                   alias="$tag_site $col")],
            usd, fill=0, description="Rates now: what a day at this instant would bring in and cost."))
        .with_row(dash.Row("Spent vs mined"))
        .with_panel(stat_panel(
            "Today",
            [query(_latest({"all-in spent": "all_in_usd_today", "cash spent": "cash_usd_today",
                            "power spent": "power_usd_today", "revenue": "revenue_usd_today"}),
                   alias="$tag_site $col")],
            usd, width=8, height=5, decimals=0,
            description="Since local midnight: power integrated over time, at the tariff in force each moment.")
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(stat_panel(
            "BTC mined today", [query(_latest({"BTC": "btc_today"}), alias="$tag_site")], "currencyBTC",
            width=4, height=5, decimals=5).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(stat_panel(
            "This month",
            [query(_latest({"all-in spent": "all_in_usd_month", "cash spent": "cash_usd_month",
                            "power spent": "power_usd_month", "revenue": "revenue_usd_month"}),
                   alias="$tag_site $col"),
             query(MONTH_COST_PER_BTC, "B", alias="$tag_site $col")],
            usd, width=8, height=5, decimals=0, description="Since the 1st of the month, local time.")
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(stat_panel(
            "BTC mined this month", [query(_latest({"BTC": "btc_month"}), alias="$tag_site")], "currencyBTC",
            width=4, height=5, decimals=5).graph_mode(common.BigValueGraphMode.NONE))
        .with_row(dash.Row("By model"))
        .with_panel(table_panel(
            "Cost per BTC by model",
            [query(BY_MODEL, table_format=True)],
            width=24, height=8, unit=usd,
            # InfluxQL divides by zero as 0: a model that mined nothing has no cost per BTC, not a free one.
            transformations=[
                transform("filterByValue", {"type": "exclude", "match": "any", "filters": [
                    {"fieldName": "BTC/day", "config": {"id": "lowerOrEqual", "options": {"value": 0}}}]}),
                transform("sortBy", {"sort": [{"field": "all-in $/BTC", "desc": True}]})],
            description="Per-miner cost and BTC/day summed per model, then divided (a ratio of sums)."))
        .with_row(dash.Row("What the pools paid"))
        .with_panel(stat_panel(
            "Realized cost per BTC (last closed day)", [query(REALIZED, alias="$tag_site $col")], usd, width=8,
            height=5, decimals=0,
            description="The last UTC day every pool has closed: its spend over the BTC the pools credited, "
                        "beside the same spend over the BTC expected from the miners' reported hashrate.")
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(stat_panel(
            "Credited vs expected BTC (last closed day)", [query(CREDITED, alias="$tag_site $col")], "currencyBTC",
            width=8, height=5, decimals=6,
            description="Expected: reported hashrate integrated, less the configured pool fee.")
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME).graph_mode(common.BigValueGraphMode.NONE))
        .with_panel(table_panel(
            "Pools now", [query(POOL_STATE, table_format=True)], width=8, height=5,
            description="Stale: the pool's API has not answered within its max age (down, rate-limited, "
                        "changed); its figures are left out, never written as zero."))
        .with_panel(timeseries_panel(
            "Realized vs expected cost per BTC, by day", [query(REALIZED_BY_DAY, alias="$tag_site $col")], usd,
            width=24, fill=0, description="Closed UTC days only: a day a pool has not closed is partial.")
            .time_from("30d"))
        .with_panel(table_panel(
            "Where the gap went (last closed day, per pool)", [query(GAP_BY_POOL, table_format=True)],
            width=24, height=6, unit="currencyBTC",
            description="From what the miners could have mined to what the pool credited: down and curtailed "
                        "time, reported but never reaching the pool, unmatched work, rejected shares, luck "
                        "(what is left) and fee. docs/pools.md.").time_from("7d"))
        .with_panel(table_panel(
            "Workers (last closed day)", [query(WORKERS_LAST_DAY, table_format=True)], width=12, height=8,
            description="Per-worker credit is the account's split by accepted work (no pool publishes it). "
                        "named = 1: pool-side work fell short of what the miner reports by more than "
                        "reconciliation.over_report_pct.").time_from("7d"))
        .with_panel(table_panel(
            "Workers the pool sees below their reported hashrate", [query(SHORT_WORKERS, table_format=True)],
            width=12, height=8,
            description=f"Mean pool-side over reported hashrate under {POOL_SHARE_LISTED:.0%} over the range: "
                        "over-reporting firmware, a miner hashing elsewhere, or rejects."))
    )
    return finish(_curtailment_row(board))


def _curtailment_row(board: dash.Dashboard) -> dash.Dashboard:
    """The curtailment advice at the price in force, and what following it saves against always-on."""
    usd = "currencyUSD"

    def series(fields: dict[str, str], how: str = "mean") -> str:
        return _PLAN_SERIES.format(fields=", ".join(f'{how}("{f}") AS "{name}"' for name, f in fields.items()))

    return (
        board.with_row(dash.Row("Curtailment"))
        .with_panel(text_stat("Control", query(
            f'SELECT last("control_mode") AS "control" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site"), mappings=[model.ValueMap(options={
                "off": model.ValueMappingResult(text="off: advice only", color="text", index=0),
                "dry_run": model.ValueMappingResult(text="dry run: nothing sent", color="blue", index=1),
                "on": model.ValueMappingResult(text="on", color="green", index=2)})],
            description="Curtailment control's mode as the last cycle ran it (curtailment.control.mode, or lower "
                        "when Home Assistant asked): off and dry_run send nothing, so the plan is advice."))
        .with_panel(text_stat("Kill switch", query(
            f'SELECT last("killed") AS "killed" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site"), mappings=[model.ValueMap(options={
                "0": model.ValueMappingResult(text="off", color="green", index=0),
                "1": model.ValueMappingResult(text="ON: nothing sent", color="red", index=1)})],
            description="A kill switch on (the kill_switch_file exists, or ON over MQTT): control sends nothing."))
        .with_panel(stat_panel("Plan saves vs always-on", [query(
            f'SELECT last("saved_usd_day") AS "now" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site")], usd, width=4, decimals=2,
            description="What following the plan earns more than running every miner always on, at the price now "
                        "(a day's rate); the plan's own margins, not a bill. With control off or in dry_run nobody "
                        "follows it (Saved since start stays at what was followed by hand; Miners off plan)."))
        .with_panel(stat_panel("Saved since start", [query(
            f'SELECT last("saved_usd_total") AS "saved" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site")], usd, width=4, decimals=2,
            description="What the miners saved against always-on where the polls showed them as the plan had them, "
                        "integrated cycle by cycle since the collector kept it (stale cycles not counted; with control "
                        "off or in dry_run, what was followed by hand)."))
        .with_panel(stat_panel("Miners asleep (plan)", [query(
            f'SELECT last("miners_sleep") AS "asleep" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site")], "none", width=4, decimals=0))
        .with_panel(stat_panel("Power shed (plan)", [query(
            f'SELECT last("shed_kw") AS "shed" FROM "{schema.CURTAILMENT}" WHERE {PLAN} AND $timeFilter '
            'GROUP BY "site"', alias="$tag_site")], "suffix: kW", width=4, decimals=1))
        .with_panel(timeseries_panel("Planned vs always-on draw", [
            query(series({"planned": "planned_kw", "always-on": "always_on_kw", "drawn (polls)": "drawn_kw",
                          "DR limit": "dr_limit_kw"}), alias="$tag_site $col")], "suffix: kW", fill=0,
            description="Facility kW if the plan is followed, against every miner running as usual, and what the "
                        "polls show drawn: the figure a demand-response limit is met by."))
        .with_panel(timeseries_panel("Power price the cycles used", [
            query(f'SELECT mean("usd_per_kwh") AS "price" FROM "{schema.POWER_PRICE}" WHERE {SITE} AND $timeFilter '
                  f'{BUCKET}, "site", "source" fill(none)', alias="$tag_site $tag_source")], "suffix: $/kWh", fill=0,
            description="Tariff, live feed or its fallback (a stale price: the plan holds). What `hashfleet backtest` "
                        "replays without --prices."))
        .with_panel(timeseries_panel("Miners the plan curtails", [
            query(series({"asleep": "miners_sleep", "lower mode": "miners_lower", "changes": "changes",
                          "off plan": "miners_off_plan"}, "max"),
                  alias="$tag_site $col")], "none", fill=10, stack=False,
            description="Off plan: miners the polls show otherwise than the plan has them (control off, dry_run or "
                        "killed, off the allowlist, or a miner ignoring a command)."))
        .with_panel(timeseries_panel("Plan saves vs always-on per day", [
            query(series({"saved": "saved_usd_day"}), alias="$tag_site $col")], usd, fill=10,
            description="The plan's rate over time (what following it saves a day at each cycle's price), whether "
                        "or not the miners followed it: Saved since start counts what they did."))
        .with_panel(table_panel(
            "Miners the plan does not run as usual", [query(CURTAILED_NOW, table_format=True)], width=24,
            transformations=[transform("filterByValue", {"type": "exclude", "match": "any", "filters": [
                {"fieldName": "action", "config": {"id": "equal", "options": {"value": "run"}}}]})],
            description="Each miner's last plan in the range: asleep, or in another work mode, and why."))
        .with_panel(table_panel(
            "Curtailment control actions", [query(ACTIONS, table_format=True)], width=24,
            description="Every step of every action on a miner (dry_run, sent, accepted, refused, error, confirmed, "
                        "unconfirmed, skipped, taken_back, released), as the audit log keeps it."))
    )
