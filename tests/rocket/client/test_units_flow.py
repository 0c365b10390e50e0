"""Pure client logic: RocketMQ's defaults, the ProcessQueue figures flow control reads, and the
producer's retry decisions (no broker: the send kernel is replaced)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

from adapters.rocket.client import (
    AllocateMessageQueueAveragely,
    ClientConfig,
    ConsumeFromWhere,
    LitePullConsumer,
    MessageModel,
    MessageQueue,
    Producer,
    PushConsumer,
    SendResult,
    SendStatus,
    new_message,
)
from adapters.rocket.client.instance import MQClientInstance
from adapters.rocket.client.process_queue import ProcessQueue
from adapters.rocket.client.route import TopicPublishInfo
from adapters.rocket.client.start_offset import parse_consume_timestamp
from adapters.rocket.message import Message


def test_defaults_are_rocketmq_s() -> None:
    cfg = ClientConfig(namesrv_addr="127.0.0.1:9876")
    assert (cfg.poll_name_server_interval_ms, cfg.heartbeat_broker_interval_ms,
            cfg.persist_consumer_offset_interval_ms, cfg.rebalance_interval_ms) == (
        30_000, 30_000, 5_000, 20_000)
    p = Producer()
    assert p.group == "DEFAULT_PRODUCER"
    assert (p.send_msg_timeout_ms, p.retry_times_when_send_failed,
            p.retry_times_when_send_async_failed, p.retry_another_broker_when_not_store_ok) == (
        3_000, 2, 2, False)
    assert (p.compress_msg_body_over_howmuch, p.max_message_size, p.default_topic_queue_nums) == (
        4 * 1024, 4 * 1024 * 1024, 4)
    c = PushConsumer("G")
    assert c.message_model == MessageModel.CLUSTERING
    assert c.consume_from_where == ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET
    assert isinstance(c.allocate_message_queue_strategy, AllocateMessageQueueAveragely)
    assert (c.consume_thread_min, c.consume_thread_max) == (20, 20)
    assert (c.pull_threshold_for_queue, c.pull_threshold_size_for_queue,
            c.consume_concurrently_max_span) == (1000, 100, 2000)
    assert (c.pull_batch_size, c.consume_message_batch_max_size, c.broker_suspend_max_time_ms) == (
        32, 1, 15_000)
    assert c.consume_timeout == 15  # minutes
    half_hour_ago_ms = (time.time() - 30 * 60) * 1000
    assert abs(parse_consume_timestamp(c.consume_timestamp) - half_hour_ago_ms) < 5_000
    lite = LitePullConsumer("G")
    assert (lite.auto_commit, lite.auto_commit_interval_ms, lite.pull_batch_size,
            lite.pull_threshold_for_queue, lite.poll_timeout_millis,
            lite.broker_suspend_max_time_ms) == (True, 5_000, 10, 1000, 5_000, 20_000)
    assert (lite.pull_threshold_for_all, lite.pull_threshold_size_for_queue, lite.consume_max_span) == (
        10_000, 100, 2000)


@pytest.mark.parametrize("bad", [0, -1, 65536])
def test_pull_threshold_for_queue_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        PushConsumer("G", pull_threshold_for_queue=bad)


def _msg(offset: int, body_bytes: int) -> Message:
    msg = new_message("T", b"x" * body_bytes)
    msg.queue_offset = offset
    return msg


def test_process_queue_counts_bytes_and_span() -> None:
    pq = ProcessQueue()
    msgs = [_msg(i, 10 * (i + 1)) for i in range(5)]  # 10, 20, 30, 40, 50 bytes
    pq.put_messages(msgs)
    pq.put_messages(msgs[:2])  # a re-pull of what is cached counts once
    assert (pq.msg_count, pq.msg_size, pq.max_span) == (5, 150, 4)
    pq.remove_messages([msgs[4], msgs[1]])  # out of order, as concurrent listeners finish
    assert (pq.msg_count, pq.msg_size, pq.max_span) == (3, 80, 3)  # offsets 0, 2, 3 wait
    pq.remove_messages([msgs[4]])  # already gone: no double count
    assert pq.msg_size == 80
    pq.remove_messages([msgs[0], msgs[2]])
    assert (pq.msg_count, pq.msg_size, pq.max_span) == (1, 40, 0)


def test_process_queue_orderly_stages_keep_the_byte_count() -> None:
    pq = ProcessQueue()
    pq.put_messages([_msg(i, 100) for i in range(4)])
    taken = pq.take_messages(3)
    assert pq.msg_size == 400  # consuming is still cached
    pq.consume_again(taken[2:])
    assert pq.commit() == 2 and pq.msg_size == 200
    pq.clear()
    assert (pq.msg_count, pq.msg_size) == (0, 0)


class _Kernel:
    """Stands in for Producer._send_to_queue: answers ``status`` and records the queues."""

    def __init__(self, status: SendStatus) -> None:
        self.status = status
        self.queues: list[MessageQueue] = []

    async def __call__(self, mq: MessageQueue, *args: Any, **kwargs: Any) -> SendResult:
        self.queues.append(mq)
        return SendResult(self.status, "id", "offset-id", mq, len(self.queues))


def _producer(monkeypatch: pytest.MonkeyPatch, kernel: _Kernel, **options: Any) -> Producer:
    producer = Producer("P", client_config=ClientConfig(namesrv_addr="127.0.0.1:1"), **options)
    info = TopicPublishInfo("T", [MessageQueue("T", b, q) for b in ("a", "b") for q in range(2)], 0)

    async def publish_info(topic: str) -> TopicPublishInfo:
        return info

    monkeypatch.setattr(producer, "_publish_info", publish_info)
    monkeypatch.setattr(producer, "_send_to_queue", kernel)
    return producer


@pytest.mark.anyio
async def test_not_stored_ok_is_returned_as_is_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _Kernel(SendStatus.FLUSH_DISK_TIMEOUT)
    result = await _producer(monkeypatch, kernel).send(new_message("T", b"x"))
    assert result.send_status == SendStatus.FLUSH_DISK_TIMEOUT and len(kernel.queues) == 1


@pytest.mark.anyio
async def test_retry_another_broker_when_not_store_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attempt on another broker; when none stores OK, the last answer, not an error."""
    kernel = _Kernel(SendStatus.FLUSH_SLAVE_TIMEOUT)
    producer = _producer(monkeypatch, kernel, retry_another_broker_when_not_store_ok=True)
    result = await producer.send(new_message("T", b"x"))
    assert result.send_status == SendStatus.FLUSH_SLAVE_TIMEOUT
    assert len(kernel.queues) == 3  # 1 + retryTimesWhenSendFailed
    brokers = [mq.broker_name for mq in kernel.queues]
    assert all(a != b for a, b in itertools.pairwise(brokers)), brokers
    assert result.message_queue == kernel.queues[-1]


@pytest.mark.anyio
@pytest.mark.parametrize("yields", range(6))
async def test_shutdown_is_not_lost_to_a_rebalance_request_at_the_same_moment(yields: int) -> None:
    """A NOTIFY_CONSUMER_IDS_CHANGED arriving as the instance shuts down must not swallow the
    cancellation of the rebalance loop (asyncio.wait_for does, when its inner wait finishes in
    the same step), which left shutdown waiting forever."""
    instance = MQClientInstance(ClientConfig(namesrv_addr="127.0.0.1:1"))
    await instance.start()
    instance.rebalance_immediately()
    for _ in range(yields):
        await asyncio.sleep(0)
    await asyncio.wait_for(instance.shutdown(), 5)
