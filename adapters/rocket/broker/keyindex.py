"""The key index: ``topic#key`` -> commit log offsets, for QUERY_MESSAGE by UNIQ_KEY or KEYS.

Persistent as its own logstore log (``.keyindex``, a name no queue can have). Each batch's
records section is a run of entries::

    int64 commitlog_offset | int64 store_timestamp_ms | int16 key_length | key (UTF-8)

An entry with an empty key is a watermark: everything in the queue log whose id is in the top
bits of ``commitlog_offset`` is indexed below its queue offset. Entries are buffered and
appended every ``flush_interval_s`` (one batch), so the send path never waits for the index.
After a crash the tail of the index may be missing; ``recover`` re-indexes every queue log from
its watermark to its end (RocketMQ re-dispatches the commit log the same way).

In memory an entry is 24 bytes: the key's 64-bit hash in a bytearray (searched with
``bytearray.find``, at C speed, only when someone queries) and its commit log offset and store
time in an array; no per-key object, so the send path's cost does not grow with the index.
Both live in fixed-size chunks allocated whole (``CHUNK_ENTRIES``): one ever-growing array is
copied into fresh memory every time it outgrows its allocation, and first touches of memory
are what a write costs most on this machine (a batch send's keys spent 16% of the broker's
time there). Entries waiting for the next flush are a list of keys and an array of numbers:
no tuple per key for the garbage collector to walk. Hits are candidates: callers check the
message really has the key (a hash may collide). At most ``ENTRIES_MAX`` entries are kept
(RocketMQ's maxIndexNum); past it the oldest half is forgotten, as RocketMQ's oldest index
files go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from array import array
from collections.abc import Iterable

from adapters.rocket.message import (
    PROPERTY_KEYS,
    PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX,
    iter_stored,
)
from adapters.rocket.remoting.command import property_value
from logstore import Log, LogConfig, Store
from logstore.batch import HEADER_BYTES, build_opaque_batch, parse_header

from .queues import decode_commitlog_offset, encode_commitlog_offset

log = logging.getLogger(__name__)

INDEX_LOG_NAME = ".keyindex"
ENTRY = struct.Struct(">qqh")
FLUSH_INTERVAL_S = 0.2
BATCH_ENTRIES_MAX = 20_000
RESULTS_MAX = 64
ENTRIES_MAX = 20_000_000
#: 512 KiB of hashes and 1 MiB of offsets and times a chunk: allocating one (its first touch of
#: fresh memory) takes a few ms of the send path, every 65,536 keys.
CHUNK_ENTRIES = 1 << 16
_HASH = struct.Struct("=q")


def add_index_keys_of(topic: str, properties: str, phys: int, keys: list[str], offsets: list[int]) -> None:
    """Append :func:`index_keys` of a message's encoded properties to ``keys`` and ``phys`` as
    many times to ``offsets`` (the parallel lists :meth:`KeyIndex.add_many` takes). The send
    path's: one search per key property instead of decoding every property."""
    _add_keys(topic, property_value(properties, PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
              property_value(properties, PROPERTY_KEYS), phys, keys, offsets)


def index_keys(topic: str, properties: dict[str, str]) -> list[str]:
    keys: list[str] = []
    _add_keys(topic, properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX), properties.get(PROPERTY_KEYS),
              0, keys, [])
    return keys


def _add_keys(topic: str, uniq: str | None, keys_text: str | None, phys: int, keys: list[str],
              offsets: list[int]) -> None:
    if uniq:
        keys.append(f"{topic}#{uniq}")
        offsets.append(phys)
    if keys_text:
        for k in keys_text.split(" "):
            if k:
                keys.append(f"{topic}#{k}")
                offsets.append(phys)


class _Chunk:
    """``size`` entries allocated at once; ``start`` entries at its front are forgotten."""

    __slots__ = ("entries", "hashes", "size", "start", "used")

    def __init__(self, size: int) -> None:
        self.hashes = bytearray(8 * size)
        self.entries = array("q", (0,)) * (2 * size)  # commit log offset, store time: two per entry
        self.size = size
        self.used = 0
        self.start = 0


class KeyIndex:
    def __init__(self, store: Store, log_config: LogConfig) -> None:
        self.store = store
        self.log_config = log_config
        self._log: Log | None = None
        self._chunks: list[_Chunk] = []  # oldest first; the keys' hash() (native order) and numbers
        self._count = 0  # entries held (not forgotten)
        self.entries_max = ENTRIES_MAX
        self._watermarks: dict[int, int] = {}  # queue log id -> indexed below this offset
        self._pending_keys: list[str] = []  # entries for the next flush: keys, and
        self._pending_numbers = array("q")  # their commit log offsets and store times, two each
        self._dirty_marks: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        # Appends to index later (add_later): (topic, properties of each message, commit log
        # offset of the first, store time, queue log id, its end offset), in the order stored.
        self._later: list[tuple[str, list[str], int, int, int, int]] = []
        self._drain_scheduled = False

    async def open(self, queue_logs: Iterable[tuple[str, Log, int]]) -> int:
        """Load the index and re-index what it misses. Returns messages re-indexed."""
        self._log = await self.store.get_or_create_log(INDEX_LOG_NAME, self.log_config)
        offset = self._log.log_start_offset
        while offset < self._log.committed_offset:
            data = memoryview(self._log.read(offset).data())
            pos = 0
            while pos < len(data):
                h = parse_header(data, pos)
                self._load_entries(data[pos + HEADER_BYTES : pos + h.total_bytes])
                pos += h.total_bytes
                offset = h.next_offset
        redone = 0
        for topic, qlog, log_id in queue_logs:
            redone += self._reindex(topic, qlog, log_id)
        if redone:
            log.info("key index: re-indexed %d messages missing after an unclean stop", redone)
        self._task = asyncio.create_task(self._flusher(), name="key-index-flusher")
        return redone

    def _load_entries(self, payload: memoryview) -> None:
        p = 0
        keys: list[str] = []
        numbers = array("q")
        while p < len(payload):
            phys, ts, klen = ENTRY.unpack_from(payload, p)
            p += ENTRY.size
            key = bytes(payload[p : p + klen]).decode()
            p += klen
            if key:
                keys.append(key)
                numbers.append(phys)
                numbers.append(ts)
            else:
                log_id, below = decode_commitlog_offset(phys)
                self._watermarks[log_id] = max(self._watermarks.get(log_id, 0), below)
        self._hold(keys, numbers)

    def catch_up(self, queue_logs: Iterable[tuple[str, Log, int]]) -> int:
        """Index what the queue logs hold past their watermarks: a slave's logs grow by
        replication, not through the send path, so a promoted slave indexes them once."""
        return sum(self._reindex(topic, qlog, log_id) for topic, qlog, log_id in queue_logs)

    def _reindex(self, topic: str, qlog: Log, log_id: int) -> int:
        offset = max(self._watermarks.get(log_id, 0), qlog.log_start_offset)
        redone = 0
        while offset < qlog.committed_offset:
            data = memoryview(qlog.read(offset).data())
            pos = 0
            while pos < len(data):
                h = parse_header(data, pos)
                payload = data[pos + HEADER_BYTES : pos + h.total_bytes]
                pos += h.total_bytes
                for msg, _p in iter_stored(payload):
                    if msg.queue_offset >= offset:
                        self.add(index_keys(topic, msg.properties), msg.commitlog_offset, msg.store_timestamp)
                        redone += 1
                offset = h.next_offset
            self.mark(log_id, offset)
        return redone

    # -- updates (called on the send path: no IO here) ----------------------------------------

    def add_later(self, topic: str, properties: list[str], first: int, store_ts: int, log_id: int, below: int) -> None:
        """Index an append's messages (encoded ``properties`` of each, at commit log offsets
        from ``first``) and :meth:`mark` its queue log below ``below``, later: when
        :meth:`drain_soon`'s callback runs, or first thing in any other call that reads or
        changes the index, whichever comes first; appends in the order added. The send path
        adds here while it stores and drains once its answers are written, so the index is
        not between a round's fsync and the answers (64 sync senders: +3-9% msg/s), and a
        request read after an answer finds the message indexed."""
        self._later.append((topic, properties, first, store_ts, log_id, below))

    def drain_soon(self) -> None:
        if self._later and not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drained)

    def _drained(self) -> None:
        self._drain_scheduled = False
        self._drain()

    def _drain(self) -> None:
        later, self._later = self._later, []
        for topic, properties, first, store_ts, log_id, below in later:
            keys: list[str] = []
            offsets: list[int] = []
            for i, props in enumerate(properties):
                add_index_keys_of(topic, props, first + i, keys, offsets)
            self._add_many(keys, offsets, store_ts)
            self._mark(log_id, below)

    def add(self, keys: list[str], phys: int, store_ts: int) -> None:
        self.add_many(keys, [phys] * len(keys), store_ts)

    def add_many(self, keys: list[str], offsets: list[int], store_ts: int) -> None:
        """Index ``keys[i]`` at commit log offset ``offsets[i]``, all stored at ``store_ts``
        (one call for an append's messages)."""
        if self._later:
            self._drain()
        self._add_many(keys, offsets, store_ts)

    def _add_many(self, keys: list[str], offsets: list[int], store_ts: int) -> None:
        if not keys:
            return
        chunk = self._chunks[-1] if self._chunks else None
        if len(keys) == 1 and chunk is not None and chunk.used < chunk.size and self._count < self.entries_max:
            # One key (a plain send's UNIQ_KEY): the arrays below cost more than they save.
            key, phys, at = keys[0], offsets[0], chunk.used
            self._pending_keys.append(key)
            numbers = self._pending_numbers
            numbers.append(phys)
            numbers.append(store_ts)
            chunk.hashes[8 * at : 8 * at + 8] = _HASH.pack(hash(key))
            chunk.entries[2 * at] = phys
            chunk.entries[2 * at + 1] = store_ts
            chunk.used = at + 1
            self._count += 1
            return
        numbers = array("q", (store_ts,)) * (2 * len(keys))
        numbers[0::2] = array("q", offsets)
        self._pending_keys += keys
        self._pending_numbers += numbers
        self._hold(keys, numbers)

    def _hold(self, keys: list[str], numbers: array[int]) -> None:
        """Keep entries in memory: their hashes, and (commit log offset, store time) pairs."""
        hashes = array("q", map(hash, keys)).tobytes()
        n, done = len(keys), 0
        while done < n:
            chunk = self._chunks[-1] if self._chunks and self._chunks[-1].used < self._chunks[-1].size else None
            if chunk is None:
                chunk = _Chunk(max(1, min(CHUNK_ENTRIES, self.entries_max // 2)))
                self._chunks.append(chunk)
            take = min(n - done, chunk.size - chunk.used)
            at = chunk.used
            chunk.hashes[8 * at : 8 * (at + take)] = hashes[8 * done : 8 * (done + take)]
            chunk.entries[2 * at : 2 * (at + take)] = numbers[2 * done : 2 * (done + take)]
            chunk.used += take
            done += take
        self._count += n
        if self._count > self.entries_max:
            self._forget(self._count - self.entries_max // 2)

    def _forget(self, drop: int) -> None:
        """Forget the ``drop`` oldest entries (whole chunks go; the next one is cut in front)."""
        self._count -= drop
        while drop:
            chunk = self._chunks[0]
            live = chunk.used - chunk.start
            if live <= drop and len(self._chunks) > 1:
                del self._chunks[0]
                drop -= live
            else:
                chunk.start += drop
                drop = 0

    def __len__(self) -> int:
        if self._later:
            self._drain()
        return self._count

    def mark(self, log_id: int, below: int) -> None:
        """Queue log ``log_id`` is indexed below queue offset ``below``."""
        if self._later:
            self._drain()
        self._mark(log_id, below)

    def _mark(self, log_id: int, below: int) -> None:
        if below > self._watermarks.get(log_id, 0):
            self._watermarks[log_id] = below
            self._dirty_marks.add(log_id)

    def lookup(self, key: str, begin_ms: int, end_ms: int, max_num: int) -> list[int]:
        """Commit log offsets of messages that may have this key (check them), stored in
        [begin_ms, end_ms], newest first."""
        if self._later:
            self._drain()
        limit = max(1, min(max_num, RESULTS_MAX))
        needle = _HASH.pack(hash(key))
        hits: list[int] = []
        for chunk in reversed(self._chunks):
            hashes, entries, lo = chunk.hashes, chunk.entries, 8 * chunk.start
            at = hashes.rfind(needle, lo, 8 * chunk.used)
            while at >= 0:
                if at % 8 == 0:
                    i = at // 4
                    if begin_ms <= entries[i + 1] <= end_ms:
                        hits.append(entries[i])
                        if len(hits) >= limit:
                            return hits
                at = hashes.rfind(needle, lo, at + 7)
        return hits

    @property
    def last_update(self) -> tuple[int, int]:
        """(timestamp, commit log offset) of the newest entry, for the QUERY response header."""
        return (0, 0)

    # -- persistence -----------------------------------------------------------------------------

    async def flush(self) -> None:
        if self._later:
            self._drain()
        if self._log is None or not (self._pending_keys or self._dirty_marks):
            return
        keys, numbers = self._pending_keys, self._pending_numbers
        self._pending_keys, self._pending_numbers = [], array("q")
        entries = []
        pack = ENTRY.pack
        for key, phys, ts in zip(keys, numbers[0::2], numbers[1::2], strict=True):
            raw = key.encode()
            entries.append(pack(phys, ts, len(raw)) + raw)
        for log_id in sorted(self._dirty_marks):
            entries.append(ENTRY.pack(encode_commitlog_offset(log_id, self._watermarks[log_id]), 0, 0))
        self._dirty_marks.clear()
        for i in range(0, len(entries), BATCH_ENTRIES_MAX):
            chunk = entries[i : i + BATCH_ENTRIES_MAX]
            now = self.store.clock.now_ms()
            await self._log.append(build_opaque_batch(b"".join(chunk), len(chunk), now, now))

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:
                log.exception("key index flush failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
