"""Fleets: parsing `a1246:2,q:1`, handing out addresses, binding, thread-safe fault switching."""

from __future__ import annotations

import asyncio
import threading

import pytest

from simulators import BindError, Fleet, FleetSpecError, allocate_addresses, parse_fleet, run_fleet
from simulators.probe import query, query_json


def test_parse_fleet():
    groups = parse_fleet("a1246:2, q:1,nano3s")
    assert [(spec.key, n) for spec, n in groups] == [("a1246", 2), ("q", 1), ("nano3s", 1)]
    assert parse_fleet("A15-194:3")[0][0].key == "a1566"


@pytest.mark.parametrize(
    ("text", "hint"),
    [("s19:1", "unknown model"), ("a1246:x", "bad count"), ("a1246:0", "at least 1"), ("", "empty fleet")],
)
def test_bad_fleet_says_what_is_wrong_and_lists_models(text, hint):
    with pytest.raises(FleetSpecError, match=hint) as info:
        parse_fleet(text)
    assert "a1246, a1566, a1466, q, nano3s" in str(info.value)


def test_consecutive_hosts_skip_network_and_broadcast_looking_addresses():
    assert allocate_addresses("127.10.0.253", 4) == [
        ("127.10.0.253", 4028), ("127.10.0.254", 4028), ("127.10.1.1", 4028), ("127.10.1.2", 4028),
    ]


def test_host_port_base_gives_consecutive_ports():
    assert allocate_addresses("127.0.0.1:14028", 3) == [("127.0.0.1", 14028), ("127.0.0.1", 14029),
                                                          ("127.0.0.1", 14030)]
    with pytest.raises(FleetSpecError, match="65535"):
        allocate_addresses("127.0.0.1:65535", 2)
    with pytest.raises(FleetSpecError, match="IPv4"):
        allocate_addresses("miners.local", 1)


def test_port_zero_gives_every_miner_its_own_free_port():
    with run_fleet("a1246:3", base="127.0.0.1:0", seed=1) as sim:
        ports = {m.port for m in sim.miners}
        assert len(ports) == 3 and 0 not in ports
        assert sim[sim.miners[1].address] is sim.miners[1]
        for m in sim.miners:
            assert query_json(m.address, "version")["VERSION"][0]["MAC"] == m.mac


def test_many_miners_on_consecutive_loopback_addresses():
    with run_fleet("a1566:150,q:100,nano3s:50", base="127.204.0.1", seed=2) as sim:
        assert len(sim) == 300
        assert sim.miners[-1].address == "127.204.1.46:4028"  # 254 on .0.x, then .1.1 on: .0.255 and .1.0 skipped
        assert len({m.mac for m in sim.miners}) == 300
        for m in sim.miners[::37]:
            assert query(m.address, {"command": "summary"}).endswith(b"\x00")


def test_bind_failure_names_the_address():
    with run_fleet("a1246:1", base="127.0.0.1:0", seed=1) as sim:
        taken = sim.miners[0].port
        with pytest.raises(BindError, match=f"127.0.0.1:{taken}"):
            with run_fleet("q:1", base=f"127.0.0.1:{taken}"):
                pass


def test_fleet_stops_cleanly_and_frees_its_addresses():
    with run_fleet("q:2", base="127.205.0.1", seed=1):
        pass
    with run_fleet("q:2", base="127.205.0.1", seed=1) as again:
        assert query_json(again.miners[1].address, "version")["STATUS"][0]["STATUS"] == "S"
    with pytest.raises(ConnectionRefusedError):
        query("127.205.0.1:4028", b"summary", timeout=5)


def test_async_api():
    async def go() -> dict:
        async with Fleet.build("nano3s:1", base="127.0.0.1:0", seed=4) as sim:
            reader, writer = await asyncio.open_connection(sim.miners[0].host, sim.miners[0].port)
            writer.write(b'{"command":"summary"}')
            data = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
            sim.miners[0].set_faults(no_answer=True)  # from the loop thread: closes at once
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(sim.miners[0].host, sim.miners[0].port)
            sim.miners[0].set_faults(no_answer=False)
            await sim.sync_network(sim.miners[0])
            _, writer = await asyncio.open_connection(sim.miners[0].host, sim.miners[0].port)
            writer.close()
            return data

    assert asyncio.run(go()).endswith(b"\x00")


def test_faults_flip_safely_while_the_miner_is_being_polled():
    with run_fleet("a1246:1", base="127.0.0.1:0", seed=9) as sim:
        miner = sim.miners[0]
        stop = threading.Event()
        errors: list[BaseException] = []

        def flipper() -> None:
            try:
                while not stop.is_set():
                    miner.set_faults(soft_off=True, dead_boards={2})
                    miner.set_faults(soft_off=False, dead_boards=set())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=flipper)
        thread.start()
        try:
            for _ in range(50):
                reply = query_json(miner.address, "summary+estats")
                assert reply["estats"][0]["STATUS"][0]["STATUS"] == "S"
        finally:
            stop.set()
            thread.join(timeout=10)
        assert not errors
