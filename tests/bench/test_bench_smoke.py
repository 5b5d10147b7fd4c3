"""The benchmark harness still runs end to end (bench/, docs/benchmarks.md): a tiny fleet, two cycles.

Not a performance test: it checks that `python -m bench.poll` starts its simulator and InfluxDB,
drives the real collect loop and prints its tables, so the harness does not rot between benchmark runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO


def test_bench_poll_prints_its_tables(tmp_path):
    out_json = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.poll", "--miners", "50", "--cycles", "2", "--skip-pyasic",
         "--base", "127.62.0.1", "--bare-rounds", "1", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in ("machine:", "collector: poll -> cost -> InfluxDB, per cycle", "collector summary",
                    "same fleet, same run", "targets"):
        assert heading in done.stdout, f"{heading!r} missing from:\n{done.stdout[-3000:]}"
    words = " ".join(done.stdout.split())  # rich wraps long lines
    assert "cache snapshot at 128 MiB as docker-compose.yml sets it" in words  # influxd tuned as a site's
    assert "garbage collection" in done.stdout
    result = json.loads(out_json.read_text())
    assert result["influx_cache_snapshot_bytes"] == 128 * 2**20
    summary = result["collector"]["summary"]
    assert summary["miners"] == 50 and summary["failed_max"] == 0
    assert summary["influx_miner_points"] == summary["influx_miner_points_expected"] == 50 * 3
    assert len(result["collector"]["cycles"]) == 3  # one detection cycle + two timed


def test_bench_antminer_runs_sharded_collectors_on_one_schedule(tmp_path):
    """`bench.antminer --shards 2`: two collector processes, each its shard, every miner read once a cycle."""
    out_json = tmp_path / "antminer.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.antminer", "--miners", "20", "--cycles", "1", "--shards", "2",
         "--interval", "2", "--base", "127.63.0.1", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out_json.read_text())
    assert result["summary"]["shards"] == 2 and result["summary"]["all_read"]
    for cycle in result["cycles"]:
        assert cycle["miners"] == cycle["mining"] == 20 and len(cycle["shard_seconds"]) == 2
        assert abs(cycle["seconds"] - max(cycle["shard_seconds"])) < 0.01  # the fleet waits for its slowest shard
    # the native reader, then pyasic, on the same fleet: every miner read by both, CPU and memory per miner
    assert [p["path"] for p in result["paths"]] == ["native", "pyasic"]
    for path in result["paths"]:
        assert path["all_read"] and path["miners"] == 20
        assert path["cpu_ms_per_miner"] > 0 and path["rss_kb_per_miner"] is not None


def test_bench_health_compares_cycles_with_and_without_the_health_stage(tmp_path):
    """`bench.health`: one simulator process with sick miners, the pipeline with and without the stage."""
    out_json = tmp_path / "health.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.health", "--miners", "40", "--rounds", "1", "--cycles", "1", "--faulty", "4",
         "--base", "127.62.1.1", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the stage alone" in done.stdout and "target at most 10%" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]  # every part of the pipeline stops cleanly
    result = json.loads(out_json.read_text())
    assert len(result["rounds"]["with"]) == len(result["rounds"]["without"]) == 1
    assert result["health_stage_cpu_s"] > 0 and all(r["health_cpu_s"] == 0 for r in result["rounds"]["without"])


def test_bench_curtailment_times_every_scenario():
    """`bench.curtailment`: the stages `pipeline.build` makes, every scenario, each cycle timed."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.curtailment", "--miners", "40", "--cycles", "5", "--repeat", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for scenario in ("steady price", "a spike every miner loses at", "the spike, its price moving every cycle",
                     "the price moving 0.01 c/kWh every cycle", "measured efficiencies replace nameplates",
                     "demand response: shed 10 kW", "demand response: shed", "the spike, a ramp of 2,000 kW/min"):
        line = next((row for row in done.stdout.splitlines() if row.startswith(scenario)), None)
        assert line is not None, f"{scenario!r} missing from:\n{done.stdout}"
        cpu_ms = [float(word) for word in line[44:].split() if not word.startswith("(")]
        # cold, change, median, slowest, cost, the garbage collection after each cycle
        assert len(cpu_ms) == 6 and all(ms > 0 for ms in cpu_ms[:4]) and cpu_ms[5] >= 0, line
    assert "target: planning adds at most 50 ms per cycle" in done.stdout


def test_bench_curtailment_refuses_a_scenario_filter_that_matches_nothing():
    # (else it would time nothing and print "within" the target)
    done = subprocess.run([sys.executable, "-m", "bench.curtailment", "--miners", "10", "--only", "no such scenario"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no scenario's name contains it" in done.stderr, done.stderr[-2000:]
    assert "target:" not in done.stdout


def test_bench_history_times_report_over_a_long_history(tmp_path):
    """`bench.history`: real batches of a small fleet repeated to a longer history, `report` timed over it."""
    out_json = tmp_path / "history.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.history", "--fleet", "a1566:2", "--base", "127.62.2.1", "--real", "2",
         "--cycles", "30,60", "--json", str(out_json)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "hashfleet report over the local history" in done.stdout and "differ" not in done.stdout
    runs = json.loads(out_json.read_text())["runs"]
    assert [r["figures"]["cycles"] for r in runs] == [30, 60]
    assert all(r["seconds"] > 0 and r["cpu_s"] > 0 and r["peak_rss_mb"] > 0 for r in runs)


def test_bench_health_history_times_health_over_a_long_history():
    """`bench.health_history`: a history written by the collector's encoder, `health --since` timed over it."""
    done = subprocess.run([sys.executable, "-m", "bench.health_history", "--miners", "10", "--cycles", "20,40"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "hashfleet health --since over the local history" in done.stdout and "differ" not in done.stdout
    assert "20 cycles" in done.stdout and "40 cycles" in done.stdout and "peak RSS" in done.stdout


def test_bench_book_save_times_the_three_ways(tmp_path):
    """`bench.book_save`: a book's save unsynced, keeping its `.prev`, and synced, each size both ways."""
    done = subprocess.run([sys.executable, "-m", "bench.book_save", "--mb", "0.1", "--rounds", "1", "--dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "keep .prev" in done.stdout and "written back" in done.stdout and "just written" in done.stdout
    assert list(tmp_path.iterdir()) == []  # its files are gone
