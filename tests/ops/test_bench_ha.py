"""Smoke test of ``logstore bench ha --quick --json``: a SYNC_MASTER group with two slaves as
processes, its figures well formed. Not a timed test: goals are not checked."""

from __future__ import annotations

import json

import pytest

from tools import bench

pytestmark = pytest.mark.slow

EXPECTED = ["ha.sync_master.tps", "ha.sync_master.p99", "ha.lag_msgs.max", "ha.lag_ms.max", "ha.failover_ms"]


def test_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["ha", "--quick", "--json", "--seconds", "0.3"]) == 0
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [f["name"] for f in figures] == EXPECTED
    by_name = {f["name"]: f for f in figures}
    assert by_name["ha.sync_master.tps"]["value"] > 0 and by_name["ha.sync_master.tps"]["baseline"] > 0
    assert by_name["ha.sync_master.tps"]["goal"] == {"of": "ratio", "min": 0.5,
                                                     "met": by_name["ha.sync_master.tps"]["ratio"] >= 0.5}
    assert by_name["ha.lag_msgs.max"]["params"]["samples"] >= 1
    failover = by_name["ha.failover_ms"]
    assert failover["value"] > 0 and failover["params"]["detect_ms"] < failover["value"]
    assert failover["params"]["promoted"] in ("slave1", "slave2")


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["ha", "--seconds", "0"]) == 2
    assert bench.main(["ha", "--bogus"]) == 2
    capsys.readouterr()
