"""`hashfleet grafana push` against a small stand-in for Grafana's documented HTTP API.

The stand-in implements only the endpoints the command may call, answers as Grafana's HTTP API
reference says (status codes and bodies), and checks every request: method, path, `Authorization:
Bearer <token>`, JSON bodies with the documented fields. Anything else is answered 404 and recorded
as unexpected, which fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from tests.support import HASHFLEET

from tests.support import REPO as ROOT
TOKEN = "glsa_test-service-account-token"
INFLUX_TOKEN = "influx-secret-token"
DASHBOARD_UIDS = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards" / "json").glob("*.json")}


@dataclass
class FakeGrafana:
    prefix: str = ""
    token: str = TOKEN
    datasources: dict[str, dict] = field(default_factory=dict)
    folders: dict[str, dict] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)  # secureJsonData as sent (Grafana never returns it)
    calls: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    url: str = ""


def _handler(grafana: FakeGrafana):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            if "application/json" not in self.headers.get("Content-Type", ""):
                grafana.problems.append(f"{self.command} {self.path}: body is not application/json")
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

        def _route(self) -> None:
            grafana.calls.append((self.command, self.path))
            if self.headers.get("Authorization") != f"Bearer {grafana.token}":
                self._reply(401, {"message": "Unauthorized"})  # as Grafana answers a bad token
                return
            if not self.path.startswith(grafana.prefix + "/api/"):
                grafana.problems.append(f"unexpected path {self.path}")
                self._reply(404, {"message": "Not found"})
                return
            path = self.path[len(grafana.prefix):]
            parts = path.strip("/").split("/")
            method = self.command
            if method == "GET" and parts[:3] == ["api", "datasources", "uid"] and len(parts) == 4:
                ds = grafana.datasources.get(parts[3])
                self._reply(200, ds) if ds else self._reply(404, {"message": "Data source not found"})
            elif method == "POST" and path == "/api/datasources":
                self._create_datasource(self._body())
            elif method == "PUT" and parts[:3] == ["api", "datasources", "uid"] and len(parts) == 4:
                self._update_datasource(parts[3], self._body())
            elif method == "GET" and parts[:2] == ["api", "folders"] and len(parts) == 3:
                folder = grafana.folders.get(parts[2])
                self._reply(200, folder) if folder else self._reply(404, {"message": "folder not found"})
            elif method == "POST" and path == "/api/folders":
                self._create_folder(self._body())
            elif method == "POST" and path == "/api/dashboards/db":
                self._save_dashboard(self._body())
            else:
                grafana.problems.append(f"unexpected call {method} {self.path}")
                self._reply(404, {"message": "Not found"})

        do_GET = do_POST = do_PUT = do_DELETE = _route  # noqa: N815 (http.server's names)

        def _check_datasource(self, body: dict) -> bool:
            missing = {"name", "type", "access", "url"} - set(body)
            if missing:
                self._reply(400, {"message": f"missing {sorted(missing)}"})
                grafana.problems.append(f"data source body lacks {sorted(missing)}")
                return False
            return True

        def _create_datasource(self, body: dict) -> None:
            if not self._check_datasource(body):
                return
            if any(ds["name"] == body["name"] for ds in grafana.datasources.values()):
                self._reply(409, {"message": "data source with the same name already exists"})
                return
            stored = {**body, "id": len(grafana.datasources) + 1, "version": 1}
            stored.pop("secureJsonData", None)
            stored["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}
            grafana.datasources[body["uid"]] = stored
            grafana.secrets[body["uid"]] = body.get("secureJsonData", {})
            self._reply(200, {"datasource": stored, "id": stored["id"], "message": "Datasource added",
                              "name": body["name"]})

        def _update_datasource(self, uid: str, body: dict) -> None:
            if uid not in grafana.datasources:
                self._reply(404, {"message": "Data source not found"})
                return
            if not self._check_datasource(body):
                return
            stored = {**grafana.datasources[uid], **body, "version": grafana.datasources[uid]["version"] + 1}
            stored.pop("secureJsonData", None)
            grafana.datasources[uid] = stored
            grafana.secrets[uid] = body.get("secureJsonData", {})
            self._reply(200, {"datasource": stored, "id": stored["id"], "message": "Datasource updated",
                              "name": body["name"]})

        def _create_folder(self, body: dict) -> None:
            if "title" not in body:
                grafana.problems.append("folder body lacks title")
                self._reply(400, {"message": "title is required"})
                return
            uid = body.get("uid") or f"generated{len(grafana.folders)}"
            if uid in grafana.folders:
                self._reply(409, {"message": "a folder with the same uid already exists"})
                return
            grafana.folders[uid] = {"id": len(grafana.folders) + 1, "uid": uid, "title": body["title"], "version": 1}
            self._reply(200, grafana.folders[uid])

        def _save_dashboard(self, body: dict) -> None:
            board = body.get("dashboard")
            if not isinstance(board, dict) or not board.get("uid") or "title" not in board:
                grafana.problems.append("dashboard body lacks dashboard.uid/title")
                self._reply(400, {"message": "Dashboard title cannot be empty"})
                return
            folder = body.get("folderUid")
            if folder is not None and folder not in grafana.folders:
                self._reply(400, {"message": "folder not found"})
                return
            old = grafana.dashboards.get(board["uid"])
            if old is not None and not body.get("overwrite"):
                self._reply(412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"})
                return
            version = (old["version"] + 1) if old else 1
            grafana.dashboards[board["uid"]] = {"dashboard": board, "folderUid": folder, "version": version,
                                                "message": body.get("message")}
            slug = board["title"].lower().replace(" ", "-")
            self._reply(200, {"id": len(grafana.dashboards), "uid": board["uid"], "url": f"/d/{board['uid']}/{slug}",
                              "status": "success", "version": version, "slug": slug})

    return Handler


@pytest.fixture
def grafana(request) -> Iterator[FakeGrafana]:
    fake = FakeGrafana(prefix=getattr(request, "param", ""))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}{fake.prefix}"
    yield fake
    server.shutdown()
    server.server_close()


def push(grafana: FakeGrafana, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("GRAFANA_", "INFLUX_", "HASHFLEET_DASHBOARDS"))}
    environ.update({"INFLUX_URL": "http://influxdb:8086", "INFLUX_TOKEN": INFLUX_TOKEN, **env})
    return subprocess.run([HASHFLEET, "grafana", "push", "--url", grafana.url, *args],
                          capture_output=True, text=True, timeout=60, env=environ)


def test_first_push_creates_data_source_folder_and_every_dashboard(grafana: FakeGrafana):
    result = push(grafana, "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert grafana.problems == []
    assert grafana.calls[:4] == [
        ("GET", "/api/datasources/uid/hashfleet-influxdb"), ("POST", "/api/datasources"),
        ("GET", "/api/folders/hashfleet"), ("POST", "/api/folders"),
    ]
    assert grafana.calls[4:] == [("POST", "/api/dashboards/db")] * len(DASHBOARD_UIDS)
    ds = grafana.datasources["hashfleet-influxdb"]
    assert (ds["type"], ds["access"], ds["url"]) == ("influxdb", "proxy", "http://influxdb:8086")
    assert ds["jsonData"]["dbName"] == "hashfleet" and ds["jsonData"]["httpMode"] == "POST"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert grafana.secrets["hashfleet-influxdb"] == {"httpHeaderValue1": f"Token {INFLUX_TOKEN}"}
    assert set(grafana.dashboards) == DASHBOARD_UIDS
    for saved in grafana.dashboards.values():
        assert saved["folderUid"] == "hashfleet" and "id" not in saved["dashboard"]
        targets = [t for p in saved["dashboard"]["panels"] for t in p.get("targets", [])]
        assert targets and {t["datasource"]["uid"] for t in targets} == {"hashfleet-influxdb"}
    assert TOKEN not in result.stdout + result.stderr and INFLUX_TOKEN not in result.stdout + result.stderr


def test_second_push_updates_in_place(grafana: FakeGrafana):
    assert push(grafana, "--token", TOKEN).returncode == 0
    grafana.calls.clear()
    result = push(grafana, "--token", TOKEN, "--influx-bucket", "site2")
    assert result.returncode == 0, result.stderr
    assert grafana.calls[:3] == [
        ("GET", "/api/datasources/uid/hashfleet-influxdb"), ("PUT", "/api/datasources/uid/hashfleet-influxdb"),
        ("GET", "/api/folders/hashfleet"),
    ]
    assert grafana.datasources["hashfleet-influxdb"]["jsonData"]["dbName"] == "site2"
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert grafana.problems == []


def test_token_from_a_file_named_by_the_environment(grafana: FakeGrafana, tmp_path: Path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    result = push(grafana, GRAFANA_TOKEN_FILE=str(tmp_path / "token"))
    assert result.returncode == 0, result.stderr
    assert set(grafana.dashboards) == DASHBOARD_UIDS


@pytest.mark.parametrize(("variable", "named"), [("GRAFANA_TOKEN_FILE", "GRAFANA_TOKEN_FILE"),
                                              ("GRAFANA_TOKEN", "GRAFANA_TOKEN"),
                                              ("INFLUX_TOKEN", "INFLUX_TOKEN")])
def test_a_token_of_two_lines_is_a_usage_error_naming_where_it_came_from_never_the_token(
        grafana: FakeGrafana, tmp_path: Path, variable: str, named: str):
    # It went into the Authorization header: http.client refused it with a traceback quoting the header.
    two_lines = f"{TOKEN}\nsecond-line"
    if variable.endswith("_FILE"):
        (tmp_path / "token").write_text(two_lines + "\n")
        env = {variable: str(tmp_path / "token")}
    else:
        env = {variable: two_lines}
    result = push(grafana, *([] if variable.startswith("GRAFANA") else ["--token", TOKEN]), **env)
    assert result.returncode == 2 and named in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert TOKEN not in result.stderr and "second-line" not in result.stderr
    assert grafana.calls == []


def test_a_header_the_http_client_refuses_is_a_push_error_without_the_token(grafana: FakeGrafana):
    # Tokens are checked first; should one get past, h11's refusal quotes the header, token and all.
    from collector.commands.grafana import PushError, Pusher

    async def folder() -> None:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}\nsecond-line"}) as client:
            await Pusher(client, grafana.url, 5, [TOKEN]).folder()

    with pytest.raises(PushError) as err:
        asyncio.run(folder())
    assert "could not be sent" in str(err.value)
    assert TOKEN not in str(err.value) and "second-line" not in str(err.value)


@pytest.mark.parametrize("grafana", ["/grafana"], indirect=True)
def test_grafana_behind_a_sub_path(grafana: FakeGrafana):
    result = push(grafana, "--token", TOKEN)
    assert result.returncode == 0, result.stderr
    assert all(path.startswith("/grafana/api/") for _, path in grafana.calls) and grafana.problems == []


def test_refused_token_is_a_runtime_error_that_does_not_echo_it(grafana: FakeGrafana):
    result = push(grafana, "--token", "wrong-token")
    assert result.returncode == 1
    assert "401" in result.stderr and "wrong-token" not in result.stdout + result.stderr
    assert grafana.dashboards == {}


def test_no_token_is_a_usage_error(grafana: FakeGrafana):
    result = push(grafana)
    assert result.returncode == 2 and "GRAFANA_TOKEN" in result.stderr
    assert grafana.calls == []


def test_pushed_data_source_matches_the_provisioned_one(grafana: FakeGrafana):
    assert push(grafana, "--token", TOKEN).returncode == 0
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/hashfleet.yaml").read_text())["datasources"][0]
    pushed = grafana.datasources[provisioned["uid"]]
    assert (pushed["type"], pushed["access"]) == (provisioned["type"], provisioned["access"])
    assert {k: v for k, v in pushed["jsonData"].items() if k != "dbName"} == {
        k: v for k, v in provisioned["jsonData"].items() if k != "dbName"}
    assert provisioned["secureJsonData"]["httpHeaderValue1"].startswith("Token ")


class _Hostile(BaseHTTPRequestHandler):
    """A server on Grafana's address answering every request in one hostile way (`server.mode`), recording
    what it was sent (`server.seen`: method, path, Authorization, body)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, *headers: tuple[str, str], length: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization")
        self.server.seen.append((self.command, self.path, auth, body.decode()))  # type: ignore[attr-defined]
        mode = self.server.mode  # type: ignore[attr-defined]
        json_type = ("Content-Type", "application/json")
        if mode.startswith("redirect"):  # redirect<status> to server.target
            target = self.server.target + self.path if self.server.target else "/login"  # type: ignore[attr-defined]
            self._send(int(mode[8:]), b"", ("Location", target))
        elif mode == "html":
            self._send(200, b"<html>log in</html>", ("Content-Type", "text/html"))
        elif mode in ("list", "null", "string", "empty-object"):
            body = {"list": b"[1,2,3]", "null": b"null", "string": b'"ok"', "empty-object": b"{}"}[mode]
            self._send(200, body, json_type)
        elif mode == "echo-token":  # an error message quoting the request's header
            self._send(400, json.dumps({"message": f"bad {auth}"}).encode(), json_type)
        elif mode == "echo-body" and self.command == "GET":  # no data source yet: the next call sends one
            self._send(404, b'{"message": "Data source not found"}', json_type)
        elif mode == "echo-body":  # an error message quoting the request's body (the InfluxDB token in it)
            secure = json.dumps(json.loads(body).get("secureJsonData"))
            self._send(400, json.dumps({"message": f"invalid secureJsonData {secure}"}).encode(), json_type)
        elif mode == "echo-page":  # a proxy's page quoting both
            self._send(200, f"<html>denied {auth} {body.decode()}</html>".encode(), ("Content-Type", "text/html"))
        elif mode == "drip":  # a valid length, then 10 bytes a second
            self._send(200, b"", json_type, length=600)
            try:
                for byte in b"{" + b" " * 598 + b"}":
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:  # the client gave up
                pass
        elif mode == "huge":  # a JSON array of 40 MiB, no length said
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"1," * (1 << 19)
            try:
                for _ in range(40):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"2\r\n1]\r\n0\r\n\r\n")
            except OSError:
                pass
        elif mode == "huge-declared":
            self._send(200, b"", json_type, length=1 << 40)
        else:
            raise AssertionError(mode)

    do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server's names)


@pytest.fixture
def hostile() -> Iterator:
    """Start a hostile server: hostile(mode, host="127.0.0.1", target="") -> the server (`.url`, `.seen`)."""
    servers = []

    def start(mode: str, host: str = "127.0.0.1", target: str = ""):
        server = ThreadingHTTPServer((host, 0), _Hostile)
        server.mode, server.target, server.seen = mode, target, []
        server.url = f"http://{host}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def push_to(server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("GRAFANA_", "INFLUX_", "HASHFLEET_DASHBOARDS"))}
    environ.update({"INFLUX_URL": "http://influxdb:8086", "INFLUX_TOKEN": INFLUX_TOKEN})
    return subprocess.run([HASHFLEET, "grafana", "push", "--url", server.url, "--token", TOKEN, *args],
                          capture_output=True, text=True, timeout=timeout, env=environ)


def assert_failed_without_success(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "", result.stdout  # not "created", "updated" or "uploaded"
    assert TOKEN not in result.stderr and INFLUX_TOKEN not in result.stderr


@pytest.mark.parametrize("mode", ["html", "list", "null", "string", "empty-object"])
def test_an_answer_other_than_grafanas_json_is_a_clear_error(hostile, mode):
    # A proxy's page; a JSON list crashed the command with an AttributeError; `null` printed "uploaded" 5 times.
    result = push_to(hostile(mode))
    assert_failed_without_success(result)
    assert "answered something other than Grafana's JSON" in result.stderr, result.stderr
    if mode == "html":
        assert "Grafana's JSON: '<html>log in</html>'" in result.stderr


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_and_nothing_reaches_its_target(hostile, status):
    # A 307/308 was followed with its body: the data source's InfluxDB token went to the other host, and the
    # push said "uploaded".
    elsewhere = hostile("html", host="127.0.0.2")
    grafana = hostile(f"redirect{status}", target=elsewhere.url)
    result = push_to(grafana)
    assert_failed_without_success(result)
    assert elsewhere.seen == [] and len(grafana.seen) == 1
    host = elsewhere.url.removeprefix("http://")
    assert f"answered {status}, a redirect to {host}: not followed" in result.stderr, result.stderr


def test_a_redirect_on_the_same_host_is_refused_too(hostile):
    # A proxy sending the client to its login page.
    grafana = hostile("redirect302")
    result = push_to(grafana)
    assert_failed_without_success(result)
    assert "a redirect to 127.0.0.1:" in result.stderr and len(grafana.seen) == 1


@pytest.mark.parametrize("mode", ["echo-token", "echo-body", "echo-page"])
def test_tokens_a_server_echoes_are_masked_in_what_is_quoted(hostile, mode):
    result = push_to(hostile(mode))
    assert_failed_without_success(result)
    assert "***" in result.stderr, result.stderr
    if mode == "echo-token":
        assert "Grafana answered 400: bad Bearer ***" in result.stderr
    if mode == "echo-body":
        assert '"httpHeaderValue1": "Token ***"' in result.stderr


def test_an_answer_dripping_in_ends_at_the_timeout(hostile):
    # --timeout bounded each socket read only: 2 bytes a second held the command for good.
    result = push_to(hostile("drip"), "--timeout", "1", timeout=30)
    assert_failed_without_success(result)
    assert "no whole answer within 1 s (--timeout)" in result.stderr, result.stderr


@pytest.mark.parametrize("mode", ["huge", "huge-declared"])
def test_an_answer_over_the_cap_is_refused_not_held(hostile, mode):
    # Every answer was read whole: 1 GB took the process to 12 GB.
    result = push_to(hostile(mode))
    assert_failed_without_success(result)
    assert "-byte cap: not Grafana's answer" in result.stderr, result.stderr


def test_the_docs_count_the_dashboards_a_push_uploads(grafana: FakeGrafana):
    # docs/deployment.md said "uploads the four dashboards": a push uploads five.
    assert push(grafana, "--token", TOKEN).returncode == 0
    words = {"four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    deployment = re.search(r"uploads the (\w+) dashboards", " ".join((ROOT / "docs/deployment.md").read_text().split()))
    readme = re.search(r"data source, (\d+) dashboards", (ROOT / "README.md").read_text())
    assert deployment and words.get(deployment.group(1)) == len(grafana.dashboards), deployment
    assert readme and int(readme.group(1)) == len(grafana.dashboards), readme
