"""The scheduler's bounded state, in process (its limits made tiny): a timer message due far later
than many short ones is rolled to the end of the timer queue (so the saved ``done`` set stays
small), survives a restart, and is still delivered once, on time; delivered segments of the
system queues are deleted, and a restart after that neither loses nor repeats anything."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.rocket.broker import schedule
from adapters.rocket.broker.broker import Broker
from adapters.rocket.broker.config import BrokerConfig
from adapters.rocket.broker.topics import TopicConfig
from adapters.rocket.message import Message, decode_stored
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode

pytestmark = pytest.mark.anyio


async def open_broker(root: Path) -> Broker:
    cfg = BrokerConfig(store_path_root_dir=str(root), listen_port=0)
    broker = await Broker.open(cfg, "127.0.0.1")
    await broker.start()
    return broker


@pytest.fixture
def tiny_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule, "TIMER_DONE_MAX", 4)


@pytest.fixture
async def client() -> AsyncIterator[RemotingClient]:
    async with RemotingClient() as c:
        yield c


async def send(client: RemotingClient, addr: str, body: bytes, deliver_ms: int,
               props: dict[str, str] | None = None) -> None:
    props = props if props is not None else {"TIMER_DELIVER_MS": str(deliver_ms)}
    resp = await client.invoke(addr, RemotingCommand.request(RequestCode.SEND_MESSAGE, {
        "producerGroup": "PG", "topic": "TRoll", "queueId": 0, "sysFlag": 0, "bornTimestamp": deliver_ms,
        "flag": 0, "properties": Message("TRoll", properties=props).properties_string(),
        "reconsumeTimes": 0}, body), 5.0)
    assert resp.code == 0, resp.remark


async def bodies(client: RemotingClient, addr: str) -> list[bytes]:
    resp = await client.invoke(addr, RemotingCommand.request(RequestCode.PULL_MESSAGE, {
        "consumerGroup": "CG", "topic": "TRoll", "queueId": 0, "queueOffset": 0, "maxMsgNums": 100,
        "sysFlag": 0, "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*",
        "expressionType": "TAG"}), 5.0)
    return [m.body for m in decode_stored(resp.body)] if resp.code == 0 else []


async def test_far_message_is_rolled_and_survives_restart(tmp_path: Path, tiny_done: None,
                                                         client: RemotingClient) -> None:
    broker = await open_broker(tmp_path)
    try:
        await broker.create_topic(TopicConfig("TRoll", 1, 1))
        addr = broker.config.broker_addr
        far_due = time.time_ns() // 1_000_000 + 4000
        await send(client, addr, b"far", far_due)
        soon = time.time_ns() // 1_000_000 + 200
        for i in range(12):
            await send(client, addr, b"s%d" % i, soon + 10 * i)
        deadline = time.monotonic() + 5
        while len(await bodies(client, addr)) < 12:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        timer = broker.schedule.timer
        assert timer is not None
        assert broker.schedule.rolled >= 1  # "far" blocked low: it moved to the queue's end
        assert timer.low() > 0 and len(timer.done) <= 4
        assert b"far" not in await bodies(client, addr)
    finally:
        await broker.close()
    broker = await open_broker(tmp_path)  # a clean restart rebuilds the heaps from low on
    try:
        addr = broker.config.broker_addr
        deadline = time.monotonic() + 8
        while b"far" not in (got := await bodies(client, addr)):
            assert time.monotonic() < deadline, got
            await asyncio.sleep(0.05)
        assert time.time_ns() // 1_000_000 >= far_due
        await asyncio.sleep(0.3)
        assert sorted(await bodies(client, addr)) == sorted([b"far", *(b"s%d" % i for i in range(12))])
    finally:
        await broker.close()


async def wait_bodies(client: RemotingClient, addr: str, count: int, timeout_s: float = 8.0) -> list[bytes]:
    deadline = time.monotonic() + timeout_s
    while len(got := await bodies(client, addr)) < count:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)
    return got


async def test_delivered_segments_are_deleted_and_restart_repeats_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: RemotingClient) -> None:
    monkeypatch.setattr(schedule, "SYSTEM_SEGMENT_BYTES", 4096)  # ~3 messages of 1 KiB a segment
    monkeypatch.setattr(schedule, "TRIM_INTERVAL_S", 0.2)
    body = b"x" * 1000
    broker = await open_broker(tmp_path)
    try:
        await broker.create_topic(TopicConfig("TRoll", 1, 1))
        addr = broker.config.broker_addr
        now = time.time_ns() // 1_000_000
        for i in range(12):
            await send(client, addr, body + b"L%d" % i, now, {"DELAY": "1"})
            await send(client, addr, body + b"T%d" % i, now, {"TIMER_DELAY_MS": "300"})
        await wait_bodies(client, addr, 24)
        level1, timer = broker.schedule.levels[0].log, broker.schedule.timer
        assert timer is not None
        deadline = time.monotonic() + 5
        while not (level1.log_start_offset > 0 and timer.log.log_start_offset > 0):
            assert time.monotonic() < deadline, (level1, timer.log)
            await asyncio.sleep(0.05)
    finally:
        await broker.close()
    broker = await open_broker(tmp_path)
    try:
        addr = broker.config.broker_addr
        await send(client, addr, b"after", 0, {"DELAY": "1"})
        got = await wait_bodies(client, addr, 25)
        await asyncio.sleep(0.5)
        assert len(await bodies(client, addr)) == 25 and got[-1] == b"after"  # nothing delivered twice
    finally:
        await broker.close()
