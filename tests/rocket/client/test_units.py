"""Pure client logic: selectors, ids, filters, routes, process queues, the local offset file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.rocket.client import (
    MessageQueue,
    SelectMessageQueueByHash,
    SelectMessageQueueByRandom,
    new_message,
)
from adapters.rocket.client._java import java_hash, java_string_hash
from adapters.rocket.client._msgutil import check_message, compress_body, prepare_pulled
from adapters.rocket.client.errors import MessageIllegalError
from adapters.rocket.client.filter import build_subscription
from adapters.rocket.client.offset_store import LocalFileOffsetStore
from adapters.rocket.client.process_queue import ProcessQueue
from adapters.rocket.client.route import TopicPublishInfo, parse_route, subscribe_queues
from adapters.rocket.client.start_offset import parse_consume_timestamp
from adapters.rocket.client.uniq_id import UniqIdGenerator
from adapters.rocket.message import Message

MQS = [MessageQueue("T", b, i) for b in ("a", "b") for i in range(4)]


def test_java_hashes_match_java() -> None:
    assert java_string_hash("TagA") == 2598919  # "TagA".hashCode() in Java
    assert java_string_hash("hello world") == 1794106052
    assert java_hash(-7) == -7
    assert java_hash(2**40 + 5) == (2**40 + 5 ^ (2**40 + 5) >> 32) & 0xFFFFFFFF


@given(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20)))
def test_hash_selector_is_stable_and_in_range(arg: object) -> None:
    sel = SelectMessageQueueByHash()
    first = sel.select(MQS, None, arg)
    assert first in MQS
    assert sel.select(list(MQS), None, arg) == first


def test_hash_selector_is_modulo_like_the_seed() -> None:
    sel = SelectMessageQueueByHash()
    assert [sel.select(MQS, None, i).queue_id for i in range(3)] == [0, 1, 2]
    assert sel.select(MQS, None, 5) == MessageQueue("T", "b", 1)


def test_random_selector_uses_every_queue() -> None:
    sel = SelectMessageQueueByRandom(random.Random(7))
    assert {sel.select(MQS, None, None) for _ in range(500)} == set(MQS)
    with pytest.raises(ValueError):
        sel.select([], None, None)


def test_uniq_ids_are_unique_and_rocketmq_shaped() -> None:
    gen = UniqIdGenerator("10.1.2.3", pid=0x1234, seed=1)
    ids = [gen.create() for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and i == i.upper() for i in ids)
    assert ids[0].startswith("0A0102031234")


def test_subscription_parsing() -> None:
    sub = build_subscription("T", " TagA || TagB ||TagA")
    assert sub.tags_set == ["TagA", "TagB"]
    assert sub.code_set == [java_string_hash("TagA"), java_string_hash("TagB")]
    assert sub.matches("TagB") and not sub.matches("TagC") and not sub.matches(None)
    everything = build_subscription("T", "*")
    assert everything.matches(None) and everything.tags_set == []
    with pytest.raises(ValueError):
        build_subscription("T", "||")


def test_route_parsing_accepts_fastjson_numeric_keys() -> None:
    body = (b'{"queueDatas":[{"brokerName":"b","readQueueNums":2,"writeQueueNums":3,"perm":6}],'
            b'"brokerDatas":[{"cluster":"C","brokerName":"b","brokerAddrs":{0:"1.2.3.4:10911"}}]}')
    route = parse_route(body)
    assert route.master_addr("b") == "1.2.3.4:10911"
    assert len(TopicPublishInfo.from_route("T", route).message_queue_list) == 3
    assert len(subscribe_queues("T", route)) == 2


def test_round_robin_avoids_the_broker_that_failed() -> None:
    info = TopicPublishInfo("T", list(MQS))
    seen = {info.select_one_message_queue() for _ in range(len(MQS))}
    assert seen == set(MQS)
    for _ in range(20):
        assert info.select_one_message_queue("a").broker_name == "b"
    single = TopicPublishInfo("T", [MessageQueue("T", "a", 0)])
    assert single.select_one_message_queue("a") == MessageQueue("T", "a", 0)


def _msg(offset: int) -> Message:
    return Message(topic="T", body=b"x", queue_offset=offset)


def test_process_queue_commits_lowest_in_flight() -> None:
    pq = ProcessQueue()
    assert pq.remove_messages([]) == -1
    msgs = [_msg(i) for i in range(10, 15)]
    pq.put_messages(msgs)
    assert pq.remove_messages([msgs[2], msgs[4]]) == 10  # 10 still running
    assert pq.remove_messages([msgs[0]]) == 11
    assert pq.remove_messages([msgs[1], msgs[3]]) == 15
    pq.put_messages([_msg(12)])  # a stale duplicate from before is ignored
    assert pq.msg_count == 0


def test_message_checks() -> None:
    with pytest.raises(MessageIllegalError):
        check_message(new_message("T", b""), 100)
    with pytest.raises(MessageIllegalError):
        check_message(new_message("T", b"x" * 101), 100)
    with pytest.raises(MessageIllegalError):
        check_message(new_message("bad topic", b"x"), 100)
    with pytest.raises(MessageIllegalError):
        check_message(new_message("TBW102", b"x"), 100)
    check_message(new_message("Good_topic-1", b"x", tags="A", keys=["k1", "k2"]), 100)


def test_pulled_compressed_body_is_inflated() -> None:
    msg = Message(topic="T", body=compress_body(b"y" * 5000), sys_flag=0x1 | 0x300)
    assert prepare_pulled(msg).body == b"y" * 5000 and msg.sys_flag == 0


def test_consume_timestamp_format() -> None:
    assert parse_consume_timestamp("20240101000000") < parse_consume_timestamp("20240101000001")


@pytest.mark.anyio
async def test_local_offset_file_round_trip(tmp_path: Path) -> None:
    store = LocalFileOffsetStore("127.0.0.1@x", "G", tmp_path)
    mq = MessageQueue("T", "b", 3)
    store.update_offset(mq, 7, increase_only=True)
    store.update_offset(mq, 5, increase_only=True)  # never backwards
    await store.persist_all([mq])
    assert (tmp_path / "127.0.0.1@x" / "G" / "offsets.json").exists()
    again = LocalFileOffsetStore("127.0.0.1@x", "G", tmp_path)
    await again.load()
    assert await again.read_offset(mq, from_store=True) == 7
    assert await again.read_offset(MessageQueue("T", "b", 0), from_store=True) == -1
