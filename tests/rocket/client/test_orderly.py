"""Orderly consumption (MessageListenerOrderly) against a real ``logstore serve`` whose queue locks
last BROKER_LOCK_MS; the consumers renew theirs every LOCK_INTERVAL_MS (see orderly_support)."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.rocket.client import (
    AllocateMessageQueueByConfig,
    ClientConfig,
    ConsumeFromWhere,
    ConsumeOrderlyContext,
    ConsumeOrderlyStatus,
    Message,
    MessageListenerOrderly,
    MessageModel,
    MessageQueue,
    Producer,
    PushConsumer,
    SelectMessageQueueByHash,
    new_message,
)
from adapters.rocket.client.api import MQClientAPI
from adapters.rocket.client.consume_orderly import UNBOUNDED_RECONSUME_TIMES
from adapters.rocket.remoting import RemotingClient
from adapters.rocket.testing import REPO, ServeProcess, stop_process

from .cluster import create_topic
from .orderly_support import (
    LOCK_INTERVAL_MS,
    LOCK_MAX_LIVE_MS,
    check_orders,
    order_body,
    parse_body,
    short_lock_serve,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
SUCCESS = ConsumeOrderlyStatus.SUCCESS
SUSPEND = ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT
_ids = itertools.count()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with short_lock_serve(tmp_path_factory.mktemp("orderly")) as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def config(server: ServeProcess) -> ClientConfig:
    return ClientConfig(namesrv_addr=server.namesrv, client_ip="127.0.0.1", instance_name=f"o{next(_ids)}")


async def topic(server: ServeProcess, queues: int) -> str:
    name = unique("TO")
    await create_topic([server.broker], server.namesrv, name, queues)
    return name


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not met in {timeout_s} s"
        await asyncio.sleep(0.05)


class Recorder(MessageListenerOrderly):
    """Records every delivery (shared by the consumers of a test), the time each batch ran and
    on which consumer, and optionally sleeps per batch to keep batches in flight."""

    def __init__(self, log: list[tuple[str, Message]], intervals: list[tuple[str, int, float, float]],
                 name: str, batch_sleep_s: float = 0.0) -> None:
        self.log = log
        self.intervals = intervals
        self.name = name
        self.batch_sleep_s = batch_sleep_s
        self.batches: list[list[Message]] = []

    async def consume_message(self, msgs: list[Message], context: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        start = time.monotonic()
        if self.batch_sleep_s:
            await asyncio.sleep(self.batch_sleep_s)
        self.batches.append(msgs)
        self.log.extend((self.name, m) for m in msgs)
        self.intervals.append((self.name, msgs[0].queue_id, start, time.monotonic()))
        return SUCCESS


def orderly_consumer(server: ServeProcess, group: str, tpc: str, listener: MessageListenerOrderly,
                     **kw: object) -> PushConsumer:
    consumer = PushConsumer(group, client_config=config(server),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, **kw)  # type: ignore[arg-type]
    consumer.rebalance_lock_interval_ms = LOCK_INTERVAL_MS
    consumer.rebalance_lock_max_live_time_ms = LOCK_MAX_LIVE_MS
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener)
    return consumer


async def send_orders(producer: Producer, tpc: str, orders: list[str], steps: range) -> None:
    """Step by step, each order's messages to the queue its id hashes to (the seed's producer)."""
    selector = SelectMessageQueueByHash()
    for step in steps:
        for order in orders:
            await producer.send(new_message(tpc, order_body(order, step), tags="step", keys=[order]),
                                selector, order)


def sequences(log: list[tuple[str, Message]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for _, msg in log:
        order, step = parse_body(msg.body)
        out[order].append(step)
    return dict(out)


def assert_no_overlap(intervals: list[tuple[str, int, float, float]]) -> None:
    """No queue was in two consumers' listeners at the same moment."""
    by_queue: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    for name, qid, start, end in intervals:
        by_queue[qid].append((start, end, name))
    for qid, spans in by_queue.items():
        spans.sort()
        ends: dict[str, float] = {}  # per consumer: the latest end of its spans so far
        for start, end, name in spans:
            for other, other_end in ends.items():
                assert other == name or start >= other_end, (
                    f"queue {qid}: {other} ran until {other_end:.3f}, {name} started at {start:.3f}")
            ends[name] = max(end, ends.get(name, end))


async def committed_and_max(server: ServeProcess, group: str, tpc: str, queues: int
                            ) -> dict[int, tuple[int | None, int]]:
    """Per queue id: the group's committed offset on the broker and the queue's end."""
    async with RemotingClient() as remoting:
        api = MQClientAPI(remoting, [server.namesrv], 5.0)
        out = {}
        for qid in range(queues):
            mq = MessageQueue(tpc, "broker-a", qid)
            out[qid] = (await api.query_consumer_offset(server.broker, group, mq),
                        await api.get_max_offset(server.broker, mq))
        return out


async def test_orders_consumed_in_order_in_batches_and_committed(serve: ServeProcess) -> None:
    """Three orders (the seed's create/pay/complete, and more steps) over 4 queues, two orderly
    consumers: each order in order, batches of at most consumeMessageBatchMaxSize from one queue,
    and after shutdown the group's committed offset of every queue is its end."""
    tpc, group, queues = await topic(serve, 4), unique("GO"), 4
    orders = ["order-1", "order-2", "order-3", "order-4", "order-5"]
    log: list[tuple[str, Message]] = []
    intervals: list[tuple[str, int, float, float]] = []
    r1, r2 = Recorder(log, intervals, "c1"), Recorder(log, intervals, "c2")
    c1 = orderly_consumer(serve, group, tpc, r1, consume_message_batch_max_size=3)
    c2 = orderly_consumer(serve, group, tpc, r2, consume_message_batch_max_size=3)
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        await send_orders(producer, tpc, orders, range(10))
        async with c1, c2:
            await send_orders(producer, tpc, orders, range(10, 20))
            await wait_for(lambda: len(log) >= 100, what="100 deliveries")
            await asyncio.sleep(0.3)
    assert check_orders(sequences(log), dict.fromkeys(orders, 20)) == 0
    for batch in r1.batches + r2.batches:
        assert 1 <= len(batch) <= 3 and len({m.queue_id for m in batch}) == 1
        offsets = [m.queue_offset for m in batch]
        assert offsets == list(range(offsets[0], offsets[0] + len(batch)))
    assert max(len(b) for b in r1.batches + r2.batches) == 3
    assert_no_overlap(intervals)
    offsets = await committed_and_max(serve, group, tpc, queues)
    assert all(c == m for c, m in offsets.values()), f"committed offsets are not the queue ends: {offsets}"


async def test_order_holds_across_rebalance_and_restart(serve: ServeProcess) -> None:
    """While a producer keeps sending: c1 consumes alone, c2 joins (queues move to it), c2
    leaves (they move back), c1 restarts as c3. Duplicates are allowed, reordering is not,
    and nothing is missing; a queue is never in two listeners at once."""
    tpc, group = await topic(serve, 4), unique("GR")
    orders = [f"order-{i}" for i in range(8)]
    steps = 40
    log: list[tuple[str, Message]] = []
    intervals: list[tuple[str, int, float, float]] = []

    def make(name: str) -> PushConsumer:
        return orderly_consumer(serve, group, tpc, Recorder(log, intervals, name, batch_sleep_s=0.01),
                                consume_message_batch_max_size=2)

    def owned(c: PushConsumer) -> set[int]:
        return {mq.queue_id for mq in c.assigned_queues() if mq.topic == tpc}

    async with Producer(unique("P"), client_config=config(serve)) as producer:
        sender = asyncio.create_task(send_orders_slowly(producer, tpc, orders, range(steps)))
        c1, c2 = make("c1"), make("c2")
        await c1.start()
        try:
            await wait_for(lambda: len(log) >= 40, what="c1 consuming")
            await c2.start()
            await wait_for(lambda: len(owned(c1)) == 2 and len(owned(c2)) == 2, what="the queues split")
            await wait_for(lambda: any(n == "c2" for n, _ in log[-10:]), what="c2 consuming")
            await c2.shutdown()
            await wait_for(lambda: len(owned(c1)) == 4, what="c1 owning every queue again")
            mark = len(log)
            await wait_for(lambda: len(log) >= mark + 20, what="c1 consuming again")
        finally:
            await c2.shutdown()
            await c1.shutdown()
        c3 = make("c3")
        async with c3:
            await sender
            await wait_for(lambda: {parse_body(m.body) for _, m in log} >= {(o, s) for o in orders for s in range(steps)},
                           timeout_s=30, what="every message consumed")
            await asyncio.sleep(0.3)
    names = {n for n, _ in log}
    assert names == {"c1", "c2", "c3"}, names
    dupes = check_orders(sequences(log), dict.fromkeys(orders, steps))
    assert dupes <= 2 * 4 * 2, f"{dupes} duplicates for graceful handovers"  # at most a batch per queue per move
    assert_no_overlap(intervals)


async def send_orders_slowly(producer: Producer, tpc: str, orders: list[str], steps: range) -> None:
    for step in steps:
        await send_orders(producer, tpc, orders, range(step, step + 1))
        await asyncio.sleep(0.03)


async def test_suspend_retries_locally_and_blocks_the_queue(serve: ServeProcess) -> None:
    """SUSPEND_CURRENT_QUEUE_A_MOMENT (and an exception) retry the same message after the
    suspend time; nothing behind it in its queue runs meanwhile; reconsume_times counts."""
    tpc, group = await topic(serve, 1), unique("GS")
    seen: list[tuple[bytes, int, float]] = []

    def listener(msgs: list[Message], ctx: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        msg = msgs[0]
        seen.append((msg.body, msg.reconsume_times, time.monotonic()))
        tries = sum(1 for b, _, _ in seen if b == msg.body)
        if msg.body == b"m1" and tries <= 2:
            ctx.suspend_current_queue_time_millis = 300
            return SUSPEND
        if msg.body == b"m3" and tries == 1:
            raise RuntimeError("listener bug")  # suspends for the consumer's 1000 ms default
        return SUCCESS

    consumer = PushConsumer(group, client_config=config(serve), max_reconsume_times=UNBOUNDED_RECONSUME_TIMES,
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.rebalance_lock_interval_ms = LOCK_INTERVAL_MS
    consumer.rebalance_lock_max_live_time_ms = LOCK_MAX_LIVE_MS
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener, orderly=True)  # a plain function, on the thread pool
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        for i in range(5):
            await producer.send(new_message(tpc, b"m%d" % i))
        async with consumer:
            await wait_for(lambda: len(seen) == 8, what="8 deliveries")
            await asyncio.sleep(0.3)
    assert [(b, r) for b, r, _ in seen] == [
        (b"m0", 0), (b"m1", 0), (b"m1", 1), (b"m1", 2), (b"m2", 0), (b"m3", 0), (b"m3", 1), (b"m4", 0)]
    times = [t for _, _, t in seen]
    assert times[2] - times[1] >= 0.29 and times[3] - times[2] >= 0.29
    assert times[6] - times[5] >= 0.99


async def test_two_consumers_never_consume_one_queue_at_once(serve: ServeProcess) -> None:
    """Both consumers are told to own every queue (a fixed allocation): the broker lock lets only
    one consume at a time. When it shuts down (offsets persisted, then unlocked) the other takes
    over exactly where it stopped, in order."""
    tpc, group, queues = await topic(serve, 2), unique("GL"), 2
    mqs = [MessageQueue(tpc, "broker-a", q) for q in range(queues)]
    orders = ["order-a", "order-b", "order-c"]
    log: list[tuple[str, Message]] = []
    intervals: list[tuple[str, int, float, float]] = []

    def make(name: str) -> PushConsumer:
        return orderly_consumer(serve, group, tpc, Recorder(log, intervals, name, batch_sleep_s=0.005),
                                allocate_message_queue_strategy=AllocateMessageQueueByConfig(mqs))

    async with Producer(unique("P"), client_config=config(serve)) as producer:
        await send_orders(producer, tpc, orders, range(30))
        c1, c2 = make("c1"), make("c2")
        await c1.start()
        try:
            await wait_for(lambda: len(log) >= 10, what="c1 consuming")
            await c2.start()
            await send_orders(producer, tpc, orders, range(30, 50))
            await asyncio.sleep(3 * LOCK_INTERVAL_MS / 1000)  # c2 keeps asking; c1 keeps renewing
            assert {n for n, _ in log} == {"c1"}, "c2 consumed a queue c1 holds"
            await c1.shutdown()
            await send_orders(producer, tpc, orders, range(50, 60))
            await wait_for(lambda: len(log) >= 180, what="c2 finishing")
            await asyncio.sleep(0.3)
        finally:
            await c1.shutdown()
            await c2.shutdown()
    assert {n for n, _ in log} == {"c1", "c2"}
    assert check_orders(sequences(log), dict.fromkeys(orders, 60)) == 0
    assert_no_overlap(intervals)


def consumer_process(server: ServeProcess, group: str, tpc: str, record: Path, name: str,
                     sleep_ms: float) -> subprocess.Popen[str]:
    """orderly_consumer_proc.py as a subprocess, started (its "started" line read)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rocket.client.orderly_consumer_proc", "--namesrv", server.namesrv,
         "--group", group, "--topic", tpc, "--record", str(record), "--name", name,
         "--sleep-ms", str(sleep_ms), "--batch", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "started":
        end_process(proc)
        raise AssertionError(f"consumer {name} did not start: {line!r}")
    return proc


def end_process(proc: subprocess.Popen[str]) -> None:
    stop_process(proc, signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def recorded(record: Path) -> list[tuple[str, str, int]]:
    """(consumer, order, step) per processed message, in the order they were processed."""
    if not record.exists():
        return []
    out = []
    for line in record.read_text().splitlines():
        name, order, step, _qid, _offset = line.split()
        out.append((name, order, int(step)))
    return out


async def test_consumer_killed_mid_consumption_loses_nothing_and_keeps_order(
        serve: ServeProcess, tmp_path: Path) -> None:
    """Consumer A (a process) is SIGKILLed in the middle of orderly consumption; B takes over
    once A's broker locks lapse. The processed sequence of every order id, as the consumers
    recorded it durably before returning SUCCESS, is in order and complete."""
    tpc, group = await topic(serve, 4), unique("GK")
    orders = [f"order-{i}" for i in range(6)]
    steps = 40
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        await send_orders(producer, tpc, orders, range(steps))
    record = tmp_path / "processed.txt"
    total = len(orders) * steps
    a = consumer_process(serve, group, tpc, record, "A", sleep_ms=15)
    try:
        await wait_for(lambda: len(recorded(record)) >= total // 3, what="A processing a third")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
    finally:
        end_process(a)
    at_kill = len(recorded(record))
    assert at_kill < total, "A finished before it was killed"
    b = consumer_process(serve, group, tpc, record, "B", sleep_ms=0)
    try:
        await wait_for(lambda: {(o, s) for _, o, s in recorded(record)} >= {(o, s) for o in orders for s in range(steps)},
                       timeout_s=30, what="B processing the rest")
        await asyncio.sleep(0.3)
        assert b.stdin is not None and b.stdout is not None
        b.stdin.write("stop\n")
        b.stdin.flush()
        assert b.stdout.readline().strip() == "stopped"
        b.wait(10)
    finally:
        end_process(b)
    rows = recorded(record)
    assert {n for n, _, _ in rows} == {"A", "B"}
    by_order: dict[str, list[int]] = defaultdict(list)
    for _, order, step in rows:
        by_order[order].append(step)
    check_orders(dict(by_order), dict.fromkeys(orders, steps))


async def test_manual_commit_and_rollback(serve: ServeProcess) -> None:
    """``auto_commit=False``: SUCCESS holds the offset, ROLLBACK redelivers everything since the
    last COMMIT, COMMIT commits it; what is consumed after the last COMMIT stays uncommitted."""
    tpc, group = await topic(serve, 1), unique("GM")
    seen: list[bytes] = []

    def listener(msgs: list[Message], ctx: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        ctx.auto_commit = False
        body = msgs[0].body
        seen.append(body)
        if body == b"m2":
            ctx.suspend_current_queue_time_millis = 50
            return ConsumeOrderlyStatus.ROLLBACK if seen.count(b"m2") == 1 else ConsumeOrderlyStatus.COMMIT
        return SUCCESS

    consumer = PushConsumer(group, client_config=config(serve),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(tpc, "*")
    consumer.register_message_listener(listener, orderly=True)
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        for i in range(5):
            await producer.send(new_message(tpc, b"m%d" % i))
        async with consumer:
            await wait_for(lambda: len(seen) == 8, what="8 deliveries")
            await asyncio.sleep(0.3)
    assert seen == [b"m0", b"m1", b"m2", b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert (await committed_and_max(serve, group, tpc, 1))[0] == (3, 5)


async def test_broadcasting_orderly_needs_no_lock(serve: ServeProcess, tmp_path: Path) -> None:
    """BROADCASTING: both consumers get every message, each order in order, with no broker lock
    (both consume the same queues at once)."""
    tpc, group = await topic(serve, 2), unique("GB")
    orders = ["order-x", "order-y", "order-z"]
    logs: dict[str, list[tuple[str, Message]]] = {"b1": [], "b2": []}
    consumers = []
    for name in logs:
        consumer = orderly_consumer(serve, group, tpc, Recorder(logs[name], [], name),
                                    message_model=MessageModel.BROADCASTING, offsets_dir=tmp_path / name)
        consumers.append(consumer)
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        await send_orders(producer, tpc, orders, range(15))
        async with consumers[0], consumers[1]:
            await wait_for(lambda: all(len(log) >= 45 for log in logs.values()), what="everything at both")
            await asyncio.sleep(0.2)
    for log in logs.values():
        assert check_orders(sequences(log), dict.fromkeys(orders, 15)) == 0
