"""Ordered messages, as in the seed article: three orders, each going through create -> pay ->
complete; a producer sends every order's steps to the queue its order id selects, and two
orderly consumers in one group (MessageListenerOrderly) process each queue one message at a
time, in order. Orders on different queues run in parallel; one order never runs out of order.

Run it against a running broker (``logstore serve``):

    logstore admin updateTopic -c DefaultCluster -t TopicOrderTest -r 4 -w 4   # or --create-topic
    python examples/ordered_messages.py [--namesrv 127.0.0.1:9876] [--topic TopicOrderTest]

It prints each order's sequence as the consumers processed it, then ``OK`` (exit 0) if every
order's steps arrived in order, or ``OUT OF ORDER`` (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not installed

from adapters.rocket.admin import Admin, TopicSpec
from adapters.rocket.client import (
    ClientConfig,
    ConsumeFromWhere,
    ConsumeOrderlyContext,
    ConsumeOrderlyStatus,
    Message,
    MessageListenerOrderly,
    MessageQueue,
    Producer,
    PushConsumer,
    new_message,
)
from examples.lines import say

ORDERS = [1001, 1002, 1003]
STEPS = ["create", "pay", "complete"]


def order_selector(mqs: Sequence[MessageQueue], msg: Message, order_id: int) -> MessageQueue:
    """The seed's selector: ``id % mqs.size()``, so one order always lands on one queue."""
    return mqs[order_id % len(mqs)]


class PrintInOrder(MessageListenerOrderly):
    """Consumes one queue at a time (the client holds the queue's broker lock meanwhile)."""

    def __init__(self, name: str, run_id: str, processed: dict[int, list[str]], lock: threading.Lock) -> None:
        self.name = name
        self.run_id = run_id
        self.processed = processed
        self.lock = lock

    def consume_message(self, msgs: list[Message], context: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        context.auto_commit = True
        for msg in msgs:
            run_id, order_id, step = msg.body.decode().split(":")
            if run_id != self.run_id:
                continue  # an earlier run's message (this group starts at the first offset)
            with self.lock:
                self.processed.setdefault(int(order_id), []).append(step)
            say(f"  {self.name} queue {msg.queue_id} offset {msg.queue_offset}: order {order_id} {step}")
        return ConsumeOrderlyStatus.SUCCESS


async def create_topic(namesrv: str, topic: str) -> None:
    async with Admin(namesrv) as admin:
        masters = list((await admin.master_addrs()).values())
        await admin.update_topic(masters, TopicSpec(topic, 4, 4))
    await asyncio.sleep(0.5)  # the broker registers the new topic with the name server


async def run(namesrv: str, topic: str, timeout_s: float) -> bool:
    run_id = uuid.uuid4().hex[:6]  # a new group per run, starting at the first offset
    processed: dict[int, list[str]] = {}
    lock = threading.Lock()
    consumers = []
    for name in ("consumer-1", "consumer-2"):
        consumer = PushConsumer(
            f"order_Consumer_{run_id}", consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
            client_config=ClientConfig(namesrv_addr=namesrv, instance_name=f"{name}-{run_id}"))
        consumer.subscribe(topic, "*")
        consumer.register_message_listener(PrintInOrder(name, run_id, processed, lock))
        await consumer.start()
        consumers.append(consumer)
    say(f"two orderly consumers started in group order_Consumer_{run_id}")
    await asyncio.sleep(1.0)  # both in the group, each holding the locks of its queues
    try:
        async with Producer("order_Producer", client_config=ClientConfig(namesrv_addr=namesrv)) as producer:
            for step in STEPS:  # steps of different orders interleave; one order's never reorder
                for order_id in ORDERS:
                    result = await producer.send(new_message(topic, f"{run_id}:{order_id}:{step}".encode(), tags=step,
                                                             keys=[f"KEY{order_id}"]), order_selector, order_id)
                    say(f"sent order {order_id} {step} to queue {result.message_queue.queue_id}")
        deadline = time.monotonic() + timeout_s
        while sum(len(s) for s in processed.values()) < len(ORDERS) * len(STEPS):
            if time.monotonic() > deadline:
                say("timed out waiting for the consumers")
                break
            await asyncio.sleep(0.05)
    finally:
        for consumer in consumers:
            await consumer.shutdown()
    say("per-order sequences:")
    ok = True
    for order_id in ORDERS:
        steps = processed.get(order_id, [])
        in_order = steps == STEPS
        ok = ok and in_order
        say(f"  order {order_id}: {' -> '.join(steps)}{'' if in_order else '   <-- WRONG'}")
    say("OK" if ok else "OUT OF ORDER")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namesrv", default="127.0.0.1:9876", help="name server address (127.0.0.1:9876)")
    parser.add_argument("--topic", default="TopicOrderTest")
    parser.add_argument("--create-topic", action="store_true", help="create the topic (4 queues) first")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the consumers")
    args = parser.parse_args()

    async def go() -> bool:
        if args.create_topic:
            await create_topic(args.namesrv, args.topic)
        return await run(args.namesrv, args.topic, args.timeout)

    return 0 if asyncio.run(go()) else 1


if __name__ == "__main__":
    sys.exit(main())
