"""ISR, high watermark and replicated acks on the leader; refused offsets; malformed frames;
restarts with the epoch cache and the high watermark."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from logstore.replication import ReplicaServer, promote
from logstore.replication import protocol as proto
from tests.replication.support import (
    ASYNC,
    SYNC,
    batch,
    follower_of,
    open_store,
    run,
    until,
    values,
)


def test_isr_shrinks_after_the_lag_time_and_rejoins_when_caught_up(tmp_path: Any) -> None:
    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        la = await a.create_log("q-0", ASYNC)
        async with ReplicaServer(a, lag_time_max_ms=400) as server:
            fb = await follower_of(b, server, 1)
            await la.append(batch(0))
            await until(lambda: server.isr("q-0") == {0, 1} and server.high_watermark("q-0") == 1)
            await fb.stop()
            r = await la.append(batch(1))
            assert server.high_watermark("q-0") == 1  # b has only offset 0, and is in sync
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await until(lambda: server.isr("q-0") == {0}, what="the ISR shrinking")
            assert loop.time() - t0 >= 0.3
            assert server.high_watermark("q-0") == 2  # the leader alone has it all
            assert await server.wait_replicated("q-0", r.last_offset + 1, min_insync=1, timeout=0.1)
            assert not await server.wait_replicated("q-0", r.last_offset + 1, min_insync=2, timeout=0.1)
            fb = await follower_of(b, server, 1)
            await until(lambda: server.isr("q-0") == {0, 1}, what="the follower rejoining")
            assert b.log("q-0").end_offset == 2
            await fb.stop()
        await a.close()
        await b.close()

    run(main)


def test_high_watermark_advances_only_when_every_isr_member_has_it(tmp_path: Any) -> None:
    async def main() -> None:
        a, b, c = [await open_store(str(tmp_path / n)) for n in "abc"]
        la = await a.create_log("q-0", SYNC)
        async with ReplicaServer(a, lag_time_max_ms=60_000) as server:
            fb = await follower_of(b, server, 1)
            fc = await follower_of(c, server, 2)
            await la.append(batch(0))
            await until(lambda: server.isr("q-0") == {0, 1, 2} and server.high_watermark("q-0") == 1)
            await fc.stop()
            r = await la.append(batch(1, 4))
            await until(lambda: server.state.positions("q-0")[1] == 5, what="b fetching past the append")
            assert server.high_watermark("q-0") == 1  # c is in sync and lacks it
            assert la.high_watermark == 1
            assert not await server.wait_replicated("q-0", r.last_offset + 1, min_insync=2, timeout=0.3)  # timeout
            assert not await server.wait_replicated("q-0", r.last_offset + 1, min_insync=4, timeout=5)  # ISR too small
            waiting = asyncio.create_task(server.wait_replicated("q-0", r.last_offset + 1, min_insync=3, timeout=10))
            await asyncio.sleep(0.1)
            assert not waiting.done()
            fc = await follower_of(c, server, 2)
            assert await waiting
            assert server.high_watermark("q-0") == 5
            await until(lambda: b.log("q-0").high_watermark == 5 and c.log("q-0").high_watermark == 5)
            await fb.stop()
            await fc.stop()
        for s in (a, b, c):
            await s.close()

    run(main)


async def _raw_call(port: int, frame: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame)
    await writer.drain()
    try:
        (n,) = struct.unpack(">I", await reader.readexactly(4))
        return await reader.readexactly(n)
    finally:
        writer.close()


def test_offsets_beyond_the_leader_end_are_refused_and_not_counted(tmp_path: Any) -> None:
    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        la = await a.create_log("q-0", ASYNC)
        for i in range(3):
            await la.append(batch(i))
        async with ReplicaServer(a) as server:
            liar = proto.FetchRequest(7, 0, 0, 1 << 20, (proto.FetchPartition("q-0", 1000, 0),))
            resp, _ = proto.decode(await _raw_call(server.port, proto.frame_bytes(proto.encode(liar, 1))))
            assert isinstance(resp, proto.FetchResponse)
            assert resp.partitions[0].error == proto.OFFSET_BEYOND_END
            assert resp.partitions[0].records == b""
            assert server.state.positions("q-0") == {}
            assert server.isr("q-0") == {0}
            assert not await server.wait_replicated("q-0", 3, min_insync=2, timeout=0.1)
            # The same for an epoch it has: still refused, never a truncation order.
            liar = proto.FetchRequest(7, 0, 0, 1 << 20, (proto.FetchPartition("q-0", 1000, -1),))
            resp, _ = proto.decode(await _raw_call(server.port, proto.frame_bytes(proto.encode(liar, 2))))
            assert isinstance(resp, proto.FetchResponse) and resp.partitions[0].error == proto.OFFSET_BEYOND_END
        await a.close()

    run(main)


def test_malformed_frames_get_an_error_and_the_server_keeps_serving(tmp_path: Any) -> None:
    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        la = await a.create_log("q-0", ASYNC)
        await la.append(batch(0))
        async with ReplicaServer(a) as server:
            fb = await follower_of(b, server, 1)
            bad = [
                struct.pack(">IBI", 5, 99, 1),  # unknown kind
                struct.pack(">IBI", 7, proto.FETCH_REQUEST, 1) + b"\x00\x01",  # truncated body
                struct.pack(">IBI", 5, proto.FETCH_RESPONSE, 1)[:4] + b"\x04" + b"\x00" * 4,  # not a request
                proto.frame_bytes(proto.encode(proto.ListRequest(1, 0), 3)) [:-1] + b"",  # short
            ]
            for frame in bad[:3]:
                raw = await _raw_call(server.port, frame)
                resp, _ = proto.decode(raw)
                assert isinstance(resp, proto.ErrorResponse) and resp.error == proto.MALFORMED
            # a frame above the request limit: an error answer, then the connection closes
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(struct.pack(">I", 1 << 30))
            await writer.drain()
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            resp, _ = proto.decode(await reader.readexactly(n))
            assert isinstance(resp, proto.ErrorResponse)
            assert await reader.read() == b""
            writer.close()
            assert server.malformed_frames == 4
            await la.append(batch(1))
            await until(lambda: b.log("q-0").end_offset == 2)
            await fb.stop()
        assert values(a, "q-0") == values(b, "q-0")
        await a.close()
        await b.close()

    run(main)


def test_epoch_cache_and_high_watermark_survive_restarts(tmp_path: Any) -> None:
    async def main() -> None:
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        await promote(a)
        la = await a.create_log("q-0", SYNC)
        for i in range(5):
            await la.append(batch(i))
        await promote(a)
        for i in range(5, 8):
            await la.append(batch(i))
        server = ReplicaServer(a)
        await server.start()
        fb = await follower_of(b, server, 1)
        await until(lambda: "q-0" in b.logs and b.log("q-0").end_offset == 8 and server.high_watermark("q-0") == 8)
        await until(lambda: b.log("q-0").high_watermark == 8)
        await fb.stop()
        await server.stop()
        await a.close()
        await b.close()
        # restart both: caches, epochs and high watermarks are back
        a = await open_store(str(tmp_path / "a"))
        b = await open_store(str(tmp_path / "b"))
        for s in (a, b):
            assert s.leader_epoch == 2
            assert s.log("q-0").epochs.entries() == [(1, 0), (2, 5)]
            assert s.log("q-0").high_watermark == 8
        async with ReplicaServer(a) as server:
            fb = await follower_of(b, server, 1)
            await a.log("q-0").append(batch(8))
            await until(lambda: b.log("q-0").end_offset == 9)
            assert fb.truncations == 0
            await fb.stop()
        assert values(a, "q-0") == values(b, "q-0")
        await a.close()
        await b.close()

    run(main)
