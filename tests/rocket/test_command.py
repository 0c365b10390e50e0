"""Codec tests: frames, JSON and binary headers, lenient decoding, properties strings."""

from __future__ import annotations

import contextlib
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.rocket.broker.keyindex import add_index_keys_of, index_keys
from adapters.rocket.remoting import (
    FLAG_ONEWAY,
    FLAG_RESPONSE,
    FrameError,
    HeaderError,
    LanguageCode,
    RemotingCommand,
    ResponseCode,
    SerializeType,
    decode_frame,
    decode_properties,
    encode_frame,
    encode_properties,
)
from adapters.rocket.remoting.command import decode_payload, encode_json_answer, property_value


def frame_with_header(header: bytes, body: bytes = b"", serialize_type: int = 0) -> bytes:
    info = (serialize_type << 24) | len(header)
    return struct.pack(">iI", 4 + len(header) + len(body), info) + header + body


def json_frame(obj: object, body: bytes = b"") -> bytes:
    return frame_with_header(orjson.dumps(obj), body)


# -- layout ----------------------------------------------------------------------------------


def test_frame_layout_json() -> None:
    cmd = RemotingCommand(code=105, opaque=7, ext_fields={"topic": "T"}, body=b"xyz")
    frame = encode_frame(cmd)
    length, info = struct.unpack_from(">iI", frame)
    header_len = info & 0xFFFFFF
    assert info >> 24 == 0
    assert length == len(frame) - 4 == 4 + header_len + 3
    header = orjson.loads(frame[8 : 8 + header_len])
    assert header["code"] == 105 and header["opaque"] == 7 and header["flag"] == 0
    assert header["language"] == "JAVA"
    assert header["extFields"] == {"topic": "T"}
    assert "remark" not in header  # null fields are omitted, as fastjson does
    assert frame.endswith(b"xyz")


def test_frame_layout_binary() -> None:
    cmd = RemotingCommand(
        code=10, language=LanguageCode.CPP, version=401, opaque=9, flag=FLAG_ONEWAY,
        remark="hi", ext_fields={"k": "v"}, serialize_type=SerializeType.ROCKETMQ,
    )
    frame = encode_frame(cmd)
    _, info = struct.unpack_from(">iI", frame)
    assert info >> 24 == 1
    header = frame[8 : 8 + (info & 0xFFFFFF)]
    assert struct.unpack_from(">hbhii", header) == (10, 1, 401, 9, FLAG_ONEWAY)
    assert header[13:] == b"\0\0\0\x02hi" + b"\0\0\0\x08" + b"\0\x01k\0\0\0\x01v"


# -- round trips -----------------------------------------------------------------------------

int32 = st.integers(-(2**31), 2**31 - 1)
int16 = st.integers(-(2**15), 2**15 - 1)
text = st.text(max_size=20)


@st.composite
def commands(draw: st.DrawFn) -> RemotingCommand:
    kind = draw(st.sampled_from(SerializeType))
    binary = kind == SerializeType.ROCKETMQ
    remark = draw(st.none() | text)
    if binary and remark == "":
        remark = None  # the binary header cannot tell an empty remark from none
    return RemotingCommand(
        code=draw(int16 if binary else int32),
        language=draw(st.sampled_from(LanguageCode)),
        version=draw(int16 if binary else int32),
        opaque=draw(int32),
        flag=draw(st.integers(0, 3)),
        remark=remark,
        ext_fields=draw(st.dictionaries(text, text, max_size=5)),
        body=draw(st.binary(max_size=64)),
        serialize_type=kind,
    )


@settings(database=None, max_examples=300)
@given(commands())
def test_frame_round_trip(cmd: RemotingCommand) -> None:
    assert decode_frame(encode_frame(cmd)) == cmd


@settings(database=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes) -> None:
    with contextlib.suppress(FrameError, HeaderError):
        decode_frame(data)


@settings(database=None)
@given(st.dictionaries(st.text().filter(lambda s: "\x01" not in s and "\x02" not in s and s),
                       st.text().filter(lambda s: "\x01" not in s and "\x02" not in s)))
def test_properties_round_trip(props: dict[str, str]) -> None:
    assert decode_properties(encode_properties(props)) == props


def test_properties_wire_form() -> None:
    assert encode_properties({"TAGS": "a", "KEYS": "k1 k2"}) == "TAGS\x01a\x02KEYS\x01k1 k2\x02"
    # tolerant of a missing trailing separator and of junk pairs
    assert decode_properties("TAGS\x01a\x02junk\x02WAIT\x01true") == {"TAGS": "a", "WAIT": "true"}
    with pytest.raises(ValueError):
        encode_properties({"bad\x01key": "v"})


def test_make_response_keeps_opaque_and_serialize_type() -> None:
    req = RemotingCommand(code=11, opaque=42, serialize_type=SerializeType.ROCKETMQ)
    resp = req.make_response(ResponseCode.PULL_NOT_FOUND, "none", {"nextBeginOffset": 5})
    assert resp.is_response and not resp.is_oneway
    assert resp.flag == FLAG_RESPONSE
    assert (resp.opaque, resp.serialize_type) == (42, SerializeType.ROCKETMQ)
    assert resp.ext_fields == {"nextBeginOffset": "5"}


@settings(max_examples=200, deadline=None)
@given(code=st.integers(-(2**31), 2**31 - 1), opaque=st.integers(-(2**31), 2**31 - 1),
       fields=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=6))
def test_encoded_json_answer_is_the_answer_a_command_encodes_to(code: int, opaque: int, fields: dict[str, str]) -> None:
    request = RemotingCommand(code=10, opaque=opaque, language=LanguageCode.PYTHON)
    frame = encode_json_answer(code, opaque, fields)
    assert decode_frame(frame) == decode_frame(encode_frame(request.string_response(code, None, fields)))
    assert frame == encode_frame(request.string_response(code, None, fields))  # byte for byte


# -- lenient decoding ------------------------------------------------------------------------


def test_ext_fields_that_are_not_strings_become_java_strings() -> None:
    cmd = decode_frame(json_frame({
        "code": 11, "opaque": 1, "flag": 0, "language": "CPP", "version": 0,
        "extFields": {"queueId": 3, "maxMsgNums": 32, "batch": False, "unitMode": True,
                      "s": "x", "gone": None, "ratio": 1.5},
    }))
    assert cmd.ext_fields == {"queueId": "3", "maxMsgNums": "32", "batch": "false",
                              "unitMode": "true", "s": "x", "ratio": "1.5"}
    assert cmd.language == LanguageCode.CPP


def test_missing_fields_take_java_defaults() -> None:
    cmd = decode_frame(json_frame({"code": 34, "opaque": 5}))
    assert cmd.ext_fields == {} and cmd.flag == 0 and cmd.version == 0
    assert cmd.language == LanguageCode.JAVA and cmd.remark is None


@pytest.mark.parametrize(("language", "expected"), [
    (1, LanguageCode.CPP), ("NODE_JS", LanguageCode.NODE_JS), ("COBOL", LanguageCode.OTHER),
    (99, LanguageCode.OTHER),
])
def test_language_as_name_or_number(language: object, expected: LanguageCode) -> None:
    cmd = decode_frame(json_frame({"code": 34, "opaque": 5, "language": language}))
    assert cmd.language == expected


def test_numbers_in_strings_are_accepted() -> None:
    cmd = decode_frame(json_frame({"code": "105", "opaque": "6", "flag": "0"}))
    assert (cmd.code, cmd.opaque) == (105, 6)


# -- malformed input -------------------------------------------------------------------------


def test_header_not_json_without_opaque() -> None:
    with pytest.raises(HeaderError) as info:
        decode_frame(frame_with_header(b"this is not json"))
    assert info.value.opaque is None


def test_header_not_json_but_opaque_recoverable() -> None:
    with pytest.raises(HeaderError) as info:
        decode_frame(frame_with_header(b'{"code":10,"opaque":77,"extFields":{"a":'))
    assert info.value.opaque == 77


@pytest.mark.parametrize("header", [
    {"opaque": 3},  # no code
    {"code": "ten", "opaque": 3},
    {"code": True, "opaque": 3},
    {"code": 2**40, "opaque": 3},
    {"code": 10, "opaque": 3, "extFields": ["a"]},
    {"code": 10, "opaque": 3, "language": [1]},
])
def test_bad_json_fields_keep_the_opaque(header: dict[str, object]) -> None:
    with pytest.raises(HeaderError) as info:
        decode_frame(json_frame(header))
    assert info.value.opaque == 3


def test_json_header_that_is_not_an_object() -> None:
    with pytest.raises(HeaderError):
        decode_frame(frame_with_header(b"[1, 2]"))


def test_truncated_binary_header_keeps_the_opaque() -> None:
    full = encode_frame(RemotingCommand(code=10, opaque=1234, remark="abc",
                                        serialize_type=SerializeType.ROCKETMQ))
    header = full[8:-3]  # cut into the remark
    with pytest.raises(HeaderError) as info:
        decode_frame(frame_with_header(header, serialize_type=1))
    assert info.value.opaque == 1234
    assert info.value.serialize_type == SerializeType.ROCKETMQ


@pytest.mark.parametrize(("frame", "message"), [
    (b"\x00\x00", "no length prefix"),
    (struct.pack(">i", 2) + b"\0\0", "smaller than"),
    (struct.pack(">i", -5), "smaller than"),
    (struct.pack(">i", 0x7FFFFFFF), "exceeds the limit"),
    (struct.pack(">iI", 10, 100) + b"\0" * 6, "header length"),
    (struct.pack(">iI", 4, 7 << 24), "serialize type"),
    (struct.pack(">iI", 9, 0) + b"\0", "follow"),
])
def test_frame_errors(frame: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_frame(frame)


def test_frame_limit_is_configurable() -> None:
    frame = encode_frame(RemotingCommand(code=1, body=b"x" * 100))
    with pytest.raises(FrameError):
        decode_frame(frame, frame_bytes_max=64)
    assert decode_frame(frame, frame_bytes_max=len(frame)).body == b"x" * 100


def test_binary_header_rejects_codes_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        encode_frame(RemotingCommand(code=200050, serialize_type=SerializeType.ROCKETMQ))


def test_decode_payload_accepts_memoryview() -> None:
    frame = encode_frame(RemotingCommand(code=3, body=b"b"))
    assert decode_payload(memoryview(frame)[4:]).body == b"b"


@settings(database=None, max_examples=300)
@given(commands(), st.data())
def test_damaged_frames_raise_only_codec_errors(cmd: RemotingCommand, data: st.DataObject) -> None:
    frame = bytearray(encode_frame(cmd))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(4, len(frame) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(FrameError, HeaderError):
        decode_frame(bytes(frame))


def test_header_shape_sent_by_the_cpp_client() -> None:
    # Shape observed from rocketmq==0.4.4 (Apache C++ core) SEND_MESSAGE: ints mixed with
    # strings in extFields, "0" for booleans, no serializeTypeCurrentRPC, trailing newline.
    header = (b'{"code":10,"extFields":{"AccessKey":"","batch":"0","defaultTopicQueueNums":4,'
              b'"flag":0,"queueId":0,"sysFlag":0,"properties":"TAGS\\u0001a\\u0002",'
              b'"topic":"T","unitMode":"0"},"flag":0,"language":"CPP","opaque":0,'
              b'"remark":"","version":63}\n')
    cmd = decode_frame(frame_with_header(header, b"hello"))
    assert (cmd.code, cmd.opaque, cmd.version, cmd.language) == (10, 0, 63, LanguageCode.CPP)
    assert cmd.ext_fields["queueId"] == "0" and cmd.ext_fields["batch"] == "0"
    assert decode_properties(cmd.ext_fields["properties"]) == {"TAGS": "a"}
    assert cmd.remark == "" and cmd.body == b"hello"


# Property strings as pairs of a few names (so they repeat) with values that may hold the
# name/value separator, some pairs without a separator, and stray separators between them.
_PAIR = st.tuples(st.sampled_from(["KEYS", "K", "UNIQ_KEY", "a", ""]), st.sampled_from(["\x01", ""]),
                  st.text(alphabet=["\x01", "K", "a", " ", "b"], max_size=6))
_PROP_TEXT = st.lists(_PAIR, max_size=8).map(lambda ps: "\x02".join(n + sep + v for n, sep, v in ps)) | st.text(
    alphabet=["\x01", "\x02", "K", "E", "Y", "S", "a", " "], max_size=40)


@given(text=_PROP_TEXT, name=st.sampled_from(["KEYS", "K", "UNIQ_KEY", "a", "Y S", ""]))
@settings(max_examples=600)
def test_property_value_is_what_decoding_gives(text: str, name: str) -> None:
    assert property_value(text, name) == decode_properties(text).get(name)


@given(text=_PROP_TEXT)
@settings(max_examples=300)
def test_index_keys_of_the_encoded_properties_match_the_decoded(text: str) -> None:
    keys: list[str] = []
    offsets: list[int] = []
    add_index_keys_of("T", text, 7, keys, offsets)
    assert keys == index_keys("T", decode_properties(text))
    assert offsets == [7] * len(keys)
