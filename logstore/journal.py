"""The store journal: one write-ahead file shared by every log with the ``sync`` flush policy.

Why it exists: a topic has many queues, each its own log. Acknowledging a sync append needs an
fsync that covers it; one fdatasync per dirty log per round does not batch well on this file
system (PEERS.md: 16 logs reach a third of one log's rate). So each group-commit round writes
every queued batch, whichever log it belongs to, into this one file and fsyncs only it. The
batches are also written to their logs' segments (page cache); those are fsynced lazily by the
checkpoint, which then lets the journal files it covers be deleted. RocketMQ's single commit
log plays the same part.

Files: ``<store>/journal/<20-digit sequence>.wal``, a new one per checkpoint. Entry layout
(big-endian)::

    offset size field
         0    4 crc          CRC32C of bytes 4..(10+n+21): this header, the name and the
                             batch's first 21 bytes (its stamped fields, magic and CRC); the
                             rest of the batch is covered by its own CRC, checked by scan
         4    4 body_length  bytes after this field
         8    2 name_length
        10    n log name (UTF-8)
      10+n    - one record batch, stamped (base offset and epoch set)

Recovery replays, in file order, every entry of every journal file at or after the
checkpoint's ``journal_start`` into its log when the batch's base offset equals the log's end
(earlier ones are already there). A bad entry ends the replay of the last file (a torn tail:
its round was never acknowledged); in any earlier file it is corruption.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c

from logstore import batch as rb
from logstore.errors import InvalidBatchError
from logstore.io import IO, Buffer, File

DIRNAME = "journal"
SUFFIX = ".wal"
ENTRY = struct.Struct(">IIH")
ENTRY_BYTES = ENTRY.size
CRC_COVERS_FROM = 4
ENTRY_BYTES_MAX = 80 * 1024 * 1024


def file_name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


def parse_name(name: str) -> int | None:
    if name.endswith(SUFFIX) and len(name) == 20 + len(SUFFIX) and name[:20].isdigit():
        return int(name[:20])
    return None


BATCH_BYTES_COVERED = 21  # stamp (16), magic (1), batch CRC (4)
_TAIL = struct.Struct(">IH")
_CRC = struct.Struct(">I")


def encode_entry_head(name: bytes, stamp: bytes, batch_total: int, magic_and_crc: Buffer) -> bytes:
    """The entry's fixed part and name; the batch follows it. ``stamp`` is the batch's first 16
    bytes and ``magic_and_crc`` starts with its next 5 (see the layout: the entry CRC covers
    them, the batch CRC the rest)."""
    tail = _TAIL.pack(2 + len(name) + batch_total, len(name)) + name
    crc = crc32c.crc32c(bytes(magic_and_crc[:5]), crc32c.crc32c(stamp, crc32c.crc32c(tail)))
    return _CRC.pack(crc) + tail


@dataclass
class JournalEntry:
    position: int
    name: str
    batch: bytes


@dataclass
class JournalStop:
    position: int
    reason: str


def scan(file: File) -> tuple[list[JournalEntry], JournalStop | None]:
    raw = file.pread(file.size(), 0)
    entries: list[JournalEntry] = []
    pos = 0
    view = memoryview(raw)
    while pos < len(raw):
        if len(raw) - pos < ENTRY_BYTES:
            return entries, JournalStop(pos, "trailing bytes shorter than an entry header")
        crc, body_length, name_length = ENTRY.unpack_from(raw, pos)
        end = pos + 8 + body_length
        if body_length < 2 + name_length or body_length > ENTRY_BYTES_MAX or end > len(raw):
            return entries, JournalStop(pos, f"entry length {body_length} out of range")
        batch_at = pos + ENTRY_BYTES + name_length
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


class JournalWriter:
    """The current journal file: appends rounds, fsyncs them, rotates."""

    def __init__(self, io: IO, root: str, seq: int) -> None:
        self.io = io
        self.directory = posixpath.join(root, DIRNAME)
        self.seq = seq
        self.file = io.open(self.path, create=True)
        self.size = self.file.size()
        io.fsync_dir(self.directory)  # entries acknowledged in this file must be findable

    @property
    def path(self) -> str:
        return posixpath.join(self.directory, file_name(self.seq))

    def write_round(self, parts: Sequence[Buffer], nbytes: int) -> None:
        self.file.pwritev(parts, self.size)
        self.size += nbytes

    def rotate(self) -> int:
        """Start the next file (its directory entry made durable); returns the new sequence."""
        self.file.close()
        self.seq += 1
        self.file = self.io.open(self.path, create=True)
        self.file.truncate(0)
        self.size = 0
        self.io.fsync_dir(self.directory)
        return self.seq

    def close(self) -> None:
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
