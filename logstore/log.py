"""A log: one ordered, durable sequence of record batches (a RocketMQ queue, a Kafka partition).

Offsets are assigned here, densely, in append order. Readers see offsets below
``committed_offset``: under ``async`` that is everything written, under ``sync`` everything an
fsync covered (a reader never sees a batch whose append could still fail).
"""

from __future__ import annotations

import asyncio
import bisect
import posixpath
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from logstore import batch as rb
from logstore.batch import BatchHeader, Record
from logstore.config import FLUSH_SYNC, LogConfig
from logstore.epochs import EpochCache
from logstore.errors import (
    ClosedError,
    InvalidBatchError,
    LogFailedError,
    LogstoreError,
    OffsetOutOfRangeError,
)
from logstore.io import IO, Buffer, Clock, File
from logstore.segment import Segment

T = TypeVar("T")
OFFSET_DELTA_MAX = 2**31 - 1


class StoreHooks(Protocol):
    """What a log needs from its store (kept narrow so the log stays testable)."""

    io: IO
    clock: Clock

    def enqueue_sync(self, log: Log, parts: list[Buffer], total: int, next_offset: int, max_ts: int,
                     records: int) -> asyncio.Future[None]: ...

    def note_async_write(self, log: Log) -> None: ...

    def run_blocking(self, fn: Callable[[], T]) -> Awaitable[T]: ...

    async def write_checkpoint(self) -> None: ...

    async def checkpoint(self) -> None: ...

    def journal_retired(self) -> bool: ...


_new_result = tuple.__new__


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    max_timestamp_ms: int


@dataclass(frozen=True)
class Region:
    """Bytes ``[position, position + length)`` of a segment file: whole batches, ready for
    ``os.sendfile``."""

    file: File
    position: int
    length: int


@dataclass(frozen=True)
class ReadResult:
    regions: tuple[Region, ...]
    first_offset: int  # base offset of the first batch (may be below the requested offset)
    next_offset: int  # where the next read should start
    committed_offset: int

    @property
    def nbytes(self) -> int:
        return sum(r.length for r in self.regions)

    def data(self) -> bytes:
        return b"".join(r.file.pread(r.length, r.position) for r in self.regions)


class Log:
    def __init__(
        self, hooks: StoreHooks, name: str, directory: str, config: LogConfig,
        segments: list[Segment], log_start_offset: int, recovery_point: int,
    ) -> None:
        self.hooks = hooks
        self.io = hooks.io
        self.name = name
        self.name_bytes = name.encode()
        self.directory = directory
        self.config = config  # frozen, and never replaced
        self.is_sync = config.flush == FLUSH_SYNC  # read on every append: a plain attribute
        self.segments = segments
        self.log_start_offset = log_start_offset
        self.persisted_log_start = log_start_offset  # what the checkpoint file says
        self.recovery_point = recovery_point
        self.dir_dirty = False  # set by _new_segment: a segment made here needs a dir fsync
        if not segments:
            self.segments.append(self._new_segment(log_start_offset))
        self.end_offset = self.segments[-1].next_offset  # written
        self.assigned_offset = self.end_offset  # given to appends (sync ones may be queued)
        self.committed_offset = self.end_offset
        self._visible = (self.segments[-1].base_offset, self.segments[-1].size)
        self.failure: BaseException | None = None
        self.closed = False
        self.unflushed_bytes = 0
        self.last_flush_ms = hooks.clock.now_ms()
        self._waiters: list[asyncio.Future[None]] = []
        self._watchers: dict[asyncio.Event, None] = {}  # ordered: the simulation replays exactly
        # Retention and delete_records_before await between choosing segments and dropping
        # them; two passes at once (the background task and a caller) would drop twice.
        self._start_lock = asyncio.Lock()
        self._bases = [s.base_offset for s in self.segments]
        # Replication (logstore/replication): the epoch appends are stamped with, the
        # epoch -> start offset cache over the stamps, and the offset every in-sync replica
        # has (kept by the leader's LeaderState, or learnt from the leader by a follower).
        self.leader_epoch = 0
        self.epochs = EpochCache()
        self.high_watermark = 0

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    def __repr__(self) -> str:
        return f"Log({self.name!r}, start={self.log_start_offset}, end={self.end_offset})"

    # -- append -----------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.closed:
            raise ClosedError(f"log {self.name} is closed")
        if self.failure is not None:
            raise LogFailedError(f"log {self.name} is fail-stopped: {self.failure}") from self.failure

    async def append(self, batch: Buffer, *, leader_epoch: int | None = None) -> AppendResult:
        """Append one encoded batch (from :func:`logstore.batch.build_batch`). The log assigns
        its offsets and stamps the leader epoch (the log's current one unless given). Returns
        when the batch is acknowledged under the log's flush policy."""
        result, durable = self.start_append(batch, leader_epoch=leader_epoch)
        if durable is not None:
            await durable
            self.check_acknowledged(result)
        return result

    def start_append(self, batch: Buffer, *, leader_epoch: int | None = None) -> tuple[AppendResult, asyncio.Future[None] | None]:
        """The part of :meth:`append` that does not wait: validate, assign the offsets, write
        (``async``) or queue for the next group commit (``sync``). Offsets are assigned here,
        so a caller that reads ``assigned_offset`` and calls this with no await in between
        knows them in advance. For a sync log the second item is the group-commit round's
        future, shared with other appends: await it (shielded if the waiter can be
        cancelled), then call :meth:`check_acknowledged`. None when already acknowledged."""
        if self.failure is not None or self.closed:
            self._check_writable()
        view = memoryview(batch)
        count, batch_length, max_ts, magic, crc = rb.validate_for_append(view, self.config.batch_bytes_max)
        if leader_epoch is None:
            leader_epoch = self.leader_epoch
        if leader_epoch != self.epochs.last_epoch:
            self._note_epoch(leader_epoch, self.assigned_offset)
        total = len(view)
        base = self.assigned_offset
        next_offset = self.assigned_offset = base + count
        # The stamp travels with the magic and CRC after it (the bytes the journal's entry CRC
        # covers, as one object); the rest of the batch is the caller's buffer, not copied.
        parts: list[Buffer] = [rb.STAMPED_PREFIX.pack(base, batch_length, leader_epoch, magic, crc),
                               view[rb.CRC_COVERS_FROM:]]
        result = _new_result(AppendResult, (base, next_offset - 1, max_ts))  # AppendResult(...), faster
        if self.is_sync:
            return result, self.hooks.enqueue_sync(self, parts, total, next_offset, max_ts, count)
        try:
            self.write(parts, total, next_offset, max_ts)
        except OSError as exc:
            self.fail(exc)
            raise LogFailedError(f"write to log {self.name} failed: {exc}") from exc
        self.commit()
        self.hooks.note_async_write(self)
        return result, None

    def _note_epoch(self, epoch: int, base_offset: int) -> None:
        if epoch < self.epochs.last_epoch:
            raise LogstoreError(f"leader epoch {epoch} is below epoch {self.epochs.last_epoch} "
                                f"already in log {self.name}")
        self.epochs.assign(epoch, base_offset)

    def append_replicated(self, data: Buffer) -> int:
        """A follower's append: whole batches fetched from the leader, stamped there (offsets and
        epochs kept as they are). Every batch is checked (structure, CRC, size limit, offsets
        continuing this log's end, epochs never going down) before any is written: a bad one
        raises InvalidBatchError and nothing is written. Written to the page cache and visible
        at once (as an ``async`` append); the caller flushes when the log's policy asks for
        durability before the leader is told. Returns the new end offset."""
        self._check_writable()
        if self.assigned_offset != self.end_offset:
            raise LogstoreError(f"log {self.name} has leader appends in flight; it cannot follow")
        view = memoryview(data)
        items: list[tuple[list[Buffer], int, int, int]] = []
        epochs: list[tuple[int, int]] = []
        expected, last_epoch, pos = self.end_offset, self.epochs.last_epoch, 0
        while pos < len(view):
            h = rb.validate(view, pos, limit=self.config.batch_bytes_max)
            if h.base_offset != expected:
                raise InvalidBatchError(f"replicated batch at offset {h.base_offset} where log {self.name} "
                                        f"expects {expected}")
            if h.leader_epoch < last_epoch:
                raise InvalidBatchError(f"replicated batch of epoch {h.leader_epoch} after epoch {last_epoch}")
            if h.leader_epoch > last_epoch:
                epochs.append((h.leader_epoch, h.base_offset))
                last_epoch = h.leader_epoch
            items.append(([view[pos : pos + h.total_bytes]], h.total_bytes, h.next_offset, h.max_timestamp_ms))
            expected = h.next_offset
            pos += h.total_bytes
        if not items:
            return self.end_offset
        for epoch, start in epochs:
            self.epochs.assign(epoch, start)
        try:
            self.write_many(items)
        except OSError as exc:
            self.fail(exc)
            raise LogFailedError(f"write to log {self.name} failed: {exc}") from exc
        self.assigned_offset = self.end_offset
        self.commit()
        self.hooks.note_async_write(self)
        return self.end_offset

    def check_acknowledged(self, result: AppendResult) -> None:
        """After a sync append's round future resolved: raise if the round did not cover it."""
        if self.committed_offset <= result.last_offset:
            raise LogFailedError(f"log {self.name} is fail-stopped: {self.failure}")

    def write(self, parts: list[Buffer], total: int, next_offset: int, max_ts: int) -> None:
        """Put a stamped batch into the active segment (page cache), rolling first if due.
        The batch starts at ``end_offset`` and ends before ``next_offset``."""
        seg = self.active
        if seg.size and (
            seg.size + total > self.config.segment_bytes
            or self.hooks.clock.now_ms() - seg.created_ms >= self.config.segment_ms
            or next_offset - seg.base_offset > OFFSET_DELTA_MAX
        ):
            seg = self._roll(self.end_offset)
        seg.append(parts, total, self.end_offset, next_offset, max_ts)
        self.end_offset = next_offset
        self.unflushed_bytes += total

    def write_many(self, items: list[tuple[list[Buffer], int, int, int]]) -> None:
        """Write several stamped batches (parts, total bytes, next offset, max timestamp) in
        order, with one system call when no roll falls among them."""
        seg = self.active
        total = sum(item[1] for item in items)
        if len(items) == 1 or (
            seg.size + total > self.config.segment_bytes
            or self.hooks.clock.now_ms() - seg.created_ms >= self.config.segment_ms
            or items[-1][2] - seg.base_offset > OFFSET_DELTA_MAX
        ):
            for parts, nbytes, nxt, max_ts in items:
                self.write(parts, nbytes, nxt, max_ts)
            return
        flat: list[Buffer] = []
        batches = []
        base = self.end_offset
        for parts, nbytes, nxt, max_ts in items:
            flat += parts
            batches.append((nbytes, base, nxt, max_ts))
            base = nxt
        seg.append_many(flat, batches)
        self.end_offset = base
        self.unflushed_bytes += total

    def _new_segment(self, base_offset: int) -> Segment:
        seg = Segment.create(self.io, self.directory, base_offset, self.hooks.clock.now_ms(),
                             self.config.index_interval_bytes)
        self.dir_dirty = True
        return seg

    def _roll(self, base_offset: int) -> Segment:
        seg = self._new_segment(base_offset)
        self.segments.append(seg)
        self._bases.append(base_offset)
        return seg

    def commit(self) -> None:
        """Make everything written visible to readers and wake long-polling waiters."""
        self.commit_to(self.end_offset, self.active.base_offset, self.active.size, force=True)

    def commit_to(self, end_offset: int, segment_base: int, segment_size: int, *, force: bool = False) -> None:
        """Make what was written up to ``end_offset`` (which ends at ``segment_size`` bytes of
        the segment based at ``segment_base``) visible, and wake long-polling waiters. Never
        backwards unless forced (a truncation)."""
        if end_offset < self.committed_offset and not force:
            return
        self.committed_offset = end_offset
        self._visible = (segment_base, segment_size)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if self._watchers:
            self._wake_watchers()

    def _wake_watchers(self) -> None:
        for ev in self._watchers:
            ev.set()

    def add_watcher(self, event: asyncio.Event) -> None:
        """Set ``event`` at every commit, truncation and high-watermark advance until removed
        (one event can watch many logs: a replica fetch long-polls them all)."""
        self._watchers[event] = None

    def remove_watcher(self, event: asyncio.Event) -> None:
        self._watchers.pop(event, None)

    def set_high_watermark(self, offset: int) -> None:
        """Move the high watermark (never past the end), waking watchers when it moves."""
        offset = min(offset, self.end_offset)
        if offset != self.high_watermark:
            self.high_watermark = offset
            self._wake_watchers()

    def fail(self, exc: BaseException) -> None:
        """Fail-stop: no retry, every later append gets LogFailedError."""
        if self.failure is None:
            self.failure = exc
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_exception(LogFailedError(f"log {self.name} is fail-stopped: {exc}"))

    # -- flush --------------------------------------------------------------------------------

    def take_dirty(self) -> tuple[int, list[Segment], bool]:
        """Claim what an fsync must cover now: (end offset, dirty segments, dir dirty)."""
        dirty = [s for s in self.segments if s.dirty]
        for s in dirty:
            s.dirty = False
        dir_dirty, self.dir_dirty = self.dir_dirty, False
        self.unflushed_bytes = 0
        return self.end_offset, dirty, dir_dirty

    def sync_claimed(self, dirty: list[Segment], dir_dirty: bool) -> None:
        """Blocking part of a flush (may run in a worker thread)."""
        for s in dirty:
            s.sync()
        if dir_dirty:
            self.io.fsync_dir(self.directory)

    async def flush(self) -> None:
        """fsync everything written so far and advance the recovery point (not persisted
        until the next checkpoint)."""
        if self.failure is not None:
            raise LogFailedError(f"log {self.name} is fail-stopped: {self.failure}")
        end, dirty, dir_dirty = self.take_dirty()
        self.last_flush_ms = self.hooks.clock.now_ms()
        if not dirty and not dir_dirty:
            self.recovery_point = max(self.recovery_point, end)
            return
        try:
            await self.hooks.run_blocking(lambda: self.sync_claimed(dirty, dir_dirty))
        except OSError as exc:
            self.fail(exc)
            raise LogFailedError(f"fsync of log {self.name} failed: {exc}") from exc
        self.recovery_point = max(self.recovery_point, end)

    # -- read ---------------------------------------------------------------------------------

    def _check_readable(self, offset: int) -> None:
        if offset < self.log_start_offset or offset > self.committed_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self.log_start_offset}, {self.committed_offset}] of log {self.name}"
            )

    def _segment_index(self, offset: int) -> int:
        return max(0, bisect.bisect_right(self._bases, offset) - 1)

    def _limit(self, seg: Segment) -> int:
        vbase, vpos = self._visible
        if seg.base_offset < vbase:
            return seg.size
        return vpos if seg.base_offset == vbase else 0

    def read(self, offset: int, max_bytes: int = 1024 * 1024) -> ReadResult:
        """Whole batches from the one holding ``offset``: about ``max_bytes`` (at least one
        batch), from a single segment. Empty at the committed end."""
        self._check_readable(offset)
        i = self._segment_index(offset)
        while i < len(self.segments) and offset < self.committed_offset:
            seg = self.segments[i]
            limit = self._limit(seg)
            found = seg.locate(offset, limit)
            if found is not None:
                start, h = found
                end, next_offset = seg.region_end(start, max(1, max_bytes), limit)
                return ReadResult((Region(seg.file, start, end - start),), h.base_offset, next_offset, self.committed_offset)
            i += 1
        return ReadResult((), offset, offset, self.committed_offset)

    def read_records(self, offset: int, max_bytes: int = 1024 * 1024) -> list[Record]:
        """Decoded records from ``offset`` (records of the first batch below it are skipped)."""
        result = self.read(offset, max_bytes)
        data = result.data()
        out: list[Record] = []
        pos = 0
        while pos < len(data):
            h = rb.validate(data, pos)  # check after read: never hand out a corrupt record
            out.extend(r for r in rb.iter_records(data, pos) if r.offset >= offset)
            pos += h.total_bytes
        return out

    def iter_batches(self, offset: int, max_bytes: int = 1024 * 1024) -> Iterator[tuple[BatchHeader, bytes]]:
        data = self.read(offset, max_bytes).data()
        pos = 0
        while pos < len(data):
            h = rb.validate(data, pos)
            yield h, data[pos : pos + h.total_bytes]
            pos += h.total_bytes

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first offset whose record timestamp is >= ``timestamp_ms`` (None if none)."""
        for seg in self.segments:
            if seg.max_timestamp_ms < timestamp_ms:
                continue
            rel = seg.index.time_floor(timestamp_ms)
            start = max(seg.base_offset + rel, self.log_start_offset)
            limit = self._limit(seg)
            found = seg.locate(start, limit)
            if found is None:
                continue
            for pos, h in seg.walk(found[0], limit):
                if h.max_timestamp_ms >= timestamp_ms:
                    if h.attributes & rb.ATTR_OPAQUE:
                        # Records the engine may not decode: the batch is the finest grain.
                        return max(h.base_offset, self.log_start_offset)
                    raw = seg.read_bytes(pos, pos + h.total_bytes)
                    for rec in rb.iter_records(raw):
                        if rec.timestamp_ms >= timestamp_ms and rec.offset >= self.log_start_offset:
                            return rec.offset
        return None

    async def wait_for(self, offset: int, timeout_s: float) -> bool:
        """Wait until ``committed_offset > offset`` (data at ``offset`` is readable) or the
        timeout passes. Returns whether data arrived. For long-polling readers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.committed_offset <= offset:
            if self.failure is not None:
                raise LogFailedError(f"log {self.name} is fail-stopped: {self.failure}")
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return self.committed_offset > offset
        return True

    # -- truncate, retention --------------------------------------------------------------------

    async def _retire_journal(self, what: str) -> None:
        """Before cutting batches: checkpoint, so queued sync appends land and the journal no
        longer holds this log's batches. A fail-stopped log keeps the old journal files, and
        recovery would replay the batches the cut removes: refuse rather than let them back."""
        await self.hooks.checkpoint()
        if self.is_sync and not self.hooks.journal_retired():
            raise LogstoreError(f"cannot {what} sync log {self.name}: the journal still holds its batches "
                                "(another log is fail-stopped; restart the store first)")

    async def truncate_to(self, offset: int) -> int:
        """Remove every batch at or after ``offset`` (a batch holding ``offset`` goes whole).
        Returns the new end offset. Durable when it returns."""
        self._check_writable()
        if offset > self.assigned_offset or offset < self.log_start_offset:
            raise OffsetOutOfRangeError(
                f"truncate to {offset} outside [{self.log_start_offset}, {self.assigned_offset}] of log {self.name}"
            )
        await self._retire_journal("truncate")
        if offset >= self.end_offset:
            return self.end_offset
        i = self._segment_index(offset)
        seg = self.segments[i]
        found = seg.locate(offset, seg.size)
        cut_pos, new_end = (found[0], found[1].base_offset) if found is not None else (seg.size, seg.next_offset)
        if new_end < self.log_start_offset:
            # the batch holding ``offset`` also holds the log start: cutting it whole would leave
            # the start past the end (and the offsets below it to be assigned again)
            raise OffsetOutOfRangeError(
                f"truncate to {offset} would cut the batch holding the log start {self.log_start_offset} of log {self.name}"
            )
        self.recovery_point = min(self.recovery_point, new_end)
        self.epochs.truncate_from_end(new_end)  # persisted with the rp: no epoch past the data
        self.high_watermark = min(self.high_watermark, new_end)
        await self.hooks.write_checkpoint()  # rp first: a crash now never resurrects the tail
        try:  # any error from here on leaves memory and files disagreeing: fail-stop
            for later in self.segments[i + 1 :]:
                later.remove_files()
            del self.segments[i + 1 :], self._bases[i + 1 :]
            seg.truncate(cut_pos)
            seg.next_offset = new_end
        except OSError as exc:
            self.fail(exc)
            raise LogFailedError(f"truncate of {self.name} failed: {exc}") from exc
        await self._end_cut(seg, new_end, "truncate")
        return new_end

    async def _end_cut(self, seg: Segment, new_end: int, what: str) -> None:
        """The last step of a cut: fsync the segment now last and the directory, then make
        ``new_end`` the end. A failure leaves memory and files disagreeing: fail-stop."""
        try:
            await self.hooks.run_blocking(lambda: self.sync_claimed([seg], True))
        except OSError as exc:
            self.fail(exc)
            raise LogFailedError(f"{what} of {self.name} failed: {exc}") from exc
        self.end_offset = self.assigned_offset = new_end
        self.commit()

    async def truncate_fully_and_start_at(self, offset: int) -> None:
        """Drop every record and make ``offset`` (at or past the end) both the start and the
        end, in place: a follower whose leader's log starts past its end (retention ran
        there) starts over at the leader's start, and whoever holds this ``Log`` sees it.
        Durable when it returns: the new start is checkpointed before any file goes, and
        recovery deletes segments wholly below the start."""
        self._check_writable()
        if offset < self.assigned_offset:
            raise OffsetOutOfRangeError(f"cannot start log {self.name} anew at {offset}: it ends at {self.assigned_offset}")
        async with self._start_lock:
            await self._retire_journal("reset")
            self.log_start_offset = self.recovery_point = offset
            self.epochs.clear()
            self.high_watermark = offset
            await self.hooks.write_checkpoint()
            try:  # any error from here on leaves memory and files disagreeing: fail-stop
                for seg in self.segments:
                    seg.remove_files()
                seg = self._new_segment(offset)
                self.segments[:] = [seg]
                self._bases[:] = [offset]
                seg.dirty = False
                self.dir_dirty = False
            except OSError as exc:
                self.fail(exc)
                raise LogFailedError(f"reset of {self.name} failed: {exc}") from exc
            self.unflushed_bytes = 0
            await self._end_cut(seg, offset, "reset")

    async def delete_records_before(self, offset: int) -> int:
        """Make ``offset`` the log start; delete segments wholly below it. Returns the start."""
        async with self._start_lock:
            return await self._delete_records_before(offset)

    async def _delete_records_before(self, offset: int) -> int:
        self._check_writable()
        if offset > self.committed_offset:
            raise OffsetOutOfRangeError(f"cannot delete before {offset}: log {self.name} ends at {self.committed_offset}")
        if offset <= self.log_start_offset and offset <= self.persisted_log_start:
            return self.log_start_offset
        offset = max(offset, self.log_start_offset)  # an earlier call that failed to persist
        await self._flush_through(offset)
        self.log_start_offset = offset
        self.epochs.truncate_from_start(offset)
        await self._drop_segments_below(offset)
        return offset

    async def apply_retention(self) -> int:
        """Delete whole non-active segments too old or beyond the size budget. Returns how many."""
        async with self._start_lock:
            return await self._apply_retention()

    async def _apply_retention(self) -> int:
        now = self.hooks.clock.now_ms()
        total = sum(s.size for s in self.segments)
        drop = 0
        for seg in self.segments[:-1]:
            too_old = self.config.retention_ms >= 0 and 0 <= seg.max_timestamp_ms < now - self.config.retention_ms
            too_big = self.config.retention_bytes >= 0 and total > self.config.retention_bytes
            if not (too_old or too_big):
                break
            total -= seg.size
            drop += 1
        if drop:
            new_start = self.segments[drop].base_offset
            await self._flush_through(new_start)
            self.log_start_offset = max(self.log_start_offset, new_start)
            self.epochs.truncate_from_start(self.log_start_offset)
            await self._drop_segments_below(self.log_start_offset)
        return drop

    async def _flush_through(self, offset: int) -> None:
        """Make the data below ``offset`` durable before a log start there can be persisted (by
        any checkpoint): a start past the durable data would outrun it after a crash."""
        if offset > self.recovery_point:
            await self.flush()

    async def _drop_segments_below(self, offset: int) -> None:
        await self.hooks.write_checkpoint()  # the new start is durable before any file goes
        drop = [s for s in self.segments[:-1] if s.next_offset <= offset]
        for seg in drop:
            seg.remove_files()
        del self.segments[: len(drop)], self._bases[: len(drop)]
        if drop:
            await self.hooks.run_blocking(lambda: self.io.fsync_dir(self.directory))

    # -- recovery of the replication state -----------------------------------------------------

    def _headers_from(self, offset: int) -> Iterator[BatchHeader]:
        """Headers (no CRC check: recovery validated the data) of the batches from the one
        holding ``offset`` to the end."""
        if offset >= self.end_offset:
            return
        i = self._segment_index(offset)
        found = self.segments[i].locate(offset, self.segments[i].size)
        pos = found[0] if found is not None else self.segments[i].size
        for seg in self.segments[i:]:
            for _p, h in seg.walk(pos, seg.size):
                yield h
            pos = 0

    def recover_epochs(self, entries: list[tuple[int, int]], scan_from: int) -> bool:
        """Rebuild the epoch cache after recovery: the persisted ``entries`` cut to the data,
        extended by the batches from ``scan_from`` (data the checkpoint may not cover), each
        entry checked against the batch at its start. When one disagrees the whole cache is
        rebuilt from batch headers (returns True)."""
        self.epochs = EpochCache()
        try:
            for epoch, start in entries:
                # an epoch may start at the end: a leader that has not appended in it yet
                if start <= self.end_offset:
                    self.epochs.assign(epoch, start)
        except ValueError:
            return self._rebuild_epochs()
        self.epochs.truncate_from_start(self.log_start_offset)
        for h in self._headers_from(max(self.log_start_offset, min(scan_from, self.end_offset))):
            if h.leader_epoch < self.epochs.last_epoch and h.base_offset >= scan_from:
                return self._rebuild_epochs()
            if h.leader_epoch > self.epochs.last_epoch:
                self.epochs.assign(h.leader_epoch, max(h.base_offset, self.log_start_offset))
        for epoch, start in self.epochs.entries():
            if start == self.end_offset:
                continue
            first = next(self._headers_from(start), None)
            if first is None or first.leader_epoch != epoch or (start > self.log_start_offset and first.base_offset != start):
                return self._rebuild_epochs()
        if self.end_offset > self.log_start_offset and not len(self.epochs):
            return self._rebuild_epochs()
        return False

    def _rebuild_epochs(self) -> bool:
        self.epochs = EpochCache()
        for h in self._headers_from(self.log_start_offset):
            if h.leader_epoch > self.epochs.last_epoch:
                self.epochs.assign(h.leader_epoch, max(h.base_offset, self.log_start_offset))
        return True

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def close_files(self) -> None:
        self.closed = True
        for seg in self.segments:
            seg.close()
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        self._wake_watchers()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "log_start_offset": self.log_start_offset,
            "end_offset": self.end_offset, "committed_offset": self.committed_offset,
            "recovery_point": self.recovery_point, "segments": len(self.segments),
            "bytes": self.size_bytes(), "flush": self.config.flush,
            "failed": None if self.failure is None else str(self.failure),
        }


def log_directory(root: str, name: str) -> str:
    return posixpath.join(root, "logs", name)
