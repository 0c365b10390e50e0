"""A poison message in an orderly queue is delivered exactly ``max_reconsume_times + 1`` times (each
retry after the suspend time, the queue blocked meanwhile), then sent to ``%DLQ%<group>`` with
CONSUMER_SEND_MSG_BACK (delayLevel -1), and the queue moves on to the next message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator

import pytest

from adapters.rocket.client import (
    ClientConfig,
    ConsumeFromWhere,
    ConsumeOrderlyContext,
    ConsumeOrderlyStatus,
    Message,
    MessageQueue,
    Producer,
    PushConsumer,
    new_message,
)
from adapters.rocket.client.api import MQClientAPI
from adapters.rocket.message import decode_stored
from adapters.rocket.remoting import RemotingClient
from adapters.rocket.testing import ServeProcess

from .cluster import create_topic
from .orderly_support import LOCK_INTERVAL_MS, LOCK_MAX_LIVE_MS, short_lock_serve

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
_ids = itertools.count()
MAX_RECONSUME_TIMES = 2


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with short_lock_serve(tmp_path_factory.mktemp("orderly-dlq")) as server:
        yield server


async def dead_letters(server: ServeProcess, group: str) -> list[Message]:
    """Everything in queue 0 of ``%DLQ%<group>`` (RocketMQ's DLQ has one queue per group)."""
    async with RemotingClient() as remoting:
        api = MQClientAPI(remoting, [server.namesrv], 5.0)
        raw = await api.pull_message(server.broker, {
            "consumerGroup": f"dlq_reader_{group}", "topic": f"%DLQ%{group}", "queueId": 0,
            "queueOffset": 0, "maxMsgNums": 32, "sysFlag": 0, "commitOffset": 0,
            "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0, "expressionType": "TAG",
        }, 5.0)
        return list(decode_stored(raw.body)) if raw.body else []


async def test_poison_message_goes_to_dlq_after_max_reconsume_times(serve: ServeProcess) -> None:
    tpc, group = f"TD_{uuid.uuid4().hex[:8]}", f"GD_{uuid.uuid4().hex[:8]}"
    await create_topic([serve.broker], serve.namesrv, tpc, 1)
    seen: list[tuple[bytes, int, float]] = []

    def listener(msgs: list[Message], ctx: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        seen.append((msgs[0].body, msgs[0].reconsume_times, time.monotonic()))
        if msgs[0].body == b"poison":
            return ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT
        return ConsumeOrderlyStatus.SUCCESS

    config = ClientConfig(namesrv_addr=serve.namesrv, client_ip="127.0.0.1", instance_name=f"d{next(_ids)}")
    consumer = PushConsumer(group, client_config=config, max_reconsume_times=MAX_RECONSUME_TIMES,
                            suspend_current_queue_time_millis=100,
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.rebalance_lock_interval_ms = LOCK_INTERVAL_MS
    consumer.rebalance_lock_max_live_time_ms = LOCK_MAX_LIVE_MS
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener, orderly=True)
    async with Producer(f"P{next(_ids)}", client_config=config) as producer:
        await producer.send(new_message(tpc, b"m0"))
        await producer.send(new_message(tpc, b"poison", keys=["poison-key"]))
        await producer.send(new_message(tpc, b"m2"))
        async with consumer:
            deadline = time.monotonic() + 15
            while not any(b == b"m2" for b, _, _ in seen):
                assert time.monotonic() < deadline, f"the queue never moved past the poison message: {seen}"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
        offset = await consumer_offset(serve, group, tpc)
    assert [(b, r) for b, r, _ in seen] == [
        (b"m0", 0), (b"poison", 0), (b"poison", 1), (b"poison", 2), (b"m2", 0)]
    assert offset == 3, "the committed offset passes the dead-lettered message and m2"
    letters = await dead_letters(serve, group)
    assert [m.body for m in letters] == [b"poison"]
    assert letters[0].keys == ["poison-key"]


async def consumer_offset(server: ServeProcess, group: str, tpc: str) -> int | None:
    async with RemotingClient() as remoting:
        api = MQClientAPI(remoting, [server.namesrv], 5.0)
        return await api.query_consumer_offset(server.broker, group, MessageQueue(tpc, "broker-a", 0))
