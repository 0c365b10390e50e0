"""Smoke test of ``logstore bench rocket --quick --json``: every scenario runs against a real
``logstore serve`` and prints well-formed figures. Not a timed test: goals are not checked."""

from __future__ import annotations

import json
import os

import pytest

from adapters.rocket.broker.config import BUSY_POLL_MICROS_DEFAULT
from logstore.affinity import parse_cpu_list
from tools import bench

pytestmark = pytest.mark.slow

KEYS = {"name", "value", "unit", "baseline", "ratio", "goal", "params"}
EXPECTED = [f"{s}.{m}" for s in ("sync1", "sync1async", "sync1floor", "sync16", "tx1", "tx16", "sync1nopoll", "sync1nopin",
                                  "sync1bp", "batch")
            for m in ("tps", "avg", "p99")] + [
    "consume.tps", "e2e.tps", "e2e.avg", "e2e.p99", "orderly.tps", "delay.avg", "delay.p99"]  # as run_all runs them


def test_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["rocket", "--quick", "--json", "--seconds", "0.3", "--backlog", "5000"]) == 0
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [f["name"] for f in figures] == EXPECTED
    for fig in figures:
        assert set(fig) == KEYS, fig
        for key in ("value", "baseline", "ratio"):
            assert isinstance(fig[key], float | int) and fig[key] > 0, fig
        assert fig["unit"] in ("msg/s", "ms"), fig
    consume = next(f for f in figures if f["name"] == "consume.tps")
    assert consume["params"]["pull_batch_size"] == 32 and consume["params"]["consume_message_batch_max_size"] == 1
    assert consume["params"]["client_cpu_us_per_msg"] > 0 and consume["params"]["broker_cpu_us_per_msg"] > 0
    orderly = next(f for f in figures if f["name"] == "orderly.tps")
    assert orderly["params"]["reordered"] == 0 and orderly["params"]["queues"] == 8
    goals = {f["name"]: f["goal"] for f in figures if f["goal"] is not None}
    assert set(goals) == {"sync1.tps", "sync1async.tps", "sync1bp.tps", "sync16.tps", "batch.tps", "consume.tps",
                          "e2e.p99", "delay.p99"}
    apis = {f["name"]: f["params"].get("api") for f in figures if f["name"].startswith("sync1") and f["name"].endswith(".tps") and f["name"] != "sync16.tps"}
    assert apis == {"sync1.tps": "sync", "sync1async.tps": "asyncio", "sync1floor.tps": None,
                    "sync1nopoll.tps": "sync", "sync1nopin.tps": "sync", "sync1bp.tps": "asyncio"}
    polls = {f["name"]: (f["params"]["busyPollMicros"], f["params"]["client_busy_poll_micros"])
             for f in figures if f["name"] in ("sync1.tps", "sync1nopoll.tps", "sync1nopin.tps", "sync1bp.tps")}
    assert polls == {"sync1.tps": (BUSY_POLL_MICROS_DEFAULT, 0), "sync1nopoll.tps": (0, 0),
                     "sync1nopin.tps": (BUSY_POLL_MICROS_DEFAULT, 0), "sync1bp.tps": (200, 1000)}
    cpus = {f["name"]: parse_cpu_list(f["params"]["broker_cpus"]) for f in figures if apis.get(f["name"])}
    assert cpus["sync1nopin.tps"] == os.sched_getaffinity(0)  # cpuAffinity=off: anywhere this process may run
    assert cpus["sync1.tps"] <= os.sched_getaffinity(0) and len(cpus["sync1.tps"]) >= 1
    assert goals["e2e.p99"]["max"] == 10.0 and goals["sync1.tps"]["of"] == "ratio"
    for fig in figures:
        if fig["name"].startswith("tx") and fig["name"].endswith(".tps"):
            assert fig["params"]["committed"] == fig["params"]["sent"], fig  # every commit landed


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["rocket", "--only", "nothing"]) == 2
    assert bench.main(["rocket", "--backlog", "0"]) == 2
    assert bench.main(["rocket", "--orderly-batch", "0"]) == 2
    assert bench.main(["rocket", "--busy-poll-us", "0"]) == 2
    assert bench.main(["rocket", "--client-busy-poll-us", "10001"]) == 2
    assert bench.main(["rocket", "--bogus"]) == 2
    capsys.readouterr()
