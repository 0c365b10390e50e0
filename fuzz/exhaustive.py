"""Exhaustive small cases (CrashMonkey: most real crash bugs need at most three operations).

For each flush policy and every workload of one to three operations from ``ALPHABET`` (after
a fixed prefix: create the log, append one batch), the disk is snapshotted before every
fsync the engine issues and at the end of every operation. A crash point before an fsync
covers the ones since the previous fsync: pending operations only accumulate in between,
and nothing is acknowledged until an fsync returns. At each crash point every subset of
the pending operations is kept (applied) or dropped when there are at most
``SUBSETS_FULL_MAX`` of them; above that, all kept, all dropped, each one dropped alone, each
one kept alone, and each prefix in issue order. Each write is also torn once and
garbaged once with the rest applied. Every resulting disk is recovered and checked against
the oracle (duplicates of an image already checked against the same oracle are skipped).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator

from fuzz.harness import Harness, Stats
from fuzz.model import LogModel, clone_models
from fuzz.simdisk import SnapIO, table_chooser
from logstore.config import LogConfig
from logstore.simio import Fate, PendingOp

SUBSETS_FULL_MAX = 6
LOG = "e"

Op = Callable[[Harness], Awaitable[None]]
ALPHABET: dict[str, Op] = {
    "a": lambda h: h.append(LOG, [100]),
    "A": lambda h: h.append(LOG, [700, 20], zstd=True),  # crosses sectors; rolls the 1 KiB segment
    "f": lambda h: h.flush(LOG),
    "c": lambda h: h.checkpoint(),
    "t": lambda h: h.truncate(LOG, 1),
    "d": lambda h: h.delete_before(LOG, 1),
}


def workloads(alphabet: str, max_len: int = 3) -> Iterator[str]:
    for n in range(1, max_len + 1):
        for combo in itertools.product(alphabet, repeat=n):
            yield "".join(combo)


def fate_tables(ops: list[PendingOp]) -> Iterator[dict[PendingOp, Fate]]:
    n = len(ops)
    keep, drop = Fate.APPLIED, Fate.DROPPED
    if n <= SUBSETS_FULL_MAX:
        for bits in range(1 << n):
            yield {op: keep if bits >> i & 1 else drop for i, op in enumerate(ops)}
    else:
        yield dict.fromkeys(ops, keep)
        yield dict.fromkeys(ops, drop)
        for i in range(n):
            yield {op: drop if j == i else keep for j, op in enumerate(ops)}
            yield {op: keep if j == i else drop for j, op in enumerate(ops)}
            yield {op: keep if j < i else drop for j, op in enumerate(ops)}
    for i, op in enumerate(ops):
        if op.kind == "write":
            for fate in (Fate.TORN, Fate.GARBAGE):
                yield {o: fate if j == i else keep for j, o in enumerate(ops)}


async def run_workload(flush: str, word: str, stats: Stats, seen: set[str]) -> None:
    h = Harness(len(word) * 1000 + sum(map(ord, word)), stats, double_check=False)
    try:
        await h.open()
        await h.create_log(LOG, LogConfig(flush=flush, segment_bytes=1024, index_interval_bytes=128))
        await h.append(LOG, [40])
        h.note(f"workload {flush} {word!r}")
        points: list[tuple[SnapIO, dict[str, LogModel], str]] = []
        for letter in word:
            h.snap_sink = points
            await ALPHABET[letter](h)
            h.snap_sink = None
            points.append((h.io.clone(), clone_models(h.models), f"after {letter!r} of {word!r}"))
        for io, models, where in points:
            for table in fate_tables(io.pending_ops()):
                await h.check_crash_of(io.clone(), clone_models(models), f"{flush} {where}",
                                       table_chooser(table), seen)
    finally:
        await h.shutdown()


def run_all(alphabet: str = "".join(ALPHABET), max_len: int = 3,
            policies: tuple[str, ...] = ("sync", "async")) -> Stats:
    stats = Stats()

    async def body() -> None:
        for flush in policies:
            seen: set[str] = set()
            for word in workloads(alphabet, max_len):
                await run_workload(flush, word, stats, seen)

    asyncio.run(body())
    return stats
