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

The implementation, one module per concern: ``reports`` (the findings and report data),
``reading`` (read helpers), ``segments``, ``indexes``, ``journal``, ``checkpoint`` (one per
file type) and ``store`` (the entry points: ``describe`` and ``verify_store``).
"""

from .checkpoint import describe_checkpoint
from .journal import describe_journal
from .reports import (
    CLEAN_MARKER,
    CODEC_NAMES,
    CONFIG_NAME,
    KIND_CHECKPOINT,
    KIND_JOURNAL,
    KIND_LOG,
    KIND_OFFSET_INDEX,
    KIND_SEGMENT,
    KIND_STORE,
    KIND_TIME_INDEX,
    LOGS_DIRNAME,
    PROBLEMS_PER_FILE_MAX,
    PROGRESS_STEP_BYTES,
    READ_CHUNK_BYTES,
    BatchInfo,
    CheckpointReport,
    IndexReport,
    JournalEntryInfo,
    JournalReport,
    LogReport,
    OffsetEntry,
    Problem,
    ProgressFn,
    RecordInfo,
    Report,
    SegmentReport,
    Shown,
    StoreReport,
    TimeEntry,
    VerifyResult,
)
from .segments import describe_index, describe_segment, problems_for
from .store import (
    describe,
    describe_log,
    describe_store,
    is_store,
    iter_problems,
    path_kind,
    verify_store,
)

__all__ = [
    "CLEAN_MARKER", "CODEC_NAMES", "CONFIG_NAME", "KIND_CHECKPOINT", "KIND_JOURNAL", "KIND_LOG",
    "KIND_OFFSET_INDEX", "KIND_SEGMENT", "KIND_STORE", "KIND_TIME_INDEX", "LOGS_DIRNAME",
    "PROBLEMS_PER_FILE_MAX", "PROGRESS_STEP_BYTES", "READ_CHUNK_BYTES", "BatchInfo",
    "CheckpointReport", "IndexReport", "JournalEntryInfo", "JournalReport", "LogReport",
    "OffsetEntry", "Problem", "ProgressFn", "RecordInfo", "Report", "SegmentReport", "Shown",
    "StoreReport", "TimeEntry", "VerifyResult", "describe", "describe_checkpoint", "describe_index",
    "describe_journal", "describe_log", "describe_segment", "describe_store", "is_store",
    "iter_problems", "path_kind", "problems_for", "verify_store",
]
