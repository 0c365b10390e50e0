"""Where the last pull of a queue stopped, so the next pull starts there without a new read.

A consumer drains a backlog in pulls of ``pullBatchSize`` (32) messages, and a send batch holds
hundreds. Reading afresh for each pull would pread a whole response's worth of batches
(``maxTransferBytesOnMessageInMemory``, 1 MiB) and walk the message sizes of the first batch up
to the requested offset: the same bytes read and walked again by every pull. A Chunk keeps the
bytes one read returned with a cursor (the next offset and its byte position); a pull asking for
exactly that offset continues from the cursor.

The cache is keyed by (queue log, next offset), so consumers of different groups at different
positions in one queue each keep their own cursor. It holds at most ``bytes_max`` (64 MiB) of
chunks, least recently used first out; a chunk read to its end is not kept. Cached bytes are
whole batches below the committed offset, which never change: a log that is deleted and made
again is a new Log object, and an entry whose log is not the one asked for is a miss.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

from logstore import Log

READ_CACHE_BYTES_MAX = 64 * 1024 * 1024


@dataclass
class Chunk:
    """Whole batches as one ``Log.read`` returned them, and a cursor into them."""

    data: memoryview
    next_offset: int  # the next message to hand out
    batch_pos: int  # byte position in ``data`` of the batch holding ``next_offset``
    msg_pos: int  # byte position in ``data`` of the message at ``next_offset``

    @property
    def exhausted(self) -> bool:
        return self.batch_pos >= len(self.data)

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass
class _Entry:
    log: weakref.ref[Log]
    chunk: Chunk


class ReadCache:
    """An LRU of Chunks bounded by their total bytes."""

    def __init__(self, bytes_max: int = READ_CACHE_BYTES_MAX) -> None:
        if bytes_max < 0:
            raise ValueError("bytes_max must be >= 0")
        self.bytes_max = bytes_max
        self.nbytes = 0
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, log: Log, offset: int) -> Chunk | None:
        """The chunk whose cursor is at ``offset`` of ``log``, removed from the cache (put it
        back with :meth:`put` once its cursor moved), or None."""
        entry = self._entries.pop((log.name, offset), None)
        if entry is None:
            self.misses += 1
            return None
        self.nbytes -= entry.chunk.nbytes
        if entry.log() is not log:  # the log was deleted and made again
            self.misses += 1
            return None
        self.hits += 1
        return entry.chunk

    def put(self, log: Log, chunk: Chunk) -> None:
        """Keep ``chunk`` for a pull at its cursor (unless it is read to its end or too big)."""
        if chunk.exhausted or chunk.nbytes > self.bytes_max:
            return
        key = (log.name, chunk.next_offset)
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= old.chunk.nbytes
        self._entries[key] = _Entry(weakref.ref(log), chunk)
        self.nbytes += chunk.nbytes
        while self.nbytes > self.bytes_max:
            _key, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.chunk.nbytes
        assert 0 <= self.nbytes <= self.bytes_max

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0
