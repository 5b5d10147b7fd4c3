"""The efficiency panels count only what has both a hashrate and a power.

A miner keeps its state when one of its readings is refused (models.sample.state_with_refusals): a mining
miner whose power was refused (or a chain that reports none) writes its hashrate and no power. Summing
powers over hashrates that include its hashrate understated the site's J/TH (here by half). The panels'
queries run, as Grafana sends them (tests/dashboards/test_grafana_macros.py), on the real InfluxDB.
"""

from __future__ import annotations

import json
import time

from tests.dashboards.test_grafana_macros import Variable, expand
from tests.support import REPO

JSON_DIR = REPO / "dashboards" / "json"


def _query(title: str) -> str:
    board = json.loads((JSON_DIR / "fleet-overview.json").read_text())
    [panel] = [p for p in board["panels"] if p["title"] == title and p["type"] == "stat"] or [
        p for p in board["panels"] if p["title"] == title]
    return panel["targets"][0]["query"]


def test_a_mining_miner_without_a_power_reading_leaves_the_efficiency_as_the_others_make_it(influxdb, influx_bucket):
    now = int(time.time())
    lines = []
    for t in range(now - 300, now, 10):
        lines.append(f'miner,site=eff,miner=a,model=M hashrate_ths=100,power_w=3000,state="mining",up=1i {t}')
        lines.append(f'miner,site=eff,miner=b,model=M hashrate_ths=100,state="mining",up=1i {t}')  # power refused
    influxdb.write(influx_bucket, lines)
    site = {"site": Variable("eff", multi=True, include_all=True, options=["eff"])}
    by_model = influxdb.query(expand(_query("Efficiency by model"), site, range_="1h"), influx_bucket)
    assert [(row["model"], row["efficiency"]) for row in by_model] == [("M", 30.0)]
    fleet = influxdb.query(expand(_query("Efficiency"), site, range_="1h"), influx_bucket)
    assert fleet and all(row["efficiency"] == 30.0 for row in fleet), fleet
