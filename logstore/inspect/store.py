"""The entry points: what a path is, ``describe`` of any path, a log directory or a whole
store, and ``verify_store`` over every file of a store."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from logstore import checkpoint as ckpt
from logstore import journal as jn
from logstore.errors import LogstoreError
from logstore.io import IO
from logstore.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_SUFFIX, parse_segment_name

from .checkpoint import _checkpoint_position, _read_checkpoint, _read_config, describe_checkpoint
from .journal import _check_journal, describe_journal
from .reading import _file_size
from .reports import (
    CLEAN_MARKER,
    CONFIG_NAME,
    KIND_CHECKPOINT,
    KIND_JOURNAL,
    KIND_LOG,
    KIND_OFFSET_INDEX,
    KIND_SEGMENT,
    KIND_STORE,
    KIND_TIME_INDEX,
    LOGS_DIRNAME,
    CheckpointReport,
    LogReport,
    Problem,
    ProgressFn,
    Report,
    StoreReport,
    VerifyResult,
    _Problems,
)
from .segments import _check_segment, _Walk, describe_index, describe_segment

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
