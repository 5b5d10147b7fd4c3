"""Without InfluxDB the spool is the local history, and `hashfleet report` summarises it."""

import gzip
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from tests.support import HASHFLEET, run_measured, wait_for

from collector.line_protocol import parse_line
from simulators.fleet import run_fleet


def hashfleet(*args: str, spool: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["HASHFLEET_SPOOL_DIR"] = str(spool)
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=120, env=env)


def test_collect_without_influxdb_keeps_history_that_report_summarises(tmp_path):
    spool = tmp_path / "spool"
    config = tmp_path / "c.yaml"
    config.write_text(
        "site: home\n"
        "economics: {tariff: {kind: flat, usd_per_kwh: 0.06}, opex_usd_month: 300, pue: 1.1}\n"
        "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
        " btc_price_usd: 95000}}\n")
    with run_fleet("a1566:1,q:1", base="127.45.0.1:0", seed=1) as fleet:
        fleet[1].set_faults(no_answer=True)  # one miner is down the whole time
        result = hashfleet("collect", "--config", str(config), "--miners", ",".join(fleet.addresses),
                           "--cycles", "4", "--interval", "1", spool=spool)
        assert result.returncode == 0, result.stderr
        assert "for spool.retention_h 168 h or up to spool.max_mb 1024 MB, whichever comes first" in result.stderr
        served_power = fleet[0].last_served.power_w

    batches = sorted((spool / "home").glob("*.lp.gz"))
    assert len(batches) == 4  # nothing delivered anywhere, so everything is kept

    report = hashfleet("report", "--config", str(config), "--since", "1h", "--json", spool=spool)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["site"] == "home" and data["cycles"] == 4
    by_up = sorted(data["miners"], key=lambda m: m["up_pct"])
    assert [m["up_pct"] for m in by_up] == [0.0, 100.0]
    assert by_up[1]["mining_pct"] == 100.0 and by_up[1]["power_avg_w"] == pytest.approx(served_power, rel=0.05)
    # four cycles a second apart stand for four seconds of the running miner's draw
    assert data["energy_kwh"] == pytest.approx(4 * by_up[1]["power_avg_w"] / 3.6e6, rel=0.05)
    # what the energy in the cash was paid for: the facility's kWh, the config's PUE on the miners' draw
    assert data["facility_energy_kwh"] == pytest.approx(data["energy_kwh"] * 1.1, rel=0.05)
    assert data["btc"] > 0 and data["cash_cost_per_btc"] == pytest.approx(data["cash_usd"] / data["btc"])

    table = hashfleet("report", "--config", str(config), "--since", "1h", spool=spool)
    assert table.returncode == 0 and "site totals" in table.stdout
    assert f"${data['cash_usd']:,.2f}" in table.stdout  # four seconds' cash is cents, shown as cents (was "$0")


def test_local_history_at_its_budget_says_the_hours_it_holds_and_trims_with_one_warning(tmp_path):
    # The start-up warning promised 168 h whatever spool.max_mb held (~5 h at 2,000 miners by default, trial L),
    # and every append past the budget logged an ERROR that undelivered batches were dropped.
    spool = tmp_path / "spool"
    config = tmp_path / "c.yaml"
    config.write_text("site: home\nspool: {max_mb: 0.01}\n" + SITE_YAML)  # ~10 KB: ~5 cycles of two miners
    with run_fleet("a1566:2", base="127.45.10.1:0", seed=1) as fleet:
        result = hashfleet("collect", "--config", str(config), "--miners", ",".join(fleet.addresses),
                           "--cycles", "12", "--interval", "1", spool=spool)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert "for spool.retention_h 168 h or up to spool.max_mb 0.01 MB, whichever comes first" in said
    estimate = re.search(r"spool.max_mb 0.01 holds ~([0-9.e-]+) h of it, less than spool.retention_h 168; "
                         r"set spool.max_mb to ~([0-9]+) to keep 168 h", said)
    assert estimate, said
    kept = sorted((spool / "home").glob("*.lp.gz"))
    cycle_bytes = sum(p.stat().st_size for p in kept) / len(kept)  # one batch a cycle at two miners
    assert float(estimate[1]) == pytest.approx(0.01 * 1024 * 1024 / (cycle_bytes * 3600), rel=0.1)
    assert int(estimate[2]) == pytest.approx(cycle_bytes * 3600 * 168 * 1.1 / 1024 / 1024, rel=0.1)
    assert int((spool / "home" / "dropped").read_text()) == 12 - len(kept) >= 5
    assert said.count("local history at its 10485-byte budget (spool.max_mb): the oldest trimmed") == 1
    assert " ERROR " not in result.stderr, result.stderr

    report = hashfleet("report", "--config", str(config), "--since", "1h", "--json", spool=spool)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["cycles"] == len(kept)  # what the budget holds is still read


def test_report_leaves_a_miner_without_power_out_of_the_site_totals_as_the_cost_does_and_says_so(tmp_path):
    # The demo's AUC chain reports no power: `report` gave the site's hashrate with its 69 TH/s, the power
    # without it and a cost per BTC counting its BTC at 0 W, with nothing to say so; and no energy $/BTC.
    spool = tmp_path / "spool"
    config = tmp_path / "c.yaml"
    config.write_text(
        "site: chain\n"
        "economics: {tariff: {kind: flat, usd_per_kwh: 0.06}, opex_usd_month: 300, pue: 1.1}\n"
        "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
        " btc_price_usd: 95000}}\n")
    with run_fleet("a1566:1,avchain:1", base="127.45.5.1:0", seed=7) as fleet:
        result = hashfleet("collect", "--config", str(config), "--miners", ",".join(fleet.addresses),
                           "--cycles", "3", "--interval", "1", spool=spool)
        assert result.returncode == 0, result.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
        env.update(HASHFLEET_SPOOL_DIR=str(spool), COLUMNS="200")
        watched = subprocess.run([HASHFLEET, "watch", "--config", str(config), "--miners", ",".join(fleet.addresses),
                                  "--cycles", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert watched.returncode == 0, watched.stderr
    # watch's line of the last hour says so too
    [last_hour] = [line for line in watched.stdout.splitlines() if line.startswith("last hour")]
    assert last_hour.endswith("BTC · incomplete: 1 miner left out"), last_hour

    report = hashfleet("report", "--config", str(config), "--since", "1h", "--json", spool=spool)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    [chain] = [m for m in data["miners"] if m["power_avg_w"] is None]
    [a1566] = [m for m in data["miners"] if m["power_avg_w"] is not None]
    assert chain["hashrate_avg_ths"] > 60 and chain["left_out_pct"] == 100 and a1566["left_out_pct"] == 0
    assert data["cycles_incomplete"] == data["cycles"] == 3
    # hashrate and power over the miners the cost counted: the A1566 alone
    assert data["hashrate_avg_ths"] == pytest.approx(a1566["hashrate_avg_ths"], rel=1e-9)
    assert data["power_avg_w"] == pytest.approx(a1566["power_avg_w"], rel=1e-9)
    assert data["energy_cost_per_btc"] == pytest.approx(data["energy_usd"] / data["btc"])
    assert data["energy_usd"] < data["cash_usd"]
    assert data["cash_cost_per_btc"] == pytest.approx(data["cash_usd"] / data["btc"])

    table = hashfleet("report", "--config", str(config), "--since", "1h", spool=spool)
    assert table.returncode == 0, table.stderr
    text = " ".join(table.stdout.split())  # (the note wraps at the terminal's width)
    assert "energy $/BTC" in text and f"${data['energy_cost_per_btc']:,.0f}" in text
    assert "incomplete in 3 of 3 cycles: left out of the site's totals and cost" in text
    assert f"{chain['miner']} (100% of its cycles, no power reading)" in text


def test_report_without_history_says_where_it_looked(tmp_path):
    result = hashfleet("report", "--site", "nowhere", spool=tmp_path / "empty")
    assert result.returncode == 2 and "no local history for site 'nowhere'" in result.stderr
    # Trial ZI L1: a site writing to InfluxDB was sent to --shard, which found nothing either.
    config = tmp_path / "influx.yaml"
    config.write_text("site: nowhere\ninflux: {url: 'http://127.0.0.1:9', bucket: b, token: t}\n")
    told = hashfleet("report", "--config", str(config), spool=tmp_path / "empty")
    assert told.returncode == 2 and "writes to InfluxDB, which holds the history instead" in " ".join(told.stderr.split())


def test_report_rejects_a_bad_period(tmp_path):
    result = hashfleet("report", "--since", "yesterday", spool=tmp_path)
    assert result.returncode == 2 and "--since 'yesterday'" in result.stderr


def test_line_protocol_round_trips_what_influxdb_client_writes():
    from influxdb_client import Point

    line = (Point("miner").tag("site", "a b").tag("model", "AvalonMiner 15-194,x=y")
            .field("state", 'mi"ning, x=1').field("up", 1).field("h", 1.5).time(1700000000, "s").to_line_protocol())
    parsed = parse_line(line)
    assert parsed.measurement == "miner" and parsed.time == 1700000000
    assert parsed.tags == {"site": "a b", "model": "AvalonMiner 15-194,x=y"}
    assert parsed.fields == {"state": 'mi"ning, x=1', "up": 1, "h": 1.5}


def test_two_collectors_cannot_share_one_spool_but_report_reads_it_meanwhile(tmp_path):
    spool = tmp_path / "spool"
    with run_fleet("nano3s:1", base="127.45.1.1:0", seed=2) as fleet:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
        env["HASHFLEET_SPOOL_DIR"] = str(spool)
        first = subprocess.Popen([HASHFLEET, "collect", "--miners", fleet.addresses[0], "--site", "one",
                                  "--interval", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
        try:
            wait_for(lambda: list((spool / "one").glob("*.lp.gz")), what="a batch to be written", interval=0.05)
            second = hashfleet("collect", "--miners", fleet.addresses[0], "--site", "one", "--cycles", "1",
                               spool=spool)
            assert second.returncode == 2 and "is in use by pid" in second.stderr
            report = hashfleet("report", "--site", "one", "--json", spool=spool)
            assert report.returncode == 0 and json.loads(report.stdout)["cycles"] >= 1
        finally:
            first.terminate()
            first.wait(timeout=30)


def test_watch_shows_the_last_hour_from_the_local_history(tmp_path):
    spool = tmp_path / "spool"
    with run_fleet("a1566:1", base="127.45.2.1:0", seed=3) as fleet:
        collected = hashfleet("collect", "--miners", fleet.addresses[0], "--site", "h", "--cycles", "2",
                              "--interval", "1", spool=spool)
        assert collected.returncode == 0, collected.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
        env.update(HASHFLEET_SPOOL_DIR=str(spool), COLUMNS="160")
        watched = subprocess.run([HASHFLEET, "watch", "--miners", fleet.addresses[0], "--site", "h", "--cycles", "1"],
                                 capture_output=True, text=True, timeout=60, env=env)
    assert watched.returncode == 0, watched.stderr
    assert "last hour (local history, 2 cycles): up 100.0%" in watched.stdout


def test_todays_cost_totals_survive_a_collector_restart(tmp_path):
    spool = tmp_path / "spool"
    config = tmp_path / "c.yaml"
    config.write_text(
        "site: keep\n"
        "economics: {tariff: {kind: flat, usd_per_kwh: 0.06}}\n"
        "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n")

    def last_energy_today() -> float:
        from collector.line_protocol import parse_line
        from collector.spool_files import list_batches

        newest = list_batches(spool / "keep")[-1]
        site = [p for p in map(parse_line, newest.read()) if p.measurement == "cost" and p.tags["scope"] == "site"]
        return site[0].fields["energy_kwh_today"]

    with run_fleet("a1566:1", base="127.45.3.1:0", seed=5) as fleet:
        for _ in range(2):  # two runs of the service, three cycles each
            run = hashfleet("collect", "--config", str(config), "--miners", fleet.addresses[0], "--cycles", "3",
                            "--interval", "1", spool=spool)
            assert run.returncode == 0, run.stderr
            if _ == 0:
                after_first = last_energy_today()
    assert (spool / "keep" / "cost-totals.json").exists()
    after_second = last_energy_today()
    assert after_first > 0
    assert after_second > after_first * 1.5  # carried on from the first run, not started over


def test_report_keeps_a_miners_model_after_it_goes_offline(tmp_path):
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["HASHFLEET_SPOOL_DIR"] = str(spool)
    with run_fleet("q:1", base="127.45.4.1:0", seed=1) as fleet:
        collect = subprocess.Popen([HASHFLEET, "collect", "--miners", fleet.addresses[0], "--site", "m1",
                                    "--interval", "1", "--cycles", "5"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(list((spool / "m1").glob("*.lp.gz"))) >= 2, what="two cycles recorded")
            fleet[0].set_faults(no_answer=True)  # offline from here: its points carry no model
            assert collect.wait(timeout=60) == 0, collect.stderr.read()
        finally:
            collect.kill()
    report = hashfleet("report", "--site", "m1", "--since", "1h", "--json", spool=spool)
    assert report.returncode == 0, report.stderr
    [miner] = json.loads(report.stdout)["miners"]
    assert miner["cycles"] == 5 and 0 < miner["up_pct"] < 100
    assert miner["model"] == "Avalon Q"


def _strict_json(text: str):
    def refuse(constant: str):
        raise AssertionError(f"{constant} in JSON")
    return json.loads(text, parse_constant=refuse)


def test_report_skips_non_finite_and_absurd_values_in_the_history(tmp_path):
    # The spool is input like any other: a batch holding NaN, 1e308 W, a chip at 1e999 degrees and a
    # site cost of 1e308 $/day gives a report of the sane values and says how many it skipped.
    site = tmp_path / "spool" / "x1"
    site.mkdir(parents=True)
    now = int(time.time())
    lines = []
    for i, t in enumerate(range(now - 40, now, 10)):
        miner = f'miner,site=x1,miner=m1,model=A1566 hashrate_ths=190,power_w=3600,temp_chip_max_c=70,up=1i,state="mining" {t}'
        cost = f"cost,site=x1,scope=site energy_usd_day=10,btc_per_day_net=0.0005,revenue_usd_day=50 {t}"
        if i == 1:
            miner = f'miner,site=x1,miner=m1,model=A1566 hashrate_ths=nan,power_w=1e308,temp_chip_max_c=1e999,up=1i,state="mining" {t}'
            cost = f"cost,site=x1,scope=site energy_usd_day=1e308,btc_per_day_net=inf,revenue_usd_day=50 {t}"
        lines += [miner, cost]
    (site / f"{1:016d}.lp.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    run = hashfleet("report", "--site", "x1", "--since", "1h", "--json", spool=tmp_path / "spool")
    assert run.returncode == 0, run.stderr
    data = _strict_json(run.stdout)
    assert data["skipped_values"] == 5 and "5 value(s)" in run.stderr
    [miner] = data["miners"]
    assert miner["power_avg_w"] == pytest.approx(3600 * 3 / 4) and miner["temp_chip_max_c"] == 70
    assert data["cash_usd"] == pytest.approx(10 * 30 / 86400)  # three sane 10 s cycles at $10/day

    table = hashfleet("report", "--site", "x1", "--since", "1h", spool=tmp_path / "spool")
    assert table.returncode == 0, table.stderr
    assert not any(word in table.stdout.lower() for word in ("nan", "inf", "e+3")), table.stdout
    assert "5 value(s) in the history" in table.stdout


# --- what `report` counts: one point per series and second, every cycle's interval, in bounded memory ------------

SITE_YAML = ("economics: {tariff: {kind: flat, usd_per_kwh: 0.06}, opex_usd_month: 300, pue: 1.1}\n"
             "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
             " btc_price_usd: 95000}}\n")


def _collect_stamped(tmp_path: Path, base: str, stamps: list[int]) -> Path:
    """The real collect loop (no InfluxDB) against two simulated A1566s, one cycle per stamp: the wall clock
    it reads says `stamps` in turn (collector/clock.py stamps each cycle with it). Returns the config."""
    import asyncio
    from datetime import datetime, timezone

    import yaml

    from collector import pipeline
    from models import CollectorConfig

    config = tmp_path / "c.yaml"
    config.write_text(f"site: s1\nspool: {{directory: {tmp_path / 'spool'}}}\n" + SITE_YAML)
    readings = iter(datetime.fromtimestamp(s, timezone.utc) for s in stamps)
    with run_fleet("a1566:2", base=base, seed=4) as fleet:
        cfg = CollectorConfig.model_validate({**yaml.safe_load(config.read_text()), "miners": fleet.addresses,
                                              "interval_s": 1, "timeout_s": 5})
        built = pipeline.build(cfg, sinks=[pipeline.storage_sink(cfg)], service_mode=True)
        try:
            assert asyncio.run(built.run(cycles=len(stamps), now=lambda: next(readings))) == len(stamps)
        finally:
            built.close()
    return config


def _last_written(spool: Path) -> dict[int, dict[str, dict]]:
    """Second -> miner -> the fields of its miner point last written at that second (InfluxDB's view)."""
    from collector.spool_files import list_batches

    seconds: dict[int, dict[str, dict]] = {}
    for batch in list_batches(spool):
        for p in map(parse_line, batch.read()):
            if p.measurement == "miner":
                seconds.setdefault(p.time, {})[p.tags["miner"]] = p.fields
    return seconds


def _report(config: Path) -> dict:
    run = hashfleet("report", "--config", str(config), "--since", "1h", "--json", spool=config.parent)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_report_counts_a_copied_batch_once(tmp_path):
    # One batch copied as a new one (a restored or copied spool) added 8.3 % to the power, kWh, $ and BTC of
    # the trial's 12 cycles: each miner counted 13 times. InfluxDB keeps one point per series and second.
    now = int(time.time())
    config = _collect_stamped(tmp_path, "127.45.6.1:0", [now - 50, now - 40, now - 30, now - 20])
    spool = tmp_path / "spool"
    before = _report(config)
    batches = sorted(spool.glob("*.lp.gz"))
    (spool / f"{len(batches) + 1:016d}.lp.gz").write_bytes(batches[1].read_bytes())
    after = _report(config)
    assert after["cycles"] == 4 and {m["cycles"] for m in after["miners"]} == {4}
    for key in ("start", "end"):
        before.pop(key), after.pop(key)
    assert _numbers(after) == pytest.approx(_numbers(before), rel=1e-12, nan_ok=True)  # (the copy is summed last: the last bit)
    assert [(m["miner"], m["model"]) for m in after["miners"]] == [(m["miner"], m["model"]) for m in before["miners"]]


def _numbers(report: dict) -> list[float]:
    """The report's numbers, in order (None as NaN, matched by approx(nan_ok))."""
    values = [v for k, v in sorted(report.items()) if k not in ("site", "miners")]
    for miner in report["miners"]:
        values += [v for k, v in sorted(miner.items()) if k not in ("miner", "model")]
    return [float("nan") if v is None else float(v) for v in values]


def test_a_cycle_written_again_on_the_same_second_after_the_clock_stepped_back_replaces_it(tmp_path):
    # README (Durability): a cycle that lands on the very second of one written while the clock was ahead
    # replaces it, as InfluxDB keeps one point per series and second; the local history kept both and
    # `report` summed both.
    now = int(time.time())
    b = now - 100
    config = _collect_stamped(tmp_path, "127.45.7.1:0", [b, b + 10, b + 20, b + 30, b + 10, b + 20])
    seconds = _last_written(tmp_path / "spool")
    assert sorted(seconds) == [b, b + 10, b + 20, b + 30]
    data = _report(config)
    assert data["cycles"] == 4 and data["cycles_incomplete"] == 0
    for miner in data["miners"]:
        powers = [seconds[t][miner["miner"]]["power_w"] for t in sorted(seconds)]
        assert miner["cycles"] == 4 and miner["power_avg_w"] == pytest.approx(sum(powers) / 4, rel=1e-12)
    # each of the four cycles stands for the 10 s to the next (the last: one typical 10 s)
    site_w = [sum(f["power_w"] for f in seconds[t].values()) for t in sorted(seconds)]
    assert data["energy_kwh"] == pytest.approx(sum(w * 10 for w in site_w) / 3.6e6, rel=1e-12)


def test_the_cycle_before_a_gap_counts_one_typical_interval_as_the_last_does(tmp_path):
    # A collector stopped for a while: its last cycle before the stop counted no energy (0 s) while the very
    # last cycle counted one typical interval, so each stop cut one cycle of kWh, $ and BTC from the report.
    now = int(time.time())
    b = now - 100
    config = _collect_stamped(tmp_path, "127.45.8.1:0", [b, b + 1, b + 2, b + 40, b + 41, b + 42])
    seconds = _last_written(tmp_path / "spool")
    data = _report(config)
    assert data["cycles"] == 6
    # typical step 1 s; the 38 s gap (the collector down) is not counted: six cycles of one second each
    site_w = [sum(f["power_w"] for f in seconds[t].values()) for t in sorted(seconds)]
    assert data["energy_kwh"] == pytest.approx(sum(site_w) * 1 / 3.6e6, rel=1e-12)
    assert data["energy_kwh"] == pytest.approx(data["power_avg_w"] * 6 / 3.6e6, rel=1e-12)


def test_report_memory_does_not_grow_with_miners_times_cycles(tmp_path):
    # `report` held every parsed line of the period (~11 KB a miner-cycle: 1.7 GB for 6,000 cycles of 25
    # miners). Real batches of a collector, repeated to 5,000 cycles 10 s apart (as mkweek did in the trial).
    now = int(time.time())
    _collect_stamped(tmp_path, "127.45.9.1:0", [now - 40, now - 30, now - 20])
    spool = tmp_path / "spool"
    real = [gzip.decompress(p.read_bytes()).decode().splitlines() for p in sorted(spool.glob("*.lp.gz"))]
    cycles = 5000
    long = tmp_path / "long"
    long.mkdir()
    first = now - cycles * 10
    for k in range(cycles):
        ts = first + k * 10
        path = long / f"{k + 1:016d}.lp.gz"
        path.write_bytes(gzip.compress("\n".join(line.rsplit(" ", 1)[0] + f" {ts}" for line in real[k % 3]).encode(), 1))
        os.utime(path, (ts, ts))
    long_config = tmp_path / "long.yaml"
    long_config.write_text(f"site: s1\nspool: {{directory: {long}}}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    code, out, err, peak_mb = run_measured([HASHFLEET, "report", "--config", str(long_config), "--since", "1d",
                                            "--json"], tmp_path, env=env)
    assert code == 0, err[-2000:]
    assert json.loads(out)["cycles"] == cycles
    # the code before: 254 MB here; this: 81 MB, most of it the interpreter and its imports
    assert peak_mb < 150


def test_report_reads_hostile_lines_as_influxdb_would_and_refuses_odd_timestamps(tmp_path, caplog):
    # The history is read by a fast path for the lines hashfleet writes and character by character for any
    # other; escapes read as InfluxDB reads them, a non-finite value is skipped, and a line is refused whole
    # when cut short or its time is not ASCII digits (int() took '1_796_571_609', ' 12' and fullwidth
    # digits: each added a cycle at that second). A point in the future is not in the period.
    from collector import history

    site = tmp_path / "x1"
    site.mkdir()
    now = int(time.time())
    times = [now - 40, now - 30, now - 20, now - 10]

    def miner(name: str, t, power="3600", state='"mining"') -> str:
        return f"miner,site=x1,miner={name},model=A1566 hashrate_ths=190,power_w={power},up=1i,state={state} {t}"

    lines = [line for t in times for line in (miner("m1", t), f"cost,site=x1,scope=site energy_usd_day=10 {t}")]
    odd = times[0] + 5
    lines += [miner("m1", now + 3600, power="1000"),  # the future
              miner("m1", f"{odd:_}"), miner("m1", f" {odd}"),
              miner("m1", str(odd).translate({48 + d: 0xFF10 + d for d in range(10)})),  # fullwidth digits
              miner("m4", times[1])[:60],  # cut short
              miner("m\\,2", times[1], state='"idle\\"x"'),  # an escaped comma in a tag, a quote in a string
              miner("m3", times[2], power="nan")]
    (site / f"{1:016d}.lp.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    with caplog.at_level("WARNING"):
        report = history.from_spool(site, "x1", now - 3600, now, interval_s=10)
    assert report.cycles == 4 and report.skipped_values == 1
    by_name = {m.miner: m for m in report.miners}
    assert sorted(by_name) == ["m,2", "m1", "m3"]
    assert by_name["m1"].cycles == 4 and by_name["m1"].power_avg_w == 3600
    assert by_name["m,2"].cycles == 1 and by_name["m,2"].mining_pct == 0 and by_name["m3"].power_avg_w is None
    assert report.energy_kwh == pytest.approx((3600 * 4 + 3600) * 10 / 3.6e6)  # (m,2's 3600 W at times[1])
    assert "4 unreadable line(s)" in caplog.text


def test_a_period_of_one_cycle_counts_one_interval_of_energy_and_money(tmp_path):
    # A lone cycle counted 0 s: 0 kWh, $0 and 0 BTC beside a power of 3,600 W. With no step to take a
    # typical interval from, it stands for the collector's interval (as the last cycle of a longer period
    # stands for one typical interval).
    spool = tmp_path / "spool"
    spool.mkdir()
    now = int(time.time())
    lines = [f'miner,site=one,miner=m1,model=A1566 hashrate_ths=190,power_w=3600,up=1i,state="mining" {now - 5}',
             f"cost,site=one,scope=site energy_usd_day=86.4,btc_per_day_net=0.00864,energy_kwh_day=95.04 {now - 5}"]
    (spool / f"{1:016d}.lp.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    config = tmp_path / "c.yaml"
    config.write_text(f"site: one\ninterval_s: 30\nspool: {{directory: {spool}}}\n")
    data = _report(config)
    assert data["cycles"] == 1
    assert data["energy_kwh"] == pytest.approx(3600 * 30 / 3.6e6)
    assert data["facility_energy_kwh"] == pytest.approx(95.04 * 30 / 86400)
    assert data["energy_usd"] == pytest.approx(86.4 * 30 / 86400)
    assert data["btc"] == pytest.approx(0.00864 * 30 / 86400)
    assert data["energy_cost_per_btc"] == pytest.approx(10_000)


def test_a_period_asked_longer_than_the_history_is_reported_with_the_history_it_holds(tmp_path):
    # Trial ZH M4: six hours of history and `report --since 90d` titled the table with the 90 days asked, its JSON
    # start and end too; only "360 cycles" hinted at six hours. The history's first and last cycles are said.
    site = tmp_path / "spool" / "x1"
    site.mkdir(parents=True)
    now = int(time.time())
    first = now - 6 * 3600
    lines = [f'miner,site=x1,miner=m1,model=A1566 hashrate_ths=190,power_w=3600,up=1i,state="mining" {t}'
             for t in range(first, now - 60, 60)]
    (site / f"{1:016d}.lp.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    run = hashfleet("report", "--site", "x1", "--since", "90d", "--json", spool=tmp_path / "spool")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert (data["first_cycle"], data["last_cycle"]) == (first, range(first, now - 60, 60)[-1])
    assert data["end"] - data["start"] == 90 * 86400
    table = hashfleet("report", "--site", "x1", "--since", "90d", spool=tmp_path / "spool")
    assert table.returncode == 0, table.stderr
    said = " ".join(table.stdout.split())
    shown = time.strftime("%Y-%m-%d %H:%M", time.gmtime(first))
    assert f"history {shown} – " in said and "of the period asked" in said, said


def test_a_miner_read_in_part_of_the_period_is_named_with_its_cycles(tmp_path):
    # Trial ZH L3: a miner removed halfway showed "100.0 up %" (of its own cycles) and nothing said it was gone.
    site = tmp_path / "spool" / "x1"
    site.mkdir(parents=True)
    now = int(time.time())
    times = range(now - 3600, now - 60, 60)
    lines = [f'miner,site=x1,miner={m},model=A1566 hashrate_ths=190,power_w=3600,up=1i,state="mining" {t}'
             for t in times for m in (("m1", "m2") if t < now - 1800 else ("m1",))]
    (site / f"{1:016d}.lp.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    table = hashfleet("report", "--site", "x1", "--since", "2h", spool=tmp_path / "spool")
    assert table.returncode == 0, table.stderr
    said = " ".join(table.stdout.split())
    m2 = sum(1 for t in times if t < now - 1800)
    assert f"read in fewer than the site's {len(times)} cycles" in said and f"m2 ({m2})" in said, said
    assert "m1 (" not in said
