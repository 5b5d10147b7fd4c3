"""Every gRPC message pyasic reads (Braiins OS+ on port 50051), bounded in size.

pyasic 0.79 speaks BOS+'s gRPC API through grpclib 0.4.9 (pyasic/web/braiins_os/boser.py):
`GetMinerDetails` at identification and every ten minutes (collector/sources/braiins.py), its reads of a
unit pyasic reads, the control commands (collector/sinks/miner_commands.py). grpclib reads a message's
5-byte prefix, then `recv_data(length)` whole, whatever length the prefix declares (up to 4 GiB),
acknowledging to the server (HTTP/2 flow control) as it gathers; betterproto then decodes it at ~5 us a
byte (a 795-byte GetHashboards 4 ms), blocking the event loop, and worse than linearly past ~256 KiB
(1 MiB of zeros: 31 s). One server declaring 1 GiB took a GetMinerDetails to 2.3 GB and then a
decode that held the event loop, past the call's timeout, until killed (10 min).

`install()` replaces the `recv_message` grpclib's client reads every message with (grpclib.client
imports it by name from grpclib.stream; grpclib's server keeps its own): the same steps, but
- a message whose prefix declares more than MAX_MESSAGE_BYTES is refused before a byte of it is read;
- a compressed one is refused too (grpclib sends no grpc-accept-encoding, so none is asked for), as a
  GRPCError rather than grpclib's NotImplementedError, which pyasic does not handle.
A refusal is a GRPCError (RESOURCE_EXHAUSTED, as gRPC's own clients refuse a message over their limit;
UNIMPLEMENTED for compression), which pyasic maps to APIError; its reason is noted for the caller
(pyasic_http.noting_refusals). The stream is then reset: what the server sent past the prefix is at most
the stream's flow-control window (grpclib's default 4 MiB), never acknowledged. Every grpclib client in
the process is bounded so; pyasic's are hashfleet's only ones.

Bounded already, and tested so (tests/collector/sources/test_pyasic_grpc.py): more messages than a unary
call reads wait unacknowledged within that window (the call then costs its timeout); a header block over
64 KiB decoded (hpack) or 64 CONTINUATION frames (h2) ends the connection (grpclib's
StreamTerminatedError, which pyasic does not map to APIError: its callers here catch any exception).
Time is the callers' to bound (braiins.py's timeout, pyasic_makes.within, miner_commands').
"""

from __future__ import annotations

import struct
from typing import Any

from collector.sources import pyasic_http

# The largest message pyasic may read. Real ones are small: the simulator's largest (GetHashboards, 3
# boards) is 783 bytes, a real S19 XP's on BOS+ 25.07 795 (tests/data/replies/braiins/
# s19xp_bos-plus-25.07_grpc, encoded); 40x that, and decoding a message this size costs ~0.2 s at most.
MAX_MESSAGE_BYTES = 32 * 1024


async def bounded_recv_message(stream: Any, codec: Any, message_type: Any) -> Any:
    """grpclib.stream.recv_message, refusing a message over the cap or compressed before reading it."""
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    prefix = await stream.recv_data(5)
    if not prefix:
        return None
    compressed, length = struct.unpack(">?I", prefix)
    if compressed:
        raise GRPCError(Status.UNIMPLEMENTED, _refused(stream, "a compressed message, compression not asked for"))
    if length > MAX_MESSAGE_BYTES:
        raise GRPCError(Status.RESOURCE_EXHAUSTED,
                        _refused(stream, f"a message of {length:,} bytes, over the {MAX_MESSAGE_BYTES:,}-byte cap"))
    message = await stream.recv_data(length)
    if len(message) != length:  # the stream ended inside the message (grpclib asserts)
        raise GRPCError(Status.INTERNAL, f"gRPC message cut short: {len(message):,} of {length:,} bytes")
    return codec.decode(message, message_type)


def _refused(stream: Any, reason: str) -> str:
    peer = stream.connection.get_peer().addr()
    where = f"{peer[0]}:{peer[1]}" if peer else "?"
    message = f"gRPC message refused: {where}: {reason}"
    pyasic_http.note(pyasic_http.noted(), message)
    return message


def install() -> None:
    """Have grpclib's client read every message through `bounded_recv_message`. Fails loudly if a grpclib
    upgrade stopped reading them through its module's name `recv_message`."""
    import grpclib.client
    import grpclib.stream

    current = getattr(grpclib.client, "recv_message", None)
    if current is not grpclib.stream.recv_message and current is not bounded_recv_message:
        raise RuntimeError("grpclib.client has no `recv_message` to bound its messages through (grpclib changed?)")
    grpclib.client.recv_message = bounded_recv_message
