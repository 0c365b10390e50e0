"""CONSUMER_SEND_MSG_BACK and sends to retry topics against a real broker: retries wait their
delay level in the retry topic (routed by the name server), dead letters go to the group's DLQ."""

from __future__ import annotations

import time

import orjson
import pytest

from adapters.rocket.message import Message
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode

from .conftest import Driver, ServeProcess
from .test_schedule import collect, max_offset

pytestmark = pytest.mark.anyio


async def send_back(d: Driver, msg: Message, group: str, **ext: object) -> RemotingCommand:
    fields: dict[str, object] = {"offset": msg.commitlog_offset, "group": group, "delayLevel": 0,
                                 "originMsgId": msg.msg_id, "originTopic": msg.topic, "unitMode": False}
    fields.update(ext)
    return await d.call(RequestCode.CONSUMER_SEND_MSG_BACK, fields)


async def routed(namesrv: str, topic: str) -> bool:
    async with RemotingClient() as client:
        resp = await client.invoke(namesrv, RemotingCommand.request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}), 5.0)
    return resp.code == ResponseCode.SUCCESS


async def test_send_back_retries_then_dead_letters(sd: Driver, sched_serve: ServeProcess) -> None:
    await sd.create_topic("TRetry", 1)
    assert (await sd.send(Message("TRetry", b"payload", properties={"UNIQ_KEY": "U1", "KEYS": "k1"}))).code == 0
    _resp, (original,) = await sd.pull("TRetry", 0, 0)
    started = time.monotonic()
    resp = await send_back(sd, original, "G1")
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    assert await routed(sched_serve.namesrv, "%RETRY%G1")  # consumers can route to it at once
    (retry,) = await collect(sd, "%RETRY%G1", {b"payload"}, 5.0)
    assert time.monotonic() - started >= 1.0  # level 3 + 0 reconsumes: 1 s with these levels
    assert retry.reconsume_times == 1
    assert retry.properties["RETRY_TOPIC"] == "TRetry"
    assert retry.properties["ORIGIN_MESSAGE_ID"] == original.msg_id
    assert retry.properties["UNIQ_KEY"] == "U1" and retry.properties["KEYS"] == "k1"
    assert "DELAY" not in retry.properties and "REAL_TOPIC" not in retry.properties
    # The client's maxReconsumeTimes wins over the group's retryMaxTimes (16).
    resp = await send_back(sd, retry, "G1", maxReconsumeTimes=1)
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    (dead,) = await collect(sd, "%DLQ%G1", {b"payload"}, 2.0)  # no delay on the way to the DLQ
    assert dead.reconsume_times == 2
    assert dead.properties["RETRY_TOPIC"] == "TRetry" and dead.properties["ORIGIN_MESSAGE_ID"] == original.msg_id
    assert dead.properties["DLQ_ORIGIN_TOPIC"] == "TRetry"
    assert await routed(sched_serve.namesrv, "%DLQ%G1")


async def test_group_retry_max_times_and_negative_delay_level(sd: Driver) -> None:
    await sd.create_topic("TRetry2", 1)
    resp = await sd.call(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                         body=orjson.dumps({"groupName": "G2", "retryMaxTimes": 0}))
    assert resp.code == 0, resp.remark
    for body in (b"a", b"b"):
        assert (await sd.send(Message("TRetry2", body))).code == 0
    _resp, (a, b) = await sd.pull("TRetry2", 0, 0)
    assert (await send_back(sd, a, "G2")).code == 0  # retryMaxTimes 0: dead at once
    assert (await send_back(sd, b, "G3", delayLevel=-1)).code == 0  # -1: straight to the DLQ
    assert [m.body for m in await collect(sd, "%DLQ%G2", {b"a"}, 2.0)] == [b"a"]
    assert [m.body for m in await collect(sd, "%DLQ%G3", {b"b"}, 2.0)] == [b"b"]
    assert await max_offset(sd, "%RETRY%G3", 0) == 0


async def test_send_back_bad_requests(sd: Driver) -> None:
    await sd.create_topic("TRetry3", 1)
    assert (await sd.send(Message("TRetry3", b"x"))).code == 0
    _resp, (m,) = await sd.pull("TRetry3", 0, 0)
    missing = await sd.call(RequestCode.CONSUMER_SEND_MSG_BACK, {"offset": m.commitlog_offset})
    assert missing.code == ResponseCode.SYSTEM_ERROR and "group" in (missing.remark or "")
    unknown = await sd.call(RequestCode.CONSUMER_SEND_MSG_BACK, {"offset": m.commitlog_offset + 99, "group": "G4"})
    assert unknown.code == ResponseCode.SYSTEM_ERROR and "look message by offset failed" in (unknown.remark or "")
    bad = await sd.call(RequestCode.CONSUMER_SEND_MSG_BACK, {"offset": "x", "group": "G4"})
    assert bad.code == ResponseCode.SYSTEM_ERROR
    assert await max_offset(sd, "%RETRY%G4", 0) == 0 and await max_offset(sd, "%DLQ%G4", 0) == 0


async def test_send_to_retry_topic_past_the_limit_goes_to_the_dlq(sd: Driver) -> None:
    """RocketMQ's client falls back to SEND_MESSAGE to %RETRY%<group> when a send-back fails."""
    def retry_send(body: bytes, reconsume: int, limit: int) -> dict[str, object]:
        return {"producerGroup": "CLIENT_INNER_PRODUCER", "topic": "%RETRY%G5", "defaultTopic": "TBW102",
                "defaultTopicQueueNums": 4, "queueId": 0, "sysFlag": 0, "bornTimestamp": int(time.time() * 1000),
                "flag": 0, "properties": f"RETRY_TOPIC\x01T5\x02DELAY\x01{3 + reconsume}\x02",
                "reconsumeTimes": reconsume, "unitMode": False, "maxReconsumeTimes": limit}

    ok = await sd.call(RequestCode.SEND_MESSAGE, retry_send(b"again", 1, 3), b"again")
    assert ok.code == 0, ok.remark
    dead = await sd.call(RequestCode.SEND_MESSAGE, retry_send(b"dead", 3, 3), b"dead")
    assert dead.code == 0, dead.remark
    (d,) = await collect(sd, "%DLQ%G5", {b"dead"}, 2.0)
    assert "DELAY" not in d.properties and d.reconsume_times == 3
    (r,) = await collect(sd, "%RETRY%G5", {b"again"}, 4.0)  # after level 4 (clamped to 3: 1 s)
    assert r.reconsume_times == 1 and r.properties["RETRY_TOPIC"] == "T5"
