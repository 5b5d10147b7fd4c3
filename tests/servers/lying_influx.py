"""An HTTP server on loopback that answers InfluxDB writes wrongly, the way broken proxies, load
balancers and misconfigured servers do, and can turn honest (forward to a real InfluxDB).

    with LyingInflux(mode="200 text") as liar:
        InfluxConfig(url=liar.url, ...)         # the collector writes here
        liar.mode = "non-utf8 500"              # change the lie at any time
        liar.forward_to = influxdb.url           # honest from now on: requests go to the real server

Modes (``LyingInflux.MODES``):

``200 text``       200 with a text body ("ok"): not InfluxDB's 204, nothing was written
``200 json``       200 with a JSON body, as a proxy's health page might answer
``201``            201 Created, no body
``302``            a redirect to another address
``non-utf8 500``   500 with a body that is not UTF-8
``non-utf8 200``   200 with a body that is not UTF-8
``endless 200``    200 whose body never ends (the reader must stop on its own)
``garbage``        not HTTP at all, then the connection closes
``hang``           reads the request and never answers (until the server stops)

Apart (``ECHO_MODES``, not retried: InfluxDB's own answer to them is final): ``401 echo`` and ``400 echo``
answer with the request's headers in the body, as a proxy's or WAF's error page may (the token with them).

``requests`` counts the requests received (forwarded ones included). With ``max_body`` set, a
request whose body is larger is answered ``413 Request Entity Too Large`` whatever the mode, as
InfluxDB does past its ``max-body-size``.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["LyingInflux"]


class _Handler(BaseHTTPRequestHandler):
    server: LyingInflux
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests += 1
            mode, target = self.server.mode, self.server.forward_to
        if self.server.max_body is not None and len(body) > self.server.max_body:
            payload = b'{"error":"Request Entity Too Large"}'
            self.send_response(413)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if target is not None:
            self._forward(target, body)
            return
        if mode == "garbage":
            self.wfile.write(b"\xffNOT HTTP\r\n\r\n")
            self.close_connection = True
            return
        if mode == "hang":
            self.server.stopping.wait(60)
            self.close_connection = True
            return
        if mode == "endless 200":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while not self.server.stopping.is_set():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the client stopped reading and closed: what it should do
                pass
            self.close_connection = True
            return
        if mode in self.server.ECHO_MODES:
            echoed = " | ".join(f"{name}: {value}" for name, value in self.headers.items())
            self._answer(int(mode[:3]), f'{{"code":"invalid","message":"refused; the request was: {echoed}"}}'.encode(),
                         {"Content-Type": "application/json"})
            return
        status, payload, headers = {
            "200 text": (200, b"ok", {"Content-Type": "text/plain"}),
            "200 json": (200, b'{"status":"pass"}', {"Content-Type": "application/json"}),
            "201": (201, b"", {}),
            "302": (302, b"", {"Location": "http://127.0.0.1:9/elsewhere"}),
            "non-utf8 500": (500, b"\xff\xfe\xc3(\x80 broken \xed\xa0\x80", {"Content-Type": "text/plain"}),
            "non-utf8 200": (200, b"\xff\xfe\xc3(\x80", {"Content-Type": "text/plain"}),
        }[mode]
        self._answer(status, payload, headers)

    def _answer(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _forward(self, target: str, body: bytes) -> None:
        parts = urlsplit(target)
        upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            upstream.request("POST", self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            upstream.close()


class LyingInflux(ThreadingHTTPServer):
    MODES = ("200 text", "200 json", "201", "302", "non-utf8 500", "non-utf8 200", "endless 200", "garbage", "hang")
    ECHO_MODES = ("401 echo", "400 echo")
    daemon_threads = True

    def __init__(self, mode: str = "200 text", host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        if mode not in self.MODES + self.ECHO_MODES:
            raise ValueError(f"mode {mode!r} not one of {self.MODES + self.ECHO_MODES}")
        self.mode = mode
        self.forward_to: str | None = None
        self.max_body: int | None = None
        self.requests = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, name="lying-influx", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LyingInflux:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self._thread.join(10)
