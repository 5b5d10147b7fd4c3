"""The service under everything at once: a flapping miner, hung, slow and garbage-speaking miners,
thousands of malformed MQTT payloads and a broker restart mid-run. It keeps its cycle time and
loses nothing it should keep (real InfluxDB, real Mosquitto, simulated miners, `hashfleet collect`)."""

import os
import signal
import subprocess
import threading

import yaml
from tests.support import HASHFLEET, wait_for
from tests.collector.mqtt_support import Publisher, Subscriber, unique

from simulators.fleet import run_fleet

TIMEOUT_S = 1.5


def test_everything_at_once(influxdb, influx_bucket, mosquitto, tmp_path):
    site = unique("chaos")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "site": site, "interval_s": 2, "timeout_s": TIMEOUT_S,
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "connect_timeout_s": 5, "reconnect_max_s": 2,
                 "ingest": [{"topic": f"{site}/prices/btc", "kind": "btc_price"}]},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    env.update(INFLUX_URL=influxdb.url, INFLUX_ORG=influxdb.org, INFLUX_BUCKET=influx_bucket,
               INFLUX_TOKEN=influxdb.token, HASHFLEET_SPOOL_DIR=str(tmp_path / "spool"))
    log = tmp_path / "collect.log"
    with run_fleet("a1566:3,a1246:3", base="127.46.0.1:0", seed=9) as fleet:
        healthy, flapping, hung, slow, garbage, nan = fleet.miners
        hung.set_faults(hold_open=True)
        slow.set_faults(slow_s=TIMEOUT_S + 2)
        garbage.set_faults(malformed=True)
        nan.set_faults(bare_nan=True)
        collector = subprocess.Popen([HASHFLEET, "collect", "--config", str(config), "--miners",
                                      ",".join(fleet.addresses)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"))
        stop_flapping = threading.Event()

        def flap():
            while not stop_flapping.wait(1.3):
                flapping.set_faults(no_answer=not flapping.faults.no_answer)

        flapper = threading.Thread(target=flap)
        try:
            # A known miner flaps: it starts once every miner had two cycles to be identified and polled
            # (one flapping through its identification backs off by design, tests/collector/sources/
            # test_bad_addresses.py, and is offline, not flapping, meanwhile).
            wait_for(lambda: "cycle 2:" in log.read_text(), timeout=60, what="two cycles")
            flapper.start()
            flood = Publisher(mosquitto.host, mosquitto.port)
            flood.publish_many([(f"{site}/prices/btc", b"{not json" if i % 2 else b'{"usd": -5}')
                                for i in range(3000)])
            flood.close()
            mosquitto.restart()  # mid-run
            watcher = Subscriber(mosquitto.host, mosquitto.port, [f"hashfleet/{site}/state"])
            watcher.wait_for(lambda m: True, timeout=60)  # publishing resumed after the restart
            watcher.close()
            before = log.read_text().count(" cycle ")
            wait_for(lambda: log.read_text().count(" cycle ") >= before + 3, timeout=60,
                     what="cycles after the restart")
        finally:
            stop_flapping.set()
            if flapper.is_alive():
                flapper.join()
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(timeout=60) == 0, log.read_text()[-2000:]

    text = log.read_text()
    cycles = text.count(" cycle ")
    assert f"stopped after {cycles} cycle(s)" in text
    assert "Traceback" not in text
    # nothing lost: every miner, every cycle
    counts = {r["miner"]: r["count"] for r in influxdb.query("SELECT count(up) FROM miner GROUP BY miner",
                                                             influx_bucket)}
    assert len(counts) == 6 and set(counts.values()) == {cycles}
    # cycle time kept: a hung and a slow miner cost at most their own deadline
    durations = [r["poll_duration_s"] for r in influxdb.query("SELECT poll_duration_s FROM collector",
                                                              influx_bucket)]
    assert len(durations) == cycles and max(durations) < TIMEOUT_S + 1.5
    states = {}
    for row in influxdb.query("SELECT state, up FROM miner GROUP BY miner", influx_bucket):
        states.setdefault(row["miner"], set()).add(row["state"])
    assert sum(s == {"mining"} for s in states.values()) >= 2  # healthy, and the one with a bare nan
    assert any(s == {"offline"} for s in states.values())  # hung and slow
    assert any(s == {"error"} for s in states.values())  # malformed replies
    assert any({"mining", "offline"} <= s for s in states.values())  # flapping
    # the flood was counted, not fatal
    assert "dropped" in text or "invalid" in text or "not_json" in text
