"""pyasic's gRPC messages are bounded in size (collector/sources/pyasic_grpc.py): Braiins OS+-looking
units whose RPC on 4028 is a real simulated unit's (tests/collector/sources/tampering_proxy.py) and whose
gRPC on 50051 answers the login honestly and `GetMinerDetails` with what no unit sends
(tests/collector/sources/hostile_grpc.py), beside a good simulated BOS+ unit, through `hashfleet poll`
(a process, its peak memory measured by the kernel).

Before: this poll peaked at 371 MB (its 3 s timeout cut the 1 GiB message short; after: 105 MB); one
call given 20 s read all of it, 2.3 GB, then betterproto's decode held the event loop past its timeout
until killed at 10 min. The `hashfleet` here runs under a 2 GiB address-space limit and is killed after
HANG_S, which fails the test.
"""

from __future__ import annotations

import json
import os

import pytest
from tests.collector.sources.hostile_grpc import DETAILS, LOGIN, HostileGrpc
from tests.collector.sources.tampering_proxy import TamperingProxy
from tests.support import HASHFLEET, run_measured

from simulators import run_fleet

GOOD = "127.116.0.1"  # a simulated BOS+ S19j Pro; 127.116.0.2 is the hostile units' RPC upstream
HOSTILE = {"127.116.1.1": "huge", "127.116.1.2": "endless", "127.116.1.3": "compressed",
           "127.116.1.4": "huge_headers"}
MEMORY_LIMIT = 2 << 30  # address space of the hashfleet process
PEAK_MB = 200  # ~100 MB without the hostile servers
HANG_S = 120  # the poll takes ~10 s; a hang is killed then, and fails


@pytest.fixture(scope="module")
def site():
    with run_fleet("bos-s19jpro:2", base=GOOD, seed=7) as fleet:
        good, upstream = (m.host for m in fleet.miners)
        assert good == GOOD
        with TamperingProxy({a: upstream for a in HOSTILE}, piped_ports=()), HostileGrpc(HOSTILE) as grpc:
            yield grpc


def test_a_poll_reads_the_good_unit_and_names_each_hostile_grpc_answer(site, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "INFLUX_"))}
    env["HASHFLEET_SPOOL_DIR"] = str(tmp_path / "spool")
    code, out, err, peak_mb = run_measured([HASHFLEET, "poll", "--json", "--timeout", "3", GOOD, *HOSTILE], tmp_path,
                                           address_space=MEMORY_LIMIT, timeout=HANG_S, env=env)
    assert code == 0, f"exit {code} (-9: hung, killed after {HANG_S} s)\n" + err[-2000:]
    samples = {s["host"]: s for s in map(json.loads, out.splitlines())}
    assert peak_mb < PEAK_MB, f"poll peaked at {peak_mb:.0f} MB"
    good = samples[GOOD]
    assert good["state"] == "mining" and good["mac"] and good["firmware"] and not good["warnings"], good
    for address, mode in HOSTILE.items():  # each asked, and answered its worst
        # (once, on a loaded machine, a unit was asked GetMinerDetails a second time: the reader's re-read, not
        # what this tests; nothing else may reach the hostile server)
        asked = site.requests(address)
        assert asked[:2] == [LOGIN, DETAILS] and set(asked[2:]) <= {DETAILS} and len(asked) <= 3, (address, asked)
        sample = samples[address]  # read over RPC all the same; only what gRPC carries is missing
        assert sample["state"] == "mining" and sample["hashrate_ths"] > 50 and sample["mac"] is None, sample
        [warning] = sample["warnings"]
        why = "no gRPC answer within" if mode == "endless" else "gRPC GetMinerDetails failed"  # h2 ends huge headers
        assert warning.startswith(f"{address}:50051: {why}"), (mode, warning)
        reason = {"huge": "over the 32,768-byte cap", "compressed": "a compressed message"}.get(mode)
        assert reason is None or reason in warning, (mode, warning)  # why it was refused, not only that it failed


def test_a_message_over_the_cap_or_compressed_is_refused_as_pyasic_handles_it_and_the_reason_noted(site):
    """pyasic's own client, in this process: the refusal is its APIError, the reason in noting_refusals."""
    import asyncio

    from collector.sources import pyasic_grpc, pyasic_http, pyasic_makes
    from pyasic.errors import APIError
    from pyasic.web.braiins_os.boser import BOSerWebAPI

    pyasic_makes._import_pyasic()

    async def details(address: str) -> list[str]:
        with pyasic_http.noting_refusals() as refused:
            with pytest.raises(APIError):
                async with asyncio.timeout(10):
                    await BOSerWebAPI(address).get_miner_details()
        return refused

    huge, _, compressed, _ = HOSTILE
    cap = f"{pyasic_grpc.MAX_MESSAGE_BYTES:,}"
    assert asyncio.run(details(huge)) == [
        f"gRPC message refused: {huge}:50051: a message of 1,073,741,824 bytes, over the {cap}-byte cap"]
    assert asyncio.run(details(compressed)) == [
        f"gRPC message refused: {compressed}:50051: a compressed message, compression not asked for"]
