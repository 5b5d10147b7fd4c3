"""The InfluxDB sink writes the README schema into a real InfluxDB."""

import asyncio
import gzip
from datetime import datetime, timedelta, timezone

import pytest

from collector.sinks import influx
from collector.sinks.influx import InfluxSink, InfluxWriteError, InfluxWriter
from collector.sinks.spool import Spool
from models import BoardSample, InfluxConfig, MinerSample, MinerState, PoolInfo, SampleSource
from tests.support import deliver, until

TS = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


def sample(miner: str, state: MinerState, hashrate: float | None, power: float | None, **kw) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.1", port=4028, site="s1", ts=TS, state=state,
                       source=SampleSource.AVALON, make="Canaan", model="AvalonMiner 1246-83",
                       hashrate_ths=hashrate, power_w=power, **kw)


def sink_for(influxdb, bucket, spool_dir, **kw) -> InfluxSink:
    config = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=bucket, token=influxdb.token, **kw)
    return InfluxSink(config, Spool(spool_dir))


def test_cycle_lands_as_miner_board_and_collector_points(influxdb, influx_bucket, tmp_path):
    samples = [
        sample("AA:00:00:00:00:01", MinerState.MINING, 90, 3400, uptime_s=100,
               boards=[BoardSample(index=0, hashrate_avg_ths=30, temp_chip_max_c=80, chips_ok=120, chips_expected=120)],
               pool=PoolInfo(accepted=5, rejected=1)),
        # an integer-valued reading and an offline miner: field types must not change between points
        sample("AA:00:00:00:00:02", MinerState.MINING, 0, 3000),
        MinerSample.offline(miner="10.0.0.3:4028", host="10.0.0.3", port=4028, site="s1", ts=TS,
                            source=SampleSource.AVALON, reason="no answer"),
    ]
    sink = sink_for(influxdb, influx_bucket, tmp_path, batch_size=2)  # forces several write requests

    async def write_and_deliver():
        await deliver(samples, [sink])
        await sink._delivery  # noqa: SLF001 - wait for the background delivery of this batch

    try:
        asyncio.run(write_and_deliver())
    finally:
        sink.close()
    assert sink.spool.depth == 0 and sink.delivered_batches == 3  # 5 lines, batch_size 2: three requests

    rows = influxdb.query("SELECT * FROM miner GROUP BY miner", influx_bucket, epoch="s")
    by_miner = {r["miner"]: r for r in rows}
    assert set(by_miner) == {"AA:00:00:00:00:01", "AA:00:00:00:00:02", "10.0.0.3:4028"}
    first = by_miner["AA:00:00:00:00:01"]
    assert first["time"] == int(TS.timestamp())
    assert first["hashrate_ths"] == 90 and first["power_w"] == 3400 and first["up"] == 1
    assert first["efficiency_j_th"] == pytest.approx(3400 / 90) and first["state"] == "mining"
    assert by_miner["10.0.0.3:4028"]["up"] == 0 and by_miner["10.0.0.3:4028"]["state"] == "offline"
    assert by_miner["10.0.0.3:4028"]["error"] == "no answer"

    types = {r["fieldKey"]: r["fieldType"] for r in influxdb.query("SHOW FIELD KEYS FROM miner", influx_bucket)}
    assert types["hashrate_ths"] == "float" and types["up"] == "integer" and types["state"] == "string"

    boards = influxdb.query("SELECT * FROM miner_board", influx_bucket)
    assert [(b["miner"], b["board"], b["chips_ok"]) for b in boards] == [("AA:00:00:00:00:01", "0", 120)]
    health = influxdb.query("SELECT * FROM collector", influx_bucket)
    assert health[0]["miners_polled"] == 3 and health[0]["miners_failed"] == 1
    assert health[0]["points_written"] == 5  # 3 miners + 1 board + this health point


ONE_LINE = gzip.compress(b"miner,site=s1,miner=x up=1i 1700000000\n")


def test_refused_write_names_the_server_but_never_the_token(influxdb, influx_bucket):
    secret = "s3cret-token-value"
    sink = InfluxWriter(InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=influx_bucket, token=secret))
    try:
        with pytest.raises(InfluxWriteError) as err:
            sink.write_gzip(ONE_LINE)
    finally:
        sink.close()
    assert influxdb.url in str(err.value) and "401" in str(err.value)
    assert secret not in str(err.value)


def test_a_header_the_http_client_refuses_costs_the_write_not_the_token(influxdb, influx_bucket, monkeypatch):
    # Tokens are checked at start (models.base.checked_token); should one get past, http.client's refusal
    # quotes the header ("Invalid header value b'Token ...'"): the error says what happened without it.
    monkeypatch.setattr(InfluxConfig, "resolved_token", lambda self: "first-SECRET\nsecond-SECRET")
    sink = InfluxWriter(InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=influx_bucket))
    try:
        with pytest.raises(InfluxWriteError) as err:
            sink.write_gzip(ONE_LINE)
    finally:
        sink.close()
    assert influxdb.url in str(err.value) and "could not be sent" in str(err.value) and err.value.retryable
    assert "SECRET" not in str(err.value)


def test_unreachable_server_is_a_clear_error():
    sink = InfluxWriter(InfluxConfig(url="http://127.0.0.1:9", bucket="b", token="t", timeout_s=2))
    try:
        with pytest.raises(InfluxWriteError, match="127.0.0.1:9 unreachable"):
            sink.write_gzip(ONE_LINE)
    finally:
        sink.close()


def test_a_batch_influxdb_refuses_as_malformed_is_moved_aside_and_the_rest_still_delivered(
        influxdb, influx_bucket, tmp_path, caplog):
    """A spooled batch the real InfluxDB answers 400 (here: a field whose type conflicts with what the
    shard holds) can never be written: it must not block the batches behind it."""
    sink = sink_for(influxdb, influx_bucket, tmp_path / "spool")
    ts = int(TS.timestamp())
    sink.spool.append([f"miner,site=s1,miner=a up=1i {ts}"])
    sink.spool.append([f'miner,site=s1,miner=a up="yes" {ts + 10}'])  # `up` is an integer field
    sink.spool.append([f"miner,site=s1,miner=a up=0i {ts + 20}"])
    async def next_cycle():  # the collector's own point counts what was set aside
        await deliver([sample("b", MinerState.MINING, 90, 3400)], [sink])
        await sink._delivery  # noqa: SLF001

    try:
        for batch in sink.spool.batches():
            sink._deliver(batch)  # noqa: SLF001 - the delivery task's one step, without the loop
        asyncio.run(next_cycle())
    finally:
        sink.close()
    assert sink.delivered_batches == 3 and sink.spool.rejected_batches == 1
    assert influxdb.query("SELECT last(spool_rejected) FROM collector", influx_bucket)[0]["last"] == 1
    assert [p.name for p in (tmp_path / "spool").glob("*.rejected")] == ["0000000000000002.lp.rejected"]
    rows = influxdb.query("SELECT up FROM miner WHERE \"miner\" = 'a'", influx_bucket, epoch="s")
    assert [(r["time"], r["up"]) for r in rows] == [(ts, 1), (ts + 20, 0)]
    assert "HTTP 400" in caplog.text and "moved aside (.rejected)" in caplog.text


def test_an_unreachable_server_keeps_the_batch_for_a_retry(tmp_path):
    sink = InfluxSink(InfluxConfig(url="http://127.0.0.1:9", bucket="b", token="t", timeout_s=2),
                      Spool(tmp_path / "spool"))
    sink.spool.append(["miner,site=s1,miner=a up=1i 1700000000"])
    try:
        with pytest.raises(InfluxWriteError) as err:
            sink._deliver(sink.spool.batches()[0])  # noqa: SLF001
    finally:
        sink.writer.close()
    assert err.value.retryable and sink.spool.depth == 1 and sink.spool.rejected_batches == 0
    sink.spool.close()


def test_a_batch_with_bad_lines_among_good_ones_sets_aside_only_the_bad_lines(influxdb, influx_bucket, tmp_path,
                                                                              caplog):
    """One spooled batch: 20 good miners, three lines InfluxDB refuses, the collector's own point. The
    batch is split until only the three remain refused: the good lines are all stored, the three are
    kept in the batch's .rejected file and counted in collector.spool_rejected."""
    ts = int(TS.timestamp())
    influxdb.write(influx_bucket, f"miner,site=s1,miner=seed up=1i {ts - 10}")  # the shard holds `up` as an integer
    good = [f"miner,site=s1,miner=m{n} up=1i,hashrate_ths={90 + n} {ts}" for n in range(20)]
    bad = [f'miner,site=s1,miner=x up="yes" {ts}',  # a field of the wrong type
           f'miner,site=s1,miner=y error="no closing quote {ts}',  # in a batch it would swallow the lines after it
           f"miner,site=s1,model=a\\ up=1i {ts}"]  # a tag value ending in a backslash (escapes the space)
    lines = good[:3] + bad[:1] + good[3:11] + bad[1:2] + good[11:17] + bad[2:] + good[17:]
    lines.append(f"collector,site=s1 miners_polled=23i {ts}")
    sink = sink_for(influxdb, influx_bucket, tmp_path / "spool")

    async def next_cycle():  # its collector point reports the refused lines
        await deliver([sample("b", MinerState.MINING, 90, 3400)], [sink], ts=TS + timedelta(seconds=10))
        await sink._delivery  # noqa: SLF001

    try:
        sink._deliver(sink.spool.append(lines))  # noqa: SLF001 - the delivery task's one step
        asyncio.run(next_cycle())
    finally:
        sink.close()
    stored = {r["miner"]: r["hashrate_ths"] for r in influxdb.query(
        "SELECT hashrate_ths FROM miner WHERE time = %ds GROUP BY miner" % ts, influx_bucket)}
    assert {m: stored.get(m) for m in (f"m{n}" for n in range(20))} == {f"m{n}": 90 + n for n in range(20)}
    assert influxdb.query("SELECT miners_polled FROM collector WHERE time = %ds" % ts, influx_bucket)[0][
        "miners_polled"] == 23
    rejected = tmp_path / "spool" / "0000000000000001.lp.rejected"
    assert gzip.decompress(rejected.read_bytes()).decode().splitlines() == bad
    assert sink.spool.depth == 0 and sink.spool.rejected_lines == 3
    assert influxdb.query("SELECT last(spool_rejected) FROM collector", influx_bucket)[0]["last"] == 3
    assert "refused 3 of the 24 line(s) of batch 0000000000000001.lp.gz" in caplog.text


def test_the_delivery_task_lives_through_an_unexpected_error_and_delivers_after_it(influxdb, influx_bucket,
                                                                                 tmp_path, caplog):
    """The spool's folder vanishes under the running collector (an unmounted disk, an operator's rm):
    delivery logs and counts the error, keeps retrying, and delivers once batches can be read again."""
    sink = sink_for(influxdb, influx_bucket, tmp_path / "spool")
    moved = tmp_path / "elsewhere"

    async def scenario():
        (tmp_path / "spool").rename(moved)
        sink.appended(cycle_end=True)
        for _ in range(500):
            if sink.delivery_errors:
                break
            await asyncio.sleep(0.01)
        assert sink.delivery_errors >= 1 and not sink._delivery.done()  # noqa: SLF001
        moved.rename(tmp_path / "spool")
        sink.spool.append([f"miner,site=s1,miner=a up=1i {int(TS.timestamp())}"])
        sink.appended(cycle_end=True)
        for _ in range(3000):
            if sink.spool.depth == 0:
                break
            await asyncio.sleep(0.01)

    try:
        asyncio.run(scenario())
    finally:
        sink.close()
    assert sink.delivered_batches == 1 and influxdb.query("SELECT up FROM miner", influx_bucket)[0]["up"] == 1
    assert "delivery failed unexpectedly (FileNotFoundError" in caplog.text


def test_a_token_refused_is_read_again_from_its_file_and_delivery_goes_on_without_a_restart(
        influxdb, influx_bucket, tmp_path, caplog):
    # Trial ZE (M1, M5): a write token InfluxDB refuses (re-minted, or the database restored with its old
    # authorizations) held every batch in the spool until someone restarted the collector. Its file is read
    # again at each refused try: once it holds a token InfluxDB takes, the spool drains.
    token_file = tmp_path / "influx_token"
    token_file.write_text("an-old-token-it-refuses\n")
    config = InfluxConfig(url=influxdb.url, org=influxdb.org, bucket=influx_bucket, token_file=token_file)
    sink = InfluxSink(config, Spool(tmp_path / "spool"))

    async def scenario():
        sink.spool.append([f"miner,site=s1,miner=a up=1i {int(TS.timestamp())}"])
        sink.appended(cycle_end=True)
        await until(lambda: sink._failing_since is not None, 30, "the refused write")  # noqa: SLF001
        token_file.write_text(influxdb.token + "\n")
        sink.appended(cycle_end=True)  # (the next cycle's end cuts the backoff short)
        await until(lambda: sink.spool.depth == 0, 30, "the spool drained")

    try:
        asyncio.run(scenario())
    finally:
        sink.close()
    assert influxdb.query("SELECT up FROM miner", influx_bucket)[0]["up"] == 1
    assert "is read again at each try" in caplog.text and "holds another one now" in caplog.text
    assert "an-old-token" not in caplog.text and influxdb.token not in caplog.text


def test_while_influxdb_fails_the_failure_is_said_again_with_what_the_spool_holds(tmp_path, caplog, monkeypatch):
    # Trial ZE (M1): the failure was logged once, then only "cycle N: ... 0 failed" lines until the spool's budget
    # dropped data. It is said again every STILL_FAILING_EVERY_S (here at each try) with the spool's share.
    monkeypatch.setattr(influx, "STILL_FAILING_EVERY_S", 0.0)
    sink = InfluxSink(InfluxConfig(url="http://127.0.0.1:9", bucket="b", token="t", timeout_s=2),
                      Spool(tmp_path / "spool", max_bytes=10 << 20))

    async def scenario():
        sink.spool.append(["miner,site=s1,miner=a up=1i 1700000000"])
        sink.appended(cycle_end=True)
        await until(lambda: "still failing" in caplog.text, 30, "the failure said again")

    try:
        asyncio.run(scenario())
    finally:
        sink.close()
    line = next(r.getMessage() for r in caplog.records if "still failing" in r.getMessage())
    assert "127.0.0.1:9 unreachable" in line and "1 batch(es)" in line and "of the spool's 10 MB (spool.max_mb)" in line


def test_a_delivery_task_that_ended_abnormally_is_logged_and_started_again(influxdb, influx_bucket, tmp_path,
                                                                            caplog):
    sink = sink_for(influxdb, influx_bucket, tmp_path / "spool")

    async def dead() -> None:
        raise RuntimeError("simulated: the task ended")

    async def scenario():
        sink._delivery = asyncio.create_task(dead())  # noqa: SLF001 - a task that ended with an exception
        await asyncio.sleep(0)
        sink.spool.append([f"miner,site=s1,miner=a up=1i {int(TS.timestamp())}"])
        sink.appended(cycle_end=True)
        await sink._delivery  # noqa: SLF001

    try:
        asyncio.run(scenario())
    finally:
        sink.close()
    assert sink.delivered_batches == 1 and sink.delivery_errors == 1
    assert "InfluxDB delivery stopped (RuntimeError: simulated: the task ended); started again" in caplog.text
