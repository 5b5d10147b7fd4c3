"""pyasic's RPC and detection sockets are bounded in size and in life (collector/sources/pyasic_rpc.py),
and every call into pyasic ends when its time is up (pyasic_makes.within): CGMiner RPC servers that
answer hashfleet's probe or pyasic's detection honestly and then stream without end, send one 64 MiB
reply with no end, or drip (tests/collector/sources/hostile_rpc.py), beside a good simulated Whatsminer,
through `hashfleet scan`, `poll` and `collect` (processes, their peak memory measured by the kernel).

Before: `scan` beside one endless server ran until killed (150 s here; 12 min in trial J) at ~290 MB
and growing, `poll` beside a 64 MiB reply peaked at 928 MB, `collect` finished its cycles and never
exited. Each `hashfleet` here runs under a 2 GiB address-space limit and is killed after HANG_S, which
fails the test: a regression fails it rather than the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.collector.sources.hostile_rpc import HostileRPC
from tests.support import HASHFLEET, run_measured

from simulators import run_fleet

WHATSMINER = "127.113.0.1"
HOSTILE = {
    "127.113.1.1": "after_probe_endless", "127.113.1.2": "after_probe_huge", "127.113.1.3": "after_probe_drip",
    "127.113.2.1": "on_read_endless", "127.113.2.2": "on_read_huge", "127.113.2.3": "on_read_drip",
}
MEMORY_LIMIT = 2 << 30  # address space of each hashfleet process
PEAK_MB = 400  # ~100 MB without the hostile servers; pyasic splits a failed joined read into 8 sockets
HANG_S = 120  # each command here takes 5-15 s; a hang is killed then, and fails
CAP = "RPC reply refused: {0}:4028: over the 4,194,304-byte cap"


@pytest.fixture(scope="module")
def fleet():
    with run_fleet("m50s:1", base=WHATSMINER, seed=5) as fleet:
        assert [m.host for m in fleet.miners] == [WHATSMINER]
        yield fleet


@pytest.fixture
def site(fleet):
    with HostileRPC(HOSTILE) as rpc:  # each test's own: "after_probe" is honest to one connection only
        yield rpc


def hashfleet(tmp_path: Path, *args: str) -> tuple[str, str, float]:
    """Run `hashfleet ARGS` to its end: (stdout, stderr, its peak resident memory in MB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    env["HASHFLEET_SPOOL_DIR"] = str(tmp_path / "spool")
    code, out, err, peak_mb = run_measured([HASHFLEET, *args], tmp_path, address_space=MEMORY_LIMIT, timeout=HANG_S,
                                           env=env)
    assert code == 0, f"exit {code} (-9: hung, killed after {HANG_S} s)\n" + err[-2000:]
    return out, err, peak_mb


def addresses(when: str) -> list[str]:
    return [address for address, mode in HOSTILE.items() if mode.startswith(when)]


def test_a_scan_ends_and_finds_the_good_miner_beside_rpc_servers_answering_detection_without_end(site, tmp_path):
    bad = addresses("after_probe")
    out, err, peak_mb = hashfleet(tmp_path, "scan", *(f"{a}/32" for a in [*bad, WHATSMINER]))
    assert peak_mb < PEAK_MB, f"scan peaked at {peak_mb:.0f} MB"
    assert out.splitlines() == [f"{WHATSMINER}:4028\tWhatsMiner\tM50S VH50 (Stock)\twhatsminer"], out + err
    assert all(site.requests(a)[1:] for a in bad)  # pyasic's detection asked each, after our probe


def test_a_poll_reads_the_good_miner_and_names_what_each_hostile_rpc_server_did(site, tmp_path):
    out, err, peak_mb = hashfleet(tmp_path, "poll", "--json", "--timeout", "2", *HOSTILE, WHATSMINER)
    samples = {s["host"]: s for s in map(json.loads, out.splitlines())}
    assert peak_mb < PEAK_MB, f"poll peaked at {peak_mb:.0f} MB"
    assert samples[WHATSMINER]["state"] == "mining" and samples[WHATSMINER]["hashrate_ths"] > 100
    endless, huge, drip = addresses("on_read")
    for address in (endless, huge):  # detected (LuxOS), then its reads refused at the cap
        assert samples[address]["state"] == "error", samples[address]
        assert samples[address]["errors"] == [f"{address}: " + CAP.format(address)]
    assert samples[drip]["state"] == "offline" and samples[drip]["errors"] == [f"{drip}: no data within 2 s"]
    for address in addresses("after_probe")[:2]:  # never identified, and the reason says why
        assert samples[address]["state"] == "offline"
        assert samples[address]["errors"][0].endswith(CAP.format(address)), samples[address]
    assert samples[addresses("after_probe")[2]]["state"] == "offline"


def test_collect_reads_the_good_miner_every_cycle_and_exits_beside_hostile_rpc_servers(site, tmp_path):
    out, err, peak_mb = hashfleet(tmp_path, "collect", "--miners", ",".join([*HOSTILE, WHATSMINER]),
                                  "--interval", "3", "--cycles", "3")
    assert peak_mb < PEAK_MB, f"collect peaked at {peak_mb:.0f} MB"
    cycles = [line.split("collector.service: ", 1)[1] for line in err.splitlines() if "collector.service: cycle" in line]
    assert len(cycles) == 3, err[-3000:]
    assert all(c.startswith(f"cycle {n}: 7 miners, 6 failed") for n, c in enumerate(cycles, 1)), cycles
    assert "stopped after 3 cycle(s)" in err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_probe_cancelled_as_its_connection_is_refused_leaves_no_unread_exception(loop):
    """pyasic's detection races its probes and cancels the losers, each `wait_for(open_connection(...))`.
    Cancelled at the moment the connection was refused, 3.11's wait_for inside our open_connection raised
    the refusal from a task nobody read: "Task exception was never retrieved" and a traceback in the log
    (the bad-addresses test failed so once in CI). Every cancel point of the first steps is tried."""
    import asyncio
    import gc
    import socket

    import uvloop

    from collector.sources import pyasic_rpc

    with socket.socket() as s:  # a port nothing listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def cancel_each_step() -> tuple[list[str], int]:
        unread: list[str] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unread.append(context["message"]))
        cancelled = 0
        for steps in range(1, 40):
            for _ in range(5):
                probe = asyncio.ensure_future(asyncio.wait_for(pyasic_rpc.open_connection("127.0.0.1", port), 3))
                for _ in range(steps):
                    await asyncio.sleep(0)
                cancelled += probe.cancel()
                try:
                    await probe
                except (asyncio.CancelledError, OSError):
                    pass
        gc.collect()  # an unread task exception is reported when the task is collected
        await asyncio.sleep(0)
        return unread, cancelled

    run = uvloop.run if loop == "uvloop" else asyncio.run
    unread, cancelled = run(cancel_each_step())
    assert cancelled >= 20, cancelled  # the first steps' probes were still connecting when cancelled
    assert unread == [], unread[:3]
