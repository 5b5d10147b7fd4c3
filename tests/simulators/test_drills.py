"""Drills from outside the process are outside input: schedule files, the control endpoint and the
commands clients send are checked and capped, and one bad entry costs that entry only.
Real HTTP on loopback; the control endpoint runs on the fleet's own event loop.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from simulators import ManualClock, run_fleet
from simulators.commands import MAX_TEXT, CommandLog, clean_params
from simulators.drills import MAX_ENTRIES, MAX_PENDING, ControlServer, DrillError, load_schedule, parse_change
from simulators.fleet import Fleet


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow value that is tiny as text and 10**levels strings once expanded (billion laughs)."""
    parts = ["&l0 [" + ",".join(["lol"] * 10) + "]"]
    parts += [f"&l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


@pytest.mark.parametrize("where", ["set", "fault"])
def test_an_alias_bomb_in_a_schedule_is_refused_without_expanding_it(tmp_path, where):
    if where == "set":
        text = f"- at: 0\n  address: '*'\n  set: {{ambient_c: {alias_bomb()}}}\n"
    else:
        text = f"- at: 0\n  fault: {alias_bomb()}\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(DrillError, match="entry 1") as info:
        load_schedule(path)  # str() of the value would take hours and gigabytes
    assert "list" in str(info.value) or "text" in str(info.value)


def test_unquoted_board_colon_values_are_not_read_as_base_60_numbers(tmp_path):
    # YAML 1.1 (yaml.safe_load) reads 1:40 as 100 and 1:0.5 as 60.5: a drill on the wrong board, silently.
    path = tmp_path / "drill.yaml"
    path.write_text("- address: '*'\n  set: {chips_dying: 1:40, weak_board: 2:0.5, pool_rejects: 8:2}\n")
    (change,) = load_schedule(path)
    assert change.set == {"chips_dying": ((1, 40.0),), "weak_board": (2, 0.5), "pool_rejects": (8.0, 2.0)}


def test_a_schedule_nested_too_deeply_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000)
    with pytest.raises(DrillError, match="nested too deeply|not YAML or JSON"):
        load_schedule(path)


def test_schedule_files_are_capped_in_size_and_entries(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("#" * (1 << 20) + "\n- {at: 0, address: '*', set: {soft_off: true}}\n")
    with pytest.raises(DrillError, match="larger than"):
        load_schedule(big)
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{"address": "*", "set": {"soft_off": True}}] * (MAX_ENTRIES + 1)))
    with pytest.raises(DrillError, match="at most"):
        load_schedule(many)


@pytest.mark.parametrize(("entry", "hint"), [
    ({"address": "*", "set": {"ambient_c": float("nan")}}, "ambient_c must be"),
    ({"address": "*", "set": {"ambient_c": 1e308}}, "ambient_c must be"),
    ({"address": "*", "at": float("inf"), "set": {"soft_off": True}}, "at must be between"),
    ({"address": "*", "at": -5, "set": {"soft_off": True}}, "at must be between"),
    ({"address": ["*"], "set": {"soft_off": True}}, "address missing"),
    ({"address": "*", "set": {"error_code": "0x" + "f" * 40}}, "error_code"),
    ({"address": "*", "set": {"chips_dying": "1:" + "9" * 400}}, "longer than 200"),
    ({"address": "*", "set": {"soft_off": "maybe"}}, "not true/false"),
    ({"address": "*"}, "nothing to do"),
])
def test_bad_entries_are_refused_naming_what_is_wrong(entry, hint):
    with pytest.raises(DrillError, match="entry 7") as info:
        parse_change(entry, "entry 7")
    assert hint in str(info.value)


def test_device_keys_have_a_text_form_that_reads_back_and_refuses_what_would_break_the_string():
    change = parse_change({"fault": "*:device_keys=GHSspd=inf;MGHS=1 1 1"}, "entry 1")
    assert change.set == {"device_keys": (("GHSspd", "inf"), ("MGHS", "1 1 1"))}
    assert change.describe() == "*: device_keys=GHSspd=inf;MGHS=1 1 1"  # text form, not a tuple's repr
    for bad, hint in (("GHSspd", "write device_keys=KEY=VALUE"), ("GHSspd=1]", "no ']'"),
                      ("Bad-Key=1", "a key is letters")):
        with pytest.raises(DrillError, match="entry 2") as info:
            parse_change({"address": "*", "set": {"device_keys": bad}}, "entry 2")
        assert hint in str(info.value)


def test_clean_params_masks_secrets_and_caps_what_a_client_sends():
    deep: dict = {"x": 1}
    for _ in range(10):
        deep = {"d": deep}
    cleaned = clean_params({"pools": [{"url": "u", "pass": "hunter2"}], "Password": "p", "api_token": "t",
                            "big": "A" * 100_000, "deep": deep, **{f"k{i}": i for i in range(100)},
                            "nan": float("nan")})
    assert cleaned["pools"] == [{"url": "u", "pass": "***"}] and cleaned["Password"] == cleaned["api_token"] == "***"
    assert len(cleaned["big"]) == MAX_TEXT
    assert len(cleaned) == 32  # keys capped
    assert "..." in json.dumps(cleaned["deep"])
    json.dumps(cleaned, allow_nan=False)  # always valid JSON for the log file


def test_a_hostile_write_costs_one_log_line_of_bounded_size(tmp_path):
    log = CommandLog(tmp_path / "c.jsonl")
    with run_fleet("s19jpro:1", base="127.64.0.1", clock=ManualClock(), command_log=log) as sim:
        m = sim.miners[0]
        body = {"pools": [{"url": "x" * 200_000, "user": "u", "pass": "secret"}], "miner-mode": "9" * 10_000}
        answer = httpx.post(f"http://{m.host}/cgi-bin/set_miner_conf.cgi", json=body,
                            auth=httpx.DigestAuth("root", "root"), timeout=10)
        assert answer.json()["stats"] == "error"  # refused ...
        assert httpx.get(f"http://{m.host}/cgi-bin/summary.cgi", auth=httpx.DigestAuth("root", "root"),
                         timeout=5).status_code == 200  # ... and the unit still answers
    log.close()
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 1 and len(lines[0]) < 4096  # 200 KB sent
    assert len(record["params"]["pools"][0]["url"]) == len(record["params"]["miner-mode"]) == MAX_TEXT
    assert len(record["msg"]) <= MAX_TEXT
    assert record["accepted"] is False and record["params"]["pools"][0]["pass"] == "***"
    assert "secret" not in lines[0]


# -- the control endpoint -------------------------------------------------------------------------------------


def control_session(check):
    """Serve one Avalon and the control endpoint on one loop; run `check(client, fleet)` against them."""
    async def go():
        fleet = Fleet.build("a1566:1", base="127.65.0.1", clock=ManualClock())
        async with fleet:
            control = ControlServer(fleet, "127.0.0.1", 0)
            await control.start()
            try:
                async with httpx.AsyncClient(base_url=control.url, timeout=5) as client:
                    await check(client, fleet)
            finally:
                await control.stop()

    asyncio.run(go())


def test_the_control_endpoint_refuses_junk_and_keeps_serving():
    async def check(client, fleet):
        assert (await client.post("/faults", content=b"{not json")).status_code == 400
        r = await client.post("/faults", json={"address": "*", "set": {"chips_dying": "9:1"}})
        assert r.status_code == 400 and "chips_dying on board 9" in r.json()["error"]
        r = await client.post("/faults", json=[{"address": "*", "set": {"soft_off": True}}] * (MAX_ENTRIES + 1))
        assert r.status_code == 400
        assert (await client.post("/faults", content=b"[" + b"1," * (1 << 20) + b"1]")).status_code == 413
        deep = await client.post("/faults", content=b"[" * 100_000)  # too deep for json: was a 500
        assert deep.status_code == 400 and "must be JSON" in deep.json()["error"]
        assert (await client.get("/nothing")).status_code == 404
        assert (await client.delete("/faults")).status_code == 405
        assert fleet.miners[0].faults.active == ()  # nothing half-applied
        r = await client.post("/faults", json={"address": "*", "set": {"hw_errors": 4}})
        assert r.status_code == 200 and fleet.miners[0].faults.hw_errors == 4.0

    control_session(check)


def test_scheduled_control_requests_are_capped():
    async def check(client, fleet):
        later = {"address": "*", "at": 3600, "set": {"soft_off": True}}
        for _ in range(MAX_PENDING):
            assert (await client.post("/faults", json=later)).json()["scheduled"]
        assert (await client.post("/faults", json=later)).status_code == 429
        now = await client.post("/faults", json={"address": "*", "set": {"soft_off": True}})
        assert now.status_code == 200 and fleet.miners[0].faults.soft_off  # changes for now still go through

    control_session(check)


def test_the_control_endpoint_listens_on_loopback_only():
    with pytest.raises(DrillError, match="loopback only"):
        ControlServer(object(), "0.0.0.0", 4999)
