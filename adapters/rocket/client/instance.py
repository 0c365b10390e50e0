"""MQClientInstance: the connections, routes and timers a process's producers and consumers share.

One instance per client id (``clientIP@instanceName``) and event loop, as RocketMQ's
``MQClientManager`` keeps one ``MQClientInstance`` per id: the brokers see one client, which
registers groups. Background tasks, each with RocketMQ's period:

- route refresh (``poll_name_server_interval_ms``, 30 s) for every topic in use;
- heartbeat (``heartbeat_broker_interval_ms``, 30 s) with every group to every known broker;
- rebalance (``rebalance_interval_ms``, 20 s, or at once on a broker's NOTIFY_CONSUMER_IDS_CHANGED);
- consumer offset persistence (``persist_consumer_offset_interval_ms``, 5 s).

Consumers reach a broker group through :meth:`find_broker_addr_in_subscribe` (RocketMQ's
findBrokerAddressInSubscribe): the broker id asked for (the master, or the slave a pull answer
suggested), else, unless only that broker will do, any broker of the group, so pulls and offset
commits go to a slave while the master is out of the route. An address whose connection just
failed is passed over for ``UNREACHABLE_S`` when the group has another one, and the topic's
route is fetched again at once: a SIGKILLed master is left before the name server even notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..aio import wait_event
from ..message import PROPERTY_PRODUCER_GROUP, MessageFormatError, decode_one_stored
from ..remoting import Connection, RemotingClient, RemotingCommand, RequestCode
from ._msgutil import prepare_pulled
from .api import MQClientAPI
from .common import MASTER_ID, MessageQueue
from .config import ClientConfig
from .errors import MQClientError
from .route import TopicRouteData, subscribe_queues

log = logging.getLogger(__name__)

UNREACHABLE_S = 10.0  # an address whose connection failed is avoided this long if the group has another


@dataclass(frozen=True)
class FindBrokerResult:
    broker_addr: str
    slave: bool


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
        self.remoting = RemotingClient(busy_poll_us=config.busy_poll_micros)
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
        self.pull_from_which_node: dict[MessageQueue, int] = {}  # suggestWhichBrokerId per queue
        self._unreachable: dict[str, float] = {}  # address -> avoided until (monotonic s)
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
        """The master address of ``broker_name`` in any cached route. Safe from other threads
        (the blocking sync send): the loop's thread replaces routes, never changes one in place,
        and the copy below is taken in one step."""
        for route in list(self.routes.values()):
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

    def _group_addrs(self, broker_name: str) -> dict[int, str]:
        for route in self.routes.values():
            addrs = route.broker_addrs.get(broker_name)
            if addrs:
                return addrs
        return {}

    def find_broker_addr_in_subscribe(
        self, broker_name: str, broker_id: int = MASTER_ID, only_this_broker: bool = False,
    ) -> FindBrokerResult | None:
        """An address of ``broker_name``'s group for reading: ``broker_id`` (or the next id, as
        RocketMQ tries for slaves), else, unless ``only_this_broker``, the master or any slave."""
        addrs = self._group_addrs(broker_name)
        if not addrs:
            return None
        wanted = [broker_id] if broker_id == MASTER_ID else [broker_id, broker_id + 1]
        others = [] if only_this_broker else sorted(addrs)  # the master (0) first
        candidates = [i for i in [*wanted, *others] if i in addrs]
        if not candidates:
            return None
        reachable = [i for i in candidates if self.reachable(addrs[i])]
        chosen = (reachable or candidates)[0]
        return FindBrokerResult(addrs[chosen], chosen != MASTER_ID)

    async def find_broker_addr_for_read(self, mq: MessageQueue, broker_id: int = MASTER_ID) -> FindBrokerResult:
        """:meth:`find_broker_addr_in_subscribe` (any broker of the group will do), refreshing
        the topic's route once if the group is unknown."""
        found = self.find_broker_addr_in_subscribe(mq.broker_name, broker_id)
        if found is None:
            with contextlib.suppress(Exception):
                await self.update_route(mq.topic)
            found = self.find_broker_addr_in_subscribe(mq.broker_name, broker_id)
        if found is None:
            raise MQClientError(f"broker {mq.broker_name} of {mq.topic} is not in any route")
        return found

    def reachable(self, addr: str) -> bool:
        until = self._unreachable.get(addr)
        if until is None:
            return True
        if time.monotonic() >= until:
            del self._unreachable[addr]
            return True
        return False

    async def broker_unreachable(self, addr: str, topic: str) -> None:
        """A connection to ``addr`` failed: prefer the other brokers of its group for a while
        and ask the name server for the topic's route again now."""
        self._unreachable[addr] = time.monotonic() + UNREACHABLE_S
        with contextlib.suppress(Exception):
            await self.update_route(topic)

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
            await wait_event(self._rebalance_now, self.config.rebalance_interval_ms / 1000)
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
