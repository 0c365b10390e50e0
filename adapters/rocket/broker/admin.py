"""Admin and lookup requests: QUERY_MESSAGE (12), VIEW_MESSAGE_BY_ID (33), GET_CONSUME_STATS
(208), UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200), GET_BROKER_RUNTIME_INFO (28), GET_TOPIC_STATS_INFO
(202), INVOKE_BROKER_TO_RESET_OFFSET (222).

INVOKE_BROKER_TO_RESET_OFFSET is the admin's forced offset reset (``mqadmin resetOffsetByTime``):
for each queue of the topic the offset at the timestamp (SEARCH_OFFSET_BY_TIMESTAMP's answer; -1
means the queue's end) replaces the group's committed offset, backwards too, when ``isForce`` or
when it is below the committed one. The new offsets are durable before the answer, which carries
them as a ResetOffsetBody; the group's online consumers are told with a oneway
RESET_CONSUMER_CLIENT_OFFSET (220) carrying the same body, as RocketMQ's Broker2Client does.

GET_CONSUME_STATS answers in fastjson's shape (see adapters.rocket.bodies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson

from adapters.rocket.bodies import encode_consume_stats, encode_mq_table
from adapters.rocket.message import (
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    decode_one_stored,
)
from adapters.rocket.remoting import Connection, RemotingCommand, RequestCode, ResponseCode

from .consumers import BadRequest, int_field, json_body, str_field
from .reader import offset_for_store_timestamp, read_one, store_timestamp_at
from .topics import DEFAULT_PERM, TopicConfig, check_topic_name

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

GET_BROKER_RUNTIME_INFO = 28
QUEUE_NUMS_MAX = 1024


class AdminProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.started_ms = int(time.time() * 1000)

    # -- messages ------------------------------------------------------------------------------

    def _message_at(self, phys: int) -> bytes | None:
        found = self.broker.queues.by_commitlog_offset(phys)
        if found is None:
            return None
        _topic, _qid, qlog, offset = found
        return read_one(qlog, offset)

    async def view_by_id(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        phys = int_field(cmd.ext_fields, "offset")
        data = self._message_at(phys)
        if data is None:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"can not find message by the offset, {phys}")
        return cmd.make_response(ResponseCode.SUCCESS, body=data)

    async def query_message(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        topic, key = str_field(ext, "topic"), str_field(ext, "key")
        max_num = int_field(ext, "maxNum", 32)
        begin, end = int_field(ext, "beginTimestamp", 0), int_field(ext, "endTimestamp", 2**63 - 1)
        parts = []
        last_ts = last_phys = 0
        for phys in self.broker.key_index.lookup(f"{topic}#{key}", begin, end, max_num):
            data = self._message_at(phys)
            if data is None:
                continue
            msg = decode_one_stored(data)
            # The index is written ahead of the append: check the message really has the key.
            if key != msg.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) and key not in msg.keys:
                continue
            parts.append(data)
            last_ts, last_phys = max(last_ts, msg.store_timestamp), max(last_phys, phys)
        if not parts:
            return cmd.make_response(ResponseCode.QUERY_NOT_FOUND, "can not find message, maybe time range not correct")
        return cmd.make_response(ResponseCode.SUCCESS, ext_fields={
            "indexLastUpdateTimestamp": last_ts, "indexLastUpdatePhyoffset": last_phys,
        }, body=b"".join(parts))

    # -- consume stats ---------------------------------------------------------------------------

    async def consume_stats(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker = self.broker
        group = str_field(cmd.ext_fields, "consumerGroup")
        topic = cmd.ext_fields.get("topic") or None
        topics = [topic] if topic else broker.offsets.topics_of_group(group)
        entries = []
        diff_total = 0
        for t in topics:
            if broker.topics.get(t) is None:
                continue
            committed = broker.offsets.offsets(group, t)
            for qid, qlog, _lid in broker.queues.queues_of(t):
                consumer = committed.get(qid, 0)
                broker_offset = qlog.committed_offset
                last_ts = store_timestamp_at(qlog, consumer - 1) if consumer > 0 else 0
                diff_total += max(0, broker_offset - consumer)
                entries.append(({"brokerName": broker.config.broker_name, "queueId": qid, "topic": t},
                                {"brokerOffset": broker_offset, "consumerOffset": consumer,
                                 "pullOffset": consumer, "lastTimestamp": last_ts}))
        if topic and broker.topics.get(topic) is None:
            return cmd.make_response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        return cmd.make_response(ResponseCode.SUCCESS, body=encode_consume_stats(entries, diff_total))

    # -- topics and groups -------------------------------------------------------------------------

    async def update_topic(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        topic = str_field(ext, "topic")
        why = check_topic_name(topic)
        if why is not None:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, why)
        if topic == self.broker.config.broker_cluster_name:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the topic[{topic}] is conflict with system topic.")
        read = int_field(ext, "readQueueNums", 16)
        write = int_field(ext, "writeQueueNums", 16)
        if not (1 <= read <= QUEUE_NUMS_MAX and 1 <= write <= QUEUE_NUMS_MAX):
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"queue numbers must be between 1 and {QUEUE_NUMS_MAX}")
        config = TopicConfig(
            topic, read, write, int_field(ext, "perm", DEFAULT_PERM), ext.get("topicFilterType") or "SINGLE_TAG",
            int_field(ext, "topicSysFlag", 0), ext.get("order", "false") == "true",
        )
        await self.broker.create_topic(config, register_now=True)
        return cmd.make_response(ResponseCode.SUCCESS)

    async def delete_topic(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = str_field(cmd.ext_fields, "topic")
        await self.broker.delete_topic(topic)
        return cmd.make_response(ResponseCode.SUCCESS)

    async def update_subscription_group(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        body = json_body(cmd)
        try:
            self.broker.subscriptions.update(body)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return cmd.make_response(ResponseCode.SUCCESS)

    async def runtime_info(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        b = self.broker
        table = {
            "brokerVersionDesc": "logstore", "brokerVersion": "401",
            "msgPutTotalTodayNow": str(b.send.puts), "msgGetTotalTodayNow": str(b.pull.pulled),
            "bootTimestamp": str(self.started_ms), "pullHeldCount": str(b.pull.held),
            "queueLogs": str(len(b.queues.all_queues())), "flushDiskType": b.config.flush_disk_type,
            "consumerOffsetSaves": str(b.offsets.saves),
            "storeGroupCommitRounds": str(b.store.rounds), "storeGroupCommitAppends": str(b.store.round_appends),
            "storeGroupCommitInlineRounds": str(b.store.inline_rounds), "storeGroupCommitRingRounds": str(b.store.ring_rounds),
            "sendGroupsAnsweredByRound": str(b.send.groups_now),
            **b.role.status(),
        }
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps({"table": table}))

    # -- topic stats and forced offset resets ------------------------------------------------------

    async def topic_stats(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker = self.broker
        topic = str_field(cmd.ext_fields, "topic")
        if broker.topics.get(topic) is None:
            return cmd.make_response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        entries = []
        for qid, qlog, _lid in broker.queues.queues_of(topic):
            end = qlog.committed_offset
            entries.append(({"brokerName": broker.config.broker_name, "queueId": qid, "topic": topic},
                            {"minOffset": qlog.log_start_offset, "maxOffset": end,
                             "lastUpdateTimestamp": store_timestamp_at(qlog, end - 1) if end > 0 else 0}))
        return cmd.make_response(ResponseCode.SUCCESS, body=encode_mq_table("offsetTable", entries))

    async def reset_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        broker = self.broker
        ext = cmd.ext_fields
        topic, group = str_field(ext, "topic"), str_field(ext, "group")
        timestamp = int_field(ext, "timestamp")
        force = ext.get("isForce", "true") != "false"
        only_queue = int_field(ext, "queueId", -1)
        if broker.topics.get(topic) is None:
            return cmd.make_response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        committed = broker.offsets.offsets(group, topic)
        entries: list[tuple[dict[str, object], int]] = []
        resets = []
        for qid, qlog, _lid in broker.queues.queues_of(topic):
            if only_queue >= 0 and qid != only_queue:
                continue
            target = qlog.committed_offset if timestamp == -1 else offset_for_store_timestamp(qlog, timestamp)
            current = committed.get(qid)
            if not force and current is not None and target >= current:
                target = current
            else:
                resets.append(broker.offsets.reset(group, topic, qid, target))
            entries.append(({"brokerName": broker.config.broker_name, "queueId": qid, "topic": topic}, target))
        await asyncio.gather(*resets)  # one durable save covers them all
        body = encode_mq_table("offsetTable", entries)
        g = broker.clients.consumers.get(group)
        for client in list(g.clients.values()) if g else []:
            if client.conn.closed:
                continue
            notify = RemotingCommand.request(RequestCode.RESET_CONSUMER_CLIENT_OFFSET, {
                "topic": topic, "group": group, "timestamp": timestamp, "isForce": force}, body, oneway=True)
            try:
                await client.conn.invoke_oneway(notify)
            except Exception as exc:  # a consumer that went away reads the stored offset on return
                log.debug("reset notify to %s failed: %s", client.client_id, exc)
        return cmd.make_response(ResponseCode.SUCCESS, body=body)
