"""An orderly consumer process for the crash test: it records every message it processes by
appending ``name order step queueId queueOffset`` to a file (one ``os.write`` on an O_APPEND
descriptor, so the line is in the file before the listener returns SUCCESS, and a SIGKILL
cannot tear it), then sleeps ``--sleep-ms`` to keep batches in flight.

    python -m tests.rocket.client.orderly_consumer_proc --namesrv A --group G --topic T
        --record FILE --name NAME [--sleep-ms N] [--batch N]

Prints ``started`` once running; shuts down cleanly when stdin says ``stop`` or closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from adapters.rocket.client import (
    ClientConfig,
    ConsumeFromWhere,
    ConsumeOrderlyContext,
    ConsumeOrderlyStatus,
    Message,
    MessageListenerOrderly,
    PushConsumer,
)

from .orderly_support import LOCK_INTERVAL_MS, LOCK_MAX_LIVE_MS, parse_body
from .support import run_until_stop


class Record(MessageListenerOrderly):
    def __init__(self, fd: int, name: str, sleep_s: float) -> None:
        self.fd = fd
        self.name = name
        self.sleep_s = sleep_s

    async def consume_message(self, msgs: list[Message], context: ConsumeOrderlyContext) -> ConsumeOrderlyStatus:
        for msg in msgs:
            order, step = parse_body(msg.body)
            os.write(self.fd, f"{self.name} {order} {step} {msg.queue_id} {msg.queue_offset}\n".encode())
            if self.sleep_s:
                await asyncio.sleep(self.sleep_s)
        return ConsumeOrderlyStatus.SUCCESS


async def main(args: argparse.Namespace) -> None:
    fd = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    consumer = PushConsumer(
        args.group, client_config=ClientConfig(namesrv_addr=args.namesrv, client_ip="127.0.0.1"),
        consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET,
        consume_message_batch_max_size=args.batch)
    consumer.rebalance_lock_interval_ms = LOCK_INTERVAL_MS
    consumer.rebalance_lock_max_live_time_ms = LOCK_MAX_LIVE_MS
    consumer.subscribe(args.topic, "*")
    consumer.register_message_listener(Record(fd, args.name, args.sleep_ms / 1000))
    try:
        await run_until_stop(consumer)
    finally:
        os.close(fd)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--namesrv", "--group", "--topic", "--record", "--name"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
