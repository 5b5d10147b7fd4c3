"""Every dashboard and alert query names only measurements, tags and fields that models/schema.py
defines: a renamed or dropped field fails here, not as an empty panel on a site."""

from __future__ import annotations

import re

import pytest

from models import schema
from tests.dashboards.test_queries import _provisioned_rules, _targets

_FROM = re.compile(r'\bFROM\s+"([^"]+)"', re.IGNORECASE)
_ALIAS = re.compile(r'\bAS\s+"([^"]+)"', re.IGNORECASE)
_IDENTIFIER = re.compile(r'"([^"]+)"')
_WITH_KEY = re.compile(r'WITH KEY\s*=\s*"([^"]+)"', re.IGNORECASE)


def unknown_names(query: str) -> list[str]:
    """The quoted names in `query` that are not a measurement it reads from, an alias it defines, or a
    tag or field of one of those measurements."""
    measurements = _FROM.findall(query)
    missing = [f"measurement {m!r}" for m in measurements if m not in schema.MEASUREMENTS]
    known = {name for m in measurements if m in schema.MEASUREMENTS
             for name in (*schema.MEASUREMENTS[m].tags, *schema.MEASUREMENTS[m].fields)}
    allowed = known | set(measurements) | set(_ALIAS.findall(query))
    missing += [f"{name!r}" for name in _IDENTIFIER.findall(query) if name not in allowed]
    return missing


def _alert_queries() -> list[pytest.param]:
    params = []
    for uid, rule in _provisioned_rules().items():
        for item in rule["data"]:
            query = item.get("model", {}).get("query")
            if query:
                params.append(pytest.param(query, id=f"alert:{uid}:{item['refId']}"))
    return params


@pytest.mark.parametrize("query", [*_targets(), *_alert_queries()])
def test_queries_name_only_what_the_schema_defines(query: str):
    assert not unknown_names(query), f"not in models/schema.py: {unknown_names(query)} in {query}"


def test_the_check_catches_an_unknown_field_measurement_and_tag():
    assert unknown_names('SELECT mean("hashrate_ths") AS "h" FROM "miner" WHERE "site" = \'x\'') == []
    assert unknown_names('SELECT mean("hashrate_th") FROM "miner"') == ["'hashrate_th'"]
    assert unknown_names('SELECT last("x") FROM "minerz"') == ["measurement 'minerz'", "'x'"]
    assert unknown_names('SELECT last("up") FROM "miner" GROUP BY "rack"') == ["'rack'"]
    assert unknown_names('SHOW TAG VALUES FROM "miner" WITH KEY = "site"') == []


def test_the_container_healthcheck_reads_a_field_the_collector_writes():
    import importlib.util

    from tests.support import REPO

    spec = importlib.util.spec_from_file_location("healthcheck", REPO / "deploy" / "collector" / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    assert healthcheck.FIELD in schema.COLLECTOR.fields
