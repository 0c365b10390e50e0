"""MQClientInstance: the connections, routes and timers a process's producers and consumers share.

One instance per client id (``clientIP@instanceName``) and event loop, as RocketMQ's
``MQClientManager`` keeps one ``MQClientInstance`` per id: the brokers see one client, which
registers groups. Background tasks, each with RocketMQ's period:

- route refresh (``poll_name_server_interval_ms``, 30 s) for every topic in use;
- heartbeat (``heartbeat_broker_interval_ms``, 30 s) with every group to every known broker;
- rebalance (20 s, or at once when a broker sends NOTIFY_CONSUMER_IDS_CHANGED);
- consumer offset persistence (``persist_consumer_offset_interval_ms``, 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from ..message import PROPERTY_PRODUCER_GROUP, MessageFormatError, decode_one_stored
from ..remoting import Connection, RemotingClient, RemotingCommand, RequestCode
from ._msgutil import prepare_pulled
from .api import MQClientAPI
from .common import MessageQueue
from .config import ClientConfig
from .errors import MQClientError
from .route import TopicRouteData, subscribe_queues

log = logging.getLogger(__name__)

REBALANCE_INTERVAL_S = 20.0


class ProducerInner(Protocol):
    group: str

    def publish_topics(self) -> set[str]: ...


class ConsumerInner(Protocol):
    group: str

    def heartbeat_data(self) -> dict[str, Any]: ...

    def subscribed_topics(self) -> set[str]: ...

    async def do_rebalance(self) -> None: ...

    async def persist_consumer_offset(self) -> None: ...


class MQClientInstance:
    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.client_id = config.client_id
        self.remoting = RemotingClient()
        self.api = MQClientAPI(
            self.remoting, config.namesrv_addrs(), config.request_timeout_ms / 1000
        )
        self.remoting.register(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, self._on_ids_changed)
        self.remoting.register(RequestCode.CHECK_TRANSACTION_STATE, self._on_check_transaction)
        self.routes: dict[str, TopicRouteData] = {}
        self.producers: dict[str, ProducerInner] = {}
        self.consumers: dict[str, ConsumerInner] = {}
        self._rebalance_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._route_locks: dict[str, asyncio.Lock] = {}
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            return
        self.started = True
        cfg = self.config
        self._tasks = [
            self._periodic("route", cfg.poll_name_server_interval_ms / 1000, self.update_all_routes),
            self._periodic("heartbeat", cfg.heartbeat_broker_interval_ms / 1000,
                           self.send_heartbeat_to_all_brokers),
            self._periodic("offsets", cfg.persist_consumer_offset_interval_ms / 1000,
                           self._persist_all_offsets),
            asyncio.create_task(self._rebalance_loop(), name="rocketmq-rebalance"),
        ]

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.remoting.close()
        self.started = False

    def _periodic(
        self, name: str, period_s: float, fn: Callable[[], Awaitable[None]]
    ) -> asyncio.Task[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(period_s)
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic %s task failed", name)

        return asyncio.create_task(loop(), name=f"rocketmq-{name}")

    # -- registration -----------------------------------------------------------------------

    def register_producer(self, producer: ProducerInner) -> None:
        if producer.group in self.producers:
            raise MQClientError(f"producer group {producer.group} already runs in {self.client_id}")
        self.producers[producer.group] = producer

    def register_consumer(self, consumer: ConsumerInner) -> None:
        if consumer.group in self.consumers:
            raise MQClientError(f"consumer group {consumer.group} already runs in {self.client_id}")
        self.consumers[consumer.group] = consumer

    async def unregister(self, producer_group: str | None = None,
                         consumer_group: str | None = None) -> None:
        """Forget a group here and tell every broker (UNREGISTER_CLIENT)."""
        if producer_group is not None:
            self.producers.pop(producer_group, None)
        if consumer_group is not None:
            self.consumers.pop(consumer_group, None)
        for addr in self.broker_addrs():
            try:
                await self.api.unregister_client(addr, self.client_id, producer_group, consumer_group)
            except Exception as exc:
                log.info("unregister from %s failed: %s", addr, exc)

    @property
    def idle(self) -> bool:
        return not self.producers and not self.consumers

    # -- routes -----------------------------------------------------------------------------

    async def update_route(self, topic: str) -> TopicRouteData:
        """Fetch the route of one topic from the name server and cache it."""
        lock = self._route_locks.setdefault(topic, asyncio.Lock())
        async with lock:
            route = await self.api.get_topic_route(topic)
            self.routes[topic] = route
            return route

    async def route(self, topic: str) -> TopicRouteData:
        """The cached route, fetching it on first use."""
        cached = self.routes.get(topic)
        return cached if cached is not None else await self.update_route(topic)

    async def update_all_routes(self) -> None:
        topics: set[str] = set(self.routes)
        for producer in self.producers.values():
            topics |= producer.publish_topics()
        for consumer in self.consumers.values():
            topics |= consumer.subscribed_topics()
        for topic in sorted(topics):
            try:
                await self.update_route(topic)
            except Exception as exc:
                log.info("route refresh of %s failed: %s", topic, exc)

    def broker_addrs(self) -> list[str]:
        """Every broker address (masters and slaves) in any cached route."""
        addrs: set[str] = set()
        for route in self.routes.values():
            for by_id in route.broker_addrs.values():
                addrs.update(by_id.values())
        return sorted(addrs)

    def master_addr(self, broker_name: str) -> str | None:
        for route in self.routes.values():
            addr = route.master_addr(broker_name)
            if addr:
                return addr
        return None

    async def find_master_addr(self, mq: MessageQueue) -> str:
        """The master of ``mq``'s broker, refreshing the topic's route once if it is unknown."""
        addr = self.master_addr(mq.broker_name)
        if addr is None:
            with contextlib.suppress(Exception):
                await self.update_route(mq.topic)
            addr = self.master_addr(mq.broker_name)
        if addr is None:
            raise MQClientError(f"broker {mq.broker_name} of {mq.topic} is not in any route")
        return addr

    async def subscribe_queues(self, topic: str) -> list[MessageQueue]:
        return subscribe_queues(topic, await self.route(topic))

    # -- heartbeat --------------------------------------------------------------------------

    def heartbeat_body(self) -> bytes:
        return orjson.dumps({
            "clientID": self.client_id,
            "producerDataSet": [{"groupName": g} for g in sorted(self.producers)],
            "consumerDataSet": [c.heartbeat_data() for _, c in sorted(self.consumers.items())],
        })

    async def send_heartbeat_to_all_brokers(self) -> None:
        if self.idle:
            return
        body = self.heartbeat_body()
        for addr in self.broker_addrs():
            try:
                await self.api.heartbeat(addr, body)
            except Exception as exc:
                log.info("heartbeat to %s failed: %s", addr, exc)

    # -- rebalance and offsets --------------------------------------------------------------

    def rebalance_immediately(self) -> None:
        self._rebalance_now.set()

    async def _on_ids_changed(self, conn: Connection, cmd: RemotingCommand) -> None:
        log.info("broker %s: consumer ids of group %s changed; rebalancing",
                 conn.remote_addr, cmd.ext_fields.get("consumerGroup"))
        self.rebalance_immediately()
        return None

    async def _on_check_transaction(self, conn: Connection, cmd: RemotingCommand) -> None:
        """CHECK_TRANSACTION_STATE: hand it to the producer of the half message's group."""
        try:
            msg = prepare_pulled(decode_one_stored(cmd.body))
        except (MessageFormatError, MQClientError, zlib.error) as exc:
            log.warning("undecodable CHECK_TRANSACTION_STATE from %s: %s", conn.remote_addr, exc)
            return None
        group = msg.properties.get(PROPERTY_PRODUCER_GROUP, "")
        check = getattr(self.producers.get(group), "check_transaction_state", None)
        if check is None:
            log.info("CHECK_TRANSACTION_STATE for group %s, which has no transaction producer here", group)
            return None
        check(conn, msg, cmd.ext_fields)
        return None

    async def _rebalance_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that lands
            # as the event is set, and shutdown would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REBALANCE_INTERVAL_S):
                    await self._rebalance_now.wait()
            self._rebalance_now.clear()
            await self.do_rebalance()

    async def do_rebalance(self) -> None:
        for consumer in list(self.consumers.values()):
            try:
                await consumer.do_rebalance()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rebalance of group %s failed", consumer.group)

    async def _persist_all_offsets(self) -> None:
        for consumer in list(self.consumers.values()):
            await consumer.persist_consumer_offset()


class MQClientManager:
    """One MQClientInstance per (client id, event loop); released when its last user leaves."""

    _instances: dict[tuple[str, int], MQClientInstance] = {}

    @classmethod
    async def acquire(cls, config: ClientConfig) -> MQClientInstance:
        key = (config.client_id, id(asyncio.get_running_loop()))
        instance = cls._instances.get(key)
        if instance is None or not instance.started:
            instance = MQClientInstance(config)
            cls._instances[key] = instance
            await instance.start()
        return instance

    @classmethod
    async def release(cls, instance: MQClientInstance) -> None:
        if not instance.idle:
            return
        for key, value in list(cls._instances.items()):
            if value is instance:
                del cls._instances[key]
        await instance.shutdown()
