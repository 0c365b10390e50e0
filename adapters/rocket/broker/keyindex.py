"""The key index: ``topic#key`` -> commit log offsets, for QUERY_MESSAGE by UNIQ_KEY or KEYS.

Persistent as its own logstore log (``.keyindex``, a name no queue can have). Each batch's
records section is a run of entries::

    int64 commitlog_offset | int64 store_timestamp_ms | int16 key_length | key (UTF-8)

An entry with an empty key is a watermark: everything in the queue log whose id is in the top
bits of ``commitlog_offset`` is indexed below its queue offset. Entries are buffered and
appended every ``flush_interval_s`` (one batch), so the send path never waits for the index.
After a crash the tail of the index may be missing; ``recover`` re-indexes every queue log from
its watermark to its end (RocketMQ re-dispatches the commit log the same way).

In memory an entry is 24 bytes: the key's 64-bit hash in one bytearray (searched with
``bytearray.find``, at C speed, only when someone queries) and its commit log offset and store
time in an array; no per-key object, so the send path's cost does not grow with the index.
Hits are candidates: callers check the message really has the key (a hash may collide). At
most ``ENTRIES_MAX`` entries are kept (RocketMQ's maxIndexNum); past it the oldest half is
forgotten, as RocketMQ's oldest index files go.
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
_HASH = struct.Struct("=q")


def index_keys_of(topic: str, properties: str) -> list[str]:
    """:func:`index_keys` of a message's encoded properties (the send path's: one search per
    key property instead of decoding every property)."""
    return _keys(topic, property_value(properties, PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX),
                 property_value(properties, PROPERTY_KEYS))


def index_keys(topic: str, properties: dict[str, str]) -> list[str]:
    return _keys(topic, properties.get(PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX), properties.get(PROPERTY_KEYS))


def _keys(topic: str, uniq: str | None, keys_text: str | None) -> list[str]:
    keys = []
    if uniq:
        keys.append(f"{topic}#{uniq}")
    for k in (keys_text or "").split(" "):
        if k:
            keys.append(f"{topic}#{k}")
    return keys


class KeyIndex:
    def __init__(self, store: Store, log_config: LogConfig) -> None:
        self.store = store
        self.log_config = log_config
        self._log: Log | None = None
        self._hashes = bytearray()  # the keys' hash(), 8 bytes each (native order)
        self._entries = array("q")  # commit log offset, store time: two per entry
        self.entries_max = ENTRIES_MAX
        self._watermarks: dict[int, int] = {}  # queue log id -> indexed below this offset
        self._pending: list[tuple[int, int, str]] = []  # (phys, store time, key), encoded by flush
        self._dirty_marks: set[int] = set()
        self._task: asyncio.Task[None] | None = None

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
        while p < len(payload):
            phys, ts, klen = ENTRY.unpack_from(payload, p)
            p += ENTRY.size
            key = bytes(payload[p : p + klen]).decode()
            p += klen
            if key:
                self._add_one(key, phys, ts)
            else:
                log_id, below = decode_commitlog_offset(phys)
                self._watermarks[log_id] = max(self._watermarks.get(log_id, 0), below)

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

    def add(self, keys: list[str], phys: int, store_ts: int) -> None:
        self.add_many(((keys, phys),), store_ts)

    def add_many(self, keyed: Iterable[tuple[list[str], int]], store_ts: int) -> None:
        """Index every (keys, commit log offset) of one append (a batch send's messages in
        one pass: this runs for every message sent)."""
        pending, entries, pack = self._pending, self._entries, _HASH.pack
        hashes = bytearray()
        for keys, phys in keyed:
            for key in keys:
                hashes += pack(hash(key))
                entries.append(phys)
                entries.append(store_ts)
                pending.append((phys, store_ts, key))
        self._hashes += hashes
        self._trim()

    def _add_one(self, key: str, phys: int, store_ts: int) -> None:
        self._hashes += _HASH.pack(hash(key))
        self._entries.append(phys)
        self._entries.append(store_ts)
        self._trim()

    def _trim(self) -> None:
        if len(self._entries) > 2 * self.entries_max:
            keep = self.entries_max // 2
            del self._hashes[: len(self._hashes) - 8 * keep]
            del self._entries[: len(self._entries) - 2 * keep]

    def __len__(self) -> int:
        return len(self._entries) // 2

    def mark(self, log_id: int, below: int) -> None:
        """Queue log ``log_id`` is indexed below queue offset ``below``."""
        if below > self._watermarks.get(log_id, 0):
            self._watermarks[log_id] = below
            self._dirty_marks.add(log_id)

    def lookup(self, key: str, begin_ms: int, end_ms: int, max_num: int) -> list[int]:
        """Commit log offsets of messages that may have this key (check them), stored in
        [begin_ms, end_ms], newest first."""
        limit = max(1, min(max_num, RESULTS_MAX))
        needle = _HASH.pack(hash(key))
        hashes, entries = self._hashes, self._entries
        hits = []
        at = hashes.rfind(needle)
        while at >= 0:
            if at % 8 == 0:
                i = at // 4
                if begin_ms <= entries[i + 1] <= end_ms:
                    hits.append(entries[i])
                    if len(hits) >= limit:
                        break
            at = hashes.rfind(needle, 0, at + 7)
        return hits

    @property
    def last_update(self) -> tuple[int, int]:
        """(timestamp, commit log offset) of the newest entry, for the QUERY response header."""
        return (0, 0)

    # -- persistence -----------------------------------------------------------------------------

    async def flush(self) -> None:
        if self._log is None or not (self._pending or self._dirty_marks):
            return
        pending, self._pending = self._pending, []
        entries = []
        for phys, ts, key in pending:
            raw = key.encode()
            entries.append(ENTRY.pack(phys, ts, len(raw)) + raw)
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
