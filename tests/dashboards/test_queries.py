"""Every dashboard panel, variable and alert query, run on the real InfluxDB after the real collector
filled it from simulated miners, with Grafana's macros expanded as Grafana does.

The data: two collector runs (sites `cheap` at $0.02/kWh and `dear` at $0.30/kWh) poll one simulated
fleet in which one miner does not answer, one overheats (throttled), one lost a hashboard and one
is soft-off, the miners placed in two racks by a site layout; both advise curtailment (control in dry_run:
nothing is sent). At the cheap site simulated meters read every answering miner's outlet and the whole
facility over MQTT. Network values come over HTTP from a local stub serving tests/data/network/. A third
site, `pooled`, reads simulated pools (tests/pool_site.py, SCENARIO) over the last two days on a
hand-driven clock up to now, so the pool panels and the pool alert have closed days and workers to show.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dashboards import alerts
from models import InfluxConfig
from simulators.fleet import run_fleet
from tests.pool_site import OVER_REPORTER, last_full_day, midnight, pooled_site
from simulators.mqtt_meter import MqttDevice, MqttPowerMeter

try:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from tests.support import HASHFLEET
    from tests.dashboards.test_grafana_macros import ALL, Variable, expand
except ModuleNotFoundError as exc:  # tests/ became a package
    if exc.name not in ("support", "test_grafana_macros"):
        raise
    from .support import HASHFLEET
    from .test_grafana_macros import ALL, Variable, expand

from tests.support import REPO as ROOT
DASHBOARDS = sorted((ROOT / "dashboards" / "json").glob("*.json"))
NETWORK_DATA = ROOT / "tests" / "data" / "network"
NETWORK_ROUTES = {
    "/api/v1/mining/hashrate/3d": "mempool-space_api-v1-mining-hashrate-3d.json",
    "/api/blocks/tip/height": "mempool-space_api-blocks-tip-height.txt",
    "/api/v1/mining/blocks/fees/24h": "mempool-space_api-v1-mining-blocks-fees-24h.json",
    "/api/v1/prices": "mempool-space_api-v1-prices.json",
}
FLEET = "a1246:2,a1566:2,a1466:1,q:1,nano3s:1"
OFFLINE, THROTTLED, BOARD_LOST, SOFT_OFF = 1, 2, 3, 5
SITES = {"cheap": 0.02, "dear": 0.30}
POOLED = "pooled"
INTERVAL = "10s"  # what Grafana sends for $__interval: the panels' minimum interval


class _NetworkApi(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = NETWORK_ROUTES.get(self.path)
        if name is None:
            self.send_error(404)
            return
        body = (NETWORK_DATA / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Facility(MqttDevice):
    """The site's main meter: the answering miners' true draw and a fifth more (cooling, losses)."""

    name = "facility"

    def __init__(self, miners, host: str, port: int, *, prefix: str, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.miners, self.prefix = list(miners), prefix

    def messages(self) -> list[tuple[str, dict]]:
        watts = sum(m.truth().power_true_w for m in self.miners) * 1.2
        return [(f"{self.prefix}/facility/main", {"watts": round(watts, 1)})]


@dataclass
class Site:
    """What the dashboards are run against: the database and what the simulators served."""

    database: str
    miners: list[str]  # miner ids as the collector wrote them, by fleet index
    truth: dict[str, object]  # miner id -> the simulator's last served snapshot (answering miners)
    sites: list[str]
    pooled: object = None  # the pooled site (tests/pool_site.py): its miners' pool users, its pools


def _site_config(path: Path, site: str, usd_per_kwh: float, api: str, mqtt: str = "", layout: str = "") -> Path:
    path.write_text(
        f"site: {site}\n{mqtt}{layout}"
        "interval_s: 1\n"
        f"economics: {{tariff: {{kind: flat, usd_per_kwh: {usd_per_kwh}}}, pue: 1.1, opex_usd_month: 150,\n"
        "  capex_by_model: {'AvalonMiner 15-194': {price_usd: 3500, life_months: 36}}}\n"
        "network:\n"
        "  source: http\n"
        f"  difficulty_url: {api}/api/v1/mining/hashrate/3d\n"
        f"  height_url: {api}/api/blocks/tip/height\n"
        f"  fees_url: {api}/api/v1/mining/blocks/fees/24h\n"
        f"  price_url: {api}/api/v1/prices\n"
        # Curtailment advice at both sites, control in dry_run (it sends nothing): the plan, the miners it
        # advises at the dear site, and the actions it would take (Economics, row Curtailment).
        "curtailment: {min_on_s: 0, min_off_s: 0, control: {mode: dry_run, allow: ['*']}}\n")
    return path


@pytest.fixture(scope="module")
def filled(influxdb, mosquitto, tmp_path_factory) -> Iterator[Site]:
    database = f"t_dashboards_{uuid.uuid4().hex[:8]}"
    influxdb.ensure_running()
    influxdb.create_database(database)
    api = ThreadingHTTPServer(("127.0.0.1", 0), _NetworkApi)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{api.server_address[1]}"
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": database,
           "INFLUX_TOKEN": influxdb.token}
    work = tmp_path_factory.mktemp("dashboards")
    try:
        with run_fleet(FLEET, base="127.60.0.1:0", seed=7) as fleet, contextlib.ExitStack() as devices:
            fleet[OFFLINE].set_faults(no_answer=True)
            fleet[THROTTLED].set_faults(overheat="throttle")
            fleet[BOARD_LOST].set_faults(dead_boards={1})
            fleet[SOFT_OFF].set_soft_off(True)
            # Meters at the cheap site (Maintenance: power correction, measured PUE): an outlet per answering
            # miner, and a facility meter reading the miners' draw and a fifth more.
            prefix = f"feeds/{database}/cheap"
            answering = [m for i, m in enumerate(fleet) if i != OFFLINE]
            meter = devices.enter_context(MqttPowerMeter(answering, mosquitto.host, mosquitto.port, prefix=prefix,
                                                         interval_s=0.5).start())
            devices.enter_context(_Facility(answering, mosquitto.host, mosquitto.port, prefix=prefix,
                                            interval_s=0.5).start())
            ingest = [{"topic": f"{prefix}/power", "kind": "power_price"}, *meter.collector_ingest(),
                      {"topic": f"{prefix}/facility/+", "kind": "meter", "facility": ["main"]}]
            # Where the miners stand (Maintenance: heat map, place tags): two racks of one container.
            layout = "layout: " + json.dumps({"miners": {m.address: {
                "container": "c1", "row": "row1", "rack": f"rack-{i % 2 + 1}", "position": str(i // 2 + 1)}
                for i, m in enumerate(fleet)}}) + "\n"
            runs = [subprocess.Popen(
                [HASHFLEET, "collect", "--config", str(_site_config(work / f"{site}.yaml", site, price, base, (
                    # MQTT ingest at one site: the collector point's MQTT counters (Collector health)
                    "mqtt: " + json.dumps({"host": mosquitto.host, "port": mosquitto.port, "discovery": False,
                                           "ingest": ingest}) + "\n"
                    if site == "cheap" else ""), layout)),
                 "--miners", ",".join(fleet.addresses), "--cycles", "3"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for site, price in SITES.items()]
            for run in runs:
                _, stderr = run.communicate(timeout=120)
                assert run.returncode == 0, stderr
            ids = [m.address if i == OFFLINE else m.mac.upper() for i, m in enumerate(fleet)]
            ids = [_written_id(influxdb, database, i) for i in ids]
            truth = {ids[i]: m.last_served for i, m in enumerate(fleet) if i != OFFLINE}
        pooled = _fill_pooled(influxdb, database, work)
        yield Site(database, ids, truth, sorted([*SITES, POOLED]), pooled)
    finally:
        api.shutdown()
        api.server_close()
        if influxdb.is_running:
            influxdb.drop_database(database)


def _fill_pooled(influxdb, database: str, work: Path):
    """The pooled site through the real pipeline from two days ago up to now (10-minute cycles)."""
    import asyncio

    influx = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=database, token=influxdb.token)
    (work / POOLED).mkdir()
    end = time.time() - 60
    day = last_full_day()
    today = midnight(day) + 86400
    with pooled_site(work / POOLED, start=midnight(day) - 600, site=POOLED, influx=influx,
                     miners_base="127.97.0.1", pools_base="127.98.0.1:0") as site:
        # The scenario's faults on the closed day only: today's 08:00-09:00 shutdown put the F2Pool worker's
        # recovery (its pool's 15-minute average lagging the miner) inside the alerts' last hour whenever the
        # tests ran between about 09:00 and 10:00 UTC, and the pool alert fired for it too.
        def events(t: float) -> None:
            site.scenario(min(t, today))  # (from today's midnight on: as at 00:00, no fault)

        async def run() -> None:
            built = site.build()
            await built.start()
            try:
                await site.run(built, end, step_s=600, events=events)
            finally:
                await built.stop()
                built.close()

        asyncio.run(run())
        return site


def _written_id(influxdb, database: str, wanted: str) -> str:
    """The id as stored: MACs are written with colons, whatever the simulator's spelling."""
    rows = influxdb.query('SHOW TAG VALUES FROM "miner" WITH KEY = "miner"', database)
    for row in rows:
        if row["value"].replace(":", "").upper() == wanted.replace(":", "").upper():
            return row["value"]
    raise AssertionError(f"miner {wanted} not in {[r['value'] for r in rows]}")


def _variables(site: Site) -> dict[str, Variable]:
    healthy = site.miners[0]
    return {"site": Variable(ALL, multi=True, include_all=True, options=site.sites), "miner": Variable(healthy)}


def _time_from(query: str) -> str | None:
    """The panel's own time range (`timeFrom`, e.g. 30d for daily figures), as Grafana applies it."""
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if any(t.get("query") == query for t in panel.get("targets", [])):
                return panel.get("timeFrom")
    return None


def _targets() -> list[pytest.param]:
    params = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                name = f"{path.stem}:{panel['id']}:{panel['title']}:{target['refId']}"
                params.append(pytest.param(target["query"], id=name))
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                params.append(pytest.param(variable["query"], id=f"{path.stem}:${variable['name']}"))
    return params


@pytest.mark.parametrize("query", _targets())
def test_every_panel_and_variable_query_returns_rows(influxdb, filled: Site, query: str):
    text = expand(query, _variables(filled), range_=_time_from(query) or "1h", interval=INTERVAL)
    assert not re.search(r"\$(\w|\{)|\[\[", text), f"unexpanded macro in {text}"
    rows = influxdb.query(text, filled.database)
    assert rows, f"no rows for {text}"
    if 'FROM "cost"' in text:  # a cost field the collector does not write (per miner: a subset) is a null column
        empty = [column for column in rows[0] if all(row.get(column) is None for row in rows)]
        assert not empty, f"columns {empty} are null in every row of {text}"


def _run(influxdb, data: Site, dashboard: str, title: str, ref: str = "A", **variables: Variable) -> list[dict]:
    board = json.loads((ROOT / "dashboards" / "json" / f"{dashboard}.json").read_text())
    panel = next(p for p in board["panels"] if p["title"] == title)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    return influxdb.query(expand(target["query"], {**_variables(data), **variables}, range_="1h",
                                 interval=INTERVAL), data.database)


def test_fleet_hashrate_is_the_sum_of_what_the_answering_miners_hash(influxdb, filled: Site):
    one_site = Variable("cheap", multi=True, include_all=True, options=filled.sites)
    rows = _run(influxdb, filled, "fleet-overview", "Hashrate", site=one_site)
    served = sum(s.hashrate_ths for s in filled.truth.values())
    assert rows[-1]["hashrate"] == pytest.approx(served, rel=0.05)


def test_miners_answering_counts_the_offline_miner_out(influxdb, filled: Site):
    one_site = Variable("cheap", multi=True, include_all=True, options=filled.sites)
    rows = _run(influxdb, filled, "fleet-overview", "Miners answering", site=one_site)
    assert (rows[-1]["answering"], rows[-1]["polled"]) == (6, 7)


def test_offline_table_lists_exactly_the_miner_that_does_not_answer(influxdb, filled: Site):
    rows = _run(influxdb, filled, "fleet-overview", "Offline miners")
    assert {r["miner"] for r in rows} == {filled.miners[OFFLINE]}
    assert all("connection refused" in r["error"] for r in rows)


def test_miner_detail_follows_the_miner_variable_even_for_a_host_port_id(influxdb, filled: Site):
    offline = Variable(filled.miners[OFFLINE])  # "127.60.0.1:PORT": dots must be regex-escaped
    rows = _run(influxdb, filled, "miner-detail", "State", miner=offline)
    assert [r["state"] for r in rows] == ["offline"]
    hot = Variable(filled.miners[THROTTLED])
    boards = _run(influxdb, filled, "miner-detail", "Board temperatures", miner=hot)
    assert {r["board"] for r in boards} == {"0", "1", "2"}


def test_economics_cost_per_btc_is_higher_where_power_is_dearer(influxdb, filled: Site):
    rows = _run(influxdb, filled, "economics", "All-in cost per BTC")
    by_site = {}
    for row in rows:
        by_site[row["site"]] = row["all-in"]
    assert by_site["dear"] > by_site["cheap"] > 0


# --- alert rules --------------------------------------------------------------------------------


def _series(influxdb, database: str, text: str) -> dict[frozenset, list[float]]:
    """Each series of a query as Grafana's alerting sees it: labels (the GROUP BY tags) -> values."""
    raw = influxdb.query_raw(text, database)
    out: dict[frozenset, list[float]] = {}
    for statement in raw.get("results", []):
        for series in statement.get("series", []):
            labels = frozenset((series.get("tags") or {}).items())
            out[labels] = [row[1] for row in series["values"] if row[1] is not None]
    return out


def _evaluate(influxdb, database: str, rule: dict, now_ms: int) -> set[frozenset]:
    """A small model of Grafana's server-side expressions (reduce, math `$X / $Y`, threshold)."""
    results: dict[str, dict[frozenset, object]] = {}
    for step in rule["data"]:
        model, ref = step["model"], step["refId"]
        if step["datasourceUid"] != alerts.EXPRESSION:
            start = now_ms - step["relativeTimeRange"]["from"] * 1000
            results[ref] = _series(influxdb, database, expand(model["query"], range_=(start, now_ms)))
        elif model["type"] == "reduce":
            reduce = {"last": lambda v: v[-1], "max": max, "mean": lambda v: sum(v) / len(v)}[model["reducer"]]
            results[ref] = {k: reduce(v) for k, v in results[model["expression"]].items() if v}
        elif model["type"] == "math":
            left, right = (name.strip().lstrip("$") for name in model["expression"].split("/"))
            results[ref] = {k: v / results[right][k] for k, v in results[left].items() if k in results[right]}
        elif model["type"] == "threshold":
            evaluator = model["conditions"][0]["evaluator"]
            limit = evaluator["params"][0]
            test = {"gt": lambda v: v > limit, "lt": lambda v: v < limit}[evaluator["type"]]
            results[ref] = {k: test(v) for k, v in results[model["expression"]].items()}
        else:
            raise AssertionError(f"expression type {model['type']} not modelled here")
    return {labels for labels, firing in results[rule["condition"]].items() if firing}


def _provisioned_rules() -> dict[str, dict]:
    import yaml

    path = ROOT / "deploy" / "grafana" / "provisioning" / "alerting" / "hashfleet-rules.yaml"
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["uid"]: rule for group in groups for rule in group["rules"]}


def _fires(influxdb, site: Site, uid: str) -> set[tuple[str, ...]]:
    fired = _evaluate(influxdb, site.database, _provisioned_rules()[uid], int(time.time() * 1000) + 1000)
    return {tuple(sorted(dict(labels).get(k, "") for k in ("miner",))) + (dict(labels)["site"],)
            for labels in fired}


def test_offline_alert_fires_for_the_silent_miner_at_each_site(influxdb, filled: Site):
    silent = filled.miners[OFFLINE]
    assert _fires(influxdb, filled, "hashfleet-miner-offline") == {(silent, "cheap"), (silent, "dear")}


def test_hot_chip_alert_fires_only_for_the_overheating_miner(influxdb, filled: Site):
    hot = filled.miners[THROTTLED]
    assert filled.truth[hot].temp_chip_max_c > alerts.CHIP_TEMP_ALERT_C
    assert _fires(influxdb, filled, "hashfleet-chip-hot") == {(hot, "cheap"), (hot, "dear")}


def test_low_hashrate_alert_fires_for_the_throttled_and_the_broken_miner_not_the_sleeping_one(
        influxdb, filled: Site):
    slow = {filled.miners[THROTTLED], filled.miners[BOARD_LOST]}
    assert _fires(influxdb, filled, "hashfleet-hashrate-low") == {(m, s) for m in slow for s in SITES}


def test_cost_alert_fires_only_where_a_coin_costs_more_than_it_sells_for(influxdb, filled: Site):
    assert _fires(influxdb, filled, "hashfleet-cost-above-price") == {("", "dear")}


def test_pool_alert_fires_only_for_the_over_reporting_worker(influxdb, filled: Site):
    rule = _provisioned_rules()["hashfleet-pool-hashrate-short"]
    fired = _evaluate(influxdb, filled.database, rule, int(time.time() * 1000) + 1000)
    liar = filled.pooled.users[OVER_REPORTER]
    assert {(dict(labels)["site"], dict(labels)["pool"], dict(labels)["worker"]) for labels in fired} == {
        (POOLED, "braiins", liar)}


def test_realized_cost_is_on_the_pooled_site_only(influxdb, filled: Site):
    rows = _run(influxdb, filled, "economics", "Realized cost per BTC (last closed day)")
    realized = {row["site"]: row["realized all-in"] for row in rows}
    assert set(realized) == {POOLED} and realized[POOLED] > 0


def test_the_silent_collector_alert_fires_for_the_site_that_stopped_writing_only(influxdb):
    # Trial ZE (M3): with several sites in one InfluxDB a site whose collector stopped writing left no series,
    # nothing alerted (Docker does not restart an unhealthy container). Three sites: one writing every 10 s, one
    # that stopped 20 minutes ago, one that stopped yesterday (past the rule's day: decommissioned, not alerted),
    # and one whose cycles are 5 minutes apart (not silent).
    database = "t_silent_" + uuid.uuid4().hex[:8]
    influxdb.create_database(database)
    now = int(time.time())
    line = "collector,site={} poll_duration_s=0.5,miners_polled=3i {}"
    lines = [line.format("lively", now - k * 10) for k in range(180)]
    lines += [line.format("stopped", now - 20 * 60 - k * 10) for k in range(180)]
    lines += [line.format("gone", now - 25 * 3600 - k * 10) for k in range(180)]
    lines += [line.format("slow", now - 290 - k * 300) for k in range(12)]
    influxdb.write(database, lines)
    try:
        rule = _provisioned_rules()["hashfleet-collector-silent"]
        fired = _evaluate(influxdb, database, rule, (now + 1) * 1000)
    finally:
        influxdb.drop_database(database)
    assert {dict(labels)["site"] for labels in fired} == {"stopped"}


def test_every_alert_query_returns_rows(influxdb, filled: Site):
    now_ms = int(time.time() * 1000) + 1000
    for uid, rule in _provisioned_rules().items():
        for step in rule["data"]:
            if step["datasourceUid"] == alerts.EXPRESSION:
                continue
            assert step["datasourceUid"] == "hashfleet-influxdb", uid
            start = now_ms - step["relativeTimeRange"]["from"] * 1000
            text = expand(step["model"]["query"], range_=(start, now_ms))
            assert influxdb.query(text, filled.database), f"{uid} {step['refId']}: no rows for {text}"


def test_cost_by_model_is_the_ratio_of_sums_of_its_miners(influxdb, filled: Site):
    """The panel's one query: per-miner cost points carry the model, so each model's all-in cost per BTC
    is the sum of its miners' $/day over the sum of their BTC/day, computed here from the same points."""
    from dashboards.economics import _PER_MINER

    rows = {r.get("model") or "": r for r in _run(influxdb, filled, "economics", "Cost per BTC by model", "A")}
    per_miner = influxdb.query(expand(_PER_MINER, _variables(filled), range_="1h", interval=INTERVAL),
                               filled.database)
    sums: dict[str, list[float]] = {}
    for row in per_miner:
        total = sums.setdefault(row.get("model") or "", [0.0, 0.0])
        total[0] += row["energy"] + row["opex"] + row["depreciation"]
        total[1] += row["btc"]
    assert set(rows) == set(sums) and len(sums) == 6  # five simulated models and the never-identified miner
    for name, (usd, btc) in sums.items():
        if btc:
            assert rows[name]["all-in $/BTC"] == pytest.approx(usd / btc, rel=1e-9)
    # No BTC: InfluxQL's division gives 0; the panel drops such rows rather than show a free coin.
    assert sums[""][1] == 0 and rows[""]["BTC/day"] == 0
    board = json.loads((ROOT / "dashboards" / "json" / "economics.json").read_text())
    panel = next(p for p in board["panels"] if p["title"] == "Cost per BTC by model")
    [drop] = [t["options"] for t in panel["transformations"] if t["id"] == "filterByValue"]
    assert drop["type"] == "exclude" and drop["filters"][0]["fieldName"] == "BTC/day"


def test_curtailment_panels_show_the_dear_site_asleep_and_the_cheap_one_running(influxdb, filled: Site):
    asleep = {r["site"]: r["asleep"] for r in _run(influxdb, filled, "economics", "Miners asleep (plan)")}
    assert asleep["cheap"] == 0 and asleep["dear"] >= 5  # at 0.30 $/kWh no simulated model earns
    rows = _run(influxdb, filled, "economics", "Miners the plan does not run as usual")
    assert {r["site"] for r in rows if r["action"] == "sleep"} == {"dear"}
    actions = _run(influxdb, filled, "economics", "Curtailment control actions")
    assert actions and {r["result"] for r in actions} == {"dry_run"} and {r["site"] for r in actions} == {"dear"}
    # control's mode and kill switch as the cycles ran them (trial W: no panel showed either)
    assert {r["site"]: r["control"] for r in _run(influxdb, filled, "economics", "Control")} == {
        "cheap": "dry_run", "dear": "dry_run"}
    assert {r["site"]: r["killed"] for r in _run(influxdb, filled, "economics", "Kill switch")} == {"cheap": 0, "dear": 0}


# --- Maintenance ---------------------------------------------------------------------------------


def test_the_repair_queue_names_each_fault_with_its_cause_place_and_dollars(influxdb, filled: Site):
    cheap = Variable("cheap", multi=True, include_all=True, options=filled.sites)
    rows = _run(influxdb, filled, "maintenance", "Repair queue", site=cheap)
    costly = sorted(rows, key=lambda r: -(r["$ lost/day"] or 0.0))[:2]
    # The throttled A15 hashes ~78 TH/s short, the one with a dead board ~65: in that order.
    assert [(r["miner"], r["signal"], r["cause"], r["part"]) for r in costly] == [
        (filled.miners[THROTTLED], "chip_hot", "thermal", ""),
        (filled.miners[BOARD_LOST], "board_dead", "board", "board1")]
    assert all(r["$ lost/day"] > 1 for r in costly)
    assert costly[1]["rack"] == f"rack-{BOARD_LOST % 2 + 1}" and costly[1]["container"] == "c1"
    offline = next(r for r in rows if r["miner"] == filled.miners[OFFLINE])
    assert (offline["signal"], offline["cause"]) == ("offline", "network")
    assert offline["$ lost/day"] is None  # never identified: what it loses is unknown, not $0
    assert not any(r["miner"] == filled.miners[SOFT_OFF] for r in rows)  # asleep on purpose


def test_the_heat_map_places_each_miner_by_rack_and_position(influxdb, filled: Site):
    rows = _run(influxdb, filled, "maintenance", "Heat map: hottest chip by rack and position")
    placed = {(r["rack"], r["position"]) for r in rows if r.get("chip C") is not None}
    hot = [r for r in rows if r["miner"] == filled.miners[THROTTLED]]
    assert (f"rack-{THROTTLED % 2 + 1}", str(THROTTLED // 2 + 1)) in placed
    temps = [r["chip C"] for r in rows if r.get("chip C") is not None]
    assert max(r["chip C"] for r in hot) == max(temps)  # the throttled one is the hottest


def test_power_truth_and_measured_pue_come_from_the_meters(influxdb, filled: Site):
    cheap = Variable("cheap", multi=True, include_all=True, options=filled.sites)
    factors = _run(influxdb, filled, "maintenance", "Power correction by model", site=cheap)
    assert factors and all(r["metered / reported"] == pytest.approx(1.0, abs=0.02) for r in factors)
    [pue] = _run(influxdb, filled, "maintenance", "Measured PUE", site=cheap)
    assert pue["PUE"] == pytest.approx(1.2, abs=0.03)


def test_the_dear_site_lists_miners_costing_more_than_they_earn(influxdb, filled: Site):
    dear = Variable("dear", multi=True, include_all=True, options=filled.sites)
    rows = _run(influxdb, filled, "maintenance", "Miners costing more than they earn", site=dear)
    assert rows and all(r["profit"] < 0 for r in rows)
    cheap = Variable("cheap", multi=True, include_all=True, options=filled.sites)
    assert not _run(influxdb, filled, "maintenance", "Miners costing more than they earn", site=cheap)


def test_health_alerts_name_the_root_cause_and_the_place(influxdb, filled: Site):
    rule = _provisioned_rules()["hashfleet-health-costly"]
    fired = _evaluate(influxdb, filled.database, rule, int(time.time() * 1000) + 1000)
    by_miner = {(dict(labels)["miner"], dict(labels)["site"]): dict(labels) for labels in fired}
    lost = by_miner[(filled.miners[BOARD_LOST], "cheap")]
    assert (lost["cause"], lost["signal"], lost["rack"]) == ("board", "board_dead", f"rack-{BOARD_LOST % 2 + 1}")
    # At $0.30/kWh the board's watts cost more than it mined: losing it loses nothing.
    assert (filled.miners[BOARD_LOST], "dear") not in by_miner
    summary = rule["annotations"]["summary"]
    assert "{{ $labels.cause }}" in summary and "$labels.rack" in summary and "$labels.container" in summary
    critical = _evaluate(influxdb, filled.database, _provisioned_rules()["hashfleet-health-critical"],
                         int(time.time() * 1000) + 1000)
    causes = {(dict(labels)["miner"], dict(labels)["signal"]) for labels in critical}
    assert {(filled.miners[BOARD_LOST], "board_dead"), (filled.miners[OFFLINE], "offline")} <= causes
