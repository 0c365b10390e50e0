"""A real writer process SIGKILLed at random moments, at least 20 times."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.realproc import run


@pytest.mark.slow
def test_sigkilled_writer_loses_no_acknowledged_offset(tmp_path: Path) -> None:
    report = run(str(tmp_path / "store"), kills=20, seed=7)
    print(f"real-process: kills={report.kills} acknowledged={report.acked} end_offset={report.end_offset}")
    assert report.kills >= 20
    assert report.acked > 0
