"""Orderly consumption for the PushConsumer (RocketMQ's ConsumeMessageOrderlyService).

Each queue is consumed by one task at a time, in offset order, and in CLUSTERING mode only while
this client holds the queue's lock on its broker (LOCK_BATCH_MQ; the broker keeps a lock 60 s).

Locks
  - A newly assigned queue is locked before its first pull: the pull loop asks, and retries every
    ``LOCK_RETRY_S`` while another client holds it. The start offset is read from the broker
    *after* the lock is granted, so the previous owner's last commit is seen.
  - Every ``rebalance_lock_interval_ms`` (20 s, RocketMQ's ``rocketmq.client.rebalance.lockInterval``)
    all held locks are renewed, one request per broker. A lock the broker has not confirmed for
    ``rebalance_lock_max_live_time_ms`` (30 s) is stale: no batch of that queue starts until it is
    confirmed again. The broker's 60 s leaves a margin, so a client that lost touch stops before
    another may take over.
  - A lock that was lost or went stale is taken again the way a new queue is: wait for the
    in-flight batch, forget what was pulled, read the offset from the broker.
  - A queue rebalanced away stops at once (no new batch); a background task waits for its
    in-flight batch, commits and persists the offset, then UNLOCK_BATCH_MQ, so the next owner
    starts exactly after it. On shutdown offsets are persisted first, then every lock released.

Consuming
  - One worker task per queue takes up to ``consume_message_batch_max_size`` messages, calls the
    listener, and commits (``context.auto_commit``) before taking more. The committed offset is
    the one after the last consumed message, never past one not consumed.
  - SUSPEND_CURRENT_QUEUE_A_MOMENT or an exception: the same messages again after
    ``suspend_current_queue_time_millis`` (1000 ms, or the context's), the queue blocked meanwhile.
  - After ``max_reconsume_times`` local retries a message goes to the dead-letter queue:
    CONSUMER_SEND_MSG_BACK with delayLevel -1, which the broker stores in ``%DLQ%<group>``; the
    queue moves on. If the broker refuses, the message is retried locally again (never skipped).
    The maximum is the PushConsumer's ``max_reconsume_times``; when that is -1 (not set),
    ORDERLY_MAX_RECONSUME_TIMES_DEFAULT = 16 (about 16 s of retries at the default suspend time),
    not RocketMQ's Integer.MAX_VALUE, with which a poison message blocks its queue forever. Pass
    ``max_reconsume_times=UNBOUNDED_RECONSUME_TIMES`` (2**31 - 1, RocketMQ's value) for that.
  - BROADCASTING takes no locks; a message past the maximum is dropped with a warning (no DLQ,
    as for concurrent broadcasting).

Unlike RocketMQ, a worker does not yield after 60 s of continuous consumption: every queue has
its own task, so one busy queue cannot starve another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..message import Message
from .common import ConsumeOrderlyStatus, MessageModel, MessageQueue
from .instance import MQClientInstance
from .listener import ConsumeOrderlyContext, call_orderly_listener
from .offset_store import OffsetStore
from .process_queue import ProcessQueue

if TYPE_CHECKING:
    from .push_consumer import PushConsumer

log = logging.getLogger(__name__)

LOCK_INTERVAL_MS = 20_000  # rocketmq.client.rebalance.lockInterval
LOCK_MAX_LIVE_TIME_MS = 30_000  # rocketmq.client.rebalance.lockMaxLiveTime
LOCK_RETRY_S = 0.5  # a pull loop waiting for a lock another client holds
START_OFFSET_RETRY_S = 1.0
SUSPEND_TIME_MIN_MS = 10  # bounds of a suspend, as RocketMQ's submitConsumeRequestLater
SUSPEND_TIME_MAX_MS = 30_000
DLQ_DELAY_LEVEL = -1  # CONSUMER_SEND_MSG_BACK: straight to %DLQ%<group>
ORDERLY_MAX_RECONSUME_TIMES_DEFAULT = 16
UNBOUNDED_RECONSUME_TIMES = 2**31 - 1  # Java's Integer.MAX_VALUE: retry forever

SUCCESS = ConsumeOrderlyStatus.SUCCESS
SUSPEND = ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT
COMMIT = ConsumeOrderlyStatus.COMMIT
ROLLBACK = ConsumeOrderlyStatus.ROLLBACK


class ConsumeMessageOrderlyService:
    def __init__(self, consumer: PushConsumer, listener_fn: Callable[..., Any]) -> None:
        """Made by the consumer's start, once its instance and offset store exist."""
        self.consumer = consumer
        self._fn = listener_fn
        self._clustering = consumer.message_model == MessageModel.CLUSTERING
        # Kept: shutdown unlocks after the consumer has let go of its instance.
        assert consumer._instance is not None and consumer._offset_store is not None
        self._instance: MQClientInstance = consumer._instance
        self._offset_store: OffsetStore = consumer._offset_store
        self._workers: dict[ProcessQueue, asyncio.Task[None]] = {}
        self._queue_locks: dict[MessageQueue, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._releases: dict[MessageQueue, asyncio.Task[None]] = {}
        self._lock_task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._clustering:
            self._lock_task = asyncio.create_task(self._renew_locks_periodically(),
                                                  name=f"orderly-locks-{self.consumer.group}")

    async def shutdown(self, mqs: Iterable[MessageQueue]) -> None:
        """After the consumer persisted its offsets: stop renewing and release every lock."""
        if self._lock_task is not None:
            self._lock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lock_task
            self._lock_task = None
        if self._clustering:
            await self._unlock(list(mqs))

    # -- the consumer's parts (this service is its package-private helper) -------------------


    def _table(self) -> dict[MessageQueue, ProcessQueue]:
        rebalance = self.consumer._rebalance
        return rebalance.process_queue_table if rebalance is not None else {}

    def _track(self, task: asyncio.Task[None]) -> None:
        """Shutdown waits for (then cancels) the consumer's consume tasks; these are some."""
        self.consumer._consume_tasks.add(task)
        task.add_done_callback(self.consumer._consume_tasks.discard)

    # -- locks --------------------------------------------------------------------------------

    @property
    def _max_live_s(self) -> float:
        return self.consumer.rebalance_lock_max_live_time_ms / 1000

    def may_consume(self, pq: ProcessQueue) -> bool:
        return not self._clustering or pq.lock_valid(time.monotonic(), self._max_live_s)

    def _by_broker(self, mqs: Iterable[MessageQueue]) -> dict[str, list[MessageQueue]]:
        groups: dict[str, list[MessageQueue]] = defaultdict(list)
        for mq in mqs:
            groups[mq.broker_name].append(mq)
        return groups

    async def _lock(self, mqs: list[MessageQueue]) -> tuple[set[MessageQueue], set[MessageQueue]]:
        """LOCK_BATCH_MQ for ``mqs`` (one request per broker): (granted, refused). A queue in
        neither was not answered for (its broker could not be asked)."""
        instance = self._instance
        granted: set[MessageQueue] = set()
        refused: set[MessageQueue] = set()
        for broker_mqs in self._by_broker(mqs).values():
            try:
                addr = await instance.find_master_addr(broker_mqs[0])
                got = await instance.api.lock_batch_mq(addr, self.consumer.group, instance.client_id,
                                                       broker_mqs)
            except Exception as exc:
                log.info("group %s: locking %s failed: %s", self.consumer.group, broker_mqs, exc)
                continue
            granted |= got
            refused |= set(broker_mqs) - got
        return granted, refused

    async def _unlock(self, mqs: list[MessageQueue]) -> None:
        instance = self._instance
        for broker_mqs in self._by_broker(mqs).values():
            try:
                addr = await instance.find_master_addr(broker_mqs[0])
                await instance.api.unlock_batch_mq(addr, self.consumer.group, instance.client_id, broker_mqs)
            except Exception as exc:  # the broker lets the lock lapse in 60 s
                log.info("group %s: unlocking %s failed: %s", self.consumer.group, broker_mqs, exc)

    async def _renew_locks_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.consumer.rebalance_lock_interval_ms / 1000)
            try:
                await self.renew_locks()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("group %s: lock renewal failed", self.consumer.group)

    async def renew_locks(self) -> None:
        """Renew every held lock; a queue the broker no longer grants stops consuming."""
        table = self._table()
        held = {mq: pq for mq, pq in table.items() if pq.locked and not pq.dropped}
        if not held:
            return
        asked_at = time.monotonic()
        granted, refused = await self._lock(sorted(held))
        for mq, pq in held.items():
            if mq in granted:
                pq.last_lock_timestamp_s = asked_at
                self.submit(mq, pq)  # resumes a queue whose lock had gone stale
            elif mq in refused:  # another client holds it now; unanswered ones just age
                pq.locked = False
                log.warning("group %s: lost the lock of %s; its consumption stops", self.consumer.group, mq)

    async def before_pull(self, mq: MessageQueue, pq: ProcessQueue, offset: int) -> int | None:
        """The offset to pull from once the queue is locked (None: the queue was dropped).

        Called by the pull loop before every pull; it returns at once while the lock is valid.
        """
        if self.may_consume(pq):
            if pq.msg_count > pq.consuming_count:
                self.submit(mq, pq)
            return offset
        while not pq.dropped:
            release = self._releases.get(mq)
            if release is not None:  # this queue was ours before: let that release finish
                await asyncio.wait([release])
                continue
            asked_at = time.monotonic()
            granted, _ = await self._lock([mq])
            if mq in granted and not pq.dropped:
                start = await self._restart_locked(mq, pq, asked_at)
                if start is not None:
                    return start
                await asyncio.sleep(START_OFFSET_RETRY_S)
            else:
                await asyncio.sleep(LOCK_RETRY_S)
        return None

    async def _restart_locked(self, mq: MessageQueue, pq: ProcessQueue, asked_at: float) -> int | None:
        """Just locked: forget what was pulled before and start at the broker's offset."""
        async with self._queue_locks[mq]:  # no batch of this queue is running
            if pq.dropped:
                return None
            pq.clear()
            start = await self.consumer._compute_pull_from_where(mq)
            if start < 0:
                log.warning("group %s: no start offset for locked %s yet", self.consumer.group, mq)
                return None
            pq.locked = True
            pq.last_lock_timestamp_s = asked_at
            log.info("group %s: locked %s; consuming from offset %d", self.consumer.group, mq, start)
            return start

    def release(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        """``mq`` was rebalanced away (``pq`` is dropped): commit, persist, unlock in the background."""
        previous = self._releases.get(mq)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            store = self._offset_store
            async with self._queue_locks[mq]:  # the in-flight batch has ended and committed
                pq.locked = False
                await store.persist(mq)
                if mq not in self._table():  # not assigned back meanwhile
                    store.remove_offset(mq)
                    if self._clustering:
                        await self._unlock([mq])

        task = asyncio.create_task(run(), name=f"orderly-release-{mq.key}")
        self._releases[mq] = task
        self._track(task)
        task.add_done_callback(lambda t: self._releases.pop(mq, None) if self._releases.get(mq) is t else None)

    # -- consuming ----------------------------------------------------------------------------

    def submit(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        """Make sure a worker consumes ``pq`` (at most one per queue)."""
        running = self._workers.get(pq)
        if pq.dropped or (running is not None and not running.done()):
            return
        task = asyncio.create_task(self._consume_queue(mq, pq), name=f"orderly-{mq.key}")
        self._workers[pq] = task
        self._track(task)

    async def _consume_queue(self, mq: MessageQueue, pq: ProcessQueue) -> None:
        try:
            while True:
                async with self._queue_locks[mq]:
                    if pq.dropped or not self.may_consume(pq):
                        return  # the pull loop locks again and resubmits
                    msgs = pq.take_messages(self.consumer.consume_message_batch_max_size)
                    if not msgs:
                        return
                    suspend_s = await self._consume_batch(mq, pq, msgs)
                if suspend_s > 0:
                    await asyncio.sleep(suspend_s)
        finally:
            # Same step as the last check above: a submit after this starts a new worker.
            if self._workers.get(pq) is asyncio.current_task():
                del self._workers[pq]

    async def _consume_batch(self, mq: MessageQueue, pq: ProcessQueue, msgs: list[Message]) -> float:
        """Run the listener on ``msgs`` and act on its answer; seconds to block the queue."""
        consumer = self.consumer
        context = ConsumeOrderlyContext(mq)
        assert consumer._semaphore is not None and consumer._executor is not None
        async with consumer._semaphore:
            try:
                status = await call_orderly_listener(self._fn, msgs, context, consumer._executor)
            except asyncio.CancelledError:
                pq.consume_again(msgs)  # shutdown: not consumed, not committed
                raise
            except Exception:
                log.exception("group %s: orderly listener failed on %d messages of %s",
                              consumer.group, len(msgs), mq)
                status = SUSPEND
        if context.auto_commit and status in (COMMIT, ROLLBACK):
            log.warning("group %s: %s needs auto_commit=False; taken as SUCCESS", consumer.group, status.name)
            status = SUCCESS
        commit_offset = -1
        if status == SUSPEND:
            retry = await self._check_reconsume_times(mq, msgs)
            if retry:
                pq.consume_again(retry)
                return self._suspend_s(context)
            if context.auto_commit:
                commit_offset = pq.commit()  # every message went to the DLQ
        elif status == ROLLBACK:
            pq.rollback()
            return self._suspend_s(context)
        elif status == COMMIT or context.auto_commit:
            commit_offset = pq.commit()
        # else: SUCCESS without auto_commit holds the offset until a COMMIT
        if commit_offset >= 0:
            # Even when the queue was just dropped: its lock is still ours until the release
            # (which waits for this batch) persists this offset and unlocks.
            self._offset_store.update_offset(mq, commit_offset, increase_only=True)
        return 0.0

    @property
    def max_reconsume_times(self) -> int:
        configured = self.consumer.max_reconsume_times
        return configured if configured >= 0 else ORDERLY_MAX_RECONSUME_TIMES_DEFAULT

    def _suspend_s(self, context: ConsumeOrderlyContext) -> float:
        ms = context.suspend_current_queue_time_millis
        if ms <= 0:
            ms = self.consumer.suspend_current_queue_time_millis
        return min(max(ms, SUSPEND_TIME_MIN_MS), SUSPEND_TIME_MAX_MS) / 1000

    async def _check_reconsume_times(self, mq: MessageQueue, msgs: list[Message]) -> list[Message]:
        """The messages to retry locally; those past the maximum go to the DLQ (or, if the
        broker refuses them, are retried too)."""
        limit = self.max_reconsume_times
        retry = []
        for msg in msgs:
            if msg.reconsume_times >= limit and await self._send_to_dlq(mq, msg, limit):
                continue
            msg.reconsume_times += 1
            retry.append(msg)
        return retry

    async def _send_to_dlq(self, mq: MessageQueue, msg: Message, limit: int) -> bool:
        consumer = self.consumer
        who = msg.uniq_key or msg.msg_id
        if not self._clustering:
            log.warning("group %s: broadcast message %s failed %d times and is dropped",
                        consumer.group, who, msg.reconsume_times + 1)
            return True
        instance = self._instance
        try:
            addr = instance.master_addr(mq.broker_name) or msg.store_host
            await instance.api.consumer_send_message_back(
                addr, commit_log_offset=msg.commitlog_offset, group=consumer.group,
                delay_level=DLQ_DELAY_LEVEL, origin_msg_id=msg.msg_id, origin_topic=msg.topic,
                max_reconsume_times=limit,
            )
        except Exception as exc:
            log.warning("group %s: %s failed %d times but the broker refused it for the DLQ (%s); "
                        "retrying it locally", consumer.group, who, msg.reconsume_times + 1, exc)
            return False
        log.warning("group %s: %s failed %d times; sent to the dead-letter queue",
                    consumer.group, who, msg.reconsume_times + 1)
        return True
