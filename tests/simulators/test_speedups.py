"""The simulator's shortcuts (cached noise knots, idle-pool templates, PVT lookup, orjson) say
exactly what the plain computations they replace would say."""

from __future__ import annotations

import json

import pytest

from simulators import cgminer, physics
from simulators.antminer import Antminer
from simulators.clock import ManualClock
from simulators.fleet import build_miners

MODELS = ["a1246", "a1566", "a1466", "q", "nano3s", "nano3", "mini3", "a1066", "a1047", "a1346", "a1366", "a1566hu",
          "a16", "a16xp", "av741", "av841", "av921"]


def test_cached_noise_equals_noise_whatever_the_order_of_readings():
    miner = build_miners("a1566:1", base="127.0.0.1:14000", seed=3)[0]
    phys = miner._physics
    seed = miner.traits.noise_seed
    t = 1_750_000_000.0
    # Small steps, same reading twice, a step back, jumps of many periods, a step to the next knot.
    for dt in (0.0, 0.3, 0.0, 5.0, -7.0, 11.9, 0.1, 1000.0, -3600.0, 12.0, 12.0, 86400.0):
        t += dt
        for channel, period in ((1, 12.0), (4, 300.0), (6, 7.0), (21, 9.0)):
            assert phys._noise(channel, t, period) == physics.noise(seed, channel, t, period)


@pytest.mark.parametrize("key", MODELS)
def test_every_reply_encodes_as_stdlib_json_would(key):
    clock = ManualClock()
    miner = build_miners(f"{key}:1", base="127.0.0.1:14000", seed=5, clock=clock)[0]
    ctx = cgminer._Ctx(miner, "", False)
    own = cgminer.LAYOUT_COMMANDS.get(miner.spec.layout, {})  # the firmware layout's own replies first
    for name in ("version", "devdetails", "summary", "devs", "pools", "stats", "estats", "litestats"):
        body = (own.get(name) or cgminer.COMMANDS[name])(ctx)
        assert cgminer.encode_json(body) == json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize("key", ["s19jpro", "s21"])
def test_antminer_replies_encode_as_stdlib_json_would(key):
    """The Antminer firmware shares the Avalon's encoder (orjson) since it stopped using json.dumps:
    a joined answer re-encoded by the stdlib must come out byte for byte the same."""
    miner = build_miners(f"{key}:1", base="127.0.0.9", seed=5, clock=ManualClock())[0]
    raw = Antminer(miner).rpc(b'{"command":"version+devdetails+summary+stats+pools+devs"}')
    assert raw.endswith(b"\x00")
    assert raw[:-1] == json.dumps(json.loads(raw[:-1]), separators=(",", ":")).encode()


def test_bare_nan_still_reaches_the_wire():
    miner = build_miners("a1566:1", base="127.0.0.1:14000")[0]
    reply = cgminer.answer(b'{"command":"summary+devs"}', miner, bare_nan=True)
    assert b'"Device Hardware%":nan' in reply and b'"Temperature":nan' in reply


def test_idle_pools_carry_each_miners_user_and_the_current_block_height():
    clock = ManualClock()
    miners = build_miners("a1566:2", base="127.0.0.1:14000", seed=1, clock=clock)
    for _ in range(2):
        for miner in miners:
            reply = json.loads(cgminer.answer(b'{"command":"pools"}', miner).rstrip(b"\0"))
            active, *idle = reply["POOLS"]
            assert [p["POOL"] for p in idle] == [1, 2]
            for pool in idle:
                assert list(pool) == list(active)  # same keys, same order
                assert pool["User"] == active["User"] == f"hashfleet.{miner.mac[-6:]}"
                assert pool["Current Block Height"] == active["Current Block Height"]
                assert pool["Accepted"] == 0 and pool["Stratum Active"] is False
        clock.advance(3 * 600.0)  # a new block height


@pytest.mark.parametrize("base_c", [0, 1, 20, 67, 120, 239, 250, 255, 300, -40])
def test_pvt_text_is_each_chip_formatted(base_c):
    miner = build_miners("a1566:1", base="127.0.0.1:14000", seed=2)[0]
    for board, offsets in enumerate(miner.traits.chip_offsets):
        expected = " ".join(str(base_c + o) if base_c else "0" for o in offsets)
        assert miner.pvt_text(board, base_c) == expected


@pytest.mark.parametrize("key", MODELS)
def test_fault_paths_not_yet_biting_say_what_the_healthy_fast_path_says(key):
    """A healthy miner takes shortcuts (no per-board fault work, no fan wear); a miner whose weak board
    keeps all of its rate, whose chips have not died yet and whose failing fan has not worn yet takes the
    long way. Both must put the same bytes on the wire, so the shortcuts change nothing but the cost."""
    requests = (b'{"command":"summary+estats+pools"}', b'{"command":"version+devs+stats+litestats"}', b"summary|")
    healthy_clock, sick_clock = ManualClock(), ManualClock()
    healthy = build_miners(f"{key}:1", base="127.0.0.1:14000", seed=4, clock=healthy_clock)[0]
    sick = build_miners(f"{key}:1", base="127.0.0.1:14000", seed=4, clock=sick_clock)[0]
    sick.set_faults(weak_board=(healthy.spec.boards - 1, 1.0), chips_dying=((0, 0.5),))  # < 1 chip in 10 min
    for step in range(8):
        if step == 0 and healthy.spec.fans:
            sick.set_faults(fan_failing=(0, 50.0))  # no wear before the clock moves ...
        elif step == 1:
            sick.set_faults(fan_failing=None)  # ... and repaired before it does
        assert sick.faults.weak_board is not None and sick.faults.chips_dying
        for request in requests:
            assert cgminer.answer(request, sick) == cgminer.answer(request, healthy), (key, step, request)
        healthy_clock.advance(73.0)
        sick_clock.advance(73.0)
