"""One remoting connection, the same on the server and the client side.

Either peer may send requests over a connection, so both sides need the same machinery: a
reader that tells responses (flag bit 0) from requests, a table of futures waiting for responses
keyed by opaque, and concurrent request handling whose responses may go out in any order.

Reading is the transport's callback (:class:`RemotingProtocol`): the frames of each read are
decoded and handed on in ``data_received`` itself, with no reading task between the socket and
the handlers (a StreamReader and a task cost a one-at-a-time send about 15 us of the broker's
time on this machine: the task's wake-up after the read, and its return to waiting before
the loop could start the send's group-commit round). At most FRAMES_PER_TURN frames are handed
on at a time: past that the connection pauses reading until the loop has run everything else
once.

Requests whose code is in ``group_codes`` are handed on together: those of one read (at most
FRAMES_PER_TURN) go to ``group_dispatch`` as one list, in one task, which answers each of them
(the broker's send path stores a read's sends to one queue as one append). A request of any
other code hands on the group read before it first, so requests start in the order they came.
``group_now``, if given, sees the list first, with no task of its own: it may take the whole
group (answering each request now, or ``LATER`` through :meth:`Connection.reply`) or decline it
(None: then ``group_dispatch`` takes it). Answers given at once are not bounded by pending
requests: once they take the transport past its high-water mark, the connection stops reading
until they drain.

Limits: a frame is at most ``frame_bytes_max`` bytes (the read buffer never holds more than one
partial frame and one read), at most ``pending_requests_max`` incoming requests are handled at
once (more are answered SYSTEM_BUSY, so responses to our own requests are always still read),
and at most ``pending_requests_max`` of our requests wait for responses.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any, cast

from .busypoll import BusyPoll
from .codes import FLAG_ONEWAY, FLAG_RESPONSE, ResponseCode, SerializeType
from .command import (
    FRAME_BYTES_MAX,
    INT32_MAX,
    LENGTH,
    RemotingCommand,
    check_frame_length,
    decode_payload,
    encode_frame,
)
from .errors import (
    FrameError,
    HeaderError,
    RemotingClosedError,
    RemotingTimeoutError,
    RemotingTooManyRequestsError,
)

log = logging.getLogger(__name__)

PENDING_REQUESTS_MAX = 1024
#: Frames one connection dispatches before it lets the event loop run everything else once. A
#: burst (64 producers answered by one group-commit round send again together) then does not
#: wait in one piece: the round for its first frames starts, and their answers go out, while the
#: rest is read (64 sync senders against a SYNC_FLUSH broker: 7.4-8.1k msg/s without it,
#: 8.3-11.4k with 32, alternating runs). Other connections get their turn sooner too. With the
#: broker's sends of a turn stored as one append a queue, 32: 20.4-21.1k msg/s, 30 us of broker
#: CPU a message; 16: 20.7-21.6k at 36 us; 24 splits 64 senders into rounds too small for the
#: io_uring (15.8-16.5k).
FRAMES_PER_TURN = 32
WRITE_COALESCE_BYTES = 256 * 1024

#: An answer as a command or as its frame already encoded (``encode_json_answer``, with the
#: request's opaque); None: no answer.
Answer = RemotingCommand | bytes | None
Handler = Callable[["Connection", RemotingCommand], Awaitable[RemotingCommand | None]]
#: Answers to a list of requests, in their order (None: no answer).
GroupHandler = Callable[["Connection", list[RemotingCommand]], Awaitable[list[Answer]]]


class Later(enum.Enum):
    """The answer a ``group_now`` handler gives for a request it will answer with ``reply``."""

    LATER = "later"


LATER = Later.LATER
#: A group taken at once: an answer or LATER for each request; None: not taken.
GroupNow = Callable[["Connection", list[RemotingCommand]], "list[Answer | Later] | None"]


class OpaqueCounter:
    """Request ids: 1, 2, ... wrapping before int32 overflow (the field is a Java int)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def __call__(self) -> int:
        return (next(self._counter) - 1) % INT32_MAX + 1


class Connection:
    """Made by :class:`RemotingProtocol` for each transport: frames are decoded and handed on
    in ``data_received``, with no task between the socket and the handlers."""

    def __init__(
        self,
        transport: asyncio.Transport,
        dispatch: Handler,
        *,
        next_opaque: Callable[[], int],
        frame_bytes_max: int = FRAME_BYTES_MAX,
        pending_requests_max: int = PENDING_REQUESTS_MAX,
        busy_poll: BusyPoll | None = None,
        group_dispatch: GroupHandler | None = None,
        group_codes: Collection[int] = (),
        group_now: GroupNow | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._busy_poll = busy_poll if busy_poll is not None and busy_poll.enabled else None
        self._transport = transport
        self._dispatch = dispatch
        self._group_dispatch = group_dispatch
        self._group_now = group_now
        self._drain_due = False  # answers given without a task went over the high-water mark
        self._group_codes = group_codes if group_dispatch is not None else ()
        self._group: list[RemotingCommand] = []  # requests of this read for group_dispatch
        self._in_flight = 0  # requests being handled, alone or in a group
        self._next_opaque = next_opaque
        self.frame_bytes_max = frame_bytes_max
        self.pending_requests_max = pending_requests_max
        self.frames_dispatched = 0  # frames read and handed on (requests and responses)
        self._waiting: dict[int, asyncio.Future[RemotingCommand]] = {}
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._out: list[bytes] = []  # frames waiting for the end of this turn of the loop
        self._out_bytes = 0
        self._flush_scheduled = False
        self._buf = bytearray()  # bytes read and not yet decoded: at most one partial frame and one read
        self._reading_paused = False  # by us: a turn's frames handed on, or the peer not reading answers
        self._write_paused = False  # by the transport: its buffer is over the high-water mark
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self.close_reason: str | None = None
        self._on_close: list[Callable[[Connection], None]] = []
        peer = transport.get_extra_info("peername")
        self.remote_addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def __repr__(self) -> str:
        return f"<Connection {self.remote_addr}{' closed' if self._closed else ''}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def add_close_listener(self, callback: Callable[[Connection], None]) -> None:
        self._on_close.append(callback)

    # -- reading -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Wait until the connection is closed (by either side, or for a bad frame); the
        frames are read and handed on meanwhile by the transport's callbacks."""
        await asyncio.shield(self._done)

    # Called by RemotingProtocol.

    def _received(self, data: bytes) -> None:
        """Bytes read: every whole frame in the buffer is handed on, FRAMES_PER_TURN at a time;
        past that the reading pauses and the rest waits for the next turn of the loop (a burst
        of 64 producers answered by one group-commit round sends again together: the round for
        its first frames starts, and their answers go out, while the rest waits). A length
        prefix over the frame limit closes the connection before its bytes are read."""
        if self._closed:
            return
        self._buf += data
        self._decode()

    def _decode(self) -> None:
        buf = self._buf
        pos = 0
        end = len(buf)
        turn = 0
        try:
            # Frames are decoded from views of the buffer (decoding copies the header and body
            # out), so a frame's bytes are copied once; every view is released before the buffer
            # is resized.
            with memoryview(buf) as view:
                while end - pos >= LENGTH.size and not self._closed:
                    (length,) = LENGTH.unpack_from(view, pos)
                    check_frame_length(length, self.frame_bytes_max)
                    stop = pos + LENGTH.size + length
                    if stop > end:
                        break
                    with view[pos + LENGTH.size : stop] as payload:
                        pos = stop
                        self._on_frame(payload)
                    self.frames_dispatched += 1
                    turn += 1
                    if turn == FRAMES_PER_TURN and end - pos >= LENGTH.size:
                        break
            if self._group:
                self._start_group()
        except FrameError as exc:
            self._fail(f"bad frame: {exc}")
            return
        except HeaderError as exc:
            self._fail(f"unparseable header and no recoverable opaque: {exc}")
            return
        except RemotingClosedError:
            return
        if pos:
            del buf[:pos]
        if self._closed:
            return
        if self._drain_due and self._write_paused:  # the peer is not reading its answers: neither do we, for now
            self._drain_due = False
            self._pause_reading()  # resume_writing goes on
        elif turn == FRAMES_PER_TURN and len(buf) >= LENGTH.size:
            self._pause_reading()
            self._loop.call_soon(self._next_turn)  # everything else runs once first
        else:
            self._drain_due = False
            self._resume_reading()

    def _next_turn(self) -> None:
        if not self._closed and not self._write_paused:
            self._decode()

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()

    def _writing_paused(self) -> None:
        self._write_paused = True

    def _writing_resumed(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._reading_paused and not self._closed:
            self._decode()  # what was read before the pause, then reading again

    def _eof(self) -> None:
        """The peer closed its side: what is queued still goes out, then we close too."""
        self.close(self._closed_by_peer())

    def _lost(self, exc: Exception | None) -> None:
        self._close(f"connection error: {exc}" if exc is not None else self._closed_by_peer(), transport_gone=True)

    def _closed_by_peer(self) -> str:
        return "closed by peer in the middle of a frame" if self._buf else "closed by peer"

    def _fail(self, reason: str) -> None:
        log.warning("closing %s: %s", self.remote_addr, reason)
        self.close(reason)

    def _on_frame(self, payload: bytes | memoryview) -> None:
        try:
            cmd = decode_payload(payload)
        except HeaderError as exc:
            if exc.opaque is None:
                raise
            log.warning("malformed header from %s: %s", self.remote_addr, exc)
            reply = RemotingCommand(
                code=ResponseCode.SYSTEM_ERROR,
                opaque=exc.opaque,
                flag=FLAG_RESPONSE,
                remark=f"malformed request header: {exc}",
                serialize_type=SerializeType(exc.serialize_type),
            )
            self._send_nowait(reply)
            return
        if cmd.is_response:
            future = self._waiting.pop(cmd.opaque, None)
            if future is None or future.done():
                log.info("dropping late or unmatched response opaque=%d from %s",
                         cmd.opaque, self.remote_addr)
            else:
                future.set_result(cmd)
            return
        if self._in_flight >= self.pending_requests_max:
            if not cmd.is_oneway:
                remark = (f"[OVERLOAD] {self.pending_requests_max} requests already pending "
                          "on this connection")
                self._send_nowait(cmd.make_response(ResponseCode.SYSTEM_BUSY, remark))
            return
        self._in_flight += 1
        if cmd.code in self._group_codes:
            self._group.append(cmd)
            return
        if self._group:
            self._start_group()  # the requests read before this one start before it
        self._start(self._handle(cmd))

    def _start(self, handling: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(handling)  # not asyncio.create_task: no naming step per request
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    def _start_group(self) -> None:
        group, self._group = self._group, []
        if self._group_now is not None:
            try:
                answers = self._group_now(self, group)
                if answers is not None and len(answers) != len(group):
                    raise RuntimeError(f"{len(answers)} answers to {len(group)} requests")
            except Exception as exc:
                answers = [handler_failed(self, cmd, exc) for cmd in group]
            if answers is not None:
                self._answer_group(group, answers)
                return
        self._start(self._handle_group(group))

    def _answer_group(self, cmds: list[RemotingCommand], answers: Sequence[Answer | Later]) -> None:
        """Answer each request of a group (none for LATER) in one write; past the transport's
        high-water mark the reading pauses until it drains (``_decode``)."""
        scheduled, self._flush_scheduled = self._flush_scheduled, True  # written below, not at the end of the turn
        try:
            for cmd, response in zip(cmds, answers, strict=True):
                if response is not LATER:
                    self._in_flight -= 1
                    self._answer(cmd, response)
        except RemotingClosedError:
            return
        if self._out:
            self._flush()
        else:
            self._flush_scheduled = scheduled
        self._drain_due = self._drain_due or self._write_paused

    def reply(self, cmds: list[RemotingCommand], responses: Sequence[Answer]) -> None:
        """Answer requests a ``group_now`` handler took as LATER (each exactly once), at once."""
        self._answer_group(cmds, responses)

    async def _handle(self, cmd: RemotingCommand) -> None:
        try:
            response = await self._dispatch(self, cmd)
        except Exception as exc:
            response = handler_failed(self, cmd, exc)
        finally:
            self._in_flight -= 1
        try:
            if self._answer(cmd, response):
                await self._drain()
        except RemotingClosedError:
            pass

    async def _handle_group(self, cmds: list[RemotingCommand]) -> None:
        assert self._group_dispatch is not None
        try:
            responses = await self._group_dispatch(self, cmds)
            if len(responses) != len(cmds):
                raise RuntimeError(f"{len(responses)} answers to {len(cmds)} requests")
        except Exception as exc:
            responses = [handler_failed(self, cmd, exc) for cmd in cmds]
        self._answer_group(cmds, responses)  # a batch already: out now, not after this turn

    def _answer(self, cmd: RemotingCommand, response: Answer) -> bool:
        """Queue the answer to ``cmd`` (none to a oneway request); whether the transport is
        over its high-water mark. Raises RemotingClosedError."""
        if cmd.is_oneway or response is None:
            return False
        if isinstance(response, RemotingCommand):
            response.opaque = cmd.opaque
            response.flag |= FLAG_RESPONSE
        try:
            return self._queue(response)
        except FrameError as exc:
            self._send_nowait(cmd.make_response(ResponseCode.SYSTEM_ERROR, str(exc)))
            return False

    # -- writing -----------------------------------------------------------------------------

    def _frame(self, cmd: RemotingCommand | bytes) -> bytes:
        frame = encode_frame(cmd) if isinstance(cmd, RemotingCommand) else cmd
        if len(frame) > self.frame_bytes_max:
            raise FrameError(
                f"frame of {len(frame)} bytes exceeds the limit of {self.frame_bytes_max} bytes"
            )
        if self._closed:
            raise RemotingClosedError(f"connection to {self.remote_addr} is closed")
        return frame

    def _enqueue(self, frame: bytes) -> None:
        """Queue a frame; every frame queued in one turn of the event loop goes out with one
        write at the end of it (or at once past WRITE_COALESCE_BYTES)."""
        self._out.append(frame)
        self._out_bytes += len(frame)
        if self._out_bytes >= WRITE_COALESCE_BYTES:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out, self._out_bytes = self._out, [], 0
        if self._closed or not out:
            return
        try:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        except OSError as exc:
            self.close(f"write failed: {exc}")
            return
        if self._busy_poll is not None:
            self._busy_poll.kick(self._loop)  # the answer to this write is due soon

    async def send(self, cmd: RemotingCommand) -> None:
        """Write one command; wait while the transport's buffer is over its high-water mark."""
        if self._queue(cmd):
            await self._drain()

    def _queue(self, cmd: RemotingCommand | bytes) -> bool:
        """:meth:`send` without its coroutine (the hot paths call this and drain only when it
        says so): queue the frame; whether the transport is over its high-water mark."""
        self._enqueue(self._frame(cmd))
        return self._write_paused

    async def _drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark again."""
        if self._out:
            self._flush()
        if self._write_paused and not self._closed:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._closed:
            raise RemotingClosedError(f"connection to {self.remote_addr} is closed: {self.close_reason}")

    def _send_nowait(self, cmd: RemotingCommand) -> None:
        try:
            self._enqueue(self._frame(cmd))
        except (RemotingClosedError, FrameError) as exc:
            log.info("could not answer %s: %s", self.remote_addr, exc)

    async def invoke(self, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send a request (assigning its opaque) and wait for the matching response."""
        if self._closed:
            raise RemotingClosedError(f"connection to {self.remote_addr} is closed")
        if len(self._waiting) >= self.pending_requests_max:
            raise RemotingTooManyRequestsError(
                f"{len(self._waiting)} requests already wait for {self.remote_addr}"
            )
        cmd.opaque = self._next_opaque()
        cmd.flag &= ~FLAG_RESPONSE
        loop = self._loop
        future: asyncio.Future[RemotingCommand] = loop.create_future()
        self._waiting[cmd.opaque] = future
        # A timer that fails the future, rather than asyncio.timeout: no context manager and
        # no task bookkeeping on every request (the client's send path runs this per message).
        timer = loop.call_later(timeout_s, _expire, future)
        try:
            if self._queue(cmd):
                await self._drain()
            return await future
        except _Expired:
            raise RemotingTimeoutError(
                f"no response to code {cmd.code} (opaque {cmd.opaque}) from {self.remote_addr} "
                f"within {timeout_s} s"
            ) from None
        finally:
            timer.cancel()
            self._waiting.pop(cmd.opaque, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a send that failed first leaves it unawaited

    async def invoke_oneway(self, cmd: RemotingCommand) -> None:
        cmd.opaque = self._next_opaque()
        cmd.flag = (cmd.flag | FLAG_ONEWAY) & ~FLAG_RESPONSE
        await self.send(cmd)

    # -- closing -----------------------------------------------------------------------------

    def close(self, reason: str = "closed locally") -> None:
        self._close(reason, transport_gone=False)

    def _close(self, reason: str, *, transport_gone: bool) -> None:
        if self._closed:
            return
        if self._out and not transport_gone:
            self._flush()  # answers queued before the close still go out
            if self._closed:  # the flush failed and closed us
                return
        self._closed = True
        self.close_reason = reason
        self._buf = bytearray()
        if not transport_gone:
            self._transport.close()
        error = RemotingClosedError(f"connection to {self.remote_addr} closed: {reason}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)  # _drain raises RemotingClosedError
        self._drain_waiters.clear()
        if not self._done.done():
            self._done.set_result(None)
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                log.exception("close listener failed for %s", self.remote_addr)

    async def cancel_handlers(self) -> None:
        """Stop requests still being handled (used when the whole server shuts down)."""
        tasks = list(self._handler_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RemotingProtocol(asyncio.Protocol):
    """The transport's side of a :class:`Connection`: ``make`` builds it once connected (None:
    refused, the transport is closed)."""

    def __init__(self, make: Callable[[asyncio.Transport], Connection | None]) -> None:
        self._make = make
        self.conn: Connection | None = None
        self.connected: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self._make(cast(asyncio.Transport, transport))  # uvloop's are not asyncio.Transport subclasses
        if conn is None:
            transport.close()
            if not self.connected.done():
                self.connected.set_exception(RemotingClosedError("connection refused by its maker"))
                self.connected.exception()  # retrieved: a server does not wait for it
            return
        self.conn = conn
        if not self.connected.done():
            self.connected.set_result(conn)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn._received(data)

    def eof_received(self) -> bool:
        if self.conn is not None:
            self.conn._eof()
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.conn._lost(exc)
        elif not self.connected.done():
            self.connected.set_exception(RemotingClosedError(f"connection lost before it was made: {exc}"))

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn._writing_paused()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn._writing_resumed()


def handler_failed(conn: Connection, cmd: RemotingCommand, exc: BaseException) -> RemotingCommand:
    """The SYSTEM_ERROR answer to a request whose handler raised ``exc`` (logged)."""
    log.error("handler for code %d failed on %s", cmd.code, conn.remote_addr, exc_info=exc)
    return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"handler failed: {type(exc).__name__}: {exc}")


class _Expired(Exception):
    """A request's response did not come in time (turned into RemotingTimeoutError)."""


def _expire(future: asyncio.Future[RemotingCommand]) -> None:
    if not future.done():
        future.set_exception(_Expired())
