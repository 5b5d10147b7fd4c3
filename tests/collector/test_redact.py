"""Credentials in URLs (`http://user:secret@host`) never appear in a log line, an error or an exception:
every message path that names a URL, exercised through the real CLI (its stderr is its log)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.servers.ports import free_port
from tests.support import HASHFLEET

from collector.redact import RedactingFilter, mask, redact, redact_url

SECRET = "s3cr3t-pw"
CREDENTIALS = f"user:{SECRET}@"


@pytest.mark.parametrize(("url", "shown"), [
    (f"http://{CREDENTIALS}influxdb:8086", "http://***@influxdb:8086"),
    (f"https://{CREDENTIALS}h/api/v1/prices?x=1", "https://***@h/api/v1/prices?x=1"),
    (f"http://user:{SECRET}@with-at@h:1/", "http://***@h:1/"),  # an unescaped '@' in the password
    (f"http://user:{SECRET}/x@h/", "http://***@h/"),  # an unescaped '/' in the password
    (f"{CREDENTIALS}broker", "***@broker"),
    ("http://influxdb:8086/write", "http://influxdb:8086/write"),
    ("https://h/a?mail=a@b.c", "https://h/a?mail=a@b.c"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    if "://" in url:  # in free text only a URL with a scheme is recognisable
        assert SECRET not in redact(f"fetch from {url} failed") and SECRET not in redact(f"for url '{url}'")


@pytest.mark.parametrize(("text", "shown"), [
    ("invalid token af5cda09147f8688 (twice: af5cda09147f8688)", "invalid token *** (twice: ***)"),
    ("an excerpt cut short: af5cda09", "an excerpt cut short: ***"),  # any start of 4 characters or more
    ("only af5 of it", "only af5 of it"),
    ("nothing of it", "nothing of it"),
])
def test_mask_hides_a_token_echoed_whole_or_cut_short(text, shown):
    assert mask(text, "af5cda09147f8688") == shown


def test_mask_leaves_a_token_too_short_to_tell_apart():
    assert mask("within 1 s", "t") == "within 1 s" and mask("x", None) == "x"


def test_the_log_filter_redacts_messages_and_their_arguments():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "fetch from %s failed: %s", (
        f"http://{CREDENTIALS}h/x", f"Client error for url 'http://{CREDENTIALS}h/x'"), None)
    assert RedactingFilter().filter(record)
    assert SECRET not in record.getMessage() and record.getMessage().count("http://***@h/x") == 2


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUX_", "MQTT_", "GRAFANA_"))}
    return subprocess.run([HASHFLEET, *args], capture_output=True, text=True, timeout=90, env={**environ, **(env or {})})


def assert_hidden(result: subprocess.CompletedProcess, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert SECRET not in output, output
    for text in expected:
        assert text in output, output


# --- InfluxDB ------------------------------------------------------------------------------------


def test_influxdb_unreachable(tmp_path):
    url = f"http://{CREDENTIALS}127.0.0.1:{free_port()}"
    result = run("collect", "--miners", "127.0.0.1:1", "--cycles", "1", env={"INFLUX_URL": url, "INFLUX_TOKEN": "t"})
    assert result.returncode == 0, result.stderr
    assert_hidden(result, "InfluxDB at http://***@127.0.0.1", "unreachable")


def test_influxdb_refusing_the_write(influxdb, influx_bucket):
    url = influxdb.url.replace("://", f"://{CREDENTIALS}")
    result = run("collect", "--miners", "127.0.0.1:1", "--cycles", "1",
                 env={"INFLUX_URL": url, "INFLUX_TOKEN": "not-the-token", "INFLUX_ORG": influxdb.org,
                      "INFLUX_BUCKET": influx_bucket})
    assert result.returncode == 0, result.stderr
    assert_hidden(result, "InfluxDB at http://***@", "refused a write", "HTTP 401")


def test_influx_url_refused_by_the_config():
    result = run("collect", "--miners", "127.0.0.1:1", env={"INFLUX_URL": f"ftp://{CREDENTIALS}influxdb:8086"})
    assert result.returncode == 2
    assert_hidden(result, "influx.url", "ftp://***@influxdb:8086")


# --- network APIs --------------------------------------------------------------------------------


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def not_found() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_network_api_failures(tmp_path, not_found):
    closed = f"127.0.0.1:{free_port()}"
    path = tmp_path / "c.yaml"
    path.write_text(f"""
miners: ["127.0.0.1:1"]
economics: {{tariff: {{kind: flat, usd_per_kwh: 0.05}}}}
network:
  source: http
  timeout_s: 2
  difficulty_url: http://{CREDENTIALS}{not_found}/api/v1/mining/hashrate/3d
  height_url: http://{CREDENTIALS}{closed}/api/blocks/tip/height
  fees_url: http://{CREDENTIALS}{not_found}/api/v1/mining/blocks/fees/24h
  price_url: https://{CREDENTIALS}{closed}/api/v1/prices
""")
    result = run("collect", "--config", str(path), "--cycles", "1")
    assert result.returncode == 0, result.stderr
    assert_hidden(result, f"fetch from http://***@{not_found}/api/v1/mining/hashrate/3d failed (HTTPStatusError",
                  "404 Not Found", f"fetch from http://***@{closed}/api/blocks/tip/height failed (ConnectError",
                  "no cost figures this cycle")


def test_network_url_refused_by_the_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"""
miners: ["127.0.0.1:1"]
economics: {{tariff: {{kind: flat, usd_per_kwh: 0.05}}}}
network: {{source: http, price_url: "{CREDENTIALS}prices.example/api"}}
""")
    result = run("collect", "--config", str(path))
    assert result.returncode == 2
    assert_hidden(result, "network.price_url", "must be an http(s) URL", "***@prices.example/api")


# --- MQTT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [f"{CREDENTIALS}127.0.0.1", f"mqtt://{CREDENTIALS}127.0.0.1"])
def test_mqtt_host_with_credentials_is_refused_without_echoing_them(host):
    result = run("collect", "--miners", "127.0.0.1:1", env={"MQTT_HOST": host})
    assert result.returncode == 2
    assert_hidden(result, "mqtt.host", "without scheme, credentials or path", "MQTT_PASSWORD")


# --- grafana push --------------------------------------------------------------------------------


def test_grafana_unreachable():
    url = f"http://{CREDENTIALS}127.0.0.1:{free_port()}/grafana"
    result = run("grafana", "push", "--url", url, "--token", "t", "--influx-url", "http://influxdb:8086")
    assert result.returncode == 1
    assert_hidden(result, "Grafana at http://***@127.0.0.1", "unreachable")


@pytest.mark.parametrize("url", [f"ftp://{CREDENTIALS}grafana:3000", f"http://{CREDENTIALS}grafana:port/"])
def test_grafana_url_refused(url):
    result = run("grafana", "push", "--url", url, "--token", "t", "--influx-url", "http://influxdb:8086")
    assert result.returncode == 2
    assert_hidden(result, "***@grafana")


def test_every_log_line_is_printable_whoever_wrote_its_text():
    # The last line of defence, on the CLI's log handler beside RedactingFilter: an escape sequence in a
    # miner's or a publisher's text recoloured or cleared the operator's terminal, a newline forged a line.
    from collector.commands import PrintableLog

    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "miner %s said %s", (
        "m1\x1b[2J", "ok\n2026-12-06 00:00:00 INFO collector.service: all good\x9b31m"), None)
    assert PrintableLog().filter(record)
    assert record.getMessage().isprintable() and "m1 [2J said ok 2026-12-06" in record.getMessage()
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "cycle %d", (3,), None)
    assert PrintableLog().filter(plain) and plain.args == (3,)  # (a printable line is left as it is)


def test_a_logged_traceback_is_printable_and_hides_credentials_too():
    # An exception's text quotes what it failed on: a URL with its credentials, a miner's reply with an
    # escape sequence. The filters rewrote the message only; the traceback went out as the exception said.
    from collector.commands import PrintableLog

    try:
        raise ValueError(f"bad reply from http://{CREDENTIALS}h/x: \x1b[2Jcleared\x9b31m")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "poll failed", None, sys.exc_info())
    assert RedactingFilter().filter(record) and PrintableLog().filter(record)
    text = logging.Formatter("%(message)s").format(record)
    lines = text.split("\n")
    assert lines[0] == "poll failed" and lines[1] == "Traceback (most recent call last):", text
    assert SECRET not in text and "http://***@h/x" in text, text
    assert all(line.isprintable() for line in lines) and " [2Jcleared 31m" in lines[-1], text
