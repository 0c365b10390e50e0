"""Reading helpers of the inspection walks: a forward read window, whole-file reads that
turn an OSError into a problem, and batch headers and records as report data."""

from __future__ import annotations

import crc32c

from logstore import batch as rb
from logstore.errors import LogstoreError
from logstore.io import IO, File

from .reports import CODEC_NAMES, READ_CHUNK_BYTES, BatchInfo, RecordInfo, Shown, _Problems

# -- reading helpers ----------------------------------------------------------------------------


class _Window:
    """Forward reads of one file through a buffer, so a walk costs one pread per chunk."""

    def __init__(self, file: File, size: int, chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self.file = file
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.buf = b""
        self.at = 0

    def get(self, pos: int, n: int) -> memoryview:
        """Up to ``n`` bytes at ``pos`` (fewer only at the end of the file)."""
        if pos < self.at or pos + n > self.at + len(self.buf):
            self.buf = self.file.pread(min(max(n, self.chunk_bytes), self.size - pos), pos)
            self.at = pos
        start = pos - self.at
        return memoryview(self.buf)[start : start + n]


def _read_file(io: IO, path: str, problems: _Problems) -> bytes | None:
    try:
        return io.read_all(path)
    except OSError as exc:
        problems.add(path, 0, f"cannot read: {exc.strerror or exc}")
        return None


def _open_file(io: IO, path: str, problems: _Problems) -> File | None:
    """``path`` opened read-only, or None with a problem saying why not."""
    try:
        return io.open(path, readonly=True)
    except OSError as exc:
        problems.add(path, 0, f"cannot open: {exc.strerror or exc}")
        return None


def _file_size(io: IO, path: str) -> int:
    try:
        f = io.open(path, readonly=True)
    except OSError:
        return 0
    try:
        return f.size()
    finally:
        f.close()


def _batch_info(h: rb.BatchHeader, pos: int, raw: memoryview) -> BatchInfo:
    computed = crc32c.crc32c(raw[rb.CRC_COVERS_FROM :]) if len(raw) >= h.total_bytes else -1
    return BatchInfo(
        position=pos, total_bytes=h.total_bytes, base_offset=h.base_offset, last_offset=h.last_offset,
        record_count=h.record_count, leader_epoch=h.leader_epoch, magic=h.magic, crc_stored=h.crc,
        crc_computed=computed, codec=CODEC_NAMES.get(h.codec, f"unknown({h.codec})"),
        attributes=h.attributes, transactional=bool(h.attributes & rb.ATTR_TRANSACTIONAL),
        first_timestamp_ms=h.first_timestamp_ms, max_timestamp_ms=h.max_timestamp_ms,
        producer_id=h.producer_id, producer_epoch=h.producer_epoch, base_sequence=h.base_sequence,
    )


def _decode_records(raw: memoryview, h: rb.BatchHeader) -> tuple[list[RecordInfo], str | None]:
    """The batch's records, and why decoding stopped early (None when it did not)."""
    out: list[RecordInfo] = []
    if h.attributes & rb.ATTR_OPAQUE:
        return out, None  # records in the writer's own framing: not the engine's to decode
    try:
        for i, r in enumerate(rb.iter_records(raw)):
            if r.offset != h.base_offset + i:
                return out, f"record {i} has offset delta {r.offset - h.base_offset}, not {i}"
            if r.timestamp_ms > h.max_timestamp_ms:
                return out, f"record {i} timestamp {r.timestamp_ms} above the batch max {h.max_timestamp_ms}"
            out.append(RecordInfo(
                r.offset, r.timestamp_ms, None if r.key is None else Shown.of(r.key),
                None if r.value is None else Shown.of(r.value), [(k, Shown.of(v)) for k, v in r.headers],
            ))
    except LogstoreError as exc:
        return out, f"records do not decode: {exc}"
    return out, None
