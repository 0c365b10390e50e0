"""The client against a real ``logstore serve`` process (one per session; topics per test)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import pytest

from adapters.rocket.client import (
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    DefaultMQProducer,
    DefaultMQPushConsumer,
    LitePullConsumer,
    Message,
    MessageIllegalError,
    MessageModel,
    MessageQueue,
    Producer,
    PushConsumer,
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
    SendResult,
    SendStatus,
    new_message,
)
from adapters.rocket.client.start_offset import TIMESTAMP_FORMAT

from .cluster import Serve
from .support import OK, config, drain, push, topic, unique, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_sync_async_oneway_batch_and_compressed_sends(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve)
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        result = await producer.send(new_message(tpc, b"sync", tags="TagA", keys=["k1", "k2"],
                                                 properties={"color": "red"}))
        assert result.send_status == SendStatus.SEND_OK
        assert len(result.msg_id) == 32 and len(result.offset_msg_id) == 32
        assert result.queue_offset == 0
        seen: list[SendResult] = []

        class Callback:
            def on_success(self, r: SendResult) -> None:
                seen.append(r)

            def on_exception(self, error: BaseException) -> None:
                raise AssertionError(error)

        task = producer.send_async(new_message(tpc, b"async"), Callback())
        assert (await task).send_status == SendStatus.SEND_OK
        await wait_for(lambda: len(seen) == 1)
        await producer.send_oneway(new_message(tpc, b"oneway"))
        batch = await producer.send_batch([new_message(tpc, b"batch%d" % i) for i in range(10)])
        assert len(batch.msg_id.split(",")) == 10
        big = await producer.send(new_message(tpc, b"Z" * 100_000))  # compressed on the wire
        with pytest.raises(MessageIllegalError):
            await producer.send(new_message(tpc, b"x" * (4 * 1024 * 1024 + 1)))
        # Round-robin: successive sends spread over the queues.
        queues = {(await producer.send(new_message(tpc, b"rr"))).message_queue for _ in range(8)}
        assert len(queues) == 4

    consumer = LitePullConsumer(unique("G"), client_config=config(rocket_serve),
                                consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(tpc, "*")
    async with consumer:
        got = await drain(consumer, 22)
    by_body = {m.body: m for m in got}
    assert set(by_body) >= {b"sync", b"async", b"oneway", b"Z" * 100_000} | {
        b"batch%d" % i for i in range(10)}
    sync = by_body[b"sync"]
    assert sync.tags == "TagA" and sync.keys == ["k1", "k2"] and sync.properties["color"] == "red"
    assert sync.uniq_key == result.msg_id and sync.msg_id == result.offset_msg_id
    assert by_body[b"Z" * 100_000].uniq_key == big.msg_id
    batch_msgs = sorted((m for m in got if m.body.startswith(b"batch")), key=lambda m: m.queue_offset)
    assert [m.body for m in batch_msgs] == [b"batch%d" % i for i in range(10)]
    assert len({m.queue_id for m in batch_msgs}) == 1


async def test_selectors_keep_each_order_in_one_queue_in_order(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve)
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        for step in range(5):
            for order_id in range(3):
                msg = new_message(tpc, f"order_{order_id} {step}".encode(), tags=f"order_{order_id}")
                r = await producer.send(msg, SelectMessageQueueByHash(), order_id)
                assert r.message_queue.queue_id == order_id
        # The seed's anonymous selector: a plain function works too.
        r = await producer.send(new_message(tpc, b"fn"), lambda mqs, m, arg: mqs[arg % len(mqs)], 7)
        assert r.message_queue.queue_id == 3
        rnd = await producer.send(new_message(tpc, b"rnd"), SelectMessageQueueByRandom())
        assert rnd.send_status == SendStatus.SEND_OK
    consumer = LitePullConsumer(unique("G"), client_config=config(rocket_serve),
                                consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(tpc, "order_0 || order_1 || order_2")
    async with consumer:
        got = await drain(consumer, 15)
    per_queue: dict[int, list[str]] = defaultdict(list)
    for m in sorted(got, key=lambda m: (m.queue_id, m.queue_offset)):
        per_queue[m.queue_id].append(m.body.decode())
    for order_id in range(3):
        assert per_queue[order_id] == [f"order_{order_id} {s}" for s in range(5)]


async def test_push_consumer_with_tag_filter(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve)
    consumer, seen = push(rocket_serve, unique("G"), tpc, "TagA || TagC",
                          consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        for i in range(30):
            await producer.send(new_message(tpc, b"m%d" % i, tags="Tag" + "ABC"[i % 3]))
        async with consumer:
            await wait_for(lambda: len(seen.msgs) >= 20)
            await asyncio.sleep(0.3)
    assert {m.tags for m in seen.msgs} == {"TagA", "TagC"}
    assert seen.bodies() == {b"m%d" % i for i in range(30) if i % 3 != 1}


async def test_reconsume_later_redelivers(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve, queues=1)
    attempts: dict[bytes, int] = defaultdict(int)

    def listener(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        body = msgs[0].body
        attempts[body] += 1
        ctx.delay_level_when_next_consume = 1  # back through %RETRY% after 1 s, not level 3's 10 s
        if body == b"fail-once" and attempts[body] == 1:
            return ConsumeConcurrentlyStatus.RECONSUME_LATER
        if body == b"raise-once" and attempts[body] == 1:
            raise RuntimeError("listener bug")
        return OK

    consumer = PushConsumer(unique("G"), client_config=config(rocket_serve),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.consume_later_delay_s = 0.2
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener)  # a plain function, run on the thread pool
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        for body in (b"ok", b"fail-once", b"raise-once"):
            await producer.send(new_message(tpc, body))
        async with consumer:
            await wait_for(lambda: attempts[b"fail-once"] == 2 and attempts[b"raise-once"] == 2)
    assert attempts[b"ok"] == 1


async def test_two_consumers_split_queues_and_rebalance(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, queues=4), unique("G")
    kw = {"consume_from_where": ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET}
    c1, seen1 = push(rocket_serve, group, tpc, **kw)  # type: ignore[arg-type]
    c2, seen2 = push(rocket_serve, group, tpc, **kw)  # type: ignore[arg-type]

    def own(c: PushConsumer) -> list[int]:
        return [mq.queue_id for mq in c.assigned_queues() if mq.topic == tpc]

    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        await c1.start()
        try:
            assert own(c1) == [0, 1, 2, 3]
            await c2.start()
            await wait_for(lambda: len(own(c1)) == 2 and len(own(c2)) == 2)
            assert sorted(own(c1) + own(c2)) == [0, 1, 2, 3]
            for i in range(40):
                await producer.send(new_message(tpc, b"m%d" % i))
            await wait_for(lambda: len(seen1.bodies() | seen2.bodies()) == 40)
            assert seen1.msgs and seen2.msgs
            assert {m.queue_id for m in seen1.msgs}.isdisjoint({m.queue_id for m in seen2.msgs})
            await c2.shutdown()  # leaves: c1 takes every queue again
            await wait_for(lambda: own(c1) == [0, 1, 2, 3])
            for i in range(40, 48):
                await producer.send(new_message(tpc, b"m%d" % i))
            await wait_for(lambda: {b"m%d" % i for i in range(40, 48)} <= seen1.bodies())
        finally:
            await c2.shutdown()
            await c1.shutdown()


async def test_broadcasting_delivers_everything_to_everyone(rocket_serve: Serve, offsets_dir: Path) -> None:
    tpc, group = await topic(rocket_serve), unique("G")
    consumers = [push(rocket_serve, group, tpc, message_model=MessageModel.BROADCASTING,
                      offsets_dir=offsets_dir) for _ in range(2)]
    for consumer, _seen in consumers:
        await consumer.start()
    try:
        async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
            for i in range(20):
                await producer.send(new_message(tpc, b"b%d" % i))
        want = {b"b%d" % i for i in range(20)}
        for _consumer, seen in consumers:
            await wait_for(lambda seen=seen: seen.bodies() == want)  # type: ignore[misc]
    finally:
        for consumer, _seen in consumers:
            await consumer.shutdown()
    assert len(list(offsets_dir.glob("*/" + group + "/offsets.json"))) == 2


async def _consume_from(server: Serve, where: ConsumeFromWhere) -> None:
    """Old messages, a second boundary (the stamp), middle ones; then a consumer starts, then
    new ones. FIRST sees all, LAST only the new, TIMESTAMP the middle and the new."""
    tpc = await topic(server, queues=2)
    async with Producer(unique("P"), client_config=config(server)) as producer:
        for i in range(4):
            await producer.send(new_message(tpc, b"old%d" % i))
        await asyncio.sleep(1.0 - time.time() % 1.0 + 0.05)  # the next whole second
        stamp = time.strftime(TIMESTAMP_FORMAT, time.localtime())
        for i in range(3):
            await producer.send(new_message(tpc, b"mid%d" % i))
        consumer, seen = push(server, unique("G"), tpc, consume_from_where=where,
                              consume_timestamp=stamp)
        async with consumer:
            for i in range(2):
                await producer.send(new_message(tpc, b"new%d" % i))
            want = {b"new0", b"new1"}
            if where != ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET:
                want |= {b"mid0", b"mid1", b"mid2"}
            if where == ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET:
                want |= {b"old%d" % i for i in range(4)}
            await wait_for(lambda: len(seen.bodies()) >= len(want), timeout_s=5)
            await asyncio.sleep(0.2)
            assert seen.bodies() == want


async def test_consume_from_first_offset(rocket_serve: Serve) -> None:
    await _consume_from(rocket_serve, ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)


async def test_consume_from_last_offset(rocket_serve: Serve) -> None:
    await _consume_from(rocket_serve, ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)


async def test_consume_from_timestamp(rocket_serve: Serve) -> None:
    await _consume_from(rocket_serve, ConsumeFromWhere.CONSUME_FROM_TIMESTAMP)


async def test_restart_resumes_from_committed_offset(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve), unique("G")
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        consumer, seen = push(rocket_serve, group, tpc,
                              consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
        async with consumer:
            for i in range(10):
                await producer.send(new_message(tpc, b"a%d" % i))
            await wait_for(lambda: len(seen.msgs) == 10)
        for i in range(10):  # while nobody of the group runs
            await producer.send(new_message(tpc, b"b%d" % i))
        again, seen_again = push(rocket_serve, group, tpc)  # LAST_OFFSET would skip the b's
        async with again:
            await wait_for(lambda: len(seen_again.msgs) >= 10)
            await asyncio.sleep(0.3)
    assert sorted(m.body for m in seen_again.msgs) == sorted(b"b%d" % i for i in range(10))


async def test_lite_pull_subscribe_assign_seek_commit(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, queues=2), unique("G")
    async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
        for i in range(10):
            await producer.send(new_message(tpc, b"q0-%d" % i), mq=MessageQueue(tpc, "broker-a", 0))
    mq0 = MessageQueue(tpc, "broker-a", 0)
    consumer = LitePullConsumer(group, client_config=config(rocket_serve), auto_commit=False,
                                consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    await consumer.assign([mq0])
    async with consumer:
        assert await consumer.fetch_message_queues(tpc) == [mq0, MessageQueue(tpc, "broker-a", 1)]
        got = await drain(consumer, 10)
        assert [m.body for m in got] == [b"q0-%d" % i for i in range(10)]
        assert await consumer.committed(mq0) == -1  # auto commit is off
        await consumer.seek(mq0, 4)
        again = await drain(consumer, 6)
        assert [m.body for m in again] == [b"q0-%d" % i for i in range(4, 10)]
        await consumer.commit_sync({mq0: 7})
        assert await consumer.committed(mq0) == 7
    subscriber = LitePullConsumer(group, client_config=config(rocket_serve))
    subscriber.subscribe(tpc, "*")
    async with subscriber:  # resumes at the committed 7
        got = await drain(subscriber, 3)
        assert [m.body for m in got] == [b"q0-7", b"q0-8", b"q0-9"]
        await subscriber.commit_sync()
        assert await subscriber.committed(mq0) == 10
        assert sorted(mq.queue_id for mq in subscriber.assignment()) == [0, 1]


def test_sync_facade(rocket_serve: Serve) -> None:
    tpc = asyncio.run(topic(rocket_serve))
    got: list[bytes] = []

    def listener(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        got.extend(m.body for m in msgs)
        return OK

    consumer = DefaultMQPushConsumer(unique("G"), client_config=config(rocket_serve),
                                     consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener)
    producer = DefaultMQProducer(unique("P"), client_config=config(rocket_serve))
    producer.start()
    consumer.start()
    try:
        assert producer.send(new_message(tpc, b"s1")).send_status == SendStatus.SEND_OK
        assert producer.send_async(new_message(tpc, b"s2")).result(5).send_status == SendStatus.SEND_OK
        producer.send_oneway(new_message(tpc, b"s3"))
        producer.send_batch([new_message(tpc, b"s4"), new_message(tpc, b"s5")])
        deadline = time.monotonic() + 10
        while len(set(got)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(got) == {b"s1", b"s2", b"s3", b"s4", b"s5"}
    finally:
        consumer.shutdown()
        producer.shutdown()
