"""The message codec against fixed facts of RocketMQ's formats (no server needed)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rocket.message import (
    MAGIC_V1,
    Message,
    MessageFormatError,
    decode_batch_body,
    decode_offset_msg_id,
    decode_stored,
    encode_batch_body,
    encode_offset_msg_id,
    encode_stored,
    encode_stored_many,
    encode_stored_raw,
    java_string_hash,
    stored_properties,
)


def test_java_string_hash_matches_java() -> None:
    # Values of "...".hashCode() in Java.
    assert java_string_hash("") == 0
    assert java_string_hash("TagA") == 2598919
    assert java_string_hash("hello world") == 1794106052
    assert java_string_hash("\U0001F600") == 1772899  # a surrogate pair counts as two chars


def test_stored_layout_fixed_offsets() -> None:
    m = Message("T", b"body", flag=3, properties={"TAGS": "a"}, queue_id=2, queue_offset=9,
                commitlog_offset=123, born_timestamp=5, born_host="10.0.0.1:7", store_timestamp=6,
                store_host="127.0.0.1:10911")
    raw = encode_stored(m)
    size, magic, _crc, qid, flag, qoff, phys, sysflag = struct.unpack_from(">iIiiiqqi", raw)
    assert (size, magic, qid, flag, qoff, phys, sysflag) == (len(raw), MAGIC_V1, 2, 3, 9, 123, 0)
    assert raw[48:56] == bytes([10, 0, 0, 1]) + struct.pack(">i", 7)
    assert raw[-(2 + len("TAGS\x01a\x02")):] == struct.pack(">h", 7) + b"TAGS\x01a\x02"
    assert stored_properties(raw) == "TAGS\x01a\x02"
    [back] = decode_stored(raw + b"")
    assert back.body == b"body" and back.born_host == "10.0.0.1:7" and back.store_size == len(raw)
    assert back.msg_id == encode_offset_msg_id("127.0.0.1:10911", 123)


def test_ipv6_hosts_and_long_topics_round_trip() -> None:
    m = Message("x" * 200, b"b", born_host="[::1]:5", store_host="::2:6")
    [back] = decode_stored(encode_stored(m))
    assert back.topic == "x" * 200 and back.born_host == "::1:5" and back.sys_flag & 0x30 == 0x30
    assert decode_offset_msg_id(back.msg_id) == ("::2:6", 0)


def test_offset_msg_id() -> None:
    assert encode_offset_msg_id("127.0.0.1:10911", 1) == "7F00000100002A9F0000000000000001"
    assert decode_offset_msg_id("7F00000100002A9F0000000000000001") == ("127.0.0.1:10911", 1)
    with pytest.raises(MessageFormatError):
        decode_offset_msg_id("zz")


def test_batch_body_round_trip_and_damage() -> None:
    msgs = [Message("T", b"a", flag=1, properties={"KEYS": "k"}), Message("T", b"", properties={})]
    body = encode_batch_body(msgs)
    assert struct.unpack_from(">iiiii", body) == (4 * 5 + 1 + 2 + len("KEYS\x01k\x02"), 0, 0, 1, 1)
    assert [(m.body, m.flag, m.properties) for m in decode_batch_body(body, "T")] == [
        (b"a", 1, {"KEYS": "k"}), (b"", 0, {})]
    for bad in (body[:-1], body[:10], b"\x00\x00\x00\x05junk"):
        with pytest.raises(MessageFormatError):
            decode_batch_body(bad)


def test_damaged_stored_records_raise() -> None:
    raw = encode_stored(Message("T", b"body"))
    for bad in (raw[:-1], raw[:30], b"\xff" * 8, raw[:4] + b"\x00\x00\x00\x00" + raw[8:]):
        with pytest.raises(MessageFormatError):
            decode_stored(bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=64), st.integers(-2**31, 2**31 - 1),
                          st.text(max_size=40), st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
                          st.integers(0, 2**31 - 1)), min_size=1, max_size=6),
       st.sampled_from([(b"T", 8, 8), (b"t" * 200, 8, 8), (b"T", 20, 8), (b"T", 8, 20)]))
def test_encode_stored_many_is_encode_stored_raw_of_each(
        items: list[tuple[bytes, int, str, int, int, int]], shape: tuple[bytes, int, int]) -> None:
    """The send path's encoder (an inlined IPv4 case, the general one otherwise) gives the bytes
    encode_stored_raw gives, record by record with the offsets counting up and each record's
    own flag, properties, sys flag, born time and reconsume count."""
    topic, born_len, store_len = shape
    born, store = bytes(range(born_len)), bytes(range(100, 100 + store_len))
    common = {"queue_id": 3, "born_host": born, "store_timestamp": 1_700_000_000_123, "store_host": store}
    many = b"".join(encode_stored_many(topic, items, queue_offset=40, commitlog_offset=(5 << 40) + 40, **common))
    each = b"".join(
        encode_stored_raw(topic, body, text.encode(), flag=flag, queue_offset=40 + i, commitlog_offset=(5 << 40) + 40 + i,
                          sys_flag=sys_flag, born_timestamp=born_ts, reconsume_times=times, **common)
        for i, (body, flag, text, sys_flag, born_ts, times) in enumerate(items))
    assert many == each
