"""The commands' tables where no terminal is attached (a pipe, a file, cron) and on an 80-column terminal.

Through a pipe rich assumed 80 columns (or COLUMNS): the wide layout came out squeezed, the miner, model,
average and note columns all `…` and rows wrapped into empty lines. Nothing wraps a pipe's lines, so every
table is printed whole there. On a narrow terminal `report` has a compact layout, as `watch` has.
"""

import io
import json
import os
import shlex
import subprocess

import pytest
from tests.support import HASHFLEET, REPO, Pane, wait_for

from models import MinerSample
from simulators.fleet import run_fleet


def through_a_pipe(*args: str, env: dict) -> str:
    """stdout of `hashfleet ARGS` read from a pipe, no terminal on any stream, COLUMNS at 80."""
    result = subprocess.run([HASHFLEET, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=120, env={**env, "COLUMNS": "80", "LINES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def table_rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│")]


def test_poll_health_and_advise_through_a_pipe_print_every_table_whole(tmp_path):
    config = tmp_path / "hashfleet.yaml"
    env = {**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    with run_fleet("a1246:2,a1566:2", base="127.46.0.1:0", seed=7) as fleet:
        fleet[1].set_faults(device_keys={"GHSspd": "x"})  # an error: the note column and a health problem
        config.write_text(f"site: pipe\nminers: {json.dumps(fleet.addresses)}\n"
                          "economics: {tariff: {kind: flat, usd_per_kwh: 0.03}}\n"
                          "network: {source: static, static: {difficulty: 1.5e14, height: 925000,"
                          " btc_price_usd: 95000}}\n")
        nobody = "127.46.0.99:1"  # nothing listens: its note, the reason, is longer than a terminal's 60 characters
        samples = [MinerSample.model_validate_json(line)
                   for line in through_a_pipe("poll", *fleet.addresses, nobody, "--json", env=env).splitlines()]
        poll = through_a_pipe("poll", *fleet.addresses, nobody, env=env)
        health = through_a_pipe("health", "--config", str(config), env=env)
        advise = through_a_pipe("advise", "--config", str(config), "--price", "0.06", env=env)
    for name, stdout in (("poll", poll), ("health", health), ("advise", advise)):
        assert "…" not in stdout, f"{name} cut a column:\n{stdout}"
    # One line a miner (no row wrapped), each with its id, address and model whole, and the fleet's total.
    rows = table_rows(poll)
    assert len(rows) == len(samples) + 1, poll
    for s in samples:
        assert any(s.miner in row and f"{s.host}:{s.port}" in row and (s.model or "-") in row for row in rows), poll
    assert "TH/s avg" in poll and "note" in poll and "GHSspd[x] is not a number" in poll, poll
    [offline] = [s for s in samples if s.port == 1]
    assert len("; ".join(offline.errors)) > 60 and "; ".join(offline.errors) in poll, poll  # (trial ZB: cut at 60)
    broken = next(s for s in samples if s.port == fleet[1].port)
    assert len(table_rows(health)) == 1 and broken.miner in table_rows(health)[0], health
    assert table_rows(advise) and all(any(s.miner in row and f"{s.host}:{s.port}" in row for s in samples)
                                      for row in table_rows(advise)), advise


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    """Three cycles of four miners and their cost in a local history; the environment that reads it."""
    spool = tmp_path_factory.mktemp("history")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}
    env["HASHFLEET_SPOOL_DIR"] = str(spool)
    with run_fleet("a1246:2,a1566:2", base="127.46.1.1:0", seed=7) as fleet:
        collected = subprocess.run([HASHFLEET, "collect", "--config", str(REPO / "hashfleet.example.yaml"), "--miners",
                                    ",".join(fleet.addresses), "--cycles", "3", "--interval", "1"],
                                   capture_output=True, text=True, timeout=120, env=env)
    assert collected.returncode == 0, collected.stderr[-2000:]
    return env


def _usd(value: float) -> str:
    return f"${value:,.0f}"


REPORT = ("report", "--config", str(REPO / "hashfleet.example.yaml"), "--since", "1h")


def test_report_through_a_pipe_prints_both_tables_whole(history):
    summary = json.loads(through_a_pipe(*REPORT, "--json", env=history))
    report = through_a_pipe(*REPORT, env=history)
    assert "…" not in report, report
    rows = table_rows(report)
    miners, totals = rows[:-2], " ".join(rows[-2:])  # the site's totals, then its cost: a table each
    assert len(miners) == 4 and all(any(m["miner"] in row and m["model"] in row for row in miners)
                                    for m in summary["miners"]), report
    assert _usd(summary["cash_cost_per_btc"]) in totals and _usd(summary["all_in_cost_per_btc"]) in totals, report


def on_a_terminal(tmp_path, args: list[str], width: int, height: int, *env: str) -> list[str]:
    """The screen of a `width` x `height` terminal (a tmux pane) once `hashfleet ARGS` has ended there: `cat` holds
    the terminal open after it, reading the terminal."""
    script = f"{shlex.join([HASHFLEET, *args])}; echo command ended $?; exec cat"
    command = " ".join(["env", *env, "COLUMNS=", "LINES=", "sh", "-c", shlex.quote(script)])
    pane = Pane(tmp_path / "tmux.sock", command, width=width, height=height)

    def ended() -> list[str] | None:
        screen = pane.screen()
        return screen if any("command ended" in line for line in screen) else None

    try:
        return wait_for(ended, timeout=60, what=f"`hashfleet {args[0]}` on a {width}x{height} terminal")
    finally:
        pane.close()


def test_report_on_an_80_column_terminal_keeps_every_id_and_total_readable(history, tmp_path):
    summary = json.loads(through_a_pipe(*REPORT, "--json", env=history))
    screen = on_a_terminal(tmp_path, REPORT, 80, 40, f"HASHFLEET_SPOOL_DIR={shlex.quote(history['HASHFLEET_SPOOL_DIR'])}")
    text = "\n".join(screen)
    assert "command ended 0" in text, text
    # Every miner's id whole on one line; each figure of the site's totals whole, its name whole (in a row of
    # six under their names, or one line a figure: whichever fits).
    for m in summary["miners"]:
        assert sum(m["miner"] in line for line in screen) == 1, text
    totals = text[text.index("site totals"):]
    assert "…" not in totals, text
    for name, value in (("cash $/BTC", _usd(summary["cash_cost_per_btc"])),
                        ("all-in $/BTC", _usd(summary["all_in_cost_per_btc"])),
                        ("energy $/BTC", _usd(summary["energy_cost_per_btc"])),
                        ("facility kWh", f"{summary['facility_energy_kwh']:,.2f}")):
        assert name in totals and value in totals, f"{name} {value}:\n{text}"


def test_a_model_name_with_control_characters_cannot_split_a_row_or_paint_the_terminal():
    # A miner names its model "S19\x1b[31m\nFAKE ROW\tx": the escape reached the terminal and the newline split
    # the table's row (and scan's tab-separated record) into a fake one. The sources clean a miner's words; the
    # table's note (poll's and watch's errors column: trial J) and id are cleaned again wherever they came from.
    from datetime import datetime, timezone

    from collector.terminal import fleet_table, plain_console, printable

    hostile = "S19\x1b[31m\nFAKE ROW\tx"
    sample = MinerSample(miner="m1\x1b[2J", host="10.0.0.1", port=4028, site="s", ts=datetime.now(timezone.utc),
                         state="mining", source="pyasic", model=hostile, hashrate_ths=100.0, power_w=3000.0,
                         errors=[f"\x1b[2J\x1b[H{hostile}"])
    from collector.commands.health import problems_table
    from collector.health_report import HealthReport, ProblemSeen

    report = HealthReport("s", "live", problems=[ProblemSeen("m1", "fault_code", "firmware", model=hostile,
                                                             evidence=f"code 5: {hostile}", address="10.0.0.1:4028")])
    for table in (fleet_table([sample]), problems_table(report, 5), problems_table(report, 5, width=80)):
        console = plain_console(width=200, record=True, file=io.StringIO())
        console.print(table)
        text = console.export_text()
        rows = [line for line in text.splitlines() if "10.0.0.1" in line or "FAKE" in line]
        assert len(rows) == 1 and "FAKE ROW" in rows[0] and "\x1b" not in text and "[31m" in rows[0], text
    assert printable(hostile) == "S19 [31m FAKE ROW x"


def test_poll_on_a_narrow_terminal_still_says_why_an_address_is_offline(tmp_path):
    # Trial ZJ M5: below 120 columns the compact table has no note column, so a mistyped address read just
    # "offline"; through a pipe the same row said "connection refused (nothing listens on the API port)".
    screen = on_a_terminal(tmp_path, ["poll", "127.67.0.9:1", "--timeout", "1"], 100, 30)
    text = "\n".join(screen)
    assert "offline" in text and any(line.startswith("127.67.0.9:1: ") and "refused" in line for line in screen), text
