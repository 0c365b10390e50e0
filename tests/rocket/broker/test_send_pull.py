"""Send (10, 310, 320) and pull back: byte-exact bodies, properties, tags, keys; tag filters;
long polling."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.rocket.message import Message, decode_offset_msg_id
from adapters.rocket.remoting import RequestCode, ResponseCode

from .conftest import Driver

pytestmark = pytest.mark.anyio


def msg(topic: str, body: bytes, tags: str | None = None, keys: str | None = None, **props: str) -> Message:
    m = Message(topic, body, flag=7, properties=dict(props))
    m.tags = tags
    if keys:
        m.keys = keys
    return m


async def test_send_each_code_and_pull_back_exactly(driver: Driver) -> None:
    await driver.create_topic("T1", 2)
    sent = [
        msg("T1", b"\x00binary\xff" * 10, tags="a", keys="k1 k2", UNIQ_KEY="U1", custom="v\u00e9"),
        msg("T1", b"second", tags="b", UNIQ_KEY="U2"),
    ]
    r1 = await driver.send(sent[0], 1, RequestCode.SEND_MESSAGE)
    r2 = await driver.send(sent[1], 1, RequestCode.SEND_MESSAGE_V2)
    assert (r1.code, r2.code) == (0, 0), (r1.remark, r2.remark)
    assert r1.ext_fields["queueId"] == "1" and r1.ext_fields["queueOffset"] == "0"
    assert r2.ext_fields["queueOffset"] == "1"
    batch = [msg("T1", f"b{i}".encode(), tags="c", UNIQ_KEY=f"B{i}") for i in range(5)]
    r3 = await driver.send_batch("T1", batch, 1)
    assert r3.code == 0, r3.remark
    assert r3.ext_fields["queueOffset"] == "2" and len(r3.ext_fields["msgId"].split(",")) == 5

    resp, got = await driver.pull("T1", 1, 0)
    assert resp.code == ResponseCode.SUCCESS
    assert resp.ext_fields["nextBeginOffset"] == "7" and resp.ext_fields["maxOffset"] == "7"
    assert resp.ext_fields["minOffset"] == "0"
    expected = [*sent, *batch]
    assert [m.body for m in got] == [m.body for m in expected]
    assert [m.properties for m in got] == [m.properties for m in expected]
    assert [m.queue_offset for m in got] == list(range(7))
    assert got[0].tags == "a" and got[0].keys == ["k1", "k2"] and got[0].flag == 7
    assert {m.topic for m in got} == {"T1"} and {m.queue_id for m in got} == {1}
    assert got[0].msg_id == r1.ext_fields["msgId"]
    host, phys = decode_offset_msg_id(got[0].msg_id)
    assert host == driver.addr and phys == got[0].commitlog_offset
    assert abs(got[0].store_timestamp - time.time() * 1000) < 60_000

    # From the middle of a batch, and limited by maxMsgNums.
    resp, got = await driver.pull("T1", 1, 3, max_nums=2)
    assert [m.queue_offset for m in got] == [3, 4] and resp.ext_fields["nextBeginOffset"] == "5"


async def test_tag_filters(driver: Driver) -> None:
    await driver.create_topic("TF", 1)
    for i, tag in enumerate(["a", "b", "c", "a", None, "b"]):
        assert (await driver.send(msg("TF", f"m{i}".encode(), tags=tag))).code == 0
    _, got = await driver.pull("TF", 0, 0, subscription="*")
    assert len(got) == 6
    resp, got = await driver.pull("TF", 0, 0, subscription="a || b")
    assert [m.body for m in got] == [b"m0", b"m1", b"m3", b"m5"]
    assert resp.ext_fields["nextBeginOffset"] == "6"
    resp, got = await driver.pull("TF", 0, 0, subscription="zzz")
    assert resp.code == ResponseCode.PULL_RETRY_IMMEDIATELY and resp.ext_fields["nextBeginOffset"] == "6"


async def test_pull_codes(driver: Driver) -> None:
    await driver.create_topic("TP", 1)
    resp, _ = await driver.pull("TP", 0, 0)
    assert resp.code == ResponseCode.PULL_NOT_FOUND
    resp, _ = await driver.pull("TP", 0, 5)
    assert resp.code == ResponseCode.PULL_OFFSET_MOVED and resp.ext_fields["nextBeginOffset"] == "0"
    await driver.send(msg("TP", b"x"))
    resp, _ = await driver.pull("TP", 0, 1)
    assert resp.code == ResponseCode.PULL_NOT_FOUND and resp.ext_fields["nextBeginOffset"] == "1"
    resp, _ = await driver.pull("TP", 0, 9)
    assert resp.code == ResponseCode.PULL_OFFSET_MOVED and resp.ext_fields["nextBeginOffset"] == "1"
    resp, _ = await driver.pull("NOPE", 0, 0)
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST
    resp, _ = await driver.pull("TP", 3, 0)
    assert resp.code == ResponseCode.SYSTEM_ERROR


async def test_long_poll_woken_by_send(driver: Driver) -> None:
    await driver.create_topic("TL", 1)
    pull = asyncio.ensure_future(driver.pull("TL", 0, 0, suspend_ms=10_000, timeout_s=15))
    await asyncio.sleep(0.3)
    assert not pull.done()
    sent_at = time.monotonic()
    assert (await driver.send(msg("TL", b"wake"))).code == 0
    resp, got = await pull
    woke_after_s = time.monotonic() - sent_at
    assert resp.code == 0 and [m.body for m in got] == [b"wake"]
    assert woke_after_s < 0.5


async def test_long_poll_skips_unmatched_then_times_out(driver: Driver) -> None:
    await driver.create_topic("TL2", 1)
    started = time.monotonic()
    pull = asyncio.ensure_future(driver.pull("TL2", 0, 0, subscription="want", suspend_ms=800, timeout_s=5))
    await asyncio.sleep(0.1)
    await driver.send(msg("TL2", b"other", tags="other"))
    resp, got = await pull
    held_s = time.monotonic() - started
    assert resp.code == ResponseCode.PULL_NOT_FOUND and got == []
    assert resp.ext_fields["nextBeginOffset"] == "1"
    assert 0.7 <= held_s < 3


async def test_many_held_pulls_share_one_send(driver: Driver) -> None:
    await driver.create_topic("TL3", 1)
    pulls = [asyncio.ensure_future(driver.pull("TL3", 0, 0, suspend_ms=10_000, timeout_s=15)) for _ in range(50)]
    await asyncio.sleep(0.3)
    await driver.send(msg("TL3", b"all"))
    results = await asyncio.gather(*pulls)
    assert all(r.code == 0 and [m.body for m in g] == [b"all"] for r, g in results)
