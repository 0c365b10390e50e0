"""RemotingClient: a pool of one connection per peer address.

Connections open on first use and again after they drop (lazily, on the next invoke). A drop
fails every request waiting on that connection with ``RemotingClosedError``. Requests the peer
sends us (CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED, ...) go to handlers registered
by code; unknown ones are answered REQUEST_CODE_NOT_SUPPORTED.
"""

from __future__ import annotations

import asyncio
import logging

from .busypoll import BusyPoll
from .codes import ResponseCode
from .command import FRAME_BYTES_MAX, RemotingCommand
from .connection import PENDING_REQUESTS_MAX, Connection, Handler, OpaqueCounter, RemotingProtocol
from .errors import RemotingClosedError, RemotingConnectError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
INVOKE_TIMEOUT_S = 3.0


def split_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"address {addr!r} is not host:port")
    return host, int(port)


class RemotingClient:
    def __init__(
        self,
        *,
        frame_bytes_max: int = FRAME_BYTES_MAX,
        pending_requests_max: int = PENDING_REQUESTS_MAX,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        busy_poll_us: int = 0,
    ) -> None:
        self.frame_bytes_max = frame_bytes_max
        self.busy_poll = BusyPoll(busy_poll_us)  # after writing requests (see busypoll.py)
        self.pending_requests_max = pending_requests_max
        self.connect_timeout_s = connect_timeout_s
        self._handlers: dict[int, Handler] = {}
        self._connections: dict[str, Connection] = {}
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._next_opaque = OpaqueCounter()
        self._closed = False

    def register(self, code: int, handler: Handler) -> None:
        """Handle requests of this code that a peer sends over our connections."""
        self._handlers[int(code)] = handler

    async def invoke(
        self, addr: str, cmd: RemotingCommand, timeout_s: float = INVOKE_TIMEOUT_S
    ) -> RemotingCommand:
        conn = self._open_connection(addr) or await self.connection(addr)
        return await conn.invoke(cmd, timeout_s)

    async def invoke_oneway(self, addr: str, cmd: RemotingCommand) -> None:
        conn = await self.connection(addr)
        await conn.invoke_oneway(cmd)

    async def connection(self, addr: str) -> Connection:
        """The open connection to ``addr``, opening one if there is none."""
        conn = self._open_connection(addr)
        if conn is not None:
            return conn
        lock = self._connect_locks.setdefault(addr, asyncio.Lock())
        async with lock:
            conn = self._connections.get(addr)
            if conn is None or conn.closed:
                conn = await self._open(addr)
            return conn

    def _open_connection(self, addr: str) -> Connection | None:
        """The connection to ``addr`` if one is open (no await: the send path's common case)."""
        if self._closed:
            raise RemotingClosedError("remoting client is closed")
        conn = self._connections.get(addr)
        return conn if conn is not None and not conn.closed else None

    async def _open(self, addr: str) -> Connection:
        host, port = split_addr(addr)

        def make(transport: asyncio.Transport) -> Connection:
            return Connection(
                transport,
                self._dispatch,
                next_opaque=self._next_opaque,
                frame_bytes_max=self.frame_bytes_max,
                pending_requests_max=self.pending_requests_max,
                busy_poll=self.busy_poll,
            )

        async def connect() -> Connection:
            _transport, protocol = await asyncio.get_running_loop().create_connection(
                lambda: RemotingProtocol(make), host, port)
            return await protocol.connected  # uvloop may call connection_made after returning

        try:
            conn = await asyncio.wait_for(connect(), self.connect_timeout_s)
        except (OSError, TimeoutError, RemotingClosedError) as exc:
            raise RemotingConnectError(f"cannot connect to {addr}: {exc or 'timed out'}") from exc
        conn.add_close_listener(lambda c: self._forget(addr, c))
        self._connections[addr] = conn
        return conn

    def _forget(self, addr: str, conn: Connection) -> None:
        if self._connections.get(addr) is conn:
            del self._connections[addr]
        log.debug("connection to %s closed: %s", addr, conn.close_reason)

    async def _dispatch(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        handler = self._handlers.get(cmd.code)
        if handler is None:
            return cmd.make_response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                f"request type {cmd.code} not supported",
            )
        return await handler(conn, cmd)

    def close_connection(self, addr: str) -> None:
        conn = self._connections.get(addr)
        if conn is not None:
            conn.close("closed by client")

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._connections.values()):
            conn.close("client shutting down")
            await conn.cancel_handlers()

    async def __aenter__(self) -> RemotingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
