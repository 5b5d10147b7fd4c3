"""Curtailment over MQTT against the real Mosquitto and simulated miners over TCP, wired as `hashfleet
collect` wires it (collector.pipeline.build, service mode): a price spike puts the least efficient miners
to sleep within two cycles and they wake after it, without flapping; a stale price moves nothing; Home
Assistant's entities (control mode, demand-response limit, kill switch) are discovered and obeyed, within
the config's ceiling and only when the config enables them; hostile command payloads are refused; a days-old BTC price over MQTT leaves the network's stale price
holding the plan; demand-response targets from a utility's feed and Home Assistant's number hold apart (the
strictest active wins, whatever comes after it) and across a restart; a broker restarted with persistence hands
back retained commands superseded since, and none loosens control, while a kill switch turned on during an outage is
applied when the broker hands it (each change made is in the audit log)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from collector import pipeline
from collector.mqtt.topics import Topics
from collector.sinks import home_assistant as discovery
from models.curtailment import ControlMode
from simulators.fleet import run_fleet
from tests.collector.mqtt_support import NETWORK, Publisher, RunningCollector, Subscriber, mqtt_config, unique
from tests.servers.mosquitto import MosquittoBroker
from tests.servers.ports import free_ports
from tests.support import DATA

FLEET = "a1246:2,a1566:2"  # the A1246s break even at ~0.040 $/kWh, the A15s at ~0.081
OLD = (0, 1)
LIVE = {"tariff": {"kind": "live", "fallback_usd_per_kwh": 0.05, "max_age_s": 30}, "pue": 1.1}


def collector(mosquitto, fleet, site: str, *, control: dict, ingest: tuple = (), **curtailment) -> RunningCollector:
    return RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
        "economics": LIVE, "network": NETWORK,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port,
                            ingest=[{"topic": f"prices/{site}/power", "kind": "power_price"}, *ingest]),
        "curtailment": {"min_on_s": 2, "min_off_s": 2, "warmup_s": 0, "hysteresis_usd_kwh": 0.002,
                        "control": control, **curtailment},
    })


@pytest.fixture(scope="module")
def sims():
    with run_fleet(FLEET, base="127.49.0.1:0", seed=23) as fleet:
        yield fleet


@pytest.fixture
def fleet(sims):
    for miner in sims:
        miner.set_faults(soft_off=False)
    sims.command_log._kept.clear()
    return sims


def at_price(price: float):
    return lambda r: r.curtailment is not None and not r.curtailment.stale and r.curtailment.price_usd_kwh == price


def states(result, fleet, indexes) -> set[str]:
    macs = {fleet[i].mac.replace(":", "").upper() for i in indexes}
    return {s.state.value for s in result.samples if (s.mac or "").replace(":", "").upper() in macs}


def test_a_price_spike_sleeps_the_least_efficient_within_two_cycles_and_they_wake_after_it(mosquitto, fleet):
    site = unique("spike")
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "on", "allow": ["*"]})
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        running.next_result(lambda r: at_price(0.02)(r) and len(r.samples) == 4 and states(r, fleet, OLD) == {"mining"},
                            timeout=30, what="every miner mining at 0.02")
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.06})
        first = running.next_result(at_price(0.06), timeout=10, what="a cycle at the spike price")
        assert {first.curtailment.keys[s.miner] for s in first.samples if s.model.startswith("AvalonMiner 1246")} == {""}
        second = running.next_result(timeout=5)  # the next cycle's poll shows them asleep
        assert states(second, fleet, OLD) == {"soft_off"} and states(second, fleet, (2, 3)) == {"mining"}
        for _ in range(4):  # the spike lasts: nothing more happens
            steady = running.next_result(timeout=5)
        assert states(steady, fleet, OLD) == {"soft_off"}
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        running.next_result(lambda r: at_price(0.02)(r) and states(r, fleet, OLD) != {"soft_off"}, timeout=20,
                            what="the A1246s awake again after the spike")
        for _ in range(3):
            running.next_result(timeout=5)
    finally:
        running.close()
        publisher.close()
    for i in OLD:  # one sleep and one wake each: no flapping
        assert [c.command for c in fleet.commands(fleet[i])] == ["ascset softoff", "ascset softon"]
    for i in (2, 3):
        assert fleet.commands(fleet[i]) == []


def test_a_stale_price_over_mqtt_moves_nothing(mosquitto, fleet):
    site = unique("stale")
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "on", "allow": ["*"]})
    try:
        old = (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat()  # older than max_age_s 30
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.5, "ts": old})
        for _ in range(4):
            result = running.next_result(timeout=10)
            assert result.curtailment.stale and result.curtailment.price_source == "fallback"
    finally:
        running.close()
        publisher.close()
    assert fleet.commands() == []


class _MempoolPricesDown(BaseHTTPRequestHandler):
    """mempool.space's recorded answers, but its price endpoint fails."""
    ROUTES = {"/difficulty": "mempool-space_api-v1-mining-hashrate-3d.json",
              "/height": "mempool-space_api-blocks-tip-height.txt",
              "/fees": "mempool-space_api-v1-mining-blocks-fees-24h.json"}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.ROUTES.get(self.path)
        body = (DATA / "network" / name).read_bytes() if name else b"down"
        self.send_response(200 if name else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def mempool() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MempoolPricesDown)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_days_old_btc_price_over_mqtt_leaves_the_networks_stale_price_holding_the_plan(mosquitto, fleet, mempool):
    """The network source has every value but the BTC price (its endpoint fails: the static stand-in, flagged
    stale). A BTC price published over MQTT three days ago is older than network.max_age_s: it is not used,
    btc_price stays stale and control sends nothing. A fresh one replaces it, and control acts."""
    site = unique("oldbtc")
    publisher = Publisher(mosquitto.host, mosquitto.port)
    network = {"source": "http", "difficulty_url": f"{mempool}/difficulty", "height_url": f"{mempool}/height",
               "fees_url": f"{mempool}/fees", "price_url": f"{mempool}/prices", "max_age_s": 900,
               "static": NETWORK["static"]}
    running = RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.06}, "pue": 1.1}, "network": network,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[{"topic": f"prices/{site}/btc", "kind": "btc_price"}]),
        "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                        "control": {"mode": "on", "allow": ["*"]}},
    })
    try:
        first = running.next_result(timeout=10)
        assert first.network.stale == ["btc_price"] and first.curtailment.stale
        old = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
        publisher.publish(f"prices/{site}/btc", {"usd": 96000, "ts": old})
        taken = running.next_result(lambda r: r.counters.get("mqtt_accepted_stale", 0) >= 1, timeout=10,
                                    what="the old price taken, counted stale on arrival")
        assert taken.counters["mqtt_accepted"] == 0
        for _ in range(3):  # every cycle after it was taken
            result = running.next_result(timeout=10)
            assert result.network.stale == ["btc_price"] and result.network.btc_price_usd == 95000
            assert result.curtailment.stale
        assert fleet.commands() == []
        publisher.publish(f"prices/{site}/btc", {"usd": 96000, "ts": datetime.now(timezone.utc).isoformat()})
        fresh = running.next_result(lambda r: r.network.btc_price_usd == 96000, timeout=10, what="the fresh price used")
        assert fresh.network.stale == [] and not fresh.curtailment.stale
        running.next_result(lambda r: states(r, fleet, OLD) == {"soft_off"}, timeout=20,
                            what="the A1246s asleep on fresh data")
    finally:
        running.close()
        publisher.close()


def test_one_spoofed_btc_price_holds_the_plan_and_a_real_move_is_used_once_the_feed_confirms_it(mosquitto, fleet):
    """Trial H, M2: one BTC price of $1,000 over MQTT (inside the default bounds) made the next plan put every
    miner to sleep, control `on` acting on it. A price more than 50 % from the last one used now holds the
    plan (btc_price stale) until the feed's next price confirms it."""
    site = unique("btcjump")
    topic = f"prices/{site}/btc"
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "timeout_s": 2,
        "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}, "pue": 1.1}, "network": NETWORK,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[{"topic": topic, "kind": "btc_price"}]),
        "curtailment": {"min_on_s": 0, "min_off_s": 0, "warmup_s": 0, "hysteresis_usd_kwh": 0,
                        "control": {"mode": "on", "allow": ["*"]}},
    })
    try:
        publisher.publish(topic, {"usd": 96000})
        running.next_result(lambda r: r.network.btc_price_usd == 96000 and not r.curtailment.stale
                            and r.curtailment.miners_sleep == 0, timeout=10, what="every miner run at $96,000")
        publisher.publish(topic, {"usd": 1000})  # spoofed
        running.next_result(lambda r: r.counters.get("mqtt_accepted", 0) >= 2, timeout=10, what="the spoof taken")
        for _ in range(3):  # every cycle after it was taken
            result = running.next_result(timeout=10)
            assert result.network.btc_price_usd == 95000 and result.network.stale == ["btc_price"]
            assert result.curtailment.stale and result.curtailment.miners_sleep == 0
        assert fleet.commands() == []
        publisher.publish(topic, {"usd": 97000})  # the feed's next price, near the last one used: used at once
        running.next_result(lambda r: r.network.btc_price_usd == 97000 and not r.curtailment.stale, timeout=10,
                            what="the feed's price used again")
        publisher.publish(topic, {"usd": 45000})  # a real fall of 54 %: held ...
        running.next_result(lambda r: r.counters.get("mqtt_accepted", 0) >= 4, timeout=10, what="the fall taken")
        assert running.next_result(timeout=10).curtailment.stale
        assert fleet.commands() == []
        publisher.publish(topic, {"usd": 45100})  # ... until the next price confirms it
        running.next_result(lambda r: r.network.btc_price_usd == 45100 and not r.curtailment.stale, timeout=10,
                            what="the confirmed fall used")
    finally:
        running.close()
        publisher.close()


def test_home_assistant_entities_set_the_mode_under_the_configs_ceiling_the_limit_and_the_kill_switch(mosquitto, fleet):
    site = unique("ha-curtail")
    topics = Topics("hashfleet", site)
    node = discovery.site_node_id(site)
    watcher = Subscriber(mosquitto.host, mosquitto.port, [f"homeassistant/+/{node}/#", f"hashfleet/{site}/#",
                                                          f"homeassistant/sensor/+/{discovery.MINER_PLAN_SENSOR.object_id}/config"])
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "dry_run", "allow": ["*"], "mqtt_commands": True})
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        select = watcher.wait_json(f"homeassistant/select/{node}/curtailment_mode/config")
        # (the modes up to the config's: `on` offered looked usable and was not taken, trial ZG)
        assert select["command_topic"] == topics.curtailment_set("mode") and select["options"] == ["off", "dry_run"]
        number = watcher.wait_json(f"homeassistant/number/{node}/curtailment_dr_limit/config")
        switch = watcher.wait_json(f"homeassistant/switch/{node}/curtailment_kill/config")
        assert number["unit_of_measurement"] == "kW" and switch["payload_on"] == "ON"
        assert number["max"] == 10_000_000  # as the collector takes a limit (it said 1e6)
        # Whether the plan holds on stale inputs, the price's source, a limit met (trial ZG: none of them in HA).
        stale = watcher.wait_json(f"homeassistant/binary_sensor/{node}/curtailment_stale/config")
        source = watcher.wait_json(f"homeassistant/sensor/{node}/curtailment_price_source/config")
        met = watcher.wait_json(f"homeassistant/binary_sensor/{node}/curtailment_dr_met/config")
        assert stale["device_class"] == "problem" and "stale_reason" in stale["json_attributes_template"]
        assert source["options"] == ["tariff", "live", "fallback"] and "dr_met" in met["value_template"]
        live = watcher.wait_json(topics.curtailment_state, lambda d: d["price_source"] == "live")
        assert live["stale"] is False and live["price_source"] in source["options"]
        assert switch["retain"] is True and select["retain"] is True  # the broker keeps them for our next start
        assert watcher.wait_json(topics.curtailment_state, lambda d: d["control_mode"] == "dry_run")
        # Each miner's plan: a retained topic and an enum sensor on the miner's device.
        plan_config = watcher.wait_for(lambda m: m.topic.startswith(f"homeassistant/sensor/{node}_")
                                       and m.topic.endswith("/plan/config"), what="a miner's plan sensor")
        config = json.loads(plan_config.payload)
        assert config["options"] == ["run", "sleep", "lower", "raise"] and config["state_topic"].endswith("/plan")
        assert watcher.wait_json(config["state_topic"])["action"] in config["options"]
        # The select asks for `on`: the config says dry_run, so dry_run it stays; `off` it obeys.
        publisher.publish(topics.curtailment_set("mode"), "on")
        publisher.publish(topics.curtailment_set("mode"), "off")
        running.next_result(lambda r: r.curtailment is not None and r.curtailment.control_mode == "off", timeout=10,
                            what="control mode off from Home Assistant")
        publisher.publish(topics.curtailment_set("mode"), "dry_run")
        publisher.publish(topics.curtailment_set("dr_limit_kw"), "8")  # the number entity: a bare kW limit
        limited = running.next_result(lambda r: r.curtailment is not None and r.curtailment.dr_target is not None,
                                      timeout=10, what="a demand-response limit")
        assert limited.curtailment.dr_target.limit_kw == 8 and limited.curtailment.planned_kw <= 8
        # dry_run: the miners shed for it keep mining, off the plan, and Home Assistant's sensor says so
        off = running.next_result(lambda r: r.curtailment is not None and r.curtailment.miners_off_plan > 0,
                                  timeout=10, what="miners off plan in dry_run")
        assert off.curtailment.miners_off_plan <= off.curtailment.miners_sleep
        sensor = watcher.wait_json(f"homeassistant/sensor/{node}/curtailment_off_plan/config")
        assert sensor["state_topic"] == topics.curtailment_state and "miners_off_plan" in sensor["value_template"]
        assert watcher.wait_json(topics.curtailment_state, lambda d: d["miners_off_plan"] > 0)
        publisher.publish(topics.curtailment_set("kill"), "ON")
        killed = running.next_result(lambda r: r.curtailment is not None and r.curtailment.killed, timeout=10,
                                     what="the kill switch")
        assert watcher.wait_json(topics.curtailment_state, lambda d: d["killed"] is True)
        publisher.publish(topics.curtailment_set("dr_limit_kw"), "0")  # clears the limit
        running.next_result(lambda r: r.curtailment is not None and r.curtailment.dr_target is None, timeout=10)
        # Hostile: none of these changes anything, each is counted.
        publisher.publish(topics.curtailment_set("mode"), "full-throttle")
        publisher.publish(topics.curtailment_set("kill"), "maybe")
        publisher.publish(topics.curtailment_set("dr_limit_kw"), "-5")
        publisher.publish(topics.curtailment_set("dr_limit_kw"), {"limit_kw": 5, "end": "2001-01-01T00:00:00Z"})
        publisher.publish(topics.curtailment_set("dr_limit_kw"), {"limit_kw": 5, "shed_kw": 3, "end": "2099-01-01T00:00:00Z"})
        after = running.next_result(lambda r: r.counters.get("mqtt_malformed", 0) >= 3
                                    and r.counters.get("mqtt_refused", 0) >= 2, timeout=10, what="the refusals counted")
        assert after.curtailment.control_mode == "dry_run" and after.curtailment.killed
        assert after.curtailment.dr_target is None
        assert killed is not None
    finally:
        running.close()
        publisher.close()
        watcher.close()
    assert fleet.commands() == []  # dry_run, then off, then killed: nothing was ever sent
    # The audit says what was in force: `on` asked, the config's dry_run kept (it read "-> on", applied: trial T, 5).
    audit = [json.loads(line) for line in
             (pipeline.commands_path(running.config).parent / "curtailment-actions.jsonl").read_text().splitlines()]
    modes = [a["command"] for a in audit if a["action"] == "control_mode"]
    assert modes[:2] == ["the config's -> on, over the config's dry_run: control stays dry_run", "on -> off"], modes


def test_the_kill_switch_and_the_mode_set_over_mqtt_hold_across_a_restart_until_turned_off(mosquitto, fleet):
    # As trial C #5: Home Assistant's switch (before `retain` in its discovery) published ON non-retained,
    # and the restart forgot it and acted. Kept in the spool directory, the restart starts killed and in the
    # mode asked; a stale retained OFF the broker replays at the start does not turn it off; a live OFF does.
    site = unique("kill-restart")
    topics = Topics("hashfleet", site)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    control = {"mode": "on", "allow": ["*"], "mqtt_commands": True}
    spike = at_price(0.06)
    first = collector(mosquitto, fleet, site, control=control)
    try:  # no price yet: stale, nothing would be sent anyway
        publisher.publish(topics.curtailment_set("kill"), "ON")
        publisher.publish(topics.curtailment_set("mode"), "dry_run")
        first.next_result(lambda r: r.curtailment is not None and r.curtailment.killed
                          and r.curtailment.control_mode == "dry_run", timeout=10, what="killed, in dry_run")
    finally:
        first.close()
    # Stale retained commands, replayed at every subscribe: they may make control more careful, never less.
    publisher.publish(topics.curtailment_set("kill"), "OFF", retain=True)
    publisher.publish(topics.curtailment_set("mode"), "on", retain=True)
    second = collector(mosquitto, fleet, site, control=control)
    # the start's line on what it took up (collect logs it) names them
    assert "control owns 0 miner(s); commands: killed / mode dry_run" in second.pipeline.saved_state(Path("spool"))
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.06})
        for _ in range(3):  # the A1246s lose money: only the kill switch holds them
            result = second.next_result(spike, timeout=10, what="a cycle at the spike price")
            assert result.curtailment.killed and result.curtailment.control_mode == "dry_run"
        publisher.publish(topics.curtailment_set("kill"), "OFF")
        second.next_result(lambda r: spike(r) and not r.curtailment.killed, timeout=10, what="the switch OFF")
    finally:
        second.close()
        for what in ("kill", "mode"):  # (clears the retained messages)
            publisher.publish(topics.curtailment_set(what), b"", retain=True)
        publisher.close()
    assert fleet.commands() == []  # killed, then dry_run


def limited_to(kw: float, asleep: int | None = None):
    """A fresh plan whose demand-response target is a `kw` limit (with `asleep` miners asleep)."""
    return lambda r: (r.curtailment is not None and not r.curtailment.stale and r.curtailment.dr_target is not None
                      and r.curtailment.dr_target.limit_kw == kw and asleep in (None, r.curtailment.miners_sleep))


def counted(running: RunningCollector, what: str, **at_least: int):
    """The cycle after the first whose counters reach `at_least`: its plan saw every message counted."""
    running.next_result(lambda r: all(r.counters.get(name, 0) >= n for name, n in at_least.items()), timeout=10,
                        what=what)
    return running.next_result(timeout=5)


def test_a_looser_or_later_demand_response_target_never_hides_an_active_stricter_one(mosquitto, fleet):
    # Trial H1: every MQTT target shared one slot. Home Assistant's number at 1,000,000 kW replaced the utility's
    # active 1 kW limit (0 miners asleep), and so did the utility's next target, for 2099. Each topic now holds
    # its own targets, a feed several; the strictest active one holds whatever comes after it.
    site = unique("dr-apart")
    topics = Topics("hashfleet", site)
    feed, number = f"prices/{site}/dr", topics.curtailment_set("dr_limit_kw")
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "dry_run", "allow": ["*"], "mqtt_commands": True},
                        ingest=({"topic": feed, "kind": "dr_target"},))
    now = datetime.now(timezone.utc)
    utility = {"limit_kw": 1, "end": (now + timedelta(minutes=30)).isoformat(), "reason": "4CP"}
    tomorrow = {"limit_kw": 500, "start": (now + timedelta(days=1)).isoformat(),
                "end": (now + timedelta(days=1, hours=1)).isoformat()}
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})  # every miner runs at this price
        publisher.publish(feed, utility)
        running.next_result(limited_to(1, 4), timeout=20, what="the utility's 1 kW limit: every miner asleep")
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})  # (the price stays fresh: max_age_s 30)
        publisher.publish(number, "1000000")  # Home Assistant's number: a looser limit
        assert limited_to(1, 4)(counted(running, "the number taken", mqtt_accepted=4))
        publisher.publish(feed, tomorrow)  # the feed announces tomorrow's window ...
        publisher.publish(feed, {"limit_kw": 1, "start": "2099-01-01T00:00:00Z", "end": "2099-01-02T00:00:00Z"})
        assert limited_to(1, 4)(counted(running, "the target for 2099 refused", mqtt_accepted=5, mqtt_refused=1))
        assert running.bridge.ingest.stats()["accepted"]["dr_target"] == 3  # ... and tomorrow's is held
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        publisher.publish(number, "0")  # clears Home Assistant's limit, not the utility's
        assert limited_to(1, 4)(counted(running, "the number cleared", mqtt_accepted=7))
        for _ in range(2):
            assert limited_to(1, 4)(running.next_result(timeout=5))
        publisher.publish(feed, "null")  # the utility withdraws its targets
        running.next_result(lambda r: r.curtailment is not None and not r.curtailment.stale
                            and r.curtailment.dr_target is None and r.curtailment.miners_sleep == 0,
                            timeout=10, what="no target: every miner runs")
    finally:
        running.close()
        publisher.close()
    assert fleet.commands() == []  # dry_run


def test_demand_response_targets_set_over_mqtt_hold_across_a_restart(mosquitto, fleet):
    # A restart in the middle of a utility's window must not end it (control would wake the miners it slept
    # for it): the targets are kept with the kill switch. A stale withdrawal the broker replays at the start
    # does not withdraw them; one published while the collector listens does, its own topic's only.
    site = unique("dr-restart")
    topics = Topics("hashfleet", site)
    feed, number = f"prices/{site}/dr", topics.curtailment_set("dr_limit_kw")
    publisher = Publisher(mosquitto.host, mosquitto.port)
    settings = {"control": {"mode": "dry_run", "allow": ["*"], "mqtt_commands": True},
                "ingest": ({"topic": feed, "kind": "dr_target"},)}
    end = (datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()
    first = collector(mosquitto, fleet, site, **settings)
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        publisher.publish(feed, {"limit_kw": 1, "end": end, "reason": "4CP"})  # not retained
        publisher.publish(number, "5")  # (Home Assistant's number does not retain)
        first.next_result(lambda r: limited_to(1, 4)(r) and r.counters.get("mqtt_accepted", 0) >= 3, timeout=20,
                          what="both targets taken, the utility's holding")
    finally:
        first.close()
    publisher.publish(feed, "null", retain=True)  # replayed at the next start: of unknown age
    second = collector(mosquitto, fleet, site, **settings)
    assert "commands: 2 DR target(s)" in second.pipeline.saved_state(Path("spool"))  # (the start's line)
    try:
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        assert limited_to(1, 4)(counted(second, "the replayed withdrawal ignored", mqtt_refused=1, mqtt_accepted=1))
        publisher.publish(feed, "null")  # published while the collector listens: the utility's go
        result = counted(second, "the live withdrawal", mqtt_accepted=2)
        assert limited_to(5)(result) and result.curtailment.planned_kw <= 5  # Home Assistant's limit holds
        publisher.publish(number, "0")
        second.next_result(lambda r: r.curtailment is not None and r.curtailment.dr_target is None, timeout=10,
                           what="no target left")
    finally:
        second.close()
        publisher.publish(feed, b"", retain=True)  # (clears the retained message)
        publisher.close()


def test_the_kill_switch_takes_1_and_0_as_well_as_on_and_off(mosquitto, fleet):
    # Trial H L4: `1` and `0` were listed as switch words but arrive as JSON numbers, and were dropped invalid.
    site = unique("kill-10")
    topics = Topics("hashfleet", site)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "dry_run", "allow": ["*"]})
    try:
        publisher.publish(topics.curtailment_set("kill"), "1")
        running.next_result(lambda r: r.curtailment is not None and r.curtailment.killed, timeout=10, what="killed by 1")
        publisher.publish(topics.curtailment_set("kill"), "0")
        result = running.next_result(lambda r: r.curtailment is not None and not r.curtailment.killed, timeout=10,
                                     what="back on by 0")
        assert result.counters.get("mqtt_malformed", 0) == 0
    finally:
        running.close()
        publisher.close()


def test_command_topics_are_not_listened_to_unless_the_config_enables_them(mosquitto, fleet):
    site = unique("no-ha")
    topics = Topics("hashfleet", site)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    running = collector(mosquitto, fleet, site, control={"mode": "dry_run", "allow": ["*"]})
    try:
        assert {s for s, _ in running.bridge.ingest.subscriptions} >= {topics.curtailment_set("kill")}
        assert topics.curtailment_set("mode") not in {s for s, _ in running.bridge.ingest.subscriptions}
        publisher.publish(topics.curtailment_set("mode"), "off")
        publisher.publish(f"prices/{site}/power", {"usd_per_kwh": 0.02})
        for _ in range(3):
            result = running.next_result(lambda r: r.curtailment is not None, timeout=10)
        assert result.curtailment.control_mode == "dry_run"
    finally:
        running.close()
        publisher.close()


class PersistentBroker(MosquittoBroker):
    """Mosquitto that keeps its retained messages across a restart (saved at its clean stop), as a site's does."""

    def _write_config(self) -> None:
        super()._write_config()
        store = self.workdir / "store"  # (the broker runs as user mosquitto: a directory it may write)
        store.mkdir(exist_ok=True)
        store.chmod(0o777)
        config = self.config_path.read_text()
        assert "persistence false" in config
        self.config_path.write_text(config.replace("persistence false", f"persistence true\npersistence_location {store}/"))


@pytest.fixture
def persistent_broker() -> Iterator[PersistentBroker]:
    broker = PersistentBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def test_a_broker_restart_hands_back_retained_commands_superseded_since_and_none_loosens_control(persistent_broker, fleet):
    # Trial O F4: retained commands superseded by live ones came back in force, unlogged, when the broker restarted
    # (persistence on). Here the retained ones (kill OFF, mode on, a 550 kW target) would loosen control or put back
    # a target withdrawn since: each is ignored as a replay.
    broker = persistent_broker
    site = unique("replay")
    topics = Topics("hashfleet", site)
    kill, mode, feed = topics.curtailment_set("kill"), topics.curtailment_set("mode"), f"utility/{site}/dr"
    publisher = Publisher(broker.host, broker.port)
    running = collector(broker, fleet, site, control={"mode": "on", "allow": ["nobody"], "mqtt_commands": True},
                        ingest=({"topic": feed, "kind": "dr_target"},))
    asked = running.bridge.live.curtailment
    end = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()

    def state(killed: bool, control_mode: str, targets: int):
        return lambda r: (r.curtailment is not None and r.curtailment.killed is killed
                          and r.curtailment.control_mode == control_mode and len(list(asked.dr_targets)) == targets)
    try:
        publisher.publish(mode, "on", retain=True)  # what Home Assistant's select and switch send: retained
        publisher.publish(kill, "OFF", retain=True)
        publisher.publish(feed, {"limit_kw": 550, "end": end}, retain=True)
        running.next_result(state(False, "on", 1), timeout=10, what="on, 550 kW")
        publisher.publish(feed, 0)  # live, not retained: a script, a utility's withdrawal
        publisher.publish(kill, "ON")
        publisher.publish(mode, "dry_run")
        running.next_result(state(True, "dry_run", 0), timeout=10, what="the live commands applied")
        stats = running.bridge.ingest.stats
        handled = stats()["accepted_total"] + stats()["dropped_total"]
        broker.restart()
        running.next_result(lambda r: stats()["accepted_total"] + stats()["dropped_total"] >= handled + 3, timeout=30,
                            what="the retained commands handed again after the broker's restart")
        for _ in range(2):  # the replays handed to the loop before this cycle's plan: nothing came back
            result = running.next_result(timeout=5)
            assert state(True, "dry_run", 0)(result), (result.curtailment.killed, result.curtailment.control_mode)
        assert running.bridge.connection.connects >= 2
        assert running.bridge.ingest.stats()["dropped"] == {"replayed": 3}
    finally:
        running.close()
        publisher.close()
    audit = [json.loads(line) for line in
             (pipeline.commands_path(running.config).parent / "curtailment-actions.jsonl").read_text().splitlines()]
    commands = [(a["who"], a["action"], a["command"]) for a in audit if a["who"].startswith("MQTT ")]
    assert commands == [(f"MQTT {mode}", "control_mode", "the config's -> on"),
                        (f"MQTT {feed}", "dr_target", f"none -> limit 550 kW until {end}"),
                        (f"MQTT {feed}", "dr_target", f"limit 550 kW until {end} -> none (withdrawn)"),
                        (f"MQTT {kill}", "kill_switch", "OFF -> ON"),
                        (f"MQTT {mode}", "control_mode", "on -> dry_run")]
    assert fleet.commands() == []  # no price: a stale plan, nothing sent


def test_the_kill_switch_turned_on_while_the_collector_was_away_is_applied_when_the_broker_hands_it(persistent_broker, fleet):
    # Trial ZG H2: Home Assistant's switch ON, then OFF (retained, as it sends them); during a broker outage, ON again,
    # retained, before the collector reconnected: handed as the broker's copy, the same payload as the first ON, it
    # was dropped as a replay and control stayed un-killed.
    broker = persistent_broker
    site = unique("away")
    kill = Topics("hashfleet", site).curtailment_set("kill")
    publisher = Publisher(broker.host, broker.port)
    running = collector(broker, fleet, site, control={"mode": "dry_run", "allow": ["nobody"], "mqtt_commands": True})

    def killed(value: bool):
        return lambda r: r.curtailment is not None and r.curtailment.killed is value
    try:
        publisher.publish(kill, "ON", retain=True)
        running.next_result(killed(True), timeout=10, what="killed")
        publisher.publish(kill, "OFF", retain=True)
        running.next_result(killed(False), timeout=10, what="on again")
        publisher.close()
        connects = running.bridge.connection.connects
        port = broker.port
        broker.stop()  # (its retained OFF saved) and started where the collector does not look for it, meanwhile
        broker.port = free_ports(1, broker.host)[0]
        broker.start()
        away = Publisher(broker.host, broker.port)
        away.publish(kill, "ON", retain=True)
        away.close()
        broker.stop()
        broker.port = port
        broker.start()
        result = running.next_result(killed(True), timeout=30, what="the ON published while away, handed at the reconnect")
        assert running.bridge.connection.connects > connects
        assert "replayed" not in running.bridge.ingest.stats()["dropped"], result.counters
    finally:
        running.close()
    assert fleet.commands() == []


def test_commands_taken_from_a_broker_with_no_username_are_warned_about_at_start(mosquitto, fleet, caplog):
    # An anonymous broker lets anyone on the network set the kill switch, the mode and a 0.5 kW limit that
    # sleeps the fleet: nothing said so (trial T, 4).
    site = unique("anon")
    running = collector(mosquitto, fleet, site, control={"mode": "dry_run", "allow": ["*"], "mqtt_commands": True})
    running.close()
    said = [r.getMessage() for r in caplog.records if "with no username" in r.getMessage()]
    assert len(said) == 1 and "its kill switch, its mode (down to off), a demand-response limit" in said[0], said
    assert f"{mosquitto.host}:{mosquitto.port}" in said[0]
    mqtt = running.config.mqtt
    curtailment = running.config.curtailment
    assert pipeline.unguarded_commands(mqtt.model_copy(update={"username": "hashfleet"}), curtailment) is None
    off = curtailment.model_copy(update={"control": curtailment.control.model_copy(update={"mode": ControlMode.OFF})})
    assert pipeline.unguarded_commands(mqtt, off) is None  # nothing listened to: nothing to steer
