"""``logstore bench rocket``: the RocketMQ adapter end to end, in the spirit of RocketMQ's
benchmark producer and consumer. Broker and client run on this machine: the bench starts its
own ``logstore serve`` subprocess (free ports, a data dir under ``--dir`` or a temporary one,
``flushDiskType`` set through a ``-c`` broker.conf) and drives it with this project's Python
client (adapters.rocket.client, asyncio on uvloop) from this process. Messages are 1 KiB.

    logstore bench rocket [SCENARIO] [--quick] [--json] [--dir DIR] [--backlog 1000000] [--seconds 5]
                          [--only sync1,sync1nopoll,sync1nopin,sync1bp,sync64,tx,batch,consume,e2e,delay,orderly]

Scenarios and figures (``<scenario>.tps`` msg/s, ``.avg`` and ``.p99`` ms latency):

* ``sync1``: SYNC_FLUSH broker (its defaults, so ``busyPollMicros`` 100: it polls its sockets
  for 100 us after each answer; ``cpuAffinity`` auto), one synchronous send at a time for ``--seconds``, as RocketMQ's
  benchmark producer sends: ``DefaultMQProducer.send`` from a thread (the sync facade, which
  sends on the caller's thread over a blocking connection once the route is cached); latency
  is the send's round trip. Baseline: a raw loop of ``os.write`` of 1 KiB + ``os.fdatasync`` on
  a file in the same directory, measured in the same run (ops/s and its latencies). Goal: tps
  ratio >= 0.5 (a round trip plus an fsync is the floor).
* ``sync1async``: the same with the asyncio API, ``await Producer.send`` one at a time on this
  process's event loop. Baseline and goal as ``sync1``.
* ``sync1floor``: that floor, measured: one 1 KiB request at a time over loopback TCP to another
  process that writes and fdatasyncs each before its 8-byte answer (``tools/fsync_echo.py``:
  blocking sockets, no framing, no event loop). Baseline: the raw fsync loop. No goal: it shows
  how much of ``sync1``'s distance from the raw loop the machine itself imposes.
* ``sync1nopoll``: ``sync1`` against a broker with ``busyPollMicros=0`` (it sleeps in epoll as
  soon as it has nothing to do), on its own SYNC_FLUSH broker. Baseline: the raw fsync loop,
  measured again in that run. No goal: it shows what the broker's default polling adds.
* ``sync1nopin``: ``sync1`` against a broker with ``cpuAffinity=off`` (the kernel places it on
  any CPU; by default it runs on the CPU taking its disk's interrupts, when one CPU takes them
  all: logstore/affinity.py), on its own SYNC_FLUSH broker. Baseline: the raw fsync loop,
  measured again in that run. No goal: it shows what the default placement adds. Every
  ``sync1*`` figure's ``params.broker_cpus`` lists the CPUs its broker may run on.
* ``sync1bp``: ``sync1`` with busy polling (remoting/busypoll.py) opted into on both sides, on
  its own SYNC_FLUSH broker: ``busyPollMicros`` ``--busy-poll-us`` (200) in its broker.conf and
  the producer's ``busy_poll_micros`` ``--client-busy-poll-us`` (1000): each polls its socket for
  that long after writing instead of sleeping until the peer's write wakes it. Baseline: the raw
  fsync loop, measured again in that run. Goal: tps ratio >= 0.5.
* ``sync64``: the same broker as ``sync1``, ``--senders`` (64) tasks each sending one at a time. Baseline:
  the raw fsync loop again. Goal: >= 20,000 msg/s.
* ``tx``: the SYNC_FLUSH broker, transactional sends on the commit path: ``TransactionProducer.
  send_message_in_transaction`` (half message, an async local transaction answering
  COMMIT_MESSAGE, END_TRANSACTION oneway) from 1 and from ``--senders`` tasks (figures ``tx1``,
  ``tx<senders>``); latency is one call. Baseline: plain ``Producer.send`` from as many tasks,
  measured just before in the same run. Every committed message is counted in the topic
  afterwards (``params.committed``).
* ``batch``: ASYNC_FLUSH broker, ``--backlog`` messages with ``Producer.send_batch`` in batches
  of ``--batch`` (256) from ``--batch-senders`` (4) tasks, round-robin over the topic's queues;
  latency is one batch's round trip. Baseline: a raw sequential ``os.write`` of the same bytes
  in batch-sized blocks, then one ``fdatasync`` (msg/s; latency per block). Goal: >= 100,000.
* ``consume``: a ``PushConsumer`` (new group, CONSUME_FROM_FIRST_OFFSET, an async listener)
  consumes the batch scenario's backlog with RocketMQ's defaults (``--pull-batch`` 32,
  ``--consume-batch`` 1: the listener gets one message a call); tps from its start until the
  last message reached the listener. A backlog has no per-message latency, so only tps is
  reported, with the CPU time per message of the broker process and of this (client) process
  (``params.broker_cpu_us_per_msg``, ``client_cpu_us_per_msg``; the two share the machine's
  cores). Baseline: a raw read of the broker's data files (page cache), as msg/s at the
  backlog's stored bytes per message. Goal: >= 100,000 msg/s.
* ``e2e``: the ASYNC_FLUSH broker, a PushConsumer long-polling a fresh topic while a producer
  sends (``send_async``) at ``--rate`` (1,000) msg/s for ``--latency-seconds`` (10); latency is
  from just before the send to the listener seeing the message (one clock: one process).
  Baseline: a loopback TCP ping-pong of 1 KiB in this process (asyncio streams). Goal: p99 <=
  10 ms.
* ``delay``: scheduled messages (delay levels and TIMER_DELAY_MS) at ``--rate`` msg/s for
  ``--delay-seconds`` (10) on their own ASYNC_FLUSH broker; ``delay.p99`` is how late they reach
  the listener (tools.bench_delay). Goal: p99 <= 1,000 ms.

* ``orderly``: the ASYNC_FLUSH broker, ``--orderly-backlog`` (200,000) messages pre-loaded into
  an 8-queue topic (batches sent round-robin to the queues), then two orderly PushConsumers
  (MessageListenerOrderly; queue locks, one batch per queue at a time, a commit after each) in
  one group drain it; tps from the first consumer's start until the last message reached a
  listener (the queues' split between the two, with its lock handover, is part of it).
  ``consumeMessageBatchMaxSize`` is ``--orderly-batch`` (1, RocketMQ's default). Baseline: two
  concurrent PushConsumers with the same settings drain the same backlog in the same run. Each
  queue's offsets are checked to reach the listeners in increasing order (``params.reordered``
  must be 0).

``--quick`` shrinks everything (for tests). ``--json`` prints one JSON object per figure with
keys ``name value unit baseline ratio goal params`` (as ``logstore bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from adapters.rocket.admin import Admin, TopicSpec
from adapters.rocket.broker.config import BUSY_POLL_MICROS_DEFAULT
from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    ConsumeOrderlyStatus,
    DefaultMQProducer,
    LocalTransactionState,
    Message,
    Producer,
    PushConsumer,
    TransactionListener,
    TransactionProducer,
)
from adapters.rocket.remoting.busypoll import WINDOW_US_MAX
from adapters.rocket.testing import STOP_GRACE_S, ServeProcess
from logstore import runtime
from tools import benchkit
from tools.bench_delay import bench_delay
from tools.benchkit import Figure, Goal, Stats, cpu_seconds, note, workdir
from tools.cli_support import parse_args
from tools.fsync_echo import fsync_echo_rate

MSG_BYTES = 1024
SCENARIOS = ("sync1", "sync1nopoll", "sync1nopin", "sync1bp", "sync64", "tx", "batch", "consume", "e2e", "delay", "orderly")
perf = time.perf_counter


# -- figures and output ------------------------------------------------------------------------------


class Reporter(benchkit.Reporter):
    """Figures with 4 decimals in JSON and 2 in the table below 10 (latencies in ms)."""

    def __init__(self, as_json: bool) -> None:
        super().__init__(as_json, value_digits=4, fine_below=10)

    def latency(self, name: str, lat: Stats, base: Stats, params: dict[str, Any],
                p99_goal: Goal | None = None) -> None:
        self.emit(Figure(f"{name}.avg", lat.avg_ms, "ms", base.avg_ms, None, params))
        self.emit(Figure(f"{name}.p99", lat.p99_ms, "ms", base.p99_ms, p99_goal, params))


# -- the broker under test -------------------------------------------------------------------------------


class Server:
    """``logstore serve`` as a subprocess on free ports (its stderr is the bench's)."""

    def __init__(self, root: Path, flush: str, busy_poll_us: int | None = None, client_busy_poll_us: int = 0,
                 cpu_affinity: str | None = None, variant: str = "") -> None:
        self.root = root
        self.flush = flush
        # the broker's busyPollMicros and cpuAffinity (None: its default, not written to broker.conf)
        self.busy_poll_us = BUSY_POLL_MICROS_DEFAULT if busy_poll_us is None else busy_poll_us
        self.conf = "".join(f"{key}={value}\n" for key, value in (("busyPollMicros", busy_poll_us),
                                                                   ("cpuAffinity", cpu_affinity))
                            if value is not None)
        self.client_busy_poll_us = client_busy_poll_us  # the clients' busy_poll_micros
        self.variant = variant  # sync1's figure for this broker: sync1<variant>
        self.serve: ServeProcess | None = None
        self.namesrv = self.broker = ""

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "broker.conf"
        conf.write_text(f"brokerName=bench-{self.flush.lower()}\nflushDiskType={self.flush}\n"
                        f"autoCreateTopicEnable=false\n{self.conf}")
        self.serve = ServeProcess(self.root / "data", conf, stderr=None)
        self.serve.start()
        self.namesrv, self.broker = self.serve.namesrv, self.serve.broker

    def stop(self) -> None:
        if self.serve is None:
            return
        self.serve.stop()
        if self.serve.killed:
            note(f"logstore serve ({self.flush}) did not stop within {STOP_GRACE_S:g} s of SIGTERM; killed")
        self.serve = None

    def cpus(self) -> str:
        """The CPUs the broker process may run on (its ``cpuAffinity`` applied), as the kernel
        lists them."""
        pid = self.serve.pid if self.serve is not None else None
        assert pid is not None
        with open(f"/proc/{pid}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("Cpus_allowed_list:"))

    def client_config(self, label: str) -> ClientConfig:
        return ClientConfig(namesrv_addr=self.namesrv, client_ip="127.0.0.1", instance_name=f"bench-{label}",
                            busy_poll_micros=self.client_busy_poll_us)

    async def create_topic(self, topic: str, queues: int) -> None:
        async with Admin(self.namesrv) as admin:
            await admin.update_topic([self.broker], TopicSpec(topic, queues, queues))


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- raw baselines ------------------------------------------------------------------------------------------


def raw_fsync_loop(directory: Path, seconds: float) -> tuple[float, Stats]:
    """One-at-a-time 1 KiB ``os.write`` + ``os.fdatasync``: ops/s and latencies."""
    path = directory / "baseline-fsync.tmp"
    rec = os.urandom(MSG_BYTES)
    lat: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = perf()
        end = start + seconds
        while True:
            t0 = perf()
            if t0 >= end:
                break
            os.write(fd, rec)
            os.fdatasync(fd)
            lat.append(perf() - t0)
        elapsed = perf() - start
    finally:
        os.close(fd)
        path.unlink()
    return len(lat) / elapsed, Stats(lat)


def raw_sequential_write(directory: Path, messages: int, per_block: int) -> tuple[float, Stats]:
    """The backlog's bytes in batch-sized blocks, then one fdatasync: msg/s and block latencies."""
    path = directory / "baseline-write.tmp"
    block = os.urandom(per_block * MSG_BYTES)
    blocks = max(1, messages // per_block)
    lat: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = perf()
        for _ in range(blocks):
            t0 = perf()
            os.write(fd, block)
            lat.append(perf() - t0)
        os.fdatasync(fd)
        elapsed = perf() - start
    finally:
        os.close(fd)
        path.unlink()
    return blocks * per_block / elapsed, Stats(lat)


def raw_read(directory: Path) -> tuple[int, float]:
    """(bytes, seconds) to read every file under ``directory`` (read once first: page cache)."""
    files = [p for p in directory.rglob("*") if p.is_file()]

    def read_all() -> int:
        total = 0
        for p in files:
            with open(p, "rb", buffering=0) as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
        return total

    read_all()
    start = perf()
    total = read_all()
    return total, perf() - start


async def raw_ping_pong(rounds: int) -> Stats:
    """Loopback TCP request/response of 1 KiB with asyncio streams, in this process."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                writer.write(await reader.readexactly(MSG_BYTES))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = os.urandom(MSG_BYTES)
    lat = []
    for i in range(rounds + 50):
        t0 = perf()
        writer.write(payload)
        await reader.readexactly(MSG_BYTES)
        if i >= 50:
            lat.append(perf() - t0)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return Stats(lat)


# -- scenarios ----------------------------------------------------------------------------------------------


def body() -> bytes:
    return os.urandom(MSG_BYTES)


async def send_loop(send: Callable[[Message], Awaitable[object]], topic: str, until: float, payload: bytes,
                    lat: list[float]) -> int:
    """One ``send`` (``Producer.send``, ``send_message_in_transaction``) at a time until
    ``until``: how many, each one's latency appended to ``lat``."""
    n = 0
    while True:
        t0 = perf()
        if t0 >= until:
            return n
        await send(Message(topic, payload))
        lat.append(perf() - t0)
        n += 1


def blocking_send_rate(server: Server, topic: str, payload: bytes, seconds: float) -> tuple[float, list[float]]:
    """``DefaultMQProducer.send`` one at a time for ``seconds`` (after 0.2 s of warm-up: the
    route, the connection): (msg/s, latencies). Blocking: run it in a thread."""
    producer = DefaultMQProducer("bench_sync1_pg", client_config=server.client_config("sync1"))
    producer.start()
    try:
        blocking_send_loop(producer.send, topic, perf() + 0.2, payload, [])
        lat: list[float] = []
        start = perf()
        n = blocking_send_loop(producer.send, topic, start + seconds, payload, lat)
        return n / (perf() - start), lat
    finally:
        producer.shutdown()


def blocking_send_loop(send: Callable[[Message], object], topic: str, until: float, payload: bytes,
                       lat: list[float]) -> int:
    """:func:`send_loop` with the synchronous API."""
    n = 0
    while True:
        t0 = perf()
        if t0 >= until:
            return n
        send(Message(topic, payload))
        lat.append(perf() - t0)
        n += 1


async def bench_sync(server: Server, rep: Reporter, args: argparse.Namespace, work: Path) -> None:
    topic = "BenchSync"
    await server.create_topic(topic, args.queues)
    await asyncio.to_thread(os.sync)  # start on an idle device, not one still writing an earlier run's data
    raw_ops, raw_lat = raw_fsync_loop(work, args.baseline_seconds)
    base = {"flushDiskType": "SYNC_FLUSH", "message_bytes": MSG_BYTES, "seconds": args.seconds}
    producer = Producer("bench_sync_pg", client_config=server.client_config("sync"))
    await producer.start()
    try:
        payload = body()
        await send_loop(producer.send, topic, perf() + 0.2, payload, [])  # route, connection
        if "sync1" in args.only:
            # sync1 and sync1async on the default broker; sync1bp (the client's polling is its event
            # loop's) asyncio only; sync1nopoll and sync1nopin (a default turned off) sync only
            name = f"sync1{server.variant}"
            p = {**base, "senders": 1, "busyPollMicros": server.busy_poll_us,
                 "client_busy_poll_micros": server.client_busy_poll_us, "broker_cpus": server.cpus()}
            if server.variant != "bp":
                tps, lat = await asyncio.to_thread(blocking_send_rate, server, topic, payload, args.seconds)
                rep.emit(Figure(f"{name}.tps", tps, "msg/s", raw_ops, None if server.variant else Goal("ratio", 0.5),
                                {**p, "api": "sync"}))
                rep.latency(name, Stats(lat), raw_lat, p)
                if server.variant:
                    return
            lat = []
            start = perf()
            n = await send_loop(producer.send, topic, start + args.seconds, payload, lat)
            tps = n / (perf() - start)
            name = "sync1bp" if server.variant else "sync1async"
            rep.emit(Figure(f"{name}.tps", tps, "msg/s", raw_ops, Goal("ratio", 0.5), {**p, "api": "asyncio"}))
            rep.latency(name, Stats(lat), raw_lat, p)
            if not server.variant:
                floor_ops, floor_lat = await asyncio.to_thread(fsync_echo_rate, work, args.baseline_seconds)
                p = {"message_bytes": MSG_BYTES, "seconds": args.baseline_seconds}
                rep.emit(Figure("sync1floor.tps", floor_ops, "msg/s", raw_ops, None, p))
                rep.latency("sync1floor", Stats(floor_lat), raw_lat, p)
        if "sync64" in args.only:
            lat = []
            start = perf()
            counts = await asyncio.gather(*(send_loop(producer.send, topic, start + args.seconds, payload, lat)
                                            for _ in range(args.senders)))
            tps = sum(counts) / (perf() - start)
            p = {**base, "senders": args.senders}
            rep.emit(Figure(f"sync{args.senders}.tps", tps, "msg/s", raw_ops, Goal("value", 20_000), p))
            rep.latency(f"sync{args.senders}", Stats(lat), raw_lat, p)
    finally:
        await producer.shutdown()
    if "tx" in args.only:
        await bench_tx(server, rep, args)


class CommitAll(TransactionListener):
    async def execute_local_transaction(self, msg: Message, arg: Any) -> LocalTransactionState:
        return LocalTransactionState.COMMIT_MESSAGE

    async def check_local_transaction(self, msg: Message) -> LocalTransactionState:
        return LocalTransactionState.COMMIT_MESSAGE


async def bench_tx(server: Server, rep: Reporter, args: argparse.Namespace) -> None:
    """Transactional sends (commit path) beside plain sync sends with as many senders."""
    topic, plain_topic = "BenchTx", "BenchTxPlain"
    await server.create_topic(topic, args.queues)
    await server.create_topic(plain_topic, args.queues)
    plain = Producer("bench_tx_plain_pg", client_config=server.client_config("tx-plain"))
    tx = TransactionProducer("bench_tx_pg", client_config=server.client_config("tx"),
                             transaction_listener=CommitAll())
    await plain.start()
    await tx.start()
    payload = body()
    try:
        await send_loop(plain.send, plain_topic, perf() + 0.2, payload, [])  # routes, connections
        sent = await send_loop(tx.send_message_in_transaction, topic, perf() + 0.2, payload, [])
        for senders in sorted({1, args.senders}):
            base_lat: list[float] = []
            start = perf()
            counts = await asyncio.gather(*(send_loop(plain.send, plain_topic, start + args.seconds, payload, base_lat)
                                            for _ in range(senders)))
            base_tps = sum(counts) / (perf() - start)
            lat: list[float] = []
            start = perf()
            send_tx = tx.send_message_in_transaction
            counts = await asyncio.gather(*(send_loop(send_tx, topic, start + args.seconds, payload, lat)
                                            for _ in range(senders)))
            tps = sum(counts) / (perf() - start)
            sent += sum(counts)
            committed = await committed_count(server, topic, sent)
            p = {"flushDiskType": "SYNC_FLUSH", "message_bytes": MSG_BYTES, "seconds": args.seconds,
                 "senders": senders, "committed": committed, "sent": sent}
            rep.emit(Figure(f"tx{senders}.tps", tps, "msg/s", base_tps, None, p))
            rep.latency(f"tx{senders}", Stats(lat), Stats(base_lat), p)
    finally:
        await tx.shutdown()
        await plain.shutdown()


async def committed_count(server: Server, topic: str, expected: int, timeout_s: float = 10.0) -> int:
    """Messages in ``topic`` once ``expected`` are there (END_TRANSACTION is oneway), or at the timeout."""
    deadline = perf() + timeout_s
    async with Admin(server.namesrv) as admin:
        while True:
            count = int(sum(r["maxOffset"] - r["minOffset"] for r in await admin.topic_status(topic)))
            if count >= expected or perf() >= deadline:
                return count
            await asyncio.sleep(0.05)


async def batch_sender(producer: Producer, topic: str, batches: list[int], payload: bytes,
                       lat: list[float]) -> None:
    while batches:
        n = batches.pop()
        msgs = [Message(topic, payload) for _ in range(n)]
        t0 = perf()
        await producer.send_batch(msgs)
        lat.append(perf() - t0)


async def bench_async(server: Server, rep: Reporter, args: argparse.Namespace, work: Path) -> None:
    topic = "BenchBatch"
    await server.create_topic(topic, args.queues)
    base = {"flushDiskType": "ASYNC_FLUSH", "message_bytes": MSG_BYTES}
    producer = Producer("bench_batch_pg", client_config=server.client_config("async"))
    await producer.start()
    payload = body()
    try:
        await producer.send_batch([Message(topic, payload)])  # route, connection
        backlog = 1
        if "batch" in args.only or "consume" in args.only:
            raw_tps, raw_lat = raw_sequential_write(work, args.backlog, args.batch)
            full, rest = divmod(args.backlog, args.batch)
            batches = [args.batch] * full + ([rest] if rest else [])
            lat: list[float] = []
            start = perf()
            await asyncio.gather(*(batch_sender(producer, topic, batches, payload, lat)
                                   for _ in range(args.batch_senders)))
            tps = args.backlog / (perf() - start)
            backlog += args.backlog
            p = {**base, "messages": args.backlog, "batch": args.batch, "senders": args.batch_senders}
            if "batch" in args.only:
                rep.emit(Figure("batch.tps", tps, "msg/s", raw_tps, Goal("value", 100_000), p))
                rep.latency("batch", Stats(lat), raw_lat, p)
        if "consume" in args.only:
            await bench_consume(server, rep, args, topic, backlog)
        if "e2e" in args.only:
            await bench_e2e(server, rep, args, producer)
        if "orderly" in args.only:
            await bench_orderly(server, rep, args, producer)
    finally:
        await producer.shutdown()


async def bench_consume(server: Server, rep: Reporter, args: argparse.Namespace, topic: str,
                        backlog: int) -> None:
    data_bytes, read_s = raw_read(server.root / "data")
    raw_tps = backlog / read_s if read_s > 0 else 0.0  # data files ~ the backlog (plus a little)
    done = asyncio.Event()
    got = 0

    async def listener(msgs: list[Message], _ctx: Any) -> ConsumeConcurrentlyStatus:
        nonlocal got
        got += len(msgs)
        if got >= backlog:
            done.set()
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer(
        "bench_consume_cg", client_config=server.client_config("consume"),
        consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, pull_batch_size=args.pull_batch,
        consume_message_batch_max_size=args.consume_batch, pull_threshold_for_queue=4 * args.pull_batch,
    )
    consumer.subscribe(topic, "*")
    consumer.register_message_listener(listener)
    broker_pid = server.serve.pid if server.serve is not None else None
    broker_cpu0, client_cpu0 = cpu_seconds(broker_pid), cpu_seconds()
    start = perf()
    await consumer.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=max(60.0, backlog / 5_000))
        tps = got / (perf() - start)
        broker_cpu_s, client_cpu_s = cpu_seconds(broker_pid) - broker_cpu0, cpu_seconds() - client_cpu0
    finally:
        await consumer.shutdown()
    p = {"messages": backlog, "pull_batch_size": args.pull_batch, "consume_message_batch_max_size":
         args.consume_batch, "queues": args.queues, "raw_read_bytes": data_bytes,
         "broker_cpu_us_per_msg": round(1e6 * broker_cpu_s / got, 2),
         "client_cpu_us_per_msg": round(1e6 * client_cpu_s / got, 2)}
    note(f"consume: CPU per message: broker {p['broker_cpu_us_per_msg']} us, "
         f"client {p['client_cpu_us_per_msg']} us")
    rep.emit(Figure("consume.tps", tps, "msg/s", raw_tps, Goal("value", 100_000), p))


async def bench_e2e(server: Server, rep: Reporter, args: argparse.Namespace, producer: Producer) -> None:
    topic = "BenchLatency"
    await server.create_topic(topic, 4)
    raw = await raw_ping_pong(2000 if not args.quick else 200)
    lat: list[float] = []
    seen = 0
    warm = asyncio.Event()

    async def listener(msgs: list[Message], _ctx: Any) -> ConsumeConcurrentlyStatus:
        nonlocal seen
        now = perf()
        for m in msgs:
            sent = int.from_bytes(m.body[:8], "big") / 1e9
            if m.body[8:9] == b"W":
                warm.set()
            else:
                lat.append(now - sent)
                seen += 1
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer("bench_latency_cg", client_config=server.client_config("e2e"),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)
    consumer.subscribe(topic, "*")
    consumer.register_message_listener(listener)
    await consumer.start()
    pad = os.urandom(MSG_BYTES - 9)

    def message(tag: bytes) -> Message:
        return Message(topic, int(perf() * 1e9).to_bytes(8, "big") + tag + pad)

    try:
        for _ in range(20):  # until the consumer's long polls are in place
            await producer.send(message(b"W"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(warm.wait(), 0.25)
            if warm.is_set():
                break
        await asyncio.sleep(0.2)
        total = int(args.rate * args.latency_seconds)
        tasks = []
        start = perf()
        for i in range(total):
            due = start + i / args.rate
            delay = due - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(producer.send_async(message(b"M")))
        await asyncio.gather(*tasks)
        deadline = perf() + 10.0
        while seen < total and perf() < deadline:
            await asyncio.sleep(0.01)
        elapsed = perf() - start
    finally:
        await consumer.shutdown()
    p = {"flushDiskType": "ASYNC_FLUSH", "rate": args.rate, "seconds": args.latency_seconds,
         "sent": total, "received": seen}
    rep.emit(Figure("e2e.tps", seen / elapsed, "msg/s", args.rate, None, p))
    rep.latency("e2e", Stats(lat), raw, p, Goal("value", 10.0, "max"))


ORDERLY_QUEUES = 8


async def bench_orderly(server: Server, rep: Reporter, args: argparse.Namespace, producer: Producer) -> None:
    topic = "BenchOrderly"
    await server.create_topic(topic, ORDERLY_QUEUES)
    mqs = await producer.fetch_publish_message_queues(topic)
    payload = body()
    full, rest = divmod(args.orderly_backlog, args.batch)
    sizes = [args.batch] * full + ([rest] if rest else [])
    for i, n in enumerate(sizes):
        await producer.send_batch([Message(topic, payload) for _ in range(n)], mq=mqs[i % len(mqs)])
    base_tps, _ = await drain_with_two(server, args, topic, orderly=False)
    tps, reordered = await drain_with_two(server, args, topic, orderly=True)
    p = {"flushDiskType": "ASYNC_FLUSH", "messages": args.orderly_backlog, "queues": ORDERLY_QUEUES,
         "consumers": 2, "consume_message_batch_max_size": args.orderly_batch,
         "pull_batch_size": args.pull_batch, "reordered": reordered, "baseline": "2 concurrent consumers"}
    rep.emit(Figure("orderly.tps", tps, "msg/s", base_tps, None, p))


async def drain_with_two(server: Server, args: argparse.Namespace, topic: str, orderly: bool
                         ) -> tuple[float, int]:
    """Two consumers of a new group (orderly or concurrent) drain ``topic``: (msg/s, how many
    messages reached a listener at or below an offset of their queue already seen)."""
    backlog = args.orderly_backlog
    done = asyncio.Event()
    got = 0
    reordered = 0
    last_offset: dict[int, int] = {}

    def count(msgs: list[Message]) -> None:
        nonlocal got, reordered
        for m in msgs:
            if m.queue_offset <= last_offset.get(m.queue_id, -1):
                reordered += 1
            last_offset[m.queue_id] = m.queue_offset
        got += len(msgs)
        if got >= backlog:
            done.set()

    async def concurrent(msgs: list[Message], _ctx: Any) -> ConsumeConcurrentlyStatus:
        count(msgs)
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    async def in_order(msgs: list[Message], _ctx: Any) -> ConsumeOrderlyStatus:
        count(msgs)
        return ConsumeOrderlyStatus.SUCCESS

    kind = "orderly" if orderly else "concurrent"
    consumers = []
    for i in range(2):
        consumer = PushConsumer(
            f"bench_{kind}_cg", client_config=server.client_config(f"{kind}-{i}"),
            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, pull_batch_size=args.pull_batch,
            consume_message_batch_max_size=args.orderly_batch, pull_threshold_for_queue=4 * args.pull_batch)
        consumer.subscribe(topic, "*")
        consumer.register_message_listener(in_order if orderly else concurrent, orderly=orderly)
        consumers.append(consumer)
    start = perf()
    try:
        for consumer in consumers:
            await consumer.start()
        await asyncio.wait_for(done.wait(), timeout=max(60.0, backlog / 2_000))
        tps = got / (perf() - start)
    finally:
        for consumer in consumers:
            await consumer.shutdown()
    return tps, reordered if orderly else 0


# -- command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logstore bench rocket", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", choices=SCENARIOS, help="run only this scenario (as --only)")
    p.add_argument("--dir", default=None, help="keep data under DIR/bench-rocket-* (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="one JSON object per figure")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    p.add_argument("--backlog", type=int, default=None, help="messages of the batch/consume scenarios (1000000)")
    p.add_argument("--seconds", type=float, default=None, help="duration of each sync scenario (5)")
    p.add_argument("--senders", type=int, default=64, help="concurrent sync senders (64)")
    p.add_argument("--busy-poll-us", type=int, default=200, help="sync1bp: the broker's busyPollMicros (200)")
    p.add_argument("--client-busy-poll-us", type=int, default=1000,
                   help="sync1bp: the producer's busy_poll_micros (1000)")
    p.add_argument("--batch", type=int, default=256, help="messages per batch send (256)")
    p.add_argument("--batch-senders", type=int, default=4, help="concurrent batch senders (4)")
    p.add_argument("--queues", type=int, default=8, help="queues of the sync and batch topics (8)")
    p.add_argument("--pull-batch", type=int, default=32, help="consumer pullBatchSize (32, RocketMQ's default)")
    p.add_argument("--consume-batch", type=int, default=1,
                   help="consumeMessageBatchMaxSize (1, RocketMQ's default)")
    p.add_argument("--rate", type=float, default=1000.0, help="msg/s of the latency scenario (1000)")
    p.add_argument("--orderly-backlog", type=int, default=None, help="messages of the orderly scenario (200000)")
    p.add_argument("--orderly-batch", type=int, default=1, help="orderly consumeMessageBatchMaxSize (1)")
    p.add_argument("--latency-seconds", type=float, default=None, help="duration of the latency scenario (10)")
    p.add_argument("--delay-seconds", type=float, default=None, help="duration of the delay scenario's sends (10)")
    return p


async def run_all(args: argparse.Namespace, rep: Reporter, work: Path) -> None:
    if {"sync1", "sync64", "tx"} & args.only:
        note("SYNC_FLUSH broker: sync1, sync64, tx")
        with running(Server(work / "bench-rocket-sync", "SYNC_FLUSH")) as server:
            await bench_sync(server, rep, args, work)
    sync1_only = argparse.Namespace(**{**vars(args), "only": {"sync1"}})
    if "sync1nopoll" in args.only:
        note("SYNC_FLUSH broker, busyPollMicros=0: sync1nopoll")
        with running(Server(work / "bench-rocket-sync-nopoll", "SYNC_FLUSH", 0, variant="nopoll")) as server:
            await bench_sync(server, rep, sync1_only, work)
    if "sync1nopin" in args.only:
        note("SYNC_FLUSH broker, cpuAffinity=off: sync1nopin")
        with running(Server(work / "bench-rocket-sync-nopin", "SYNC_FLUSH", cpu_affinity="off",
                            variant="nopin")) as server:
            await bench_sync(server, rep, sync1_only, work)
    if "sync1bp" in args.only:
        note(f"SYNC_FLUSH broker, busy polling ({args.busy_poll_us} us, client {args.client_busy_poll_us} us): sync1bp")
        with running(Server(work / "bench-rocket-sync-bp", "SYNC_FLUSH", args.busy_poll_us,
                            args.client_busy_poll_us, variant="bp")) as server:
            await bench_sync(server, rep, sync1_only, work)
    if {"batch", "consume", "e2e", "orderly"} & args.only:
        note("ASYNC_FLUSH broker: batch, consume, e2e, orderly")
        with running(Server(work / "bench-rocket-async", "ASYNC_FLUSH")) as server:
            await bench_async(server, rep, args, work)
    if "delay" in args.only:
        note("ASYNC_FLUSH broker: delay")
        with running(Server(work / "bench-rocket-delay", "ASYNC_FLUSH")) as server:
            await bench_delay(server, rep, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    only = {args.scenario} if args.scenario else {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(SCENARIOS):
        print(f"logstore bench rocket: --only takes a subset of {','.join(SCENARIOS)}", file=sys.stderr)
        return 2
    args.only = only
    q = args.quick
    args.backlog = args.backlog if args.backlog is not None else (20_000 if q else 1_000_000)
    args.orderly_backlog = args.orderly_backlog if args.orderly_backlog is not None else (
        4_000 if q else 200_000)
    args.seconds = args.seconds if args.seconds is not None else (0.5 if q else 5.0)
    args.latency_seconds = args.latency_seconds if args.latency_seconds is not None else (1.0 if q else 10.0)
    args.delay_seconds = args.delay_seconds if args.delay_seconds is not None else (1.0 if q else 10.0)
    args.baseline_seconds = 0.3 if q else 2.0
    if q:
        args.senders = min(args.senders, 16)
    if min(args.backlog, args.senders, args.batch, args.batch_senders, args.queues, args.orderly_backlog) < 1 \
            or args.seconds <= 0 or args.rate <= 0 or args.latency_seconds <= 0 or args.delay_seconds <= 0 \
            or not 1 <= args.pull_batch <= 1024 or not 1 <= args.consume_batch <= 1024 or not 1 <= args.orderly_batch <= 1024:
        print("logstore bench rocket: sizes, counts and durations must be positive "
              "(--pull-batch, --consume-batch and --orderly-batch at most 1024)", file=sys.stderr)
        return 2
    if not (1 <= args.busy_poll_us <= WINDOW_US_MAX and 1 <= args.client_busy_poll_us <= WINDOW_US_MAX):
        print(f"logstore bench rocket: --busy-poll-us and --client-busy-poll-us take 1..{WINDOW_US_MAX}",
              file=sys.stderr)
        return 2
    random.seed()
    rep = Reporter(args.json)
    with workdir(args.dir, "logstore-bench-rocket-") as base:
        work = Path(base)
        for sub in ("bench-rocket-sync", "bench-rocket-sync-nopoll", "bench-rocket-sync-nopin", "bench-rocket-sync-bp",
                    "bench-rocket-async", "bench-rocket-delay"):
            shutil.rmtree(work / sub, ignore_errors=True)  # each run starts from empty stores
        runtime.run(run_all(args, rep, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
