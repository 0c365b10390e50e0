"""Producers and consumers known from HEART_BEAT: group membership, subscriptions, expiry.

A client is keyed by (group, clientID) and remembers the connection its last heartbeat came
over. It leaves a group on UNREGISTER_CLIENT, when that connection closes, or when no heartbeat
came for ``channel_expired_ms`` (120 s). Whenever a consumer group's member set changes, every
member gets NOTIFY_CONSUMER_IDS_CHANGED (oneway) so it rebalances at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.rocket.remoting import Connection, RemotingCommand, RequestCode

from .reader import TagFilter

log = logging.getLogger(__name__)

SCAN_INTERVAL_S = 10.0


@dataclass
class ConsumerClient:
    client_id: str
    conn: Connection
    last_update_s: float
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"


@dataclass
class ConsumerGroup:
    clients: dict[str, ConsumerClient] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic -> SubscriptionData
    filters: dict[str, TagFilter] = field(default_factory=dict)


class ClientManager:
    def __init__(self, channel_expired_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel_expired_s = channel_expired_ms / 1000
        self.clock = clock
        self.consumers: dict[str, ConsumerGroup] = {}
        self.producers: dict[str, dict[str, tuple[Connection, float]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._notify_tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._scan_forever(), name="client-expiry-scan")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._notify_tasks):
            t.cancel()

    # -- heartbeat / unregister -------------------------------------------------------------------

    def heartbeat(self, conn: Connection, data: dict[str, Any]) -> list[str]:
        """Apply a HeartbeatData body. Returns the consumer groups named in it."""
        client_id = str(data.get("clientID") or "")
        now = self.clock()
        for p in data.get("producerDataSet") or []:
            group = str(p.get("groupName") or "")
            if group:
                self.producers.setdefault(group, {})[client_id] = (conn, now)
        groups = []
        for c in data.get("consumerDataSet") or []:
            group = str(c.get("groupName") or "")
            if not group:
                continue
            groups.append(group)
            g = self.consumers.setdefault(group, ConsumerGroup())
            existing = g.clients.get(client_id)
            g.clients[client_id] = ConsumerClient(
                client_id, conn, now, str(c.get("consumeType") or "CONSUME_PASSIVELY"),
                str(c.get("messageModel") or "CLUSTERING"),
                str(c.get("consumeFromWhere") or "CONSUME_FROM_LAST_OFFSET"),
            )
            for sub in c.get("subscriptionDataSet") or []:
                topic = str(sub.get("topic") or "")
                if topic:
                    g.subscriptions[topic] = sub
                    g.filters[topic] = TagFilter.parse(str(sub.get("subString") or "*"))
            if existing is None or existing.conn is not conn:
                self._notify(group)
        return groups

    def unregister(self, client_id: str, producer_group: str | None, consumer_group: str | None) -> None:
        if producer_group:
            self.producers.get(producer_group, {}).pop(client_id, None)
        if consumer_group:
            g = self.consumers.get(consumer_group)
            if g is not None and g.clients.pop(client_id, None) is not None:
                self._after_leave(consumer_group, g)

    def on_disconnect(self, conn: Connection) -> None:
        for clients in self.producers.values():
            for cid in [cid for cid, (c, _t) in clients.items() if c is conn]:
                del clients[cid]
        for group, g in list(self.consumers.items()):
            gone = [cid for cid, c in g.clients.items() if c.conn is conn]
            for cid in gone:
                del g.clients[cid]
            if gone:
                self._after_leave(group, g)

    def _after_leave(self, group: str, g: ConsumerGroup) -> None:
        if not g.clients:
            del self.consumers[group]
        else:
            self._notify(group)

    def expire(self) -> int:
        """Drop clients silent for too long. Returns how many were dropped."""
        limit = self.clock() - self.channel_expired_s
        dropped = 0
        for group, g in list(self.consumers.items()):
            stale = [cid for cid, c in g.clients.items() if c.last_update_s < limit]
            for cid in stale:
                log.info("consumer %s of group %s expired: no heartbeat", cid, group)
                del g.clients[cid]
            dropped += len(stale)
            if stale:
                self._after_leave(group, g)
        for clients in self.producers.values():
            for cid in [cid for cid, (_c, t) in clients.items() if t < limit]:
                del clients[cid]
                dropped += 1
        return dropped

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(SCAN_INTERVAL_S)
            self.expire()

    # -- queries -----------------------------------------------------------------------------

    def consumer_ids(self, group: str) -> list[str]:
        g = self.consumers.get(group)
        return sorted(g.clients) if g else []

    def tag_filter(self, group: str, topic: str) -> TagFilter | None:
        g = self.consumers.get(group)
        return g.filters.get(topic) if g else None

    def subscription(self, group: str, topic: str) -> dict[str, Any] | None:
        g = self.consumers.get(group)
        return g.subscriptions.get(topic) if g else None

    # -- notification ------------------------------------------------------------------------

    def _notify(self, group: str) -> None:
        g = self.consumers.get(group)
        if g is None:
            return
        for c in list(g.clients.values()):
            if c.conn.closed:
                continue
            cmd = RemotingCommand.request(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": group})
            task = asyncio.get_running_loop().create_task(self._send_oneway(c.conn, cmd))
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)

    @staticmethod
    async def _send_oneway(conn: Connection, cmd: RemotingCommand) -> None:
        try:
            await conn.invoke_oneway(cmd)
        except Exception as exc:  # a member that went away is dropped by its own close
            log.debug("notify %s failed: %s", conn.remote_addr, exc)
