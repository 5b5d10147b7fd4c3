"""Every socket pyasic opens for its CGMiner RPC and its detection, bounded in size and in life.

pyasic 0.79 reads its RPC on 4028 (and btminer v3's on 4433) with no size cap: `rpc/base.py` reads a
reply to its end (`reader.read()`), detection's `_socket_ping` appends 4 KB reads until the server
closes (`data += d`), btminer v3 `readexactly()`s whatever length the server announces. One server
that answered hashfleet's `version` probe honestly and then streamed without end kept `hashfleet scan`
running until killed (150 s here, 12 min in the trial), at 280 MB and growing: the cancel of the
detection is lost (pyasic's `concurrent_get_first_result` lets the cancel out of its `as_completed`
loop without cancelling its probes, which read on). `poll` of a LuxOS-looking unit answering its reads
with a 64 MiB reply peaked at 928 MB in 2 s.

`install()` gives the pyasic modules that open these sockets (PYASIC_MODULES) an `asyncio` of their own:
the real one in everything but `open_connection`, whose reader here
- takes at most MAX_REPLY_BYTES over the connection's life (the cap of our own RPC reader,
  collector/sources/cgminer_client.py), then drops what it holds, aborts the connection and fails every
  read with `SocketEnded`, a ConnectionResetError, which pyasic handles like a dropped connection; the
  reason is noted for the caller (pyasic_http.noting_refusals), so an address's failure says why;
- lives no longer than the call of hashfleet's that opened it (`closing_at`, set by
  pyasic_makes.within): at that moment its reads fail the same way, and a socket asked for after it is
  refused before connecting. A task of pyasic's that swallowed its cancel thus ends with its call, by
  itself, having held at most MAX_REPLY_BYTES per socket. Outside any call: DEFAULT_LIFE_S.
asyncio itself, and every other user of it in the process, is left as it is.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from collector.sources import pyasic_http
from collector.sources.cgminer_client import MAX_REPLY_BYTES

# The pyasic modules that call asyncio.open_connection (RPC replies, detection pings, btminer v3).
PYASIC_MODULES = ("pyasic.rpc.base", "pyasic.rpc.btminer", "pyasic.miners.factory")
DEFAULT_LIFE_S = 60.0  # a socket opened outside any call of ours (hashfleet has none; a safety net)


class SocketEnded(ConnectionResetError):
    """A socket of pyasic's ended by us: its reply over the cap, or its call's time up."""


_close_by: contextvars.ContextVar[float | None] = contextvars.ContextVar("pyasic_sockets_close_by", default=None)


@contextmanager
def closing_at(deadline: float) -> Iterator[None]:
    """Sockets pyasic opens in this block (and in the tasks started in it: they inherit the context) end
    at `deadline`, the event loop's time."""
    token = _close_by.set(deadline)
    try:
        yield
    finally:
        _close_by.reset(token)


class _CappedReader(asyncio.StreamReader):
    """A StreamReader that ends its connection past MAX_REPLY_BYTES or at its deadline."""

    def __init__(self, where: str, noted: list[str] | None, **kwargs: Any) -> None:
        self._where, self._noted = where, noted
        self._received = 0
        self._ended: str | None = None  # why, once ended
        super().__init__(**kwargs)

    # StreamReader raises the one exception it holds at every read, and its traceback then holds the
    # frames that read: the reader, and the part of the reply pyasic had gathered (up to the cap). Held by
    # the reader, that is a cycle only the garbage collector frees: 63 MB per poll kept here. A new
    # exception at each read leaves nothing to collect.
    @property
    def _exception(self) -> BaseException | None:
        return SocketEnded(self._ended) if self._ended else self._other_exception

    @_exception.setter
    def _exception(self, exception: BaseException | None) -> None:
        self._other_exception = exception

    def feed_data(self, data: bytes) -> None:
        if self._ended:
            return
        self._received += len(data)
        if self._received > MAX_REPLY_BYTES:
            reason = f"RPC reply refused: {self._where}: over the {MAX_REPLY_BYTES:,}-byte cap"
            pyasic_http.note(self._noted, reason)
            self._end(reason)
            return
        super().feed_data(data)

    def expire(self) -> None:
        if not (self._ended or self._eof):
            self._end(f"{self._where}: the call that opened this socket is over")

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._buffer.clear()  # an abandoned task may hold this reader: it holds nothing
        self.set_exception(SocketEnded(reason))  # fails a read waiting
        self._other_exception = None  # (the getter above makes the next ones)
        if self._transport is not None:
            self._transport.abort()


async def open_connection(host: Any = None, port: Any = None, *, limit: int = 2 ** 16,
                          **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection with a _CappedReader (the same steps as asyncio's own, in streams.py)."""
    loop = asyncio.get_running_loop()
    close_by = _close_by.get()
    if close_by is None:
        close_by = loop.time() + DEFAULT_LIFE_S
    where = f"{host}:{port}"
    if loop.time() >= close_by:
        raise SocketEnded(f"{where}: not opened, the call that asked for it is over")
    reader = _CappedReader(where, pyasic_http.noted(), limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    try:
        # asyncio.timeout_at, not wait_for: 3.11's wait_for, cancelled as the connection is refused, raises the
        # refusal from a task its caller (pyasic's own wait_for) then never reads ("Task exception was never
        # retrieved", a traceback in the log whenever pyasic's detection cancels a probe that lost its race).
        async with asyncio.timeout_at(close_by):
            transport, _ = await loop.create_connection(lambda: protocol, host, port, **kwargs)
    except TimeoutError:
        raise SocketEnded(f"{where}: not connected before the call that asked for it was over") from None
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    loop.call_at(close_by, reader.expire)
    return reader, writer


class _AsyncioForPyasic:
    """asyncio as PYASIC_MODULES see it once installed: all of it, but open_connection is ours."""

    open_connection = staticmethod(open_connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


def install() -> None:
    """Have PYASIC_MODULES open their sockets through `open_connection` above; only their own name
    `asyncio` is replaced. Fails loudly if a pyasic upgrade stopped calling it that way."""
    for name in PYASIC_MODULES:
        module = importlib.import_module(name)
        current = getattr(module, "asyncio", None)
        if current is not asyncio and not isinstance(current, _AsyncioForPyasic):
            raise RuntimeError(f"{name} has no `asyncio` to bound its sockets through (pyasic changed?)")
        module.asyncio = _AsyncioForPyasic()
