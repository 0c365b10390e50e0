"""RocketMQ messages and their byte formats: the stored (pull body) form, batch send bodies,
offset message ids and tag hash codes.

Stored message layout (``MessageDecoder`` in Apache RocketMQ; all integers big-endian). A pull
response body is a concatenation of these, so real clients parse what we write here::

    offset size  field
         0    4  store_size            bytes of the whole record, this field included
         4    4  magic                 0xDAA320A7 (v1: 1-byte topic length) or 0xDAA320AB (v2: 2-byte)
         8    4  body_crc              zlib CRC32 of the (possibly compressed) body, & 0x7FFFFFFF
        12    4  queue_id
        16    4  flag                  user flag
        20    8  queue_offset          index in its queue
        28    8  commitlog_offset      "physical" offset: what the offset message id carries
        36    4  sys_flag              0x1 compressed body, 0x10 born host IPv6, 0x20 store host IPv6, ...
        40    8  born_timestamp        ms
        48  4+4  born_host             IPv4 + int32 port (16+4 when sys_flag & 0x10)
         .    8  store_timestamp       ms
         .  4+4  store_host            IPv4 + int32 port (16+4 when sys_flag & 0x20)
         .    4  reconsume_times
         .    8  prepared_transaction_offset
         .  4+n  body                  int32 length + bytes (still compressed if sys_flag & 0x1)
         .  1+n  topic                 int8 length + UTF-8 (int16 length in magic v2)
         .  2+n  properties            int16 length + "k\\x01v\\x02..." UTF-8

Batch send body (SEND_BATCH_MESSAGE, ``MessageDecoder.encodeMessages``), per message::

    int32 total_size | int32 magic (0) | int32 body_crc (0) | int32 flag
    | int32 body_length + body | int16 properties_length + properties

Offset message id: store host IPv4 (4) + port (4) + commit log offset (8) as 32 uppercase hex
characters (IPv6: 16 + 4 + 8 -> 56).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from adapters.rocket.remoting.command import decode_properties, encode_properties

MAGIC_V1 = 0xDAA320A7
MAGIC_V2 = 0xDAA320AB
TOPIC_V1_BYTES_MAX = 127

# sys_flag bits (MessageSysFlag)
SYSFLAG_COMPRESSED = 0x1
SYSFLAG_MULTI_TAGS = 0x2
SYSFLAG_TRANSACTION_PREPARED = 0x4
SYSFLAG_TRANSACTION_COMMIT = 0x8
SYSFLAG_TRANSACTION_ROLLBACK = 0xC
SYSFLAG_TRANSACTION_MASK = 0xC
SYSFLAG_BORNHOST_V6 = 0x10
SYSFLAG_STOREHOST_V6 = 0x20

# Property names (MessageConst)
PROPERTY_KEYS = "KEYS"
PROPERTY_TAGS = "TAGS"
PROPERTY_WAIT_STORE_MSG_OK = "WAIT"
PROPERTY_DELAY_TIME_LEVEL = "DELAY"
PROPERTY_RETRY_TOPIC = "RETRY_TOPIC"
PROPERTY_REAL_TOPIC = "REAL_TOPIC"
PROPERTY_REAL_QUEUE_ID = "REAL_QID"
PROPERTY_TRANSACTION_PREPARED = "TRAN_MSG"
PROPERTY_PRODUCER_GROUP = "PGROUP"
PROPERTY_MIN_OFFSET = "MIN_OFFSET"
PROPERTY_MAX_OFFSET = "MAX_OFFSET"
PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX = "UNIQ_KEY"
PROPERTY_MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
PROPERTY_RECONSUME_TIME = "RECONSUME_TIME"
PROPERTY_ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
PROPERTY_TRANSACTION_ID = "__transactionId__"
PROPERTY_CLUSTER = "CLUSTER"
KEY_SEPARATOR = " "

# Fixed positions inside a stored record.
STORE_SIZE = struct.Struct(">i")
QUEUE_OFFSET_POSITION = 20
COMMITLOG_OFFSET_POSITION = 28
SYSFLAG_POSITION = 36
# size, magic, crc, queueId, flag, queueOffset, phys, sysFlag, bornTs
STORED_HEAD = struct.Struct(">iIiiiqqiq")
STORED_HEAD_BYTES = STORED_HEAD.size  # 48: born host starts here
# Everything before the body when both hosts are IPv4: head, born host, store timestamp, store
# host, reconsume times, prepared transaction offset, body length.
_HEAD_V4 = struct.Struct(">iIiiiqqiq8sq8siqi")
_FIXED_V4_BYTES = _HEAD_V4.size
_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I64 = struct.Struct(">q")
_V4_MIDDLE = struct.Struct(">8sq8siqi")  # born host, store ts, store host, reconsume, prepared, body len
_BATCH_HEAD = struct.Struct(">iiiii")  # total, magic, crc, flag, bodyLen

_V4_HOST = struct.Struct(">4si")
_MSG_ID_V4 = struct.Struct(">4siq")
_MSG_ID_V6 = struct.Struct(">16siq")


class MessageFormatError(ValueError):
    """Bytes that are not a well-formed message in the expected RocketMQ format."""


@dataclass
class Message:
    """A message, as sent (topic, body, flag, properties) and as stored (the rest)."""

    topic: str
    body: bytes = b""
    flag: int = 0
    properties: dict[str, str] = field(default_factory=dict)
    # Stored form (filled by the broker; read back from pull bodies).
    queue_id: int = 0
    queue_offset: int = 0
    commitlog_offset: int = 0
    store_size: int = 0
    body_crc: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0
    born_host: str = "127.0.0.1:0"
    store_timestamp: int = 0
    store_host: str = "127.0.0.1:0"
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0
    msg_id: str = ""  # the offset message id (store host + commit log offset)

    @property
    def tags(self) -> str | None:
        return self.properties.get(PROPERTY_TAGS)

    @tags.setter
    def tags(self, value: str | None) -> None:
        _set_property(self.properties, PROPERTY_TAGS, value)

    @property
    def keys(self) -> list[str]:
        """The KEYS property split on spaces (empty when absent)."""
        return [k for k in self.properties.get(PROPERTY_KEYS, "").split(KEY_SEPARATOR) if k]

    @keys.setter
    def keys(self, value: str | Iterable[str] | None) -> None:
        text = value if value is None or isinstance(value, str) else KEY_SEPARATOR.join(value)
        _set_property(self.properties, PROPERTY_KEYS, text or None)

    @property
    def uniq_key(self) -> str | None:
        """The client-made message id (what RocketMQ applications see as msgId)."""
        return self.properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX)

    @property
    def delay_time_level(self) -> int:
        return int(self.properties.get(PROPERTY_DELAY_TIME_LEVEL, "0") or 0)

    def properties_string(self) -> str:
        return encode_properties(self.properties)


def _set_property(props: dict[str, str], key: str, value: str | None) -> None:
    if value is None:
        props.pop(key, None)
    else:
        props[key] = value


# -- small codecs ------------------------------------------------------------------------------


def java_string_hash(text: str) -> int:
    """``String.hashCode()`` of Java: over UTF-16 code units, wrapping as a signed int32."""
    h = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - 0x100000000 if h & 0x80000000 else h


def tags_code(tags: str | None) -> int:
    """The consume-queue tags code of a message: the tag's hash, 0 without a tag."""
    return java_string_hash(tags) if tags else 0


def body_crc(body: bytes | memoryview) -> int:
    """RocketMQ's ``UtilAll.crc32``: CRC32 masked to a non-negative int32."""
    return zlib.crc32(body) & 0x7FFFFFFF


@functools.lru_cache(maxsize=1024)  # per message on hot paths; hosts are few, ipaddress is slow
def encode_host(host: str) -> tuple[bytes, bool]:
    """``"ip:port"`` -> (address bytes + int32 port, is IPv6)."""
    ip, sep, port = host.rpartition(":")
    if not sep:
        raise MessageFormatError(f"host {host!r} is not ip:port")
    addr = ipaddress.ip_address(ip.strip("[]"))
    return addr.packed + _I32.pack(int(port)), addr.version == 6


def decode_host(raw: bytes | bytearray | memoryview) -> str:
    return _decode_host(bytes(raw))


@functools.lru_cache(maxsize=1024)
def _decode_host(raw: bytes) -> str:
    addr = ipaddress.ip_address(raw[:-4])
    (port,) = _I32.unpack_from(raw, len(raw) - 4)
    return f"{addr}:{port}"


def encode_offset_msg_id(store_host: str, commitlog_offset: int) -> str:
    """32 (IPv4) or 56 (IPv6) uppercase hex characters."""
    raw, _v6 = encode_host(store_host)
    return (raw + _I64.pack(commitlog_offset)).hex().upper()


def decode_offset_msg_id(msg_id: str) -> tuple[str, int]:
    """-> (store host ``ip:port``, commit log offset). Raises MessageFormatError."""
    try:
        raw = bytes.fromhex(msg_id)
    except ValueError:
        raise MessageFormatError(f"message id {msg_id!r} is not hex") from None
    if len(raw) == _MSG_ID_V4.size:
        return decode_host(raw[:8]), _I64.unpack_from(raw, 8)[0]
    if len(raw) == _MSG_ID_V6.size:
        return decode_host(raw[:20]), _I64.unpack_from(raw, 20)[0]
    raise MessageFormatError(f"message id {msg_id!r} has {len(raw)} bytes, not 16 or 28")


# -- stored form -------------------------------------------------------------------------------


def encode_stored(msg: Message, properties: str | None = None) -> bytes:
    """The stored record of ``msg``. ``properties`` (already encoded) wins over
    ``msg.properties``; ``msg.body_crc`` is recomputed from the body."""
    props = (msg.properties_string() if properties is None else properties).encode()
    born, born_v6 = encode_host(msg.born_host)
    store, store_v6 = encode_host(msg.store_host)
    sys_flag = (msg.sys_flag & ~(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6)
                | (SYSFLAG_BORNHOST_V6 if born_v6 else 0) | (SYSFLAG_STOREHOST_V6 if store_v6 else 0))
    return encode_stored_raw(
        msg.topic.encode(), msg.body, props, queue_id=msg.queue_id, flag=msg.flag,
        queue_offset=msg.queue_offset, commitlog_offset=msg.commitlog_offset, sys_flag=sys_flag,
        born_timestamp=msg.born_timestamp, born_host=born, store_timestamp=msg.store_timestamp,
        store_host=store, reconsume_times=msg.reconsume_times,
        prepared_transaction_offset=msg.prepared_transaction_offset,
    )


def encode_stored_raw(
    topic: bytes, body: bytes | memoryview, properties: bytes, *, queue_id: int, flag: int,
    queue_offset: int, commitlog_offset: int, sys_flag: int, born_timestamp: int,
    born_host: bytes, store_timestamp: int, store_host: bytes, reconsume_times: int = 0,
    prepared_transaction_offset: int = 0, crc: int | None = None,
) -> bytes:
    """The broker's hot path: hosts already packed (address + int32 port), sys_flag already
    carrying the IPv6 bits that match them."""
    if len(properties) > 0x7FFF:
        raise MessageFormatError(f"properties of {len(properties)} bytes exceed 32767")
    ntopic = len(topic)
    if ntopic <= TOPIC_V1_BYTES_MAX and len(born_host) == 8 and len(store_host) == 8:  # IPv4: one pack
        nbody = len(body)
        return b"".join((
            _HEAD_V4.pack(
                _FIXED_V4_BYTES + nbody + 1 + ntopic + 2 + len(properties), MAGIC_V1,
                zlib.crc32(body) & 0x7FFFFFFF if crc is None else crc, queue_id, flag, queue_offset,
                commitlog_offset, sys_flag, born_timestamp, born_host, store_timestamp, store_host,
                reconsume_times, prepared_transaction_offset, nbody,
            ),
            body, bytes((ntopic,)), topic, _I16.pack(len(properties)), properties,
        ))
    v2 = len(topic) > TOPIC_V1_BYTES_MAX
    if len(topic) > 0x7FFF:
        raise MessageFormatError("topic too long")
    topic_len = _I16.pack(len(topic)) if v2 else bytes((len(topic),))
    size = (STORED_HEAD_BYTES + len(born_host) + 8 + len(store_host) + 4 + 8 + 4 + len(body)
            + len(topic_len) + len(topic) + 2 + len(properties))
    head = STORED_HEAD.pack(
        size, MAGIC_V2 if v2 else MAGIC_V1, body_crc(body) if crc is None else crc, queue_id, flag,
        queue_offset, commitlog_offset, sys_flag, born_timestamp,
    )
    return b"".join((
        head, born_host, _I64.pack(store_timestamp), store_host,
        _I32.pack(reconsume_times), _I64.pack(prepared_transaction_offset),
        _I32.pack(len(body)), body, topic_len, topic, _I16.pack(len(properties)), properties,
    ))


#: One record of :func:`encode_stored_many`: (body, flag, encoded properties, sys flag, born
#: timestamp, reconsume times), the fields that differ from message to message of one append.
StoredItem = tuple[bytes | memoryview, int, str, int, int, int]


def encode_stored_many(
    topic: bytes, items: Sequence[StoredItem], *, queue_id: int, queue_offset: int, commitlog_offset: int,
    born_host: bytes, store_timestamp: int, store_host: bytes,
) -> list[bytes | bytearray | memoryview]:
    """:func:`encode_stored_raw` of each item of one append (a batch send's messages, or
    several sends to one queue), whose queue and commit log offsets count up from the given
    ones, as parts for a single join (the records are copied once, not record by record and
    then again)."""
    parts: list[bytes | bytearray | memoryview] = []
    if len(topic) > TOPIC_V1_BYTES_MAX or len(born_host) != 8 or len(store_host) != 8:
        for i, (body, flag, text, sys_flag, born_timestamp, reconsume_times) in enumerate(items):
            parts.append(encode_stored_raw(
                topic, body, text.encode(), queue_id=queue_id, flag=flag, queue_offset=queue_offset + i,
                commitlog_offset=commitlog_offset + i, sys_flag=sys_flag, born_timestamp=born_timestamp,
                born_host=born_host, store_timestamp=store_timestamp, store_host=store_host,
                reconsume_times=reconsume_times,
            ))
        return parts
    pack, crc32, props_len = _HEAD_V4.pack, zlib.crc32, _I16.pack
    topic_part = bytes((len(topic),)) + topic
    fixed = _FIXED_V4_BYTES + len(topic_part) + 2
    for i, (body, flag, text, sys_flag, born_timestamp, reconsume_times) in enumerate(items):
        props = text.encode()  # encode_stored_raw's IPv4 case, inlined
        if len(props) > 0x7FFF:
            raise MessageFormatError(f"properties of {len(props)} bytes exceed 32767")
        nbody = len(body)
        parts += (
            pack(fixed + nbody + len(props), MAGIC_V1, crc32(body) & 0x7FFFFFFF, queue_id, flag, queue_offset + i,
                 commitlog_offset + i, sys_flag, born_timestamp, born_host, store_timestamp, store_host,
                 reconsume_times, 0, nbody),
            body, topic_part, props_len(len(props)), props,
        )
    return parts


def decode_stored(buf: bytes | bytearray | memoryview) -> list[Message]:
    """Every record in ``buf`` (a pull body). Raises MessageFormatError on damage."""
    return [m for m, _pos in iter_stored(buf)]


def iter_stored(buf: bytes | bytearray | memoryview) -> Iterator[tuple[Message, int]]:
    """(message, position of its record) for each record in ``buf``."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        msg = decode_one_stored(view, pos)
        yield msg, pos
        pos += msg.store_size


def stored_size(buf: bytes | bytearray | memoryview, pos: int = 0) -> int:
    """The store_size field of the record at ``pos`` (checked to be plausible)."""
    if len(buf) - pos < 4:
        raise MessageFormatError("truncated record")
    (size,) = STORE_SIZE.unpack_from(buf, pos)
    if size < STORED_HEAD_BYTES or pos + size > len(buf):
        raise MessageFormatError(f"record size {size} at byte {pos} is out of range")
    return int(size)


def decode_one_stored(buf: bytes | bytearray | memoryview, pos: int = 0) -> Message:
    size = stored_size(buf, pos)
    end = pos + size
    try:
        (_s, magic, crc, queue_id, flag, queue_offset, phys, sys_flag, born_ts) = STORED_HEAD.unpack_from(buf, pos)
        if magic not in (MAGIC_V1, MAGIC_V2):
            raise MessageFormatError(f"bad magic {magic:#x} at byte {pos}")
        p = pos + STORED_HEAD_BYTES
        if not sys_flag & (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6):
            # The common case (IPv4 hosts) in one unpack: the consume path runs this per message.
            born_raw, store_ts, store_raw, reconsume, prepared, body_len = _V4_MIDDLE.unpack_from(buf, p)
            born_host = _decode_host(born_raw)
            p += _V4_MIDDLE.size
        else:
            born_len = 20 if sys_flag & SYSFLAG_BORNHOST_V6 else 8
            born_host = decode_host(buf[p : p + born_len])
            p += born_len
            (store_ts,) = _I64.unpack_from(buf, p)
            p += 8
            store_len = 20 if sys_flag & SYSFLAG_STOREHOST_V6 else 8
            store_raw = bytes(buf[p : p + store_len])
            p += store_len
            (reconsume,) = _I32.unpack_from(buf, p)
            (prepared,) = _I64.unpack_from(buf, p + 4)
            (body_len,) = _I32.unpack_from(buf, p + 12)
            p += 16
        if body_len < 0 or p + body_len > end:
            raise MessageFormatError(f"body length {body_len} runs past the record at byte {pos}")
        body = bytes(buf[p : p + body_len])
        p += body_len
        if magic == MAGIC_V2:
            (topic_len,) = _U16.unpack_from(buf, p)
            p += 2
        else:
            topic_len = buf[p]
            p += 1
        topic = bytes(buf[p : p + topic_len]).decode()
        p += topic_len
        (props_len,) = _U16.unpack_from(buf, p)
        p += 2
        props = bytes(buf[p : p + props_len]).decode()
        p += props_len
    except (struct.error, IndexError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, MessageFormatError):
            raise
        raise MessageFormatError(f"record at byte {pos} does not parse: {exc}") from None
    if p != end:
        raise MessageFormatError(f"record at byte {pos}: fields end at {p}, size says {end}")
    store_host = _decode_host(store_raw)
    return Message(
        topic=topic, body=body, flag=flag, properties=decode_properties(props), queue_id=queue_id,
        queue_offset=queue_offset, commitlog_offset=phys, store_size=size, body_crc=crc,
        sys_flag=sys_flag, born_timestamp=born_ts, born_host=born_host, store_timestamp=store_ts,
        store_host=store_host, reconsume_times=reconsume, prepared_transaction_offset=prepared,
        msg_id=(store_raw + _I64.pack(phys)).hex().upper(),
    )


def body_length_position(pos: int, sys_flag: int) -> int:
    """Where the body length of the stored record at ``pos`` is: after the head, born host,
    store timestamp, store host, reconsume times and prepared transaction offset."""
    return (pos + STORED_HEAD_BYTES + (20 if sys_flag & SYSFLAG_BORNHOST_V6 else 8) + 8
            + (20 if sys_flag & SYSFLAG_STOREHOST_V6 else 8) + 12)


def stored_properties(buf: bytes | bytearray | memoryview, pos: int = 0) -> str:
    """Only the properties string of the record at ``pos`` (for tag filtering and indexing)."""
    view = memoryview(buf)
    (sys_flag,) = _I32.unpack_from(view, pos + SYSFLAG_POSITION)
    p = body_length_position(pos, sys_flag)
    (body_len,) = _I32.unpack_from(view, p)
    p += 4 + body_len
    (magic,) = struct.unpack_from(">I", view, pos + 4)
    if magic == MAGIC_V2:
        (topic_len,) = _U16.unpack_from(view, p)
        p += 2 + topic_len
    else:
        p += 1 + view[p]
    (props_len,) = _U16.unpack_from(view, p)
    return bytes(view[p + 2 : p + 2 + props_len]).decode("utf-8", "replace")


# -- batch send body ---------------------------------------------------------------------------


def encode_batch_body(messages: Iterable[Message]) -> bytes:
    parts = []
    for msg in messages:
        props = msg.properties_string().encode()
        total = _BATCH_HEAD.size + len(msg.body) + 2 + len(props)
        parts += [_BATCH_HEAD.pack(total, 0, 0, msg.flag, len(msg.body)), msg.body,
                  _I16.pack(len(props)), props]
    return b"".join(parts)


def decode_batch_items(body: bytes | memoryview) -> list[tuple[bytes, int, str]]:
    """The (body, flag, encoded properties as sent) of each message of a SEND_BATCH_MESSAGE
    body (the batch header carries the topic): plain tuples, this runs for every message."""
    buf = body if isinstance(body, bytes) else bytes(body)
    unpack_head, unpack_u16, head = _BATCH_HEAD.unpack_from, _U16.unpack_from, _BATCH_HEAD.size
    n = len(buf)
    items = []
    pos = 0
    while pos < n:
        if n - pos < head:
            raise MessageFormatError(f"truncated batch message at byte {pos}")
        total, _magic, _crc, flag, body_len = unpack_head(buf, pos)
        end = pos + total
        p = pos + head
        q = p + body_len
        if total < head + 2 or end > n or body_len < 0 or q + 2 > end:
            raise MessageFormatError(f"batch message at byte {pos} has inconsistent lengths")
        (props_len,) = unpack_u16(buf, q)
        if q + 2 + props_len != end:
            raise MessageFormatError(f"batch message at byte {pos}: properties do not end the record")
        try:
            props = buf[q + 2 : end].decode()
        except UnicodeDecodeError:
            raise MessageFormatError(f"batch message at byte {pos}: properties are not UTF-8") from None
        items.append((buf[p:q], flag, props))
        pos = end
    return items


def decode_batch_body(body: bytes | memoryview, topic: str = "") -> list[Message]:
    return [Message(topic=topic, body=b, flag=flag, properties=decode_properties(props))
            for b, flag, props in decode_batch_items(body)]


def properties_of(mapping: Mapping[str, str]) -> str:
    return encode_properties(mapping)
