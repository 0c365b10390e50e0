"""Record batches: the unit of write, CRC, compression and replication.

Byte layout (all integers big-endian; the same shape as Kafka's record batch v2)::

    offset  size  field
         0     8  base_offset          assigned by the log at append; outside the CRC
         8     4  batch_length         bytes after this field; outside the CRC
        12     4  leader_epoch         stamped by the leader at append; outside the CRC
        16     1  magic                always 2
        17     4  crc                  CRC32C of bytes 21..end (attributes to the last record)
        21     2  attributes           bits 0-2 codec (0 none, 4 zstd); bit 4 transactional
        23     4  last_offset_delta    record_count - 1
        27     8  first_timestamp_ms
        35     8  max_timestamp_ms
        43     8  producer_id          -1 when not an idempotent producer
        51     2  producer_epoch
        53     4  base_sequence
        57     4  record_count
        61     -  records              zstd-compressed as a whole when the codec says so

Why three fields sit outside the CRC: the log assigns the base offset and the leader stamps its
epoch after the producer computed the CRC, so neither may be covered; batch_length frames the
batch. Damage to them is still caught: a wrong length makes the CRC cover the wrong bytes, and
recovery checks that base offsets are dense and epochs never go down.

Each record: varint length, int8 attributes (0), varlong timestamp delta (from
first_timestamp_ms), varint offset delta, varint key length (-1 = no key) + key, varint value
length (-1 = no value) + value, varint header count, then per header varint key length + UTF-8
key, varint value length + value. Varints are zig-zag encoded as in protobuf.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import crc32c
import zstandard

from logstore.errors import BatchTooLargeError, InvalidBatchError
from logstore.io import Buffer

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_BYTES = HEADER.size  # 61
PREFIX = struct.Struct(">qi")  # base_offset, batch_length: what a log scan reads first
PREFIX_BYTES = PREFIX.size  # 12
LENGTH_OFFSET = 8
EPOCH = struct.Struct(">i")
#: The stamp (base_offset, batch_length, leader_epoch: the fields a log owns) with the magic and
#: CRC after it: a batch's first CRC_COVERS_FROM (21) bytes, which an append rebuilds as one
#: object (the journal entry's CRC covers exactly these).
STAMPED_PREFIX = struct.Struct(">qiibI")
EPOCH_OFFSET = 12
CRC_OFFSET = 17
CRC_COVERS_FROM = 21
assert STAMPED_PREFIX.size == CRC_COVERS_FROM
# batch_length counts from the epoch field; the smallest possible batch has no records.
BATCH_LENGTH_MIN = HEADER_BYTES - PREFIX_BYTES
MAGIC = 2

CODEC_MASK = 0x07
CODEC_NONE = 0
CODEC_ZSTD = 4
ATTR_TRANSACTIONAL = 0x10
# The records section is opaque to the engine: ``record_count`` records in a framing of the
# writer's own (the RocketMQ adapter stores RocketMQ's message format there, so a pull is a
# slice of the file). The engine still checks the CRC, counts offsets and indexes timestamps;
# it never decodes such records.
ATTR_OPAQUE = 0x80

# Hard limits: a batch bigger than this is refused whatever the log's own limit says, and
# decompression never produces more than this many bytes (a zstd bomb is an invalid batch).
BATCH_BYTES_LIMIT = 64 * 1024 * 1024
RECORDS_BYTES_LIMIT = 256 * 1024 * 1024

_zstd_c = zstandard.ZstdCompressor(level=1)
_zstd_d = zstandard.ZstdDecompressor()


class BatchHeader(NamedTuple):
    base_offset: int
    batch_length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    first_timestamp_ms: int
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def total_bytes(self) -> int:
        return PREFIX_BYTES + self.batch_length

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0
    offset: int = -1  # filled when read back from a log


@dataclass
class BatchOptions:
    compression: int = CODEC_NONE
    producer_id: int = -1
    producer_epoch: int = -1
    base_sequence: int = -1
    transactional: bool = False
    extra_attributes: int = field(default=0)


_DEFAULT_OPTIONS = BatchOptions()  # shared, never changed
_ZERO_HEADER = bytes(HEADER_BYTES)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _put_varint(out: bytearray, n: int) -> None:
    v = _zigzag(n) & 0xFFFFFFFFFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    shift = 0
    v = 0
    while True:
        if pos >= len(buf):
            raise InvalidBatchError("record varint runs past the end of the batch")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise InvalidBatchError("record varint longer than 10 bytes")
    return (v >> 1) ^ -(v & 1), pos


def _put_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(data))
        out += data


def _encode_record(out: bytearray, rec: Record, offset_delta: int, first_ts: int) -> None:
    body = bytearray(b"\x00")
    _put_varint(body, rec.timestamp_ms - first_ts)
    _put_varint(body, offset_delta)
    _put_bytes(body, rec.key)
    _put_bytes(body, rec.value)
    _put_varint(body, len(rec.headers))
    for hkey, hval in rec.headers:
        _put_bytes(body, hkey.encode())
        _put_bytes(body, hval)
    _put_varint(out, len(body))
    out += body


def build_batch(records: Sequence[Record], options: BatchOptions | None = None) -> bytearray:
    """Encode records into one batch with base offset 0 and epoch 0 (the log stamps both)."""
    if not records:
        raise InvalidBatchError("a batch needs at least one record")
    opts = options or BatchOptions()
    first_ts = records[0].timestamp_ms
    max_ts = max(r.timestamp_ms for r in records)
    payload = bytearray()
    for i, rec in enumerate(records):
        _encode_record(payload, rec, i, first_ts)
    attributes = opts.compression | opts.extra_attributes
    if opts.transactional:
        attributes |= ATTR_TRANSACTIONAL
    if opts.compression == CODEC_ZSTD:
        payload = bytearray(_zstd_c.compress(bytes(payload)))
    elif opts.compression != CODEC_NONE:
        raise InvalidBatchError(f"unsupported codec {opts.compression}")
    buf = bytearray(HEADER_BYTES) + payload
    HEADER.pack_into(
        buf, 0, 0, len(buf) - PREFIX_BYTES, 0, MAGIC, 0, attributes, len(records) - 1,
        first_ts, max_ts, opts.producer_id, opts.producer_epoch, opts.base_sequence, len(records),
    )
    struct.pack_into(">I", buf, CRC_OFFSET, crc32c.crc32c(memoryview(buf)[CRC_COVERS_FROM:]))
    if len(buf) > BATCH_BYTES_LIMIT:
        raise BatchTooLargeError(f"batch of {len(buf)} bytes exceeds {BATCH_BYTES_LIMIT}")
    return buf


def build_opaque_batch(
    payload: Buffer | list[Buffer], record_count: int, first_timestamp_ms: int, max_timestamp_ms: int,
    options: BatchOptions | None = None,
) -> bytearray:
    """A batch whose records section is ``payload`` as given (see ATTR_OPAQUE), or the
    concatenation of its parts (copied once, into the batch)."""
    if record_count < 1:
        raise InvalidBatchError("a batch needs at least one record")
    if max_timestamp_ms < first_timestamp_ms:
        raise InvalidBatchError("max timestamp is before the first timestamp")
    buf = bytearray().join([_ZERO_HEADER, *payload]) if isinstance(payload, list) else bytearray(HEADER_BYTES) + payload
    if len(buf) > BATCH_BYTES_LIMIT:
        raise BatchTooLargeError(f"batch of {len(buf)} bytes exceeds {BATCH_BYTES_LIMIT}")
    opts = _DEFAULT_OPTIONS if options is None else options  # none built per batch on the broker's path
    attributes = ATTR_OPAQUE | opts.extra_attributes | (ATTR_TRANSACTIONAL if opts.transactional else 0)
    HEADER.pack_into(
        buf, 0, 0, len(buf) - PREFIX_BYTES, 0, MAGIC, 0, attributes, record_count - 1,
        first_timestamp_ms, max_timestamp_ms, opts.producer_id, opts.producer_epoch, opts.base_sequence, record_count,
    )
    struct.pack_into(">I", buf, CRC_OFFSET, crc32c.crc32c(memoryview(buf)[CRC_COVERS_FROM:]))
    return buf


def payload_view(buf: bytes | bytearray | memoryview, pos: int = 0) -> memoryview:
    """The records section of the batch at ``pos`` (still compressed if a codec is set)."""
    h = parse_header(buf, pos)
    return memoryview(buf)[pos + HEADER_BYTES : pos + h.total_bytes]


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Unpack the header at ``pos`` without checking anything."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def check_header(h: BatchHeader, available: int) -> str | None:
    """Why this header cannot start a valid batch, or None. ``available`` bytes follow it."""
    if h.batch_length < BATCH_LENGTH_MIN or h.total_bytes > BATCH_BYTES_LIMIT:
        return f"batch length {h.batch_length} out of range"
    if h.total_bytes > available:
        return f"batch of {h.total_bytes} bytes runs past the end ({available} available)"
    if h.magic != MAGIC:
        return f"magic {h.magic} is not {MAGIC}"
    if h.record_count < 1 or h.last_offset_delta != h.record_count - 1:
        return f"record count {h.record_count} disagrees with offset delta {h.last_offset_delta}"
    if h.max_timestamp_ms < h.first_timestamp_ms:
        return "max timestamp is before the first timestamp"
    return None


def crc_ok(buf: bytes | bytearray | memoryview, pos: int, h: BatchHeader) -> bool:
    end = pos + h.total_bytes
    view = memoryview(buf)[pos + CRC_COVERS_FROM : end]
    return bool(crc32c.crc32c(view) == h.crc)


def validate(buf: bytes | bytearray | memoryview, pos: int = 0, *, limit: int | None = None) -> BatchHeader:
    """Check one whole batch at ``pos`` (structure and CRC); raise InvalidBatchError if bad."""
    available = len(buf) - pos
    if available < HEADER_BYTES:
        raise InvalidBatchError(f"{available} bytes is shorter than a batch header")
    h = parse_header(buf, pos)
    if limit is not None and h.total_bytes > limit:
        raise BatchTooLargeError(f"batch of {h.total_bytes} bytes exceeds the limit of {limit}")
    why = check_header(h, available)
    if why is not None:
        raise InvalidBatchError(why)
    if not crc_ok(buf, pos, h):
        raise InvalidBatchError("CRC32C mismatch")
    return h


#: The header fields an append checks (length, magic, crc, last offset delta, first and max
#: timestamps, record count), the others skipped as padding.
_APPEND_CHECKED = struct.Struct(">8xi4xbI2xiqq14xi")
assert _APPEND_CHECKED.size == HEADER_BYTES


def validate_for_append(buf: memoryview, limit: int) -> tuple[int, int, int, int, int]:
    """:func:`validate` for the append hot path, with no header object built: returns
    (record_count, batch_length, max_timestamp_ms, magic, crc) of the one whole batch ``buf``
    must be."""
    n = len(buf)
    if n < HEADER_BYTES:
        raise InvalidBatchError(f"{n} bytes is shorter than a batch header")
    (length, magic, crc, delta, first_ts, max_ts, count) = _APPEND_CHECKED.unpack_from(buf)
    total = length + PREFIX_BYTES
    if total > limit:
        raise BatchTooLargeError(f"batch of {total} bytes exceeds the limit of {limit}")
    if total != n or magic != MAGIC or count < 1 or delta != count - 1 or max_ts < first_ts or length < BATCH_LENGTH_MIN:
        why = check_header(parse_header(buf), n)
        if why is None:  # only the size disagrees
            why = f"{n - total} bytes follow the batch" if n > total else f"batch of {total} bytes runs past the end ({n} available)"
        raise InvalidBatchError(why)
    if crc32c.crc32c(buf[CRC_COVERS_FROM:]) != crc:
        raise InvalidBatchError("CRC32C mismatch")
    return count, length, max_ts, magic, crc


def stamp(buf: bytearray, base_offset: int, leader_epoch: int) -> None:
    """Write the fields the log owns (outside the CRC)."""
    struct.pack_into(">q", buf, 0, base_offset)
    EPOCH.pack_into(buf, EPOCH_OFFSET, leader_epoch)


def iter_records(buf: bytes | bytearray | memoryview, pos: int = 0) -> Iterator[Record]:
    """Decode the records of the (already validated) batch at ``pos``."""
    h = parse_header(buf, pos)
    if h.attributes & ATTR_OPAQUE:
        raise InvalidBatchError("the records of an opaque batch are not the engine's to decode")
    payload: bytes | memoryview = memoryview(buf)[pos + HEADER_BYTES : pos + h.total_bytes]
    if h.codec == CODEC_ZSTD:
        payload = _decompress(payload)
    elif h.codec != CODEC_NONE:
        raise InvalidBatchError(f"unsupported codec {h.codec}")
    p = 0
    for _ in range(h.record_count):
        length, p = _get_varint(payload, p)
        end = p + length
        if length < 1 or end > len(payload):
            raise InvalidBatchError("record length runs past the end of the batch")
        p += 1  # attributes
        ts_delta, p = _get_varint(payload, p)
        off_delta, p = _get_varint(payload, p)
        key, p = _get_bytes(payload, p, end)
        value, p = _get_bytes(payload, p, end)
        nheaders, p = _get_varint(payload, p)
        headers = []
        for _h in range(max(0, nheaders)):
            hkey, p = _get_bytes(payload, p, end)
            hval, p = _get_bytes(payload, p, end)
            headers.append(((hkey or b"").decode("utf-8", "replace"), hval or b""))
        if p != end:
            raise InvalidBatchError("record length disagrees with its fields")
        yield Record(value, key, tuple(headers), h.first_timestamp_ms + ts_delta, h.base_offset + off_delta)


def _decompress(payload: bytes | memoryview) -> bytes:
    """zstd-decompress at most RECORDS_BYTES_LIMIT bytes, whatever the frame header claims."""
    try:
        if zstandard.frame_content_size(payload) > RECORDS_BYTES_LIMIT:
            raise InvalidBatchError("zstd payload would decompress past the records limit")
        out = bytearray()
        with _zstd_d.stream_reader(bytes(payload)) as reader:
            while len(out) <= RECORDS_BYTES_LIMIT:
                chunk = reader.read(1024 * 1024)
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as exc:
        raise InvalidBatchError(f"zstd payload does not decompress: {exc}") from exc
    if len(out) > RECORDS_BYTES_LIMIT:
        raise InvalidBatchError("zstd payload would decompress past the records limit")
    return bytes(out)


def _get_bytes(buf: bytes | memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    n, pos = _get_varint(buf, pos)
    if n < 0:
        return None, pos
    if pos + n > end:
        raise InvalidBatchError("record field runs past the end of its record")
    return bytes(buf[pos : pos + n]), pos + n
