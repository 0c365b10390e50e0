"""Read-only inspection of a store: describe its files (for ``logstore-dump``) and verify it
(for ``logstore-verify``). The tools in ``tools/`` are thin over these functions.

Everything here goes through an :class:`~logstore.io.IO`, so it works on real and simulated
disks, and nothing here writes, creates, renames or deletes a file or takes the store lock:
verification may run beside a broker that has the store open (the active segment's tail and
the last journal file may then show a write in flight as a torn tail).

What the checks rest on, file by file (each module documents its layout):

- ``.log`` (``batch.py``, ``segment.py``): every batch's structure (``check_header``) and
  CRC32C; base offsets dense from the segment's name on, and across segments (a segment's base
  is the previous one's end); leader epochs never go down; records decode (unless ``quick``).
  A header that fails ``check_header`` ends the walk of that file (its length can no longer
  be trusted to find the next batch); a CRC mismatch does not (the length passed the check).
- ``.index`` / ``.timeindex`` (``index.py``): whole entries; both columns in order; every
  offset entry names a batch start whose base offset it gives; every time entry names a batch
  and carries the greatest timestamp of the segment up to and including that batch.
- ``checkpoint`` (``checkpoint.py``): decodes (header, CRC, JSON); no log's recovery point or
  start lies beyond the log's end; the first segment does not start above the log start.
- ``config.json``: parses as a :class:`~logstore.config.LogConfig`.
- ``journal/*.wal`` (``journal.py``): every entry's CRC and its batch's structure and CRC. A
  bad entry is reported with its position, also in the last file (there it is the torn tail
  of a round that was never acknowledged; recovery cuts it).

Every finding is a :class:`Problem`: file, byte position in that file, short reason.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import crc32c

from logstore import batch as rb
from logstore import checkpoint as ckpt
from logstore import journal as jn
from logstore.config import LogConfig
from logstore.errors import CorruptLogError, LogstoreError
from logstore.index import OFFSET_ENTRY, TIME_ENTRY
from logstore.io import IO, File
from logstore.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_SUFFIX, parse_segment_name

#: Called with (bytes done, bytes total) as verification walks segment and journal files.
ProgressFn = Callable[[int, int], None]

CONFIG_NAME = "config.json"  # store.CONFIG_NAME; not imported: store pulls in asyncio machinery
CLEAN_MARKER = ".clean_shutdown"
LOGS_DIRNAME = "logs"
READ_CHUNK_BYTES = 4 * 1024 * 1024
PROGRESS_STEP_BYTES = 1024 * 1024
# Past this many problems in one file the rest are summarised: a file of garbage would
# otherwise bury the first finding, the one that matters.
PROBLEMS_PER_FILE_MAX = 50

KIND_SEGMENT = "segment"
KIND_OFFSET_INDEX = "offset-index"
KIND_TIME_INDEX = "time-index"
KIND_JOURNAL = "journal"
KIND_CHECKPOINT = "checkpoint"
KIND_LOG = "log"
KIND_STORE = "store"

CODEC_NAMES = {rb.CODEC_NONE: "none", rb.CODEC_ZSTD: "zstd"}


@dataclass(frozen=True)
class Problem:
    path: str
    position: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: byte {self.position}: {self.reason}"


class _Problems:
    """A per-file problem list with the cap described at PROBLEMS_PER_FILE_MAX."""

    def __init__(self, sink: list[Problem]) -> None:
        self.sink = sink
        self.counts: dict[str, int] = {}

    def add(self, path: str, position: int, reason: str) -> None:
        n = self.counts.get(path, 0) + 1
        self.counts[path] = n
        if n <= PROBLEMS_PER_FILE_MAX:
            self.sink.append(Problem(path, position, reason))
        elif n == PROBLEMS_PER_FILE_MAX + 1:
            self.sink.append(Problem(path, position, "more problems in this file are not listed"))


# -- reports (plain data; ``to_dict`` gives the --json form) ----------------------------------


@dataclass
class Shown:
    """Bytes shown to a person: UTF-8 text when printable, else hex."""

    text: str
    format: str  # "text" | "hex"

    @classmethod
    def of(cls, data: bytes) -> Shown:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls(data.hex(), "hex")
        if all(c.isprintable() or c in "\t\n\r" for c in text):
            return cls(text, "text")
        return cls(data.hex(), "hex")


@dataclass
class RecordInfo:
    offset: int
    timestamp_ms: int
    key: Shown | None
    value: Shown | None
    headers: list[tuple[str, Shown]]


@dataclass
class BatchInfo:
    position: int
    total_bytes: int
    base_offset: int
    last_offset: int
    record_count: int
    leader_epoch: int
    magic: int
    crc_stored: int
    crc_computed: int
    codec: str
    attributes: int
    transactional: bool
    first_timestamp_ms: int
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[RecordInfo] | None = None

    @property
    def crc_ok(self) -> bool:
        return self.crc_stored == self.crc_computed


@dataclass
class OffsetEntry:
    position: int  # in the index file
    relative_offset: int
    offset: int
    log_position: int


@dataclass
class TimeEntry:
    position: int  # in the index file
    timestamp_ms: int
    relative_offset: int
    offset: int


@dataclass
class IndexReport:
    path: str
    kind: str  # KIND_OFFSET_INDEX | KIND_TIME_INDEX
    size_bytes: int
    offset_entries: list[OffsetEntry] = field(default_factory=list)
    time_entries: list[TimeEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        return list(self.problems)


@dataclass
class SegmentReport:
    path: str
    base_offset: int
    size_bytes: int
    next_offset: int = 0  # one past the last batch walked
    valid_bytes: int = 0  # where the walk of well-framed batches ended
    batch_count: int = 0
    record_count: int = 0
    max_timestamp_ms: int = -1
    last_epoch: int = -1
    batches: list[BatchInfo] = field(default_factory=list)  # empty unless kept
    offset_index: IndexReport | None = None
    time_index: IndexReport | None = None
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for ix in (self.offset_index, self.time_index):
            if ix is not None:
                out += ix.problems
        return out


@dataclass
class JournalEntryInfo:
    position: int
    log: str
    entry_bytes: int
    batch: BatchInfo | None


@dataclass
class JournalReport:
    path: str
    sequence: int | None
    size_bytes: int
    entries: list[JournalEntryInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        return list(self.problems)


@dataclass
class CheckpointReport:
    path: str
    journal_start: int | None = None
    logs: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        return list(self.problems)


@dataclass
class LogReport:
    name: str
    path: str
    config: dict[str, Any] | None = None
    start_offset: int = 0  # base of the first segment
    end_offset: int = 0
    segments: list[SegmentReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for seg in self.segments:
            out += seg.all_problems()
        return out


@dataclass
class StoreReport:
    path: str
    clean_shutdown: bool = False
    checkpoint: CheckpointReport | None = None
    logs: list[LogReport] = field(default_factory=list)
    journals: list[JournalReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        if self.checkpoint is not None:
            out += self.checkpoint.problems
        for log in self.logs:
            out += log.all_problems()
        for j in self.journals:
            out += j.problems
        return out


Report = SegmentReport | IndexReport | JournalReport | CheckpointReport | LogReport | StoreReport


@dataclass
class VerifyResult:
    path: str
    clean_shutdown: bool = False
    logs: int = 0
    segments: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    journal_files: int = 0
    journal_entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# -- what a path is ---------------------------------------------------------------------------


def is_store(io: IO, path: str) -> bool:
    return io.is_dir(posixpath.join(path, LOGS_DIRNAME))


def path_kind(io: IO, path: str) -> str | None:
    """Which kind of thing ``path`` is (a KIND_* name), or None when it is none of them."""
    if io.is_dir(path):
        if is_store(io, path):
            return KIND_STORE
        names = io.listdir(path)
        if CONFIG_NAME in names or any(parse_segment_name(n) is not None for n in names):
            return KIND_LOG
        return None
    if not io.exists(path):
        return None
    name = posixpath.basename(path)
    for suffix, kind in (
        (LOG_SUFFIX, KIND_SEGMENT), (INDEX_SUFFIX, KIND_OFFSET_INDEX),
        (TIME_SUFFIX, KIND_TIME_INDEX), (jn.SUFFIX, KIND_JOURNAL),
    ):
        if name.endswith(suffix):
            return kind
    return KIND_CHECKPOINT if name == ckpt.NAME else None


def describe(io: IO, path: str, *, records: bool = False, indexes: bool = False) -> Report:
    """Describe whatever ``path`` is (see :func:`path_kind`); ValueError if it is nothing."""
    kind = path_kind(io, path)
    if kind == KIND_SEGMENT:
        return describe_segment(io, path, records=records, indexes=indexes)
    if kind in (KIND_OFFSET_INDEX, KIND_TIME_INDEX):
        return describe_index(io, path)
    if kind == KIND_JOURNAL:
        return describe_journal(io, path, records=records)
    if kind == KIND_CHECKPOINT:
        return describe_checkpoint(io, path)
    if kind == KIND_LOG:
        return describe_log(io, path, records=records, indexes=indexes)
    if kind == KIND_STORE:
        return describe_store(io, path, records=records, indexes=indexes)
    raise ValueError(f"{path} is not a store, log directory, segment, index, journal or checkpoint")


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


# -- indexes ------------------------------------------------------------------------------------


def _load_index(io: IO, path: str, kind: str, base_offset: int, problems: _Problems) -> IndexReport | None:
    """Parse one index file on its own: whole entries, columns in order."""
    if not io.exists(path):
        problems.add(path, 0, "index file is missing (recovery would rebuild it)")
        return None
    raw = _read_file(io, path, problems)
    if raw is None:
        return None
    report = IndexReport(path, kind, len(raw))
    entry = OFFSET_ENTRY if kind == KIND_OFFSET_INDEX else TIME_ENTRY
    whole = len(raw) - len(raw) % entry.size
    if whole != len(raw):
        problems.add(path, whole, f"{len(raw) - whole} trailing bytes are not a whole {entry.size}-byte entry")
    for i, fields_ in enumerate(entry.iter_unpack(raw[:whole])):
        at = i * entry.size
        if kind == KIND_OFFSET_INDEX:
            rel, log_pos = fields_
            prev_o = report.offset_entries[-1] if report.offset_entries else None
            if rel < 0 or log_pos < 0:
                problems.add(path, at, f"negative entry (relative offset {rel}, position {log_pos})")
            elif prev_o is not None and (rel <= prev_o.relative_offset or log_pos <= prev_o.log_position):
                problems.add(path, at, f"entry {i} ({rel}, {log_pos}) does not follow ({prev_o.relative_offset}, {prev_o.log_position})")
            report.offset_entries.append(OffsetEntry(at, rel, base_offset + rel, log_pos))
        else:
            ts, rel = fields_
            prev_t = report.time_entries[-1] if report.time_entries else None
            if rel < 0:
                problems.add(path, at, f"negative relative offset {rel}")
            elif prev_t is not None and (ts <= prev_t.timestamp_ms or rel <= prev_t.relative_offset):
                problems.add(path, at, f"entry {i} ({ts}, {rel}) does not follow ({prev_t.timestamp_ms}, {prev_t.relative_offset})")
            report.time_entries.append(TimeEntry(at, ts, rel, base_offset + rel))
    return report


class _IndexCheck:
    """Checks index entries against the batches of a segment walk, batch by batch, holding
    only the (sparse) entries in memory."""

    def __init__(self, base_offset: int, offset_index: IndexReport | None, time_index: IndexReport | None) -> None:
        self.base_offset = base_offset
        self.offset_index = offset_index
        self.time_index = time_index
        self.by_position = {e.log_position: e for e in offset_index.offset_entries} if offset_index else {}
        self.by_relative = {e.relative_offset: e for e in time_index.time_entries} if time_index else {}

    def batch(self, pos: int, h: rb.BatchHeader, max_ts_so_far: int, problems: _Problems) -> None:
        oe = self.by_position.pop(pos, None)
        if oe is not None and self.offset_index is not None and oe.offset != h.base_offset:
            problems.add(self.offset_index.path, oe.position,
                         f"entry names offset {oe.offset} but the batch at byte {pos} starts at offset {h.base_offset}")
        te = self.by_relative.pop(h.base_offset - self.base_offset, None)
        if te is not None and self.time_index is not None and te.timestamp_ms != max_ts_so_far:
            problems.add(self.time_index.path, te.position,
                         f"entry for offset {te.offset} has timestamp {te.timestamp_ms}, the segment's max up to that batch is {max_ts_so_far}")

    def finish(self, problems: _Problems) -> None:
        if self.offset_index is not None:
            for e in sorted(self.by_position.values(), key=lambda e: e.position):
                problems.add(self.offset_index.path, e.position,
                             f"entry for offset {e.offset} points at byte {e.log_position}, which starts no valid batch")
        if self.time_index is not None:
            for t in sorted(self.by_relative.values(), key=lambda t: t.position):
                problems.add(self.time_index.path, t.position, f"entry names offset {t.offset}, which starts no valid batch")


# -- segments -----------------------------------------------------------------------------------


@dataclass
class _Walk:
    """What carries over from one segment to the next: continuity and counters."""

    expected_offset: int | None = None
    last_epoch: int = -1
    bytes_done: int = 0
    bytes_total: int = 0
    progress: ProgressFn | None = None


def _check_segment(
    io: IO, path: str, walk: _Walk, problems: _Problems, *, keep_batches: bool, records: bool,
    check_records: bool, indexes: bool,
) -> SegmentReport:
    name_base = parse_segment_name(posixpath.basename(path))
    report = SegmentReport(path, name_base if name_base is not None else -1, 0)
    stem = path[: -len(LOG_SUFFIX)] if path.endswith(LOG_SUFFIX) else path
    index_check: _IndexCheck | None = None
    if indexes and name_base is not None:
        report.offset_index = _load_index(io, stem + INDEX_SUFFIX, KIND_OFFSET_INDEX, name_base, problems)
        report.time_index = _load_index(io, stem + TIME_SUFFIX, KIND_TIME_INDEX, name_base, problems)
        index_check = _IndexCheck(name_base, report.offset_index, report.time_index)
    if name_base is not None and walk.expected_offset is not None and name_base != walk.expected_offset:
        problems.add(path, 0, f"segment starts at offset {name_base} but the previous one ends at {walk.expected_offset}")
    if name_base is not None:
        walk.expected_offset = name_base  # the file name is what recovery trusts
    try:
        file = io.open(path, readonly=True)
    except OSError as exc:
        problems.add(path, 0, f"cannot open: {exc.strerror or exc}")
        return report
    try:
        report.size_bytes = file.size()
        _walk_batches(file, report, walk, problems, index_check, keep_batches=keep_batches,
                      records=records, check_records=check_records)
    except OSError as exc:
        problems.add(path, report.valid_bytes, f"read failed: {exc.strerror or exc}")
    finally:
        file.close()
    if index_check is not None:
        index_check.finish(problems)
    if report.batch_count == 0:
        report.next_offset = walk.expected_offset if walk.expected_offset is not None else 0
    return report


def _walk_batches(
    file: File, report: SegmentReport, walk: _Walk, problems: _Problems, index_check: _IndexCheck | None, *,
    keep_batches: bool, records: bool, check_records: bool,
) -> None:
    path, size = report.path, report.size_bytes
    window = _Window(file, size)
    pos = 0
    reported = 0
    while pos < size:
        head = window.get(pos, rb.HEADER_BYTES)
        if len(head) < rb.HEADER_BYTES:
            problems.add(path, pos, f"{size - pos} trailing bytes are shorter than a batch header (torn tail?)")
            break
        h = rb.parse_header(head)
        why = rb.check_header(h, size - pos)
        if why is not None:
            problems.add(path, pos, f"bad batch header: {why}; the rest of the file cannot be framed")
            break
        raw = window.get(pos, h.total_bytes)
        info = _batch_info(h, pos, raw)
        if not info.crc_ok:
            problems.add(path, pos, f"CRC32C mismatch: stored {info.crc_stored:08x}, computed {info.crc_computed:08x}")
        if walk.expected_offset is not None and h.base_offset != walk.expected_offset:
            problems.add(path, pos, f"base offset {h.base_offset} where {walk.expected_offset} was expected")
        if h.leader_epoch < walk.last_epoch:
            problems.add(path, pos, f"leader epoch {h.leader_epoch} below the previous batch's {walk.last_epoch}")
        if records or check_records:
            recs, rwhy = _decode_records(raw, h)
            if rwhy is not None and info.crc_ok:  # with a bad CRC the cause is already known
                problems.add(path, pos, rwhy)
            if records:
                info.records = recs
            report.record_count += len(recs)
        else:
            report.record_count += h.record_count
        report.max_timestamp_ms = max(report.max_timestamp_ms, h.max_timestamp_ms)
        if index_check is not None:
            index_check.batch(pos, h, report.max_timestamp_ms, problems)
        if keep_batches:
            report.batches.append(info)
        report.batch_count += 1
        # Follow what the data says (not what was expected) so one damaged field is one or
        # two findings, not one per later batch.
        walk.expected_offset = h.next_offset
        walk.last_epoch = h.leader_epoch
        report.next_offset = h.next_offset
        pos += h.total_bytes
        report.valid_bytes = pos
        if walk.progress is not None and pos - reported >= PROGRESS_STEP_BYTES:
            walk.progress(walk.bytes_done + pos, walk.bytes_total)
            reported = pos
    report.last_epoch = walk.last_epoch
    walk.bytes_done += size


def describe_segment(io: IO, path: str, *, records: bool = False, indexes: bool = False) -> SegmentReport:
    """Every batch of one ``.log`` file (with its records and index entries when asked)."""
    problems: list[Problem] = []
    report = _check_segment(io, path, _Walk(), _Problems(problems), keep_batches=True, records=records,
                            check_records=False, indexes=indexes)
    report.problems = problems_for(problems, path)
    _attach_index_problems(report, problems)
    return report


def problems_for(problems: list[Problem], path: str) -> list[Problem]:
    return [p for p in problems if p.path == path]


def _attach_index_problems(report: SegmentReport, problems: list[Problem]) -> None:
    for ix in (report.offset_index, report.time_index):
        if ix is not None:
            ix.problems = problems_for(problems, ix.path)
    # a missing index file has no report of its own: keep its problem on the segment
    known = {report.path} | {ix.path for ix in (report.offset_index, report.time_index) if ix is not None}
    report.problems += [p for p in problems if p.path not in known]


def describe_index(io: IO, path: str) -> IndexReport:
    """The entries of one ``.index`` or ``.timeindex`` file, checked against its ``.log``
    when that exists beside it."""
    kind = KIND_TIME_INDEX if path.endswith(TIME_SUFFIX) else KIND_OFFSET_INDEX
    suffix = TIME_SUFFIX if kind == KIND_TIME_INDEX else INDEX_SUFFIX
    log_path = path[: -len(suffix)] + LOG_SUFFIX
    base = parse_segment_name(posixpath.basename(log_path))
    problems: list[Problem] = []
    sink = _Problems(problems)
    if base is not None and io.exists(log_path):
        seg = _check_segment(io, log_path, _Walk(), sink, keep_batches=False, records=False,
                             check_records=False, indexes=True)
        report = seg.time_index if kind == KIND_TIME_INDEX else seg.offset_index
    else:
        report = _load_index(io, path, kind, base or 0, sink)
    if report is None:
        report = IndexReport(path, kind, 0)
    # the .log's own problems are not this file's: dump the .log to see them
    report.problems = problems_for(problems, path)
    return report


# -- journal ------------------------------------------------------------------------------------


def describe_journal(io: IO, path: str, *, records: bool = False) -> JournalReport:
    """Every entry of one journal file: log name, the batch it carries, its position."""
    problems: list[Problem] = []
    report = _check_journal(io, path, _Problems(problems), keep=True, records=records)
    report.problems = problems
    return report


def _check_journal(io: IO, path: str, problems: _Problems, *, keep: bool, records: bool) -> JournalReport:
    report = JournalReport(path, jn.parse_name(posixpath.basename(path)), 0)
    try:
        file = io.open(path, readonly=True)
    except OSError as exc:
        problems.add(path, 0, f"cannot open: {exc.strerror or exc}")
        return report
    try:
        report.size_bytes = file.size()
        entries, stop = jn.scan(file, report.sequence if report.sequence is not None else -1)
    except OSError as exc:
        problems.add(path, 0, f"read failed: {exc.strerror or exc}")
        return report
    finally:
        file.close()
    for e in entries:
        batch_at = e.position + jn.ENTRY_BYTES + len(e.name.encode())
        info: BatchInfo | None = None
        try:
            h = rb.validate(e.batch)
            info = _batch_info(h, batch_at, memoryview(e.batch))
            if records:
                info.records, rwhy = _decode_records(memoryview(e.batch), h)
                if rwhy is not None:
                    problems.add(path, batch_at, rwhy)
        except LogstoreError as exc:
            problems.add(path, batch_at, f"entry for log {e.name!r} carries a bad batch: {exc}")
        if keep:
            report.entries.append(JournalEntryInfo(e.position, e.name, jn.ENTRY_BYTES + len(e.name.encode()) + len(e.batch), info))
        else:
            report.entries.append(JournalEntryInfo(e.position, e.name, 0, None))  # counted only
    if stop is not None:
        problems.add(path, stop.position, f"bad journal entry: {stop.reason}")
    return report


# -- checkpoint and config ----------------------------------------------------------------------


def describe_checkpoint(io: IO, path: str) -> CheckpointReport:
    problems: list[Problem] = []
    report = _read_checkpoint(io, path, _Problems(problems))
    report.problems = problems
    return report


def _read_checkpoint(io: IO, path: str, problems: _Problems) -> CheckpointReport:
    report = CheckpointReport(path)
    raw = _read_file(io, path, problems)
    if raw is None:
        return report
    body_at = raw.find(b"\n") + 1
    try:
        cp = ckpt.decode(raw, path)
    except CorruptLogError as exc:
        problems.add(path, exc.position, str(exc).split(" (file ")[0])
        return report
    except json.JSONDecodeError as exc:
        problems.add(path, body_at + exc.pos, f"checkpoint JSON does not parse: {exc.msg}")
        return report
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problems.add(path, body_at, f"checkpoint JSON has the wrong shape: {exc!r}")
        return report
    report.journal_start = cp.journal_start
    report.logs = {n: {"recovery_point": lc.recovery_point, "log_start_offset": lc.log_start_offset}
                   for n, lc in cp.logs.items()}
    return report


def _checkpoint_position(raw: bytes, name: str) -> int:
    """Where a log's entry sits in the checkpoint file, for a problem that names it."""
    at = raw.find(json.dumps(name).encode() + b":")
    return max(at, 0)


def _read_config(io: IO, path: str, problems: _Problems) -> dict[str, Any] | None:
    raw = _read_file(io, path, problems)
    if raw is None:
        return None
    try:
        return asdict(LogConfig.from_json(raw))
    except json.JSONDecodeError as exc:
        problems.add(path, exc.pos, f"config JSON does not parse: {exc.msg}")
    except (ValueError, TypeError, AttributeError, LogstoreError) as exc:
        problems.add(path, 0, f"config is not a valid log config: {exc}")
    return None


# -- logs and stores ----------------------------------------------------------------------------


def _segment_paths(io: IO, directory: str) -> list[str]:
    bases = sorted(b for b in (parse_segment_name(n) for n in io.listdir(directory)) if b is not None)
    return [posixpath.join(directory, f"{b:020d}{LOG_SUFFIX}") for b in bases]


def _check_log(
    io: IO, directory: str, walk: _Walk, problems: _Problems, *, keep_batches: bool, records: bool,
    check_records: bool, indexes: bool,
) -> LogReport:
    report = LogReport(posixpath.basename(directory.rstrip("/")), directory)
    config_path = posixpath.join(directory, CONFIG_NAME)
    if io.exists(config_path):
        report.config = _read_config(io, config_path, problems)
    else:
        problems.add(config_path, 0, "config.json is missing: the store ignores this log directory")
    walk.expected_offset, walk.last_epoch = None, -1
    for seg_path in _segment_paths(io, directory):
        seg = _check_segment(io, seg_path, walk, problems, keep_batches=keep_batches, records=records,
                             check_records=check_records, indexes=indexes)
        report.segments.append(seg)
    if report.segments:
        report.start_offset = report.segments[0].base_offset
        report.end_offset = report.segments[-1].next_offset
    return report


def describe_log(io: IO, path: str, *, records: bool = False, indexes: bool = False) -> LogReport:
    """A log directory: its config and every segment in offset order."""
    problems: list[Problem] = []
    report = _check_log(io, path, _Walk(), _Problems(problems), keep_batches=True, records=records,
                        check_records=False, indexes=indexes)
    _distribute(report, problems)
    return report


def _distribute(report: LogReport, problems: list[Problem]) -> None:
    """Hang each problem on the report of the file it names."""
    placed: set[int] = set()
    for seg in report.segments:
        for target, path in [(seg.problems, seg.path)] + [
            (ix.problems, ix.path) for ix in (seg.offset_index, seg.time_index) if ix is not None
        ]:
            for i, p in enumerate(problems):
                if p.path == path:
                    target.append(p)
                    placed.add(i)
    report.problems = [p for i, p in enumerate(problems) if i not in placed]


def _log_dirs(io: IO, root: str) -> list[str]:
    logs_dir = posixpath.join(root, LOGS_DIRNAME)
    return [posixpath.join(logs_dir, n) for n in io.listdir(logs_dir) if io.is_dir(posixpath.join(logs_dir, n))]


def _journal_paths(io: IO, root: str) -> list[str]:
    """The live journal files: from the checkpoint's journal start (older ones are retired,
    kept only to be recycled; their contents are dead). All of them if the checkpoint is
    unreadable (its own problem is reported elsewhere)."""
    start = 0
    try:
        cp = ckpt.read(io, root)
        start = cp.journal_start if cp is not None else 0
    except (LogstoreError, ValueError, KeyError, TypeError):
        start = 0
    return [path for _seq, path in jn.iter_paths(io, root, start)]


def describe_store(io: IO, path: str, *, records: bool = False, indexes: bool = False) -> StoreReport:
    """The checkpoint, every log, and every journal file of a store directory."""
    report = StoreReport(path, clean_shutdown=io.exists(posixpath.join(path, CLEAN_MARKER)))
    store_problems: list[Problem] = []
    sink = _Problems(store_problems)
    cp_path = posixpath.join(path, ckpt.NAME)
    if io.exists(cp_path):
        report.checkpoint = describe_checkpoint(io, cp_path)
    for directory in _log_dirs(io, path):
        problems: list[Problem] = []
        log = _check_log(io, directory, _Walk(), _Problems(problems), keep_batches=True, records=records,
                         check_records=False, indexes=indexes)
        _distribute(log, problems)
        report.logs.append(log)
    for jpath in _journal_paths(io, path):
        report.journals.append(describe_journal(io, jpath, records=records))
    if report.checkpoint is not None:
        _check_checkpoint_against_logs(io, report.checkpoint, report.logs, sink)
    report.problems = store_problems
    return report


def _check_checkpoint_against_logs(io: IO, cp: CheckpointReport, logs: list[LogReport], problems: _Problems) -> None:
    if cp.journal_start is None:
        return  # it did not decode; already reported
    try:
        raw = io.read_all(cp.path)
    except OSError:
        raw = b""
    for log in logs:
        entry = cp.logs.get(log.name)
        if entry is None:
            continue  # recovery scans such a log whole (row R10)
        rp, start = entry["recovery_point"], entry["log_start_offset"]
        at = _checkpoint_position(raw, log.name)
        if rp > log.end_offset:
            problems.add(cp.path, at, f"log {log.name}: recovery point {rp} is beyond the log's end {log.end_offset} "
                                      "(data the checkpoint says was fsynced is missing)")
        if start > log.end_offset:
            problems.add(cp.path, at, f"log {log.name}: log start {start} is beyond the log's end {log.end_offset}")
        if log.segments and log.start_offset > start and rp > start:
            problems.add(log.segments[0].path, 0,
                         f"first segment starts at offset {log.start_offset}, above the log start {start}")


def verify_store(
    io: IO, path: str, *, quick: bool = False, progress: ProgressFn | None = None,
) -> VerifyResult:
    """Check a whole store read-only (module docstring lists the checks). ``quick`` skips
    decoding records (CRCs and headers are still checked). ``progress`` is called with
    (bytes done, bytes total) over the segment and journal files."""
    result = VerifyResult(path, clean_shutdown=io.exists(posixpath.join(path, CLEAN_MARKER)))
    sink = _Problems(result.problems)
    log_dirs = _log_dirs(io, path)
    journal_paths = _journal_paths(io, path)
    plan = [p for d in log_dirs for p in _segment_paths(io, d)] + journal_paths
    walk = _Walk(bytes_total=sum(_file_size(io, p) for p in plan), progress=progress)
    if progress is not None:
        progress(0, walk.bytes_total)
    cp: CheckpointReport | None = None
    cp_path = posixpath.join(path, ckpt.NAME)
    if io.exists(cp_path):
        cp = _read_checkpoint(io, cp_path, sink)
    logs: list[LogReport] = []
    for directory in log_dirs:
        log = _check_log(io, directory, walk, sink, keep_batches=False, records=False,
                         check_records=not quick, indexes=True)
        logs.append(log)
        result.logs += 1
        for seg in log.segments:
            result.segments += 1
            result.batches += seg.batch_count
            result.records += seg.record_count
            result.bytes += seg.size_bytes
        if progress is not None:
            progress(walk.bytes_done, walk.bytes_total)
    if cp is not None:
        _check_checkpoint_against_logs(io, cp, logs, sink)
    for jpath in journal_paths:
        jr = _check_journal(io, jpath, sink, keep=False, records=not quick)
        result.journal_files += 1
        result.journal_entries += len(jr.entries)
        result.bytes += jr.size_bytes
        walk.bytes_done += jr.size_bytes
        if progress is not None:
            progress(walk.bytes_done, walk.bytes_total)
    return result


def iter_problems(report: Report | VerifyResult) -> Iterator[Problem]:
    if isinstance(report, VerifyResult):
        yield from report.problems
    else:
        yield from report.all_problems()

