"""CGMiner API transport: one request per TCP connection, JSON out, JSON back.

Every wire quirk of CGMiner-derived firmware is handled here, in one place:
the trailing NUL byte, bare `nan`/`inf` tokens some Avalon firmware emits and the
`NaN`/`Infinity`/`-Infinity` Python's json writes (invalid JSON: each is no value), and replies cut short.

Exceptions (all subclasses of CGMinerError):
    MinerUnreachable  - no connection, or no complete answer within the timeout.
                        The miner is offline as far as a poll can tell.
    MinerReplyError   - the miner answered, but the reply is not usable JSON
                        or reports a failed command. The miner is in error.
      UnknownCommand  - the failed command is one the firmware does not know (code 14, "Invalid
                        command" on cgminer, bmminer, bosminer and btminer alike).
"""

from __future__ import annotations

import asyncio
import functools
import json
import re

import orjson
from typing import Any

from models.base import printable

MAX_REPLY_BYTES = 4 * 1024 * 1024  # a full estats of a large unit is ~20 KB; anything huge is garbage
MAX_MESSAGE_CHARS = 200  # of a failed command's `Msg` kept in the error


class CGMinerError(Exception):
    """Base class for everything that can go wrong talking to a CGMiner API."""


class MinerUnreachable(CGMinerError):
    pass


class MinerReplyError(CGMinerError):
    pass


class UnknownCommand(MinerReplyError):
    pass


_UNKNOWN_COMMAND = 14  # cgminer's MSG_INVCMD, kept by every firmware derived from it


# Bare nan/inf/infinity as a JSON value (after ':' or ',' or '[') — not inside a string.
_BARE_NON_FINITE = re.compile(rb'(?<=[:\[,])\s*-?(?:nan|inf(?:inity)?)\s*(?=[,\]}])', re.IGNORECASE)
_CONTROL = re.compile(rb"[\x00-\x1f]")  # (JSON's whitespace among them: a space does as well there)


async def request(host: str, port: int, command: str, parameter: str | None = None, *, timeout_s: float = 5.0) -> bytes:
    """Send one command, read until the miner closes, return the raw reply.

    The timeout covers connect, send and the whole read: a miner that holds the
    connection open without answering costs at most `timeout_s`.
    """
    return await exchange(host, port, _encode_request(command, parameter), timeout_s=timeout_s)


async def exchange(host: str, port: int, payload: bytes, *, timeout_s: float = 5.0,
                   max_bytes: int = MAX_REPLY_BYTES) -> bytes:
    """Connect, write `payload`, read until the peer closes: one request per connection, the way the
    CGMiner API (and an HTTP/1.0 server) answers. The timeout covers connect, send and the whole read;
    a reply over `max_bytes` is a MinerReplyError."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    deadline = _Deadline(loop, timeout_s)
    transport = None
    try:
        transport, _ = await loop.create_connection(lambda: _OneShot(payload, done, f"{host}:{port}", max_bytes),
                                                    host, port)
        return await done
    except asyncio.CancelledError:
        if deadline.timed_out():
            raise MinerUnreachable(f"{host}:{port}: no complete answer within {timeout_s:g} s") from None
        raise
    except ConnectionRefusedError:
        raise MinerUnreachable(f"{host}:{port}: connection refused (nothing listens on the API port)") from None
    except OSError as e:
        raise MinerUnreachable(f"{host}:{port}: {e.strerror or e}") from None
    finally:
        deadline.handle.cancel()
        if transport is not None:
            transport.close()


class _Deadline:
    """What `asyncio.timeout` does for one request, without its Python state machine (at 10,000
    miners a cycle that was ~4 % of the collector's CPU): one timer that cancels the task. The
    CancelledError it causes is a timeout; a cancellation from outside (shutdown) stays one, even
    when both happen at once (the same uncancel() count asyncio.timeout checks)."""

    __slots__ = ("task", "expired", "handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float):
        self.task = asyncio.current_task()
        self.expired = False
        self.handle = loop.call_later(timeout_s, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.task.cancel()

    def timed_out(self) -> bool:
        """In an `except CancelledError`: was it this deadline, and only it?"""
        return self.expired and self.task.uncancel() == 0


@functools.lru_cache(maxsize=64)
def _encode_request(command: str, parameter: str | None) -> bytes:
    # The poll sends the same request to every miner every cycle: encode it once.
    payload = {"command": command} if parameter is None else {"command": command, "parameter": parameter}
    return json.dumps(payload).encode()


class _OneShot(asyncio.Protocol):
    """Write one request, collect the reply until the miner closes the connection.

    A bare Protocol rather than asyncio streams: at 10,000 miners a cycle the streams'
    reader/writer machinery was a measurable share of the collector's CPU.
    """

    def __init__(self, request: bytes, done: asyncio.Future[bytes], where: str, max_bytes: int = MAX_REPLY_BYTES):
        self.request = request
        self.done = done
        self.where = where
        self.max_bytes = max_bytes
        self.chunks: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.max_bytes and not self.done.done():
            self.done.set_exception(MinerReplyError(f"{self.where}: reply larger than {self.max_bytes} bytes"))
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None and not self.chunks:
            self.done.set_exception(exc)
        else:  # a reset after data still leaves the reply to judge
            self.done.set_result(b"".join(self.chunks))


def decode(raw: bytes, where: str) -> dict[str, Any]:
    """Bytes of a CGMiner reply -> dict, tolerating the quirks real firmware has."""
    body = raw.rstrip(b"\x00 \r\n\t")
    if not body:
        raise MinerReplyError(f"{where}: empty reply")
    try:
        data = orjson.loads(body)  # several times faster than json on an estats reply (docs/benchmarks.md)
    except orjson.JSONDecodeError as e:
        # Strict JSON has no nan/inf, so only a reply that fails needs the (slow)
        # repair; looking for the tokens first cost as much as the decoding itself.
        repaired = _BARE_NON_FINITE.sub(b"null", body)
        # Text that is not UTF-8 or holds a control character (a NUL): those bytes become U+FFFD or a space,
        # so one odd pool URL or model string costs its own text, not the whole reading.
        repaired = _CONTROL.sub(b" ", repaired.decode("utf-8", "replace").encode())
        try:
            data = orjson.loads(repaired) if repaired != body else None
        except orjson.JSONDecodeError:
            data = None
        if data is None:
            raise MinerReplyError(f"{where}: malformed or truncated JSON ({len(raw)} bytes): {e.msg} at byte {e.pos}") from None
    if not isinstance(data, dict):
        raise MinerReplyError(f"{where}: reply is JSON but not an object")
    return data


def section(reply: dict[str, Any], command: str, where: str) -> dict[str, Any]:
    """One command's part of a joined reply (`a+b` -> reply["a"][0]), status checked."""
    part = reply.get(command)
    if isinstance(part, list) and part and isinstance(part[0], dict):
        part = part[0]
    elif command in reply or "STATUS" not in reply:
        raise MinerReplyError(f"{where}: reply has no usable '{command}' section")
    else:
        part = reply  # a single-command reply is not wrapped
    status = part.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict) and status[0].get("STATUS") in ("E", "F"):
        said = printable(str(status[0].get("Msg", "no message"))[:MAX_MESSAGE_CHARS])  # the miner's words: no escapes
        failed = UnknownCommand if status[0].get("Code") == _UNKNOWN_COMMAND else MinerReplyError
        raise failed(f"{where}: '{command}' failed: {said}")
    return part
