"""PULL_MESSAGE (11) with long polling.

Outcomes, as RocketMQ's PullMessageProcessor maps its store's GetMessageStatus:

    queue empty, offset 0 / offset == max        -> PULL_NOT_FOUND (held first if suspend allowed)
    queue empty, offset != 0 / offset > max      -> PULL_OFFSET_MOVED, nextBeginOffset corrected
    offset < min                                 -> PULL_OFFSET_MOVED, nextBeginOffset = min
    messages read but none matched the filter    -> PULL_RETRY_IMMEDIATELY, nextBeginOffset past them
    messages found                               -> SUCCESS, body = stored messages

A pull with the suspend bit (sysFlag 2) that finds nothing is held: it waits on the log
(``Log.wait_for``) up to suspendTimeoutMillis, skipping appends that do not match its filter,
and answers as soon as a matching message is readable. At most ``pull_held_max`` pulls are held;
past that a pull is answered SYSTEM_BUSY (clients back off 3 s), not spun.

Broker groups. ``suggestWhichBrokerId`` steers the client's next pull of the queue, as RocketMQ's
PullMessageProcessor does: without ``slaveReadEnable`` it is always the master (0). With it, a
consumer more than ``accessMessageInMemoryMaxRatio`` % of this machine's RAM behind the end of
the queue (estimated from the sizes of the messages just read) is sent to the group's
``whichBrokerWhenConsumeSlowly`` (1), others to the group's ``brokerId`` (0); a slave always
sends a consumer that is not behind back to the master. A slave serves every pull (also without
slaveReadEnable, unlike RocketMQ 5, which refuses them: here clients read from a slave when the
master is down), and does not store an offset piggybacked on a pull (RocketMQ 4).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode
from logstore import Log, LogFailedError

from .config import MASTER_ID
from .read_cache import ReadCache
from .reader import PullSlice, TagFilter, read_messages
from .subscriptions import DEFAULT_GROUP

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

FLAG_COMMIT_OFFSET = 0x1
FLAG_SUSPEND = 0x2
FLAG_SUBSCRIPTION = 0x4
FLAG_CLASS_FILTER = 0x8
SUSPEND_TIMEOUT_MAX_MS = 60_000


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 1024**3


@dataclass
class PullHeader:
    group: str
    topic: str
    queue_id: int
    queue_offset: int
    max_msg_nums: int
    sys_flag: int
    commit_offset: int
    suspend_timeout_ms: int
    subscription: str | None
    expression_type: str

    @classmethod
    def parse(cls, ext: dict[str, str]) -> PullHeader:
        return cls(
            group=ext.get("consumerGroup", ""), topic=ext.get("topic", ""),
            queue_id=int(ext.get("queueId", "0")), queue_offset=int(ext.get("queueOffset", "0")),
            max_msg_nums=int(ext.get("maxMsgNums", "32")), sys_flag=int(ext.get("sysFlag", "0")),
            commit_offset=int(ext.get("commitOffset", "0") or 0),
            suspend_timeout_ms=int(ext.get("suspendTimeoutMillis", "0") or 0),
            subscription=ext.get("subscription"), expression_type=ext.get("expressionType") or "TAG",
        )


class PullProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.held = 0
        self.pulled = 0
        self.memory_bytes = physical_memory_bytes()
        self.read_cache = ReadCache()

    async def pull(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            h = PullHeader.parse(cmd.ext_fields)
        except ValueError as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"bad pull header field: {exc}")
        broker = self.broker
        topic_config = broker.topics.get(h.topic)
        if topic_config is None:
            return cmd.make_response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{h.topic}] not exist, apply first please!")
        if not topic_config.readable:
            return cmd.make_response(ResponseCode.NO_PERMISSION, f"the topic[{h.topic}] pulling message is forbidden")
        if not 0 <= h.queue_id < topic_config.read_queue_nums:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR,
                                     f"queueId[{h.queue_id}] is illegal, topic:[{h.topic}] "
                                     f"topicConfig.readQueueNums:[{topic_config.read_queue_nums}]")
        tag_filter = self._filter(h)
        if tag_filter is None:
            return cmd.make_response(ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                                     f"expression type {h.expression_type} is not supported (TAG only)")
        if h.sys_flag & FLAG_COMMIT_OFFSET and h.group and not broker.config.is_slave:
            broker.offsets.advance(h.group, h.topic, h.queue_id, h.commit_offset)  # saved within 5 s
        qlog, _lid = await broker.queues.get_or_create(h.topic, h.queue_id)
        max_count = max(1, min(h.max_msg_nums, broker.config.max_transfer_count_on_message_in_memory))
        offset = h.queue_offset
        code, got = self._get(qlog, offset, max_count, tag_filter)
        allow_suspend = bool(h.sys_flag & FLAG_SUSPEND) and broker.config.long_polling_enable
        if code == ResponseCode.PULL_NOT_FOUND and allow_suspend and h.suspend_timeout_ms > 0:
            if self.held >= broker.config.pull_held_max:
                return cmd.make_response(ResponseCode.SYSTEM_BUSY,
                                         f"[PULL_HELD_MAX] {self.held} pulls already held; try again later")
            code, got = await self._hold(qlog, got.next_offset, max_count, tag_filter,
                                         min(h.suspend_timeout_ms, SUSPEND_TIMEOUT_MAX_MS) / 1000)
        self.pulled += got.count
        return cmd.make_response(code, None if code == ResponseCode.SUCCESS else _remark(code), ext_fields={
            "suggestWhichBrokerId": self._suggest(h.group, qlog, got), "nextBeginOffset": got.next_offset,
            "minOffset": qlog.log_start_offset, "maxOffset": self.broker.ha.readable_end(qlog),
        }, body=got.body if got.count else b"")

    def _suggest(self, group: str, qlog: Log, got: PullSlice) -> int:
        """suggestWhichBrokerId: which broker of the group the consumer should pull from next."""
        cfg = self.broker.config
        if not cfg.slave_read_enable:
            return MASTER_ID
        group_config = self.broker.subscriptions.get(group) or DEFAULT_GROUP
        if self._behind_too_far(qlog, got):
            return int(group_config.get("whichBrokerWhenConsumeSlowly", 1))
        return MASTER_ID if cfg.is_slave else int(group_config.get("brokerId", MASTER_ID))

    def _behind_too_far(self, qlog: Log, got: PullSlice) -> bool:
        """RocketMQ: bytes between the pull and the end of the commit log above the share of
        RAM a consumer may lag (accessMessageInMemoryMaxRatio); per queue here, estimated with
        the mean size of the messages just read."""
        if not got.count:
            return False
        behind_bytes = (qlog.committed_offset - got.next_offset) * sum(len(p) for p in got.parts) / got.count
        return behind_bytes > self.memory_bytes * self.broker.config.access_message_in_memory_max_ratio / 100

    def _filter(self, h: PullHeader) -> TagFilter | None:
        if h.expression_type.upper() != "TAG":
            return None
        if h.sys_flag & FLAG_SUBSCRIPTION and h.subscription is not None:
            return TagFilter.parse(h.subscription)
        known = self.broker.clients.tag_filter(h.group, h.topic)
        return known if known is not None else TagFilter()

    def _get(self, qlog: Log, offset: int, max_count: int, tag_filter: TagFilter) -> tuple[int, PullSlice]:
        lo, end = qlog.log_start_offset, qlog.committed_offset
        if end == lo:  # empty (never written, or everything aged out)
            if offset == 0 or offset == end:
                return ResponseCode.PULL_NOT_FOUND, PullSlice(next_offset=offset)
            return ResponseCode.PULL_OFFSET_MOVED, PullSlice(next_offset=end)
        if offset < lo:
            return ResponseCode.PULL_OFFSET_MOVED, PullSlice(next_offset=lo)
        hi = self.broker.ha.readable_end(qlog)  # a SYNC_MASTER's or a slave's high watermark
        if hi <= offset <= end:  # the end, or stored here but not yet readable
            return ResponseCode.PULL_NOT_FOUND, PullSlice(next_offset=offset)
        if offset > end:
            return ResponseCode.PULL_OFFSET_MOVED, PullSlice(next_offset=hi)
        got = read_messages(qlog, offset, max_count, self.broker.config.max_transfer_bytes_on_message_in_memory,
                            tag_filter, self.read_cache, hi)
        if got.count:
            return ResponseCode.SUCCESS, got
        return ResponseCode.PULL_RETRY_IMMEDIATELY, got

    async def _hold(self, qlog: Log, offset: int, max_count: int, tag_filter: TagFilter,
                    timeout_s: float) -> tuple[int, PullSlice]:
        """Wait for a matching message from ``offset``; answer PULL_NOT_FOUND at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self.held += 1
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    arrived = remaining > 0 and await self.broker.ha.wait_readable(qlog, offset, remaining)
                except LogFailedError:
                    arrived = False
                if not arrived:
                    return ResponseCode.PULL_NOT_FOUND, PullSlice(next_offset=offset)
                code, got = self._get(qlog, offset, max_count, tag_filter)
                if code != ResponseCode.PULL_RETRY_IMMEDIATELY:
                    return code, got
                offset = got.next_offset  # nothing matched: keep holding past it
        finally:
            self.held -= 1


def _remark(code: int) -> str:
    remarks: dict[int, str] = {
        ResponseCode.PULL_NOT_FOUND: "no new message",
        ResponseCode.PULL_OFFSET_MOVED: "the pull offset is out of range",
        ResponseCode.PULL_RETRY_IMMEDIATELY: "no matched message, pull again",
    }
    return remarks.get(code, "")
