"""Failover of broker groups with the Python client, as real processes: consumers go on reading
from a slave when their master is SIGKILLed, producers go on sending to another group, and
``logstore admin promoteSlave`` moves a group's route to its slave.

Until the engine replicates messages (``logstore.replication``), a slave here is seeded with a
copy of its master's store taken while the master was stopped (as one restores a slave from a
backup), so it has messages to serve.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid

import pytest

from adapters.rocket.client import (
    ClientConfig,
    ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus,
    ConsumeFromWhere,
    Message,
    Producer,
    PushConsumer,
    SendStatus,
    new_message,
)
from adapters.rocket.message import decode_stored
from adapters.rocket.remoting import PROMOTE_SLAVE, RequestCode, ResponseCode
from adapters.rocket.testing import REPO, logstore_command

from .group import Cluster, broker_addrs, call, create_topic, eventually, runtime_info

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def client_config(cluster: Cluster) -> ClientConfig:
    return ClientConfig(namesrv_addr=cluster.namesrv, client_ip="127.0.0.1", instance_name=uuid.uuid4().hex[:8],
                        persist_consumer_offset_interval_ms=300)


async def seeded_group(cluster: Cluster, topic: str, count: int) -> None:
    """broker-a: a master with ``count`` messages in ``topic`` (one queue) and a slave holding a
    copy of the master's store."""
    master = cluster.start_broker("a-master", broker_name="broker-a")
    await create_topic(master, topic, queues=1)
    async with Producer("P_seed", client_config=client_config(cluster)) as producer:
        for i in range(count):
            assert (await producer.send(new_message(topic, b"m%d" % i))).send_status == SendStatus.SEND_OK
    cluster.stop("a-master")
    shutil.copytree(cluster.root / "a-master", cluster.root / "a-slave")
    cluster.start_broker("a-master", broker_name="broker-a")
    cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", slaveSyncInterval=500)

    async def both() -> bool:
        return len(await broker_addrs(cluster.namesrv, topic, "broker-a")) == 2

    await eventually(both, what="master and slave in the route")

    async def slave_serves_all() -> bool:
        # A slave serves only up to the high watermark its master last sent it (ha.py): the
        # copy's own is the lone master's, which no follower ever made it compute.
        return len(await queue_bodies(cluster.addrs["a-slave"], topic)) == count

    await eventually(slave_serves_all, what="the slave serving every message")


async def test_a_consumer_goes_on_from_the_slave_when_the_master_is_killed(cluster: Cluster) -> None:
    await seeded_group(cluster, "FromSlave", 20)
    got: list[bytes] = []
    first = asyncio.Event()
    release = asyncio.Event()

    async def listener(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        first.set()
        await release.wait()  # hold the queue's first messages while the master dies
        got.extend(m.body for m in msgs)
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer("G_from_slave", client_config=client_config(cluster), pull_batch_size=1,
                            pull_threshold_for_queue=1, consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe("FromSlave", "*")
    consumer.register_message_listener(listener)
    consumer.pull_delay_when_exception_s = 0.2
    async with consumer:
        await asyncio.wait_for(first.wait(), 20)
        cluster.kill("a-master")  # its cached route still names the master
        release.set()

        async def all_read() -> bool:
            return {b"m%d" % i for i in range(20)} <= set(got)

        await eventually(all_read, timeout_s=30, what="every message, the rest from the slave")

        async def committed_to_slave() -> bool:
            q = await call(cluster.addrs["a-slave"], RequestCode.QUERY_CONSUMER_OFFSET, {
                "consumerGroup": "G_from_slave", "topic": "FromSlave", "queueId": 0})
            return q.code == ResponseCode.SUCCESS and q.ext_fields["offset"] == "20"

        await eventually(committed_to_slave, what="the group's offset committed to the slave")
    assert await broker_addrs(cluster.namesrv, "FromSlave", "broker-a") == {"1": cluster.addrs["a-slave"]}


async def test_a_new_consumer_reads_a_group_whose_master_is_dead_from_its_slave(cluster: Cluster) -> None:
    await seeded_group(cluster, "OnlySlave", 10)
    cluster.kill("a-master")

    async def master_gone() -> bool:
        return await broker_addrs(cluster.namesrv, "OnlySlave", "broker-a") == {"1": cluster.addrs["a-slave"]}

    await eventually(master_gone, what="the master out of the route")
    got: list[bytes] = []

    async def listener(msgs: list[Message], ctx: ConsumeConcurrentlyContext) -> ConsumeConcurrentlyStatus:
        got.extend(m.body for m in msgs)
        return ConsumeConcurrentlyStatus.CONSUME_SUCCESS

    consumer = PushConsumer("G_only_slave", client_config=client_config(cluster),
                            consume_from_where=ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET)
    consumer.subscribe("OnlySlave", "*")
    consumer.register_message_listener(listener)
    async with consumer:
        async def all_read() -> bool:
            return {b"m%d" % i for i in range(10)} <= set(got)

        await eventually(all_read, what="every message from the slave")


async def test_producers_go_on_sending_to_another_group_when_a_master_is_dead(cluster: Cluster) -> None:
    a = cluster.start_broker("a-master", broker_name="broker-a")
    cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE")
    b = cluster.start_broker("b-master", broker_name="broker-b")
    for addr in (a, b):
        await create_topic(addr, "TwoGroups", queues=2)
    async with Producer("P_two_groups", client_config=client_config(cluster),
                        send_latency_fault_enable=True) as producer:
        async def both_groups() -> bool:
            await producer.instance.update_route("TwoGroups")
            return {mq.broker_name for mq in await producer.fetch_publish_message_queues("TwoGroups")} == \
                {"broker-a", "broker-b"}

        await eventually(both_groups, what="both groups writable")
        first = [await producer.send(new_message("TwoGroups", b"x")) for _ in range(6)]
        assert {r.message_queue.broker_name for r in first} == {"broker-a", "broker-b"}
        cluster.kill("a-master")  # the producer's route still lists broker-a's master
        results = [await producer.send(new_message("TwoGroups", b"y%d" % i)) for i in range(12)]
        assert all(r.send_status == SendStatus.SEND_OK for r in results)
        assert {r.message_queue.broker_name for r in results} == {"broker-b"}
        assert not producer.fault_strategy.is_available("broker-a")  # avoided for a while
        # Once the route is refreshed broker-a has no master, so no writable queue.
        await producer.instance.update_route("TwoGroups")
        assert {mq.broker_name for mq in await producer.fetch_publish_message_queues("TwoGroups")} == {"broker-b"}


def admin(cluster: Cluster, *args: str) -> dict[str, object]:
    result = subprocess.run(logstore_command("admin", *args, "-n", cluster.namesrv, "--json"), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


async def test_promote_slave_moves_the_route_and_the_old_master_follows_as_a_slave(cluster: Cluster) -> None:
    master = cluster.start_broker("a-master", broker_name="broker-a")
    slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", slaveSyncInterval=500)
    await create_topic(master, "Promoted", queues=2)

    async def on_slave() -> bool:
        return b'"Promoted"' in (await call(slave, RequestCode.GET_ALL_TOPIC_CONFIG)).body

    await eventually(on_slave, what="the topic copied to the slave")
    status = admin(cluster, "brokerStatus", "-b", slave)
    assert status["brokerRole"] == "SLAVE" and status["slaveSyncMasterAddr"] == master
    cluster.kill("a-master")
    promoted = admin(cluster, "promoteSlave", "-b", slave)
    assert promoted["brokerRole"] == "ASYNC_MASTER" and promoted["oldBrokerId"] == 1

    async def routed(expected: dict[str, str]) -> bool:
        return await broker_addrs(cluster.namesrv, "Promoted", "broker-a") == expected

    await eventually(lambda: routed({"0": slave}), what="the route naming the promoted slave as master")
    async with Producer("P_promoted", client_config=client_config(cluster)) as producer:
        result = await producer.send(new_message("Promoted", b"after promotion"))
    assert result.send_status == SendStatus.SEND_OK and result.message_queue.broker_name == "broker-a"
    assert admin(cluster, "brokerStatus", "-b", slave)["brokerRole"] == "ASYNC_MASTER"
    # The old master comes back demoted: it registers as a slave and syncs from the new master.
    cluster.start_broker("a-master", broker_name="broker-a", broker_id=2, role="SLAVE", slaveSyncInterval=500)

    async def demoted_follows() -> bool:
        info = await runtime_info(master)
        return info["brokerRole"] == "SLAVE" and info.get("slaveSyncMasterAddr") == slave

    await eventually(demoted_follows, what="the old master following the new one")
    assert await broker_addrs(cluster.namesrv, "Promoted", "broker-a") == {"0": slave, "2": master}
    # A restart keeps the promoted broker master although its broker.conf still says SLAVE.
    cluster.stop("a-slave")
    cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", slaveSyncInterval=500)
    assert (await runtime_info(slave))["brokerRole"] == "ASYNC_MASTER"
    await eventually(lambda: routed({"0": slave, "2": master}), what="the route after the restart")


async def test_a_promoted_slave_delivers_the_scheduled_messages_of_its_group(cluster: Cluster) -> None:
    levels = {"messageDelayLevel": "1s 3s"}
    master = cluster.start_broker("a-master", broker_name="broker-a", **levels)
    await create_topic(master, "Later", queues=1)
    async with Producer("P_later", client_config=client_config(cluster)) as producer:
        msg = new_message("Later", b"due in 3 s")
        msg.properties["DELAY"] = "2"
        assert (await producer.send(msg)).send_status == SendStatus.SEND_OK
    cluster.stop("a-master")  # before it is due: only the schedule queue holds it
    shutil.copytree(cluster.root / "a-master", cluster.root / "a-slave")
    slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", **levels)
    await asyncio.sleep(4)
    assert await later_bodies(slave) == []  # a slave delivers nothing
    assert admin(cluster, "promoteSlave", "-b", slave)["brokerRole"] == "ASYNC_MASTER"

    async def delivered() -> bool:
        return await later_bodies(slave) == [b"due in 3 s"]

    await eventually(delivered, what="the scheduled message delivered by the promoted slave")
    text = subprocess.run(logstore_command("admin", "brokerStatus", "-b", slave, "-n", cluster.namesrv), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "brokerRole" in text.stdout and "ASYNC_MASTER" in text.stdout


async def later_bodies(addr: str) -> list[bytes]:
    return await queue_bodies(addr, "Later")


async def queue_bodies(addr: str, topic: str) -> list[bytes]:
    resp = await call(addr, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "CG", "topic": topic, "queueId": 0, "queueOffset": 0, "maxMsgNums": 32, "sysFlag": 0x4,
        "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0, "expressionType": "TAG"})
    return [m.body for m in decode_stored(resp.body)] if resp.code == ResponseCode.SUCCESS else []


async def test_a_slave_that_may_not_lead_is_refused_unless_forced(cluster: Cluster) -> None:
    """A slave SIGKILLed with ASYNC_FLUSH data may have lost a tail a master counted on: until
    it catches up with a master again it may not lead. With the master gone too, PROMOTE_SLAVE
    is refused (and nothing changes); ``promoteSlave --force`` is the operator's unclean
    election."""
    master = cluster.start_broker("a-master", broker_name="broker-a")
    slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", slaveSyncInterval=500)
    await create_topic(master, "Unclean", queues=1)
    async with Producer("P_unclean", client_config=client_config(cluster)) as producer:
        for i in range(5):
            assert (await producer.send(new_message("Unclean", b"u%d" % i))).send_status == SendStatus.SEND_OK

    async def copied() -> bool:
        resp = await call(slave, RequestCode.GET_MAX_OFFSET, {"topic": "Unclean", "queueId": 0})
        return resp.code == ResponseCode.SUCCESS and int(resp.ext_fields["offset"]) == 5

    await eventually(copied, what="the messages on the slave")
    assert (await runtime_info(slave))["haMayLead"] == "true"
    cluster.kill("a-slave")
    cluster.kill("a-master")
    cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE", slaveSyncInterval=500)
    assert (await runtime_info(slave))["haMayLead"] == "false"
    refused = await call(slave, PROMOTE_SLAVE, {"brokerRole": "ASYNC_MASTER"})
    assert refused.code == ResponseCode.SYSTEM_ERROR and "may not lead" in (refused.remark or "")
    info = await runtime_info(slave)
    assert (info["brokerRole"], info["brokerId"], info["haMayLead"]) == ("SLAVE", "1", "false")
    promoted = admin(cluster, "promoteSlave", "-b", slave, "--force")
    assert promoted["brokerRole"] == "ASYNC_MASTER"
    info = await runtime_info(slave)
    assert (info["brokerRole"], info["haMayLead"]) == ("ASYNC_MASTER", "true")
    assert int(info["haLeaderEpoch"]) >= 1
    async with Producer("P_unclean2", client_config=client_config(cluster)) as producer:
        result = await producer.send(new_message("Unclean", b"after"))
    assert result.send_status == SendStatus.SEND_OK and result.queue_offset >= 5
