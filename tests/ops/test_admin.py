"""``logstore admin``: every subcommand against a real ``logstore serve`` process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import ServeProcess, write_conf

from adapters.rocket.client import MessageQueue, Producer, SendResult
from adapters.rocket.message import Message
from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode
from logstore import runtime
from tools import admin, cli

pytestmark = pytest.mark.slow

TOPIC = "AdminT"
GROUP = "AdminG"
QUEUES = 4


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("admin")
    proc = ServeProcess(tmp / "data", write_conf(tmp / "broker.conf", brokerName="broker-a"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def run(capsys: pytest.CaptureFixture[str], serve: ServeProcess, *argv: str) -> tuple[int, str, str]:
    code = admin.main([argv[0], "-n", serve.namesrv, *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], serve: ServeProcess, *argv: str) -> Any:
    code, out, err = run(capsys, serve, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


async def _produce(namesrv: str) -> tuple[list[SendResult], int]:
    """20 messages, round-robin over the 4 queues (message i -> queue i % 4) with key k<i>;
    the first 10 are stored before the returned timestamp (ms), the last 10 after it."""
    results = []
    mid = 0
    async with Producer("AdminPG", namesrv_addr=namesrv) as producer:
        for i in range(20):
            if i == 10:
                await asyncio.sleep(0.05)
                mid = time.time_ns() // 1_000_000
                await asyncio.sleep(0.05)
            msg = Message(TOPIC, b"body-%d" % i)
            msg.keys = f"k{i}"
            msg.tags = "tagA"
            results.append(await producer.send(msg, mq=MessageQueue(TOPIC, "broker-a", i % QUEUES)))
    return results, mid


async def _commit(broker: str, offsets: dict[int, int]) -> None:
    async with RemotingClient() as client:
        for qid, offset in offsets.items():
            resp = await client.invoke(broker, RemotingCommand.request(RequestCode.UPDATE_CONSUMER_OFFSET, {
                "consumerGroup": GROUP, "topic": TOPIC, "queueId": qid, "commitOffset": offset}))
            assert resp.code == 0, resp.remark


def consumer_offsets(capsys: pytest.CaptureFixture[str], serve: ServeProcess) -> dict[int, int]:
    doc = run_json(capsys, serve, "consumerProgress", "-g", GROUP, "-t", TOPIC)
    return {q["queueId"]: q["consumerOffset"] for q in doc["queues"]}


def test_every_subcommand(capsys: pytest.CaptureFixture[str], serve: ServeProcess, tmp_path: Path) -> None:
    # clusterList
    doc = run_json(capsys, serve, "clusterList")
    assert doc["brokers"] == [{"cluster": "DefaultCluster", "brokerName": "broker-a", "brokerId": 0,
                               "addr": serve.broker}]
    code, out, _ = run(capsys, serve, "clusterList")
    assert code == 0 and "#Cluster Name" in out and serve.broker in out

    # updateTopic, topicList, topicRoute
    doc = run_json(capsys, serve, "updateTopic", "-c", "DefaultCluster", "-t", TOPIC, "-r", "4", "-w", "4")
    assert doc["brokers"] == [serve.broker]
    assert TOPIC in run_json(capsys, serve, "topicList")["topicList"]
    rows = run_json(capsys, serve, "topicList", "-c")["topics"]
    assert {"cluster": "DefaultCluster", "topic": TOPIC, "consumerGroup": ""} in rows
    route = run_json(capsys, serve, "topicRoute", "-t", TOPIC)
    assert route["queueDatas"][0]["readQueueNums"] == QUEUES
    assert route["brokerDatas"][0]["brokerAddrs"]["0"] == serve.broker
    code, out, _ = run(capsys, serve, "topicRoute", "-t", TOPIC, "-l")
    assert code == 0 and "#BrokerAddr" in out and serve.broker in out

    results, mid = runtime.run(_produce(serve.namesrv))

    # topicStatus
    before = int(time.time() * 1000) + 1
    queues = run_json(capsys, serve, "topicStatus", "-t", TOPIC)["queues"]
    assert [(q["queueId"], q["minOffset"], q["maxOffset"]) for q in queues] == [(i, 0, 5) for i in range(QUEUES)]
    assert all(0 < q["lastUpdateTimestamp"] <= before for q in queues)
    code, out, _ = run(capsys, serve, "topicStatus", "-t", TOPIC)
    assert code == 0 and "#Last Updated" in out

    # consumerProgress: committed 2 of 5 on each queue
    runtime.run(_commit(serve.broker, dict.fromkeys(range(QUEUES), 2)))
    doc = run_json(capsys, serve, "consumerProgress", "-g", GROUP)
    assert [(q["queueId"], q["brokerOffset"], q["consumerOffset"], q["diff"]) for q in doc["queues"]] == [
        (i, 5, 2, 3) for i in range(QUEUES)]
    assert doc["diffTotal"] == 12
    code, out, _ = run(capsys, serve, "consumerProgress", "-g", GROUP)
    assert code == 0 and "Diff Total: 12" in out
    code, out, _ = run(capsys, serve, "consumerProgress")
    assert code == 0 and "#Group" in out

    # queryMsgById: by offset message id, and by unique key with -t
    sent = results[7]
    msgs = run_json(capsys, serve, "queryMsgById", "-i", sent.offset_msg_id)["messages"]
    assert len(msgs) == 1 and msgs[0]["body"] == "body-7" and msgs[0]["keys"] == ["k7"]
    assert msgs[0]["queueId"] == 3 and msgs[0]["queueOffset"] == 1 and msgs[0]["tags"] == "tagA"
    msgs = run_json(capsys, serve, "queryMsgById", "-i", sent.msg_id, "-t", TOPIC)["messages"]
    assert [m["body"] for m in msgs] == ["body-7"]
    code, out, _ = run(capsys, serve, "queryMsgById", "-i", sent.offset_msg_id)
    assert code == 0 and "body-7" in out and sent.offset_msg_id in out
    code, _, err = run(capsys, serve, "queryMsgById", "-i", "not-an-id")
    assert code == 1 and "not hex" in err

    # queryMsgByKey
    msgs = run_json(capsys, serve, "queryMsgByKey", "-t", TOPIC, "-k", "k12")["messages"]
    assert [(m["body"], m["msgId"]) for m in msgs] == [("body-12", results[12].offset_msg_id)]
    code, out, _ = run(capsys, serve, "queryMsgByKey", "-t", TOPIC, "-k", "k12")
    assert code == 0 and results[12].offset_msg_id in out
    code, _, err = run(capsys, serve, "queryMsgByKey", "-t", TOPIC, "-k", "nope")
    assert code == 1 and "no message" in err

    # resetOffsetByTime: to the middle (backwards and forwards), to 0, to now, not forced
    doc = run_json(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", str(mid))
    expected_mid = {0: 3, 1: 3, 2: 2, 3: 2}  # messages 0..9 went to queues i % 4
    assert {q["queueId"]: q["offset"] for q in doc["queues"]} == expected_mid
    assert consumer_offsets(capsys, serve) == expected_mid
    run_json(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "0")
    assert consumer_offsets(capsys, serve) == dict.fromkeys(range(QUEUES), 0)
    code, out, _ = run(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "now")
    assert code == 0 and "rollback consumer offset" in out
    assert consumer_offsets(capsys, serve) == dict.fromkeys(range(QUEUES), 5)
    runtime.run(_commit(serve.broker, {0: 5}))  # no-op: already 5
    run_json(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "0", "-f", "false")
    assert consumer_offsets(capsys, serve) == dict.fromkeys(range(QUEUES), 0)  # backwards: always
    run_json(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", "now", "-f", "false")
    assert consumer_offsets(capsys, serve) == dict.fromkeys(range(QUEUES), 0)  # forwards: only if forced
    when = time.strftime("%Y-%m-%d#%H:%M:%S", time.localtime(time.time() + 3600)) + ":000"
    run_json(capsys, serve, "resetOffsetByTime", "-g", GROUP, "-t", TOPIC, "-s", when)
    assert consumer_offsets(capsys, serve) == dict.fromkeys(range(QUEUES), 5)

    # updateSubGroup
    doc = run_json(capsys, serve, "updateSubGroup", "-b", serve.broker, "-g", GROUP, "-r", "3", "-s", "false")
    assert doc["config"] == {"groupName": GROUP, "consumeEnable": False, "retryMaxTimes": 3}
    code, out, _ = run(capsys, serve, "updateSubGroup", "-c", "DefaultCluster", "-g", "OtherG")
    assert code == 0 and "success" in out

    # deleteTopic
    doc = run_json(capsys, serve, "deleteTopic", "-c", "DefaultCluster", "-t", TOPIC)
    assert doc["brokers"] == [serve.broker]
    assert TOPIC not in run_json(capsys, serve, "topicList")["topicList"]
    code, _, err = run(capsys, serve, "topicRoute", "-t", TOPIC)
    assert code == 1 and "TOPIC_NOT_EXIST" in err and TOPIC in err


def test_errors(capsys: pytest.CaptureFixture[str], serve: ServeProcess) -> None:
    code, _, err = run(capsys, serve, "topicStatus")  # -t missing
    assert code == 2 and "-t" in err
    assert admin.main(["noSuchCommand"]) == 2
    capsys.readouterr()
    code, _, err = run(capsys, serve, "updateTopic", "-t", "X")  # neither -b nor -c
    assert code == 2 and "-b brokerAddr or -c clusterName" in err
    code, _, err = run(capsys, serve, "updateTopic", "-c", "NoCluster", "-t", "X")
    assert code == 1 and "NoCluster" in err
    code, _, err = run(capsys, serve, "updateTopic", "-b", serve.broker, "-t", "bad topic!")
    assert code == 1 and "illegal characters" in err  # the broker's remark
    code, _, err = run(capsys, serve, "resetOffsetByTime", "-g", "G", "-t", "T", "-s", "yesterday")
    assert code == 2 and "timestamp" in err
    code, _, err = run(capsys, serve, "topicStatus", "-t", "NoSuchTopic")
    assert code == 1 and "NoSuchTopic" in err
    assert admin.main(["topicList", "-n", "127.0.0.1:1", "--timeout", "1"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_reached_through_logstore_cli(capsys: pytest.CaptureFixture[str], serve: ServeProcess) -> None:
    assert cli.main(["admin", "clusterList", "-n", serve.namesrv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["brokers"][0]["addr"] == serve.broker
