"""A real ``logstore serve`` process per test (free 127.0.0.1 ports, a tmp data dir; the shared
test tool in adapters.rocket.testing) and a small driver speaking the remoting protocol to it
with our codec."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.rocket.message import Message, decode_stored, encode_batch_body
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode
from adapters.rocket.testing import ServeProcess, write_conf

# SEND_MESSAGE_V2 header names (the broker's map, restated: importing broker code here would
# import ``logstore``, which a tests/logstore folder used to shadow on this test tree's sys.path).
V2_SHORT = {
    "producerGroup": "a", "topic": "b", "defaultTopic": "c", "defaultTopicQueueNums": "d", "queueId": "e",
    "sysFlag": "f", "bornTimestamp": "g", "flag": "h", "properties": "i", "reconsumeTimes": "j",
    "unitMode": "k", "maxReconsumeTimes": "l", "batch": "m", "brokerName": "n",
}


def serving(tmp_path: Path, **conf: object) -> Iterator[ServeProcess]:
    """A started ServeProcess with these broker.conf keys, stopped after."""
    proc = ServeProcess(tmp_path / "data", write_conf(tmp_path / "broker.conf", maxMessageSize=65536, **conf))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    yield from serving(tmp_path, brokerName="broker-a")


class Driver:
    """Requests to the broker of a ServeProcess, with the project's codec."""

    def __init__(self, serve: ServeProcess) -> None:
        self.serve = serve
        self.client = RemotingClient()

    @property
    def addr(self) -> str:
        return self.serve.broker

    async def call(self, code: int, ext: dict[str, object] | None = None, body: bytes = b"",
                   timeout_s: float = 5.0) -> RemotingCommand:
        return await self.client.invoke(self.addr, RemotingCommand.request(code, ext, body), timeout_s)

    async def create_topic(self, topic: str, queues: int = 4) -> None:
        resp = await self.call(RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "readQueueNums": queues, "writeQueueNums": queues, "perm": 6})
        assert resp.code == 0, resp.remark

    async def send(self, msg: Message, queue_id: int = 0, code: int = RequestCode.SEND_MESSAGE) -> RemotingCommand:
        ext: dict[str, object] = {
            "producerGroup": "PG", "topic": msg.topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": 4,
            "queueId": queue_id, "sysFlag": 0, "bornTimestamp": int(time.time() * 1000), "flag": msg.flag,
            "properties": msg.properties_string(), "reconsumeTimes": 0, "unitMode": False,
        }
        if code == RequestCode.SEND_MESSAGE_V2:
            ext = {V2_SHORT.get(k, k): v for k, v in ext.items()}
        return await self.call(code, ext, msg.body)

    async def send_batch(self, topic: str, msgs: list[Message], queue_id: int = 0) -> RemotingCommand:
        ext: dict[str, object] = {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": queue_id, "f": 0,
                                  "g": int(time.time() * 1000), "h": 0, "i": "", "j": 0, "k": False, "m": True}
        return await self.call(RequestCode.SEND_BATCH_MESSAGE, ext, encode_batch_body(msgs))

    async def pull(self, topic: str, queue_id: int, offset: int, *, max_nums: int = 32, subscription: str = "*",
                   suspend_ms: int = 0, group: str = "CG", timeout_s: float = 5.0) -> tuple[RemotingCommand, list[Message]]:
        sys_flag = 0x4 | (0x2 if suspend_ms else 0)
        resp = await self.call(RequestCode.PULL_MESSAGE, {
            "consumerGroup": group, "topic": topic, "queueId": queue_id, "queueOffset": offset,
            "maxMsgNums": max_nums, "sysFlag": sys_flag, "commitOffset": 0, "suspendTimeoutMillis": suspend_ms,
            "subscription": subscription, "subVersion": 0, "expressionType": "TAG"}, timeout_s=timeout_s)
        return resp, decode_stored(resp.body) if resp.code == 0 else []

    async def reconnect(self) -> None:
        """A fresh client (after the server restarted, old connections are dead)."""
        await self.client.close()
        self.client = RemotingClient()

    async def close(self) -> None:
        await self.client.close()


@pytest.fixture
async def driver(serve: ServeProcess) -> AsyncIterator[Driver]:
    d = Driver(serve)
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


FAST_DELAY_LEVELS = "1s 2s 1s"  # level 3 (a first retry) is 1 s: retry and schedule tests stay short


@pytest.fixture
def sched_serve(tmp_path: Path) -> Iterator[ServeProcess]:
    """A broker whose delay levels are 1 s, 2 s and 1 s."""
    conf = write_conf(tmp_path / "broker.conf", brokerName="broker-a", messageDelayLevel=FAST_DELAY_LEVELS)
    proc = ServeProcess(tmp_path / "data", conf)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def sd(sched_serve: ServeProcess) -> AsyncIterator[Driver]:
    d = Driver(sched_serve)
    try:
        yield d
    finally:
        await d.close()
