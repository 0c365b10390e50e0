"""``DefaultMQProducer.send`` on the caller's thread (``Producer.send_blocking`` over
remoting/blocking.py) against a real broker: the route is fetched through the loop once, then
sends go over the producer's blocking connection with everything a send carries."""

from __future__ import annotations

import asyncio

import pytest

from adapters.rocket.client import (
    DefaultMQProducer,
    MQClientError,
    Producer,
    SendStatus,
    new_message,
)
from adapters.rocket.remoting.blocking import BlockingPool

from .cluster import Serve
from .support import config, pull_from_first, topic, unique

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_sync_sends_go_over_the_blocking_connection_once_the_route_is_cached(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve)
    producer = DefaultMQProducer(unique("P"), client_config=config(rocket_serve))

    def send_all() -> list[tuple[str, str, int, int]]:
        producer.start()
        try:
            assert producer.impl.send_blocking(new_message(tpc, b"x"), producer._blocking) is None  # no route yet
            results = []
            for i in range(12):
                msg = new_message(tpc, b"b%d" % i, tags="TagA", keys=[f"k{i}"], properties={"n": str(i)})
                r = producer.send(msg)
                assert r.send_status == SendStatus.SEND_OK
                results.append((r.msg_id, r.offset_msg_id, r.message_queue.queue_id, r.queue_offset))
            # The first send fetched the route through the loop; the others went over one
            # blocking connection, lent and given back each time.
            assert [len(v) for v in producer._blocking._idle.values()] == [1]
            return results
        finally:
            producer.shutdown()

    results = await asyncio.to_thread(send_all)
    assert len({r[0] for r in results}) == 12 and len({r[1] for r in results}) == 12
    assert len({r[2] for r in results}) == 4  # round-robin over the topic's four queues
    got = await pull_from_first(rocket_serve, tpc, 12)
    by_body = {m.body: m for m in got}
    assert sorted(by_body) == sorted(b"b%d" % i for i in range(12))
    for i, (msg_id, offset_id, queue_id, queue_offset) in enumerate(results):
        m = by_body[b"b%d" % i]
        assert (m.tags, m.keys, m.properties["n"]) == ("TagA", [f"k{i}"], str(i))
        assert (m.properties["UNIQ_KEY"], m.msg_id, m.queue_id, m.queue_offset) == (msg_id, offset_id, queue_id, queue_offset)


async def test_the_blocking_path_keeps_the_send_rules(rocket_serve: Serve) -> None:
    """An illegal message fails at once; a send whose timeout has passed is reported as failed
    (the retry policy is the asynchronous send's, ``_Attempts``); the pool serves on after."""
    tpc = await topic(rocket_serve)
    async with Producer(unique("P"), client_config=config(rocket_serve), retry_times_when_send_failed=1) as producer:
        await producer.send(new_message(tpc, b"route"))
        pool = BlockingPool()
        try:
            ok = await asyncio.to_thread(producer.send_blocking, new_message(tpc, b"ok"), pool)
            assert ok is not None and ok.send_status == SendStatus.SEND_OK
            with pytest.raises(MQClientError, match="body"):
                await asyncio.to_thread(producer.send_blocking, new_message(tpc, b""), pool)
            with pytest.raises(MQClientError, match="after 2 attempts"):
                await asyncio.to_thread(producer.send_blocking, new_message(tpc, b"y"), pool, timeout_ms=0)
            again = await asyncio.to_thread(producer.send_blocking, new_message(tpc, b"again"), pool)
            assert again is not None and again.send_status == SendStatus.SEND_OK
        finally:
            pool.close()


async def test_send_blocking_declines_with_the_latency_fault_strategy_on(rocket_serve: Serve) -> None:
    tpc = await topic(rocket_serve)
    async with Producer(unique("P"), client_config=config(rocket_serve), send_latency_fault_enable=True) as producer:
        await producer.send(new_message(tpc, b"route"))
        pool = BlockingPool()
        try:
            assert await asyncio.to_thread(producer.send_blocking, new_message(tpc, b"z"), pool) is None
        finally:
            pool.close()
