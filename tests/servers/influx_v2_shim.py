"""A test-side HTTP shim giving InfluxDB 1.6.7 the v2 write API.

Debian ships InfluxDB 1.6.7, which has no ``/api/v2/write`` and no ``/health``;
InfluxDB 1.8+ translates v2 writes itself. This shim does the same translation
in front of a real ``influxd`` so ``influxdb-client`` writes into the real
storage engine::

    with InfluxV2Shim("http://127.0.0.1:8086", require_token="secret") as shim:
        InfluxDBClient(url=shim.url, token="secret", org="any")...

Routes (everything is forwarded to ``upstream`` with ``http.client``):

``POST /api/v2/write?org=O&bucket=DB[/RP]&precision=P``
    -> ``POST /write?db=DB[&rp=RP]&precision=p``. ``org`` is ignored (1.x has
    no orgs). Precision mapping ``ns->n, us->u, ms->ms, s->s`` (default ``ns``):
    1.6.7 silently treats ``precision=us`` and ``precision=ns`` as nanoseconds,
    so the v2 spelling must never reach it. The body and ``Content-Encoding``
    are forwarded unchanged (1.6.7 accepts gzip bodies; measured). A missing
    bucket or an unknown precision is answered ``400`` with a v2 error body
    ``{"code": "invalid", "message": ...}``.
``GET /health``
    -> ``GET /ping``; 204 from influxd becomes ``200`` with a v2 health body
    ``{"name": "influxdb", "message": "ready for queries and writes",
    "status": "pass", "checks": [], "version": "<X-Influxdb-Version>"}``;
    an unreachable influxd gives ``503`` with ``"status": "fail"``.
anything else (``/ping``, ``/query``, ``/write`` ...)
    passed through unchanged (method, path, query string, body, headers).

Responses from influxd -- status, body and headers such as ``Content-Type``,
``Content-Encoding`` and ``X-Influxdb-Error`` -- are passed back as they are,
so client-side errors look like the real server's (e.g. 404 ``{"error":
"database not found: \\"x\\""}``, 400 for bad line protocol). If influxd
cannot be reached the shim answers ``503`` ``{"code": "unavailable", ...}``.

Authentication: an ``Authorization: Token ...`` header is never forwarded
(other schemes, e.g. Basic, are). With ``require_token`` set, every route
except ``/ping`` and ``/health`` (unauthenticated in v2 as well) answers
``401 {"code": "unauthorized", "message": "unauthorized access"}`` unless the
request carries ``Authorization: Token <require_token>`` -- the operator
(all-access) token -- or one of the bucket-scoped tokens in ``shim.tokens``.
``require_token`` may be changed on a running shim.

Scoped tokens, as InfluxDB 2.x enforces its authorizations (``influx auth create
--write-bucket ID`` / ``--read-bucket ID``): ``shim.tokens`` maps a token to its
permissions, ``{("write" | "read", bucket name), ...}``. A write (``/api/v2/write``,
``/write``) needs ``write`` on its bucket (database); an InfluxQL ``/query`` made
only of ``SELECT`` (without ``INTO``) and ``SHOW`` statements needs ``read`` on
its ``db``; everything else (``CREATE``/``DROP``, ``SELECT ... INTO``, other
routes) needs the operator token. A known token without the permission gets
``403 {"code": "forbidden", "message": "insufficient permissions for ..."}``.
Two routes of the v2 API let the influx CLI's ``auth create`` work through the
shim, operator token only: ``GET /api/v2/buckets?name=N`` (a bucket's ID is
:func:`bucket_id` of its name) and ``POST /api/v2/authorizations`` with
``{"orgID", "description", "permissions": [{"action", "resource": {"type":
"buckets", "id"}}]}``, which mints a token into ``shim.tokens`` and answers
``201`` with ``{"id", "token", "description", "status", "permissions"}``.

:meth:`InfluxV2Shim.stop` closes the listening socket *and* every open
keep-alive connection, so clients see a real outage (connection refused /
reset), not a proxy error; :meth:`InfluxV2Shim.start` listens again on the
same port. ``shim.requests`` keeps the last 200 ``ShimRequest`` records
(method, path, forwarded path, status,
request Content-Encoding) for debugging.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import socketserver
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

__all__ = ["InfluxV2Shim", "ShimRequest", "PRECISION_V2_TO_V1", "bucket_id", "READ", "WRITE"]

READ, WRITE = "read", "write"
# InfluxQL statements a read permission covers (SELECT ... INTO writes: operator only).
_READ_ONLY_STATEMENT = re.compile(r"^\s*(SHOW\b|SELECT\b(?!.*\bINTO\b))", re.I | re.S)


def bucket_id(name: str) -> str:
    """The ID the shim gives the bucket (1.x database) `name`: opaque to clients, as in 2.x."""
    return name.encode().hex()

PRECISION_V2_TO_V1 = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}

# Headers that describe one hop of a connection and must not be forwarded.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_UNAUTHENTICATED_PATHS = {"/ping", "/health"}


@dataclass(frozen=True)
class ShimRequest:
    method: str
    path: str  # as received, with query string
    forwarded: str | None  # path sent to influxd, None if answered by the shim
    status: int
    content_encoding: str | None = None  # of the request body, e.g. "gzip"


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that can drop all open client connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], shim: InfluxV2Shim) -> None:
        self.shim = shim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real server
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    server: _Server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib name
        pass  # the shim's request log is ShimRequest records, not stderr

    # -- dispatch --------------------------------------------------------

    def _handle(self) -> None:
        shim = self.server.shim
        split = urlsplit(self.path)
        body = self._read_body()
        if shim.require_token is not None and split.path not in _UNAUTHENTICATED_PATHS:
            header = self.headers.get("Authorization", "")
            token = header[len("Token "):] if header.startswith("Token ") else None
            if token != shim.require_token and token not in shim.tokens:
                self._reply_json(401, {"code": "unauthorized", "message": "unauthorized access"})
                return
            if token != shim.require_token:
                missing = _missing_permission(shim.tokens[token], self.command, split, body,
                                              self.headers.get("Content-Type", ""))
                if missing is not None:
                    self._reply_json(403, {"code": "forbidden", "message": f"insufficient permissions for {missing}"})
                    return
        if split.path == "/api/v2/buckets" and self.command == "GET":
            self._buckets(split.query)
        elif split.path == "/api/v2/authorizations" and self.command == "POST":
            self._create_authorization(body)
        elif split.path == "/api/v2/write":
            self._write_v2(split.query, body)
        elif split.path == "/health":
            self._health()
        else:
            self._forward(self.command, self.path, body, self._forward_headers())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    # -- routes ----------------------------------------------------------

    def _buckets(self, query: str) -> None:
        name = parse_qs(query).get("name", [""])[0]
        if not name:
            self._reply_json(400, {"code": "invalid", "message": "this shim lists buckets by name only"})
            return
        self._reply_json(200, {"buckets": [{"id": bucket_id(name), "name": name}]})

    def _create_authorization(self, body: bytes) -> None:
        try:
            request = json.loads(body)
            wanted = {(p["action"], bytes.fromhex(p["resource"]["id"]).decode())
                      for p in request["permissions"] if p["resource"]["type"] == "buckets"}
            if not wanted or any(action not in (READ, WRITE) for action, _ in wanted):
                raise ValueError("only read/write permissions on buckets")
        except (ValueError, KeyError, TypeError) as exc:
            self._reply_json(400, {"code": "invalid", "message": f"authorization not understood: {exc}"})
            return
        token = secrets.token_urlsafe(64) + "=="
        self.server.shim.tokens[token] = frozenset(wanted)
        self._reply_json(201, {
            "id": secrets.token_hex(8), "token": token, "status": "active",
            "description": request.get("description", ""), "orgID": request.get("orgID", ""),
            "permissions": request["permissions"]})

    def _write_v2(self, query: str, body: bytes) -> None:
        if self.command != "POST":
            self._reply_json(405, {"code": "method not allowed", "message": "use POST"})
            return
        params = parse_qs(query, keep_blank_values=True)
        bucket = params.get("bucket", [""])[0]
        if not bucket:
            self._reply_json(400, {"code": "invalid", "message": "bucket not specified"})
            return
        precision = params.get("precision", ["ns"])[0] or "ns"
        if precision not in PRECISION_V2_TO_V1:
            self._reply_json(
                400,
                {
                    "code": "invalid",
                    "message": f'invalid precision "{precision}": use one of ns, us, ms, s',
                },
            )
            return
        database, _, retention = bucket.partition("/")
        v1 = {"db": database}
        if retention:
            v1["rp"] = retention
        v1["precision"] = PRECISION_V2_TO_V1[precision]
        self._forward("POST", "/write?" + urlencode(v1), body, self._forward_headers())

    def _health(self) -> None:
        shim = self.server.shim
        try:
            status, _, headers, _ = shim._upstream("GET", "/ping", b"", {})
        except OSError as exc:
            self._reply_json(
                503,
                {"name": "influxdb", "message": f"influxd unreachable: {exc}", "status": "fail",
                 "checks": [], "version": ""},
            )
            return
        version = dict((k.lower(), v) for k, v in headers).get("x-influxdb-version", "")
        ok = status == 204
        self._reply_json(
            200 if ok else 503,
            {
                "name": "influxdb",
                "message": "ready for queries and writes" if ok else f"/ping answered {status}",
                "status": "pass" if ok else "fail",
                "checks": [],
                "version": version,
            },
        )

    # -- plumbing --------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward_headers(self) -> dict[str, str]:
        headers = {}
        for name, value in self.headers.items():
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                continue
            if lname == "authorization" and value.lower().startswith("token "):
                continue
            headers[name] = value
        return headers

    def _forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        shim = self.server.shim
        try:
            status, reason, resp_headers, resp_body = shim._upstream(method, path, body, headers)
        except OSError as exc:
            self._reply_json(
                503, {"code": "unavailable", "message": f"influxd unreachable: {exc}"}, forwarded=path
            )
            return
        # Record before replying: a client that got its answer finds it in shim.requests.
        shim._record(
            ShimRequest(self.command, self.path, path, status, self.headers.get("Content-Encoding"))
        )
        self.send_response(status, reason)
        for name, value in resp_headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp_body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(resp_body)

    def _reply_json(self, status: int, payload: dict, forwarded: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.server.shim._record(
            ShimRequest(self.command, self.path, forwarded, status, self.headers.get("Content-Encoding"))
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _missing_permission(granted: frozenset[tuple[str, str]], method: str, split, body: bytes,
                        content_type: str) -> str | None:
    """What a scoped token lacks for this request ("write", "read", "this request"), or None."""
    params = parse_qs(split.query, keep_blank_values=True)
    if split.path in ("/api/v2/write", "/write"):
        database = (params.get("bucket") or params.get("db") or [""])[0].partition("/")[0]
        return None if (WRITE, database) in granted else "write"
    if split.path == "/query":
        if method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
            params = {**params, **parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)}
        text = params.get("q", [""])[0]
        statements = [part for part in text.split(";") if part.strip()]
        if not statements or not all(_READ_ONLY_STATEMENT.match(part) for part in statements):
            return "this request"
        return None if (READ, params.get("db", [""])[0]) in granted else "read"
    return "this request"


class InfluxV2Shim:
    """v2-write-API shim in front of an InfluxDB 1.x server (see module doc).

    :param upstream: influxd base URL, e.g. ``http://127.0.0.1:8086``.
    :param port: port to listen on; 0 picks one (kept across stop/start).
    :param require_token: if set, requests must carry ``Authorization: Token <it>`` (the operator
        token) or one of ``tokens``.
    :param tokens: bucket-scoped tokens: token -> {("read" | "write", bucket name), ...}.
    :param upstream_timeout: seconds for each request to influxd.
    """

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        require_token: str | None = None,
        tokens: dict[str, frozenset[tuple[str, str]]] | None = None,
        upstream_timeout: float = 30.0,
    ) -> None:
        split = urlsplit(upstream)
        if split.scheme != "http" or not split.hostname or not split.port:
            raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self._upstream_address = (split.hostname, split.port)
        self.host = host
        self.port = port
        self.require_token = require_token
        self.tokens: dict[str, frozenset[tuple[str, str]]] = dict(tokens or {})
        self.upstream_timeout = upstream_timeout
        self.requests: deque[ShimRequest] = deque(maxlen=200)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for ``InfluxDBClient(url=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> InfluxV2Shim:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"influx-v2-shim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> InfluxV2Shim:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _upstream(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self._upstream_address, timeout=self.upstream_timeout)
        try:
            conn.request(method, path, body=body if body or method in ("POST", "PUT") else None,
                         headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.reason, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _record(self, request: ShimRequest) -> None:
        self.requests.append(request)
