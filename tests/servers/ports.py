"""Free loopback TCP ports for test servers.

    from tests.servers.ports import free_port, free_ports
    port = free_port()              # one port, bindable on 127.0.0.1 right now
    http, rpc = free_ports(2)       # distinct ports

Ports are drawn at random from *below* the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default). Outgoing
connections take their local port from the ephemeral range, so a port chosen
below it is not grabbed by some unrelated client while a test server is stopped
for an outage test and is about to be restarted on the same port. A port is
only handed out if a plain ``bind()`` (without SO_REUSEADDR, so TIME_WAIT
counts as busy) succeeds, and never twice in one process. Between the check and
the server's own bind another process can still take it: server start-up code
retries with fresh ports when that happens (see ``influxdb.py``,
``mosquitto.py``).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port", "free_ports"]

_LOWEST = 10_000
_handed_out: set[int] = set()


def _candidate_range() -> tuple[int, int]:
    """Ports below the ephemeral range, or (0, 0) when that range is too small."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low - 1 - _LOWEST < 1000:
        return 0, 0
    return _LOWEST, low - 1


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now and not handed out before."""
    low, high = _candidate_range()
    for _ in range(500):
        port = random.randint(low, high) if high else _kernel_port(host)
        if port not in _handed_out and _bindable(host, port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port found on {host} after 500 tries")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free ports (see :func:`free_port`)."""
    return [free_port(host) for _ in range(count)]
