"""RemotingServer: an asyncio TCP server that dispatches RocketMQ commands by request code.

Handlers are ``async (conn, cmd) -> RemotingCommand | None``; ``None`` means "no response"
(the command's opaque and response flag are filled in by the connection). Unknown codes get
REQUEST_CODE_NOT_SUPPORTED, handler exceptions SYSTEM_ERROR. A group handler
(``register_group``) answers the requests of some codes read together from one connection. A
connection whose byte stream is unusable is closed; every other connection keeps being served.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from .busypoll import BusyPoll
from .codes import ResponseCode
from .command import FRAME_BYTES_MAX, RemotingCommand
from .connection import (
    PENDING_REQUESTS_MAX,
    Answer,
    Connection,
    GroupHandler,
    GroupNow,
    Handler,
    Later,
    OpaqueCounter,
    RemotingProtocol,
    handler_failed,
)

log = logging.getLogger(__name__)

CONNECTIONS_MAX = 1024


class RemotingServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        frame_bytes_max: int = FRAME_BYTES_MAX,
        pending_requests_max: int = PENDING_REQUESTS_MAX,
        connections_max: int = CONNECTIONS_MAX,
        name: str = "remoting",
        busy_poll_us: int = 0,
    ) -> None:
        self.host = host
        self.busy_poll = BusyPoll(busy_poll_us)  # after writing answers (see busypoll.py)
        self._requested_port = port
        self.frame_bytes_max = frame_bytes_max
        self.pending_requests_max = pending_requests_max
        self.connections_max = connections_max
        self.name = name
        self._handlers: dict[int, Handler] = {}
        self._default_handler: Handler | None = None
        self._group_handler: GroupHandler | None = None
        self._group_now: GroupNow | None = None
        self._group_codes: set[int] = set()  # shared with every connection (changes reach them)
        self._disconnect_listeners: list[Callable[[Connection], None]] = []
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._next_opaque = OpaqueCounter()

    # -- configuration -------------------------------------------------------------------------

    def register(self, code: int, handler: Handler) -> None:
        self._handlers[int(code)] = handler

    def register_group(self, codes: Iterable[int], handler: GroupHandler | None, now: GroupNow | None = None) -> None:
        """Requests of ``codes`` read together from one connection go to ``handler`` as one
        list, after ``now`` declined them (see connection.py); None: each to its own handler
        again."""
        self._group_codes.clear()
        self._group_handler = handler
        self._group_now = now if handler is not None else None
        if handler is not None:
            self._group_codes.update(int(code) for code in codes)

    def set_default_handler(self, handler: Handler | None) -> None:
        """Handler for codes nobody registered (instead of REQUEST_CODE_NOT_SUPPORTED)."""
        self._default_handler = handler

    def add_disconnect_listener(self, callback: Callable[[Connection], None]) -> None:
        self._disconnect_listeners.append(callback)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"{self.name} server is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> list[Connection]:
        return list(self._connections)

    async def start(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: RemotingProtocol(self._accept), self.host, self._requested_port
        )
        log.info("%s server listening on %s", self.name, self.address)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.close("server shutting down")
            await conn.cancel_handlers()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RemotingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connections ---------------------------------------------------------------------------

    def _accept(self, transport: asyncio.Transport) -> Connection | None:
        if len(self._connections) >= self.connections_max:
            log.warning("%s: refusing connection from %s: %d connections open (limit)",
                        self.name, transport.get_extra_info("peername"), len(self._connections))
            return None
        conn = Connection(
            transport,
            self._dispatch,
            next_opaque=self._next_opaque,
            frame_bytes_max=self.frame_bytes_max,
            pending_requests_max=self.pending_requests_max,
            busy_poll=self.busy_poll,
            group_dispatch=self._dispatch_group,
            group_codes=self._group_codes,
            group_now=self._dispatch_group_now,
        )
        self._connections.add(conn)
        conn.add_close_listener(self._on_close)
        return conn

    def _on_close(self, conn: Connection) -> None:
        self._connections.discard(conn)
        log.debug("%s: %s closed: %s", self.name, conn.remote_addr, conn.close_reason)
        for callback in self._disconnect_listeners:
            try:
                callback(conn)
            except Exception:
                log.exception("disconnect listener failed for %s", conn.remote_addr)

    def _dispatch_group_now(self, conn: Connection, cmds: list[RemotingCommand]) -> list[Answer | Later] | None:
        now = self._group_now
        return None if now is None else now(conn, cmds)

    def _dispatch_group(self, conn: Connection, cmds: list[RemotingCommand]) -> Awaitable[list[Answer]]:
        handler = self._group_handler
        if handler is None:  # unregistered since the connection read them
            return _each(self._dispatch, conn, cmds)
        return handler(conn, cmds)

    def _dispatch(self, conn: Connection, cmd: RemotingCommand) -> Awaitable[RemotingCommand | None]:
        """The handler's awaitable itself (no coroutine of our own around it: one frame less
        on every resumption of every request)."""
        handler = self._handlers.get(cmd.code, self._default_handler)
        if handler is None:
            return _answered(cmd.make_response(
                ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                f"request type {cmd.code} not supported",
            ))
        return handler(conn, cmd)


async def _each(dispatch: Handler, conn: Connection, cmds: list[RemotingCommand]) -> list[Answer]:
    """The answers of the requests' own handlers, run concurrently (one failing does not fail
    the others' answers)."""
    answers = await asyncio.gather(*(dispatch(conn, cmd) for cmd in cmds), return_exceptions=True)
    return [handler_failed(conn, cmd, a) if isinstance(a, BaseException) else a
            for cmd, a in zip(cmds, answers, strict=True)]


async def _answered(response: RemotingCommand) -> RemotingCommand:
    return response
