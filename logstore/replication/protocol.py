"""The replica fetch protocol: frames between a follower and its leader.

Every frame (all integers big-endian)::

    offset  size  field
         0     4  frame_length      bytes after this field; at most the receiver's frame limit
         4     1  kind              LIST_REQUEST 1, LIST_RESPONSE 2, FETCH_REQUEST 3,
                                    FETCH_RESPONSE 4, ERROR_RESPONSE 5
         5     4  correlation_id    echoed by the response
         9     -  body

Bodies (``str`` = uint16 length + UTF-8; ``bytes`` = uint32 length + bytes)::

    LIST_REQUEST     int32 replica_id, int32 leader_epoch
    LIST_RESPONSE    int16 error, int32 leader_epoch, uint16 count,
                     count x (str name, bytes config_json, int64 log_start, int64 log_end)
    FETCH_REQUEST    int32 replica_id, int32 leader_epoch (the follower's), int32 max_wait_ms,
                     int32 max_bytes, uint16 count,
                     count x (str name, int64 fetch_offset, int32 last_fetched_epoch)
    FETCH_RESPONSE   int16 error, int32 leader_epoch (the leader's), uint32 catalog_version
                     (changes when the leader creates or deletes a log: LIST again), uint16 count,
                     count x (str name, int16 error, int64 high_watermark, int64 log_start,
                     int64 log_end, int32 diverging_epoch, int64 diverging_end_offset,
                     bytes records)
    ERROR_RESPONSE   int16 error, str message

``records`` are whole batches exactly as stored on the leader (stamped offsets and epochs,
CRC-checked by the follower's append). ``diverging_epoch`` is -1 unless the follower's last
fetched epoch ends below its fetch offset on the leader (KIP-101/279 via the fetch response,
as Kafka since 2.7): then it holds the largest epoch <= the follower's that the leader knows
and ``diverging_end_offset`` where that epoch ends on the leader, and the follower truncates by
it. No CRC on frames: TCP checksums them, and the batches carry their own.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from logstore.errors import ProtocolError
from logstore.io import Buffer
from logstore.log import Region

#: What a frame is sent as: buffers, and file regions a TCP connection hands to sendfile.
Part = Buffer | Region

FRAME_LENGTH = struct.Struct(">I")
FRAME_HEAD = struct.Struct(">BI")  # kind, correlation id
FRAME_HEAD_BYTES = FRAME_HEAD.size

LIST_REQUEST = 1
LIST_RESPONSE = 2
FETCH_REQUEST = 3
FETCH_RESPONSE = 4
ERROR_RESPONSE = 5
KINDS = (LIST_REQUEST, LIST_RESPONSE, FETCH_REQUEST, FETCH_RESPONSE, ERROR_RESPONSE)

# Error codes. The engine's own numbers: adapters map them if they ever reach a wire of theirs.
NONE = 0
UNKNOWN_LOG = 1
OFFSET_OUT_OF_RANGE = 2  # below the leader's log start
OFFSET_BEYOND_END = 3  # a follower claims offsets the leader does not have: refused (class 9)
STALE_LEADER = 4  # the follower knows a newer leader epoch than this leader's
LOG_FAILED = 5
MALFORMED = 6
NOT_LEADER = 7  # this node was fenced and no longer serves as leader
ERROR_NAMES = {
    NONE: "none", UNKNOWN_LOG: "unknown log", OFFSET_OUT_OF_RANGE: "offset below the log start",
    OFFSET_BEYOND_END: "offset beyond the leader's end", STALE_LEADER: "stale leader epoch",
    LOG_FAILED: "log failed", MALFORMED: "malformed request", NOT_LEADER: "not the leader",
}

# Limits: a request names at most this many logs (uint16), a name is at most 200 bytes (as a
# log name), a request frame at most REQUEST_BYTES_MAX.
REQUEST_BYTES_MAX = 1024 * 1024
LOGS_PER_REQUEST_MAX = 65535
CONFIG_BYTES_MAX = 64 * 1024

_I32x2 = struct.Struct(">ii")
_FETCH_HEAD = struct.Struct(">iiiiH")
_FETCH_PART = struct.Struct(">qi")
_RESP_HEAD = struct.Struct(">hiH")
_FETCH_RESP_HEAD = struct.Struct(">hiIH")
_RESP_PART = struct.Struct(">hqqqiqI")
_LIST_PART = struct.Struct(">qq")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I16 = struct.Struct(">h")


@dataclass(frozen=True)
class FetchPartition:
    name: str
    fetch_offset: int
    last_fetched_epoch: int


@dataclass(frozen=True)
class FetchRequest:
    replica_id: int
    leader_epoch: int
    max_wait_ms: int
    max_bytes: int
    partitions: tuple[FetchPartition, ...]


@dataclass
class PartitionData:
    name: str
    error: int = NONE
    high_watermark: int = -1
    log_start: int = -1
    log_end: int = -1
    diverging_epoch: int = -1
    diverging_end_offset: int = -1
    #: whole batches: bytes when decoded, file regions on the leader's side (sent by sendfile)
    records: Buffer | tuple[Region, ...] = b""

    @property
    def records_bytes(self) -> int:
        if isinstance(self.records, tuple):
            return sum(r.length for r in self.records)
        return len(self.records)


@dataclass
class FetchResponse:
    error: int
    leader_epoch: int
    partitions: list[PartitionData] = field(default_factory=list)
    catalog_version: int = 0


@dataclass(frozen=True)
class ListRequest:
    replica_id: int
    leader_epoch: int


@dataclass(frozen=True)
class LogInfo:
    name: str
    config_json: bytes
    log_start: int
    log_end: int


@dataclass
class ListResponse:
    error: int
    leader_epoch: int
    logs: list[LogInfo] = field(default_factory=list)


@dataclass(frozen=True)
class ErrorResponse:
    error: int
    message: str


Message = FetchRequest | FetchResponse | ListRequest | ListResponse | ErrorResponse


class _Reader:
    """Bounds-checked reads: every overrun is a ProtocolError, never an IndexError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: Buffer, pos: int) -> None:
        self.buf = memoryview(buf)
        self.pos = pos

    def take(self, st: struct.Struct) -> tuple[int, ...]:
        if self.pos + st.size > len(self.buf):
            raise ProtocolError(f"frame ends inside a field at byte {self.pos}")
        values = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return values

    def raw(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError(f"a {n}-byte field runs past the end of the frame at byte {self.pos}")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def text(self) -> str:
        (n,) = self.take(_U16)
        try:
            return str(self.raw(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"a name is not UTF-8: {exc}") from exc

    def blob(self) -> memoryview:
        (n,) = self.take(_U32)
        return self.raw(n)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError(f"{len(self.buf) - self.pos} bytes follow the message")


def _text(s: str) -> bytes:
    raw = s.encode()
    if len(raw) > 0xFFFF:
        raise ProtocolError("a name is longer than 65535 bytes")
    return _U16.pack(len(raw)) + raw


def _count(n: int) -> int:
    if n > LOGS_PER_REQUEST_MAX:
        raise ProtocolError(f"{n} logs in one message (at most {LOGS_PER_REQUEST_MAX})")
    return n


def encode(message: Message, correlation_id: int) -> list[Part]:
    """The frame of ``message`` as parts to write back to back (records are not copied)."""
    parts: list[Part] = [b""]
    if isinstance(message, FetchRequest):
        kind = FETCH_REQUEST
        parts.append(_FETCH_HEAD.pack(message.replica_id, message.leader_epoch, message.max_wait_ms,
                                      message.max_bytes, _count(len(message.partitions))))
        for p in message.partitions:
            parts += (_text(p.name), _FETCH_PART.pack(p.fetch_offset, p.last_fetched_epoch))
    elif isinstance(message, FetchResponse):
        kind = FETCH_RESPONSE
        parts.append(_FETCH_RESP_HEAD.pack(message.error, message.leader_epoch, message.catalog_version & 0xFFFFFFFF,
                                           _count(len(message.partitions))))
        for d in message.partitions:
            parts += (_text(d.name), _RESP_PART.pack(d.error, d.high_watermark, d.log_start, d.log_end,
                                                    d.diverging_epoch, d.diverging_end_offset, d.records_bytes))
            if isinstance(d.records, tuple):
                parts += d.records
            elif d.records:
                parts.append(d.records)
    elif isinstance(message, ListRequest):
        kind = LIST_REQUEST
        parts.append(_I32x2.pack(message.replica_id, message.leader_epoch))
    elif isinstance(message, ListResponse):
        kind = LIST_RESPONSE
        parts.append(_RESP_HEAD.pack(message.error, message.leader_epoch, _count(len(message.logs))))
        for info in message.logs:
            parts += (_text(info.name), _U32.pack(len(info.config_json)), info.config_json,
                      _LIST_PART.pack(info.log_start, info.log_end))
    else:
        kind = ERROR_RESPONSE
        parts += (_I16.pack(message.error), _text(message.message[:1000]))
    length = FRAME_HEAD_BYTES + sum(part_bytes(p) for p in parts)
    parts[0] = FRAME_LENGTH.pack(length) + FRAME_HEAD.pack(kind, correlation_id & 0xFFFFFFFF)
    return parts


def decode(frame: Buffer) -> tuple[Message, int]:
    """A message and its correlation id from one frame body (the bytes after frame_length).
    Raises ProtocolError on anything malformed."""
    r = _Reader(frame, 0)
    kind, correlation_id = r.take(FRAME_HEAD)
    message: Message
    if kind == FETCH_REQUEST:
        replica_id, epoch, wait_ms, max_bytes, count = r.take(_FETCH_HEAD)
        parts = []
        for _ in range(count):
            name = r.text()
            offset, last_epoch = r.take(_FETCH_PART)
            parts.append(FetchPartition(name, offset, last_epoch))
        if wait_ms < 0 or max_bytes < 0:
            raise ProtocolError("negative max_wait_ms or max_bytes")
        message = FetchRequest(replica_id, epoch, wait_ms, max_bytes, tuple(parts))
    elif kind == FETCH_RESPONSE:
        error, epoch, catalog_version, count = r.take(_FETCH_RESP_HEAD)
        resp = FetchResponse(error, epoch, catalog_version=catalog_version)
        for _ in range(count):
            name = r.text()
            perr, hw, start, end, div_epoch, div_end, nrec = r.take(_RESP_PART)
            resp.partitions.append(PartitionData(name, perr, hw, start, end, div_epoch, div_end, r.raw(nrec)))
        message = resp
    elif kind == LIST_REQUEST:
        replica_id, epoch = r.take(_I32x2)
        message = ListRequest(replica_id, epoch)
    elif kind == LIST_RESPONSE:
        error, epoch, count = r.take(_RESP_HEAD)
        lresp = ListResponse(error, epoch)
        for _ in range(count):
            name = r.text()
            config = bytes(r.blob())
            if len(config) > CONFIG_BYTES_MAX:
                raise ProtocolError(f"a log config of {len(config)} bytes")
            start, end = r.take(_LIST_PART)
            lresp.logs.append(LogInfo(name, config, start, end))
        message = lresp
    elif kind == ERROR_RESPONSE:
        (error,) = r.take(_I16)
        message = ErrorResponse(error, r.text())
    else:
        raise ProtocolError(f"unknown frame kind {kind}")
    r.done()
    return message, correlation_id


def part_bytes(part: Part) -> int:
    return part.length if isinstance(part, Region) else len(part)


def materialize(part: Part) -> Buffer:
    """A part as a buffer (a region is read from its file)."""
    if isinstance(part, Region):
        data = part.file.pread(part.length, part.position)
        if len(data) != part.length:
            raise ConnectionError(f"{part.file.path} shrank under a fetch ({len(data)} of {part.length} bytes)")
        return data
    return part


def frame_bytes(parts: Sequence[Part]) -> bytes:
    """The parts of :func:`encode` as one bytes object (for transports that need one)."""
    return b"".join(materialize(p) for p in parts)
