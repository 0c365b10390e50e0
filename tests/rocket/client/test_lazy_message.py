"""Lazily decoded pull bodies give exactly the fields of the eager decode (hypothesis), whatever
field is touched first; a field set before the first decode keeps its value; a damaged head
raises at once."""

from __future__ import annotations

import zlib
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.rocket.client._msgutil import COMPRESSION_ZLIB, prepare_pulled
from adapters.rocket.client.pull import _finish_pulled
from adapters.rocket.lazy_message import (
    EAGER_FIELDS,
    LAZY_FIELDS,
    LazyMessage,
    body_len,
    decode_stored_lazy,
)
from adapters.rocket.message import (
    SYSFLAG_COMPRESSED,
    Message,
    MessageFormatError,
    decode_stored,
    encode_stored,
)

FIELD_NAMES = [f.name for f in fields(Message)]

hosts = st.sampled_from(["127.0.0.1:10911", "10.1.2.3:7", "[::1]:5", "fe80::2:6"])
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x01\x02"), max_size=20)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    topic = draw(st.sampled_from(["T", "x" * 200, "%RETRY%G", "Topic_ü"]))
    props = draw(st.dictionaries(text.filter(bool), text, max_size=4))
    if topic == "%RETRY%G" and draw(st.booleans()):
        props["RETRY_TOPIC"] = "Real"
    body = draw(st.binary(max_size=200))
    sys_flag = 0
    if draw(st.booleans()) and body:
        body, sys_flag = zlib.compress(body), SYSFLAG_COMPRESSED | COMPRESSION_ZLIB
    return Message(
        topic, body, flag=draw(st.integers(-(2**31), 2**31 - 1)), properties=props,
        queue_id=draw(st.integers(0, 1023)), queue_offset=draw(st.integers(0, 2**62)),
        commitlog_offset=draw(st.integers(0, 2**62)), sys_flag=sys_flag,
        born_timestamp=draw(st.integers(0, 2**45)), born_host=draw(hosts),
        store_timestamp=draw(st.integers(0, 2**45)), store_host=draw(hosts),
        reconsume_times=draw(st.integers(0, 16)), prepared_transaction_offset=draw(st.integers(0, 2**40)),
    )


def eager(body: bytes) -> list[Message]:
    out = decode_stored(body)
    for m in out:
        _finish_pulled("0", "99", m)
    return out


def as_tuple(m: Message) -> tuple[object, ...]:
    return tuple(getattr(m, n) for n in FIELD_NAMES)


@given(msgs=st.lists(messages(), min_size=1, max_size=5), first=st.sampled_from(FIELD_NAMES))
def test_lazy_decode_gives_the_eager_fields(msgs: list[Message], first: str) -> None:
    body = b"".join(encode_stored(m) for m in msgs)
    want = eager(body)
    finish = lambda m: _finish_pulled("0", "99", m)  # noqa: E731
    got = decode_stored_lazy(body, finish)
    assert len(got) == len(want)
    for lazy, ref in zip(got, want, strict=True):
        getattr(lazy, first)  # whichever field is read first
        assert as_tuple(lazy) == as_tuple(ref)
        assert lazy == ref and ref == lazy
        assert repr(lazy).split("(", 1)[1] == repr(ref).split("(", 1)[1]


@given(msg=messages())
def test_eager_fields_need_no_decode_and_set_fields_win(msg: Message) -> None:
    [lazy] = decode_stored_lazy(encode_stored(msg), prepare_pulled)
    if msg.sys_flag & SYSFLAG_COMPRESSED:
        assert not isinstance(lazy, LazyMessage)  # decoded at once: inflating changes its head fields
        return
    assert isinstance(lazy, LazyMessage)
    for name in EAGER_FIELDS:
        getattr(lazy, name)
    size = body_len(lazy)  # flow control's cached bytes: known without decoding
    assert "_src" in vars(lazy)  # still not decoded
    assert all(name not in vars(lazy) for name in LAZY_FIELDS)
    lazy.reconsume_times = 77  # as the consumer does before a local retry
    assert lazy.body == prepare_pulled(decode_stored(encode_stored(msg))[0]).body
    assert lazy.reconsume_times == 77 and "_src" not in vars(lazy)
    assert size == len(lazy.body) == body_len(lazy)


def test_damaged_heads_raise_at_once() -> None:
    raw = encode_stored(Message("T", b"body"))
    for bad in (raw[:30], b"\xff" * 8, raw[:4] + b"\x00\x00\x00\x00" + raw[8:], raw + raw[:-1]):
        with pytest.raises(MessageFormatError):
            decode_stored_lazy(bad)
    [torn] = decode_stored_lazy(raw[:-1][:4].replace(raw[:4], (len(raw) - 1).to_bytes(4, "big")) + raw[4:-1])
    with pytest.raises(MessageFormatError):
        torn.body  # noqa: B018  # the fields past the head do not parse: raised on first use
