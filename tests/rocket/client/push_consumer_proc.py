"""A concurrent push consumer in its own process, for tests that kill a group member abruptly
(SIGKILL: no UNREGISTER_CLIENT, the broker only sees the connection close).

    python -m tests.rocket.client.push_consumer_proc --namesrv A --group G --topic T --instance I

Prints ``started`` once running; shuts down cleanly when stdin says ``stop`` or closes.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    Message,
    PushConsumer,
)

from .support import run_until_stop


async def consume(msgs: list[Message], context: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
    return ConsumeConcurrentlyStatus.CONSUME_SUCCESS


async def main(args: argparse.Namespace) -> None:
    config = ClientConfig(namesrv_addr=args.namesrv, client_ip="127.0.0.1", instance_name=args.instance)
    consumer = PushConsumer(args.group, client_config=config)
    consumer.subscribe(args.topic, "*")
    consumer.register_message_listener(consume)
    await run_until_stop(consumer)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for flag in ("--namesrv", "--group", "--topic", "--instance"):
        parser.add_argument(flag, required=True)
    asyncio.run(main(parser.parse_args()))
