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
    next_offset: int = 0  # where the next pull starts
    examined: int = 0  # messages looked at (matched or not)

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


def _walk_sizes(payload: memoryview, n: int, pos: int = 0) -> int:
    """The byte position after ``n`` messages from ``pos``."""
    for _ in range(n):
        (size,) = STORE_SIZE.unpack_from(payload, pos)
        pos += size
    return pos


def _walk_budget(payload: memoryview, pos: int, n: int, budget: int, first: bool) -> tuple[int, int]:
    """(messages, end position) of at most ``n`` messages from ``pos`` within ``budget``
    bytes; the first message of a response is taken whatever its size."""
    start = pos
    taken = 0
    while taken < n:
        (size,) = STORE_SIZE.unpack_from(payload, pos)
        if pos + size - start > budget and not (first and taken == 0):
            break
        pos += size
        taken += 1
    return taken, pos


def read_messages(log: Log, offset: int, max_count: int, max_bytes: int, tag_filter: TagFilter,
                  end_offset: int | None = None) -> PullSlice:
    """Messages from ``offset`` (which must be within [log start, committed end)): at most
    ``max_count`` matching messages, about ``max_bytes`` (at least one message), none at or
    past ``end_offset`` (default: the committed end; a broker group's readable end is lower)."""
    if end_offset is not None:
        max_count = min(max_count, end_offset - offset)  # one message per queue offset
    result = log.read(offset, max_bytes)
    data = memoryview(result.data())
    out = PullSlice(next_offset=offset)
    pos = 0
    nbytes = 0
    while pos < len(data) and out.count < max_count:
        h = parse_header(data, pos)
        payload = data[pos + HEADER_BYTES : pos + h.total_bytes]
        pos += h.total_bytes
        skip = max(0, offset - h.base_offset)
        if skip >= h.record_count:
            continue
        start = _walk_sizes(payload, skip) if skip else 0
        if tag_filter.matches_all:
            want = min(h.record_count - skip, max_count - out.count)
            if want == h.record_count - skip and nbytes + len(payload) - start <= max_bytes:
                take, end = want, len(payload)  # the whole (rest of the) batch: no walk
            else:
                take, end = _walk_budget(payload, start, want, max_bytes - nbytes, first=not nbytes)
            if take == 0:
                break
            out.parts.append(payload[start:end])
            out.count += take
            out.examined += take
            nbytes += end - start
            out.next_offset = h.base_offset + skip + take
            if take < want:
                break
            continue
        p = start
        for i in range(skip, h.record_count):
            if out.count >= max_count or (end_offset is not None and h.base_offset + i >= end_offset):
                return out
            (size,) = STORE_SIZE.unpack_from(payload, p)
            if out.count and nbytes + size > max_bytes:
                return out
            props = decode_properties(stored_properties(payload, p))
            if tag_filter.match_tags(props.get(PROPERTY_TAGS)):
                out.parts.append(payload[p : p + size])
                out.count += 1
                nbytes += size
            out.examined += 1
            p += size
            out.next_offset = h.base_offset + i + 1
        if nbytes >= max_bytes:
            break
    return out


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
