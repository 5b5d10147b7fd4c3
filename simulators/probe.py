"""A bare CGMiner API client for tests and smoke checks: send one request, read until close.

Deliberately dumb (no fix-ups, no retries) so tests see exactly the bytes a miner sent.
"""

from __future__ import annotations

import json
import socket
from typing import Any


def split_address(address: str, default_port: int = 4028) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep else (address, default_port)


def query(address: str, request: bytes | str | dict[str, Any], timeout: float = 5.0) -> bytes:
    """Raw reply bytes; `request` may be bytes, text (`summary|`), or a dict sent as JSON.

    `timeout` bounds the connect and every read; socket.timeout means the miner stayed silent.
    """
    if isinstance(request, dict):
        payload = json.dumps(request).encode()
    elif isinstance(request, str):
        payload = request.encode()
    else:
        payload = request
    host, port = split_address(address)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks: list[bytes] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def query_json(address: str, command: str, parameter: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """Send `{"command": ..., "parameter": ...}` and decode the NUL-terminated JSON reply."""
    request: dict[str, Any] = {"command": command}
    if parameter is not None:
        request["parameter"] = parameter
    raw = query(address, request, timeout)
    result: dict[str, Any] = json.loads(raw.rstrip(b"\x00"))
    return result
