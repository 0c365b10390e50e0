"""Benchmarks of the logstore engine, each beside a raw-OS baseline measured in the same run.

    logstore bench append   [--mode async|sync|all] [--size 512M] [--concurrency 64] [--logs 16]
    logstore bench read     [--size 1G] [--fetch-bytes 1M]
    logstore bench recovery [--size 1G]
    logstore bench rocket   [--quick] [--backlog N] ...  (the RocketMQ adapter: tools.bench_rocket)
    logstore bench replication [--seconds 2] ...  (2 followers on localhost: tools.bench_replication)
    logstore bench ha [--quick] ...  (a SYNC_MASTER with 2 slaves, failover: tools.bench_ha)
    python -m tools.bench ...            (the same)

The machine is shared and noisy, so every figure is compared only with a baseline taken in the
same command: engine and baseline runs alternate (``--repeat`` pairs) and the medians are
compared (``ratio = value / baseline``). Batches are built before any timing starts: building
them is the producer's work, not the broker's.

Figures (name: what is timed | baseline | goal):

* ``append.async``: 1 KiB records in 64 KiB batches appended to one ``async`` log through
  ``Log.append``, then ``log.flush()`` | sequential ``os.write`` of blocks of the same size to
  a file, then ``fdatasync``, same total bytes | ratio >= 0.7. The appender yields to the event
  loop once per MiB, as a producer connection would, so the engine's own background flushing
  runs as it would in a broker.
* ``append.sync.1log``: ``--concurrency`` asyncio tasks each appending one-record batches to
  one ``sync`` log for ``--seconds`` | a one-at-a-time loop of ``os.write`` of one record and
  ``os.fdatasync`` | ratio >= 20.
* ``append.sync.<N>logs``: the same tasks spread over ``--logs`` sync logs of one store | the
  one-log figure of the same run | ratio >= 0.5.
* ``read.sendfile``: read the whole backlog with ``Log.read(offset, --fetch-bytes)`` and
  ``os.sendfile`` every returned region to a loopback TCP socket drained by a thread | raw
  ``os.sendfile`` of the segment files to the same kind of socket (both from the page cache:
  the files are read once before timing) | ratio >= 0.5.
* ``read.decoded.records`` / ``read.decoded.bytes``: the same backlog through
  ``Log.read_records`` (CRC-checked and decoded), records/s and MB/s of log bytes; informational.
  Baseline: the raw sendfile rate of the same run (as records/s at the backlog's bytes per
  record), to show what decoding in Python costs.
* ``recovery.scan``: ``Store.open`` of an unclean store, MB/s of bytes its recovery scanned
  (``store.report.logs[name].scanned_bytes``) | a sequential read of the same segment files
  (page cache) with CRC32C over them | >= 500 MB/s absolute.

  How the store is made unclean, honestly: the log is written and the store closed cleanly, then
  the ``.clean_shutdown`` marker is deleted and the checkpoint is rewritten with recovery point 0
  for the log. That is exactly what the store finds after a crash before any checkpoint covered
  the log (e.g. a crash during the first second of a fresh log): no marker, nothing known
  durable, so recovery must validate every batch (CRC, offsets, epochs) and rebuild every index.
  Killing the process instead would leave a recent recovery point and scan only the tail.

Data: ``--dir DIR`` keeps it (``DIR/bench-*``; read and recovery reuse a large enough backlog
found there); otherwise a temporary directory is removed at the end. ``--json`` prints one JSON
object per figure per line with keys ``name value unit baseline ratio goal params``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shutil
import socket
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import crc32c

from logstore import checkpoint as ckpt
from logstore import runtime
from logstore.batch import Record, build_batch
from logstore.config import FLUSH_ASYNC, FLUSH_SYNC, LogConfig
from logstore.log import Log
from logstore.store import CLEAN_MARKER, Store
from tools.benchkit import Figure, Goal, Reporter, fresh, workdir

MB = 1_000_000
MiB = 1024 * 1024
LOG_NAME = "bench"
READ_CHUNK = 8 * MiB


# -- progress -----------------------------------------------------------------------------------


class ProgressLike(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class _Progress:
    """Fallback when tools.progress is missing: a one-line bar on a terminal, else nothing."""

    def __init__(self, total: int, label: str) -> None:
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done >= self.total):
            self._last = now
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r{self.label:<28} [{bar:<30}] {frac * 100:5.1f}%")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 70 + "\r")
            sys.stderr.flush()


def progress(total: int, label: str) -> ProgressLike:
    try:
        mod = importlib.import_module("tools.progress")
        return cast(ProgressLike, mod.Progress(total, label))
    except (ImportError, AttributeError, TypeError):
        return _Progress(total, label)


# -- helpers ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (e.g. 4096, 64K, 512M, 1G)"
        ) from None


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def make_batches(record_bytes: int, batch_bytes: int, distinct: int = 8) -> list[bytearray]:
    """Prebuilt batches of ``record_bytes`` records, as many as fit ``batch_bytes`` (at least 1).
    A few distinct ones are reused: the log stamps offsets, the payload does not matter."""
    rec = Record(bytes(record_bytes), timestamp_ms=now_ms())
    one, two = len(build_batch([rec])), len(build_batch([rec, rec]))
    per = max(1, 1 + (batch_bytes - one) // (two - one))
    while per > 1 and len(build_batch([rec] * per)) > batch_bytes:  # varints grow with deltas
        per -= max(1, per // 100)
    return [
        build_batch([Record(os.urandom(record_bytes), timestamp_ms=now_ms()) for _ in range(per)])
        for _ in range(distinct)
    ]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def records_in(batch: bytes | bytearray) -> int:
    from logstore.batch import parse_header

    return parse_header(batch).record_count


def segment_files(log: Log) -> list[tuple[str, int]]:
    return [(seg.path, seg.size) for seg in log.segments if seg.size]


def warm(files: Sequence[tuple[str, int]]) -> None:
    """Read files once so both the engine and the baseline see them in the page cache."""
    buf = bytearray(READ_CHUNK)
    for path, _size in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


async def interleave(repeat: int, *steps: Callable[[], Awaitable[None]]) -> None:
    """Run the steps ``repeat`` times, reversing their order every other time (A B, B A, ...):
    on this disk a write burst slows whatever follows it, so neither side may always go second."""
    for i in range(repeat):
        for step in steps if i % 2 == 0 else steps[::-1]:
            await step()


# -- append -------------------------------------------------------------------------------------


def raw_sequential_write(
    path: str, block: bytes, total: int, bar: ProgressLike
) -> tuple[float, float]:
    """Seconds to os.write ``total`` bytes in ``block``s plus a final fdatasync, and seconds
    before that fdatasync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        t0 = time.perf_counter()
        done = 0
        while done < total:
            done += os.write(fd, block)
            if done % MiB < len(block):
                bar.update(MiB)
        written = time.perf_counter() - t0
        os.fdatasync(fd)
        return time.perf_counter() - t0, written
    finally:
        os.close(fd)
        os.unlink(path)


async def engine_async_append(
    root: str, batches: list[bytearray], total: int, bar: ProgressLike
) -> tuple[float, float, int]:
    """Seconds to append ``total`` bytes of batches to one async log and flush it, seconds
    before that flush, and bytes appended."""
    store = await Store.open(fresh(root))
    try:
        log = await store.create_log(LOG_NAME, LogConfig(flush=FLUSH_ASYNC))
        n = len(batches)
        i = done = since_yield = 0
        t0 = time.perf_counter()
        while done < total:
            b = batches[i % n]
            i += 1
            await log.append(b)
            done += len(b)
            since_yield += len(b)
            if since_yield >= MiB:
                since_yield = 0
                bar.update(MiB)
                await asyncio.sleep(0)
        written = time.perf_counter() - t0
        await log.flush()
        return time.perf_counter() - t0, written, done
    finally:
        await store.close()


def raw_sync_loop(path: str, record: bytes, seconds: float, bar: ProgressLike) -> tuple[int, float]:
    """One-at-a-time os.write of a record + fdatasync for ``seconds``: (count, elapsed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        t0 = time.perf_counter()
        deadline = t0 + seconds
        count = 0
        last = t0
        while True:
            os.write(fd, record)
            os.fdatasync(fd)
            count += 1
            now = time.perf_counter()
            if now - last >= 0.1:
                bar.update(int((now - last) * 1000))
                last = now
            if now >= deadline:
                return count, now - t0
    finally:
        os.close(fd)
        os.unlink(path)


async def engine_sync_append(
    root: str, batch: bytearray, seconds: float, concurrency: int, nlogs: int, bar: ProgressLike
) -> tuple[int, float, int]:
    """``concurrency`` tasks appending ``batch`` to ``nlogs`` sync logs for ``seconds``:
    (records acknowledged, elapsed, group-commit rounds)."""
    store = await Store.open(fresh(root))
    try:
        logs = [
            await store.create_log(f"{LOG_NAME}-{i}", LogConfig(flush=FLUSH_SYNC))
            for i in range(nlogs)
        ]
        per_batch = records_in(batch)
        count = 0
        rounds0 = store.rounds
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def appender(k: int) -> None:
            nonlocal count
            log = logs[k % nlogs]
            while time.perf_counter() < deadline:
                await log.append(batch)
                count += per_batch

        async def ticker() -> None:
            last = t0
            while True:
                await asyncio.sleep(0.1)
                now = time.perf_counter()
                bar.update(int((now - last) * 1000))
                last = now

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(appender(k) for k in range(concurrency)))
        finally:
            tick.cancel()
        elapsed = time.perf_counter() - t0
        return count, elapsed, store.rounds - rounds0
    finally:
        await store.close()


async def bench_append(args: argparse.Namespace, base: str, rep: Reporter) -> None:
    modes = ("async", "sync") if args.mode == "all" else (args.mode,)
    if "async" in modes:
        batches = make_batches(args.record_bytes, args.batch_bytes)
        block = os.urandom(args.batch_bytes)
        eng: list[float] = []
        raw: list[float] = []
        total = args.size
        bar = progress(2 * args.repeat * (total // MiB), "append async")
        eng_w: list[float] = []
        raw_w: list[float] = []

        async def baseline_step() -> None:
            dt, wdt = raw_sequential_write(os.path.join(base, "baseline.tmp"), block, total, bar)
            raw.append(total / dt / MB)
            raw_w.append(total / wdt / MB)

        async def engine_step() -> None:
            dt, wdt, written = await engine_async_append(
                os.path.join(base, "bench-append-async"), batches, total, bar
            )
            eng.append(written / dt / MB)
            eng_w.append(written / wdt / MB)

        await interleave(args.repeat, baseline_step, engine_step)
        bar.close()
        rep.emit(
            Figure(
                "append.async",
                median(eng),
                "MB/s",
                median(raw),
                Goal("ratio", 0.7),
                {
                    "bytes": total,
                    "record_bytes": args.record_bytes,
                    "batch_bytes": len(batches[0]),
                    "records_per_batch": records_in(batches[0]),
                    "repeat": args.repeat,
                    "runs": [round(x, 1) for x in eng],
                    "baseline_runs": [round(x, 1) for x in raw],
                    "before_final_sync": {
                        "engine_mbps": round(median(eng_w), 1),
                        "baseline_mbps": round(median(raw_w), 1),
                    },
                },
            )
        )
    if "sync" in modes:
        # The async figure's gigabytes may still be reaching the disk (and their freed blocks
        # being discarded): sync first, so the sync figures and their baseline start from an
        # idle device rather than share it with the previous figure's leftovers.
        await asyncio.to_thread(os.sync)
        batch = build_batch([Record(os.urandom(args.record_bytes), timestamp_ms=now_ms())])
        record = os.urandom(args.record_bytes)
        ms = int(args.seconds * 1000)
        counts = (1, args.logs) if args.logs > 1 else (1,)
        runs: dict[int, list[float]] = {n: [] for n in counts}
        rounds: dict[int, list[int]] = {n: [] for n in counts}
        raw = []
        bar = progress(args.repeat * ms * (1 + len(counts)), "append sync")

        async def sync_baseline() -> None:
            n, dt = raw_sync_loop(os.path.join(base, "baseline.tmp"), record, args.seconds, bar)
            raw.append(n / dt)

        async def sync_engine() -> None:
            for nlogs in counts:
                c, dt, r = await engine_sync_append(
                    os.path.join(base, f"bench-append-sync-{nlogs}"),
                    batch,
                    args.seconds,
                    args.concurrency,
                    nlogs,
                    bar,
                )
                runs[nlogs].append(c / dt)
                rounds[nlogs].append(r)

        await interleave(args.repeat, sync_baseline, sync_engine)
        bar.close()
        params: dict[str, Any] = {
            "record_bytes": args.record_bytes,
            "batch_bytes": len(batch),
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "repeat": args.repeat,
            "baseline_runs": [round(x) for x in raw],
        }
        one = median(runs[1])
        rep.emit(
            Figure(
                "append.sync.1log",
                one,
                "records/s",
                median(raw),
                Goal("ratio", 20),
                {
                    **params,
                    "logs": 1,
                    "runs": [round(x) for x in runs[1]],
                    "records_per_round": _per_round(runs[1], rounds[1], args.seconds),
                },
            )
        )
        if args.logs > 1:
            many = median(runs[args.logs])
            rep.emit(
                Figure(
                    f"append.sync.{args.logs}logs",
                    many,
                    "records/s",
                    one,
                    Goal("ratio", 0.5),
                    {
                        **params,
                        "logs": args.logs,
                        "runs": [round(x) for x in runs[args.logs]],
                        "baseline_is": "append.sync.1log of this run",
                        "ratio_to_raw": round(many / median(raw), 2) if raw else None,
                        "records_per_round": _per_round(
                            runs[args.logs], rounds[args.logs], args.seconds
                        ),
                    },
                )
            )


def _per_round(rates: list[float], rounds: list[int], seconds: float) -> float:
    total_rounds = sum(rounds)
    return round(sum(rates) * seconds / total_rounds, 1) if total_rounds else 0.0


# -- read -----------------------------------------------------------------------------------------


class SocketSink:
    """A connected loopback TCP pair; a thread drains the far end until EOF."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as server:
            self.out = socket.create_connection(server.getsockname())
            self.far, _ = server.accept()
        self.received = 0
        self._thread = threading.Thread(target=self._drain, name="bench-drain", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        view = memoryview(bytearray(MiB))
        while n := self.far.recv_into(view):
            self.received += n

    def fileno(self) -> int:
        return self.out.fileno()

    def finish(self) -> int:
        """Close the sending side and wait until the reader has everything."""
        self.out.shutdown(socket.SHUT_WR)
        self._thread.join()
        self.out.close()
        self.far.close()
        return self.received


def sendfile_all(out_fd: int, in_fd: int, offset: int, count: int) -> None:
    while count > 0:
        n = os.sendfile(out_fd, in_fd, offset, count)
        if n == 0:
            raise OSError(f"sendfile sent nothing with {count} bytes left")
        offset += n
        count -= n


def raw_sendfile(files: Sequence[tuple[str, int]], bar: ProgressLike) -> tuple[float, int]:
    sink = SocketSink()
    total = 0
    t0 = time.perf_counter()
    for path, size in files:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sendfile_all(sink.fileno(), fd, 0, size)
        finally:
            os.close(fd)
        total += size
        bar.update(size // MiB)
    got = sink.finish()
    dt = time.perf_counter() - t0
    if got != total:
        raise RuntimeError(f"reader got {got} of {total} bytes")
    return dt, total


def engine_sendfile(log: Log, fetch_bytes: int, bar: ProgressLike) -> tuple[float, int]:
    sink = SocketSink()
    offset = log.log_start_offset
    end = log.committed_offset
    total = pending = 0
    t0 = time.perf_counter()
    while offset < end:
        result = log.read(offset, fetch_bytes)
        for region in result.regions:
            sendfile_all(sink.fileno(), region.file.fileno(), region.position, region.length)
            total += region.length
            pending += region.length
        offset = result.next_offset
        if pending >= 64 * MiB:
            bar.update(pending // MiB)
            pending = 0
    got = sink.finish()
    dt = time.perf_counter() - t0
    if got != total:
        raise RuntimeError(f"reader got {got} of {total} bytes")
    return dt, total


def engine_decoded(log: Log, fetch_bytes: int, bar: ProgressLike) -> tuple[float, int]:
    offset = log.log_start_offset
    end = log.committed_offset
    records = 0
    t0 = time.perf_counter()
    while offset < end:
        recs = log.read_records(offset, fetch_bytes)
        if not recs:
            break
        records += len(recs)
        offset = recs[-1].offset + 1
        bar.update(len(recs))
    return time.perf_counter() - t0, records


async def open_backlog(
    root: str, size: int, args: argparse.Namespace, label: str
) -> tuple[Store, Log, bool]:
    """A store at ``root`` whose log ``bench`` holds at least ``size`` bytes: reused when one is
    there already, otherwise written (1 KiB records in 64 KiB batches, async, flushed)."""
    if os.path.isdir(root):
        try:
            store = await Store.open(root)
        except Exception:  # unusable leftovers of an earlier run: start again
            shutil.rmtree(root, ignore_errors=True)
        else:
            log = store.logs.get(LOG_NAME)
            if log is not None and log.size_bytes() >= size:
                return store, log, True
            await store.close()
    store = await Store.open(fresh(root))
    log = await store.create_log(LOG_NAME, LogConfig(flush=FLUSH_ASYNC))
    batches = make_batches(args.record_bytes, args.batch_bytes)
    bar = progress(size // MiB, f"{label}: writing backlog")
    done = i = since = 0
    while done < size:
        b = batches[i % len(batches)]
        i += 1
        await log.append(b)
        done += len(b)
        since += len(b)
        if since >= MiB:
            bar.update(since // MiB)
            since = 0
            await asyncio.sleep(0)
    await log.flush()
    bar.close()
    return store, log, False


async def bench_read(args: argparse.Namespace, base: str, rep: Reporter) -> None:
    store, log, reused = await open_backlog(
        os.path.join(base, "bench-read"), args.size, args, "read"
    )
    try:
        files = segment_files(log)
        total = sum(size for _p, size in files)
        records = log.committed_offset - log.log_start_offset
        warm(files)
        eng: list[float] = []
        raw: list[float] = []
        bar = progress(2 * args.repeat * (total // MiB), "read sendfile")

        async def read_baseline() -> None:
            dt, n = raw_sendfile(files, bar)
            raw.append(n / dt / MB)

        async def read_engine() -> None:
            dt, n = engine_sendfile(log, args.fetch_bytes, bar)
            eng.append(n / dt / MB)

        await interleave(args.repeat, read_baseline, read_engine)
        bar.close()
        params = {
            "bytes": total,
            "records": records,
            "segments": len(files),
            "fetch_bytes": args.fetch_bytes,
            "reused": reused,
            "repeat": args.repeat,
        }
        rep.emit(
            Figure(
                "read.sendfile",
                median(eng),
                "MB/s",
                median(raw),
                Goal("ratio", 0.5),
                {
                    **params,
                    "runs": [round(x, 1) for x in eng],
                    "baseline_runs": [round(x, 1) for x in raw],
                },
            )
        )
        bar = progress(records, "read decoded")
        dt, nrec = engine_decoded(log, args.fetch_bytes, bar)
        bar.close()
        raw_mb = median(raw)
        raw_rec = raw_mb * MB * records / total if total else 0.0
        rep.emit(
            Figure(
                "read.decoded.records",
                nrec / dt,
                "records/s",
                raw_rec,
                None,
                {**params, "baseline_is": "read.sendfile baseline as records/s"},
            )
        )
        rep.emit(
            Figure(
                "read.decoded.bytes",
                total / dt / MB,
                "MB/s",
                raw_mb,
                None,
                {**params, "baseline_is": "read.sendfile baseline"},
            )
        )
    finally:
        await store.close()


# -- recovery -------------------------------------------------------------------------------------


def raw_crc_read(files: Sequence[tuple[str, int]], bar: ProgressLike) -> tuple[float, int]:
    buf = bytearray(READ_CHUNK)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for path, _size in files:
        crc = 0
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                crc = crc32c.crc32c(view[:n], crc)
                total += n
        bar.update(_size // MiB)
    return time.perf_counter() - t0, total


def make_unclean(root: str, name: str) -> None:
    """What a crash before the first checkpoint covering ``name`` leaves: no clean-shutdown
    marker and recovery point 0 (see the module docstring)."""
    from logstore.io import RealIO

    io = RealIO()
    marker = os.path.join(root, CLEAN_MARKER)
    if os.path.exists(marker):
        os.unlink(marker)
    cp = ckpt.read(io, root) or ckpt.Checkpoint()
    entry = cp.logs.setdefault(name, ckpt.LogCheckpoint())
    entry.recovery_point = 0
    ckpt.write(io, root, cp)


async def engine_recovery(root: str) -> tuple[float, int, dict[str, Any]]:
    make_unclean(root, LOG_NAME)
    t0 = time.perf_counter()
    store = await Store.open(root)
    dt = time.perf_counter() - t0
    try:
        report = store.report
        lr = report.logs[LOG_NAME]
        if report.clean or lr.bytes_cut or lr.cuts:
            raise RuntimeError(f"unexpected recovery: clean={report.clean} cuts={lr.cuts}")
        return dt, lr.scanned_bytes, {"rows": lr.rows, "rebuilt_indexes": len(lr.rebuilt_indexes)}
    finally:
        await store.close()


async def bench_recovery(args: argparse.Namespace, base: str, rep: Reporter) -> None:
    root = os.path.join(base, "bench-recovery")
    store, log, reused = await open_backlog(root, args.size, args, "recovery")
    files = segment_files(log)
    await store.close()
    total = sum(size for _p, size in files)
    warm(files)
    eng: list[float] = []
    raw: list[float] = []
    scanned: list[int] = []
    info: dict[str, Any] = {}
    bar = progress(2 * args.repeat * (total // MiB), "recovery")

    async def recovery_baseline() -> None:
        dt, n = raw_crc_read(files, bar)
        raw.append(n / dt / MB)

    async def recovery_engine() -> None:
        dt, n, found = await engine_recovery(root)
        bar.update(total // MiB)
        scanned.append(n)
        eng.append(n / dt / MB)
        info.update(found)

    await interleave(args.repeat, recovery_baseline, recovery_engine)
    bar.close()
    rep.emit(
        Figure(
            "recovery.scan",
            median(eng),
            "MB/s",
            median(raw),
            Goal("value", 500),
            {
                "bytes": total,
                "scanned_bytes": scanned[-1] if scanned else 0,
                "segments": len(files),
                "reused": reused,
                "repeat": args.repeat,
                "runs": [round(x, 1) for x in eng],
                "baseline_runs": [round(x, 1) for x in raw],
                **info,
            },
        )
    )


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logstore bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="append|read|recovery|rocket")

    def common(p: argparse.ArgumentParser, size: int) -> None:
        p.add_argument(
            "--dir", help="keep data here (DIR/bench-*); default: a temporary directory, removed"
        )
        p.add_argument("--json", action="store_true", help="one JSON object per figure per line")
        p.add_argument(
            "--size",
            type=parse_size,
            default=size,
            help=f"bytes to write (suffix K, M, G; default {size // MiB}M)",
        )
        p.add_argument(
            "--record-bytes", type=parse_size, default=1024, help="record value size (default 1024)"
        )
        p.add_argument(
            "--batch-bytes",
            type=parse_size,
            default=64 * 1024,
            help="batch size: as many records as fit (default 64K)",
        )
        p.add_argument(
            "--repeat",
            type=int,
            default=3,
            help="alternating engine/baseline runs; medians are compared (default 3)",
        )

    p = sub.add_parser(
        "append",
        help="append throughput (async MB/s; sync records/s, 1 and N logs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p, 512 * MiB)
    p.add_argument(
        "--mode", choices=("async", "sync", "all"), default="all", help="default: all figures"
    )
    p.add_argument("--concurrency", type=int, default=64, help="sync appender tasks (default 64)")
    p.add_argument(
        "--logs",
        type=int,
        default=16,
        help="sync logs of the many-log figure (default 16; 1: skip it)",
    )
    p.add_argument(
        "--seconds", type=float, default=2.0, help="duration of each sync run (default 2)"
    )
    p = sub.add_parser(
        "read",
        help="sendfile reads of a backlog, and decoded reads",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p, 1024 * MiB)
    p.add_argument(
        "--fetch-bytes", type=parse_size, default=MiB, help="max_bytes per Log.read (default 1M)"
    )
    p = sub.add_parser(
        "recovery",
        help="Store.open recovery scan of an unclean 1 GiB log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(p, 1024 * MiB)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, str, Reporter], Any]] = {
    "append": bench_append,
    "read": bench_read,
    "recovery": bench_recovery,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rocket"] and argv[1:2] != ["ha"]:  # its own options and figures: tools.bench_rocket
        from tools import bench_rocket

        return bench_rocket.main(argv[1:])
    if argv[:1] == ["ha"] or argv[:2] == ["rocket", "ha"]:  # a broker group as processes: tools.bench_ha
        from tools import bench_ha

        return bench_ha.main(argv[2:] if argv[0] == "rocket" else argv[1:])
    if argv[:1] == ["replication"]:  # leader + 2 followers on localhost: tools.bench_replication
        from tools import bench_replication

        return bench_replication.main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.repeat < 1 or args.size < 1 or args.record_bytes < 0 or args.batch_bytes < 1:
        print(
            "logstore bench: --repeat, --size and --batch-bytes must be positive", file=sys.stderr
        )
        return 2
    if args.command == "append" and (args.concurrency < 1 or args.logs < 1 or args.seconds <= 0):
        print(
            "logstore bench: --concurrency, --logs and --seconds must be positive", file=sys.stderr
        )
        return 2
    rep = Reporter(args.json)
    with workdir(args.dir) as base:
        runtime.run(COMMANDS[args.command](args, base, rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
