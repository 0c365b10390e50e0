"""Scheduled messages: a durable timer over two system topics.

Storing. A message whose properties schedule it (see ``delay.py``) is stored, as sent, in a
system queue instead of its topic, with ``REAL_TOPIC`` / ``REAL_QID`` saved as properties:

* delay level n -> ``SCHEDULE_TOPIC_XXXX`` queue n-1. All messages of a level wait equally long,
  so each such queue is FIFO by due time (store time + the level's delay).
* an arbitrary time -> ``rmq_sys_wheel_timer`` queue 0, with the due time in ``TIMER_OUT_MS``.

Delivering. One task (``_run``) wakes at the earliest known due time (at least every
``POLL_S``), copies what is due to its real topic and queue (the copy loses the scheduling
properties and gets a new offset and store time; UNIQ_KEY, keys, born time, reconsume times
stay) and moves the progress on:

* per level, a cursor: the queue offset below which everything is delivered. Only the head of
  each queue is looked at.
* the timer queue is not FIFO by due time. In memory: a heap of ``due << 40 | offset`` for the
  loaded, undelivered messages, a heap of their offsets, and ``done``, the delivered offsets
  above ``low`` (the lowest undelivered offset). On disk: ``low`` and ``done``. A restart
  rebuilds the heaps by scanning the queue from ``low`` (skipping ``done``). ``done`` stays
  bounded: when it passes ``TIMER_DONE_MAX`` the lowest undelivered messages are rolled (copied,
  due time unchanged, to the end of the timer queue) so ``low`` moves past them.

Memory: the timer heaps hold one entry per waiting timer message; at ``timerPendingMax`` (500,000,
~45 MB) a new timer message is refused (RocketMQ's timer flow control). Delay levels cost
nothing per message in memory: each level reads ahead at most ``READ_MESSAGES_MAX`` messages
(``READ_BYTES_MAX``, or one message if it is larger). A round delivers at most
``ROUND_MESSAGES_MAX`` messages and loads at most ``LOAD_PER_ROUND_MAX`` timer entries.

Durability and progress (``config/delayOffset.json``, RocketMQ's name): a separate writer
(``_saver``) takes a snapshot of the progress, fsyncs every queue log delivered to since the
previous snapshot, and only then writes the snapshot (atomically). So the saved progress never
covers a copy that is not durable: the timer never loses a scheduled message the store kept,
across SIGTERM, SIGKILL or power loss (what the store keeps of an acknowledged send is the flush
policy's promise, README "What an acknowledgement means"). At-least-once: a crash after a copy was written and before the progress covering
it was saved delivers that message again after the restart (at most ``SAVE_INTERVAL_S`` plus
one fsync of deliveries). A message is never delivered before its due time: the check is
against this broker's wall clock, and a message due during an outage is delivered right after
the restart. Delivered parts of the system queues are deleted (whole segments) once the saved
progress has passed them; their logs have no age-based retention, so a pending message never
ages out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.rocket.message import (
    SYSFLAG_TRANSACTION_COMMIT,
    SYSFLAG_TRANSACTION_MASK,
    Message,
    decode_one_stored,
    decode_stored,
)
from logstore import Log, LogConfig

from .delay import (
    PROPERTY_REAL_QUEUE_ID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TIMER_OUT_MS,
    SCHEDULE_PROPERTIES,
    SCHEDULE_TOPIC,
    TIMER_TOPIC,
    parse_delay_levels,
    schedule_of,
)
from .inner import InnerMessage, append_inner
from .persist import JsonFile
from .queues import QUEUE_OFFSET_BITS, QUEUE_OFFSET_MASK, queue_log_name
from .reader import TagFilter, read_messages, read_one
from .topics import DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, TopicConfig

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

PROGRESS_FILE = "delayOffset.json"
POLL_S = 0.05  # new scheduled messages are noticed this soon
ROUND_MESSAGES_MAX = 4096  # delivered per round
READ_MESSAGES_MAX = 64  # per read of a system queue (a level reads ahead at most this much)
READ_BYTES_MAX = 256 * 1024
LOAD_PER_ROUND_MAX = 20_000  # timer messages loaded into the heaps per round
TIMER_DONE_MAX = 8192
ROLLS_PER_ROUND_MAX = 256
SAVE_INTERVAL_S = 0.1  # between progress saves
TRIM_INTERVAL_S = 60.0  # between deletions of delivered segments
FAILURE_BACKOFF_S = 1.0
CLOSE_WAIT_S = 10.0
SYSTEM_SEGMENT_BYTES = 64 * 1024 * 1024  # small, so delivered data is deleted soon
_ALL = TagFilter()


class TimerFlowControl(Exception):
    """Too many timer messages wait already (the remark of the refusal)."""


@dataclass
class _Level:
    level: int
    delay_ms: int
    log: Log
    cursor: int
    # Messages read ahead from cursor on (bounded by one read): a round looks at the head only.
    ahead: deque[Message] = field(default_factory=deque)


@dataclass
class _Timer:
    log: Log
    loaded: int  # messages below this offset are in the heaps or delivered
    done: set[int] = field(default_factory=set)
    due_heap: list[int] = field(default_factory=list)  # due << 40 | offset
    offset_heap: list[int] = field(default_factory=list)

    def low(self) -> int:
        """The lowest undelivered loaded offset (``loaded`` if none)."""
        heap, done = self.offset_heap, self.done
        while heap and heap[0] in done:
            done.discard(heapq.heappop(heap))
        return heap[0] if heap else self.loaded

    def delivered(self, offset: int) -> bool:
        return offset in self.done or offset < self.low()

    def pending(self) -> int:
        return len(self.offset_heap) + max(0, self.log.assigned_offset - self.loaded)


@dataclass
class _Round:
    """What one round delivers and, once that is stored, how progress moves."""

    msgs: list[InnerMessage] = field(default_factory=list)
    cursors: list[tuple[_Level, int]] = field(default_factory=list)
    timer_keys: list[int] = field(default_factory=list)  # popped from the due heap
    next_due_ms: int = 0


class Scheduler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        cfg = broker.config
        self.delays_ms = parse_delay_levels(cfg.message_delay_level)
        self.file = JsonFile(broker.store.io, broker.store.root, PROGRESS_FILE)
        self.levels: list[_Level] = []
        self.timer: _Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._saver_task: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._touched: dict[str, Log] = {}
        self._stopping = False
        self._closing = False
        self._saved: dict[str, Any] = {}
        self._adopted: dict[str, Any] = {}
        self._last_trim_s = 0.0
        self.delivered = self.rolled = self.dropped = self.saves = 0

    @property
    def log_config(self) -> LogConfig:
        return dataclasses.replace(self.broker.queues.log_config, retention_ms=-1, segment_bytes=SYSTEM_SEGMENT_BYTES)

    # -- storing -------------------------------------------------------------------------------

    def route(self, topic: str, queue_id: int, props: dict[str, str], sys_flag: int) -> tuple[str, int] | None:
        """Where a message sent to ``topic`` / ``queue_id`` is stored: None for its own queue,
        else the system queue, with ``props`` rewritten (REAL_TOPIC, REAL_QID, TIMER_OUT_MS).
        Raises ScheduleError (bad property) or TimerFlowControl."""
        tx = sys_flag & SYSFLAG_TRANSACTION_MASK
        if tx not in (0, SYSFLAG_TRANSACTION_COMMIT):  # half and rolled-back messages wait for no timer
            return None
        cfg = self.broker.config
        sched = schedule_of(props, self.broker.store.clock.now_ms(), len(self.delays_ms), cfg.timer_max_delay_sec)
        if sched is None:
            return None
        if sched.level:
            target = (SCHEDULE_TOPIC, sched.level - 1)
            props["DELAY"] = str(sched.level)
        else:
            assert self.timer is not None
            if self.timer.pending() >= cfg.timer_pending_max:
                raise TimerFlowControl(f"timer message is under flow control: {cfg.timer_pending_max} timer messages "
                                       "wait already (timerPendingMax); try again later")
            target = (TIMER_TOPIC, 0)
            props[PROPERTY_TIMER_OUT_MS] = str(sched.due_ms)
        props[PROPERTY_REAL_TOPIC] = topic
        props[PROPERTY_REAL_QUEUE_ID] = str(queue_id)
        return target

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the system queues and load the saved progress (before the broker serves)."""
        doc = self.file.load()
        existing = [qid for qid, _lg, _lid in self.broker.queues.queues_of(SCHEDULE_TOPIC)]
        # Levels dropped from messageDelayLevel keep their queue: what waits there is delivered
        # after the last level's delay.
        count = max(len(self.delays_ms), max(existing, default=-1) + 1)
        for level in range(1, count + 1):
            qlog = await self._system_log(SCHEDULE_TOPIC, level - 1)
            self.levels.append(_Level(level, self.delays_ms[min(level, len(self.delays_ms)) - 1], qlog, 0))
        self.timer = _Timer(await self._system_log(TIMER_TOPIC, 0), 0)
        self._apply_progress(doc)
        for name, queues in ((SCHEDULE_TOPIC, count), (TIMER_TOPIC, 1)):
            if self.broker.topics.get(name) != TopicConfig(name, queues, queues):
                await self.broker.create_topic(TopicConfig(name, queues, queues))

    def _apply_progress(self, doc: dict[str, Any]) -> None:
        """Cursors and timer state from a saved progress document, clamped to the logs."""
        assert self.timer is not None
        table = doc.get("offsetTable") or {}
        for lv in self.levels:
            lv.cursor = _clamp(int(table.get(str(lv.level), 0)), lv.log)
            lv.ahead.clear()
        tlog = self.timer.log
        saved = doc.get("timer") or {}
        low = _clamp(int(saved.get("low", 0)), tlog)
        self.timer = _Timer(tlog, low, {int(o) for o in saved.get("done") or [] if low < int(o) < tlog.committed_offset})
        self._saved = self._snapshot()

    @property
    def running(self) -> bool:
        return self._task is not None

    async def adopt_progress(self, doc: dict[str, Any]) -> None:
        """A slave keeps its master's progress (GET_ALL_DELAY_OFFSET), saved as the master
        saved it; it delivers nothing until promoted (:meth:`reload_progress`, then start)."""
        if self.running or doc == self._adopted:
            return
        await self.broker.store.run_blocking(lambda: self.file.save(doc))
        self._adopted = doc

    def reload_progress(self) -> None:
        """Before a promoted slave starts delivering: the last adopted progress, clamped to what
        this store has (a message the master delivered that never reached us is gone anyway)."""
        if not self.running:
            self._apply_progress(self.file.load())

    async def _system_log(self, topic: str, queue_id: int) -> Log:
        name = queue_log_name(topic, queue_id)
        if name not in self.broker.store.logs:
            await self.broker.store.create_log(name, self.log_config)
        qlog, _lid = await self.broker.queues.get_or_create(topic, queue_id)
        return qlog

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="schedule-delivery")
        self._saver_task = asyncio.create_task(self._saver(), name="schedule-progress")

    async def close(self) -> None:
        """Finish the round under way, then save the progress."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT_S)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._closing = True
        self._dirty.set()
        if self._saver_task is not None:
            try:
                await asyncio.wait_for(self._saver_task, CLOSE_WAIT_S)
            except TimeoutError:
                log.error("saving the schedule progress did not finish in %.0f s", CLOSE_WAIT_S)

    # -- delivering ----------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                wait_s = await self._round()
            except Exception:
                log.exception("delivering scheduled messages failed; retrying in %.0f s", FAILURE_BACKOFF_S)
                wait_s = FAILURE_BACKOFF_S
            # At most POLL_S: a plain sleep (no task per round); close() waits that long at most.
            await asyncio.sleep(wait_s if not self._stopping else 0)
            if loop.time() - self._last_trim_s >= TRIM_INTERVAL_S:
                self._last_trim_s = loop.time()
                await self._trim()

    def _now_ms(self) -> int:
        return self.broker.store.clock.now_ms()

    async def _round(self) -> float:
        """Deliver what is due now. Returns how long to wait before the next round (s)."""
        now = self._now_ms()
        r = _Round(next_due_ms=now + int(POLL_S * 1000))
        for lv in self.levels:
            self._scan_level(lv, now, r)
        self._load_timer(r, now)
        self._pop_timer(r, now)
        if r.msgs:
            try:
                await self._store(r.msgs)
            except BaseException:
                self._undo(r)
                raise
            for lv, cursor in r.cursors:
                lv.cursor = cursor
            timer = self.timer
            assert timer is not None
            timer.done.update(key & QUEUE_OFFSET_MASK for key in r.timer_keys)
            self.delivered += len(r.msgs)
            self._dirty.set()
        await self._roll_if_needed()
        return max(0.0, (r.next_due_ms - self._now_ms()) / 1000)

    def _scan_level(self, lv: _Level, now: int, r: _Round) -> None:
        cursor = lv.cursor
        ahead = lv.ahead
        while True:
            if not ahead:
                if cursor >= lv.log.committed_offset:
                    break
                got = read_messages(lv.log, cursor, READ_MESSAGES_MAX, READ_BYTES_MAX, _ALL)
                if not got.count:
                    break
                ahead.extend(decode_stored(got.body))
            # + 1: the store time is rounded down to the ms; due is never before the true time.
            due = ahead[0].store_timestamp + lv.delay_ms + 1
            if due > now:
                r.next_due_ms = min(r.next_due_ms, due)
                break
            if len(r.msgs) >= ROUND_MESSAGES_MAX:
                r.next_due_ms = now  # more is due: go again at once
                break
            msg = ahead.popleft()
            self._add_delivery(r, msg)
            cursor = msg.queue_offset + 1
        if cursor != lv.cursor:
            r.cursors.append((lv, cursor))

    def _load_timer(self, r: _Round, now: int) -> None:
        """Put timer messages stored since the last round into the heaps."""
        t = self.timer
        assert t is not None
        end = t.log.committed_offset
        loaded = 0
        while t.loaded < end:
            if loaded >= LOAD_PER_ROUND_MAX:
                r.next_due_ms = now
                return
            got = read_messages(t.log, t.loaded, READ_MESSAGES_MAX, READ_BYTES_MAX, _ALL)
            if not got.count:
                return
            for msg in decode_stored(got.body):
                o = msg.queue_offset
                if o not in t.done:
                    due = _due_of(msg)
                    heapq.heappush(t.due_heap, (due << QUEUE_OFFSET_BITS) | o)
                    heapq.heappush(t.offset_heap, o)
                t.loaded = o + 1
                loaded += 1

    def _pop_timer(self, r: _Round, now: int) -> None:
        t = self.timer
        assert t is not None
        heap = t.due_heap
        limit = (now + 1) << QUEUE_OFFSET_BITS  # keys of messages due at or before now are below
        while heap and heap[0] < limit:
            if len(r.msgs) >= ROUND_MESSAGES_MAX:
                r.next_due_ms = now
                return
            key = heapq.heappop(heap)
            o = key & QUEUE_OFFSET_MASK
            if t.delivered(o):
                continue  # rolled
            data = read_one(t.log, o)
            if data is None:
                log.error("timer message at offset %d of %s is not readable; skipped", o, t.log.name)
                t.done.add(o)
                continue
            r.timer_keys.append(key)
            self._add_delivery(r, decode_one_stored(data))
        if heap:
            r.next_due_ms = min(r.next_due_ms, heap[0] >> QUEUE_OFFSET_BITS)

    def _add_delivery(self, r: _Round, msg: Message) -> None:
        props = dict(msg.properties)
        real_topic = props.get(PROPERTY_REAL_TOPIC)
        try:
            real_qid = int(props.get(PROPERTY_REAL_QUEUE_ID, "0"))
        except ValueError:
            real_qid = 0
        for key in SCHEDULE_PROPERTIES:
            props.pop(key, None)
        if not real_topic:
            log.warning("scheduled message %s has no REAL_TOPIC; dropped", msg.msg_id)
            self.dropped += 1
            return
        r.msgs.append(InnerMessage(real_topic, real_qid, msg.body, props, msg.flag, msg.sys_flag,
                                   msg.born_timestamp, msg.born_host, msg.reconsume_times))

    def _undo(self, r: _Round) -> None:
        """A failed round: its timer messages wait again, level heads are read again."""
        t = self.timer
        assert t is not None
        for key in r.timer_keys:
            heapq.heappush(t.due_heap, key)
        for lv in self.levels:
            lv.ahead.clear()

    async def _store(self, msgs: list[InnerMessage]) -> None:
        groups: dict[tuple[str, int], list[InnerMessage]] = defaultdict(list)
        for m in msgs:
            dest = await self._destination(m.topic, m.queue_id)
            if dest is None:
                self.dropped += 1
                continue
            groups[dest].append(m)
        results = await asyncio.gather(*(append_inner(self.broker, t, q, ms) for (t, q), ms in groups.items()))
        for appended in results:
            for a in appended:
                self._touched[a.log.name] = a.log

    async def _destination(self, topic: str, queue_id: int) -> tuple[str, int] | None:
        cfg = self.broker.topics.get(topic)
        if cfg is None and topic.startswith((RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX)):
            cfg = await self.broker.create_topic(TopicConfig(topic, 1, 1))
        if cfg is None:
            log.warning("scheduled message for topic %s, which does not exist (any more); dropped", topic)
            return None
        nums = max(1, cfg.write_queue_nums)
        return topic, queue_id if 0 <= queue_id < nums else queue_id % nums

    async def _roll_if_needed(self) -> None:
        """Keep ``done`` bounded: copy the lowest waiting timer messages to the queue's end."""
        t = self.timer
        assert t is not None
        if len(t.done) <= TIMER_DONE_MAX:
            return
        _prune_done(t)
        rolls: list[tuple[int, InnerMessage]] = []
        while len(t.done) > TIMER_DONE_MAX // 2 and len(rolls) < ROLLS_PER_ROUND_MAX and t.offset_heap:
            low = t.low()
            if low >= t.loaded:
                break
            o = heapq.heappop(t.offset_heap)
            data = read_one(t.log, o)
            if data is None:
                continue
            msg = decode_one_stored(data)
            rolls.append((o, InnerMessage.copy_of(msg, TIMER_TOPIC, 0)))
            if len(rolls) % 32 == 0:
                _prune_done(t)  # O(len(done)): not after every roll
        if not rolls:
            return
        try:
            appended = await append_inner(self.broker, TIMER_TOPIC, 0, [m for _o, m in rolls])
        except BaseException:
            for o, _m in rolls:
                heapq.heappush(t.offset_heap, o)
            raise
        for a in appended:
            self._touched[a.log.name] = a.log
        self.rolled += len(rolls)
        self._dirty.set()

    # -- progress ------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        t = self.timer
        assert t is not None
        low = _prune_done(t)
        return {"offsetTable": {str(lv.level): lv.cursor for lv in self.levels},
                "timer": {"low": low, "done": sorted(t.done)}}

    async def _saver(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._save()
            if self._closing and not self._dirty.is_set():
                return
            if not self._closing:
                await asyncio.sleep(SAVE_INTERVAL_S)

    async def _save(self) -> None:
        snapshot = self._snapshot()
        logs, self._touched = self._touched, {}
        try:
            for qlog in logs.values():
                if not qlog.is_sync:
                    await qlog.flush()  # the copies are durable before the progress that covers them
            await self.broker.store.run_blocking(lambda: self.file.save(snapshot))
        except Exception:
            log.exception("saving the schedule progress failed; retrying in %.0f s", FAILURE_BACKOFF_S)
            self._touched.update(logs)
            if not self._closing:
                await asyncio.sleep(FAILURE_BACKOFF_S)
                self._dirty.set()
            return
        self._saved = snapshot
        self.saves += 1

    async def _trim(self) -> None:
        """Delete whole segments of the system queues below the saved progress."""
        saved = self._saved
        table = saved.get("offsetTable") or {}
        targets = [(lv.log, int(table.get(str(lv.level), 0))) for lv in self.levels]
        if self.timer is not None:
            targets.append((self.timer.log, int((saved.get("timer") or {}).get("low", 0))))
        for qlog, below in targets:
            if len(qlog.segments) > 1 and qlog.segments[1].base_offset <= below <= qlog.committed_offset:
                try:
                    await qlog.delete_records_before(below)
                except Exception:
                    log.exception("deleting delivered messages of %s failed", qlog.name)

    # -- views -----------------------------------------------------------------------------------

    def timer_pending(self) -> int:
        return self.timer.pending() if self.timer is not None else 0

    def progress_json(self) -> dict[str, Any]:
        return dict(self._saved)


def _clamp(offset: int, qlog: Log) -> int:
    return min(max(offset, qlog.log_start_offset), qlog.committed_offset)


def _due_of(msg: Message) -> int:
    try:
        return max(0, int(msg.properties.get(PROPERTY_TIMER_OUT_MS, "0")))
    except ValueError:
        return 0  # not ours to judge any more: deliver it


def _prune_done(t: _Timer) -> int:
    """Drop delivered offsets at or below ``low`` from ``done``; returns ``low``."""
    low = t.low()
    if t.done and min(t.done) <= low:
        t.done = {o for o in t.done if o > low}
    return low
