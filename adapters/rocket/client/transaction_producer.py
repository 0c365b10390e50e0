"""TransactionProducer: RocketMQ's TransactionMQProducer on asyncio.

``send_message_in_transaction(msg, arg)`` runs the two phases of a transactional send:

1. the message goes out as a half message (``TRAN_MSG=true``, ``PGROUP``, sysFlag PREPARED);
   the broker keeps it out of its topic;
2. if the broker stored it, the listener's ``execute_local_transaction(msg, arg)`` runs (a send
   that fails raises; one stored without SEND_OK rolls back without running it);
3. END_TRANSACTION (oneway) tells the broker COMMIT_MESSAGE, ROLLBACK_MESSAGE or UNKNOW.

If the answer is UNKNOW or never arrives, the broker asks later with CHECK_TRANSACTION_STATE;
the listener's ``check_local_transaction(msg)`` answers and END_TRANSACTION goes back with
``fromTransactionCheck=true``. Listener methods may be ``async``; plain functions run in a
worker thread so a slow local transaction never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..message import (
    PROPERTY_DELAY_TIME_LEVEL,
    PROPERTY_PRODUCER_GROUP,
    PROPERTY_TRANSACTION_PREPARED,
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    SYSFLAG_TRANSACTION_PREPARED,
    Message,
    decode_offset_msg_id,
)
from ..remoting import Connection, RemotingCommand, RequestCode
from ._msgutil import check_message
from .common import SendResult, SendStatus
from .errors import MQClientError
from .producer import Producer

log = logging.getLogger(__name__)

# END_TRANSACTION commitOrRollback values (MessageSysFlag).
_END_CODES = {"COMMIT_MESSAGE": 8, "ROLLBACK_MESSAGE": 12, "UNKNOW": 0}


class LocalTransactionState(enum.Enum):
    COMMIT_MESSAGE = "COMMIT_MESSAGE"
    ROLLBACK_MESSAGE = "ROLLBACK_MESSAGE"
    UNKNOW = "UNKNOW"  # RocketMQ's spelling

    @property
    def end_code(self) -> int:
        return _END_CODES[self.value]


StateResult = LocalTransactionState | Awaitable[LocalTransactionState]


class TransactionListener(ABC):
    """What a TransactionProducer calls: run the local transaction, and answer a check."""

    @abstractmethod
    def execute_local_transaction(self, msg: Message, arg: Any) -> StateResult:
        ...

    @abstractmethod
    def check_local_transaction(self, msg: Message) -> StateResult:
        ...


@dataclass(frozen=True)
class TransactionSendResult(SendResult):
    local_transaction_state: LocalTransactionState = LocalTransactionState.UNKNOW
    transaction_id: str = ""


class TransactionProducer(Producer):
    def __init__(self, producer_group: str = "DEFAULT_PRODUCER", *,
                 transaction_listener: TransactionListener | None = None, **options: Any) -> None:
        super().__init__(producer_group, **options)
        self.transaction_listener = transaction_listener
        self._checks: set[asyncio.Task[None]] = set()
        self._heartbeated: set[str] = set()
        self.checks_answered = 0

    def set_transaction_listener(self, listener: TransactionListener) -> None:
        self.transaction_listener = listener

    async def shutdown(self) -> None:
        if self._checks:
            await asyncio.gather(*self._checks, return_exceptions=True)
        await super().shutdown()

    def _wire_body(self, msg: Message) -> tuple[bytes, int]:
        body, sys_flag = super()._wire_body(msg)
        if msg.properties.get(PROPERTY_TRANSACTION_PREPARED) == "true":
            sys_flag |= SYSFLAG_TRANSACTION_PREPARED
        return body, sys_flag

    # -- the transactional send -----------------------------------------------------------------

    async def send_message_in_transaction(self, msg: Message, arg: Any = None) -> TransactionSendResult:
        listener = self.transaction_listener
        if listener is None:
            raise MQClientError("the TransactionListener is null: set one before sending in a transaction")
        check_message(msg, self.max_message_size)
        msg.properties.pop(PROPERTY_DELAY_TIME_LEVEL, None)  # a transactional message is never delayed
        msg.properties[PROPERTY_TRANSACTION_PREPARED] = "true"
        msg.properties[PROPERTY_PRODUCER_GROUP] = self.group
        result = await self.send(msg)
        transaction_id = msg.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, result.msg_id)
        if result.send_status == SendStatus.SEND_OK:
            await self._heartbeat_once(result)
            try:
                state = await _call(listener.execute_local_transaction, msg, arg)
            except Exception:
                log.exception("execute_local_transaction of %s failed; the broker will check back", transaction_id)
                state = LocalTransactionState.UNKNOW
        else:
            state = LocalTransactionState.ROLLBACK_MESSAGE
        try:
            await self._end_transaction(result, state, transaction_id)
        except Exception as exc:
            log.warning("local transaction %s is %s, but END_TRANSACTION failed (%s); the broker's "
                        "check-back settles it", transaction_id, state.value, exc)
        return TransactionSendResult(
            send_status=result.send_status, msg_id=result.msg_id, offset_msg_id=result.offset_msg_id,
            message_queue=result.message_queue, queue_offset=result.queue_offset, region_id=result.region_id,
            local_transaction_state=state, transaction_id=transaction_id,
        )

    async def _heartbeat_once(self, result: SendResult) -> None:
        """Make sure the broker that holds the half message knows this producer group at once
        (it sends its checks to a producer it knows from heartbeats)."""
        addr = await self.instance.find_master_addr(result.message_queue)
        if addr in self._heartbeated:
            return
        try:
            await self.instance.api.heartbeat(addr, self.instance.heartbeat_body())
            self._heartbeated.add(addr)
        except Exception as exc:
            log.info("heartbeat to %s failed: %s", addr, exc)

    async def _end_transaction(self, result: SendResult, state: LocalTransactionState, transaction_id: str) -> None:
        _host, commit_log_offset = decode_offset_msg_id(result.offset_msg_id)
        addr = await self.instance.find_master_addr(result.message_queue)
        cmd = RemotingCommand.request(RequestCode.END_TRANSACTION, {
            "producerGroup": self.group, "tranStateTableOffset": result.queue_offset,
            "commitLogOffset": commit_log_offset, "commitOrRollback": state.end_code,
            "fromTransactionCheck": False, "msgId": result.msg_id, "transactionId": transaction_id,
        }, oneway=True)
        await self.instance.remoting.invoke_oneway(addr, cmd)

    # -- checks from the broker -----------------------------------------------------------------

    def check_transaction_state(self, conn: Connection, msg: Message, header: Mapping[str, str]) -> None:
        """CHECK_TRANSACTION_STATE from a broker (called by the client instance)."""
        task = asyncio.get_running_loop().create_task(self._answer_check(conn, msg, dict(header)))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _answer_check(self, conn: Connection, msg: Message, header: dict[str, str]) -> None:
        uniq = msg.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX) or header.get("msgId", "")
        listener = self.transaction_listener
        if listener is None:
            log.warning("CHECK_TRANSACTION_STATE for %s but no TransactionListener is set", uniq)
            return
        try:
            state = await _call(listener.check_local_transaction, msg)
        except Exception:
            log.exception("check_local_transaction of %s failed; answering UNKNOW", uniq)
            state = LocalTransactionState.UNKNOW
        cmd = RemotingCommand.request(RequestCode.END_TRANSACTION, {
            "producerGroup": self.group, "tranStateTableOffset": header.get("tranStateTableOffset"),
            "commitLogOffset": header.get("commitLogOffset"), "commitOrRollback": state.end_code,
            "fromTransactionCheck": True, "msgId": uniq,
            "transactionId": header.get("transactionId") or uniq,
        }, oneway=True)
        try:
            await conn.invoke_oneway(cmd)
            self.checks_answered += 1
        except Exception as exc:
            log.info("answer to the check of %s failed: %s (the broker asks again)", uniq, exc)


async def _call(fn: Callable[..., Any], *args: Any) -> LocalTransactionState:
    if inspect.iscoroutinefunction(fn):
        result = await fn(*args)
    else:
        result = await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, LocalTransactionState):
        return result
    if isinstance(result, str) and result in LocalTransactionState.__members__:
        return LocalTransactionState[result]
    log.warning("a transaction listener returned %r; taking it as UNKNOW", result)
    return LocalTransactionState.UNKNOW
