"""TransactionProducer (async and the sync TransactionMQProducer) against a real broker with
short check intervals: commit, rollback, UNKNOW settled by the check-back, a broker SIGKILLed
between the half message and END_TRANSACTION, and the transfer example end to end."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    LocalTransactionState,
    Message,
    MQClientError,
    PushConsumer,
    TransactionListener,
    TransactionMQProducer,
    TransactionProducer,
    new_message,
)
from adapters.rocket.testing import REPO, ServeProcess, write_conf

from .cluster import create_topic

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
COMMIT = LocalTransactionState.COMMIT_MESSAGE
ROLLBACK = LocalTransactionState.ROLLBACK_MESSAGE
UNKNOW = LocalTransactionState.UNKNOW


@pytest.fixture
def tx_broker(tmp_path: Path) -> Iterator[ServeProcess]:
    conf = write_conf(tmp_path / "broker.conf", brokerName="broker-tx", transactionCheckInterval=200,
                      transactionTimeOut=300)
    proc = ServeProcess(tmp_path / "data", conf)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def config(serve: ServeProcess, instance: str) -> ClientConfig:
    return ClientConfig(namesrv_addr=serve.namesrv, client_ip="127.0.0.1", instance_name=instance,
                        heartbeat_broker_interval_ms=300)


class Listener(TransactionListener):
    """Answers by body: ``execute`` and ``check`` map a body to a state (None: raise)."""

    def __init__(self, execute: dict[bytes, LocalTransactionState | None], check: dict[bytes, LocalTransactionState],
                 on_execute: Callable[[Message], None] | None = None) -> None:
        self.execute = execute
        self.check = check
        self.on_execute = on_execute
        self.checked: list[bytes] = []
        self.threads: set[str] = set()

    def execute_local_transaction(self, msg: Message, arg: Any) -> LocalTransactionState:
        self.threads.add(threading.current_thread().name)
        if self.on_execute is not None:
            self.on_execute(msg)
        state = self.execute[msg.body]
        if state is None:
            raise RuntimeError("the local database went away")
        return state

    def check_local_transaction(self, msg: Message) -> LocalTransactionState:
        self.checked.append(msg.body)
        return self.check.get(msg.body, UNKNOW)


class Collector:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def consume_message(self, msgs: list[Message], _ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        self.bodies += [m.body for m in msgs]
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS


@pytest.fixture
async def consumed(tx_broker: ServeProcess) -> AsyncIterator[tuple[str, Collector]]:
    topic = "TxClient"
    await create_topic([tx_broker.broker], tx_broker.namesrv, topic, 4)
    consumer = PushConsumer("tx_cg", client_config=config(tx_broker, "consumer"),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(topic, "*")
    collector = Collector()
    consumer.register_message_listener(collector)
    await consumer.start()
    try:
        yield topic, collector
    finally:
        await consumer.shutdown()


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_commit_rollback_and_unknow_settled_by_check_back(
        tx_broker: ServeProcess, consumed: tuple[str, Collector]) -> None:
    topic, collector = consumed
    listener = Listener({b"commit": COMMIT, b"rollback": ROLLBACK, b"unknow-c": UNKNOW, b"unknow-r": UNKNOW,
                         b"raises": None},
                        {b"unknow-c": COMMIT, b"unknow-r": ROLLBACK, b"raises": COMMIT})
    producer = TransactionProducer("tx_pg", client_config=config(tx_broker, "producer"),
                                   transaction_listener=listener)
    async with producer:
        states = {}
        for body in (b"commit", b"rollback", b"unknow-c", b"unknow-r", b"raises"):
            result = await producer.send_message_in_transaction(new_message(topic, body, tags="T"), "arg")
            states[body] = result.local_transaction_state
            assert result.transaction_id == result.msg_id and result.message_queue.topic == topic
        assert states == {b"commit": COMMIT, b"rollback": ROLLBACK, b"unknow-c": UNKNOW, b"unknow-r": UNKNOW,
                          b"raises": UNKNOW}
        committed = [b"commit", b"raises", b"unknow-c"]
        await wait_for(lambda: sorted(collector.bodies) == committed)
        await wait_for(lambda: sorted(listener.checked) == [b"raises", b"unknow-c", b"unknow-r"])
        await asyncio.sleep(1.0)  # settled: no more checks, nothing more delivered
        assert sorted(listener.checked) == [b"raises", b"unknow-c", b"unknow-r"]
        assert sorted(collector.bodies) == committed
        assert producer.checks_answered == 3
        # A plain-function listener runs off the event loop's thread.
        assert all(not name.startswith("MainThread") for name in listener.threads)
    with pytest.raises(MQClientError, match="TransactionListener"):
        await TransactionProducer("tx_pg2").send_message_in_transaction(Message(topic, b"x"))


async def test_broker_killed_between_half_message_and_end_transaction(
        tx_broker: ServeProcess, consumed: tuple[str, Collector]) -> None:
    topic, collector = consumed

    def crash(_msg: Message) -> None:  # runs in a worker thread: the broker dies mid-transaction
        tx_broker.stop(signal.SIGKILL)

    listener = Listener({b"paid": COMMIT}, {b"paid": COMMIT}, on_execute=crash)
    async with TransactionProducer("tx_pg", client_config=config(tx_broker, "producer"),
                                   transaction_listener=listener) as producer:
        result = await producer.send_message_in_transaction(new_message(topic, b"paid"))
        assert result.local_transaction_state == COMMIT  # END_TRANSACTION could not reach the broker
        assert not tx_broker.alive
        await asyncio.to_thread(tx_broker.start)
        await wait_for(lambda: collector.bodies == [b"paid"], 20.0)
        assert listener.checked == [b"paid"]
        await asyncio.sleep(1.0)
        assert collector.bodies == [b"paid"] and listener.checked == [b"paid"]


def test_sync_transaction_mq_producer(tx_broker: ServeProcess) -> None:
    topic = "TxSync"
    asyncio.run(create_topic([tx_broker.broker], tx_broker.namesrv, topic, 2))
    listener = Listener({b"s1": COMMIT, b"s2": UNKNOW}, {b"s2": ROLLBACK})
    producer = TransactionMQProducer("tx_sync_pg", listener, client_config=config(tx_broker, "sync"))
    producer.start()
    try:
        r1 = producer.send_message_in_transaction(new_message(topic, b"s1"))
        r2 = producer.send_message_in_transaction(new_message(topic, b"s2"))
        assert (r1.local_transaction_state, r2.local_transaction_state) == (COMMIT, UNKNOW)
        deadline = time.monotonic() + 15
        while listener.checked != [b"s2"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        producer.shutdown()


def test_transfer_example_runs(tx_broker: ServeProcess) -> None:
    out = subprocess.run([sys.executable, "examples/transfer_transaction.py", "--namesrv", tx_broker.namesrv,
                          "--timeout", "20"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("-> ROLLBACK_MESSAGE" in ln for ln in lines)
    assert any(ln.startswith("broker check-back for") and ln.endswith("debit found -> COMMIT_MESSAGE") for ln in lines)
    assert sum(ln.startswith("Smith's bank: credit") for ln in lines) == 2
    assert lines[-1].endswith("OK: only the committed transfers")
