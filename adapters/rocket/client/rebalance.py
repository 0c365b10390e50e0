"""RebalanceImpl: decide which queues this consumer owns and start or stop work on them.

For each subscribed topic: CLUSTERING asks a broker for the group's consumer ids and runs the
allocation strategy over the sorted queues and ids; BROADCASTING takes every queue. Queues no
longer ours are dropped (their offset persisted first, so the next owner resumes there); new
ones start at the offset ``compute_pull_from_where`` gives. The consumer supplies the hooks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

from .allocate import AllocateMessageQueueStrategy
from .common import MessageModel, MessageQueue
from .errors import NoRouteError
from .filter import SubscriptionData
from .instance import MQClientInstance
from .process_queue import ProcessQueue

log = logging.getLogger(__name__)


class RebalanceImpl:
    def __init__(
        self,
        instance: MQClientInstance,
        group: str,
        message_model: MessageModel,
        strategy: AllocateMessageQueueStrategy,
        subscriptions: dict[str, SubscriptionData],
        *,
        compute_pull_from_where: Callable[[MessageQueue], Awaitable[int]],
        on_added: Callable[[MessageQueue, ProcessQueue, int], None],
        on_removed: Callable[[MessageQueue, ProcessQueue], Awaitable[None]],
    ) -> None:
        self.instance = instance
        self.group = group
        self.message_model = message_model
        self.strategy = strategy
        self.subscriptions = subscriptions
        self._compute_pull_from_where = compute_pull_from_where
        self._on_added = on_added
        self._on_removed = on_removed
        self.process_queue_table: dict[MessageQueue, ProcessQueue] = {}

    async def do_rebalance(self) -> None:
        for topic in list(self.subscriptions):
            try:
                await self._rebalance_topic(topic)
            except NoRouteError as exc:
                log.debug("group %s: no route for %s yet: %s", self.group, topic, exc)

    async def _rebalance_topic(self, topic: str) -> None:
        mqs = await self.instance.subscribe_queues(topic)
        if self.message_model == MessageModel.BROADCASTING:
            await self.update_process_queue_table(topic, set(mqs))
            return
        cids = await self.find_consumer_id_list(topic)
        if not cids:
            log.info("group %s: no consumer of %s is online yet", self.group, topic)
            return
        allocated = self.strategy.allocate(self.group, self.instance.client_id, mqs, sorted(cids))
        await self.update_process_queue_table(topic, set(allocated))

    async def find_consumer_id_list(self, topic: str) -> list[str]:
        route = await self.instance.route(topic)
        addrs = route.select_broker_addrs()
        random.shuffle(addrs)
        for addr in addrs:
            try:
                return await self.instance.api.get_consumer_id_list(addr, self.group)
            except Exception as exc:
                log.info("group %s: consumer list from %s failed: %s", self.group, addr, exc)
        return []

    async def update_process_queue_table(self, topic: str, allocated: set[MessageQueue]) -> bool:
        changed = False
        for mq, pq in list(self.process_queue_table.items()):
            if mq.topic == topic and mq not in allocated:
                pq.dropped = True
                del self.process_queue_table[mq]
                await self._on_removed(mq, pq)
                changed = True
                log.info("group %s: released %s", self.group, mq)
        for mq in sorted(allocated - set(self.process_queue_table)):
            offset = await self._compute_pull_from_where(mq)
            if offset < 0:
                log.warning("group %s: no start offset for %s yet; next rebalance retries",
                            self.group, mq)
                continue
            pq = ProcessQueue()
            self.process_queue_table[mq] = pq
            self._on_added(mq, pq, offset)
            changed = True
            log.info("group %s: took %s from offset %d", self.group, mq, offset)
        return changed

    async def drop_all(self) -> None:
        for mq, pq in list(self.process_queue_table.items()):
            pq.dropped = True
            del self.process_queue_table[mq]
            await self._on_removed(mq, pq)
