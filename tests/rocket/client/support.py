"""Helpers the client's integration tests share: unique names, client configs, topics, waiting
with a deadline, a recording listener, and reading a group's offset straight from the broker."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    LitePullConsumer,
    Message,
    MessageQueue,
    PushConsumer,
)
from adapters.rocket.client.api import MQClientAPI
from adapters.rocket.remoting import RemotingClient

from .cluster import create_topic

OK = ConsumeConcurrentlyStatus.CONSUME_SUCCESS
_ids = itertools.count()


class NameServer(Protocol):
    namesrv: str


class Server(NameServer, Protocol):
    """``cluster.Serve`` or ``testing.ServeProcess``: one name server and one broker."""

    broker: str


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def config(server: NameServer, instance: str | None = None, **options: Any) -> ClientConfig:
    """A client config on ``server``; each call is a distinct client id unless ``instance``."""
    return ClientConfig(namesrv_addr=server.namesrv, client_ip="127.0.0.1",
                        instance_name=instance or f"i{next(_ids)}_{uuid.uuid4().hex[:4]}", **options)


async def topic(server: Server, queues: int = 4) -> str:
    name = unique("T")
    await create_topic([server.broker], server.namesrv, name, queues)
    return name


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met within {timeout_s} s"
        await asyncio.sleep(0.05)


class Collector:
    """A listener that records every batch it is given."""

    def __init__(self) -> None:
        self.batches: list[list[Message]] = []

    async def consume_message(self, msgs: list[Message], ctx: ConsumeConcurrentlyContext
                              ) -> ConsumeConcurrentlyStatus:
        self.batches.append(list(msgs))
        return OK

    @property
    def msgs(self) -> list[Message]:
        return [m for batch in self.batches for m in batch]

    def bodies(self) -> set[bytes]:
        return {m.body for m in self.msgs}


def push(server: Server, group: str, tpc: str, expr: str = "*", *, instance: str | None = None,
         client_config: ClientConfig | None = None, **options: Any) -> tuple[PushConsumer, Collector]:
    consumer = PushConsumer(group, client_config=client_config or config(server, instance), **options)
    consumer.subscribe(tpc, expr)
    collector = Collector()
    consumer.register_message_listener(collector)
    return consumer, collector


def owned(consumer: PushConsumer, tpc: str) -> list[int]:
    """Queue ids of ``tpc`` the consumer owns now (not its retry topic's)."""
    return [mq.queue_id for mq in consumer.assigned_queues() if mq.topic == tpc]


async def drain(consumer: LitePullConsumer, count: int, timeout_s: float = 10.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += await consumer.poll(200)
    return got


async def pull_from_first(server: Server, tpc: str, count: int) -> list[Message]:
    """``count`` messages of ``tpc`` read by a new LitePullConsumer group from the first offset."""
    consumer = LitePullConsumer(unique("G"), client_config=config(server),
                                consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(tpc, "*")
    async with consumer:
        return await drain(consumer, count)


async def broker_offset(server: Server, group: str, mq: MessageQueue) -> int | None:
    """The offset the broker holds for ``group`` on ``mq`` (QUERY_CONSUMER_OFFSET), or None."""
    async with RemotingClient() as remoting:
        api = MQClientAPI(remoting, [server.namesrv], 5.0)
        return await api.query_consumer_offset(server.broker, group, mq)


async def run_until_stop(consumer: PushConsumer) -> None:
    """For a consumer process: start, print ``started``, run until stdin says ``stop`` or
    closes, shut down, print ``stopped``."""
    await consumer.start()
    print("started", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            break
    await consumer.shutdown()
    print("stopped", flush=True)
