"""A site split over two collectors: the dashboards show the site's totals.

One simulated fleet, collected twice into the real InfluxDB by real `hashfleet collect` processes: whole
(site `whole`, no shard), then split (site `split`, `--shard 1/2` and `--shard 2/2` side by side, each
writing its own site roll-ups tagged `collector_shard`). A miner in each shard has lost boards (a
different number), one in shard 2 does not answer, so every roll-up differs between the shards.

Each site panel's query, as Grafana sends it, is checked against the points themselves (read raw and
reduced here): each shard's last point, or its mean or max per time bucket, summed over the shards (or
the slowest shard's), and a ratio is the ratio of those sums. The split site's totals are the whole
site's, and the whole site's figures are the ones it wrote, as before. The data is checked to tell a
sum from one shard or a mean of shards, so each check fails on a query that does not sum.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.sources.targets import Target, in_shard
from simulators.fleet import run_fleet
from tests.dashboards.test_grafana_macros import Variable, expand
from tests.dashboards.test_queries import _provisioned_rules, _written_id
from tests.support import HASHFLEET, REPO

FLEET = "a1246:3,a1566:3,q:2,nano3s:2"
BIG = range(6)  # the A1246s and A1566s: three boards each
BASE = "127.62.0.1"  # one address each on port 4028: the shards' hash of host:port is the same every run
SPLIT, WHOLE = "split", "whole"
TWICE = "twice"  # shard 1/2 given to two collectors at once (on two hosts: their spools apart)
SHARDS = ("1/2", "2/2")
OPEX_USD_MONTH = 3000.0  # well above the fleet's power bill: charged once per shard, it would show
DAYS_PER_MONTH = 30.4375
INTERVAL = "10s"  # the panels' minimum interval, what Grafana sends for $__interval
INTERVAL_NS = 10 * 10**9
JSON_DIR = REPO / "dashboards" / "json"


@dataclass
class Data:
    database: str
    ids: list[str]  # miner ids as written, by fleet index
    owner: dict[int, int]  # fleet index -> shard (1 or 2)
    offline: int  # fleet index of the miner that does not answer


def _config(path: Path) -> Path:
    path.write_text(
        "interval_s: 1\n"
        f"economics: {{tariff: {{kind: flat, usd_per_kwh: 0.04}}, pue: 1.1, pool_fee_pct: 2, "
        f"opex_usd_month: {OPEX_USD_MONTH},\n"
        "  capex_by_model: {'AvalonMiner 15-194': {price_usd: 3500, life_months: 36}}}\n"
        "network: {source: static, static: {difficulty: 1.2e14, height: 925000, fees_btc_per_block: 0.02, "
        "btc_price_usd: 100000}}\n")
    return path


def _collect(config: Path, site: str, addresses: list[str], env: dict[str, str],
             shard: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [HASHFLEET, "collect", "--config", str(config), "--site", site, "--miners", ",".join(addresses),
         "--cycles", "3", *(["--shard", shard] if shard else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(runs: list[subprocess.Popen]) -> None:
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr


@pytest.fixture(scope="module")
def data(influxdb, tmp_path_factory) -> Iterator[Data]:
    database = f"t_shards_{uuid.uuid4().hex[:8]}"
    influxdb.ensure_running()
    influxdb.create_database(database)
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": database,
           "INFLUX_TOKEN": influxdb.token}
    config = _config(tmp_path_factory.mktemp("shards") / "site.yaml")
    try:
        with run_fleet(FLEET, base=BASE, seed=11) as fleet:
            addresses = fleet.addresses
            owner = {}
            for i, address in enumerate(addresses):
                host, port = address.rsplit(":", 1)
                owner[i] = 1 if in_shard(Target(host, int(port)), (1, 2)) else 2
            lost_one = next(i for i in BIG if owner[i] == 1)
            lost_two = next(i for i in BIG if owner[i] == 2)
            offline = max(i for i in owner if owner[i] == 2)
            fleet[lost_one].set_faults(dead_boards={1})
            fleet[lost_two].set_faults(dead_boards={0, 2})
            fleet[offline].set_faults(no_answer=True)
            _finish([_collect(config, WHOLE, addresses, env)])
            _finish([_collect(config, SPLIT, addresses, env, shard) for shard in SHARDS])
            _finish([_collect(config, TWICE, addresses, {**env, "HASHFLEET_SPOOL_DIR": str(spool)}, SHARDS[0])
                     for spool in (tmp_path_factory.mktemp("host-a"), tmp_path_factory.mktemp("host-b"))])
            ids = [_written_id(influxdb, database, m.address if i == offline else m.mac)
                   for i, m in enumerate(fleet)]
        yield Data(database, ids, owner, offline)
    finally:
        if influxdb.is_running:
            influxdb.drop_database(database)


# --- the panels, as Grafana runs them ------------------------------------------------------------------


def _query(dashboard: str, title: str, ref: str = "A", kind: str | None = None) -> str:
    """The query of a panel (`kind`: its type, where a stat and a time series share a title)."""
    board = json.loads((JSON_DIR / f"{dashboard}.json").read_text())
    [panel] = [p for p in board["panels"] if p["title"] == title and kind in (None, p["type"])]
    return next(t["query"] for t in panel["targets"] if t["refId"] == ref)


def _run(influxdb, data: Data, text: str, site: str, **variables: str) -> list[dict]:
    values = {"site": Variable(site, multi=True, include_all=True, options=[SPLIT, WHOLE]),
              **{name: Variable(value) for name, value in variables.items()}}
    return influxdb.query(expand(text, values, range_="1h", interval=INTERVAL), data.database)


def _panel(influxdb, data: Data, dashboard: str, title: str, site: str, ref: str = "A",
           kind: str | None = None) -> list[dict]:
    return _run(influxdb, data, _query(dashboard, title, ref, kind), site)


def _one(rows: list[dict], site: str) -> dict:
    [row] = rows
    assert row["site"] == site
    return row


# --- the same figures from the points themselves ----------------------------------------------------------

ROLLUPS = {"collector": "", "cost": "AND \"scope\" = 'site'", "health": "AND \"scope\" = 'site'"}


def _points(influxdb, data: Data, measurement: str, site: str) -> list[dict]:
    """Every roll-up point of the site, oldest first, with its shard ('' when unsharded)."""
    rows = influxdb.query(f'SELECT * FROM "{measurement}" WHERE "site" = \'{site}\' {ROLLUPS[measurement]} '
                          'AND time > now() - 1h', data.database)
    for row in rows:
        row["collector_shard"] = row.get("collector_shard") or ""
    return sorted(rows, key=lambda r: r["time"])


def _last_by_shard(points: list[dict], fields: list[str]) -> dict[str, dict[str, float]]:
    """Each shard's last value of each field (as InfluxQL's last(): the newest point that has it)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for point in points:
        for field in fields:
            if point.get(field) is not None:
                out[point["collector_shard"]][field] = point[field]
    return dict(out)


def _bucketed_by_shard(points: list[dict], fields: list[str], each: Callable[[list[float]], float]
                       ) -> dict[int, dict[str, dict[str, float]]]:
    """Per time bucket (epoch-aligned, as GROUP BY time), each shard's `each` of each field."""
    values: dict[int, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for point in points:
        for field in fields:
            if point.get(field) is not None:
                values[point["time"] // INTERVAL_NS * INTERVAL_NS][point["collector_shard"]][field].append(point[field])
    return {bucket: {shard: {f: each(v) for f, v in by_field.items()} for shard, by_field in shards.items()}
            for bucket, shards in values.items()}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _total(by_shard: Mapping[str, Mapping[str, float]], field: str, how: Callable = sum) -> float:
    return how(values[field] for values in by_shard.values() if field in values)


def _sums(by_shard: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    fields = {field for values in by_shard.values() for field in values}
    return {field: _total(by_shard, field) for field in fields}


def _discriminates(by_shard: Mapping[str, Mapping[str, float]], field: str) -> None:
    """Two shards, each with its own nonzero figure: a query that reads one shard, or means them, is caught."""
    values = [by_shard[shard][field] for shard in SHARDS]
    assert all(values) and len(set(values)) == 2, f"{field}: the shards' figures {values} do not tell a sum apart"


# The cost engine's ratios (collector/stages/cost_engine.py, _derive) from summed $/day and BTC/day.
def _power(s: Mapping[str, float]) -> float:
    return s["energy_usd_day"] + s["demand_usd_day"] - s["curtailment_credit_usd_day"]


COST_PER_BTC = {
    "all-in": lambda s: (_power(s) + s["opex_usd_day"] + s["depreciation_usd_day"]) / s["btc_per_day_net"],
    "cash": lambda s: (_power(s) + s["opex_usd_day"]) / s["btc_per_day_net"],
    "energy": lambda s: _power(s) / s["btc_per_day_net"],
}
COST_FIELDS = ["energy_usd_day", "demand_usd_day", "curtailment_credit_usd_day", "opex_usd_day",
               "depreciation_usd_day", "btc_per_day_net", "revenue_usd_day", "energy_kwh_day", "profit_usd_day",
               "hashrate_ths"]


# --- figures now: each shard's last, summed ---------------------------------------------------------------

LATEST_SUMS = [  # (dashboard, title, ref, measurement, column -> field)
    ("collector-health", "Miners polled", "A", "collector", {"polled": "miners_polled"}),
    ("collector-health", "Miners failed", "A", "collector", {"failed": "miners_failed"}),
    ("collector-health", "Points written", "A", "collector", {"points": "points_written"}),
    ("collector-health", "Spool depth", "A", "collector", {"spool": "spool_depth"}),
    ("economics", "Today", "A", "cost", {"all-in spent": "all_in_usd_today", "cash spent": "cash_usd_today",
                                         "power spent": "power_usd_today", "revenue": "revenue_usd_today"}),
    ("economics", "BTC mined today", "A", "cost", {"BTC": "btc_today"}),
    ("economics", "This month", "A", "cost", {"all-in spent": "all_in_usd_month", "cash spent": "cash_usd_month",
                                              "power spent": "power_usd_month", "revenue": "revenue_usd_month"}),
    ("economics", "BTC mined this month", "A", "cost", {"BTC": "btc_month"}),
    ("maintenance", "Lost to faults", "A", "health", {"$/day": "usd_lost_day"}),
    ("maintenance", "Problems", "A", "health", {"problems": "problems", "critical": "critical"}),
    ("maintenance", "Miners with problems", "A", "health", {"miners": "miners_with_problems"}),
    ("maintenance", "Costing more than they earn", "A", "health", {"miners": "unprofitable"}),
    ("maintenance", "Chips dead", "A", "health", {"chips": "chips_dead"}),
]
# Figures the two shards hold differently in this fleet (the rest may be 0 in both: spool, unprofitable).
TOLD_APART = {"miners_polled", "points_written", "all_in_usd_today", "btc_today", "usd_lost_day", "problems",
              "miners_with_problems", "chips_dead"}
# The split site's totals are the whole site's (the same miners, the same faults).
SAME_AS_WHOLE = {"miners_polled", "miners_failed", "problems", "critical", "miners_with_problems", "unprofitable",
                 "chips_dead"}


@pytest.mark.parametrize("dashboard, title, ref, measurement, fields", LATEST_SUMS,
                         ids=[f"{d}:{t}" for d, t, *_ in LATEST_SUMS])
def test_a_sharded_sites_figures_now_are_its_shards_summed(influxdb, data: Data, dashboard, title, ref,
                                                           measurement, fields):
    by_shard = _last_by_shard(_points(influxdb, data, measurement, SPLIT), list(fields.values()))
    assert set(by_shard) == set(SHARDS)
    row = _one(_panel(influxdb, data, dashboard, title, SPLIT, ref, "stat"), SPLIT)
    whole = _last_by_shard(_points(influxdb, data, measurement, WHOLE), list(fields.values()))[""]
    whole_row = _one(_panel(influxdb, data, dashboard, title, WHOLE, ref, "stat"), WHOLE)
    for column, field in fields.items():
        if field in TOLD_APART:
            _discriminates(by_shard, field)
        assert row[column] == pytest.approx(_total(by_shard, field), rel=1e-9), column
        if field in SAME_AS_WHOLE:
            assert row[column] == whole[field], column
        assert whole_row[column] == pytest.approx(whole[field], rel=1e-12), column  # unsharded: as written


def test_poll_duration_now_is_the_slowest_shards(influxdb, data: Data):
    by_shard = _last_by_shard(_points(influxdb, data, "collector", SPLIT), ["poll_duration_s"])
    _discriminates(by_shard, "poll_duration_s")
    row = _one(_panel(influxdb, data, "collector-health", "Poll duration", SPLIT, kind="stat"), SPLIT)
    assert row["poll"] == _total(by_shard, "poll_duration_s", max)


def test_the_split_site_polls_what_the_whole_one_does(influxdb, data: Data):
    polled = {site: _one(_panel(influxdb, data, "collector-health", "Miners polled", site), site)["polled"]
              for site in (SPLIT, WHOLE)}
    assert polled == {SPLIT: len(data.ids), WHOLE: len(data.ids)}


# --- cost per BTC and the other ratios: the ratio of the shards' sums --------------------------------------

RATIOS_NOW = [  # (dashboard, title, ref, column, the figure from the summed fields, the field each point holds)
    ("economics", "All-in cost per BTC", "A", "all-in", COST_PER_BTC["all-in"], "all_in_cost_per_btc"),
    ("economics", "Cash cost per BTC", "A", "cash", COST_PER_BTC["cash"], "cash_cost_per_btc"),
    ("economics", "Energy cost per BTC", "A", "energy", COST_PER_BTC["energy"], "energy_cost_per_btc"),
    ("fleet-overview", "All-in cost per BTC", "A", "all-in", COST_PER_BTC["all-in"], "all_in_cost_per_btc"),
    ("economics", "Break-even power price", "A", "break-even",
     lambda s: s["revenue_usd_day"] / s["energy_kwh_day"], "breakeven_power_price"),
]


@pytest.mark.parametrize("dashboard, title, ref, column, ratio, stored", RATIOS_NOW,
                         ids=[f"{d}:{t}" for d, t, *_ in RATIOS_NOW])
def test_a_sharded_sites_ratios_now_are_ratios_of_its_shards_sums(influxdb, data: Data, dashboard, title, ref,
                                                                  column, ratio, stored):
    points = _points(influxdb, data, "cost", SPLIT)
    by_shard = _last_by_shard(points, [*COST_FIELDS, stored])
    site = ratio(_sums(by_shard))
    shard_ratios = [by_shard[shard][stored] for shard in SHARDS]
    # The shards' own ratios differ, and their mean is not the site's: a mean of ratios is caught.
    assert abs(sum(shard_ratios) / 2 - site) > 1e-3 * site and min(shard_ratios) < site < max(shard_ratios)
    row = _one(_panel(influxdb, data, dashboard, title, SPLIT, ref), SPLIT)
    assert row[column] == pytest.approx(site, rel=1e-9)
    # Unsharded: the figure its last point holds, as the panel showed before.
    whole = _last_by_shard(_points(influxdb, data, "cost", WHOLE), [stored])[""][stored]
    assert _one(_panel(influxdb, data, dashboard, title, WHOLE, ref), WHOLE)[column] == pytest.approx(whole, rel=1e-9)


def test_the_split_sites_cost_per_btc_is_the_whole_sites(influxdb, data: Data):
    """Each shard carries half the site's opex: summed, the site's once (charged by each, twice)."""
    opex = {site: _total(_last_by_shard(_points(influxdb, data, "cost", site), ["opex_usd_day"]), "opex_usd_day")
            for site in (SPLIT, WHOLE)}
    assert opex == pytest.approx({SPLIT: OPEX_USD_MONTH / DAYS_PER_MONTH, WHOLE: OPEX_USD_MONTH / DAYS_PER_MONTH})
    cost = {site: _one(_panel(influxdb, data, "economics", "All-in cost per BTC", site), site)["all-in"]
            for site in (SPLIT, WHOLE)}
    assert cost[SPLIT] == pytest.approx(cost[WHOLE], rel=0.05)  # the same miners, hashing a few seconds apart


def test_this_months_cost_per_btc_is_the_ratio_of_the_shards_sums(influxdb, data: Data):
    by_shard = _last_by_shard(_points(influxdb, data, "cost", SPLIT), ["all_in_usd_month", "btc_month"])
    sums = _sums(by_shard)
    row = _one(_panel(influxdb, data, "economics", "This month", SPLIT, "B"), SPLIT)
    assert row["all-in per BTC"] == pytest.approx(sums["all_in_usd_month"] / sums["btc_month"], rel=1e-9)


def test_the_cost_alert_weighs_the_sites_ratio_of_sums(influxdb, data: Data):
    rule = _provisioned_rules()["hashfleet-cost-above-price"]
    [cost] = [step for step in rule["data"] if step["refId"] == "A"]
    rows = {r["site"]: r["cost"] for r in _run(influxdb, data, cost["model"]["query"], SPLIT)}
    by_shard = _last_by_shard(_points(influxdb, data, "cost", SPLIT), COST_FIELDS)
    assert rows[SPLIT] == pytest.approx(COST_PER_BTC["all-in"](_sums(by_shard)), rel=1e-9)
    whole = _last_by_shard(_points(influxdb, data, "cost", WHOLE), ["all_in_cost_per_btc"])[""]
    assert rows[WHOLE] == pytest.approx(whole["all_in_cost_per_btc"], rel=1e-9)


# --- over time: per bucket, each shard's mean (or max), summed -----------------------------------------

BUCKET_SUMS = [  # (dashboard, title, ref, measurement, column -> field, each shard's, over the shards)
    ("collector-health", "Miners polled and failed", "A", "collector",
     {"polled": "miners_polled", "failed": "miners_failed"}, max, sum),
    ("collector-health", "Points written per cycle", "A", "collector", {"points": "points_written"}, _mean, sum),
    ("collector-health", "Spool depth", "A", "collector", {"spool": "spool_depth"}, max, sum),
    ("collector-health", "Poll duration", "A", "collector", {"mean": "poll_duration_s"}, _mean, max),
    ("collector-health", "Poll duration", "B", "collector", {"max": "poll_duration_s"}, max, max),
    ("economics", "Revenue vs cost per day", "A", "cost",
     {"revenue": "revenue_usd_day", "profit": "profit_usd_day", "energy": "energy_usd_day", "opex": "opex_usd_day",
      "depreciation": "depreciation_usd_day"}, _mean, sum),
    ("maintenance", "Chips dead", "A", "health", {"chips dead": "chips_dead"}, _mean, sum),
    ("maintenance", "Root causes", "A", "health", {"board": "problems_board", "network": "problems_network"},
     _mean, sum),
    ("maintenance", "Dollars lost by root cause", "A", "health", {"board": "usd_lost_day_board"}, _mean, sum),
]


def _both_shards_in_a_bucket(buckets: Mapping[int, Mapping[str, object]]) -> None:
    assert any(set(shards) == set(SHARDS) for shards in buckets.values()), "no bucket holds both shards"


@pytest.mark.parametrize("dashboard, title, ref, measurement, fields, each, how", BUCKET_SUMS,
                         ids=[f"{d}:{t}:{r}" for d, t, r, *_ in BUCKET_SUMS])
def test_a_sharded_sites_series_sum_its_shards_per_bucket(influxdb, data: Data, dashboard, title, ref,
                                                          measurement, fields, each, how):
    for site in (SPLIT, WHOLE):
        buckets = _bucketed_by_shard(_points(influxdb, data, measurement, site), list(fields.values()), each)
        if site == SPLIT:
            _both_shards_in_a_bucket(buckets)
        rows = {r["time"]: r for r in _panel(influxdb, data, dashboard, title, site, ref, "timeseries")}
        assert rows and all(r["site"] == site for r in rows.values())
        for column, field in fields.items():
            expected = {b: _total(by_shard, field, how) for b, by_shard in buckets.items()
                        if any(field in v for v in by_shard.values())}
            got = {t: r[column] for t, r in rows.items() if r.get(column) is not None}
            assert got == pytest.approx(expected, rel=1e-9), f"{site} {column}"


RATIO_SERIES = [  # (dashboard, title, ref, column -> the figure from a bucket's summed fields, shown where)
    ("economics", "Cost per BTC vs BTC price", "A", COST_PER_BTC, "btc_per_day_net"),
    ("economics", "Hashprice vs hashcost", "B", {"hashcost": lambda s: _power(s) / (s["hashrate_ths"] / 1000)},
     "hashrate_ths"),
    ("economics", "Break-even vs actual power price", "A",
     {"break-even": lambda s: s["revenue_usd_day"] / s["energy_kwh_day"]}, "energy_kwh_day"),
    ("economics", "Margin", "A", {"margin": lambda s: 100 * s["profit_usd_day"] / s["revenue_usd_day"]},
     "revenue_usd_day"),
]


@pytest.mark.parametrize("dashboard, title, ref, columns, denominator", RATIO_SERIES,
                         ids=[f"{d}:{t}:{r}" for d, t, r, *_ in RATIO_SERIES])
def test_a_sharded_sites_ratio_series_are_ratios_of_each_buckets_sums(influxdb, data: Data, dashboard, title, ref,
                                                                      columns, denominator):
    for site in (SPLIT, WHOLE):
        buckets = _bucketed_by_shard(_points(influxdb, data, "cost", site), COST_FIELDS, _mean)
        rows = {r["time"]: r for r in _panel(influxdb, data, dashboard, title, site, ref)}
        assert set(rows) == {b for b, by_shard in buckets.items() if _sums(by_shard)[denominator] > 0}
        for bucket, by_shard in buckets.items():
            sums = _sums(by_shard)
            for column, ratio in columns.items():
                assert rows[bucket][column] == pytest.approx(ratio(sums), rel=1e-9), f"{site} {column}"


# --- per shard where a sum would mean nothing ---------------------------------------------------------------


def test_cycles_per_interval_is_a_line_per_shard(influxdb, data: Data):
    rows = _panel(influxdb, data, "collector-health", "Cycles per interval", SPLIT)
    counted = defaultdict(int)
    for row in rows:
        counted[row["collector_shard"]] += row["cycles"]
    assert counted == {"1/2": 3, "2/2": 3}  # three cycles each, not six for the site
    whole = _panel(influxdb, data, "collector-health", "Cycles per interval", WHOLE)
    assert sum(r["cycles"] for r in whole) == 3 and {r["collector_shard"] for r in whole} == {""}


# --- Miner detail: the site as well as the miner -------------------------------------------------------------


def test_miner_detail_shows_the_miner_at_the_chosen_site_only(influxdb, data: Data):
    """Both sites poll the same miners: the whole site first, so each miner's uptime is lower there."""
    miner = data.ids[0]
    query = _query("miner-detail", "Uptime")
    assert "$site" in query
    uptime = {}
    for site in (SPLIT, WHOLE):
        [raw] = influxdb.query(f'SELECT last("uptime_s") AS "uptime" FROM "miner" WHERE "site" = \'{site}\' AND '
                               f'"miner" = \'{miner}\'', data.database)
        uptime[site] = raw["uptime"]
        [row] = _run(influxdb, data, query, site, miner=miner)
        assert row["uptime"] == uptime[site]
    assert uptime[WHOLE] < uptime[SPLIT]
    offline = data.ids[data.offline]  # a host:port id, at both sites: only the chosen site's answer
    [state] = _run(influxdb, data, _query("miner-detail", "State", kind="stat"), WHOLE, miner=offline)
    assert state["state"] == "offline"


# --- a static network source has no fetch ages -----------------------------------------------------------------


def test_network_data_age_says_why_it_is_empty_with_a_static_network(influxdb, data: Data):
    assert not _panel(influxdb, data, "collector-health", "Network data age", WHOLE)
    board = json.loads((JSON_DIR / "collector-health.json").read_text())
    panel = next(p for p in board["panels"] if p["title"] == "Network data age")
    assert "static" in panel["fieldConfig"]["defaults"]["noValue"]
    assert "static" in panel["description"]


# --- figures now leave out a shard that stopped writing ------------------------------------------------------

RESHARDED = "resharded"
STALE_S = 20 * 60  # past shards.FRESH (10 minutes)


def _line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], types: Mapping[str, str],
          ts_s: int) -> str:
    def value(name: str, v: object) -> str:
        if types[name] == "integer":
            return f"{int(v)}i"
        if types[name] == "string":
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if types[name] == "boolean":
            return "true" if v else "false"
        return repr(float(v))
    tag_text = ",".join(f"{k}={v.replace(' ', chr(92) + ' ')}" for k, v in sorted(tags.items()) if v)
    field_text = ",".join(f"{k}={value(k, v)}" for k, v in fields.items() if v is not None)
    return f"{measurement},{tag_text} {field_text} {ts_s}"


@pytest.fixture(scope="module")
def resharded(influxdb, data: Data) -> str:
    """Site RESHARDED: the split site's two shards' last roll-ups, written now, and a third shard's ("1/3":
    the site was split in three before, or that collector stopped) STALE_S old, with every figure 1,000 times
    the first shard's plus one: in any sum that takes it, it shows."""
    now = int(influxdb.query("SELECT last(\"miners_polled\") FROM \"collector\" WHERE \"site\" = 'split'",
                             data.database, epoch="s")[0]["time"])
    lines = []
    for measurement in ROLLUPS:
        types = {r["fieldKey"]: r["fieldType"] for r in influxdb.query(f'SHOW FIELD KEYS FROM "{measurement}"',
                                                                          data.database)}
        tag_keys = {r["tagKey"] for r in influxdb.query(f'SHOW TAG KEYS FROM "{measurement}"', data.database)}
        last: dict[str, dict] = {}
        for point in _points(influxdb, data, measurement, SPLIT):
            last.setdefault(point["collector_shard"], {}).update({k: v for k, v in point.items() if v is not None})
        for shard, point in last.items():
            tags = {k: str(point[k]) for k in tag_keys if k in point} | {"site": RESHARDED}
            fields = {k: v for k, v in point.items() if k in types}
            lines.append(_line(measurement, tags, fields, types, now))
            if shard == SHARDS[0]:
                stale = {k: (v * 1000 + 1 if types[k] in ("float", "integer") and not isinstance(v, bool) else v)
                         for k, v in fields.items()}
                lines.append(_line(measurement, tags | {"collector_shard": "1/3"}, stale, types, now - STALE_S))
    influxdb.write(data.database, lines)
    return RESHARDED


@pytest.mark.parametrize("dashboard, title, ref, measurement, fields", LATEST_SUMS,
                         ids=[f"{d}:{t}" for d, t, *_ in LATEST_SUMS])
def test_a_shard_that_stopped_writing_is_not_in_the_figures_now(influxdb, data: Data, resharded, dashboard, title,
                                                                 ref, measurement, fields):
    # After a re-split (3 shards, then 2) or with a collector stopped, its last point stayed in the sum for as
    # long as the range held it: every amount doubled (trial I: power $/day 169.87 against 85.09).
    assert {p["collector_shard"] for p in _points(influxdb, data, measurement, resharded)} == {*SHARDS, "1/3"}
    split = _one(_panel(influxdb, data, dashboard, title, SPLIT, ref, "stat"), SPLIT)
    row = _one(_panel(influxdb, data, dashboard, title, resharded, ref, "stat"), resharded)
    for column in fields:
        assert row[column] == pytest.approx(split[column], rel=1e-9), column


def test_the_cost_alert_leaves_out_a_shard_that_stopped_writing(influxdb, data: Data, resharded):
    rule = _provisioned_rules()["hashfleet-cost-above-price"]
    [cost] = [step for step in rule["data"] if step["refId"] == "A"]
    rows = {r["site"]: r["cost"] for r in _run(influxdb, data, cost["model"]["query"], resharded)}
    split = {r["site"]: r["cost"] for r in _run(influxdb, data, cost["model"]["query"], SPLIT)}
    assert rows[resharded] == pytest.approx(split[SPLIT], rel=1e-9)


# --- two collectors given one shard ------------------------------------------------------------------------------


def test_two_collectors_writing_one_shard_show_as_two_and_alert(influxdb, data: Data):
    # Trial I #6: two collectors given the same --shard on two hosts wrote every miner twice (sum(up) 40 a bucket
    # for 20 miners), with nothing anywhere to show it.
    panel = {(r["site"], r["collector_shard"]): r["collectors"]
             for site in (SPLIT, WHOLE, TWICE)
             for r in _panel(influxdb, data, "collector-health", "Collectors per shard", site)}
    assert panel == {(SPLIT, "1/2"): 1, (SPLIT, "2/2"): 1, (WHOLE, ""): 1, (TWICE, "1/2"): 2}
    rule = _provisioned_rules()["hashfleet-shard-written-twice"]
    [query] = [step for step in rule["data"] if step["refId"] == "A"]
    threshold = next(step for step in rule["data"] if step["refId"] == "C")["model"]["conditions"][0]
    limit = threshold["evaluator"]["params"][0]
    for site, twice in ((TWICE, True), (SPLIT, False), (WHOLE, False)):
        rows = influxdb.query(expand(query["model"]["query"], range_="10m"), data.database)
        buckets = [r["collectors"] for r in rows if r["site"] == site]
        assert buckets and (sum(buckets) / len(buckets) > limit) == twice, (site, buckets)
