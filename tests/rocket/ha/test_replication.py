"""Message replication in a broker group, as real processes, over the engine's
``logstore.replication`` (adapters/rocket/broker/ha.py)."""

from __future__ import annotations

import time

import pytest

from adapters.rocket.message import Message, decode_stored
from adapters.rocket.remoting import PROMOTE_SLAVE, RequestCode, ResponseCode

from .group import Cluster, broker_addrs, call, create_topic, eventually, runtime_info

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def send_ext(topic: str, properties: dict[str, str] | None = None) -> dict[str, object]:
    msg = Message(topic=topic, body=b"", properties=properties or {})
    return {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": int(time.time() * 1000),
            "h": 0, "i": msg.properties_string(), "j": 0, "k": False, "m": False}


async def send(addr: str, topic: str, body: bytes, properties: dict[str, str] | None = None) -> int:
    return (await call(addr, RequestCode.SEND_MESSAGE_V2, send_ext(topic, properties), body)).code


async def bodies(addr: str, topic: str) -> list[bytes]:
    resp = await call(addr, RequestCode.PULL_MESSAGE, {
        "consumerGroup": "CG", "topic": topic, "queueId": 0, "queueOffset": 0, "maxMsgNums": 1000,
        "sysFlag": 0x4, "commitOffset": 0, "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0,
        "expressionType": "TAG"})
    return [m.body for m in decode_stored(resp.body)] if resp.code == ResponseCode.SUCCESS else []


def group(cluster: Cluster, role: str = "ASYNC_MASTER", **conf: object) -> tuple[str, str]:
    master = cluster.start_broker("a-master", broker_name="broker-a", role=role, **conf)
    slave = cluster.start_broker("a-slave", broker_name="broker-a", broker_id=1, role="SLAVE",
                                 slaveSyncInterval=500, **conf)
    return master, slave


async def test_messages_sent_to_the_master_are_read_from_the_slave(cluster: Cluster) -> None:
    master, slave = group(cluster)
    await create_topic(master, "Replicated", queues=1)
    sent = [b"r%d" % i for i in range(10)]
    for body in sent:
        assert await send(master, "Replicated", body) == ResponseCode.SUCCESS

    async def copied() -> bool:
        return await bodies(slave, "Replicated") == sent

    await eventually(copied, what="the messages on the slave")


async def test_a_sync_master_acknowledges_once_the_slave_has_the_message(cluster: Cluster) -> None:
    master, slave = group(cluster, role="SYNC_MASTER", haLagTimeMaxMs=2000)
    await create_topic(master, "SyncRepl", queues=1)

    async def in_sync() -> bool:  # until the slave has joined the ISR: SLAVE_NOT_AVAILABLE
        return await send(master, "SyncRepl", b"probe") == ResponseCode.SUCCESS

    await eventually(in_sync, what="a SYNC_MASTER send acknowledged by the slave")
    assert await send(master, "SyncRepl", b"acked") == ResponseCode.SUCCESS
    stored = await call(slave, RequestCode.GET_MAX_OFFSET, {"topic": "SyncRepl", "queueId": 0})
    assert int(stored.ext_fields["offset"]) == len(await bodies(master, "SyncRepl"))  # there when answered

    async def readable_on_slave() -> bool:  # once the slave learnt the high watermark (next fetch)
        got = await bodies(slave, "SyncRepl")
        return bool(got) and got[-1] == b"acked"

    await eventually(readable_on_slave, timeout_s=5, what="the message readable on the slave")
    cluster.kill("a-slave")
    codes = set()

    async def slave_not_available() -> bool:
        code = await send(master, "SyncRepl", b"unreplicated")
        codes.add(code)
        return code == ResponseCode.SLAVE_NOT_AVAILABLE

    await eventually(slave_not_available, timeout_s=30, what="SLAVE_NOT_AVAILABLE once the slave left the ISR")
    assert codes <= {ResponseCode.FLUSH_SLAVE_TIMEOUT, ResponseCode.SLAVE_NOT_AVAILABLE}


async def test_a_sync_master_waits_for_the_slaves_on_its_own_puts_too(cluster: Cluster) -> None:
    """A scheduled message delivered to its real topic is a put the broker makes itself: on a
    SYNC_MASTER it waits for the slaves like a send, so the delay progress that follows it
    never runs ahead of what the slaves have."""
    master, slave = group(cluster, role="SYNC_MASTER", haLagTimeMaxMs=2000)
    await create_topic(master, "SyncDelay", queues=1)

    async def in_sync() -> bool:
        return await send(master, "SyncDelay", b"probe") == ResponseCode.SUCCESS

    await eventually(in_sync, what="a SYNC_MASTER send acknowledged by the slave")
    waits = int((await runtime_info(master))["haSyncWaits"])
    assert await send(master, "SyncDelay", b"later", {"DELAY": "1"}) == ResponseCode.SUCCESS

    async def delivered() -> bool:
        return (await bodies(master, "SyncDelay"))[-1:] == [b"later"]

    await eventually(delivered, timeout_s=10, what="the scheduled message in its real topic")
    assert int((await runtime_info(master))["haSyncWaits"]) >= waits + 2  # the send and the delivery
    stored = await call(slave, RequestCode.GET_MAX_OFFSET, {"topic": "SyncDelay", "queueId": 0})
    assert int(stored.ext_fields["offset"]) == len(await bodies(master, "SyncDelay"))


async def test_a_promoted_slave_leads_and_the_demoted_master_drops_its_divergent_tail(cluster: Cluster) -> None:
    master, slave = group(cluster)
    await create_topic(master, "Diverge", queues=1)
    common = [b"c%d" % i for i in range(10)]
    for body in common:
        assert await send(master, "Diverge", body) == ResponseCode.SUCCESS

    async def copied() -> bool:
        return await bodies(slave, "Diverge") == common

    await eventually(copied, what="the common messages on the slave")
    cluster.pause("a-slave")  # cut off: it keeps its data, clean, and misses what follows
    for i in range(5):  # acknowledged by the ASYNC_MASTER alone: never replicated
        assert await send(master, "Diverge", b"lost%d" % i) == ResponseCode.SUCCESS
    cluster.kill("a-master")
    cluster.resume("a-slave")
    promoted = await call(slave, PROMOTE_SLAVE)
    assert promoted.code == ResponseCode.SUCCESS, promoted.remark

    async def routed() -> bool:
        return (await broker_addrs(cluster.namesrv, "Diverge", "broker-a")).get("0") == slave

    await eventually(routed, what="the promoted slave in the route")
    later = [b"n%d" % i for i in range(3)]
    for body in later:
        assert await send(slave, "Diverge", body) == ResponseCode.SUCCESS
    cluster.start_broker("a-master", broker_name="broker-a", broker_id=2, role="SLAVE", slaveSyncInterval=500)

    # A fetch answer already on its way when the slave was cut off may have carried the first
    # of the "lost" messages: what the new leader has is the truth, the old master must match it.
    leader = await bodies(slave, "Diverge")
    assert leader[: len(common)] == common and leader[-len(later):] == later
    assert all(b.startswith(b"lost") for b in leader[len(common): -len(later)])

    async def converged() -> bool:
        return await bodies(master, "Diverge") == leader

    await eventually(converged, timeout_s=30, what="the demoted master truncated and caught up")


async def test_a_sync_master_serves_only_what_its_in_sync_slaves_have(cluster: Cluster) -> None:
    # Found by test_jepsen: a consumer read a message that the master had stored but no slave
    # had yet; the master died, the promoted slave stored another message at that offset.
    master, slave = group(cluster, role="SYNC_MASTER", haLagTimeMaxMs=60_000, syncFlushTimeout=500)
    await create_topic(master, "Bounded", queues=1)

    async def in_sync() -> bool:
        return await send(master, "Bounded", b"probe") == ResponseCode.SUCCESS

    await eventually(in_sync, what="a SYNC_MASTER send acknowledged by the slave")
    assert await send(master, "Bounded", b"acked") == ResponseCode.SUCCESS
    acked = await bodies(master, "Bounded")
    assert acked[-1] == b"acked"
    cluster.pause("a-slave")  # still in the ISR (60 s), but it copies nothing
    try:
        assert await send(master, "Bounded", b"unreplicated") == ResponseCode.FLUSH_SLAVE_TIMEOUT
        assert await bodies(master, "Bounded") == acked  # stored there, not readable
    finally:
        cluster.resume("a-slave")

    async def readable() -> bool:
        return await bodies(master, "Bounded") == [*acked, b"unreplicated"]

    await eventually(readable, what="the message readable once the slave has it")

    async def on_slave() -> bool:  # a slave serves up to the high watermark its master last sent
        return await bodies(slave, "Bounded") == [*acked, b"unreplicated"]

    await eventually(on_slave, what="the message readable on the slave")
