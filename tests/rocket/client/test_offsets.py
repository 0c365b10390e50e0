"""Consumer progress against a real broker: push consumers commit every
persistConsumerOffsetInterval and on shutdown; broadcasting keeps offsets in a local file a
restart resumes from, and moves past a failed message (dropped, never retried); the lite pull consumer commits automatically (autoCommitIntervalMillis)
or when told, and seeks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from adapters.rocket.client import (
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    LitePullConsumer,
    Message,
    MessageModel,
    MessageQueue,
    Producer,
    PushConsumer,
    new_message,
)

from .cluster import Serve
from .support import Collector, Server, broker_offset, config, drain, push, topic, unique, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
FIRST = ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET


async def send(server: Serve, tpc: str, bodies: list[bytes], queue: int | None = None) -> None:
    async with Producer(unique("P"), client_config=config(server)) as producer:
        for body in bodies:
            mq = None if queue is None else MessageQueue(tpc, "broker-a", queue)
            await producer.send(new_message(tpc, body), mq=mq)


async def wait_broker_offset(server: Server, group: str, mq: MessageQueue, want: int,
                             timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := await broker_offset(server, group, mq)) != want:
        assert time.monotonic() < deadline, f"broker offset of {group} is {got}, not {want}"
        await asyncio.sleep(0.05)


async def test_push_offsets_are_committed_periodically_and_on_shutdown(rocket_serve: Serve) -> None:
    """Two groups consume the same 10 messages. The one persisting every 300 ms has its offset
    on the broker long before its next long poll (held up to 15 s) could carry it; the one
    persisting every 60 s has none there until it shuts down."""
    tpc = await topic(rocket_serve, queues=1)
    mq = MessageQueue(tpc, "broker-a", 0)
    fast_group, slow_group = unique("G"), unique("G")
    fast, fast_seen = push(rocket_serve, fast_group, tpc, consume_from_where=FIRST,
                           client_config=config(rocket_serve, persist_consumer_offset_interval_ms=300))
    slow, slow_seen = push(rocket_serve, slow_group, tpc, consume_from_where=FIRST,
                           client_config=config(rocket_serve, persist_consumer_offset_interval_ms=60_000))
    assert config(rocket_serve).persist_consumer_offset_interval_ms == 5_000  # RocketMQ's default
    await send(rocket_serve, tpc, [b"m%d" % i for i in range(10)])
    async with fast:
        await slow.start()
        try:
            await wait_for(lambda: len(fast_seen.msgs) == 10 and len(slow_seen.msgs) == 10, 10,
                           "both groups consuming")
            await wait_broker_offset(rocket_serve, fast_group, mq, 10, timeout_s=4)
            assert await broker_offset(rocket_serve, slow_group, mq) is None
            await send(rocket_serve, tpc, [b"n%d" % i for i in range(5)])
            await wait_for(lambda: len(fast_seen.msgs) == 15 and len(slow_seen.msgs) == 15, 10,
                           "both groups consuming the next five")
            await wait_broker_offset(rocket_serve, fast_group, mq, 15, timeout_s=4)
        finally:
            await slow.shutdown()
        assert await broker_offset(rocket_serve, slow_group, mq) == 15  # committed on shutdown


def offset_file(offsets_dir: Path, instance: str, group: str) -> dict[str, int]:
    path = offsets_dir / f"127.0.0.1@{instance}" / group / "offsets.json"
    if not path.exists():
        return {}
    table: dict[str, int] = orjson.loads(path.read_bytes())["offsetTable"]
    return table


async def test_broadcasting_restart_resumes_from_the_local_offset_file(
    rocket_serve: Serve, offsets_dir: Path
) -> None:
    tpc, group, instance = await topic(rocket_serve, queues=2), unique("G"), unique("bc")
    await send(rocket_serve, tpc, [b"a%d" % i for i in range(10)])

    def consumer() -> tuple[PushConsumer, Collector]:
        return push(rocket_serve, group, tpc, message_model=MessageModel.BROADCASTING,
                    consume_from_where=FIRST, offsets_dir=offsets_dir,
                    client_config=config(rocket_serve, instance,
                                         persist_consumer_offset_interval_ms=300))

    first, seen = consumer()
    async with first:
        await wait_for(lambda: len(seen.msgs) == 10, 10, "ten consumed")
        # Persisted while running, every persistConsumerOffsetInterval.
        await wait_for(lambda: sum(offset_file(offsets_dir, instance, group).values()) == 10, 5,
                       "the offset file covering the ten")
    table = offset_file(offsets_dir, instance, group)
    assert sorted(table) == sorted(MessageQueue(tpc, "broker-a", q).key for q in (0, 1))
    assert await broker_offset(rocket_serve, group, MessageQueue(tpc, "broker-a", 0)) is None
    await send(rocket_serve, tpc, [b"b%d" % i for i in range(6)])  # while it is down
    again, seen_again = consumer()
    async with again:  # FIRST_OFFSET would replay the a's: the file says where it was
        await wait_for(lambda: len(seen_again.msgs) >= 6, 10, "the six sent while down")
        await send(rocket_serve, tpc, [b"c0"])
        await wait_for(lambda: b"c0" in seen_again.bodies(), 10, "a new one")
    assert sorted(m.body for m in seen_again.msgs) == sorted([b"b%d" % i for i in range(6)] + [b"c0"])
    assert sum(offset_file(offsets_dir, instance, group).values()) == 17  # and on shutdown


async def test_lite_pull_auto_commit_on_interval_and_on_shutdown(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, queues=1), unique("G")
    mq = MessageQueue(tpc, "broker-a", 0)
    await send(rocket_serve, tpc, [b"m%d" % i for i in range(10)])
    consumer = LitePullConsumer(group, client_config=config(rocket_serve), consume_from_where=FIRST,
                                auto_commit_interval_ms=300)
    assert consumer.auto_commit and consumer.pull_batch_size == 10
    consumer.subscribe(tpc)
    async with consumer:
        assert len(await drain(consumer, 10)) == 10
        deadline = time.monotonic() + 5
        while (committed := await broker_offset(rocket_serve, group, mq)) != 10:
            assert time.monotonic() < deadline, f"auto commit never reached the broker ({committed})"
            await consumer.poll(100)  # RocketMQ commits from poll once the interval has passed
        assert await consumer.committed(mq) == 10
        # A long interval: what was polled reaches the broker at shutdown.
        consumer.auto_commit_interval_ms = 60_000
        await send(rocket_serve, tpc, [b"n%d" % i for i in range(5)])
        assert len(await drain(consumer, 5)) == 5
        assert await broker_offset(rocket_serve, group, mq) == 10
    assert await broker_offset(rocket_serve, group, mq) == 15


async def test_lite_pull_manual_commit_and_seeks(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, queues=1), unique("G")
    mq = MessageQueue(tpc, "broker-a", 0)
    await send(rocket_serve, tpc, [b"m%d" % i for i in range(8)])
    consumer = LitePullConsumer(group, client_config=config(rocket_serve), auto_commit=False,
                                consume_from_where=FIRST, auto_commit_interval_ms=100)
    await consumer.assign([mq])
    async with consumer:
        assert [m.body for m in await drain(consumer, 8)] == [b"m%d" % i for i in range(8)]
        await consumer.poll(300)  # past the interval: auto commit is off, so nothing moves
        assert await broker_offset(rocket_serve, group, mq) is None
        await consumer.commit_sync()  # what poll handed out
        assert await broker_offset(rocket_serve, group, mq) == 8
        await consumer.seek_to_begin(mq)
        assert [m.body for m in await drain(consumer, 8)] == [b"m%d" % i for i in range(8)]
        await consumer.seek_to_end(mq)
        assert await consumer.poll(300) == []
        await send(rocket_serve, tpc, [b"after"])
        assert [m.body for m in await drain(consumer, 1)] == [b"after"]
        await consumer.seek(mq, 5)
        assert [m.body for m in await drain(consumer, 4)] == [b"m5", b"m6", b"m7", b"after"]
        await consumer.commit_sync({mq: 9})  # exactly the offsets given
        assert await consumer.committed(mq) == 9
        await consumer.seek(mq, 2)
        assert len(await drain(consumer, 7)) == 7
    assert await broker_offset(rocket_serve, group, mq) == 9  # shutdown commits nothing more


async def test_broadcasting_failure_is_dropped_and_the_offset_moves_past_it(
    rocket_serve: Serve, offsets_dir: Path
) -> None:
    """RocketMQ does not retry broadcast messages: RECONSUME_LATER is logged and dropped."""
    tpc, group, instance = await topic(rocket_serve, queues=1), unique("G"), unique("bc")
    attempts: list[bytes] = []

    async def fail_one(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        attempts.extend(m.body for m in msgs)
        if msgs[0].body == b"bad":
            return ConsumeConcurrentlyStatus.RECONSUME_LATER
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer(group, message_model=MessageModel.BROADCASTING, consume_from_where=FIRST,
                            offsets_dir=offsets_dir, client_config=config(rocket_serve, instance))
    consumer.consume_later_delay_s = 0.1  # were it redelivered locally, it would be at once
    consumer.subscribe(tpc)
    consumer.register_message_listener(fail_one)
    async with consumer:
        await send(rocket_serve, tpc, [b"ok1", b"bad", b"ok2"])
        await wait_for(lambda: len(attempts) >= 3, 10, "three deliveries")
        await send(rocket_serve, tpc, [b"ok3"])
        await wait_for(lambda: b"ok3" in attempts, 10, "the next message")
    assert sorted(attempts) == [b"bad", b"ok1", b"ok2", b"ok3"]  # "bad" only once
    assert offset_file(offsets_dir, instance, group) == {MessageQueue(tpc, "broker-a", 0).key: 4}
