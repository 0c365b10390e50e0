"""``logstore bench replication`` runs and prints its figures."""

from __future__ import annotations

import json
from typing import Any

from tools import bench


def test_quick_json(capsys: Any) -> None:
    assert bench.main(["replication", "--seconds", "0.3", "--concurrency", "4", "--json"]) == 0
    figures = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["name"] for f in figures] == [
        "replication.acks_all", "replication.ack_ms.p50", "replication.ack_ms.p99", "replication.lag_ms.max",
    ]
    assert figures[0]["value"] > 0 and figures[0]["baseline"] > 0
