"""SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).

Validation follows RocketMQ: a bad topic name, a missing body, a message over maxMessageSize or
properties over 32767 bytes -> MESSAGE_ILLEGAL; an unknown topic with autoCreateTopicEnable off
-> TOPIC_NOT_EXIST; a queue id past the topic's write queues -> SYSTEM_ERROR; a topic without
the write permission -> NO_PERMISSION.

A send is one opaque batch: the messages in stored form with their queue offsets and commit log
offsets filled in. Offsets are read from ``log.assigned_offset`` right before ``log.append``
with no await in between (append takes them synchronously). Under SYNC_FLUSH an append not
durable within syncFlushTimeout answers FLUSH_DISK_TIMEOUT (stored, durability not confirmed),
as RocketMQ does; ``WAIT=false`` answers without waiting for the flush.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.rocket.message import (
    PROPERTY_WAIT_STORE_MSG_OK,
    SYSFLAG_BORNHOST_V6,
    SYSFLAG_STOREHOST_V6,
    MessageFormatError,
    decode_batch_items,
    encode_host,
    encode_offset_msg_id,
    encode_stored_raw,
)
from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode
from adapters.rocket.remoting.command import decode_properties
from logstore import Log, LogFailedError
from logstore.batch import build_opaque_batch
from logstore.errors import InvalidBatchError

from .consumers import BadRequest
from .keyindex import index_keys
from .queues import encode_commitlog_offset
from .topics import (
    DLQ_GROUP_TOPIC_PREFIX,
    RETRY_GROUP_TOPIC_PREFIX,
    SYSTEM_TOPICS,
    TopicConfig,
    check_topic_name,
)
from .transaction import half_header

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

PROPERTIES_BYTES_MAX = 0x7FFF
# SEND_MESSAGE_V2 abbreviates the header field names to one letter.
V2_FIELDS = {
    "a": "producerGroup", "b": "topic", "c": "defaultTopic", "d": "defaultTopicQueueNums",
    "e": "queueId", "f": "sysFlag", "g": "bornTimestamp", "h": "flag", "i": "properties",
    "j": "reconsumeTimes", "k": "unitMode", "l": "maxReconsumeTimes", "m": "batch", "n": "brokerName",
}


class SendRefused(Exception):
    def __init__(self, code: int, remark: str) -> None:
        super().__init__(remark)
        self.code = code
        self.remark = remark


@dataclass
class SendHeader:
    topic: str
    queue_id: int
    sys_flag: int
    born_timestamp: int
    flag: int
    properties: str
    reconsume_times: int
    default_topic_queue_nums: int

    @classmethod
    def parse(cls, ext: dict[str, str], v2: bool) -> SendHeader:
        if v2:
            ext = {V2_FIELDS.get(k, k): v for k, v in ext.items()}
        try:
            return cls(
                topic=ext.get("topic", ""), queue_id=int(ext.get("queueId", "-1")),
                sys_flag=int(ext.get("sysFlag", "0")), born_timestamp=int(ext.get("bornTimestamp", "0")),
                flag=int(ext.get("flag", "0")), properties=ext.get("properties", "") or "",
                reconsume_times=int(ext.get("reconsumeTimes", "0") or 0),
                default_topic_queue_nums=int(ext.get("defaultTopicQueueNums", "4") or 4),
            )
        except ValueError as exc:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"bad send header field: {exc}") from None


class SendProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        cfg = broker.config
        self.store_host, v6 = encode_host(cfg.broker_addr)
        self.store_host_flag = SYSFLAG_STOREHOST_V6 if v6 else 0
        self.topic_bytes_cache: dict[str, bytes] = {}
        self._background: set[asyncio.Future[None]] = set()
        self.puts = 0

    def _keep(self, task: asyncio.Future[None]) -> None:
        """Hold a background append until it ends; log (not lose) its failure."""
        self._background.add(task)

        def done(t: asyncio.Future[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background append failed: %s", t.exception())

        task.add_done_callback(done)

    async def send(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=False, batch=False)

    async def send_v2(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=True, batch=False)

    async def send_batch(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=True, batch=True)

    async def _handle(self, conn: Connection, cmd: RemotingCommand, *, v2: bool, batch: bool) -> RemotingCommand:
        try:
            header = SendHeader.parse(cmd.ext_fields, v2)
            topic_config = await self._check(header, cmd.body, batch)
            half = half_header(header, cmd.body, batch)  # TRAN_MSG=true: stored as a half message
            if half is not None:
                response = await self._store(conn, cmd, half, topic_config, batch)
                response.ext_fields["queueId"] = str(header.queue_id)  # the real queue, as RocketMQ answers
                return response
            return await self._store(conn, cmd, header, topic_config, batch)
        except SendRefused as exc:
            return cmd.make_response(exc.code, exc.remark)
        except BadRequest as exc:
            return cmd.make_response(ResponseCode.MESSAGE_ILLEGAL, str(exc))

    async def _check(self, header: SendHeader, body: bytes, batch: bool) -> TopicConfig:
        cfg = self.broker.config
        why = check_topic_name(header.topic)
        if why is not None:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, why)
        if header.topic in SYSTEM_TOPICS:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"Sending message to topic[{header.topic}] is forbidden.")
        if not body:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the message body is empty")
        if len(body) > cfg.max_message_size:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL,
                              f"the message body size {len(body)} exceeds maxMessageSize {cfg.max_message_size}")
        if len(header.properties.encode()) > PROPERTIES_BYTES_MAX:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the message properties are longer than 32767 bytes")
        topic_config = self.broker.topics.get(header.topic)
        if topic_config is None:
            topic_config = await self._auto_create(header)
        if not topic_config.writable:
            raise SendRefused(ResponseCode.NO_PERMISSION, f"the topic[{header.topic}] sending is forbidden")
        if header.queue_id >= topic_config.write_queue_nums:
            raise SendRefused(ResponseCode.SYSTEM_ERROR,
                              f"request queueId[{header.queue_id}] is illegal, topic {header.topic} has "
                              f"{topic_config.write_queue_nums} write queues, producer: {header.topic}")
        if header.queue_id < 0:
            header.queue_id = random.randrange(topic_config.write_queue_nums)
        return topic_config

    async def _auto_create(self, header: SendHeader) -> TopicConfig:
        broker = self.broker
        topic = header.topic
        if topic.startswith(RETRY_GROUP_TOPIC_PREFIX) or topic.startswith(DLQ_GROUP_TOPIC_PREFIX):
            return await broker.create_topic(TopicConfig(topic, 1, 1))
        if not broker.config.auto_create_topic_enable:
            raise SendRefused(ResponseCode.TOPIC_NOT_EXIST,
                              f"topic[{topic}] not exist, apply first please! (autoCreateTopicEnable is false)")
        nums = max(1, min(header.default_topic_queue_nums, broker.config.default_topic_queue_nums))
        log.info("auto-creating topic %s with %d queues", topic, nums)
        return await broker.create_topic(TopicConfig(topic, nums, nums))

    async def _store(
        self, conn: Connection, cmd: RemotingCommand, header: SendHeader, topic_config: TopicConfig, batch: bool,
    ) -> RemotingCommand:
        broker = self.broker
        topic = header.topic
        topic_bytes = self.topic_bytes_cache.get(topic)
        if topic_bytes is None:
            topic_bytes = self.topic_bytes_cache[topic] = topic.encode()
        qlog, log_id = await broker.queues.get_or_create(topic, header.queue_id)
        born_ip = conn.remote_addr
        try:
            born_host, born_v6 = encode_host(born_ip)
        except (MessageFormatError, ValueError):
            born_host, born_v6 = b"\x7f\x00\x00\x01\x00\x00\x00\x00", False
        sys_flag_hosts = (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | self.store_host_flag
        if batch:
            try:
                items = [(it.body, it.flag, it.properties) for it in decode_batch_items(cmd.body)]
            except MessageFormatError as exc:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"bad batch body: {exc}") from None
            if not items:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the batch holds no message")
        else:
            items = [(cmd.body, header.flag, header.properties)]
        for i, (body, _flag, props) in enumerate(items):
            if not body:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"message {i} of the batch has an empty body")
            if len(props.encode()) > PROPERTIES_BYTES_MAX:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the message properties are longer than 32767 bytes")
        sys_flag = (header.sys_flag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)) | sys_flag_hosts
        put = _Put(topic, topic_bytes, header, qlog, log_id, items, sys_flag, born_host, self.store_host)
        # The offsets are read and the append started inside one task step (see _Put.run).
        task = asyncio.ensure_future(put.run(broker))
        try:
            base = await asyncio.shield(put.started)
        except InvalidBatchError as exc:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"the batch is too large: {exc}") from None
        wait = decode_properties(header.properties).get(PROPERTY_WAIT_STORE_MSG_OK, "true") != "false"
        code = ResponseCode.SUCCESS
        remark = None
        if not wait and qlog.is_sync:
            self._keep(task)
        else:
            try:
                # asyncio.timeout, unlike wait_for, makes no extra task per message; the shield
                # keeps a timed-out append running (it is reported as FLUSH_DISK_TIMEOUT).
                async with asyncio.timeout(broker.config.sync_flush_timeout / 1000):
                    await asyncio.shield(task)
            except TimeoutError:
                code, remark = ResponseCode.FLUSH_DISK_TIMEOUT, "flush disk timeout"
                self._keep(task)
            except LogFailedError as exc:
                return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
        records = items
        self.puts += len(records)
        store_host = broker.config.broker_addr
        msg_ids = ",".join(encode_offset_msg_id(store_host, encode_commitlog_offset(log_id, base + i))
                           for i in range(len(records)))
        return cmd.make_response(code, remark, ext_fields={
            "msgId": msg_ids, "queueId": header.queue_id, "queueOffset": base,
            "MSG_REGION": "DefaultRegion", "TRACE_ON": "true",
        })


class _Put:
    """One append. ``run`` reads the log's next offset, builds the stored records with it and
    starts ``log.append`` without awaiting in between, so the offsets written are the ones the
    log assigns; ``started`` resolves to the base offset as soon as that has happened."""

    def __init__(self, topic: str, topic_bytes: bytes, header: SendHeader, qlog: Log, log_id: int,
                 items: list[tuple[bytes, int, str]], sys_flag: int, born_host: bytes, store_host: bytes) -> None:
        self.topic = topic
        self.topic_bytes = topic_bytes
        self.header = header
        self.qlog = qlog
        self.log_id = log_id
        self.items = items
        self.sys_flag = sys_flag
        self.born_host = born_host
        self.store_host = store_host
        self.started: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def run(self, broker: Broker) -> None:
        h = self.header
        qlog = self.qlog
        store_ts = broker.store.clock.now_ms()
        base = qlog.assigned_offset
        records = []
        keys = []
        for i, (body, flag, props) in enumerate(self.items):
            phys = encode_commitlog_offset(self.log_id, base + i)
            records.append(encode_stored_raw(
                self.topic_bytes, body, props.encode(), queue_id=h.queue_id, flag=flag, queue_offset=base + i,
                commitlog_offset=phys, sys_flag=self.sys_flag, born_timestamp=h.born_timestamp,
                born_host=self.born_host, store_timestamp=store_ts, store_host=self.store_host,
                reconsume_times=h.reconsume_times,
            ))
            keys.append((index_keys(self.topic, decode_properties(props)), phys))
        try:
            data = build_opaque_batch(b"".join(records), len(records), store_ts, store_ts)
            if len(data) > qlog.config.batch_bytes_max:
                raise InvalidBatchError(f"stored batch of {len(data)} bytes exceeds {qlog.config.batch_bytes_max}")
        except InvalidBatchError as exc:
            self.started.set_exception(exc)
            return
        for k, phys in keys:
            broker.key_index.add(k, phys, store_ts)
        broker.key_index.mark(self.log_id, base + len(records))
        self.started.set_result(base)  # no yield: its waiter runs after our next await
        await qlog.append(data)  # append's synchronous prefix assigns exactly these offsets
