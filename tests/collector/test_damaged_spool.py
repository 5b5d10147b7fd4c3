"""A damaged spool batch costs that batch only (trial I #1, #3, #4, #9): real history from `hashfleet collect`
against simulated miners, one batch damaged on disk (bits flipped, cut short, a gzip bomb made here, a FIFO
named like a batch), then the real commands. The collector starts (a damaged newest batch is moved aside
as `.lp.bad`), `report`, `health --since` and `backtest --source local` answer and name the damaged file,
nothing hangs (each command has a timeout: reaching it fails the test) and memory stays bounded (each
command runs under an address-space limit a bomb's inflated size is far past).

Before the fix: a flipped bit in the newest batch made every `collect` start exit 1 (zlib.error), and
every report 1 wherever it was; the bomb ended each with MemoryError; a FIFO hung them all; a batch cut
short vanished from the report without a word."""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from simulators.fleet import run_fleet
from tests.support import HASHFLEET

SITE = "dmg"
CYCLES = 4  # of history collected; one batch each at this fleet's size
MEMORY_LIMIT = 1 << 30  # address space of each command: the bomb inflates to 3 GiB
BOMB_BYTES = 3 << 30
TIMEOUT_S = 90  # a command still running by then hangs: the test fails


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def hashfleet(*args: str, spool: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    environment.update(HASHFLEET_SPOOL_DIR=str(spool), COLUMNS="200", **env)
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=environment,
                          preexec_fn=_limit_memory)


@pytest.fixture(scope="module")
def fleet():
    with run_fleet("a1566:2,q:1", base="127.47.0.1:0", seed=11) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def collected(tmp_path_factory, fleet) -> Path:
    """CYCLES cycles of real local history (config and spool), collected once; each test damages a copy."""
    root = tmp_path_factory.mktemp("collected")
    (root / "hashfleet.yaml").write_text(yaml.safe_dump({
        "site": SITE, "miners": fleet.addresses, "interval_s": 1,
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "pue": 1.1},
        "network": {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000,
                                                   "fees_btc_per_block": 0.02, "btc_price_usd": 95000}}}))
    now = int(time.time())
    (root / "prices.csv").write_text("time,usd_per_kwh\n" + "".join(f"{now + h * 3600},0.05\n" for h in range(-3, 3)))
    done = hashfleet("collect", "--config", str(root / "hashfleet.yaml"), "--cycles", str(CYCLES),
                     spool=root / "spool")
    assert done.returncode == 0, done.stderr
    assert len(batches(root / "spool" / SITE)) == CYCLES
    return root


@pytest.fixture
def site(collected, tmp_path) -> Path:
    """A copy of the collected history; returns its spool folder for the site."""
    shutil.copytree(collected, tmp_path / "h")
    return tmp_path / "h" / "spool" / SITE


def batches(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.lp.gz")) if p.is_file()]


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(40, 100):  # inside the deflate data, as the trial flipped them
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 6 // 10])


def bomb(path: Path) -> None:
    """Plausible lines (the batch's first, repeated) inflating to BOMB_BYTES, in ~3 MB: 48 gzip members."""
    line = gzip.decompress(path.read_bytes()).split(b"\n")[0] + b"\n"
    member = gzip.compress(line * (64 * 1024 * 1024 // len(line)), compresslevel=9)
    path.write_bytes(member * (BOMB_BYTES // (64 * 1024 * 1024)))


DAMAGE = {"bits flipped": flip, "cut short": cut, "gzip bomb": bomb}


def read_history(site: Path) -> dict[str, subprocess.CompletedProcess]:
    root = site.parent.parent
    config = str(root / "hashfleet.yaml")
    return {
        "report": hashfleet("report", "--config", config, "--since", "1h", "--json", spool=site.parent),
        "health": hashfleet("health", "--config", config, "--since", "1h", "--json", spool=site.parent),
        "backtest": hashfleet("backtest", "--config", config, "--since", "1h", "--source", "local", "--json",
                              "--prices", str(root / "prices.csv"), "--resolution", "5m", spool=site.parent),
    }


@pytest.mark.parametrize(("damage", "which"), [("bits flipped", 1), ("cut short", 1), ("gzip bomb", -1)])
def test_report_health_and_backtest_skip_a_damaged_batch_and_name_it(site, damage, which):
    damaged = batches(site)[which]
    DAMAGE[damage](damaged)
    done = read_history(site)
    for command, result in done.items():
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
        assert f"1 damaged batch(es) in {site}, skipped: {damaged.name}" in result.stderr, (command, result.stderr)
        json.loads(result.stdout)
    report = json.loads(done["report"].stdout)
    if damage == "cut short":  # the whole lines before the cut are read: its cycle's miner lines come first
        assert "whole line(s) before the cut read" in done["report"].stderr
        assert report["cycles"] == CYCLES
    else:
        assert report["cycles"] == CYCLES - 1
    assert damaged.exists()  # a reader moves nothing


@pytest.mark.parametrize("damage", DAMAGE)
def test_collect_starts_past_a_damaged_newest_batch_and_moves_it_aside(site, damage):
    newest = batches(site)[-1]
    DAMAGE[damage](newest)
    config = str(site.parent.parent / "hashfleet.yaml")
    for start in (1, 2):  # and the next start finds nothing to say
        done = hashfleet("collect", "--config", config, "--cycles", "2", spool=site.parent)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        said = f"spool batch {newest} unreadable ("
        assert (said in done.stderr) == (start == 1), done.stderr
    assert newest.with_suffix(".bad").exists() and not newest.exists()
    seqs = [int(p.name[:16]) for p in batches(site)]
    assert seqs == [1, 2, 3, 5, 6, 7, 8]  # the new batches after the one moved aside: none reuses its number
    report = hashfleet("report", "--config", config, "--since", "1h", "--json", spool=site.parent)
    assert report.returncode == 0 and json.loads(report.stdout)["cycles"] == CYCLES - 1 + 4, report.stderr


def test_a_fifo_named_like_a_batch_is_passed_over_and_left_where_it_is(site):
    newest = batches(site)[-1]
    stray = site / f"{int(newest.name[:16]) + 1:016d}.lp.gz"
    os.mkfifo(stray)  # no writer: an ordinary open for reading waits for one for ever
    root = site.parent.parent
    config = str(root / "hashfleet.yaml")
    started = hashfleet("collect", "--config", config, "--cycles", "2", spool=site.parent)
    assert started.returncode == 0 and "Traceback" not in started.stderr, started.stderr
    assert "named like its files but not regular files, left alone and not read" in started.stderr
    assert stray.name in started.stderr
    assert stat.S_ISFIFO(stray.lstat().st_mode)  # not ours: not moved, not replaced by a new batch
    assert [int(p.name[:16]) for p in batches(site)] == [1, 2, 3, 4, 6, 7]
    for command, result in read_history(site).items():
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
        assert f"{stray.name} in {site} is named like a spool file but is not a regular file: skipped" \
            in result.stderr, (command, result.stderr)
    assert json.loads(read_history(site)["report"].stdout)["cycles"] == CYCLES + 2
    watched = hashfleet("watch", "--config", config, "--cycles", "1", spool=site.parent)
    assert watched.returncode == 0 and "last hour" in watched.stdout, watched.stderr


def test_delivery_moves_a_gzip_bomb_aside_and_delivers_the_rest(site, influxdb, influx_bucket):
    damaged = batches(site)[1]  # not the newest: delivery meets it, not the start
    bomb(damaged)
    done = hashfleet("collect", "--config", str(site.parent.parent / "hashfleet.yaml"), "--cycles", "1",
                     spool=site.parent, INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
                     INFLUX_TOKEN=influxdb.token)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"spool batch {damaged} unreadable (inflates past the" in done.stderr
    assert batches(site) == [] and damaged.with_suffix(".bad").exists()
    counts = influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)
    assert len(counts) == 3 and {r["count"] for r in counts} == {CYCLES - 1 + 1}  # the rest, and the new cycle
