"""Every planted bug is caught well within the CI budget (the harness can fail)."""

from __future__ import annotations

import pytest

from fuzz import canaries
from fuzz.workload import run_for

CANARY_BUDGET_S = 30.0


@pytest.mark.parametrize("name", sorted(canaries.CANARIES))
def test_canary_is_caught(name: str) -> None:
    with canaries.planted(name):
        result = run_for(CANARY_BUDGET_S, seed=0)
    assert result.failures, f"canary {name} survived {result.stats.line()}"


def test_without_a_canary_the_same_seeds_pass() -> None:
    result = run_for(5.0, seed=0)
    assert not result.failures, result.failures[0][1]
