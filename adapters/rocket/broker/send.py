"""SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).

Validation follows RocketMQ: a bad topic name, a missing body, a message over maxMessageSize or
properties over 32767 bytes -> MESSAGE_ILLEGAL; an unknown topic with autoCreateTopicEnable off
-> TOPIC_NOT_EXIST; a queue id past the topic's write queues -> SYSTEM_ERROR; a topic without
the write permission -> NO_PERMISSION.

An append is one opaque batch: the messages in stored form with their queue offsets and commit
log offsets filled in. It holds one send, a batch send's messages, or the plain sends to one
queue read together from one connection (``send_group``: with 64 sync senders on one connection,
20.4-21.1k msg/s against 16.6-17.6k one append a send, the broker's CPU a message 53 -> 37 us).
A read of plain sends only is taken with no task (``send_group_now``) and, under SYNC_FLUSH,
answered by its group-commit round right after the journal fsync (``Store.when_durable``).
Offsets are read from ``log.assigned_offset`` right before ``log.append`` with no await in
between (append takes them synchronously). Under SYNC_FLUSH an append not durable within
syncFlushTimeout answers FLUSH_DISK_TIMEOUT (stored, durability not confirmed), as RocketMQ
does; ``WAIT=false`` answers without waiting for the flush. On a SYNC_MASTER the send then waits
for the group's in-sync slaves (``ha.py``): FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE when they
do not confirm (the message is stored on the master either way).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.rocket.message import (
    PROPERTY_WAIT_STORE_MSG_OK,
    SYSFLAG_BORNHOST_V6,
    SYSFLAG_STOREHOST_V6,
    MessageFormatError,
    StoredItem,
    decode_batch_items,
    encode_host,
    encode_stored_many,
)
from adapters.rocket.remoting import (
    LATER,
    Connection,
    Later,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
)
from adapters.rocket.remoting.command import encode_json_answer, property_value
from adapters.rocket.remoting.connection import Answer, handler_failed
from logstore import AppendResult, Log, LogFailedError
from logstore.batch import build_opaque_batch
from logstore.errors import InvalidBatchError

from .config import SYNC_MASTER
from .consumers import BadRequest
from .delay import may_be_scheduled
from .queues import encode_commitlog_offset
from .topics import (
    DLQ_GROUP_TOPIC_PREFIX,
    RETRY_GROUP_TOPIC_PREFIX,
    SYSTEM_TOPICS,
    TopicConfig,
    check_topic_name,
)
from .transaction import half_header, is_prepared

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

PROPERTIES_BYTES_MAX = 0x7FFF
HOSTS_CACHED_MAX = 4096
TOPICS_CACHED_MAX = 4096
_U64 = (1 << 64) - 1
_HOST_FLAGS = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6
#: Body bytes of the sends read together that one append takes (at most half a log batch).
GROUP_BYTES_MAX = 256 * 1024
# SEND_MESSAGE_V2 abbreviates the header field names to one letter.
V2_FIELDS = {
    "a": "producerGroup", "b": "topic", "c": "defaultTopic", "d": "defaultTopicQueueNums",
    "e": "queueId", "f": "sysFlag", "g": "bornTimestamp", "h": "flag", "i": "properties",
    "j": "reconsumeTimes", "k": "unitMode", "l": "maxReconsumeTimes", "m": "batch", "n": "brokerName",
}


# Answers that mean "stored" (durability targets may be unmet): the client's SendStatus values.
_STORED = frozenset({ResponseCode.SUCCESS, ResponseCode.FLUSH_DISK_TIMEOUT, ResponseCode.FLUSH_SLAVE_TIMEOUT,
                     ResponseCode.SLAVE_NOT_AVAILABLE})


class SendRefused(Exception):
    def __init__(self, code: int, remark: str) -> None:
        super().__init__(remark)
        self.code = code
        self.remark = remark


@dataclass(slots=True)
class SendHeader:
    topic: str
    queue_id: int
    sys_flag: int
    born_timestamp: int
    flag: int
    properties: str
    reconsume_times: int
    default_topic_queue_nums: int
    max_reconsume_times: int | None = None  # sends to %RETRY% topics: DLQ at this many

    @classmethod
    def parse(cls, ext: dict[str, str], v2: bool) -> SendHeader:
        get = ext.get
        names = _V2_NAMES if v2 else _V1_NAMES
        try:
            return cls(
                topic=get(names[0], ""), queue_id=int(get(names[1], "-1")),
                sys_flag=int(get(names[2], "0")), born_timestamp=int(get(names[3], "0")),
                flag=int(get(names[4], "0")), properties=get(names[5], "") or "",
                reconsume_times=int(get(names[6], "0") or 0),
                default_topic_queue_nums=int(get(names[7], "4") or 4),
                max_reconsume_times=int(get(names[8]) or 0) if get(names[8]) else None,
            )
        except ValueError as exc:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"bad send header field: {exc}") from None


# The header fields SendHeader reads, by their V1 names and their V2 one-letter names.
_V1_NAMES = ("topic", "queueId", "sysFlag", "bornTimestamp", "flag", "properties", "reconsumeTimes",
             "defaultTopicQueueNums", "maxReconsumeTimes")
_V2_NAMES = tuple({v: k for k, v in V2_FIELDS.items()}[n] for n in _V1_NAMES)


class SendProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        cfg = broker.config
        self.store_host, v6 = encode_host(cfg.broker_addr)
        self.store_host_flag = SYSFLAG_STOREHOST_V6 if v6 else 0
        self.store_host_hex = self.store_host.hex().upper()  # offset message ids: this + the commit log offset
        self.topic_bytes_cache: dict[str, bytes] = {}
        self._hosts: dict[str, tuple[bytes, int]] = {}
        self._gates: dict[asyncio.Future[None], asyncio.Future[bool]] = {}
        self._to_arm: dict[asyncio.Future[None], list[_Waiting]] = {}  # _arm_later -> _arm_gates (scheduled while any)
        self._valid_topics: set[str] = set()  # names that passed check_topic_name and are not system topics
        self.puts = 0
        self.groups_now = 0  # groups send_group_now took (no task of their own)

    async def send(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=False, batch=False)

    async def send_v2(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=True, batch=False)

    async def send_batch(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return await self._handle(conn, cmd, v2=True, batch=True)

    def send_group_now(self, conn: Connection, cmds: list[RemotingCommand]) -> list[Answer | Later] | None:
        """:meth:`send_group` with no task of its own, for a group of plain sends only (the
        remoting server's ``group_now``): each send is answered now, or LATER by the group-commit
        round itself once its journal fsync returned (``Store.when_durable``, before the round's
        segment writes), or when the round fails or syncFlushTimeout passes. None (the group
        goes to :meth:`send_group`) when a send must go alone and on a SYNC_MASTER, which waits
        for its slaves."""
        broker = self.broker
        if broker.config.broker_role == SYNC_MASTER:
            return None
        checked: list[tuple[SendHeader, tuple[Log, int]] | SendRefused] = []
        for cmd in cmds:
            try:
                header = SendHeader.parse(cmd.ext_fields, cmd.code == RequestCode.SEND_MESSAGE_V2)
                found = self._grouped_queue(header, self._check(header, cmd.body))
            except SendRefused as exc:
                checked.append(exc)
                continue
            if found is None:
                return None
            checked.append((header, found))
        answers: list[Answer | Later] = [None] * len(cmds)
        refused: list[Answer] = [None] * len(cmds)
        pending: dict[int, tuple[_Put, list[int]]] = {}
        stored: list[tuple[_Put, list[int], int, asyncio.Future[None] | None]] = []
        born_host, host_flags = self._born_host(conn.remote_addr)
        for i, item in enumerate(checked):
            if isinstance(item, SendRefused):
                answers[i] = cmds[i].make_response(item.code, item.remark)
            else:
                self._group_put(pending, stored, cmds, refused, i, item[0], item[1], born_host, host_flags)
        self._store_pending(pending, stored, cmds, refused)
        for i, answer in enumerate(refused):
            if answer is not None:
                answers[i] = answer
        rounds: dict[asyncio.Future[None], _Waiting] = {}  # the appends of one round are answered together
        answered_now = False
        for put, owners, base, durable in stored:
            mine = [cmds[i] for i in owners]
            if durable is None:  # an async log: stored and visible already
                for i, answer in zip(owners, self._answers(mine, ResponseCode.SUCCESS, None, put, base), strict=True):
                    answers[i] = answer
                answered_now = True
                continue
            waiting = rounds.get(durable)
            if waiting is None:
                waiting = rounds[durable] = _Waiting(self, conn)
                broker.store.when_durable(durable, waiting.durable)
                self._arm_later(durable, waiting)
            waiting.entries.append((put, mine, base))
            for i in owners:
                answers[i] = LATER
        if answered_now:
            broker.key_index.drain_soon()  # once these answers are out (the rounds' callbacks drain theirs)
        self.groups_now += 1
        return answers

    async def send_group(self, conn: Connection, cmds: list[RemotingCommand]) -> list[Answer]:
        """SEND_MESSAGE and SEND_MESSAGE_V2 requests read together from one connection (the
        remoting server's group handler). The plain sends to one queue are stored as one append
        and wait for one group-commit round together; each is still its own record, with its
        own offsets, message id and answer. A send to a topic still to be created, a
        transactional, scheduled or retry send, and one with WAIT=false go alone, as :meth:`send`
        takes them. Sends start in the order read. The stored messages are indexed by key
        once the answers are written (``KeyIndex.add_later``)."""
        try:
            return await self._send_group(conn, cmds)
        finally:
            self.broker.key_index.drain_soon()

    def _grouped_queue(self, header: SendHeader, topic_config: TopicConfig | None) -> tuple[Log, int] | None:
        """The queue log (and its id) a checked send is stored in with the others read with
        it; None for one that goes alone."""
        if topic_config is None:
            return None
        props = header.properties
        if (is_prepared(props) or header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX) or may_be_scheduled(props)
                or property_value(props, PROPERTY_WAIT_STORE_MSG_OK) == "false"):
            return None
        return self.broker.queues.get(header.topic, header.queue_id)

    def _group_put(self, pending: dict[int, tuple[_Put, list[int]]],
                   stored: list[tuple[_Put, list[int], int, asyncio.Future[None] | None]],
                   cmds: list[RemotingCommand], answers: list[Answer], i: int,
                   header: SendHeader, found: tuple[Log, int], born_host: bytes, host_flags: int) -> None:
        """Add send ``i`` to its queue's pending append (storing that append first when the
        send would make it too large)."""
        qlog, log_id = found
        entry = pending.get(log_id)
        body = cmds[i].body
        if entry is not None and entry[0].size + len(body) > min(GROUP_BYTES_MAX, qlog.config.batch_bytes_max // 2):
            self._store_pending({log_id: pending.pop(log_id)}, stored, cmds, answers)
            entry = None
        if entry is None:
            entry = pending[log_id] = (_Put(header.topic, self._topic_bytes(header.topic), header.queue_id, qlog,
                                            log_id, born_host, self.store_host), [])
        entry[0].add(body, header.flag, header.properties, (header.sys_flag & ~_HOST_FLAGS) | host_flags, header)
        entry[1].append(i)

    async def _send_group(self, conn: Connection, cmds: list[RemotingCommand]) -> list[Answer]:
        answers: list[Answer] = [None] * len(cmds)
        pending: dict[int, tuple[_Put, list[int]]] = {}  # by log id: the sends to one queue not yet stored
        stored: list[tuple[_Put, list[int], int, asyncio.Future[None] | None]] = []
        alone: list[tuple[int, asyncio.Future[RemotingCommand]]] = []
        born_host, host_flags = self._born_host(conn.remote_addr)
        yield_first = False  # a send alone was started: let it run before a grouped one is stored
        for i, cmd in enumerate(cmds):
            try:
                header = SendHeader.parse(cmd.ext_fields, cmd.code == RequestCode.SEND_MESSAGE_V2)
                topic_config = self._check(header, cmd.body)
            except SendRefused as exc:
                answers[i] = cmd.make_response(exc.code, exc.remark)
                continue
            found = self._grouped_queue(header, topic_config)
            if found is None:
                self._store_pending(pending, stored, cmds, answers)  # the sends read before it go first
                alone.append((i, asyncio.ensure_future(self._handle_checked(conn, cmd, header, topic_config, False))))
                yield_first = True
                continue
            if yield_first:  # the sends started alone run (up to their first wait) before this one
                yield_first = False
                await asyncio.sleep(0)
            self._group_put(pending, stored, cmds, answers, i, header, found, born_host, host_flags)
        self._store_pending(pending, stored, cmds, answers)
        for put, owners, base, durable in stored:
            mine = [cmds[i] for i in owners]
            try:
                code, remark = await self._acknowledged(put, durable, base)
            except LogFailedError as exc:
                for i in owners:
                    answers[i] = cmds[i].make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
                continue
            for i, answer in zip(owners, self._answers(mine, code, remark, put, base), strict=True):
                answers[i] = answer
        for i, handled in alone:
            try:
                answers[i] = await handled
            except Exception as exc:  # the others' answers still go out
                answers[i] = handler_failed(conn, cmds[i], exc)
        return answers

    def _answers(self, cmds: list[RemotingCommand], code: int, remark: str | None, put: _Put,
                 base: int) -> list[Answer]:
        """The answers to grouped sends ``cmds``, stored by ``put`` from queue offset ``base`` on:
        frames already encoded for JSON headers without a remark (the usual answer), else
        commands."""
        answers: list[Answer] = []
        for j, cmd in enumerate(cmds):
            fields = self._answer_fields(put.queue_id, put.log_id, base + j, 1)
            if remark is None and cmd.serialize_type == SerializeType.JSON:
                answers.append(encode_json_answer(code, cmd.opaque, fields))
            else:
                answers.append(cmd.string_response(code, remark, fields))
        return answers

    def _store_pending(self, pending: dict[int, tuple[_Put, list[int]]],
                       stored: list[tuple[_Put, list[int], int, asyncio.Future[None] | None]],
                       cmds: list[RemotingCommand], answers: list[Answer]) -> None:
        """Start the appends of ``pending`` (emptied) and add them to ``stored``; the sends
        of one that fails are answered here."""
        for put, owners in pending.values():
            try:
                base, durable = put.start(self.broker)
            except InvalidBatchError as exc:
                code, remark = ResponseCode.MESSAGE_ILLEGAL, f"the batch is too large: {exc}"
            except LogFailedError as exc:
                code, remark = ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}"
            else:
                stored.append((put, owners, base, durable))
                continue
            for i in owners:
                answers[i] = cmds[i].make_response(code, remark)
        pending.clear()

    async def _handle(self, conn: Connection, cmd: RemotingCommand, *, v2: bool, batch: bool) -> RemotingCommand:
        try:
            header = SendHeader.parse(cmd.ext_fields, v2)
            topic_config = self._check(header, cmd.body)
        except SendRefused as exc:
            return cmd.make_response(exc.code, exc.remark)
        return await self._handle_checked(conn, cmd, header, topic_config, batch)

    async def _handle_checked(self, conn: Connection, cmd: RemotingCommand, header: SendHeader,
                              topic_config: TopicConfig | None, batch: bool) -> RemotingCommand:
        try:
            if topic_config is None:
                topic_config = self._check_queue(header, await self._auto_create(header))
            queue_id = header.queue_id
            half = None if batch else half_header(header)  # TRAN_MSG=true: stored as a half message
            moved = half is not None
            if half is not None:
                header = half
            elif header.topic.startswith(RETRY_GROUP_TOPIC_PREFIX) or may_be_scheduled(header.properties):
                # Retry topics past their limit go to the DLQ, scheduled messages to a system queue.
                moved = await self.broker.sendback.route_send(header, batch)
            response = await self._store(conn, cmd, header, topic_config, batch)
            if moved and response.code in _STORED:
                response.ext_fields["queueId"] = str(queue_id)  # RocketMQ answers the queue asked for
            return response
        except SendRefused as exc:
            return cmd.make_response(exc.code, exc.remark)
        except BadRequest as exc:
            return cmd.make_response(ResponseCode.MESSAGE_ILLEGAL, str(exc))

    def _check(self, header: SendHeader, body: bytes) -> TopicConfig | None:
        """Validate a send: raises SendRefused; the topic's config, or None when the topic does
        not exist (auto-creation decides, then :meth:`_check_queue`)."""
        topic = header.topic
        if topic not in self._valid_topics:
            why = check_topic_name(topic)
            if why is not None:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, why)
            if topic in SYSTEM_TOPICS:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"Sending message to topic[{topic}] is forbidden.")
            if len(self._valid_topics) >= TOPICS_CACHED_MAX:
                self._valid_topics.clear()
            self._valid_topics.add(topic)
        if not body:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the message body is empty")
        limit = self.broker.config.max_message_size
        if len(body) > limit:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL,
                              f"the message body size {len(body)} exceeds maxMessageSize {limit}")
        _check_properties(header.properties)
        topic_config = self.broker.topics.get(topic)
        return None if topic_config is None else self._check_queue(header, topic_config)

    @staticmethod
    def _check_queue(header: SendHeader, topic_config: TopicConfig) -> TopicConfig:
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

    def _topic_bytes(self, topic: str) -> bytes:
        topic_bytes = self.topic_bytes_cache.get(topic)
        if topic_bytes is None:
            topic_bytes = self.topic_bytes_cache[topic] = topic.encode()
        return topic_bytes

    async def _store(
        self, conn: Connection, cmd: RemotingCommand, header: SendHeader, topic_config: TopicConfig, batch: bool,
    ) -> RemotingCommand:
        broker = self.broker
        topic = header.topic
        found = broker.queues.get(topic, header.queue_id)
        qlog, log_id = found if found is not None else await broker.queues.get_or_create(topic, header.queue_id)
        born_host, sys_flag_hosts = self._born_host(conn.remote_addr)
        sys_flag = (header.sys_flag & ~_HOST_FLAGS) | sys_flag_hosts
        put = _Put(topic, self._topic_bytes(topic), header.queue_id, qlog, log_id, born_host, self.store_host)
        if batch:
            try:
                items = decode_batch_items(cmd.body)
            except MessageFormatError as exc:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"bad batch body: {exc}") from None
            if not items:
                raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the batch holds no message")
            for i, (body, flag, props) in enumerate(items):
                if not body:
                    raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"message {i} of the batch has an empty body")
                _check_properties(props)
                if is_prepared(props):  # checked on the decoded messages: no scan of the whole body
                    raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "transactional messages cannot be sent in a batch")
                put.add(body, flag, props, sys_flag, header)
        else:
            put.add(cmd.body, header.flag, header.properties, sys_flag, header)
        try:
            base, durable = put.start(broker)  # offsets read and assigned with no await between
        except InvalidBatchError as exc:
            raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, f"the batch is too large: {exc}") from None
        except LogFailedError as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
        broker.key_index.drain_soon()
        code: int = ResponseCode.SUCCESS
        remark = None
        if ((durable is not None or broker.config.broker_role == SYNC_MASTER)
                and property_value(header.properties, PROPERTY_WAIT_STORE_MSG_OK) == "false"):
            if durable is not None:
                durable.add_done_callback(_log_round_failure)
        else:
            try:
                code, remark = await self._acknowledged(put, durable, base)
            except LogFailedError as exc:
                return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
        return self._answer(cmd, code, remark, header.queue_id, log_id, base, len(put.items))

    async def _acknowledged(self, put: _Put, durable: asyncio.Future[None] | None, base: int) -> tuple[int, str | None]:
        """Wait for a started append's round and, on a SYNC_MASTER, for the in-sync slaves:
        (SUCCESS, FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE, remark).
        Raises LogFailedError."""
        code: int = ResponseCode.SUCCESS
        remark = None
        if durable is not None:
            if not await self._flush_gate(durable):
                code, remark = ResponseCode.FLUSH_DISK_TIMEOUT, "flush disk timeout"
            else:
                put.check_acknowledged()
        if self.broker.config.broker_role == SYNC_MASTER:  # RocketMQ's handleHA: after the disk flush, the slaves
            ha_code, ha_remark = await self.broker.ha.wait_slaves(put.qlog.name, base + len(put.items))
            if ha_code != ResponseCode.SUCCESS:
                code, remark = ha_code, ha_remark
        return code, remark

    def _answer(self, cmd: RemotingCommand, code: int, remark: str | None, queue_id: int, log_id: int, base: int,
                n: int) -> RemotingCommand:
        """The answer to a send of ``n`` messages stored from queue offset ``base`` on."""
        return cmd.string_response(code, remark, self._answer_fields(queue_id, log_id, base, n))

    def _answer_fields(self, queue_id: int, log_id: int, base: int, n: int) -> dict[str, str]:
        """The answer's fields for ``n`` messages stored from queue offset ``base`` on (counted
        in ``puts``)."""
        self.puts += n
        prefix = self.store_host_hex
        first = encode_commitlog_offset(log_id, base)  # as hex: the offset's 8 big-endian bytes
        if n == 1:
            msg_ids = f"{prefix}{first & _U64:016X}"
        else:
            msg_ids = ",".join([f"{prefix}{(first + i) & _U64:016X}" for i in range(n)])
        return {"msgId": msg_ids, "queueId": str(queue_id), "queueOffset": str(base),
                "MSG_REGION": "DefaultRegion", "TRACE_ON": "true"}

    def _born_host(self, remote_addr: str) -> tuple[bytes, int]:
        """(packed born host, sys flag host bits) of a connection's peer, cached by address."""
        found = self._hosts.get(remote_addr)
        if found is None:
            try:
                born_host, born_v6 = encode_host(remote_addr)
            except (MessageFormatError, ValueError):
                born_host, born_v6 = b"\x7f\x00\x00\x01\x00\x00\x00\x00", False
            if len(self._hosts) >= HOSTS_CACHED_MAX:
                self._hosts.clear()
            found = self._hosts[remote_addr] = (born_host, (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | self.store_host_flag)
        return found

    def _flush_gate(self, durable: asyncio.Future[None]) -> asyncio.Future[bool]:
        """A future that is True once the group-commit round ``durable`` is acknowledged and
        False if syncFlushTimeout passes first (the answer is then FLUSH_DISK_TIMEOUT; the
        message stays stored). One gate and one timer per round, shared by its sends; the
        round's own future is never awaited here, so a cancelled handler cannot cancel it."""
        gate = self._gates.get(durable)
        if gate is not None:
            return gate
        loop = asyncio.get_running_loop()
        gate = self._gates[durable] = loop.create_future()
        timer = loop.call_later(self.broker.config.sync_flush_timeout / 1000, self._gate_expired, durable, gate)

        def round_done(fut: asyncio.Future[None]) -> None:
            timer.cancel()
            if self._gates.get(fut) is gate:
                del self._gates[fut]
            if gate.done():
                _log_round_failure(fut)
            elif fut.cancelled():
                gate.set_exception(LogFailedError("the group commit was cancelled"))
            elif fut.exception() is not None:
                gate.set_exception(fut.exception())  # type: ignore[arg-type]
            else:
                gate.set_result(True)

        durable.add_done_callback(round_done)
        return gate

    def _arm_later(self, durable: asyncio.Future[None], waiting: _Waiting) -> None:
        """Give ``waiting`` the flush gate of ``durable`` once the loop has run the callbacks
        queued before this one, the store's start of the round among them: a round fsynced
        inline has answered its sends by then and needs no gate (one callback a turn of the
        loop arms every round's gates)."""
        if not self._to_arm:
            asyncio.get_running_loop().call_soon(self._arm_gates)
        self._to_arm.setdefault(durable, []).append(waiting)

    def _arm_gates(self) -> None:
        """The flush gates for the sends their rounds have not answered yet (a round's failure,
        or syncFlushTimeout when its fsync is not inline)."""
        to_arm, self._to_arm = self._to_arm, {}
        for durable, waitings in to_arm.items():
            unanswered = [w for w in waitings if w.entries]
            if unanswered:
                gate = self._flush_gate(durable)
                for waiting in unanswered:
                    gate.add_done_callback(waiting.settled)

    def _gate_expired(self, durable: asyncio.Future[None], gate: asyncio.Future[bool]) -> None:
        if self._gates.get(durable) is gate:
            del self._gates[durable]  # sends joining the round later get a fresh timer
        if not gate.done():
            gate.set_result(False)


def _check_properties(properties: str) -> None:
    # UTF-8 takes at most 4 bytes a character: only a long string needs encoding to be measured.
    if len(properties) > PROPERTIES_BYTES_MAX // 4 and len(properties.encode()) > PROPERTIES_BYTES_MAX:
        raise SendRefused(ResponseCode.MESSAGE_ILLEGAL, "the message properties are longer than 32767 bytes")


def _log_round_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("append not waited for failed: %s", fut.exception())


class _Waiting:
    """Grouped sends of one connection waiting for one group-commit round, an append a queue
    (:meth:`SendProcessor.send_group_now`): each append's sends are answered once, by
    whichever comes first of the round's durable callback, its failure, or syncFlushTimeout;
    the answers given together go out in one write."""

    __slots__ = ("conn", "deadline", "entries", "processor")

    def __init__(self, processor: SendProcessor, conn: Connection) -> None:
        self.processor = processor
        self.conn = conn
        self.entries: list[tuple[_Put, list[RemotingCommand], int]] = []  # not answered yet
        # The clock, not the loop's cached time: a round may fsync on the loop's thread.
        self.deadline = time.monotonic() + processor.broker.config.sync_flush_timeout / 1000

    def durable(self) -> None:
        """``Store.when_durable``: journaled and fsynced; the logs commit right after. An
        append whose log failed meanwhile is left to :meth:`settled`, which then fails its sends."""
        if time.monotonic() < self.deadline:
            code, remark = ResponseCode.SUCCESS, None
        else:  # durable, but later than syncFlushTimeout: what the sends were told to wait for
            code, remark = ResponseCode.FLUSH_DISK_TIMEOUT, "flush disk timeout"
        self._reply(lambda put: None if put.qlog.failure is not None else (code, remark))

    def settled(self, gate: asyncio.Future[bool]) -> None:
        """The flush gate: the round acknowledged (True), syncFlushTimeout passed (False) or the
        round failed."""
        if not self.entries:
            return
        exc = gate.exception()
        timed_out = exc is None and not gate.result()

        def outcome(put: _Put) -> tuple[int, str | None]:
            if exc is not None:
                return ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}"
            if timed_out:
                return ResponseCode.FLUSH_DISK_TIMEOUT, "flush disk timeout"
            try:
                put.check_acknowledged()
            except LogFailedError as failed:
                return ResponseCode.SYSTEM_ERROR, f"the store failed: {failed}"
            return ResponseCode.SUCCESS, None

        self._reply(outcome)

    def _reply(self, outcome: Callable[[_Put], tuple[int, str | None] | None]) -> None:
        """Answer each waiting append whose ``outcome`` is known now (None: not yet)."""
        cmds: list[RemotingCommand] = []
        responses: list[Answer] = []
        waiting = []
        processor = self.processor
        for entry in self.entries:
            put, mine, base = entry
            known = outcome(put)
            if known is None:
                waiting.append(entry)
                continue
            code, remark = known
            cmds += mine
            if code == ResponseCode.SYSTEM_ERROR:
                responses += [cmd.make_response(code, remark) for cmd in mine]
            else:
                responses += processor._answers(mine, code, remark, put, base)
        self.entries = waiting
        if cmds:
            self.conn.reply(cmds, responses)
            processor.broker.key_index.drain_soon()


class _Put:
    """One append of stored records to one queue: a send, a batch send's messages, or several
    sends read together. :meth:`start` reads the log's next offset, builds the records with it
    and starts the append without yielding in between, so the offsets written are the ones the
    log assigns."""

    __slots__ = ("born_host", "items", "log_id", "qlog", "queue_id", "result", "size", "store_host", "topic",
                 "topic_bytes")

    def __init__(self, topic: str, topic_bytes: bytes, queue_id: int, qlog: Log, log_id: int, born_host: bytes,
                 store_host: bytes) -> None:
        self.topic = topic
        self.topic_bytes = topic_bytes
        self.queue_id = queue_id
        self.qlog = qlog
        self.log_id = log_id
        self.born_host = born_host
        self.store_host = store_host
        self.items: list[StoredItem] = []
        self.size = 0  # body bytes of the items
        self.result: AppendResult | None = None

    def add(self, body: bytes, flag: int, properties: str, sys_flag: int, header: SendHeader) -> None:
        """One message of a send with ``header`` (``sys_flag`` with the host bits of this broker
        and the peer)."""
        self.items.append((body, flag, properties, sys_flag, header.born_timestamp, header.reconsume_times))
        self.size += len(body)

    def start(self, broker: Broker) -> tuple[int, asyncio.Future[None] | None]:
        """Store the records: (base queue offset, the group-commit future for a sync log or
        None when already acknowledged). Raises InvalidBatchError, LogFailedError."""
        qlog = self.qlog
        store_ts = broker.store.clock.now_ms()
        base = qlog.assigned_offset
        items = self.items
        # commit log offset of message i: encode_commitlog_offset(log_id, base + i) = first + i
        # (the queue offset takes the low bits)
        first = encode_commitlog_offset(self.log_id, base)
        parts = encode_stored_many(
            self.topic_bytes, items, queue_id=self.queue_id, queue_offset=base, commitlog_offset=first,
            born_host=self.born_host, store_timestamp=store_ts, store_host=self.store_host,
        )
        data = build_opaque_batch(parts, len(items), store_ts, store_ts)
        if len(data) > qlog.config.batch_bytes_max:
            raise InvalidBatchError(f"stored batch of {len(data)} bytes exceeds {qlog.config.batch_bytes_max}")
        self.result, durable = qlog.start_append(data)  # assigns exactly the offsets used above
        broker.key_index.add_later(self.topic, [item[2] for item in items], first, store_ts, self.log_id,
                                   base + len(items))  # the caller drains it once it has answered
        return base, durable

    def check_acknowledged(self) -> None:
        assert self.result is not None
        self.qlog.check_acknowledged(self.result)
