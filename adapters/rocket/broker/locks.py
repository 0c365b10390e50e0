"""Queue locks for orderly consumers (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ).

One owner (client id) per (group, topic, brokerName, queueId); a lock lapses ``expire_ms``
(60 s) after its owner last locked it, so a crashed consumer's queues free up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

MessageQueueKey = tuple[str, str, int]  # topic, brokerName, queueId


class QueueLockManager:
    def __init__(self, expire_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.expire_s = expire_ms / 1000
        self.clock = clock
        self._locks: dict[str, dict[MessageQueueKey, tuple[str, float]]] = {}

    def try_lock(self, group: str, client_id: str, queues: Iterable[MessageQueueKey]) -> list[MessageQueueKey]:
        """Lock (or refresh) every free, lapsed or already-owned queue; return those locked."""
        now = self.clock()
        table = self._locks.setdefault(group, {})
        got = []
        for mq in queues:
            owner = table.get(mq)
            if owner is None or owner[0] == client_id or now - owner[1] > self.expire_s:
                table[mq] = (client_id, now)
                got.append(mq)
        return got

    def unlock(self, group: str, client_id: str, queues: Iterable[MessageQueueKey]) -> None:
        table = self._locks.get(group, {})
        for mq in queues:
            owner = table.get(mq)
            if owner is not None and owner[0] == client_id:
                del table[mq]

    def owner(self, group: str, mq: MessageQueueKey) -> str | None:
        owner = self._locks.get(group, {}).get(mq)
        if owner is None or self.clock() - owner[1] > self.expire_s:
            return None
        return owner[0]
