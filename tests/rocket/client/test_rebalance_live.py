"""Rebalance live: 2-3 push consumers of one group against a real broker, with each allocation
strategy. Once the group settles, every queue is owned by exactly one consumer, the one the
strategy names (over the sorted client ids, as every RocketMQ client computes it), and every
message is consumed by its queue's owner. Consumers joining, leaving (UNREGISTER_CLIENT) and
dying (SIGKILL: the broker sees only the connection close) move queues accordingly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import pytest

from adapters.rocket.client import (
    AllocateMessageQueueAveragely,
    AllocateMessageQueueAveragelyByCircle,
    AllocateMessageQueueByConfig,
    AllocateMessageQueueConsistentHash,
    AllocateMessageQueueStrategy,
    MessageQueue,
    Producer,
    PushConsumer,
    new_message,
)
from adapters.rocket.testing import REPO, stop_process

from .cluster import Serve
from .support import Collector, config, owned, push, topic, unique, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
QUEUES = 8
SETTLE_S = 15.0  # a join or leave reaches everyone by NOTIFY_CONSUMER_IDS_CHANGED, at once


def cid(instance: str) -> str:
    return f"127.0.0.1@{instance}"


def expected(strategy: AllocateMessageQueueStrategy, group: str, tpc: str, instances: Sequence[str]
             ) -> dict[str, list[int]]:
    """Each instance's queue ids under ``strategy`` when exactly ``instances`` are online."""
    mqs = [MessageQueue(tpc, "broker-a", i) for i in range(QUEUES)]
    cids = sorted(cid(i) for i in instances)
    return {i: sorted(mq.queue_id for mq in strategy.allocate(group, cid(i), mqs, cids))
            for i in instances}


@contextlib.asynccontextmanager
async def group_of(server: Serve, group: str, tpc: str, instances: Sequence[str],
                   strategies: Sequence[AllocateMessageQueueStrategy]
                   ) -> AsyncIterator[dict[str, tuple[PushConsumer, Collector]]]:
    members = {
        inst: push(server, group, tpc, instance=inst, allocate_message_queue_strategy=strategy)
        for inst, strategy in zip(instances, strategies, strict=True)
    }
    try:
        for consumer, _seen in members.values():
            await consumer.start()
        yield members
    finally:
        for consumer, _seen in members.values():
            await consumer.shutdown()


async def settle(members: dict[str, tuple[PushConsumer, Collector]], tpc: str,
                 want: dict[str, list[int]]) -> None:
    await wait_for(lambda: {i: owned(members[i][0], tpc) for i in want} == want, SETTLE_S,
                   f"assignment {want}")


async def check_consumed_by_owners(server: Serve, tpc: str,
                                   members: dict[str, tuple[PushConsumer, Collector]],
                                   want: dict[str, list[int]]) -> None:
    """One message per queue; each consumed once, by the queue's owner."""
    async with Producer(unique("P"), client_config=config(server)) as producer:
        for q in range(QUEUES):
            await producer.send(new_message(tpc, b"q%d" % q), mq=MessageQueue(tpc, "broker-a", q))

    def consumed() -> dict[str, list[int]]:
        return {i: sorted(m.queue_id for m in members[i][1].msgs) for i in want}

    await wait_for(lambda: consumed() == want, SETTLE_S, "every queue's message at its owner")


def partition(want: dict[str, list[int]]) -> None:
    taken = sorted(q for qs in want.values() for q in qs)
    assert taken == list(range(QUEUES)), want


@pytest.mark.parametrize("strategy", [
    AllocateMessageQueueAveragely(),
    AllocateMessageQueueAveragelyByCircle(),
    AllocateMessageQueueConsistentHash(),
], ids=lambda s: s.get_name())
async def test_three_consumers_own_what_the_strategy_says(
    rocket_serve: Serve, strategy: AllocateMessageQueueStrategy
) -> None:
    tpc, group = await topic(rocket_serve, QUEUES), unique("G")
    instances = sorted(unique(f"c{n}") for n in range(3))
    want = expected(strategy, group, tpc, instances)
    partition(want)
    if strategy.get_name() == "AVG":  # RocketMQ's pages: 3, 3, 2
        assert list(want.values()) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    if strategy.get_name() == "AVG_BY_CIRCLE":  # dealt like cards
        assert list(want.values()) == [[0, 3, 6], [1, 4, 7], [2, 5]]
    async with group_of(rocket_serve, group, tpc, instances, [strategy] * 3) as members:
        await settle(members, tpc, want)
        await check_consumed_by_owners(rocket_serve, tpc, members, want)


async def test_by_config_owns_the_configured_queues(rocket_serve: Serve) -> None:
    tpc, group = await topic(rocket_serve, QUEUES), unique("G")
    instances = [unique("c1"), unique("c2")]
    want = {instances[0]: [0, 1, 2, 5], instances[1]: [3, 4, 6, 7]}
    strategies = [AllocateMessageQueueByConfig([MessageQueue(tpc, "broker-a", q) for q in want[i]])
                  for i in instances]
    async with group_of(rocket_serve, group, tpc, instances, strategies) as members:
        await settle(members, tpc, want)
        await check_consumed_by_owners(rocket_serve, tpc, members, want)


async def _start_process(server: Serve, group: str, tpc: str, instance: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rocket.client.push_consumer_proc", "--namesrv", server.namesrv,
         "--group", group, "--topic", tpc, "--instance", instance],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)  # the loop keeps serving c1 meanwhile
    if line.strip() != "started":
        _end_process(proc)
        raise AssertionError(f"consumer process {instance} did not start: {line!r}")
    return proc


def _end_process(proc: subprocess.Popen[str]) -> None:
    stop_process(proc, signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


async def test_joins_and_leaves_reassign_queues(rocket_serve: Serve) -> None:
    """c1 alone; c3 (another process) joins; c2 joins; c2 shuts down; c3 is SIGKILLed."""
    tpc, group = await topic(rocket_serve, QUEUES), unique("G")
    strategy = AllocateMessageQueueAveragely()
    c1, c2, c3 = sorted(unique(f"c{n}") for n in range(3))
    (first, seen1), (second, seen2) = (push(rocket_serve, group, tpc, instance=i) for i in (c1, c2))
    members = {c1: (first, seen1), c2: (second, seen2)}

    def mine(*online: str) -> dict[str, list[int]]:
        want = expected(strategy, group, tpc, online)
        partition(want)
        return {i: qs for i, qs in want.items() if i in members}

    proc: subprocess.Popen[str] | None = None
    try:
        await first.start()
        await settle(members, tpc, mine(c1))
        assert owned(first, tpc) == list(range(QUEUES))
        proc = await _start_process(rocket_serve, group, tpc, c3)
        await settle(members, tpc, mine(c1, c3))  # c1 keeps [0..3], c3 took [4..7]
        await second.start()
        await settle(members, tpc, mine(c1, c2, c3))
        assert owned(first, tpc) == [0, 1, 2] and owned(second, tpc) == [3, 4, 5]
        await second.shutdown()  # leaves politely: UNREGISTER_CLIENT
        await settle({c1: members[c1]}, tpc, {c1: mine(c1, c3)[c1]})
        proc.send_signal(signal.SIGKILL)  # dies: the broker notices the closed connection
        await asyncio.to_thread(proc.wait, 10)
        await settle({c1: members[c1]}, tpc, {c1: list(range(QUEUES))})
        async with Producer(unique("P"), client_config=config(rocket_serve)) as producer:
            for q in range(QUEUES):
                await producer.send(new_message(tpc, b"after%d" % q), mq=MessageQueue(tpc, "broker-a", q))
        await wait_for(lambda: {b"after%d" % q for q in range(QUEUES)} <= seen1.bodies(), SETTLE_S,
                       "the survivor consuming every queue")
    finally:
        if proc is not None:
            _end_process(proc)
        await second.shutdown()
        await first.shutdown()
