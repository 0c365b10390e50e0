"""remoting/blocking.py against a real RemotingServer: a channel per thread for one request
at a time, reused when it ended well, closed when it did not."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from adapters.rocket.remoting import (
    Connection,
    FrameError,
    RemotingClosedError,
    RemotingCommand,
    RemotingServer,
    ResponseCode,
)
from adapters.rocket.remoting.blocking import BlockingPool
from adapters.rocket.remoting.errors import RemotingConnectError, RemotingTimeoutError

pytestmark = pytest.mark.anyio

ECHO, SLOW, ASKS_BACK = 1001, 1002, 1003


async def echo(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    return cmd.make_response(ResponseCode.SUCCESS, ext_fields=cmd.ext_fields, body=cmd.body)


async def slow(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    await asyncio.sleep(float(cmd.ext_fields["sleep"]))
    return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"late": "yes"})


async def asks_back(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
    """Sends the client a request of its own before answering (as a broker may)."""
    back = await conn.invoke(RemotingCommand.request(4242, {"q": "?"}), 5.0)
    return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"back": str(back.code)})


async def test_requests_answered_reused_timed_out_and_asked_back() -> None:
    server = RemotingServer("127.0.0.1", 0)
    server.register(ECHO, echo)
    server.register(SLOW, slow)
    server.register(ASKS_BACK, asks_back)
    async with server:
        pool = BlockingPool(idle_max=1)

        def run() -> None:
            first = pool.invoke(server.address, RemotingCommand.request(ECHO, {"n": 1}, b"body"), 5.0)
            assert (first.code, first.ext_fields, first.body) == (ResponseCode.SUCCESS, {"n": "1"}, b"body")
            (channel,) = pool._idle[server.address]
            second = pool.invoke(server.address, RemotingCommand.request(ECHO, {"n": 2}), 5.0)
            assert second.ext_fields == {"n": "2"} and pool._idle[server.address] == [channel]  # the same one
            with pytest.raises(RemotingTimeoutError):
                pool.invoke(server.address, RemotingCommand.request(SLOW, {"sleep": 0.5}), 0.1)
            assert channel.closed and pool._idle[server.address] == []  # its late answer is never read
            back = pool.invoke(server.address, RemotingCommand.request(ASKS_BACK), 5.0)
            assert back.ext_fields == {"back": str(int(ResponseCode.REQUEST_CODE_NOT_SUPPORTED))}
            with pytest.raises(FrameError):
                pool.invoke(server.address, RemotingCommand.request(ECHO, body=bytes(17 * 1024 * 1024)), 5.0)
            assert pool.invoke(server.address, RemotingCommand.request(ECHO, {"n": 3}), 5.0).ext_fields == {"n": "3"}
            pool.close()
            with pytest.raises(RemotingClosedError):
                pool.invoke(server.address, RemotingCommand.request(ECHO), 5.0)

        await asyncio.to_thread(run)


async def test_a_refused_connection_and_a_peer_that_hangs_up() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    pool = BlockingPool(connect_timeout_s=1.0)
    with pytest.raises(RemotingConnectError):
        await asyncio.to_thread(pool.invoke, f"127.0.0.1:{port}", RemotingCommand.request(ECHO), 1.0)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    async with server:
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        with pytest.raises(RemotingClosedError):
            await asyncio.to_thread(pool.invoke, addr, RemotingCommand.request(ECHO), 2.0)
    pool.close()


async def test_an_answer_trickling_in_still_times_out_at_the_deadline() -> None:
    """Each read waits at most the time left (the kernel's SO_RCVTIMEO, set again as it shrinks):
    a peer sending its answer a byte at a time, then nothing, cannot hold the caller past the
    deadline."""
    stop, done = asyncio.Event(), asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1)
            writer.write((1000).to_bytes(4, "big"))  # a frame of 1,000 bytes, never finished
            for _ in range(4):  # for 0.2 s, then silence: the last read must wait only what is left
                writer.write(b"x")
                await asyncio.sleep(0.05)
            await stop.wait()
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    async with server:
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = BlockingPool()

        def call() -> float:
            start = time.monotonic()
            with pytest.raises(RemotingTimeoutError):
                pool.invoke(addr, RemotingCommand.request(ECHO), 0.3)
            return time.monotonic() - start

        elapsed = await asyncio.to_thread(call)
        stop.set()
        await done.wait()
        pool.close()
    assert 0.3 <= elapsed < 0.45
