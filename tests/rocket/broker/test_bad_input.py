"""Bad input: each is answered cleanly or the connection closed, the server keeps serving,
and nothing stored changes."""

from __future__ import annotations

import struct

import orjson
import pytest

from adapters.rocket.message import Message
from adapters.rocket.remoting import RequestCode, ResponseCode

from ..helpers import RawPeer
from .conftest import Driver

pytestmark = pytest.mark.anyio


async def snapshot(d: Driver, topic: str, queues: int) -> list[tuple[int, list[bytes]]]:
    out = []
    for q in range(queues):
        resp = await d.call(RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": q})
        _, got = await d.pull(topic, q, 0, max_nums=1000)
        out.append((int(resp.ext_fields["offset"]), [m.body for m in got]))
    return out


async def test_bad_input_is_refused_and_nothing_changes(driver: Driver) -> None:
    await driver.create_topic("TB", 2)
    for i in range(3):
        assert (await driver.send(Message("TB", f"ok{i}".encode()), i % 2)).code == 0
    before = await snapshot(driver, "TB", 2)
    port = int(driver.addr.rsplit(":", 1)[1])

    peer = await RawPeer.open(port)  # garbage bytes
    await peer.send(b"\x00\x00\x00\x10garbage-garbage!")
    assert await peer.closed_by_peer()
    await peer.close()

    peer = await RawPeer.open(port)  # a frame claiming 2 GiB
    await peer.send(struct.pack(">i", 2**31 - 1) + b"\x00" * 64)
    assert await peer.closed_by_peer()
    await peer.close()

    peer = await RawPeer.open(port)  # a header that is not JSON (its opaque still readable)
    header = b'{"code":10,"opaque":77, not json'
    await peer.send(struct.pack(">ii", 4 + len(header), len(header)) + header)
    reply = await peer.read_command()
    assert reply.opaque == 77 and reply.code == ResponseCode.SYSTEM_ERROR
    await peer.close()

    big = await driver.send(Message("TB", b"x" * 70_000))  # maxMessageSize is 65536 here
    assert big.code == ResponseCode.MESSAGE_ILLEGAL
    unknown = await driver.send(Message("NoSuchTopic", b"x"))
    assert unknown.code == ResponseCode.TOPIC_NOT_EXIST
    bad_name = await driver.send(Message("bad topic!", b"x"))
    assert bad_name.code == ResponseCode.MESSAGE_ILLEGAL
    empty = await driver.send(Message("TB", b""))
    assert empty.code == ResponseCode.MESSAGE_ILLEGAL
    # Properties are limited to 32767 bytes of UTF-8, whatever their length in characters.
    long_ascii = await driver.send(Message("TB", b"x", properties={"p": "a" * 32_800}))
    assert long_ascii.code == ResponseCode.MESSAGE_ILLEGAL
    long_utf8 = await driver.send(Message("TB", b"x", properties={"p": "\U0001F600" * 8_192}))  # 32,771 bytes
    assert long_utf8.code == ResponseCode.MESSAGE_ILLEGAL
    bad_queue = await driver.send(Message("TB", b"x"), 9)
    assert bad_queue.code == ResponseCode.SYSTEM_ERROR
    bad_batch = await driver.call(RequestCode.SEND_BATCH_MESSAGE, {"b": "TB", "e": 0}, b"\x00\x00\x00\x05junk")
    assert bad_batch.code == ResponseCode.MESSAGE_ILLEGAL
    tx_in_batch = await driver.send_batch("TB", [
        Message("TB", b"plain"), Message("TB", b"half", properties={"TRAN_MSG": "true", "PGROUP": "PG"})])
    assert tx_in_batch.code == ResponseCode.MESSAGE_ILLEGAL and "transactional" in (tx_in_batch.remark or "")
    bad_field = await driver.call(RequestCode.SEND_MESSAGE, {"topic": "TB", "queueId": "zero"}, b"x")
    assert bad_field.code == ResponseCode.MESSAGE_ILLEGAL
    bad_hb = await driver.call(RequestCode.HEART_BEAT, body=b"not json")
    assert bad_hb.code == ResponseCode.SYSTEM_ERROR
    missing = await driver.call(RequestCode.QUERY_CONSUMER_OFFSET, {"topic": "TB"})
    assert missing.code == ResponseCode.SYSTEM_ERROR
    unsupported = await driver.call(99999)
    assert unsupported.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED

    assert await snapshot(driver, "TB", 2) == before
    assert (await driver.send(Message("TB", b"still-serving"), 0)).code == 0
    under = await driver.send(Message("TB", b"x", properties={"p": "\U0001F600" * 8_190}), 1)  # 32,763 bytes
    assert under.code == 0
    _, got = await driver.pull("TB", 1, int(under.ext_fields["queueOffset"]), max_nums=1)
    assert got[0].properties["p"] == "\U0001F600" * 8_190


async def test_auto_create_when_enabled(tmp_path: object) -> None:
    from pathlib import Path

    from .conftest import ServeProcess, write_conf

    base = Path(str(tmp_path))
    proc = ServeProcess(base / "data", write_conf(base / "b.conf", autoCreateTopicEnable="true",
                                                   defaultTopicQueueNums=3, flushDiskType="SYNC_FLUSH"))
    proc.start()
    d = Driver(proc)
    try:
        resp = await d.send(Message("Auto1", b"hi"), 2)
        assert resp.code == 0, resp.remark
        _, got = await d.pull("Auto1", 2, 0)
        assert [m.body for m in got] == [b"hi"]
        info = orjson.loads((await d.call(28)).body)["table"]  # GET_BROKER_RUNTIME_INFO
        assert int(info["storeGroupCommitAppends"]) >= 1 and int(info["storeGroupCommitRounds"]) >= 1, info
        # A lone send's round fsyncs inline; how rounds were fsynced is reported too.
        assert int(info["storeGroupCommitInlineRounds"]) >= 1 and int(info["storeGroupCommitRingRounds"]) == 0, info
    finally:
        await d.close()
        proc.stop()


async def test_sync_flush_timeout_is_reported_and_the_message_kept(tmp_path: object) -> None:
    """SYNC_FLUSH with a flush timeout shorter than any fsync: RocketMQ answers
    FLUSH_DISK_TIMEOUT (stored on the broker, durability target not met yet), not an error."""
    import asyncio
    from pathlib import Path

    from .conftest import ServeProcess, write_conf

    base = Path(str(tmp_path))
    proc = ServeProcess(base / "data", write_conf(base / "b.conf", flushDiskType="SYNC_FLUSH", syncFlushTimeout=0))
    proc.start()
    d = Driver(proc)
    try:
        await d.create_topic("Slow", 1)
        resp = await d.send(Message("Slow", b"kept"), 0)
        assert resp.code == ResponseCode.FLUSH_DISK_TIMEOUT, resp.remark
        assert resp.ext_fields["queueOffset"] == "0"
        for _ in range(50):
            _, got = await d.pull("Slow", 0, 0)
            if got:
                break
            await asyncio.sleep(0.05)
        assert [m.body for m in got] == [b"kept"]
    finally:
        await d.close()
        proc.stop()
