"""Random workloads: the engine behind ``python -m fuzz run`` and the budgeted CI test.

One *case* is a seed: a fresh simulated disk, one to three logs of random configuration
(both flush policies, small segments so rolls happen, retention by size and age), then a few
dozen operations drawn from: append (1-4 records of 0-3000 bytes, zstd on or off, key or
not), concurrent appends across logs (one group-commit round), flush, checkpoint,
truncate_to, delete_records_before, retention, clean close+open, crash (each pending op
applied, dropped, torn or garbage), fan-out crashes of copies of the disk, and IO faults
(fsync failure, the Nth IO call failing once or for good) armed for the next operation.
Before about a third of the operations a crash point is armed at a random IO call inside
it: the disk is copied there, crashed and recovered against the oracle as it stood
mid-operation. A case is deterministic in its seed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from fuzz.harness import Harness, Stats, Violation
from logstore.config import LogConfig

SIZES = (0, 1, 10, 100, 300, 500, 700, 1500, 3000)


def random_config(rng: random.Random) -> LogConfig:
    return LogConfig(
        flush=rng.choice(["sync", "async"]),
        segment_bytes=rng.choice([1024, 1536, 4096]),
        index_interval_bytes=rng.choice([64, 256, 4096]),
        retention_bytes=rng.choice([-1, -1, 2500]),
        retention_ms=rng.choice([-1, 60_000]),
    )


async def run_case(seed: int, stats: Stats, *, steps: int = 40) -> None:
    h = Harness(seed, stats)
    rng = h.rng
    try:
        await h.open()
        names = [f"q{i}" for i in range(rng.randint(1, 3))]
        for name in names:
            await h.create_log(name, random_config(rng))
        for _ in range(steps):
            await _step(h, rng, names)
        await h.crash()
    finally:
        await h.shutdown()


def _sizes(rng: random.Random) -> list[int]:
    return [rng.choice(SIZES) for _ in range(rng.choice([1, 1, 2, 4]))]


async def _step(h: Harness, rng: random.Random, names: list[str]) -> None:
    name = rng.choice(names)
    kind = rng.choices(
        ["append", "append_many", "flush", "checkpoint", "truncate", "delete", "retention", "crash",
         "reopen", "fan_out"],
        [40, 10, 8, 6, 4, 3, 3, 8, 3, 5],
    )[0]
    if kind in ("crash", "fan_out"):
        await (h.crash() if kind == "crash" else h.fan_out(rng.randint(1, 4)))
        return
    if rng.random() < 0.35:
        h.snap_at = rng.randrange(12)
    if rng.random() < 0.06:
        h.fault = ("fsync", 0, False) if rng.random() < 0.4 else ("io", rng.randint(1, 8), rng.random() < 0.3)
    if kind == "append":
        await h.append(name, _sizes(rng), zstd=rng.random() < 0.3, key=rng.random() < 0.7)
    elif kind == "append_many":
        await h.append_many([(n, _sizes(rng), rng.random() < 0.3, True) for n in names for _ in range(rng.randint(1, 3))])
    elif kind == "flush":
        await h.flush(name)
    elif kind == "checkpoint":
        await h.checkpoint()
    elif kind == "truncate":
        await h.truncate(name, rng.randint(0, 6))
    elif kind == "delete":
        await h.delete_before(name, rng.randint(0, 6))
    elif kind == "retention":
        await h.retention(name, rng.choice([0, 30_000, 120_000]))
    else:
        await h.reopen()


@dataclass
class RunResult:
    stats: Stats
    cases: int
    failures: list[tuple[int, str]]


def run_for(seconds: float, seed: int, *, keep_going: bool = False, max_states: int | None = None,
            progress: Callable[[str], None] | None = None) -> RunResult:
    """Cases ``seed``, ``seed + 1``, ... until ``seconds`` pass (or ``max_states`` distinct
    crash states were checked). A failing case's seed replays it with ``--seed``."""
    stats = Stats()
    failures: list[tuple[int, str]] = []
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + 10
    case = seed
    cases = 0
    while time.monotonic() < deadline:
        if max_states is not None and len(stats.states) >= max_states:
            break
        try:
            asyncio.run(run_case(case, stats))
        except Violation as exc:
            failures.append((case, str(exc)))
            if progress is not None:
                progress(f"VIOLATION (replay with --seed {case}):\n{exc}")
            if not keep_going:
                cases += 1
                break
        cases += 1
        case += 1
        if progress is not None and time.monotonic() >= next_report:
            next_report = time.monotonic() + 10
            progress(f"cases={cases} {stats.line()}")
    return RunResult(stats, cases, failures)
