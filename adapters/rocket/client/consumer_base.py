"""What PushConsumer and LitePullConsumer share: the group's settings, the offset store and
rebalance they start with, the routes they look up first, and what the client instance asks of
every consumer (heartbeat data, where to start on a queue)."""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from .allocate import AllocateMessageQueueAveragely, AllocateMessageQueueStrategy
from .common import ConsumeFromWhere, ConsumeType, MessageModel, MessageQueue
from .config import ClientConfig
from .filter import SubscriptionData
from .instance import MQClientInstance, MQClientManager
from .lifecycle import ClientLifecycle
from .offset_store import LocalFileOffsetStore, OffsetStore, RemoteBrokerOffsetStore
from .process_queue import ProcessQueue
from .rebalance import RebalanceImpl
from .start_offset import compute_pull_from_where, default_consume_timestamp


class ConsumerBase(ClientLifecycle):
    CONSUME_TYPE: ClassVar[ConsumeType]  # heartbeat wording: pull "actively", push "passively"

    def __init__(
        self,
        consumer_group: str,
        *,
        namesrv_addr: str | None,
        client_config: ClientConfig | None,
        message_model: MessageModel,
        consume_from_where: ConsumeFromWhere,
        consume_timestamp: str | None,
        allocate_message_queue_strategy: AllocateMessageQueueStrategy | None,
        offsets_dir: str | Path | None,
    ) -> None:
        self.group = consumer_group
        self.client_config = client_config or ClientConfig()
        if namesrv_addr is not None:
            self.client_config.namesrv_addr = namesrv_addr
        self.message_model = message_model
        self.consume_from_where = consume_from_where
        self.consume_timestamp = consume_timestamp or default_consume_timestamp()
        self.allocate_message_queue_strategy = (
            allocate_message_queue_strategy or AllocateMessageQueueAveragely()
        )
        self.offsets_dir = offsets_dir
        self.subscriptions: dict[str, SubscriptionData] = {}
        self._instance: MQClientInstance | None = None
        self._offset_store: OffsetStore | None = None
        self._rebalance: RebalanceImpl | None = None
        self._pull_tasks: dict[MessageQueue, asyncio.Task[None]] = {}

    # -- start and shutdown steps -----------------------------------------------------------

    def _register(self, instance: MQClientInstance) -> None:
        instance.register_consumer(self)

    async def _open_offsets_and_rebalance(
        self,
        instance: MQClientInstance,
        on_added: Callable[[MessageQueue, ProcessQueue, int], None],
        on_removed: Callable[[MessageQueue, ProcessQueue], Awaitable[None]],
    ) -> None:
        """The offset store (a local file when broadcasting, else the broker's), loaded, and the
        rebalance that calls ``on_added`` / ``on_removed`` as queues come and go."""
        if self.message_model == MessageModel.BROADCASTING:
            self._offset_store = LocalFileOffsetStore(instance.client_id, self.group, self.offsets_dir)
        else:
            self._offset_store = RemoteBrokerOffsetStore(instance, self.group)
        await self._offset_store.load()
        self._rebalance = RebalanceImpl(
            instance, self.group, self.message_model, self.allocate_message_queue_strategy,
            self.subscriptions,
            compute_pull_from_where=self._compute_pull_from_where,
            on_added=on_added,
            on_removed=on_removed,
        )

    async def _update_routes(self, instance: MQClientInstance, topics: Iterable[str],
                             quiet_topic: str | None = None) -> None:
        """Look up each topic's route; one missing yet is logged (at DEBUG for ``quiet_topic``)."""
        for topic in topics:
            try:
                await instance.update_route(topic)
            except Exception as exc:
                level = logging.DEBUG if topic == quiet_topic else logging.WARNING
                logging.getLogger(type(self).__module__).log(level, "group %s: no route for %s yet: %s", self.group, topic, exc)

    async def _release(self, instance: MQClientInstance) -> None:
        await instance.unregister(consumer_group=self.group)
        await MQClientManager.release(instance)

    # -- what the client instance asks of every consumer ------------------------------------

    def heartbeat_data(self) -> dict[str, Any]:
        return {
            "groupName": self.group,
            "consumeType": self.CONSUME_TYPE.value,
            "messageModel": self.message_model.value,
            "consumeFromWhere": self.consume_from_where.value,
            "subscriptionDataSet": [s.to_json() for s in self.subscriptions.values()],
            "unitMode": False,
        }

    @abstractmethod
    def subscribed_topics(self) -> set[str]:
        ...

    @abstractmethod
    async def do_rebalance(self) -> None:
        ...

    @abstractmethod
    async def persist_consumer_offset(self) -> None:
        ...

    async def _compute_pull_from_where(self, mq: MessageQueue) -> int:
        assert self._instance is not None and self._offset_store is not None
        return await compute_pull_from_where(
            self._instance, self._offset_store, mq, self.consume_from_where, self.consume_timestamp
        )
