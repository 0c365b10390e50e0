"""``logstore bench rocket delay``: how late scheduled messages arrive (tools.bench_rocket runs it).

A PushConsumer long-polls a fresh topic while a producer sends (``send_async``) ``--rate``
(1,000) scheduled messages/s for ``--delay-seconds`` (10), mixed: a third with DELAY level 1 (1 s),
a third level 2 (5 s), a third TIMER_DELIVER_MS uniform in [1 s, 5 s] ahead (``--quick``: level 1
and [1 s, 1.5 s]). Lateness = when the listener saw the message minus its due time: the
TIMER_DELIVER_MS value, or for a level the wall clock when the message was made + the delay (the
broker counts from when it stored it, a little later: this lateness is an upper bound). It
includes the broker's timer and the consumer's pull; the params also give ``broker_p99_ms``, the
p99 of (store time of the delivered copy - TIMER_DELIVER_MS), the broker's own lateness. Figures: ``delay.avg`` and ``delay.p99`` (ms); the
baseline is the produce-to-listener latency of undelayed messages at the same rate, measured
first in the same run. Goal: p99 <= 1,000 ms (issue 5: delivered within 1 s). An early message
(negative lateness) would be a bug; their count is in the params (``early``), with sent and
received counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
import time
from typing import TYPE_CHECKING, Any

from adapters.rocket.client import (
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    Message,
    Producer,
    PushConsumer,
)
from tools.benchkit import Goal, Stats, note

if TYPE_CHECKING:
    from tools.bench_rocket import Reporter, Server

MSG_BYTES = 1024
_STAMP = struct.Struct(">dc")  # due (wall clock, s); kind: W warm-up, N now, D level, T TIMER_DELIVER_MS
DRAIN_GRACE_S = 5.0


def _message(topic: str, due_s: float, kind: bytes, pad: bytes) -> Message:
    return Message(topic, _STAMP.pack(due_s, kind) + pad)


async def _send_at_rate(producer: Producer, rate: float, seconds: float, make: Any) -> int:
    """Send ``make(i)`` messages at ``rate`` per second for ``seconds``; returns how many."""
    total = int(rate * seconds)
    tasks = []
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(producer.send_async(make(i)))
    await asyncio.gather(*tasks)
    return total


async def bench_delay(server: Server, rep: Reporter, args: Any) -> None:
    topic = "BenchDelay"
    await server.create_topic(topic, 4)
    pad = os.urandom(MSG_BYTES - _STAMP.size)
    now_lat: list[float] = []  # undelayed messages (the baseline)
    late: list[float] = []  # scheduled messages
    broker_late: list[float] = []  # TIMER_DELIVER_MS messages: the delivered copy's store time
    warm = asyncio.Event()

    async def listener(msgs: list[Message], _ctx: Any) -> ConsumeConcurrentlyStatus:
        now = time.time()
        for m in msgs:
            due, kind = _STAMP.unpack_from(m.body)
            if kind == b"W":
                warm.set()
            elif kind == b"N":
                now_lat.append(now - due)
            else:
                late.append(now - due)
                if kind == b"T":
                    broker_late.append(m.store_timestamp / 1000 - due)
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer("bench_delay_cg", client_config=server.client_config("delay"),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET)
    consumer.subscribe(topic, "*")
    consumer.register_message_listener(listener)
    producer = Producer("bench_delay_pg", client_config=server.client_config("delay-p"))
    await producer.start()
    await consumer.start()
    quick = args.quick
    rng = random.Random()

    def delayed(i: int) -> Message:
        kind = i % 3
        if quick:
            kind, delay_ms = (0, 1000) if kind < 2 else (2, rng.randint(1000, 1500))
        else:
            delay_ms = (1000, 5000, rng.randint(1000, 5000))[kind]
        if kind < 2:
            msg = _message(topic, time.time() + delay_ms / 1000, b"D", pad)
            msg.properties["DELAY"] = str(kind + 1)
            return msg
        due_ms = int(time.time() * 1000) + delay_ms
        msg = _message(topic, due_ms / 1000, b"T", pad)
        msg.properties["TIMER_DELIVER_MS"] = str(due_ms)
        return msg

    try:
        for _ in range(40):  # until the consumer's long polls are in place
            await producer.send(_message(topic, time.time(), b"W", pad))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(warm.wait(), 0.25)
            if warm.is_set():
                break
        base_s = 0.5 if quick else 2.0
        sent_now = await _send_at_rate(producer, args.rate, base_s, lambda _i: _message(topic, time.time(), b"N", pad))
        note(f"delay: sending {int(args.rate * args.delay_seconds)} scheduled messages over {args.delay_seconds:g} s")
        sent = await _send_at_rate(producer, args.rate, args.delay_seconds, delayed)
        deadline = time.perf_counter() + (1.5 if quick else 5.0) + DRAIN_GRACE_S
        while len(late) < sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await consumer.shutdown()
        await producer.shutdown()
    p = {"rate": args.rate, "seconds": args.delay_seconds, "sent": sent, "received": len(late),
         "early": sum(1 for x in late if x < 0), "min_ms": round(1000 * min(late, default=0.0), 2), "max_ms": round(1000 * max(late, default=0.0), 1),
         "mix": "1/3 level 1, 1/3 level 2, 1/3 TIMER_DELIVER_MS" if not quick else "2/3 level 1, 1/3 TIMER_DELIVER_MS",
         "baseline_sent": sent_now, "broker_p99_ms": round(Stats(broker_late).p99_ms, 1)}
    rep.latency("delay", Stats(late), Stats(now_lat), p,
                Goal("value", 1000.0, "max"))
