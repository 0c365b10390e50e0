"""Drives the ``rocketmq==0.4.4`` PyPI client (ctypes over Apache's C++ core, librocketmq.so)
for the interop tests. Runs in that client's own virtual environment, never the project's.

    rocketmq_driver.py produce --namesrv HOST:PORT --group G --spec FILE
    rocketmq_driver.py consume --namesrv HOST:PORT --group G --topic T --expression E
                               --props a,b [--lifetime-s S] [--orderly]

A spec entry with a ``shard`` (an int) is sent with ``send_orderly(msg, shard)``: the client's
default selector picks queue ``shard % queues``. ``--orderly`` makes the push consumer orderly
(the C++ core's MessageListenerOrderly: queue locks on the broker, one message of a queue at a
time).

Every line on stdout is one JSON object with an ``event``:
  produce: {"event": "sent", "index", "status", "msg_id", "offset"} per message, then "done".
  consume: "started" once subscribed and started, {"event": "msg", ...} per delivery (body as
           base64; tags, keys and the named user properties as text), "stopped" after a clean
           shutdown. The consumer shuts down when stdin says ``stop`` or closes, or after
           ``--lifetime-s`` as a last resort.
Anything the client library logs goes to stderr or to $HOME/logs (the test points HOME at a
scratch directory).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer, RecvMessage

_out_lock = threading.Lock()


def emit(**fields: object) -> None:
    line = json.dumps(fields, sort_keys=True)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def produce(args: argparse.Namespace) -> None:
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    producer = Producer(args.group)
    producer.set_namesrv_addr(args.namesrv)
    producer.start()
    try:
        for index, item in enumerate(spec):
            msg = Message(item["topic"])
            if item.get("tags"):
                msg.set_tags(item["tags"])
            if item.get("keys"):
                msg.set_keys(" ".join(item["keys"]))
            for key, value in (item.get("props") or {}).items():
                msg.set_property(key, value)
            msg.set_body(base64.b64decode(item["body_b64"]))
            if item.get("shard") is not None:
                result = producer.send_orderly(msg, int(item["shard"]))
            else:
                result = producer.send_sync(msg)
            emit(event="sent", index=index, status=result.status.name, msg_id=result.msg_id,
                 offset=result.offset)
    finally:
        producer.shutdown()
    emit(event="done")


def consume(args: argparse.Namespace) -> None:
    prop_names = [p for p in args.props.split(",") if p]

    def on_message(msg: RecvMessage) -> None:
        emit(event="msg", msg_id=msg.id, topic=msg.topic, tags=text(msg.tags), keys=text(msg.keys),
             body_b64=base64.b64encode(msg.body or b"").decode("ascii"),
             props={name: text(msg.get_property(name)) for name in prop_names},
             queue_id=msg.queue_id, queue_offset=msg.queue_offset,
             reconsume_times=msg.reconsume_times)
        # returning normally is CONSUME_SUCCESS in this wrapper

    consumer = PushConsumer(args.group, orderly=args.orderly)
    consumer.set_namesrv_addr(args.namesrv)
    consumer.subscribe(args.topic, on_message, args.expression)
    consumer.start()
    emit(event="started")

    stop = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    deadline = time.monotonic() + args.lifetime_s
    while not stop.wait(0.1):
        if time.monotonic() > deadline:
            emit(event="lifetime_exceeded")
            break
    consumer.shutdown()  # persists the consumed offsets to the broker, unregisters
    emit(event="stopped")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["produce", "consume"])
    parser.add_argument("--namesrv", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--spec")
    parser.add_argument("--topic")
    parser.add_argument("--expression", default="*")
    parser.add_argument("--props", default="")
    parser.add_argument("--lifetime-s", type=float, default=120.0)
    parser.add_argument("--orderly", action="store_true")
    args = parser.parse_args()
    if args.mode == "produce":
        produce(args)
    else:
        consume(args)


if __name__ == "__main__":
    main()
