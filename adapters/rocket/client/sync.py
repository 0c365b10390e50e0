"""A small synchronous facade for code that is not async.

One daemon thread runs an event loop for every sync client in the process; each method sends a
coroutine there and waits for it. Listeners registered on a ``DefaultMQPushConsumer`` are plain
functions and run on the consumer's thread pool, never on the caller's thread.

``DefaultMQProducer.send`` with the default queue selection is the exception: once the topic's
route is cached, the send is written and its answer read on the caller's thread, over a
blocking connection of the producer's own (``Producer.send_blocking``, remoting/blocking.py),
with the same retries and timeout. A one-at-a-time sender then waits for the broker and not
for two thread switches and the loop's wake-ups (measured in the README's Numbers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from ..message import Message
from ..remoting.blocking import BlockingPool
from .common import MessageQueue, SendResult
from .listener import Listener
from .lite_pull_consumer import LitePullConsumer
from .producer import Producer, SendCallback
from .push_consumer import PushConsumer
from .selector import MessageQueueSelector
from .transaction_producer import TransactionListener, TransactionProducer, TransactionSendResult

T = TypeVar("T")


class _LoopThread:
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="rocketmq-client-loop", daemon=True
                )
                thread.start()
                cls._loop = loop
            return cls._loop


def run_sync(coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
    """Run ``coro`` on the client thread's loop and wait for its result."""
    loop = _LoopThread.loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a sync client method was called from the client's own loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout_s)


class DefaultMQProducer:
    """``DefaultMQProducer``: keyword arguments are Producer's (snake_case RocketMQ names)."""

    def __init__(self, producer_group: str = "DEFAULT_PRODUCER", **options: Any) -> None:
        self.impl = Producer(producer_group, **options)
        self._blocking = BlockingPool()

    def start(self) -> None:
        run_sync(self.impl.start())

    def shutdown(self) -> None:
        self._blocking.close()
        run_sync(self.impl.shutdown())

    def send(self, msg: Message, selector: MessageQueueSelector | Any = None, arg: Any = None, *,
             mq: MessageQueue | None = None, timeout_ms: int | None = None) -> SendResult:
        if selector is None and mq is None:
            result = self.impl.send_blocking(msg, self._blocking, timeout_ms=timeout_ms)
            if result is not None:
                return result
        return run_sync(self.impl.send(msg, selector, arg, mq=mq, timeout_ms=timeout_ms))

    def send_async(self, msg: Message, callback: SendCallback | None = None, *,
                   timeout_ms: int | None = None) -> concurrent.futures.Future[SendResult]:
        """Returns at once; the future (and ``callback``, on the client thread) get the result."""
        async def start() -> asyncio.Task[SendResult]:
            return self.impl.send_async(msg, callback, timeout_ms=timeout_ms)

        async def wait(task: asyncio.Task[SendResult]) -> SendResult:
            return await task

        task = run_sync(start())
        return asyncio.run_coroutine_threadsafe(wait(task), _LoopThread.loop())

    def send_oneway(self, msg: Message, selector: MessageQueueSelector | None = None,
                    arg: Any = None, *, mq: MessageQueue | None = None) -> None:
        run_sync(self.impl.send_oneway(msg, selector, arg, mq=mq))

    def send_batch(self, msgs: Sequence[Message], *, mq: MessageQueue | None = None,
                   timeout_ms: int | None = None) -> SendResult:
        return run_sync(self.impl.send_batch(msgs, mq=mq, timeout_ms=timeout_ms))

    def fetch_publish_message_queues(self, topic: str) -> list[MessageQueue]:
        return run_sync(self.impl.fetch_publish_message_queues(topic))


class TransactionMQProducer(DefaultMQProducer):
    """``TransactionMQProducer``: a DefaultMQProducer with ``send_message_in_transaction``.
    Plain-function listener methods run in a worker thread of the client's loop."""

    impl: TransactionProducer

    def __init__(self, producer_group: str = "DEFAULT_PRODUCER",
                 transaction_listener: TransactionListener | None = None, **options: Any) -> None:
        self.impl = TransactionProducer(producer_group, transaction_listener=transaction_listener, **options)
        self._blocking = BlockingPool()

    def set_transaction_listener(self, listener: TransactionListener) -> None:
        self.impl.set_transaction_listener(listener)

    def send_message_in_transaction(self, msg: Message, arg: Any = None) -> TransactionSendResult:
        return run_sync(self.impl.send_message_in_transaction(msg, arg))


class DefaultMQPushConsumer:
    def __init__(self, consumer_group: str, **options: Any) -> None:
        self.impl = PushConsumer(consumer_group, **options)

    def subscribe(self, topic: str, sub_expression: str = "*") -> None:
        self.impl.subscribe(topic, sub_expression)

    def register_message_listener(self, listener: Listener, *, orderly: bool | None = None) -> None:
        self.impl.register_message_listener(listener, orderly=orderly)

    def start(self) -> None:
        run_sync(self.impl.start())

    def shutdown(self) -> None:
        run_sync(self.impl.shutdown())


class DefaultLitePullConsumer:
    def __init__(self, consumer_group: str, **options: Any) -> None:
        self.impl = LitePullConsumer(consumer_group, **options)

    def subscribe(self, topic: str, sub_expression: str = "*") -> None:
        self.impl.subscribe(topic, sub_expression)

    def assign(self, mqs: Iterable[MessageQueue]) -> None:
        run_sync(self.impl.assign(mqs))

    def start(self) -> None:
        run_sync(self.impl.start())

    def shutdown(self) -> None:
        run_sync(self.impl.shutdown())

    def poll(self, timeout_ms: int | None = None) -> list[Message]:
        return run_sync(self.impl.poll(timeout_ms))

    def seek(self, mq: MessageQueue, offset: int) -> None:
        run_sync(self.impl.seek(mq, offset))

    def commit_sync(self, offsets: Mapping[MessageQueue, int] | None = None) -> None:
        run_sync(self.impl.commit_sync(offsets))

    def committed(self, mq: MessageQueue) -> int:
        return run_sync(self.impl.committed(mq))

    def fetch_message_queues(self, topic: str) -> list[MessageQueue]:
        return run_sync(self.impl.fetch_message_queues(topic))
