"""The journal's worker threads: writes in submission order, fsyncs overlapping."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from logstore.worker import OrderedWorker


def test_writes_keep_submission_order_while_syncs_overlap() -> None:
    async def body() -> None:
        worker = OrderedWorker("t-journal", threads=2)
        writes: list[int] = []
        both_syncing = threading.Barrier(2, timeout=5)

        def write(i: int) -> None:
            time.sleep(0.002 * (3 - i % 3))  # earlier writes take longer: order must still hold
            writes.append(i)

        def sync() -> None:
            both_syncing.wait()  # raises BrokenBarrierError unless two syncs run at once

        futs = [worker.submit(lambda i=i: write(i), sync) for i in range(6)]  # type: ignore[misc]
        await asyncio.gather(*futs)
        assert writes == list(range(6))
        worker.close()

    asyncio.run(body())


def test_one_sync_thread_never_overlaps() -> None:
    async def body() -> None:
        worker = OrderedWorker("t-journal-1", threads=1)
        active = 0
        most = 0
        lock = threading.Lock()

        def sync() -> None:
            nonlocal active, most
            with lock:
                active += 1
                most = max(most, active)
            time.sleep(0.005)
            with lock:
                active -= 1

        await asyncio.gather(*(worker.submit(lambda: None, sync) for _ in range(4)))
        assert most == 1
        worker.close()

    asyncio.run(body())


def test_errors_reach_the_caller_and_a_failed_write_is_not_synced() -> None:
    async def body() -> None:
        worker = OrderedWorker("t-journal-err", threads=2)
        synced: list[str] = []

        def bad_write() -> None:
            raise OSError(5, "write failed")

        def bad_sync() -> None:
            raise OSError(5, "fsync failed")

        with pytest.raises(OSError, match="write failed"):
            await worker.submit(bad_write, lambda: synced.append("after bad write"))
        with pytest.raises(OSError, match="fsync failed"):
            await worker.submit(lambda: None, bad_sync)
        await worker.submit(lambda: None, lambda: synced.append("ok"))
        await worker.submit(lambda: synced.append("no sync stage"))
        assert synced == ["ok", "no sync stage"]
        worker.close()

    asyncio.run(body())


def test_syncers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threads"):
        OrderedWorker("t", threads=0)
