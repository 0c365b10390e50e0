"""Sends read together from one connection (the remoting server's group handler, send.py's
``send_group``): one append a queue, each message still its own record and answer, in the
order read, with refusals and the sends that go alone mixed in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from adapters.rocket.broker.broker import Broker, log_config_for
from adapters.rocket.broker.config import BrokerConfig
from adapters.rocket.message import Message
from adapters.rocket.remoting import (
    RemotingCommand,
    RemotingServer,
    RequestCode,
    ResponseCode,
    encode_frame,
)
from adapters.rocket.testing import ServeProcess
from logstore import SimIO, Store, StoreConfig

from ..helpers import RawPeer
from .conftest import V2_SHORT, Driver, serving

pytestmark = pytest.mark.anyio

GET_BROKER_RUNTIME_INFO = 28


@pytest.fixture
def sync_serve(tmp_path: Path) -> Iterator[ServeProcess]:
    yield from serving(tmp_path, brokerName="broker-g", flushDiskType="SYNC_FLUSH")


def send_frame(opaque: int, topic: str, queue_id: int, body: bytes, *, born: int, flag: int, props: dict[str, str],
               v2: bool = True, oneway: bool = False) -> bytes:
    m = Message(topic, body, properties=props)
    ext: dict[str, object] = {
        "producerGroup": "PG", "topic": topic, "defaultTopic": "TBW102", "defaultTopicQueueNums": 4,
        "queueId": queue_id, "sysFlag": 0, "bornTimestamp": born, "flag": flag,
        "properties": m.properties_string(), "reconsumeTimes": 0, "unitMode": False,
    }
    if v2:
        ext = {V2_SHORT.get(k, k): v for k, v in ext.items()}
    cmd = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2 if v2 else RequestCode.SEND_MESSAGE, ext, body,
                                  oneway=oneway)
    cmd.opaque = opaque
    return encode_frame(cmd)


async def appends(driver: Driver) -> int:
    resp = await driver.call(GET_BROKER_RUNTIME_INFO)
    return int(orjson.loads(resp.body)["table"]["storeGroupCommitAppends"])


async def test_sends_read_together_are_one_append_a_queue_each_its_own_record(sync_serve: ServeProcess) -> None:
    driver = Driver(sync_serve)
    await driver.create_topic("TG", 2)
    before = await appends(driver)
    # (opaque, queue, body, WAIT): 4 is refused (empty body), 6 names a topic that does not exist
    # (autoCreateTopicEnable is off), 7, 11 and 12 do not wait for the flush (they go alone), 9 is oneway.
    plan = [(1, 0, b"a", None), (2, 0, b"b", None), (3, 1, b"c", None), (4, 0, b"", None), (5, 0, b"d", None),
            (6, 0, b"x", None), (7, 0, b"w", "false"), (8, 0, b"e", None), (9, 1, b"f", None), (10, 0, b"g", None),
            (11, 0, b"h", "false"), (12, 0, b"i", "false"), (13, 0, b"j", None)]
    queue0 = [1, 2, 5, 7, 8, 10, 11, 12, 13]
    frames = []
    for opaque, queue, body, wait in plan:
        props = {"TAGS": f"t{opaque}", "KEYS": f"k{opaque}", "UNIQ_KEY": f"U{opaque}", "n": str(opaque)}
        if wait is not None:
            props["WAIT"] = wait
        frames.append(send_frame(opaque, "NOPE" if opaque == 6 else "TG", queue, body, born=1_700_000_000_000 + opaque,
                                 flag=opaque, props=props, v2=opaque % 2 == 0, oneway=opaque == 9))
    peer = await RawPeer.open(sync_serve.broker_port)
    try:
        await peer.send(b"".join(frames))  # one write: read together (13 small frames)
        answers = {}
        for _ in range(len(plan) - 1):  # no answer to the oneway send
            cmd = await peer.read_command()
            answers[cmd.opaque] = cmd
    finally:
        await peer.close()
    assert sorted(answers) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    assert answers[4].code == ResponseCode.MESSAGE_ILLEGAL and "empty" in (answers[4].remark or "")
    assert answers[6].code == ResponseCode.TOPIC_NOT_EXIST
    stored = {o: a for o, a in answers.items() if o not in (4, 6)}
    assert all(a.code == ResponseCode.SUCCESS for a in stored.values()), {o: a.remark for o, a in stored.items()}
    # Queue 0 in the order read (the WAIT=false sends alone in the middle keep their places); queue 1 too.
    assert [(o, stored[o].ext_fields["queueOffset"]) for o in queue0] == [(o, str(n)) for n, o in enumerate(queue0)]
    assert stored[3].ext_fields["queueOffset"] == "0" and stored[3].ext_fields["queueId"] == "1"
    assert len({a.ext_fields["msgId"] for a in stored.values()}) == len(stored)
    # Without grouping these eleven sends are eleven appends: here the sends before the first
    # alone one (queue 0: 1, 2, 5; queue 1: 3), 7 alone, then 8 and 10 (queue 0) and 9 (queue 1),
    # 11 and 12 alone, 13.
    assert await appends(driver) - before <= 8

    _, got0 = await driver.pull("TG", 0, 0)
    _, got1 = await driver.pull("TG", 1, 0)
    for got, opaques in ((got0, queue0), (got1, [3, 9])):
        assert [int(m.properties["n"]) for m in got] == opaques
        for m, o in zip(got, opaques, strict=True):
            assert m.body == dict((p[0], p[2]) for p in plan)[o]
            assert (m.flag, m.born_timestamp, m.tags, m.keys) == (o, 1_700_000_000_000 + o, f"t{o}", [f"k{o}"])
            assert m.properties["UNIQ_KEY"] == f"U{o}"
        assert [m.queue_offset for m in got] == list(range(len(opaques)))
    assert [m.msg_id for m in got0] == [stored[o].ext_fields["msgId"] for o in queue0]
    # Each is in the key index under its own keys.
    resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TG", "key": "k8", "maxNum": 32,
                                                          "beginTimestamp": 0, "endTimestamp": 2**62})
    assert resp.code == 0 and b"k8" in resp.body and b"k10" not in resp.body and b"k13" not in resp.body
    await driver.close()


async def test_large_sends_in_one_write_keep_their_order_across_reads(sync_serve: ServeProcess) -> None:
    """Five 60 KiB sends to one queue in one write (300 KiB: more than one read of the broker,
    so groups end inside frames) are stored in the order written, each whole."""
    driver = Driver(sync_serve)
    await driver.create_topic("TB", 1)
    bodies = [bytes([i]) * (60 * 1024) for i in range(1, 6)]
    frames = b"".join(send_frame(i, "TB", 0, body, born=1, flag=0, props={"n": str(i)})
                      for i, body in enumerate(bodies, start=1))
    peer = await RawPeer.open(sync_serve.broker_port)
    try:
        await peer.send(frames)
        answers = {c.opaque: c for c in [await peer.read_command() for _ in bodies]}
    finally:
        await peer.close()
    assert [(answers[i].code, answers[i].ext_fields["queueOffset"]) for i in range(1, 6)] == [
        (0, str(i - 1)) for i in range(1, 6)]
    got: list[Message] = []
    while len(got) < len(bodies):
        _, more = await driver.pull("TB", 0, len(got))
        assert more
        got += more
    assert [m.body for m in got] == bodies
    await driver.close()


async def runtime(driver: Driver, key: str) -> int:
    resp = await driver.call(GET_BROKER_RUNTIME_INFO)
    return int(orjson.loads(resp.body)["table"][key])


@pytest.mark.parametrize("flush", ["SYNC_FLUSH", "ASYNC_FLUSH"])
async def test_plain_sends_are_taken_at_once_and_answered_by_their_round(tmp_path: Path, flush: str) -> None:
    """A read of plain sends only (send.py's ``send_group_now``: no task; under SYNC_FLUSH the
    group-commit round answers them right after its fsync): one append a queue, each its own
    answer and record, a refused one and a oneway one among them."""
    for proc in serving(tmp_path, brokerName="broker-n", flushDiskType=flush):
        driver = Driver(proc)
        await driver.create_topic("TN", 2)
        before, groups = await appends(driver), await runtime(driver, "sendGroupsAnsweredByRound")
        # (opaque, queue, body): 4 is refused (empty body), 6 is oneway.
        plan = [(1, 0, b"a"), (2, 1, b"b"), (3, 0, b"c"), (4, 0, b""), (5, 1, b"d"), (6, 0, b"e"), (7, 0, b"f")]
        frames = b"".join(send_frame(o, "TN", q, body, born=1_700_000_000_000 + o, flag=o,
                                     props={"KEYS": f"k{o}", "n": str(o)}, v2=o % 2 == 1, oneway=o == 6)
                          for o, q, body in plan)
        peer = await RawPeer.open(proc.broker_port)
        try:
            await peer.send(frames)
            answers = {c.opaque: c for c in [await peer.read_command() for _ in range(len(plan) - 1)]}
        finally:
            await peer.close()
        assert sorted(answers) == [1, 2, 3, 4, 5, 7]
        assert answers[4].code == ResponseCode.MESSAGE_ILLEGAL
        offsets = {o: (a.code, a.ext_fields["queueId"], a.ext_fields["queueOffset"])
                   for o, a in answers.items() if o != 4}
        assert offsets == {1: (0, "0", "0"), 3: (0, "0", "1"), 7: (0, "0", "3"), 2: (0, "1", "0"), 5: (0, "1", "1")}
        assert await runtime(driver, "sendGroupsAnsweredByRound") - groups == 1
        assert await appends(driver) - before == (2 if flush == "SYNC_FLUSH" else 0)  # async logs: no rounds
        _, got0 = await driver.pull("TN", 0, 0)
        _, got1 = await driver.pull("TN", 1, 0)
        assert [(m.body, m.flag, m.keys) for m in got0] == [(b"a", 1, ["k1"]), (b"c", 3, ["k3"]), (b"e", 6, ["k6"]),
                                                           (b"f", 7, ["k7"])]
        assert [m.body for m in got1] == [b"b", b"d"]
        assert [m.msg_id for m in got0 if m.flag != 6] == [answers[o].ext_fields["msgId"] for o in (1, 3, 7)]
        resp = await driver.call(RequestCode.QUERY_MESSAGE, {"topic": "TN", "key": "k5", "maxNum": 32,
                                                              "beginTimestamp": 0, "endTimestamp": 2**62})
        assert resp.code == 0 and b"k5" in resp.body
        await driver.close()


class _InProcess:
    """What Driver needs of a ServeProcess, for a broker run in this process."""

    def __init__(self, addr: str) -> None:
        self.broker = addr


async def test_a_round_that_fails_answers_the_sends_taken_at_once_with_an_error(tmp_path: Path) -> None:
    """A SYNC_FLUSH round whose fsync fails (simulated IO, in this process): the plain sends
    taken at once, waiting for that round, are answered SYSTEM_ERROR through the flush gate
    (the round's durable callback never runs for them), and the broker still answers."""
    io = SimIO()
    config = BrokerConfig(broker_name="broker-f", flush_disk_type="SYNC_FLUSH", listen_port=0,
                          store_path_root_dir=str(tmp_path / "store"))
    store = await Store.open(config.store_path_root_dir, io=io,
                             config=StoreConfig(default_log_config=log_config_for(config)))
    broker = Broker(config, store, RemotingServer("127.0.0.1", 0, name="broker"))
    await broker.start()
    driver = Driver(_InProcess(broker.server.address))  # type: ignore[arg-type]
    try:
        await driver.create_topic("TF", 1)
        ok = await driver.send(Message("TF", b"kept"), 0, RequestCode.SEND_MESSAGE_V2)
        assert ok.code == ResponseCode.SUCCESS, ok.remark
        groups = await runtime(driver, "sendGroupsAnsweredByRound")
        io.fail_fsync()
        failed = await driver.send(Message("TF", b"lost"), 0, RequestCode.SEND_MESSAGE_V2)
        assert failed.code == ResponseCode.SYSTEM_ERROR and "store failed" in (failed.remark or ""), failed
        assert await runtime(driver, "sendGroupsAnsweredByRound") == groups + 1  # taken at once, not by a task
        _, got = await driver.pull("TF", 0, 0)
        assert [m.body for m in got] == [b"kept"]
    finally:
        io.clear_faults()
        await driver.close()
        await broker.close()
