"""Leader and followers over real TCP on 127.0.0.1 (free ports)."""

from __future__ import annotations

import asyncio
from typing import Any

from logstore.replication import ReplicaServer
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


def test_follower_catches_up_a_backlog_and_follows_live_appends(tmp_path: Any) -> None:
    async def main() -> None:
        leader = await open_store(str(tmp_path / "leader"))
        a = await leader.create_log("a-0", SYNC)
        b = await leader.create_log("b-0", ASYNC)
        for i in range(0, 600, 3):
            await a.append(batch(i, 3))
            await b.append(batch(i, 3, size=300))
        server = ReplicaServer(leader, "127.0.0.1", 0)
        await server.start()
        replica = await open_store(str(tmp_path / "replica"))
        # a long LIST interval: the new log below is found through the catalog version
        f = await follower_of(replica, server, 1, fetch_max_bytes=64 * 1024, list_interval_ms=600_000)
        await until(lambda: "b-0" in replica.logs and replica.log("b-0").end_offset == 600 and replica.log("a-0").end_offset == 600)
        assert replica.log("a-0").config.flush == "sync"
        for i in range(600, 700):
            await a.append(batch(i))
        await until(lambda: replica.log("a-0").end_offset == 700)
        c = await leader.create_log("c-0", ASYNC)
        await c.append(batch(0, 5))
        await until(lambda: "c-0" in replica.logs and replica.log("c-0").end_offset == 5)
        for name in ("a-0", "b-0", "c-0"):
            assert values(replica, name) == values(leader, name)
        assert server.sendfile_bytes > 100_000  # the backlog of b-0 went by sendfile
        assert server.isr("a-0") == {0, 1}
        await until(lambda: replica.log("a-0").high_watermark == 700, what="follower's high watermark")
        assert server.high_watermark("a-0") == 700
        await f.stop()
        await server.stop()
        await replica.close()
        await leader.close()

    run(main)


def test_long_poll_is_woken_by_an_append(tmp_path: Any) -> None:
    async def main() -> None:
        leader = await open_store(str(tmp_path / "leader"))
        a = await leader.create_log("a-0", ASYNC)
        async with ReplicaServer(leader) as server:
            replica = await open_store(str(tmp_path / "replica"))
            f = await follower_of(replica, server, 1, fetch_max_wait_ms=5_000)
            await until(lambda: "a-0" in replica.logs)
            await asyncio.sleep(0.2)  # the follower now waits in a long poll
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await a.append(batch(0))
            await until(lambda: replica.log("a-0").end_offset == 1)
            assert loop.time() - t0 < 1.0
            await f.stop()
            await replica.close()
        await leader.close()

    run(main)


def test_a_follower_behind_the_leader_log_start_starts_over_there(tmp_path: Any) -> None:
    async def main() -> None:
        leader = await open_store(str(tmp_path / "leader"))
        a = await leader.create_log("a-0", ASYNC)
        for i in range(10):
            await a.append(batch(i))
        async with ReplicaServer(leader) as server:
            old = await open_store(str(tmp_path / "old"))
            f = await follower_of(old, server, 1)
            await until(lambda: old.log("a-0").end_offset == 10)
            await f.stop()
            for i in range(10, 20):
                await a.append(batch(i))
            await a.delete_records_before(15)
            new = await open_store(str(tmp_path / "new"))
            f2 = await follower_of(new, server, 2)
            await until(lambda: new.log("a-0").end_offset == 20)
            assert new.log("a-0").log_start_offset == 15
            held = old.log("a-0")  # as the broker's queue table holds it
            f = await follower_of(old, server, 1)
            await until(lambda: held.end_offset == 20 and held.log_start_offset == 15)
            assert f.truncations == 1 and old.log("a-0") is held  # started over in place
            for s in (old, new):
                assert values(s, "a-0") == values(leader, "a-0")
            await f.stop()
            await f2.stop()
            await old.close()
            await new.close()
        await leader.close()

    run(main)


def test_a_follower_with_a_fail_stopped_log_stops_and_says_why(tmp_path: Any) -> None:
    async def main() -> None:
        from logstore import SimIO, Store

        leader = await open_store(str(tmp_path / "leader"))
        a = await leader.create_log("a-0", SYNC)
        await a.append(batch(0))
        io = SimIO(seed=3)
        replica = await Store.open("/store", io=io)
        async with ReplicaServer(leader) as server:
            f = await follower_of(replica, server, 1)
            await until(lambda: replica.log("a-0").end_offset == 1)
            io.fail_fsync(True)
            await a.append(batch(1))
            await until(lambda: not f.running, what="the follower stopping")
            assert f.failure is not None and "fsync" in str(f.failure)
            await f.stop()
            assert server.isr("a-0") == {0, 1}  # until the lag time: it reported offset 1, never 2
            assert server.high_watermark("a-0") == 1
        io.clear_faults()
        await replica.close()
        await leader.close()

    run(main)
