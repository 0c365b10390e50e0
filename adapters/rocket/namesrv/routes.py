"""The name server's routing state: which brokers are alive and which queues they serve.

Pure in-memory logic with an injected clock and no IO, so tests drive it directly. The state is
rebuilt from broker registrations (every 30 s from each broker), which is what lets several
name servers run side by side without talking to each other.

Tables (RocketMQ's RouteInfoManager keeps the same four):
- ``topic -> brokerName -> QueueData``: queues a master broker serves for a topic;
- ``brokerName -> BrokerData``: cluster and ``brokerId -> address`` (0 is the master);
- ``cluster -> {brokerName}``;
- ``(cluster, brokerAddr) -> BrokerLive``: last registration time, expiry, HA address.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MASTER_ID = 0
BROKER_TIMEOUT_S = 120.0
DEFAULT_QUEUE_NUMS = 16
DEFAULT_PERM = 6  # READ 4 | WRITE 2


@dataclass
class QueueData:
    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "brokerName": self.broker_name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicSysFlag": self.topic_sys_flag,
        }


@dataclass
class BrokerData:
    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)
    enable_acting_master: bool = False
    zone_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "cluster": self.cluster,
            "brokerName": self.broker_name,
            # Standard JSON: object keys are strings ("0"), never fastjson's bare numbers.
            "brokerAddrs": {str(k): v for k, v in sorted(self.broker_addrs.items())},
            "enableActingMaster": self.enable_acting_master,
        }
        if self.zone_name is not None:
            obj["zoneName"] = self.zone_name
        return obj


@dataclass
class BrokerLive:
    last_update_s: float
    timeout_s: float
    ha_server_addr: str | None
    data_version: Any = None
    connection: object | None = None


@dataclass
class Registration:
    cluster: str
    broker_name: str
    broker_addr: str
    broker_id: int
    ha_server_addr: str | None = None
    topic_configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    data_version: Any = None
    timeout_s: float | None = None
    enable_acting_master: bool = False
    zone_name: str | None = None
    connection: object | None = None


@dataclass
class RegisterResult:
    """What a registering broker is told: for a slave, its master's address and HA address."""

    master_addr: str | None = None
    ha_server_addr: str | None = None


class RouteTable:
    def __init__(
        self,
        *,
        broker_timeout_s: float = BROKER_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker_timeout_s = broker_timeout_s
        self._clock = clock
        self._topic_queues: dict[str, dict[str, QueueData]] = {}
        self._brokers: dict[str, BrokerData] = {}
        self._clusters: dict[str, set[str]] = {}
        self._live: dict[tuple[str, str], BrokerLive] = {}

    # -- broker membership ---------------------------------------------------------------------

    def register(self, reg: Registration) -> RegisterResult:
        self._clusters.setdefault(reg.cluster, set()).add(reg.broker_name)
        broker = self._brokers.get(reg.broker_name)
        if broker is None:
            broker = BrokerData(reg.cluster, reg.broker_name)
            self._brokers[reg.broker_name] = broker
        broker.enable_acting_master = reg.enable_acting_master
        broker.zone_name = reg.zone_name
        # The same address under another id means a role switch (slave promoted to master).
        for broker_id, addr in list(broker.broker_addrs.items()):
            if addr == reg.broker_addr and broker_id != reg.broker_id:
                del broker.broker_addrs[broker_id]
        broker.broker_addrs[reg.broker_id] = reg.broker_addr

        if reg.broker_id == MASTER_ID:
            for topic, config in reg.topic_configs.items():
                self._topic_queues.setdefault(topic, {})[reg.broker_name] = _queue_data(
                    reg.broker_name, config
                )

        self._live[(reg.cluster, reg.broker_addr)] = BrokerLive(
            last_update_s=self._clock(),
            timeout_s=self.broker_timeout_s if reg.timeout_s is None else reg.timeout_s,
            ha_server_addr=reg.ha_server_addr,
            data_version=reg.data_version,
            connection=reg.connection,
        )

        result = RegisterResult()
        if reg.broker_id != MASTER_ID:
            master_addr = broker.broker_addrs.get(MASTER_ID)
            master = self._live.get((reg.cluster, master_addr)) if master_addr else None
            if master is not None:
                result.master_addr = master_addr
                result.ha_server_addr = master.ha_server_addr
        return result

    def unregister(self, cluster: str, broker_name: str, broker_addr: str, broker_id: int) -> bool:
        """Remove one broker address; False if it was not registered."""
        self._live.pop((cluster, broker_addr), None)
        broker = self._brokers.get(broker_name)
        if broker is None or broker.broker_addrs.get(broker_id) != broker_addr:
            return False
        del broker.broker_addrs[broker_id]
        self._drop_broker_name_if_empty(broker)
        return True

    def remove_connection(self, connection: object) -> list[str]:
        """Forget every broker that registered over ``connection`` (it closed)."""
        gone = [key for key, live in self._live.items() if live.connection is connection]
        for cluster, addr in gone:
            self._remove_addr(cluster, addr)
        return [addr for _, addr in gone]

    def scan_expired(self) -> list[str]:
        """Drop brokers whose last registration is older than their timeout; their addresses."""
        now = self._clock()
        expired = [
            key for key, live in self._live.items() if now - live.last_update_s > live.timeout_s
        ]
        for cluster, addr in expired:
            self._remove_addr(cluster, addr)
        return [addr for _, addr in expired]

    def _remove_addr(self, cluster: str, addr: str) -> None:
        self._live.pop((cluster, addr), None)
        for broker in list(self._brokers.values()):
            if broker.cluster != cluster:
                continue
            for broker_id in [i for i, a in broker.broker_addrs.items() if a == addr]:
                del broker.broker_addrs[broker_id]
            self._drop_broker_name_if_empty(broker)

    def _drop_broker_name_if_empty(self, broker: BrokerData) -> None:
        if broker.broker_addrs:
            return
        del self._brokers[broker.broker_name]
        names = self._clusters.get(broker.cluster)
        if names is not None:
            names.discard(broker.broker_name)
            if not names:
                del self._clusters[broker.cluster]
        for topic in list(self._topic_queues):
            queues = self._topic_queues[topic]
            queues.pop(broker.broker_name, None)
            if not queues:
                del self._topic_queues[topic]

    # -- topics --------------------------------------------------------------------------------

    def topic_route(self, topic: str) -> dict[str, Any] | None:
        """TopicRouteData as a JSON-ready dict, or None if no live broker serves the topic."""
        queues = self._topic_queues.get(topic)
        if not queues:
            return None
        brokers = [self._brokers[name] for name in sorted(queues) if name in self._brokers]
        if not brokers:
            return None
        return {
            "queueDatas": [queues[name].to_json() for name in sorted(queues)],
            "brokerDatas": [b.to_json() for b in brokers],
            "filterServerTable": {},
        }

    def topics(self) -> list[str]:
        return sorted(self._topic_queues)

    def delete_topic(self, topic: str, cluster: str | None = None) -> bool:
        """Forget a topic's queues (only those of ``cluster``'s brokers if given)."""
        queues = self._topic_queues.get(topic)
        if queues is None:
            return False
        if cluster is None:
            del self._topic_queues[topic]
            return True
        for name in self._clusters.get(cluster, set()):
            queues.pop(name, None)
        if not queues:
            del self._topic_queues[topic]
        return True

    def cluster_info(self) -> dict[str, Any]:
        return {
            "brokerAddrTable": {name: b.to_json() for name, b in sorted(self._brokers.items())},
            "clusterAddrTable": {c: sorted(names) for c, names in sorted(self._clusters.items())},
        }

    def live_brokers(self) -> list[str]:
        return sorted(addr for _, addr in self._live)


def _queue_data(broker_name: str, config: Mapping[str, Any]) -> QueueData:
    def int_of(key: str, default: int) -> int:
        value = config.get(key, default)
        return int(value) if value is not None else default

    return QueueData(
        broker_name=broker_name,
        read_queue_nums=int_of("readQueueNums", DEFAULT_QUEUE_NUMS),
        write_queue_nums=int_of("writeQueueNums", DEFAULT_QUEUE_NUMS),
        perm=int_of("perm", DEFAULT_PERM),
        topic_sys_flag=int_of("topicSysFlag", 0),
    )
