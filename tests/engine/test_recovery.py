"""Durability under each flush policy, fail-stop, and every row of the recovery decision
table (logstore/recovery.py), on real and simulated IO."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL, SMALL_SYNC, Env, batch, rec, run

from logstore import LogConfig, RealIO, Record, SimClock, SimIO, Store, StoreConfig, build_batch
from logstore import checkpoint as ckpt
from logstore import journal as jn
from logstore.errors import CorruptLogError, LogFailedError, LogstoreError
from logstore.segment import INDEX_SUFFIX, LOG_SUFFIX, segment_stem
from logstore.simio import Fate


def drop_all(_op: object) -> Fate:
    return Fate.DROPPED


def files(env: Env, name: str) -> dict[str, bytes]:
    d = env.path("logs", name)
    return {f: env.io.read_all(os.path.join(d, f)) for f in env.io.listdir(d)}


def seg_path(env: Env, name: str, base: int, suffix: str = LOG_SUFFIX) -> str:
    return env.path("logs", name, segment_stem(base) + suffix)


def corrupt(env: Env, path: str, position: int) -> None:
    if isinstance(env.io, SimIO):
        env.io.corrupt(path, position, bytes([env.io.read_all(path)[position] ^ 0xFF]))
    else:
        with open(path, "r+b") as f:
            f.seek(position)
            b = f.read(1)
            f.seek(position)
            f.write(bytes([b[0] ^ 0xFF]))


def test_sync_acks_survive_power_loss(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        logs = [await store.create_log(f"q{i}", SMALL_SYNC) for i in range(4)]
        results = await asyncio.gather(*(logs[i % 4].append(batch(i)) for i in range(64)))
        assert store.rounds < 64  # group commit: rounds cover many appends
        env.crash(store, drop_all)  # every unsynced write is lost
        store = await env.open()
        for r_i, r in enumerate(results):
            log = store.log(f"q{r_i % 4}")
            assert log.end_offset >= r.last_offset + 1
        total = sum(store.log(f"q{i}").end_offset for i in range(4))
        assert total == 64
        assert any(rep.replayed_batches for rep in store.report.logs.values()) or env.kind == "real"
        await store.close()

    run(body)


@pytest.mark.parametrize("inline_max", [0, 1, None])
def test_lone_sync_appends_survive_power_loss(env: Env, inline_max: int | None) -> None:
    """One appender at a time: each round holds one append and is fsynced inline on the loop's
    thread (inline_max 1, or None, the default: any round) or on a journal thread (0); every
    ack is durable."""
    async def body() -> None:
        store = await env.open(inline_round_appends_max=inline_max)
        log = await store.create_log("q", SMALL_SYNC)
        for i in range(20):
            await log.append(batch(i))
        assert store.rounds == 20 and store.round_appends == 20
        env.crash(store, drop_all)
        store = await env.open()
        assert store.log("q").end_offset == 20
        assert [r.value for r in store.log("q").read_records(0)] == [rec(i).value for i in range(20)]
        await store.close()

    run(body)


def test_rounds_leave_the_loop_while_fsyncs_are_slow(env: Env) -> None:
    """Without an io_uring: a round fsyncs on the loop's thread while the last journal fsync
    was fast; after a slow one the next round goes to a journal thread (the loop keeps serving
    meanwhile), and once an fsync is fast again rounds come back inline. Every ack is durable
    either way."""
    async def body() -> None:
        store = await env.open(inline_fsync_ms_max=1000.0, fsync_ring=False)
        log = await store.create_log("q", SMALL_SYNC)
        await asyncio.gather(*(log.append(batch(i)) for i in range(8)))
        assert store.rounds >= 1 and store.inline_rounds == store.rounds
        inline = store.inline_rounds
        store.last_fsync_s = 2.0  # as if the disk had just taken 2 s over an fsync
        await log.append(batch(8))
        assert store.inline_rounds == inline  # on a journal thread, timed there
        assert store.last_fsync_s < 1.0
        await log.append(batch(9))
        assert store.inline_rounds == inline + 1
        env.crash(store, drop_all)
        store = await env.open()
        assert [r.value for r in store.log("q").read_records(0)] == [rec(i).value for i in range(10)]
        await store.close()

    run(body)


def test_rounds_of_many_fsync_through_the_ring(env: Env) -> None:
    """A round of ring_round_records_min records or more writes the journal on the loop's
    thread and fsyncs it through the asynchronous queue (an io_uring on real IO); smaller
    rounds still fsync inline; a slow fsync sends even lone appends to the queue (not to the
    journal threads). Every ack is durable, in order."""
    async def body() -> None:
        store = await env.open(inline_fsync_ms_max=1000.0, ring_round_records_min=5)
        assert store._ring is not None, "io_uring is available on this machine kind"
        log = await store.create_log("q", SMALL_SYNC)
        await asyncio.gather(*(log.append(batch(i)) for i in range(5)))
        assert (store.rounds, store.ring_rounds, store.inline_rounds) == (1, 1, 0)
        await asyncio.gather(*(log.append(batch(i)) for i in range(5, 9)))
        assert (store.rounds, store.ring_rounds, store.inline_rounds) == (2, 1, 1)
        store.last_fsync_s = 2.0  # as if the disk had just taken 2 s over an fsync
        await log.append(batch(9))
        assert (store.ring_rounds, store.inline_rounds) == (2, 1)
        assert store.last_fsync_s < 1.0  # timed by the ring's completion
        results = await asyncio.gather(*(log.append(batch(i)) for i in range(10, 40)))
        assert [r.base_offset for r in results] == list(range(10, 40))
        assert store._ring.pending == 0
        env.crash(store, drop_all)
        store = await env.open()
        values: list[bytes] = []
        while len(values) < 40 and (got := store.log("q").read_records(len(values))):
            values += [r.value for r in got]  # a read stops at a segment's end
        assert values == [rec(i).value for i in range(40)]
        await store.close()

    run(body)


def test_the_ring_threshold_counts_records_not_appends(env: Env) -> None:
    """One append carrying ring_round_records_min records (a broker's sends to one queue stored
    together) fsyncs through the queue like that many one-record appends; fewer, inline."""
    async def body() -> None:
        store = await env.open(inline_fsync_ms_max=1000.0, ring_round_records_min=5)
        log = await store.create_log("q", SMALL_SYNC)
        await log.append(batch(0, count=5))
        assert (store.rounds, store.ring_rounds, store.inline_rounds) == (1, 1, 0)
        await log.append(batch(5, count=4))
        assert (store.rounds, store.ring_rounds, store.inline_rounds) == (2, 1, 1)
        env.crash(store, drop_all)
        store = await env.open()
        assert [r.value for r in store.log("q").read_records(0)] == [rec(i).value for i in range(9)]
        await store.close()

    run(body)


def test_a_refused_ring_submission_falls_back_to_the_journal_threads(env: Env) -> None:
    """When the queue refuses a submission (here: it was closed under the store), that round's
    fsync runs in a journal thread, later rounds never try the queue again, and every ack is
    durable."""
    async def body() -> None:
        store = await env.open(inline_fsync_ms_max=1000.0, ring_round_records_min=2)
        log = await store.create_log("q", SMALL_SYNC)
        await asyncio.gather(*(log.append(batch(i)) for i in range(4)))
        assert store.ring_rounds == 1
        assert store._ring is not None
        store._ring.close()
        await asyncio.gather(*(log.append(batch(i)) for i in range(4, 8)))  # refused: a thread
        await asyncio.gather(*(log.append(batch(i)) for i in range(8, 12)))  # inline again
        assert (store.rounds, store.ring_rounds, store.inline_rounds) == (3, 1, 1)
        assert not store._ring_usable and store.failure is None
        env.crash(store, drop_all)
        store = await env.open()
        assert [r.value for r in store.log("q").read_records(0)] == [rec(i).value for i in range(12)]
        await store.close()

    run(body)


@pytest.mark.parametrize("field", ["rounds_in_flight_max", "ring_rounds_in_flight_max", "ring_round_records_min"])
def test_round_limits_below_one_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StoreConfig(**{field: 0})


def test_async_acks_survive_after_flush_only(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(30):
            await log.append(batch(i))
        await log.flush()
        await store.write_checkpoint()
        for i in range(30, 40):
            await log.append(batch(i))  # in the page cache only
        env.crash(store, drop_all)
        store = await env.open()
        end = store.log("q").end_offset
        assert end >= 30
        if env.kind == "sim":
            assert end == 30  # the unflushed tail is what async may lose, and all it loses
        await store.close()

    run(body)



@pytest.mark.parametrize("inline_max", [0, 1, None])
def test_fail_stop_on_fsync_error(inline_max: int | None) -> None:
    async def body() -> None:
        io = SimIO(seed=3)
        from logstore import SimClock

        store = await Store.open("/s", io=io, clock=SimClock(), config=StoreConfig(inline_round_appends_max=inline_max))
        sync = await store.create_log("s", SMALL_SYNC)
        asy = await store.create_log("a", SMALL)
        await sync.append(batch(0))
        await asy.append(batch(0))
        io.fail_fsync()
        with pytest.raises(LogFailedError, match="fail-stopped"):
            await sync.append(batch(1))
        with pytest.raises(LogFailedError):
            await asy.flush()
        io.fail_fsync(False)  # even once the disk "recovers", nothing is retried
        with pytest.raises(LogFailedError):
            await sync.append(batch(2))
        with pytest.raises(LogFailedError):
            await asy.append(batch(2))
        await store.close()  # no clean marker: the next open recovers
        store = await Store.open("/s", io=io, clock=SimClock())
        assert not store.report.clean
        assert store.log("s").end_offset >= 1
        await store.close()

    run(body)


def test_r1_clean_shutdown_skips_the_scan(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(50):
            await log.append(batch(i))
        await store.close()
        store = await env.open()
        rep = store.report.logs["q"]
        assert store.report.clean and rep.rows == ["R1"] and rep.scanned_bytes == 0
        assert store.log("q").end_offset == 50
        await store.close()

    run(body)


def test_r1_marker_with_a_damaged_tail_falls_back_to_a_scan(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(5):
            await log.append(batch(i))
        await store.close()
        # the marker trusts CRCs (no scan) but not structure: a file cut short is noticed,
        # and since the cut data was durable (below the recovery point) the log is refused
        f = env.io.open(seg_path(env, "q", 0))
        f.truncate(f.size() - 10)
        f.fdatasync()
        f.close()
        with pytest.raises(CorruptLogError, match="below the recovery point"):
            await env.open()

    run(body)


def test_r2_r3_torn_tail_is_cut_and_reported(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1 << 20))
        for i in range(10):
            await log.append(batch(i))
        await log.flush()
        await store.write_checkpoint()
        env.crash(store)
        # a torn write past the durable point: half a batch of garbage at the end
        path = seg_path(env, "q", 0)
        tail = bytes(batch(10))[:40]
        if isinstance(env.io, SimIO):
            env.io.corrupt(path, len(env.io.read_all(path)), tail)
        else:
            with open(path, "ab") as f:
                f.write(tail)
        store = await env.open()
        rep = store.report.logs["q"]
        assert "R2" in rep.rows and "R3" in rep.rows
        assert rep.bytes_cut == 40 and rep.cuts[0].path == path
        assert store.log("q").end_offset == 10
        await store.close()
        store = await env.open()  # recovering again changes nothing
        assert store.log("q").end_offset == 10 and store.report.logs["q"].bytes_cut == 0
        await store.close()

    run(body)


def test_r4_corruption_below_the_recovery_point_is_refused(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1 << 20))
        for i in range(10):
            await log.append(batch(i))
        await log.flush()
        await store.write_checkpoint()
        env.crash(store)
        path = seg_path(env, "q", 0)
        pos = len(batch(0)) * 3 + 30  # inside the fourth batch's CRC-covered bytes
        corrupt(env, path, pos)
        before = files(env, "q")
        with pytest.raises(CorruptLogError) as info:
            await env.open()
        assert info.value.path == path and info.value.position == len(batch(0)) * 3
        assert files(env, "q") == before  # nothing was cut

    run(body)


def test_r5_data_ending_below_the_recovery_point_is_refused(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", LogConfig(segment_bytes=1 << 20))
        for i in range(10):
            await log.append(batch(i))
        await log.flush()
        await store.write_checkpoint()
        env.crash(store)
        path = seg_path(env, "q", 0)
        f = env.io.open(path)
        f.truncate(len(batch(0)) * 5)
        f.fdatasync()
        f.close()
        with pytest.raises(CorruptLogError, match="below the recovery point"):
            await env.open()

    run(body)


def _three_segments(env: Env) -> list[int]:
    async def body() -> list[int]:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(80):
            await log.append(batch(i))
        bases = [s.base_offset for s in log.segments]
        await store.close()
        return bases

    return run(body)


def test_r6_gap_below_the_recovery_point_is_refused(env: Env) -> None:
    bases = _three_segments(env)
    assert len(bases) >= 3
    env.io.unlink(seg_path(env, "q", bases[1]))
    env.io.unlink(env.path(".clean_shutdown"))
    with pytest.raises(CorruptLogError, match="next starts at|previous ends"):
        run(env.open)


def test_r6_gap_past_the_recovery_point_is_cut(env: Env) -> None:
    bases = _three_segments(env)
    env.io.unlink(seg_path(env, "q", bases[1]))
    env.io.unlink(env.path(".clean_shutdown"))
    cp = ckpt.read(env.io, env.root)
    assert cp is not None
    cp.logs["q"].recovery_point = bases[1]
    ckpt.write(env.io, env.root, cp)

    async def body() -> None:
        store = await env.open()
        rep = store.report.logs["q"]
        assert "R6" in rep.rows and store.log("q").end_offset == bases[1]
        assert seg_path(env, "q", bases[2]) in rep.deleted_segments
        await store.close()

    run(body)


def test_r7_segments_below_the_log_start_are_deleted(env: Env) -> None:
    bases = _three_segments(env)
    cp = ckpt.read(env.io, env.root)
    assert cp is not None
    cp.logs["q"].log_start_offset = bases[2]  # as if retention died before unlinking
    ckpt.write(env.io, env.root, cp)

    async def body() -> None:
        store = await env.open()
        rep = store.report.logs["q"]
        assert "R7" in rep.rows and len(rep.deleted_segments) == 2
        assert store.log("q").segments[0].base_offset == bases[2]
        await store.close()

    run(body)


def test_r8_missing_first_segment_is_refused(env: Env) -> None:
    _three_segments(env)
    env.io.unlink(seg_path(env, "q", 0))
    with pytest.raises(CorruptLogError, match="first segment starts"):
        run(env.open)


def test_r9_missing_or_lying_index_is_rebuilt(env: Env) -> None:
    bases = _three_segments(env)
    env.io.unlink(seg_path(env, "q", bases[0], INDEX_SUFFIX))
    env.io.unlink(env.path(".clean_shutdown"))
    f = env.io.open(seg_path(env, "q", bases[1], INDEX_SUFFIX))
    rel = int.from_bytes(f.pread(4, 8), "big")
    f.pwrite(rel.to_bytes(4, "big") + (7).to_bytes(4, "big"), 8)  # entry 1 now points mid-batch
    f.close()

    async def body() -> None:
        store = await env.open()
        rep = store.report.logs["q"]
        assert "R9" in rep.rows and rep.rebuilt_indexes == [seg_path(env, "q", bases[0])]
        log = store.log("q")
        # the lying entry is not checked at open (that would read every entry); the first
        # read that meets it finds the data disagrees and rebuilds the index from the data
        assert [r.offset for r in log.read_records(bases[1] + rel, 200)][0] == bases[1] + rel
        assert log.segments[1].index_rebuilds == 1
        assert [r.offset for r in log.read_records(bases[1] + rel, 200)][0] == bases[1] + rel
        assert log.segments[1].index_rebuilds == 1
        await store.close()

    run(body)


def test_r10_no_checkpoint_scans_everything(env: Env) -> None:
    bases = _three_segments(env)
    env.io.unlink(env.path("checkpoint"))
    env.io.unlink(env.path(".clean_shutdown"))

    async def body() -> None:
        store = await env.open()
        rep = store.report.logs["q"]
        assert "R10" in rep.rows and rep.scanned_bytes == store.log("q").size_bytes()
        assert store.log("q").end_offset == 80 and len(bases) >= 3
        await store.close()

    run(body)


def test_stale_checkpoint_only_means_more_scanning(env: Env) -> None:
    async def body() -> None:
        store = await env.open()
        log = await store.create_log("q", SMALL)
        for i in range(20):
            await log.append(batch(i))
        await store.write_checkpoint()  # recovery point still 0: a stale checkpoint
        old = env.io.read_all(env.path("checkpoint"))
        for i in range(20, 40):
            await log.append(batch(i))
        await store.close()
        env.io.unlink(env.path(".clean_shutdown"))
        ckpt.write_atomic(env.io, env.path("checkpoint"), old)
        store = await env.open()
        assert store.log("q").end_offset == 40 and store.report.logs["q"].scanned_bytes > 0
        await store.close()

    run(body)


def test_an_idle_store_does_not_rewrite_its_checkpoint(tmp_path: Path) -> None:
    async def body() -> None:
        store = await Store.open(str(tmp_path))
        try:
            log = await store.create_log("q")
            await log.append(build_batch([Record(value=b"x")]))
            await store.checkpoint()
            path = tmp_path / "checkpoint"
            first, text = path.stat().st_mtime_ns, path.read_bytes()
            await store.checkpoint()
            await store.checkpoint()
            assert path.stat().st_mtime_ns == first  # nothing changed: nothing written
            await log.append(build_batch([Record(value=b"y")]))
            await store.checkpoint()
            assert path.read_bytes() != text  # (mtime may not tick between two quick writes)
        finally:
            await store.close()

    asyncio.run(body())


def test_a_crash_anywhere_in_a_reset_leaves_the_old_log_or_the_new_start() -> None:
    """Log.truncate_fully_and_start_at failing at each of its IO calls in turn (EIO), then
    power loss: recovery finds the whole old log or an empty one starting at the new start."""

    async def body() -> None:
        for n in range(1, 200):
            io = SimIO(seed=n)
            env = Env(io, "/store", SimClock(), "sim")
            store = await env.open()
            log = await store.create_log("q", SMALL)
            for i in range(0, 40, 2):
                await log.append(batch(i, 2))
            await log.flush()
            await store.checkpoint()
            io.fail_after(n)
            try:
                await log.truncate_fully_and_start_at(300)
                done = True
            except (OSError, LogFailedError, LogstoreError):
                done = False
            io.clear_faults()
            env.crash(store, drop_all)
            store = await env.open()
            log = store.log("q")
            state = (log.log_start_offset, log.end_offset)
            assert state in ((0, 40), (300, 300)), (n, state)
            if state == (0, 40):
                got: list[int] = []
                while len(got) < 40:
                    got += [r.offset for r in log.read_records(len(got), 1 << 20)]
                assert got == list(range(40))
            assert (await log.append(batch(1))).base_offset == state[1]
            await store.close()
            if done:
                assert n > 3, n  # the reset did IO: earlier failures were exercised
                return
        raise AssertionError("the reset never completed")

    run(body)


def test_the_next_journal_file_is_prepared_ahead_and_a_rotation_takes_it(env: Env) -> None:
    """With no retired file to recycle, the next journal file is zero-filled in the background;
    the rotation renames it into place instead of writing zeros itself."""
    async def body() -> None:
        store = await env.open(journal_file_bytes=16384)
        prepared = env.path("journal", jn.PREPARED_NAME)
        if store._preparing is not None:
            await store._preparing
        assert env.io.read_all(prepared) == bytes(16384)
        log = await store.create_log("q", SMALL_SYNC)
        await log.append(batch(0))
        first = store.journal.seq
        await store.checkpoint()  # rotates: no spare yet, so the prepared file becomes the journal
        assert store.journal.seq == first + 1
        assert not env.io.exists(prepared) and not store.journal.prepared
        assert env.io.read_all(env.path("journal", jn.file_name(first + 1))) == bytes(16384)
        await log.append(batch(1))
        await store.checkpoint()  # the first file is retired and recycled: nothing to prepare
        assert not env.io.exists(prepared) and store._preparing is None
        env.crash(store, drop_all)
        store = await env.open(journal_file_bytes=16384)
        assert store.log("q").end_offset == 2
        await store.close()

    run(body)


def test_a_leftover_prepared_journal_file_is_never_trusted(env: Env) -> None:
    """A crash while the next file was being zero-filled leaves it half written: the next open
    deletes it (recovery never reads it); a fresh one, if prepared, is all zeros."""
    async def body() -> None:
        store = await env.open(journal_file_bytes=16384)
        log = await store.create_log("q", SMALL_SYNC)
        for i in range(5):
            await log.append(batch(i))
        env.crash(store, drop_all)
        prepared = env.path("journal", jn.PREPARED_NAME)
        f = env.io.open(prepared, create=True)
        f.pwrite(b"\xab" * 5000, 0)
        f.fdatasync()
        f.close()
        store = await env.open(journal_file_bytes=16384)
        assert store.log("q").end_offset == 5
        if store._preparing is not None:
            await store._preparing
        assert not env.io.exists(prepared) or env.io.read_all(prepared) == bytes(16384)
        await store.close()

    run(body)


def test_a_rotation_waits_for_a_preparation_running_in_another_thread(tmp_path: Path) -> None:
    """Preparing and rotating never overlap: a preparation could otherwise open the prepared
    file just as a rotation renamed it into place, and zero the live journal."""
    import threading


    started, go = threading.Event(), threading.Event()

    class SlowFile:
        """Delegates to a real file; its writes wait for ``go``."""

        def __init__(self, f: Any) -> None:
            self.f = f

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def pwrite(self, data: Any, offset: int) -> None:
            started.set()
            assert go.wait(10)
            self.f.pwrite(data, offset)

    class SlowPrepareIO(RealIO):
        def open(self, path: str, *, create: bool = False, readonly: bool = False) -> Any:
            f = super().open(path, create=create, readonly=readonly)
            return SlowFile(f) if path.endswith(jn.PREPARED_NAME) else f

    io = SlowPrepareIO()
    root = str(tmp_path)
    io.makedirs(os.path.join(root, jn.DIRNAME))
    journal = jn.JournalWriter(io, root, 1, 16384)
    preparing = threading.Thread(target=journal.prepare)
    preparing.start()
    assert started.wait(10)
    rotating = threading.Thread(target=journal.rotate, args=([],))
    rotating.start()
    rotating.join(0.3)
    assert rotating.is_alive()  # held off while the prepared file is written
    go.set()
    preparing.join(10)
    rotating.join(10)
    assert not rotating.is_alive() and journal.seq == 2 and not journal.prepared
    assert not io.exists(journal.prepared_path)
    assert io.read_all(journal.path) == bytes(16384)
    journal.close()


@pytest.mark.parametrize("path", ["inline", "ring"])
def test_when_durable_runs_after_the_fsync_and_before_the_commit(env: Env, path: str) -> None:
    """``Store.when_durable``: the callback runs once the round's journal fsync returned, before
    the round's logs commit (readers do not see the appends yet); never for a round that
    failed; and not at all for a round already started (False)."""
    async def body() -> None:
        store = await env.open(inline_fsync_ms_max=1000.0, ring_round_records_min=2 if path == "ring" else 1000)
        log = await store.create_log("q", SMALL_SYNC)
        seen: list[tuple[int, int]] = []  # (committed offset, rounds acknowledged) at the call
        _, durable = log.start_append(batch(0, count=3))
        assert durable is not None
        assert store.when_durable(durable, lambda: seen.append((log.committed_offset, store.rounds)))
        await durable
        assert seen == [(0, 0)]  # before the commit and the acknowledgement
        assert log.committed_offset == 3
        assert (store.ring_rounds, store.inline_rounds) == ((1, 0) if path == "ring" else (0, 1))
        assert not store.when_durable(durable, lambda: seen.append((-1, -1)))  # long started
        if isinstance(env.io, SimIO):  # a failed round: the future fails, the callback never runs
            _, failing = log.start_append(batch(3))
            assert failing is not None and store.when_durable(failing, lambda: seen.append((-2, -2)))
            env.io.fail_fsync()
            with pytest.raises(LogFailedError):
                await failing
            assert seen == [(0, 0)]
        await store.close()

    run(body)


def test_close_waits_for_a_checkpoint_a_cancelled_task_left_in_its_thread(tmp_path: Path) -> None:
    """A checkpoint's file write runs in a worker thread; cancelling the task that awaited it
    (as close() cancels the background task) does not stop the thread. close() writes the same
    checkpoint file: it waits for that thread first (two writers renaming one temporary file
    failed with FileNotFoundError)."""
    spans: list[tuple[float, float]] = []

    async def main() -> None:
        store = await Store.open(str(tmp_path / "store"), io=RealIO())
        log = await store.create_log("t", LogConfig(flush="sync"))
        await log.append(build_batch([rec(0)]))
        real_write = store._write_checkpoint_now

        def slow_write(**kwargs: Any) -> None:
            start = time.monotonic()
            time.sleep(0.2)
            real_write(**kwargs)
            spans.append((start, time.monotonic()))

        store._write_checkpoint_now = slow_write  # type: ignore[method-assign]
        task = asyncio.ensure_future(store.write_checkpoint())
        await asyncio.sleep(0.05)  # the thread is writing
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()

    run(main)
    assert len(spans) == 2
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end  # close's write began after the cancelled one's ended
