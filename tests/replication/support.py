"""Helpers for replication tests: stores in a temp directory, a leader, followers, batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from logstore import LogConfig, LogNotFoundError, Record, Store, StoreConfig, build_batch
from logstore.replication import Follower, ReplicaServer

T = TypeVar("T")
FAST = {"fetch_max_wait_ms": 100, "retry_backoff_ms": 20}
ASYNC = LogConfig(segment_bytes=64 * 1024, index_interval_bytes=512)
SYNC = LogConfig(flush="sync", segment_bytes=64 * 1024, index_interval_bytes=512)


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def batch(i: int, count: int = 1, size: int = 32) -> bytearray:
    return build_batch([Record(value=(b"r%06d-" % (i + j)).ljust(size, b"x"), timestamp_ms=1_000 + i + j)
                        for j in range(count)])


async def open_store(path: str) -> Store:
    return await Store.open(path, config=StoreConfig(checkpoint_interval_ms=200))


async def until(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not _holds(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def _holds(cond: Callable[[], bool]) -> bool:
    try:
        return cond()
    except LogNotFoundError:  # a follower has not created the log yet
        return False


def values(store: Store, name: str) -> list[tuple[int, bytes | None]]:
    lg = store.log(name)
    out: list[tuple[int, bytes | None]] = []
    offset = lg.log_start_offset
    while offset < lg.end_offset:  # a read returns batches of one segment
        recs = lg.read_records(offset, 1 << 20)
        out += [(r.offset, r.value) for r in recs]
        offset = recs[-1].offset + 1
    return out


def epochs_of(store: Store, name: str) -> list[int]:
    lg = store.log(name)
    out = []
    off = lg.log_start_offset
    while off < lg.end_offset:
        for h, _raw in lg.iter_batches(off, 1 << 30):
            out.append(h.leader_epoch)
            off = h.next_offset
    return out


async def follower_of(store: Store, server: ReplicaServer, replica_id: int, **kw: int) -> Follower:
    f = Follower(store, "127.0.0.1", server.port, replica_id=replica_id, **{**FAST, **kw})
    await f.start()
    return f
