"""`hashfleet grafana push`: put hashfleet's data source and dashboards on a Grafana the site already runs.

Through grafana-client, with the documented Grafana HTTP API:

    GET  /api/datasources/uid/:uid      is the data source there?
    POST /api/datasources               no: create it (fixed uid, so the dashboards find it)
    PUT  /api/datasources/uid/:uid      yes: update it
    GET  /api/folders/:uid              the dashboards' folder, created with POST /api/folders if missing
    POST /api/dashboards/db             each dashboard, {dashboard, folderUid, overwrite: true, message}

Authentication: a service-account token (role Editor or Admin, since it writes data sources) as
`Authorization: Bearer`. The token comes from --token, GRAFANA_TOKEN or GRAFANA_TOKEN_FILE and is
never printed. The data source is InfluxQL on the bucket's DBRP mapping, with the InfluxDB token
in an Authorization header (INFLUX_TOKEN or INFLUX_TOKEN_FILE), as the compose stack provisions it.

The dashboards are the JSON files generated in dashboards/json/ (read as files: collector does not
import dashboards): --dashboards DIR, HASHFLEET_DASHBOARDS_DIR, or the installed package's folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from collector.redact import redact, redact_url
from models.base import checked_token, http_url, read_capped, read_secret_file

if TYPE_CHECKING:  # grafana-client (and requests) load only when the command runs: every CLI start stays fast
    from grafana_client import GrafanaApi

DATASOURCE_UID = "hashfleet-influxdb"  # the uid every dashboard's queries name (dashboards/common.py)
DATASOURCE_NAME = "hashfleet InfluxDB"
FOLDER_UID = "hashfleet"
FOLDER_TITLE = "hashfleet"
MIN_INTERVAL = "10s"
MAX_DASHBOARD_BYTES = 8 * 1024 * 1024  # the largest generated dashboard is ~100 KB

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


@dataclass
class Pusher:
    api: GrafanaApi

    def _call(self, step: str, call, *args, missing_ok: bool = False):
        """Run one API call; turn its failures into PushError. With missing_ok, a 404 returns None."""
        import requests
        from grafana_client.client import GrafanaException

        try:
            answer = call(*args)
        except GrafanaException as e:
            if missing_ok and e.status_code == 404:
                return None
            raise PushError(redact(f"{step}: Grafana answered {e.status_code}: {str(e.message)[:300]}")) from None
        except requests.RequestException as e:
            raise PushError(f"{step}: Grafana at {redact_url(self.api.url)} unreachable ({type(e).__name__})") from None
        except ValueError:  # the HTTP client refused to send it (a header value): its message quotes the header
            raise PushError(f"{step}: the request to Grafana at {redact_url(self.api.url)} could not be sent (a "
                            "header value the HTTP client refused)") from None
        if answer is not None and not isinstance(answer, (dict, list)):  # a proxy's page, a login redirect's HTML
            raise PushError(f"{step}: {redact_url(self.api.url)} answered something other than Grafana's JSON: "
                            f"{redact(str(answer)[:120])!r}")
        return answer

    def _exists(self, step: str, call, *args) -> bool:
        return self._call(step, call, *args, missing_ok=True) is not None

    def datasource(self, body: dict[str, Any]) -> str:
        step = f"data source {DATASOURCE_UID}"
        if self._exists(step, self.api.datasource.get_datasource_by_uid, DATASOURCE_UID):
            self._call(step, self.api.datasource.update_datasource_by_uid, DATASOURCE_UID, body)
            return "updated"
        self._call(step, self.api.datasource.create_datasource, body)
        return "created"

    def folder(self) -> str:
        step = f"folder {FOLDER_UID}"
        if self._exists(step, self.api.folder.get_folder, FOLDER_UID):
            return "exists"
        self._call(step, self.api.folder.create_folder, FOLDER_TITLE, FOLDER_UID)
        return "created"

    def dashboard(self, board: dict[str, Any]) -> dict[str, Any]:
        board = {key: value for key, value in board.items() if key != "id"}  # uid identifies it
        payload = {"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                   "message": "hashfleet grafana push"}
        return self._call(f"dashboard {board['uid']}", self.api.dashboard.update_dashboard, payload) or {}


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
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds per request."),
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

    from grafana_client import GrafanaApi

    # A trailing slash keeps a sub-path (https://host/grafana/) in front of /api.
    try:
        api = GrafanaApi.from_url(url.rstrip("/") + "/", credential=grafana_token, timeout=timeout)
    except ValueError as e:  # e.g. a port that is not a number
        raise typer.BadParameter(redact(f"{redact_url(url)!r}: {e}"), param_hint="'--url'") from None
    pusher = Pusher(api)
    try:
        outcome = pusher.datasource(datasource_body(influx_url, bucket, influx_token))
        typer.echo(f"data source {DATASOURCE_UID}: {outcome}")
        typer.echo(f"folder {FOLDER_UID}: {pusher.folder()}")
        for board in boards:
            answer = pusher.dashboard(board)
            typer.echo(f"dashboard {board['uid']} ({board.get('title', '')}): uploaded, "
                       f"version {answer.get('version', '?')}, {answer.get('url', '')}")
    except PushError as e:
        typer.echo(f"hashfleet grafana push: {e}", err=True)
        raise typer.Exit(1) from None
