"""HTTP/1.1 serving of one simulated miner's web port (Antminer web UI, Bitaxe AxeOS), faults included.

Small on purpose: request line, headers, a Content-Length body, keep-alive, nothing else
(no chunked bodies, no `Expect: 100-continue`, no TLS) — what pyasic and httpx send to a miner.
A firmware module answers through a `Handler`: `HttpRequest -> HttpResponse`; this module owns
the sockets, the fault switches and server-side HTTP Digest authentication (RFC 7616, MD5 with
qop=auth, the scheme Bitmain's lighttpd uses).

Faults act per request, like on the CGMiner port: `no_answer` closes the listener and drops open
connections (refused from then on), `hold_open` reads the request and never answers, `drop`
closes without a reply, `slow_s` delays every reply; `malformed` and `truncated` damage JSON
bodies only (the page at `/` stays intact, so detection still works while data is broken).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from simulators.cgminer import damage as _damage_json
from simulators.miner import SimulatedMiner
from simulators.server import Listener

log = logging.getLogger(__name__)

WEB_PORT = 80  # pyasic, browsers and the firmware all assume it
IDLE_S = 10.0  # an idle keep-alive connection (or one that never sends a request) is closed after this
MAX_HEAD = 16384
MAX_BODY = 1 << 20

REASONS = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # as sent: path plus query (what a Digest `uri` must equal)
    path: str
    query: dict[str, str]
    version: str  # "HTTP/1.1"
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body.decode("utf-8"))

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass(slots=True)
class HttpResponse:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    is_json: bool = False  # wire faults damage JSON bodies only


Handler = Callable[[HttpRequest], HttpResponse]


def json_response(obj: Any, status: int = 200) -> HttpResponse:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return HttpResponse(status, body, "application/json", is_json=True)


def text_response(text: str, status: int = 200, content_type: str = "text/plain") -> HttpResponse:
    return HttpResponse(status, text.encode(), content_type)


def html_page(status: int, title: str) -> HttpResponse:
    """An error page that no JSON parser accepts (pyasic treats any JSON reply as an answer)."""
    reason = REASONS.get(status, "")
    return HttpResponse(status, f"<html><head><title>{status} {reason}</title></head>"
                                f"<body><h1>{status} {reason}</h1><p>{title}</p></body></html>\n".encode())


# -- parsing ----------------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, f"bad header line {line[:80]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return parts[0].upper(), parts[1], parts[2], headers


def _take_request(buf: bytes) -> tuple[HttpRequest | None, bytes]:
    """One complete request off the front of `buf`, or (None, buf) while it is still incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise _BadRequest(431, "request head too large")
        return None, buf
    method, target, version, headers = _parse_head(buf[:end])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "chunked request bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0").strip() or "0"
    if not length_text.isdigit():
        raise _BadRequest(400, f"bad Content-Length {length_text!r}")
    length = int(length_text)
    if length > MAX_BODY:
        raise _BadRequest(413, "request body too large")
    start = end + 4
    if len(buf) < start + length:
        return None, buf
    url = urlsplit(target)
    request = HttpRequest(method, target, url.path or "/", dict(parse_qsl(url.query)), version, headers,
                          buf[start:start + length])
    return request, buf[start + length:]


# -- Digest authentication (server side) --------------------------------------------------------

_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_auth_params(text: str) -> dict[str, str]:
    """`k="v", k2=v2` -> {"k": "v", "k2": "v2"} (quoted or bare values)."""
    return {m.group(1).lower(): (m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3))
            for m in _AUTH_PARAM.finditer(text)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestAuth:
    """HTTP Digest (MD5, qop=auth; RFC 2069 answers without qop are accepted too).

    Nonces are stateless: random salt plus an HMAC of it under a per-server secret, so any nonce
    this server issued is accepted (no expiry, no nonce-count replay check: a lab device).
    """

    def __init__(self, realm: str, users: dict[str, str], secret: bytes | None = None) -> None:
        self.realm = realm
        self.users = dict(users)
        self._secret = secret or secrets.token_bytes(16)

    def _sign(self, salt: str) -> str:
        return hmac.new(self._secret, salt.encode(), hashlib.md5).hexdigest()[:16]

    def new_nonce(self) -> str:
        salt = secrets.token_hex(8)
        return salt + self._sign(salt)

    def nonce_ok(self, nonce: str) -> bool:
        return len(nonce) == 32 and hmac.compare_digest(nonce[16:], self._sign(nonce[:16]))

    def challenge(self) -> str:
        """The `WWW-Authenticate` value for a 401."""
        return f'Digest realm="{self.realm}", charset="UTF-8", algorithm=MD5, nonce="{self.new_nonce()}", qop="auth"'

    def authorized(self, request: HttpRequest) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "digest":
            return False
        p = parse_auth_params(rest)
        user, nonce, uri, response = p.get("username"), p.get("nonce", ""), p.get("uri"), p.get("response", "")
        password = self.users.get(user or "")
        if password is None or p.get("realm") != self.realm or uri != request.target or not self.nonce_ok(nonce):
            return False
        if p.get("algorithm", "MD5").upper() != "MD5":
            return False
        ha1 = _md5(f"{user}:{self.realm}:{password}")
        ha2 = _md5(f"{request.method}:{uri}")
        qop = p.get("qop")
        if qop is None:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        elif qop == "auth":
            expected = _md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        else:
            return False
        return hmac.compare_digest(expected, response.lower())

    def refuse(self) -> HttpResponse:
        response = html_page(401, "Authorization required.")
        response.headers.append(("WWW-Authenticate", self.challenge()))
        return response


# -- serving ----------------------------------------------------------------------------------


class HttpConnection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order (keep-alive)."""

    def __init__(self, node: HttpServer) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False  # a request is being answered (or held by a fault)
        self.eof = False  # the client half-closed: answer what it sent, then close
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.node.conns.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def eof_received(self) -> bool:
        self.eof = True
        return self.busy  # half-closed after a request: still answer it, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_idle()
        self.node.conns.discard(self)

    def _arm_idle(self) -> None:
        self._cancel_idle()
        self.timer = self.node.loop.call_later(IDLE_S, self._idle)

    def _cancel_idle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle(self) -> None:
        self.timer = None
        if not self.busy and self.transport is not None:
            self.transport.close()

    def _next(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            request, self.buf = _take_request(self.buf)
        except _BadRequest as exc:
            self.busy = True
            self.write(html_page(exc.status, str(exc)), head_only=False, keep_alive=False)
            return
        if request is None:
            return
        self.busy = True
        self._cancel_idle()
        self.node.dispatch(self, request)

    def write(self, response: HttpResponse, *, head_only: bool, keep_alive: bool, truncated: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = response.body
        keep_alive = keep_alive and not truncated and not self.eof
        head = [f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
                f"Date: {formatdate(usegmt=True)}",
                f"Content-Type: {response.content_type}",
                f"Content-Length: {len(body)}",
                f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        head += [f"{k}: {v}" for k, v in response.headers]
        if self.node.server_header:
            head.append(f"Server: {self.node.server_header}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("iso-8859-1")
        if not head_only:
            data += body[: max(1, len(body) // 2)] if truncated and body else body
        transport.write(data)
        if not keep_alive:
            transport.close()
            return
        self.busy = False
        self._arm_idle()
        if self.buf:
            self._next()


class HttpServer(Listener):
    """Listens on one miner's web port and answers through `handler`, network faults included."""

    conns: set[HttpConnection]

    def __init__(
        self,
        miner: SimulatedMiner,
        loop: asyncio.AbstractEventLoop,
        handler: Handler,
        *,
        port: int = WEB_PORT,
        requests: Counter[str] | None = None,
        server_header: str | None = None,
    ) -> None:
        super().__init__(miner, loop)
        self.handler = handler
        self.port = port
        self.requests = requests  # "GET /path" -> how many were received
        self.server_header = server_header
        self._pending: set[asyncio.TimerHandle] = set()

    # -- listener ---------------------------------------------------------------------------

    def connection(self) -> HttpConnection:
        return HttpConnection(self)

    def close_listener(self) -> None:
        super().close_listener()
        for conn in list(self.conns):  # a unit that drops off the network drops its keep-alive clients too
            if conn.transport is not None:
                conn.transport.abort()

    def cancel_pending(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()

    # -- answering --------------------------------------------------------------------------

    def dispatch(self, conn: HttpConnection, request: HttpRequest) -> None:
        if self.requests is not None:
            self.requests[f"{request.method} {request.path}"] += 1
        faults = self.miner.faults
        if faults.hold_open:
            return  # read, never answered, never closed
        if faults.drop:
            assert conn.transport is not None
            conn.transport.close()
            return
        if faults.slow_s > 0:
            handle: asyncio.TimerHandle

            def late() -> None:
                self._pending.discard(handle)
                self._answer(conn, request)

            handle = self.loop.call_later(faults.slow_s, late)
            self._pending.add(handle)
            return
        self._answer(conn, request)

    def _answer(self, conn: HttpConnection, request: HttpRequest) -> None:
        if conn.transport is None or conn.transport.is_closing():
            return
        try:
            response = self.handler(request)
            faults = self.miner.faults
            if response.is_json and faults.malformed:
                response.body = _damage_json(response.body, faults.with_changes(truncated=False))
        except Exception:  # a bug must cost one answer, not the whole fleet
            log.exception("simulated miner %s failed to answer %s %s", self.address, request.method, request.target)
            conn.transport.abort()
            return
        self.miner.answers += 1
        conn.write(response, head_only=request.method == "HEAD", keep_alive=request.keep_alive,
                   truncated=response.is_json and faults.truncated)
