"""RemotingCommand and its frame codec.

Frame layout (all integers big-endian)::

    +--------------+---------------------------------+--------------+------------+
    | int32 length | int32 (serType << 24 | headerLen) | header bytes | body bytes |
    +--------------+---------------------------------+--------------+------------+

``length`` counts everything after itself: ``4 + headerLen + bodyLen``. ``serType`` 0 is a JSON
header, 1 the binary "ROCKETMQ" header. The body is opaque bytes whose meaning depends on the
code. Like Netty's decoder in Apache RocketMQ, a whole frame (prefix included) is at most
``FRAME_BYTES_MAX`` bytes.

Binary header layout::

    int16 code | int8 language | int16 version | int32 opaque | int32 flag
    | int32 remarkLen | remark utf-8
    | int32 extLen | extLen bytes of repeated (int16 keyLen | key | int32 valLen | val)

Decoding is lenient where real clients are (extFields values that are ints or bools, a missing
extFields, language as a name or a number) and strict about the envelope.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .codes import FLAG_ONEWAY, FLAG_RESPONSE, LanguageCode, SerializeType
from .errors import FrameError, HeaderError

FRAME_BYTES_MAX = 16 * 1024 * 1024
HEADER_BYTES_MAX = 0xFFFFFF  # header length has 24 bits in the frame
DEFAULT_VERSION = 401  # MQVersion V4_9_4: peers may expect standard JSON from us

LENGTH = struct.Struct(">i")
HEADER_INFO = struct.Struct(">I")  # serType << 24 | headerLen
BINARY_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag
BINARY_OPAQUE_OFFSET = 5  # after code (2), language (1), version (2)
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

_LANGUAGE_BY_NAME: dict[str, LanguageCode] = dict(LanguageCode.__members__)
_LANGUAGE_NAMES: dict[int, str] = {int(v): k for k, v in LanguageCode.__members__.items()}
_OPAQUE_IN_JSON = re.compile(rb'"opaque"\s*:\s*"?(-?\d{1,11})"?')


def _java_fields(ext_fields: Mapping[str, object] | None) -> dict[str, str]:
    """Header fields as Java sends them: values as strings, None left out."""
    return {k: v if type(v) is str else java_str(v) for k, v in ext_fields.items() if v is not None} if ext_fields else {}


@dataclass(slots=True)
class RemotingCommand:
    code: int
    language: LanguageCode = LanguageCode.JAVA
    version: int = DEFAULT_VERSION
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    serialize_type: SerializeType = SerializeType.JSON

    @classmethod
    def request(
        cls,
        code: int,
        ext_fields: Mapping[str, object] | None = None,
        body: bytes = b"",
        *,
        oneway: bool = False,
        language: LanguageCode = LanguageCode.PYTHON,
        serialize_type: SerializeType = SerializeType.JSON,
    ) -> RemotingCommand:
        """A request; ``ext_fields`` values are turned into strings as Java does."""
        return cls.string_request(code, _java_fields(ext_fields), body, oneway=oneway, language=language,
                                  serialize_type=serialize_type)

    @classmethod
    def string_request(
        cls,
        code: int,
        fields: dict[str, str],
        body: bytes = b"",
        *,
        oneway: bool = False,
        language: LanguageCode = LanguageCode.PYTHON,
        serialize_type: SerializeType = SerializeType.JSON,
    ) -> RemotingCommand:
        """:meth:`request` with fields that are strings already, taken as they are (the
        producer's send path builds them so, once per message)."""
        return cls(
            code=code,
            language=language,
            flag=FLAG_ONEWAY if oneway else 0,
            ext_fields=fields,
            body=body,
            serialize_type=serialize_type,
        )

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    def make_response(
        self,
        code: int,
        remark: str | None = None,
        ext_fields: Mapping[str, object] | None = None,
        body: bytes = b"",
    ) -> RemotingCommand:
        """The answer to this request: same opaque, same header encoding, response flag set."""
        return self.string_response(code, remark, _java_fields(ext_fields), body)

    def string_response(self, code: int, remark: str | None, fields: dict[str, str], body: bytes = b"") -> RemotingCommand:
        """:meth:`make_response` with fields that are strings already, taken as they are (the
        send path's answer, once per message)."""
        return RemotingCommand(
            code=code,
            language=LanguageCode.JAVA,
            version=DEFAULT_VERSION,
            opaque=self.opaque,
            flag=FLAG_RESPONSE,
            remark=remark,
            ext_fields=fields,
            body=body,
            serialize_type=self.serialize_type,
        )

    def encode(self) -> bytes:
        return encode_frame(self)

    @classmethod
    def decode(cls, frame: bytes, frame_bytes_max: int = FRAME_BYTES_MAX) -> RemotingCommand:
        return decode_frame(frame, frame_bytes_max)


def java_str(value: object) -> str:
    """The string Java's ``toString`` gives for a header field value (``true``, ``42``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


# ---------------------------------------------------------------------------------------------
# Frames


def check_frame_length(length: int, frame_bytes_max: int = FRAME_BYTES_MAX) -> None:
    """Validate the value of a frame's length prefix before reading that many bytes."""
    if length < HEADER_INFO.size:
        raise FrameError(f"frame length {length} is smaller than the header-length field")
    if length + LENGTH.size > frame_bytes_max:
        raise FrameError(
            f"frame of {length + LENGTH.size} bytes exceeds the limit of {frame_bytes_max} bytes"
        )


def encode_frame(cmd: RemotingCommand) -> bytes:
    if cmd.serialize_type == SerializeType.ROCKETMQ:
        header = encode_binary_header(cmd)
    else:
        header = encode_json_header(cmd)
    if len(header) > HEADER_BYTES_MAX:
        raise ValueError(f"header of {len(header)} bytes does not fit the 24-bit length")
    info = (int(cmd.serialize_type) << 24) | len(header)
    length = HEADER_INFO.size + len(header) + len(cmd.body)
    return b"".join((LENGTH.pack(length), HEADER_INFO.pack(info), header, cmd.body))


def encode_json_answer(code: int, opaque: int, fields: dict[str, str]) -> bytes:
    """The frame of ``encode_frame(request.string_response(code, None, fields))`` for a request
    with a JSON header: the same header (a Java peer's, no remark), built without the command
    (the send path answers every message with one)."""
    header = b"".join((_ANSWER_HEAD % (code, DEFAULT_VERSION, opaque, FLAG_RESPONSE), orjson.dumps(fields), _ANSWER_TAIL))
    return b"".join((LENGTH.pack(HEADER_INFO.size + len(header)), HEADER_INFO.pack(len(header)), header))


_ANSWER_HEAD = b'{"code":%d,"language":"JAVA","version":%d,"opaque":%d,"flag":%d,"extFields":'
_ANSWER_TAIL = b',"serializeTypeCurrentRPC":"JSON"}'


def decode_frame(frame: bytes, frame_bytes_max: int = FRAME_BYTES_MAX) -> RemotingCommand:
    """Decode exactly one whole frame, length prefix included."""
    if len(frame) < LENGTH.size:
        raise FrameError(f"frame of {len(frame)} bytes has no length prefix")
    (length,) = LENGTH.unpack_from(frame)
    check_frame_length(length, frame_bytes_max)
    if length != len(frame) - LENGTH.size:
        raise FrameError(f"length prefix says {length} bytes but {len(frame) - 4} follow")
    return decode_payload(memoryview(frame)[LENGTH.size :])


def decode_payload(payload: bytes | memoryview) -> RemotingCommand:
    """Decode the part of a frame after its length prefix."""
    if len(payload) < HEADER_INFO.size:
        raise FrameError("frame too short for the header-length field")
    (info,) = HEADER_INFO.unpack_from(payload)
    serialize_type, header_len = info >> 24, info & 0xFFFFFF
    if header_len > len(payload) - HEADER_INFO.size:
        raise FrameError(
            f"header length {header_len} exceeds the {len(payload) - 4} bytes in the frame"
        )
    header = bytes(payload[HEADER_INFO.size : HEADER_INFO.size + header_len])
    body = bytes(payload[HEADER_INFO.size + header_len :])
    if serialize_type == SerializeType.JSON:
        cmd = decode_json_header(header)
    elif serialize_type == SerializeType.ROCKETMQ:
        cmd = decode_binary_header(header)
    else:
        raise FrameError(f"unknown header serialize type {serialize_type}")
    cmd.body = body
    return cmd


# ---------------------------------------------------------------------------------------------
# JSON header


def encode_json_header(cmd: RemotingCommand) -> bytes:
    obj: dict[str, Any] = {
        "code": cmd.code,
        "language": _LANGUAGE_NAMES.get(cmd.language) or LanguageCode(cmd.language).name,
        "version": cmd.version,
        "opaque": cmd.opaque,
        "flag": cmd.flag,
        "extFields": cmd.ext_fields,
        "serializeTypeCurrentRPC": "JSON",
    }
    if cmd.remark is not None:
        obj["remark"] = cmd.remark
    return orjson.dumps(obj)


def decode_json_header(header: bytes) -> RemotingCommand:
    try:
        obj = orjson.loads(header)
    except orjson.JSONDecodeError as exc:
        raise HeaderError(f"header is not valid JSON: {exc}", _scan_opaque(header)) from None
    if not isinstance(obj, dict):
        raise HeaderError("header is not a JSON object", _scan_opaque(header))
    get = obj.get
    code, opaque, flag, version = get("code"), get("opaque"), get("flag", 0), get("version", 0)
    if (type(code) is int and type(opaque) is int and type(flag) is int and type(version) is int
            and INT32_MIN <= opaque <= INT32_MAX and INT32_MIN <= code <= INT32_MAX
            and INT32_MIN <= flag <= INT32_MAX and INT32_MIN <= version <= INT32_MAX):
        language = get("language")
        remark = get("remark")
        return RemotingCommand(  # the common case, checked in one go
            code=code,
            language=_LANGUAGE_BY_NAME.get(language, LanguageCode.OTHER) if type(language) is str
            else _language(language, opaque),
            version=version,
            opaque=opaque,
            flag=flag,
            remark=remark if type(remark) is str or remark is None else java_str(remark),
            ext_fields=_ext_fields(get("extFields"), opaque),
            serialize_type=SerializeType.JSON,
        )
    opaque = _int32_field(obj, "opaque", None, None)
    code = _int32_field(obj, "code", None, opaque)
    return RemotingCommand(
        code=code,
        language=_language(obj.get("language"), opaque),
        version=_int32_field(obj, "version", 0, opaque),
        opaque=opaque,
        flag=_int32_field(obj, "flag", 0, opaque),
        remark=None if obj.get("remark") is None else java_str(obj["remark"]),
        ext_fields=_ext_fields(obj.get("extFields"), opaque),
        serialize_type=SerializeType.JSON,
    )


def _scan_opaque(header: bytes) -> int | None:
    """Find the opaque in a header too damaged to parse, if it is there exactly once."""
    found = _OPAQUE_IN_JSON.findall(header)
    if len(found) != 1:
        return None
    value = int(found[0])
    return value if INT32_MIN <= value <= INT32_MAX else None


def _int32_field(obj: dict[str, Any], key: str, default: int | None, opaque: int | None) -> int:
    value = obj.get(key)
    if value is None:
        if default is None:
            raise HeaderError(f"header has no {key!r}", opaque)
        return default
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)  # fastjson accepts numbers in strings; so do we
    if isinstance(value, bool) or not isinstance(value, int):
        raise HeaderError(f"header field {key!r} is not an integer: {value!r}", opaque)
    if not INT32_MIN <= value <= INT32_MAX:
        raise HeaderError(f"header field {key!r} is out of int32 range: {value}", opaque)
    return value


def _language(value: object, opaque: int | None) -> LanguageCode:
    if value is None:
        return LanguageCode.JAVA  # Java's default when the field is absent
    if isinstance(value, str):
        return LanguageCode.__members__.get(value, LanguageCode.OTHER)
    if isinstance(value, int) and not isinstance(value, bool):
        return _language_from_int(value)
    raise HeaderError(f"header field 'language' is neither a name nor a number: {value!r}", opaque)


def _language_from_int(value: int) -> LanguageCode:
    try:
        return LanguageCode(value)
    except ValueError:
        return LanguageCode.OTHER


def _ext_fields(value: object, opaque: int | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HeaderError(f"header field 'extFields' is not an object: {value!r}", opaque)
    for v in value.values():
        if type(v) is not str:
            return {k: java_str(v) for k, v in value.items() if v is not None}
    return value  # all strings, as Java peers send them: the parsed dict is ours to keep


# ---------------------------------------------------------------------------------------------
# Binary (ROCKETMQ) header


def encode_binary_header(cmd: RemotingCommand) -> bytes:
    try:
        fixed = BINARY_FIXED.pack(cmd.code, int(cmd.language), cmd.version, cmd.opaque, cmd.flag)
    except struct.error as exc:
        raise ValueError(f"command does not fit the binary header: {exc}") from None
    remark = cmd.remark.encode() if cmd.remark else b""
    ext = bytearray()
    for key, value in cmd.ext_fields.items():
        k, v = key.encode(), value.encode()
        ext += INT16.pack(len(k)) + k + INT32.pack(len(v)) + v
    return b"".join((fixed, INT32.pack(len(remark)), remark, INT32.pack(len(ext)), ext))


def decode_binary_header(header: bytes) -> RemotingCommand:
    opaque: int | None = None
    if len(header) >= BINARY_OPAQUE_OFFSET + INT32.size:
        (opaque,) = INT32.unpack_from(header, BINARY_OPAQUE_OFFSET)
    kind = SerializeType.ROCKETMQ
    try:
        code, language, version, opaque, flag = BINARY_FIXED.unpack_from(header)
        pos = BINARY_FIXED.size
        remark_bytes, pos = _read_block(header, pos)
        ext_bytes, pos = _read_block(header, pos)
        remark = remark_bytes.decode() if remark_bytes else None
        ext_fields = _decode_binary_ext(ext_bytes)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise HeaderError(f"binary header does not parse: {exc}", opaque, kind) from None
    if pos != len(header):
        raise HeaderError(f"{len(header) - pos} stray bytes after binary header", opaque, kind)
    return RemotingCommand(
        code=code,
        language=_language_from_int(language),
        version=version,
        opaque=opaque,
        flag=flag,
        remark=remark,
        ext_fields=ext_fields,
        serialize_type=kind,
    )


def _read_block(data: bytes, pos: int) -> tuple[bytes, int]:
    (size,) = INT32.unpack_from(data, pos)
    pos += INT32.size
    if size < 0 or pos + size > len(data):
        raise ValueError(f"block length {size} at byte {pos - 4} runs past the header")
    return data[pos : pos + size], pos + size


def _decode_binary_ext(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        (key_len,) = INT16.unpack_from(data, pos)
        pos += INT16.size
        if key_len < 0 or pos + key_len > len(data):
            raise ValueError(f"extFields key length {key_len} runs past the header")
        key = data[pos : pos + key_len].decode()
        value, pos = _read_block(data, pos + key_len)
        fields[key] = value.decode()
    return fields


# ---------------------------------------------------------------------------------------------
# Message properties: "k1\x01v1\x02k2\x01v2\x02"

NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"


def encode_properties(properties: Mapping[str, str]) -> str:
    parts = []
    for key, value in properties.items():
        for text in (key, value):
            if NAME_VALUE_SEPARATOR in text or PROPERTY_SEPARATOR in text:
                raise ValueError(f"property {key!r} contains a separator character")
        parts.append(f"{key}{NAME_VALUE_SEPARATOR}{value}{PROPERTY_SEPARATOR}")
    return "".join(parts)


def property_value(text: str, name: str) -> str | None:
    """``decode_properties(text).get(name)`` without decoding every property: one search for
    the last pair that starts with ``name`` and the separator (the last one wins there too),
    else a look at the first pair."""
    if not name:
        return None
    head = f"{name}{NAME_VALUE_SEPARATOR}"
    at = text.rfind(PROPERTY_SEPARATOR + head)
    if at >= 0:
        start = at + 1 + len(head)
    elif text.startswith(head):
        start = len(head)
    else:
        return None
    end = text.find(PROPERTY_SEPARATOR, start)
    return text[start:] if end < 0 else text[start:end]


def decode_properties(text: str) -> dict[str, str]:
    """Pairs without a name/value separator are skipped, as RocketMQ does."""
    properties: dict[str, str] = {}
    for pair in text.split(PROPERTY_SEPARATOR):
        key, sep, value = pair.partition(NAME_VALUE_SEPARATOR)
        if sep and key:
            properties[key] = value
    return properties
