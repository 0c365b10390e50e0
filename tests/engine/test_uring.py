"""The io_uring fdatasync (logstore/uring.py), against the real kernel and real files."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run

from logstore.io import File, RealIO
from logstore.uring import ENTRIES_MAX, FsyncRing, RingFullError


def _ring(entries: int = 8) -> FsyncRing:
    ring = FsyncRing.open(entries)
    assert ring is not None, "io_uring is available on this machine kind"
    return ring


def _file(path: Path) -> File:
    f = RealIO().open(str(path), create=True)
    f.pwrite(b"x" * 4096, 0)
    return f


@contextlib.contextmanager
def _ring_and_file(path: Path, entries: int = 8) -> Iterator[tuple[FsyncRing, File]]:
    ring = _ring(entries)
    f = _file(path)
    try:
        yield ring, f
    finally:
        ring.close()
        f.close()


def test_fdatasync_completes_on_the_loop(tmp_path: Path) -> None:
    async def body() -> None:
        ring = _ring()
        files = [_file(tmp_path / f"f{i}") for i in range(8)]
        try:
            assert await ring.fdatasync(files[0]) is None
            assert ring.pending == 0 and ring.submitted == 1
            assert ring.last_fsync_s > 0
            # As many at once as the ring has entries, each resolved once.
            results = await asyncio.gather(*(ring.fdatasync(f) for f in files))
            assert results == [None] * 8 and ring.pending == 0 and ring.submitted == 9
        finally:
            ring.close()
            for f in files:
                f.close()

    run(body)


def test_a_failed_fdatasync_raises_its_errno_and_the_ring_goes_on(tmp_path: Path) -> None:
    async def body() -> None:
        bad = _file(tmp_path / "closed")
        bad.close()  # its descriptor is -1 now
        with _ring_and_file(tmp_path / "f") as (ring, f):
            with pytest.raises(OSError) as info:
                await ring.fdatasync(bad)
            assert info.value.errno == errno.EBADF
            assert ring.pending == 0
            await ring.fdatasync(f)  # still usable

    run(body)


def test_pending_fsyncs_are_bounded_by_the_entries(tmp_path: Path) -> None:
    async def body() -> None:
        with _ring_and_file(tmp_path / "f", 2) as (ring, f):
            first = [ring.fdatasync(f) for _ in range(ring.entries)]
            with pytest.raises(RingFullError):
                ring.fdatasync(f)
            assert ring.pending == ring.entries
            await asyncio.gather(*first)
            await ring.fdatasync(f)  # room again

    run(body)


def test_close_fails_what_is_pending_and_refuses_more(tmp_path: Path) -> None:
    async def body() -> None:
        with _ring_and_file(tmp_path / "f") as (ring, f):
            pending = ring.fdatasync(f)
            ring.close()
            with pytest.raises(OSError, match="closed"):
                await pending
            with pytest.raises(OSError, match="closed"):
                ring.fdatasync(f)
            ring.close()  # twice is harmless

    run(body)


@pytest.mark.parametrize("entries", [0, ENTRIES_MAX + 1])
def test_entries_out_of_range_are_refused(entries: int) -> None:
    with pytest.raises(ValueError, match="entries"):
        FsyncRing.open(entries)
