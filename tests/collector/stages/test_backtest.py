"""The backtest on a synthetic series whose savings are computed by hand: the pure core, then
`hashfleet backtest` end to end on the same history in the local spool and in the real InfluxDB.

Two miners mine all along: A 100 TH/s at 3,000 W, B 200 TH/s at 3,500 W; hashprice 50 $/PH/day (one
TH/s earns 50/1000/24 = 0.0020833 $/h), BTC at 100,000 $, PUE 1, no pool fee, no idle draw. 48 hours at
0.03 $/kWh but four hours at 0.40 and one at 0.09. By hand:

    as happened   6.5 kW x 48 h = 312 kWh; 6.5 x (43 x 0.03 + 4 x 0.40 + 0.09) = 19.37 $
    strike 0.10   both sleep the four 0.40 hours: 26 kWh and 10.40 $ saved, 300 TH/s x 4 h = 2.50 $ forgone,
                  net 7.90 $, 53.69 % of the electricity, uptime 44/48 = 91.67 %
    margin        A breaks even at 0.0694 $/kWh, B at 0.1190: A also sleeps the 0.09 hour: 29 kWh,
                  10.67 $ saved, 2.7083 $ forgone, net 7.9617 $
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from collector.backtest_inputs import BacktestInputError, read_prices_csv
from collector.line_protocol import encode
from collector.sinks.spool import Spool
from collector.stages.backtest import Period, PriceSeries, Reading, Strategy, replay
from collector.stages.curtailment_rules import Rules
from models.curtailment import DrTarget
from tests.support import HASHFLEET, Pane, wait_for

SITE = "bt"
SPIKE_HOURS = {10, 11, 12, 13}
MID_HOUR = 30


def price_at_hour(h: int) -> float:
    return 0.40 if h in SPIKE_HOURS else 0.09 if h == MID_HOUR else 0.03


STRIKE = dict(energy_saved_kwh=26.0, cost_saved_usd=10.40, revenue_forgone_usd=2.5, net_usd=7.90,
              cost_saved_pct=100 * 10.40 / 19.37)
MARGIN = dict(energy_saved_kwh=29.0, cost_saved_usd=10.67, revenue_forgone_usd=2.5 + 100 * 50 / 1000 / 24,
              net_usd=10.67 - (2.5 + 100 * 50 / 1000 / 24))


def periods(start: int) -> list[Period]:
    readings = (Reading("A", 300, 300, 100.0, 3000.0), Reading("B", 300, 300, 200.0, 3500.0))
    return [Period(start + 300 * k, 300.0, 50.0, 100_000.0, readings) for k in range(48 * 12)]


def hourly(start: int) -> PriceSeries:
    return PriceSeries([start + 3600 * h for h in range(48)], [price_at_hour(h) for h in range(48)])


def check(result, expected: dict) -> None:
    for name, value in expected.items():
        assert getattr(result, name) == pytest.approx(value, rel=0.01), name  # within 1 %


def test_strike_strategy_saves_what_the_hand_computation_says():
    result = replay(periods(0), hourly(0), Strategy("strike", Rules("strike", 0.10)))
    check(result, STRIKE)
    assert result.actual.energy_usd == pytest.approx(19.37, rel=1e-9)
    assert result.actual.uptime_pct == 100 and result.with_strategy.uptime_pct == pytest.approx(100 * 44 / 48)
    assert result.btc_forgone == pytest.approx(2.5 / 100_000)
    assert result.sleeps == 2


def test_margin_strategy_sleeps_each_miner_at_its_own_break_even():
    check(replay(periods(0), hourly(0), Strategy("margin", Rules())), MARGIN)


def test_hysteresis_and_minimum_times_change_the_outcome_as_they_should():
    # A minimum off time of five hours keeps both asleep an hour after the four-hour spike (at 0.03 $/kWh).
    result = replay(periods(0), hourly(0), Strategy("strike", Rules("strike", 0.10, min_off_s=5 * 3600)))
    assert result.energy_saved_kwh == pytest.approx(26 + 6.5)
    assert result.cost_saved_usd == pytest.approx(10.40 + 6.5 * 0.03)


def test_a_demand_response_target_sheds_the_cheapest_kw_in_its_window():
    target = DrTarget(shed_kw=3.0, start="1970-01-01T20:00:00Z", end="1970-01-01T22:00:00Z")
    result = replay(periods(0), hourly(0), Strategy("dr", Rules(strategy="strike", strike_usd_kwh=10), (target,)))
    # 3 kW for two hours: A (3.0 kW, the least revenue per kW) is the cheapest cover.
    assert result.energy_saved_kwh == pytest.approx(3.0 * 2)
    assert result.revenue_forgone_usd == pytest.approx(100 * 2 * 50 / 1000 / 24)


@pytest.mark.parametrize("night", [-0.05, -1.0])
def test_no_share_of_the_bill_is_given_when_the_bill_is_not_positive(night):
    # Mostly negative hours: the bill as happened is below zero (or about nothing), a share of it meaningless.
    prices = PriceSeries([3600 * h for h in range(48)], [0.40 if h in SPIKE_HOURS else night for h in range(48)])
    result = replay(periods(0), prices, Strategy("strike", Rules("strike", 0.10)))
    assert result.actual.energy_usd <= 0 and result.cost_saved_usd > 0
    assert result.cost_saved_pct is None and result.as_dict()["cost_saved_pct"] is None


def test_demand_response_keeps_the_live_groups():
    target = DrTarget(shed_kw=3.0, start="1970-01-01T20:00:00Z", end="1970-01-01T22:00:00Z")
    rules = Rules(strategy="strike", strike_usd_kwh=10)
    # A and B on one feeder shed whole: the 3 kW take both (6.5 kW) for the two hours.
    whole = replay(periods(0), hourly(0), Strategy("dr", rules, (target,), groups=lambda m: (False, "feeder")))
    assert whole.energy_saved_kwh == pytest.approx(6.5 * 2)
    # A always on: B (3.5 kW) is shed instead.
    kept = replay(periods(0), hourly(0), Strategy("dr", rules, (target,), groups=lambda m: (m == "A", None)))
    assert kept.energy_saved_kwh == pytest.approx(3.5 * 2)


def test_periods_without_a_price_are_counted_not_invented():
    result = replay(periods(0), PriceSeries([3600 * 24], [0.03], max_hold_s=3600), Strategy("margin", Rules()))
    assert result.periods == 12 and result.periods_without_price == 48 * 12 - 12


# --- the command, end to end -------------------------------------------------------------------

def history_lines(start: int, *, with_prices: bool = False) -> list[str]:
    lines = []
    for k in range(48 * 60):
        t = start + 60 * k
        for miner, ths, w in (("A", 100.0, 3000.0), ("B", 200.0, 3500.0)):
            lines.append(encode("miner", {"site": SITE, "miner": miner, "model": "X"},
                                {"hashrate_ths": ths, "power_w": w, "state": "mining", "up": 1}, t))
        lines.append(encode("network", {"site": SITE}, {"hashprice_usd_ph_day": 50.0, "btc_price_usd": 100_000.0}, t))
        if with_prices:
            lines.append(encode("power_price", {"site": SITE, "source": "live"},
                                {"usd_per_kwh": price_at_hour((t - start) // 3600), "stale": 0}, t))
    return lines


def write_config(tmp_path, **extra) -> str:
    path = tmp_path / "hashfleet.yaml"
    path.write_text(yaml.safe_dump({"site": SITE, "interval_s": 60, "spool": {"retention_h": 1000},
                                    "economics": {"tariff": {"kind": "flat", "usd_per_kwh": 0.03}},
                                    "network": {"source": "static", "static": {"difficulty": 1.5e14, "height": 925000,
                                                                               "btc_price_usd": 100_000}}, **extra}))
    return str(path)


def prices_csv(tmp_path, start: int) -> str:
    path = tmp_path / "prices.csv"
    path.write_text("time,usd_per_mwh\n" + "".join(f"{start + 3600 * h},{1000 * price_at_hour(h):g}\n" for h in range(48)))
    return str(path)


def run_backtest(args: list[str], env: dict) -> dict:
    done = subprocess.run([HASHFLEET, "backtest", "--since", "3d", "--json", *args], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def start() -> int:
    return (int(time.time()) // 3600 - 49) * 3600  # 48 hours of history ending an hour ago


def local_history(tmp_path, lines: list[str]) -> dict:
    """`lines` in a local spool as the collector writes it; the environment that reads it (no InfluxDB)."""
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir / SITE, retention_s=1000 * 3600)
    for i in range(0, len(lines), 5000):
        spool.append(lines[i:i + 5000])
    spool.close()
    return {**{k: v for k, v in os.environ.items() if not k.startswith("INFLUX_")}, "HASHFLEET_SPOOL_DIR": str(spool_dir)}


def test_backtest_command_on_local_history_matches_the_hand_computation(tmp_path, start):
    env = local_history(tmp_path, history_lines(start, with_prices=True))
    config = write_config(tmp_path)
    strike = run_backtest(["--config", config, "--prices", prices_csv(tmp_path, start), "--strategy", "strike:0.10"], env)
    for name, value in STRIKE.items():
        assert strike[name] == pytest.approx(value, rel=0.01), name
    assert strike["miners"] == 2 and strike["with_strategy"]["uptime_pct"] == pytest.approx(100 * 44 / 48, rel=0.01)
    # Without --prices: the prices the collector stored (the same series), margin rules.
    margin = run_backtest(["--config", config, "--strategy", "margin"], env)
    for name, value in MARGIN.items():
        assert margin[name] == pytest.approx(value, rel=0.01), name
    table = subprocess.run([HASHFLEET, "backtest", "--config", config, "--since", "3d", "--strategy", "strike:0.1"],
                           capture_output=True, text=True, timeout=120, env=env)
    assert table.returncode == 0 and "net +7.90 $" in " ".join(table.stdout.split())


def test_backtest_command_reads_influxdb_over_influxql(tmp_path, start, influxdb, influx_bucket):
    influxdb.write(influx_bucket, history_lines(start, with_prices=True))
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_BUCKET": influx_bucket, "INFLUX_TOKEN": influxdb.token,
           "INFLUX_ORG": influxdb.org, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    result = run_backtest(["--config", write_config(tmp_path), "--strategy", "strike:0.10", "--source", "influx"], env)
    for name, value in STRIKE.items():
        assert result[name] == pytest.approx(value, rel=0.01), name


def unpowered_lines(start: int) -> list[str]:
    """A third miner, C (50 TH/s), mining all along with no power reading (a stock Antminer, a 741 chain)."""
    return [encode("miner", {"site": SITE, "miner": "C", "model": "Y"}, {"hashrate_ths": 50.0, "state": "mining", "up": 1},
                   start + 60 * k) for k in range(48 * 60)]


def test_a_miner_mining_with_no_power_reading_counts_as_mining_and_is_left_as_it_was():
    c = Reading("C", 300, 300, 50.0, 0.0)  # no power reading: its draw unknown
    with_c = [Period(p.ts, p.seconds, p.hashprice_usd_ph_day, p.btc_price_usd, (*p.readings, c)) for p in periods(0)]
    result = replay(with_c, hourly(0), Strategy("strike", Rules("strike", 0.10)))
    check(result, STRIKE)  # C's energy in neither outcome
    assert result.actual.uptime_pct == 100 and result.with_strategy.uptime_pct == pytest.approx(100 * (2 * 44 + 48) / 144)
    assert result.miners == 3 and result.miners_without_power == 1 and result.sleeps == 2  # A and B, never C
    assert result.actual.revenue_usd == pytest.approx(350 * 48 * 50 / 1000 / 24)  # C's earnings counted


def history_in(source: str, tmp_path, lines: list[str], request) -> dict:
    """`lines` in the local spool or the real InfluxDB (`source`); the environment that reads them."""
    if source == "local":
        return local_history(tmp_path, lines)
    influxdb, bucket = request.getfixturevalue("influxdb"), request.getfixturevalue("influx_bucket")
    influxdb.write(bucket, lines)
    return {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_BUCKET": bucket, "INFLUX_TOKEN": influxdb.token,
            "INFLUX_ORG": influxdb.org, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}


@pytest.mark.parametrize("source", ["local", "influx"])
def test_the_backtest_counts_a_miner_with_no_power_reading_alike_from_either_history(tmp_path, start, source, request):
    # Trial ZB, M5: from the local history a miner mining with no power reading counted as read but not mining
    # (uptime 83 % where `report` said 100 %); from InfluxDB as mining at 0 W, a miner the strategy weighed as free.
    lines = history_lines(start, with_prices=True) + unpowered_lines(start)
    env = history_in(source, tmp_path, lines, request)
    args = ["--config", write_config(tmp_path), "--strategy", "strike:0.10", "--source", source]
    result = run_backtest(args, env)
    for name, value in STRIKE.items():
        assert result[name] == pytest.approx(value, rel=0.01), json.dumps(result)
    assert result["miners"] == 3 and result["miners_without_power"] == 1
    assert result["actual"]["uptime_pct"] == pytest.approx(100, rel=0.01)
    table = subprocess.run([HASHFLEET, "backtest", "--since", "3d", *args], capture_output=True, text=True, timeout=120,
                           env=env)
    assert table.returncode == 0 and "note: 1 miner mined with no power reading" in " ".join(table.stdout.split())


def test_a_short_history_is_reported_as_it_is(tmp_path):
    now = int(time.time())
    t0 = now - 300
    if (t0 + 120) // 86400 != t0 // 86400:  # three cycles in one UTC day: one period of a day
        t0 -= 300
    env = local_history(tmp_path, history_lines(t0)[:9])  # 3 cycles of A, B and the network
    prices = tmp_path / "day.csv"
    prices.write_text(f"time,usd_per_kwh\n{t0 - 60},0.03\n")  # in force over the three cycles
    args = ["backtest", "--config", write_config(tmp_path), "--prices", str(prices), "--resolution", "1440m"]
    done = subprocess.run([HASHFLEET, *args, "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["periods"] == 1 and result["end"] <= time.time()  # not the day's end, in the future
    table = subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=60, env=env)
    assert "1 period of 86400 s" in " ".join(table.stdout.split()), table.stdout


def test_a_site_without_history_is_told_so_before_any_word_about_prices(tmp_path, start):
    env = local_history(tmp_path, history_lines(start, with_prices=True)[:3000])
    config = yaml.safe_load(open(write_config(tmp_path)))
    config["spool"]["directory"] = env["HASHFLEET_SPOOL_DIR"] + "/" + SITE  # one directory, whatever --site says
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([HASHFLEET, "backtest", "--config", str(tmp_path / "one.yaml"), "--site", "nosuch"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "no history of site 'nosuch' in the last 30d" in done.stderr, done.stderr


def test_an_always_on_group_of_the_layout_is_never_slept(tmp_path, start):
    env = local_history(tmp_path, history_lines(start))
    config = write_config(tmp_path, layout={"miners": {"A": {"groups": ["keep"]}}},
                          curtailment={"groups": {"always_on": ["keep"]}})
    result = run_backtest(["--config", config, "--prices", prices_csv(tmp_path, start), "--strategy", "strike:0.10"], env)
    # Only B sleeps the four 0.40 hours: 3.5 kW x 4 h.
    assert result["energy_saved_kwh"] == pytest.approx(3.5 * 4, rel=0.01) and result["sleeps"] == 1


def test_a_demand_response_target_without_a_start_is_refused_not_spread_over_the_past(tmp_path, start):
    env = local_history(tmp_path, history_lines(start)[:3000])
    schedule = tmp_path / "dr.yaml"
    schedule.write_text(yaml.safe_dump({"targets": [{"shed_kw": 3.0, "start": "2026-01-01T00:00:00Z",
                                                     "end": "2026-01-01T01:00:00Z"},
                                                    {"shed_kw": 3.0, "end": datetime.now(timezone.utc) + timedelta(days=1)}]}))
    done = subprocess.run([HASHFLEET, "backtest", "--config", write_config(tmp_path), "--prices",
                           prices_csv(tmp_path, start), "--strategy", f"dr:{schedule}"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "targets.1 has no start" in done.stderr, done.stderr


def test_strategy_typos_are_usage_errors_that_name_the_option(tmp_path, start):
    """strike:0_05 is no 5 $/kWh strike (float() would read it so); a schedule path that came from --strategy
    is named as such, not as the config's field, and a directory says so in words."""
    env = local_history(tmp_path, history_lines(start)[:1000])
    config, prices = write_config(tmp_path), prices_csv(tmp_path, start)
    for strategy, words in (("strike:0_05", "write strike:USD_PER_KWH"),
                            ("dr:/nonexistent.yaml", "--strategy dr:/nonexistent.yaml: No such file or directory"),
                            (f"dr:{tmp_path}", f"--strategy dr:{tmp_path}: Is a directory")):
        done = subprocess.run([HASHFLEET, "backtest", "--config", config, "--prices", prices, "--strategy", strategy],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2 and words in done.stderr, done.stderr
        assert "curtailment.dr_schedule" not in done.stderr and "Traceback" not in done.stderr


class _Answers(BaseHTTPRequestHandler):
    """Anything on InfluxDB's port: every /query is answered HTTP 200 with the server's `body` (the
    Authorization headers it was sent kept in `server.auth`, when there is one)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        getattr(self.server, "auth", []).append(self.headers.get("Authorization"))
        body = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


def _series(**series) -> bytes:
    return json.dumps({"results": [{"statement_id": 0, "series": [series]}]}).encode()


def test_the_backtest_reads_influxdb_with_the_read_token(start):
    # The write token was sent, though the docs (and `health --since`) read with influx.read_token.
    from collector.backtest_inputs import InfluxHistory
    from models import InfluxConfig

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.body, server.auth = json.dumps({"results": [{"statement_id": 0}]}).encode(), []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        history = InfluxHistory(InfluxConfig(url=f"http://127.0.0.1:{server.server_address[1]}", token="write-token",
                                             read_token="read-token"))
        assert history.query("SELECT 1") == []
    finally:
        server.shutdown()
        server.server_close()
    assert server.auth == ["Token read-token"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("body, problem", [
    (b"[1,2]", "not InfluxDB's answer"),
    (b"{not json", "not JSON"),
    (json.dumps({"results": [{"series": "x"}]}).encode(), "not InfluxDB's answer"),
    (json.dumps({"results": [{"series": [7]}]}).encode(), "not InfluxDB's answer"),
    (_series(name="miner", columns=["time", "n"], values=[[1795780800, 3]]), "without the 'miner' tag"),
    (_series(name="miner", tags={"miner": "A"}, columns=["time", "n"], values=[[1795780800, None]]), "a count 'None'"),
    (_series(name="miner", tags={"miner": "A"}, columns=["time", "n"], values=[["soon", 3]]), "time 'soon'"),
])
def test_an_influxdb_answering_in_another_shape_is_a_runtime_error_naming_it(tmp_path, start, body, problem):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.body = body  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**os.environ, "INFLUX_URL": url, "INFLUX_BUCKET": "b", "INFLUX_TOKEN": "t", "INFLUX_ORG": "o",
           "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    try:
        done = subprocess.run([HASHFLEET, "backtest", "--config", write_config(tmp_path), "--source", "influx",
                               "--prices", prices_csv(tmp_path, start)], capture_output=True, text=True, timeout=60, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"InfluxDB at {url}" in done.stderr and problem in done.stderr, done.stderr


class _Drip(BaseHTTPRequestHandler):
    """InfluxDB's port answering a valid length, then 10 bytes a second (20 s for the whole answer)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"results":[{"statement_id":0}]}'.ljust(200)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass


def test_an_influxdb_dripping_its_answer_is_given_up_at_the_deadline(tmp_path, start):
    # Each read had its timeout, the query none: 32 bytes at 3 s a byte took 97 s.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Drip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {**os.environ, "INFLUX_URL": url, "INFLUX_BUCKET": "b", "INFLUX_TOKEN": "t", "INFLUX_ORG": "o",
           "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    try:
        done = subprocess.run([HASHFLEET, "backtest", "--config", write_config(tmp_path, influx={"timeout_s": 0.25}),
                               "--source", "influx", "--prices", prices_csv(tmp_path, start)],
                              capture_output=True, text=True, timeout=15, env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 1, done.stderr
    assert f"InfluxDB at {url}: no whole answer within 1.5 s" in done.stderr, done.stderr


def test_an_unreachable_influxdb_is_a_runtime_error(tmp_path, start):
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        env = {**os.environ, "INFLUX_URL": url, "INFLUX_BUCKET": "b", "INFLUX_TOKEN": "t", "INFLUX_ORG": "o",
               "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
        done = subprocess.run([HASHFLEET, "backtest", "--config", write_config(tmp_path), "--source", "influx"],
                              capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1 and f"InfluxDB at {url} unreachable" in done.stderr, done.stderr


@pytest.mark.parametrize("row, problem", [
    ("not-a-time,30", "not-a-time"),
    (f"{10**12},30", "not a unix time"),
    ("2026-01-01T00:00:00,30", "no time zone"),
    ("0001-01-01T00:00:00+14:00,30", "is not between 1970 and the year 5138"),  # as a unix time is refused
    ("9999-12-31T23:59:59-14:00,30", "is not between 1970 and the year 5138"),
    ("1795780800,nan", "'nan' is not a decimal number"),
    ("1795780800,1e300", "is not a price"),
    ("1795780800,", "'' is not a decimal number"),
    ("1795780800,0_05", "'0_05' is not a decimal number"),  # float() reads 5.0: $5/kWh from a typo
    ("1795780800,\u0665", "is not a decimal number"),  # an Arabic-Indic 5: float() reads 5.0
    ("1_795_780_800,30", "1_795_780_800"),
    ("1795780800", "1 field(s), a row is `time,usd_per_mwh`"),
    ("1795780800,25000", "'25000' is not a price in [-1000, 20000] $/MWh"),  # in the file's unit
    ("1795780800," + "9" * 140_000, "field larger than field limit"),  # past the csv module's 128 KiB
    ("1795780000,45", "'1795780000' has a price on line 2 already (30 $/MWh)"),  # which one holds is not known
    ("2026-11-27T11:46:40+00:00,45", "has a price on line 2 already"),  # the same time written otherwise
])
def test_a_bad_price_file_is_refused_naming_the_line(tmp_path, row, problem):
    path = tmp_path / "prices.csv"
    path.write_text(f"time,usd_per_mwh\n1795780000,30\n{row}\n")
    done = subprocess.run([HASHFLEET, "backtest", "--config", write_config(tmp_path), "--prices", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HASHFLEET_SPOOL_DIR": str(tmp_path)})
    assert done.returncode == 2 and f"{path} line 3" in done.stderr and problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_price_given_twice_for_one_time_is_taken_once(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("time,usd_per_kwh\n1795780000,0.03\n1795780000,0.03\n1795783600,0.05\n")
    series = read_prices_csv(path)
    assert list(series.times) == [1795780000, 1795783600] and list(series.prices) == [0.03, 0.05]


def test_a_file_out_of_time_order_is_sorted_and_a_time_given_twice_still_named(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("time,usd_per_kwh\n1795783600,0.05\n1795780000,0.03\n1795787200,0.04\n1795783600,0.05\n")
    series = read_prices_csv(path)
    assert list(series.times) == [1795780000, 1795783600, 1795787200] and list(series.prices) == [0.03, 0.05, 0.04]
    path.write_text("time,usd_per_kwh\n1795783600,0.05\n1795780000,0.03\n1795787200,0.04\n1795783600,0.06\n")
    with pytest.raises(BacktestInputError, match="line 5: '1795783600' has a price on line 2 already"):
        read_prices_csv(path)


def test_invalid_utf_8_in_a_price_file_names_its_line(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_bytes("\ufefftime,usd_per_kwh\n1795780000,0.03\n".encode() + b"1795783600,0.0\xff5\n")
    with pytest.raises(BacktestInputError, match=r"line 3: not UTF-8 text \(byte 15 of the line\)"):
        read_prices_csv(path)


def test_a_large_price_file_is_read_without_holding_it_several_times_over(tmp_path):
    # 2,000,000 rows (the cap) peaked at 686 MB (trial S): the text decoded whole, a dict of tuples, sorted pairs.
    path = tmp_path / "prices.csv"
    with path.open("w") as f:
        f.write("time,usd_per_kwh\n")
        f.writelines(f"{1_700_000_000 + 300 * i},{0.01 + i % 977 / 10000:.5f}\n" for i in range(500_000))
    tracemalloc.start()
    try:
        series = read_prices_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(series) == 500_000 and series.at(1_700_000_000 + 300 * 499_999) == pytest.approx(0.01 + 499_999 % 977 / 10000)
    # (the read's buffer is sized to the 64 MB cap: 67 MB peak now, 149 MB before)
    assert peak < 100e6, f"{peak / 1e6:.0f} MB for a {path.stat().st_size / 1e6:.1f} MB file"


def test_a_series_of_dollars_per_kwh_under_a_mwh_header_is_replayed_with_a_warning(tmp_path, start):
    # 0.05 read as $/MWh is $0.00005/kWh: a run that saves $0 and says nothing was the slip (trial S, L2).
    env = local_history(tmp_path, history_lines(start)[:1000])
    right = Path(prices_csv(tmp_path, start))
    slipped = tmp_path / "slipped.csv"
    slipped.write_text("time,usd_per_mwh\n" + "".join(f"{start + 3600 * h},{price_at_hour(h):g}\n" for h in range(48)))
    for path, warned in ((slipped, True), (right, False)):
        done = subprocess.run([HASHFLEET, "backtest", "--since", "3d", "--config", write_config(tmp_path), "--prices",
                               str(path)], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert ("a unit slip" in done.stderr and f"--prices {path}" in done.stderr) is warned, done.stderr

def test_a_backtest_in_a_terminal_shows_its_progress_and_leaves_only_the_result(tmp_path, start):
    # A week of a large site replays for minutes: it said nothing meanwhile (trial S, L1). Everything the
    # terminal is sent is kept (tmux pipe-pane), the bar's frames too: they are erased once it ends.
    env = local_history(tmp_path, history_lines(start))
    config, prices = write_config(tmp_path), prices_csv(tmp_path, start)
    go, done, sent = tmp_path / "go", tmp_path / "done", tmp_path / "sent.log"
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\n"
                      f"HASHFLEET_SPOOL_DIR='{env['HASHFLEET_SPOOL_DIR']}' PATH='{os.environ['PATH']}' {HASHFLEET} "
                      f"backtest --since 3d --resolution 1m --config {config} --prices {prices}; touch {done}\n")
    script.chmod(0o755)
    pane = Pane(tmp_path / "tmux.sock", str(script), width=100, height=30)
    try:
        subprocess.run([*pane.tmux, "pipe-pane", "-t", "watch", "-o", f"cat >> {sent}"], check=True, timeout=10)
        go.touch()  # (the script starts once everything it writes is kept)
        wait_for(done.exists, 120, "the backtest to end")
        screen = "\n".join(pane.screen())
    finally:
        pane.close()
    frames = sent.read_bytes().decode("utf-8", "replace")
    total = 3 * 24 * 60  # periods of 1 minute in 3 days
    assert "replaying the last 3d" in frames and f"/{total}" in frames, frames[-2000:]
    assert "replaying the last" not in screen and "net" in screen, screen  # the bar is gone, the table stays

def test_a_resolution_under_a_second_is_a_usage_error_worded_as_the_help(tmp_path, start):
    env = local_history(tmp_path, history_lines(start)[:1000])
    config, prices = write_config(tmp_path), prices_csv(tmp_path, start)
    done = subprocess.run([HASHFLEET, "backtest", "--config", config, "--prices", prices, "--resolution", "0.001m"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--resolution '0.001m'" in done.stderr and "e.g. 1m, 5m or 1h" in done.stderr
    helped = subprocess.run([HASHFLEET, "backtest", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert "e.g. 1m, 5m or 1h" in " ".join(helped.stdout.replace("│", " ").split())


# --- what a stored reading stands for, and how a period is priced ----------------------------------

def test_a_price_change_inside_a_period_prices_each_part_of_it():
    # One hour-long period of A and B; the price is 0.03 but 0.40 from its half hour: at strike 0.10 both
    # sleep that half hour (6.5 kW x 0.5 h = 3.25 kWh, 1.30 $), as 5-minute periods would have them.
    prices = PriceSeries([0, 1800, 3600], [0.03, 0.40, 0.03])
    readings = (Reading("A", 3600, 3600, 100.0, 3000.0), Reading("B", 3600, 3600, 200.0, 3500.0))
    for period in ([Period(0, 3600.0, 50.0, 100_000.0, readings)],
                   [Period(300 * k, 300.0, 50.0, 100_000.0, tuple(Reading(r.miner, 300, 300, r.ths, r.w)
                                                                  for r in readings)) for k in range(12)]):
        result = replay(period, prices, Strategy("strike", Rules("strike", 0.10)))
        assert result.actual.energy_usd == pytest.approx(6.5 * (0.5 * 0.03 + 0.5 * 0.40))
        assert result.energy_saved_kwh == pytest.approx(3.25) and result.cost_saved_usd == pytest.approx(1.30)
        assert result.revenue_forgone_usd == pytest.approx(300 * 0.5 * 50 / 1000 / 24) and result.sleeps == 2
    # No price in force at the period's start: the first price within it prices the time before it too.
    late = replay([Period(0, 3600.0, 50.0, 100_000.0, readings)], PriceSeries([600], [0.05]),
                  Strategy("strike", Rules("strike", 0.10)))
    assert late.periods == 1 and late.actual.energy_usd == pytest.approx(6.5 * 0.05)


def history(start: int, step: int, cycles: int, *, b_mines_s: int | None = None, with_prices: bool = False) -> list[str]:
    """A and B read every `step` seconds from `start`; B mines only the first `b_mines_s` of every five
    minutes when given, idling at 100 W the rest."""
    lines = []
    for k in range(cycles):
        t = start + step * k
        b_mining = b_mines_s is None or (t - start) % 300 < b_mines_s
        for miner, ths, w, state in (("A", 100.0, 3000.0, "mining"),
                                     ("B", 200.0, 3500.0, "mining") if b_mining else ("B", 0.0, 100.0, "idle")):
            lines.append(encode("miner", {"site": SITE, "miner": miner, "model": "X"},
                                {"hashrate_ths": ths, "power_w": w, "state": state, "up": 1}, t))
        lines.append(encode("network", {"site": SITE}, {"hashprice_usd_ph_day": 50.0, "btc_price_usd": 100_000.0}, t))
        if with_prices:
            lines.append(encode("power_price", {"site": SITE, "source": "live"}, {"usd_per_kwh": 0.03, "stale": 0}, t))
    return lines


def two_second_history(start: int) -> list[str]:
    """Collected at 2 s (`collect --interval 2`): an hour, the collector down 20 minutes, another hour.
    B mines the first minute of every five. By hand, over the two hours: A 3 kW x 2 h = 6 kWh; B mines
    24 minutes (0.4 h x 3.5 kW = 1.4 kWh) and idles 1.6 h (0.16 kWh): 7.56 kWh, 0.2268 $ at 0.03;
    miner-hours read 4.0, mining 2.4 (uptime 60 %); revenue (100 x 2 + 200 x 0.4) TH/s h x 50/1000/24 $."""
    return history(start, 2, 1800, b_mines_s=60) + history(start + 4800, 2, 1800, b_mines_s=60)


TWO_SECONDS = dict(energy_kwh=7.56, energy_usd=7.56 * 0.03, seen_h=4.0, mining_h=2.4, uptime_pct=60.0,
                   revenue_usd=280 * 50 / 1000 / 24)


def flat_prices(tmp_path, start: int) -> str:
    path = tmp_path / "flat.csv"
    path.write_text("time,usd_per_kwh\n" + "".join(f"{start + 3600 * h},0.03\n" for h in range(4)))
    return str(path)


@pytest.fixture
def recent() -> int:
    return (int(time.time()) // 3600 - 3) * 3600  # three hours ago, on the hour


def test_readings_count_for_the_time_between_them_not_the_configured_interval(tmp_path, recent):
    env = local_history(tmp_path, two_second_history(recent))
    result = run_backtest(["--config", write_config(tmp_path, interval_s=10), "--prices", flat_prices(tmp_path, recent),
                           "--strategy", "strike:10"], env)
    for name, value in TWO_SECONDS.items():
        assert result["actual"][name] == pytest.approx(value, rel=0.01), name


def test_influxdb_readings_count_for_the_time_between_them_not_the_configured_interval(tmp_path, recent, influxdb,
                                                                                      influx_bucket):
    influxdb.write(influx_bucket, two_second_history(recent))
    env = {**os.environ, "INFLUX_URL": influxdb.url, "INFLUX_BUCKET": influx_bucket, "INFLUX_TOKEN": influxdb.token,
           "INFLUX_ORG": influxdb.org, "HASHFLEET_SPOOL_DIR": str(tmp_path / "spool")}
    result = run_backtest(["--config", write_config(tmp_path, interval_s=10), "--prices", flat_prices(tmp_path, recent),
                           "--strategy", "strike:10", "--source", "influx"], env)
    for name, value in TWO_SECONDS.items():
        assert result["actual"][name] == pytest.approx(value, rel=0.01), name


def test_a_spike_inside_a_coarse_period_is_seen_as_in_fine_ones(tmp_path, recent):
    env = local_history(tmp_path, history(recent, 60, 120))
    path = tmp_path / "spike.csv"  # 0.03, but 0.40 for the second half of the first hour
    path.write_text(f"time,usd_per_kwh\n{recent},0.03\n{recent + 1800},0.40\n{recent + 3600},0.03\n")
    for resolution in ("1h", "5m"):
        result = run_backtest(["--config", write_config(tmp_path), "--prices", str(path), "--strategy", "strike:0.10",
                               "--resolution", resolution], env)
        assert result["actual"]["energy_usd"] == pytest.approx(6.5 * (1.5 * 0.03 + 0.5 * 0.40), rel=0.01), resolution
        assert result["energy_saved_kwh"] == pytest.approx(3.25, rel=0.01) and result["sleeps"] == 2, resolution


def test_the_first_period_is_priced_by_the_prices_the_collector_stored(tmp_path):
    t0 = int(time.time()) - 420
    if (t0 + 300) // 3600 != t0 // 3600 or t0 % 3600 == 0:  # six cycles inside one hour, after its start
        t0 -= 420
    env = local_history(tmp_path, history(t0, 60, 6, with_prices=True))  # a price with every cycle
    result = run_backtest(["--config", write_config(tmp_path), "--since", "1h", "--resolution", "1h"], env)
    assert result["periods"] == 1 and result["periods_without_price"] == 0
    assert result["actual"]["energy_kwh"] == pytest.approx(6.5 * 360 / 3600, rel=0.01)
    assert result["actual"]["price_paid_usd_kwh"] == pytest.approx(0.03)


def test_a_header_the_http_client_refuses_is_an_error_without_the_token(monkeypatch):
    # Tokens are checked at start; should one get past, http.client's refusal quotes the header, token and all.
    from collector.backtest_inputs import InfluxHistory, InfluxQueryError
    from models import InfluxConfig

    monkeypatch.setattr(InfluxConfig, "resolved_token", lambda self: "first-SECRET\nsecond-SECRET")
    with socket.socket() as listening:  # the connection is made (the header is refused as it is sent)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        history = InfluxHistory(InfluxConfig(url=f"http://127.0.0.1:{listening.getsockname()[1]}"))
        with pytest.raises(InfluxQueryError) as err:
            history.query("SELECT 1")
    assert "could not be sent" in str(err.value) and "SECRET" not in str(err.value)


# --- hostile or doubled history (trial ZH) ------------------------------------------------------

def test_a_copied_batch_or_an_hour_written_twice_counts_once(tmp_path, start):
    # Trial ZH H1: a copied batch doubled the savings; the spike hour written again as a batch of its own made them
    # 62 % high, exit 0 and no word. `hashfleet report` counted each once.
    lines = history_lines(start, with_prices=True)
    spike = [line for line in lines if start + 3600 * 10 <= int(line.rsplit(" ", 1)[1]) < start + 3600 * 11]
    for copies, name in ((lines + spike, "hour"), (lines + lines, "whole")):
        env = local_history(tmp_path / name, copies)
        result = run_backtest(["--config", write_config(tmp_path), "--prices", prices_csv(tmp_path, start),
                               "--strategy", "strike:0.10"], env)
        for key, value in STRIKE.items():
            assert result[key] == pytest.approx(value, rel=0.01), (name, key)
        assert result["periods"] == 48 * 12, name  # (5-minute periods)


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("source", ["local", "influx"])
def test_a_reading_no_miner_gives_costs_that_reading_not_the_backtest(tmp_path, start, source, request):
    # Trial ZH H2: one stored power_w (or hashrate_ths) of 1e308 made the whole month NaN, exit 0, and --json wrote
    # NaN and Infinity (not JSON). `hashfleet report` skips such values; so does the backtest now, and says so.
    lines = history_lines(start, with_prices=True)
    t = start + 3600 * 20
    lines += [encode("miner", {"site": SITE, "miner": "A", "model": "X"},
                     {"hashrate_ths": 100.0, "power_w": 1e308, "state": "mining", "up": 1}, t + 30),
              encode("miner", {"site": SITE, "miner": "B", "model": "X"},
                     {"hashrate_ths": 1e308, "power_w": 3500.0, "state": "mining", "up": 1}, t + 30)]
    env = history_in(source, tmp_path, lines, request)
    done = subprocess.run([HASHFLEET, "backtest", "--since", "3d", "--json", "--config", write_config(tmp_path),
                           "--prices", prices_csv(tmp_path, start), "--strategy", "strike:0.10", "--source", source],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout, parse_constant=_no_constants)
    for key, value in STRIKE.items():
        assert result[key] == pytest.approx(value, rel=0.01), key
    if source == "local":
        assert result["skipped_values"] == {"hashrate_ths": 1, "power_w": 1}
    else:  # (InfluxDB: the reading past a unit's hashrate by the query; the bucket whose mean draw it spoils)
        assert result["skipped_values"] == {"hashrate_ths": 1, "power_w": 1}
    table = subprocess.run([HASHFLEET, "backtest", "--since", "3d", "--config", write_config(tmp_path),
                            "--prices", prices_csv(tmp_path, start), "--strategy", "strike:0.10", "--source", source],
                           capture_output=True, text=True, timeout=120, env=env)
    said = " ".join(table.stdout.split())
    assert "2 stored value(s) not finite or beyond what one miner or market gives" in said and "nan" not in said
    assert "periods of 300 s replayed, 2 miners" in said


def test_a_figure_that_rounds_to_nothing_is_shown_without_a_minus():
    # Trial ZH L5: "price paid -0.0000", "BTC -0.000000".
    from collector.commands.backtest import _fmt
    assert (_fmt(-0.00001, 4), _fmt(-0.0, 2, sign=True), _fmt(-0.0307, 4)) == ("0.0000", "+0.00", "-0.0307")


def test_the_collector_down_a_few_minutes_is_not_counted_as_mining_as_report_counts_it(tmp_path, recent):
    # Trial ZH M1: with the collector stopped 90 s at a 3 s interval, the backtest's "as happened" counted the stop as
    # mining (any gap up to 600 s): 2.09 kWh where `hashfleet report` said 1.49. A gap over three cycle steps counts
    # one step, as the report counts it: half an hour, 5 minutes down, half an hour.
    lines = history(recent, 3, 600) + history(recent + 1800 + 300, 3, 600)
    env = local_history(tmp_path, lines)
    config = write_config(tmp_path, interval_s=3)
    result = run_backtest(["--config", config, "--prices", flat_prices(tmp_path, recent), "--strategy", "strike:10"],
                          env)
    assert result["actual"]["energy_kwh"] == pytest.approx(6.5 * 1.0, rel=0.005)  # 6.5 kW x 1,200 x 3 s
    done = subprocess.run([HASHFLEET, "report", "--config", config, "--since", "1d", "--json"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["energy_kwh"] == pytest.approx(result["actual"]["energy_kwh"], rel=0.005)


def test_a_row_missing_from_a_price_file_is_warned_of_where_its_price_before_holds_across(tmp_path, caplog):
    # Trial ZH M2: the 16:00 row missing after a 15:00 spike held the spike two hours, savings 62 % high, unsaid.
    path = tmp_path / "hourly.csv"
    rows = [(h, 0.50 if h == 15 else 0.04) for h in range(24) if h != 16]
    path.write_text("time,usd_per_kwh\n" + "".join(f"{1_765_000_800 + 3600 * h},{p}\n" for h, p in rows))
    with caplog.at_level("WARNING"):
        series = read_prices_csv(path)
    assert series.at(1_765_000_800 + 3600 * 16 + 10) == 0.50  # (as documented: at most two hours)
    [said] = [r.getMessage() for r in caplog.records if "gap" in r.getMessage()]
    assert "1 gap(s) longer than the file's step of 3600 s: after line 17 (2 h)" in said, said
    caplog.clear()
    regular = tmp_path / "regular.csv"
    regular.write_text("time,usd_per_kwh\n" + "".join(f"{1_765_000_800 + 3600 * h},0.04\n" for h in range(24)))
    with caplog.at_level("WARNING"):
        read_prices_csv(regular)
    assert not caplog.records
