"""`hashfleet watch`, the demo's main screen, in a real terminal (a tmux pane of fixed size).

Every cycle logs a line ("cycle N: 2 miners, 1 failed" — one miner here is offline). Those lines must
print above the live table, never into it: written straight to the terminal they scrolled the table
and left a copy of it, header and all, on screen at every refresh. Its figures agree with each other
(read off the screen as `watch` prints it into a pipe).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from tests.servers.ports import free_port
from tests.support import HASHFLEET, Pane, wait_for

from simulators.fleet import run_fleet

WIDTH, HEIGHT = 180, 50
HEADER = re.compile(r"\bminer\b.*\baddress\b.*\bTH/s avg\b")
LOG_LINE = re.compile(r"cycle (\d+): 2 miners, 1 failed")


def _last_cycle(lines: list[str]) -> int:
    return max((int(m.group(1)) for line in lines if (m := LOG_LINE.search(line))), default=0)


def test_watch_prints_log_lines_above_one_live_table(tmp_path):
    with run_fleet("a1246:1", base="127.62.0.1:0", seed=3) as fleet:
        offline = f"127.62.0.9:{free_port()}"  # nothing listens there: a miner that went offline
        command = " ".join([
            "env", f"HOME={shlex.quote(str(tmp_path))}", "HASHFLEET_LOG_LEVEL=INFO", "COLUMNS=", "LINES=",
            shlex.quote(HASHFLEET), "watch", "--miners", f"{fleet.addresses[0]},{offline}", "--interval", "1"])
        pane = Pane(tmp_path / "tmux.sock", command, width=WIDTH, height=HEIGHT)
        try:
            # Several refreshes, each with its log line: a broken view has stacked copies of the table by then.
            wait_for(lambda: _last_cycle(pane.screen()) >= 4, timeout=60, what="4 cycles of `hashfleet watch`")
            screen = pane.screen()
        finally:
            pane.close()
    text = "\n".join(screen)
    headers = [i for i, line in enumerate(screen) if HEADER.search(line)]
    logs = [i for i, line in enumerate(screen) if LOG_LINE.search(line)]
    assert len(headers) == 1, f"the table's header is on screen {len(headers)} times:\n{text}"
    tops = [line for line in screen if line.lstrip().startswith("┏")]
    assert len(tops) == 1, f"the table's top border is on screen {len(tops)} times:\n{text}"
    assert logs and max(logs) < headers[0], f"log lines must sit above the live table:\n{text}"
    assert sum(fleet.addresses[0] in line for line in screen[headers[0]:]) == 1, f"the live miner's row repeats:\n{text}"
    assert sum(offline in line for line in screen[headers[0]:]) == 1, f"the offline miner's row repeats:\n{text}"


def test_watch_on_an_80x24_terminal_shows_the_cost_per_btc_and_every_demo_miner_on_one_line(tmp_path):
    # The README's demo fleet on the commonest terminal: every column was cut (`62:C…`, `127.…`), each row
    # wrapped to two or three lines, the miners ran past the screen and the cost per BTC was never on it.
    demo = "a1246:2,a1566:2,a1466:1,q:1,nano3s:1,nano3:1,avchain:1"
    config = Path(__file__).parents[3] / "hashfleet.example.yaml"
    with run_fleet(demo, base="127.62.1.1:0", seed=7) as fleet:
        command = " ".join([
            "env", f"HOME={shlex.quote(str(tmp_path))}", "HASHFLEET_LOG_LEVEL=INFO", "COLUMNS=", "LINES=",
            shlex.quote(HASHFLEET), "watch", "--config", shlex.quote(str(config)), "--miners",
            ",".join(fleet.addresses), "--interval", "1"])
        pane = Pane(tmp_path / "tmux.sock", command, width=80, height=24)
        try:
            wait_for(lambda: any("all-in" in line for line in pane.screen())
                     and sum(a in line for line in pane.screen() for a in fleet.addresses) == len(fleet.addresses),
                     timeout=60, what="the cost per BTC and all nine miners on an 80x24 screen")
            screen = pane.screen()
        finally:
            pane.close()
    text = "\n".join(screen)
    assert any(re.search(r"\$[\d,]+ +\$[\d,]+ +\$[\d,]+", line) for line in screen), f"no cost per BTC figures:\n{text}"
    rows = [line for line in screen if any(a in line for a in fleet.addresses)]
    assert len(rows) == len(fleet.addresses) and all("mining" in row for row in rows), text
    assert any(line.lstrip().startswith("fleet") and "9/9" in line for line in screen), f"no fleet totals:\n{text}"
    # The AUC chain reports no power: said, on one line of the screen's width, not left silent.
    assert "incomplete: 1 miner left out (no power reading): not in cost, BTC or J/TH" in text, text


def test_watch_on_an_80x24_terminal_keeps_the_fleet_totals_when_the_miners_do_not_fit(tmp_path):
    # 20 miners on 24 lines: the table ran off the screen at `...` and took the fleet's total row with it.
    # Miner rows give way instead, mining ones first (the last miner, stopped, keeps its row), and the table
    # says how many are not shown.
    config = Path(__file__).parents[3] / "hashfleet.example.yaml"
    with run_fleet("a1246:10,a1566:10", base="127.62.2.1:0", seed=7) as fleet:
        fleet[19].set_soft_off(True)
        command = " ".join([
            "env", f"HOME={shlex.quote(str(tmp_path))}", "HASHFLEET_LOG_LEVEL=INFO", "COLUMNS=", "LINES=",
            shlex.quote(HASHFLEET), "watch", "--config", shlex.quote(str(config)), "--miners",
            ",".join(fleet.addresses), "--interval", "1"])
        pane = Pane(tmp_path / "tmux.sock", command, width=80, height=24)

        def drawn() -> list[str] | None:
            screen = pane.screen()
            drawn_text = "\n".join(screen)
            return screen if "all-in" in drawn_text and any(a in drawn_text for a in fleet.addresses) else None

        try:
            screen = wait_for(drawn, timeout=60, what="a cycle of 20 miners drawn on an 80x24 screen")
        finally:
            pane.close()
    text = "\n".join(screen)
    assert any(re.search(r"\$[\d,]+ +\$[\d,]+ +\$[\d,]+", line) for line in screen), f"no cost per BTC figures:\n{text}"
    assert any(line.lstrip().startswith("fleet") and "19/20" in line for line in screen), f"no fleet totals:\n{text}"
    rows = sum(a in line for line in screen for a in fleet.addresses)
    assert any(f"+{20 - rows} more, mining" in line for line in screen), f"{rows} rows, the rest not counted:\n{text}"
    assert any(fleet.addresses[19] in line and "soft_off" in line for line in screen), f"the stopped miner is hidden:\n{text}"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split("[┃│]", line)[1:-1]]


def test_watch_computes_the_break_even_on_the_j_th_it_shows_and_says_what_it_leaves_out(tmp_path):
    # The demo's AUC chain reports no power: its 69 TH/s earned BTC at 0 W in the cost per BTC, and the
    # break-even was computed as if the fleet ran at the J/TH with the chain (21.8) while the fleet row
    # showed it without (23.7), nothing on screen saying so.
    config = tmp_path / "c.yaml"
    config.write_text(
        "site: s\n"
        "economics: {tariff: {kind: flat, usd_per_kwh: 0.05}, pue: 1.1, pool_fee_pct: 2, opex_usd_month: 300}\n"
        "network: {source: static, static: {difficulty: 1.5e14, height: 925000, fees_btc_per_block: 0.02,"
        " btc_price_usd: 95000}}\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}, "HOME": str(tmp_path),
           "COLUMNS": "200"}
    with run_fleet("a1566:1,avchain:1", base="127.62.2.1:0", seed=7) as fleet:
        watched = subprocess.run([HASHFLEET, "watch", "--config", str(config), "--miners", ",".join(fleet.addresses),
                                  "--cycles", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "break-even $/kWh" in line)
    cost = dict(zip(_cells(lines[at]), _cells(lines[at + 2])))
    at = next(i for i, line in enumerate(lines) if "J/TH" in line and "address" in line)
    fleet_row = dict(zip(_cells(lines[at]), _cells(next(line for line in lines if line.startswith("│ fleet")))))
    j_th, hashprice = float(fleet_row["J/TH"]), float(cost["hashprice $/PH/day"])
    # docs/cost.md: break-even = net hashprice [$/TH/day] / (0.024 x J/TH x PUE), within the rounding shown
    net_th_day = hashprice / 1000 * 0.98
    assert float(cost["break-even $/kWh"]) == pytest.approx(net_th_day / (0.024 * j_th * 1.1), rel=0.01)
    assert "incomplete: 1 miner left out (no power reading)" in watched.stdout



class _GoneTerminal:
    """What writing to a terminal that was closed (SIGHUP) gives: EIO."""

    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")

    def flush(self) -> None:
        raise OSError(5, "Input/output error")

    def isatty(self) -> bool:
        return True


def test_watch_whose_terminal_is_closed_stops_without_a_traceback():
    # Trial ZJ L6: the terminal closed (tmux killed, SIGHUP): `stopped after 3 cycle(s)`, then a traceback ending in
    # OSError EIO from the live view's last redraw (rich's Live.stop) to a terminal that was gone.
    from collector.sinks.live_view import LiveView
    view = LiveView()
    view._live.console.file = _GoneTerminal()
    view._live.update("a last frame", refresh=False)
    view.close()  # raised OSError
