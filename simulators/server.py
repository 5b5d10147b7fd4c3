"""TCP serving of one simulated miner's CGMiner-style API (port 4028), with the network faults applied.

Like the firmware: one request per connection, the answer, then close; requests are answered
one at a time per miner (the firmware's API is single-threaded), so a slow answer delays the
next client too. Built on asyncio Protocols rather than streams: 10,000 listeners and their
connections in one process need the lighter machinery.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from simulators import cgminer
from simulators.miner import SimulatedMiner

log = logging.getLogger(__name__)

IDLE_S = 10.0  # a connection that sends no complete request is closed after this long
GRACE_S = 0.5  # an unparseable JSON request is answered ("Invalid JSON") after this long without more data
MAX_REQUEST = 65536
BACKLOG = 128


class BindError(OSError):
    """A simulated miner could not listen on its address."""

    def __init__(self, miner: SimulatedMiner, cause: OSError, address: str | None = None) -> None:
        address = address or miner.address
        hint = "Pick another --base, or free the address."
        if isinstance(cause, PermissionError) and int(address.rpartition(":")[2]) < 1024:
            hint = "Ports below 1024 need root (or CAP_NET_BIND_SERVICE); " + hint
        super().__init__(
            cause.errno,
            f"cannot listen for simulated miner #{miner.index} ({miner.spec.key}) on {address}: "
            f"{cause.strerror or cause}. {hint}",
        )
        self.address = address


def open_listening_socket(host: str, port: int) -> socket.socket:
    """Bind and listen synchronously, so errors surface at once and name the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _ApiConnection(asyncio.Protocol):
    __slots__ = ("node", "transport", "buf", "timer", "submitted")

    def __init__(self, node: MinerServer) -> None:
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.timer: asyncio.TimerHandle | None = None
        self.submitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.node.conns.add(self)
        self.timer = self.node.loop.call_later(IDLE_S, self._timeout)

    def data_received(self, data: bytes) -> None:
        if self.submitted:
            return  # one request per connection; anything after it is ignored
        self.buf += data
        if len(self.buf) >= MAX_REQUEST or cgminer.request_complete(self.buf):
            self._submit()
        elif self.buf.lstrip().startswith(b"{"):
            # Incomplete or broken JSON: wait briefly for the rest, then answer what we have.
            self._rearm(GRACE_S)

    def eof_received(self) -> bool:
        # A client may half-close after its request (`nc -N`): the answer still goes out.
        if self.submitted:
            return True
        if self.buf.strip():
            self._submit()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.node.conns.discard(self)

    def _rearm(self, delay: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.node.loop.call_later(delay, self._timeout)

    def _timeout(self) -> None:
        self.timer = None
        if self.submitted:
            return
        if self.buf.strip():
            self._submit()
        elif self.transport is not None:
            self.transport.close()

    def _submit(self) -> None:
        self.submitted = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.node.submit(self)


# (request bytes, bare_nan) -> the reply bytes, NUL included; the firmware's API behind the socket.
Answer = Callable[[bytes, bool], bytes]


class Listener:
    """One listening port of a simulated miner, open or closed as its `no_answer` fault says.

    The lifecycle both ports share: bind (errors name the address), serve, follow the fault
    (closed means connections are refused), stop. A subclass says where it listens (`port`),
    what speaks on each accepted connection (`connection`) and what else `stop()` must cancel
    (`cancel_pending`). Used by `MinerServer` (CGMiner port) and `simulators.http.HttpServer`.
    """

    port: int  # the port to bind; replaced by the bound one when asked for port 0

    def __init__(self, miner: SimulatedMiner, loop: asyncio.AbstractEventLoop) -> None:
        self.miner = miner
        self.loop = loop
        self.listener: asyncio.AbstractServer | None = None
        self.conns: set[Any] = set()  # open connections, each with a `.transport`
        self._stopped = False

    @property
    def address(self) -> str:
        return f"{self.miner.host}:{self.port}"

    def connection(self) -> asyncio.Protocol:
        """A new protocol instance for one accepted connection."""
        raise NotImplementedError

    def cancel_pending(self) -> None:
        """Forget answers still due (called by `stop()`)."""

    def bind(self) -> socket.socket:
        """Bind the address now (raises BindError); port 0 picks a free port for good."""
        try:
            sock = open_listening_socket(self.miner.host, self.port)
        except OSError as exc:
            raise BindError(self.miner, exc, address=self.address) from exc
        self.port = sock.getsockname()[1]
        return sock

    async def serve(self, sock: socket.socket) -> None:
        listener = await self.loop.create_server(self.connection, sock=sock)
        if self._stopped or self.miner.faults.no_answer or self.listener is not None:
            listener.close()  # the world changed while we awaited: stay as faults say
            return
        self.listener = listener

    async def start(self) -> None:
        sock = self.bind()  # even a miner born unreachable proves its address is usable
        if self.miner.faults.no_answer:
            sock.close()
            return
        await self.serve(sock)

    def close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    async def sync_listener(self) -> None:
        """Make the listener match `faults.no_answer`: closed means connections are refused."""
        if self._stopped:
            return
        if self.miner.faults.no_answer:
            self.close_listener()
        elif self.listener is None:
            await self.serve(self.bind())

    async def stop(self) -> None:
        self._stopped = True
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.close()
        self.cancel_pending()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.abort()
        self.conns.clear()
        if listener is not None:
            await listener.wait_closed()


class MinerServer(Listener):
    """Listens for one miner and answers its requests, network faults included.

    `answer` speaks the firmware's API (default: Canaan's CGMiner, `simulators.cgminer`);
    `requests`, when given, counts what clients asked for by command (`version`, `summary+stats`),
    named by `label` (default: the CGMiner command; btminer names its encrypted writes).
    """

    conns: set[_ApiConnection]

    def __init__(
        self,
        miner: SimulatedMiner,
        loop: asyncio.AbstractEventLoop,
        answer: Answer | None = None,
        requests: Counter[str] | None = None,
        label: Callable[[bytes], str] | None = None,
    ) -> None:
        super().__init__(miner, loop)
        self.answer: Answer = answer or (lambda data, bare_nan: cgminer.answer(data, miner, bare_nan))
        self.requests = requests
        self.label = label or (lambda data: "+".join(cgminer.parse_request(data).commands) or "?")
        self._queue: deque[_ApiConnection] = deque()
        self._busy: asyncio.TimerHandle | None = None  # a slow answer in progress

    # -- listener ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.miner.port  # the miner's own port: binding port 0 updates `miner.address` too

    @port.setter
    def port(self, value: int) -> None:
        self.miner.port = value

    def connection(self) -> _ApiConnection:
        return _ApiConnection(self)

    def cancel_pending(self) -> None:
        if self._busy is not None:
            self._busy.cancel()
            self._busy = None
        self._queue.clear()

    # -- answering --------------------------------------------------------------------------

    def submit(self, conn: _ApiConnection) -> None:
        if self.requests is not None:
            self.requests[self.label(conn.buf)] += 1
        faults = self.miner.faults
        if faults.hold_open:
            return  # read, never answered, never closed (until the client or stop() gives up)
        if faults.drop:
            assert conn.transport is not None
            conn.transport.close()
            return
        self._queue.append(conn)
        self._pump()

    def _pump(self) -> None:
        while self._busy is None and self._queue:
            conn = self._queue.popleft()
            if conn.transport is None or conn.transport.is_closing():
                continue
            delay = self.miner.faults.slow_s
            if delay > 0:
                self._busy = self.loop.call_later(delay, self._answer_late, conn)
                return
            self._answer(conn)

    def _answer_late(self, conn: _ApiConnection) -> None:
        self._busy = None
        if conn.transport is not None and not conn.transport.is_closing():
            self._answer(conn)
        self._pump()

    def _answer(self, conn: _ApiConnection) -> None:
        transport = conn.transport
        assert transport is not None
        miner = self.miner
        try:
            faults = miner.faults
            reply = cgminer.damage(self.answer(conn.buf, faults.bare_nan), faults)
        except Exception:  # a bug must cost one answer, not the whole fleet
            log.exception("simulated miner %s failed to answer %r", miner.address, conn.buf[:200])
            transport.abort()
            return
        miner.answers += 1
        transport.write(reply)
        transport.close()  # flushes, then closes: the client reads until EOF

