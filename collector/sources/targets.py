"""What to poll: explicit addresses, CIDR ranges and DNS names.

  "10.0.0.5"            one miner on the CGMiner port 4028
  "127.0.0.1:14028"     one miner on another port (simulators, port forwards)
  "10.0.1.0/24"         a range: scanned, and only the addresses that answer are polled
  "miners.site.local"   a DNS name: every address it resolves to (docker compose replicas)

IPv4 only: an IPv6 address or range is a usage error, and names resolve to IPv4 addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import zlib
from dataclasses import dataclass

CGMINER_PORT = 4028
MAX_SCAN_ADDRESSES = 1 << 16  # a /16; larger ranges are almost certainly a typo
# Miners' APIs are reached over IPv4 (names resolve to IPv4 addresses); an IPv6 address ended in a
# traceback inside pyasic's identification.
IPV6 = "an IPv6 address: miners are polled over IPv4 (give its IPv4 address or a name that resolves to one)"
# A host name as the resolver takes it (after IDNA: a non-ASCII name becomes xn--...): labels of letters,
# digits, '-' and '_' (docker compose service names), each 1-63 long, 253 in all.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?")


@dataclass(frozen=True, order=True)
class Target:
    host: str
    port: int = CGMINER_PORT

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Spec:
    """One entry of the `miners` list, classified."""

    text: str
    kind: str  # "address" | "range" | "name"
    port: int = CGMINER_PORT


def in_shard(target: Target, shard: tuple[int, int] | None) -> bool:
    """Does shard K of N own this address? A stable hash of host:port (the miner's MAC is not known
    before the first poll, and a scan must know what to probe): every address has exactly one owner."""
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(target.address.encode()) % n == k - 1


class TargetError(ValueError):
    pass


def parse_spec(text: str) -> Spec:
    text = text.strip()
    if not text:
        raise TargetError("empty miner address")
    if "/" in text:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as e:
            raise TargetError(f"{text!r}: not a CIDR range ({e})") from None
        if net.version == 6:
            raise TargetError(f"{text!r}: {IPV6}")
        if net.num_addresses > MAX_SCAN_ADDRESSES:
            raise TargetError(f"{text!r}: {net.num_addresses} addresses is more than a /16; split the range")
        return Spec(str(net), "range")
    if text.startswith("["):  # [v6]:port
        raise TargetError(f"{text!r}: {IPV6}")
    host, port = _split_port(text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Spec(_checked_name(host, text), "name", port)
    if ip.version == 6:
        raise TargetError(f"{text!r}: {IPV6}")
    return Spec(host, "address", port)


def parse_specs(texts: list[str]) -> list[Spec]:
    return [parse_spec(part) for text in texts for part in text.split(",") if part.strip()]


def listed_targets(specs: list[Spec]) -> list[Target]:
    """The addresses and ranges' addresses of `specs` (names as given, unresolved), each once and in
    order: an address given twice, or also inside a range, is one miner, as the collector's set of
    targets makes it."""
    return list(dict.fromkeys(t for s in specs for t in (range_targets(s) if s.kind == "range"
                                                          else [Target(s.text, s.port)])))


def range_targets(spec: Spec) -> list[Target]:
    net = ipaddress.ip_network(spec.text)
    hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
    return [Target(str(ip), spec.port) for ip in hosts]


def _checked_name(host: str, text: str) -> str:
    """`host` if the resolver can take it: a malformed name (an empty label, `rack7..site`, a label over 63
    characters) made every re-scan fail with an IDNA UnicodeError, so no range or name was polled at all."""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise TargetError(f"{text!r}: not a host name ({e})") from None
    if not _HOST_NAME.fullmatch(ascii_host):
        raise TargetError(f"{text!r}: not a host name (labels of letters, digits, '-' or '_', 1-63 characters each, "
                          "separated by dots)")
    if ascii_host.rstrip(".").rpartition(".")[2].isdigit():  # no top-level domain is all digits (RFC 3696)
        # a mistyped address (127.10.0.300, 10.0.0): else looked up as a name, "resolves to no address" each cycle
        raise TargetError(f"{text!r}: not an IPv4 address (four numbers 0-255) and not a host name (a name's last "
                          "label is never all digits)")
    return host


async def resolve_name(spec: Spec, timeout_s: float = 5.0) -> list[Target]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(spec.text, spec.port, family=socket.AF_INET, type=socket.SOCK_STREAM), timeout_s)
    except (OSError, TimeoutError, UnicodeError):  # (a name the resolver refuses costs that name only)
        return []
    return sorted({Target(info[4][0], spec.port) for info in infos})


def _split_port(text: str) -> tuple[str, int]:
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise TargetError(f"{text!r}: port {port_text!r} is not a number") from None
        if not 0 < port < 65536:
            raise TargetError(f"{text!r}: port {port} out of range")
        return host, port
    return text, CGMINER_PORT
