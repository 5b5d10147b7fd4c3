"""A real InfluxDB 1.6.7 (Debian ``influxdb``) with a v2 write shim, for tests.

Used through the session fixture ``influxdb`` (``tests/servers/fixtures.py``)::

    def test_write(influxdb, influx_bucket):
        with InfluxDBClient(url=influxdb.url, token=influxdb.token, org=influxdb.org) as c:
            c.write_api(write_options=SYNCHRONOUS).write(influx_bucket, record="m v=1 1700000000",
                                                         write_precision=WritePrecision.S)
        assert influxdb.query("SELECT v FROM m", influx_bucket) == [
            {"time": 1_700_000_000 * 10**9, "v": 1.0}]

:class:`InfluxDB` runs ``influxd run -config /dev/null`` configured only by
environment variables (HTTP and RPC bound to free loopback ports, meta/data/wal
under ``workdir``, usage reporting and the ``_internal`` monitor store off) and
an :class:`~servers.influx_v2_shim.InfluxV2Shim` in front of it. ``settings``
adds ``INFLUXDB_*`` variables (the benchmark sets the cache snapshot size the
site stack uses).

Attributes
    ``url``       the shim, for ``InfluxDBClient(url=...)`` (v2 API: /api/v2/write,
                  /health, plus /ping and /query passed through)
    ``token``     token the shim requires (``Authorization: Token <token>``)
    ``org``       org name to give influxdb-client (ignored by the shim)
    ``raw_url``   influxd's own HTTP API (v1: /ping, /query, /write; no token)
    ``host``, ``port`` (shim), ``raw_port``, ``rpc_port``, ``workdir``,
    ``log_path``  (influxd stdout+stderr, all starts appended), ``shim``
    ``is_running``

Methods
    ``start(timeout=30.0) -> float``   start influxd + shim (same ports, same data
                                       dir as before); returns seconds to ready
    ``stop(timeout=15.0)``             stop shim and influxd: clients then get
                                       connection refused, as in a real outage
    ``restart()``, ``ensure_running()``, ``outage()`` (context manager: stop,
                                       yield, start again even if the body fails)
    ``close()``                        stop for good (session teardown)
    ``ping() -> bool``                 influxd /ping answered 204
    ``create_database(name)``          idempotent; ``drop_database(name)``
    ``write(database, lines, precision="s", rp=None)``
                                       v1 /write helper for seeding data
                                       (precision: "n", "u", "ms", "s", ...)
    ``query(influxql, database=None, epoch="ns") -> list[dict]``
    ``query_raw(influxql, database=None, epoch="ns") -> dict`` (influxd's JSON)
    ``log_tail(lines=30) -> str``

Shape of ``query()`` rows: one dict per value row of every series of every
statement, in order: the series' tags (present with ``GROUP BY <tag>``) merged
with ``zip(columns, values)``. ``time`` is an int in nanoseconds since the epoch
by default (``epoch="ns"``; ``"u"``, ``"ms"``, ``"s"`` scale it, ``epoch=None``
gives RFC3339 strings). The measurement name is not in the row (use
``query_raw``). Examples::

    SELECT hashrate_ths FROM miner
        -> [{"time": 1700000000000000000, "hashrate_ths": 101.5}, ...]
    SELECT mean(hashrate_ths) FROM miner GROUP BY miner
        -> [{"miner": "a1", "time": 0, "mean": 101.5}, {"miner": "b2", ...}]
    SHOW MEASUREMENTS -> [{"name": "miner"}]

An InfluxQL error (in the HTTP status or in a statement result) raises
:class:`InfluxQueryError` with influxd's message and the query.

Readiness: after spawning, ``GET raw_url/ping`` is polled every 50 ms until it
answers 204 (``timeout`` overall); if influxd exits or the timeout passes,
:class:`~servers.process.ServerStartError` carries the tail of its log. On the
very first start, a port taken between choosing and binding is retried with
fresh ports; later starts reuse the same ports.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .influx_v2_shim import InfluxV2Shim
from .ports import free_ports
from .process import ManagedProcess, Server, require_binary

__all__ = ["InfluxDB", "InfluxQueryError"]


_V1_PRECISIONS = {"n", "u", "ms", "s", "m", "h"}


class InfluxQueryError(RuntimeError):
    """influxd refused an InfluxQL query (or a v1 write)."""


def quote_ident(name: str) -> str:
    """InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxDB(Server):
    """influxd 1.6.7 plus v2 shim; see the module docstring for the API."""

    name = "influxd"

    def __init__(
        self,
        workdir: Path,
        *,
        token: str = "hashfleet-test-token",
        org: str = "hashfleet",
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._binary = require_binary("influxd", "influxdb")
        self.settings = dict(settings or {})  # extra INFLUXDB_* environment (the benchmark's tuning)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.org = org
        self.host = host
        self.log_path = self.workdir / "influxd.log"
        self.raw_port, self.rpc_port, self.port = free_ports(3, host)
        self.shim = InfluxV2Shim(self.raw_url, host=host, port=self.port, require_token=token)

    # -- addresses -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def raw_url(self) -> str:
        return f"http://{self.host}:{self.raw_port}"

    @property
    def is_running(self) -> bool:
        return super().is_running and self.shim.running

    # -- lifecycle (tests.servers.process.Server) --------------------------

    def _spawn(self) -> ManagedProcess:
        env = dict(os.environ)
        env.update(
            INFLUXDB_HTTP_BIND_ADDRESS=f"{self.host}:{self.raw_port}",
            INFLUXDB_BIND_ADDRESS=f"{self.host}:{self.rpc_port}",
            INFLUXDB_META_DIR=str(self.workdir / "meta"),
            INFLUXDB_DATA_DIR=str(self.workdir / "data"),
            INFLUXDB_DATA_WAL_DIR=str(self.workdir / "wal"),
            INFLUXDB_REPORTING_DISABLED="true",
            INFLUXDB_MONITOR_STORE_ENABLED="false",
        )
        env.update(self.settings)
        process = ManagedProcess("influxd", [self._binary, "run", "-config", "/dev/null"], self.log_path,
                                 env=env, cwd=self.workdir)
        process.spawn()
        return process

    def _ready(self) -> bool:
        return self.ping()

    def _started(self) -> None:
        self.shim.start()

    def _stopping(self) -> None:
        self.shim.stop()

    def _new_ports(self) -> None:
        self.raw_port, self.rpc_port, self.port = free_ports(3, self.host)
        self.shim = InfluxV2Shim(self.raw_url, host=self.host, port=self.port, require_token=self.shim.require_token)

    # -- v1 HTTP helpers -------------------------------------------------

    def ping(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.raw_port, timeout=2)
        try:
            conn.request("GET", "/ping")
            return conn.getresponse().status == 204
        except OSError:
            return False
        finally:
            conn.close()

    def _post(self, path: str, params: dict[str, str], body: bytes | None = None) -> bytes:
        url = f"{self.raw_url}{path}"
        if body is None:  # /query: parameters form-encoded in the body
            data = urlencode(params).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            url += "?" + urlencode(params)
            data = body
            headers = {"Content-Type": "text/plain; charset=utf-8"}
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise InfluxQueryError(f"{path} answered {exc.code}: {detail} (params {params})") from None

    def query_raw(self, influxql: str, database: str | None = None, epoch: str | None = "ns") -> dict:
        """Run InfluxQL via POST /query and return influxd's JSON unchanged."""
        params = {"q": influxql}
        if database:
            params["db"] = database
        if epoch:
            params["epoch"] = epoch
        result = json.loads(self._post("/query", params))
        for statement in result.get("results", []):
            if "error" in statement:
                raise InfluxQueryError(f"{statement['error']} (query {influxql!r})")
        if "error" in result:
            raise InfluxQueryError(f"{result['error']} (query {influxql!r})")
        return result

    def query(
        self, influxql: str, database: str | None = None, epoch: str | None = "ns"
    ) -> list[dict[str, Any]]:
        """Run InfluxQL and return flat rows (see module docstring for the shape)."""
        rows: list[dict[str, Any]] = []
        for statement in self.query_raw(influxql, database, epoch).get("results", []):
            for series in statement.get("series", []):
                tags = series.get("tags") or {}
                columns = series["columns"]
                for values in series.get("values", []):
                    row = dict(tags)
                    row.update(zip(columns, values))
                    rows.append(row)
        return rows

    def create_database(self, name: str) -> None:
        """CREATE DATABASE (a no-op if it exists)."""
        self.query_raw(f"CREATE DATABASE {quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        self.query_raw(f"DROP DATABASE {quote_ident(name)}")

    def write(
        self,
        database: str,
        lines: str | Iterable[str],
        precision: str = "s",
        rp: str | None = None,
    ) -> None:
        """Write line protocol straight to influxd's v1 /write (1.x precision names)."""
        if precision not in _V1_PRECISIONS:
            raise ValueError(
                f"precision {precision!r} is not a 1.x precision {sorted(_V1_PRECISIONS)}; "
                "1.6.7 would read 'ns'/'us' as nanoseconds (use 'n'/'u')"
            )
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = {"db": database, "precision": precision}
        if rp:
            params["rp"] = rp
        self._post("/write", params, body.encode())
