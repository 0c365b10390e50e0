"""Test helpers: a raw TCP peer for hand-made bytes and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib

from adapters.rocket.remoting.command import LENGTH, RemotingCommand, decode_payload


class RawPeer:
    """A bare TCP connection for sending hand-made (often malformed) bytes to a server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_command(self, timeout_s: float = 5.0) -> RemotingCommand:
        prefix = await asyncio.wait_for(self.reader.readexactly(LENGTH.size), timeout_s)
        (length,) = LENGTH.unpack(prefix)
        payload = await asyncio.wait_for(self.reader.readexactly(length), timeout_s)
        return decode_payload(payload)

    async def closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        """True if the server closes the connection (EOF or reset) without sending anything."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout_s)
        except ConnectionResetError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class FakeClock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
