"""The store journal: one write-ahead file shared by every log with the ``sync`` flush policy.

Why it exists: a topic has many queues, each its own log. Acknowledging a sync append needs an
fsync that covers it; one fdatasync per dirty log per round does not batch well on this file
system (PEERS.md: 16 logs reach a third of one log's rate). So each group-commit round writes
every queued batch, whichever log it belongs to, into this one file and fsyncs only it. The
batches are also written to their logs' segments (page cache); those are fsynced lazily by the
checkpoint, which then lets the journal files it covers be deleted. RocketMQ's single commit
log plays the same part.

Files: ``<store>/journal/<20-digit sequence>.wal``, a new one per checkpoint or when the
current one is full. Files are preallocated (written with zeros and fsynced once) and then
overwritten in place: an fdatasync of data written inside a file's size need not commit a size
or extent change to the file system's journal, which halves its latency here (measured 145-210
us against 275-370 us for 70 KB). Retired files are recycled (renamed to the next sequence)
rather than deleted, so zeros are written only while the store warms up, and then ahead of
time: when no retired file is left to recycle, the store zero-fills the next file in a worker
thread (``prepared.tmp``, not a journal file by name) while the current one fills, and the
rotation renames it into place; a rotation never waits for 64 MiB of zeros unless the prepared
file is still being written (RocketMQ's commit log allocates its next file ahead the same way).
A leftover ``prepared.tmp`` (a crash while it was written) is deleted on open. Entry layout
(big-endian)::

    offset size field
         0    4 crc          CRC32C of bytes 4..(14+n+21): this header, the name and the
                             batch's first 21 bytes (its stamped fields, magic and CRC); the
                             rest of the batch is covered by its own CRC, checked by scan
         4    4 body_length  bytes after this field
         8    4 seq          the sequence of the file the entry was written to
        12    2 name_length
        14    n log name (UTF-8)
      14+n    - one record batch, stamped (base offset and epoch set)

A file's entries end at the first header that is all zeros: preallocated space, or the end
marker (ENTRY_BYTES zeros) that every round writes after its entries and the next round
overwrites, so that what a recycled file held before never reads as a continuation. Recovery replays, in file order, every
entry of every journal file at or after the checkpoint's ``journal_start`` into its log when the
batch's base offset equals the log's end (earlier ones are already there). A damaged entry ends
the replay of the last file (a torn tail: its round was never acknowledged); in any earlier
file it is corruption.
"""

from __future__ import annotations

import asyncio
import posixpath
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c

from logstore import batch as rb
from logstore.errors import InvalidBatchError
from logstore.io import IO, Buffer, File, FsyncQueue

DIRNAME = "journal"
SUFFIX = ".wal"
PREPARED_NAME = "prepared.tmp"
ENTRY = struct.Struct(">IIIH")
ENTRY_BYTES = ENTRY.size
CRC_COVERS_FROM = 4
ENTRY_BYTES_MAX = 80 * 1024 * 1024


def file_name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


def parse_name(name: str) -> int | None:
    if name.endswith(SUFFIX) and len(name) == 20 + len(SUFFIX) and name[:20].isdigit():
        return int(name[:20])
    return None


END_MARKER = bytes(ENTRY_BYTES)
BATCH_BYTES_COVERED = 21  # stamp (16), magic (1), batch CRC (4)
_TAIL = struct.Struct(">IIH")
_CRC = struct.Struct(">I")


def entry_tail(seq: int, name: bytes, batch_total: int) -> tuple[bytes, int]:
    """An entry's header after its CRC, with its name, and the CRC32C of those bytes: the same
    for every batch of one size of one log in one file, so a round computes it once for them
    (the entry is then ``entry_crc(covered, crc)``, the tail, the batch)."""
    tail = _TAIL.pack(6 + len(name) + batch_total, seq, len(name)) + name
    return tail, crc32c.crc32c(tail)


def entry_crc(covered: Buffer, tail_crc: int) -> bytes:
    """The entry CRC field: over the tail (given as its CRC) and then ``covered``, the stamped
    batch's first BATCH_BYTES_COVERED bytes (stamp, magic and batch CRC: see the layout; the
    batch CRC covers the rest)."""
    return _CRC.pack(crc32c.crc32c(covered, tail_crc))


@dataclass
class JournalEntry:
    position: int
    name: str
    batch: bytes


@dataclass
class JournalStop:
    position: int
    reason: str
    bytes_cut: int = 0  # from the damaged entry to the last non-zero byte of the file


def scan(file: File, seq: int) -> tuple[list[JournalEntry], JournalStop | None]:
    """The entries of journal file ``seq`` up to its end; a JournalStop if a damaged entry
    ended them early (None at a clean end: end of file, zeros, or another sequence's data)."""
    raw = file.pread(file.size(), 0)
    entries, stop = _scan(raw, seq)
    if stop is not None:
        stop.bytes_cut = max(0, len(raw.rstrip(b"\0")) - stop.position)
    return entries, stop


def _scan(raw: bytes, seq: int) -> tuple[list[JournalEntry], JournalStop | None]:
    entries: list[JournalEntry] = []
    pos = 0
    view = memoryview(raw)
    while pos < len(raw):
        if len(raw) - pos < ENTRY_BYTES:
            if any(view[pos:]):
                return entries, JournalStop(pos, "trailing bytes shorter than an entry header")
            return entries, None
        crc, body_length, entry_seq, name_length = ENTRY.unpack_from(raw, pos)
        if crc == 0 and body_length == 0:
            return entries, None  # preallocated space
        if entry_seq != seq and _intact(view, pos, crc, body_length, name_length):
            return entries, None  # a whole entry of the file's previous life: recycled space
        end = pos + 8 + body_length
        batch_at = pos + ENTRY_BYTES + name_length
        if body_length < 6 + name_length or body_length > ENTRY_BYTES_MAX or end > len(raw):
            return entries, JournalStop(pos, f"entry length {body_length} out of range")
        if entry_seq != seq:
            return entries, JournalStop(pos, f"entry of sequence {entry_seq} in file {seq}")
        if end - batch_at < BATCH_BYTES_COVERED or crc32c.crc32c(view[pos + CRC_COVERS_FROM : batch_at + BATCH_BYTES_COVERED]) != crc:
            return entries, JournalStop(pos, "CRC32C mismatch")
        batch = bytes(view[batch_at:end])
        try:
            rb.validate(batch)
        except InvalidBatchError as exc:
            return entries, JournalStop(pos, f"journaled batch is damaged: {exc}")
        name = bytes(view[pos + ENTRY_BYTES : batch_at]).decode("utf-8", "replace")
        entries.append(JournalEntry(pos, name, batch))
        pos = end
    return entries, None


def _intact(view: memoryview, pos: int, crc: int, body_length: int, name_length: int) -> bool:
    """Whether the entry at ``pos`` is whole and CRC-valid (whatever its sequence)."""
    batch_at = pos + ENTRY_BYTES + name_length
    end = pos + 8 + body_length
    if body_length < 6 + name_length or end > len(view) or end - batch_at < BATCH_BYTES_COVERED:
        return False
    return bool(crc32c.crc32c(view[pos + CRC_COVERS_FROM : batch_at + BATCH_BYTES_COVERED]) == crc)


class JournalWriter:
    """The current journal file: writes rounds in place, rotates to a recycled or new file."""

    def __init__(self, io: IO, root: str, seq: int, file_bytes: int) -> None:
        self.io = io
        self.directory = posixpath.join(root, DIRNAME)
        self.file_bytes = file_bytes
        self.seq = seq - 1
        self.file: File | None = None
        self.size = 0
        self.prepared = False  # PREPARED_NAME holds a whole zero-filled, fsynced file
        # prepare() and rotate() run in worker threads: never at once, or a preparation could
        # open the prepared file just as a rotation renames it into place and zero it there.
        self._files_lock = threading.Lock()
        if io.exists(self.prepared_path):
            io.unlink(self.prepared_path)  # perhaps half written: never trusted
        self.rotate([])

    @property
    def path(self) -> str:
        return posixpath.join(self.directory, file_name(self.seq))

    @property
    def prepared_path(self) -> str:
        return posixpath.join(self.directory, PREPARED_NAME)

    def prepare(self) -> None:
        """Zero-fill and fsync the next file under PREPARED_NAME for the next rotation that
        has no spare (blocking: run it in a worker thread; a rotation waits for it)."""
        with self._files_lock:
            if self.prepared:
                return
            f = self.io.open(self.prepared_path, create=True)
            try:
                self._fill_zeros(f)
            finally:
                f.close()
            self.prepared = True

    def _fill_zeros(self, f: File) -> None:
        f.truncate(0)
        zeros = bytes(min(self.file_bytes, 1 << 20))
        for at in range(0, self.file_bytes, len(zeros) or 1):
            f.pwrite(zeros[: self.file_bytes - at], at)
        f.fdatasync()

    def has_room(self, nbytes: int) -> bool:
        return self.size == 0 or self.size + nbytes <= self.file_bytes

    def reserve(self, nbytes: int) -> int:
        """Claim the next ``nbytes`` of the file for a round; returns where they start."""
        at = self.size
        self.size += nbytes
        return at

    def write_at(self, parts: Sequence[Buffer], at: int) -> None:
        """Write a reserved round's entries and the end marker after them. Rounds must be
        written in the order they reserved: each end marker is overwritten by the next round."""
        assert self.file is not None
        self.file.pwritev([*parts, END_MARKER], at)

    def fdatasync(self) -> None:
        assert self.file is not None
        self.file.fdatasync()

    def fdatasync_on(self, queue: FsyncQueue) -> asyncio.Future[None]:
        """:meth:`fdatasync` through an asynchronous queue (``IO.open_fsync_queue``)."""
        assert self.file is not None
        return queue.fdatasync(self.file)

    def rotate(self, spares: list[int]) -> int:
        """Start the next file, renaming the oldest of ``spares`` (retired sequences) or the
        prepared file into place, or else creating and preallocating one; its directory entry
        is durable when this returns. Returns the new sequence."""
        with self._files_lock:
            return self._rotate(spares)

    def _rotate(self, spares: list[int]) -> int:
        if self.file is not None:
            self.file.close()
        self.seq += 1
        if spares:
            self.io.rename(posixpath.join(self.directory, file_name(spares.pop(0))), self.path)
            self.file = self.io.open(self.path)
            self.file.pwrite(END_MARKER, 0)  # the old life of the file ends here
            self.file.fdatasync()
        elif self.prepared:
            self.prepared = False
            self.io.rename(self.prepared_path, self.path)
            self.file = self.io.open(self.path)
        else:
            self.file = self.io.open(self.path, create=True)
            self._fill_zeros(self.file)
        self.size = 0
        self.io.fsync_dir(self.directory)
        return self.seq

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def list_files(io: IO, root: str) -> list[int]:
    directory = posixpath.join(root, DIRNAME)
    if not io.exists(directory):
        return []
    return sorted(s for s in (parse_name(n) for n in io.listdir(directory)) if s is not None)


def iter_paths(io: IO, root: str, start: int) -> Iterator[tuple[int, str]]:
    for seq in list_files(io, root):
        if seq >= start:
            yield seq, posixpath.join(root, DIRNAME, file_name(seq))
