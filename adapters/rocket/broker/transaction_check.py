"""The transaction check-back service (RocketMQ's TransactionalMessageCheckService).

Every ``transactionCheckInterval`` ms one round scans the half queue from the scan position
(``TransactionState.half_offset``) up to where the queue ended when the round began:

- a copy of a settled transaction, or an older copy of one carried forward: passed;
- a half message younger than ``transactionTimeOut`` (or its ``CHECK_IMMUNITY_TIME_IN_SECONDS``,
  if longer): without that property the round stops (later ones are younger still); with it,
  the message is re-appended unchanged so the scan can move on;
- one checked ``transactionCheckMax`` times already: copied to ``TRANS_CHECK_MAX_TIME_TOPIC``
  and recorded as discarded in the op log (a late END_TRANSACTION is then ignored);
- otherwise: re-appended with ``TRANSACTION_CHECK_TIMES`` + 1 (the durable check counter, as
  RocketMQ keeps it) and CHECK_TRANSACTION_STATE (39, oneway) goes to a live producer of its
  group, naming the new copy. Its answer is an END_TRANSACTION with fromTransactionCheck=true.

Each chunk's progress is saved as consumer offsets of ``CID_RMQ_SYS_TRANS`` on the half and op
queues. A round takes at most ``ROUND_TIME_MAX_S`` (RocketMQ's 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING

from adapters.rocket.message import (
    PROPERTY_PRODUCER_GROUP,
    PROPERTY_REAL_QUEUE_ID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TRANSACTION_ID,
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    Message,
    encode_offset_msg_id,
    encode_stored,
)
from adapters.rocket.remoting import Connection, RemotingCommand, RequestCode
from logstore import LogFailedError

from .reader import TagFilter, read_messages
from .topics import PERM_READ, PERM_WRITE, TopicConfig
from .transaction import (
    CHECK_GROUP,
    CHECK_MAX_TOPIC,
    HALF_TOPIC,
    OP_DISCARD,
    OP_TOPIC,
    PROPERTY_CHECK_IMMUNITY_S,
    PROPERTY_CHECK_TIMES,
    PROPERTY_ORIGIN,
    READ_CHUNK,
    READ_CHUNK_BYTES,
    Settled,
    TransactionService,
    decode_parts,
    origin_of,
)

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

ROUND_TIME_MAX_S = 60.0
SEND_CHECK_TIMEOUT_S = 3.0


class TransactionChecker:
    def __init__(self, broker: Broker, service: TransactionService) -> None:
        self.broker = broker
        self.service = service
        self.rounds = 0
        self.checks_sent = 0
        self.discarded = 0
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="transaction-check")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        with contextlib.suppress(LogFailedError, RuntimeError):
            await self.save_progress(durable=False)

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.broker.config.transaction_check_interval / 1000)
            try:
                await self.check_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("transaction check round failed")

    # -- one round ------------------------------------------------------------------------------

    async def check_round(self) -> None:
        state = self.service.state
        half, _ = await self.service.half_log()
        end = half.committed_offset
        deadline = time.monotonic() + ROUND_TIME_MAX_S
        now_ms = self.broker.store.clock.now_ms()
        self.rounds += 1
        if state.half_offset < half.log_start_offset:  # retention removed unscanned ones
            log.warning("half messages below %d expired before they were settled", half.log_start_offset)
            state.half_offset = half.log_start_offset
        stopped = False
        while not stopped and state.half_offset < end and time.monotonic() < deadline:
            got = read_messages(half, state.half_offset, READ_CHUNK, READ_CHUNK_BYTES, TagFilter())
            if not got.count:
                break
            for msg in decode_parts(got.parts):
                if msg.queue_offset >= end or not await self._visit(msg, now_ms):
                    stopped = True
                    break
            await self.save_progress(durable=False)
        await self.save_progress(durable=True)

    async def _visit(self, msg: Message, now_ms: int) -> bool:
        """Handle one half message at the scan position; False stops the round."""
        state = self.service.state
        cfg = self.broker.config
        origin = origin_of(msg)
        here = msg.queue_offset
        if origin in state.settled or state.latest_copy(origin) != here:
            state.passed(origin, here)
            return True
        immunity_raw = msg.properties.get(PROPERTY_CHECK_IMMUNITY_S, "")
        immunity_ms = cfg.transaction_time_out
        if immunity_raw.isdigit():
            immunity_ms = max(immunity_ms, int(immunity_raw) * 1000)
        if now_ms - msg.born_timestamp < immunity_ms:
            if not immunity_raw.isdigit():
                return False
            await self._carry(msg, origin, int(msg.properties.get(PROPERTY_CHECK_TIMES, "0") or 0))
            state.passed(origin, here)
            return True
        checks = int(msg.properties.get(PROPERTY_CHECK_TIMES, "0") or 0)
        if checks >= cfg.transaction_check_max:
            await self._discard(msg, origin)
        else:
            copy = await self._carry(msg, origin, checks + 1)
            if origin not in state.settled:
                self._send_check(copy)
        state.passed(origin, here)
        return True

    async def _carry(self, msg: Message, origin: int, checks: int) -> Message:
        """Re-append ``msg`` at the end of the half queue as the transaction's latest copy."""
        props = dict(msg.properties)
        props[PROPERTY_CHECK_TIMES] = str(checks)
        props[PROPERTY_ORIGIN] = str(origin)
        copy = await self.service.put_copy(msg, HALF_TOPIC, 0, props)
        self.service.state.live[origin] = copy.queue_offset
        return copy

    async def _discard(self, msg: Message, origin: int) -> None:
        state = self.service.state
        ops, _ = await self.service.op_log()
        state.settled[origin] = Settled(ops.assigned_offset, OP_DISCARD)  # claimed before any await
        try:
            if self.broker.topics.get(CHECK_MAX_TOPIC) is None:
                await self.broker.create_topic(TopicConfig(CHECK_MAX_TOPIC, 1, 1, PERM_READ | PERM_WRITE))
            await self.service.put_copy(msg, CHECK_MAX_TOPIC, 0, dict(msg.properties))
            await self.service.write_op(origin, OP_DISCARD)
        except BaseException:
            state.settled.pop(origin, None)
            raise
        self.discarded += 1
        log.warning("half message %d (origin %d, group %s) was checked %s times without an answer; "
                    "moved to %s", msg.queue_offset, origin, msg.properties.get(PROPERTY_PRODUCER_GROUP),
                    msg.properties.get(PROPERTY_CHECK_TIMES), CHECK_MAX_TOPIC)

    # -- CHECK_TRANSACTION_STATE ------------------------------------------------------------------

    def _send_check(self, copy: Message) -> None:
        group = copy.properties.get(PROPERTY_PRODUCER_GROUP, "")
        conns = [c for c, _t in self.broker.clients.producers.get(group, {}).values() if not c.closed]
        if not conns:
            log.info("no live producer of group %s to check half message %d", group, copy.queue_offset)
            return
        # The body is the message under its real topic and queue, as RocketMQ sends it.
        real = dataclasses.replace(copy, topic=copy.properties.get(PROPERTY_REAL_TOPIC, copy.topic),
                                   queue_id=int(copy.properties.get(PROPERTY_REAL_QUEUE_ID, "0") or 0))
        uniq = copy.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, "")
        addr = self.broker.config.broker_addr
        cmd = RemotingCommand.request(RequestCode.CHECK_TRANSACTION_STATE, {
            "topic": real.topic, "tranStateTableOffset": copy.queue_offset,
            "commitLogOffset": copy.commitlog_offset, "msgId": uniq,
            "transactionId": copy.properties.get(PROPERTY_TRANSACTION_ID) or uniq,
            "offsetMsgId": encode_offset_msg_id(addr, copy.commitlog_offset),
            "bname": self.broker.config.broker_name,
        }, encode_stored(real), oneway=True)
        task = asyncio.get_running_loop().create_task(self._send(random.choice(conns), cmd))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        self.checks_sent += 1

    @staticmethod
    async def _send(conn: Connection, cmd: RemotingCommand) -> None:
        try:
            async with asyncio.timeout(SEND_CHECK_TIMEOUT_S):
                await conn.invoke_oneway(cmd)
        except Exception as exc:  # the next round asks again
            log.info("CHECK_TRANSACTION_STATE to %s failed: %s", conn.remote_addr, exc)

    # -- progress ----------------------------------------------------------------------------------

    async def save_progress(self, *, durable: bool) -> None:
        state = self.service.state
        ops, _ = await self.service.op_log()
        op_offset = state.needed_op_offset(ops.assigned_offset)
        offsets = self.broker.offsets
        # Both changed before any await, so one saved snapshot holds both.
        await offsets.commit(CHECK_GROUP, HALF_TOPIC, 0, state.half_offset, durable=False)
        await offsets.commit(CHECK_GROUP, OP_TOPIC, 0, op_offset, durable=False)
        if durable:
            await offsets.wait_saved()

