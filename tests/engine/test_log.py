"""Append, read, roll, timestamps, waiters, truncate, retention: on real and simulated IO."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from conftest import SMALL, SMALL_SYNC, Env, batch, run

from logstore import LogConfig, RealIO, SimClock
from logstore.errors import (
    BatchTooLargeError,
    InvalidBatchError,
    InvalidNameError,
    LogExistsError,
    OffsetOutOfRangeError,
)


def test_append_assigns_dense_offsets_and_reads_back(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        for cfg in (SMALL, SMALL_SYNC):
            log = await store.create_log(f"q-{cfg.flush}", cfg)
            offsets = [(await log.append(batch(i * 3, 3))).base_offset for i in range(40)]
            assert offsets == list(range(0, 120, 3))
            assert len(log.segments) > 1  # rolled by size
            recs = log.read_records(0, 1 << 20)
            got = []
            off = 0
            while off < log.committed_offset:
                got += log.read_records(off, 300)
                off = got[-1].offset + 1
            assert [r.offset for r in got] == list(range(120))
            assert [r.value for r in got][:2] == [r.value for r in recs][:2]
            assert got[77].key == b"k77" and got[77].headers == (("n", b"77"),)
            # a read from the middle of a batch skips the records before it
            assert [r.offset for r in log.read_records(4, 100)][0] == 4
        await store.close()

    run(body)


def test_reads_at_and_past_the_end(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        await log.append(batch(0, 2))
        assert log.read(2).regions == () and log.read(2).next_offset == 2
        with pytest.raises(OffsetOutOfRangeError, match="outside"):
            log.read(3)
        with pytest.raises(OffsetOutOfRangeError):
            log.read(-1)
        await store.close()

    run(body)


def test_read_regions_are_whole_batches_within_max_bytes(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1 << 20, index_interval_bytes=100))
        for i in range(50):
            await log.append(batch(i, 1, size=100))
        five = sum(len(batch(i, 1, size=100)) for i in range(10, 15))
        res = log.read(10, five)
        assert res.first_offset == 10 and res.next_offset == 15 and res.nbytes == five
        assert log.read(10, five - 1).next_offset == 14
        res = log.read(10, 1)  # at least one batch, whatever max_bytes says
        assert res.next_offset == 11
        await store.close()

    run(body)


def test_sendfile_region(tmp_path: object) -> None:
    """Real IO only: sendfile needs a descriptor (the simulated IO refuses it, tested below)."""
    env = Env(RealIO(), os.path.join(str(tmp_path), "s"), SimClock(), "real")

    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(5):
            await log.append(batch(i, 1))
        res = log.read(0)
        a, b = socket.socketpair()
        try:
            (region,) = res.regions
            sent = env.io.sendfile(a.fileno(), region.file, region.position, region.length)
            assert sent == region.length
            assert b.recv(1 << 16) == res.data()
        finally:
            a.close()
            b.close()
        await store.close()

    run(body)


def test_roll_by_age_and_time_lookup(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_ms=1000, index_interval_bytes=64))
        for i in range(10):
            await log.append(batch(i, 1, ts=env.clock.now_ms()))
            env.clock.advance(400)
        assert len(log.segments) >= 3
        t0 = 1_000 + env.clock.now_ms() - 4000
        assert log.offset_for_timestamp(0) == 0
        assert log.offset_for_timestamp(t0 + 5 * 400) is not None
        off = log.offset_for_timestamp(env.clock.now_ms() - 4000 + 1_000 + 5)
        assert off is not None and [r.timestamp_ms for r in log.read_records(off, 100)][0] >= env.clock.now_ms() - 4000 + 1_005
        assert log.offset_for_timestamp(10**15) is None
        await store.close()

    run(body)


def test_waiters_wake_on_append_and_time_out(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        for cfg in (SMALL, SMALL_SYNC):
            log = await store.create_log("w-" + cfg.flush, cfg)
            assert await log.wait_for(0, 0.01) is False
            waiter = asyncio.create_task(log.wait_for(0, 5))
            await asyncio.sleep(0.01)
            assert not waiter.done()
            await log.append(batch(0))
            assert await asyncio.wait_for(waiter, 1) is True
        await store.close()

    run(body)


def test_truncate_to(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL_SYNC)
        for i in range(0, 60, 2):
            await log.append(batch(i, 2))
        before = log.describe()
        with pytest.raises(OffsetOutOfRangeError):
            await log.truncate_to(61)
        assert log.describe() == before  # nothing changed
        assert await log.truncate_to(31) == 30  # the batch holding 31 goes whole
        assert log.end_offset == log.committed_offset == 30
        assert (await log.append(batch(100))).base_offset == 30
        await store.close()
        store = await env.open()
        log = store.log("q")
        assert log.end_offset == 31
        assert [r.value[:7] for r in log.read_records(29, 1 << 20)] == [b"v000029", b"v000100"]
        await store.close()

    run(body)


def test_retention_and_delete_records_before(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1024, retention_bytes=3000, retention_ms=-1))
        for i in range(100):
            await log.append(batch(i, 1, ts=env.clock.now_ms()))
        assert await log.apply_retention() > 0
        assert log.size_bytes() <= 3000 + 1024
        start = log.log_start_offset
        assert start > 0 and log.segments[0].base_offset == start
        with pytest.raises(OffsetOutOfRangeError):
            log.read(start - 1)
        assert log.read_records(start, 100)[0].offset == start
        assert await log.delete_records_before(start + 3) == start + 3
        with pytest.raises(OffsetOutOfRangeError):
            await log.delete_records_before(10_000)
        await store.close()
        store = await env.open()
        assert store.log("q").log_start_offset == start + 3
        assert store.log("q").read_records(start + 3, 100)[0].offset == start + 3
        await store.close()

    run(body)


def test_retention_by_age(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1024, retention_ms=60_000))
        for i in range(40):
            await log.append(batch(i, 1, ts=env.clock.now_ms() - 1_000))
        env.clock.advance(120_000)
        for i in range(40, 45):
            await log.append(batch(i, 1, ts=env.clock.now_ms() - 1_000))
        dropped = await log.apply_retention()
        assert dropped > 0
        assert all(s.max_timestamp_ms >= env.clock.now_ms() - 60_000 for s in log.segments[:-1])
        await store.close()

    run(body)


def test_bad_input_changes_nothing(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(batch_bytes_max=1024))
        await log.append(batch(0))
        before = log.describe()
        with pytest.raises(BatchTooLargeError):
            await log.append(batch(1, 1, size=2000))
        bad = batch(1)
        bad[-1] ^= 0xFF
        with pytest.raises(InvalidBatchError, match="CRC"):
            await log.append(bad)
        with pytest.raises(InvalidBatchError, match="follow the batch"):
            await log.append(batch(1) + b"junk")
        assert log.describe() == before
        with pytest.raises(InvalidNameError):
            await store.create_log("../escape")
        with pytest.raises(LogExistsError):
            await store.create_log("q")
        assert (await log.append(batch(1))).base_offset == 1
        await store.close()

    run(body)


def test_store_lock(env: Env) -> None:
    from logstore.errors import StoreLockedError

    async def body() -> None:
        store = await env.open()
        with pytest.raises(StoreLockedError, match="another process"):
            await env.open()
        await store.close()
        store = await env.open()
        await store.close()

    run(body)


def test_store_lock_across_processes(tmp_path: object) -> None:
    import subprocess
    import sys

    root = os.path.join(str(tmp_path), "s")
    code = (
        "import asyncio,sys\nfrom logstore import Store\n"
        "async def m():\n s=await Store.open(sys.argv[1]); print('open',flush=True); sys.stdin.readline(); await s.close()\n"
        "asyncio.run(m())\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, root], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        other = subprocess.run([sys.executable, "-c", code, root], input="\n", capture_output=True, text=True, timeout=30)
        assert other.returncode != 0 and "StoreLockedError" in other.stderr and "another process" in other.stderr
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(30)
        assert holder.stdout is not None
        holder.stdout.close()


def test_simulated_io_refuses_sendfile() -> None:
    from logstore import SimIO

    io = SimIO()
    f = io.open("/f", create=True)
    with pytest.raises(OSError, match="sendfile"):
        io.sendfile(1, f, 0, 1)


def test_time_lookup_on_opaque_batches_answers_the_batch(env: Env) -> None:
    from logstore.batch import build_opaque_batch

    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(10):
            await log.append(build_opaque_batch(b"m" * 20, 2, 1000 + 10 * i, 1005 + 10 * i))
        assert log.offset_for_timestamp(1031) == 6  # the batch holding 1030..1035 starts at 6
        assert log.offset_for_timestamp(0) == 0
        assert log.offset_for_timestamp(5000) is None
        await store.close()

    run(body)


def test_concurrent_creates_of_one_name_make_one_log(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        first = asyncio.ensure_future(store.create_log("q", SMALL))
        await asyncio.sleep(0)  # the first creation is under way (it awaits its fsyncs on real IO)
        others = await asyncio.gather(store.get_or_create_log("q", SMALL), store.get_or_create_log("q", SMALL))
        log = await first
        assert all(o is log for o in others) and store.log("q") is log
        with pytest.raises(LogExistsError):
            await store.create_log("q", SMALL)
        await log.append(batch(0, 3))
        assert store.log("q").end_offset == 3
        await store.close()

    run(body)


def test_truncate_fully_and_start_at_is_in_place_and_durable(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(0, 60, 2):
            await log.append(batch(i, 2))
        assert len(log.segments) > 1
        before = log.describe()
        with pytest.raises(OffsetOutOfRangeError):
            await log.truncate_fully_and_start_at(59)
        assert log.describe() == before
        await log.truncate_fully_and_start_at(500)
        assert store.log("q") is log
        assert (log.log_start_offset, log.end_offset, log.committed_offset, log.high_watermark) == (500, 500, 500, 500)
        assert [s.base_offset for s in log.segments] == [500]
        with pytest.raises(OffsetOutOfRangeError):
            log.read(10)
        assert (await log.append(batch(7))).base_offset == 500
        await log.flush()
        env.crash(store)
        store = await env.open()
        log = store.log("q")
        assert (log.log_start_offset, log.end_offset) == (500, 501)
        assert [r.offset for r in log.read_records(500, 1 << 20)] == [500]
        bases = {int(f.split(".")[0]) for f in env.io.listdir(env.path("logs", "q")) if f[0].isdigit()}
        assert bases == {500}
        await store.close()

    run(body)


def test_async_log_is_flushed_once_past_flush_interval_bytes(env: Env) -> None:
    """An async log is fsynced as soon as its unflushed bytes pass flush_interval_bytes, without
    waiting for flush_interval_ms (the simulated clock stands still); a log below it is not."""

    async def main() -> None:
        store = await env.open()
        try:
            hours = 3_600_000
            big = await store.create_log("big", LogConfig(flush_interval_bytes=2048, flush_interval_ms=hours))
            small = await store.create_log("small", LogConfig(flush_interval_bytes=1 << 20, flush_interval_ms=hours))
            for i in range(8):
                await big.append(batch(i, size=400))
                await small.append(batch(i, size=400))
            for _ in range(300):
                if big.recovery_point == big.end_offset == 8:
                    break
                await asyncio.sleep(0.01)
            assert (big.recovery_point, big.end_offset, big.unflushed_bytes) == (8, 8, 0)
            assert small.recovery_point == 0 and small.unflushed_bytes > 0
        finally:
            await store.close()

    run(main)
