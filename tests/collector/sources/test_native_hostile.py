"""What a miner sends the native readers is hostile until checked (issue 13's rules, now for Antminer,
Whatsminer and Braiins OS+): each attack is a simulated unit whose replies a proxy rewrites on real TCP
(tests/collector/sources/tampering_proxy.py), polled in one cycle beside good units of every make. The
attacked field is refused and named, the rest of that unit's reading is kept, and every good unit is
read as its simulator served it: a bad reply costs its own miner only.

The web UI (an Antminer's MAC, health list, sleep setting) is attacked the same way, from a scripted
HTTP server: a reply too large, one that never ends, garbage where JSON belongs, a hostile MAC.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime, timezone

import pytest

from collector.sources import antminer, web_client, whatsminer
from collector.sources.polled_miners import PolledMiners
from collector.sources.profile import Profile
from models import CollectorConfig, MinerState
from models.hardware import nameplate
from simulators import ManualClock, run_fleet
from tests.collector.sources.tampering_proxy import TamperingProxy, rewrite
from tests.support import HASHFLEET, ServedInThread

TS = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
KEYS = ("s19jpro", "m50s", "bos-s19jpro")
UPSTREAM = "127.53.0.1"
PROXIED = {"s19jpro": "127.53.1.1", "m50s": "127.53.1.2", "bos-s19jpro": "127.53.1.3"}
POLL = {"s19jpro": "stats+pools+summary", "m50s": "summary+devs+pools",
        "bos-s19jpro": "summary+devs+tunerstatus+fans+temps+devdetails+pools"}


@pytest.fixture(scope="module")
def lab():
    """Two units of each make: the first behind the proxy (attacked), the second answering directly."""
    with run_fleet(",".join(f"{k}:2" for k in KEYS), base=UPSTREAM, seed=81, clock=ManualClock()) as fleet:
        firsts = {k: next(m for m in fleet.miners if m.spec.key == k) for k in KEYS}
        with TamperingProxy({PROXIED[k]: m.host for k, m in firsts.items()}) as proxy:
            good = [m for m in fleet.miners if m not in firsts.values()]
            poller = PolledMiners(CollectorConfig(miners=[*PROXIED.values(), *(m.host for m in good)],
                                                  timeout_s=2.0))
            asyncio.run(poller.refresh())  # identified once, through the proxy, before any attack
            yield fleet, proxy, poller, good


def one_cycle(poller: PolledMiners):
    return {s.host: s for s in asyncio.run(poller.cycle(TS)).samples}


def stats_dev(edit):
    return lambda reply: edit(reply["stats"][0]["STATS"][1])


def summary_of(edit):
    return lambda reply: edit(reply["summary"][0]["SUMMARY"][0])


def section(name: str, key: str, edit):
    return lambda reply: edit(reply[name][0][key])


def put(key: str, value):
    return lambda entry: entry.__setitem__(key, value)


# (make, attack, edit of the decoded poll reply, the field refused, or for a reply refused whole the text
# its error must carry)
ATTACKS = [
    ("s19jpro", "hashrate as text 'inf'", stats_dev(put("GHS 5s", "inf")), "hashrate_ths"),
    ("s19jpro", "hashrate 1e300", stats_dev(put("GHS 5s", 1e300)), "hashrate_ths"),
    ("s19jpro", "negative hashrate", stats_dev(put("GHS 5s", -5)), "hashrate_ths"),
    ("s19jpro", "hashrate a list", stats_dev(put("GHS 5s", [1, 2])), "hashrate_ths"),
    ("s19jpro", "nominal 'NaN'", stats_dev(put("total_rateideal", "NaN")), "expected_hashrate_ths"),
    ("s19jpro", "fan 'NaN'", stats_dev(put("fan2", "NaN")), "fans_rpm"),
    ("s19jpro", "chip sensor 9999 C", stats_dev(put("temp_chip1", "9999-60-60-60")), "boards"),
    ("s19jpro", "a billion chips", stats_dev(put("chain_acn2", 10**9)), "boards"),
    ("s19jpro", "a 1 MB sensor string", stats_dev(put("temp_pcb1", "1-" * 500_000)), "boards"),
    ("s19jpro", "uptime 1e12", stats_dev(put("Elapsed", 1e12)), "uptime_s"),
    ("s19jpro", "accepted -1", section("pools", "POOLS", lambda pools: pools[0].update(Accepted=-1)), "pool"),
    ("s19jpro", "device entry a string", lambda reply: reply["stats"][0]["STATS"].__setitem__(1, "x"),
     "carries no device entry"),
    ("s19jpro", "5 MB reply", lambda reply: b'{"stats":[{"x":"' + b"a" * (5 * 2**20) + b'"}]}\x00',
     "reply larger than"),
    ("s19jpro", "number past a double", lambda reply: b'{"stats":[{"STATS":[{},{"GHS 5s":1e400}]}]}\x00',
     "malformed or truncated"),
    ("m50s", "hashrate 'inf'", summary_of(put("MHS 1m", "inf")), "hashrate_ths"),
    ("m50s", "power 1e9 W", summary_of(put("Power", 1e9)), "power_w"),
    ("m50s", "intake 5000 C", summary_of(put("Env Temp", 5000)), "temp_env_c"),
    ("m50s", "fan -1 rpm", summary_of(put("Fan Speed In", -1)), "fans_rpm"),
    ("m50s", "200 slots", section("devs", "DEVS", lambda devs: devs.extend([dict(devs[0])] * 200)), "boards"),
    ("m50s", "a billion chips", section("devs", "DEVS", lambda devs: devs[1].update({"Effective Chips": 10**9})),
     "boards"),
    ("bos-s19jpro", "chip 'inf'", section("temps", "TEMPS", lambda t: t[0].update(Chip="inf")), "boards"),
    ("bos-s19jpro", "power 1e12 W", section("tunerstatus", "TUNERSTATUS",
                                            lambda t: t[0].update(ApproximateMinerPowerConsumption=1e12)), "power_w"),
    ("bos-s19jpro", "1,000 fans", section("fans", "FANS", lambda f: f.extend([dict(f[0])] * 1000)), "fans_rpm"),
    ("bos-s19jpro", "hashrate an object", summary_of(put("MHS 1m", {"a": 1})), "hashrate_ths"),
]


@pytest.mark.parametrize(("key", "attack", "edit", "refused"), ATTACKS, ids=[f"{k}: {a}" for k, a, _, _ in ATTACKS])
def test_a_hostile_reply_costs_its_own_field_and_no_other_miner(lab, key, attack, edit, refused):
    fleet, proxy, poller, good = lab
    address = PROXIED[key]
    proxy.tamper[address] = rewrite(POLL[key], edit)
    try:
        samples = one_cycle(poller)
    finally:
        del proxy.tamper[address]
    hostile = samples[address]
    if " " in refused:  # the reply as a whole is refused
        assert hostile.state is MinerState.ERROR, hostile
        assert any(refused in e for e in hostile.errors), hostile.errors
    else:  # that field is refused and named; the unit's other readings are kept
        assert hostile.unusable == [refused], hostile.errors
        assert any(refused in e and "left empty" in e or "not a plausible reading" in e for e in hostile.errors)
        assert hostile.uptime_s is not None or refused == "uptime_s"
        assert hostile.fans_rpm or refused == "fans_rpm"
        assert hostile.mac is not None and hostile.miner == hostile.mac
        # The unit hashes on: its rate is kept, and only a refused rate puts it in error, whoever refused
        # the field (the reader, or plausibility for a power of 1e9 W).
        assert hostile.state is (MinerState.ERROR if refused == "hashrate_ths" else MinerState.MINING)
        assert hostile.hashrate_ths is None if refused == "hashrate_ths" else hostile.hashrate_ths > 0, hostile
    for miner in good:  # every good unit read as served
        sample = samples[miner.host]
        assert sample.state is MinerState.MINING and not sample.errors, sample
        assert sample.temp_chip_max_c == miner.last_served.temp_chip_max_c
    others = [samples[PROXIED[k]] for k in KEYS if k != key]
    assert all(s.state is MinerState.MINING for s in others)


def served_live_ths(miner) -> float:
    """The live rate the simulated unit put in its last answer, as its firmware's live key carries it."""
    served = miner.last_served
    return served.hashrate_ths if miner.spec.family == "antminer" else served.hashrate_1m_ths


# One bad value beside a unit that hashes (firmware sends -1 for a fan it does not have; a pool counter
# wraps): that field is lost, not the rate. The trial's M50S hashing 126 TH/s was stored as 0 TH/s drawing
# 3,247 W, state error, for a fan at -1 rpm.
ONE_BAD_FIELD = [
    ("m50s", "an absent fan at -1 rpm", summary_of(put("Fan Speed In", -1)), "fans_rpm"),
    ("m50s", "a pool counter of -1", section("pools", "POOLS", lambda pools: pools[0].update(Accepted=-1)), "pool"),
    ("m50s", "uptime -100 s", summary_of(put("Elapsed", -100)), "uptime_s"),
    ("bos-s19jpro", "an absent fan at -1 rpm", section("fans", "FANS", lambda fans: fans[0].update(RPM=-1)),
     "fans_rpm"),
    ("bos-s19jpro", "a pool counter of -1", section("pools", "POOLS", lambda pools: pools[0].update(Accepted=-1)),
     "pool"),
    ("s19jpro", "fan 'NaN'", stats_dev(put("fan2", "NaN")), "fans_rpm"),
]

# CGMiner's `Device Hardware%` (per cent, 0..100) where each make's summary carries it.
ONE_BAD_FIELD += [(key, f"Device Hardware% {value!r}", summary_of(put("Device Hardware%", value)), "hw_error_pct")
                  for key in KEYS for value in ("NaN", -1, 1e300, "x", 100.5, [20])]

@pytest.mark.parametrize(("key", "attack", "edit", "refused"), ONE_BAD_FIELD,
                         ids=[f"{k}: {a}" for k, a, _, _ in ONE_BAD_FIELD])
def test_one_bad_field_costs_that_field_and_a_hashing_unit_stays_mining_at_its_rate(lab, key, attack, edit, refused):
    fleet, proxy, poller, good = lab
    address = PROXIED[key]
    unit = next(m for m in fleet.miners if m.host == proxy.routes[address])
    proxy.tamper[address] = rewrite(POLL[key], edit)
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING, sample
    assert sample.hashrate_ths == pytest.approx(served_live_ths(unit), rel=1e-6) and sample.hashrate_ths > 50
    assert sample.power_w is None if key == "s19jpro" else sample.power_w == int(unit.last_served.power_w)
    assert sample.unusable == [refused]
    assert len(sample.errors) == 1 and refused in sample.errors[0] and "left empty" in sample.errors[0]


# A rate past any unit's beside another bad value (the trial's `huge`): the rate is refused and named,
# never stored as 0 TH/s.
HUGE_RATE = [
    ("m50s", summary_of(lambda s: s.update({"MHS 1m": 1e308, "Fan Speed In": 1e308}))),
    ("bos-s19jpro", lambda reply: (reply["summary"][0]["SUMMARY"][0].update({"MHS 1m": 1e308}),
                                   reply["fans"][0]["FANS"][0].update(RPM=-1))),
]


@pytest.mark.parametrize(("key", "edit"), HUGE_RATE, ids=[k for k, _ in HUGE_RATE])
def test_a_rate_past_any_unit_beside_another_bad_value_is_refused_and_named_never_zero(lab, key, edit):
    fleet, proxy, poller, good = lab
    address = PROXIED[key]
    proxy.tamper[address] = rewrite(POLL[key], lambda reply: (edit(reply), None)[1])
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.ERROR and sample.hashrate_ths is None, sample
    assert {"hashrate_ths", "fans_rpm"} <= set(sample.unusable)
    assert any(e.startswith("hashrate_ths 1e+302 TH/s is more than") for e in sample.errors), sample.errors
    assert sample.power_w is not None


def test_a_bare_inf_token_is_no_reading_not_a_broken_reply(lab):
    fleet, proxy, poller, good = lab
    address = PROXIED["s19jpro"]

    def bare_inf(sent: str, reply: bytes) -> bytes:
        return reply.replace(b'"GHS av":', b'"GHS av": inf, "x":', 1) if sent == POLL["s19jpro"] else reply

    proxy.tamper[address] = bare_inf
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING and sample.hashrate_avg_ths is None and sample.hashrate_ths > 0


@pytest.mark.parametrize("key", ["m50s", "bos-s19jpro"])
@pytest.mark.parametrize("token", [b"Infinity", b"-Infinity", b"NaN"])
def test_an_infinity_token_is_no_value_as_nan_is_and_the_reading_stays(lab, key, token):
    """Python's json writes NaN, Infinity and -Infinity (none of them JSON). NaN cost its value; an
    Infinity, even in a key nobody reads, cost the whole reading ('malformed or truncated JSON')."""
    fleet, proxy, poller, good = lab
    address = PROXIED[key]

    def tokens(sent: str, reply: bytes) -> bytes:
        if sent != POLL[key]:
            return reply
        return reply.replace(b'"MHS av":', b'"Unused Field": ' + token + b', "MHS av": ' + token + b', "x":', 1)

    proxy.tamper[address] = tokens
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING and not sample.errors and not sample.unusable, sample
    assert sample.hashrate_ths > 50 and sample.hashrate_avg_ths is None


def test_a_whatsminer_slot_written_as_text_is_that_slot_not_a_lost_board(lab):
    """`ASC` as "0": the entry was skipped and every board read as lost (chips_ok 0), a dead-board alarm."""
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]
    unit = next(m for m in fleet.miners if m.host == proxy.routes[address])

    def slots_as_text(devs):
        for entry in devs:
            entry["ASC"] = str(entry["ASC"])

    proxy.tamper[address] = rewrite(POLL["m50s"], section("devs", "DEVS", slots_as_text))
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING and not sample.errors, sample
    assert [(b.index, b.chips_ok) for b in sample.boards] == [(b.index, b.chips_ok) for b in unit.last_served.boards]
    assert all(b.chips_ok and b.hashrate_ths > 0 for b in sample.boards)


def test_whatsminer_slots_that_cannot_be_told_apart_call_no_board_lost(lab):
    """Every entry says slot "0" (the trial's `types`): which slots are missing is unknown, so the boards
    are refused as a reading, and none is reported without chips."""
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]

    def every_slot_zero(devs):
        for entry in devs:
            entry["ASC"] = "0"

    proxy.tamper[address] = rewrite(POLL["m50s"], section("devs", "DEVS", every_slot_zero))
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.unusable == ["boards"] and "devs ASC 0 is not a slot number of its own" in sample.errors[0]
    assert [b.index for b in sample.boards] == [0] and sample.boards[0].chips_ok > 0
    assert sample.state is MinerState.MINING and sample.hashrate_ths > 50


def test_braiins_chain_ids_written_as_text_are_those_chains(lab):
    """bosminer writes each chain's `ID` as a number; written as text ("1") every entry was skipped: no
    boards at all, the chain temperatures and chips lost while the unit hashed on."""
    fleet, proxy, poller, good = lab
    address = PROXIED["bos-s19jpro"]
    unit = next(m for m in fleet.miners if m.host == proxy.routes[address])

    def ids_as_text(reply):
        for name, key in (("devs", "DEVS"), ("devdetails", "DEVDETAILS"), ("temps", "TEMPS")):
            for entry in reply[name][0][key]:
                entry["ID"] = str(entry["ID"])
        for chain in reply["tunerstatus"][0]["TUNERSTATUS"][0]["TunerChainStatus"]:
            chain["HashchainIndex"] = str(chain["HashchainIndex"])

    proxy.tamper[address] = rewrite(POLL["bos-s19jpro"], ids_as_text)
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING and not sample.errors and not sample.unusable, sample
    assert [(b.index, b.chips_ok, b.temp_chip_max_c) for b in sample.boards] == [
        (b.index, b.chips_ok, b.temp_chip_max_c) for b in unit.last_served.boards]
    assert all(b.chips_ok and b.hashrate_ths > 0 for b in sample.boards)


@pytest.mark.parametrize("bad_id", ["²", "\u0663", "1.0", "-1", 1.0, True, None, [1], "9" * 40, 1000])
def test_a_braiins_chain_id_that_is_no_whole_number_costs_that_chain_only(lab, bad_id):
    """A `temps` entry whose chain `ID` is no whole number ("²", which str.isdigit takes and int() refuses;
    Arabic-Indic three; a float; a board no unit has) is refused as boards, named, and left out; the
    other chains, the rate and the power stay."""
    fleet, proxy, poller, good = lab
    address = PROXIED["bos-s19jpro"]
    unit = next(m for m in fleet.miners if m.host == proxy.routes[address])
    proxy.tamper[address] = rewrite(POLL["bos-s19jpro"],
                                    section("temps", "TEMPS", lambda temps: temps[0].__setitem__("ID", bad_id)))
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.unusable == ["boards"] and "temps ID" in sample.errors[0], sample.errors
    assert sample.state is MinerState.MINING and sample.power_w == int(unit.last_served.power_w)
    assert sample.hashrate_ths == pytest.approx(served_live_ths(unit), rel=1e-6)
    served = unit.last_served.boards
    assert [b.chips_ok for b in sample.boards] == [b.chips_ok for b in served]  # devs and devdetails: all chains
    assert sample.boards[0].temp_chip_max_c is None  # its temps entry is the one refused
    assert [b.temp_chip_max_c for b in sample.boards[1:]] == [b.temp_chip_max_c for b in served[1:]]


def test_an_error_code_in_other_digits_costs_that_code_only(lab):
    """A 1.x-API Whatsminer's `Error Code 0` "²": str.isdigit takes it, int() refuses it, and the whole
    poll of the unit was an internal error (no rate, no power); "\u0663" (Arabic-Indic three) was read as code 3."""
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]
    unit = next(m for m in fleet.miners if m.host == proxy.routes[address])
    codes = {"Error Code Count": 3, "Error Code 0": "²", "Error Code 1": "\u0663", "Error Code 2": "530"}
    proxy.tamper[address] = rewrite(POLL["m50s"], summary_of(lambda summary: summary.update(codes)))
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert [c.code for c in sample.fault_codes] == [530] and len(sample.errors) == 1, sample
    assert sample.state is MinerState.MINING and sample.power_w == int(unit.last_served.power_w)
    assert sample.hashrate_ths == pytest.approx(served_live_ths(unit), rel=1e-6)
    assert sample.temp_chip_max_c == unit.last_served.temp_chip_max_c and sample.mac is not None


def test_ten_thousand_error_codes_are_capped(lab):
    """A Whatsminer's error list is read apart from the poll; a hostile one is cut to the cap."""
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]
    codes = {"STATUS": "S", "When": 1, "Code": 131,
             "Msg": {"error_code": [{str(500 + i % 400): "2026-01-01 00:00:00"} for i in range(10_000)]}}
    one_cycle(poller)  # the shape the next one changes from (run alone, the first poll set it: nothing re-read)
    proxy.tamper[address] = rewrite("get_error_code", lambda reply: codes)
    miner = next(m for m in fleet.miners if m.host == proxy.routes[address])
    try:
        miner.set_faults(dead_boards=frozenset({2}))  # the reading changes shape: its errors are read again
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
        miner.clear_faults()
    assert len(sample.errors) == 32 and all(len(e) <= 500 for e in sample.errors)


# -- the web UI -------------------------------------------------------------------------------------------


class ScriptedWeb(ServedInThread):
    """A web UI on port 80 of one address that answers every request with `answer` (bytes, then close),
    or never answers (`answer` None); a list: one answer per request, in order, the last one repeated."""

    thread_name = "scripted-web"

    def __init__(self, address: str):
        self.address = address
        self.answer: bytes | None = b""
        super().__init__()

    async def _bind_all(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.address, 80, reuse_address=True)

    async def _close(self) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        answer = self.answer
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if answer is None:
            await asyncio.sleep(3600)
        try:
            writer.write(answer)
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


def http(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CHALLENGE = 'WWW-Authenticate: Digest realm="antMiner Configuration", nonce="abc123", qop="auth"'
WEB_ATTACKS = [
    ("a 401 with a 10 MB page", http("401 Unauthorized", b"x" * (10 * 2**20), CHALLENGE), "larger than"),
    ("200 with 1 MB of garbage", http("200 OK", b"\xff" * 2**20), "larger than"),
    ("200 with text, not JSON", http("200 OK", b"<html>hello</html>"), "not JSON"),
    ("a JSON list", http("200 OK", b"[1,2,3]"), "not an object"),
    ("no HTTP at all", b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    ("a challenge with a header injection", http("401 Unauthorized", b"", 'WWW-Authenticate: Digest realm="x", '
                                                 'nonce="a\rInjected: 1", qop="auth"'), "does not speak"),
    # Chunk sizes int() takes but HTTP does not: "-6" sent the reader back for ever, on the event loop (every
    # miner's cycle, the deadline and the stop held, memory growing ~20 MB/s).
    *((f"a chunk size of {size!r}", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size +
       b'\r\n{"macaddr": "x"}\r\n0\r\n\r\n', "broken chunked encoding") for size in (b"-6", b"+10", b"0x10", b"1_0")),
    # Digits only to str.isdigit ("²00", latin-1 as the head is read: int() refuses it), and more digits than
    # int() reads (4,300): the poll was an internal error, the identification a failed one.
    ("a status in other digits", b"HTTP/1.1 \xb200 OK\r\nContent-Length: 2\r\n\r\n{}", "not an HTTP answer"),
    ("a status of 5,000 digits", b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\n\r\n{}", "not an HTTP answer"),
    ("a chunk past the end", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n{}\r\n0\r\n\r\n",
     "broken chunked encoding"),
    ("never answers", None, "no complete answer within"),
    ("a challenge, then silence", [http("401 Unauthorized", b"", CHALLENGE), None], "no complete"),
]


@pytest.mark.parametrize(("attack", "answer", "said"), WEB_ATTACKS, ids=[a for a, _, _ in WEB_ATTACKS])
def test_a_hostile_web_ui_costs_the_web_fields_and_the_rpc_reading_stays(lab, attack, answer, said):
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "s19jpro")
    address = "127.53.2.1"  # its RPC through the proxy, its web UI scripted
    with TamperingProxy({address: upstream.host}, piped_ports=()), ScriptedWeb(address) as web:
        web.answer = answer
        reader = antminer.Antminer(address, 4028, Profile("AntMiner", "S19j Pro", 3, 126, 4),
                                   web_client.DigestAuth("root", "root"))

        async def identify_then_poll():
            started = asyncio.get_running_loop().time()
            await reader.prepare(1.0)  # the MAC and the health list: the web UI's turn
            prepared = asyncio.get_running_loop().time() - started
            return prepared, await reader.poll(site="s", ts=TS, timeout_s=1.0, known_id=None)

        prepared_s, sample = asyncio.run(identify_then_poll())
    assert prepared_s < 2.5  # two web calls, each within its timeout
    assert sample.state is MinerState.MINING and sample.hashrate_ths > 0, sample
    assert sample.mac is None and sample.miner == f"{address}:4028"  # no MAC read: the address is the id
    assert any(said in w for w in sample.warnings), sample.warnings


def test_a_hostile_mac_is_no_mac(lab):
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "s19jpro")
    address = "127.53.2.2"
    body = b'{"macaddr": "\\u001b[31m<script>' + b"A" * 5000 + b'", "minertype": "Antminer S19j Pro"}'
    with TamperingProxy({address: upstream.host}, piped_ports=()), ScriptedWeb(address) as web:
        web.answer = http("200 OK", body)
        reader = antminer.Antminer(address, 4028, Profile(), None)

        async def run():
            await reader.prepare(1.0)
            return await reader.poll(site="s", ts=TS, timeout_s=1.0, known_id=None)

        sample = asyncio.run(run())
    assert sample.mac is None and sample.miner == f"{address}:4028" and sample.state is MinerState.MINING


def test_a_hostile_health_list_is_capped_and_its_codes_checked(lab):
    """The health list's entries become fault codes (their `code`, `msg` and the chain a message names):
    2,400 entries (under the web reply cap), codes that are no whole number (digits other than ASCII's too),
    texts of any length, a chain no unit has or written in other digits."""
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "s19jpro")
    address = "127.53.2.3"
    entries = [{"type": "x" * 5000, "status": "e", "code": 10**30, "msg": "chain 99999 \u001b[31m" + "A" * 10_000},
               {"type": "error", "status": "e", "code": "4096", "msg": "Error code 4096 on chain 2"},
               {"type": None, "status": "e", "code": True, "msg": None},
               # digits only to str.isdigit: int() refuses "²" (the unit's identification failed), reads "٣" as 3
               {"type": "error", "status": "e", "code": "²", "msg": "Error code \u0663 on chain \u0663"},
               *({"type": "rate", "status": "w", "code": code, "msg": "chain -1"}
                 for code in (-5, 1.5, "0x10", [1], {"a": 1}, "9" * 40, "\u0663", "\u00b2\u00b3") * 300)]
    body = json.dumps({"SUMMARY": [{"status": entries}]}).encode()
    with TamperingProxy({address: upstream.host}, piped_ports=()), ScriptedWeb(address) as web:
        web.answer = http("200 OK", body)
        reader = antminer.Antminer(address, 4028, Profile("AntMiner", "S19j Pro", 3, 126, 4), None)

        async def run():
            await reader.prepare(1.0)
            return await reader.poll(site="s", ts=TS, timeout_s=1.0, known_id=None)

        sample = asyncio.run(run())
    assert sample.state is MinerState.MINING and not sample.warnings, sample
    codes = sample.fault_codes
    assert len(codes) == len(sample.errors) == 32
    assert (codes[0].code, codes[0].board, len(codes[0].meaning), len(codes[0].key)) == (0, None, 200, 52)
    assert (codes[1].code, codes[1].board) == (4096, 2)
    assert (codes[2].key, codes[2].code, codes[2].meaning) == ("summary.cgi status", 0, None)
    assert all(c.code == 0 and c.board is None for c in codes[3:])


def section_entries(key: str, edit):
    """Each entry of a single command's list (`devdetails` answered alone: {"DEVDETAILS": [...]}) edited."""
    def each(reply):
        for entry in reply[key]:
            edit(entry)
    return each


def test_no_temperature_sensor_is_no_reading_not_a_refused_one(lab):
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]
    proxy.tamper[address] = rewrite(POLL["m50s"], summary_of(put("Env Temp", -273)))  # btminer's "no sensor"
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.state is MinerState.MINING and sample.temp_env_c is None and not sample.errors, sample


def test_a_whatsminer_claiming_900_ths_at_30_kw_is_held_to_its_nameplate_not_to_its_own_claims(lab):
    """Trial J M4: its own Factory GHS and Power Limit saying the same made them plausible (3x and 2x its own
    claims); MicroBT's M50S makes ~126 TH/s at ~3.3 kW."""
    fleet, proxy, poller, good = lab
    address = PROXIED["m50s"]
    proxy.tamper[address] = rewrite(POLL["m50s"], summary_of(lambda s: s.update(
        {"MHS 1m": 900e6, "Factory GHS": 900_000, "Power": 30_000, "Power Limit": 30_000})))
    try:
        sample = one_cycle(poller)[address]
    finally:
        del proxy.tamper[address]
    assert sample.model == "M50S VH50" and sample.state is MinerState.ERROR, sample
    assert set(sample.unusable) == {"hashrate_ths", "expected_hashrate_ths", "power_w", "power_limit_w"}, sample.errors
    assert any("3x the Whatsminer M50S nameplate (126 TH/s)" in e for e in sample.errors), sample.errors
    assert any("2x the Whatsminer M50S nameplate (3276 W)" in e for e in sample.errors), sample.errors


def test_a_whatsminer_model_not_catalogued_is_held_to_the_largest_whatsminer(lab):
    """A model the catalogue lacks (a new bin, a new series): the largest Whatsminer catalogued, never its own
    claims (2,500 TH/s "expected", a 30 kW limit) nor any unit's (5,000 TH/s, 30 kW)."""
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "m50s")
    address = "127.53.2.4"
    with TamperingProxy({address: upstream.host}, piped_ports=()) as other:
        other.tamper[address] = tamper_all(
            rewrite("devdetails", section_entries("DEVDETAILS", put("Model", "M99S_VZ10"))),  # no one knows it
            rewrite(POLL["m50s"], summary_of(lambda s: s.update(
                {"MHS 1m": 2500e6, "Factory GHS": 2_500_000, "Power": 30_000, "Power Limit": 30_000}))))
        unknown = PolledMiners(CollectorConfig(miners=[address], timeout_s=2.0))

        async def identify_then_poll():
            await unknown.refresh()
            return await unknown.cycle(TS)

        [sample] = asyncio.run(identify_then_poll()).samples
    assert sample.make == "WhatsMiner" and nameplate(sample.model) is None, sample
    assert sample.state is MinerState.ERROR, sample
    assert set(sample.unusable) == {"hashrate_ths", "expected_hashrate_ths", "power_w", "power_limit_w"}, sample.errors
    assert any("largest MicroBT unit catalogued (600 TH/s)" in e for e in sample.errors), sample.errors


ANSI = "\x1b[2J\x1b[H\x1b[31;1mPWNED\x1b[0m\x1b]0;owned\x07\x9b31m"  # trial J's, and a one-byte (C1) CSI


def printable_throughout(sample) -> bool:
    """Every text of the sample (errors, warnings, firmware, codes' meanings...) holds no control character."""
    def texts(value):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from texts(item)
        elif isinstance(value, list):
            for item in value:
                yield from texts(item)

    return all(text.isprintable() for text in texts(sample.model_dump(mode="json")))


def test_a_miners_words_reach_the_sample_without_their_control_characters(lab):
    """Trial J M1: a failed command's `Msg` and a Braiins chain's tuner state were copied into `errors` as sent:
    `poll`'s note column and `watch` printed the escapes (the screen cleared, the title set)."""
    fleet, proxy, poller, good = lab
    wm, bos = PROXIED["m50s"], PROXIED["bos-s19jpro"]
    proxy.tamper[wm] = rewrite(POLL["m50s"], lambda reply: {
        "STATUS": [{"STATUS": "E", "When": 0, "Code": 14, "Msg": ANSI + "X" * 100_000, "Description": ""}]})
    proxy.tamper[bos] = rewrite(POLL["bos-s19jpro"], section(
        "tunerstatus", "TUNERSTATUS", lambda t: t[0]["TunerChainStatus"][0].update(Status="Failed " + ANSI)))
    try:
        samples = one_cycle(poller)
    finally:
        del proxy.tamper[wm], proxy.tamper[bos]
    failed, tuned = samples[wm], samples[bos]
    assert failed.state is MinerState.ERROR and "PWNED" in failed.errors[0], failed.errors
    assert tuned.state is MinerState.MINING and any("PWNED" in e for e in tuned.errors), tuned.errors
    assert any("PWNED" in c.meaning for c in tuned.fault_codes), tuned.fault_codes
    for sample in (failed, tuned):
        assert printable_throughout(sample), sample.model_dump_json()


def test_poll_prints_a_miners_words_without_their_escapes(lab):
    """`hashfleet poll` over the same hostile replies: its note column showed `^[[2J^[[H^[[31;1mPWNED`."""
    fleet, proxy, poller, good = lab
    wm, bos = PROXIED["m50s"], PROXIED["bos-s19jpro"]
    proxy.tamper[wm] = rewrite(POLL["m50s"], lambda reply: {"STATUS": [{"STATUS": "E", "Msg": ANSI}]})
    proxy.tamper[bos] = rewrite(POLL["bos-s19jpro"], section(
        "tunerstatus", "TUNERSTATUS", lambda t: t[0]["TunerChainStatus"][0].update(Status="Failed " + ANSI)))
    try:
        table = subprocess.run([HASHFLEET, "poll", wm, bos, "--timeout", "3"], capture_output=True, timeout=120)
        lines = subprocess.run([HASHFLEET, "poll", wm, bos, "--timeout", "3", "--json"], capture_output=True,
                               timeout=120)
    finally:
        del proxy.tamper[wm], proxy.tamper[bos]
    assert table.returncode == lines.returncode == 0, table.stderr
    assert table.stdout.count(b"PWNED") == 2 and lines.stdout.count(b"PWNED") >= 2, table.stdout
    for out in (table.stdout, lines.stdout):
        text = out.decode()
        assert all(line.isprintable() for line in text.splitlines()), text  # no ESC, BEL, CSI, CR anywhere
        assert "\\u001b" not in text and "\\u0007" not in text and "\\u009b" not in text, text


def test_a_whatsminers_firmware_and_failed_get_commands_reach_the_sample_without_escapes(lab):
    """`get_version`'s fw_ver is the sample's firmware (JSON, Home Assistant's sw_version); a `get_*` answered
    with STATUS E is a warning."""
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "m50s")
    address = "127.53.2.5"
    with TamperingProxy({address: upstream.host}, piped_ports=()) as other:
        other.tamper[address] = tamper_all(
            rewrite("get_version", lambda reply: reply["Msg"].update(fw_ver="20230911.12.Rel" + ANSI)),
            rewrite("get_error_code", lambda reply: {"STATUS": "E", "When": 0, "Code": 14, "Msg": ANSI * 50}))
        reader = whatsminer.Whatsminer(address, 4028, Profile("WhatsMiner", "M50S VH50", 3, 135, 2))

        async def run():
            await reader.prepare(1.0)
            return await reader.poll(site="s", ts=TS, timeout_s=1.0, known_id=None)

        sample = asyncio.run(run())
    assert sample.state is MinerState.MINING, sample.errors
    assert "PWNED" in sample.firmware and any("PWNED" in w for w in sample.warnings), sample
    assert printable_throughout(sample), sample.model_dump_json()


def test_a_group_mac_is_no_miner_id(lab):
    """Trial J L5: a MAC with the multicast bit set (23:90:5C:...) is no network card's own address; taken as the
    id, a firmware making one up at each read would start a new miner (a new series) every time. The id falls back
    to the address, as for a unit that gives no MAC."""
    fleet, proxy, poller, good = lab
    upstream = next(m for m in good if m.spec.key == "m50s")
    address = "127.53.2.6"
    with TamperingProxy({address: upstream.host}, piped_ports=()) as other:
        other.tamper[address] = rewrite("get_miner_info", lambda reply: reply["Msg"].update(mac="23:90:5C:00:11:22"))
        reader = whatsminer.Whatsminer(address, 4028, Profile("WhatsMiner", "M50S VH50", 3, 135, 2))

        async def run():
            await reader.prepare(1.0)
            return await reader.poll(site="s", ts=TS, timeout_s=1.0, known_id=None)

        sample = asyncio.run(run())
    assert sample.state is MinerState.MINING, sample.errors
    assert sample.mac is None and sample.miner == f"{address}:4028", sample


def tamper_all(*tampers):
    """Several tamper functions in one: each rewrites the replies to its own command."""
    def tamper(sent: str, reply: bytes) -> bytes:
        for one in tampers:
            reply = one(sent, reply)
        return reply

    return tamper
