"""The I/O error loop, one-shot and persistent."""

from __future__ import annotations

import pytest

from fuzz.harness import Stats
from fuzz.ioerrors import run_loop


@pytest.mark.parametrize("persistent", [False, True], ids=["one-shot", "persistent"])
def test_fail_the_nth_io_call_until_the_workload_completes(persistent: bool) -> None:
    stats = Stats()
    n = run_loop(persistent, stats)
    print(f"io error loop persistent={persistent}: N=1..{n} {stats.line()}")
    assert n > 100  # the workload makes a few hundred IO calls: each one failed once
