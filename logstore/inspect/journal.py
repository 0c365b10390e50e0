"""The ``journal/*.wal`` checks: every entry's CRC and its batch's structure and CRC."""

from __future__ import annotations

import posixpath

from logstore import batch as rb
from logstore import journal as jn
from logstore.errors import LogstoreError
from logstore.io import IO

from .reading import _batch_info, _decode_records, _open_file
from .reports import BatchInfo, JournalEntryInfo, JournalReport, Problem, _Problems

# -- journal ------------------------------------------------------------------------------------


def describe_journal(io: IO, path: str, *, records: bool = False) -> JournalReport:
    """Every entry of one journal file: log name, the batch it carries, its position."""
    problems: list[Problem] = []
    report = _check_journal(io, path, _Problems(problems), keep=True, records=records)
    report.problems = problems
    return report


def _check_journal(io: IO, path: str, problems: _Problems, *, keep: bool, records: bool) -> JournalReport:
    report = JournalReport(path, jn.parse_name(posixpath.basename(path)), 0)
    file = _open_file(io, path, problems)
    if file is None:
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
