"""ProcessQueue: the messages of one queue that were pulled and are not yet consumed.

The offset a consumer may commit for a queue is the lowest offset still in flight (or one past
the highest pulled once nothing is), never the highest consumed: listeners finish out of order,
and committing past a message still running would skip it after a crash. Pulls arrive in offset
order, so a deque of the offsets put (increasing) finds the lowest one still in flight: removals
only delete from the dict, and the commit offset drops the consumed offsets off the deque's
front. Every offset enters and leaves the deque once: O(1) amortized per message, where asking
a dict for its first key after many removals from its front walks over their empty slots.

Orderly consumption (consume_orderly.py) adds a second stage, as RocketMQ's ProcessQueue does:
``take_messages`` moves the lowest messages to ``consuming``; ``commit`` forgets them and
returns the offset after the last, ``consume_again`` puts some back to be taken first. The
broker lock state of the queue (``locked``, ``last_lock_timestamp_s``) lives here too.

Flow control reads ``msg_count``, ``msg_size`` (body bytes cached, as RocketMQ's ``msgSize``)
and ``max_span`` (highest minus lowest waiting offset, RocketMQ's ``getMaxSpan``).

A concurrent listener's start time is kept per message (``mark_consuming``; RocketMQ's
CONSUME_START_TIME property) so ``expired`` finds the lowest message a listener has held for
longer than consumeTimeout.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from ..lazy_message import body_len
from ..message import Message


class ProcessQueue:
    def __init__(self) -> None:
        self._msgs: dict[int, Message] = {}
        self._order: deque[int] = deque()  # the offsets of _msgs, increasing (plus removed ones)
        self.queue_offset_max = -1
        self.msg_size = 0  # body bytes of every cached message (waiting and consuming)
        self.dropped = False
        self.last_pull_timestamp_s = time.monotonic()
        self.last_consume_timestamp_s = time.monotonic()
        self._started: dict[int, float] = {}  # offset -> when a concurrent listener got it
        # Orderly only: taken by the listener, not committed yet (offset order).
        self._consuming: dict[int, Message] = {}
        self.locked = False
        self.last_lock_timestamp_s = 0.0

    @property
    def msg_count(self) -> int:
        return len(self._msgs) + len(self._consuming)

    def put_messages(self, msgs: Iterable[Message]) -> None:
        for msg in msgs:
            offset = msg.queue_offset
            if offset > self.queue_offset_max:
                self._msgs[offset] = msg
                self._order.append(offset)
                self.queue_offset_max = offset
                self.msg_size += body_len(msg)

    def remove_messages(self, msgs: Iterable[Message]) -> int:
        """Forget consumed messages; the offset now safe to commit, or -1 if none yet."""
        if not self._msgs:
            return -1
        self.last_consume_timestamp_s = time.monotonic()
        started = self._started
        for msg in msgs:
            if self._msgs.pop(msg.queue_offset, None) is not None:
                self.msg_size -= body_len(msg)
                started.pop(msg.queue_offset, None)
        return self.commit_offset()

    def remove_one(self, offset: int) -> int:
        """``remove_messages`` of the message at ``offset`` (the common case: one message a
        listener call), without the loop."""
        live = self._msgs
        if not live:
            return -1
        self.last_consume_timestamp_s = time.monotonic()
        msg = live.pop(offset, None)
        if msg is not None:
            self.msg_size -= body_len(msg)
            self._started.pop(offset, None)
        return self.commit_offset()

    def commit_offset(self) -> int:
        order, live = self._order, self._msgs
        while order and order[0] not in live:
            order.popleft()
        if order:
            return order[0]
        return self.queue_offset_max + 1 if self.queue_offset_max >= 0 else -1

    def mark_consuming(self, msgs: Iterable[Message], now_s: float) -> None:
        """A concurrent listener got ``msgs`` at ``now_s`` (monotonic)."""
        started = self._started
        for msg in msgs:
            started[msg.queue_offset] = now_s

    def expired(self, now_s: float, timeout_s: float) -> Message | None:
        """The lowest cached message, if a listener has held it for over ``timeout_s``."""
        offset = self.commit_offset()
        msg = self._msgs.get(offset)
        started = self._started.get(offset)
        if msg is None or started is None or now_s - started <= timeout_s:
            return None
        return msg

    @property
    def max_span(self) -> int:
        """Highest minus lowest offset waiting to be consumed; 0 when at most one waits."""
        if len(self._msgs) < 2:
            return 0
        # the lowest through the deque: a dict's first key walks over every removed one
        return next(reversed(self._msgs)) - self.commit_offset()

    def clear(self) -> None:
        self._msgs.clear()
        self._started.clear()
        self._order.clear()
        self._consuming.clear()
        self.queue_offset_max = -1
        self.msg_size = 0

    # -- orderly ------------------------------------------------------------------------------

    def lock_valid(self, now_s: float, max_live_s: float) -> bool:
        """Locked, and the lock was (re)confirmed by the broker within ``max_live_s``."""
        return self.locked and now_s - self.last_lock_timestamp_s <= max_live_s

    def take_messages(self, n: int) -> list[Message]:
        """The ``n`` lowest waiting messages, moved to the consuming stage."""
        taken: list[Message] = []
        order, live = self._order, self._msgs
        while live and len(taken) < n:
            offset = order.popleft()
            msg = live.pop(offset, None)
            if msg is not None:
                self._consuming[offset] = msg
                taken.append(msg)
        if taken:
            self.last_consume_timestamp_s = time.monotonic()
        return taken

    def commit(self) -> int:
        """Forget what the listener consumed; the offset after it, or -1 if nothing was."""
        if not self._consuming:
            return -1
        offset = max(self._consuming) + 1
        self.msg_size -= sum(body_len(m) for m in self._consuming.values())
        self._consuming.clear()
        return offset

    def consume_again(self, msgs: Iterable[Message]) -> None:
        """Move these consuming messages back in front of the waiting ones."""
        back = {m.queue_offset: m for m in msgs if self._consuming.pop(m.queue_offset, None) is not None}
        if back:
            self._msgs = dict(sorted({**self._msgs, **back}.items()))
            self._order = deque(self._msgs)

    def rollback(self) -> None:
        """Everything consuming goes back to be consumed again."""
        self.consume_again(list(self._consuming.values()))

    @property
    def consuming_count(self) -> int:
        return len(self._consuming)
