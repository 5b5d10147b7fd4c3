"""One miner whose identity strings are hostile (backslash, space, `=`, quote, comma, newline, tab,
a trailing backslash, non-ASCII) costs nothing to the others: `hashfleet collect` against simulated
Avalons and the real InfluxDB writes every good miner's point and the collector's own point every
cycle, and nothing forged (no extra measurement, no extra series).

Before the encoder was hardened this lost whole batches: InfluxDB refused the cycle's lines."""

import dataclasses
import os
import subprocess
from datetime import datetime, timezone

import yaml
from models import schema
from tests.support import HASHFLEET
from tests.collector.mqtt_support import Publisher, unique

from simulators.fleet import run_fleet
from simulators.specs import MODELS

CYCLES = 3
# Everything the line protocol treats specially, in one model string (the firmware's `PROD`, which
# becomes the `model` tag): a space, `=`, `"`, `,`, a newline that would start a forged point, a tab,
# a carriage return, non-ASCII and a trailing backslash (an escaped separator in InfluxDB 1.x).
HOSTILE_PROD = 'AvalonMiner 15-194 a\\ b="c",d=e\nforged,site=x up=1i 1\tt\r\u00e9\u26a1\\'
HOSTILE_FIRMWARE = '25061801_"fw",\\ =\n\t\u00fc\\'
# An MQTT miner names itself: everything the line protocol treats specially that an id may hold (a control
# character in an id is refused at the ingest), and how it is stored (backslash -> '/').
HOSTILE_MINER = 'm1x\\ x=1,y="z"\u00e9\\'
HOSTILE_MINER_STORED = 'm1x/ x=1,y="z"\u00e9/'


def test_a_miner_with_hostile_identity_strings_costs_no_one_else_a_point(influxdb, influx_bucket, tmp_path):
    hostile = dataclasses.replace(MODELS["a1566"], prod=HOSTILE_PROD, firmware=HOSTILE_FIRMWARE)
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
           "INFLUX_TOKEN": influxdb.token, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    with run_fleet([("a1566", 10), (hostile, 1), ("a1246", 9)], base="127.47.0.1:0", seed=13) as fleet:
        result = subprocess.run([HASHFLEET, "collect", "--miners", ",".join(fleet.addresses), "--cycles",
                                 str(CYCLES), "--interval", "1", "--site", "lab"],
                                env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        macs = {m.mac.upper() for m in fleet}

    counts = {r["miner"].replace(":", ""): r["count"]
              for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)}
    assert counts == {mac: CYCLES for mac in macs}  # every miner, the hostile one too, every cycle
    health = influxdb.query("SELECT miners_polled, miners_failed FROM collector", influx_bucket)
    assert [(h["miners_polled"], h["miners_failed"]) for h in health] == [(20, 0)] * CYCLES

    # nothing forged: only the schema's measurements, one `miner` series per miner
    measurements = {r["name"] for r in influxdb.query("SHOW MEASUREMENTS", influx_bucket)}
    assert measurements <= set(schema.MEASUREMENTS), measurements
    series = [r["key"] for r in influxdb.query("SHOW SERIES FROM miner", influx_bucket)]
    assert len(series) == 20, series
    models = {r["model"] for r in influxdb.query("SELECT last(up) FROM miner GROUP BY model", influx_bucket)}
    # the hostile model is stored once, as the README documents: backslash -> '/', control characters -> ' '
    assert 'AvalonMiner 15-194 a/ b="c",d=e forged,site=x up=1i 1 t \u00e9\u26a1/' in models, models
    assert "Traceback" not in result.stderr


def test_an_mqtt_miner_with_hostile_strings_costs_no_one_else_a_point(influxdb, influx_bucket, mosquitto, tmp_path):
    """MQTT telemetry sets its own `miner`, `make`, `model` and `errors`: the strings that, with the
    escaping of before, made InfluxDB 1.x read the next lines of the batch as part of this one (the
    good miners after it and the collector's own point were lost) or start a forged point."""
    site = unique("hostile")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "site": site, "interval_s": 1,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "connect_timeout_s": 5,
                 "ingest": [{"topic": f"{site}/telemetry/+", "kind": "miner_telemetry"}]},
    }))
    publisher = Publisher(mosquitto.host, mosquitto.port)
    publisher.publish(f"{site}/telemetry/x", {
        "miner": HOSTILE_MINER, "make": "ax=1\\", "model": "\\,", "hashrate_ths": 90, "power_w": 3400,
        "errors": ['"x=1\t\r', 'a"\nforged,site=x up=1i 1\n"'],
        # dated: a retained reading without a ts is refused (its age unknown) and its strings never reach the encoder
        "ts": datetime.now(timezone.utc).isoformat(),
    }, retain=True)  # there when the collector subscribes
    publisher.close()
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_ORG": influxdb.org, "INFLUX_BUCKET": influx_bucket,
           "INFLUX_TOKEN": influxdb.token, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    with run_fleet("a1566:4,a1246:4", base="127.47.1.1:0", seed=14) as fleet:
        result = subprocess.run([HASHFLEET, "collect", "--config", str(config), "--miners", ",".join(fleet.addresses),
                                 "--cycles", str(CYCLES)], env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        macs = {m.mac.upper() for m in fleet}

    counts = {r["miner"].replace(":", ""): r["count"]
              for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner", influx_bucket)}
    assert {mac: counts.get(mac) for mac in macs} == {mac: CYCLES for mac in macs}  # every good miner, every cycle
    # and the hostile one, from the cycle its retained reading arrived: its strings were encoded, not lost
    assert counts.get(HOSTILE_MINER_STORED, 0) >= 1, counts
    assert len(influxdb.query("SELECT poll_duration_s FROM collector", influx_bucket)) == CYCLES
    measurements = {r["name"] for r in influxdb.query("SHOW MEASUREMENTS", influx_bucket)}
    assert measurements <= set(schema.MEASUREMENTS), measurements
    assert len(influxdb.query("SHOW SERIES FROM miner", influx_bucket)) == len(macs) + 1
    assert not [r for r in influxdb.query("SHOW SERIES", influx_bucket) if "forged" in r["key"]]
