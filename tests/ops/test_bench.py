"""Smoke tests of ``logstore bench``: every subcommand runs with tiny sizes and prints well-formed
figures. Benchmarks are not timed tests: the goals are not checked here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import bench

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"name", "value", "unit", "baseline", "ratio"}


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict[str, object]]:
    assert bench.main([*argv, "--json"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    figures = [json.loads(line) for line in lines]
    for fig in figures:
        assert set(fig) >= KEYS, fig
        assert set(fig) <= KEYS | {"goal", "params"}, fig
        assert isinstance(fig["value"], float | int) and fig["value"] > 0, fig
        assert isinstance(fig["baseline"], float | int) and fig["baseline"] > 0, fig
        assert isinstance(fig["ratio"], float | int) and fig["ratio"] > 0, fig
        assert isinstance(fig["unit"], str) and fig["unit"]
    return figures


def test_append_all_figures(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    figs = run_json(
        capsys,
        [
            "append",
            "--dir",
            str(tmp_path),
            "--size",
            "2M",
            "--seconds",
            "0.2",
            "--repeat",
            "1",
            "--concurrency",
            "8",
            "--logs",
            "4",
        ],
    )
    assert [f["name"] for f in figs] == ["append.async", "append.sync.1log", "append.sync.4logs"]
    assert figs[0]["unit"] == "MB/s"
    assert figs[1]["unit"] == figs[2]["unit"] == "records/s"
    # The many-log figure is compared with the one-log figure of the same run.
    assert figs[2]["baseline"] == figs[1]["value"]
    assert (tmp_path / "bench-append-async").is_dir()  # --dir keeps the data
    assert not (tmp_path / "baseline.tmp").exists()


def test_append_sync_one_log_only(capsys: pytest.CaptureFixture[str]) -> None:
    figs = run_json(
        capsys,
        [
            "append",
            "--mode",
            "sync",
            "--logs",
            "1",
            "--seconds",
            "0.1",
            "--repeat",
            "1",
            "--concurrency",
            "4",
        ],
    )
    assert [f["name"] for f in figs] == ["append.sync.1log"]


def test_read_and_reuse(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = [
        "read",
        "--dir",
        str(tmp_path),
        "--size",
        "2M",
        "--repeat",
        "1",
        "--fetch-bytes",
        "256K",
    ]
    figs = run_json(capsys, argv)
    assert [f["name"] for f in figs] == [
        "read.sendfile",
        "read.decoded.records",
        "read.decoded.bytes",
    ]
    params = figs[0]["params"]
    assert (
        isinstance(params, dict)
        and params["reused"] is False
        and params["bytes"] >= 2 * 1024 * 1024
    )
    figs = run_json(capsys, argv)
    params = figs[0]["params"]
    assert isinstance(params, dict) and params["reused"] is True


def test_recovery_scans_everything(capsys: pytest.CaptureFixture[str]) -> None:
    figs = run_json(capsys, ["recovery", "--size", "2M", "--repeat", "2"])
    assert [f["name"] for f in figs] == ["recovery.scan"]
    params = figs[0]["params"]
    assert isinstance(params, dict)
    assert params["scanned_bytes"] == params["bytes"] > 0  # recovery point 0: every byte
    goal = figs[0]["goal"]
    assert isinstance(goal, dict) and goal["of"] == "value"


def test_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["append", "--mode", "async", "--size", "1M", "--repeat", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["figure", "value", "unit"]
    assert out[1].startswith("append.async") and out[1].rstrip().endswith(("PASS", "MISS"))


def test_sizes_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.parse_size("64K") == 65536
    assert bench.parse_size("1G") == 1 << 30
    assert bench.parse_size("512MiB") == 512 << 20
    assert bench.parse_size("4096") == 4096
    assert bench.main(["append", "--concurrency", "0"]) == 2
    with pytest.raises(SystemExit):
        bench.main(["append", "--size", "lots"])
    capsys.readouterr()


def test_runs_as_module(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "recovery",
            "--size",
            "1M",
            "--repeat",
            "1",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    fig = json.loads(out.splitlines()[0])
    assert fig["name"] == "recovery.scan" and fig["value"] > 0
