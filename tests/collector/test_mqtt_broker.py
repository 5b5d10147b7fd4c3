"""The collect service's MQTT against the real Mosquitto: refusals, a broker restart mid-run, a flood
of bad payloads, meters, prices and MQTT-published miners feeding the cycle and the cost figures."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.servers.process import ManagedProcess, require_binary, wait_until_ready
from tests.servers.ports import free_port
from tests.support import HASHFLEET
from tests.collector.mqtt_support import (
    ECONOMICS,
    LIVE_ECONOMICS,
    NETWORK,
    Publisher,
    RunningCollector,
    Subscriber,
    mqtt_config,
    unique,
)

from collector.mqtt.connection import MqttConnectError, MqttConnection
from collector.pipeline import MqttBridge

from collector.sinks import home_assistant as discovery
from collector.mqtt.topics import Topics
from models import MinerState, MqttConfig, SampleSource
from simulators.fleet import run_fleet
from simulators.mqtt_meter import MqttPowerMeter, format_mac
from simulators.mqtt_miner import MqttMiner, build_mqtt_miners

BAD_PASSWORD = "not-the-password-7d1f"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_refused_credentials_give_a_clear_error_naming_the_broker(mosquitto, protocol):
    config = MqttConfig(host=mosquitto.host, port=mosquitto.auth_port, username="hashfleet", password=BAD_PASSWORD,
                        protocol=protocol, connect_timeout_s=5)
    bridge = MqttBridge(config, "lab")

    with pytest.raises(MqttConnectError) as caught:
        bridge.connection.start()

    message = str(caught.value)
    assert f"MQTT broker {mosquitto.host}:{mosquitto.auth_port} refused the connection: Not authorized" in message
    assert "MQTT_PASSWORD" in message and BAD_PASSWORD not in message
    assert not bridge.connection.connected and bridge.connection.connects == 0


def test_online_is_published_once_subscribed_so_a_command_sent_on_seeing_it_is_heard(mosquitto):
    # A script that waits for `online` and then publishes a command, not retained, must be heard: the broker
    # handles one client's packets in order, so the SUBSCRIBE must reach it before the `online`.
    site = unique("listening")
    topics = Topics("hashfleet", site)
    command = f"hashfleet/{site}/cmd"
    heard: queue.Queue[bytes] = queue.Queue()
    client_id = unique("listening")
    log_from = mosquitto.log_path.stat().st_size
    status = Subscriber(mosquitto.host, mosquitto.port, [topics.status])
    connection = MqttConnection(MqttConfig(host=mosquitto.host, port=mosquitto.port), client_id=client_id,
                                status_topic=topics.status, subscriptions=[(command, 1)],
                                on_message=lambda topic, payload, retained: heard.put(payload))
    publisher = Publisher(mosquitto.host, mosquitto.port)
    try:
        connection.start()
        status.wait_for(lambda m: m.topic == topics.status and m.payload == b"online", what="online")
        publisher.publish(command, "ON")
        assert heard.get(timeout=10) == b"ON"
    finally:
        publisher.close()
        connection.close()
        status.close()
    with mosquitto.log_path.open("rb") as log:
        log.seek(log_from)
        lines = log.read().decode(errors="replace").splitlines()
    subscribed = next(i for i, line in enumerate(lines) if f"Received SUBSCRIBE from {client_id}" in line)
    online = next(i for i, line in enumerate(lines)
                  if f"Received PUBLISH from {client_id}" in line and f"'{topics.status}'" in line)
    assert subscribed < online, lines[min(subscribed, online):max(subscribed, online) + 1]


def test_an_unreachable_broker_at_start_is_not_waited_for_and_is_joined_when_it_comes(mosquitto):
    # Nothing listens: the refusal is immediate, so waiting connect_timeout_s for an answer only delayed
    # the first cycle. The network thread keeps trying and connects once the broker is up.
    mosquitto.stop()
    try:
        config = MqttConfig(host=mosquitto.host, port=mosquitto.port, connect_timeout_s=120, reconnect_max_s=2)
        bridge = MqttBridge(config, unique("late-broker"))
        began = time.monotonic()
        bridge.connection.start()
        assert time.monotonic() - began < 60, "start() waited for an answer from a broker that refused at once"
        assert not bridge.connection.connected
    finally:
        mosquitto.start()
    try:
        assert bridge.connection.wait_connects(1, timeout=30), "no connect once the broker was up"
    finally:
        bridge.connection.close()


def test_a_stop_while_waiting_for_a_silent_broker_is_prompt(tmp_path):
    # A broker that takes the TCP connection and never answers: start-up waits connect_timeout_s for its
    # CONNACK, and a SIGTERM meanwhile waited it out (30 s measured), past Docker's 10 s grace period.
    silent = socket.create_server(("127.45.9.1", 0))
    host, port = silent.getsockname()
    config = tmp_path / "c.yaml"
    config.write_text(f"site: silent\nmqtt: {{host: {host}, port: {port}, connect_timeout_s: 120}}\n")
    log = tmp_path / "log"
    proc = subprocess.Popen([HASHFLEET, "--log-level", "INFO", "collect", "--config", str(config), "--miners",
                             "127.45.9.2:4028"], stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env={**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")})
    try:
        silent.settimeout(60)
        connection, _ = silent.accept()  # it is waiting for the CONNACK now
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
        assert "stopped after 0 cycle(s)" in log.read_text()
        connection.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        silent.close()


def test_broker_restart_mid_run_is_survived_and_retained_state_is_published_again(mosquitto):
    site = unique("restart")
    topics = Topics("hashfleet", site)
    writer = {"username": "hashfleet", "password": mosquitto.users["hashfleet"]}
    reader = {"user": "reader", "password": mosquitto.users["reader"]}
    price_topic = f"hashfleet/{site}-feeds/btc"
    with run_fleet("a1566:1,nano3s:1", base="127.45.0.1:0", seed=3) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "mqtt": mqtt_config(mosquitto.host, mosquitto.auth_port, **writer,
                                ingest=[{"topic": price_topic, "kind": "btc_price"}]),
        })
        try:
            first = collector.next_result()
            miner = first.samples[0].miner
            node = discovery.miner_node_id(site, miner)
            before = Subscriber(mosquitto.host, mosquitto.auth_port, [f"hashfleet/{site}/#"], **reader)
            before.wait_for(lambda m: m.topic == topics.miner_state(miner), what="the miner's state")
            before.close()

            mosquitto.restart()  # persistence off: the broker forgets every retained message
            restarted = datetime.now(timezone.utc)

            assert collector.bridge.connection.wait_connects(2, timeout=30), "the collector did not reconnect"
            watched = [f"hashfleet/{site}/#", f"homeassistant/sensor/{node}/+/config"]
            after = Subscriber(mosquitto.host, mosquitto.auth_port, watched, **reader)
            # Discovery goes out once per miner, before the restart; only the replay on reconnect sends it
            # again (retained, or live if this subscriber was quicker than the replay).
            after.wait_for(lambda m: m.topic.endswith("/power/config"),
                           what="the miner's discovery config, published again after the reconnect")
            after.close()
            late = Subscriber(mosquitto.host, mosquitto.auth_port, watched, **reader)  # the broker retains it again
            late.wait_for(lambda m: m.topic.endswith("/power/config") and m.retain, what="retained discovery")
            late.wait_for(lambda m: m.topic == topics.status and m.payload == b"online" and m.retain,
                          what="status online, retained")
            late.wait_for(lambda m: m.topic == topics.miner_state(miner), what="the miner's state")
            # Publishing resumes: a cycle that started after the restart reaches the broker.
            fresh = collector.next_result(lambda r: r.ts > restarted, timeout=15, what="a cycle after the restart")
            late.wait_json(topics.site_state, lambda d: datetime.fromisoformat(d["ts"]) >= fresh.ts)
            late.close()
            # The ingest subscription was made again: a price published now reaches the cost figures.
            publisher = Publisher(mosquitto.host, mosquitto.auth_port, user="hashfleet",
                                  password=mosquitto.users["hashfleet"])
            publisher.publish(price_topic, {"usd": 123456.0})
            publisher.close()
            collector.next_result(lambda r: r.cost is not None and r.network.btc_price_usd == 123456.0,
                                  what="the price published after the restart in the cost figures")
        finally:
            collector.close()


def test_a_flood_of_malformed_payloads_is_counted_and_dropped_while_cycles_go_on(mosquitto, caplog):
    caplog.set_level(logging.WARNING, logger="collector.sources.mqtt_ingest")
    site = unique("flood")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    ingest = [  # QoS 0 to the collector: Mosquitto never drops QoS 0 to a connected client for queue limits
        {"topic": f"{feeds}/meter/+", "kind": "meter", "outlets": {"o1": "somebody"}, "qos": 0},
        {"topic": f"{feeds}/price", "kind": "power_price", "qos": 0},
        {"topic": f"{feeds}/miner/+", "kind": "miner_telemetry", "qos": 0},
    ]
    bad = {
        "not_json": (f"{feeds}/price", b"this is not { json"),
        "invalid": (f"{feeds}/miner/x", b'{"hashrat_ths": 5}'),  # an unknown key: no miner reading
        "oversized": (f"{feeds}/price", b'{"usd_per_kwh": 0.1, "pad": "' + b"x" * 3000 + b'"}'),
        "unmapped": (f"{feeds}/meter/o9", b'{"watts": 3000}'),
    }
    per_reason = 750
    with run_fleet("nano3s:1", base="127.45.1.1:0", seed=4) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": LIVE_ECONOMICS,
            "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=ingest,
                                                    max_payload_bytes=2048),
        })
        publisher = Publisher(mosquitto.host, mosquitto.port)
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        try:
            collector.next_result()
            publisher.publish_many([bad[reason] for _ in range(per_reason) for reason in bad])

            report = health.wait_json(topics.collector,
                                      lambda d: d["ingest"]["dropped_total"] >= per_reason * len(bad), timeout=30)
            assert report["ingest"]["dropped"] == {reason: per_reason for reason in bad}
            assert report["ingest"]["accepted_total"] == 0
            # Still working: cycles go on, and a good price after the flood is used.
            publisher.publish(f"{feeds}/price", {"usd_per_kwh": 0.031})
            result = collector.next_result(
                lambda r: r.cost is not None and r.cost.site.power_price_usd_kwh == pytest.approx(0.031),
                what="the good price after the flood in the cost figures")
            assert result.samples[0].state is MinerState.MINING
        finally:
            health.close()
            publisher.close()
            collector.close()
    logged = [r for r in caplog.records if r.name == "collector.sources.mqtt_ingest"]
    assert 0 < len(logged) <= 2 * len(bad), "bad payloads must be logged at a bounded rate"


def test_metered_power_replaces_reported_power_in_the_cost_and_the_gap_is_recorded(mosquitto):
    site = unique("metered")
    prefix = f"sim/{site}"
    topics = Topics("hashfleet", site)
    with run_fleet("a1566:2,a1246:1", base="127.45.2.1:0", seed=11) as fleet:
        # Two racks: r1 = the two A1566 with an outlet each; r2 = the A1246, metered by its rack only.
        meter = MqttPowerMeter(fleet.miners, mosquitto.host, mosquitto.port, prefix=prefix, rack_size=2,
                               overhead_w=200.0, wall_factor=1.05)
        m1, m2, m3 = (format_mac(m.mac) for m in fleet.miners)
        ingest = [
            {"topic": f"{prefix}/meter/+/outlet/+", "kind": "meter", "outlets": {"r1-1": m1, "r1-2": m2}},
            {"topic": f"{prefix}/meter/+/total", "kind": "meter", "racks": {"r2": [m3]}},
        ]
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
            "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=ingest),
        })
        costs = Subscriber(mosquitto.host, mosquitto.port, [f"hashfleet/{site}/#"])
        meter.start(periodic=False)
        try:
            unmetered = collector.next_result(lambda r: r.cost is not None)
            assert not unmetered.cost.metered_gap_w
            meter.publish_once()
            metered = {m1: meter.last[f"{prefix}/meter/r1/outlet/1"]["watts"],
                       m2: meter.last[f"{prefix}/meter/r1/outlet/2"]["watts"],
                       m3: meter.last[f"{prefix}/meter/r2/total"]["watts"]}  # outlet x 1.05 + 200 W overhead

            result = collector.next_result(
                lambda r: r.cost is not None and {c.miner: c.power_w for c in r.miner_costs} == metered,
                what="cost figures on metered power")

            reported = {s.miner: s.power_w for s in result.samples}
            assert all(metered[m] > reported[m] for m in metered)  # the miners under-report
            assert result.cost.metered_gap_w == pytest.approx({m: reported[m] - metered[m] for m in metered})
            assert result.cost.site.power_w == pytest.approx(sum(metered.values()))
            for c in result.miner_costs:
                assert c.efficiency_j_th == pytest.approx(metered[c.miner] / c.hashrate_ths)
            def this_cycle(data) -> bool:
                return datetime.fromisoformat(data["ts"]) == result.ts

            published = costs.wait_json(topics.miner_cost(m3), this_cycle)
            assert published["power_meter_gap_w"] == pytest.approx(reported[m3] - metered[m3])
            assert published["power_w"] == metered[m3]
            summary = costs.wait_json(topics.site_state, this_cycle)
            assert summary["power_w"] == pytest.approx(sum(metered.values()), abs=0.1)
            assert summary["power_meter_gap_w"] == pytest.approx(sum(reported.values()) - sum(metered.values()), abs=0.1)
        finally:
            meter.stop()
            costs.close()
            collector.close()


def test_power_and_btc_price_topics_change_the_cost_figures(mosquitto):
    site = unique("prices")
    feeds = f"feeds/{site}"
    with run_fleet("a1566:1", base="127.45.3.1:0", seed=12) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": LIVE_ECONOMICS,
            "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[
                {"topic": f"{feeds}/power", "kind": "power_price"}, {"topic": f"{feeds}/btc", "kind": "btc_price"}]),
        })
        publisher = Publisher(mosquitto.host, mosquitto.port)
        try:
            before = collector.next_result(lambda r: r.cost is not None).cost.site
            assert before.power_price_usd_kwh == pytest.approx(0.05) and "power_price" in before.stale_inputs  # the fallback

            publisher.publish(f"{feeds}/power", {"usd_per_mwh": 80.0})
            publisher.publish(f"{feeds}/btc", 133000)  # within 50 % of the network's: used at once (docs/mqtt.md)
            after = collector.next_result(
                lambda r: r.cost is not None and r.cost.site.power_price_usd_kwh == pytest.approx(0.08)
                and r.network.btc_price_usd == 133000, what="both live prices in the cost figures").cost.site

            assert "power_price" not in after.stale_inputs
            assert after.energy_usd_day == pytest.approx(after.energy_kwh_day * 0.08)
            assert after.hashprice_usd_ph_day == pytest.approx(before.hashprice_usd_ph_day * 1.4)  # 133,000 / 95,000
            # Energy per coin follows the power price (the BTC price changes revenue, not the coins mined).
            assert after.energy_cost_per_btc == pytest.approx(before.energy_cost_per_btc * 0.08 / 0.05, rel=0.03)
        finally:
            publisher.close()
            collector.close()


def test_mqtt_miner_telemetry_joins_the_cycle_as_a_minersample_from_mqtt(mosquitto):
    site = unique("selfpub")
    prefix = f"sim/{site}"
    topics = Topics("hashfleet", site)
    [miner] = build_mqtt_miners("nano3s:1", seed=21, first_index=100)
    device = MqttMiner(miner, mosquitto.host, mosquitto.port, prefix=prefix)
    collector = RunningCollector({  # no polled miners at all: the fleet is what publishes
        "site": site, "interval_s": 1,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[device.collector_ingest()]),
    })
    states = Subscriber(mosquitto.host, mosquitto.port, [f"hashfleet/{site}/miner/+/state"])
    device.start(periodic=False)
    try:
        device.publish_once()
        result = collector.next_result(lambda r: len(r.samples) == 1, what="the MQTT miner in a cycle")
        [sample] = result.samples
        truth = miner.last_served
        assert sample.source is SampleSource.MQTT and sample.site == site and sample.ts == result.ts
        assert sample.miner == format_mac(miner.mac) and sample.model == "Avalon Nano3s"
        assert (sample.hashrate_ths, sample.power_w) == (truth.hashrate_ths, truth.power_w)
        published = states.wait_json(topics.miner_state(sample.miner))
        assert published["source"] == "mqtt" and published["hashrate_ths"] == truth.hashrate_ths
    finally:
        device.stop()
        states.close()
        collector.close()


def test_telemetry_with_a_power_no_unit_draws_keeps_its_state_and_a_refused_hashrate_is_an_error(mosquitto):
    # One refused field costs that field (models.sample.state_with_refusals): a Nano 3S that hashes
    # 6 TH/s and says it draws 1 GW stays mining with its power empty and named (and out of cost); one
    # that says it hashes 1e308 TH/s is in error, since whether it hashes is unknown.
    site = unique("refused")
    feeds = f"feeds/{site}"
    collector = RunningCollector({
        "site": site, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port,
                            ingest=[{"topic": f"{feeds}/miner/+", "kind": "miner_telemetry"}]),
    })
    publisher = Publisher(mosquitto.host, mosquitto.port)
    nano = {"model": "Avalon Nano3s", "state": "mining", "hashrate_ths": 6.1, "power_w": 139.0,
            "temp_chip_max_c": 71.0, "fans_rpm": [2400]}
    try:
        publisher.publish_many([(f"{feeds}/miner/gw", {**nano, "power_w": 1e9}),
                                (f"{feeds}/miner/fast", {**nano, "hashrate_ths": 1e308})])
        result = collector.next_result(lambda r: len(r.samples) == 2, what="both MQTT miners in a cycle")
        samples = {s.miner: s for s in result.samples}
        gw, fast = samples["gw"], samples["fast"]
        assert gw.state is MinerState.MINING and gw.hashrate_ths == 6.1, gw
        assert gw.power_w is None and gw.unusable == ["power_w"] and gw.temp_chip_max_c == 71.0
        assert any("power_w 1e+09 W" in e and "not a plausible reading" in e for e in gw.errors), gw.errors
        assert fast.state is MinerState.ERROR and fast.hashrate_ths is None and "hashrate_ths" in fast.unusable
        assert fast.power_w == 139.0
        assert result.cost is not None and result.cost.site.miners_left_out == 2  # neither is costed
    finally:
        publisher.close()
        collector.close()


def test_telemetry_with_a_bad_field_costs_that_field_and_a_payload_that_is_no_reading_is_dropped(mosquitto):
    # A fan at -1 rpm (firmware's absent fan), a temperature of 1e400 (infinity in JSON) or "6.1" for a
    # hashrate dropped the whole payload as `invalid`: the miner went stale, then offline, and left the
    # dashboards and the cost figures. Now that field is left empty and named; the rest is kept.
    site = unique("badfield")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    collector = RunningCollector({
        "site": site, "interval_s": 1, "economics": ECONOMICS, "network": NETWORK,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port,
                            ingest=[{"topic": f"{feeds}/miner/+", "kind": "miner_telemetry"}]),
    })
    publisher = Publisher(mosquitto.host, mosquitto.port)
    watch = Subscriber(mosquitto.host, mosquitto.port, [topics.collector, topics.miner_state("fan")])
    nano = {"model": "Avalon Nano3s", "state": "mining", "hashrate_ths": 6.1, "power_w": 139.0,
            "temp_chip_max_c": 71.0, "fans_rpm": [2400]}
    board = {"index": 0, "hashrate_ths": 6.1, "temp_in_c": 50.0}
    try:
        publisher.publish_many([
            # No miner reading at all: still dropped whole (`invalid`). First, so counted by the cycle below.
            (f"{feeds}/miner/typo", {**nano, "hashrat_ths": 6.1}),  # a publisher's typo stays loud
            (f"{feeds}/miner/when", {**nano, "ts": "yesterday"}),
            (f"{feeds}/miner/noname", {**nano, "miner": ""}),
            (f"{feeds}/miner/fan", {**nano, "fans_rpm": [-1]}),
            (f"{feeds}/miner/hot", json.dumps({**nano, "temp_env_c": 12345}).replace("12345", "1e400")),
            (f"{feeds}/miner/text", {**nano, "hashrate_ths": "6.1"}),
            (f"{feeds}/miner/board", {**nano, "boards": [board, {**board, "index": 1, "chips_ok": -3}]}),
            (f"{feeds}/miner/allbad", {"hashrate_ths": "x", "power_w": -1, "fans_rpm": [-1], "temp_chip_max_c": True}),
        ])
        kept = {"fan", "hot", "text", "board", "allbad"}
        result = collector.next_result(lambda r: r.cost is not None and {s.miner for s in r.samples} == kept,
                                       what="the five MQTT miners with a refused field in a costed cycle")
        samples = {s.miner: s for s in result.samples}
        for name, field in (("fan", "fans_rpm"), ("hot", "temp_env_c"), ("board", "boards")):
            sample = samples[name]
            assert sample.state is MinerState.MINING, sample
            assert (sample.hashrate_ths, sample.power_w, sample.temp_chip_max_c) == (6.1, 139.0, 71.0)
            assert sample.unusable == [field] and len(sample.errors) == 1 and sample.errors[0].startswith(field)
            assert getattr(sample, field) in ([], None)
        assert samples["fan"].errors == ["fans_rpm.0: Input should be greater than or equal to 0, got -1"]
        assert samples["board"].errors == ["boards.1.chips_ok: Input should be greater than or equal to 0, got -3"]
        text = samples["text"]  # the live rate refused: whether it hashes is unknown
        assert text.state is MinerState.ERROR and text.hashrate_ths is None and text.power_w == 139.0
        assert text.unusable == ["hashrate_ths"] and text.errors == ["hashrate_ths: '6.1' is not a number"]
        allbad = samples["allbad"]  # every reading refused: still a sample, in error
        assert allbad.state is MinerState.ERROR
        assert (allbad.hashrate_ths, allbad.power_w, allbad.fans_rpm, allbad.temp_chip_max_c) == (None, None, [], None)
        assert sorted(allbad.unusable) == ["fans_rpm", "hashrate_ths", "power_w", "temp_chip_max_c"]
        assert result.cost.site.miners_left_out == 2  # text and allbad; fan, hot and board are costed
        assert result.counters["mqtt_fields_refused"] == 8 and result.counters["mqtt_malformed"] == 3

        published = watch.wait_json(topics.miner_state("fan"))
        assert published["state"] == "mining" and published["hashrate_ths"] == 6.1
        assert published["unusable"] == ["fans_rpm"]
        ingest = watch.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= 3)["ingest"]
        assert ingest["dropped"] == {"invalid": 3} and ingest["accepted"] == {"miner_telemetry": 5}
        assert ingest["fields_refused"] == {"fans_rpm": 2, "temp_env_c": 1, "hashrate_ths": 2, "boards": 1,
                                            "power_w": 1, "temp_chip_max_c": 1}
    finally:
        watch.close()
        publisher.close()
        collector.close()


# --- TLS ---------------------------------------------------------------------------------------


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, plus an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key) -> None:
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def issue(cn: str, issuer: x509.Name, signer, *, ca: bool = False, server: bool = False):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer or name(cn))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                            critical=True)
        elif server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        cert = builder.sign(signer or key, hashes.SHA256())
        return cert, key

    ca, ca_key = issue("hashfleet test CA", None, None, ca=True)
    write("ca", ca, ca_key)
    write("server", *issue("127.0.0.1", ca.subject, ca_key, server=True))
    write("client", *issue("hashfleet-collector", ca.subject, ca_key))
    other, other_key = issue("some other CA", None, None, ca=True)
    write("other-ca", other, other_key)
    for path in directory.iterdir():
        path.chmod(0o644)  # mosquitto drops to its own user when started as root
    return {stem: directory / f"{stem}.pem" for stem in ("ca", "server", "client", "other-ca")}


@pytest.fixture(scope="module")
def tls_broker():
    """Mosquitto with one TLS listener that requires a client certificate from the test CA."""
    binary = require_binary("mosquitto", "mosquitto")
    workdir = Path(tempfile.mkdtemp(prefix="hashfleet-mosquitto-tls-"))
    workdir.chmod(0o755)
    certs = _certificates(workdir)
    port = free_port()
    config = workdir / "mosquitto.conf"
    config.write_text("\n".join([
        "persistence false", "log_dest stderr", f"listener {port} 127.0.0.1",
        f"cafile {certs['ca']}", f"certfile {certs['server']}", f"keyfile {workdir / 'server.key'}",
        "require_certificate true", "allow_anonymous true", ""]))
    config.chmod(0o644)
    process = ManagedProcess("mosquitto-tls", [binary, "-c", str(config)], workdir / "mosquitto.log", cwd=workdir)
    process.spawn()

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        wait_until_ready(process, listening, timeout=15)
        yield port, certs, workdir
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_tls_with_a_ca_and_a_client_certificate_connects(tls_broker):
    port, certs, workdir = tls_broker
    config = MqttConfig(host="127.0.0.1", port=port, connect_timeout_s=5,
                        tls={"ca_file": certs["ca"], "cert_file": certs["client"], "key_file": workdir / "client.key"})
    bridge = MqttBridge(config, "tls")
    bridge.connection.start()
    try:
        assert bridge.connection.connected and bridge.connection.connects == 1
    finally:
        bridge.close()


def test_tls_with_the_wrong_ca_is_a_clear_error(tls_broker):
    port, certs, workdir = tls_broker
    config = MqttConfig(host="127.0.0.1", port=port, connect_timeout_s=5,
                        tls={"ca_file": certs["other-ca"], "cert_file": certs["client"],
                             "key_file": workdir / "client.key"})
    with pytest.raises(MqttConnectError, match=f"TLS with MQTT broker 127.0.0.1:{port} failed.*CERTIFICATE_VERIFY_FAILED"):
        MqttBridge(config, "tls").connection.start()

