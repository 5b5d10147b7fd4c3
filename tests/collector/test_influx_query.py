"""Reading InfluxDB back (`hashfleet health --since`): its answer is outside input. A server that lies —
an endless body, not JSON, an error, a shape that is not InfluxDB's, values of the wrong type or size,
no answer at all — costs the query an error that says where and why, never a hang, a crash or a value
taken on trust; the token never appears in it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collector import health_report, influx_query
from collector.influx_query import InfluxQueryError
from models import InfluxConfig

TOKEN = "secret-read-token"


class _Liar(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        mode = self.server.mode  # type: ignore[attr-defined]
        self.server.seen.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        if mode == "hang":
            time.sleep(5)
            return
        if mode == "drip":  # a valid length, then 10 bytes a second for 20 s
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
            return
        if mode == "endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"[" * 65536
            try:
                for _ in range(10_000):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        status, body = self.server.answer  # type: ignore[attr-defined]
        body = body.replace(b"{auth}", (self.headers.get("Authorization") or "").encode())  # as a proxy may echo it
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def liar():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    server.mode, server.answer, server.seen = "answer", (200, b"{}"), []
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _config(server, **more) -> InfluxConfig:
    return InfluxConfig(url=f"http://127.0.0.1:{server.server_address[1]}", bucket="b", read_token=TOKEN,
                        token="write-token", **more)


def _query(server, **more):
    return asyncio.run(influx_query.query(_config(server, **more), "SELECT 1"))


@pytest.mark.parametrize("answer", [
    (401, b'{"code":"unauthorized","message":"refused: Authorization: {auth}"}'),
    (200, b'{"results":[{"statement_id":0,"error":"bad query from {auth}"}]}'),
    (502, b"<html>bad gateway; your request: Authorization: {auth}</html>"),
])
def test_a_token_the_server_echoes_is_hidden_in_the_error(liar, answer):
    # (trial T: `health --since` and `backtest --source influx` printed the read token a proxy echoed)
    liar.answer = answer
    with pytest.raises(InfluxQueryError) as raised:
        _query(liar)
    assert "***" in str(raised.value) and TOKEN[:4] not in str(raised.value), raised.value
    from collector.backtest_inputs import InfluxHistory

    with pytest.raises(InfluxQueryError) as raised:
        InfluxHistory(_config(liar)).query("SELECT 1")
    assert "***" in str(raised.value) and TOKEN[:4] not in str(raised.value), raised.value

@pytest.mark.parametrize(("answer", "said"), [
    ((200, b"<html>proxy</html>"), "not JSON"),
    ((200, b"\xff\xfe"), "not JSON"),
    ((401, b'{"code":"unauthorized","message":"unauthorized access"}'), "HTTP 401: unauthorized access"),
    ((200, b'{"results":[{"statement_id":0,"error":"database not found: b"}]}'), "database not found"),
    ((200, b'{"results":"everything is fine"}'), "not InfluxDB's answer"),
    ((200, b'{"results":[{"series":[{"columns":"x","values":[[1]]}]}]}'), "not InfluxDB's answer"),
    ((200, b"[1, 2, 3]"), "HTTP 200"),
])
def test_an_answer_that_is_not_influxdbs_is_an_error_naming_it(liar, answer, said):
    liar.answer = answer
    with pytest.raises(InfluxQueryError) as raised:
        _query(liar)
    assert said in str(raised.value) and TOKEN not in str(raised.value)


def test_the_read_token_is_sent_not_the_write_token(liar):
    liar.answer = (200, b'{"results":[{"statement_id":0}]}')
    assert _query(liar) == []
    assert liar.seen == [f"Token {TOKEN}"]


def test_a_header_the_http_client_refuses_is_an_error_without_the_token(liar, monkeypatch):
    # Tokens are checked at start; should one get past, h11's refusal quotes the header, token and all.
    monkeypatch.setattr(InfluxConfig, "resolved_read_token", lambda self: f"{TOKEN}\nsecond-line")
    with pytest.raises(InfluxQueryError) as err:
        _query(liar)
    assert "could not be sent" in str(err.value)
    assert TOKEN not in str(err.value) and "second-line" not in str(err.value)


def test_an_endless_answer_stops_at_the_cap(liar, monkeypatch):
    monkeypatch.setattr(influx_query, "MAX_BODY_BYTES", 1_000_000)
    liar.mode = "endless"
    started = time.monotonic()
    with pytest.raises(InfluxQueryError, match="over 0 MiB"):
        _query(liar)
    assert time.monotonic() - started < 5


def test_no_answer_ends_at_the_timeout(liar):
    liar.mode = "hang"
    with pytest.raises(InfluxQueryError, match="no whole answer within 0.5 s"):
        _query(liar, timeout_s=0.5)


def test_an_answer_dripping_in_ends_at_the_timeout(liar):
    # httpx's timeout bounds each read: a byte every 0.1 s never tripped it.
    liar.mode = "drip"
    with pytest.raises(InfluxQueryError, match="no whole answer within 0.5 s"):
        _query(liar, timeout_s=0.5)


def test_values_of_the_wrong_type_or_size_are_not_taken(liar):
    """A problem row whose numbers are text, negative counts or absurd strings: each value checked."""
    row = ["1970-01-01T00:00:00Z", "NaN", 1e308, -3.0, "x" * 100_000, {"a": 1}, -7]
    series = {"name": "health", "tags": {"miner": "m1", "signal": "board_dead", "part": "board0", "cause": "board",
                                         "container": "", "row": "", "rack": ""},
              "columns": ["time", "usd_lost_day", "usd_mean", "lost_ths", "evidence", "severity", "cycles"],
              "values": [row]}
    liar.answer = (200, json.dumps({"results": [{"statement_id": 0, "series": [series]}]}).encode())
    report = asyncio.run(health_report.from_influx(_config(liar), "s1", 0, 10))
    [problem] = report.problems
    assert problem.usd_lost_day is None and problem.usd_lost_day_mean is None and problem.lost_ths is None
    assert len(problem.evidence) == health_report.MAX_TEXT and problem.severity is None and problem.cycles == 0
    assert problem.container is None  # an empty tag is no place
