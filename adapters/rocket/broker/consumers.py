"""Consumer-facing requests besides pull: offsets, heartbeats, group membership, queue locks.

QUERY_CONSUMER_OFFSET (14), UPDATE_CONSUMER_OFFSET (15), GET_MAX_OFFSET (30), GET_MIN_OFFSET
(31), SEARCH_OFFSET_BY_TIMESTAMP (29), HEART_BEAT (34), UNREGISTER_CLIENT (35),
GET_CONSUMER_LIST_BY_GROUP (38), LOCK_BATCH_MQ (41), UNLOCK_BATCH_MQ (42).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode

from .reader import offset_for_store_timestamp

if TYPE_CHECKING:
    from .broker import Broker


class BadRequest(Exception):
    """Refused request; the message is the remark of a SYSTEM_ERROR answer."""


def int_field(ext: dict[str, str], key: str, default: int | None = None) -> int:
    raw = ext.get(key)
    if raw is None or raw == "":
        if default is None:
            raise BadRequest(f"the custom field <{key}> is null")
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"the custom field <{key}> is not an integer: {raw!r}") from None


def str_field(ext: dict[str, str], key: str) -> str:
    raw = ext.get(key)
    if not raw:
        raise BadRequest(f"the custom field <{key}> is null")
    return raw


def json_body(cmd: RemotingCommand) -> dict[str, Any]:
    try:
        obj = orjson.loads(cmd.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("body is not a JSON object")
    return obj


class ConsumerProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def _log(self, ext: dict[str, str]) -> Any:
        topic = str_field(ext, "topic")
        queue_id = int_field(ext, "queueId")
        found = self.broker.queues.get(topic, queue_id)
        return None if found is None else found[0]

    async def query_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        group, topic, qid = str_field(ext, "consumerGroup"), str_field(ext, "topic"), int_field(ext, "queueId")
        offset = self.broker.offsets.query(group, topic, qid)
        if offset is not None:
            return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": offset})
        qlog = self._log(ext)
        # RocketMQ answers 0 for a group new to a queue whose first message is still at offset 0
        # (nothing aged out), so a new group starts at the beginning of a young queue.
        if ext.get("setZeroIfNotFound", "true") != "false" and (qlog is None or qlog.log_start_offset == 0):
            return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": 0})
        return cmd.make_response(ResponseCode.QUERY_NOT_FOUND,
                                 "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")

    async def update_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        ext = cmd.ext_fields
        group, topic = str_field(ext, "consumerGroup"), str_field(ext, "topic")
        qid, offset = int_field(ext, "queueId"), int_field(ext, "commitOffset")
        if self.broker.topics.get(topic) is None:
            return cmd.make_response(ResponseCode.TOPIC_NOT_EXIST, f"topic[{topic}] not exist")
        await self.broker.offsets.commit(group, topic, qid, offset, durable=not cmd.is_oneway)
        return cmd.make_response(ResponseCode.SUCCESS)

    async def max_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        qlog = self._log(cmd.ext_fields)
        return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": 0 if qlog is None else qlog.committed_offset})

    async def min_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        qlog = self._log(cmd.ext_fields)
        return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": 0 if qlog is None else qlog.log_start_offset})

    async def search_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        qlog = self._log(cmd.ext_fields)
        ts = int_field(cmd.ext_fields, "timestamp")
        if qlog is None:
            return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": 0})
        return cmd.make_response(ResponseCode.SUCCESS, ext_fields={"offset": offset_for_store_timestamp(qlog, ts)})

    async def heartbeat(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        data = json_body(cmd)
        for group in self.broker.clients.heartbeat(conn, data):
            self.broker.subscriptions.find_or_create(group)
            retry = f"%RETRY%{group}"
            if self.broker.topics.get(retry) is None:
                from .sendback import create_announced
                from .topics import TopicConfig

                # Told to the name servers now: the consumer routes to it right after this.
                await create_announced(self.broker, TopicConfig(retry, 1, 1))
        return cmd.make_response(ResponseCode.SUCCESS)

    async def unregister_client(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        self.broker.clients.unregister(ext.get("clientID", ""), ext.get("producerGroup"), ext.get("consumerGroup"))
        return cmd.make_response(ResponseCode.SUCCESS)

    async def consumer_list(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        group = str_field(cmd.ext_fields, "consumerGroup")
        ids = self.broker.clients.consumer_ids(group)
        if not ids:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"no consumer for this group, {group}")
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps({"consumerIdList": ids}))

    async def lock_batch(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        body = json_body(cmd)
        group, client = str(body.get("consumerGroup", "")), str(body.get("clientId", ""))
        mqs = _mq_keys(body.get("mqSet") or [])
        got = set(self.broker.locks.try_lock(group, client, mqs))
        locked = [_mq_json(mq) for mq in mqs if mq in got]
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps({"lockOKMQSet": locked}))

    async def unlock_batch(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        body = json_body(cmd)
        self.broker.locks.unlock(str(body.get("consumerGroup", "")), str(body.get("clientId", "")),
                                 _mq_keys(body.get("mqSet") or []))
        return cmd.make_response(ResponseCode.SUCCESS)


def _mq_keys(items: list[Any]) -> list[tuple[str, str, int]]:
    out = []
    for mq in items:
        if not isinstance(mq, dict):
            raise BadRequest("mqSet entries must be objects")
        out.append((str(mq.get("topic", "")), str(mq.get("brokerName", "")), int(mq.get("queueId", 0))))
    return out


def _mq_json(mq: tuple[str, str, int]) -> dict[str, Any]:
    return {"topic": mq[0], "brokerName": mq[1], "queueId": mq[2]}
