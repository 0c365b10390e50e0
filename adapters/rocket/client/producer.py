"""Producer: RocketMQ's DefaultMQProducer on asyncio.

``send`` picks queues round-robin over every master's writable queues and retries a failed send
on a queue of another broker (``retry_times_when_send_failed`` more times for sync sends), all
within ``send_msg_timeout_ms``. ``send(msg, selector, arg)`` lets the user pick the queue (one
order id -> one queue -> one order) and is tried once, as in RocketMQ: retrying on another queue
would break the order the user asked for.

Broker groups whose master is down: the name server drops the master from the route (and a
queue is writable only on a master), so after the next route refresh no queue of that group is
picked; until then a send to it fails and the retry goes to another broker group. With
``send_latency_fault_enable`` (RocketMQ's sendLatencyFaultEnable, off by default) a broker that
just failed, or answered slowly, is avoided for a while (``fault.py``) instead of being tried
again by the next send.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..message import (
    PROPERTY_DELAY_TIME_LEVEL,
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    PROPERTY_WAIT_STORE_MSG_OK,
    SYSFLAG_COMPRESSED,
    Message,
    encode_batch_body,
)
from ..remoting import RemotingCommand, RemotingError, RequestCode, ResponseCode, encode_properties
from ..remoting.blocking import BlockingPool
from ._msgutil import COMPRESSION_ZLIB, check_message, compress_body
from .common import DEFAULT_TOPIC, RETRY_GROUP_TOPIC_PREFIX, MessageQueue, SendResult, SendStatus
from .config import ClientConfig
from .errors import MessageIllegalError, MQBrokerError, MQClientError, NoRouteError
from .fault import MQFaultStrategy
from .instance import MQClientInstance, MQClientManager
from .lifecycle import ClientLifecycle
from .route import TopicPublishInfo, TopicRouteData
from .selector import MessageQueueSelector
from .uniq_id import UniqIdGenerator

log = logging.getLogger(__name__)

_SEND_STATUS = {
    ResponseCode.SUCCESS: SendStatus.SEND_OK,
    ResponseCode.FLUSH_DISK_TIMEOUT: SendStatus.FLUSH_DISK_TIMEOUT,
    ResponseCode.FLUSH_SLAVE_TIMEOUT: SendStatus.FLUSH_SLAVE_TIMEOUT,
    ResponseCode.SLAVE_NOT_AVAILABLE: SendStatus.SLAVE_NOT_AVAILABLE,
}


class SendCallback(Protocol):
    def on_success(self, send_result: SendResult) -> None: ...

    def on_exception(self, error: BaseException) -> None: ...


class Producer(ClientLifecycle):
    def __init__(
        self,
        producer_group: str = "DEFAULT_PRODUCER",
        *,
        namesrv_addr: str | None = None,
        client_config: ClientConfig | None = None,
        send_msg_timeout_ms: int = 3_000,
        compress_msg_body_over_howmuch: int = 4 * 1024,
        retry_times_when_send_failed: int = 2,
        retry_times_when_send_async_failed: int = 2,
        retry_another_broker_when_not_store_ok: bool = False,
        max_message_size: int = 4 * 1024 * 1024,
        default_topic_queue_nums: int = 4,
        send_latency_fault_enable: bool = False,
    ) -> None:
        self.group = producer_group
        self.client_config = client_config or ClientConfig()
        if namesrv_addr is not None:
            self.client_config.namesrv_addr = namesrv_addr
        self.send_msg_timeout_ms = send_msg_timeout_ms
        self.compress_msg_body_over_howmuch = compress_msg_body_over_howmuch
        self.retry_times_when_send_failed = retry_times_when_send_failed
        self.retry_times_when_send_async_failed = retry_times_when_send_async_failed
        self.retry_another_broker_when_not_store_ok = retry_another_broker_when_not_store_ok
        self.max_message_size = max_message_size
        self.default_topic_queue_nums = default_topic_queue_nums
        self.fault_strategy = MQFaultStrategy(send_latency_fault_enable)
        self._instance: MQClientInstance | None = None
        self._publish: dict[str, tuple[TopicRouteData, TopicPublishInfo]] = {}
        self._uniq_ids = UniqIdGenerator(self.client_config.client_ip)
        self._async_tasks: set[asyncio.Task[SendResult]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._instance is not None:
            return
        await self._acquire_instance()

    async def shutdown(self) -> None:
        instance = self._take_instance()
        if instance is None:
            return
        if self._async_tasks:
            await asyncio.gather(*self._async_tasks, return_exceptions=True)
        await instance.unregister(producer_group=self.group)
        await MQClientManager.release(instance)

    def _register(self, instance: MQClientInstance) -> None:
        instance.register_producer(self)

    @property
    def instance(self) -> MQClientInstance:
        if self._instance is None:
            raise MQClientError(f"producer {self.group} is not started")
        return self._instance

    def publish_topics(self) -> set[str]:
        return set(self._publish)

    # -- routes -----------------------------------------------------------------------------

    async def _publish_info(self, topic: str) -> TopicPublishInfo:
        """Writable queues of ``topic``; the template topic's brokers if it does not exist yet
        (those brokers create it on first send when autoCreateTopicEnable is on)."""
        instance = self.instance
        try:
            route = await instance.route(topic)
        except NoRouteError:
            try:
                default = await instance.route(DEFAULT_TOPIC)
            except NoRouteError:
                raise NoRouteError(f"No route info of this topic: {topic}") from None
            route = default
        cached = self._publish.get(topic)
        if cached is not None and cached[0] is route:
            return cached[1]
        info = TopicPublishInfo.from_route(topic, route)
        if route is instance.routes.get(DEFAULT_TOPIC) and topic != DEFAULT_TOPIC:
            info.message_queue_list = [
                mq for mq in info.message_queue_list if mq.queue_id < self.default_topic_queue_nums
            ]
        if cached is not None:
            info._index = cached[1]._index
        self._publish[topic] = (route, info)
        if not info.ok():
            raise NoRouteError(f"No writable queue for topic {topic}")
        return info

    async def fetch_publish_message_queues(self, topic: str) -> list[MessageQueue]:
        return list((await self._publish_info(topic)).message_queue_list)

    # -- message preparation ----------------------------------------------------------------

    def _stamp(self, msg: Message) -> None:
        msg.properties.setdefault(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX, self._uniq_ids.create())
        msg.properties.setdefault(PROPERTY_WAIT_STORE_MSG_OK, "true")

    def _prepare(self, msg: Message) -> tuple[bytes, int, str]:
        """Check and stamp a message to send: (the body as sent, its sysFlag, its message id)."""
        check_message(msg, self.max_message_size)
        self._stamp(msg)
        body, sys_flag = self._wire_body(msg)
        return body, sys_flag, msg.properties[PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX]

    def _wire_body(self, msg: Message) -> tuple[bytes, int]:
        """The body as sent and the sysFlag that says how (compressed above the threshold)."""
        if len(msg.body) > self.compress_msg_body_over_howmuch:
            return compress_body(msg.body), SYSFLAG_COMPRESSED | COMPRESSION_ZLIB
        return msg.body, 0

    def _request(
        self, mq: MessageQueue, msg: Message, body: bytes, sys_flag: int, *, batch: bool,
        oneway: bool = False,
    ) -> RemotingCommand:
        header = {  # the strings Java's toString gives, written directly (once per message)
            "a": self.group,
            "b": mq.topic,
            "c": DEFAULT_TOPIC,
            "d": str(self.default_topic_queue_nums),
            "e": str(mq.queue_id),
            "f": str(sys_flag),
            "g": str(time.time_ns() // 1_000_000),
            "h": str(msg.flag),
            "i": encode_properties(msg.properties),
            "j": "0",
            "k": "false",
            "m": "true" if batch else "false",
            "n": mq.broker_name,
        }
        code = RequestCode.SEND_BATCH_MESSAGE if batch else RequestCode.SEND_MESSAGE_V2
        return RemotingCommand.string_request(code, header, body, oneway=oneway)

    # -- the send kernel --------------------------------------------------------------------

    async def _send_to_queue(
        self, mq: MessageQueue, msg: Message, body: bytes, sys_flag: int, *, batch: bool,
        uniq_id: str, timeout_s: float,
    ) -> SendResult:
        instance = self.instance
        addr = instance.master_addr(mq.broker_name) or await instance.find_master_addr(mq)
        cmd = self._request(mq, msg, body, sys_flag, batch=batch)
        return _send_result(await self.instance.remoting.invoke(addr, cmd, timeout_s), mq, uniq_id, addr)

    async def _send_default(
        self, msg: Message, body: bytes, sys_flag: int, *, batch: bool, uniq_id: str,
        times_total: int, timeout_ms: int | None,
    ) -> SendResult:
        cached = self._publish.get(msg.topic)
        if cached is not None and cached[0] is self.instance.routes.get(msg.topic):
            info = cached[1]  # the route it was built from is still the cached one
        else:
            info = await self._publish_info(msg.topic)
        attempts = _Attempts(self, info, msg.topic, uniq_id, times_total, timeout_ms)
        while (mq := attempts.next_queue()) is not None:
            begin = time.monotonic()
            try:
                result = await self._send_to_queue(
                    mq, msg, body, sys_flag, batch=batch, uniq_id=uniq_id, timeout_s=attempts.remaining_s()
                )
            except (RemotingError, MQBrokerError, MQClientError) as exc:
                attempts.failed(mq, exc, begin)
                continue
            if attempts.returned(mq, result, begin):
                return result
        return attempts.outcome()

    def send_blocking(self, msg: Message, pool: BlockingPool, *, timeout_ms: int | None = None) -> SendResult | None:
        """:meth:`send` with the default queue selection, on the calling thread through ``pool``
        (the synchronous facade's path: its callers are threads, not the client's event loop),
        with the same retries within the same timeout. None when the send needs the event loop:
        the topic's route is not cached yet, or the latency fault strategy is on (its state is
        the loop's); the caller then sends through the loop, and the message keeps the id
        stamped here. Thread-safe: of the producer's state it reads the route caches and moves
        the topic's round-robin index, nothing else."""
        if self.fault_strategy.enabled:
            return None
        cached = self._publish.get(msg.topic)
        if cached is None or cached[0] is not self.instance.routes.get(msg.topic):
            return None
        body, sys_flag, uniq_id = self._prepare(msg)
        attempts = _Attempts(self, cached[1], msg.topic, uniq_id, 1 + self.retry_times_when_send_failed, timeout_ms)
        instance = self.instance
        while (mq := attempts.next_queue()) is not None:
            begin = time.monotonic()
            try:
                addr = instance.master_addr(mq.broker_name)
                if addr is None:
                    raise MQClientError(f"broker {mq.broker_name} of {mq.topic} is not in any cached route")
                cmd = self._request(mq, msg, body, sys_flag, batch=False)
                result = _send_result(pool.invoke(addr, cmd, attempts.remaining_s()), mq, uniq_id, addr)
            except (RemotingError, MQBrokerError, MQClientError) as exc:
                attempts.failed(mq, exc, begin)
                continue
            if attempts.returned(mq, result, begin):
                return result
        return attempts.outcome()

    # -- public API -------------------------------------------------------------------------

    async def send(
        self,
        msg: Message,
        selector: MessageQueueSelector | Callable[[Sequence[MessageQueue], Message, Any], MessageQueue] | None = None,
        arg: Any = None,
        *,
        mq: MessageQueue | None = None,
        timeout_ms: int | None = None,
    ) -> SendResult:
        """Send and wait for the broker's answer. With ``selector`` (or ``mq``) the queue is the
        caller's choice and the send is tried once."""
        body, sys_flag, uniq_id = self._prepare(msg)
        if selector is None and mq is None:
            return await self._send_default(
                msg, body, sys_flag, batch=False, uniq_id=uniq_id,
                times_total=1 + self.retry_times_when_send_failed, timeout_ms=timeout_ms,
            )
        timeout_s = (timeout_ms if timeout_ms is not None else self.send_msg_timeout_ms) / 1000
        target = mq if mq is not None else await self._select(msg, selector, arg)
        return await self._send_to_queue(
            target, msg, body, sys_flag, batch=False, uniq_id=uniq_id, timeout_s=timeout_s
        )

    async def _select(self, msg: Message, selector: Any, arg: Any) -> MessageQueue:
        mqs = (await self._publish_info(msg.topic)).message_queue_list
        choose = selector.select if hasattr(selector, "select") else selector
        chosen = choose(list(mqs), msg, arg)
        if not isinstance(chosen, MessageQueue):
            raise MQClientError(f"selector returned {chosen!r}, not a MessageQueue")
        return chosen

    def send_async(
        self,
        msg: Message,
        callback: SendCallback | None = None,
        *,
        timeout_ms: int | None = None,
    ) -> asyncio.Task[SendResult]:
        """Start a send and return at once. The task's result is the SendResult; ``callback``
        (``on_success`` / ``on_exception``) runs on the event loop when it is done."""
        body, sys_flag, uniq_id = self._prepare(msg)
        task = asyncio.create_task(self._send_default(
            msg, body, sys_flag, batch=False, uniq_id=uniq_id,
            times_total=1 + self.retry_times_when_send_async_failed, timeout_ms=timeout_ms,
        ))
        self._async_tasks.add(task)
        task.add_done_callback(self._async_tasks.discard)
        task.add_done_callback(_mark_retrieved)
        if callback is not None:
            task.add_done_callback(lambda t: _run_callback(t, callback))
        return task

    async def send_oneway(
        self,
        msg: Message,
        selector: MessageQueueSelector | None = None,
        arg: Any = None,
        *,
        mq: MessageQueue | None = None,
    ) -> None:
        """Fire and forget: one attempt, no answer (the seed's "sendOneWay")."""
        body, sys_flag, _uniq_id = self._prepare(msg)
        if mq is None:
            if selector is not None:
                mq = await self._select(msg, selector, arg)
            else:
                mq = (await self._publish_info(msg.topic)).select_one_message_queue()
        addr = await self.instance.find_master_addr(mq)
        cmd = self._request(mq, msg, body, sys_flag, batch=False, oneway=True)
        await self.instance.remoting.invoke_oneway(addr, cmd)

    async def send_batch(
        self,
        msgs: Sequence[Message],
        *,
        mq: MessageQueue | None = None,
        timeout_ms: int | None = None,
    ) -> SendResult:
        """Send several messages of one topic in one request (SEND_BATCH_MESSAGE); they land
        in one queue, contiguously. ``msg_id`` is their UNIQ_KEYs joined by commas."""
        if not msgs:
            raise MessageIllegalError("a batch needs at least one message")
        topic = msgs[0].topic
        for msg in msgs:
            if msg.topic != topic:
                raise MessageIllegalError("every message of a batch must have the same topic")
            if msg.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
                raise MessageIllegalError("retry topics may not be sent in a batch")
            if msg.properties.get(PROPERTY_DELAY_TIME_LEVEL, "0") not in ("", "0"):
                raise MessageIllegalError("delayed messages may not be sent in a batch")
            check_message(msg, self.max_message_size)
            self._stamp(msg)
        body = encode_batch_body(msgs)
        if len(body) > self.max_message_size:
            raise MessageIllegalError(
                f"the batch is {len(body)} bytes; maxMessageSize is {self.max_message_size}"
            )
        header_msg = Message(topic=topic, properties={PROPERTY_WAIT_STORE_MSG_OK: "true"})
        uniq_id = ",".join(m.properties[PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] for m in msgs)
        if mq is not None:
            timeout_s = (timeout_ms if timeout_ms is not None else self.send_msg_timeout_ms) / 1000
            return await self._send_to_queue(
                mq, header_msg, body, 0, batch=True, uniq_id=uniq_id, timeout_s=timeout_s
            )
        return await self._send_default(
            header_msg, body, 0, batch=True, uniq_id=uniq_id,
            times_total=1 + self.retry_times_when_send_failed, timeout_ms=timeout_ms,
        )


def _ms_since(begin_s: float) -> int:
    return int((time.monotonic() - begin_s) * 1000)


def _send_result(response: RemotingCommand, mq: MessageQueue, uniq_id: str, addr: str) -> SendResult:
    """A send's SendResult from the broker's answer; MQBrokerError for a code that is no send status."""
    status = _SEND_STATUS.get(response.code)  # type: ignore[call-overload]
    if status is None:
        raise MQBrokerError(response.code, response.remark, addr)
    ext = response.ext_fields
    queue_id = int(ext.get("queueId", mq.queue_id))
    return SendResult(
        send_status=status,
        msg_id=uniq_id,
        offset_msg_id=ext.get("msgId", ""),
        message_queue=mq if queue_id == mq.queue_id else MessageQueue(mq.topic, mq.broker_name, queue_id),
        queue_offset=int(ext.get("queueOffset", -1)),
    )


class _Attempts:
    """The retry policy of a send with the default queue selection (RocketMQ's
    sendDefaultImpl): up to ``times_total`` attempts within the timeout, each after a failure
    on a queue of another broker; a broker error that is not retriable, or an illegal message,
    ends it at once; a stored send that is not SEND_OK is retried on another broker only with
    ``retry_another_broker_when_not_store_ok``, and returned last if nothing did better. One
    per send, used by the asynchronous and the blocking path alike."""

    def __init__(self, producer: Producer, info: TopicPublishInfo, topic: str, uniq_id: str, times_total: int,
                 timeout_ms: int | None) -> None:
        self.producer = producer
        self.info = info
        self.topic = topic
        self.uniq_id = uniq_id
        self.times_left = times_total
        self.times_total = times_total
        self.timeout_s = (timeout_ms if timeout_ms is not None else producer.send_msg_timeout_ms) / 1000
        self.deadline = time.monotonic() + self.timeout_s
        self.last_broker: str | None = None
        self.last_error: Exception | None = None
        self.last_result: SendResult | None = None  # stored, but not SEND_OK

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def next_queue(self) -> MessageQueue | None:
        """The queue of the next attempt; None when no attempt or no time is left."""
        if self.times_left <= 0 or self.remaining_s() <= 0:
            return None
        self.times_left -= 1
        return self.producer.fault_strategy.select_one_message_queue(self.info, self.last_broker)

    def failed(self, mq: MessageQueue, exc: Exception, begin: float) -> None:
        """An attempt raised ``exc``: re-raises it unless the send may go on."""
        self.producer.fault_strategy.update_fault_item(mq.broker_name, _ms_since(begin), isolation=True)
        if isinstance(exc, MQBrokerError) and not exc.retriable:
            raise exc
        if isinstance(exc, MessageIllegalError):
            raise exc
        self.last_error, self.last_broker = exc, mq.broker_name
        log.info("send of %s to %s failed (attempt %d of %d): %s",
                 self.uniq_id, mq, self.times_total - self.times_left, self.times_total, exc)

    def returned(self, mq: MessageQueue, result: SendResult, begin: float) -> bool:
        """An attempt stored the message: whether ``result`` is the send's answer."""
        strategy = self.producer.fault_strategy
        if strategy.enabled:  # sendLatencyFaultEnable (off by default): latencies kept
            strategy.update_fault_item(mq.broker_name, _ms_since(begin), isolation=False)
        if result.send_status != SendStatus.SEND_OK and self.producer.retry_another_broker_when_not_store_ok:
            self.last_broker, self.last_result = mq.broker_name, result
            return False
        return True

    def outcome(self) -> SendResult:
        """After the last attempt: the stored result that was not SEND_OK, or MQClientError."""
        if self.last_result is not None:  # stored somewhere, only not as safely as asked: as RocketMQ
            return self.last_result
        raise MQClientError(
            f"send of {self.uniq_id} to {self.topic} failed after {self.times_total} attempts "
            f"within {self.timeout_s * 1000:.0f} ms: {self.last_error}"
        ) from self.last_error


def _run_callback(task: asyncio.Task[SendResult], callback: SendCallback) -> None:
    try:
        if task.cancelled():
            callback.on_exception(asyncio.CancelledError())
        elif (error := task.exception()) is not None:
            callback.on_exception(error)
        else:
            callback.on_success(task.result())
    except Exception:
        log.exception("send callback failed")


def _mark_retrieved(task: asyncio.Task[SendResult]) -> None:
    """The error is the caller's to read from the task; asyncio need not log it again."""
    if not task.cancelled():
        task.exception()
