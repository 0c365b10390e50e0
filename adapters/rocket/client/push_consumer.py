"""PushConsumer: RocketMQ's DefaultMQPushConsumer (concurrent or orderly listener) on asyncio.

"Push" is long polling underneath: one pull loop per owned queue asks the broker for up to
``pull_batch_size`` messages and lets it hold the request up to ``broker_suspend_max_time_ms``
when there are none. Pulled messages go to a ProcessQueue and are handed to the listener in
batches of ``consume_message_batch_max_size`` by a pool of ``consume_thread_min`` to
``consume_thread_max`` workers (consume_pool.py).

Flow control (RocketMQ's thresholds, checked before each pull of a queue; a queue over one
waits 50 ms and checks again): ``pull_threshold_for_queue`` messages cached (1000; a pull asks
for no more than the room left, so the count never passes it), ``pull_threshold_size_for_queue``
MiB of bodies cached (100; one pull may pass it) and, for a concurrent listener,
``consume_concurrently_max_span`` offsets between the lowest and the highest message still
cached (2000): a slow message holds back the committed offset, and a crash re-delivers
everything after it. As in RocketMQ the span is over what is cached, so a message stuck alone
(everything after it consumed) does not stop the queue.

The committed offset of a queue is the lowest offset still in flight, so a crash re-delivers,
never skips. A failed message (RECONSUME_LATER, an exception) goes back to the broker with
CONSUMER_SEND_MSG_BACK (clustering); broadcasting drops it with a warning, as RocketMQ does.

A concurrent listener that holds a message for more than ``consume_timeout`` minutes (15,
RocketMQ's consumeTimeout) does not hold the queue's offset forever: every ``consume_timeout``
the lowest cached messages of each queue (up to 16) whose listener started that long ago are
sent back (delay level 3) and forgotten, so the offset moves past them; the listener's late
answer is then ignored (clustering only; RocketMQ's cleanExpireMsg).

An orderly listener (MessageListenerOrderly) is consumed by consume_orderly.py instead: one
batch per queue at a time, in offset order, under the queue's broker lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..message import Message
from .allocate import AllocateMessageQueueStrategy
from .common import (
    RETRY_GROUP_TOPIC_PREFIX,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    ConsumeType,
    MessageModel,
    MessageQueue,
    PullStatus,
)
from .config import ClientConfig
from .consume_orderly import LOCK_INTERVAL_MS, LOCK_MAX_LIVE_TIME_MS, ConsumeMessageOrderlyService
from .consume_pool import ConsumePool
from .consumer_base import ConsumerBase
from .errors import MQClientError
from .filter import build_subscription
from .listener import (
    ConsumeConcurrentlyContext,
    Listener,
    MessageListenerOrderly,
    call_listener,
    concurrently_status,
    listener_function,
)
from .process_queue import ProcessQueue
from .pull import pull_once

log = logging.getLogger(__name__)

ConsumeRequest = tuple[MessageQueue, ProcessQueue, list[Message]]  # RocketMQ's ConsumeRequest

PULL_DELAY_WHEN_FLOW_CONTROL_S = 0.05
PULL_DELAY_WHEN_EXCEPTION_S = 3.0
CONSUME_LATER_DELAY_S = 5.0  # RocketMQ's submitConsumeRequestLater
SHUTDOWN_WAIT_S = 5.0  # how long shutdown waits for running listeners before committing
EXPIRED_PER_QUEUE_MAX = 16  # messages sent back per queue per cleaning (RocketMQ's loop bound)
EXPIRED_DELAY_LEVEL = 3


class PushConsumer(ConsumerBase):
    CONSUME_TYPE = ConsumeType.CONSUME_PASSIVELY

    def __init__(
        self,
        consumer_group: str,
        *,
        namesrv_addr: str | None = None,
        client_config: ClientConfig | None = None,
        message_model: MessageModel = MessageModel.CLUSTERING,
        consume_from_where: ConsumeFromWhere = ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET,
        consume_timestamp: str | None = None,
        allocate_message_queue_strategy: AllocateMessageQueueStrategy | None = None,
        consume_thread_min: int = 20,
        consume_thread_max: int = 20,
        pull_threshold_for_queue: int = 1000,
        pull_threshold_size_for_queue: int = 100,
        consume_concurrently_max_span: int = 2000,
        pull_batch_size: int = 32,
        consume_message_batch_max_size: int = 1,
        broker_suspend_max_time_ms: int = 15_000,
        max_reconsume_times: int = -1,
        suspend_current_queue_time_millis: int = 1000,
        consume_timeout: float = 15,
        offsets_dir: str | Path | None = None,
    ) -> None:
        if consume_thread_min > consume_thread_max or consume_thread_max < 1:
            raise ValueError("need 1 <= consume_thread_min <= consume_thread_max")
        if not 1 <= consume_message_batch_max_size <= 1024:
            raise ValueError("consume_message_batch_max_size must be in [1, 1024]")
        if not 1 <= pull_batch_size <= 1024:
            raise ValueError("pull_batch_size must be in [1, 1024]")
        if not 1 <= pull_threshold_for_queue <= 65535:
            raise ValueError("pull_threshold_for_queue must be in [1, 65535]")
        if not consume_timeout > 0:
            raise ValueError("consume_timeout (minutes) must be positive")
        super().__init__(
            consumer_group, namesrv_addr=namesrv_addr, client_config=client_config,
            message_model=message_model, consume_from_where=consume_from_where,
            consume_timestamp=consume_timestamp,
            allocate_message_queue_strategy=allocate_message_queue_strategy, offsets_dir=offsets_dir,
        )
        self.consume_thread_min = consume_thread_min
        self.consume_thread_max = consume_thread_max
        self.pull_threshold_for_queue = pull_threshold_for_queue
        self.pull_threshold_size_for_queue = pull_threshold_size_for_queue  # MiB
        self.consume_concurrently_max_span = consume_concurrently_max_span
        self.pull_batch_size = pull_batch_size
        self.consume_message_batch_max_size = consume_message_batch_max_size
        self.broker_suspend_max_time_ms = broker_suspend_max_time_ms
        # -1: the broker applies the group's retryMaxTimes (16 unless updateSubGroup -r changed it);
        # RocketMQ's Java client sends 16 then, which overrides the group's setting. Orderly
        # consumption reads -1 as its own default, 16 local retries before the DLQ.
        self.max_reconsume_times = max_reconsume_times
        self.suspend_current_queue_time_millis = suspend_current_queue_time_millis  # orderly
        self.consume_timeout = consume_timeout  # minutes
        self.expired_sent_back = 0
        self.rebalance_lock_interval_ms = LOCK_INTERVAL_MS  # orderly, CLUSTERING
        self.rebalance_lock_max_live_time_ms = LOCK_MAX_LIVE_TIME_MS
        self.pull_delay_when_exception_s = PULL_DELAY_WHEN_EXCEPTION_S
        self.consume_later_delay_s = CONSUME_LATER_DELAY_S
        self._listener_fn: Any = None
        self._listener_async = False  # a coroutine function: awaited on the loop, no thread hop
        self._listener_orderly = False
        self._orderly: ConsumeMessageOrderlyService | None = None
        self._pool: ConsumePool[ConsumeRequest] | None = None  # concurrent listeners
        self._consume_tasks: set[asyncio.Task[None]] = set()  # orderly listeners
        self._cleaner: asyncio.Task[None] | None = None  # consume_timeout, concurrent listeners
        self._semaphore: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._rebalance_lock: asyncio.Lock | None = None

    # -- configuration ----------------------------------------------------------------------

    def subscribe(self, topic: str, sub_expression: str = "*") -> None:
        """``"*"`` for every message, ``"tagA || tagB"`` for those tags only."""
        self.subscriptions[topic] = build_subscription(topic, sub_expression)

    def unsubscribe(self, topic: str) -> None:
        self.subscriptions.pop(topic, None)

    def register_message_listener(self, listener: Listener, *, orderly: bool | None = None) -> None:
        """A MessageListenerOrderly subclass is consumed orderly; a plain function when
        ``orderly=True`` (it then gets a ConsumeOrderlyContext and answers ConsumeOrderlyStatus)."""
        self._listener_fn = listener_function(listener)
        self._listener_async = inspect.iscoroutinefunction(self._listener_fn)
        self._listener_orderly = isinstance(listener, MessageListenerOrderly) if orderly is None else orderly

    @property
    def retry_topic(self) -> str:
        return RETRY_GROUP_TOPIC_PREFIX + self.group

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._instance is not None:
            return
        if self._listener_fn is None:
            raise MQClientError("register a message listener before start()")
        if not self.subscriptions:
            raise MQClientError("subscribe to a topic before start()")
        if self.message_model == MessageModel.CLUSTERING:
            # Retried messages come back on the group's retry topic (once the broker has it).
            self.subscriptions.setdefault(self.retry_topic, build_subscription(self.retry_topic, "*"))
        instance = await self._acquire_instance()
        self._semaphore = asyncio.Semaphore(self.consume_thread_max)
        self._executor = ThreadPoolExecutor(self.consume_thread_max, f"consume-{self.group}")
        self._rebalance_lock = asyncio.Lock()
        await self._open_offsets_and_rebalance(instance, self._start_pulling, self._remove_unnecessary_queue)
        if self._listener_orderly:
            self._orderly = ConsumeMessageOrderlyService(self, self._listener_fn)
            self._orderly.start()
        else:
            self._pool = ConsumePool(self._consume, self.consume_thread_min, self.consume_thread_max,
                                     name=f"consume-{self.group}")
            self._pool.start()
            if self.message_model == MessageModel.CLUSTERING:
                self._cleaner = asyncio.create_task(self._clean_expired_loop(), name=f"clean-expired-{self.group}")
        await self._update_routes(instance, self.subscriptions, quiet_topic=self.retry_topic)
        await instance.send_heartbeat_to_all_brokers()  # the broker makes the retry topic now
        await self.do_rebalance()

    async def shutdown(self) -> None:
        if self._rebalance_lock is None:
            return
        async with self._rebalance_lock:  # not in the middle of a rebalance, which would start pulls
            instance = self._take_instance()
        if instance is None:
            return
        rebalance = self._rebalance
        assert rebalance is not None and self._offset_store is not None
        for pq in rebalance.process_queue_table.values():
            pq.dropped = True  # stops pull loops; running listeners may still finish
        cleaner, self._cleaner = self._cleaner, None
        await _cancel_all([*self._pull_tasks.values(), *([cleaner] if cleaner else [])])
        self._pull_tasks.clear()
        if self._pool is not None:
            await self._pool.wait_idle(SHUTDOWN_WAIT_S)
            await self._pool.close()
            self._pool = None
        if self._consume_tasks:
            await asyncio.wait(list(self._consume_tasks), timeout=SHUTDOWN_WAIT_S)
        await _cancel_all(list(self._consume_tasks))
        await self._offset_store.persist_all(list(rebalance.process_queue_table))
        if self._orderly is not None:  # unlocked only once the offsets are on the broker
            await self._orderly.shutdown(list(rebalance.process_queue_table))
            self._orderly = None
        rebalance.process_queue_table.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        await self._release(instance)

    # -- what the client instance asks of every consumer ------------------------------------

    def subscribed_topics(self) -> set[str]:
        return set(self.subscriptions)

    async def do_rebalance(self) -> None:
        if self._rebalance is None or self._rebalance_lock is None:
            return
        async with self._rebalance_lock:
            if self._instance is not None:  # else shut down while this waited
                await self._rebalance.do_rebalance()

    async def persist_consumer_offset(self) -> None:
        if self._rebalance is not None and self._offset_store is not None:
            await self._offset_store.persist_all(list(self._rebalance.process_queue_table))

    def assigned_queues(self) -> list[MessageQueue]:
        """The queues this consumer owns now (after the last rebalance)."""
        return sorted(self._rebalance.process_queue_table) if self._rebalance else []

    # -- rebalance hooks --------------------------------------------------------------------

    def _start_pulling(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        task = asyncio.create_task(self._pull_loop(mq, pq, offset), name=f"pull-{mq.key}")
        self._pull_tasks[mq] = task
        task.add_done_callback(lambda t: self._pull_tasks.pop(mq, None)
                               if self._pull_tasks.get(mq) is t else None)

    async def _remove_unnecessary_queue(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        assert self._offset_store is not None
        task = self._pull_tasks.pop(mq, None)
        if task is not None:
            task.cancel()  # it may sit in a long poll for seconds; the queue is not ours now
        if self._orderly is not None:
            self._orderly.release(mq, pq)  # after its in-flight batch: persist, unlock
            return
        await self._offset_store.persist(mq)
        self._offset_store.remove_offset(mq)

    # -- pulling ----------------------------------------------------------------------------

    async def _pull_loop(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        assert self._instance is not None and self._offset_store is not None
        instance, store = self._instance, self._offset_store
        subscription = self.subscriptions.get(mq.topic) or build_subscription(mq.topic, "*")
        while not pq.dropped:
            if self._flow_controlled(pq):
                await asyncio.sleep(PULL_DELAY_WHEN_FLOW_CONTROL_S)
                continue
            if self._orderly is not None:  # pull only under the queue's lock
                locked_offset = await self._orderly.before_pull(mq, pq, offset)
                if locked_offset is None:
                    break
                offset = locked_offset
            commit = -1
            if self.message_model == MessageModel.CLUSTERING:
                commit = await store.read_offset(mq, from_store=False)
            try:
                result = await pull_once(
                    instance, self.group, mq, subscription, offset,
                    min(self.pull_batch_size, self.pull_threshold_for_queue - pq.msg_count),
                    commit_offset=commit, suspend_timeout_ms=self.broker_suspend_max_time_ms,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if pq.dropped:
                    break
                log.warning("group %s: pull of %s at %d failed: %s", self.group, mq, offset, exc)
                await asyncio.sleep(self.pull_delay_when_exception_s)
                continue
            if pq.dropped:
                break
            pq.last_pull_timestamp_s = asyncio.get_running_loop().time()
            if result.pull_status == PullStatus.OFFSET_ILLEGAL:
                log.warning("group %s: offset %d of %s is illegal; moving to %d",
                            self.group, offset, mq, result.next_begin_offset)
                store.update_offset(mq, result.next_begin_offset, increase_only=False)
            offset = result.next_begin_offset
            if result.msg_found_list:
                pq.put_messages(result.msg_found_list)
                self._submit(mq, pq, result.msg_found_list)
            elif pq.msg_count == 0:
                # Nothing in flight and nothing matched: the filtered-out messages are done.
                store.update_offset(mq, offset, increase_only=True)

    def _flow_controlled(self, pq: ProcessQueue) -> bool:
        """Whether ``pq`` holds too much to pull more now (the module docstring's thresholds)."""
        if pq.msg_count >= self.pull_threshold_for_queue:
            return True
        if pq.msg_size > self.pull_threshold_size_for_queue * 1024 * 1024:
            return True
        return self._orderly is None and pq.max_span > self.consume_concurrently_max_span

    # -- consuming --------------------------------------------------------------------------

    def _submit(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[Message],
                delay_s: float = 0.0) -> None:
        if self._orderly is not None:
            self._orderly.submit(mq, pq)  # its worker takes the messages from pq in order
            return
        pool = self._pool
        if pool is None:
            return  # shut down
        size = self.consume_message_batch_max_size
        if size == 1:
            requests = [(mq, pq, [m]) for m in msgs]
        else:
            requests = [(mq, pq, msgs[i : i + size]) for i in range(0, len(msgs), size)]
        if not delay_s:
            pool.submit_all(requests)
            return
        for request in requests:
            pool.submit_later(request, delay_s)

    async def _consume(self, request: ConsumeRequest) -> None:
        mq, pq, msgs = request
        if pq.dropped:
            return
        pq.mark_consuming(msgs, time.monotonic())
        context = ConsumeConcurrentlyContext(mq)
        try:
            if self._listener_async:
                status = await self._listener_fn(list(msgs), context)
                if status is not ConsumeConcurrentlyStatus.CONSUME_SUCCESS:
                    status = concurrently_status(status)
            else:
                assert self._executor is not None
                status = await call_listener(self._listener_fn, msgs, context, self._executor)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("group %s: listener failed on %d messages of %s",
                          self.group, len(msgs), mq)
            status = ConsumeConcurrentlyStatus.RECONSUME_LATER
        if status is ConsumeConcurrentlyStatus.CONSUME_SUCCESS and context.ack_index >= len(msgs) - 1:
            self._consumed(mq, pq, msgs)  # the common case: all of them done
            return
        await self._process_consume_result(mq, pq, msgs, status, context)

    def _consumed(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[Message]) -> None:
        offset = pq.remove_one(msgs[0].queue_offset) if len(msgs) == 1 else pq.remove_messages(msgs)
        if offset >= 0 and not pq.dropped and self._offset_store is not None:
            self._offset_store.update_offset(mq, offset, increase_only=True)

    async def _process_consume_result(
        self, mq: MessageQueue, pq: ProcessQueue, msgs: list[Message],
        status: ConsumeConcurrentlyStatus, context: ConsumeConcurrentlyContext,
    ) -> None:
        if status == ConsumeConcurrentlyStatus.CONSUME_SUCCESS:
            ack_index = min(context.ack_index, len(msgs) - 1)
        else:
            ack_index = -1
        failed = msgs[ack_index + 1 :]
        keep: list[Message] = []
        if failed and self.message_model == MessageModel.BROADCASTING:
            for msg in failed:
                log.warning("group %s: broadcast message %s failed and is dropped",
                            self.group, msg.uniq_key or msg.msg_id)
        elif failed and not pq.dropped:
            for msg in failed:
                if not await self._send_message_back(msg, context):
                    msg.reconsume_times += 1
                    keep.append(msg)
        kept = {id(m) for m in keep}
        self._consumed(mq, pq, [m for m in msgs if id(m) not in kept])
        if keep and not pq.dropped:
            self._submit(mq, pq, keep, delay_s=self.consume_later_delay_s)

    async def _clean_expired_loop(self) -> None:
        period_s = self.consume_timeout * 60
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.clean_expired_messages()
            except Exception:
                log.exception("group %s: cleaning expired messages failed", self.group)

    async def clean_expired_messages(self) -> int:
        """Send back the messages listeners have held for over ``consume_timeout`` minutes (the
        lowest of each queue, up to 16 a queue) and forget them; how many went back."""
        rebalance = self._rebalance
        if rebalance is None:
            return 0
        timeout_s = self.consume_timeout * 60
        sent = 0
        for mq, pq in list(rebalance.process_queue_table.items()):
            for _ in range(EXPIRED_PER_QUEUE_MAX):
                if pq.dropped:
                    break
                msg = pq.expired(time.monotonic(), timeout_s)
                if msg is None:
                    break
                context = ConsumeConcurrentlyContext(mq)
                context.delay_level_when_next_consume = EXPIRED_DELAY_LEVEL
                if not await self._send_message_back(msg, context):
                    break  # kept: it is still running, and a crash would re-deliver it
                log.warning("group %s: message %s of %s consumed for over %g min: sent back",
                            self.group, msg.uniq_key or msg.msg_id, mq, self.consume_timeout)
                self._consumed(mq, pq, [msg])
                sent += 1
        self.expired_sent_back += sent
        return sent

    async def _send_message_back(self, msg: Message, context: ConsumeConcurrentlyContext) -> bool:
        """Hand a failed message to the broker's retry machinery (CONSUMER_SEND_MSG_BACK): it
        comes back on ``%RETRY%<group>`` after delay level 3 + reconsumeTimes, or goes to
        ``%DLQ%<group>`` past maxReconsumeTimes. False if the broker would not take it (a broker
        without retries answers REQUEST_CODE_NOT_SUPPORTED): then we redeliver locally after
        ``consume_later_delay_s``. The message stays in its ProcessQueue meanwhile, so the
        committed offset cannot pass it and a crash re-delivers it.
        """
        assert self._instance is not None
        try:
            addr = self._instance.master_addr(context.message_queue.broker_name) or msg.store_host
            await self._instance.api.consumer_send_message_back(
                addr,
                commit_log_offset=msg.commitlog_offset,
                group=self.group,
                delay_level=context.delay_level_when_next_consume,
                origin_msg_id=msg.msg_id,
                origin_topic=msg.topic,
                max_reconsume_times=self.max_reconsume_times if self.max_reconsume_times >= 0 else None,
            )
        except Exception as exc:
            log.info("group %s: send-back of %s refused (%s); redelivering locally in %.1f s",
                     self.group, msg.uniq_key or msg.msg_id, exc, self.consume_later_delay_s)
            return False
        return True


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)
