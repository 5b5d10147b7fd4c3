"""The generated dashboards: committed as generated, valid for the pinned Grafana, on the grid, on the
provisioned data source. (Their queries run against InfluxDB in test_dashboards_queries.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from dashboards import build
from dashboards.common import DATASOURCE_UID

from tests.support import REPO as ROOT


def _schema() -> Path:
    """The strict Grafana 11.6 dashboard schema lives beside the repository (../shared/grafana/,
    read-only; its README asks that it not be copied in): beside this checkout, or, for a clone
    made from a local checkout (CI clones main to a temporary directory), beside that one."""
    relative = Path("shared") / "grafana" / "dashboard.schema.json"
    here = ROOT.parent / relative
    origin = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if here.exists() or not origin or "://" in origin or ":" in origin.split("/")[0]:
        return here  # a network remote has no folder beside it
    beside_origin = Path(origin).resolve().parent / relative
    return beside_origin if beside_origin.exists() else here


SCHEMA = _schema()
BOARDS = {path.stem: json.loads(path.read_text()) for path in sorted(build.JSON_DIR.glob("*.json"))}


def _panels(board: dict) -> list[dict]:
    return [p for panel in board["panels"] for p in [panel, *panel.get("panels", [])]]


def test_committed_files_are_what_the_generator_writes():
    files = build.render()
    stale = [str(path.relative_to(ROOT)) for path in build.stale(files)]
    assert stale == [], f"regenerate with `python -m dashboards.build`: {stale}"
    assert {p.name for p in build.JSON_DIR.glob("*.json")} == set(build.DASHBOARDS), "stray dashboard JSON"


def test_check_mode_fails_on_a_hand_edit(tmp_path, monkeypatch):
    edited = tmp_path / "fleet-overview.json"
    edited.write_text((build.JSON_DIR / "fleet-overview.json").read_text().replace("Fleet overview", "Fleet"))
    monkeypatch.setattr(build, "JSON_DIR", tmp_path)
    for name in build.DASHBOARDS:
        if name != edited.name:
            (tmp_path / name).write_text((ROOT / "dashboards" / "json" / name).read_text())
    assert build.main(["--check"]) == 1


def test_the_five_dashboards_exist_with_stable_uids():
    assert {b["uid"]: b["title"] for b in BOARDS.values()} == {
        "hashfleet-fleet": "Fleet overview", "hashfleet-miner": "Miner detail",
        "hashfleet-economics": "Economics", "hashfleet-collector": "Collector health",
        "hashfleet-maintenance": "Maintenance"}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_valid_against_the_strict_grafana_schema(name):
    if not SCHEMA.exists():
        # The schema lives in the project's shared folder beside the checkout (not copied in, by its
        # README). CI always has it; a bare clone elsewhere has not.
        message = f"{SCHEMA} is not beside this checkout"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(BOARDS[name])]
    assert errors == []


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panels_fit_the_24_column_grid_without_overlapping(name):
    taken: dict[tuple[int, int], str] = {}
    for panel in BOARDS[name]["panels"]:
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} runs past column 24: {pos}"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_panel_ids_are_unique(name):
    ids = [p["id"] for p in _panels(BOARDS[name])]
    assert len(ids) == len(set(ids))


def _provisioned_datasource() -> dict:
    path = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "hashfleet.yaml"
    (datasource,) = yaml.safe_load(path.read_text())["datasources"]
    return datasource


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_query_names_the_provisioned_data_source(name):
    uid = _provisioned_datasource()["uid"]
    assert uid == DATASOURCE_UID
    refs = []
    for panel in _panels(BOARDS[name]):
        if panel["type"] == "row":
            continue
        refs.append(panel["datasource"])
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            refs.append(target["datasource"])
            assert target["rawQuery"] is True and target["query"].lstrip().upper().startswith(("SELECT", "SHOW"))
    refs += [v["datasource"] for v in BOARDS[name]["templating"]["list"] if v["type"] == "query"]
    assert refs and all(ref == {"type": "influxdb", "uid": uid} for ref in refs)


def test_alert_rules_use_the_provisioned_data_source_and_existing_refs():
    rules = yaml.safe_load(build.ALERT_RULES.read_text())
    uid = _provisioned_datasource()["uid"]
    titles = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            titles.add(rule["title"])
            refs = {step["refId"] for step in rule["data"]}
            assert rule["condition"] in refs
            for step in rule["data"]:
                assert step["datasourceUid"] in (uid, "__expr__")
                if step["datasourceUid"] == "__expr__":
                    for name in re.findall(r"\$(\w+)", step["model"]["expression"]) or [step["model"]["expression"]]:
                        assert name in refs, f"{rule['uid']}: {step['refId']} reads unknown {name}"
    assert titles == {"Miner offline", "Hottest chip above threshold", "Hashrate below expected",
                      "All-in cost per BTC above BTC price", "Pool sees less than the miner reports",
                      "Problem losing money", "Critical hardware problem", "Two collectors write one shard",
                      "Collector silent"}
    # What the docs say is provisioned (README said 7 rules when there were 8).
    readme = " ".join((ROOT / "README.md").read_text().split())
    baked = re.search(r"(\d+) dashboards \([^)]*\) and (\d+) alert rules baked in", readme)
    assert baked and (int(baked[1]), int(baked[2])) == (len(BOARDS), len(titles)), baked and baked[0]
    table = (ROOT / "docs" / "deployment.md").read_text()
    assert [t for t in sorted(titles) if f"\n| {t} |" not in table] == []


def test_sdk_and_compose_grafana_are_the_same_minor_version():
    sdk = version("grafana-foundation-sdk").split("!")[-1]  # "1769699379!11.6.0" -> "11.6.0"
    # The compose stack's grafana image is built FROM this (provisioning baked in).
    dockerfile = (ROOT / "deploy/grafana/Dockerfile").read_text()
    image = re.search(r"^FROM (grafana/grafana:\S+)$", dockerfile, re.M).group(1)
    tag = image.rsplit(":", 1)[1]
    assert tag.split(".")[:2] == sdk.split(".")[:2], f"compose runs {image}, dashboards are typed for {sdk}"
    schema_versions = {b["schemaVersion"] for b in BOARDS.values()}
    assert schema_versions == {41}  # Grafana 11.6's dashboard schema version


def test_dashboard_provider_points_where_compose_mounts_the_json():
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/hashfleet.yaml").read_text())["providers"][0]
    dockerfile = (ROOT / "deploy/grafana/Dockerfile").read_text()
    assert re.search(rf"^COPY --chmod=0644 dashboards/json/\*\.json {re.escape(provider['options']['path'])}/$",
                     dockerfile, re.M), "the grafana image must put the dashboards where the provider looks"
