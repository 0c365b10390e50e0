"""The bounded fuzz budget, the regression seeds, and the exhaustive small cases."""

from __future__ import annotations

import asyncio
import time

import pytest

from fuzz import regressions
from fuzz.exhaustive import run_all
from fuzz.harness import Stats
from fuzz.workload import run_case, run_for

BUDGET_S = 170.0
STATES_MIN = 5000


def test_budget_checks_5000_crash_states_within_3_minutes() -> None:
    started = time.monotonic()
    result = run_for(BUDGET_S, seed=20_000, max_states=STATES_MIN)
    elapsed = time.monotonic() - started
    print(f"budget: cases={result.cases} {result.stats.line()} in {elapsed:.1f} s")
    assert not result.failures, result.failures[0][1]
    assert len(result.stats.states) >= STATES_MIN
    assert elapsed <= 180


@pytest.mark.parametrize(("seed", "found"), regressions.SEEDS, ids=[str(s) for s, _ in regressions.SEEDS])
def test_regression_seed(seed: int, found: str) -> None:
    asyncio.run(run_case(seed, Stats()))


def test_exhaustive_three_operation_workloads_both_policies() -> None:
    stats = run_all()
    print(f"exhaustive: {stats.line()}")
    assert stats.checks > 5000
