"""The I/O error loop (SQLite's method): fail the Nth IO call for N = 1, 2, ... until the
workload runs to its end without meeting the fault, once with a one-shot error and once
with a persistent one.

Each run checks: every exception an operation raises is a clear one (a LogstoreError or an
OSError; an fsync failure surfaces as LogFailedError from the operation that needed it or
fail-stops the log); a fail-stopped log never accepts another write; and afterwards, with
the faults cleared, a crash (random fates) and a reopen give a store the oracle and
``verify_store`` accept, as does a crash of that recovered store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from fuzz.harness import Harness, Stats, WorkloadAborted
from logstore.config import LogConfig


async def workload(h: Harness) -> None:
    """Touches every IO path: both policies, rolls, flush, checkpoint (journal rotation),
    truncate, delete, retention, clean close and open."""
    await h.create_log("s", LogConfig(flush="sync", segment_bytes=1024, index_interval_bytes=128))
    await h.create_log("y", LogConfig(flush="async", segment_bytes=1024, index_interval_bytes=128,
                                      retention_bytes=1500))
    for i in range(3):
        await h.append_many([("s", [300, 40], i == 1, True), ("y", [500], i == 2, True)])
    await h.flush("y")
    await h.checkpoint()
    await h.append("s", [700])
    await h.truncate("s", 1)
    await h.delete_before("y", 1)
    await h.retention("y", 0)
    await h.append("y", [100])
    await h.reopen()
    await h.append("s", [50])


async def run_one(n: int, persistent: bool, stats: Stats) -> bool:
    """Run the workload with the Nth IO call failing; True if the fault was never reached."""
    h = Harness(n * 2 + persistent, stats)
    try:
        await h.open()
        start_calls = h.io.io_calls
        h.io.fail_after(n, persistent=persistent)
        h.always_faulty = True
        stats.faults += 1
        with contextlib.suppress(WorkloadAborted):
            await workload(h)
        h.always_faulty = False
        reached = h.io.io_calls - start_calls >= n
        h.io.clear_faults()
        await h.crash(random.Random(n))
        return not reached
    finally:
        await h.shutdown()


def run_loop(persistent: bool, stats: Stats, n_max: int = 2000) -> int:
    """N = 1, 2, ... until the workload completes untouched; returns the last N tried."""
    n = 0
    while n < n_max:
        n += 1
        if asyncio.run(run_one(n, persistent, stats)):
            return n
    raise AssertionError(f"the workload still met the fault at N={n_max}")
