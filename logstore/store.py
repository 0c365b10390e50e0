"""A store: a directory of named logs, their configs, the shared journal, checkpoints, a lock.

Layout::

    <root>/.lock                  flock'ed while a process has the store open
    <root>/.clean_shutdown        present only between a clean close and the next open
    <root>/checkpoint             recovery points, log starts, journal start (checkpoint.py)
    <root>/journal/<seq>.wal      group-commit journal of sync logs (journal.py)
    <root>/logs/<name>/config.json
    <root>/logs/<name>/<base>.log / .index / .timeindex   (segment.py, index.py)

Group commit (sync logs): appends queue; a round (started by a callback the round's first append
schedules, or by the flusher task when it must wait for a journal rotation, a checkpoint or a
full pipeline) takes everything queued, writes it to the journal and to the segments, runs one
fdatasync of the journal (on the loop's thread for a small round on a fast disk; through an
io_uring, uring.py, where the kernel has one; else in a worker thread), then acknowledges the
whole round (journal writes stay in order: on the loop's thread, or on one journal thread; the
fdatasyncs of two rounds in flight run on two threads at once, see worker.py). Appends that
arrive while that fsync runs form the next round, so throughput grows with concurrency and there
is no timed sleep. A caller may ask to be called as soon as its round is durable, before the
round's segment writes (``Store.when_durable``). Async logs are fsynced by a background task
every ``flush_interval_ms`` (or sooner past ``flush_interval_bytes``); the same task writes a
checkpoint every ``checkpoint_interval_ms``, after which old journal files are deleted.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import posixpath
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from logstore import checkpoint as ckpt
from logstore import journal as jn
from logstore import recovery
from logstore.config import LogConfig
from logstore.errors import (
    ClosedError,
    CorruptLogError,
    InvalidNameError,
    LogExistsError,
    LogFailedError,
    LogNotFoundError,
    LogstoreError,
    StoreLockedError,
)
from logstore.io import IO, Buffer, Clock, FsyncQueue, Lock, RealIO, SystemClock
from logstore.log import Log, log_directory
from logstore.uring import ENTRIES_MAX
from logstore.worker import OrderedWorker

logger = logging.getLogger("logstore.store")
T = TypeVar("T")
LOCK_NAME = ".lock"
CLEAN_MARKER = ".clean_shutdown"
JOURNAL_FILE_BYTES = 64 * 1024 * 1024
JOURNAL_FILE_BYTES_SIM = 64 * 1024
JOURNAL_SPARES = 2
CONFIG_NAME = "config.json"
NAME_RE = re.compile(r"^[A-Za-z0-9%|_.-]{1,200}$")


@dataclass(frozen=True)
class StoreConfig:
    checkpoint_interval_ms: int = 1000
    retention_check_interval_ms: int = 10_000
    #: Size of each preallocated journal file; None: 64 MiB on real IO, 64 KiB simulated.
    journal_file_bytes: int | None = None
    #: Group-commit rounds whose fsync may run at once (1: no pipelining).
    rounds_in_flight_max: int = 2
    #: Appends one round takes at most (0: no limit). Smaller rounds let two overlap.
    round_appends_max: int = 0
    #: Threads that write and fdatasync journal rounds: with more than one, the fsyncs of rounds in flight
    #: overlap (writes stay in submission order; acknowledgements stay in round order).
    journal_threads: int = 2
    #: A round with no other round in flight writes and fsyncs the journal on the event loop's
    #: thread, skipping the two thread hand-offs (each a futex wake-up, and a wait for the GIL
    #: while the loop runs Python), when it holds at most this many appends (None: any number;
    #: 0: never) and the last journal fsync took at most ``inline_fsync_ms_max``. The loop
    #: waits out that fsync; on a slower disk the rounds go to the journal threads, so the loop
    #: keeps serving while they sync, until an fsync is fast again.
    inline_round_appends_max: int | None = None
    inline_fsync_ms_max: float = 2.0
    #: Journal fsyncs of rounds that do not run inline go to an io_uring (``uring.py``) where
    #: the kernel allows one: the fsync runs in the kernel while the loop goes on, and no
    #: thread has to take the GIL back to report it. Without one, to the journal threads.
    fsync_ring: bool = True
    #: With a ring, rounds of at least this many records fsync through it even when they could
    #: run inline. A round that holds every sender leaves the loop nothing to do during its
    #: fsync, and then the completion's wake-up is pure cost: inline answers sooner (4 sync
    #: senders: 4.3-4.6k msg/s inline, 4.0k through the ring; 16: about even). A round of many
    #: with more senders behind it keeps the loop serving them during the fsync (64 senders:
    #: 14.7-16.7k against 13.0-14.7k inline). Records, not appends: a broker that stores the
    #: sends of one read to one queue as one append makes rounds of 8 appends of 4 records
    #: (64 senders, 8 queues: 17.5-17.9k msg/s inline, 19.2-19.9k through the ring).
    ring_round_records_min: int = 16
    #: ``rounds_in_flight_max`` while the ring is in use: one fsync at a time, the appends that
    #: arrive meanwhile form the next round (64 sync senders: 14.7-15.4k msg/s against 13.0-13.3k
    #: inline; two in flight made smaller rounds and cost more per append).
    ring_rounds_in_flight_max: int = 1
    default_log_config: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.rounds_in_flight_max < 1:
            raise ValueError(f"rounds_in_flight_max must be at least 1, got {self.rounds_in_flight_max}")
        if not 1 <= self.ring_rounds_in_flight_max <= ENTRIES_MAX:
            raise ValueError(f"ring_rounds_in_flight_max must be 1..{ENTRIES_MAX}, got {self.ring_rounds_in_flight_max}")
        if self.ring_round_records_min < 1:
            raise ValueError(f"ring_round_records_min must be at least 1, got {self.ring_round_records_min}")


@dataclass
class RecoveryReport:
    clean: bool
    logs: dict[str, recovery.LogRecovery] = field(default_factory=dict)
    journal_cut_bytes: int = 0
    journal_stop: str | None = None

    @property
    def bytes_cut(self) -> int:
        return self.journal_cut_bytes + sum(r.bytes_cut for r in self.logs.values())


def check_name(name: str) -> None:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise InvalidNameError(f"log name {name!r} must be 1-200 of A-Z a-z 0-9 % | _ . -")


#: A queued sync append: (log, [stamp, rest of batch], total bytes, next offset, max timestamp).
#: A plain tuple: one is built per append on the hot path.
_Pending = tuple[Log, list[Buffer], int, int, int]


class _Queued:
    """The sync appends of one future round: they share one future."""

    __slots__ = ("appends", "future", "on_durable", "records")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.appends: list[_Pending] = []
        self.future = future
        self.records = 0  # records of the appends (an append may carry many)
        self.on_durable: list[Callable[[], None]] = []  # Store.when_durable


class Store:
    """Open with ``await Store.open(path)``; close with ``await store.close()``."""

    def __init__(self, root: str, io: IO, clock: Clock, config: StoreConfig, lock: Lock) -> None:
        self.root = root
        self.io = io
        self.clock = clock
        self.config = config
        self._lock = lock
        self.logs: dict[str, Log] = {}
        # Logs whose creation awaits its fsyncs: a second create of the name waits for it
        # (two Log objects over the same files, one of them orphaned, otherwise).
        self._creating: dict[str, asyncio.Future[Log]] = {}
        self.journal_start = 0
        self.journal: jn.JournalWriter | None = None
        self._spares: list[int] = []  # retired journal sequences kept for recycling
        self._preparing: asyncio.Future[None] | None = None  # the next journal file being zero-filled
        self.report = RecoveryReport(clean=False)
        # Replication state, persisted in the checkpoint: the leader epoch appends are stamped
        # with (raised by a promotion, or learnt from a leader), and whether this replica may
        # lead (false after a recovery that cut data, until it has caught up with a leader).
        self.leader_epoch = 0
        self.may_lead = True
        self.catalog_version = 0  # bumped by create_log and delete_log (followers LIST again)
        self.failure: BaseException | None = None
        self.closed = False
        # Queued sync appends, in rounds; each round's appends share one future.
        self._batches: collections.deque[_Queued] = collections.deque()
        self._inflight: collections.deque[asyncio.Task[None]] = collections.deque()  # acks pending
        self._wake = asyncio.Event()
        self._kick_due = False  # a call of _kick is scheduled
        self._flush_due: set[Log] = set()  # async logs whose unflushed bytes passed flush_interval_bytes
        self._round_lock = asyncio.Lock()
        self._checkpoint_lock = asyncio.Lock()
        self._written_checkpoint: ckpt.Checkpoint | None = None  # the last one this process wrote
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logstore-fsync")
        self._working: set[concurrent.futures.Future[Any]] = set()  # run_blocking's, until they return
        self._journal_worker = OrderedWorker("logstore-journal", self.config.journal_threads)
        self._tasks: list[asyncio.Task[None]] = []
        self.last_fsync_s = 0.0  # how long the latest journal fsync took
        self.rounds = 0  # group-commit rounds acknowledged
        self.inline_rounds = 0  # rounds fsynced on the loop's thread
        self.ring_rounds = 0  # rounds whose fsync went to the io_uring
        self._ring: FsyncQueue | None = None  # opened by _start (StoreConfig.fsync_ring)
        self._ring_usable = False
        self.round_appends = 0  # sync appends those rounds covered

    # -- open / close ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, root: str, *, io: IO | None = None, clock: Clock | None = None,
        config: StoreConfig | None = None,
    ) -> Store:
        io = io or RealIO()
        io.makedirs(posixpath.join(root, "logs"))
        io.makedirs(posixpath.join(root, jn.DIRNAME))
        try:
            lock = io.lock(posixpath.join(root, LOCK_NAME))
        except BlockingIOError as exc:
            raise StoreLockedError(f"store {root} is open in another process") from exc
        store = cls(root, io, clock or SystemClock(), config or StoreConfig(), lock)
        try:
            store._recover()
        except BaseException:
            store._release()
            raise
        store._start()
        return store

    def _recover(self) -> None:
        cp = ckpt.read(self.io, self.root) or ckpt.Checkpoint()
        marker = posixpath.join(self.root, CLEAN_MARKER)
        clean = self.io.exists(marker)
        self.report = RecoveryReport(clean=clean)
        self.journal_start = cp.journal_start
        self.leader_epoch = cp.leader_epoch
        logs_dir = posixpath.join(self.root, "logs")
        for name in self.io.listdir(logs_dir):
            directory = log_directory(self.root, name)
            config_path = posixpath.join(directory, CONFIG_NAME)
            if not self.io.exists(config_path):
                self._remove_unfinished_log(directory)  # its creation never completed
                continue
            # A failed create_log may have left its config's rename only in the page cache; the
            # log is served from now on, so make its entries durable (one fsync per log).
            self.io.fsync_dir(directory)
            config = LogConfig.from_json(self.io.read_all(config_path))
            rec = recovery.recover_log(
                self.io, name, directory, cp.logs.get(name), clean, self.clock.now_ms(), config.index_interval_bytes
            )
            self.logs[name] = Log(self, name, directory, config, rec.segments, rec.log_start_offset, rec.recovery_point)
            rec.report.end_offset = self.logs[name].end_offset
            self.report.logs[name] = rec.report
        # A log whose create_log failed after its config was written is served from now on:
        # its directory entry must not vanish in a later crash.
        self.io.fsync_dir(logs_dir)
        replayed = self._replay_journal(clean)
        self._recover_replication(cp)
        if clean:
            self.io.unlink(marker)
        seqs = jn.list_files(self.io, self.root)
        file_bytes = self.config.journal_file_bytes or (JOURNAL_FILE_BYTES if self.io.fsync_blocks else JOURNAL_FILE_BYTES_SIM)
        self.journal = jn.JournalWriter(self.io, self.root, max([self.journal_start, *seqs]) + 1, file_bytes)
        if replayed or not clean or self.report.bytes_cut:
            for log in self.logs.values():
                # What recovery read may sit only in the page cache (the process died, the
                # machine did not): the files' data and the directory entries of segments
                # created since the last directory fsync must be made durable before the
                # recovery point claims them.
                log.dir_dirty = True
                for seg in log.segments:
                    seg.dirty = True
                end, dirty, dir_dirty = log.take_dirty()
                log.sync_claimed(dirty, dir_dirty)
                log.recovery_point = end
        self.journal_start = self.journal.seq
        self._write_checkpoint_now()
        self._delete_old_journals()
        self.io.fsync_dir(self.root)

    def _recover_replication(self, cp: ckpt.Checkpoint) -> None:
        """Epoch caches checked against (and extended by) the recovered batches, high
        watermarks no further than the data, and ``may_lead`` cleared when recovery cut
        anything a leader may have counted on (RELIABILITY.md class 5)."""
        for name, log in self.logs.items():
            lc = cp.logs.get(name)
            rebuilt = log.recover_epochs(lc.epochs if lc else [], lc.recovery_point if lc else log.log_start_offset)
            self.report.logs[name].epochs_rebuilt = rebuilt
            log.high_watermark = min(lc.high_watermark if lc else 0, log.end_offset)
            # batches stamped with an epoch whose checkpoint was lost: the data wins
            self.leader_epoch = max(self.leader_epoch, log.epochs.last_epoch)
        self._stamp_with(self.leader_epoch)
        # A sync log's cut tail was never visible (readers and followers see only what the
        # journal's fsync covered, and replay restored that). An async log's tail may have been
        # seen, counted by a leader's high watermark, and lost: cut as torn, or dropped whole by
        # the crash without a trace. So any unclean open with an async log holding data makes
        # this replica ineligible to lead until it has caught up with a leader (the "last
        # replica standing" of KIP-966).
        clean = self.report.clean and not self.report.bytes_cut
        lost = not clean and any(not lg.is_sync and lg.end_offset > lg.log_start_offset for lg in self.logs.values())
        lost = lost or any(r.bytes_cut and not self.logs[n].is_sync for n, r in self.report.logs.items())
        self.may_lead = cp.may_lead and not lost

    def _remove_unfinished_log(self, directory: str) -> None:
        """A create_log that failed before its config was durable leaves a directory the store
        ignores; remove it so the store verifies clean (the name can be created again)."""
        if not self.io.is_dir(directory):
            return
        for entry in self.io.listdir(directory):
            self.io.unlink(posixpath.join(directory, entry))
        self.io.rmdir(directory)
        self.io.fsync_dir(posixpath.dirname(directory))

    def _replay_journal(self, clean: bool) -> int:
        paths = list(jn.iter_paths(self.io, self.root, self.journal_start))
        replayed = 0
        for i, (_seq, path) in enumerate(paths):
            f = self.io.open(path)
            try:
                entries, stop = jn.scan(f, _seq)
                if stop is not None:
                    if i != len(paths) - 1:
                        raise CorruptLogError(f"journal entry bad ({stop.reason}) before the last journal file", path, stop.position)
                    self.report.journal_cut_bytes = stop.bytes_cut
                    self.report.journal_stop = f"{stop.reason} at byte {stop.position} of {path}"
            finally:
                f.close()
            for entry in entries:
                replayed += self._replay_entry(entry, path)
        return replayed

    def _replay_entry(self, entry: jn.JournalEntry, path: str) -> int:
        log = self.logs.get(entry.name)
        if log is None:
            return 0  # the log was deleted after this entry was written
        from logstore import batch as rb  # local: only recovery needs it here

        h = rb.validate(entry.batch)
        if h.next_offset <= log.end_offset:
            return 0
        if h.base_offset != log.end_offset:
            raise CorruptLogError(
                f"journal batch at offset {h.base_offset} but log {log.name} ends at {log.end_offset}", path, entry.position
            )
        log.write([entry.batch], h.total_bytes, h.next_offset, h.max_timestamp_ms)
        log.assigned_offset = log.end_offset
        log.commit()
        self.report.logs[log.name].replayed_batches += 1
        self.report.logs[log.name].end_offset = log.end_offset
        return 1

    def _start(self) -> None:
        cfg = self.config
        if cfg.fsync_ring:
            self._ring = self.io.open_fsync_queue(max(8, cfg.ring_rounds_in_flight_max))  # <= ENTRIES_MAX
            self._ring_usable = self._ring is not None
        self._tasks.append(asyncio.create_task(self._flusher(), name="logstore-flusher"))
        self._tasks.append(asyncio.create_task(self._background(), name="logstore-background"))
        self._prepare_journal()

    def _prepare_journal(self) -> None:
        """With no retired file left to recycle, zero-fill the next journal file in a worker
        thread now, so the rotation that needs it does not (journal.py)."""
        journal = self.journal
        if journal is None or journal.prepared or self._spares or self._preparing is not None or self.failure is not None:
            return

        async def prepare() -> None:
            try:
                await self.run_blocking(journal.prepare)
            except OSError as exc:  # the rotation will create the file itself
                logger.warning("preparing the next journal file failed: %s", exc)
            finally:
                self._preparing = None

        self._preparing = asyncio.ensure_future(prepare())

    async def _rotate_journal(self, journal: jn.JournalWriter) -> int:
        """Rotate in a worker thread, after any preparation of the next file has finished."""
        if self._preparing is not None:
            await asyncio.shield(self._preparing)
        spares = self._spares
        return await self.run_blocking(lambda: journal.rotate(spares))

    async def close(self) -> None:
        """Flush everything, write the checkpoint and the clean-shutdown marker, unlock."""
        if self.closed:
            return
        await self._drain()
        if self._preparing is not None:
            await asyncio.shield(self._preparing)
        self.closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # What a cancelled task left running in a worker thread (the background checkpoint's
        # write of the checkpoint file, its deletion of old journals) ends before the writes below.
        await asyncio.gather(*(asyncio.wrap_future(w) for w in list(self._working)), return_exceptions=True)
        clean = self.failure is None and all(log.failure is None for log in self.logs.values())
        try:
            if clean:
                for log in self.logs.values():
                    end, dirty, dir_dirty = log.take_dirty()
                    log.sync_claimed(dirty, dir_dirty)
                    for seg in log.segments:
                        seg.index.sync()
                    log.recovery_point = end
                assert self.journal is not None
                self.journal_start = self.journal.rotate(self._spares)
                self._write_checkpoint_now()
                self._delete_old_journals()
                ckpt.write_atomic(self.io, posixpath.join(self.root, CLEAN_MARKER), b"clean\n")
        finally:
            for log in self.logs.values():
                log.close_files()
            if self.journal is not None:
                self.journal.close()
            self._release()

    def _release(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._executor.shutdown(wait=False)
        self._journal_worker.close()
        self._lock.release()

    async def _drain(self) -> None:
        while True:
            while self._inflight and self._inflight[0].done():
                self._inflight.popleft()
            if not (self._batches or self._round_lock.locked() or self._inflight):
                return
            self._wake.set()
            await asyncio.sleep(0.001)

    async def _settle(self) -> None:
        """Wait until every round in flight is acknowledged or failed."""
        while self._inflight:
            await self._inflight.popleft()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- logs -------------------------------------------------------------------------------------

    def log(self, name: str) -> Log:
        try:
            return self.logs[name]
        except KeyError:
            raise LogNotFoundError(f"no log named {name!r}") from None

    async def create_log(self, name: str, config: LogConfig | None = None, *, start_offset: int = 0) -> Log:
        """Create a log (durably: its directory and config survive a crash once this returns).
        ``start_offset``: its first offset (a follower copying a leader whose log starts
        there; recovery without a checkpoint entry takes the first segment's base)."""
        self._check_open()
        check_name(name)
        if name in self.logs or name in self._creating:
            raise LogExistsError(f"log {name!r} exists")
        if start_offset < 0:
            raise LogstoreError(f"start offset {start_offset} is negative")
        config = config or self.config.default_log_config
        created: asyncio.Future[Log] = asyncio.get_running_loop().create_future()
        self._creating[name] = created
        try:
            log = await self._create_log(name, config, start_offset)
        except Exception as exc:
            created.set_exception(exc)
            created.exception()  # retrieved: nobody else may be waiting
            raise
        except BaseException:
            created.cancel()
            raise
        finally:
            del self._creating[name]
        created.set_result(log)
        return log

    async def _create_log(self, name: str, config: LogConfig, start_offset: int) -> Log:
        directory = log_directory(self.root, name)
        if not self.io.exists(directory):
            self.io.mkdir(directory)
        ckpt.write_atomic(self.io, posixpath.join(directory, CONFIG_NAME), config.to_json())
        log = Log(self, name, directory, config, [], start_offset, start_offset)
        log.leader_epoch = self.leader_epoch
        log.high_watermark = start_offset
        log.take_dirty()
        await self.run_blocking(lambda: self._sync_new_log(log))
        self.logs[name] = log
        self.catalog_version += 1
        return log

    def _sync_new_log(self, log: Log) -> None:
        log.active.sync()
        self.io.fsync_dir(log.directory)
        self.io.fsync_dir(posixpath.join(self.root, "logs"))

    async def get_or_create_log(self, name: str, config: LogConfig | None = None, *, start_offset: int = 0) -> Log:
        """The log ``name``, created (``config``, ``start_offset``) if it does not exist; a
        creation of it under way is waited for, not repeated."""
        while True:
            if name in self.logs:
                return self.logs[name]
            creating = self._creating.get(name)
            if creating is None:
                return await self.create_log(name, config, start_offset=start_offset)
            with contextlib.suppress(Exception):
                await asyncio.shield(creating)

    async def delete_log(self, name: str) -> None:
        log = self.log(name)
        await self._drain()
        del self.logs[name]
        self.catalog_version += 1
        log.close_files()
        for entry in self.io.listdir(log.directory):
            self.io.unlink(posixpath.join(log.directory, entry))
        self.io.rmdir(log.directory)
        await self.run_blocking(lambda: self.io.fsync_dir(posixpath.join(self.root, "logs")))
        await self.write_checkpoint()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("store is closed")

    # -- hooks used by logs --------------------------------------------------------------------------

    def run_blocking(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """``fn()`` in a worker thread (inline when IO does not block). The thread's work is
        tracked until it returns: cancelling the caller does not stop it, so :meth:`close`
        waits for it before it writes the same files."""
        loop = asyncio.get_running_loop()
        if not self.io.fsync_blocks:
            fut: asyncio.Future[T] = loop.create_future()
            try:
                fut.set_result(fn())
            except Exception as exc:  # delivered to the awaiting caller
                fut.set_exception(exc)
            return fut
        work = self._executor.submit(fn)
        self._working.add(work)
        work.add_done_callback(self._working.discard)
        return asyncio.wrap_future(work, loop=loop)

    def _in_journal_order(self, write: Callable[[], None], sync: Callable[[], None]) -> asyncio.Future[None]:
        """Run a journal write on a journal thread, after every earlier one, then its fsync on
        the same thread (both inline when IO does not block, as simulated IO's does not)."""
        if not self.io.fsync_blocks:
            def both() -> None:
                write()
                sync()
            return self.run_blocking(both)
        return self._journal_worker.submit(write, sync)

    def enqueue_sync(self, log: Log, parts: list[Buffer], total: int, next_offset: int, max_ts: int,
                     records: int) -> asyncio.Future[None]:
        if self.failure is not None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(LogFailedError(f"store journal is fail-stopped: {self.failure}"))
            return fut
        cap = self.config.round_appends_max
        if not self._batches or (cap and len(self._batches[-1].appends) >= cap):
            loop = asyncio.get_running_loop()
            self._batches.append(_Queued(loop.create_future()))
            if not self._kick_due:
                self._kick_due = True
                loop.call_soon(self._kick)
        queued = self._batches[-1]
        queued.appends.append((log, parts, total, next_offset, max_ts))
        queued.records += records
        return queued.future

    def when_durable(self, future: asyncio.Future[None], callback: Callable[[], None]) -> bool:
        """Call ``callback()`` on the loop's thread as soon as the round of ``future`` (from
        :meth:`enqueue_sync`, that round not yet started) is durable: right after its journal
        fsync returned and every earlier round is acknowledged, before its segment writes and
        before its logs' committed offsets move (so an answer can be on its way while they are
        written; the appends are not yet visible to readers, nor checked: a log that failed
        meanwhile still fails its appends when ``future`` resolves). Not called for a round that
        fails. False if the round has already started (wait for ``future`` instead)."""
        for queued in reversed(self._batches):
            if queued.future is future:
                queued.on_durable.append(callback)
                return True
        return False

    def note_async_write(self, log: Log) -> None:
        if log.unflushed_bytes >= log.config.flush_interval_bytes:
            self._flush_due.add(log)
            self._wake.set()

    async def write_checkpoint(self) -> None:
        """Persist the current recovery points and log starts (not a flush)."""
        async with self._checkpoint_lock:
            await self.run_blocking(self._write_checkpoint_now)

    def _write_checkpoint_now(self, *, leader_epoch: int | None = None, may_lead: bool | None = None) -> None:
        cp = ckpt.Checkpoint(
            journal_start=self.journal_start,
            logs={
                n: ckpt.LogCheckpoint(lg.recovery_point, lg.log_start_offset,
                                      min(lg.high_watermark, lg.recovery_point), lg.epochs.entries())
                for n, lg in self.logs.items()
            },
            leader_epoch=self.leader_epoch if leader_epoch is None else leader_epoch,
            may_lead=self.may_lead if may_lead is None else may_lead,
        )
        if cp == self._written_checkpoint:
            return  # already durable as it is: an idle store writes nothing
        ckpt.write(self.io, self.root, cp)
        self._written_checkpoint = cp
        for name, lc in cp.logs.items():
            self.logs[name].persisted_log_start = lc.log_start_offset

    async def begin_leader_epoch(self, epoch: int) -> None:
        """Lead in ``epoch``: every log's epoch cache starts it at the log's end (Kafka does so
        at election, so a follower holding a tail of an older epoch past that point learns it
        diverged even before the new leader appended anything), and the checkpoint holding
        it is written before any append is stamped with it. Only upwards."""
        if epoch <= self.leader_epoch:
            raise LogstoreError(f"leader epoch {epoch} is not above the current {self.leader_epoch}")
        async with self._checkpoint_lock:
            # Stamped appends wait for the checkpoint; the cache entries are set without an
            # await between them and the offsets they name.
            for log in self.logs.values():
                log.epochs.assign(epoch, log.assigned_offset)
            await self.run_blocking(lambda: self._write_checkpoint_now(leader_epoch=epoch))
        self._stamp_with(epoch)

    async def observe_leader_epoch(self, epoch: int) -> None:
        """A follower saw a leader of ``epoch``: remember it durably (fencing older leaders).
        The follower's epoch caches come from the batches it copies, not from this."""
        if epoch <= self.leader_epoch:
            return
        async with self._checkpoint_lock:
            await self.run_blocking(lambda: self._write_checkpoint_now(leader_epoch=epoch))
        self._stamp_with(epoch)

    def _stamp_with(self, epoch: int) -> None:
        """``epoch`` is durable: appends from now on are stamped with it."""
        self.leader_epoch = epoch
        for log in self.logs.values():
            log.leader_epoch = epoch

    async def set_may_lead(self, may_lead: bool) -> None:
        """Persist whether this replica may lead (see ``may_lead``)."""
        if may_lead == self.may_lead:
            return
        async with self._checkpoint_lock:
            await self.run_blocking(lambda: self._write_checkpoint_now(may_lead=may_lead))
        self.may_lead = may_lead

    async def checkpoint(self) -> None:
        """fsync every log, persist recovery points, and retire journal files they cover."""
        if self.journal is None:
            return
        await self._drain()
        async with self._round_lock:  # between rounds: every journaled batch is in a segment
            await self._settle()
            # After a journal failure its damaged file must stay the last one: recovery treats a
            # bad entry there as a torn tail, but in an earlier file as corruption.
            try:
                # In a worker thread: a rotation fsyncs (and without a spare preallocates a
                # whole file); the loop keeps taking appends for the next round meanwhile.
                journal = self.journal
                new_seq = await self._rotate_journal(journal) if journal.size and self.failure is None else journal.seq
            except OSError as exc:
                # The new file's directory entry may not be durable: acknowledging rounds written
                # to it would be acknowledging before durable. Fail-stop the journal.
                self._fail_store(exc, None)
                raise LogFailedError(f"journal rotation failed, sync logs fail-stopped: {exc}") from exc
            claims = [(log, *log.take_dirty()) for log in self.logs.values() if log.failure is None]
        for log, end, dirty, dir_dirty in claims:
            if dirty or dir_dirty:
                try:
                    await self.run_blocking(lambda lg=log, d=dirty, dd=dir_dirty: lg.sync_claimed(d, dd))  # type: ignore[misc]
                except OSError as exc:
                    log.fail(exc)
                    continue
            log.recovery_point = max(log.recovery_point, end)
            log.last_flush_ms = self.clock.now_ms()
        # A fail-stopped log is not in ``claims``: its acknowledged batches may live only in the
        # journal (its segments were never fsynced), so its failure keeps every journal file.
        self.journal_start = new_seq if all(lg.failure is None for lg in self.logs.values()) else self.journal_start
        await self.write_checkpoint()
        await self.run_blocking(self._delete_old_journals)
        self._prepare_journal()  # once the spares this checkpoint retired are known

    def journal_retired(self) -> bool:
        """Whether the last checkpoint retired every journal file before the current one."""
        return self.journal is None or self.journal_start >= self.journal.seq

    def _delete_old_journals(self) -> None:
        """Retire journal files the persisted checkpoint no longer needs: keep a few to recycle
        (renamed into place by the next rotation), delete the rest."""
        retired = [seq for seq in jn.list_files(self.io, self.root) if seq < self.journal_start]
        keep = retired[-JOURNAL_SPARES:]
        removed = False
        for seq in retired[: len(retired) - len(keep)]:
            self.io.unlink(posixpath.join(self.root, jn.DIRNAME, jn.file_name(seq)))
            removed = True
        if removed:
            self.io.fsync_dir(posixpath.join(self.root, jn.DIRNAME))
        self._spares = keep

    # -- group commit ------------------------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._batches:
                if self._pipeline_full():
                    await asyncio.wait({self._inflight[0]})
                    continue
                await self._round()
            if self._flush_due:  # async logs past flush_interval_bytes (note_async_write)
                due, self._flush_due = self._flush_due, set()
                for log in due:
                    if (not log.is_sync and log.unflushed_bytes >= log.config.flush_interval_bytes
                            and log.failure is None and not log.closed):
                        await self._flush_quietly(log)

    async def _round(self) -> None:
        """Start the next queued round from the flusher task: what :meth:`_kick` left, after
        a journal rotation when the journal is full."""
        async with self._round_lock:
            queued = self._batches.popleft()
            nbytes = _round_bytes(queued)
            assert self.journal is not None
            if not self.journal.has_room(nbytes):
                try:
                    await self._settle()  # the old file's fsyncs finish before it is closed
                    if self.failure is not None:
                        raise OSError(f"journal failed: {self.failure}")
                    await self._rotate_journal(self.journal)
                    self._prepare_journal()
                except OSError as exc:
                    self._fail_store(exc, queued.future)
                    return
            self._start_round(queued, nbytes)

    def _kick(self) -> None:
        """Start the queued rounds at once (a call_soon after the first append of a round:
        the appends read in the same turn of the loop join it), as the flusher task would but
        without the hop to it; what must wait (a rotation, a checkpoint between rounds, too
        many rounds in flight) is left to the flusher."""
        self._kick_due = False
        try:
            while self._batches and self._round_now():
                pass
        except Exception as exc:  # a bug: fail-stop rather than leave the appends waiting forever
            logger.exception("starting a group-commit round failed")
            self._fail_store(exc, None)
            return
        if self._batches:
            self._wake.set()

    def _round_now(self) -> bool:
        """Start the first queued round here, unless it must wait (False)."""
        journal = self.journal
        if journal is None or self._round_lock.locked() or self.failure is not None or self._pipeline_full():
            return False
        queued = self._batches[0]
        nbytes = _round_bytes(queued)
        if not journal.has_room(nbytes):
            return False
        self._batches.popleft()
        self._start_round(queued, nbytes)
        return True

    def _pipeline_full(self) -> bool:
        """Whether as many rounds are in flight as may be (acknowledged ones dropped first)."""
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft()
        cfg = self.config
        return len(self._inflight) >= (cfg.ring_rounds_in_flight_max if self._ring_usable else cfg.rounds_in_flight_max)

    def _start_round(self, queued: _Queued, nbytes: int) -> None:
        """One group commit with room for it in the journal: journal write, its fdatasync,
        segment writes. With nothing else in flight and a fast disk the journal is written and
        fsynced right here on the loop's thread (see :meth:`_may_inline`); otherwise in a
        journal thread, and up to ``rounds_in_flight_max`` rounds overlap: while one round's
        fsync runs, the next round's appends are written and their own fsync started.
        Acknowledgements go strictly in round order."""
        queue, future, on_durable = queued.appends, queued.future, queued.on_durable
        assert self.journal is not None
        journal = self.journal
        try:
            seq = journal.seq
            parts: list[Buffer] = []
            entry_crc = jn.entry_crc
            tails: dict[tuple[Log, int], tuple[bytes, int]] = {}  # (log, batch size) -> entry tail, its CRC
            by_log: dict[Log, list[tuple[list[Buffer], int, int, int]]] = {}
            for log, lparts, total, nxt, max_ts in queue:
                covered, rest = lparts
                tail = tails.get((log, total))
                if tail is None:
                    tail = tails[log, total] = jn.entry_tail(seq, log.name_bytes, total)
                parts += (entry_crc(covered, tail[1]), tail[0], covered, rest)
                items = by_log.get(log)
                if items is None:
                    items = by_log[log] = []
                items.append((lparts, total, nxt, max_ts))
            at = journal.reserve(nbytes)
        except OSError as exc:
            self._fail_store(exc, future)
            return
        # The journal write and its fsync run in the journal thread while the loop writes
        # the segments: readers need the segment copy only once the round is acknowledged,
        # the ack needs only the journal. A failed write fails the round like a failed fsync.
        # Inline, the round skips two thread hand-offs, which cost a lone append about as
        # much as its fsync and a round of 64 about a fifth of its time (measured: the
        # README's group-commit paragraph); the loop cannot run meanwhile.
        # With a ring, every round is written here (so rounds stay in order) and the kernel
        # fsyncs it while the loop goes on.
        inline = self._may_inline(len(queue), queued.records)
        ring = self._ring if self._ring_usable else None
        if inline or ring is not None:
            try:
                journal.write_at(parts, at)
                if inline:
                    self._timed_fdatasync(journal)
            except OSError as exc:
                self._fail_store(exc, future)
                return
            if inline and on_durable:
                _call_each(on_durable)
            if ring is not None and not inline:
                synced = self._ring_fdatasync(ring, journal)
        else:
            synced = self._in_journal_order(lambda: journal.write_at(parts, at), lambda: self._timed_fdatasync(journal))
        marks: list[tuple[Log, int, int, int]] = []
        for log, items in by_log.items():
            if log.failure is not None:
                continue
            try:
                log.write_many(items)
                marks.append((log, log.end_offset, log.active.base_offset, log.active.size))
            except OSError as exc:
                log.fail(exc)
        if inline:
            self.inline_rounds += 1
            self._finish_round(future, marks, len(queue))
            return
        previous = self._inflight[-1] if self._inflight else None
        self._inflight.append(asyncio.ensure_future(
            self._acknowledge(previous, synced, future, marks, len(queue), on_durable)))

    def _may_inline(self, appends: int, records: int) -> bool:
        """Whether a round of ``appends`` (carrying ``records``) writes and fsyncs on the loop's
        thread (see ``StoreConfig.inline_round_appends_max`` and, with a ring,
        ``ring_round_records_min``)."""
        cfg = self.config
        cap = cfg.inline_round_appends_max
        if cap == 0 or (cap is not None and appends > cap):
            return False
        if self._ring_usable and records >= cfg.ring_round_records_min:
            return False
        if self.last_fsync_s * 1000.0 > cfg.inline_fsync_ms_max:
            return False
        return all(t.done() for t in self._inflight)

    def _ring_fdatasync(self, ring: FsyncQueue, journal: jn.JournalWriter) -> asyncio.Future[None]:
        """The journal's fdatasync through the ring, timed for :meth:`_may_inline` (submission to
        completion as the loop saw it: an upper bound). A submission the kernel refuses
        disables the ring; this round's fsync then runs in a journal thread."""
        try:
            synced = journal.fdatasync_on(ring)
        except OSError as exc:
            logger.warning("asynchronous fsync refused (%s): journal fsyncs use threads from now on", exc)
            self._ring_usable = False
            return self._in_journal_order(lambda: None, lambda: self._timed_fdatasync(journal))
        self.ring_rounds += 1

        def timed(_fut: asyncio.Future[None]) -> None:
            self.last_fsync_s = ring.last_fsync_s

        synced.add_done_callback(timed)
        return synced

    def _timed_fdatasync(self, journal: jn.JournalWriter) -> None:
        """The journal's fdatasync, timed (on whichever thread runs it) for :meth:`_may_inline`."""
        t0 = time.perf_counter()
        journal.fdatasync()
        self.last_fsync_s = time.perf_counter() - t0

    async def _acknowledge(
        self, previous: asyncio.Task[None] | None, synced: asyncio.Future[None],
        future: asyncio.Future[None], marks: list[tuple[Log, int, int, int]], appends: int,
        on_durable: list[Callable[[], None]],
    ) -> None:
        """Acknowledge a round once its fsync returned and every earlier round is acknowledged.
        A round after a failed one is never acknowledged: the failed fsync may have lost the
        earlier round's entries, and replay stops at the first hole."""
        try:
            await synced
            ok = True
        except OSError as exc:
            self._fail_store(exc, future)
            ok = False
        if previous is not None:
            await previous
        if ok:
            if on_durable and self.failure is None:
                _call_each(on_durable)
            self._finish_round(future, marks, appends)

    def _finish_round(self, future: asyncio.Future[None], marks: list[tuple[Log, int, int, int]], appends: int) -> None:
        """Acknowledge a round whose journal entries are durable (every earlier round is)."""
        if self.failure is not None:
            if not future.done():
                future.set_exception(LogFailedError(f"store journal failed, sync logs fail-stopped: {self.failure}"))
            return
        self.rounds += 1
        self.round_appends += appends
        for log, end, segment_base, segment_size in marks:
            log.commit_to(end, segment_base, segment_size)  # each append checks it on waking
        future.set_result(None)

    def _fail_store(self, exc: BaseException, future: asyncio.Future[None] | None) -> None:
        """The journal cannot be trusted: fail-stop every sync log and every queued append."""
        self.failure = exc
        err = LogFailedError(f"store journal failed, sync logs fail-stopped: {exc}")
        for log in self.logs.values():
            if log.is_sync:
                log.fail(exc)
        for fut in (future, *(q.future for q in self._batches)):
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._batches.clear()

    async def _flush_quietly(self, log: Log) -> None:
        with contextlib.suppress(LogFailedError):  # fail-stopped: its callers see the error
            await log.flush()

    async def _background(self) -> None:
        last_checkpoint = last_retention = self.clock.now_ms()
        while True:
            await asyncio.sleep(0.02)
            now = self.clock.now_ms()
            for log in list(self.logs.values()):
                due = now - log.last_flush_ms >= log.config.flush_interval_ms
                if not log.is_sync and log.failure is None and due and (log.unflushed_bytes or log.dir_dirty):
                    await self._flush_quietly(log)
            if now - last_checkpoint >= self.config.checkpoint_interval_ms:
                last_checkpoint = now
                await self.checkpoint()
            if now - last_retention >= self.config.retention_check_interval_ms:
                last_retention = now
                for log in list(self.logs.values()):
                    if log.failure is None:
                        await log.apply_retention()


def _round_bytes(queued: _Queued) -> int:
    """The journal bytes of a round's entries."""
    return sum(jn.ENTRY_BYTES + len(p[0].name_bytes) + p[2] for p in queued.appends)


def _call_each(callbacks: list[Callable[[], None]]) -> None:
    """Run ``Store.when_durable`` callbacks; one that raises is logged and the others still run."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.exception("a durable-round callback failed")
