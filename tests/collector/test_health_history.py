"""`hashfleet health --since` over the local history: read once as the lines come, the same report as the
list it replaced, and memory that does not grow with the period. The histories are written by the
collector's own encoder (bench.health_history)."""

from __future__ import annotations

import json
import os
import time

from bench.health_history import write_history
from collector import health_report, history
from collector.health_report import (
    HealthReport, ProblemSeen, _by_cause, _count, _mark_closed, _number, _period_usd, _sorted, _text,
)
from collector.line_protocol import Line
from models import schema
from tests.support import HASHFLEET, run_measured


def _from_list(site: str, lines: list[Line], start: int, end: int) -> HealthReport | None:
    """The reading this replaced (every line of the period in a list, scanned twice), kept as the reference."""
    if not any(line.tags.get("site") == site and start <= line.time <= end for line in lines):
        return None
    name = schema.HEALTH.name
    problems: dict[tuple[str, str, str | None], ProblemSeen] = {}
    sums: dict[tuple[str, str, str | None], tuple[float, int]] = {}
    site_points: list[Line] = []
    corrections: dict[str, tuple[int, float]] = {}
    for line in lines:
        tags = line.tags
        if line.measurement != name or tags.get("site") != site or not start <= line.time <= end:
            continue
        scope = tags.get("scope")
        if scope == "site":
            site_points.append(line)
        elif scope == "model" and "model" in tags:
            factor = _number(line.fields.get("power_correction"))
            if factor is not None and line.time >= corrections.get(tags["model"], (0, 0.0))[0]:
                corrections[tags["model"]] = (line.time, factor)
        elif scope == "problem":
            key = (tags.get("miner", "?"), tags.get("signal", "?"), tags.get("part"))
            seen = problems.get(key)
            if seen is None:
                seen = problems[key] = ProblemSeen(key[0], key[1], tags.get("cause", "?"), key[2])
            usd = _number(line.fields.get("usd_lost_day"))
            seen.cycles += 1
            if usd is not None:
                total, priced = sums.get(key, (0.0, 0))
                sums[key] = (total + usd, priced + 1)
            if line.time >= (seen.last_seen or 0):
                seen.last_seen = line.time
                seen.cause = tags.get("cause", seen.cause)
                seen.container, seen.row, seen.rack = tags.get("container"), tags.get("row"), tags.get("rack")
                seen.model = _text(tags.get("model")) or seen.model
                seen.address = _text(line.fields.get("address")) or seen.address
                seen.usd_lost_day, seen.lost_ths = usd, _number(line.fields.get("lost_ths"), 0.0)
                seen.severity, seen.evidence = _text(line.fields.get("severity")), _text(line.fields.get("evidence"))
    for key, (total, priced) in sums.items():
        problems[key].usd_lost_day_mean = total / priced
    site_points.sort(key=lambda p: p.time)
    seen_all = list(problems.values())
    _mark_closed(seen_all, {site_points[-1].time} if site_points else set())
    report = HealthReport(site=site, source="local history", start=start, end=end, cycles=len(site_points),
                          problems=_sorted(seen_all),
                          power_corrections={m: f for m, (_, f) in sorted(corrections.items())})
    report.by_cause = _by_cause(report.problems)
    if site_points:
        usd = [v for p in site_points if (v := _number(p.fields.get("usd_lost_day"))) is not None]
        report.usd_lost_day = _period_usd(sum(usd) / len(usd) if usd else None, report.problems)
        report.chips_dead_first = _number(site_points[0].fields.get("chips_dead"))
        report.chips_dead_last = _number(site_points[-1].fields.get("chips_dead"))
        report.unprofitable = _count(site_points[-1].fields.get("unprofitable"))
        report.measured_pue = _number(site_points[-1].fields.get("measured_pue"))
        report.miners = _count(site_points[-1].fields.get("miners"))
    return report


def test_the_streamed_report_is_the_listed_one(tmp_path):
    # 40 cycles of 30 miners: a problem each all along, one in five a second that closes at cycle 26
    spool = tmp_path / "spool"
    first = write_history(spool, "h1", 30, 40, 10)
    last = first + 39 * 10
    periods = {"whole": (first, last), "from the middle": (first + 155, last), "before the repair": (first, first + 200),
               "after the repair": (first + 300, last)}
    reports = {}
    for what, (start, end) in periods.items():
        listed = _from_list("h1", list(history.spool_points(spool, 0, (schema.HEALTH.name,))), start, end)
        streamed = health_report.from_lines("h1", history.spool_points(spool, 0, (schema.HEALTH.name,)), start, end)
        assert listed is not None and streamed is not None
        assert json.dumps(streamed.as_dict()) == json.dumps(listed.as_dict()), what
        reports[what] = streamed.as_dict()
    assert [reports[w]["cycles"] for w in periods] == [40, 24, 21, 10]
    report = reports["from the middle"]
    assert len(report["problems"]) == 36 and report["usd_lost_day"] > 0
    assert sum(not p["open"] for p in report["problems"]) == 6 and report["chips_lost"] == 0
    # nothing of the site in the period: the command's "no recorded health" (exit 2)
    for site, start, end in (("other", first, last), ("h1", last + 1, last + 100)):
        assert _from_list(site, list(history.spool_points(spool, 0, (schema.HEALTH.name,))), start, end) is None
        assert health_report.from_lines(site, history.spool_points(spool, 0, (schema.HEALTH.name,)), start, end) is None


def test_health_since_memory_does_not_grow_with_the_period(tmp_path):
    # It held every health line of the period (~2.3 KB each): 168 MB for 5 min of 2,000 miners in trial L,
    # 494 MB for 38 min. 600 cycles of 100 miners: ~133,000 lines.
    spool = tmp_path / "spool"
    first = write_history(spool, "h1", 100, 600, 10)
    config = tmp_path / "hashfleet.yaml"
    config.write_text(f"site: h1\nspool: {{directory: {spool}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    since = f"{(int(time.time()) - first) // 60 + 2}m"
    code, out, err, peak_mb = run_measured([HASHFLEET, "health", "--config", str(config), "--since", since, "--json"],
                                           tmp_path, env=env)
    assert code == 0, err[-2000:]
    report = json.loads(out)
    assert report["cycles"] == 600 and len(report["problems"]) == 120
    # the code before: 387 MB here; this: 68 MB, most of it the interpreter and its imports
    assert peak_mb < 150


def test_health_since_over_a_history_with_nothing_of_the_site_is_a_usage_error(tmp_path):
    spool = tmp_path / "spool"
    write_history(spool, "h1", 3, 5, 10)
    config = tmp_path / "hashfleet.yaml"
    config.write_text(f"site: other\nspool: {{directory: {spool}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    code, out, err, _ = run_measured([HASHFLEET, "health", "--config", str(config), "--since", "1h"], tmp_path, env=env)
    assert code == 2 and out == "" and f"no recorded health of site 'other' in the last 1h in {spool}" in err
