"""Retries and dead letters: CONSUMER_SEND_MSG_BACK (36), and the send path's routing of
messages to ``%RETRY%`` topics, dead-letter queues and the timer.

CONSUMER_SEND_MSG_BACK (header: offset = the commit log offset of the failed message, group,
delayLevel, originMsgId, originTopic, unitMode, maxReconsumeTimes), as RocketMQ's broker does it:

* the group must exist (or be auto-created: autoCreateSubscriptionGroup) -> else
  SUBSCRIPTION_GROUP_NOT_EXIST; a group with retryQueueNums <= 0 drops the message (SUCCESS);
* the message is read back by its commit log offset -> else SYSTEM_ERROR;
* the limit is the group's ``retryMaxTimes`` (16), or the request's maxReconsumeTimes when the
  client sends one (RocketMQ clients since 3.4.9 always do; ours only when the application set
  it, so ``updateSubGroup -r`` takes effect);
* reconsumeTimes >= the limit, or delayLevel < 0 -> ``%DLQ%<group>`` (1 queue, created on demand);
  else ``%RETRY%<group>`` (retryQueueNums queues, created on demand) with DELAY = delayLevel, or
  3 + reconsumeTimes when the client left it 0 (capped at the last level by the scheduler);
* the copy keeps body, flag, properties, born time and host; reconsumeTimes + 1; RETRY_TOPIC =
  the original topic (kept from an earlier retry); ORIGIN_MESSAGE_ID = the offset message id of
  the first failed copy (kept from an earlier retry).

The answer comes once the copy is stored under the broker's flush policy: the consumer commits
its offset past the message after a SUCCESS, so a copy lost in a crash would lose the message.

SEND_MESSAGE to ``%RETRY%<group>`` (RocketMQ's client falls back to this when the send-back
fails) goes to ``%DLQ%<group>`` instead when the header's reconsumeTimes >= maxReconsumeTimes
(the header's, else the group's retryMaxTimes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING, Any

from adapters.rocket.message import (
    PROPERTY_DELAY_TIME_LEVEL,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_RETRY_TOPIC,
    decode_one_stored,
)
from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode
from adapters.rocket.remoting.command import decode_properties, encode_properties
from logstore import LogFailedError

from .consumers import int_field, str_field
from .delay import ScheduleError, may_be_scheduled
from .inner import InnerMessage, append_inner
from .reader import read_one
from .schedule import TimerFlowControl
from .send import SendHeader, SendRefused
from .topics import DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, TopicConfig

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

DEFAULT_RETRY_MAX_TIMES = 16
ANNOUNCE_WAIT_S = 2.0
DLQ_QUEUE_NUMS = 1
FIRST_RETRY_LEVEL = 3  # 10 s with the default levels
PROPERTY_DLQ_ORIGIN_TOPIC = "DLQ_ORIGIN_TOPIC"
PROPERTY_DLQ_ORIGIN_MESSAGE_ID = "DLQ_ORIGIN_MESSAGE_ID"


def retry_topic(group: str) -> str:
    return RETRY_GROUP_TOPIC_PREFIX + group


def dlq_topic(group: str) -> str:
    return DLQ_GROUP_TOPIC_PREFIX + group


class SendBackProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.retried = 0
        self.dead = 0

    async def send_back(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker = self.broker
        ext = cmd.ext_fields
        group = str_field(ext, "group")
        phys = int_field(ext, "offset")
        delay_level = int_field(ext, "delayLevel", 0)
        client_max = int_field(ext, "maxReconsumeTimes", -1)
        group_config = broker.subscriptions.find_or_create(group)
        if group_config is None:
            return cmd.make_response(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST,
                                     f"subscription group [{group}] does not exist")
        retry_queues = int(group_config.get("retryQueueNums", 1))
        if retry_queues <= 0:
            return cmd.make_response(ResponseCode.SUCCESS)  # the group wants no retries
        found = broker.queues.by_commitlog_offset(phys)
        data = read_one(found[2], found[3]) if found is not None else None
        if data is None:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"look message by offset failed, {phys}")
        msg = decode_one_stored(data)
        limit = client_max if client_max >= 0 else _retry_max_times(group_config)
        props = dict(msg.properties)
        props.setdefault(PROPERTY_RETRY_TOPIC, msg.topic)
        if not props.get(PROPERTY_ORIGIN_MESSAGE_ID):  # RocketMQ ignores the header's originMsgId too
            props[PROPERTY_ORIGIN_MESSAGE_ID] = msg.msg_id
        copy = InnerMessage.copy_of(msg, "", 0)
        copy.properties = props
        copy.reconsume_times = msg.reconsume_times + 1
        if msg.reconsume_times >= limit or delay_level < 0:
            topic, queue_id = dlq_topic(group), 0
            props.pop(PROPERTY_DELAY_TIME_LEVEL, None)
            props[PROPERTY_DLQ_ORIGIN_TOPIC] = props[PROPERTY_RETRY_TOPIC]
            props[PROPERTY_DLQ_ORIGIN_MESSAGE_ID] = props[PROPERTY_ORIGIN_MESSAGE_ID]
            await self._topic(topic, DLQ_QUEUE_NUMS)
            self.dead += 1
            log.info("group %s: message %s goes to %s after %d deliveries", group,
                     props[PROPERTY_ORIGIN_MESSAGE_ID], topic, msg.reconsume_times + 1)
        else:
            topic, queue_id = retry_topic(group), random.randrange(retry_queues)
            props[PROPERTY_DELAY_TIME_LEVEL] = str(delay_level or FIRST_RETRY_LEVEL + msg.reconsume_times)
            await self._topic(topic, retry_queues)
            self.retried += 1
        try:
            routed = broker.schedule.route(topic, queue_id, props, msg.sys_flag)
        except (ScheduleError, TimerFlowControl) as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, str(exc))
        if routed is not None:
            topic, queue_id = routed
        try:
            await append_inner(broker, topic, queue_id, [copy])
        except LogFailedError as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
        return cmd.make_response(ResponseCode.SUCCESS)

    async def _topic(self, topic: str, queues: int) -> TopicConfig:
        existing = self.broker.topics.get(topic)
        if existing is not None:
            return existing
        return await create_announced(self.broker, TopicConfig(topic, queues, queues))

    # -- the send path ---------------------------------------------------------------------------

    async def route_send(self, header: SendHeader, batch: bool) -> bool:
        """Rewrite a SEND's header for retry topics (-> DLQ past the limit) and scheduled
        messages (-> a system queue). True when the message goes elsewhere than it was sent.
        Raises SendRefused."""
        moved = False
        if header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            moved = await self._retry_limit(header)
        if not may_be_scheduled(header.properties):
            return moved
        props = decode_properties(header.properties)
        try:
            if batch:
                if self.broker.schedule.route(header.topic, header.queue_id, dict(props), 0) is not None:
                    raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "scheduled messages may not be sent in a batch")
                return moved
            routed = self.broker.schedule.route(header.topic, header.queue_id, props, header.sys_flag)
        except ScheduleError as exc:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, str(exc)) from None
        except TimerFlowControl as exc:
            raise SendRefused(ResponseCode.SYSTEM_ERROR, str(exc)) from None
        if routed is None:
            return moved
        header.topic, header.queue_id = routed
        header.properties = encode_properties(props)
        return True

    async def _retry_limit(self, header: SendHeader) -> bool:
        group = header.topic[len(RETRY_GROUP_TOPIC_PREFIX):]
        group_config = self.broker.subscriptions.find_or_create(group)
        if group_config is None:
            raise SendRefused(ResponseCode.SUBSCRIPTION_GROUP_NOT_EXIST, f"subscription group [{group}] does not exist")
        limit = header.max_reconsume_times
        if limit is None:
            limit = _retry_max_times(group_config)
        if header.reconsume_times < limit:
            return False
        header.topic, header.queue_id = dlq_topic(group), 0
        props = decode_properties(header.properties)
        if props.pop(PROPERTY_DELAY_TIME_LEVEL, None) is not None:
            header.properties = encode_properties(props)
        await self._topic(header.topic, DLQ_QUEUE_NUMS)
        self.dead += 1
        return True


async def create_announced(broker: Broker, config: TopicConfig) -> TopicConfig:
    """Create a retry or dead-letter topic and tell the name servers, waiting for that at most
    ``ANNOUNCE_WAIT_S``: the group's consumers route to it next, but a name server that does
    not answer must not hold up a heartbeat or a send-back (registration goes on meanwhile)."""
    config = await broker.create_topic(config)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(broker.registrar.register_all()), ANNOUNCE_WAIT_S)
    return config


def _retry_max_times(group_config: dict[str, Any]) -> int:
    try:
        return int(group_config.get("retryMaxTimes", DEFAULT_RETRY_MAX_TIMES))
    except (TypeError, ValueError):
        return DEFAULT_RETRY_MAX_TIMES
