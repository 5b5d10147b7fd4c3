"""The collector's commands as a user runs them: poll, scan, watch, collect and its shutdown."""

import json
import os
import signal
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import HASHFLEET, REPO, wait_for

from collector.stages import pool_days
from models import MinerSample, MinerState
from models.pool import DayStatus
from models.reconciliation import SiteDay
from simulators.fleet import run_fleet


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=timeout)


def test_poll_json_prints_one_valid_minersample_per_line():
    with run_fleet("a1566:1,q:1", base="127.43.0.1:0", seed=1) as fleet:
        result = run("poll", *(m.address for m in fleet), "--json")
    assert result.returncode == 0, result.stderr
    samples = [MinerSample.model_validate_json(line) for line in result.stdout.splitlines()]
    assert [s.port for s in samples] == sorted(m.port for m in fleet)
    assert all(s.state is MinerState.MINING and s.power_w for s in samples)


def test_poll_table_shows_each_miner_and_the_fleet_total():
    with run_fleet("a1246:2", base="127.43.1.1:0", seed=1) as fleet:
        result = subprocess.run([HASHFLEET, "poll", *(m.address for m in fleet)], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0
    assert result.stdout.count("mining") >= 2 and "fleet" in result.stdout and "2/2 mining" in result.stdout


def test_text_from_a_miner_is_printed_as_it_is_never_read_as_markup(tmp_path):
    # A reply value holding `[/b]` is quoted in the miner's error; rich read it as a closing tag, raised
    # MarkupError, and poll's table, health's queue and the whole live view of watch ended with exit 1.
    env = {**os.environ, "COLUMNS": "200", "HASHFLEET_SPOOL_DIR": str(tmp_path)}
    with run_fleet("a1566:1", base="127.43.5.1:0", seed=4) as fleet:
        fleet[0].set_faults(device_keys={"GHSspd": "[/b"})
        address = fleet.addresses[0]
        for args in (["poll", address], ["health", "--miners", address],
                     ["watch", "--miners", address, "--interval", "1", "--cycles", "2"]):
            result = subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode == 0 and "Traceback" not in result.stderr, (args[0], result.stderr[-2000:])
            assert "GHSspd[[/b]" in result.stdout, (args[0], result.stdout[-2000:])


def test_poll_waits_the_configs_timeout_unless_timeout_is_given(tmp_path):
    # --timeout always passed 5 s, so a config's `timeout_s` never applied to poll.
    silent = socket.create_server(("127.43.7.1", 0))  # takes the connection (the kernel's backlog), never answers
    address = "%s:%d" % silent.getsockname()
    config = tmp_path / "c.yaml"
    config.write_text("timeout_s: 1\n")
    with silent:
        waits = {}
        for name, args in (("config", ["--config", str(config)]), ("flag", ["--config", str(config), "--timeout", "2"]),
                           ("default", [])):
            result = run("poll", address, "--json", *args)
            assert result.returncode == 1, result.stderr  # (none answered)
            [error] = MinerSample.model_validate_json(result.stdout).errors
            waits[name] = error.rsplit("no complete answer within ", 1)[1]
    assert waits == {"config": "1 s", "flag": "2 s", "default": "5 s"}


def test_poll_reaches_a_miner_by_dns_name():
    with run_fleet("nano3s:1", base="127.0.0.1:0", seed=1) as fleet:
        result = run("poll", f"localhost:{fleet[0].port}", "--json")
    sample = MinerSample.model_validate_json(result.stdout)
    assert sample.host == "127.0.0.1" and sample.state is MinerState.MINING


def test_a_dns_name_that_resolves_to_no_address_is_an_offline_sample_not_silence():
    with run_fleet("nano3s:1", base="127.0.0.1:0", seed=1) as fleet:
        result = run("poll", f"localhost:{fleet[0].port}", "no-such-miner.invalid", "--json")
    samples = {s.miner: s for s in map(MinerSample.model_validate_json, result.stdout.splitlines())}
    assert len(samples) == 2, result.stdout  # the name that resolves has no sample of its own
    named = samples.pop("no-such-miner.invalid:4028")
    assert named.host == "no-such-miner.invalid" and named.state is MinerState.OFFLINE
    assert named.errors == ["no-such-miner.invalid: DNS name resolves to no address"]
    [(_, resolved)] = samples.items()
    assert resolved.host == "127.0.0.1" and resolved.state is MinerState.MINING


def test_poll_exits_1_when_no_miner_answered_and_still_prints_what_it_read():
    # Trial ZB, L5: exit 0 with every row offline; `advise` exits 1 then: a cron check could not tell.
    with run_fleet("a1566:1", base="127.43.9.1", seed=1) as fleet:
        one_up = run("poll", fleet[0].address, "127.43.9.9", "--json")
        none_up = run("poll", "127.43.9.9", "127.43.9.8", "--json")
    assert one_up.returncode == 0, one_up.stderr
    assert none_up.returncode == 1 and none_up.stderr.endswith("hashfleet: no miner answered (2 polled)\n"), none_up.stderr
    assert [MinerSample.model_validate_json(line).state for line in none_up.stdout.splitlines()] == [MinerState.OFFLINE] * 2


def test_scan_finds_miners_in_a_range_with_make_and_model():
    with run_fleet("a1246:1,q:1,nano3s:1", base="127.43.2.1", seed=1):
        result = run("scan", "127.43.2.0/29", "--timeout", "5")  # (1 s missed a miner on a loaded machine)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert [line.split("\t")[0] for line in lines] == ["127.43.2.1:4028", "127.43.2.2:4028", "127.43.2.3:4028"]
    assert "AvalonMiner 1246-83" in lines[0] and "Avalon Q" in lines[1] and "avalon" in lines[2]
    assert "3 miner(s) found in 6 address(es)" in result.stderr


def test_collect_polls_a_range_and_keeps_polling_a_miner_that_goes_silent(tmp_path):
    with run_fleet("a1246:2", base="127.43.3.1", seed=2) as fleet:
        log = tmp_path / "log"
        proc = subprocess.Popen([HASHFLEET, "--log-level", "INFO", "watch", "--miners", "127.43.3.0/30",
                                 "--interval", "1", "--cycles", "3"], stdout=subprocess.DEVNULL,
                                stderr=log.open("w"))
        wait_for(lambda: "cycle 1:" in log.read_text(), timeout=20, what="first cycle")
        fleet[1].set_faults(no_answer=True)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "127.43.3.0/30: 2 new miner(s) found (2 polled in the range)" in text
    assert "cycle 1: 2 miners, 0 failed" in text
    assert "cycle 3: 2 miners, 1 failed" in text  # the silent one is still there, as a failure


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_sigterm_lets_the_running_cycle_finish_and_exits_cleanly(tmp_path, stop):
    # SIGHUP (a closed SSH session) ended it at once, exit 129, like a crash: it stops as SIGTERM does.
    with run_fleet("a1566:1,a1246:1", base="127.43.4.1:0", seed=3) as fleet:
        fast, slow = fleet[0], fleet[1]
        slow.set_faults(slow_s=2.0)
        log = tmp_path / "log"
        proc = subprocess.Popen([HASHFLEET, "watch", "--miners", f"{fast.address},{slow.address}",
                                 "--interval", "60"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
        # version + poll
        wait_for(lambda: fast.answers >= 2, timeout=20, what="the fast miner to answer in the first cycle")
        assert slow.last_served is None  # the slow one is still being waited for
        proc.send_signal(stop)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "cycle 1: 2 miners, 0 failed" in text  # the cycle in flight finished, slow miner included
    assert "stopped after 1 cycle(s)" in text


def test_watch_without_miners_is_a_usage_error():
    result = run("watch")
    assert result.returncode == 2 and "no miners to watch" in result.stderr


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_log_level_logging_does_not_know_is_a_usage_error_naming_it(how):
    # Trial ZB, H1: a traceback and exit 1 (logging's ValueError): one typo in a unit file, a crash loop.
    env = {**os.environ, "HASHFLEET_LOG_LEVEL": "verbose"} if how == "environment" else os.environ
    flag = ["--log-level", "verbose"] if how == "flag" else []
    result = subprocess.run([HASHFLEET, *flag, "watch"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == "hashfleet: --log-level (or HASHFLEET_LOG_LEVEL) 'verbose': one of DEBUG, INFO, WARNING, ERROR\n"
    quiet = subprocess.run([HASHFLEET, "--log-level", "warning", "watch"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 2 and "no miners to watch" in quiet.stderr  # any case, as before


def test_the_config_file_may_come_from_the_environment(tmp_path):
    # Trial ZE (L4): `docker compose exec collector hashfleet health` said "no miners to read": only `collect`'s
    # command line named the config. The stack sets HASHFLEET_CONFIG; every command reads it; a flag wins.
    config = tmp_path / "site.yaml"
    config.write_text("miners: [127.0.0.1]\ninterval_s: ten\n")
    env = {**os.environ, "HASHFLEET_CONFIG": str(config)}
    for command in (["watch"], ["health"], ["report"], ["poll", "127.0.0.1"], ["advise"], ["pools"], ["backtest"], ["collect"]):
        result = subprocess.run([HASHFLEET, *command], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 2 and str(config) in result.stderr and "interval_s" in result.stderr, (
            command, result.stderr)
    other = tmp_path / "other.yaml"
    other.write_text("miners: [127.0.0.1]\npools: []\n")
    flag = subprocess.run([HASHFLEET, "pools", "--config", str(other)], capture_output=True, text=True, timeout=60,
                          env=env)
    assert flag.returncode == 2 and "no pools configured" in flag.stderr, flag.stderr


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("simulate", "poll", "collect", "scan", "watch", "cost", "pools"):
        assert command in result.stdout


def test_pools_without_pools_is_a_usage_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("miners: [127.0.0.1]\n")
    result = run("pools", "--config", str(config))
    assert result.returncode == 2 and "no pools configured" in result.stderr


def test_pools_says_which_pool_could_not_be_read_and_exits_1(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pools:\n  - {kind: ocean, account: bc1qsite, url: 'http://127.0.0.1:9/v1', timeout_s: 2}\n")
    result = run("pools", "--config", str(config), "--json")
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["pools"][0]["error"] and out["pools"][0]["stale"] and out["pools"][0]["workers"] == []
    assert out["reconciliation"] is None
    assert out["reconciliation_note"] == "no closed day reconciled yet: the collector keeps the books (hashfleet collect)"


def test_the_service_log_survives_pyasic_being_imported(tmp_path):
    # An empty address in a scanned range goes to pyasic's detection, whose import used to set the
    # root logger to WARNING and silence every INFO line after it.
    with run_fleet("a1246:1", base="127.43.5.1", seed=5):
        result = run("collect", "--miners", "127.43.5.0/30", "--cycles", "1")
    assert result.returncode == 0, result.stderr
    assert "127.43.5.0/30: 1 new miner(s) found (1 polled in the range)" in result.stderr
    assert "cycle 1: 1 miners, 0 failed" in result.stderr


def test_the_service_loop_collects_garbage_less_often():
    """A 10,000-miner cycle spent ~0.5 s in the garbage collector at Python's default threshold."""
    import gc

    from collector.service import GC_GEN0_THRESHOLD
    from collector.service import run_event_loop as _run

    async def threshold():
        return gc.get_threshold()

    before = gc.get_threshold()
    try:
        assert _run(threshold())[0] == GC_GEN0_THRESHOLD > before[0]
    finally:
        gc.set_threshold(*before)


def test_the_service_collects_garbage_once_each_cycle_is_over():
    """A reference cycle left by one cycle is freed before the next begins, though the automatic
    threshold (above what a cycle keeps alive) is never reached: collector.service.collect_garbage."""
    import gc
    import weakref

    from collector import service

    class Node:
        def __init__(self) -> None:
            self.me = self  # only the cyclic collector frees it

    left: list[weakref.ref] = []
    alive_at_start: list[bool] = []

    class LeavesACycle:
        async def write_miners(self, part) -> None:
            return None

        async def write(self, cycle) -> None:
            left.append(weakref.ref(Node()))

        def close(self) -> None:
            return None

    async def three_cycles() -> int:
        return await service.run([], [], [LeavesACycle()], site="gc", interval_s=0.01, cycles=3,
                                 on_cycle_start=lambda cycle: alive_at_start.append(any(r() is not None for r in left)))

    before = gc.get_threshold()
    gc.collect()
    try:
        assert service.run_event_loop(three_cycles()) == 3
    finally:
        gc.set_threshold(*before)
    assert alive_at_start == [False, False, False] and len(left) == 3


def test_collect_garbage_reaches_the_older_generations_on_its_cadence():
    import gc

    from collector.service import GC_FULL_EVERY, GC_MIDDLE_EVERY, collect_garbage

    seen: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    try:
        for done in (1, GC_MIDDLE_EVERY - 1, GC_MIDDLE_EVERY, GC_MIDDLE_EVERY + 1, GC_FULL_EVERY, 2 * GC_FULL_EVERY):
            collect_garbage(done)
    finally:
        gc.callbacks.remove(record)
    assert seen == [0, 0, 1, 0, 2, 2]


def test_the_readme_command_table_matches_the_cli():
    # Each row's command names only options the command has, and every option it requires (unless
    # the row elides some with "...").
    import re

    import typer

    from collector.commands import _register_plugins, app

    _register_plugins()
    root = typer.main.get_command(app)
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `(hashfleet [^`]*)` \|", readme, flags=re.MULTILINE)
    assert len(rows) >= 10
    for row in rows:
        words = row.replace("\\|", "|").split()[1:]
        command = root
        while hasattr(command, "commands"):  # a group (typer vendors click: no isinstance on click's)
            command = command.commands[words.pop(0)]
        options = {opt for p in command.params for opt in p.opts}
        named = set(re.findall(r"--[a-z][a-z-]*", row))
        assert named <= options, f"{row}: {sorted(named - options)} not options of the command"
        if "..." not in row:
            required = {p.opts[0] for p in command.params if p.required and p.param_type_name == "option"}
            assert required <= named, f"{row}: leaves out required {sorted(required - named)}"



def test_the_health_synopses_name_every_option_of_the_command():
    # The test above lets a row leave options out; README's row and docs/health.md's synopsis of
    # `hashfleet health` are meant to be whole: each names every option `hashfleet health --help` shows.
    import re

    import typer

    from collector.commands import _register_plugins, app

    _register_plugins()
    command = typer.main.get_command(app).commands["health"]
    options = {p.opts[0] for p in command.params if p.param_type_name == "option"} - {"--help"}
    readme = re.search(r"^\| `(hashfleet health [^`]*)` \|", (REPO / "README.md").read_text(), flags=re.MULTILINE)
    docs = re.search(r"^\*\*`(hashfleet health [^`]*)`\*\*", (REPO / "docs" / "health.md").read_text(),
                     flags=re.MULTILINE)
    assert readme and docs
    for synopsis in (readme.group(1), docs.group(1)):
        assert set(re.findall(r"--[a-z][a-z-]*", synopsis)) == options, synopsis

def test_scan_lists_an_address_given_twice_or_inside_a_range_once():
    with run_fleet("nano3s:1", base="127.43.3.1", seed=1):
        result = run("scan", "127.43.3.0/29", "127.43.3.1", "127.43.3.1:4028", "--timeout", "1")
        poll = run("poll", "127.43.3.1", "127.43.3.1:4028", "--json")
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["127.43.3.1:4028"]
    assert "1 miner(s) found in 6 address(es)" in result.stderr
    assert poll.returncode == 0 and len(poll.stdout.splitlines()) == 1  # poll, like collect, polls it once


def test_pyasic_warnings_go_to_the_log_not_the_terminal(tmp_path):
    # pyasic reading an A1466 warns "Partially supported miner found ... open an issue on GitHub"; asyncssh,
    # which pyasic imports, warns five times that DSA is deprecated (cryptography >= 43).
    config = tmp_path / "c.yaml"
    config.write_text("readers: {avalon: pyasic}\n")
    with run_fleet("a1466:1", base="127.43.4.1", seed=1):
        quiet = run("poll", "127.43.4.1", "--config", str(config), "--json")
        debug = run("--log-level", "DEBUG", "poll", "127.43.4.1", "--config", str(config), "--json")
    assert quiet.returncode == 0, quiet.stderr
    assert MinerSample.model_validate_json(quiet.stdout).source == "pyasic"
    assert "Partially supported" not in quiet.stderr and "Warning" not in quiet.stderr, quiet.stderr
    assert " DEBUG pyasic: UserWarning: Partially supported miner found" in debug.stderr
    assert " DEBUG pyasic: CryptographyDeprecationWarning: DSA is deprecated" in debug.stderr
    assert "warnings.warn(" not in debug.stderr


def test_only_the_commands_that_read_pools_need_a_pools_token(tmp_path):
    # With `pools:` configured, `report` (the local history only) refused to run without the Braiins token.
    config = tmp_path / "c.yaml"
    config.write_text("site: tok\neconomics: {tariff: {kind: flat, usd_per_kwh: 0.05}}\n"
                      "network: {source: static, static: {difficulty: 1.2e14, height: 925000, btc_price_usd: 95000}}\n"
                      "pools: [{kind: braiins, account: acct}]\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "BRAIINS"))},
           "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    missing = "no read-only API token"
    with run_fleet("a1566:1", base="127.43.5.1", seed=1) as fleet:
        for args in (["report", "--json"], ["watch", "--cycles", "1", "--miners", fleet.addresses[0]],
                     ["health", "--json", "--miners", fleet.addresses[0]], ["advise", "--json", "--miners", fleet.addresses[0]],
                     ["poll", fleet.addresses[0], "--json"]):
            result = subprocess.run([HASHFLEET, *args, "--config", str(config)], capture_output=True, text=True,
                                    timeout=60, env=env)
            assert missing not in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        for args in (["collect", "--cycles", "1"], ["pools"]):
            result = subprocess.run([HASHFLEET, *args, "--config", str(config)], capture_output=True, text=True,
                                    timeout=60, env=env)
            assert result.returncode == 2 and missing in result.stderr, (args, result.stderr)


def test_poll_gives_one_id_to_one_miner_as_collect_does():
    # Two addresses answering with one MAC (cloned firmware): poll printed both under it, where collect keeps
    # it for the first and stores the other under its address, naming the clash.
    with run_fleet("a1566:1", base="127.43.6.1", seed=5) as one, run_fleet("a1566:1", base="127.43.6.2", seed=5) as clone:
        result = run("poll", one.addresses[0], clone.addresses[0], "--json")
    assert result.returncode == 0, result.stderr
    first, second = (MinerSample.model_validate_json(line) for line in result.stdout.splitlines())
    assert first.mac == second.mac and first.miner == first.mac
    assert second.miner == f"{second.host}:{second.port}" and any("duplicate" in e for e in second.errors), second.errors


def test_pools_reads_the_books_of_the_site_and_shard_it_is_given(tmp_path):
    # pools had no --site and ignored HASHFLEET_SITE: in the compose stack (site from the environment, none in
    # the config) it read the books of site `default`. Each site's and shard's books, told apart by their figure:
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    books = {"default": 1.0, "east": 2.0, "east.shard-2-of-3": 3.0}
    for folder, figure in books.items():
        state = pool_days.State(as_of=datetime.now(UTC) - timedelta(hours=1))
        state.results[day] = pool_days.DayResults(site=SiteDay(
            site=folder.split(".")[0], day=day, status=DayStatus.CLOSED, realized_all_in_cost_per_btc=figure))
        (tmp_path / folder).mkdir()
        pool_days.save(tmp_path / folder / "pool-days.json", state)
    config = tmp_path / "c.yaml"
    config.write_text("pools:\n  - {kind: ocean, account: bc1qsite, url: 'http://127.0.0.1:9/v1', timeout_s: 2}\n")
    env = {k: v for k, v in os.environ.items() if k != "HASHFLEET_SITE"} | {"HASHFLEET_SPOOL_DIR": str(tmp_path)}
    read = {}
    for name, args, site in (("config", [], None), ("env", [], "east"), ("flag", ["--site", "east"], "west"),
                             ("shard", ["--site", "east", "--shard", "2/3"], None)):
        result = subprocess.run([HASHFLEET, "pools", "--config", str(config), "--json", *args], capture_output=True,
                                text=True, timeout=60, env=env | ({"HASHFLEET_SITE": site} if site else {}))
        assert result.returncode == 1, result.stderr  # (the pool is down: its books are still shown)
        out = json.loads(result.stdout)
        read[name] = (out["site"], out["reconciliation"]["site"]["realized_all_in_cost_per_btc"])
    assert read == {"config": ("default", 1.0), "env": ("east", 2.0), "flag": ("east", 2.0), "shard": ("east", 3.0)}


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("1.5s", 1), ("90m", 5400), ("24h", 86400), ("7d", 604800)])
def test_a_period_takes_seconds_minutes_hours_or_days(text, seconds):
    # `--since 30s` was refused ("m, h or d") while the docs said a period of at least a second.
    from collector.commands.common import parse_period

    assert parse_period("--since", text) == seconds


@pytest.mark.parametrize("text", ["0.5s", "30", "30x", "infs", "s"])
def test_a_period_of_less_than_a_second_or_without_its_unit_is_a_usage_error(text, capsys):
    import typer

    from collector.commands.common import parse_period

    with pytest.raises(typer.Exit) as refused:
        parse_period("--since", text)
    assert refused.value.exit_code == 2 and f"--since {text!r}" in capsys.readouterr().err
