"""PushConsumer batching and flow control against a real broker: pullBatchSize,
consumeMessageBatchMaxSize, and the three thresholds (pullThresholdForQueue,
pullThresholdSizeForQueue, consumeConcurrentlyMaxSpan) with a slow or stuck listener: what a
queue caches stays within them, and pulling resumes once the listener catches up."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from adapters.rocket.client import (
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    Message,
    MessageQueue,
    Producer,
    PushConsumer,
    new_message,
)
from adapters.rocket.client.process_queue import ProcessQueue

from .cluster import Serve
from .support import OK, config, push, topic, unique, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
FIRST = ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET
KIB = 1024
MIB = 1024 * KIB


async def backlog(server: Serve, tpc: str, count: int, *, queue: int = 0, body_bytes: int = 0) -> None:
    """``count`` messages on one queue, in batches (fast), before any consumer runs."""
    mq = MessageQueue(tpc, "broker-a", queue)
    async with Producer(unique("P"), client_config=config(server)) as producer:
        i = 0
        while i < count:
            n = min(16, count - i, max(1, (3 * MIB) // max(body_bytes, 1)))
            await producer.send_batch(
                [new_message(tpc, b"%06d" % (i + k) + b"x" * body_bytes) for k in range(n)], mq=mq)
            i += n


async def test_pull_batch_size_bounds_each_pull(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=1)
    await backlog(rocket_serve, tpc, 100)
    consumer, seen = push(rocket_serve, unique("G"), tpc, consume_from_where=FIRST,
                          pull_batch_size=7, consume_message_batch_max_size=100)
    async with consumer:
        await wait_for(lambda: len(seen.msgs) == 100, 10, "100 messages consumed")
    # The listener takes whole pulls here: every pull of the backlog brought exactly 7.
    assert Counter(len(b) for b in seen.batches) == {7: 14, 2: 1}


async def test_consume_message_batch_max_size_hands_lists_of_up_to_n(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=2)
    for q in (0, 1):
        await backlog(rocket_serve, tpc, 50, queue=q)
    consumer, seen = push(rocket_serve, unique("G"), tpc, consume_from_where=FIRST,
                          consume_message_batch_max_size=10)
    assert consumer.pull_batch_size == 32
    async with consumer:
        await wait_for(lambda: len(seen.msgs) == 100, 10, "100 messages consumed")
    for batch in seen.batches:
        assert len({m.queue_id for m in batch}) == 1  # a batch never mixes queues
        offsets = [m.queue_offset for m in batch]
        assert offsets == list(range(offsets[0], offsets[0] + len(batch)))
    # Pulls of 32 then 18 per queue, each cut into lists of at most 10: 10 10 10 2 | 10 8.
    assert Counter(len(b) for b in seen.batches) == {10: 8, 2: 2, 8: 2}


def cached_queue(consumer: PushConsumer, mq: MessageQueue) -> ProcessQueue | None:
    """The consumer's ProcessQueue of ``mq`` (RocketMQ: rebalanceImpl.processQueueTable)."""
    rebalance = consumer._rebalance
    return None if rebalance is None else rebalance.process_queue_table.get(mq)


@dataclass
class Peak:
    count: int = 0
    size: int = 0
    span: int = 0
    highest_pulled: int = -1


@contextlib.asynccontextmanager
async def watch(consumer: PushConsumer, mq: MessageQueue) -> AsyncIterator[Peak]:
    """Sample the queue's cache every 2 ms; the peaks seen."""
    peak = Peak()

    async def sample() -> None:
        while True:
            pq = cached_queue(consumer, mq)
            if pq is not None:
                peak.count = max(peak.count, pq.msg_count)
                peak.size = max(peak.size, pq.msg_size)
                peak.span = max(peak.span, pq.max_span)
                peak.highest_pulled = max(peak.highest_pulled, pq.queue_offset_max)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def slow_listener(delay_s: float, seen: list[Message]) -> Callable[..., object]:
    async def consume(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        await asyncio.sleep(delay_s * len(msgs))
        seen.extend(msgs)
        return OK

    return consume


async def test_pull_threshold_for_queue_caps_the_cached_count(rocket_serve: Serve) -> None:
    tpc, total, threshold = await topic(rocket_serve, queues=1), 200, 50
    await backlog(rocket_serve, tpc, total)
    consumer = PushConsumer(unique("G"), client_config=config(rocket_serve), consume_from_where=FIRST,
                            pull_threshold_for_queue=threshold, pull_batch_size=16,
                            consume_thread_min=1, consume_thread_max=1)
    consumer.subscribe(tpc)
    seen: list[Message] = []
    consumer.register_message_listener(slow_listener(0.005, seen))
    async with consumer, watch(consumer, MessageQueue(tpc, "broker-a", 0)) as peak:
        await wait_for(lambda: len(seen) == total, 15, f"{total} messages consumed")
    assert peak.count <= threshold  # a pull asks only for the room left
    assert peak.count >= threshold - 16, peak  # it did fill up, so the cap was what held it
    assert sorted(m.queue_offset for m in seen) == list(range(total))


async def test_pull_threshold_size_for_queue_caps_the_cached_bytes(rocket_serve: Serve) -> None:
    tpc, total, body = await topic(rocket_serve, queues=1), 40, 100 * KIB
    await backlog(rocket_serve, tpc, total, body_bytes=body)
    consumer = PushConsumer(unique("G"), client_config=config(rocket_serve), consume_from_where=FIRST,
                            pull_threshold_size_for_queue=1, pull_batch_size=4,
                            consume_thread_min=1, consume_thread_max=1)
    assert consumer.pull_threshold_for_queue == 1000  # not what holds it back here
    consumer.subscribe(tpc)
    seen: list[Message] = []
    consumer.register_message_listener(slow_listener(0.02, seen))
    async with consumer, watch(consumer, MessageQueue(tpc, "broker-a", 0)) as peak:
        await wait_for(lambda: len(seen) == total, 15, f"{total} messages consumed")
    one_pull = 4 * (body + 6)
    assert peak.size <= 1 * MIB + one_pull, peak  # checked before each pull, as in RocketMQ
    assert peak.size > 1 * MIB - one_pull, peak
    assert sorted(m.queue_offset for m in seen) == list(range(total))


async def test_consume_concurrently_max_span_holds_pulls_while_the_span_is_too_long(
    rocket_serve: Serve,
) -> None:
    """RocketMQ measures the span over the messages still cached (getMaxSpan: last key minus
    first key), so a stuck message holds pulling back only while later ones are cached too."""
    tpc, total, max_span, batch = await topic(rocket_serve, queues=1), 200, 30, 8
    await backlog(rocket_serve, tpc, total)
    release_first, release_rest = asyncio.Event(), asyncio.Event()
    done: list[Message] = []

    async def slow(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        await (release_first if msgs[0].queue_offset == 0 else release_rest).wait()
        done.extend(msgs)
        return OK

    mq = MessageQueue(tpc, "broker-a", 0)
    consumer = PushConsumer(unique("G"), client_config=config(rocket_serve), consume_from_where=FIRST,
                            consume_concurrently_max_span=max_span, pull_batch_size=batch)
    assert consumer.pull_threshold_for_queue == 1000  # far away: the span is what holds it
    consumer.subscribe(tpc)
    consumer.register_message_listener(slow)
    async with consumer, watch(consumer, mq) as peak:
        await wait_for(lambda: peak.span > max_span, 10, "the span passing its limit")
        for _ in range(10):  # ten flow-control rounds (50 ms each): no pull past the limit
            await asyncio.sleep(0.05)
            assert peak.highest_pulled <= max_span + batch, peak
        assert peak.span <= max_span + batch and peak.count <= max_span + batch + 1, peak
        release_rest.set()  # offset 0 stays stuck; the rest drains, the span shrinks
        await wait_for(lambda: len(done) == total - 1, 10, "pulling resumed past the stuck message")
        pq = cached_queue(consumer, mq)
        assert pq is not None and pq.commit_offset() == 0  # the committed offset waits for it
        release_first.set()
        await wait_for(lambda: len(done) == total, 10, "the stuck message consumed")
