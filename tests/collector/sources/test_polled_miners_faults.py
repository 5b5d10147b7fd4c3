"""Every simulator fault yields the right MinerSample state, and a bad miner never holds up the cycle."""

import asyncio
import re
from datetime import datetime, timezone

import pytest
from tests.support import read_once, wait_for

from collector.sources.polled_miners import OFFLINE_POLLS_BEFORE_REIDENTIFY, PolledMiners
from models import CollectorConfig, MinerState
from simulators.clock import ManualClock
from simulators.fleet import run_fleet

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def fleet():
    # One fleet per test: faults such as an overheat shutdown leave physical after-effects.
    with run_fleet("a1246:1,a1566:1,q:1", base="127.40.0.1:0", seed=3, clock=ManualClock()) as sim:
        yield sim


async def identify_then_poll(poller: PolledMiners):
    """As `hashfleet poll` does: identify the addresses (the service does it in the background), then poll."""
    await poller.refresh()
    return await poller.cycle(TS)


def poll(miner, timeout_s: float = 2.0):
    return read_once(miner.address, TS, timeout_s=timeout_s)


def test_healthy_miner_matches_what_the_simulator_served(fleet):
    miner = fleet[1]  # A15-194, WALLPOWER firmware
    sample = poll(miner)
    truth = miner.last_served
    assert sample.state is MinerState.MINING
    assert sample.hashrate_ths == pytest.approx(truth.hashrate_ths, abs=0.01)
    assert sample.hashrate_avg_ths == pytest.approx(truth.hashrate_avg_ths, abs=0.01)
    assert sample.power_w == truth.power_w and sample.temp_chip_max_c == truth.temp_chip_max_c
    assert sample.fans_rpm == list(truth.fans_rpm) and sample.uptime_s == truth.uptime_s
    assert sample.mac.replace(":", "") == truth.mac.upper().replace(":", "")


def test_dead_board_is_visible_per_board(fleet):
    miner = fleet[0]
    miner.set_faults(dead_boards={1})
    sample = poll(miner)
    assert sample.state is MinerState.MINING
    assert sample.boards[1].chips_ok == 0 and sample.boards[0].chips_ok == sample.boards[0].chips_expected
    assert any("hashboard error" in e for e in sample.errors)
    assert sample.hashrate_ths < miner.spec.nominal_ths * 0.75


def test_overheat_throttle_keeps_mining_slower_and_shutdown_is_an_error(fleet):
    miner = fleet[0]
    miner.set_faults(overheat="throttle")
    throttled = poll(miner)
    assert throttled.state is MinerState.MINING and throttled.hashrate_ths < miner.spec.nominal_ths * 0.9
    miner.set_faults(overheat="shutdown")
    down = poll(miner)
    assert down.state is MinerState.ERROR and down.hashrate_ths == 0 and down.errors


@pytest.mark.parametrize("index", [0, 2], ids=["a1246", "q"])
def test_soft_off_reports_soft_off_with_zero_live_hashrate_and_idle_watts(fleet, index):
    miner = fleet[index]
    miner.set_faults(soft_off=True)
    sample = poll(miner)
    assert sample.state is MinerState.SOFT_OFF and sample.hashrate_ths == 0
    assert sample.power_w == miner.last_served.power_w and 0 < sample.power_w < 400


@pytest.mark.parametrize(("fault", "state", "reason"), [
    ({"no_answer": True}, MinerState.OFFLINE, "connection refused"),
    ({"hold_open": True}, MinerState.OFFLINE, "no complete answer within 1 s"),
    ({"slow_s": 3.0}, MinerState.OFFLINE, "no complete answer within 1 s"),
    ({"drop": True}, MinerState.ERROR, "empty reply"),
    ({"malformed": True}, MinerState.ERROR, "malformed or truncated JSON"),
    ({"truncated": True}, MinerState.ERROR, "malformed or truncated JSON"),
])
def test_network_and_wire_faults_give_a_state_and_a_reason(fleet, fault, state, reason):
    miner = fleet[1]
    poller = PolledMiners(CollectorConfig(miners=[miner.address], timeout_s=1.0))

    async def healthy_then_faulty():
        healthy = (await identify_then_poll(poller)).samples[0]
        miner.set_faults(**fault)
        return healthy, (await poller.cycle(TS)).samples[0]

    healthy, sample = asyncio.run(healthy_then_faulty())
    assert sample.state is state
    assert reason in " ".join(sample.errors)
    assert sample.miner == healthy.miner  # a silent miner keeps its MAC-based id
    assert (sample.make, sample.model) == (healthy.make, healthy.model)  # and its series: one per miner


def test_a_silent_miner_of_every_make_keeps_its_make_and_model_until_it_answers_again():
    # An offline sample without them was a second series in InfluxDB (tags make, model): the Fleet overview's
    # panels group by model, so a miner back for hours still showed offline there (trial R), and its capex
    # keyed by model stopped depreciating.
    with run_fleet("a1246:1,s19jpro:1,bos-s19jpro:1,m50s:1", base="127.40.1.1", seed=5, clock=ManualClock()) as sim:
        poller = PolledMiners(CollectorConfig(miners=sim.addresses, timeout_s=1.0))

        async def healthy_then_silent():
            healthy = (await identify_then_poll(poller)).samples
            for miner in sim:
                miner.set_faults(no_answer=True)
            # polled while silent, then handed back to identification ("identifying it again")
            silent = [(await poller.cycle(TS)).samples for _ in range(OFFLINE_POLLS_BEFORE_REIDENTIFY + 2)]
            return healthy, silent

        healthy, silent = asyncio.run(healthy_then_silent())
    known = {s.miner: (s.make, s.model) for s in healthy}
    assert all(s.state is MinerState.MINING and s.model for s in healthy), healthy
    for samples in silent:
        assert {s.miner: (s.make, s.model) for s in samples} == known
        assert all(s.state is MinerState.OFFLINE for s in samples)
    assert any("identifying it again" in " ".join(s.errors) for s in silent[-1])


def test_bare_nan_is_tolerated(fleet):
    miner = fleet[0]
    miner.set_faults(bare_nan=True)
    sample = poll(miner)
    assert sample.state is MinerState.MINING and sample.power_w == miner.last_served.power_w


def test_slow_but_in_time_answer_is_read(fleet):
    miner = fleet[2]
    miner.set_faults(slow_s=0.5)
    assert poll(miner, timeout_s=3).state is MinerState.MINING


def test_reboot_shows_live_and_since_boot_hashrate_apart(fleet):
    miner = fleet[1]
    miner.reboot()
    fleet.clock.advance(45)  # past initialisation, while the since-boot average still lags
    sample = poll(miner)
    truth = miner.last_served
    assert sample.uptime_s == truth.uptime_s and sample.uptime_s <= 45
    assert sample.hashrate_ths == pytest.approx(truth.hashrate_ths, abs=0.01)
    assert sample.hashrate_avg_ths == pytest.approx(truth.hashrate_avg_ths, abs=0.01)
    assert truth.hashrate_ths != truth.hashrate_avg_ths


def test_hung_and_slow_miners_do_not_delay_the_others(fleet):
    poller = PolledMiners(CollectorConfig(miners=[m.address for m in fleet], timeout_s=1.0))
    asyncio.run(poller.refresh())  # identified while healthy: then they hang
    fleet[0].set_faults(hold_open=True)
    fleet[2].set_faults(slow_s=30)
    result = asyncio.run(poller.cycle(TS))
    states = {s.port: s.state for s in result.samples}
    assert states[fleet[1].port] is MinerState.MINING
    assert states[fleet[0].port] is MinerState.OFFLINE and states[fleet[2].port] is MinerState.OFFLINE
    assert result.duration_s < 2.5  # bounded by the 1 s per-miner deadline, not by the 30 s miner


def test_a_rescan_adds_a_miner_that_appeared_in_a_range_and_keeps_the_known_ones():
    with run_fleet("a1246:2", base="127.47.0.1", seed=4) as sim:
        newcomer = sim[1]
        newcomer.set_faults(no_answer=True)  # not there yet
        poller = PolledMiners(CollectorConfig(miners=["127.47.0.0/30"], timeout_s=1.0, rescan_interval_s=0.2))

        async def scan_and_poll():
            await poller.refresh()
            return await poller.cycle(TS)

        first = asyncio.run(scan_and_poll())
        assert [s.host for s in first.samples] == ["127.47.0.1"]
        newcomer.clear_faults()
        wait_for(lambda: poller.needs_refresh, timeout=10, what="the rescan interval to elapse", interval=0.02)
        second = asyncio.run(scan_and_poll())
    assert sorted(s.host for s in second.samples) == ["127.47.0.1", "127.47.0.2"]
    assert all(s.state is MinerState.MINING for s in second.samples)


@pytest.mark.parametrize(("key", "field"), [("WALLPOWER", "power_w"), ("Elapsed", "uptime_s"), ("DH", "hw_error_pct"),
                                            ("MPO", "power_limit_w")])
def test_an_out_of_range_reading_costs_its_field_and_the_cycle_goes_on(fleet, key, field):
    """Firmware that reports a negative watt or uptime (a wrapped counter): served over TCP as the
    simulator's own reply with that one value negated. The field is left empty and named; the unit,
    which hashes, stays mining; the healthy miner polled in the same cycle is unaffected."""
    from collector.sources import avalon
    from collector.sources import cgminer_client as cgminer

    healthy = fleet[1]
    host, port = healthy.address.rsplit(":", 1)
    reply = asyncio.run(cgminer.request(host, int(port), avalon.POLL_COMMAND))
    assert f"{key}[".encode() in reply
    damaged = reply.replace(f"{key}[".encode(), f"{key}[-".encode())
    # A MAC of its own: the same MAC from two addresses is a clash of its own (collector.identity).
    damaged = re.sub(rb'"MAC":"[0-9A-Fa-f:]+"', b'"MAC":"0a0b0c0d0e0f"', damaged)

    async def run():
        async def answer(reader, writer):
            await reader.read(4096)
            writer.write(damaged)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.40.9.1", 0)
        bad = f"127.40.9.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            result = await identify_then_poll(PolledMiners(CollectorConfig(miners=[bad, healthy.address], timeout_s=2.0)))
        return {s.host: s for s in result.samples}

    samples = asyncio.run(run())
    damaged_sample = samples["127.40.9.1"]
    assert damaged_sample.state is MinerState.MINING and damaged_sample.hashrate_ths  # not its state: that field
    assert damaged_sample.unusable == [field] and getattr(damaged_sample, field) is None
    [error] = damaged_sample.errors
    assert "reply value out of range" in error and "greater than or equal to 0" in error
    assert samples[host].state is MinerState.MINING


def test_a_request_cancelled_from_outside_stays_cancelled_and_leaves_no_timer(fleet):
    """The request's deadline is a timer that cancels the task: a shutdown's cancellation must still
    propagate as one (not turn into an offline sample), and a finished request must not be cancelled
    later by its timer."""
    from collector.sources import cgminer_client as cgminer

    miner = fleet[1]
    host, port = miner.address.rsplit(":", 1)

    async def scenario():
        miner.set_faults(hold_open=True)
        task = asyncio.create_task(cgminer.request(host, int(port), "summary", timeout_s=0.5))
        await asyncio.sleep(0.1)  # likely connected and waiting; cancelled while connecting must propagate too
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        miner.set_faults(hold_open=False)
        raw = await cgminer.request(host, int(port), "summary", timeout_s=0.3)
        await asyncio.sleep(0.5)  # time itself is under test: past that request's 0.3 s deadline, its timer must be gone
        return raw, asyncio.current_task().cancelling()

    raw, cancelling = asyncio.run(scenario())
    assert b"SUMMARY" in raw and cancelling == 0


def test_a_timeout_inside_an_outer_timeout_is_the_requests_own(fleet):
    from collector.sources import cgminer_client as cgminer

    miner = fleet[1]
    host, port = miner.address.rsplit(":", 1)
    miner.set_faults(hold_open=True)

    async def scenario():
        async with asyncio.timeout(5):  # as the pyasic path's hard stop wraps a poll
            with pytest.raises(cgminer.MinerUnreachable, match="within 0.3 s"):
                await cgminer.request(host, int(port), "summary", timeout_s=0.3)
        return asyncio.current_task().cancelling()

    assert asyncio.run(scenario()) == 0
