"""LitePullConsumer: RocketMQ's DefaultLitePullConsumer on asyncio.

The application drives consumption with ``poll``. Either ``subscribe`` (the group shares the
queues by rebalance, like a push consumer) or ``assign`` (the application names the queues).
Background pull loops (long polling) fill a buffer; ``poll`` hands out one pulled batch and
counts it consumed. Offsets are committed from what was polled: with ``auto_commit`` (on by
default) from ``poll`` once ``auto_commit_interval_ms`` (5 s) has passed since the last commit,
as RocketMQ does, and also at shutdown (RocketMQ's shutdown persists only the last commit, so a
restart re-delivers what was polled since); without it only by ``commit_sync``.
``seek`` moves a queue's next offset (pulls already buffered for it are thrown away).

Flow control, RocketMQ's thresholds and defaults, checked before each pull of a queue (a queue
over one waits 50 ms and checks again): ``pull_threshold_for_all`` (10000) messages buffered
over every queue (counted as RocketMQ does: buffered pulls times ``pull_batch_size``),
``pull_threshold_for_queue`` (1000) messages and ``pull_threshold_size_for_queue`` (100 MiB of
bodies) cached for the queue, and ``consume_max_span`` (2000) offsets between the lowest and
the highest message of the queue not yet polled. An application that stops polling holds a
bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..message import Message
from .allocate import AllocateMessageQueueStrategy
from .common import ConsumeFromWhere, ConsumeType, MessageModel, MessageQueue, PullStatus
from .config import ClientConfig
from .consumer_base import ConsumerBase
from .errors import MQClientError
from .filter import build_subscription
from .process_queue import ProcessQueue
from .pull import pull_once

log = logging.getLogger(__name__)

PULL_DELAY_WHEN_PAUSED_S = 0.05
PULL_DELAY_WHEN_EXCEPTION_S = 1.0


@dataclass
class _ConsumeRequest:
    mq: MessageQueue
    pq: ProcessQueue
    msgs: list[Message]


class LitePullConsumer(ConsumerBase):
    CONSUME_TYPE = ConsumeType.CONSUME_ACTIVELY

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
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5_000,
        pull_batch_size: int = 10,
        pull_threshold_for_queue: int = 1000,
        pull_threshold_for_all: int = 10_000,
        pull_threshold_size_for_queue: int = 100,
        consume_max_span: int = 2000,
        poll_timeout_millis: int = 5_000,
        broker_suspend_max_time_ms: int = 20_000,
        offsets_dir: str | Path | None = None,
    ) -> None:
        super().__init__(
            consumer_group, namesrv_addr=namesrv_addr, client_config=client_config,
            message_model=message_model, consume_from_where=consume_from_where,
            consume_timestamp=consume_timestamp,
            allocate_message_queue_strategy=allocate_message_queue_strategy, offsets_dir=offsets_dir,
        )
        self.auto_commit = auto_commit
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.pull_batch_size = pull_batch_size
        self.pull_threshold_for_queue = pull_threshold_for_queue
        self.pull_threshold_for_all = pull_threshold_for_all
        self.pull_threshold_size_for_queue = pull_threshold_size_for_queue  # MiB
        self.consume_max_span = consume_max_span
        self.poll_timeout_millis = poll_timeout_millis
        self.broker_suspend_max_time_ms = broker_suspend_max_time_ms
        self._assigned: list[MessageQueue] | None = None
        self._queues: dict[MessageQueue, ProcessQueue] = {}
        self._consumed: dict[MessageQueue, int] = {}  # next offset after what poll handed out
        self._buffer: asyncio.Queue[_ConsumeRequest] | None = None
        self._last_commit_s = time.monotonic()
        self._lock: asyncio.Lock | None = None

    # -- configuration ----------------------------------------------------------------------

    def subscribe(self, topic: str, sub_expression: str = "*") -> None:
        if self._assigned is not None:
            raise MQClientError("subscribe and assign cannot be mixed")
        self.subscriptions[topic] = build_subscription(topic, sub_expression)

    async def assign(self, mqs: Iterable[MessageQueue]) -> None:
        """Own exactly these queues (no rebalance). May be called again to change the set."""
        if self.subscriptions and self._assigned is None:
            raise MQClientError("subscribe and assign cannot be mixed")
        self._assigned = sorted(set(mqs))
        if self._instance is not None:
            await self._apply_assignment()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._instance is not None:
            return
        instance = await self._acquire_instance()
        self._buffer = asyncio.Queue()
        self._lock = asyncio.Lock()
        await self._open_offsets_and_rebalance(instance, self._on_added, self._on_removed)
        await self._update_routes(instance, set(self.subscriptions) | {mq.topic for mq in self._assigned or []})
        await instance.send_heartbeat_to_all_brokers()
        if self._assigned is not None:
            await self._apply_assignment()
        else:
            await self.do_rebalance()

    async def shutdown(self) -> None:
        instance = self._take_instance()
        if instance is None:
            return
        for pq in self._queues.values():
            pq.dropped = True
        tasks = list(self._pull_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pull_tasks.clear()
        if self.auto_commit:
            await self.commit_sync()
        self._queues.clear()
        await self._release(instance)

    # -- what the client instance asks of every consumer ------------------------------------

    def subscribed_topics(self) -> set[str]:
        return set(self.subscriptions) | {mq.topic for mq in self._assigned or []}

    async def do_rebalance(self) -> None:
        if self._assigned is not None or self._rebalance is None or self._lock is None:
            return
        async with self._lock:
            await self._rebalance.do_rebalance()

    async def persist_consumer_offset(self) -> None:
        if self._offset_store is not None:
            await self._offset_store.persist_all(list(self._queues))

    def assignment(self) -> list[MessageQueue]:
        return sorted(self._queues)

    # -- queue ownership --------------------------------------------------------------------

    async def _apply_assignment(self) -> None:
        assert self._assigned is not None and self._lock is not None
        wanted = set(self._assigned)
        async with self._lock:
            for mq in list(self._queues):
                if mq not in wanted:
                    pq = self._queues[mq]
                    pq.dropped = True
                    await self._on_removed(mq, pq)
            for mq in sorted(wanted - set(self._queues)):
                offset = await self._compute_pull_from_where(mq)
                if offset < 0:
                    raise MQClientError(f"cannot find where to start on {mq}")
                self._on_added(mq, ProcessQueue(), offset)

    def _on_added(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        self._queues[mq] = pq
        self._consumed[mq] = offset
        self._start_pull_task(mq, pq, offset)

    async def _on_removed(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        task = self._pull_tasks.pop(mq, None)
        if task is not None:
            task.cancel()
        self._queues.pop(mq, None)
        assert self._offset_store is not None
        if self.auto_commit and (offset := self._consumed.get(mq, -1)) >= 0:
            self._offset_store.update_offset(mq, offset, increase_only=True)
        await self._offset_store.persist(mq)
        self._offset_store.remove_offset(mq)
        self._consumed.pop(mq, None)

    def _start_pull_task(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        task = asyncio.create_task(self._pull_loop(mq, pq, offset), name=f"lite-pull-{mq.key}")
        self._pull_tasks[mq] = task

    # -- pulling ----------------------------------------------------------------------------

    async def _pull_loop(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> None:
        assert self._instance is not None and self._buffer is not None
        subscription = self.subscriptions.get(mq.topic) or build_subscription(mq.topic, "*")
        while not pq.dropped:
            if self._flow_controlled(pq):
                await asyncio.sleep(PULL_DELAY_WHEN_PAUSED_S)
                continue
            try:
                result = await pull_once(
                    self._instance, self.group, mq, subscription, offset, self.pull_batch_size,
                    suspend_timeout_ms=self.broker_suspend_max_time_ms,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("group %s: pull of %s at %d failed: %s", self.group, mq, offset, exc)
                await asyncio.sleep(PULL_DELAY_WHEN_EXCEPTION_S)
                continue
            if pq.dropped:
                return
            if result.pull_status == PullStatus.OFFSET_ILLEGAL:
                log.warning("group %s: offset %d of %s is illegal; moving to %d",
                            self.group, offset, mq, result.next_begin_offset)
            offset = result.next_begin_offset
            if result.msg_found_list:
                pq.put_messages(result.msg_found_list)
                self._buffer.put_nowait(_ConsumeRequest(mq, pq, result.msg_found_list))
            elif pq.msg_count == 0 and self._consumed.get(mq, -1) < offset:
                self._consumed[mq] = offset  # every matching message before here was polled

    def _flow_controlled(self, pq: ProcessQueue) -> bool:
        """Whether to wait before pulling more for ``pq`` (the module docstring's thresholds)."""
        assert self._buffer is not None
        return (self._buffer.qsize() * self.pull_batch_size > self.pull_threshold_for_all
                or pq.msg_count > self.pull_threshold_for_queue
                or pq.msg_size > self.pull_threshold_size_for_queue * 1024 * 1024
                or pq.max_span > self.consume_max_span)

    # -- the application's calls ------------------------------------------------------------

    async def poll(self, timeout_ms: int | None = None) -> list[Message]:
        """The next pulled batch (at most ``pull_batch_size`` messages of one queue), or an
        empty list after ``timeout_ms`` (default ``poll_timeout_millis``)."""
        if self._instance is None or self._buffer is None:
            raise MQClientError("the consumer is not started")
        await self._maybe_auto_commit()
        timeout_s = (self.poll_timeout_millis if timeout_ms is None else timeout_ms) / 1000
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    request = self._buffer.get_nowait()
                else:
                    request = await asyncio.wait_for(self._buffer.get(), remaining)
            except (TimeoutError, asyncio.QueueEmpty):
                return []
            if request.pq.dropped or self._queues.get(request.mq) is not request.pq:
                continue  # a rebalance or seek made this batch stale
            offset = request.pq.remove_messages(request.msgs)
            if offset >= 0:
                self._consumed[request.mq] = offset
            return request.msgs

    async def _maybe_auto_commit(self) -> None:
        if self.auto_commit and (
            time.monotonic() - self._last_commit_s >= self.auto_commit_interval_ms / 1000
        ):
            await self.commit_sync()

    async def commit_sync(self, offsets: Mapping[MessageQueue, int] | None = None) -> None:
        """Commit what ``poll`` has handed out (or exactly ``offsets``) and persist it now."""
        assert self._offset_store is not None
        self._last_commit_s = time.monotonic()
        chosen = dict(offsets) if offsets is not None else dict(self._consumed)
        for mq, offset in chosen.items():
            if offset >= 0:
                self._offset_store.update_offset(mq, offset, increase_only=False)
        await self._offset_store.persist_all(chosen)

    async def committed(self, mq: MessageQueue) -> int:
        """The offset stored for the group (the broker's, or the local file's); -1 if none."""
        assert self._offset_store is not None
        return await self._offset_store.read_offset(mq, from_store=True)

    async def seek(self, mq: MessageQueue, offset: int) -> None:
        """Consume ``mq`` from ``offset`` next. The queue must be owned now."""
        if self._instance is None or self._lock is None:
            raise MQClientError("the consumer is not started")
        old = self._queues.get(mq)
        if old is None:
            raise MQClientError(f"{mq} is not assigned to this consumer; cannot seek")
        addr = await self._instance.find_master_addr(mq)
        low = await self._instance.api.get_min_offset(addr, mq)
        high = await self._instance.api.get_max_offset(addr, mq)
        if not low <= offset <= high:
            raise MQClientError(f"seek offset {offset} of {mq} is outside [{low}, {high}]")
        async with self._lock:
            old.dropped = True
            task = self._pull_tasks.pop(mq, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            pq = ProcessQueue()
            self._queues[mq] = pq
            self._consumed[mq] = offset
            self._start_pull_task(mq, pq, offset)

    async def seek_to_begin(self, mq: MessageQueue) -> None:
        assert self._instance is not None
        addr = await self._instance.find_master_addr(mq)
        await self.seek(mq, await self._instance.api.get_min_offset(addr, mq))

    async def seek_to_end(self, mq: MessageQueue) -> None:
        assert self._instance is not None
        addr = await self._instance.find_master_addr(mq)
        await self.seek(mq, await self._instance.api.get_max_offset(addr, mq))

    async def fetch_message_queues(self, topic: str) -> list[MessageQueue]:
        if self._instance is None:
            raise MQClientError("the consumer is not started")
        await self._instance.update_route(topic)
        return await self._instance.subscribe_queues(topic)
