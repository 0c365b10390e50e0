"""Run operations against a real ``Store`` over :class:`~fuzz.simdisk.SnapIO`, keep the oracle
(``model``) in step, crash, reopen and check. Every fuzz driver goes through :class:`Harness`.

Determinism: the store's background task (timed flushes, checkpoints, retention on a wall
clock timer) is cancelled after every open, so only the operations below touch the disk and a
seed replays exactly. Flushes, checkpoints and retention are operations of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fuzz.model import LogModel, LogState, check_log, clone_models, decode_batches
from fuzz.simdisk import SnapIO, disk_files, image_hash, random_chooser
from logstore import inspect as lsinspect
from logstore.batch import CODEC_NONE, CODEC_ZSTD, BatchOptions, Record, build_batch
from logstore.config import LogConfig
from logstore.errors import LogFailedError, LogstoreError, OffsetOutOfRangeError
from logstore.log import Log
from logstore.simio import FateChooser, SimClock
from logstore.store import Store, StoreConfig

T = TypeVar("T")
ROOT = "/store"
OP_TIMEOUT_S = 10.0  # SimIO never blocks: an op this slow is a hang (a dead flusher task)
ALLOWED_ERRORS = (LogstoreError, OSError)
# Rounds of two records or more (append_many, or one multi-record batch) fsync through the
# simulated asynchronous queue, the path an io_uring takes on real IO; lone records fsync inline.
STORE_CONFIG = StoreConfig(ring_round_records_min=2)
TRACE_LINES = 25  # operations a violation message shows


class Violation(AssertionError):
    """An invariant of RELIABILITY.md does not hold."""


class WorkloadAborted(Exception):
    """Under an armed fault the store could not be closed or reopened: stop the workload
    (the caller clears the faults, crashes and checks)."""


@dataclass
class Stats:
    operations: int = 0
    crashes: int = 0
    checks: int = 0  # crash states recovered and checked (with repeats)
    states: set[str] = field(default_factory=set)  # distinct post-crash disk images
    faults: int = 0

    def merge(self, other: Stats) -> None:
        self.operations += other.operations
        self.crashes += other.crashes
        self.checks += other.checks
        self.states |= other.states
        self.faults += other.faults

    def line(self) -> str:
        return (f"operations={self.operations} crashes={self.crashes} crash_states_checked={self.checks} "
                f"distinct_crash_states={len(self.states)} io_faults={self.faults}")


async def stop_store(store: Store) -> None:
    """Drop a store without closing it (after a crash its handles are stale)."""
    for t in store._tasks:
        t.cancel()
    await asyncio.gather(*store._tasks, return_exceptions=True)
    store._executor.shutdown(wait=False)


def quiet(store: Store) -> None:
    for t in store._tasks:
        if t.get_name() == "logstore-background":
            t.cancel()


def read_state(log: Log) -> LogState:
    """Everything the log serves, read through its public read path and CRC-checked."""
    start, end = log.log_start_offset, log.end_offset
    if log.committed_offset != end or log.assigned_offset != end:
        raise Violation(f"log {log.name}: after open end={end} committed={log.committed_offset} "
                        f"assigned={log.assigned_offset}")
    batches: list[tuple[int, int, Any]] = []
    off = start
    while off < end:
        try:
            data = log.read(off, 8192).data()
            got = decode_batches(data)
        except LogstoreError as exc:
            raise Violation(f"log {log.name}: read at {off} served a bad batch: {exc!r}") from exc
        if not got:
            raise Violation(f"log {log.name}: read at {off} returned nothing below the end {end}")
        if batches and got[0][0] != batches[-1][1]:
            raise Violation(f"log {log.name}: read at {off} returned a batch at {got[0][0]}")
        batches.extend(got)
        off = got[-1][1]
    if start < end:
        first = log.read_records(start, 1 << 20)
        if not first or first[0].offset != start:
            raise Violation(f"log {log.name}: read_records({start}) starts at {first[0].offset if first else None}")
    return LogState(start, end, tuple(batches))


def store_state(store: Store) -> dict[str, LogState]:
    return {name: read_state(log) for name, log in sorted(store.logs.items())}


def check_report(pre: dict[str, bytes], io: SnapIO, store: Store) -> list[str]:
    """The recovery report accounts for every byte that left a segment file: each cut names a
    file and position with ``bytes_cut`` = size - position, bytes below a cut are unchanged, and
    no segment file lost bytes without a cut or an R7 deletion."""
    errs: list[str] = []
    for name, rep in store.report.logs.items():
        directory = posixpath.join(ROOT, "logs", name)
        cut_at: dict[str, int] = {}
        for c in rep.cuts:
            if c.path not in pre:
                errs.append(f"report cuts {c.path}, which did not exist after the crash")
                continue
            if c.bytes_cut != len(pre[c.path]) - c.position:
                errs.append(f"report cuts {c.bytes_cut} bytes at {c.position} of {c.path} "
                            f"({len(pre[c.path])} bytes): the count is wrong")
            cut_at[c.path] = min(cut_at.get(c.path, c.position), c.position)
        deleted = set(rep.deleted_segments)
        for path, data in pre.items():
            if posixpath.dirname(path) != directory or not path.endswith(".log"):
                continue
            if path in deleted:
                continue
            keep = cut_at.get(path, len(data))
            if not io.exists(path):
                errs.append(f"{path} ({len(data)} bytes) vanished without a cut in the report")
                continue
            post = io.read_all(path)
            if post[:keep] != data[:keep]:
                errs.append(f"{path}: bytes below {keep} changed during recovery")
            if path not in cut_at and len(post) < len(data):
                errs.append(f"{path}: {len(data) - len(post)} bytes disappeared without a cut in the report")
    return errs


def verify(io: SnapIO) -> list[str]:
    result = lsinspect.verify_store(io, ROOT)
    return [f"verify: {p}" for p in result.problems]


class Harness:
    """One store over one simulated disk, with its oracle."""

    def __init__(self, seed: int, stats: Stats | None = None, *, double_check: bool = True) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.io = SnapIO(seed)
        self.clock = SimClock()
        self.stats = stats if stats is not None else Stats()
        self.double_check = double_check
        self.store: Store | None = None
        self.models: dict[str, LogModel] = {}
        self.trace: list[str] = []
        self.snap_at: int | None = None  # crash point: the k-th mutating IO call of the next op
        self._snaps: list[tuple[SnapIO, dict[str, LogModel], str]] = []
        self.fault: tuple[str, int, bool] | None = None  # armed for the next op
        self.values = 0
        self.last_op_faulted = False
        self.always_faulty = False  # the IO error loop arms one fault for a whole workload
        #: when set, every op snapshots the disk before each fsync into this list (unchecked)
        self.snap_sink: list[tuple[SnapIO, dict[str, LogModel], str]] | None = None

    # -- plumbing ---------------------------------------------------------------------------------

    def note(self, line: str) -> None:
        self.trace.append(line)

    def fail(self, message: str) -> Violation:
        tail = "\n  ".join(self.trace[-TRACE_LINES:])
        return Violation(f"seed {self.seed}: {message}\n  last operations:\n  {tail}")

    async def open(self) -> Store:
        self.store = await Store.open(ROOT, io=self.io, clock=self.clock, config=STORE_CONFIG)
        quiet(self.store)
        return self.store

    def live(self) -> Store:
        assert self.store is not None
        flusher = self.store._tasks[0]
        if flusher.done() and not flusher.cancelled() and flusher.exception() is not None:
            raise self.fail(f"the flusher task died while the store kept serving: {flusher.exception()!r}")
        return self.store

    async def _op(self, label: str, mid: dict[str, LogModel], fn: Callable[[], Awaitable[T]]) -> T:
        """Run one operation: crash-point snapshot and fault injection as armed."""
        self.stats.operations += 1
        self.note(label + ("" if self.fault is None else f" [fault {self.fault}]"))
        ticks = 0
        sink = self.snap_sink
        if sink is not None:

            def every(kind: str, path: str) -> None:
                if kind == "fsync":  # before each persistence point: its pending set covers the earlier ones
                    sink.append((self.io.clone(), clone_models(mid), f"{label} before fsync {path}"))

            self.io.on_tick = every
        elif self.snap_at is not None:
            at = self.snap_at

            def hook(kind: str, path: str) -> None:
                nonlocal ticks
                if ticks == at:
                    self._snaps.append((self.io.clone(), clone_models(mid), f"{label} before {kind} {path}"))
                ticks += 1

            self.io.on_tick = hook
        if self.fault is not None:
            kind, n, persistent = self.fault
            self.stats.faults += 1
            if kind == "fsync":
                self.io.fail_fsync(True)
            else:
                self.io.fail_after(n, persistent=persistent)
        try:
            return await asyncio.wait_for(fn(), OP_TIMEOUT_S)
        except TimeoutError as exc:
            raise self.fail(f"{label} hung") from exc
        finally:
            self.io.on_tick = None
            self.snap_at = None
            if self.fault is not None:
                self.io.clear_faults()
            self.last_op_faulted = self.fault is not None or self.always_faulty
            self.fault = None
            snaps, self._snaps = self._snaps, []
            for twin, models, where in snaps:
                await self.check_crash_of(twin, models, where)

    def _expect_clean(self, label: str, exc: BaseException, log: Log | None = None) -> None:
        """An op raised: fine under a fault or on a fail-stopped log, if the error is clear."""
        if isinstance(exc, Violation):
            raise exc  # a mid-operation crash point failed its check
        if not isinstance(exc, ALLOWED_ERRORS):
            raise self.fail(f"{label} raised an unclear error {exc!r}") from exc
        self.note(f"  -> {type(exc).__name__}: {exc}")
        if self.last_op_faulted:
            return
        store = self.store
        if store is not None and (store.failure is not None or any(lg.failure for lg in store.logs.values())):
            return  # an earlier fault fail-stopped something: refusals follow from it
        raise self.fail(f"{label} failed with no fault injected: {exc!r}") from exc

    def records(self, sizes: list[int], key: bool) -> list[Record]:
        out = []
        for size in sizes:
            self.values += 1
            body = self.rng.randbytes(size) if self.rng.random() < 0.5 else (b"v%d." % self.values) * (size // 4 + 1)
            headers = (("n", b"%d" % self.values),) if self.rng.random() < 0.5 else ()
            out.append(Record(body[:size], b"k%d" % self.values if key else None, headers, self.clock.ms + self.values))
        return out

    # -- operations --------------------------------------------------------------------------------

    async def create_log(self, name: str, config: LogConfig) -> None:
        store = self.live()
        m = LogModel(name, config, created_durable=False)
        mid = {**clone_models(self.models), name: m}
        try:
            await self._op(f"create_log {name} {config.flush} seg={config.segment_bytes}", mid,
                           lambda: store.create_log(name, config))
        except BaseException as exc:
            self._expect_clean("create_log", exc)
            self.models[name] = m  # may exist after a crash, empty
            return
        m.created_durable = True
        self.models[name] = m

    async def append(self, name: str, sizes: list[int], *, zstd: bool = False, key: bool = True) -> None:
        await self.append_many([(name, sizes, zstd, key)])

    async def append_many(self, items: list[tuple[str, list[int], bool, bool]]) -> None:
        """Appends issued together (one group-commit round for the sync ones)."""
        store = self.live()
        plans = []
        for name, sizes, zstd, key in items:
            if name not in store.logs:
                continue
            recs = self.records(sizes, key)
            opts = BatchOptions(compression=CODEC_ZSTD if zstd else CODEC_NONE)
            plans.append((name, recs, build_batch(recs, opts), store.logs[name].failure is not None))
        if not plans:
            return
        mid = clone_models(self.models)
        for name, recs, _b, was_failed in plans:
            if not was_failed:
                mid[name].issue(mid[name].next_offset, recs, durable=False)

        async def run() -> list[Any]:
            return await asyncio.gather(*(store.logs[n].append(b) for n, _r, b, _f in plans), return_exceptions=True)

        label = "append " + " ".join(f"{n}:{len(r)}rec/{len(b)}B" for n, r, b, _f in plans)
        results = await self._op(label, mid, run)
        for (name, recs, _b, was_failed), res in zip(plans, results, strict=True):
            m = self.models[name]
            log = store.logs[name]
            if isinstance(res, BaseException):
                if was_failed and not isinstance(res, LogFailedError):
                    raise self.fail(f"append to fail-stopped log {name} raised {res!r}, not LogFailedError")
                self._expect_clean(f"append {name}", res, log)
                if not was_failed:
                    m.issue(m.next_offset, recs, durable=False)
                m.failed = log.failure is not None
                continue
            if was_failed:
                raise self.fail(f"fail-stopped log {name} accepted an append (silent retry)")
            if res.base_offset != m.next_offset:
                raise self.fail(f"append to {name} got offset {res.base_offset}, expected {m.next_offset}")
            m.issue(res.base_offset, recs, durable=m.sync)

    async def flush(self, name: str) -> None:
        store = self.live()
        log = store.logs.get(name)
        if log is None:
            return
        was_failed = log.failure is not None
        try:
            await self._op(f"flush {name}", clone_models(self.models), log.flush)
        except BaseException as exc:
            self._expect_clean(f"flush {name}", exc, log)
            self.models[name].failed = log.failure is not None
            return
        if was_failed:
            raise self.fail(f"flush of fail-stopped log {name} succeeded")
        self.models[name].make_durable()

    async def checkpoint(self) -> None:
        store = self.live()
        try:
            await self._op("checkpoint", clone_models(self.models), store.checkpoint)
        except BaseException as exc:
            self._expect_clean("checkpoint", exc)
            return
        self._durable_unless_failed(store)

    def _durable_unless_failed(self, store: Store) -> None:
        for name, m in self.models.items():
            log = store.logs.get(name)
            if log is not None and log.failure is None and not m.failed:
                m.make_durable()
            elif log is not None:
                m.failed = True

    async def truncate(self, name: str, back: int) -> None:
        store = self.live()
        log = store.logs.get(name)
        if log is None:
            return
        m = self.models[name]
        offset = max(log.log_start_offset, m.next_offset - back)
        mid = clone_models(self.models)
        mid[name].ghost_from(offset)
        expect = m.next_offset
        for b in m.current:
            if b.next_offset > offset:
                expect = b.base
                break
        try:
            new_end = await self._op(f"truncate_to {name} {offset}", mid, lambda: log.truncate_to(offset))
        except OffsetOutOfRangeError as exc:
            if expect >= log.log_start_offset or self.last_op_faulted:
                self._expect_clean(f"truncate {name}", exc, log)
            self.note(f"  -> refused: {exc}")
            m.ghost_from(offset)
            return
        except BaseException as exc:
            self._expect_clean(f"truncate {name}", exc, log)
            m.ghost_from(offset)
            m.failed = log.failure is not None
            return
        self.note(f"  -> {new_end}")
        if new_end != expect and not m.failed:
            raise self.fail(f"truncate_to({offset}) of {name} returned {new_end}, expected {expect}")
        self._durable_unless_failed(store)  # truncate_to checkpoints first
        m.truncated(new_end)

    async def delete_before(self, name: str, forward: int) -> None:
        store = self.live()
        log = store.logs.get(name)
        if log is None:
            return
        offset = min(log.committed_offset, log.log_start_offset + forward)
        try:
            start = await self._op(f"delete_records_before {name} {offset}", clone_models(self.models),
                                   lambda: log.delete_records_before(offset))
        except BaseException as exc:
            self._expect_clean(f"delete_before {name}", exc, log)
            return
        m = self.models[name]
        m.start_durable = max(m.start_durable, start)

    async def retention(self, name: str, advance_ms: int) -> None:
        store = self.live()
        log = store.logs.get(name)
        if log is None:
            return
        self.clock.advance(advance_ms)
        try:
            dropped = await self._op(f"apply_retention {name} (+{advance_ms} ms)", clone_models(self.models),
                                     log.apply_retention)
        except BaseException as exc:
            self._expect_clean(f"retention {name}", exc, log)
            return
        self.note(f"  -> dropped {dropped}, start {log.log_start_offset}")
        if dropped:  # only then was the start persisted
            m = self.models[name]
            m.start_durable = max(m.start_durable, log.log_start_offset)

    async def reopen(self) -> None:
        """Clean close and open (no crash): every batch must still be there, exactly."""
        store = self.live()
        clean = store.failure is None and all(lg.failure is None for lg in store.logs.values())
        try:
            await self._op("close+open", clone_models(self.models), store.close)
        except BaseException as exc:
            self._expect_clean("close", exc)
            if self.always_faulty:
                self.store = None
                raise WorkloadAborted("close failed") from exc
            await self.crash(random.Random(self.rng.random()))
            return
        if clean:
            for m in self.models.values():
                m.make_durable()
        try:
            await self.open()
        except Exception as exc:
            if self.always_faulty and isinstance(exc, ALLOWED_ERRORS):
                self.store = None
                raise WorkloadAborted("open failed") from exc
            raise self.fail(f"open after a clean close raised {exc!r}") from exc
        if self.always_faulty:
            self.io.clear_faults()  # the checks below read through the same IO
        if clean and not self.live().report.clean:
            raise self.fail("open after a clean close did not take the clean path")
        await self._check_open_store(self.live(), self.io, self.models, "after close+open", {})

    async def crash(self, rng: random.Random | None = None, chooser: FateChooser | None = None) -> None:
        """Power loss now, then reopen and check (and check a crash of the recovery too)."""
        self.note("crash")
        if self.store is not None:
            await stop_store(self.live())
        self.store = None
        self.stats.crashes += 1
        self.io.crash(chooser or random_chooser(rng or random.Random(self.rng.random())))
        self.store = await self._recover_and_check(self.io, self.models, "after crash")

    async def fan_out(self, n: int) -> None:
        """Check ``n`` crashes of copies of the disk as it is now (the run goes on)."""
        for _ in range(n):
            await self.check_crash_of(self.io.clone(), clone_models(self.models), "fan-out crash")

    async def check_crash_of(self, io: SnapIO, models: dict[str, LogModel], where: str,
                             chooser: FateChooser | None = None, seen: set[str] | None = None) -> None:
        self.stats.crashes += 1
        io.crash(chooser or random_chooser(random.Random(self.rng.random())))
        store = await self._recover_and_check(io, models, f"crash {where}", seen)
        if store is not None:
            await stop_store(store)

    async def _recover_and_check(self, io: SnapIO, models: dict[str, LogModel], where: str,
                                 seen: set[str] | None = None) -> Any:
        pre = disk_files(io, ROOT) if io.exists(ROOT) else {}
        digest = image_hash(pre)
        if seen is not None:
            key = digest + repr(sorted((n, m.start_durable, [(b.base, b.durable) for b in m.current],
                                        sorted(m.ghosts)) for n, m in models.items()))
            if key in seen:
                return None  # this disk image was already checked against this same oracle
            seen.add(key)
        self.stats.states.add(digest)
        self.stats.checks += 1
        try:
            store = await Store.open(ROOT, io=io, clock=SimClock(self.clock.ms), config=STORE_CONFIG)
        except Exception as exc:
            raise self.fail(f"{where}: Store.open raised {exc!r}") from exc
        quiet(store)
        await self._check_open_store(store, io, models, where, pre)
        if self.double_check:
            states = self._states(store, where)
            twin = io.clone()
            twin.crash(random_chooser(random.Random(self.rng.random())))
            self.stats.checks += 1
            self.stats.states.add(image_hash(disk_files(twin, ROOT)))
            try:
                again = await Store.open(ROOT, io=twin, clock=SimClock(self.clock.ms), config=STORE_CONFIG)
            except Exception as exc:
                raise self.fail(f"{where}: crash right after recovery, then Store.open raised {exc!r}") from exc
            quiet(again)
            states2 = self._states(again, where + ", recovered twice")
            await stop_store(again)
            if states2 != states:
                diff = {n: (states[n].start, states[n].end, states2.get(n)) for n in states if states2.get(n) != states[n]}
                raise self.fail(f"{where}: recovering twice gave a different state: {diff}")
        return store

    def _states(self, store: Store, where: str) -> dict[str, LogState]:
        try:
            return store_state(store)
        except Violation as exc:
            raise self.fail(f"{where}: {exc}") from exc

    async def _check_open_store(self, store: Store, io: SnapIO, models: dict[str, LogModel], where: str,
                                pre: dict[str, bytes]) -> None:
        errs: list[str] = []
        states = self._states(store, where)
        for name, m in models.items():
            if name not in states:
                if m.created_durable:
                    errs.append(f"log {name} is gone")
                continue
            errs += check_log(m, states[name])
        for name in states:
            if name not in models:
                errs.append(f"log {name} exists but was never created")
        if pre:
            errs += check_report(pre, io, store)
        errs += verify(io)
        if errs:
            rows = {n: (r.rows, [(c.row, c.position, c.bytes_cut) for c in r.cuts], r.replayed_batches)
                    for n, r in store.report.logs.items()}
            errs.append(f"recovery report: clean={store.report.clean} {rows}")
            raise self.fail(f"{where}:\n    " + "\n    ".join(errs))
        if models is self.models:
            for name, st in states.items():
                self.models[name].reset_to(st)

    async def shutdown(self) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                await stop_store(self.store)
            self.store = None
