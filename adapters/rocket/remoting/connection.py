"""One remoting connection, the same on the server and the client side.

Either peer may send requests over a connection, so both sides need the same machinery: a read
loop that tells responses (flag bit 0) from requests, a table of futures waiting for responses
keyed by opaque, and concurrent request handling whose responses may go out in any order.

Requests whose code is in ``group_codes`` are handed on together: those of one read (at most
FRAMES_PER_TURN) go to ``group_dispatch`` as one list, in one task, which answers each of them
(the broker's send path stores a read's sends to one queue as one append). A request of any
other code hands on the group read before it first, so requests start in the order they came.
``group_now``, if given, sees the list first, on the reading task with no task of its own: it
may take the whole group (answering each request now, or ``LATER`` through :meth:`Connection.reply`)
or decline it (None: then ``group_dispatch`` takes it).

Limits: a frame is at most ``frame_bytes_max`` bytes (the read buffer never holds more than one
frame), at most ``pending_requests_max`` incoming requests are handled at once (more are
answered SYSTEM_BUSY, so responses to our own requests are always still read), and at most
``pending_requests_max`` of our requests wait for responses.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import Any

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
READ_CHUNK = 256 * 1024
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
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
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
        self._reader = reader
        self._writer = writer
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
        self._closed = False
        self.close_reason: str | None = None
        self._on_close: list[Callable[[Connection], None]] = []
        peer = writer.get_extra_info("peername")
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
        """Read and dispatch frames until the peer goes away or the stream is unusable.

        Reads come in chunks of up to READ_CHUNK bytes and every whole frame in the buffer is
        dispatched before the next read (one wake-up for many small frames), letting the loop
        run everything else once after every FRAMES_PER_TURN of them. The buffer holds
        at most one partial frame plus one chunk; a length prefix over the frame limit closes
        the connection before its bytes are read."""
        reason = "closed by peer"
        buf = bytearray()
        turn = 0
        try:
            while not self._closed:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    if buf:
                        reason = "closed by peer in the middle of a frame"
                    break
                buf += data
                pos = 0
                end = len(buf)
                # Frames are decoded from views of the buffer (decoding copies the header and
                # body out), so a frame's bytes are copied once; every view is released before
                # the buffer is resized.
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
                        if turn == FRAMES_PER_TURN:
                            turn = 0
                            if self._group:
                                self._start_group()
                            if self._drain_due:
                                self._drain_due = False
                                await self._drain()
                            else:
                                await asyncio.sleep(0)
                if self._group:
                    self._start_group()
                if pos:
                    del buf[:pos]
                if self._drain_due:  # the peer is not reading its answers: neither do we, for now
                    self._drain_due = False
                    await self._drain()
        except FrameError as exc:
            reason = f"bad frame: {exc}"
            log.warning("closing %s: %s", self.remote_addr, reason)
        except HeaderError as exc:
            reason = f"unparseable header and no recoverable opaque: {exc}"
            log.warning("closing %s: %s", self.remote_addr, reason)
        except OSError as exc:
            reason = f"connection error: {exc}"
        except RemotingClosedError as exc:
            reason = str(exc)
        finally:
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
        high-water mark the reading pauses until it drains (``run``)."""
        over = False
        try:
            for cmd, response in zip(cmds, answers, strict=True):
                if response is not LATER:
                    self._in_flight -= 1
                    over = self._answer(cmd, response) or over
        except RemotingClosedError:
            return
        if self._out:
            self._flush()
        self._drain_due = self._drain_due or over

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
            self._writer.write(out[0] if len(out) == 1 else b"".join(out))
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
        transport = self._writer.transport
        return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except OSError as exc:
            self.close(f"write failed: {exc}")
            raise RemotingClosedError(f"connection to {self.remote_addr} failed: {exc}") from exc

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
        if self._closed:
            return
        if self._out:
            self._flush()  # answers queued before the close still go out
            if self._closed:  # the flush failed and closed us
                return
        self._closed = True
        self.close_reason = reason
        self._writer.close()
        error = RemotingClosedError(f"connection to {self.remote_addr} closed: {reason}")
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
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


def handler_failed(conn: Connection, cmd: RemotingCommand, exc: BaseException) -> RemotingCommand:
    """The SYSTEM_ERROR answer to a request whose handler raised ``exc`` (logged)."""
    log.error("handler for code %d failed on %s", cmd.code, conn.remote_addr, exc_info=exc)
    return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"handler failed: {type(exc).__name__}: {exc}")


class _Expired(Exception):
    """A request's response did not come in time (turned into RemotingTimeoutError)."""


def _expire(future: asyncio.Future[RemotingCommand]) -> None:
    if not future.done():
        future.set_exception(_Expired())
