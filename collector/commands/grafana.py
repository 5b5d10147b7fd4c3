"""`hashfleet grafana push`: put hashfleet's data source and dashboards on a Grafana the site already runs.

With the documented Grafana HTTP API, each answer checked for the shape the API documents:

    GET  /api/datasources/uid/:uid      is the data source there?   (an object with its id; 404: no)
    POST /api/datasources               no: create it (fixed uid, so the dashboards find it)   (object, id)
    PUT  /api/datasources/uid/:uid      yes: update it                                         (object, id)
    GET  /api/folders/:uid              the dashboards' folder, created with POST /api/folders if missing
                                        (object, uid)
    POST /api/dashboards/db             each dashboard, {dashboard, folderUid, overwrite: true, message}
                                        (object, version and url)

Authentication: a service-account token (role Editor or Admin, since it writes data sources) as
`Authorization: Bearer`. The token comes from --token, GRAFANA_TOKEN or GRAFANA_TOKEN_FILE and is
never printed. The data source is InfluxQL on the bucket's DBRP mapping, with the InfluxDB token
in an Authorization header (INFLUX_TOKEN or INFLUX_TOKEN_FILE), as the compose stack provisions it.

Grafana's answers are outside input. Each request, its whole answer included, ends within --timeout;
an answer is read up to MAX_ANSWER_BYTES; a redirect is refused, never followed (a 307/308 would carry
the data source's body, the InfluxDB token in it, to whatever host it names); anything the command
quotes from an answer has both tokens masked (a server may echo them).

httpx, not grafana-client: grafana-client's requests follows redirects with the body, bounds each socket
read rather than the request (a 2 bytes/s answer held it for good) and reads every answer whole (a
1 GB answer took 12 GB); none of it can be changed through grafana-client. Five calls over
collector/bounded_http.py are shorter than working around it.

The dashboards are the JSON files generated in dashboards/json/ (read as files: collector does not
import dashboards): --dashboards DIR, HASHFLEET_DASHBOARDS_DIR, or the installed package's folder.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer

from collector import bounded_http
from collector.redact import hide_secrets, redact, redact_url
from collector.terminal import printable
from models.base import checked_token, http_url, read_capped, read_secret_file

DATASOURCE_UID = "hashfleet-influxdb"  # the uid every dashboard's queries name (dashboards/common.py)
DATASOURCE_NAME = "hashfleet InfluxDB"
FOLDER_UID = "hashfleet"
FOLDER_TITLE = "hashfleet"
MIN_INTERVAL = "10s"
MAX_DASHBOARD_BYTES = 8 * 1024 * 1024  # the largest generated dashboard is ~100 KB
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # Grafana's answers to these calls are a few KB (a data source, a folder)

grafana_app = typer.Typer(help="Grafana the site already runs: data source and dashboards.", no_args_is_help=True)


class PushError(Exception):
    """Grafana refused or could not be reached; the message says which step, never the token or URL credentials."""


def _token(value: str | None, file: str | None, value_names: str, file_names: str) -> str:
    """The token from `value` (an option or variable) or else `file`, by the one rule for every token
    (models.base.checked_token); a usage error naming where it came from, never the token. Empty: none given."""
    try:
        if value:
            return checked_token(value, value_names)
        if file:
            return read_secret_file(Path(file), file_names, token=True)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return ""


def default_dashboards_dir() -> Path | None:
    """dashboards/json of the installed `dashboards` package, found without importing it."""
    spec = importlib.util.find_spec("dashboards")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "json"
        if candidate.is_dir():
            return candidate
    return None


def load_dashboards(directory: Path) -> list[dict[str, Any]]:
    files = sorted(directory.glob("*.json"))
    if not files:
        raise typer.BadParameter(f"no dashboard JSON in {directory}: generate it with python -m dashboards.build")
    boards = []
    for path in files:
        try:
            board = json.loads(read_capped(path, MAX_DASHBOARD_BYTES))
        except (OSError, ValueError) as e:
            raise typer.BadParameter(f"{path}: not a dashboard JSON file ({str(e)[:200]})") from None
        if not isinstance(board, dict) or not board.get("uid"):
            raise typer.BadParameter(f"{path}: a dashboard needs a uid")
        boards.append(board)
    return boards


def datasource_body(influx_url: str, bucket: str, influx_token: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url,
        "isDefault": False,
        "jsonData": {"version": "InfluxQL", "dbName": bucket, "httpMode": "POST", "timeInterval": MIN_INTERVAL},
    }
    if influx_token:
        body["jsonData"]["httpHeaderName1"] = "Authorization"
        body["secureJsonData"] = {"httpHeaderValue1": f"Token {influx_token}"}
    return body


class Pusher:
    """Grafana's HTTP API as this command uses it: one call at a time, each bounded as the module says."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, timeout_s: float, secrets: list[str]) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")  # a sub-path (https://host/grafana) stays in front of /api
        self.timeout_s = timeout_s
        self.secrets = secrets  # every token sent: masked in whatever is quoted from an answer

    def quote(self, text: str, limit: int) -> str:
        """Server text fit to print: URL credentials and the tokens masked first, then cut to `limit`."""
        return printable(hide_secrets(redact(text), self.secrets)[:limit])

    async def call(self, step: str, method: str, path: str, expect: str, body: dict[str, Any] | None = None, *,
                   missing_ok: bool = False) -> dict[str, Any] | None:
        """One API call's answer: a JSON object holding the key `expect`. With missing_ok, a 404 returns None.
        Every other outcome raises PushError."""
        grafana = redact_url(self.base_url)
        try:
            response, raw = await bounded_http.exchange(self.client, method, self.base_url + path, json=body,
                                                        deadline_s=self.timeout_s, max_bytes=MAX_ANSWER_BYTES)
        except bounded_http.NoWholeAnswer as e:
            raise PushError(f"{step}: Grafana at {grafana}: {e} (--timeout)") from None
        except bounded_http.AnswerTooLarge as e:
            raise PushError(f"{step}: Grafana at {grafana}: {e}: not Grafana's answer") from None
        except bounded_http.NotSent as e:
            raise PushError(f"{step}: Grafana at {grafana}: {e}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            raise PushError(f"{step}: Grafana at {grafana} unreachable ({type(e).__name__})") from None
        status = response.status_code
        if response.is_redirect:
            raise PushError(f"{step}: Grafana at {grafana} answered {status}, a redirect to "
                            f"{self.quote(_host(response), 200)}: not followed "
                            "(give --url the address Grafana answers at)")
        try:
            answer = orjson.loads(raw)  # bounds nesting and numbers, as it does for the pools' answers
        except orjson.JSONDecodeError:  # a proxy's page, a login page
            answer = None
        if status == 404 and missing_ok:
            return None
        if not 200 <= status < 300:
            said = answer.get("message") if isinstance(answer, dict) else None
            said = said if isinstance(said, str) else raw.decode("utf-8", "replace")
            raise PushError(f"{step}: Grafana answered {status}: {self.quote(said, 300)}")
        if not isinstance(answer, dict) or expect not in answer:
            raise PushError(f"{step}: {grafana} answered something other than Grafana's JSON: "
                            f"{self.quote(raw.decode('utf-8', 'replace'), 120)!r}")
        return answer

    async def datasource(self, body: dict[str, Any]) -> str:
        step, path = f"data source {DATASOURCE_UID}", f"/api/datasources/uid/{DATASOURCE_UID}"
        if await self.call(step, "GET", path, "id", missing_ok=True) is not None:
            await self.call(step, "PUT", path, "id", body)
            return "updated"
        await self.call(step, "POST", "/api/datasources", "id", body)
        return "created"

    async def folder(self) -> str:
        step = f"folder {FOLDER_UID}"
        if await self.call(step, "GET", f"/api/folders/{FOLDER_UID}", "uid", missing_ok=True) is not None:
            return "exists"
        await self.call(step, "POST", "/api/folders", "uid", {"uid": FOLDER_UID, "title": FOLDER_TITLE})
        return "created"

    async def dashboard(self, board: dict[str, Any]) -> str:
        """Upload one dashboard; what Grafana says of it (version and url), fit to print."""
        board = {key: value for key, value in board.items() if key != "id"}  # uid identifies it
        payload = {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                   "message": "hashfleet grafana push"}
        answer = await self.call(f"dashboard {board['uid']}", "POST", "/api/dashboards/db", "version", payload)
        assert answer is not None
        return f"version {self.quote(str(answer['version']), 20)}, {self.quote(str(answer.get('url', '')), 200)}"

    async def push(self, datasource: dict[str, Any], boards: list[dict[str, Any]]) -> None:
        typer.echo(f"data source {DATASOURCE_UID}: {await self.datasource(datasource)}")
        typer.echo(f"folder {FOLDER_UID}: {await self.folder()}")
        for board in boards:
            said = await self.dashboard(board)
            typer.echo(f"dashboard {board['uid']} ({board.get('title', '')}): uploaded, {said}")


def _no_url_auth(request: httpx.Request) -> httpx.Request:
    """The request as it is: the Bearer header is the credential, never userinfo in --url."""
    return request


def _host(response: httpx.Response) -> str:
    """host[:port] a redirect points to (never its path or credentials)."""
    try:
        target = response.request.url.join(response.headers.get("location", ""))
    except (httpx.InvalidURL, ValueError):
        return "an unreadable Location"
    return f"{target.host}:{target.port}" if target.port else target.host


@grafana_app.command()
def push(
    url: str = typer.Option(..., "--url", envvar="GRAFANA_URL", help="Grafana's base URL, e.g. https://grafana.site:3000"),
    token: str | None = typer.Option(None, "--token", envvar="GRAFANA_TOKEN", show_default=False,
                                     help="Service-account token (Editor or Admin). Prefer GRAFANA_TOKEN_FILE."),
    token_file: str | None = typer.Option(None, "--token-file", envvar="GRAFANA_TOKEN_FILE",
                                          help="File holding the token."),
    influx_url: str = typer.Option(..., "--influx-url", envvar="INFLUX_URL",
                                   help="InfluxDB as Grafana's server reaches it, e.g. http://influxdb:8086"),
    bucket: str = typer.Option("hashfleet", "--influx-bucket", envvar="INFLUX_BUCKET",
                               help="Bucket (= InfluxQL database through the DBRP mapping)."),
    influx_token_file: str | None = typer.Option(None, "--influx-token-file", envvar="INFLUX_TOKEN_FILE",
                                                 help="File holding the InfluxDB read token (or set INFLUX_TOKEN)."),
    dashboards: Path | None = typer.Option(None, "--dashboards", envvar="HASHFLEET_DASHBOARDS_DIR",
                                           help="Folder of dashboard JSON (default: the installed dashboards/json)."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per request, its whole answer included."),
) -> None:
    """Create or update the hashfleet data source and upload the dashboards (folder `hashfleet`)."""
    grafana_token = _token(token, token_file, "the Grafana token (--token or GRAFANA_TOKEN)",
                           "the Grafana token file (--token-file or GRAFANA_TOKEN_FILE)")
    if not grafana_token:
        raise typer.BadParameter("give a service-account token: --token, GRAFANA_TOKEN or GRAFANA_TOKEN_FILE",
                                 param_hint="'--token'")
    try:
        http_url(url, base=True)
    except ValueError as e:
        raise typer.BadParameter(f"{redact_url(url)!r}: {e}", param_hint="'--url'") from None
    directory = dashboards or default_dashboards_dir()
    if directory is None:
        raise typer.BadParameter("cannot find dashboards/json: pass --dashboards DIR", param_hint="'--dashboards'")
    boards = load_dashboards(directory)
    influx_token = _token(os.environ.get("INFLUX_TOKEN"), influx_token_file, "the InfluxDB token (INFLUX_TOKEN)",
                          "the InfluxDB token file (--influx-token-file or INFLUX_TOKEN_FILE)")

    secrets = [grafana_token, influx_token]
    headers = {"Authorization": f"Bearer {grafana_token}", "Accept": "application/json", "User-Agent": "hashfleet"}
    try:
        # credentials in --url are not sent: httpx would send them as Basic auth, in the Bearer header's place
        client = httpx.AsyncClient(headers=headers, auth=_no_url_auth, timeout=timeout, follow_redirects=False)
    except ValueError as e:  # a token httpx cannot put in a header (not ASCII)
        raise typer.BadParameter(hide_secrets(redact(str(e)), secrets)[:200], param_hint="'--token'") from None

    async def run() -> None:
        async with client:
            await Pusher(client, url, timeout, secrets).push(datasource_body(influx_url, bucket, influx_token), boards)

    try:
        asyncio.run(run())
    except PushError as e:
        typer.echo(f"hashfleet grafana push: {e}", err=True)
        raise typer.Exit(1) from None
