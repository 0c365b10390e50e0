"""What the broker asks of ``logstore.replication`` (the engine's API, built on another branch),
checked against a recording test double put in its place for each test: which objects the
broker makes with which arguments, when it starts, stops and promotes them, and how SYNC_MASTER
sends map the engine's answers to RocketMQ's send codes. The real engine's tests are in
test_replication.py."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.rocket.broker import ha
from adapters.rocket.broker.broker import Broker
from adapters.rocket.broker.config import BrokerConfig
from adapters.rocket.broker.topics import TopicConfig
from adapters.rocket.message import Message
from adapters.rocket.remoting import (
    PROMOTE_SLAVE,
    RemotingClient,
    RemotingCommand,
    RequestCode,
    ResponseCode,
)

pytestmark = pytest.mark.anyio


class LeaderState:
    def __init__(self) -> None:
        self.isr_ids = {0}
        self.replicated = True
        self.waits: list[tuple[str, int, int, float]] = []

    def isr(self, log_name: str) -> set[int]:
        return set(self.isr_ids)

    def high_watermark(self, log_name: str) -> int:
        return 0

    async def wait_replicated(self, log_name: str, end_offset: int, *, min_insync: int, timeout: float) -> bool:
        self.waits.append((log_name, end_offset, min_insync, timeout))
        return self.replicated


class Engine:
    """A recording stand-in for the logstore.replication module."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.servers: list[Any] = []
        self.followers: list[Any] = []
        engine = self

        class ReplicaServer:
            def __init__(self, store: object, host: str, port: int, *, lag_time_max_ms: int) -> None:
                self.args = (store, host, port, lag_time_max_ms)
                self.leader_state = LeaderState()
                engine.servers.append(self)

            async def start(self) -> None:
                engine.calls.append(("server.start", self.args[2]))

            async def stop(self) -> None:
                engine.calls.append(("server.stop", self.args[2]))

        class Follower:  # start/stop not coroutines here: the broker takes either
            def __init__(self, store: object, leader_host: str, leader_port: int, *, replica_id: int) -> None:
                self.args = (store, leader_host, leader_port, replica_id)
                engine.followers.append(self)

            def start(self) -> None:
                engine.calls.append(("follower.start", f"{self.args[1]}:{self.args[2]}", self.args[3]))

            def stop(self) -> None:
                engine.calls.append(("follower.stop", f"{self.args[1]}:{self.args[2]}"))

        async def promote(store: object) -> int:
            engine.calls.append(("promote",))
            return 7

        self.module = types.ModuleType(ha.ENGINE_MODULE)
        self.module.ReplicaServer = ReplicaServer  # type: ignore[attr-defined]
        self.module.Follower = Follower  # type: ignore[attr-defined]
        self.module.promote = promote  # type: ignore[attr-defined]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    e = Engine()
    monkeypatch.setitem(sys.modules, ha.ENGINE_MODULE, e.module)
    assert ha.available()
    return e


@pytest.fixture
async def client() -> AsyncIterator[RemotingClient]:
    async with RemotingClient() as c:
        yield c


async def open_broker(root: Path, **keys: str) -> Broker:
    cfg = BrokerConfig.load(None, {"storePathRootDir": str(root), "listenPort": "0", "haListenPort": "23456", **keys})
    broker = await Broker.open(cfg, "127.0.0.1")
    await broker.start()
    return broker


async def send(client: RemotingClient, addr: str, props: dict[str, str] | None = None) -> RemotingCommand:
    return await client.invoke(addr, RemotingCommand.request(RequestCode.SEND_MESSAGE, {
        "producerGroup": "PG", "topic": "T", "queueId": 0, "sysFlag": 0, "bornTimestamp": int(time.time() * 1000),
        "flag": 0, "properties": Message("T", properties=props or {}).properties_string(),
        "reconsumeTimes": 0}, b"body"), 10.0)


async def test_a_sync_master_maps_the_engines_answers_to_send_codes(
        engine: Engine, tmp_path: Path, client: RemotingClient) -> None:
    broker = await open_broker(tmp_path, brokerRole="SYNC_MASTER", syncFlushTimeout="1500", haLagTimeMaxMs="4000")
    try:
        await broker.create_topic(TopicConfig("T", 1, 1))
        [server] = engine.servers
        assert server.args == (broker.store, "127.0.0.1", 23456, 4000)
        assert engine.calls == [("server.start", 23456)]
        state: LeaderState = server.leader_state
        addr = broker.config.broker_addr
        resp = await send(client, addr)  # only the master in the ISR
        assert resp.code == ResponseCode.SLAVE_NOT_AVAILABLE and resp.ext_fields["queueOffset"] == "0"
        assert state.waits == []
        state.isr_ids = {0, 1}
        resp = await send(client, addr)
        assert resp.code == ResponseCode.SUCCESS
        assert state.waits == [("T.0", 2, 2, 1.5)]  # the end offset after this message
        state.replicated = False
        resp = await send(client, addr)
        assert resp.code == ResponseCode.FLUSH_SLAVE_TIMEOUT and resp.ext_fields["queueOffset"] == "2"
        resp = await send(client, addr, {"WAIT": "false"})  # the producer does not wait: neither do we
        assert resp.code == ResponseCode.SUCCESS and len(state.waits) == 2
    finally:
        await broker.close()
    assert engine.calls[-1] == ("server.stop", 23456)


async def test_an_async_master_does_not_wait(engine: Engine, tmp_path: Path, client: RemotingClient) -> None:
    broker = await open_broker(tmp_path)
    try:
        await broker.create_topic(TopicConfig("T", 1, 1))
        assert (await send(client, broker.config.broker_addr)).code == ResponseCode.SUCCESS
        assert engine.servers[0].leader_state.waits == []
    finally:
        await broker.close()


async def test_a_slave_follows_and_a_promotion_leads(engine: Engine, tmp_path: Path, client: RemotingClient) -> None:
    broker = await open_broker(tmp_path, brokerRole="SLAVE", brokerId="3", haMasterAddress="127.0.0.9:10912")
    try:
        assert engine.calls == [("follower.start", "127.0.0.9:10912", 3)]
        assert engine.servers == []
        await broker.ha.learn_master("127.0.0.8:10912")  # haMasterAddress wins over the name server
        assert len(engine.followers) == 1
        resp = await client.invoke(broker.config.broker_addr, RemotingCommand.request(PROMOTE_SLAVE), 10.0)
        assert resp.code == ResponseCode.SUCCESS, resp.remark
        assert resp.ext_fields["epoch"] == "7" and resp.ext_fields["brokerId"] == "0"
        assert engine.calls[1:] == [("follower.stop", "127.0.0.9:10912"), ("promote",), ("server.start", 23456)]
        assert (broker.config.broker_role, broker.config.broker_id) == ("ASYNC_MASTER", 0)
        await broker.ha.learn_master("127.0.0.8:10912")  # a master follows no one
        assert len(engine.followers) == 1
    finally:
        await broker.close()


async def test_a_slave_learns_its_master_from_the_name_server(engine: Engine, tmp_path: Path) -> None:
    broker = await open_broker(tmp_path, brokerRole="SLAVE", brokerId="1")
    try:
        assert engine.calls == []  # no haMasterAddress: wait for a REGISTER_BROKER answer
        await broker.ha.learn_master("127.0.0.9:10912")
        await broker.ha.learn_master("127.0.0.9:10912")  # the same master again: nothing to do
        await broker.ha.learn_master("127.0.0.5:10912")  # a new master (a promotion elsewhere)
        assert engine.calls == [("follower.start", "127.0.0.9:10912", 1), ("follower.stop", "127.0.0.9:10912"),
                                ("follower.start", "127.0.0.5:10912", 1)]
    finally:
        await broker.close()
    assert engine.calls[-1] == ("follower.stop", "127.0.0.5:10912")
