"""Retries and dead letters end to end: our PushConsumer against a real broker whose delay levels
are 1 s (``messageDelayLevel``), the admin API and ``logstore admin dlqList`` / ``resendDlq``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from adapters.rocket.admin import Admin
from adapters.rocket.admin.dlq import dlq_messages, resend_dlq
from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    Message,
    Producer,
    PushConsumer,
    new_message,
)
from adapters.rocket.testing import ServeProcess, write_conf
from tools import admin as admin_cli

from .cluster import create_topic

pytestmark = pytest.mark.slow
FAST_LEVELS = "1s 1s 1s 1s"  # every retry waits 1 s (levels past 4 are level 4)


@pytest.fixture(scope="module")
def fast_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("retry")
    proc = ServeProcess(tmp / "data", write_conf(tmp / "broker.conf", messageDelayLevel=FAST_LEVELS),
                        stderr=subprocess.DEVNULL)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def config(serve: ServeProcess) -> ClientConfig:
    return ClientConfig(namesrv_addr=serve.namesrv, client_ip="127.0.0.1", instance_name=unique("i"))


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@dataclass
class Poison:
    """Fails every delivery of b"poison" until ``cured``; records every delivery."""

    cured: bool = False
    seen: list[Message] = field(default_factory=list)

    async def consume_message(self, msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        self.seen += msgs
        if any(m.body == b"poison" for m in msgs) and not self.cured:
            return ConsumeConcurrentlyStatus.RECONSUME_LATER
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    def deliveries(self, body: bytes) -> list[Message]:
        return [m for m in self.seen if m.body == body]


async def start_consumer(serve: ServeProcess, group: str, topic: str, listener: Poison,
                         **kw: object) -> PushConsumer:
    consumer = PushConsumer(group, client_config=config(serve),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET, **kw)  # type: ignore[arg-type]
    consumer.subscribe(topic, "*")
    consumer.register_message_listener(listener)
    await consumer.start()
    return consumer


async def produce(serve: ServeProcess, topic: str, *bodies: bytes) -> list[str]:
    async with Producer(unique("P"), client_config=config(serve)) as producer:
        return [(await producer.send(new_message(topic, b, keys=[b.decode()]))).msg_id for b in bodies]


@pytest.mark.anyio
async def test_always_failing_message_is_dead_after_retry_max_times_plus_one(
        fast_serve: ServeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    topic, group = unique("T"), unique("G")
    await create_topic([fast_serve.broker], fast_serve.namesrv, topic, 1)
    async with Admin(fast_serve.namesrv) as admin:
        await admin.update_sub_group([fast_serve.broker], {"groupName": group, "retryMaxTimes": 2})
        listener = Poison()
        consumer = await start_consumer(fast_serve, group, topic, listener)
        try:
            poison_id, _ = await produce(fast_serve, topic, b"poison", b"fine")
            await wait_for(lambda: len(listener.deliveries(b"poison")) >= 3)
            dead: list[Message] = []

            async def dlq_filled() -> None:
                while not dead:
                    dead.extend(await dlq_messages(admin, group))
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(dlq_filled(), 10.0)
            await asyncio.sleep(1.5)  # one more retry would have come by now
            deliveries = listener.deliveries(b"poison")
            assert len(deliveries) == 3  # retryMaxTimes 2: the first delivery + 2 retries
            assert [m.reconsume_times for m in deliveries] == [0, 1, 2]
            assert all(m.topic == topic for m in deliveries)  # the retry topic is hidden
            assert all(m.uniq_key == poison_id for m in deliveries)
            assert len(listener.deliveries(b"fine")) == 1
            (letter,) = dead
            assert letter.topic == f"%DLQ%{group}" and letter.body == b"poison" and letter.reconsume_times == 3
            assert letter.properties["RETRY_TOPIC"] == topic and letter.uniq_key == poison_id

            # The admin CLI lists it, shows it, and sends it back to the group (and only to it).
            def cli(*argv: str) -> dict[str, object]:
                assert admin_cli.main([argv[0], "-n", fast_serve.namesrv, "--json", *argv[1:]]) == 0
                out: dict[str, object] = json.loads(capsys.readouterr().out)
                return out

            listed = await asyncio.to_thread(cli, "dlqList", "-g", group)
            assert [m["msgId"] for m in listed["messages"]] == [letter.msg_id]  # type: ignore[union-attr,index]
            shown = await asyncio.to_thread(cli, "queryMsgById", "-i", letter.msg_id)
            assert shown["messages"][0]["body"] == "poison"  # type: ignore[index]
            listener.cured = True
            resent = await asyncio.to_thread(cli, "resendDlq", "-g", group, "-i", letter.msg_id)
            assert [r["msgId"] for r in resent["resent"]] == [letter.msg_id]  # type: ignore[union-attr,index]
            await wait_for(lambda: len(listener.deliveries(b"poison")) == 4)
            again = listener.deliveries(b"poison")[-1]
            assert again.topic == topic and again.reconsume_times == 0 and again.uniq_key == poison_id
            await asyncio.sleep(0.5)
            assert len(await dlq_messages(admin, group)) == 1  # consumed this time: no new dead letter
        finally:
            await consumer.shutdown()


@pytest.mark.anyio
async def test_client_max_reconsume_times_wins(fast_serve: ServeProcess) -> None:
    topic, group = unique("T"), unique("G")
    await create_topic([fast_serve.broker], fast_serve.namesrv, topic, 1)
    listener = Poison()
    consumer = await start_consumer(fast_serve, group, topic, listener, max_reconsume_times=1)
    try:
        await produce(fast_serve, topic, b"poison")
        async with Admin(fast_serve.namesrv) as admin:
            deadline = time.monotonic() + 15
            while not await dlq_messages(admin, group):
                assert time.monotonic() < deadline, "no dead letter"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)
            assert [m.reconsume_times for m in listener.deliveries(b"poison")] == [0, 1]
            with pytest.raises(Exception, match="not in %DLQ%"):
                await resend_dlq(admin, group, [listener.seen[0].msg_id])  # not a dead letter
            assert len(await resend_dlq(admin, group, None)) == 1  # -a: every listed dead letter
    finally:
        await consumer.shutdown()


def test_resend_dlq_usage(fast_serve: ServeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-n", fast_serve.namesrv]
    assert admin_cli.main(["resendDlq", *base, "-g", "G"]) == 2  # neither -i nor -a
    assert admin_cli.main(["resendDlq", *base, "-g", "G", "-a", "-i", "X"]) == 2
    assert admin_cli.main(["resendDlq", *base, "-g", "G", "-i", "nothex"]) == 1
    assert admin_cli.main(["dlqList", *base, "-g", unique("NoSuchGroup"), "--json"]) == 0
    out = capsys.readouterr()
    assert '"messages": []' in out.out and "offset message id" in out.err


@dataclass
class Stuck:
    """Holds the first delivery of b"stuck" until ``release`` is set; records every delivery."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[Message] = field(default_factory=list)

    async def consume_message(self, msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        self.seen += msgs
        if any(m.body == b"stuck" for m in msgs) and len([m for m in self.seen if m.body == b"stuck"]) == 1:
            await self.release.wait()
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS


@pytest.mark.anyio
async def test_a_message_held_past_consume_timeout_is_sent_back_and_the_offset_moves_on(
        fast_serve: ServeProcess) -> None:
    topic, group = unique("T"), unique("G")
    await create_topic([fast_serve.broker], fast_serve.namesrv, topic, 1)
    listener = Stuck()
    consumer = PushConsumer(group, client_config=config(fast_serve), consume_timeout=0.02,  # 1.2 s
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe(topic, "*")
    consumer.register_message_listener(listener)
    await consumer.start()
    try:
        stuck_id, *_ = await produce(fast_serve, topic, b"stuck", b"a", b"b", b"c")
        (mq,) = [q for q in consumer.assigned_queues() if q.topic == topic]
        await wait_for(lambda: len([m for m in listener.seen if m.body != b"stuck"]) == 3)
        assert consumer._offset_store is not None
        assert await consumer._offset_store.read_offset(mq, from_store=False) <= 0  # held by "stuck"
        # After 1.2 s the cleaner sends it back (delay level 3: 1 s here) and forgets it.
        await wait_for(lambda: len([m for m in listener.seen if m.body == b"stuck"]) == 2)
        again = [m for m in listener.seen if m.body == b"stuck"][1]
        assert again.uniq_key == stuck_id and again.reconsume_times == 1
        assert consumer.expired_sent_back == 1
        assert await consumer._offset_store.read_offset(mq, from_store=False) == 4  # moved past it
        assert not listener.release.is_set()  # while the first listener call still runs
    finally:
        listener.release.set()
        await consumer.shutdown()
    await asyncio.sleep(0)
    assert len([m for m in listener.seen if m.body == b"stuck"]) == 2  # the late answer changed nothing
