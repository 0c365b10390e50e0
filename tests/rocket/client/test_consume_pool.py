"""ConsumePool: requests that do not suspend run in one worker's turn; suspending ones run up to
``workers_max`` at once; extra workers stop after their keep-alive; close drops what waits."""

from __future__ import annotations

import asyncio

import pytest

from adapters.rocket.client.consume_pool import ConsumePool

pytestmark = pytest.mark.anyio


async def test_requests_that_do_not_suspend_run_in_order_without_extra_wakeups() -> None:
    done: list[int] = []
    running: set[asyncio.Task[object] | None] = set()

    async def handle(i: int) -> None:
        running.add(asyncio.current_task())
        done.append(i)

    pool: ConsumePool[int] = ConsumePool(handle, 4, 4)
    pool.start()
    for i in range(100):
        pool.submit(i)
    assert await pool.wait_idle(5.0)
    assert done == list(range(100))
    assert len(running) <= 2  # one worker drained them; at most one more woke for nothing
    assert pool.workers == 4 and pool.backlog == 0 and pool.busy == 0
    await pool.close()


async def test_suspending_requests_run_concurrently_up_to_the_maximum() -> None:
    now = 0
    peak = 0
    release = asyncio.Event()

    async def handle(_i: int) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await release.wait()
        now -= 1

    pool: ConsumePool[int] = ConsumePool(handle, 2, 5, keep_alive_s=0.2)
    pool.start()
    for i in range(20):
        pool.submit(i)
    for _ in range(50):
        await asyncio.sleep(0)
    assert peak == 5 and pool.workers == 5 and pool.backlog == 15
    release.set()
    assert await pool.wait_idle(5.0)
    assert now == 0
    async with asyncio.timeout(5.0):  # the extra workers stop after their keep-alive
        while pool.workers > 2:
            await asyncio.sleep(0.05)
    pool.submit(99)  # the pool still works, and grows again
    assert await pool.wait_idle(5.0)
    await pool.close()


async def test_a_failing_request_does_not_stop_its_worker() -> None:
    done: list[int] = []

    async def handle(i: int) -> None:
        if i == 1:
            raise RuntimeError("listener bug")
        done.append(i)

    pool: ConsumePool[int] = ConsumePool(handle, 1, 1)
    pool.start()
    for i in range(3):
        pool.submit(i)
    assert await pool.wait_idle(5.0)
    assert done == [0, 2]
    await pool.close()


async def test_submit_later_and_close() -> None:
    done: list[int] = []
    block = asyncio.Event()

    async def handle(i: int) -> None:
        done.append(i)
        await block.wait()

    pool: ConsumePool[int] = ConsumePool(handle, 1, 1)
    pool.start()
    pool.submit_later(1, 0.05)
    await asyncio.sleep(0.2)
    assert done == [1]
    pool.submit(2)  # waits behind the blocked request
    pool.submit_later(3, 0.05)
    assert not await pool.wait_idle(0.1)
    await pool.close()  # cancels the running one, drops the rest
    await asyncio.sleep(0.1)
    assert done == [1] and pool.workers == 0
    pool.submit(4)  # ignored once closed
    assert pool.backlog == 0
