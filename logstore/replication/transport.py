"""The transport seam: the fetch protocol runs over a :class:`Connection`, whatever carries it.

:class:`StreamConnection` is TCP (asyncio streams); ``logstore.replication.simnet`` is an
in-memory network with faults for the replication simulation. Both carry whole frames
(``protocol.py``): ``send`` takes the buffers of one frame, ``receive`` returns the bytes after
its length field, refusing a frame longer than the connection's limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from logstore.errors import ProtocolError
from logstore.io import Buffer
from logstore.log import Region
from logstore.replication import protocol as proto

SENDFILE_BYTES_MIN = 8 * 1024  # smaller regions are cheaper to copy than to drain the buffer for


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (or the network dropped it)."""


class Connection(ABC):
    """One ordered, reliable stream of frames between two nodes."""

    peer: str = "?"

    @abstractmethod
    async def send(self, parts: Sequence[proto.Part]) -> None:
        """Write one frame (given as parts, length prefix included). File regions may go by
        sendfile; a transport that cannot, reads them (``protocol.materialize``)."""

    @abstractmethod
    async def receive(self) -> bytes:
        """The next frame after its length field. Raises ConnectionClosed at the end of the
        stream and ProtocolError for a frame over the limit (the stream is then unusable)."""

    @abstractmethod
    async def close(self) -> None: ...


#: How a follower reaches its leader (TCP by default; the simulation passes its own).
Connector = Callable[[], Awaitable[Connection]]


class StreamConnection(Connection):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frame_bytes_max: int) -> None:
        self._reader = reader
        self._writer = writer
        self.frame_bytes_max = frame_bytes_max
        self.sendfile_ok = True
        self.sendfile_bytes = 0  # record bytes that went by sendfile (tests, metrics)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def send(self, parts: Sequence[proto.Part]) -> None:
        if self._writer.is_closing():
            raise ConnectionClosed(f"connection to {self.peer} is closed")
        pending: list[Buffer] = []
        for part in parts:
            if isinstance(part, Region) and part.length >= SENDFILE_BYTES_MIN and self.sendfile_ok:
                self._writer.writelines(pending)
                pending = []
                await self._writer.drain()
                if await self._sendfile(part):
                    continue
            pending.append(proto.materialize(part))
        self._writer.writelines(pending)
        await self._writer.drain()

    async def _sendfile(self, region: Region) -> bool:
        """Send a region from the page cache with sendfile; False when this loop or file
        cannot (uvloop, simulated files): the caller copies it instead."""
        try:
            fd = region.file.fileno()
        except OSError:
            return False
        loop = asyncio.get_running_loop()
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
            try:
                sent = await loop.sendfile(self._writer.transport, f, region.position, region.length, fallback=False)
            except (NotImplementedError, AttributeError, RuntimeError):
                self.sendfile_ok = False  # e.g. uvloop: copy from now on
                return False
            except OSError as exc:
                raise ConnectionClosed(f"sendfile to {self.peer} failed: {exc}") from exc
        if sent != region.length:
            raise ConnectionClosed(f"sendfile to {self.peer} sent {sent} of {region.length} bytes")
        self.sendfile_bytes += sent
        return True

    async def receive(self) -> bytes:
        try:
            head = await self._reader.readexactly(proto.FRAME_LENGTH.size)
            (length,) = proto.FRAME_LENGTH.unpack(head)
            if length < proto.FRAME_HEAD_BYTES or length > self.frame_bytes_max:
                raise ProtocolError(f"frame of {length} bytes (limit {self.frame_bytes_max})")
            return await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise ConnectionClosed(f"{self.peer} closed the connection") from exc
        except ConnectionError as exc:
            raise ConnectionClosed(f"connection to {self.peer} failed: {exc}") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def tcp_connector(host: str, port: int, frame_bytes_max: int, timeout_s: float = 5.0) -> Connector:
    async def connect() -> Connection:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
        return StreamConnection(reader, writer, frame_bytes_max)

    return connect
