"""MQTT pieces that need no broker: config, topic filters, discovery payloads, ingest mapping and
counting, bounded logging."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from collector import config as config_loader
from collector.sources.live_inputs import LiveInputs
from collector.sinks import home_assistant as discovery
from collector.bounded_log import BoundedLog
from collector.sources.mqtt_ingest import MqttIngest, match_filter
from collector.mqtt.topics import MAX_LEVEL_CHARS, Topics, fingerprint, slug, topic_level, topic_problem
from collector.sinks.mqtt_publish import site_health_payload
from models import MinerSample, MinerState, MqttConfig, SampleSource
from models.health import Cause, Problem, Severity, Signal, SiteHealth
from models.sample import MAX_TEXT_CHARS

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def sample(miner: str = "AA:BB:CC:00:11:22", **fields) -> MinerSample:
    base = dict(miner=miner, host="10.0.0.5", site="tx1", ts=T0, state=MinerState.MINING, source=SampleSource.AVALON,
                make="Canaan", model="AvalonMiner 15-194", firmware="25021401", mac=miner,
                hashrate_ths=190.0, power_w=3700.0, temp_chip_max_c=78.0)
    return MinerSample(**{**base, **fields})


# --- config ------------------------------------------------------------------------------------


def test_mqtt_section_loads_with_password_from_the_environment(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  host: broker\n  username: hashfleet\n  password: from-file\n"
                    "  ingest:\n    - {topic: 'pdu/+/outlet/+', kind: meter, outlets: {'1': 'm1'}}\n")
    cfg = config_loader.load(path, environ={"MQTT_PASSWORD": "from-env"})
    assert cfg.mqtt.host == "broker" and cfg.mqtt.port == 1883 and cfg.mqtt.resolved_password() == "from-env"
    assert cfg.mqtt.ingest[0].kind == "meter"


def test_password_file_from_the_environment_replaces_the_config_password(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    path = tmp_path / "c.yaml"
    path.write_text("mqtt: {host: broker, username: u, password: other}\n")
    cfg = config_loader.load(path, environ={"MQTT_PASSWORD_FILE": str(secret)})
    assert cfg.mqtt.resolved_password() == "s3cret"


def test_environment_alone_configures_mqtt():
    cfg = config_loader.load(None, environ={"MQTT_HOST": "mosquitto", "MQTT_PORT": "8883", "MQTT_USERNAME": "u",
                                            "MQTT_PASSWORD": "p"})
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == ("mosquitto", 8883, "u")


def test_missing_password_file_is_a_config_error_naming_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"mqtt: {{host: broker, username: u, password_file: {tmp_path / 'nope'}}}\n")
    with pytest.raises(config_loader.ConfigError, match="mqtt.password_file"):
        config_loader.load(path, environ={})


@pytest.mark.parametrize(("mqtt", "problem"), [
    ("{host: b, password: hunter2-secret}", "no username"),
    ("{host: b, qos: 3}", "mqtt.qos"),
    ("{host: b, ingest: [{topic: 'a/b#', kind: btc_price}]}", "whole level"),
    ("{host: b, ingest: [{topic: 'pdu/#', kind: meter}]}", "maps to no miner"),
    ("{host: b, ingest: [{topic: 'p', kind: power_price, outlets: {a: b}}]}", "belong to meter topics"),
    ("{host: b, topic_prefix: 'hashfleet/'}", "topic prefix"),
    ("{host: b, tls: {ca_file: /nonexistent/ca.pem}}", "mqtt.tls.ca_file"),
])
def test_bad_mqtt_config_names_the_problem_and_never_echoes_the_password(tmp_path, mqtt, problem):
    path = tmp_path / "c.yaml"
    path.write_text(f"mqtt: {mqtt}\n")
    with pytest.raises(config_loader.ConfigError) as caught:
        config_loader.load(path, environ={})
    assert problem in str(caught.value) and "hunter2" not in str(caught.value)


# --- topics ------------------------------------------------------------------------------------


def test_topic_tree_and_ids():
    topics = Topics("hashfleet", "tx1")
    assert topics.status == "hashfleet/tx1/status"
    assert topics.miner_state("AA:BB:CC:00:11:22") == "hashfleet/tx1/miner/AA:BB:CC:00:11:22/state"
    assert topics.miner_cost("10.0.0.5:4028") == "hashfleet/tx1/miner/10.0.0.5:4028/cost"
    assert topics.site_cost == "hashfleet/tx1/cost" and topics.site_state == "hashfleet/tx1/state"
    assert topic_level("a/b+c#") == f"a_b_c__{fingerprint('a/b+c#')}"
    assert slug("AA:BB:CC:00:11:22") == "aa_bb_cc_00_11_22" and slug("10.0.0.5:4028") == "10_0_0_5_4028"


# Ids as polled miners (a MAC text read raw) and MQTT publishers send them: what a broker refuses in a topic
# (Mosquitto drops the client that publishes one), and ids that fold to one level.
HOSTILE_IDS = ["evil\x01id", "nul\x00id", "del\x7fid", "c1\x85id", "nonchar\uffffid", "plane1\U0001fffeid",
               "fdd0\ufdd0id", "lone\ud800id", "rack1/m1", "rack1_m1", "rack1+m1", "rack1#m1", "x" * 300, "x" * 301]


def test_a_topic_level_never_holds_what_a_broker_refuses_and_never_shares_a_level():
    levels = [topic_level(miner) for miner in HOSTILE_IDS]
    assert len(set(levels)) == len(HOSTILE_IDS)  # `rack1/m1` and `rack1_m1` each their own state topic
    for miner, level in zip(HOSTILE_IDS, levels):
        assert topic_problem(f"hashfleet/tx1/miner/{level}/state") is None, (miner, level)
        assert "/" not in level and len(level) <= MAX_LEVEL_CHARS
    assert topic_level("rack1/m1") == f"rack1_m1_{fingerprint('rack1/m1')}"


@pytest.mark.parametrize("miner", ["AA:BB:CC:00:11:22", "10.0.0.5:4028", "bitaxe-7", "rack1_m1", "Rig.1 (top)",
                                   "矿机-1", "x" * MAX_LEVEL_CHARS])
def test_an_id_that_needs_no_change_keeps_its_topic(miner):
    assert topic_level(miner) == miner


def test_an_id_shaped_like_a_folded_one_cannot_take_its_level():
    folded = topic_level("rack1/m1")
    assert topic_level(folded) != folded


@pytest.mark.parametrize(("topic", "problem"), [
    ("", "empty"), ("a/+/b", "wildcard"), ("a/#", "wildcard"), ("a/b\x01", "control character"),
    ("a/\x00", "control character"), ("a/\x9f", "control character"), ("a/\ufffe", "non-character"),
    ("a/\U0010ffff", "non-character"), ("a/\udc00", "surrogate"), ("a/" + "é" * 32_767, "65,535 bytes"),
    ("a/" * 201, "201 levels"),
])
def test_topic_problem_names_what_a_broker_refuses(topic, problem):
    assert problem in topic_problem(topic)


def test_a_topic_a_broker_takes_has_no_problem():
    assert topic_problem("hashfleet/tx1/miner/AA:BB:CC:00:11:22/state") is None
    assert topic_problem("a/" + "é" * 32_766) is None and topic_problem("a/" * 200) is None


@pytest.mark.parametrize(("topic_filter", "topic", "captured"), [
    ("pdu/+/outlet/+", "pdu/r1/outlet/3", ["r1", "3"]),
    ("pdu/+/outlet/+", "pdu/r1/outlet", None),
    ("pdu/#", "pdu/r1/outlet/3", []),
    ("pdu/#", "pdu", []),
    ("price/power", "price/power", []),
    ("price/power", "price/btc", None),
    ("a/+", "a/b/c", None),
])
def test_topic_filter_matching(topic_filter, topic, captured):
    assert match_filter(topic_filter, topic) == captured


# --- Home Assistant discovery ------------------------------------------------------------------

HA_REQUIRED = {"name", "unique_id", "state_topic", "value_template", "device", "availability"}


def test_each_miner_is_a_device_with_the_five_sensors_ha_needs():
    topics = Topics("hashfleet", "tx1")
    configs = discovery.miner_configs(sample(), topics, "homeassistant")
    by_object = {topic.split("/")[3]: (topic, payload) for topic, payload in configs}
    assert set(by_object) == {"hashrate", "power", "efficiency", "temp_chip_max", "state"}
    for object_id, (topic, payload) in by_object.items():
        assert topic == f"homeassistant/sensor/hashfleet_tx1_aa_bb_cc_00_11_22/{object_id}/config"
        assert HA_REQUIRED <= payload.keys()
        assert payload["unique_id"] == f"hashfleet_tx1_aa_bb_cc_00_11_22_{object_id}"
        assert payload["state_topic"] == "hashfleet/tx1/miner/AA:BB:CC:00:11:22/state"
        assert payload["device"]["identifiers"] == ["hashfleet_tx1_aa_bb_cc_00_11_22"]
        assert payload["device"]["via_device"] == "hashfleet_tx1"
        assert payload["availability"] == [{"topic": "hashfleet/tx1/status", "payload_available": "online",
                                             "payload_not_available": "offline"}]
        field = payload["value_template"].removeprefix("{{ value_json.").removesuffix(" }}")
        assert field in MinerSample.model_fields
    power = by_object["power"][1]
    assert (power["device_class"], power["unit_of_measurement"], power["state_class"]) == ("power", "W", "measurement")
    chip = by_object["temp_chip_max"][1]
    assert (chip["device_class"], chip["unit_of_measurement"]) == ("temperature", "°C")
    assert by_object["hashrate"][1]["unit_of_measurement"] == "TH/s"
    state = by_object["state"][1]
    assert state["device_class"] == "enum" and set(state["options"]) == {s.value for s in MinerState}
    assert "state_class" not in state and "unit_of_measurement" not in state  # HA refuses them on enums
    device = power["device"]
    assert device["manufacturer"] == "Canaan" and device["model"] == "AvalonMiner 15-194"
    assert device["connections"] == [["mac", "aa:bb:cc:00:11:22"]]


def test_the_site_is_a_device_with_cost_per_btc_power_and_hashrate():
    topics = Topics("hashfleet", "tx1")
    without = discovery.site_configs(topics, "homeassistant", cost=False)
    configs = dict(discovery.site_configs(topics, "homeassistant", cost=True))
    assert len(configs) > len(without)
    by_object = {topic.split("/")[3]: payload for topic, payload in configs.items()}
    assert {"hashrate", "power", "all_in_cost_per_btc"} <= by_object.keys()
    for payload in by_object.values():
        assert HA_REQUIRED <= payload.keys() and payload["device"]["identifiers"] == ["hashfleet_tx1"]
    assert by_object["all_in_cost_per_btc"]["state_topic"] == "hashfleet/tx1/cost"
    assert by_object["all_in_cost_per_btc"]["unit_of_measurement"] == "USD/BTC"
    assert by_object["power"]["state_topic"] == "hashfleet/tx1/state"


def test_sites_that_fold_to_one_slug_get_their_own_node_ids_and_a_clean_slug_keeps_its_own():
    # Two collectors on one broker: TX1 and tx1 shared the site's device and every unique_id.
    for pair in (("TX1", "tx1"), ("tx.1", "tx_1")):
        assert len({discovery.site_node_id(site) for site in pair}) == 2, pair
        assert len({discovery.miner_node_id(site, "bitaxe-7") for site in pair}) == 2, pair
    assert discovery.site_node_id("tx1") == "hashfleet_tx1" and discovery.site_node_id("tx-1") == "hashfleet_tx-1"
    assert discovery.site_node_id("TX1") == f"hashfleet_tx1_{fingerprint('TX1')}"
    assert discovery.miner_node_id("tx1", "AA:BB:CC:00:11:22") == "hashfleet_tx1_aa_bb_cc_00_11_22"


def test_folded_ids_keep_their_own_state_topics_in_home_assistant():
    topics = Topics("hashfleet", "tx1")
    state_topics = {payload["state_topic"] for miner in ("rack1/m1", "rack1_m1", "rack1+m1")
                    for _, payload in discovery.miner_configs(sample(miner, mac=None), topics, "homeassistant")}
    assert len(state_topics) == 3


@pytest.mark.parametrize("usd_lost_day", [7.85, None])
def test_the_top_of_the_repair_queue_fits_a_home_assistant_state_and_still_says_what_is_wrong(usd_lost_day):
    # Home Assistant refuses a state over 255 characters (the sensor shows unknown): an MQTT id of 254
    # characters made the "Top of the repair queue" 283.
    miner = "m" * MAX_TEXT_CHARS
    problem = Problem(miner, Signal.OFFLINE, Cause.NETWORK, Severity.CRITICAL, "no answer", usd_lost_day=usd_lost_day)
    payload = site_health_payload(SiteHealth("tx1", queue=(problem,)), T0)
    top = payload["top_problem"]
    assert len(top) == discovery.MAX_STATE_CHARS and top.startswith("mmm")
    assert top.endswith("…: offline (network)" + (" $7.85/day" if usd_lost_day else ""))
    assert payload["queue"][0]["miner"] == miner  # the id in full
    short = Problem("bitaxe-7", Signal.OFFLINE, Cause.NETWORK, Severity.CRITICAL, "no answer", usd_lost_day=7.85)
    top = site_health_payload(SiteHealth("tx1", queue=(short,)), T0)["top_problem"]
    assert top == "bitaxe-7: offline (network) $7.85/day"  # a short one as it was


# --- ingest ------------------------------------------------------------------------------------


def make_ingest(**extra) -> tuple[MqttIngest, LiveInputs]:
    cfg = MqttConfig.model_validate({"host": "b", "max_payload_bytes": 1024, "ingest": [
        {"topic": "dev/+/telemetry", "kind": "miner_telemetry"},
        {"topic": "pdu/+/outlet/+", "kind": "meter", "outlets": {"r1-1": "m1", "r1-2": "m2"}},
        {"topic": "pdu/+/total", "kind": "meter", "racks": {"r1": ["m1", "m2", "m3", "m4"]}},
        {"topic": "price/power", "kind": "power_price"},
        {"topic": "price/btc", "kind": "btc_price"},
    ], **extra})
    live = LiveInputs()
    clock = iter(T0 + timedelta(seconds=i) for i in range(10_000))
    return MqttIngest(cfg, "tx1", live, clock=lambda: next(clock)), live


def feed(ingest: MqttIngest, topic: str, payload) -> None:
    ingest.handle(topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


def test_telemetry_becomes_a_minersample_from_mqtt_with_defaults_from_the_topic():
    ingest, _ = make_ingest()
    feed(ingest, "dev/bitaxe-7/telemetry", {"hashrate_ths": 1.2, "power_w": 18.0, "model": "Gamma"})
    polled = [sample("AA:BB:CC:00:11:22")]
    [got] = ingest.cycle_samples(T0 + timedelta(seconds=5), {s.miner for s in polled})
    assert got.miner == "bitaxe-7" and got.source is SampleSource.MQTT and got.state is MinerState.MINING
    assert got.site == "tx1" and got.host == "mqtt" and got.ts == T0 + timedelta(seconds=5)
    assert got.efficiency_j_th == pytest.approx(15.0)


def test_telemetry_round_trips_what_poll_json_prints_and_goes_offline_when_silent():
    ingest, _ = make_ingest(telemetry_max_age_s=30)
    feed(ingest, "dev/x/telemetry", json.loads(sample("AA:BB:CC:00:11:99").model_dump_json()))
    [fresh] = ingest.cycle_samples(T0 + timedelta(seconds=10), [])
    assert fresh.miner == "AA:BB:CC:00:11:99" and fresh.source is SampleSource.MQTT and fresh.power_w == 3700.0
    [silent] = ingest.cycle_samples(T0 + timedelta(seconds=100), [])
    assert silent.state is MinerState.OFFLINE and "no telemetry over MQTT" in silent.errors[0]


def test_a_polled_miner_keeps_its_polled_sample():
    ingest, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", {"miner": "AA:BB:CC:00:11:22", "hashrate_ths": 1.0})
    assert ingest.cycle_samples(T0, {"AA:BB:CC:00:11:22"}) == []  # the polled source announced it


def test_outlet_watts_are_the_miners_metered_power_and_a_rack_is_shared_by_reported_power():
    ingest, live = make_ingest()
    polled = [sample("m1", power_w=3000), sample("m2", power_w=3000), sample("m3", power_w=1000),
              sample("m4", power_w=3000)]
    ingest.share_racks(polled, T0)  # the reported power the rack is shared by
    feed(ingest, "pdu/r1/outlet/1", {"outlet": "r1-1", "watts": 3100.5})
    feed(ingest, "pdu/r1/outlet/2", {"outlet": "r1-2", "watts": 2900})
    feed(ingest, "pdu/r1/total", {"rack": "r1", "watts": 10400})  # m3 + m4 = 10400 - 3100.5 - 2900 = 4399.5
    now = T0 + timedelta(seconds=10)
    assert live.metered_power("m1", now) == 3100.5 and live.metered_power("m2", now) == 2900
    assert live.metered_power("m3", now) == pytest.approx(4399.5 * 1 / 4)
    assert live.metered_power("m4", now) == pytest.approx(4399.5 * 3 / 4)
    assert ingest.stats()["accepted"] == {"meter": 3}


def test_the_topic_level_is_the_meter_key_when_the_payload_has_none():
    ingest, live = make_ingest()
    feed(ingest, "pdu/r1/total", {"watts": 4000})
    assert live.metered_power("m1", T0) == pytest.approx(1000)  # nothing reported yet: equal shares


def test_prices_accept_objects_and_bare_numbers():
    ingest, live = make_ingest()
    feed(ingest, "price/power", {"usd_per_mwh": 43.0, "ts": "2025-06-01T12:00:00Z"})
    assert live.power_price.usd_per_kwh == pytest.approx(0.043) and live.power_price.as_of == T0
    feed(ingest, "price/power", b"-0.01")  # real-time markets go negative
    assert live.power_price.usd_per_kwh == -0.01
    feed(ingest, "price/btc", b"101234.5")
    assert live.btc_price_usd == 101234.5
    feed(ingest, "price/btc", {"usd": 99000, "ts": "2020-01-01T00:00:00Z"})  # older than what we have: ignored
    assert live.btc_price_usd == 101234.5


def test_a_price_or_reading_older_than_the_one_held_is_counted_dropped_not_accepted():
    # It is not used: counting it accepted would hide a feed that publishes out of order.
    ingest, live = make_ingest()
    feed(ingest, "price/power", {"usd_per_kwh": 0.04, "ts": "2025-06-01T12:00:00Z"})
    feed(ingest, "price/power", {"usd_per_kwh": 0.09, "ts": "2025-06-01T11:59:00Z"})
    feed(ingest, "price/btc", {"usd": 99000, "ts": "2025-06-01T12:00:00Z"})
    feed(ingest, "price/btc", {"usd": 50000, "ts": "2025-06-01T11:00:00Z"})
    feed(ingest, "pdu/r1/total", {"watts": 4000, "ts": "2025-06-01T12:00:00Z"})
    feed(ingest, "pdu/r1/total", {"watts": 8000, "ts": "2025-06-01T11:59:50Z"})
    assert live.power_price.usd_per_kwh == 0.04 and live.btc_price_usd == 99000
    assert live.metered_power("m1", T0) == pytest.approx(1000)
    stats = ingest.stats()
    assert stats["accepted"] == {"power_price": 1, "btc_price": 1, "meter": 1} and stats["dropped"] == {"older": 3}
    assert ingest.counters()["mqtt_refused"] == 3 and ingest.counters()["mqtt_accepted"] == 3


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("price/btc", b"{not json", "not_json"),
    ("price/btc", b'{"usd": NaN}', "not_json"),
    ("price/btc", b"\xff\xfe\x00garbage", "not_json"),
    ("price/btc", b'{"usd": -5}', "invalid"),
    ("price/btc", b'"expensive"', "invalid"),
    ("price/power", b'{"usd_per_kwh": 0.04, "usd_per_mwh": 40}', "invalid"),
    ("pdu/r1/outlet/9", b'{"outlet": "r1-9", "watts": 3000}', "unmapped"),
    ("pdu/r1/outlet/1", b'{"outlet": "r1-1", "wats": 3000}', "invalid"),
    ("dev/x/telemetry", b'{"hashrat_ths": 5}', "invalid"),  # an unknown key (a bad reading costs only itself)
    ("dev/x/telemetry", b"[1, 2, 3]", "invalid"),
    ("dev/x/telemetry", b'{"pad": "' + b"x" * 1100 + b'"}', "oversized"),
    ("elsewhere/topic", b"{}", "unknown_topic"),
])
def test_bad_payloads_are_counted_by_reason_and_dropped(topic, payload, reason):
    ingest, live = make_ingest()
    ingest.handle(topic, payload)
    assert ingest.stats()["dropped"] == {reason: 1} and ingest.stats()["accepted"] == {}
    assert live.btc_price_usd is None and not live.metered_w and ingest.cycle_samples(T0, []) == []


def test_bounded_log_writes_one_line_per_reason_per_period_with_the_count_held_back(caplog):
    now = [0.0]
    bounded = BoundedLog(logging.getLogger("t"), every_s=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(1000):
            bounded.warning("a", "bad payload")
        bounded.warning("b", "other reason")
        now[0] = 10.0
        bounded.warning("a", "bad payload")
    assert [r.getMessage() for r in caplog.records] == [
        "bad payload", "other reason", "bad payload (999 more like this in the last 10 s not logged)"]


def test_a_price_stale_on_arrival_is_counted_so_not_with_the_prices_accepted():
    # Trial O F7: a day-old retained price (not used: the fallback applies) counted `accepted`.
    cfg = MqttConfig.model_validate({"host": "b", "ingest": [{"topic": "price/power", "kind": "power_price"},
                                                             {"topic": "price/btc", "kind": "btc_price"}]})
    live = LiveInputs()
    ingest = MqttIngest(cfg, "tx1", live, clock=lambda: T0, power_price_max_age_s=300, btc_price_max_age_s=900)
    day_old = (T0 - timedelta(days=1)).isoformat()
    ingest.handle("price/power", json.dumps({"usd_per_kwh": 0.01, "ts": day_old}).encode(), retained=True)
    ingest.handle("price/btc", json.dumps({"usd": 90000, "ts": day_old}).encode(), retained=True)
    assert ingest.stats()["accepted"] == {"power_price_stale": 1, "btc_price_stale": 1}
    assert ingest.counters()["mqtt_accepted"] == 0 and ingest.counters()["mqtt_accepted_stale"] == 2
    ingest.handle("price/power", json.dumps({"usd_per_kwh": 0.02, "ts": (T0 - timedelta(seconds=299)).isoformat()}).encode())
    assert ingest.stats()["accepted"] == {"power_price_stale": 1, "btc_price_stale": 1, "power_price": 1}
    assert live.power_price.usd_per_kwh == 0.02 and ingest.counters()["mqtt_accepted"] == 1
