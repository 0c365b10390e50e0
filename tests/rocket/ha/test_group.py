"""A master/slave broker group as real processes: registration, slave refusals and reads,
metadata sync (SlaveSynchronize) and promotion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from adapters.rocket.client import ClientConfig
from adapters.rocket.client.common import MessageQueue
from adapters.rocket.client.filter import build_subscription
from adapters.rocket.client.instance import MQClientInstance
from adapters.rocket.client.pull import pull_once
from adapters.rocket.message import Message
from adapters.rocket.remoting import RequestCode, ResponseCode

from .group import Cluster, broker_addrs, call, create_topic, eventually, route, runtime_info

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SYNC_MS = 500  # slaveSyncInterval for these tests (RocketMQ: 10 s)


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_broker("a-master", broker_name="broker-a")
        cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE",
                             slaveSyncInterval=SYNC_MS)
        yield cluster
    finally:
        cluster.close()


def send_ext(topic: str, queue_id: int = 0) -> dict[str, object]:
    msg = Message(topic=topic, body=b"x", properties={"UNIQ_KEY": "k"})
    return {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": queue_id, "f": 0, "g": int(time.time() * 1000),
            "h": 0, "i": msg.properties_string(), "j": 0, "k": False, "m": False}


async def test_master_and_slave_are_both_in_the_route(group: Cluster) -> None:
    await create_topic(group.addrs["a-master"], "GroupTopic")
    expected = {"0": group.addrs["a-master"], "1": group.addrs["a-slave"]}

    async def both() -> bool:
        return await broker_addrs(group.namesrv, "GroupTopic", "broker-a") == expected

    await eventually(both, what="master and slave in the route")
    r = await route(group.namesrv, "GroupTopic")
    assert r is not None and [q["brokerName"] for q in r["queueDatas"]] == ["broker-a"]
    # The name server tells a registering slave who its master is (REGISTER_BROKER answer).
    info = await runtime_info(group.addrs["a-slave"])
    assert info["brokerRole"] == "SLAVE" and info["brokerId"] == "1"
    assert info["slaveSyncMasterAddr"] == group.addrs["a-master"]
    assert info["haMasterAddr"] == group.ha_addrs["a-master"]  # the master's haServerAddr
    assert (await runtime_info(group.addrs["a-master"]))["brokerRole"] == "ASYNC_MASTER"


async def test_a_slave_refuses_sends_and_serves_pulls(group: Cluster) -> None:
    master, slave = group.addrs["a-master"], group.addrs["a-slave"]
    await create_topic(master, "SlaveRefuses")
    ok = await call(master, RequestCode.SEND_MESSAGE_V2, send_ext("SlaveRefuses"), b"hello")
    assert ok.code == ResponseCode.SUCCESS, ok.remark

    await eventually(lambda: _has_topic(slave), what="topic synced to the slave")
    refused = await call(slave, RequestCode.SEND_MESSAGE_V2, send_ext("SlaveRefuses"), b"hello")
    assert refused.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert "slave" in (refused.remark or "")
    refused = await call(slave, RequestCode.END_TRANSACTION, {
        "producerGroup": "PG", "tranStateTableOffset": 0, "commitLogOffset": 0, "commitOrRollback": 8})
    assert refused.code == ResponseCode.SLAVE_NOT_AVAILABLE
    pulled = await call(slave, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "CG", "topic": "SlaveRefuses", "queueId": 0, "queueOffset": 0, "maxMsgNums": 8,
        "sysFlag": 0x4, "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0,
        "expressionType": "TAG"})
    # Served (what the slave has: nothing until the engine replicates), and sent back to the master.
    assert pulled.code in (ResponseCode.SUCCESS, ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_OFFSET_MOVED)
    assert pulled.ext_fields["suggestWhichBrokerId"] == "0"


async def _has_topic(addr: str, topic: str = "SlaveRefuses") -> bool:
    resp = await call(addr, RequestCode.GET_ALL_TOPIC_CONFIG)
    return topic in orjson.loads(resp.body)["topicConfigTable"]


async def test_slave_copies_topics_offsets_groups_and_delay_progress(group: Cluster) -> None:
    master, slave = group.addrs["a-master"], group.addrs["a-slave"]
    await create_topic(master, "Synced", queues=3)
    resp = await call(master, RequestCode.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "G1", "topic": "Synced", "queueId": 2, "commitOffset": 7})
    assert resp.code == ResponseCode.SUCCESS
    resp = await call(master, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                      body=orjson.dumps({"groupName": "G1", "retryMaxTimes": 3}))
    assert resp.code == ResponseCode.SUCCESS

    async def copied() -> bool:
        topics = orjson.loads((await call(slave, RequestCode.GET_ALL_TOPIC_CONFIG)).body)
        offsets = orjson.loads((await call(slave, RequestCode.GET_ALL_CONSUMER_OFFSET)).body)
        groups = orjson.loads((await call(slave, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)).body)
        return (topics["topicConfigTable"].get("Synced", {}).get("readQueueNums") == 3
                and offsets["offsetTable"].get("Synced@G1", {}).get("2") == 7
                and groups["subscriptionGroupTable"].get("G1", {}).get("retryMaxTimes") == 3)

    await eventually(copied, what="topic, offset and group on the slave")
    # Queue log ids (inside commit log offsets and message ids) are the master's on the slave.
    master_ids = orjson.loads((await call(master, RequestCode.GET_ALL_TOPIC_CONFIG)).body)["logstoreQueueIds"]["ids"]
    slave_ids = orjson.loads((await call(slave, RequestCode.GET_ALL_TOPIC_CONFIG)).body)["logstoreQueueIds"]["ids"]
    assert {k: v for k, v in slave_ids.items() if k in master_ids} == master_ids
    # The slave answers offset queries from what it copied (consumers fall back to it).
    q = await call(slave, RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": "G1", "topic": "Synced", "queueId": 2})
    assert q.code == ResponseCode.SUCCESS and q.ext_fields["offset"] == "7"
    # The master's delay progress is what the slave has (GET_ALL_DELAY_OFFSET).
    master_delay = orjson.loads((await call(master, RequestCode.GET_ALL_DELAY_OFFSET)).body)
    assert "offsetTable" in master_delay
    assert orjson.loads((await call(slave, RequestCode.GET_ALL_DELAY_OFFSET)).body)["offsetTable"] == \
        master_delay["offsetTable"]
    # A commit to the slave is taken in memory; the master's value overwrites it at the next sync.
    resp = await call(slave, RequestCode.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "G1", "topic": "Synced", "queueId": 2, "commitOffset": 9})
    assert resp.code == ResponseCode.SUCCESS
    resp = await call(master, RequestCode.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": "G1", "topic": "Synced", "queueId": 2, "commitOffset": 11})

    async def master_wins() -> bool:
        offsets = orjson.loads((await call(slave, RequestCode.GET_ALL_CONSUMER_OFFSET)).body)
        return bool(offsets["offsetTable"]["Synced@G1"]["2"] == 11)

    await eventually(master_wins, what="the master's offset on the slave")
    # Nothing flows back: the master never saw 9.
    q = await call(master, RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": "G1", "topic": "Synced", "queueId": 2})
    assert q.ext_fields["offset"] == "11"


def pull_ext(topic: str, offset: int, max_nums: int = 1, group: str = "CG") -> dict[str, object]:
    return {"consumerGroup": group, "topic": topic, "queueId": 0, "queueOffset": offset, "maxMsgNums": max_nums,
            "sysFlag": 0x4, "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0,
            "expressionType": "TAG"}


async def test_with_slave_read_enable_a_lagging_consumer_is_sent_to_the_slave(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        # accessMessageInMemoryMaxRatio=0: any lag is "too far behind" (RocketMQ: 40 % of RAM).
        master = cluster.start_broker("a-master", broker_name="broker-a", slaveReadEnable="true",
                                      accessMessageInMemoryMaxRatio=0)
        slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE",
                                     slaveReadEnable="true", slaveSyncInterval=SYNC_MS)
        await create_topic(master, "Lagging", queues=1)
        for _ in range(5):
            resp = await call(master, RequestCode.SEND_MESSAGE_V2, send_ext("Lagging"), b"0123456789")
            assert resp.code == ResponseCode.SUCCESS
        behind = await call(master, RequestCode.PULL_MESSAGE, pull_ext("Lagging", 0))
        assert behind.code == ResponseCode.SUCCESS and behind.ext_fields["suggestWhichBrokerId"] == "1"
        caught_up = await call(master, RequestCode.PULL_MESSAGE, pull_ext("Lagging", 4))
        assert caught_up.code == ResponseCode.SUCCESS and caught_up.ext_fields["suggestWhichBrokerId"] == "0"

        # The client follows the suggestion: the next pull of that queue goes to the slave.
        instance = MQClientInstance(ClientConfig(namesrv_addr=cluster.namesrv, client_ip="127.0.0.1"))
        try:
            await eventually(lambda: _routed_both(cluster.namesrv, master, slave), what="both in the route")
            await eventually(lambda: _has_topic(slave, "Lagging"), what="the topic synced to the slave")
            await instance.update_route("Lagging")
            mq = MessageQueue("Lagging", "broker-a", 0)
            sub = build_subscription("Lagging", "*")
            assert (await instance.find_broker_addr_for_read(mq, instance.pull_from_which_node.get(mq, 0))
                    ).broker_addr == master
            result = await pull_once(instance, "CG", mq, sub, 0, 1)
            assert len(result.msg_found_list) == 1
            assert instance.pull_from_which_node[mq] == 1
            found = await instance.find_broker_addr_for_read(mq, instance.pull_from_which_node[mq])
            assert found.broker_addr == slave and found.slave
            await pull_once(instance, "CG", mq, sub, 1, 1)  # served by the slave, which sends it back
            assert instance.pull_from_which_node[mq] == 0
        finally:
            await instance.shutdown()
    finally:
        cluster.close()


async def _routed_both(namesrv: str, master: str, slave: str) -> bool:
    return await broker_addrs(namesrv, "Lagging", "broker-a") == {"0": master, "1": slave}


async def test_a_sync_master_without_an_in_sync_slave_answers_slave_not_available(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        master = cluster.start_broker("a-master", broker_name="broker-a", role="SYNC_MASTER")
        await create_topic(master, "SyncMaster", queues=1)
        resp = await call(master, RequestCode.SEND_MESSAGE_V2, send_ext("SyncMaster"), b"stored anyway")
        # RocketMQ's CommitLog.handleHA: no slave in sync -> SLAVE_NOT_AVAILABLE, stored on the master.
        assert resp.code == ResponseCode.SLAVE_NOT_AVAILABLE, resp.remark
        assert resp.ext_fields["queueOffset"] == "0"
        pulled = await call(master, RequestCode.PULL_MESSAGE, pull_ext("SyncMaster", 0, 8))
        assert pulled.code == ResponseCode.SUCCESS
        info = await runtime_info(master)
        assert info["brokerRole"] == "SYNC_MASTER" and info["haSlaveNotAvailable"] == "1"
    finally:
        cluster.close()


async def test_a_slave_started_before_its_master_finds_it(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path)
    try:
        slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE",
                                     slaveSyncInterval=SYNC_MS)
        assert (await runtime_info(slave))["slaveSyncMasterAddr"] == ""
        master = cluster.start_broker("a-master", broker_name="broker-a")
        await create_topic(master, "Later", queues=1)

        async def found() -> bool:
            return (await runtime_info(slave))["slaveSyncMasterAddr"] == master and await _has_topic(slave, "Later")

        await eventually(found, timeout_s=15, what="the slave finding its master (registering every 3 s)")
    finally:
        cluster.close()
