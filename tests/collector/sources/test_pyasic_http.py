"""pyasic's HTTP goes through our bounded transport (collector/sources/pyasic_http.py): trial J's hostile
web servers beside good simulated miners, through `hashfleet scan` and `hashfleet poll` (processes,
their peak memory measured by the kernel).

Every bad address costs only itself, with its reason; the good miners are found and read; memory stays
where it is without the hostile servers (~100 MB). Before the transport one 4 GB gzip bomb took `scan`
to 2.5-2.9 GB and lost a good Whatsminer; the bombs here are 1 GiB, and each `hashfleet` process runs
under a 2 GiB address-space limit so that a regression fails the test rather than the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.collector.sources.hostile_web import CATCHER, HostileWeb
from tests.support import HASHFLEET, run_measured

from simulators import run_fleet

WHATSMINER, BITAXE = "127.110.0.1", "127.110.0.2"  # an M50S on 4028, a Bitaxe on 80
HOSTILE = {
    "127.111.0.1": "gzip_bomb", "127.111.0.2": "gzip_bomb_unsized", "127.111.0.3": "big_body",
    "127.111.0.4": "big_length", "127.111.0.5": "redirect", "127.111.0.6": "same_origin_redirect",
    "127.111.1.1": "honest_then_bomb", "127.111.1.2": "honest_then_unsized_bomb", "127.111.1.3": "honest_then_drip",
}
MEMORY_LIMIT = 2 << 30  # address space of each hashfleet process
PEAK_MB = 300  # without the hostile servers a scan or poll peaks at ~100 MB


@pytest.fixture(scope="module")
def site():
    modes = {(address, 80): mode for address, mode in HOSTILE.items()} | {CATCHER: "catcher"}
    with run_fleet("m50s:1,bitaxe:1", base=WHATSMINER, seed=5) as fleet, HostileWeb(modes) as web:
        assert [m.host for m in fleet.miners] == [WHATSMINER, BITAXE]
        yield web


def hashfleet(tmp_path: Path, *args: str) -> tuple[str, str, float]:
    """Run `hashfleet ARGS` to its end: (stdout, stderr, its peak resident memory in MB)."""
    code, out, err, peak_mb = run_measured([HASHFLEET, *args], tmp_path, address_space=MEMORY_LIMIT)
    assert code == 0, f"exit {code} (-9: hung, killed)\n" + err[-2000:]
    return out, err, peak_mb


def addresses(*modes: str) -> list[str]:
    return [address for address, mode in HOSTILE.items() if mode in modes]


def test_a_scan_finds_the_good_miners_beside_web_servers_answering_bombs_and_endless_bodies(site, tmp_path):
    bad = addresses("gzip_bomb", "gzip_bomb_unsized", "big_body", "big_length")
    out, err, peak_mb = hashfleet(tmp_path, "scan", *(f"{a}/32" for a in [*bad, WHATSMINER, BITAXE]))
    found = {line.split("\t")[0].rsplit(":", 1)[0]: line.split("\t")[1:] for line in out.splitlines()}
    assert peak_mb < PEAK_MB, f"scan peaked at {peak_mb:.0f} MB"
    assert found == {WHATSMINER: ["WhatsMiner", "M50S VH50 (Stock)", "whatsminer"],
                     BITAXE: ["BitAxe", "Gamma (Stock)", "pyasic"]}, out + err
    assert all(site.requests(a) for a in bad)  # each was asked, and answered its worst


def test_a_redirect_to_another_host_is_never_followed_and_a_same_origin_one_is(site, tmp_path):
    out, err, _ = hashfleet(tmp_path, "scan", *(f"{a}/32" for a in addresses("redirect", "same_origin_redirect")))
    assert site.requests(*CATCHER) == []  # no request ever reached the other host
    [only] = out.splitlines()
    assert only.split("\t") == [f"{addresses('same_origin_redirect')[0]}:4028", "BitAxe", "Gamma (Stock)", "pyasic"]
    assert "GET /index.html HTTP/1.1" in site.requests(addresses("same_origin_redirect")[0])


def test_a_poll_reads_the_good_miners_and_names_what_each_hostile_web_server_did(site, tmp_path):
    """The reading path: Bitaxe-looking servers honest at detection, then a bomb or a drip on /api/*;
    and addresses that never identify. `poll` identifies every address, then reads it once."""
    bombs, drip = addresses("honest_then_bomb", "honest_then_unsized_bomb"), addresses("honest_then_drip")
    never = addresses("gzip_bomb", "big_length", "redirect")
    out, err, peak_mb = hashfleet(tmp_path, "poll", "--json", "--timeout", "2",
                                  *(f"{a}:80" for a in [*bombs, *drip, *never, BITAXE]), WHATSMINER)
    samples = {s["host"]: s for s in map(json.loads, out.splitlines())}
    assert peak_mb < PEAK_MB, f"poll peaked at {peak_mb:.0f} MB"
    assert samples[WHATSMINER]["state"] == samples[BITAXE]["state"] == "mining", (samples[WHATSMINER], samples[BITAXE])
    assert samples[BITAXE]["hashrate_ths"] > 1.0
    whys = ("bytes, over the 262,144-byte cap", "a gzip answer inflating past the 262,144-byte cap")
    for address, why in zip(bombs, whys):
        [error] = samples[address]["errors"]
        assert samples[address]["state"] == "error", samples[address]
        assert error.startswith(f"{address}: web answer refused: http://{address}/api/system/info: ") and why in error
    assert samples[drip[0]]["state"] == "offline" and "no data within 2 s" in samples[drip[0]]["errors"][0]
    reasons = {a: samples[a]["errors"][0] for a in never}
    assert "over the 262,144-byte cap" in reasons[never[0]] and "over the 262,144-byte cap" in reasons[never[1]]
    assert f"redirect to another origin ('http://{CATCHER[0]}:{CATCHER[1]}/steal/'), not followed" in reasons[never[2]]
    assert all(samples[a]["state"] == "offline" for a in never)
    assert site.requests(*CATCHER) == []
