"""The two sparse index files of a segment. Neither is checksummed or trusted over the data.

``<base>.index`` (offset index): 8-byte entries ``int32 relative_offset | int32 position``: the
batch whose base offset is ``base + relative_offset`` starts at byte ``position`` of the
``.log`` file. One entry per ``index_interval_bytes`` of appended data; both columns strictly
increase.

``<base>.timeindex`` (time index): 12-byte entries ``int64 timestamp_ms | int32
relative_offset``: every batch at or after ``relative_offset`` ... has records no older than
the previous entry's timestamp; more usefully, the greatest timestamp seen in the segment up
to the batch at ``relative_offset`` is ``timestamp_ms``. Timestamps strictly increase.

Both are appended to the page cache as batches are written and fsynced when the segment is
rolled or the store closes cleanly. After an unclean stop they are rebuilt from the data for
every segment recovery scans, and checked against the data for the others (entries in order,
positions inside the file, the last entry naming a real batch): any doubt means a rebuild.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from logstore.io import IO, File

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")
PENDING_ENTRIES_MAX = 256


@dataclass
class SparseIndex:
    """Offset and time entries of one segment, in memory and in their two files."""

    offsets: list[int] = field(default_factory=list)  # relative offsets
    positions: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # time index timestamps
    time_offsets: list[int] = field(default_factory=list)  # their relative offsets
    offset_file: File | None = None
    time_file: File | None = None
    # Entries reach their files in bunches (they are rebuildable, so a lag costs nothing but
    # a rebuild after a crash): how many of each list are in the files already.
    offsets_written: int = 0
    times_written: int = 0

    def add(self, relative_offset: int, position: int, max_timestamp_ms: int) -> None:
        if self.offsets and relative_offset <= self.offsets[-1]:
            return
        self.offsets.append(relative_offset)
        self.positions.append(position)
        if not self.times or max_timestamp_ms > self.times[-1]:
            self.times.append(max_timestamp_ms)
            self.time_offsets.append(relative_offset)
        if len(self.offsets) - self.offsets_written >= PENDING_ENTRIES_MAX:
            self.write_pending()

    def write_pending(self) -> None:
        """Put entries not yet in the files into them (page cache)."""
        if self.offset_file is not None and self.offsets_written < len(self.offsets):
            n = self.offsets_written
            data = b"".join(OFFSET_ENTRY.pack(r, p) for r, p in zip(self.offsets[n:], self.positions[n:], strict=True))
            self.offset_file.pwrite(data, n * OFFSET_ENTRY.size)
        if self.time_file is not None and self.times_written < len(self.times):
            n = self.times_written
            data = b"".join(TIME_ENTRY.pack(t, r) for t, r in zip(self.times[n:], self.time_offsets[n:], strict=True))
            self.time_file.pwrite(data, n * TIME_ENTRY.size)
        self.offsets_written, self.times_written = len(self.offsets), len(self.times)

    def floor(self, relative_offset: int) -> tuple[int, int]:
        """The greatest entry at or below ``relative_offset``: (relative offset, position)."""
        i = bisect.bisect_right(self.offsets, relative_offset) - 1
        if i < 0:
            return 0, 0
        return self.offsets[i], self.positions[i]

    def floor_position(self, position: int) -> tuple[int, int]:
        """The greatest entry whose position is at or below ``position``."""
        i = bisect.bisect_right(self.positions, position) - 1
        if i < 0:
            return 0, 0
        return self.offsets[i], self.positions[i]

    def time_floor(self, timestamp_ms: int) -> int:
        """A relative offset at or before the first batch holding a timestamp >= the target."""
        i = bisect.bisect_left(self.times, timestamp_ms) - 1
        return self.time_offsets[i] if i >= 0 else 0

    def truncate_after_position(self, position: int) -> None:
        """Forget entries for batches at or past ``position`` (the data there is gone)."""
        self.write_pending()
        keep = bisect.bisect_left(self.positions, position)
        last_offset = self.offsets[keep - 1] if keep else -1
        del self.offsets[keep:], self.positions[keep:]
        tkeep = bisect.bisect_right(self.time_offsets, last_offset)
        del self.times[tkeep:], self.time_offsets[tkeep:]
        if self.offset_file is not None:
            self.offset_file.truncate(keep * OFFSET_ENTRY.size)
        if self.time_file is not None:
            self.time_file.truncate(tkeep * TIME_ENTRY.size)
        self.offsets_written, self.times_written = keep, tkeep

    def reset(self) -> None:
        self.offsets.clear()
        self.positions.clear()
        self.times.clear()
        self.time_offsets.clear()
        self.offsets_written = self.times_written = 0
        for f in (self.offset_file, self.time_file):
            if f is not None:
                f.truncate(0)

    def sync(self) -> None:
        self.write_pending()
        for f in (self.offset_file, self.time_file):
            if f is not None:
                f.fdatasync()

    def close(self) -> None:
        self.write_pending()
        for f in (self.offset_file, self.time_file):
            if f is not None:
                f.close()
        self.offset_file = self.time_file = None


def load(io: IO, offset_path: str, time_path: str, log_bytes: int) -> tuple[SparseIndex, str | None]:
    """Open (creating if missing) and parse both files. Returns the index and, if the files
    disagree with themselves or with the log size, why they must be rebuilt."""
    problem = None
    for path in (offset_path, time_path):
        if not io.exists(path):
            problem = f"{path} is missing"
    idx = SparseIndex(offset_file=io.open(offset_path, create=True), time_file=io.open(time_path, create=True))
    assert idx.offset_file is not None and idx.time_file is not None
    raw = idx.offset_file.pread(idx.offset_file.size(), 0)
    traw = idx.time_file.pread(idx.time_file.size(), 0)
    if len(raw) % OFFSET_ENTRY.size or len(traw) % TIME_ENTRY.size:
        problem = problem or "index length is not a whole number of entries"
    for rel, pos in OFFSET_ENTRY.iter_unpack(raw[: len(raw) - len(raw) % OFFSET_ENTRY.size]):
        if idx.offsets and (rel <= idx.offsets[-1] or pos <= idx.positions[-1]):
            problem = problem or "offset index entries out of order"
        if pos < 0 or pos >= log_bytes or rel < 0:
            problem = problem or f"offset index entry at position {pos} outside the log"
        idx.offsets.append(rel)
        idx.positions.append(pos)
    for ts, rel in TIME_ENTRY.iter_unpack(traw[: len(traw) - len(traw) % TIME_ENTRY.size]):
        if idx.times and (ts <= idx.times[-1] or rel < idx.time_offsets[-1]):
            problem = problem or "time index entries out of order"
        idx.times.append(ts)
        idx.time_offsets.append(rel)
    if idx.time_offsets and idx.offsets and idx.time_offsets[-1] > idx.offsets[-1]:
        problem = problem or "time index points past the offset index"
    idx.offsets_written, idx.times_written = len(idx.offsets), len(idx.times)
    return idx, problem
