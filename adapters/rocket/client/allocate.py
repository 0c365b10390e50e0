"""Queue allocation strategies: which of a group's queues this consumer takes.

Every consumer of a group runs the same strategy over the same sorted inputs (all queues, all
consumer ids) and keeps only its own share, so the group agrees without talking. The results
match RocketMQ's Java classes of the same names, so a mixed Java/Python group still splits
queues without overlap.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Protocol

from .common import MessageQueue


class AllocateMessageQueueStrategy(Protocol):
    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]: ...

    def get_name(self) -> str: ...


def _checked_index(current_cid: str, mq_all: Sequence[MessageQueue], cid_all: Sequence[str]) -> int:
    """Position of this consumer, or -1 when it has nothing to take (not yet seen by broker)."""
    if not current_cid:
        raise ValueError("current_cid is empty")
    if not mq_all or current_cid not in cid_all:
        return -1
    return list(cid_all).index(current_cid)


class AllocateMessageQueueAveragely:
    """Contiguous pages: with 5 queues and 2 consumers the first gets 3, the second 2."""

    def get_name(self) -> str:
        return "AVG"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        index = _checked_index(current_cid, mq_all, cid_all)
        if index < 0:
            return []
        n_mq, n_cid = len(mq_all), len(cid_all)
        mod = n_mq % n_cid
        if n_mq <= n_cid:
            average = 1
        elif mod > 0 and index < mod:
            average = n_mq // n_cid + 1
        else:
            average = n_mq // n_cid
        start = index * average if mod > 0 and index < mod else index * average + mod
        count = min(average, n_mq - start)
        return [mq_all[(start + i) % n_mq] for i in range(max(count, 0))]


class AllocateMessageQueueAveragelyByCircle:
    """Dealt like cards: consumer i takes queues i, i + n, i + 2n, ..."""

    def get_name(self) -> str:
        return "AVG_BY_CIRCLE"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        index = _checked_index(current_cid, mq_all, cid_all)
        if index < 0:
            return []
        return [mq_all[i] for i in range(index, len(mq_all), len(cid_all))]


def _md5_hash(key: str) -> int:
    """RocketMQ's ConsistentHashRouter.MD5Hash: the first 4 digest bytes as an unsigned int."""
    digest = hashlib.md5(key.encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _java_mq_string(mq: MessageQueue) -> str:
    return f"MessageQueue [topic={mq.topic}, brokerName={mq.broker_name}, queueId={mq.queue_id}]"


class AllocateMessageQueueConsistentHash:
    """A hash ring with ``virtual_node_cnt`` points per consumer; a consumer joining or leaving
    moves only the queues next to its points, not everyone's."""

    def __init__(self, virtual_node_cnt: int = 10) -> None:
        if virtual_node_cnt < 1:
            raise ValueError("virtual_node_cnt must be at least 1")
        self.virtual_node_cnt = virtual_node_cnt

    def get_name(self) -> str:
        return "CONSISTENT_HASH"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        if _checked_index(current_cid, mq_all, cid_all) < 0:
            return []
        ring: dict[int, str] = {}
        for cid in cid_all:
            for replica in range(self.virtual_node_cnt):
                # Java's TreeMap.put: a later node with the same hash replaces the earlier one.
                ring[_md5_hash(f"{cid}-{replica}")] = cid
        points = sorted(ring)
        result = []
        for mq in mq_all:
            h = _md5_hash(_java_mq_string(mq))
            i = bisect.bisect_left(points, h)
            owner = ring[points[i if i < len(points) else 0]]
            if owner == current_cid:
                result.append(mq)
        return result


class AllocateMessageQueueByConfig:
    """A fixed list chosen by the operator, whatever the group looks like."""

    def __init__(self, message_queue_list: Sequence[MessageQueue] = ()) -> None:
        self.message_queue_list = list(message_queue_list)

    def get_name(self) -> str:
        return "CONFIG"

    def allocate(
        self,
        consumer_group: str,
        current_cid: str,
        mq_all: Sequence[MessageQueue],
        cid_all: Sequence[str],
    ) -> list[MessageQueue]:
        return list(self.message_queue_list)
