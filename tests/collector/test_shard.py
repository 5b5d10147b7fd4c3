"""--shard K/N: N collectors split one fleet with no overlap and no gaps."""

import json
import os
import subprocess

import pytest
from tests.support import HASHFLEET

from collector.sources.targets import Target, in_shard
from models import CollectorConfig
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
    # `report` without --shard names where a sharded site's spools are ($HASHFLEET_SPOOL_DIR/<site>.shard-K-of-N)
    report = subprocess.run([HASHFLEET, "report", "--site", "big"], env=env, capture_output=True, text=True, timeout=60)
    assert report.returncode == 2
    assert f"the site is collected in shards, each keeping its own history in {tmp_path / 'spool'}: read one " \
           "with --shard K/N (1/3, 2/3, 3/3)" in report.stderr, report.stderr


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
