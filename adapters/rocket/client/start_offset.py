"""Where a consumer starts on a queue: its committed offset, else ConsumeFromWhere decides.

ConsumeFromWhere only matters for a group with no committed offset on the queue (a new group,
or a new queue): LAST_OFFSET starts after what is already there, FIRST_OFFSET at the start,
TIMESTAMP at the first message stored at or after ``consume_timestamp`` (``yyyyMMddHHmmss``,
local time; RocketMQ's default is 30 minutes before the consumer started). Retry topics always
start at their beginning.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from .common import RETRY_GROUP_TOPIC_PREFIX, ConsumeFromWhere, MessageQueue
from .instance import MQClientInstance
from .offset_store import NOT_FOUND, READ_FAILED, OffsetStore

log = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"


def default_consume_timestamp(now_s: float | None = None) -> str:
    now_s = time.time() if now_s is None else now_s
    return dt.datetime.fromtimestamp(now_s - 30 * 60).strftime(TIMESTAMP_FORMAT)


def parse_consume_timestamp(text: str) -> int:
    """``yyyyMMddHHmmss`` (local time) -> epoch milliseconds."""
    return int(dt.datetime.strptime(text, TIMESTAMP_FORMAT).timestamp() * 1000)


async def compute_pull_from_where(
    instance: MQClientInstance,
    offset_store: OffsetStore,
    mq: MessageQueue,
    consume_from_where: ConsumeFromWhere,
    consume_timestamp: str,
) -> int:
    """The offset to pull ``mq`` from, or READ_FAILED (-2) when it cannot be known now."""
    last = await offset_store.read_offset(mq, from_store=True)
    if last >= 0:
        return last
    if last != NOT_FOUND:
        return READ_FAILED
    if mq.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        return 0
    try:
        addr = (await instance.find_broker_addr_for_read(mq)).broker_addr  # a slave if the master is away
        if consume_from_where == ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET:
            return await instance.api.get_min_offset(addr, mq)
        if consume_from_where == ConsumeFromWhere.CONSUME_FROM_TIMESTAMP:
            return await instance.api.search_offset(
                addr, mq, parse_consume_timestamp(consume_timestamp)
            )
        return await instance.api.get_max_offset(addr, mq)
    except Exception as exc:
        log.warning("cannot find where to start on %s (%s): %s", mq, consume_from_where.name, exc)
        return READ_FAILED
