"""Topic routes from the name server, and the queue lists producers and consumers derive.

TopicRouteData JSON (GET_ROUTEINFO_BY_TOPIC)::

    {"queueDatas": [{"brokerName", "readQueueNums", "writeQueueNums", "perm", "topicSysFlag"}],
     "brokerDatas": [{"cluster", "brokerName", "brokerAddrs": {"0": "ip:port", ...}}], ...}

We ask for standard JSON (``acceptStandardJsonOnly``), but old name servers answer in fastjson's
dialect where ``brokerAddrs`` keys are bare numbers; ``parse_route`` accepts both.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .common import MASTER_ID, PERM_READ, PERM_WRITE, MessageQueue

_BARE_NUMBER_KEY = re.compile(rb"([{,]\s*)(-?\d+)(\s*:)")


@dataclass(frozen=True)
class QueueData:
    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int


@dataclass(frozen=True)
class TopicRouteData:
    queue_datas: tuple[QueueData, ...]
    broker_addrs: dict[str, dict[int, str]]  # brokerName -> brokerId -> address
    order_topic_conf: str | None = None

    def master_addr(self, broker_name: str) -> str | None:
        return self.broker_addrs.get(broker_name, {}).get(MASTER_ID)

    def master_addrs(self) -> list[str]:
        return sorted(a for addrs in self.broker_addrs.values() if (a := addrs.get(MASTER_ID)))

    def select_broker_addrs(self) -> list[str]:
        """One address per broker group: its master, or a slave while it has none
        (RocketMQ's BrokerData.selectBrokerAddr)."""
        return sorted(addrs.get(MASTER_ID) or addrs[min(addrs)] for addrs in self.broker_addrs.values() if addrs)


def parse_route(body: bytes) -> TopicRouteData:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = orjson.loads(_BARE_NUMBER_KEY.sub(rb'\1"\2"\3', body))
    return route_from_json(obj)


def route_from_json(obj: dict[str, Any]) -> TopicRouteData:
    queue_datas = tuple(
        sorted(
            (
                QueueData(
                    broker_name=str(q["brokerName"]),
                    read_queue_nums=int(q.get("readQueueNums", 0)),
                    write_queue_nums=int(q.get("writeQueueNums", 0)),
                    perm=int(q.get("perm", PERM_READ | PERM_WRITE)),
                )
                for q in obj.get("queueDatas") or []
            ),
            key=lambda q: q.broker_name,
        )
    )
    broker_addrs = {
        str(b["brokerName"]): {int(k): str(v) for k, v in (b.get("brokerAddrs") or {}).items()}
        for b in obj.get("brokerDatas") or []
    }
    return TopicRouteData(queue_datas, broker_addrs, obj.get("orderTopicConf"))


@dataclass
class TopicPublishInfo:
    """The writable queues of a topic, and the producer's round-robin position over them."""

    topic: str
    message_queue_list: list[MessageQueue]
    _index: int = field(default_factory=lambda: random.randrange(1 << 16))

    @classmethod
    def from_route(cls, topic: str, route: TopicRouteData) -> TopicPublishInfo:
        mqs = [
            MessageQueue(topic, q.broker_name, i)
            for q in route.queue_datas
            if q.perm & PERM_WRITE and route.master_addr(q.broker_name)
            for i in range(q.write_queue_nums)
        ]
        return cls(topic, mqs)

    def ok(self) -> bool:
        return bool(self.message_queue_list)

    def select_one_message_queue(self, last_broker_name: str | None = None) -> MessageQueue:
        """Next queue round-robin; after a failure, the next one on a different broker if any."""
        mqs = self.message_queue_list
        if not mqs:
            raise ValueError(f"topic {self.topic} has no writable queue")
        for _ in range(len(mqs)):
            self._index += 1
            mq = mqs[self._index % len(mqs)]
            if last_broker_name is None or mq.broker_name != last_broker_name:
                return mq
        self._index += 1
        return mqs[self._index % len(mqs)]


def subscribe_queues(topic: str, route: TopicRouteData) -> list[MessageQueue]:
    """The readable queues of a topic, sorted as every consumer of a group sorts them."""
    return sorted(
        MessageQueue(topic, q.broker_name, i)
        for q in route.queue_datas
        if q.perm & PERM_READ
        for i in range(q.read_queue_nums)
    )
