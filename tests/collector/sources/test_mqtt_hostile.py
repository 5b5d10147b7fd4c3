"""A hostile MQTT publisher: prices dated in the future or out of bounds, meter readings from the
future, and a flood of invented miner ids. What it must not get: a price held forever, a reading
fresh forever, memory, retained Home Assistant devices left behind, or the real miners' share of
the site's fixed costs. Unit tests first (no broker), then the attacks against the real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from tests.collector.mqtt_support import (
    LIVE_ECONOMICS,
    NETWORK,
    Publisher,
    RunningCollector,
    Subscriber,
    mqtt_config,
    unique,
)

from collector.cycle import Cycle
from collector.line_protocol import parse_line
from collector.sinks import points
from models.base import AHEAD_TOLERANCE_S
from collector.stages import cost_engine as cost
from collector.stages.cost_stage import CostStage
from collector.sources.live_inputs import LiveInputs, MeterReading
from collector.sinks import home_assistant as discovery
from collector.sources.mqtt_ingest import MqttIngest
from collector.mqtt.connection import MqttConnection
from collector.mqtt.topics import Topics
from models import (
    LivePowerPrice,
    MinerSample,
    MinerState,
    MqttConfig,
    NetworkFeedConfig,
    NetworkState,
    SampleSource,
    SiteEconomics,
)
from simulators.fleet import run_fleet
from simulators.mqtt_meter import format_mac
from simulators.mqtt_miner import MqttMiner, build_mqtt_miners

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
FUTURE = "2099-01-01T00:00:00Z"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_ingest(**extra) -> tuple[MqttIngest, LiveInputs, Clock]:
    cfg = MqttConfig.model_validate({"host": "b", "ingest": [
        {"topic": "dev/+/telemetry", "kind": "miner_telemetry"},
        {"topic": "pdu/+/outlet/+", "kind": "meter", "outlets": {"r1-1": "m1"}},
        {"topic": "price/power", "kind": "power_price"},
        {"topic": "price/btc", "kind": "btc_price"},
        {"topic": "site/dr", "kind": "dr_target"},
    ], **extra})
    live = LiveInputs(meter_max_age_s=cfg.meter_max_age_s)
    clock = Clock()
    return MqttIngest(cfg, "tx1", live, clock=clock), live, clock


def feed(ingest: MqttIngest, topic: str, payload) -> None:
    ingest.handle(topic, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


# --- timestamps and bounds ---------------------------------------------------------------------


def test_a_future_dated_power_price_is_refused_and_later_prices_are_used():
    ingest, live, clock = make_ingest()
    feed(ingest, "price/power", {"usd_per_kwh": -0.5, "ts": FUTURE})
    assert live.power_price is None and ingest.stats()["dropped"] == {"future_ts": 1}
    clock.now = T0 + timedelta(seconds=5)
    feed(ingest, "price/power", {"usd_per_kwh": 0.031})
    assert live.power_price.usd_per_kwh == 0.031 and live.power_price.as_of == clock.now


def test_a_timestamp_within_the_clock_skew_is_taken_as_the_arrival_time():
    ingest, live, clock = make_ingest(max_clock_skew_s=60)
    feed(ingest, "price/power", {"usd_per_kwh": 0.04, "ts": "2025-06-01T12:00:30Z"})  # 30 s ahead
    assert live.power_price.as_of == T0  # never in the future: its age is never negative
    feed(ingest, "price/power", {"usd_per_kwh": 0.05, "ts": "2025-06-01T12:01:01Z"})  # 61 s ahead
    assert live.power_price.usd_per_kwh == 0.04 and ingest.stats()["dropped"] == {"future_ts": 1}


@pytest.mark.parametrize(("payload", "accepted"), [
    ({"usd_per_kwh": -10}, False),  # the attack: -$11.8 million per BTC
    ({"usd_per_kwh": 25}, False),
    ({"usd_per_kwh": -0.25}, True),  # ERCOT's floor
    ({"usd_per_mwh": 5000}, True),  # ERCOT's cap
])
def test_power_prices_outside_the_configured_bounds_are_refused(payload, accepted):
    ingest, live, _ = make_ingest()
    feed(ingest, "price/power", payload)
    assert (live.power_price is not None) is accepted
    assert ingest.stats()["dropped"] == ({} if accepted else {"out_of_bounds": 1})


def test_the_power_price_bounds_are_configurable():
    ingest, live, _ = make_ingest(power_price_min_usd_kwh=-20, power_price_max_usd_kwh=50)
    feed(ingest, "price/power", {"usd_per_kwh": -10})
    assert live.power_price.usd_per_kwh == -10


@pytest.mark.parametrize(("topic", "payload"), [
    ("price/power", {"usd_per_kwh": True}),  # lax pydantic read a price of 1.0 $/kWh
    ("price/power", {"usd_per_kwh": "1e1"}),  # ... and of 10 $/kWh
    ("price/power", {"usd_per_mwh": "40"}),
    ("price/btc", {"usd": "95000"}),
    ("pdu/r1/outlet/1", {"outlet": "r1-1", "watts": True}),  # a 1 W miner, a 3,448 W meter gap
    ("pdu/r1/outlet/1", {"outlet": "r1-1", "watts": "2500"}),
    ("dev/x/telemetry", {"hashrate_ths": 1.5, "port": "1883"}),  # telemetry's: only where it says which miner
])
def test_a_switch_or_a_string_where_a_number_belongs_is_invalid(topic, payload):
    ingest, live, _ = make_ingest()
    feed(ingest, topic, payload)
    assert ingest.stats()["dropped"] == {"invalid": 1}
    assert live.power_price is None and live.btc_price_usd is None and live.metered_power("m1", T0) is None
    assert ingest.cycle_samples(T0, []) == []


@pytest.mark.parametrize(("payload", "state", "refused"), [
    ({"hashrate_ths": True, "power_w": 18}, MinerState.ERROR, {"hashrate_ths": "hashrate_ths: True is not a number"}),
    ({"hashrate_ths": "1.5", "power_w": "18"}, MinerState.ERROR,
     {"hashrate_ths": "hashrate_ths: '1.5' is not a number", "power_w": "power_w: '18' is not a number"}),
    ({"hashrate_ths": 1.5, "temp_chip_max_c": "80"}, MinerState.MINING,
     {"temp_chip_max_c": "temp_chip_max_c: '80' is not a number"}),
    ({"hashrate_ths": 1.5, "boards": [{"index": 0, "hashrate_ths": 1.5}, {"index": 1, "hashrate_ths": True}]},
     MinerState.MINING, {"boards": "boards: board 1: hashrate_ths: True is not a number"}),
])
def test_a_switch_or_a_string_where_a_telemetry_reading_belongs_costs_that_reading(payload, state, refused):
    # Telemetry's readings were dropped with the whole payload (`invalid`): the miner went stale, then offline.
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", payload)
    [sample] = ingest.cycle_samples(T0, [])
    assert sample.state is state and sample.unusable == list(refused) and sample.errors == list(refused.values())
    assert all(getattr(sample, name) in (None, []) for name in refused)
    assert ingest.stats()["dropped"] == {} and ingest.stats()["fields_refused"] == dict.fromkeys(refused, 1)


def _with_every_reading_bad() -> dict:
    bad = {name: "x" * 300 for name in ("make", "model", "firmware", "mac", "work_mode")}
    bad |= {name: -1 for name in ("hashrate_ths", "hashrate_avg_ths", "expected_hashrate_ths", "power_w",
                                  "power_limit_w", "efficiency_j_th", "uptime_s", "hw_error_pct")}
    bad |= {name: 1e400 for name in ("temp_env_c", "temp_chip_max_c", "temp_board_max_c")}
    bad |= {"fans_rpm": [-1] * 20_000, "boards": [{"index": i, "temp_in_c": "hot"} for i in range(1000)],
            "pool": {"url": "\x1b[31m" * 100}, "errors": ["e"] * 1000, "warnings": ["w" * 501],
            "fault_codes": [{"key": "k"}], "unusable": "all"}
    return bad


def test_telemetry_with_every_reading_bad_is_still_a_sample_with_bounded_printable_reasons():
    # 23 readings, a 20,000-entry fan list, 1,000 bad boards: each field is named once, the lists stay capped.
    ingest, _, _ = make_ingest(max_payload_bytes=512 * 1024)
    payload = json.dumps(_with_every_reading_bad()).replace("Infinity", "1e400").encode()  # (JSON reads it as inf)
    feed(ingest, "dev/x/telemetry", payload)
    [sample] = ingest.cycle_samples(T0, [])
    assert sample.state is MinerState.ERROR and sample.hashrate_ths is None and sample.boards == []
    assert sorted(sample.unusable) == sorted(_with_every_reading_bad())
    assert len(sample.errors) == 23 and all(e.isprintable() and len(e) < 200 for e in sample.errors), sample.errors
    assert ingest.stats()["fields_refused"] == dict.fromkeys(sample.unusable, 1)


@pytest.mark.parametrize("payload", [
    {"hashrate_ths": 1.5, "hashrat_ths": 1.5},  # a publisher's typo stays loud
    {"hashrate_ths": 1.5, **{f"k{i}": -1 for i in range(5000)}},
    {"hashrate_ths": 1.5, "fans_rpm": [-1], "boards": [{"index": 0, "temp_in": 50}]},  # at any depth
    {"hashrate_ths": 1.5, "pool": {"url": "u", "acepted": 3}},
    {"hashrate_ths": 1.5, "state": "dancing"},
    {"hashrate_ths": 1.5, "ts": "yesterday"},
    {"hashrate_ths": 1.5, "ts": "2025-06-01T12:00:00"},  # no time zone
    {"hashrate_ths": 1.5, "miner": ""},
    {"hashrate_ths": 1.5, "miner": 7},
    {"hashrate_ths": 1.5, "host": "h" * 300},
])
def test_telemetry_that_is_no_miner_reading_is_still_dropped_whole(payload):
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", payload)
    assert ingest.cycle_samples(T0, []) == [] and ingest.stats()["dropped"] == {"invalid": 1}
    assert ingest.stats()["fields_refused"] == {} and ingest.stats()["miners"] == 0


def test_a_meter_reading_no_outlet_could_show_is_refused():
    ingest, live, _ = make_ingest()
    feed(ingest, "pdu/r1/outlet/1", {"outlet": "r1-1", "watts": 1e9})  # 1 GW on one miner's outlet
    assert live.metered_power("m1", T0) is None and ingest.stats()["dropped"] == {"out_of_bounds": 1}
    feed(ingest, "pdu/r1/outlet/1", {"outlet": "r1-1", "watts": 3412.5})
    assert live.metered_power("m1", T0) == 3412.5
    feed(ingest, "dev/x/telemetry", {"hashrate_ths": 1.5, "power_w": 18, "state": "mining",
                                     "ts": "2025-06-01T12:00:00Z"})  # numbers, words and times as JSON has them
    assert [(s.miner, s.hashrate_ths, s.state) for s in ingest.cycle_samples(T0, [])] == [("x", 1.5, MinerState.MINING)]


def test_btc_prices_from_the_future_or_out_of_bounds_are_refused():
    ingest, live, clock = make_ingest(btc_price_min_usd=10_000, btc_price_max_usd=1_000_000)
    feed(ingest, "price/btc", {"usd": 95_000.0, "ts": FUTURE})
    feed(ingest, "price/btc", {"usd": 5})
    feed(ingest, "price/btc", 2e6)
    assert live.btc_price_usd is None
    assert ingest.stats()["dropped"] == {"future_ts": 1, "out_of_bounds": 2}
    feed(ingest, "price/btc", {"usd": 97_000.0, "ts": "2025-06-01T11:59:00Z"})
    assert (live.btc_price_usd, live.btc_price_as_of) == (97_000.0, T0 - timedelta(minutes=1))


def _btc_used(ingest: MqttIngest, network: NetworkState, at: datetime = T0) -> tuple[float, list[str]]:
    """The BTC price a cycle at `at` costs and plans with, and what is stale, after the ingest announced."""
    cycle = Cycle("tx1", at, network=network)
    asyncio.run(ingest.announce(cycle))
    return cycle.network.btc_price_usd, cycle.network.stale


def test_a_btc_price_far_from_the_network_sources_fresh_price_is_not_used():
    # Trial H, M2: one $1,000 message (inside the bounds) made the plan put every miner to sleep.
    ingest, _, _ = make_ingest()
    fetched = NetworkState(difficulty=1.5e14, height=925_000, btc_price_usd=100_000, btc_price_as_of=T0)
    feed(ingest, "price/btc", 1_000)
    assert _btc_used(ingest, fetched) == (100_000, [])  # the network's fresh price stands: nothing to hold
    feed(ingest, "price/btc", 1_000)  # repeating it does not confirm it against a fetched price
    assert _btc_used(ingest, fetched) == (100_000, [])
    feed(ingest, "price/btc", 140_000)  # within 50 %
    assert _btc_used(ingest, fetched) == (140_000, [])
    # The network's price stale (older than its max age): the reference is the last live price used.
    stale = fetched.model_copy(update={"stale": ["btc_price"]})
    feed(ingest, "price/btc", 60_000)  # 57 % down from 140,000: held
    assert _btc_used(ingest, stale) == (100_000, ["btc_price"])
    feed(ingest, "price/btc", 61_000)  # the feed's next price confirms the move
    assert _btc_used(ingest, stale) == (61_000, [])


def test_a_price_held_from_the_future_does_not_block_later_prices():
    """The clock stepped back (NTP, a VM restored): the price it holds is 'newer' than any to come."""
    ingest, live, clock = make_ingest()
    live.power_price = LivePowerPrice(usd_per_kwh=9.0, as_of=T0 + timedelta(hours=1))
    feed(ingest, "price/power", {"usd_per_kwh": 0.03})
    assert live.power_price.usd_per_kwh == 0.03


def test_a_demand_response_target_without_a_start_may_not_run_for_more_than_a_week():
    # With no start it runs from now: an end of 2099 would shed the site for ever.
    ingest, live, clock = make_ingest()
    feed(ingest, "site/dr", {"limit_kw": 5, "end": FUTURE})
    assert list(live.curtailment.dr_targets) == [] and ingest.stats()["dropped"] == {"out_of_bounds": 1}
    week = clock.now + timedelta(days=7)
    feed(ingest, "site/dr", {"limit_kw": 5, "end": week.isoformat()})
    assert [t.end for t in live.curtailment.dr_targets] == [week]


def test_a_demand_response_target_may_start_at_most_a_week_ahead():
    # Trial H1: a target for 2099 was taken (only its window's length was checked).
    ingest, live, clock = make_ingest()
    feed(ingest, "site/dr", {"shed_kw": 5, "start": "2098-12-25T00:00:00Z", "end": FUTURE})
    assert list(live.curtailment.dr_targets) == [] and ingest.stats()["dropped"] == {"out_of_bounds": 1}
    start = clock.now + timedelta(days=7)
    feed(ingest, "site/dr", {"shed_kw": 5, "start": start.isoformat(), "end": (start + timedelta(days=7)).isoformat()})
    assert [t.start for t in live.curtailment.dr_targets] == [start]


def test_meter_readings_from_the_future_are_refused():
    ingest, live, _ = make_ingest()
    feed(ingest, "pdu/r1/outlet/1", {"outlet": "r1-1", "watts": 3000, "ts": FUTURE})
    assert live.metered_power("m1", T0 + timedelta(days=365 * 70)) is None
    assert ingest.stats()["dropped"] == {"future_ts": 1}


def test_deeply_nested_json_is_dropped_as_not_json():
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", b"[" * 60_000)
    assert ingest.stats()["dropped"] == {"not_json": 1}


def test_telemetry_from_the_future_is_refused():
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", {"hashrate_ths": 1.0, "ts": FUTURE})
    assert ingest.cycle_samples(T0, []) == [] and ingest.stats()["dropped"] == {"future_ts": 1}


def test_a_meter_reading_with_a_negative_age_is_not_fresh():
    live = LiveInputs(meter_max_age_s=120)
    live.metered_w["m1"] = MeterReading(3000.0, T0 + timedelta(days=365))
    assert live.metered_power("m1", T0) is None  # before the fix: fresh for a year and 120 s
    live.metered_w["m1"] = MeterReading(3000.0, T0 + timedelta(seconds=AHEAD_TOLERANCE_S + 1))
    assert live.metered_power("m1", T0) is None
    # Within the tolerance (a reading that arrived during the cycle, after its whole-second timestamp):
    live.metered_w["m1"] = MeterReading(3000.0, T0 + timedelta(seconds=0.7))
    assert live.metered_power("m1", T0) == 3000.0
    assert live.metered_power("m1", T0 + timedelta(seconds=120.7)) == 3000.0
    assert live.metered_power("m1", T0 + timedelta(seconds=120.8)) is None


def test_a_live_price_with_a_negative_age_is_not_used():
    economics = SiteEconomics.model_validate(LIVE_ECONOMICS)
    ahead = LivePowerPrice(usd_per_kwh=-0.5, as_of=T0 + timedelta(days=1))
    price = cost.power_price_at(economics, T0, ahead)
    assert price.stale and price.usd_per_kwh == 0.05  # the fallback


# --- a flood of invented ids -------------------------------------------------------------------


def test_mqtt_miner_ids_are_capped():
    ingest, _, _ = make_ingest(telemetry_max_miners=3)
    for i in range(5):
        feed(ingest, f"dev/m{i}/telemetry", {"hashrate_ths": 1.0})
    feed(ingest, "dev/m0/telemetry", {"hashrate_ths": 2.0})  # a known id keeps its slot
    assert sorted(s.miner for s in ingest.cycle_samples(T0, [])) == ["m0", "m1", "m2"]
    assert ingest.stats()["dropped"] == {"too_many_miners": 2} and ingest.stats()["miners"] == 3


def test_silent_ids_are_evicted_and_free_their_slots():
    ingest, live, clock = make_ingest(telemetry_max_miners=2, telemetry_max_age_s=30, telemetry_evict_after_s=300)
    feed(ingest, "dev/a/telemetry", {"hashrate_ths": 1.0})
    feed(ingest, "dev/b/telemetry", {"hashrate_ths": 1.0})
    clock.now = T0 + timedelta(seconds=200)
    feed(ingest, "dev/b/telemetry", {"hashrate_ths": 1.0})
    offline = {s.miner: s.state for s in ingest.cycle_samples(clock.now, [])}
    assert offline == {"a": MinerState.OFFLINE, "b": MinerState.MINING}  # silent, not yet forgotten
    assert ingest.take_evicted() == []

    clock.now = T0 + timedelta(seconds=301)
    assert [s.miner for s in ingest.cycle_samples(clock.now, [])] == ["b"]
    assert ingest.take_evicted() == ["a"] and ingest.take_evicted() == []
    feed(ingest, "dev/c/telemetry", {"hashrate_ths": 1.0})  # a's slot is free again
    assert sorted(s.miner for s in ingest.cycle_samples(clock.now, [])) == ["b", "c"]
    assert ingest.stats()["evicted_total"] == 1


def test_telemetry_ages_from_its_ts_and_an_older_one_is_ignored():
    ingest, _, _ = make_ingest(telemetry_max_age_s=60)
    dated = lambda seconds_ago: (T0 - timedelta(seconds=seconds_ago)).isoformat()  # noqa: E731
    feed(ingest, "dev/a/telemetry", {"hashrate_ths": 1.0, "ts": dated(50), "make": "Bitaxe", "model": "Gamma"})
    feed(ingest, "dev/b/telemetry", {"hashrate_ths": 1.0, "ts": dated(2 * 86400)})  # two days: never mines
    feed(ingest, "dev/a/telemetry", {"hashrate_ths": 9.0, "ts": dated(55)})  # before the one held
    assert ingest.stats()["dropped"] == {"stale": 1, "older": 1} and ingest.stats()["miners"] == 1
    assert [(s.miner, s.hashrate_ths) for s in ingest.cycle_samples(T0, [])] == [("a", 1.0)]
    # 11 s after it arrived, a is 61 s old by its ts: offline (counted from arrival it was mining 49 s more).
    [a] = ingest.cycle_samples(T0 + timedelta(seconds=11), [])
    assert a.state is MinerState.OFFLINE and "61 s" in a.errors[0]
    assert (a.make, a.model) == ("Bitaxe", "Gamma")  # as last read: one series per miner


def test_an_allow_list_drops_every_other_id_and_marks_the_listed_ones_verified():
    ingest, live, _ = make_ingest(allowed_miners=["bitaxe-7", "AA:BB:CC:00:11:99"])
    feed(ingest, "dev/bitaxe-7/telemetry", {"hashrate_ths": 1.2})  # the topic key is listed
    feed(ingest, "dev/x/telemetry", {"miner": "AA:BB:CC:00:11:99", "hashrate_ths": 1.0})  # the id is
    feed(ingest, "dev/intruder/telemetry", {"hashrate_ths": 1000.0})
    feed(ingest, "dev/bitaxe-7/telemetry", {"miner": "invented", "hashrate_ths": 1.0})  # the key admits it
    assert sorted(s.miner for s in ingest.cycle_samples(T0, [])) == ["AA:BB:CC:00:11:99", "bitaxe-7", "invented"]
    assert ingest.stats()["dropped"] == {"not_allowed": 1}
    # ... but vouches for no id but its own: the trial's 500 ids on one listed key were all "verified".
    assert live.verified_mqtt_miners == {"bitaxe-7", "AA:BB:CC:00:11:99"}


@pytest.mark.parametrize("miner", ["evil\x01id", "nul\x00id", "line\nbreak", "del\x7fid", "c1\x85id",
                                   "nonchar\uffffid", "fdd0\ufdd0id", "bidi\u202eid", "zero\u200bwidth"])
def test_a_miner_id_with_a_control_or_other_unprintable_character_is_refused(miner):
    # No device names itself so: it forged log lines, and became a topic Mosquitto refuses (trial H C1).
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", {"miner": miner, "hashrate_ths": 1.0, "power_w": 10.0})
    assert ingest.cycle_samples(T0, []) == [] and ingest.stats()["dropped"] == {"invalid": 1}
    assert ingest.stats()["miners"] == 0  # it holds no slot


@pytest.mark.parametrize("miner", ["rack1/m1", "Rig 1 (top)", "矿机-1", "bitaxe-7"])
def test_a_printable_miner_id_is_accepted(miner):
    ingest, _, _ = make_ingest()
    feed(ingest, "dev/x/telemetry", {"miner": miner, "hashrate_ths": 1.0})
    assert [s.miner for s in ingest.cycle_samples(T0, [])] == [miner]


def _sample(miner: str, source: SampleSource, **fields) -> MinerSample:
    return MinerSample(miner=miner, host="10.0.0.5", site="tx1", ts=T0, state=MinerState.MINING, source=source,
                       hashrate_ths=100.0, power_w=3000.0, **fields)


def _stage(live: LiveInputs) -> CostStage:
    economics = SiteEconomics.model_validate({"tariff": {"kind": "flat", "usd_per_kwh": 0.05},
                                              "opex_usd_month": 3000, "overhead_w": 1000})
    return CostStage("tx1", economics, live=live)


def _costing(stage: CostStage, samples: list[MinerSample], verified: set[str] = frozenset()):
    """The stage's work on a cycle of `samples`, announced as the sources announce them: polled miners
    and verified (allow-listed) MQTT miners carry the fixed costs, other MQTT miners do not."""
    cycle = Cycle("tx1", T0, network=NetworkFeedConfig.model_validate(NETWORK).static)
    for sample in samples:
        cycle.expect(sample.miner, carries_fixed_costs=sample.source is not SampleSource.MQTT or sample.miner in verified)
    return stage.costing(cycle)


def test_unverified_mqtt_miners_get_no_share_of_the_fixed_costs():
    stage = _stage(LiveInputs())
    polled = [_sample(f"p{i}", SampleSource.AVALON) for i in range(2)]
    flood = [_sample(f"x{i}", SampleSource.MQTT) for i in range(100)]
    costing = _costing(stage, [*polled, *flood, _sample("listed", SampleSource.MQTT)], {"listed"})
    figures = {c.miner: c for c in costing.miners([*polled, *flood, _sample("listed", SampleSource.MQTT)])}
    full = 3000 / cost.DAYS_PER_MONTH
    assert figures["p0"].opex_usd_day == pytest.approx(full / 3) and figures["listed"].opex_usd_day == pytest.approx(full / 3)
    assert figures["x0"].opex_usd_day == 0 and figures["x0"].facility_power_w == 3000.0  # no overhead share
    assert sum(c.opex_usd_day for c in figures.values()) == pytest.approx(full)


def test_without_any_verified_miner_every_miner_shares_the_fixed_costs():
    stage = _stage(LiveInputs())
    samples = [_sample(f"x{i}", SampleSource.MQTT) for i in range(4)]
    figures = _costing(stage, samples).miners(samples)
    assert [c.opex_usd_day for c in figures] == pytest.approx([3000 / cost.DAYS_PER_MONTH / 4] * 4)


def test_running_totals_give_unverified_miners_no_share_of_opex():
    stage = _stage(LiveInputs())
    polled, invented = _sample("p0", SampleSource.AVALON), _sample("x0", SampleSource.MQTT)
    economics = stage.economics
    network = NetworkFeedConfig.model_validate(NETWORK).static
    totals = cost.advance(None, [polled, invented], economics, network, T0, T0 + timedelta(hours=1),
                          carries=_costing(stage, [polled, invented]).carries)
    assert totals.today["x0"].opex_usd == 0 and totals.today["p0"].opex_usd > 0


# --- against the real Mosquitto ----------------------------------------------------------------


def test_a_future_dated_price_over_mqtt_is_refused_and_later_prices_reach_the_cost(mosquitto):
    site = unique("future")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    with run_fleet("a1566:1", base="127.45.6.1:0", seed=31) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": LIVE_ECONOMICS,
            "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[
                {"topic": f"{feeds}/power", "kind": "power_price"}, {"topic": f"{feeds}/btc", "kind": "btc_price"}]),
        })
        publisher = Publisher(mosquitto.host, mosquitto.port)
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        try:
            collector.next_result(lambda r: r.cost is not None)
            publisher.publish(f"{feeds}/power", {"usd_per_kwh": -10, "ts": FUTURE})  # as in the attack (issue 13)
            publisher.publish(f"{feeds}/power", {"usd_per_kwh": 0.5, "ts": FUTURE})  # a plausible price, dated 2099
            publisher.publish(f"{feeds}/btc", {"usd": 1000.0, "ts": FUTURE})
            report = health.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= 3)
            assert report["ingest"]["dropped"] == {"out_of_bounds": 1, "future_ts": 2}

            publisher.publish(f"{feeds}/power", {"usd_per_kwh": 0.031})
            publisher.publish(f"{feeds}/btc", {"usd": 123456.0})
            result = collector.next_result(
                lambda r: r.cost is not None and r.cost.site.power_price_usd_kwh == pytest.approx(0.031)
                and r.network.btc_price_usd == 123456.0, what="the correct prices in the cost figures")
            site_cost = result.cost.site
            assert "power_price" not in site_cost.stale_inputs
            assert site_cost.energy_usd_day == pytest.approx(site_cost.energy_kwh_day * 0.031)
            assert site_cost.all_in_cost_per_btc > 0
            # The `collector` point counts what the ingest did with them (issue 16 item 11).
            counted = collector.next_result(lambda r: r.counters.get("mqtt_accepted", 0) >= 2, what="the counters")
            health_line = parse_line(points.cycle_lines(counted.result)[-1])
            assert health_line.measurement == "collector"
            assert health_line.fields["mqtt_refused"] == 3 and health_line.fields["mqtt_accepted"] >= 2
            assert health_line.fields["mqtt_malformed"] == 0 and health_line.fields["mqtt_limited"] == 0
        finally:
            health.close()
            publisher.close()
            collector.close()


def _flood_collector(mosquitto, site: str, feeds: str, fleet, **mqtt) -> RunningCollector:
    economics = {"tariff": {"kind": "flat", "usd_per_kwh": 0.05}, "opex_usd_month": 3000}
    # QoS 0 to the collector: Mosquitto never drops QoS 0 to a connected client for queue limits.
    return RunningCollector({
        "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": economics, "network": NETWORK,
        "mqtt": mqtt_config(mosquitto.host, mosquitto.port, **mqtt,
                            ingest=[{"topic": f"{feeds}/miner/+", "kind": "miner_telemetry", "qos": 0}]),
    })


def _retained(mosquitto, filters: list[str], marker: str) -> list:
    """Every retained message on `filters` now: subscribe, then wait for a marker published after the
    SUBACK (the broker sends a subscription's retained messages before anything published later)."""
    watcher = Subscriber(mosquitto.host, mosquitto.port, [*filters, marker])
    publisher = Publisher(mosquitto.host, mosquitto.port)
    try:
        publisher.publish(marker, b"end")
        watcher.wait_for(lambda m: m.topic == marker, what="the marker")
        return [m for m in watcher.seen if m.retain and m.payload]
    finally:
        publisher.close()
        watcher.close()


def test_a_flood_of_invented_miner_ids_is_capped_evicted_and_leaves_nothing_behind(mosquitto):
    site = unique("idflood")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    flood_ids = [f"invented-{i:05d}" for i in range(3000)]
    node = discovery.miner_node_id(site, "invented-")  # every flood device's node id starts so
    watched = ["homeassistant/sensor/+/+/config", f"hashfleet/{site}/miner/+/state"]
    configs: dict[str, bytes] = {}  # flood discovery topic -> latest payload

    def flood_configs(message) -> bool:
        if message.topic.startswith(f"homeassistant/sensor/{node}"):
            configs[message.topic] = message.payload
        return False

    with run_fleet("nano3s:1", base="127.45.6.17:0", seed=32) as fleet:
        collector = _flood_collector(mosquitto, site, feeds, fleet, telemetry_max_miners=100,
                                     telemetry_max_age_s=1, telemetry_evict_after_s=3)
        publisher = Publisher(mosquitto.host, mosquitto.port)
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        discovered = Subscriber(mosquitto.host, mosquitto.port, watched[:1])
        try:
            before = collector.next_result(lambda r: r.cost is not None)
            [polled] = before.miner_costs
            share_before = polled.opex_usd_day
            assert share_before == pytest.approx(3000 / cost.DAYS_PER_MONTH)

            publisher.publish_many([(f"{feeds}/miner/{m}", {"hashrate_ths": 5.0, "power_w": 90.0}) for m in flood_ids])
            # Never more than 100 held. A held id gone offline (1 s here) gives its slot to a newcomer, so
            # how many of the 3,000 were taken, and how many dropped, depends on how long the flood took.
            report = health.wait_json(topics.collector, lambda d: d["ingest"]["accepted_total"]
                                      + d["ingest"]["dropped_total"] >= 3000, timeout=30)
            taken = report["ingest"]["accepted_total"]
            assert report["ingest"]["dropped"] == {"too_many_miners": 3000 - taken} and taken >= 100
            assert report["ingest"]["miners"] == 100
            flooded = collector.next_result(lambda r: len(r.samples) == 101, what="a cycle with the capped flood")
            costs = {c.miner: c for c in flooded.miner_costs}
            assert costs[polled.miner].opex_usd_day == pytest.approx(share_before)  # not diluted 101-fold
            assert all(c.opex_usd_day == 0 for m, c in costs.items() if m != polled.miner)
            assert flooded.cost.site.opex_usd_day == pytest.approx(share_before)
            discovered.wait_for(lambda m: flood_configs(m) or sum(map(bool, configs.values())) == 100 * 5,
                                what="discovery of the 100 ids held")

            # Silent for 3 s: forgotten, and their retained discovery and state cleared on the broker.
            discovered.wait_for(lambda m: flood_configs(m) or not any(configs.values()), timeout=30,
                                what="empty retained messages on every flood discovery topic")
            assert health.wait_json(topics.collector, lambda d: d["ingest"]["evicted_total"] >= taken)[
                "ingest"]["evicted_total"] == taken  # each id taken, forgotten once (evicted or its slot given up)
            left = _retained(mosquitto, watched, f"markers/{site}")
            assert [m.topic for m in left if "invented" in m.topic] == []
            assert any(m.topic == topics.miner_state(polled.miner) for m in left)  # the real miner stays
            assert not [t for t in collector.bridge.connection._retained if "invented" in t]  # nothing to replay

            # The slots are free again.
            publisher.publish(f"{feeds}/miner/late-comer", {"hashrate_ths": 5.0})
            collector.next_result(lambda r: any(s.miner == "late-comer" for s in r.samples), what="a new MQTT miner")
        finally:
            discovered.close()
            health.close()
            publisher.close()
            collector.close()


def test_ids_invented_before_a_restart_are_cleared_from_the_broker_by_the_run_after(mosquitto):
    # Trial ZG M2: ids a publisher invented (one message each) kept their retained state and every Home Assistant
    # config on the broker for good once the collector restarted before evicting them: each run cleared only what
    # it had forgotten itself. The ids held are kept on disk; the next run forgets the silent ones and clears them.
    site = unique("ghosts")
    feeds = f"feeds/{site}"
    ghosts = ["evil id", "rack1_x", "ghost-3"]
    watched = ["homeassistant/+/+/+/config", f"hashfleet/{site}/miner/+/+"]
    nodes = [discovery.miner_node_id(site, ghost) for ghost in ghosts]

    def ghost_topics() -> list[str]:
        return sorted(m.topic for m in _retained(mosquitto, watched, f"markers/{site}")
                      if any(node in m.topic for node in nodes) or any(f"/miner/{g}/" in m.topic for g in ghosts))
    with run_fleet("nano3s:1", base="127.45.6.49:0", seed=34) as fleet:
        first = _flood_collector(mosquitto, site, feeds, fleet, telemetry_evict_after_s=3600)
        publisher = Publisher(mosquitto.host, mosquitto.port)
        try:
            publisher.publish_many([(f"{feeds}/miner/{g}", {"hashrate_ths": 5.0, "power_w": 90.0}) for g in ghosts])
            first.next_result(lambda r: len(r.samples) == 4, what="the invented ids in a cycle")
            first.next_result()  # (their discovery published with that cycle's messages)
        finally:
            first.close()
        left = ghost_topics()
        assert len(left) >= 3 * 6, left  # each id's state, cost and Home Assistant configs, retained
        second = _flood_collector(mosquitto, site, feeds, fleet, telemetry_max_age_s=1, telemetry_evict_after_s=2)
        try:
            second.next_result(lambda r: second.bridge.ingest.stats()["evicted_total"] == 0 and r.cost is not None)
            assert second.bridge.ingest.stats()["miners"] == 0
            second.next_result(lambda r: not second.bridge.ingest._before, timeout=20, what="the run before's ids forgotten")
            second.next_result()  # (the empty retained messages go out with the next cycle's)
            assert ghost_topics() == []
            publisher.publish(f"{feeds}/miner/ghost-3", {"hashrate_ths": 5.0})  # an id heard again is held as any
            second.next_result(lambda r: any(s.miner == "ghost-3" for s in r.samples), what="ghost-3 back")
        finally:
            second.close()
            publisher.close()


def test_with_an_allow_list_only_listed_mqtt_miners_join_and_share_the_fixed_costs(mosquitto):
    site = unique("allow")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    with run_fleet("nano3s:1", base="127.45.6.33:0", seed=33) as fleet:
        collector = _flood_collector(mosquitto, site, feeds, fleet, allowed_miners=["bitaxe-7"])
        publisher = Publisher(mosquitto.host, mosquitto.port)
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        try:
            collector.next_result()
            publisher.publish_many([(f"{feeds}/miner/invented-{i}", {"hashrate_ths": 5.0}) for i in range(500)])
            publisher.publish(f"{feeds}/miner/bitaxe-7", {"hashrate_ths": 1.2, "power_w": 18.0})
            report = health.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= 500)
            assert report["ingest"]["dropped"] == {"not_allowed": 500}
            result = collector.next_result(lambda r: r.cost is not None and len(r.samples) == 2,
                                           what="the listed MQTT miner in a cycle")
            shares = {c.miner: c.opex_usd_day for c in result.miner_costs}
            assert shares == pytest.approx({m: 3000 / cost.DAYS_PER_MONTH / 2 for m in shares})

            # The listed key's topic carries 50 invented ids (trial H, M1): admitted, but they share nothing.
            # Counted as verified, they cut each real miner's opex share to 1/52 ($0.99 -> $0.09 a day there).
            invented = [(f"{feeds}/miner/bitaxe-7", {"miner": f"made-up-{i}", "hashrate_ths": 0.001, "power_w": 1.0})
                        for i in range(50)]
            publisher.publish_many(invented)
            result = collector.next_result(lambda r: r.cost is not None and len(r.samples) == 52,
                                           what="the 50 ids from the listed key in a cycle")
            shares = {c.miner: c.opex_usd_day for c in result.miner_costs}
            real = {m: v for m, v in shares.items() if not m.startswith("made-up-")}
            assert len(real) == 2 and "bitaxe-7" in real
            assert real == pytest.approx({m: 3000 / cost.DAYS_PER_MONTH / 2 for m in real})
            assert {v for m, v in shares.items() if m.startswith("made-up-")} == {0}
        finally:
            health.close()
            publisher.close()
            collector.close()


def test_an_mqtt_id_can_neither_share_nor_take_over_another_miners_home_assistant_device(mosquitto):
    # A slug folds case and punctuation: `Rig.1` and `rig_1` shared one device, and a publisher naming
    # itself as the slug of a polled miner's MAC took over that miner's device; once the impostor went
    # silent its eviction cleared the configs, and Home Assistant deleted the device of a live miner.
    site = unique("hijack")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    with run_fleet("nano3s:1", base="127.45.6.49:0", seed=34) as fleet:
        collector = _flood_collector(mosquitto, site, feeds, fleet, telemetry_max_age_s=1, telemetry_evict_after_s=3)
        publisher = Publisher(mosquitto.host, mosquitto.port)
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        configs = Subscriber(mosquitto.host, mosquitto.port, ["homeassistant/sensor/+/power/config"])
        try:
            [polled] = collector.next_result(lambda r: r.samples and ":" in r.samples[0].miner).samples
            impostor = polled.miner.lower().replace(":", "_")
            telemetry = {"hashrate_ths": 1.2, "power_w": 18.0}
            publisher.publish_many([(f"{feeds}/miner/{m}", telemetry) for m in ("Rig.1", "rig_1", impostor)])

            def owners() -> dict[str, str]:  # unique_id -> the state topic its config reads
                latest = {m.topic: m.payload for m in configs.seen}
                return {json.loads(p)["unique_id"]: json.loads(p)["state_topic"] for p in latest.values() if p}

            # Each its own device: one id's config does not replace another's (their unique_ids differ).
            each = {topics.miner_state(m) for m in (polled.miner, "Rig.1", "rig_1", impostor)}
            configs.wait_for(lambda m: each <= set(owners().values()), what="a power config for each of the four")
            # Rig.1 and the impostor go silent and are evicted; rig_1 keeps publishing, once a cycle.
            def rig_1_publishes_until_two_are_evicted(report) -> bool:
                publisher.publish(f"{feeds}/miner/rig_1", telemetry)
                return report["ingest"]["evicted_total"] >= 2
            health.wait_json(topics.collector, rig_1_publishes_until_two_are_evicted, timeout=30)
            left = {json.loads(m.payload)["state_topic"] for m in
                    _retained(mosquitto, ["homeassistant/sensor/+/power/config"], f"markers/{site}")
                    if json.loads(m.payload)["state_topic"].startswith(f"{topics.root}/miner/")}
            assert left == {topics.miner_state(polled.miner), topics.miner_state("rig_1")}
        finally:
            configs.close()
            health.close()
            publisher.close()
            collector.close()


def test_a_retained_reading_without_a_ts_is_not_fresh_again_at_every_start(mosquitto):
    # The broker hands a retained message to every new subscription: dated at arrival, a dead feed's last
    # price was a fresh live price again at each start and reconnect, a long-gone MQTT miner was mining.
    site = unique("retained")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    publisher = Publisher(mosquitto.host, mosquitto.port)
    publisher.publish(f"{feeds}/power", {"usd_per_kwh": 0.001}, retain=True)  # undated: refused
    publisher.publish(f"{feeds}/btc", 9_000_000, retain=True)  # a bare number is undated too
    publisher.publish(f"{feeds}/miner/ghost", {"hashrate_ths": 200, "power_w": 3500}, retain=True)
    dated = datetime.now(timezone.utc).isoformat()
    publisher.publish(f"{feeds}/miner/dated", {"hashrate_ths": 1.2, "power_w": 18, "ts": dated}, retain=True)
    with run_fleet("a1566:1", base="127.45.6.65:0", seed=35) as fleet:
        collector = RunningCollector({
            "site": site, "miners": fleet.addresses, "interval_s": 1, "economics": LIVE_ECONOMICS,
            "network": NETWORK, "mqtt": mqtt_config(mosquitto.host, mosquitto.port, ingest=[
                {"topic": f"{feeds}/power", "kind": "power_price"}, {"topic": f"{feeds}/btc", "kind": "btc_price"},
                {"topic": f"{feeds}/miner/+", "kind": "miner_telemetry"}]),
        })
        health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
        try:
            report = health.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= 3)
            assert report["ingest"]["dropped"] == {"retained_undated": 3}
            result = collector.next_result(lambda r: r.cost is not None and any(s.miner == "dated" for s in r.samples),
                                           what="a cycle with the dated retained miner")
            assert "ghost" not in {s.miner for s in result.samples}
            assert result.cost.site.power_price_usd_kwh != pytest.approx(0.001)  # the fallback, not the dead feed's
            assert result.network.btc_price_usd != 9_000_000
            # Published live (not retained), an undated reading is dated at arrival as before.
            publisher.publish(f"{feeds}/power", {"usd_per_kwh": 0.031})
            collector.next_result(lambda r: r.cost is not None and r.cost.site.power_price_usd_kwh == pytest.approx(0.031),
                                  what="a live undated price in the cost figures")
        finally:
            health.close()
            collector.close()
            for topic in (f"{feeds}/power", f"{feeds}/btc", f"{feeds}/miner/ghost", f"{feeds}/miner/dated"):
                publisher.publish(topic, b"", retain=True)  # clear the broker's copies
            publisher.close()


# --- ids and topics a broker refuses (trial H C1, L1) -------------------------------------------


def test_a_miner_id_with_a_control_character_costs_its_payload_only_and_publishing_goes_on(mosquitto):
    # `{"miner": "evil\u0001id"}` on a telemetry topic was published as `.../miner/evil\x01id/state`: Mosquitto
    # dropped the collector ("malformed packet"), and the retained replay on each reconnect dropped it again,
    # every second for good (status offline, the ingest deaf).
    site = unique("ctrlid")
    feeds = f"feeds/{site}"
    topics = Topics("hashfleet", site)
    hostile = ["evil\x01id", "nonchar\uffffid", "c1\x85id", "bidi\u202eid"]
    with run_fleet("nano3s:1", base="127.45.6.81:0", seed=36) as fleet:
        collector = _flood_collector(mosquitto, site, feeds, fleet)
        publisher = Publisher(mosquitto.host, mosquitto.port)
        watch = Subscriber(mosquitto.host, mosquitto.port,
                           [topics.status, topics.collector, f"{topics.root}/miner/+/state"])
        try:
            [polled] = collector.next_result(lambda r: len(r.samples) == 1).samples
            publisher.publish(f"{feeds}/miner/bitaxe-7", {"hashrate_ths": 1.2, "power_w": 18.0})
            publisher.publish_many([(f"{feeds}/miner/x", {"miner": m, "hashrate_ths": 1.0, "power_w": 10.0})
                                    for m in hostile])
            report = watch.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= len(hostile))
            assert report["ingest"]["dropped"] == {"invalid": len(hostile)}

            # Cycle after cycle the good miners' state arrives, over the one connection it started with.
            good = {polled.miner, "bitaxe-7"}
            first = collector.next_result(lambda r: good <= {s.miner for s in r.samples}, what="both good miners")
            later = collector.next_result(lambda r: r.ts > first.ts, what="the next cycle")
            for miner in good:
                watch.wait_json(topics.miner_state(miner), lambda d: datetime.fromisoformat(d["ts"]) >= later.ts)
            assert collector.bridge.connection.connects == 1
            assert b"offline" not in [m.payload for m in watch.seen if m.topic == topics.status]
        finally:
            watch.close()
            publisher.close()
            collector.close()


def test_ids_a_broker_would_refuse_are_published_each_on_a_level_of_its_own(mosquitto):
    # A polled miner's id is its MAC text as the miner sent it: its topic level must hold nothing a broker
    # refuses. Ids that differ only in what the level replaces (`rack1/m1`, `rack1_m1`) shared one state
    # topic: two Home Assistant devices showed each other's data (trial H L1).
    site = unique("levels")
    topics = Topics("hashfleet", site)
    ids = ["evil\x01id", "nonchar\uffffid", "c1\x85id", "lone\ud800id", "rack1/m1", "rack1_m1", "rack1+m1", "x" * 300]
    connection = MqttConnection(MqttConfig(host=mosquitto.host, port=mosquitto.port), client_id=unique("levels"),
                                status_topic=topics.status)
    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{topics.root}/miner/+/state"])
    connection.start()
    try:
        for miner in ids:
            assert connection.publish(topics.miner_state(miner), json.dumps(miner), qos=1, retain=True), repr(miner)
        arrived: dict[str, str] = {}  # id -> the topic it arrived on
        watch.wait_for(lambda m: bool(arrived.setdefault(json.loads(m.payload), m.topic)) and len(arrived) == len(ids),
                       what="every id's state")
        assert arrived == {miner: topics.miner_state(miner) for miner in ids}
        assert len(set(arrived.values())) == len(ids)
        assert connection.connects == 1 and connection.invalid_topics == 0
    finally:
        watch.close()
        connection.close()


def test_a_message_on_a_topic_a_broker_refuses_is_dropped_never_replayed_and_the_connection_stays(mosquitto, caplog):
    # Defence in depth: whatever names a topic, no one message may get the collector thrown off the broker.
    caplog.set_level(logging.WARNING, logger="collector.mqtt.connection")
    site = unique("badtopic")
    topics = Topics("hashfleet", site)
    refused = [f"{topics.root}/miner/evil\x01id/state", f"{topics.root}/miner/non\uffffid/state",
               f"{topics.root}/lone\udc00", f"{topics.root}/a+b", f"{topics.root}/#", "",
               f"{topics.root}/" + "x" * 65_536, topics.root + "/a" * 201]
    connection = MqttConnection(MqttConfig(host=mosquitto.host, port=mosquitto.port), client_id=unique("badtopic"),
                                status_topic=topics.status)
    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{topics.root}/#"])
    connection.start()
    try:
        for _ in range(2):
            assert [connection.publish(topic, b"x", qos=1, retain=True) for topic in refused] == [False] * len(refused)
        assert connection.publish(topics.site_state, b"good", qos=1, retain=True)
        watch.wait_for(lambda m: m.topic == topics.site_state and m.payload == b"good", what="the good message")
        assert connection.connects == 1 and connection.invalid_topics == 2 * len(refused)
        assert set(connection._retained) == {topics.site_state}  # nothing refused is replayed on a reconnect
    finally:
        watch.close()
        connection.close()
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 5  # once per reason: a control character, a wildcard, empty, too long, too many levels
    assert not any("\x01" in line or "\uffff" in line for line in dropped)  # shown escaped


def test_retained_telemetry_older_than_its_max_age_never_mines_and_takes_no_slot(mosquitto):
    # Trial H, H2: telemetry aged from its arrival, not its ts. A retained `ghost` dated two days ago was
    # mining at 200 TH/s after every start, then the top repair item "offline"; 5,000 of them filled
    # telemetry_max_miners at start, and the real MQTT miners were dropped (too_many_miners) all run long.
    site = unique("oldtelemetry")
    prefix = f"sim/{site}"
    topics = Topics("hashfleet", site)
    two_days_ago = (datetime.now(timezone.utc) - timedelta(days=2)).isoformat()
    ghosts = [f"{prefix}/miner/ghost{i:02d}/telemetry" for i in range(30)]
    publisher = Publisher(mosquitto.host, mosquitto.port)
    publisher.publish_many([(t, {"hashrate_ths": 200.0, "power_w": 3500.0, "ts": two_days_ago}) for t in ghosts],
                           retain=True)
    [miner] = build_mqtt_miners("nano3s:1", seed=36, first_index=300)
    device = MqttMiner(miner, mosquitto.host, mosquitto.port, prefix=prefix)
    collector = RunningCollector({"site": site, "interval_s": 1, "mqtt": mqtt_config(
        mosquitto.host, mosquitto.port, telemetry_max_miners=10, ingest=[device.collector_ingest()])})
    health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
    device.start(periodic=False)
    try:
        report = health.wait_json(topics.collector, lambda d: d["ingest"]["dropped_total"] >= 30)
        assert report["ingest"]["dropped"] == {"stale": 30} and report["ingest"]["miners"] == 0
        device.publish_once()
        result = collector.next_result(lambda r: len(r.samples) > 0, what="an MQTT miner in a cycle")
        assert [(s.miner, s.state) for s in result.samples] == [(format_mac(miner.mac), MinerState.MINING)]
        assert result.counters["mqtt_refused"] == 30 and result.counters["mqtt_limited"] == 0
    finally:
        device.stop()
        health.close()
        collector.close()
        publisher.publish_many([(t, b"") for t in ghosts], retain=True)
        publisher.close()


def test_at_the_cap_an_offline_id_gives_its_slot_to_a_newcomer(mosquitto):
    # Retained telemetry dated now (or a live flood) fills telemetry_max_miners at a start; those ids
    # go offline after telemetry_max_age_s, but held their slots for telemetry_evict_after_s (an hour by
    # default) while the real miner was dropped. Dated ahead of this host's clock, within the skew, the
    # ids are fresh on arrival whenever the collector starts (their ts is taken as the arrival time).
    site = unique("capfreed")
    prefix = f"sim/{site}"
    topics = Topics("hashfleet", site)
    ahead = (datetime.now(timezone.utc) + timedelta(seconds=50)).isoformat()
    fakes = [f"{prefix}/miner/fake{i}/telemetry" for i in range(3)]
    publisher = Publisher(mosquitto.host, mosquitto.port)
    publisher.publish_many([(t, {"hashrate_ths": 5.0, "power_w": 90.0, "ts": ahead}) for t in fakes], retain=True)
    [miner] = build_mqtt_miners("nano3s:1", seed=37, first_index=310)
    device = MqttMiner(miner, mosquitto.host, mosquitto.port, prefix=prefix)
    collector = RunningCollector({"site": site, "interval_s": 1, "mqtt": mqtt_config(
        mosquitto.host, mosquitto.port, telemetry_max_miners=3, telemetry_max_age_s=2, telemetry_evict_after_s=600,
        ingest=[device.collector_ingest()])})
    health = Subscriber(mosquitto.host, mosquitto.port, [topics.collector])
    device.start(periodic=False)
    real = format_mac(miner.mac)
    try:
        assert health.wait_json(topics.collector, lambda d: d["ingest"]["miners"] == 3)["ingest"]["dropped"] == {}

        def the_real_miner_publishes(result) -> bool:  # once a cycle, until it is in one
            device.publish_once()
            return real in {s.miner for s in result.samples}
        result = collector.next_result(the_real_miner_publishes, timeout=30, what="the real miner in a cycle")
        mqtt_ids = {s.miner for s in result.samples}
        assert len(mqtt_ids) == 3 and len(mqtt_ids - {real}) == 2  # one fake gave its slot up
        report = health.wait_json(topics.collector, lambda d: d["ingest"]["evicted_total"] >= 1)
        assert report["ingest"]["evicted_total"] == 1 and report["ingest"]["miners"] == 3
    finally:
        device.stop()
        health.close()
        collector.close()
        publisher.publish_many([(t, b"") for t in fakes], retain=True)
        publisher.close()


def test_a_dropped_payloads_topic_and_keys_reach_the_log_without_their_escapes(caplog):
    # The drop's log line quoted the publisher's topic level and unknown key as sent: an escape sequence in
    # either recoloured or cleared the operator's terminal (and a newline forged a log line).
    ingest, live, _ = make_ingest()
    caplog.set_level(logging.WARNING)
    feed(ingest, "dev/\x1b[2Jm1\nFAKE/telemetry", {"hashrate_ths": 1.0, "\x1b[31mkey\x07": 1})
    feed(ingest, "price/power", {"usd_per_kwh": 0.04, "\x9b31m\u202ekey": 1})
    assert ingest.stats()["dropped"] == {"invalid": 2}
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped and all(line.isprintable() for line in dropped), dropped  # (a line per reason per 10 s)
    assert "m1 FAKE" in dropped[0] and "key" in dropped[0]
