"""CGMiner API transport: one request per TCP connection, JSON out, JSON back.

Every wire quirk of CGMiner-derived firmware is handled here, in one place:
the trailing NUL byte, bare `nan`/`inf` tokens some Avalon firmware emits
(invalid JSON), and replies cut short.

Exceptions (all subclasses of CGMinerError):
    MinerUnreachable  - no connection, or no complete answer within the timeout.
                        The miner is offline as far as a poll can tell.
    MinerReplyError   - the miner answered, but the reply is not usable JSON
                        or reports a failed command. The miner is in error.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

MAX_REPLY_BYTES = 4 * 1024 * 1024  # a full estats of a large unit is ~20 KB; anything huge is garbage


class CGMinerError(Exception):
    """Base class for everything that can go wrong talking to a CGMiner API."""


class MinerUnreachable(CGMinerError):
    pass


class MinerReplyError(CGMinerError):
    pass


# Bare nan/inf as a JSON value (after ':' or ',' or '[') — not inside a string.
_BARE_NON_FINITE = re.compile(rb'(?<=[:\[,])\s*-?(?:nan|inf)\s*(?=[,\]}])', re.IGNORECASE)


async def request(host: str, port: int, command: str, parameter: str | None = None, *, timeout_s: float = 5.0) -> bytes:
    """Send one command, read until the miner closes, return the raw reply.

    The timeout covers connect, send and the whole read: a miner that holds the
    connection open without answering costs at most `timeout_s`.
    """
    payload: dict[str, str] = {"command": command}
    if parameter is not None:
        payload["parameter"] = parameter
    try:
        return await asyncio.wait_for(_exchange(host, port, json.dumps(payload).encode()), timeout_s)
    except TimeoutError:
        raise MinerUnreachable(f"{host}:{port}: no complete answer within {timeout_s:g} s") from None
    except ConnectionRefusedError:
        raise MinerUnreachable(f"{host}:{port}: connection refused (nothing listens on the API port)") from None
    except OSError as e:
        raise MinerUnreachable(f"{host}:{port}: {e.strerror or e}") from None


async def _exchange(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        chunks: list[bytes] = []
        size = 0
        while chunk := await reader.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise MinerReplyError(f"{host}:{port}: reply larger than {MAX_REPLY_BYTES} bytes")
        return b"".join(chunks)
    finally:
        writer.close()


def decode(raw: bytes, where: str) -> dict[str, Any]:
    """Bytes of a CGMiner reply -> dict, tolerating the quirks real firmware has."""
    body = raw.rstrip(b"\x00 \r\n\t")
    if not body:
        raise MinerReplyError(f"{where}: empty reply")
    body = _BARE_NON_FINITE.sub(b"null", body)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as e:
        raise MinerReplyError(f"{where}: malformed or truncated JSON ({len(raw)} bytes): {e.msg} at byte {e.pos}") from None
    except UnicodeDecodeError:
        raise MinerReplyError(f"{where}: reply is not UTF-8 text ({len(raw)} bytes)") from None
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
        raise MinerReplyError(f"{where}: '{command}' failed: {status[0].get('Msg', 'no message')}")
    return part
