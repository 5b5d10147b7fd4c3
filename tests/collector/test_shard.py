"""--shard K/N: N collectors split one fleet with no overlap and no gaps."""

import fcntl
import gzip
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from tests.support import HASHFLEET, wait_for

from collector import shard_state

from collector.sources.targets import Target, in_shard
from models import CollectorConfig
from collector.stages import running_totals as totals_store
from simulators.fleet import run_fleet


def test_every_address_has_exactly_one_shard():
    targets = [Target(f"10.{i // 250}.{i % 250}.1", 4028 + i % 3) for i in range(3000)]
    owners = [[k for k in range(1, 4) if in_shard(t, (k, 3))] for t in targets]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(o == [k] for o in owners) for k in range(1, 4)]
    assert min(sizes) > 800  # roughly even


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "a/b", "3"])
def test_bad_shard_is_a_config_error(bad):
    with pytest.raises(ValueError, match="shard"):
        CollectorConfig(shard=bad)


def test_a_shard_carries_its_share_of_the_sites_fixed_costs():
    """Summed over the shards, the site's opex and overhead watts once (each shard charging all: N times)."""
    site = {"economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "overhead_w": 3000, "opex_usd_month": 900,
                          "pool_fee_pct": 2},
            "network": {"source": "static", "static": {"difficulty": 1.2e14, "height": 925000, "btc_price_usd": 1e5}}}
    whole = CollectorConfig.model_validate(site)
    assert whole.shard_economics == whole.economics
    thirds = [CollectorConfig.model_validate({**site, "shard": f"{k}/3"}).shard_economics for k in (1, 2, 3)]
    assert sum(e.opex_usd_month for e in thirds) == pytest.approx(900)
    assert sum(e.overhead_w for e in thirds) == pytest.approx(3000)
    assert {(e.opex_usd_month, e.overhead_w, e.pool_fee_pct) for e in thirds} == {(300, 1000, 2)}
    with_pue = {**site, "economics": {**site["economics"], "overhead_w": None, "pue": 1.1}, "shard": "1/2"}
    half = CollectorConfig.model_validate(with_pue).shard_economics
    assert (half.overhead_w, half.pue, half.opex_usd_month) == (None, 1.1, 450)


def test_three_shards_write_each_miner_exactly_once_per_cycle(influxdb, influx_bucket, tmp_path):
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
           "INFLUX_TOKEN": influxdb.token, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    with run_fleet("a1246:12,q:6,nano3s:6", base="127.48.0.1", seed=8) as fleet:
        macs = {m.mac.upper() for m in fleet}
        shards = [subprocess.Popen([HASHFLEET, "collect", "--miners", "127.48.0.0/27", "--site", "big",
                                    "--shard", f"{k}/3", "--cycles", "2", "--interval", "1"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                  for k in (1, 2, 3)]
        for proc in shards:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    counts = {r["miner"].replace(":", ""): r["count"]
              for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)}
    assert set(counts) == macs  # no gaps
    assert set(counts.values()) == {2}  # no overlap: once per cycle, two cycles
    health = influxdb.query("SELECT sum(miners_polled) FROM collector GROUP BY collector_shard", influx_bucket)
    assert sorted(r["collector_shard"] for r in health) == ["1/3", "2/3", "3/3"]
    assert sum(r["sum"] for r in health) == 2 * len(macs)
    # `report` reads the local history a collector keeps without InfluxDB: here InfluxDB holds it, and it says so
    # (it named the shards' folders, which hold only state here: `--shard` found nothing either, trial ZI L1)
    report = subprocess.run([HASHFLEET, "report", "--site", "big"], env=env, capture_output=True, text=True, timeout=60)
    assert report.returncode == 2
    assert "this config writes to InfluxDB, which holds the history instead" in " ".join(report.stderr.split())


def test_shards_sharing_a_configured_spool_directory_each_keep_their_own(tmp_path):
    # The directory named in the config was used as it is, so the second shard found the first's lock and
    # refused to start, though each shard keeps its own spool.
    spool = tmp_path / "site-spool"
    config = tmp_path / "hashfleet.yaml"
    config.write_text(f"site: big\nspool: {{directory: {spool}}}\n")
    with run_fleet("a1246:4", base="127.48.1.1", seed=9):
        shards = [subprocess.Popen([HASHFLEET, "collect", "--config", str(config), "--miners", "127.48.1.0/29",
                                    "--shard", f"{k}/2", "--cycles", "3", "--interval", "1"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
        for proc in shards:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
    assert sorted(p.name for p in spool.iterdir()) == ["shard-1-of-2", "shard-2-of-2"]
    report = subprocess.run([HASHFLEET, "report", "--config", str(config), "--shard", "2/2", "--since", "1h", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["shard"] == "2/2"  # (a shard's report read as the site's: trial ZI M4)
    table = subprocess.run([HASHFLEET, "report", "--config", str(config), "--shard", "2/2", "--since", "1h"],
                           capture_output=True, text=True, timeout=60)
    assert "site big shard 2/2 (its miners only)" in " ".join(table.stdout.split()), table.stdout
    # Without --shard it said "no local history of site 'big'", though both shards hold the period.
    site_wide = subprocess.run([HASHFLEET, "report", "--config", str(config), "--since", "1h"],
                               capture_output=True, text=True, timeout=60)
    assert site_wide.returncode == 2
    assert f"no local history of site 'big' in the last 1h in {spool}; the site is collected in shards, each keeping " \
           f"its own history in {spool}: read one with --shard K/N (1/2, 2/2)" in " ".join(site_wide.stderr.split())
    # `health --since` read the same history with the old message too; now alike, and with --shard it reads it.
    health = subprocess.run([HASHFLEET, "health", "--config", str(config), "--since", "1h"],
                            capture_output=True, text=True, timeout=60)
    assert health.returncode == 2
    assert f"no recorded health of site 'big' in the last 1h in {spool}; the site is collected in shards, each " \
           f"keeping its own history in {spool}: read one with --shard K/N (1/2, 2/2)" in " ".join(health.stderr.split())
    one = subprocess.run([HASHFLEET, "health", "--config", str(config), "--shard", "1/2", "--since", "1h", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["cycles"] >= 1


NETWORK = {"source": "static", "static": {"difficulty": 1.5e14, "height": 925_000, "fees_btc_per_block": 0.02,
                                          "btc_price_usd": 95_000}}


def _to_the_layout_before_dea69e4(spool: Path, shard: str) -> None:
    """What a version before dea69e4 left: the shard's files (this version's formats, which it reads, written by
    a real sharded run) in `spool.directory` itself, no shard folder."""
    below = spool / shard
    for path in below.iterdir():
        path.rename(spool / path.name)
    below.rmdir()


def test_a_shard_upgraded_from_before_dea69e4_takes_up_its_state(influxdb, influx_bucket, tmp_path):
    # Trial Q H1: a shard with spool.directory kept its state in the directory itself before dea69e4; upgraded,
    # it started from nothing in shard-K-of-N without a word: the miners its control slept stayed asleep, the
    # spooled batches were never sent, the month's totals started over.
    spool = tmp_path / "site-spool"
    influx = {"INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket, "INFLUX_TOKEN": influxdb.token}

    def collect(fleet, price: float, influx_url: str) -> subprocess.CompletedProcess:
        config = tmp_path / "hashfleet.yaml"
        config.write_text(json.dumps({
            "site": "up", "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
            "spool": {"directory": str(spool)}, "network": NETWORK,
            "economics": {"tariff": {"kind": "flat", "usd_per_kwh": price}, "pue": 1.1},
            "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                            "control": {"mode": "on", "allow": ["*"]}}}))
        run = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--shard", "1/1", "--cycles", "3"],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, **influx, "INFLUX_URL": influx_url})
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
        return run

    with run_fleet("a1246:2,a1566:1", base="127.48.2.1:0", seed=7) as fleet:
        old = [fleet[0], fleet[1]]  # the A1246s lose money at 0.06 $/kWh, the A15 does not
        collect(fleet, 0.06, "http://127.0.0.1:9")  # InfluxDB unreachable: the cycles stay in the spool
        kept = sorted(p.name for p in (spool / "shard-1-of-1").iterdir())
        # every file the collector keeps is one the take-up knows (only the lock stays)
        assert sorted(p.name for p in shard_state.kept_here(spool / "shard-1-of-1")) == [n for n in kept if n != "lock"]
        _to_the_layout_before_dea69e4(spool, "shard-1-of-1")
        before = totals_store.load(spool / "cost-totals.json")
        assert [[c.command for c in fleet.commands(m)] for m in old] == [["ascset softoff"]] * 2
        assert len(list(spool.glob("*.lp.gz"))) == 3

        upgraded = collect(fleet, 0.02, influxdb.url)  # the price has fallen

        assert [[c.command for c in fleet.commands(m)] for m in old] == [["ascset softoff", "ascset softon"]] * 2
    log = " ".join(upgraded.stderr.split())
    assert f"moved from {spool} into {spool / 'shard-1-of-1'}: " in log and "3 spool batch file(s)" in log, log
    assert "Shard 1/1 takes it up as the first shard to start here" in log
    assert f"state from {spool / 'shard-1-of-1'}: cost totals as of {before.as_of.isoformat(timespec='seconds')}" in log
    assert "control owns 2 miner(s); commands: none; spool: 3 batch(es) waiting" in log
    assert sorted(p.name for p in spool.iterdir()) == ["lock", "shard-1-of-1"]
    after = totals_store.load(spool / "shard-1-of-1" / "cost-totals.json")
    assert after.month == before.month
    assert after.site_month().energy_kwh > before.site_month().energy_kwh > 0  # carried on, not started over
    counts = {r["miner"]: r["count"] for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)}
    assert list(counts.values()) == [6] * 3  # the 3 spooled cycles sent, and the 3 of the upgraded run


def test_a_shard_does_not_take_up_the_state_of_a_collector_still_running_on_the_old_layout(tmp_path):
    spool = tmp_path / "site-spool"
    config = tmp_path / "hashfleet.yaml"
    config.write_text(f"site: old\nspool: {{directory: {spool}}}\n")
    env = {**os.environ, "INFLUX_URL": "http://127.0.0.1:9", "INFLUX_ORG": "o", "INFLUX_BUCKET": "b",
           "INFLUX_TOKEN": "t"}
    with run_fleet("a1246:2", base="127.48.3.1:0", seed=7) as fleet:
        command = [HASHFLEET, "collect", "--config", str(config), "--miners", ",".join(fleet.addresses),
                   "--interval", "1"]
        running = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:  # the layout before dea69e4, live: the collector of the shard, on the directory itself
            wait_for(lambda: list(spool.glob("*.lp.gz")) and (spool / "lock").read_text().strip() == f"pid {running.pid}",
                     what="the running collector's lock and first batch")
            refused = subprocess.run([*command, "--shard", "1/2", "--cycles", "1"], env=env, capture_output=True,
                                     text=True, timeout=60)
            assert refused.returncode == 2
            assert f"holds a collector's state from before shards kept their own (before dea69e4), and pid " \
                   f"{running.pid} is using it: stop that collector" in " ".join(refused.stderr.split())
            assert not (spool / "shard-1-of-2").exists()
        finally:
            running.send_signal(signal.SIGTERM)
            _, err = running.communicate(timeout=60)
        assert running.returncode == 0, err
        waiting = len(list(spool.glob("*.lp.gz")))
        first = subprocess.run([*command, "--shard", "1/2", "--cycles", "1"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        second = subprocess.run([*command, "--shard", "2/2", "--cycles", "1"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 0, second.stderr
    assert f"into {spool / 'shard-1-of-2'}: health-state.json, {waiting} spool batch file(s)" in first.stderr
    assert f"health history 1 day(s); spool: {waiting} batch(es) waiting" in first.stderr
    assert "moved from" not in second.stderr  # the first shard to start took it all
    assert f"no saved state in {spool / 'shard-2-of-2'}: starting fresh" in second.stderr
    assert sorted(p.name for p in spool.iterdir()) == ["lock", "shard-1-of-2", "shard-2-of-2"]
    assert len(list((spool / "shard-1-of-2").glob("*.lp.gz"))) == waiting + 1


def test_a_take_up_cut_short_is_finished_by_the_next_start(tmp_path):
    spool = tmp_path / "site-spool"
    spool.mkdir()
    for name in ("cost-totals.json", "cost-totals.json.prev", "curtailment-control.json", "0000000000000001.lp.gz",
                 "dropped", "health-state.json.unusable.1", "pool-days.json.unusable", "notes.txt", "0000000000000002.lp.tmp"):
        (spool / name).write_bytes(gzip.compress(name.encode()))
    config = CollectorConfig.model_validate({"site": "cut", "shard": "2/3", "spool": {"directory": str(spool)}})
    staging = spool / "shard-2-of-3.taking-up"
    staging.mkdir()
    os.link(spool / "cost-totals.json", staging / "cost-totals.json")  # cut short between link and unlink
    (spool / "curtailment-control.json").rename(staging / "curtailment-control.json")
    moved = shard_state.take_up_earlier_layout(config)
    assert moved == ["0000000000000001.lp.gz", "cost-totals.json", "cost-totals.json.prev", "dropped",
                     "health-state.json.unusable.1", "pool-days.json.unusable"]
    assert sorted(p.name for p in spool.iterdir()) == ["0000000000000002.lp.tmp", "lock", "notes.txt", "shard-2-of-3"]
    assert sorted(p.name for p in (spool / "shard-2-of-3").iterdir()) == sorted([*moved, "curtailment-control.json"])
    assert shard_state.take_up_earlier_layout(config) == []  # then the usual start


def test_a_shard_whose_directory_exists_takes_nothing_up(tmp_path):
    spool = tmp_path / "site-spool"
    (spool / "shard-1-of-2").mkdir(parents=True)
    (spool / "cost-totals.json").write_text("{}")
    with open(spool / "lock", "w") as held:  # not even looked at: nothing to take up
        fcntl.flock(held, fcntl.LOCK_EX)
        config = CollectorConfig.model_validate({"site": "s", "shard": "1/2", "spool": {"directory": str(spool)}})
        assert shard_state.take_up_earlier_layout(config) == []
    assert (spool / "cost-totals.json").exists()


def test_a_shard_says_at_its_start_what_it_owns_and_with_curtailment_that_it_plans_its_miners_alone(tmp_path):
    # Trial ZI H1: three shards each compared their ~29 kW with the site's 60 kW limit and said "met" (86 kW drawn),
    # and nothing at a start said curtailment is not shard-aware.
    config = tmp_path / "hashfleet.yaml"
    config.write_text(f"site: cur\ntimeout_s: 1\nspool: {{directory: {tmp_path / 'spool'}}}\n"
                      "economics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                      "network: {source: static, static: {difficulty: 1.5e14, height: 925000, btc_price_usd: 95000}}\n"
                      "curtailment: {}\n")
    runs = {shard: subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", "127.48.9.1:4028",
                                   "--cycles", "1", "--interval", "1", *shard],
                                  capture_output=True, text=True, timeout=60)
            for shard in ((), ("--shard", "1/2"))}
    for shard, run in runs.items():
        assert run.returncode == 0, run.stderr
    said = " ".join(runs[("--shard", "1/2")].stderr.split())
    assert "curtailment on shard 1/2 plans this shard's miners alone" in said, said
    # Trial ZI L3: a shard's log never said which it is nor what it owns; one that owns nothing ran without a word.
    owned = int(in_shard(Target("127.48.9.1", 4028), (1, 2)))
    assert f"shard 1/2: {owned} of the 1 address(es) listed" in said, said
    empty = next(k for k in (1, 2) if not in_shard(Target("127.48.9.1", 4028), (k, 2)))
    run = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", "127.48.9.1:4028", "--cycles", "1",
                          "--interval", "1", "--shard", f"{empty}/2"], capture_output=True, text=True, timeout=60)
    [line] = [line for line in run.stderr.splitlines() if f"shard {empty}/2: 0 of the 1" in line]
    assert "WARNING" in line and "polls nothing" in line, line
    assert "plans this shard's miners alone" not in runs[()].stderr
