"""HTTP for the native readers' rare web calls (an Antminer's cgi pages): GET, JSON back, Digest auth.

One request per connection, HTTP/1.0 (the server answers and closes, no chunked encoding, no
keep-alive to track), over the same one-shot transport as the CGMiner API
(collector.sources.cgminer_client.exchange): its deadline covers connect and the whole read, and a
reply over MAX_REPLY_BYTES is refused before it is parsed. Digest authentication (RFC 7616, MD5, qop
"auth" or none) is per miner (`DigestAuth`): it keeps the miner's last challenge, so after the first
401 each call is one request.

Why not httpx (already a dependency): even with one reused client, a call cost several times this
one's CPU (anyio's connect, h11, a failed `import sniffio` on every call where sniffio is absent):
at one health-list read a minute per Antminer it was a third of the collector's CPU
(docs/benchmarks.md); and it reads a 401's body whole before answering the challenge.

Exceptions: WebError, with a message that names the address; WebUnreachable (no answer in time,
refused, reset) and WebReplyError (an answer that is not usable) are its kinds.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from typing import Any

import orjson

from collector.sources import cgminer_client as cgminer

WEB_PORT = 80
MAX_REPLY_BYTES = 256 * 1024  # the cgi replies read are 0.5-3 KB; a 401 page a few hundred bytes
MAX_HEAD_BYTES = 16 * 1024
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


class WebError(Exception):
    pass


class WebUnreachable(WebError):
    pass


class WebReplyError(WebError):
    pass


class DigestAuth:
    """HTTP Digest credentials for one miner and the last challenge it sent. Never logged or shown."""

    __slots__ = ("user", "password", "realm", "nonce", "opaque", "qop", "count")

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.realm = self.nonce = self.opaque = self.qop = None
        self.count = 0

    def __repr__(self) -> str:
        return f"DigestAuth(user={self.user!r}, password=<hidden>)"

    def learn(self, challenge: str) -> bool:
        """Take a `WWW-Authenticate: Digest ...` challenge; False when it is none this client answers."""
        scheme, _, rest = challenge.strip().partition(" ")
        if scheme.lower() != "digest":
            return False
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _CHALLENGE_PARAM.finditer(rest[:2048])}
        if params.get("algorithm", "MD5").upper() != "MD5" or not params.get("nonce") or "realm" not in params:
            return False
        if any(not value.isprintable() for value in params.values() if value):
            return False  # control characters would end up in our request's head
        qops = [q.strip() for q in (params.get("qop") or "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            return False
        self.realm, self.nonce, self.opaque = params["realm"], params["nonce"], params.get("opaque")
        self.qop = "auth" if qops else None
        self.count = 0
        return True

    def header(self, method: str, uri: str) -> str | None:
        """The `Authorization` value for a request, once a challenge is known."""
        if self.nonce is None:
            return None
        ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{uri}")
        fields = [f'username="{_quoted(self.user)}"', f'realm="{_quoted(self.realm)}"',
                  f'nonce="{_quoted(self.nonce)}"', f'uri="{_quoted(uri)}"', "algorithm=MD5"]
        if self.qop:
            self.count += 1
            nc, cnonce = f"{self.count:08x}", os.urandom(8).hex()
            response = _md5(f"{ha1}:{self.nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = _md5(f"{ha1}:{self.nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if self.opaque is not None:
            fields.append(f'opaque="{_quoted(self.opaque)}"')
        return "Digest " + ", ".join(fields)


async def get_json(host: str, path: str, auth: DigestAuth | None, timeout_s: float,
                   port: int = WEB_PORT) -> dict[str, Any]:
    """GET `path` from the miner's web UI: the JSON object it answers. Answers a Digest challenge
    once; `timeout_s` bounds the whole call, both requests of a handshake together."""
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    for attempt in (1, 2):
        left = deadline - time.monotonic()
        if left <= 0:
            raise WebUnreachable(f"{where}: no complete web answer within {timeout_s:g} s")
        raw = await _get(host, port, path, auth.header("GET", path) if auth is not None else None, left, where)
        status, headers, body = _parse(raw, where)
        if status == 401 and attempt == 1 and auth is not None:
            challenge = headers.get("www-authenticate", "")
            if auth.learn(challenge):
                continue
            raise WebReplyError(f"{where}: the web UI asks for an authentication this client does not speak "
                                f"({challenge[:60]!r})")
        if status == 401:
            raise WebReplyError(f"{where}: the web UI refused the login (HTTP 401): set the web password pyasic "
                                "uses for this make (pyasic settings) to the miner's")
        if status != 200:
            raise WebReplyError(f"{where}: {path} answered HTTP {status}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise WebReplyError(f"{where}: {path} answered something that is not JSON ({e.msg} at byte {e.pos})") \
                from None
        if not isinstance(data, dict):
            raise WebReplyError(f"{where}: {path} answered JSON that is not an object")
        return data
    raise AssertionError("unreachable")


async def _get(host: str, port: int, path: str, authorization: str | None, timeout_s: float, where: str) -> bytes:
    lines = [f"GET {path} HTTP/1.0", f"Host: {host}", "Accept: application/json", "Connection: close"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        return await cgminer.exchange(host, port, request, timeout_s=timeout_s,
                                      max_bytes=MAX_REPLY_BYTES + MAX_HEAD_BYTES)
    except cgminer.MinerUnreachable as e:
        raise WebUnreachable(f"web UI: {e}") from None
    except cgminer.MinerReplyError as e:
        raise WebReplyError(f"web UI: {e}: not read") from None


def _parse(raw: bytes, where: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a whole HTTP/1.x response."""
    end = raw.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        raise WebReplyError(f"{where}: not an HTTP answer ({len(raw)} bytes, no complete head)")
    lines = raw[:end].decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    status = status_line[1] if len(status_line) > 1 else ""
    if not status_line[0].startswith("HTTP/1.") or not (len(status) == 3 and status.isascii() and status.isdigit()):
        raise WebReplyError(f"{where}: not an HTTP answer ({lines[0][:60]!r})")
    headers: dict[str, str] = {}
    for line in lines[1:64]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    body = raw[end + 4:]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body, where)
    return int(status), headers, body


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def _dechunk(body: bytes, where: str) -> bytes:
    """A chunked body (a server that chunks even an HTTP/1.0 answer) joined; its size is capped already."""
    out, at = [], 0
    while True:
        line_end = body.find(b"\r\n", at, at + 32)
        size_text = body[at:line_end].split(b";", 1)[0].strip() if line_end >= 0 else b""
        # Hex digits only: int() takes "-6" (the reading position went back for ever, on the event loop,
        # holding every miner's cycle and the stop), "+6", "0x6" and "6_0" too.
        if not _HEX.fullmatch(size_text):
            raise WebReplyError(f"{where}: broken chunked encoding")
        size = int(size_text, 16)
        if size == 0:
            return b"".join(out)
        start = line_end + 2
        if start + size + 2 > len(body):
            raise WebReplyError(f"{where}: broken chunked encoding (a chunk past the end of the answer)")
        out.append(body[start:start + size])
        at = start + size + 2


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
