"""LitePullConsumer flow control against a real broker: an application that stops polling
holds a bounded number of messages (pullThresholdForAll over its queues) and bytes
(pullThresholdSizeForQueue), and once it polls again every message arrives, in order."""

from __future__ import annotations

import asyncio

import pytest

from adapters.rocket.client import ConsumeFromWhere, LitePullConsumer, Message, MessageQueue

from .cluster import Serve
from .support import config, topic, unique, wait_for
from .test_push_flow import KIB, MIB, backlog

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
FIRST = ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET


def cached(consumer: LitePullConsumer) -> tuple[int, int]:
    """(messages, body bytes) the consumer holds, pulled and not yet polled."""
    return (sum(pq.msg_count for pq in consumer._queues.values()),
            sum(pq.msg_size for pq in consumer._queues.values()))


async def poll_all(consumer: LitePullConsumer, count: int) -> list[Message]:
    got: list[Message] = []
    for _ in range(count):
        if len(got) >= count:
            break
        got += await consumer.poll(2_000)
    return got


def in_order(msgs: list[Message]) -> bool:
    by_queue: dict[int, list[int]] = {}
    for m in msgs:
        by_queue.setdefault(m.queue_id, []).append(m.queue_offset)
    return all(offsets == sorted(offsets) for offsets in by_queue.values())


async def test_pull_threshold_for_all_bounds_what_an_idle_application_holds(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=4)
    for q in range(4):
        await backlog(rocket_serve, tpc, 300, queue=q)
    consumer = LitePullConsumer(unique("G"), client_config=config(rocket_serve), consume_from_where=FIRST,
                                pull_batch_size=10, pull_threshold_for_all=50)
    await consumer.assign([MessageQueue(tpc, "broker-a", q) for q in range(4)])
    async with consumer:
        await wait_for(lambda: cached(consumer)[0] >= 50, 10, "the first pulls")
        await asyncio.sleep(1.0)  # no poll: the pull loops must stop
        # buffered pulls stop once more than 50 messages wait; each queue may have had one
        # pull in flight at that moment
        assert cached(consumer)[0] <= 50 + 4 * 10, cached(consumer)
        got = await poll_all(consumer, 1200)
        assert len(got) == 1200 and in_order(got)
        assert len({(m.queue_id, m.queue_offset) for m in got}) == 1200


async def test_pull_threshold_size_for_queue_bounds_cached_bytes(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=1)
    await backlog(rocket_serve, tpc, 80, body_bytes=64 * KIB)
    consumer = LitePullConsumer(unique("G"), client_config=config(rocket_serve), consume_from_where=FIRST,
                                pull_batch_size=4, pull_threshold_size_for_queue=1)
    await consumer.assign([MessageQueue(tpc, "broker-a", 0)])
    async with consumer:
        await wait_for(lambda: cached(consumer)[1] > MIB, 10, "over 1 MiB cached")
        await asyncio.sleep(1.0)
        count, size = cached(consumer)
        assert size <= MIB + 4 * (64 * KIB + 16), (count, size)  # one pull may pass it
        assert count < 80
        got = await poll_all(consumer, 80)
        assert [m.queue_offset for m in got] == list(range(80))
