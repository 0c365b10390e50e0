"""Offsets (durable across SIGTERM and SIGKILL restarts, monotonic), lookups by time, key and
id, consume stats, heartbeats and consumer lists, queue locks."""

from __future__ import annotations

import asyncio
import signal
import time

import orjson
import pytest

from adapters.rocket.message import Message, decode_stored
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode

from .conftest import Driver, ServeProcess

pytestmark = pytest.mark.anyio

GET_BROKER_RUNTIME_INFO = 28


async def commit(d: Driver, topic: str, qid: int, offset: int, group: str = "CG") -> None:
    resp = await d.call(RequestCode.UPDATE_CONSUMER_OFFSET, {
        "consumerGroup": group, "topic": topic, "queueId": qid, "commitOffset": offset})
    assert resp.code == 0, resp.remark


async def query(d: Driver, topic: str, qid: int, group: str = "CG") -> int | None:
    resp = await d.call(RequestCode.QUERY_CONSUMER_OFFSET, {"consumerGroup": group, "topic": topic, "queueId": qid})
    return int(resp.ext_fields["offset"]) if resp.code == 0 else None


async def fill(d: Driver, topic: str, n: int, qid: int = 0) -> None:
    for i in range(n):
        m = Message(topic, f"m{i}".encode(), properties={"UNIQ_KEY": f"{topic}-U{i}", "KEYS": f"order{i} all"})
        assert (await d.send(m, qid)).code == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_offsets_and_messages_survive_restart(driver: Driver, serve: ServeProcess, sig: int) -> None:
    await driver.create_topic("TO", 2)
    await fill(driver, "TO", 5, 1)
    await commit(driver, "TO", 1, 3)
    await commit(driver, "TO", 1, 2)  # backwards: ignored
    assert await query(driver, "TO", 1) == 3
    serve.restart(sig)
    await driver.reconnect()
    assert await query(driver, "TO", 1) == 3
    resp, got = await driver.pull("TO", 1, 0)
    assert [m.body for m in got] == [f"m{i}".encode() for i in range(5)]
    # Key index and ids still work, and the broker keeps taking writes at the right offsets.
    resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TO", "key": "order2", "maxNum": 5,
                                                         "beginTimestamp": 0, "endTimestamp": 2**62})
    assert resp.code == 0 and [m.body for m in decode_stored(resp.body)] == [b"m2"]
    r = await driver.send(Message("TO", b"after"), 1)
    assert r.code == 0 and r.ext_fields["queueOffset"] == "5"


async def pull_committing(d: Driver, topic: str, qid: int, offset: int, commit_offset: int) -> None:
    """A pull that carries the consumer's offset (sysFlag commitOffset | subscription)."""
    resp = await d.call(RequestCode.PULL_MESSAGE, {
        "consumerGroup": "CG", "topic": topic, "queueId": qid, "queueOffset": offset, "maxMsgNums": 1,
        "sysFlag": 0x1 | 0x4, "commitOffset": commit_offset, "suspendTimeoutMillis": 0,
        "subscription": "*", "subVersion": 0, "expressionType": "TAG"})
    assert resp.code == 0, resp.remark


def saved_offsets(serve: ServeProcess) -> dict[str, dict[str, int]]:
    path = serve.data_dir / "config" / "consumerOffset.json"
    return orjson.loads(path.read_bytes())["offsetTable"] if path.exists() else {}


async def test_offsets_committed_on_pulls_survive_a_graceful_restart(driver: Driver, serve: ServeProcess) -> None:
    await driver.create_topic("TP", 1)
    await fill(driver, "TP", 5)
    await pull_committing(driver, "TP", 0, 3, 3)
    assert await query(driver, "TP", 0) == 3  # in memory at once
    serve.restart(signal.SIGTERM)  # a graceful stop saves what the last flush did not
    await driver.reconnect()
    assert await query(driver, "TP", 0) == 3


async def test_offsets_committed_on_pulls_are_saved_within_the_flush_interval(
        driver: Driver, serve: ServeProcess) -> None:
    """flushConsumerOffsetInterval (5 s): then even a SIGKILL keeps them."""
    await driver.create_topic("TF", 1)
    await fill(driver, "TF", 5)
    await pull_committing(driver, "TF", 0, 4, 4)
    start = time.monotonic()
    while saved_offsets(serve).get("TF@CG", {}).get("0") != 4:
        assert time.monotonic() - start < 5.0 + 1.0, saved_offsets(serve)
        await asyncio.sleep(0.05)
    serve.restart(signal.SIGKILL)
    await driver.reconnect()
    assert await query(driver, "TF", 0) == 4


async def test_query_offset_of_unknown_group(driver: Driver) -> None:
    await driver.create_topic("TQ", 1)
    assert await query(driver, "TQ", 0, "fresh") == 0  # a young queue: start at 0, as RocketMQ does
    resp = await driver.call(RequestCode.QUERY_CONSUMER_OFFSET, {
        "consumerGroup": "fresh", "topic": "TQ", "queueId": 0, "setZeroIfNotFound": False})
    assert resp.code == ResponseCode.QUERY_NOT_FOUND


async def test_min_max_and_search_by_timestamp(driver: Driver) -> None:
    await driver.create_topic("TT", 1)
    await fill(driver, "TT", 3)
    await asyncio.sleep(0.05)
    middle = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await fill(driver, "TT", 2)
    ext = {"topic": "TT", "queueId": 0}
    assert (await driver.call(RequestCode.GET_MAX_OFFSET, ext)).ext_fields["offset"] == "5"
    assert (await driver.call(RequestCode.GET_MIN_OFFSET, ext)).ext_fields["offset"] == "0"
    found = await driver.call(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, {**ext, "timestamp": middle})
    assert found.ext_fields["offset"] == "3"
    late = await driver.call(RequestCode.SEARCH_OFFSET_BY_TIMESTAMP, {**ext, "timestamp": middle + 10**9})
    assert late.ext_fields["offset"] == "5"


async def test_query_by_key_and_view_by_id(driver: Driver) -> None:
    await driver.create_topic("TK", 2)
    await fill(driver, "TK", 3, 0)
    await fill(driver, "TK", 2, 1)
    resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TK", "key": "TK-U1", "maxNum": 32,
                                                         "beginTimestamp": 0, "endTimestamp": 2**62})
    assert resp.code == 0
    assert sorted(m.body for m in decode_stored(resp.body)) == [b"m1", b"m1"]  # U1 on both queues
    resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TK", "key": "all", "maxNum": 32,
                                                         "beginTimestamp": 0, "endTimestamp": 2**62})
    assert len(decode_stored(resp.body)) == 5
    resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TK", "key": "none", "maxNum": 32,
                                                         "beginTimestamp": 0, "endTimestamp": 2**62})
    assert resp.code == ResponseCode.QUERY_NOT_FOUND
    r = await driver.send(Message("TK", b"by-id"), 1)
    _, got = await driver.pull("TK", 1, 2)
    view = await driver.call(RequestCode.VIEW_MESSAGE_BY_ID, {"offset": got[0].commitlog_offset})
    assert view.code == 0 and decode_stored(view.body)[0].body == b"by-id"
    assert decode_stored(view.body)[0].msg_id == r.ext_fields["msgId"]
    missing = await driver.call(RequestCode.VIEW_MESSAGE_BY_ID, {"offset": (999 << 40) | 5})
    assert missing.code == ResponseCode.SYSTEM_ERROR


async def test_consume_stats_lag(driver: Driver) -> None:
    from adapters.rocket.bodies import decode_consume_stats

    await driver.create_topic("TS", 2)
    await fill(driver, "TS", 4, 0)
    await fill(driver, "TS", 1, 1)
    await commit(driver, "TS", 0, 1, "SG")
    resp = await driver.call(RequestCode.GET_CONSUME_STATS, {"consumerGroup": "SG", "topic": "TS"})
    assert resp.code == 0
    stats = decode_consume_stats(resp.body)
    table = {mq["queueId"]: w for mq, w in stats["offsetTable"]}
    assert table[0]["brokerOffset"] == 4 and table[0]["consumerOffset"] == 1
    assert table[1]["brokerOffset"] == 1 and table[1]["consumerOffset"] == 0
    assert stats["totalDiff"] == 4
    assert table[0]["lastTimestamp"] > 0


async def test_heartbeat_consumer_list_and_notify(driver: Driver, serve: ServeProcess) -> None:
    await driver.create_topic("TH", 1)
    notified: list[str] = []

    async def on_notify(conn: object, cmd: RemotingCommand) -> None:
        notified.append(cmd.ext_fields["consumerGroup"])

    other = RemotingClient()
    other.register(RequestCode.NOTIFY_CONSUMER_IDS_CHANGED, on_notify)  # type: ignore[arg-type]
    try:
        def hb(cid: str) -> bytes:
            return orjson.dumps({"clientID": cid, "producerDataSet": [], "consumerDataSet": [{
                "groupName": "HG", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
                "consumeFromWhere": "CONSUME_FROM_FIRST_OFFSET", "unitMode": False,
                "subscriptionDataSet": [{"topic": "TH", "subString": "x || y", "tagsSet": ["x", "y"],
                                         "codeSet": [], "subVersion": 0, "expressionType": "TAG"}]}]})

        first = await other.invoke(serve.broker, RemotingCommand.request(RequestCode.HEART_BEAT, body=hb("c1")))
        assert first.code == 0
        assert (await driver.call(RequestCode.HEART_BEAT, body=hb("c2"))).code == 0
        resp = await driver.call(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "HG"})
        assert orjson.loads(resp.body)["consumerIdList"] == ["c1", "c2"]
        for _ in range(50):
            if notified:
                break
            await asyncio.sleep(0.02)
        assert "HG" in notified
        # The heartbeat's subscription filters pulls that carry none (sysFlag without bit 4).
        for tag in ("x", "z", "y"):
            m = Message("TH", tag.encode())
            m.tags = tag
            await driver.send(m)
        resp = await driver.call(RequestCode.PULL_MESSAGE, {
            "consumerGroup": "HG", "topic": "TH", "queueId": 0, "queueOffset": 0, "maxMsgNums": 32,
            "sysFlag": 0, "commitOffset": 0, "suspendTimeoutMillis": 0})
        assert [m.body for m in decode_stored(resp.body)] == [b"x", b"y"]
        unreg = await driver.call(RequestCode.UNREGISTER_CLIENT, {"clientID": "c2", "consumerGroup": "HG"})
        assert unreg.code == 0
        resp = await driver.call(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "HG"})
        assert orjson.loads(resp.body)["consumerIdList"] == ["c1"]
    finally:
        await other.close()
    for _ in range(50):  # c1's connection closed: the group empties
        resp = await driver.call(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "HG"})
        if resp.code != 0:
            break
        await asyncio.sleep(0.02)
    assert resp.code == ResponseCode.SYSTEM_ERROR


async def test_locks(driver: Driver) -> None:
    mqs = [{"topic": "TLK", "brokerName": "broker-a", "queueId": q} for q in range(3)]

    async def lock(client: str, qs: list[dict[str, object]]) -> list[int]:
        resp = await driver.call(RequestCode.LOCK_BATCH_MQ, body=orjson.dumps(
            {"consumerGroup": "LG", "clientId": client, "onlyThisBroker": True, "mqSet": qs}))
        return sorted(int(m["queueId"]) for m in orjson.loads(resp.body)["lockOKMQSet"])

    assert await lock("A", mqs[:2]) == [0, 1]
    assert await lock("B", mqs) == [2]
    assert await lock("A", mqs) == [0, 1]  # refresh own, not B's
    resp = await driver.call(RequestCode.UNLOCK_BATCH_MQ, body=orjson.dumps(
        {"consumerGroup": "LG", "clientId": "A", "mqSet": mqs[:1]}))
    assert resp.code == 0
    assert await lock("B", mqs) == [0, 2]


async def test_topic_admin_and_runtime_info(driver: Driver) -> None:
    await driver.create_topic("TA", 3)
    resp = await driver.call(RequestCode.GET_ALL_TOPIC_CONFIG)
    table = orjson.loads(resp.body)["topicConfigTable"]
    assert table["TA"]["readQueueNums"] == 3
    route = await driver.client.invoke(driver.serve.namesrv, RemotingCommand.request(
        RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": "TA"}))
    assert route.code == 0 and orjson.loads(route.body)["queueDatas"][0]["writeQueueNums"] == 3
    resp = await driver.call(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                             body=orjson.dumps({"groupName": "SG1", "retryMaxTimes": 3}))
    assert resp.code == 0
    assert (await driver.call(RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "TA"})).code == 0
    resp, _ = await driver.pull("TA", 0, 0)
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST
    info = await driver.call(GET_BROKER_RUNTIME_INFO)
    assert info.code == 0 and "msgPutTotalTodayNow" in orjson.loads(info.body)["table"]
