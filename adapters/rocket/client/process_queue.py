"""ProcessQueue: the messages of one queue that were pulled and are not yet consumed.

The offset a consumer may commit for a queue is the lowest offset still in flight (or one past
the highest pulled once nothing is), never the highest consumed: listeners finish out of order,
and committing past a message still running would skip it after a crash. Pulls arrive in offset
order, so a dict (insertion-ordered) keeps the lowest offset first without a sorted container.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..message import Message


class ProcessQueue:
    def __init__(self) -> None:
        self._msgs: dict[int, Message] = {}
        self.queue_offset_max = -1
        self.dropped = False
        self.last_pull_timestamp_s = time.monotonic()
        self.last_consume_timestamp_s = time.monotonic()

    @property
    def msg_count(self) -> int:
        return len(self._msgs)

    def put_messages(self, msgs: Iterable[Message]) -> None:
        for msg in msgs:
            if msg.queue_offset > self.queue_offset_max:
                self._msgs[msg.queue_offset] = msg
                self.queue_offset_max = msg.queue_offset

    def remove_messages(self, msgs: Iterable[Message]) -> int:
        """Forget consumed messages; the offset now safe to commit, or -1 if none yet."""
        if not self._msgs:
            return -1
        self.last_consume_timestamp_s = time.monotonic()
        for msg in msgs:
            self._msgs.pop(msg.queue_offset, None)
        return self.commit_offset()

    def commit_offset(self) -> int:
        if self._msgs:
            return next(iter(self._msgs))
        return self.queue_offset_max + 1 if self.queue_offset_max >= 0 else -1

    def clear(self) -> None:
        self._msgs.clear()
        self.queue_offset_max = -1
