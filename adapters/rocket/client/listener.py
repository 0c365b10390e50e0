"""Message listeners and the context they get, as in RocketMQ's MessageListenerConcurrently and
MessageListenerOrderly.

A listener is an object with ``consume_message(msgs, context)`` or a plain function of the same
shape; it may be ``async``. Synchronous listeners run on a thread pool of ``consume_thread_max``
threads so a slow one never blocks the event loop; async ones run on the loop, at most
``consume_thread_max`` at a time.
"""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ..message import Message
from .common import ConsumeConcurrentlyStatus, ConsumeOrderlyStatus, MessageQueue

ACK_ALL = 2**31 - 1


@dataclass
class ConsumeConcurrentlyContext:
    message_queue: MessageQueue
    # 0: the broker picks the next delay level from the reconsume count; -1: straight to DLQ.
    delay_level_when_next_consume: int = 0
    # On CONSUME_SUCCESS, messages after this index are still retried (default: none are).
    ack_index: int = ACK_ALL


class MessageListenerConcurrently(Protocol):
    def consume_message(
        self, msgs: list[Message], context: ConsumeConcurrentlyContext
    ) -> ConsumeConcurrentlyStatus | Awaitable[ConsumeConcurrentlyStatus]: ...


@dataclass
class ConsumeOrderlyContext:
    message_queue: MessageQueue
    # True: SUCCESS commits the batch's offset. False: only COMMIT does (SUCCESS holds it).
    auto_commit: bool = True
    # How long SUSPEND_CURRENT_QUEUE_A_MOMENT blocks the queue; <= 0: the consumer's
    # ``suspend_current_queue_time_millis`` (1000 ms).
    suspend_current_queue_time_millis: int = -1


class MessageListenerOrderly(ABC):
    """Subclass this (RocketMQ's interface of the same name) to consume each queue in order:
    one batch of one queue at a time, only while this client holds the queue's broker lock.
    A plain function is orderly when registered with ``orderly=True``."""

    @abstractmethod
    def consume_message(
        self, msgs: list[Message], context: ConsumeOrderlyContext
    ) -> ConsumeOrderlyStatus | Awaitable[ConsumeOrderlyStatus]: ...


ListenerFunction: TypeAlias = Callable[
    [list[Message], ConsumeConcurrentlyContext],
    "ConsumeConcurrentlyStatus | Awaitable[ConsumeConcurrentlyStatus] | None",
]
OrderlyListenerFunction: TypeAlias = Callable[
    [list[Message], ConsumeOrderlyContext],
    "ConsumeOrderlyStatus | Awaitable[ConsumeOrderlyStatus] | None",
]
Listener: TypeAlias = (
    "MessageListenerConcurrently | MessageListenerOrderly | ListenerFunction | OrderlyListenerFunction"
)


def listener_function(listener: Any) -> Callable[..., Any]:
    fn = getattr(listener, "consume_message", None)
    if fn is None:
        if not callable(listener):
            raise TypeError(f"{listener!r} has no consume_message and is not callable")
        fn = listener
    return fn  # type: ignore[no-any-return]


async def call_listener(
    fn: Callable[..., Any],
    msgs: Sequence[Message],
    context: ConsumeConcurrentlyContext,
    executor: Executor,
) -> ConsumeConcurrentlyStatus:
    """Run the listener; anything but CONSUME_SUCCESS (an exception, None) means retry later."""
    if inspect.iscoroutinefunction(fn):
        result = await fn(list(msgs), context)
    else:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, fn, list(msgs), context)
        if inspect.isawaitable(result):
            result = await result
    return concurrently_status(result)


def concurrently_status(result: object) -> ConsumeConcurrentlyStatus:
    """What a concurrent listener's answer means: anything but a status (or its name) is
    RECONSUME_LATER."""
    if isinstance(result, ConsumeConcurrentlyStatus):
        return result
    if isinstance(result, str) and result in ConsumeConcurrentlyStatus.__members__:
        return ConsumeConcurrentlyStatus[result]
    return ConsumeConcurrentlyStatus.RECONSUME_LATER


async def call_orderly_listener(
    fn: Callable[..., Any],
    msgs: Sequence[Message],
    context: ConsumeOrderlyContext,
    executor: Executor,
) -> ConsumeOrderlyStatus:
    """Run an orderly listener; anything but a status (an exception, None) means SUSPEND."""
    if inspect.iscoroutinefunction(fn):
        result = await fn(list(msgs), context)
    else:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, fn, list(msgs), context)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, ConsumeOrderlyStatus):
        return result
    if isinstance(result, str) and result in ConsumeOrderlyStatus.__members__:
        return ConsumeOrderlyStatus[result]
    return ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT
