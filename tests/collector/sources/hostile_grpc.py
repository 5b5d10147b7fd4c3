"""gRPC servers on port 50051 that answer BOS+'s login honestly and then `GetMinerDetails` with what no
unit sends, for the tests of collector/sources/pyasic_grpc.py. Raw HTTP/2 (h2), so that a message can
declare any length and be as long as the test likes.

Modes (what `GetMinerDetails` gets; every other call but the login gets UNIMPLEMENTED):
- ``huge``: one message declaring HUGE_BYTES, then zeros as fast as flow control lets them go, forever;
- ``endless``: empty messages (a valid GetMinerDetailsResponse) without end, never the trailers;
- ``compressed``: one message flagged compressed (never asked for: grpclib sends no grpc-accept-encoding);
- ``huge_headers``: response headers of 1 MiB (HEADERS then CONTINUATION frames), never a message.

Modes whose `GetMinerDetails` is honest (an empty message: every field at its default) and whose
`GetMinerConfiguration` (a unit's cooling configuration: its own chip temperature limits) is not:
- ``cooling_nan``: hot and dangerous temperatures NaN;
- ``cooling_inverted``: hot 110 C over dangerous 100 C;
- ``cooling_absurd``: hot 5,000 C, dangerous 1e308 C;
- ``cooling_none``: manual mode with no temperatures at all;
- ``cooling_huge``: a message declaring HUGE_BYTES, as ``huge``.

The login answers as BOS+ does (the token in the `authorization` response header). Every request's path
is recorded as it arrives (``requests(address)``).
"""

from __future__ import annotations

import asyncio
import struct

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.support import ServedInThread

PORT = 50051
HUGE_BYTES = 1 << 30
LOGIN = "/braiins.bos.v1.AuthenticationService/Login"
DETAILS = "/braiins.bos.v1.MinerService/GetMinerDetails"
CONFIG = "/braiins.bos.v1.ConfigurationService/GetMinerConfiguration"


def _cooling(mode: str, hot: float | None = None, dangerous: float | None = None) -> bytes:
    """A GetMinerConfigurationResponse carrying only a cooling configuration (simulators/braiins_proto.py)."""
    from simulators import braiins_proto as pb

    temps = {} if hot is None else {"hot_temperature": pb.Temperature(hot),
                                    "dangerous_temperature": pb.Temperature(dangerous)}
    modes = {"auto": pb.CoolingAutoMode, "manual": pb.CoolingManualMode}
    return bytes(pb.GetMinerConfigurationResponse(temperature=pb.CoolingConfiguration(**{mode: modes[mode](**temps)})))


COOLING = {  # mode -> what GetMinerConfiguration answers (None: as `huge`)
    "cooling_nan": _cooling("auto", float("nan"), float("nan")),
    "cooling_inverted": _cooling("auto", 110.0, 100.0),
    "cooling_absurd": _cooling("auto", 5000.0, 1e308),
    "cooling_none": _cooling("manual"),
    "cooling_huge": None,
}
MODES = ("huge", "endless", "compressed", "huge_headers", *COOLING)
_EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # not compressed, length 0: every field at its default
_ZEROS = bytes(65536)


def _message(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">?I", compressed, len(payload)) + payload


class _Connection(asyncio.Protocol):
    """One client's HTTP/2 connection, answered by `mode`."""

    def __init__(self, mode: str, log: list[str], transports: set[asyncio.BaseTransport]) -> None:
        self.mode, self.log, self.transports = mode, log, transports
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.paths: dict[int, str] = {}
        self.pumped: dict[int, bytes] = {}  # stream -> what it is sent without end, as the window allows

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transports.add(transport)
        self.h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transports.discard(self.transport)
        self.pumped.clear()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.paths[event.stream_id] = path = dict(event.headers).get(":path", "?")
                self.log.append(path)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._answer(event.stream_id, self.paths.get(event.stream_id, "?"))
            elif isinstance(event, h2.events.StreamReset):
                self.pumped.pop(event.stream_id, None)
        self._pump()
        self._flush()

    def _answer(self, stream_id: int, path: str) -> None:
        head = [(":status", "200"), ("content-type", "application/grpc+proto")]
        if path == LOGIN:
            self.h2.send_headers(stream_id, [*head, ("authorization", "hostile-token")])
            self.h2.send_data(stream_id, _EMPTY_MESSAGE)
            self.h2.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
        elif self.mode in COOLING and path in (DETAILS, CONFIG):
            payload = COOLING[self.mode] if path == CONFIG else b""
            self.h2.send_headers(stream_id, head)
            if payload is None:
                self.h2.send_data(stream_id, struct.pack(">?I", False, HUGE_BYTES))
                self.pumped[stream_id] = _ZEROS
            else:
                self.h2.send_data(stream_id, _message(payload))
                self.h2.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
        elif path != DETAILS:
            self.h2.send_headers(stream_id, [*head, ("grpc-status", "12")], end_stream=True)  # UNIMPLEMENTED
        elif self.mode == "huge_headers":
            padding = [(f"x-padding-{n}", "x" * 8192) for n in range(128)]  # 1 MiB (h2 encodes each quickly)
            self.h2.send_headers(stream_id, [*head, *padding])
        else:
            self.h2.send_headers(stream_id, head)
            if self.mode == "huge":
                self.h2.send_data(stream_id, struct.pack(">?I", False, HUGE_BYTES))
                self.pumped[stream_id] = _ZEROS
            elif self.mode == "endless":
                self.pumped[stream_id] = _EMPTY_MESSAGE * (len(_ZEROS) // len(_EMPTY_MESSAGE))
            else:  # compressed
                self.h2.send_data(stream_id, _message(b"\x1f\x8b" + bytes(30), compressed=True))
                self.h2.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)

    def _pump(self) -> None:
        """Send each endless stream as much as the client's windows allow (it asks for more as it reads)."""
        for stream_id, chunk in list(self.pumped.items()):
            try:
                while (room := min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)) > 0:
                    self.h2.send_data(stream_id, chunk[:room])
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                self.pumped.pop(stream_id, None)

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.h2.data_to_send())


class HostileGrpc(ServedInThread):
    """`with HostileGrpc({"127.114.1.1": "huge", ...}) as grpc:` every address is listening on 50051."""

    thread_name = "hostile-grpc"

    def __init__(self, modes: dict[str, str]):
        for mode in modes.values():
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
        self.modes = dict(modes)
        self._log: dict[str, list[str]] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._transports: set[asyncio.BaseTransport] = set()
        super().__init__()

    def requests(self, address: str) -> list[str]:
        """The paths `address` was asked, in order."""
        return list(self._log.get(address, ()))

    async def _bind_all(self) -> None:
        loop = asyncio.get_running_loop()
        for address, mode in self.modes.items():
            log = self._log.setdefault(address, [])
            self._servers.append(await loop.create_server(lambda m=mode, g=log: _Connection(m, g, self._transports), address, PORT,
                                                          reuse_address=True))

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for transport in list(self._transports):  # 3.11's wait_closed does not end the connections
            transport.abort()
        for server in self._servers:
            await server.wait_closed()
