"""Ordered messages with the third-party C++-core client ``rocketmq==0.4.4`` against our broker:
its orderly send (``send_orderly(msg, arg)``: the client's selector picks queue ``arg % queues``)
and its orderly PushConsumer (``PushConsumer(group, orderly=True)``: LOCK_BATCH_MQ on the broker,
one message of a queue at a time), two of them in one group. Every message is consumed and each
sharding key's messages reach the listener in the order they were sent.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._harness import HERE, BrokerProcess, ClientDriver, Event, Msg, client_env, wait_until
from .test_clients import DELIVERY_TIMEOUT_S, NOTIFY_SETTLE_S, QUIET_S, assert_intact, msg_id

pytestmark = [pytest.mark.interop, pytest.mark.slow]

KEYS = 6
STEPS = 20
QUEUES = 4


@pytest.fixture
def cpp_client(broker: BrokerProcess, tmp_path: Path, rocketmq_cpp_python: Path) -> Iterator[ClientDriver]:
    work = tmp_path / "rocketmq-cpp"
    work.mkdir()
    driver = ClientDriver("rocketmq-cpp", [str(rocketmq_cpp_python), str(HERE / "rocketmq_driver.py")],
                          client_env(work / "home"), work, reports_queues=False)
    try:
        yield driver
    finally:
        driver.kill_all()


def steps_by_key(events: list[Event]) -> dict[int, list[int]]:
    """Per sharding key, the steps in the order this consumer's listener saw them."""
    out: dict[int, list[int]] = defaultdict(list)
    for e in events:
        key, step = e["props"]["seq"].split(":")
        out[int(key)].append(int(step))
    return out


def test_orderly_send_and_two_orderly_consumers(broker: BrokerProcess, cpp_client: ClientDriver) -> None:
    topic, group = "InteropOrderly", "CG_interop_orderly"
    broker.create_topic(topic, queues=QUEUES)
    a = cpp_client.consumer(broker.namesrv, group, topic, "*", ["seq"], extra=("--orderly",))
    b = cpp_client.consumer(broker.namesrv, group, topic, "*", ["seq"], extra=("--orderly",))
    wait_until(lambda: len(broker.consumer_ids(group)) == 2, 15.0, "both consumers in the group")
    time.sleep(NOTIFY_SETTLE_S)

    msgs, shards = [], []
    for step in range(STEPS):
        for key in range(KEYS):
            msgs.append(Msg(topic, "TagA", (f"k{key}-s{step:02d}",), f"key {key} step {step}".encode(),
                            {"seq": f"{key}:{step}"}))
            shards.append(key)
    sent = cpp_client.produce(broker.namesrv, "PG_interop_orderly", msgs, shards)
    assert len(sent) == len(msgs)
    expected = {m.id: m for m in msgs}

    def all_delivered() -> bool:
        for c in (a, b):
            assert c.popen.poll() is None, f"{c.name} exited {c.popen.returncode}\n{c.stderr_tail()}"
        return set(expected) <= {msg_id(e) for c in (a, b) for e in c.received()}

    wait_until(all_delivered, DELIVERY_TIMEOUT_S, f"{len(msgs)} messages at both consumers")
    time.sleep(QUIET_S)
    a.stop()
    b.stop()

    got_a, got_b = a.received(), b.received()
    assert got_a and got_b, f"one consumer got nothing: {len(got_a)} / {len(got_b)}"
    assert_intact(got_a + got_b, expected)
    queue_of_key = {key: {e["queue_id"] for e in got_a + got_b if e["props"]["seq"].startswith(f"{key}:")}
                    for key in range(KEYS)}
    assert all(q == {key % QUEUES} for key, q in queue_of_key.items()), queue_of_key
    assert not {e["queue_id"] for e in got_a} & {e["queue_id"] for e in got_b}, "a queue consumed by both"
    for who, got in (("a", got_a), ("b", got_b)):
        for key, steps in steps_by_key(got).items():
            assert steps == sorted(steps), f"consumer {who}: key {key} out of order: {steps}"
    merged = steps_by_key(got_a + got_b)
    assert {k: sorted(set(v)) for k, v in merged.items()} == {k: list(range(STEPS)) for k in range(KEYS)}
    assert sum(len(v) for v in merged.values()) == len(msgs), "duplicates without any rebalance or crash"
