"""The real InfluxDB fixture: influxdb-client writes through the v2 shim into
influxd 1.6.7 and InfluxQL reads back exactly what was written."""

from __future__ import annotations

import json
import urllib.request

import pytest
import urllib3
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

SECOND = 1_700_000_000  # 2023-11-14T22:13:20Z

# (precision, timestamp written in that precision, the same instant in ns)
PRECISIONS = [
    (WritePrecision.NS, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),
    (WritePrecision.US, 1_700_000_000_123_456, 1_700_000_000_123_456_000),
    (WritePrecision.MS, 1_700_000_000_123, 1_700_000_000_123_000_000),
    (WritePrecision.S, SECOND, SECOND * 10**9),
]


def client_for(influxdb, **kwargs) -> InfluxDBClient:
    options = {"url": influxdb.url, "token": influxdb.token, "org": influxdb.org, "timeout": 10_000}
    return InfluxDBClient(**(options | kwargs))


def write(client: InfluxDBClient, bucket: str, record, precision=WritePrecision.NS) -> None:
    api = client.write_api(write_options=SYNCHRONOUS)
    api.write(bucket=bucket, record=record, write_precision=precision)


@pytest.mark.parametrize(("precision", "written", "expected_ns"), PRECISIONS, ids=[p[0] for p in PRECISIONS])
def test_point_round_trips_exactly_in_each_precision(
    influxdb, influx_bucket, precision, written, expected_ns
):
    point = (
        Point("miner")
        .tag("miner", "avalon-1246-a")
        .tag("site", "north")
        .field("hashrate_ths", 90.125)
        .field("chips", 114)
        .field("firmware", "23110801")
        .field("mining", True)
        .time(written, precision)
    )
    with client_for(influxdb) as client:
        write(client, influx_bucket, point, precision)

    rows = influxdb.query("SELECT * FROM miner", influx_bucket)

    assert rows == [
        {
            "time": expected_ns,
            "miner": "avalon-1246-a",
            "site": "north",
            "hashrate_ths": 90.125,
            "chips": 114,
            "firmware": "23110801",
            "mining": True,
        }
    ]


def test_line_protocol_written_at_a_second_comes_back_at_that_second(influxdb, influx_bucket):
    with client_for(influxdb) as client:
        write(client, influx_bucket, f"pool,worker=w1 accepted=5i {SECOND}", WritePrecision.S)

    assert influxdb.query("SELECT accepted FROM pool", influx_bucket, epoch="s") == [
        {"time": SECOND, "accepted": 5}
    ]
    assert influxdb.query("SELECT accepted FROM pool", influx_bucket, epoch=None) == [
        {"time": "2023-11-14T22:13:20Z", "accepted": 5}
    ]


def test_gzip_compressed_writes_are_stored(influxdb, influx_bucket):
    lines = [f"miner,miner=m{i} hashrate_ths={100 + i}.5 {SECOND + i}" for i in range(50)]
    with client_for(influxdb, enable_gzip=True) as client:
        write(client, influx_bucket, lines, WritePrecision.S)

    writes = [r for r in influxdb.shim.requests
              if r.path.startswith("/api/v2/write") and influx_bucket in r.path]
    assert writes[-1].content_encoding == "gzip"
    assert writes[-1].status == 204
    rows = influxdb.query("SELECT hashrate_ths FROM miner GROUP BY miner", influx_bucket)
    assert len(rows) == 50
    assert {"miner": "m7", "time": (SECOND + 7) * 10**9, "hashrate_ths": 107.5} in rows


def test_query_rows_carry_group_by_tags(influxdb, influx_bucket):
    influxdb.write(
        influx_bucket,
        [f"miner,miner=a hashrate_ths=100 {SECOND}", f"miner,miner=a hashrate_ths=110 {SECOND + 60}",
         f"miner,miner=b hashrate_ths=90 {SECOND}"],
        precision="s",
    )

    rows = influxdb.query("SELECT mean(hashrate_ths) FROM miner GROUP BY miner", influx_bucket)

    assert rows == [{"miner": "a", "time": 0, "mean": 105.0}, {"miner": "b", "time": 0, "mean": 90.0}]
    assert influxdb.query("SHOW MEASUREMENTS", influx_bucket) == [{"name": "miner"}]


def test_bucket_may_name_a_retention_policy(influxdb, influx_bucket):
    with client_for(influxdb) as client:
        write(client, f"{influx_bucket}/autogen", f"miner v=1 {SECOND}", WritePrecision.S)

    rows = influxdb.query("SELECT v FROM autogen.miner", influx_bucket)
    assert rows == [{"time": SECOND * 10**9, "v": 1.0}]


def test_wrong_token_is_refused_and_nothing_is_written(influxdb, influx_bucket):
    with client_for(influxdb, token="not-the-token") as client:
        with pytest.raises(ApiException) as refused:
            write(client, influx_bucket, f"miner v=1 {SECOND}", WritePrecision.S)

    assert refused.value.status == 401
    assert json.loads(refused.value.body)["code"] == "unauthorized"
    assert influxdb.query("SELECT * FROM miner", influx_bucket) == []


def test_influxd_errors_reach_the_client_unchanged(influxdb, influx_bucket):
    with client_for(influxdb) as client:
        with pytest.raises(ApiException) as missing:
            write(client, "no_such_bucket", f"miner v=1 {SECOND}", WritePrecision.S)
        with pytest.raises(ApiException) as malformed:
            write(client, influx_bucket, "miner no-field-here", WritePrecision.S)

    assert missing.value.status == 404
    assert 'database not found: \\"no_such_bucket\\"' in missing.value.body
    assert malformed.value.status == 400
    assert "unable to parse" in malformed.value.body


@pytest.mark.filterwarnings("ignore:This method is deprecated:DeprecationWarning")  # health()
def test_health_through_the_shim_reports_pass(influxdb):
    with client_for(influxdb) as client:
        assert client.health().status == "pass"
        assert client.ping() is True

    with urllib.request.urlopen(f"{influxdb.url}/health", timeout=5) as response:
        body = json.load(response)
    assert response.status == 200
    assert body["status"] == "pass"
    assert body["version"].startswith("1.6")


def test_stop_and_start_keep_the_data_and_accept_writes_again(influxdb, influx_bucket):
    with client_for(influxdb) as client:
        write(client, influx_bucket, f"miner v=1 {SECOND}", WritePrecision.S)
        old_ports = (influxdb.port, influxdb.raw_port)

        with influxdb.outage():
            assert not influxdb.ping()
            with pytest.raises(urllib3.exceptions.HTTPError):
                write(client, influx_bucket, f"miner v=2 {SECOND + 1}", WritePrecision.S)

        write(client, influx_bucket, f"miner v=3 {SECOND + 2}", WritePrecision.S)

    assert (influxdb.port, influxdb.raw_port) == old_ports
    assert influxdb.query("SELECT v FROM miner", influx_bucket, epoch="s") == [
        {"time": SECOND, "v": 1.0},
        {"time": SECOND + 2, "v": 3.0},
    ]
