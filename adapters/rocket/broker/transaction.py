"""Transactional messages: half messages, END_TRANSACTION (37) and the state of the op log.

RocketMQ's two-phase send (``rmq:broker/.../transaction/``):

1. A SEND with property ``TRAN_MSG=true`` is stored as a *half* message in
   ``RMQ_SYS_TRANS_HALF_TOPIC`` queue 0, with ``REAL_TOPIC`` / ``REAL_QID`` saved as properties
   and the sysFlag transaction bits cleared. Consumers of the real topic never see it.
2. END_TRANSACTION commit (8): the half message is read back by its commit log offset, stored
   again in its real queue (sysFlag COMMIT, without TRAN_MSG / REAL_TOPIC / REAL_QID), then an
   op record is appended to ``RMQ_SYS_TRANS_OP_HALF_TOPIC`` queue 0. Rollback (12) appends only
   the op record; unknown (0) does nothing.
3. The check-back service (``transaction_check.py``) asks a producer of the group about half
   messages that stay unsettled, re-appending each one it checks (so its scan moves on).

Identity. A transaction is named by its *origin*: the half-queue offset of its first copy.
A re-appended copy carries the origin in ``TRAN_PREPARED_QUEUE_OFFSET`` (RocketMQ's name), and
every op record names the origin, so an END_TRANSACTION for any copy settles the transaction
once; a duplicate or late one (or one after the check-max discard) is ignored.

State kept in memory (bounded by the window the check scan has not passed yet):

- ``half_offset``: the scan position in the half queue. Every copy below it has been scanned:
  the transaction was settled then, discarded, or carried forward as a new copy at or after it.
  Durable as the consumer offset of group ``CID_RMQ_SYS_TRANS`` on the half queue.
- ``live``: origin -> latest copy, for transactions carried forward (re-appended).
- ``settled``: origin -> its op record, for settled transactions that still have a copy at or
  after ``half_offset``; dropped when the scan passes that copy.
- So a transaction is final iff its origin is in ``settled``, or the copy named is below
  ``half_offset`` and the origin is not ``live``.

On start the state is rebuilt from the logs: ``half_offset`` and ``op_offset`` (the first op
record still needed, durable as the same group's offset on the op queue) are read from the
consumer offsets, the half window is read to find ``live`` and the origins in it, and the op log
from ``op_offset`` fills ``settled`` for those origins.

A commit stores the real message before its op record; a crash between the two would let the
check-back commit it again, so after a restart a commit of a transaction that was in flight
first looks the real message up in the key index (by UNIQ_KEY) and only writes the op record
if it is already there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.rocket.message import (
    PROPERTY_PRODUCER_GROUP,
    PROPERTY_REAL_QUEUE_ID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_TRANSACTION_PREPARED,
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    SYSFLAG_TRANSACTION_COMMIT,
    SYSFLAG_TRANSACTION_MASK,
    Message,
    decode_one_stored,
    encode_stored,
)
from adapters.rocket.remoting import Connection, RemotingCommand, ResponseCode
from adapters.rocket.remoting.command import decode_properties, encode_properties
from logstore import Log, LogFailedError
from logstore.batch import build_opaque_batch

from .config import SYNC_MASTER
from .consumers import BadRequest, int_field
from .delay import ScheduleError
from .keyindex import index_keys
from .queues import encode_commitlog_offset
from .reader import TagFilter, read_messages, read_one
from .schedule import TimerFlowControl

if TYPE_CHECKING:
    from .broker import Broker
    from .send import SendHeader

log = logging.getLogger(__name__)

HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
OP_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
CHECK_MAX_TOPIC = "TRANS_CHECK_MAX_TIME_TOPIC"
CHECK_GROUP = "CID_RMQ_SYS_TRANS"
PROPERTY_CHECK_TIMES = "TRANSACTION_CHECK_TIMES"
PROPERTY_CHECK_IMMUNITY_S = "CHECK_IMMUNITY_TIME_IN_SECONDS"
PROPERTY_ORIGIN = "TRAN_PREPARED_QUEUE_OFFSET"
PROPERTY_OP_STATE = "TRAN_OP_STATE"  # on op records: commit, rollback or discard
OP_TAG = "d"  # RocketMQ's op tag (TransactionalMessageUtil.REMOVETAG)
PREPARED_MARK = f"{PROPERTY_TRANSACTION_PREPARED}\x01true"

# END_TRANSACTION commitOrRollback values (MessageSysFlag transaction types).
TRANSACTION_NOT_TYPE = 0
TRANSACTION_COMMIT_TYPE = 8
TRANSACTION_ROLLBACK_TYPE = 12
OP_COMMIT, OP_ROLLBACK, OP_DISCARD = "commit", "rollback", "discard"
_OP_OF_TYPE = {TRANSACTION_COMMIT_TYPE: OP_COMMIT, TRANSACTION_ROLLBACK_TYPE: OP_ROLLBACK}
READ_CHUNK = 256
READ_CHUNK_BYTES = 4 * 1024 * 1024
KEY_LOOKUP_MAX = 64
_CLEARED_ON_COMMIT = (PROPERTY_REAL_TOPIC, PROPERTY_REAL_QUEUE_ID, PROPERTY_TRANSACTION_PREPARED, PROPERTY_ORIGIN)


def is_prepared(properties: str) -> bool:
    """Whether an encoded properties string says TRAN_MSG=true (cheap: no decode)."""
    return PREPARED_MARK in properties


def half_header(header: SendHeader) -> SendHeader | None:
    """The header that stores a transactional SEND (not a batch: the send path refuses
    transactional messages in one, as RocketMQ's client does) as a half message, or None for
    a plain send."""
    if not is_prepared(header.properties):
        return None
    props = decode_properties(header.properties)
    if not props.get(PROPERTY_PRODUCER_GROUP):
        raise BadRequest(f"a transactional message needs the {PROPERTY_PRODUCER_GROUP} property")
    props[PROPERTY_REAL_TOPIC] = header.topic
    props[PROPERTY_REAL_QUEUE_ID] = str(header.queue_id)
    return dataclasses.replace(
        header, topic=HALF_TOPIC, queue_id=0, properties=encode_properties(props),
        sys_flag=header.sys_flag & ~SYSFLAG_TRANSACTION_MASK,
    )


def origin_of(msg: Message) -> int:
    """The origin (first copy's half-queue offset) of a half message copy."""
    raw = msg.properties.get(PROPERTY_ORIGIN)
    return int(raw) if raw and raw.isdigit() else msg.queue_offset


@dataclass
class Settled:
    op_offset: int  # of its op record (a lower bound while that record is being written)
    state: str


class TransactionState:
    """What the op log and the check scan say, for the window not yet scanned."""

    def __init__(self, half_offset: int) -> None:
        self.half_offset = half_offset
        self.settled: dict[int, Settled] = {}
        self.live: dict[int, int] = {}
        self.suspects: set[int] = set()  # origins in flight at the last start (see module doc)

    def is_final(self, origin: int, copy_offset: int) -> bool:
        if origin in self.settled:
            return True
        return copy_offset < self.half_offset and origin not in self.live

    def latest_copy(self, origin: int) -> int:
        return self.live.get(origin, origin)

    def passed(self, origin: int, copy_offset: int) -> None:
        """The scan passed ``copy_offset``: forget a settled origin whose last copy it was."""
        if self.latest_copy(origin) == copy_offset:
            self.settled.pop(origin, None)
            self.live.pop(origin, None)
            self.suspects.discard(origin)
        self.half_offset = max(self.half_offset, copy_offset + 1)

    def needed_op_offset(self, op_end: int) -> int:
        """The first op record still needed: the oldest of those in ``settled``."""
        return min((e.op_offset for e in self.settled.values()), default=op_end)


class TransactionService:
    """Half messages, END_TRANSACTION and the state both share with the check service."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.state = TransactionState(0)
        self.committed = 0
        self.rolled_back = 0
        self.ignored = 0

    # -- logs --------------------------------------------------------------------------------------

    async def half_log(self) -> tuple[Log, int]:
        return await self.broker.queues.get_or_create(HALF_TOPIC, 0)

    async def op_log(self) -> tuple[Log, int]:
        return await self.broker.queues.get_or_create(OP_TOPIC, 0)

    # -- start: rebuild from the logs ----------------------------------------------------------------

    async def open(self) -> None:
        half, _ = await self.half_log()
        ops, _ = await self.op_log()
        offsets = self.broker.offsets
        half_offset = max(offsets.query(CHECK_GROUP, HALF_TOPIC, 0) or 0, half.log_start_offset)
        op_offset = max(offsets.query(CHECK_GROUP, OP_TOPIC, 0) or 0, ops.log_start_offset)
        state = TransactionState(half_offset)
        window: set[int] = set()
        for msg in iter_log(half, half_offset):
            origin = origin_of(msg)
            window.add(origin)
            if origin != msg.queue_offset:
                state.live[origin] = msg.queue_offset
        for msg in iter_log(ops, op_offset):
            origin = int(msg.body) if msg.body.isdigit() else -1
            if origin in window:
                state.settled[origin] = Settled(msg.queue_offset, msg.properties.get(PROPERTY_OP_STATE, OP_COMMIT))
        state.suspects = window - set(state.settled)
        self.state = state
        if window:
            log.info("transactions: %d half messages in the unscanned window, %d settled, %d carried forward",
                     len(window), len(state.settled), len(state.live))

    # -- END_TRANSACTION -------------------------------------------------------------------------------

    async def end_transaction(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        kind = int_field(ext, "commitOrRollback")
        group = ext.get("producerGroup") or ""
        table_offset = int_field(ext, "tranStateTableOffset")
        phys = int_field(ext, "commitLogOffset")
        from_check = (ext.get("fromTransactionCheck") or "false").lower() == "true"
        if kind not in (TRANSACTION_NOT_TYPE, TRANSACTION_COMMIT_TYPE, TRANSACTION_ROLLBACK_TYPE):
            raise BadRequest(f"commitOrRollback must be 0, 8 or 12, not {kind}")
        msg = await self._find_half(phys)
        if msg.properties.get(PROPERTY_PRODUCER_GROUP) != group:
            raise BadRequest(f"the producer group wrong: {group!r} is not the half message's "
                             f"{msg.properties.get(PROPERTY_PRODUCER_GROUP)!r}")
        if msg.queue_offset != table_offset:
            raise BadRequest(f"the transaction state table offset wrong: {table_offset} is not "
                             f"{msg.queue_offset}")
        if kind == TRANSACTION_NOT_TYPE:
            log.debug("END_TRANSACTION unknown for %d (check=%s): nothing to do", phys, from_check)
            return cmd.make_response(ResponseCode.SUCCESS, "transaction state unknown: left for the check-back")
        origin = origin_of(msg)
        ops, _ = await self.op_log()
        if self.state.is_final(origin, msg.queue_offset):
            self.ignored += 1
            log.info("END_TRANSACTION %s for half message %d (origin %d, check=%s) ignored: already settled",
                     _OP_OF_TYPE[kind], msg.queue_offset, origin, from_check)
            return cmd.make_response(ResponseCode.SUCCESS, "the transaction is already settled: ignored")
        real = self._commit_copy(msg, origin, phys) if kind == TRANSACTION_COMMIT_TYPE else None
        # Claimed with no await since the check: a concurrent duplicate sees it settled.
        self.state.settled[origin] = Settled(ops.assigned_offset, _OP_OF_TYPE[kind])
        try:
            await self._settle(real, origin, _OP_OF_TYPE[kind])
        except LogFailedError as exc:
            self.state.settled.pop(origin, None)
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, f"the store failed: {exc}")
        if kind == TRANSACTION_COMMIT_TYPE:
            self.committed += 1
        else:
            self.rolled_back += 1
        return cmd.make_response(ResponseCode.SUCCESS)

    async def _settle(self, real: tuple[Message, str, int, dict[str, str]] | None, origin: int, state: str) -> None:
        """Store the committed message (if any), then the op record. Both appends are started
        in that order without waiting in between, so under SYNC_FLUSH they share one group-
        commit round: the journal keeps their order, and a failed fsync fail-stops every sync
        log, so the op record never survives without its message. An async append is written
        before the next one starts, and the op record is not written if it failed.
        On a SYNC_MASTER the op record waits until the slaves have the message: replicated
        first, it would settle a transaction whose message a failover loses."""
        if real is not None and self.broker.config.broker_role == SYNC_MASTER:
            try:
                await self.put_copy(*real)
            except LogFailedError:
                raise
            except Exception as exc:
                raise LogFailedError(str(exc)) from exc
            await self.write_op(origin, state)
            return
        put = asyncio.ensure_future(self.put_copy(*real)) if real is not None else None

        async def op_after_put() -> None:
            if put is not None and put.done() and (put.cancelled() or put.exception() is not None):
                raise LogFailedError("storing the committed message failed; no op record written")
            await self.write_op(origin, state)

        tasks = [t for t in (put, asyncio.ensure_future(op_after_put())) if t is not None]
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome if isinstance(outcome, LogFailedError) else LogFailedError(str(outcome))

    async def _find_half(self, phys: int) -> Message:
        found = self.broker.queues.by_commitlog_offset(phys)
        if found is None or found[0] != HALF_TOPIC or found[1] != 0:
            raise BadRequest(f"find prepared transaction message failed: commit log offset {phys} "
                             "is not a half message")
        raw = read_one(found[2], found[3])
        if raw is None:
            raise BadRequest(f"find prepared transaction message failed: no half message at offset {found[3]}")
        return decode_one_stored(raw)

    def _commit_copy(self, half: Message, origin: int, phys: int) -> tuple[Message, str, int, dict[str, str]] | None:
        """(message, topic, queue id, properties) to store for a commit; None when a restart
        found it stored already. Its queue log must exist (so storing it never waits)."""
        topic = half.properties.get(PROPERTY_REAL_TOPIC, "")
        qid_text = half.properties.get(PROPERTY_REAL_QUEUE_ID, "")
        qid = int(qid_text) if qid_text.isdigit() else -1
        if self.broker.topics.get(topic) is None or self.broker.queues.get(topic, qid) is None:
            raise BadRequest(f"the real queue {topic!r}:{qid_text!r} of the half message does not exist")
        props = {k: v for k, v in half.properties.items() if k not in _CLEARED_ON_COMMIT}
        if origin in self.state.suspects and self._already_committed(topic, qid, props):
            log.info("transaction %d was committed before the restart; writing its op record only", origin)
            return None
        real = dataclasses.replace(
            half, sys_flag=(half.sys_flag & ~SYSFLAG_TRANSACTION_MASK) | SYSFLAG_TRANSACTION_COMMIT,
            prepared_transaction_offset=phys,
        )
        # A committed message with a delay waits for its time in the scheduler's queues, as a
        # plain send would. A delay property that is bad, or a timer that is full, cannot
        # refuse a commit any more: the message is delivered at once (logged), not lost.
        timed = dict(props)
        try:
            routed = self.broker.schedule.route(topic, qid, timed, real.sys_flag)
        except (ScheduleError, TimerFlowControl) as exc:
            log.warning("transaction %d: delivering now, not scheduled: %s", origin, exc)
            routed = None
        if routed is not None and self.broker.queues.get(*routed) is not None:
            return real, routed[0], routed[1], timed
        return real, topic, qid, props

    def _already_committed(self, topic: str, qid: int, props: dict[str, str]) -> bool:
        uniq = props.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)
        if not uniq:
            return False
        for phys in self.broker.key_index.lookup(f"{topic}#{uniq}", 0, 2**62, KEY_LOOKUP_MAX):
            found = self.broker.queues.by_commitlog_offset(phys)
            if found is None or found[:2] != (topic, qid):
                continue
            raw = read_one(found[2], found[3])
            if raw is None:
                continue
            stored = decode_one_stored(raw)  # an index hit is a candidate: check the key
            if (stored.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) == uniq
                    and stored.sys_flag & SYSFLAG_TRANSACTION_MASK == SYSFLAG_TRANSACTION_COMMIT):
                return True
        return False

    # -- appends -----------------------------------------------------------------------------------------

    async def put_copy(self, msg: Message, topic: str, queue_id: int, properties: dict[str, str]) -> Message:
        """Store a copy of ``msg`` as a new message of (topic, queue_id); returns the copy as
        stored. The offsets are read and the append started without an await in between."""
        broker = self.broker
        qlog, log_id = await broker.queues.get_or_create(topic, queue_id)
        now = broker.store.clock.now_ms()
        offset = qlog.assigned_offset
        phys = encode_commitlog_offset(log_id, offset)
        copy = dataclasses.replace(
            msg, topic=topic, queue_id=queue_id, queue_offset=offset, commitlog_offset=phys,
            store_timestamp=now, store_host=broker.config.broker_addr, properties=properties,
        )
        raw = encode_stored(copy)
        broker.key_index.add(index_keys(topic, properties), phys, now)
        broker.key_index.mark(log_id, offset + 1)
        await qlog.append(build_opaque_batch(raw, 1, now, now))
        await broker.ha.wait_slaves_inner(qlog.name, offset + 1)
        copy.store_size = len(raw)
        return copy

    async def write_op(self, origin: int, state: str) -> None:
        """The durable record that ``origin`` is settled (or discarded)."""
        props = {PROPERTY_TAGS: OP_TAG, PROPERTY_OP_STATE: state}
        op = Message(OP_TOPIC, str(origin).encode(), born_host=self.broker.config.broker_addr,
                     born_timestamp=self.broker.store.clock.now_ms())
        stored = await self.put_copy(op, OP_TOPIC, 0, props)
        entry = self.state.settled.get(origin)
        if entry is not None:
            entry.op_offset = stored.queue_offset


def iter_log(qlog: Log, start: int) -> Iterator[Message]:
    """Every message of a queue log from ``start`` to its committed end (read in chunks)."""
    offset = max(start, qlog.log_start_offset)
    while offset < qlog.committed_offset:
        got = read_messages(qlog, offset, READ_CHUNK, READ_CHUNK_BYTES, TagFilter())
        if not got.count:
            break
        yield from decode_parts(got.parts)
        offset = got.next_offset


def decode_parts(parts: list[memoryview]) -> list[Message]:
    """The messages of a pull slice's parts."""
    out = []
    for part in parts:
        pos = 0
        while pos < len(part):
            msg = decode_one_stored(part, pos)
            out.append(msg)
            pos += msg.store_size
    return out
