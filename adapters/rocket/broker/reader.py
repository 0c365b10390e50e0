"""Reading messages back out of queue logs: pull bodies, single messages, tag filters.

A queue log holds opaque batches whose records section is a run of RocketMQ stored messages
(one batch per SEND, one per SEND_BATCH). With a ``*`` subscription a pull answers with the
records sections sliced out of the batches: O(1) Python work per batch, plus a walk over the
message sizes of a batch that starts before the requested offset or would pass ``max_count``.
A tag filter parses each message's properties.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.rocket.message import PROPERTY_TAGS, STORE_SIZE, java_string_hash, stored_properties
from adapters.rocket.remoting.command import decode_properties
from logstore import Log
from logstore.batch import HEADER_BYTES, parse_header

from .read_cache import Chunk, ReadCache


@dataclass(frozen=True)
class TagFilter:
    """A TAG subscription expression: ``*`` (everything) or ``a || b``."""

    tags: frozenset[str] = frozenset()  # empty = everything
    codes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, expression: str | None) -> TagFilter:
        if expression is None or expression.strip() in ("", "*"):
            return cls()
        tags = frozenset(t.strip() for t in expression.split("||") if t.strip())
        if not tags:
            return cls()
        return cls(tags, frozenset(java_string_hash(t) for t in tags))

    @property
    def matches_all(self) -> bool:
        return not self.tags

    def match_tags(self, tags: str | None) -> bool:
        """RocketMQ's broker check: by the tag's hash code (the client re-checks the string)."""
        return self.matches_all or (tags is not None and java_string_hash(tags) in self.codes)


@dataclass
class PullSlice:
    parts: list[memoryview] = field(default_factory=list)
    count: int = 0  # messages in parts
    nbytes: int = 0  # bytes in parts
    next_offset: int = 0  # where the next pull starts
    examined: int = 0  # messages looked at (matched or not)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


def _walk_sizes(data: memoryview, n: int, pos: int) -> int:
    """The byte position after ``n`` messages from ``pos``."""
    for _ in range(n):
        (size,) = STORE_SIZE.unpack_from(data, pos)
        pos += size
    return pos


def _walk_budget(data: memoryview, pos: int, n: int, budget: int, first: bool) -> tuple[int, int]:
    """(messages, end position) of at most ``n`` messages from ``pos`` within ``budget``
    bytes; the first message of a response is taken whatever its size."""
    start = pos
    taken = 0
    while taken < n:
        (size,) = STORE_SIZE.unpack_from(data, pos)
        if pos + size - start > budget and not (first and taken == 0):
            break
        pos += size
        taken += 1
    return taken, pos


def _read_chunk(log: Log, offset: int, read_bytes: int) -> Chunk | None:
    """A fresh read from ``offset``, its cursor on that message (None at the committed end)."""
    result = log.read(offset, read_bytes)
    if not result.regions:
        return None
    data = memoryview(result.data())
    h = parse_header(data, 0)
    skip = offset - h.base_offset
    if skip < 0:  # the log starts above ``offset``: begin at its first batch
        return Chunk(data, h.base_offset, 0, HEADER_BYTES)
    return Chunk(data, offset, 0, _walk_sizes(data, skip, HEADER_BYTES))


def read_messages(log: Log, offset: int, max_count: int, max_bytes: int, tag_filter: TagFilter,
                  cache: ReadCache | None = None, end_offset: int | None = None) -> PullSlice:
    """Messages from ``offset`` (which must be within [log start, committed end)): at most
    ``max_count`` matching messages, about ``max_bytes`` (at least one message), looking at
    about ``max_bytes`` of stored messages. With a ``cache``, a read continues where the last
    one of this log stopped at ``offset`` and leaves its cursor there for the next. Nothing at or
    past ``end_offset`` (default: the committed end; a broker group's readable end is lower)."""
    end = log.committed_offset if end_offset is None else min(end_offset, log.committed_offset)
    out = PullSlice(next_offset=offset)
    scanned = 0
    while out.count < max_count and scanned < max_bytes and out.nbytes < max_bytes:
        chunk = cache.take(log, out.next_offset) if cache is not None else None
        if out.next_offset >= end:
            if chunk is not None and cache is not None:
                cache.put(log, chunk)
            break
        if chunk is None:
            chunk = _read_chunk(log, out.next_offset, max_bytes)
            if chunk is None:
                break
        scanned += _take(chunk, out, max_count, max_bytes, tag_filter, end, max_bytes - scanned)
        if not chunk.exhausted:
            if cache is not None:
                cache.put(log, chunk)
            break
    return out


def _take(chunk: Chunk, out: PullSlice, max_count: int, max_bytes: int, tag_filter: TagFilter, end: int,
          scan_left: int) -> int:
    """Matching messages from the chunk's cursor into ``out`` until ``max_count``, ``max_bytes``,
    ``scan_left`` bytes looked at, or the chunk's end; moves the cursor past what it looked at.
    Returns the bytes looked at. Every limit is checked message by message, so where a chunk
    happens to end (a cached cursor's chunk or a fresh read) never changes the answer."""
    data = chunk.data
    scanned = 0
    while not chunk.exhausted and out.count < max_count and out.nbytes < max_bytes:
        h = parse_header(data, chunk.batch_pos)
        batch_end = chunk.batch_pos + h.total_bytes
        batch_next = h.base_offset + h.record_count  # the offset after this batch
        available = min(batch_next, end) - chunk.next_offset
        if available <= 0:
            break
        start = chunk.msg_pos
        if tag_filter.matches_all:
            want = min(available, max_count - out.count)
            if want == batch_next - chunk.next_offset and out.nbytes + batch_end - start <= max_bytes:
                take, end_pos = want, batch_end  # the whole (rest of the) batch: no walk
            else:
                take, end_pos = _walk_budget(data, start, want, max_bytes - out.nbytes, first=not out.nbytes)
            if take == 0:
                break
            out.parts.append(data[start:end_pos])
            out.count += take
            out.examined += take
            out.nbytes += end_pos - start
            stop = take < want
        else:
            take, end_pos, stop = _take_filtered(data, start, available, out, max_count, max_bytes, tag_filter,
                                                 scan_left - scanned)
        scanned += end_pos - start
        chunk.next_offset += take
        out.next_offset = chunk.next_offset
        if chunk.next_offset == batch_next:
            chunk.batch_pos = batch_end
            chunk.msg_pos = batch_end + HEADER_BYTES
        else:
            chunk.msg_pos = end_pos
        if stop:
            break
    return scanned


def _take_filtered(data: memoryview, pos: int, n: int, out: PullSlice, max_count: int, max_bytes: int,
                   tag_filter: TagFilter, scan_left: int) -> tuple[int, int, bool]:
    """Up to ``n`` messages from ``pos``, the matching ones into ``out``, looking at no more
    once ``scan_left`` bytes were looked at: (messages looked at, position after them, whether
    the response is done)."""
    looked = 0
    start = pos
    while looked < n:
        if out.count >= max_count or pos - start >= scan_left:
            return looked, pos, True
        (size,) = STORE_SIZE.unpack_from(data, pos)
        if out.count and out.nbytes + size > max_bytes:
            return looked, pos, True
        props = decode_properties(stored_properties(data, pos))
        if tag_filter.match_tags(props.get(PROPERTY_TAGS)):
            out.parts.append(data[pos : pos + size])
            out.count += 1
            out.nbytes += size
        out.examined += 1
        looked += 1
        pos += size
    return looked, pos, out.nbytes >= max_bytes


def read_one(log: Log, offset: int) -> bytes | None:
    """The stored bytes of the message at ``offset``, or None if it is not readable."""
    if not log.log_start_offset <= offset < log.committed_offset:
        return None
    got = read_messages(log, offset, 1, 1, TagFilter())
    return got.body if got.count else None


def store_timestamp_at(log: Log, offset: int) -> int:
    """The store timestamp (ms) of the batch holding ``offset`` (0 if none)."""
    if not log.log_start_offset <= offset < log.committed_offset:
        return 0
    data = log.read(offset, 1).data()
    return parse_header(data).max_timestamp_ms if data else 0


def offset_for_store_timestamp(log: Log, timestamp_ms: int) -> int:
    """The first offset whose message was stored at or after ``timestamp_ms`` (the committed
    end if none). Every message of a batch has the batch's store timestamp and store times grow
    with offsets, so a binary search over batch headers finds it in O(log n) reads.
    (``Log.offset_for_timestamp`` decodes records, which opaque batches do not allow.)"""
    lo, hi = log.log_start_offset, log.committed_offset
    while lo < hi:
        mid = (lo + hi) // 2
        data = log.read(mid, 1).data()
        h = parse_header(data)
        if h.max_timestamp_ms >= timestamp_ms:
            hi = max(lo, h.base_offset)
        else:
            lo = h.next_offset
    return lo
