"""What a Bitaxe sends pyasic is hostile until checked (trial J): a simulated Bitaxe whose AxeOS answers a proxy
rewrites on real HTTP (tests/collector/sources/tampering_proxy.py `web_tamper`), identified and read through pyasic
0.79 unchanged, as `hashfleet poll` reads it: a firmware string with terminal escapes, an ASIC pyasic does not know
with readings no Bitaxe makes, a chip at 999 C, a group MAC.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from models import MinerSample, MinerState, SampleSource
from tests.support import read_once
from simulators import ManualClock, run_fleet
from tests.collector.sources.tampering_proxy import TamperingProxy, rewrite_json

TS = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
UPSTREAM = "127.54.0.1"
PROXIED = "127.54.1.1"
ANSI = "\x1b[2J\x1b[H\x1b[31;1mPWNED\x1b[0m\x1b]0;owned\x07\x9b31m"  # the last: a one-byte (C1) CSI


@pytest.fixture(scope="module")
def proxy():
    with run_fleet("bitaxe:1", base=UPSTREAM, seed=83, clock=ManualClock()) as fleet:
        with TamperingProxy({PROXIED: fleet.miners[0].host}) as tampering:
            yield tampering


def read_through(proxy: TamperingProxy, edit) -> MinerSample:
    """Identify and read the Bitaxe once (as `hashfleet poll` does) while its system info says what `edit` makes it."""
    proxy.web_tamper[PROXIED] = rewrite_json("/api/system/info", edit)
    try:
        sample = read_once(PROXIED, TS)
    finally:
        del proxy.web_tamper[PROXIED]
    assert sample.source is SampleSource.PYASIC, sample
    return sample


def test_an_honest_bitaxe_through_the_proxy_is_read_as_served(proxy):
    sample = read_through(proxy, lambda info: None)
    assert sample.state is MinerState.MINING and not sample.errors, sample
    assert (sample.make, sample.model, sample.firmware) == ("BitAxe", "Gamma", "v2.6.1")


def test_a_firmware_string_with_terminal_escapes_is_stored_without_them(proxy):
    # It goes out as JSON and to Home Assistant as sw_version: an escape there repaints the reader's terminal.
    sample = read_through(proxy, lambda info: info.update(version="v2.6.1" + ANSI))
    assert sample.state is MinerState.MINING, sample.errors
    assert sample.firmware.isprintable() and "PWNED" in sample.firmware, repr(sample.firmware)
    assert "\x1b" not in sample.model_dump_json() and "\\u001b" not in sample.model_dump_json()


def test_a_bitaxe_whose_asic_pyasic_does_not_know_is_held_to_a_bitaxe_ceiling_not_its_own_claims(proxy):
    # pyasic makes an unknown ASICModel its bare BitAxe class: no make, no model. Its own figures (2040 cores x 250
    # ASICs x 600 MHz = 306 TH/s expected) would let it claim 300 TH/s at 20 kW; no Bitaxe-class unit comes close.
    sample = read_through(proxy, lambda info: info.update(ASICModel="BM1399", asicCount=250, hashRate=300_000.0,
                                                          power=20_000.0))
    assert (sample.make, sample.model) == ("BitAxe", None)
    assert sample.state is MinerState.ERROR
    assert {"hashrate_ths", "expected_hashrate_ths", "power_w"} <= set(sample.unusable), sample.errors
    assert sample.hashrate_ths is None and sample.power_w is None
    assert any("largest Bitaxe unit catalogued (2.15 TH/s)" in e for e in sample.errors), sample.errors


def test_a_chip_at_999_c_is_refused_as_that_reading_only(proxy):
    # ESP-Miner throttles a Gamma at 75 C; 999 C is no sensor reading of a running unit.
    sample = read_through(proxy, lambda info: info.update(temp=999))
    assert sample.unusable == ["boards"] and sample.temp_chip_max_c is None, sample
    assert any("chip_temp 999" in e and "outside -40..150 C" in e for e in sample.errors), sample.errors
    assert sample.hashrate_ths and sample.power_w and sample.fans_rpm  # the rest of the reading kept
    assert sample.state is MinerState.MINING  # and the state of a unit that hashes: the temperature is what is lost


def test_a_power_no_bitaxe_draws_costs_the_power_not_the_state(proxy):
    # 20 kW is refused by plausibility (2x the largest Bitaxe catalogued); the rate it hashes at is kept.
    served = {}
    sample = read_through(proxy, lambda info: served.update(info) or info.update(power=20_000.0))
    assert sample.state is MinerState.MINING, sample.errors
    assert sample.power_w is None and sample.unusable == ["power_w"], sample
    assert any("power_w 20000 W" in e and "not a plausible reading" in e for e in sample.errors), sample.errors
    assert sample.hashrate_ths == pytest.approx(served["hashRate"] / 1000, rel=1e-6)


def test_a_group_mac_is_no_miner_id(proxy):
    # 23:... has the multicast bit set: no network card's own address. The id falls back to the address, as for
    # a Bitaxe that gives no MAC.
    sample = read_through(proxy, lambda info: info.update(macAddr="23:90:5C:11:22:33"))
    assert sample.state is MinerState.MINING, sample.errors
    assert sample.mac is None and sample.miner == f"{PROXIED}:4028", sample
