"""Seeds of ``fuzz.workload`` cases that once found an engine bug (replayed by the tests).

Each entry: (seed, what it found). ``python -m fuzz run --seed S --seconds 1`` replays one.
"""

from __future__ import annotations

SEEDS: list[tuple[int, str]] = [
    (1, "recovery trusted unsynced index files of segments below the recovery point"),
    (63, "unclean reopen without power loss claimed a recovery point over unsynced directory entries"),
    (212, "truncate_to of a sync log was undone by journal replay when another log was fail-stopped"),
    (240, "apply_retention persisted a log start past the durable data (start > end after a crash)"),
    (393, "checkpoint retired journal files holding a fail-stopped log's acknowledged batches"),
    (404, "delete_records_before persisted a log start past the durable data"),
    (1010, "a failed journal rotation kept acknowledging rounds written to a non-durable file"),
    (1196, "truncate_to cut below the log start when the start was inside a batch"),
    (3, "after a journal fsync failure, rotation made the damaged journal file a non-last one"),
    (2, "a recycled journal file's old entries, cut mid-entry, read as damage in a non-last file"),
    (5476, "delete_records_before returned at once after an earlier call failed to persist the start"),
    (6254, "recovery served a log whose first segment began above a log start that was not durable"),
    (8378, "a retention leftover below the log start was kept when the segment after it was lost too"),
    (20110, "a segment that recovery created had its directory entry never fsynced"),
    (7204, "a retention leftover's end was read through a damaged index (garbage offsets)"),
]
