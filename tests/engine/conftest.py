"""One conformance suite, run against both IO implementations (STYLE.md practice 7)."""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from logstore import IO, LogConfig, RealIO, Record, SimClock, SimIO, Store, StoreConfig, build_batch

T = TypeVar("T")


@dataclass
class Env:
    io: IO
    root: str
    clock: SimClock
    kind: str

    async def open(self, **config: Any) -> Store:
        return await Store.open(self.root, io=self.io, clock=self.clock, config=StoreConfig(**config))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def crash(self, store: Store | None = None, chooser: Any = None) -> None:
        """Power loss. On real IO only the process dies: the page cache keeps everything."""
        if store is not None:
            for t in store._tasks:
                t.cancel()
            store._lock.release()
            store._executor.shutdown(wait=False)
            if store._ring is not None:  # a dead process's descriptors close with it
                store._ring.close()
        if isinstance(self.io, SimIO):
            self.io.crash(chooser)


@pytest.fixture(params=["real", "sim"])
def env(request: pytest.FixtureRequest, tmp_path: Any) -> Env:
    if request.param == "real":
        return Env(RealIO(), str(tmp_path / "store"), SimClock(), "real")
    return Env(SimIO(seed=1), "/store", SimClock(), "sim")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(fn())  # type: ignore[arg-type]


def rec(i: int, size: int = 16, ts: int = 1_000) -> Record:
    return Record(value=(b"v%06d-" % i).ljust(size, b"x"), key=b"k%d" % i, headers=(("n", b"%d" % i),), timestamp_ms=ts + i)


def batch(start: int, count: int = 1, size: int = 16, ts: int = 1_000) -> bytearray:
    return build_batch([rec(i, size, ts) for i in range(start, start + count)])


SMALL = LogConfig(segment_bytes=2048, index_interval_bytes=256)
SMALL_SYNC = LogConfig(flush="sync", segment_bytes=2048, index_interval_bytes=256)
