"""A full disk under the spool (a real 256 KiB tmpfs, filled with a ballast file) costs what it must and
no more: a batch the disk refuses goes straight to InfluxDB when it is up; with InfluxDB down the oldest
spooled batches make room for it; only when neither helps are its lines lost, and then they are counted
(collector.spool_lost_lines) and logged with the path; no temp file is left; once space returns the
following cycles are delivered.

Mounting needs root (CI runs as root here); a fixture that cannot mount fails, it never skips."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from collector.sinks.influx import InfluxSink
from collector.sinks.spool import Spool
from models import InfluxConfig, MinerSample, MinerState, SampleSource
from tests import support
from tests.support import deliver, fill

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
MINERS = 3


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs at tmp_path/disk, unmounted afterwards."""
    with support.small_disk(tmp_path / "disk", "256k") as disk:
        yield disk


def cycle(n: int) -> tuple[datetime, list[MinerSample]]:
    ts = TS + timedelta(seconds=10 * n)
    samples = [MinerSample(miner=f"m{i}", host="10.0.0.1", site="s1", ts=ts, state=MinerState.MINING,
                           source=SampleSource.AVALON, model="AvalonMiner 15-194", hashrate_ths=190 + i, power_w=3600)
               for i in range(MINERS)]
    return ts, samples


def test_a_full_disk_loses_only_what_it_must_counts_it_and_recovers(influxdb, influx_bucket, small_disk, caplog):
    spool_dir = small_disk / "spool"
    ballast = small_disk / "ballast"
    config = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=influx_bucket, token=influxdb.token,
                          timeout_s=2)
    sink = InfluxSink(config, Spool(spool_dir))
    written: list[int] = []  # cycles whose points must reach InfluxDB

    async def run(n: int, *, drain: bool = True) -> None:
        ts, samples = cycle(n)
        await deliver(samples, [sink], ts=ts)
        if drain:
            await asyncio.wait_for(sink._delivery, 60)  # noqa: SLF001 - InfluxDB is up: the spool drains

    async def scenario() -> None:
        # 1. Disk full, InfluxDB up: each cycle goes straight to InfluxDB.
        fill(ballast)
        for n in range(0, 3):
            await run(n)
            written.append(n)
        assert "delivered directly instead" in caplog.text and sink.spool.lost_lines == 0
        assert caplog.text.count("delivered directly instead") == 1  # a disk that stays full: not every batch
        with influxdb.outage():
            # 2. Disk full, InfluxDB down, nothing spooled to drop: the cycles are lost, counted, named.
            for n in range(3, 5):
                await run(n, drain=False)
            assert sink.spool.lost_lines == 2 * (MINERS + 1)
            assert f"spool batch {spool_dir}/" in caplog.text and "No space left on device (ENOSPC)" in caplog.text
            assert caplog.text.count("are lost") == 1
            # 3. Room for a few batches, InfluxDB still down: cycles wait on disk; once the disk is full
            #    again the oldest of them make room for the newest (counted as dropped).
            with open(ballast, "r+b") as f:
                f.truncate(ballast.stat().st_size - 24 * 1024)
            for n in range(5, 14):
                await run(n, drain=False)
            dropped = sink.spool.dropped_batches
            assert dropped >= 1 and "to make room" in caplog.text
            assert caplog.text.count("to make room") == 1  # a disk that stays full: not a line every batch
            assert sink.spool.lost_lines == 2 * (MINERS + 1)  # nothing more lost
            written.extend(list(range(5, 14))[dropped:])  # the oldest went first
        # 4. Space and InfluxDB back: everything kept is delivered, and the next cycles too.
        ballast.unlink()
        for n in range(14, 16):
            await run(n)
            written.append(n)

    try:
        asyncio.run(scenario())
    finally:
        sink.close()
    assert not [p.name for p in spool_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file left
    assert sink.spool.depth == 0
    times = sorted({r["time"] for r in influxdb.query("SELECT up FROM miner", influx_bucket, epoch="s")})
    assert times == [int((TS + timedelta(seconds=10 * n)).timestamp()) for n in written]
    health = influxdb.query("SELECT last(spool_lost_lines), last(spool_dropped) FROM collector", influx_bucket)[0]
    assert health["last"] == 2 * (MINERS + 1) and health["last_1"] == sink.spool.dropped_batches


def test_a_collector_starts_on_a_full_disk_and_cleans_up_after_a_crash(small_disk):
    """The disk filled up while the collector was down; a crash mid-write had left a temp file."""
    spool_dir = small_disk / "spool"
    spool_dir.mkdir()
    (spool_dir / "0000000000000003.lp.tmp").write_bytes(b"")  # what a crash mid-append leaves
    fill(small_disk / "ballast")
    spool = Spool(spool_dir)  # its lock file's note cannot be written: no reason not to start
    try:
        assert not list(spool_dir.glob("*.tmp")) and spool.depth == 0
    finally:
        spool.close()
