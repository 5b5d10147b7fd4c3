"""A site's figures over its shards: the InfluxQL of every site-scope panel that reads a roll-up.

`hashfleet collect --shard K/N` runs N collectors for one site; each writes its own roll-up points
(`cost` and `health` scope site, `collector`) tagged `collector_shard`. A site's figure is taken per
shard first (its last point, or its mean over a time bucket), then over the shards: summed for amounts
and counts, and a ratio is the ratio of those sums (never a mean of the shards' ratios). An unsharded
site's points carry no such tag: one group, the figure it always had.

Series sum per time bucket ($__interval): a bucket shows the shards whose point for it is already written,
so the newest one can lack a shard for a moment, and buckets must span a cycle (a site with
`interval_s` above the panel's interval: raise the panel's Min interval).
"""

from __future__ import annotations

from collections.abc import Mapping

from dashboards.common import BUCKET
from models import schema

SHARD = "collector_shard"  # a tag of cost, health and collector (models/schema.py)
# A figure "now" is over the shards still writing: a shard whose last point is older than FRESH before the
# end of the range is left out (its collector stopped, or the site was split anew into other shards: its
# last point would be added to the new shards' for as long as it stays in the range). A site whose
# interval_s is longer than FRESH shows no "now" figure between its cycles.
FRESH = "10m"
RANGE_END = "${__to}ms"  # the end of the dashboard's range: Grafana's global variable, epoch milliseconds
NOW = "now()"  # for alert rules: Grafana's backend does not expand ${__to} in InfluxQL (grafana/grafana#18562)


def _columns(columns: Mapping[str, str]) -> str:
    return ", ".join(f'{expression} AS "{name}"' for name, expression in columns.items())


def over_shards(measurement: str, where: str, each: Mapping[str, str], site: Mapping[str, str], *,
                bucketed: bool, guard: tuple[str, str] | None = None, until: str = RANGE_END) -> str:
    """Per site (and per time bucket when `bucketed`): `each` maps a name to what one shard gives
    (`last("x")`, `mean("x")`, `last("a") + last("b")`), `site` a name to the site's figure over those
    names (`sum("x")`, `sum("a") / sum("b")`). `guard` (name, expression): a figure that must be above 0
    for the row to show, not itself shown: a ratio's denominator (InfluxQL divides by 0 as 0, and a site
    that mined nothing has no cost per BTC, not a free one). A figure now (not `bucketed`) is over the shards
    that wrote within FRESH of `until` (the range's end; NOW in an alert rule)."""
    group = f'{BUCKET}, "site"' if bucketed else 'GROUP BY "site"'
    fill = " fill(none)" if bucketed else ""
    fresh = "" if bucketed else f" AND time >= {until} - {FRESH}"
    inner = (f'SELECT {_columns(each)} FROM "{measurement}" WHERE {where} AND $timeFilter{fresh} '
             f'{group}, "{SHARD}"{fill}')
    outer = {**site, **({guard[0]: guard[1]} if guard else {})}
    text = f'SELECT {_columns(outer)} FROM ({inner}) WHERE $timeFilter {group}{fill}'
    if guard is None:
        return text
    shown = ", ".join(f'"{name}"' for name in site)
    return f'SELECT {shown} FROM ({text}) WHERE "{guard[0]}" > 0 GROUP BY "site"'


def latest(measurement: str, where: str, fields: Mapping[str, str], how: str = "sum") -> str:
    """Each shard's last value of each field (name -> field), then `how` over the shards: one row per site."""
    return over_shards(measurement, where, {name: f'last("{field}")' for name, field in fields.items()},
                       {name: f'{how}("{name}")' for name in fields}, bucketed=False)


def bucketed(measurement: str, where: str, fields: Mapping[str, str], each: str = "mean", how: str = "sum") -> str:
    """Per time bucket, each shard's `each` of each field (name -> field), then `how` over the shards."""
    return over_shards(measurement, where, {name: f'{each}("{field}")' for name, field in fields.items()},
                       {name: f'{how}("{name}")' for name in fields}, bucketed=True)


# --- cost per BTC: the cost engine's ratios (collector/stages/cost_engine.py, _derive), from the sums ---

COST_PER_BTC = {"all-in": ("power", "opex", "depreciation"), "cash": ("power", "opex"), "energy": ("power",)}


def _cost_parts(how: str) -> dict[str, str]:
    return {
        "power": f'{how}("energy_usd_day") + {how}("demand_usd_day") - {how}("curtailment_credit_usd_day")',
        "opex": f'{how}("opex_usd_day")', "depreciation": f'{how}("depreciation_usd_day")',
        "btc": f'{how}("btc_per_day_net")',
    }


def cost_per_btc(where: str, names: Mapping[str, str], *, bucketed: bool, until: str = RANGE_END) -> str:
    """All-in, cash and energy cost per net BTC of each site (names: shown name -> a COST_PER_BTC key):
    the shards' $/day summed over their BTC/day summed; no row where the site mined nothing."""
    site = {shown: "(" + " + ".join(f'sum("{part}")' for part in COST_PER_BTC[kind]) + ') / sum("btc")'
            for shown, kind in names.items()}
    return over_shards(schema.COST.name, where, _cost_parts("mean" if bucketed else "last"), site,
                       bucketed=bucketed, guard=("btc", 'sum("btc")'), until=until)
