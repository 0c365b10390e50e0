"""The ``.index`` / ``.timeindex`` checks: each file on its own (whole entries, columns in
order), then its entries against the batches of its segment."""

from __future__ import annotations

from logstore import batch as rb
from logstore.index import OFFSET_ENTRY, TIME_ENTRY
from logstore.io import IO

from .reading import _read_file
from .reports import KIND_OFFSET_INDEX, IndexReport, OffsetEntry, TimeEntry, _Problems

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
