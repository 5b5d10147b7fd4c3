"""Simulated Braiins OS+ units (bosminer RPC on 4028, gRPC on 50051): their replies against published
layouts, pyasic 0.79 (unchanged: its own generated protos and grpclib client) detecting and reading them
and driving the authenticated writes, and the collector's pyasic path. Real TCP on loopback.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import warnings

import pyasic
import pytest
from betterproto.casing import camel_case
from tests.simulators.replies import load, shape_mismatches
from tests.support import HASHFLEET

from simulators import ManualClock, run_fleet
from simulators.braiins import board_temp_c
from simulators.probe import query, query_json

CLASSES = {"bos-s19jpro": "BOSMinerS19jPro", "bos-s21": "BOSMinerS21"}
DOCS = "braiins/bosminer-plus-0.2.0_s9_docs"
GRPC = "braiins/s19xp_bos-plus-25.07_grpc"


@pytest.fixture(scope="module")
def sim():
    with run_fleet("bos-s19jpro:1,bos-s21:1", base="127.57.0.1", seed=53, clock=ManualClock()) as fleet:
        yield fleet


@pytest.fixture(autouse=True)
def healthy(sim):
    for miner in sim.miners:
        miner.clear_faults()
        miner.set_soft_off(False)
        sim.firmware(miner).power_target_w = None
    sim.clock.advance(120)
    yield
    for miner in sim.miners:
        miner.clear_faults()


@pytest.fixture(params=list(CLASSES))
def unit(request, sim):
    return next(m for m in sim.miners if m.spec.key == request.param)


@pytest.fixture()
def s19(sim):
    return sim.miners[0]


def pyasic_call(host: str, action, password: str | None = None):
    async def go():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            miner = await pyasic.get_miner(host)
            if password is not None:
                miner.web.pwd = password
            return await action(miner)

    return asyncio.run(go())


# What the collector leaves out of get_data (collector/sources/pyasic_source.py): the simulator does not
# serve ConfigurationService, which pyasic's plain get_data() would also call.
NOT_NEEDED = ["serial_number", "psu_serial_number", "api_ver", "hostname", "fan_psu", "fault_light", "config"]


def pyasic_data(host: str):
    async def read(miner):
        return miner, await miner.get_data(exclude=NOT_NEEDED)

    return pyasic_call(host, read)


def camel(obj):
    """asic-rs files gRPC replies with proto field names; pyasic's to_pydict uses camelCase."""
    if isinstance(obj, dict):
        return {camel_case(k): camel(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [camel(v) for v in obj]
    return obj


# -- the wire against published replies -----------------------------------------------------------------


@pytest.mark.parametrize(("command", "real"), [
    ("fans", f"{DOCS}/fans.json"), ("temps", f"{DOCS}/temps.json"), ("tempctrl", f"{DOCS}/tempctrl.json"),
    ("tunerstatus", f"{DOCS}/tunerstatus.json"), ("devdetails", f"{DOCS}/devdetails.json"),
    ("version", "braiins/boser-0.1.0_2023-05/version.json"), ("fans", "braiins/boser-0.1.0_2023-05/fans.json"),
])
def test_rpc_replies_have_the_keys_and_types_of_published_ones(s19, command, real):
    ours = query_json(s19.address, command)
    assert shape_mismatches(load(real), ours) == []
    assert ours["STATUS"][0]["Description"].startswith("BOSer ")  # what pyasic recognises


def test_rpc_replies_end_with_nul_and_joined_requests_answer_each(s19):
    raw = query(s19.address, {"command": "summary+devs+tunerstatus"}, timeout=2.0)
    assert raw.endswith(b"\x00")
    assert set(json.loads(raw.rstrip(b"\x00"))) == {"summary", "devs", "tunerstatus", "id"}


@pytest.mark.parametrize(("method", "real", "unwrap"), [
    ("get_miner_details", "miner_details.json", None), ("get_miner_stats", "miner_stats.json", None),
    ("get_hashboards", "miner_hw_hashboards.json", None), ("get_cooling_state", "cooling_state.json", None),
    ("get_pool_groups", "pools.json", "poolGroups"),
])
def test_grpc_replies_read_by_pyasic_have_the_fields_of_a_real_unit(s19, method, real, unwrap):
    async def call(miner):
        return await getattr(miner.web, method)()

    ours = pyasic_call(s19.host, call)
    theirs = camel(load(f"{GRPC}/{real}"))
    if unwrap:
        ours = ours[unwrap]
    # Not served: the PSU block, share timestamps, the deprecated model enum; asic-rs nests the pool
    # group's oneof under "strategy". Numbers: protobuf JSON writes 64-bit integers as strings.
    ignore = frozenset({"psuInfo", "lastShareTime", "strategy", "model", "serialNumber"})
    assert shape_mismatches(theirs, ours, types=False, skip_defaults=True, ignore=ignore) == []


def test_grpc_refuses_calls_without_a_token_and_with_a_forged_one(s19):
    from grpclib.client import Channel
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError
    from pyasic.web.braiins_os.boser import BOSMinerGRPCStub
    from pyasic.web.braiins_os.proto.braiins.bos.v1 import GetMinerDetailsRequest

    async def call(metadata):
        async with Channel(s19.host, 50051) as channel:
            return await BOSMinerGRPCStub(channel).get_miner_details(GetMinerDetailsRequest(), metadata=metadata)

    for metadata in ([], [("authorization", "forged-token-1234")]):
        with pytest.raises(GRPCError) as info:
            asyncio.run(call(metadata))
        assert info.value.status is Status.UNAUTHENTICATED


# -- pyasic 0.79 reads them ---------------------------------------------------------------------------------


def test_pyasic_detects_each_model(unit):
    found, _ = pyasic_data(unit.host)
    assert type(found).__name__ == CLASSES[unit.spec.key]


def test_pyasic_reads_what_the_simulator_served(unit):
    _, data = pyasic_data(unit.host)
    truth, spec = unit.last_served, unit.spec
    # pyasic's hashrate is the sum of the boards' gRPC last-5 s figures (live), not summary MHS 1m
    assert float(data.hashrate) == pytest.approx(sum(b.hashrate_ths for b in truth.boards), abs=1e-5)
    assert float(data.expected_hashrate) == pytest.approx(spec.nominal_ths)  # sticker hashrate
    assert data.wattage == int(truth.power_w) and data.wattage_limit == truth.power_limit_w
    assert [f.speed for f in data.fans] == list(truth.fans_rpm)
    assert data.uptime == truth.uptime_s
    assert data.mac == ":".join(unit.mac[i:i + 2] for i in range(0, 12, 2)).upper()
    assert data.fw_ver == "25.07" and data.is_mining is True and data.errors == []
    assert len(data.hashboards) == spec.boards
    for board, served in zip(data.hashboards, truth.boards, strict=True):
        assert not board.missing and board.chips == spec.chips_per_board
        assert float(board.hashrate) == pytest.approx(served.hashrate_ths, abs=1e-6)  # gRPC last 5 s
        assert board.chip_temp == served.temp_chip_max_c  # the hottest chip, not an average
        assert board.temp == int(board_temp_c(served))
    assert data.pools[0].accepted == truth.accepted and data.pools[0].active


def test_pyasic_sees_a_lost_board_as_a_tuner_error(s19):
    s19.set_faults(dead_boards={2})
    _, data = pyasic_data(s19.host)
    assert [e.error_message for e in data.errors] == ["Slot 3 failed to initialize hashchain"]
    assert data.hashboards[2].chips == 0


# -- authenticated writes ------------------------------------------------------------------------------------


def test_pause_resume_and_power_target_through_pyasic(s19, sim):
    log = sim.firmware(s19).actions
    before = len(log)

    async def stop(miner):
        return await miner.stop_mining()

    assert pyasic_call(s19.host, stop) is True
    assert s19.truth().soft_off
    _, asleep = pyasic_data(s19.host)
    assert asleep.is_mining is False

    async def target_and_resume(miner):
        return await miner.set_power_limit(2900), await miner.resume_mining()

    assert pyasic_call(s19.host, target_and_resume) == (True, True)
    assert not s19.truth().soft_off
    assert query_json(s19.address, "tunerstatus")["TUNERSTATUS"][0]["PowerLimit"] == 2900
    assert [(a.method, a.ok) for a in log[before:]] == [("PauseMining", True), ("SetPowerTarget", True),
                                                       ("ResumeMining", True)]
    assert sim.requests(s19)["gRPC Login"] >= 1


def test_a_power_target_out_of_range_is_refused(s19, sim):
    async def target(miner):
        return await miner.set_power_limit(50)

    assert pyasic_call(s19.host, target) is False
    assert sim.firmware(s19).power_target_w is None and sim.firmware(s19).actions[-1].ok is False


def test_the_wrong_password_reads_nothing_over_grpc(s19):
    async def read(miner):
        return await miner.get_data(include=["wattage"])

    with pytest.raises(Exception, match="Failed to call wattage"):  # pyasic gives up on the whole read
        pyasic_call(s19.host, read, password="not-root")


# -- the collector's pyasic path ------------------------------------------------------------------------------


def test_hashfleet_poll_reads_a_braiins_unit_through_pyasic(s19, tmp_path):
    config = tmp_path / "pyasic.yaml"
    config.write_text("readers: {braiins: pyasic}\n")  # the native reader is the default now
    done = subprocess.run([HASHFLEET, "poll", s19.host, "--json", "--config", str(config)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sample = json.loads(done.stdout.splitlines()[0])
    truth = s19.last_served
    assert sample["state"] == "mining" and sample["source"] == "pyasic" and sample["firmware"] == "25.07"
    assert sample["hashrate_ths"] == pytest.approx(sum(b.hashrate_ths for b in truth.boards), abs=1e-5)
    assert sample["power_w"] == int(truth.power_w) and sample["power_limit_w"] == truth.power_limit_w
    assert sample["temp_chip_max_c"] == truth.temp_chip_max_c
    assert [b["chips_ok"] for b in sample["boards"]] == [126, 126, 126]
