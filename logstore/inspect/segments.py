"""The ``.log`` segment checks: batch structure and CRC32C, dense offsets across segments,
epochs that never go down, records that decode; with the segment's indexes when asked."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from logstore import batch as rb
from logstore.io import IO, File
from logstore.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_SUFFIX, parse_segment_name

from .indexes import _IndexCheck, _load_index
from .reading import _batch_info, _decode_records, _open_file, _Window
from .reports import (
    KIND_OFFSET_INDEX,
    KIND_TIME_INDEX,
    PROGRESS_STEP_BYTES,
    IndexReport,
    Problem,
    ProgressFn,
    SegmentReport,
    _Problems,
)

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
    file = _open_file(io, path, problems)
    if file is None:
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
