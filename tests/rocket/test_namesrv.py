"""Name server: registration, routes, expiry, unregistration, cluster info, over real TCP."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from adapters.rocket.namesrv import NameServer, Registration, RouteTable, run_namesrv
from adapters.rocket.remoting import (
    RemotingClient,
    RemotingCommand,
    RequestCode,
    ResponseCode,
    SerializeType,
)

from .helpers import FakeClock

pytestmark = pytest.mark.anyio

BROKER_A = "127.0.0.1:10911"
BROKER_A_SLAVE = "127.0.0.1:10921"
BROKER_B = "127.0.0.1:10931"


@asynccontextmanager
async def running_namesrv(**kwargs: Any) -> AsyncIterator[tuple[NameServer, RemotingClient]]:
    namesrv = NameServer("127.0.0.1", 0, **kwargs)
    async with namesrv, RemotingClient() as client:
        yield namesrv, client


def register_request(
    addr: str, *, name: str = "broker-a", broker_id: int = 0, cluster: str = "DefaultCluster",
    topics: dict[str, int] | None = None, **extra: object,
) -> RemotingCommand:
    table = {
        topic: {"topicName": topic, "readQueueNums": queues, "writeQueueNums": queues,
                "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False,
                "attributes": {}}
        for topic, queues in (topics or {}).items()
    }
    body = orjson.dumps({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": table,
            "dataVersion": {"stateVersion": 0, "timestamp": 1, "counter": 1},
        },
        "filterServerList": [],
    })
    header: dict[str, object] = {
        "brokerName": name, "brokerAddr": addr, "clusterName": cluster,
        "haServerAddr": addr.replace("109", "119"), "brokerId": broker_id,
        "compressed": False, "bodyCrc32": zlib.crc32(body) & 0x7FFFFFFF,
    }
    header.update(extra)
    return RemotingCommand.request(RequestCode.REGISTER_BROKER, header, body)


async def call(client: RemotingClient, namesrv: NameServer, cmd: RemotingCommand) -> RemotingCommand:
    return await client.invoke(namesrv.address, cmd, 5.0)


async def route(client: RemotingClient, namesrv: NameServer, topic: str) -> RemotingCommand:
    cmd = RemotingCommand.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    return await call(client, namesrv, cmd)


async def test_register_then_route() -> None:
    async with running_namesrv() as (namesrv, client):
        response = await call(client, namesrv, register_request(BROKER_A, topics={"T": 4}))
        assert response.code == ResponseCode.SUCCESS
        assert response.ext_fields == {}  # a master has no master and no HA peer to follow

        response = await route(client, namesrv, "T")
        assert response.code == ResponseCode.SUCCESS
        assert b'"brokerAddrs":{"0":"127.0.0.1:10911"}' in response.body
        data = orjson.loads(response.body)
    assert data["queueDatas"] == [{"brokerName": "broker-a", "readQueueNums": 4,
                                   "writeQueueNums": 4, "perm": 6, "topicSysFlag": 0}]
    assert data["brokerDatas"] == [{"cluster": "DefaultCluster", "brokerName": "broker-a",
                                    "brokerAddrs": {"0": BROKER_A},
                                    "enableActingMaster": False}]


async def test_route_of_missing_topic() -> None:
    async with running_namesrv() as (namesrv, client):
        response = await route(client, namesrv, "nope")
    assert response.code == 17  # TOPIC_NOT_EXIST
    assert response.remark is not None and "nope" in response.remark


async def test_binary_header_request_gets_binary_response() -> None:
    async with running_namesrv() as (namesrv, client):
        await call(client, namesrv, register_request(BROKER_A, topics={"T": 1}))
        cmd = RemotingCommand.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "T"},
                                      serialize_type=SerializeType.ROCKETMQ)
        response = await call(client, namesrv, cmd)
    assert response.serialize_type == SerializeType.ROCKETMQ
    assert orjson.loads(response.body)["brokerDatas"][0]["brokerAddrs"] == {"0": BROKER_A}


async def test_slave_learns_its_master() -> None:
    async with running_namesrv() as (namesrv, client):
        await call(client, namesrv, register_request(BROKER_A, topics={"T": 4}))
        response = await call(client, namesrv, register_request(BROKER_A_SLAVE, broker_id=1,
                                                                topics={"T": 4}))
        assert response.ext_fields == {"masterAddr": BROKER_A, "haServerAddr": "127.0.0.1:11911"}
        data = orjson.loads((await route(client, namesrv, "T")).body)
    assert data["brokerDatas"][0]["brokerAddrs"] == {"0": BROKER_A, "1": BROKER_A_SLAVE}


async def test_cluster_info_topic_list_delete_and_unregister() -> None:
    async with running_namesrv() as (namesrv, client):
        await call(client, namesrv, register_request(BROKER_A, topics={"T": 4, "U": 2}))
        await call(client, namesrv, register_request(BROKER_B, name="broker-b",
                                                     cluster="other", topics={"T": 8}))
        info = orjson.loads((await call(client, namesrv, RemotingCommand.request(
            RequestCode.GET_BROKER_CLUSTER_INFO))).body)
        assert info["clusterAddrTable"] == {"DefaultCluster": ["broker-a"], "other": ["broker-b"]}
        assert info["brokerAddrTable"]["broker-b"]["brokerAddrs"] == {"0": BROKER_B}

        listing = await call(client, namesrv, RemotingCommand.request(
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
        assert orjson.loads(listing.body) == {"topicList": ["T", "U"]}

        deleted = await call(client, namesrv, RemotingCommand.request(
            RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "T", "clusterName": "other"}))
        assert deleted.code == ResponseCode.SUCCESS
        queues = orjson.loads((await route(client, namesrv, "T")).body)["queueDatas"]
        assert [q["brokerName"] for q in queues] == ["broker-a"]
        await call(client, namesrv, RemotingCommand.request(
            RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "U"}))
        assert (await route(client, namesrv, "U")).code == ResponseCode.TOPIC_NOT_EXIST

        response = await call(client, namesrv, RemotingCommand.request(
            RequestCode.UNREGISTER_BROKER, {"brokerName": "broker-a", "brokerAddr": BROKER_A,
                                            "clusterName": "DefaultCluster", "brokerId": 0}))
        assert response.code == ResponseCode.SUCCESS
        assert (await route(client, namesrv, "T")).code == ResponseCode.TOPIC_NOT_EXIST
        info = orjson.loads((await call(client, namesrv, RemotingCommand.request(
            RequestCode.GET_BROKER_CLUSTER_INFO))).body)
        assert info["clusterAddrTable"] == {"other": ["broker-b"]}


async def test_brokers_expire_after_the_timeout() -> None:
    clock = FakeClock()
    async with running_namesrv(clock=clock, scan_interval_s=0.01) as (namesrv, client):
        await call(client, namesrv, register_request(BROKER_A, topics={"T": 4}))
        await call(client, namesrv, register_request(BROKER_B, name="broker-b", topics={"T": 4},
                                                     heartbeatTimeoutMillis=30_000))
        clock.advance(60)  # broker-b (30 s timeout) expires, broker-a (120 s default) does not
        await asyncio.sleep(0.1)
        assert namesrv.routes.live_brokers() == [BROKER_A]
        clock.advance(30)
        await call(client, namesrv, register_request(BROKER_A, topics={"T": 4}))  # re-register
        clock.advance(100)
        await asyncio.sleep(0.1)
        assert (await route(client, namesrv, "T")).code == ResponseCode.SUCCESS
        clock.advance(21)
        await asyncio.sleep(0.1)
        assert (await route(client, namesrv, "T")).code == ResponseCode.TOPIC_NOT_EXIST
        assert namesrv.routes.live_brokers() == []


async def test_broker_is_dropped_when_its_connection_closes() -> None:
    async with running_namesrv() as (namesrv, client):
        async with RemotingClient() as broker:
            await broker.invoke(namesrv.address, register_request(BROKER_A, topics={"T": 1}), 5.0)
            assert (await route(client, namesrv, "T")).code == ResponseCode.SUCCESS
        await asyncio.sleep(0.1)
        assert (await route(client, namesrv, "T")).code == ResponseCode.TOPIC_NOT_EXIST


@pytest.mark.parametrize(("change", "remark"), [
    ({"bodyCrc32": 12345}, "crc32"),
    ({"compressed": True}, "compressed"),
    ({"brokerAddr": None}, "brokerAddr"),
    ({"brokerId": "x"}, "brokerId"),
])
async def test_bad_registrations_are_refused(change: dict[str, Any], remark: str) -> None:
    async with running_namesrv() as (namesrv, client):
        response = await call(client, namesrv, register_request(BROKER_A, topics={"T": 1},
                                                                **change))
        assert response.code == ResponseCode.SYSTEM_ERROR
        assert response.remark is not None and remark in response.remark
        assert namesrv.routes.live_brokers() == []


async def test_register_body_with_fastjson_bare_integer_keys() -> None:
    body = (b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T",'
            b'"readQueueNums":2,"writeQueueNums":2,"perm":6}},"mapping":{0:"x"}}}')
    cmd = RemotingCommand.request(RequestCode.REGISTER_BROKER, {
        "brokerName": "broker-a", "brokerAddr": BROKER_A, "clusterName": "c", "brokerId": 0,
    }, body)
    async with running_namesrv() as (namesrv, client):
        assert (await call(client, namesrv, cmd)).code == ResponseCode.SUCCESS
        assert (await route(client, namesrv, "T")).code == ResponseCode.SUCCESS


# -- RouteTable without the network ----------------------------------------------------------


def registration(addr: str, broker_id: int = 0, **kwargs: Any) -> Registration:
    return Registration(cluster="c", broker_name="broker-a", broker_addr=addr,
                        broker_id=broker_id, **kwargs)


def test_role_switch_moves_the_address_to_the_new_id() -> None:
    table = RouteTable(clock=FakeClock())
    table.register(registration(BROKER_A, topic_configs={"T": {}}))
    table.register(registration(BROKER_A_SLAVE, 1))
    table.register(registration(BROKER_A_SLAVE, 0))  # slave promoted
    route = table.topic_route("T")
    assert route is not None
    assert route["brokerDatas"][0]["brokerAddrs"] == {"0": BROKER_A_SLAVE}
    assert route["queueDatas"][0]["readQueueNums"] == 16  # defaults for a sparse config


def test_scan_expired_reports_what_it_dropped() -> None:
    clock = FakeClock()
    table = RouteTable(clock=clock, broker_timeout_s=10)
    table.register(registration(BROKER_A, topic_configs={"T": {}}))
    table.register(registration(BROKER_A_SLAVE, 1))
    clock.advance(10)
    assert table.scan_expired() == []
    clock.advance(0.5)
    assert sorted(table.scan_expired()) == [BROKER_A, BROKER_A_SLAVE]
    assert table.topic_route("T") is None
    assert table.cluster_info() == {"brokerAddrTable": {}, "clusterAddrTable": {}}


def test_slave_alone_keeps_the_route_until_the_name_empties() -> None:
    table = RouteTable(clock=FakeClock())
    table.register(registration(BROKER_A, topic_configs={"T": {"readQueueNums": 2}}))
    table.register(registration(BROKER_A_SLAVE, 1))
    assert table.unregister("c", "broker-a", BROKER_A, 0)
    assert not table.unregister("c", "broker-a", BROKER_A, 0)
    route = table.topic_route("T")
    assert route is not None and route["brokerDatas"][0]["brokerAddrs"] == {"1": BROKER_A_SLAVE}
    assert table.unregister("c", "broker-a", BROKER_A_SLAVE, 1)
    assert table.topic_route("T") is None


async def test_run_namesrv_serves_until_cancelled() -> None:
    ready: asyncio.Future[NameServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_namesrv("127.0.0.1", 0, on_ready=ready.set_result))
    namesrv = await asyncio.wait_for(ready, 5.0)
    async with RemotingClient() as client:
        assert (await route(client, namesrv, "T")).code == ResponseCode.TOPIC_NOT_EXIST
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
