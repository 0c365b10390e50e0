"""The replica protocol codec round-trips, and mutated frames against a serving leader get an
answer or a closed connection: never an exception out of the server, never a change to the
store."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from logstore import SimIO, Store
from logstore.replication import ReplicaServer
from logstore.replication import protocol as proto
from logstore.replication.transport import Connection, ConnectionClosed
from tests.replication.support import ASYNC, batch, run


def test_round_trips() -> None:
    messages: list[proto.Message] = [
        proto.FetchRequest(3, 7, 500, 1 << 20, (proto.FetchPartition("a-0", 12, 6), proto.FetchPartition("é", 0, -1))),
        proto.FetchResponse(0, 7, [proto.PartitionData("a-0", 0, 10, 0, 12, -1, -1, b"xyz"),
                                   proto.PartitionData("b", 3, -1, -1, -1, 5, 9, b"")], catalog_version=4),
        proto.ListRequest(1, 2),
        proto.ListResponse(0, 2, [proto.LogInfo("a-0", b"{}", 0, 5)]),
        proto.ErrorResponse(proto.MALFORMED, "bad"),
    ]
    for i, m in enumerate(messages):
        raw = proto.frame_bytes(proto.encode(m, i))
        back, cid = proto.decode(raw[4:])
        assert cid == i
        if isinstance(m, proto.FetchResponse):
            assert isinstance(back, proto.FetchResponse)
            assert [bytes(p.records) for p in back.partitions] == [b"xyz", b""]  # type: ignore[arg-type]
            assert back.catalog_version == 4
        else:
            assert back == m


class _Scripted(Connection):
    """Delivers given frames, records answers, then reports the end of the stream."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.answers: list[bytes] = []
        self.closed = False

    async def send(self, parts: Sequence[proto.Part]) -> None:
        self.answers.append(proto.frame_bytes(parts))

    async def receive(self) -> bytes:
        if not self.frames:
            raise ConnectionClosed("end of script")
        return self.frames.pop(0)

    async def close(self) -> None:
        self.closed = True


def test_mutated_frames_never_break_the_server_or_the_store() -> None:
    async def main() -> None:
        store = await Store.open("/store", io=SimIO(seed=5))
        log = await store.create_log("a-0", ASYNC)
        for i in range(5):
            await log.append(batch(i))
        server = ReplicaServer(store, fetch_wait_max_ms=20)
        good = [
            proto.frame_bytes(proto.encode(proto.FetchRequest(1, 0, 0, 1 << 16, (proto.FetchPartition("a-0", 2, 0),)), 1))[4:],
            proto.frame_bytes(proto.encode(proto.ListRequest(1, 0), 2))[4:],
        ]
        rng = random.Random(1234)
        answered = closed = 0
        for _ in range(3000):
            frame = bytearray(rng.choice(good))
            for _m in range(rng.randint(1, 4)):
                op = rng.randrange(3)
                if op == 0 and frame:
                    frame[rng.randrange(len(frame))] = rng.randrange(256)
                elif op == 1:
                    del frame[rng.randrange(len(frame) + 1):]
                else:
                    frame += rng.randbytes(rng.randint(1, 8))
            conn = _Scripted([bytes(frame)])
            await asyncio.wait_for(server.serve_connection(conn), 5)
            assert conn.closed
            for raw in conn.answers:
                proto.decode(raw[4:])  # every answer is itself well-formed
            answered += bool(conn.answers)
            closed += 1
        assert log.end_offset == 5 and log.log_start_offset == 0
        assert [r.offset for r in log.read_records(0)] == [0, 1, 2, 3, 4]
        assert answered == closed == 3000
        assert server.malformed_frames > 1000
        await server.stop()
        await store.close()

    run(main)
