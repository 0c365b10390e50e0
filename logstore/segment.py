"""A segment: one ``<20-digit base offset>.log`` file of back-to-back record batches, plus its
sparse indexes (see ``index.py``). The ``.log`` file has no header of its own: batch after
batch, each self-describing and CRC-checked (``batch.py``), so a scan from byte 0 rebuilds
everything else.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from logstore import batch as rb
from logstore import index as ix
from logstore.batch import BatchHeader
from logstore.errors import InvalidBatchError
from logstore.io import IO, Buffer, File

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_SUFFIX = ".timeindex"
SCAN_CHUNK_BYTES = 8 * 1024 * 1024


def segment_stem(base_offset: int) -> str:
    return f"{base_offset:020d}"


def parse_segment_name(name: str) -> int | None:
    stem, dot, suffix = name.partition(".")
    if dot and "." + suffix == LOG_SUFFIX and len(stem) == 20 and stem.isdigit():
        return int(stem)
    return None


@dataclass
class ScanStop:
    """Where and why a scan stopped before the end of the range."""

    position: int
    reason: str


class Scan:
    """Walk the batches of a file range, optionally checking CRCs and offset continuity.

    Iterating yields ``(position, header)`` for good batches; afterwards ``stop`` says why it
    ended early (None when it reached ``end`` cleanly)."""

    def __init__(
        self, file: File, start: int, end: int, *, expected_offset: int | None = None,
        check_crc: bool = True, chunk_bytes: int = SCAN_CHUNK_BYTES,
    ) -> None:
        self.file = file
        self.start = start
        self.end = end
        self.expected_offset = expected_offset
        self.check_crc = check_crc
        self.chunk_bytes = chunk_bytes
        self.stop: ScanStop | None = None
        self.position = start  # the end of the last good batch
        self.last_epoch = -1

    def __iter__(self) -> Iterator[tuple[int, BatchHeader]]:
        buf = b""
        buf_at = self.start
        pos = self.start
        while pos < self.end:
            need = min(rb.HEADER_BYTES, self.end - pos)
            if pos + need > buf_at + len(buf):
                buf, buf_at = self.file.pread(min(self.chunk_bytes, self.end - pos), pos), pos
            if self.end - pos < rb.HEADER_BYTES or len(buf) - (pos - buf_at) < rb.HEADER_BYTES:
                self.stop = ScanStop(pos, f"{self.end - pos} trailing bytes are shorter than a batch header")
                return
            h = rb.parse_header(buf, pos - buf_at)
            why = rb.check_header(h, self.end - pos)
            if why is None and self.expected_offset is not None and h.base_offset != self.expected_offset:
                why = f"base offset {h.base_offset} where {self.expected_offset} was expected"
            if why is None and h.leader_epoch < self.last_epoch:
                why = f"leader epoch {h.leader_epoch} below the previous {self.last_epoch}"
            if why is None and self.check_crc:
                if pos + h.total_bytes > buf_at + len(buf):
                    size = min(max(self.chunk_bytes, h.total_bytes), self.end - pos)
                    buf, buf_at = self.file.pread(size, pos), pos
                if not rb.crc_ok(buf, pos - buf_at, h):
                    why = "CRC32C mismatch"
            if why is not None:
                self.stop = ScanStop(pos, why)
                return
            yield pos, h
            self.last_epoch = h.leader_epoch
            self.expected_offset = h.next_offset
            pos += h.total_bytes
            self.position = pos


class Segment:
    """One segment's files and the in-memory facts about them."""

    def __init__(
        self, io: IO, directory: str, base_offset: int, file: File, index: ix.SparseIndex,
        created_ms: int, index_interval_bytes: int,
    ) -> None:
        self.io = io
        self.directory = directory
        self.base_offset = base_offset
        self.file = file
        self.index = index
        self.created_ms = created_ms
        self.index_interval_bytes = index_interval_bytes
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp_ms = -1
        self.bytes_since_index = index_interval_bytes  # index the first batch
        self.dirty = False  # written since the last fdatasync
        self.index_rebuilds = 0  # lying index entries found by reads

    @property
    def path(self) -> str:
        return posixpath.join(self.directory, segment_stem(self.base_offset) + LOG_SUFFIX)

    def sibling(self, suffix: str) -> str:
        return posixpath.join(self.directory, segment_stem(self.base_offset) + suffix)

    @classmethod
    def create(cls, io: IO, directory: str, base_offset: int, now_ms: int, index_interval_bytes: int) -> Segment:
        stem = posixpath.join(directory, segment_stem(base_offset))
        file = io.open(stem + LOG_SUFFIX, create=True)
        file.truncate(0)
        index = ix.SparseIndex(
            offset_file=io.open(stem + INDEX_SUFFIX, create=True),
            time_file=io.open(stem + TIME_SUFFIX, create=True),
        )
        index.reset()
        return cls(io, directory, base_offset, file, index, now_ms, index_interval_bytes)

    @classmethod
    def open(cls, io: IO, directory: str, base_offset: int, now_ms: int, index_interval_bytes: int) -> tuple[Segment, str | None]:
        """Open an existing segment; the second value says why its index needs a rebuild."""
        stem = posixpath.join(directory, segment_stem(base_offset))
        file = io.open(stem + LOG_SUFFIX)
        size = file.size()
        index, problem = ix.load(io, stem + INDEX_SUFFIX, stem + TIME_SUFFIX, size)
        seg = cls(io, directory, base_offset, file, index, now_ms, index_interval_bytes)
        seg.size = size
        if problem is None and index.positions:
            problem = seg._check_entry(len(index.positions) - 1)
        return seg, problem

    def _check_entry(self, i: int) -> str | None:
        pos = self.index.positions[i]
        raw = self.file.pread(rb.HEADER_BYTES, pos)
        if len(raw) < rb.HEADER_BYTES or rb.parse_header(raw).base_offset != self.base_offset + self.index.offsets[i]:
            return f"index entry {i} does not point at the batch it names"
        return None

    # -- writing ------------------------------------------------------------------------------

    def append(self, parts: Sequence[Buffer], total: int, base_offset: int, next_offset: int, max_ts: int) -> int:
        """Write one stamped batch (given as buffers) at the end; returns its position."""
        pos = self.size
        self.file.pwritev(parts, pos)
        self.size = pos + total
        self.dirty = True
        self._note_batch(pos, total, base_offset, next_offset, max_ts)
        return pos

    def append_many(self, parts: Sequence[Buffer], batches: Sequence[tuple[int, int, int, int]]) -> None:
        """Write several stamped batches with one call; ``batches`` holds (total bytes, base
        offset, next offset, max timestamp) of each, in order."""
        pos = self.size
        self.file.pwritev(parts, pos)
        for total, base, nxt, max_ts in batches:
            self._note_batch(pos, total, base, nxt, max_ts)
            pos += total
        self.size = pos
        self.dirty = True

    def _note_batch(self, pos: int, total: int, base_offset: int, next_offset: int, max_ts: int) -> None:
        self.next_offset = next_offset
        if max_ts > self.max_timestamp_ms:
            self.max_timestamp_ms = max_ts
        if self.bytes_since_index >= self.index_interval_bytes:
            self.index.add(base_offset - self.base_offset, pos, self.max_timestamp_ms)
            self.bytes_since_index = 0
        self.bytes_since_index += total

    def rebuild_from(self, scan: Scan) -> None:
        """Consume a scan of this segment from byte 0, rebuilding indexes and facts from data."""
        self.index.reset()
        self.bytes_since_index = self.index_interval_bytes
        self.max_timestamp_ms = -1
        self.next_offset = self.base_offset
        self.dirty = True  # the rebuilt index files must reach the disk with the next sync
        for pos, h in scan:
            self._note_batch(pos, h.total_bytes, h.base_offset, h.next_offset, h.max_timestamp_ms)

    def truncate(self, position: int) -> None:
        """Cut the file at ``position`` (a batch boundary) and forget what lay beyond."""
        self.file.truncate(position)
        self.size = position
        self.dirty = True
        # Rare (followers, torn tails): rebuild the facts (max timestamp, indexes) from the data.
        self.rebuild_from(Scan(self.file, 0, position, expected_offset=self.base_offset, check_crc=False))

    def sync(self) -> None:
        self.file.fdatasync()
        # Recovery trusts the indexes of segments below the recovery point (it checks only
        # their last offset entry): they must be as durable as the data they describe.
        self.index.sync()
        self.dirty = False

    def close(self) -> None:
        self.file.close()
        self.index.close()

    def remove_files(self) -> None:
        self.close()
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX):
            path = self.sibling(suffix)
            if self.io.exists(path):
                self.io.unlink(path)

    # -- reading --------------------------------------------------------------------------------

    def header_at(self, pos: int) -> BatchHeader:
        raw = self.file.pread(rb.HEADER_BYTES, pos)
        if len(raw) < rb.HEADER_BYTES:
            raise InvalidBatchError(f"short batch header at byte {pos} of {self.path}")
        return rb.parse_header(raw)

    def walk(self, pos: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
        """Headers from ``pos`` to ``end`` without CRC checks (the data was validated on write
        or by recovery)."""
        while pos < end:
            h = self.header_at(pos)
            if rb.check_header(h, self.size - pos) is not None:
                raise InvalidBatchError(f"bad batch header at byte {pos} of {self.path}")
            yield pos, h
            pos += h.total_bytes

    def locate(self, offset: int, end: int) -> tuple[int, BatchHeader] | None:
        """The batch containing ``offset`` (or the first after it) below position ``end``."""
        rel, pos = self.index.floor(offset - self.base_offset)
        if pos and self.header_at(pos).base_offset != self.base_offset + rel:
            # An index entry that lies (the data wins): rebuild the index from the data.
            self.index_rebuilds += 1
            self.rebuild_from(Scan(self.file, 0, self.size, expected_offset=self.base_offset, check_crc=False))
            rel, pos = self.index.floor(offset - self.base_offset)
        for p, h in self.walk(pos, end):
            if h.next_offset > offset:
                return p, h
        return None

    def region_end(self, start: int, max_bytes: int, end: int) -> tuple[int, int]:
        """The end position and next offset of whole batches from ``start`` totalling at most
        ``max_bytes`` (always at least one batch), not beyond ``end``."""
        _rel, pos = self.index.floor_position(start + max_bytes)
        if pos <= start or pos >= end:
            pos = start
        next_offset = -1
        for p, h in self.walk(pos, end):
            if p > start and p + h.total_bytes - start > max_bytes:
                return p, h.base_offset
            next_offset = h.next_offset
            pos = p + h.total_bytes
        return pos, next_offset

    def read_bytes(self, start: int, stop: int) -> bytes:
        return self.file.pread(stop - start, start)
