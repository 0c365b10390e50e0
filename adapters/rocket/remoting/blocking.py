"""Blocking request/response over plain sockets, for callers that are not on an event loop.

The synchronous client facade (``DefaultMQProducer.send``) is called from ordinary threads.
Handing each call to the client's event loop thread and waiting for it costs two thread
switches and the loop's own wake-ups; a one-at-a-time sender then spends more time in the
client than the broker spends storing the message. A ``BlockingPool`` instead lends the calling
thread a connection of its own for the length of one request: the request is written and its
answer read on the caller's thread, with socket timeouts for the deadline.

A channel carries one request at a time, so the answer is the next response frame with the
request's opaque. A request the peer sends over the channel is answered
REQUEST_CODE_NOT_SUPPORTED (the broker sends its requests to the client's event loop
connection, which registered with it); a response with another opaque (none is expected) is
skipped. A channel whose request failed or timed out is closed, never reused: a late answer
must not be read as the next request's. Limits: frames as on every connection
(``frame_bytes_max``), idle channels kept per address (``idle_max``), each read at most
``READ_CHUNK`` bytes.

The socket stays in blocking mode and the deadline is the kernel's (``SO_RCVTIMEO`` and
``SO_SNDTIMEO``, set only when the time left changes by a millisecond or more), and reads go
into one buffer kept per channel. A socket with a Python timeout would instead cost every
request two mode switches, a poll before each send and read, and a fresh 256 KiB read buffer
(mapped and unmapped each time): 10 system calls where these take 2.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time

from .client import CONNECT_TIMEOUT_S, split_addr
from .codes import FLAG_RESPONSE, ResponseCode
from .command import (
    FRAME_BYTES_MAX,
    LENGTH,
    RemotingCommand,
    check_frame_length,
    decode_payload,
    encode_frame,
)
from .connection import OpaqueCounter
from .errors import FrameError, RemotingClosedError, RemotingConnectError, RemotingTimeoutError

READ_CHUNK = 256 * 1024
IDLE_MAX = 16
_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds


class BlockingChannel:
    """One connection, one request at a time, owned by one thread while it is lent out."""

    def __init__(self, addr: str, *, connect_timeout_s: float, frame_bytes_max: int,
                 next_opaque: OpaqueCounter) -> None:
        self.addr = addr
        self.frame_bytes_max = frame_bytes_max
        self._next_opaque = next_opaque
        self._buf = bytearray()
        self._chunk = memoryview(bytearray(READ_CHUNK))
        self._timeout_ms = 0  # what SO_RCVTIMEO and SO_SNDTIMEO are set to (0: none yet)
        try:
            self._sock = socket.create_connection(split_addr(addr), timeout=connect_timeout_s)
        except OSError as exc:
            raise RemotingConnectError(f"cannot connect to {addr}: {exc or 'timed out'}") from exc
        self.closed = False
        try:
            self._sock.settimeout(None)  # blocking: the kernel keeps the deadline (_deadline_in)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            self.close()
            raise RemotingConnectError(f"cannot set up the connection to {addr}: {exc}") from exc

    def invoke(self, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
        """Send ``cmd`` (assigning its opaque) and return its response. Raises
        RemotingTimeoutError, RemotingClosedError or FrameError; the channel is then closed."""
        cmd.opaque = self._next_opaque()
        cmd.flag &= ~FLAG_RESPONSE
        deadline = time.monotonic() + timeout_s
        try:
            frame = encode_frame(cmd)
            if len(frame) > self.frame_bytes_max:
                raise FrameError(f"frame of {len(frame)} bytes exceeds the limit of {self.frame_bytes_max} bytes")
            self._deadline_in(timeout_s)
            self._sock.sendall(frame)
            while True:
                got = self._read_command(deadline)
                if got.is_response:
                    if got.opaque == cmd.opaque:
                        return got
                elif not got.is_oneway:
                    answer = got.make_response(ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                                               f"request type {got.code} not supported on this connection")
                    self._sock.sendall(encode_frame(answer))
        except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO or SO_SNDTIMEO ran out
            self.close()
            raise RemotingTimeoutError(f"no response to code {cmd.code} (opaque {cmd.opaque}) from {self.addr} "
                                       f"within {timeout_s} s") from None
        except OSError as exc:
            self.close()
            raise RemotingClosedError(f"connection to {self.addr} failed: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _read_command(self, deadline: float) -> RemotingCommand:
        buf = self._buf
        while True:
            if len(buf) >= LENGTH.size:
                (length,) = LENGTH.unpack_from(buf)
                check_frame_length(length, self.frame_bytes_max)
                end = LENGTH.size + length
                if len(buf) >= end:
                    with memoryview(buf) as view, view[LENGTH.size:end] as payload:
                        got = decode_payload(payload)
                    del buf[:end]
                    return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._deadline_in(left)
            n = self._sock.recv_into(self._chunk)
            if not n:
                raise RemotingClosedError(f"connection to {self.addr} closed by peer")
            buf += self._chunk[:n]

    def _deadline_in(self, seconds: float) -> None:
        """Let each blocking send or read wait at most ``seconds`` (rounded up to a millisecond;
        not set again while that is what is set, so a request usually costs no call here)."""
        ms = max(1, math.ceil(seconds * 1000))
        if ms != self._timeout_ms:
            tv = _TIMEVAL.pack(ms // 1000, ms % 1000 * 1000)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            self._timeout_ms = ms

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._sock.close()


class BlockingPool:
    """Channels by address, lent to one thread per request (any number of threads at once)."""

    def __init__(self, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, frame_bytes_max: int = FRAME_BYTES_MAX,
                 idle_max: int = IDLE_MAX) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.frame_bytes_max = frame_bytes_max
        self.idle_max = idle_max
        self._idle: dict[str, list[BlockingChannel]] = {}
        self._lock = threading.Lock()
        self._next_opaque = OpaqueCounter()
        self._closed = False

    def invoke(self, addr: str, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
        channel = self._take(addr)
        response = channel.invoke(cmd, timeout_s)  # closes the channel if it raises
        self._give(channel)
        return response

    def _take(self, addr: str) -> BlockingChannel:
        with self._lock:
            if self._closed:
                raise RemotingClosedError("blocking remoting pool is closed")
            idle = self._idle.get(addr)
            if idle:
                return idle.pop()
        return BlockingChannel(addr, connect_timeout_s=self.connect_timeout_s, frame_bytes_max=self.frame_bytes_max,
                               next_opaque=self._next_opaque)

    def _give(self, channel: BlockingChannel) -> None:
        with self._lock:
            idle = self._idle.setdefault(channel.addr, [])
            if not self._closed and len(idle) < self.idle_max:
                idle.append(channel)
                return
        channel.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for channel in channels:
            channel.close()
