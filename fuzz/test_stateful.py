"""Hypothesis stateful crash-recovery test: the same harness and oracle as ``fuzz run``,
with Hypothesis choosing (and shrinking) the operations."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fuzz.harness import Harness
from logstore.config import LogConfig

NAMES = ["a", "b", "c"]
sizes = st.lists(st.sampled_from([0, 10, 100, 500, 700, 1500]), min_size=1, max_size=3)
names = st.sampled_from(NAMES)


class CrashRecovery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.h = Harness(0)

    def run(self, coro: Any) -> None:
        self.loop.run_until_complete(coro)

    @initialize(flushes=st.lists(st.sampled_from(["sync", "async"]), min_size=3, max_size=3),
                segment_bytes=st.sampled_from([1024, 2048]), seed=st.integers(0, 2**32))
    def setup(self, flushes: list[str], segment_bytes: int, seed: int) -> None:
        self.h = Harness(seed)
        self.run(self.h.open())
        for name, flush in zip(NAMES, flushes, strict=True):
            cfg = LogConfig(flush=flush, segment_bytes=segment_bytes, index_interval_bytes=128, retention_bytes=3000)
            self.run(self.h.create_log(name, cfg))

    @rule(name=names, sizes=sizes, zstd=st.booleans(), crash_point=st.none() | st.integers(0, 10))
    def append(self, name: str, sizes: list[int], zstd: bool, crash_point: int | None) -> None:
        self.h.snap_at = crash_point
        self.run(self.h.append(name, sizes, zstd=zstd))

    @rule(sizes=sizes)
    def append_all(self, sizes: list[int]) -> None:
        self.run(self.h.append_many([(n, sizes, False, True) for n in NAMES]))

    @rule(name=names)
    def flush(self, name: str) -> None:
        self.run(self.h.flush(name))

    @rule(crash_point=st.none() | st.integers(0, 20))
    def checkpoint(self, crash_point: int | None) -> None:
        self.h.snap_at = crash_point
        self.run(self.h.checkpoint())

    @rule(name=names, back=st.integers(0, 5))
    def truncate(self, name: str, back: int) -> None:
        self.run(self.h.truncate(name, back))

    @rule(name=names, forward=st.integers(0, 5))
    def delete_before(self, name: str, forward: int) -> None:
        self.run(self.h.delete_before(name, forward))

    @rule(name=names)
    def retention(self, name: str) -> None:
        self.run(self.h.retention(name, 0))

    @rule(seed=st.integers(0, 2**32))
    def crash(self, seed: int) -> None:
        self.run(self.h.crash(random.Random(seed)))

    @rule()
    def reopen(self) -> None:
        self.run(self.h.reopen())

    @rule(name=names, sizes=sizes)
    def fsync_failure(self, name: str, sizes: list[int]) -> None:
        self.h.fault = ("fsync", 0, False)
        self.run(self.h.append(name, sizes))

    @invariant()
    def flusher_alive(self) -> None:
        if self.h.store is not None:
            self.h.live()

    def teardown(self) -> None:
        try:
            if self.h.store is not None:
                self.run(self.h.crash(random.Random(1)))
            self.run(self.h.shutdown())
        finally:
            self.loop.close()


CrashRecovery.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
TestCrashRecovery = CrashRecovery.TestCase
