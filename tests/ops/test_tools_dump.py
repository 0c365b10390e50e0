"""logstore-dump: good files are listed correctly; damaged files give exit 1 and a located
error line, never a traceback; --json always parses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tools_support import (
    batches,
    build_crashed_store,
    build_store,
    copy_store,
    flip,
    run_tool,
    segments,
)

from logstore.index import OFFSET_ENTRY
from tools import dump


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "store"
    build_store(root)
    return root


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crashed") / "store"
    build_crashed_store(root)
    return root


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    return copy_store(pristine, tmp_path / "store")


def assert_clean_failure(proc: object, path: Path, position: int) -> None:
    import subprocess

    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {path}: byte {position}: " in proc.stderr, proc.stderr


# -- good files ---------------------------------------------------------------------------------------


def test_segment_lists_batches_with_their_offsets(store: Path) -> None:
    seg = segments(store, "plain-0")[1]
    base = int(seg.stem)
    proc = run_tool("tools.dump", seg)
    assert proc.returncode == 0 and proc.stderr == ""
    lines = [ln for ln in proc.stdout.splitlines() if "batch @" in ln]
    assert lines and all(f"offsets {base + i}..{base + i} (1 records)" in ln for i, ln in enumerate(lines))
    assert "crc" in lines[0] and " ok," in lines[0]


def test_json_of_a_zstd_segment_with_records(store: Path) -> None:
    seg = segments(store, "zstd-0")[0]
    proc = run_tool("tools.dump", seg, "--json", "--records", "--indexes")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["base_offset"] == 0 and doc["problems"] == []
    got = [(b["base_offset"], b["last_offset"], b["codec"]) for b in doc["batches"]]
    assert got == [(i * 4, i * 4 + 3, "zstd") for i in range(len(got))]
    first = doc["batches"][0]
    assert first["crc_stored"] == first["crc_computed"]
    rec = first["records"][2]
    assert rec["offset"] == 2 and rec["value"] == {"text": "v2", "format": "text"}
    assert rec["key"]["text"] == "k2" and rec["headers"] == [["n", {"text": "2", "format": "text"}]]
    assert doc["offset_index"]["offset_entries"][0] == {"position": 0, "relative_offset": 0, "offset": 0, "log_position": 0}


def test_binary_values_are_shown_as_hex(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seg = segments(store, "mixed-1")[0]
    assert dump.main([str(seg), "--records"]) == 0
    out = capsys.readouterr().out
    assert "value hex:0000ff0000ff" in out and "key null" in out and "producer 7/1/0" in out


@pytest.mark.parametrize("what", ["store", "log", "index", "timeindex", "checkpoint", "journal"])
def test_every_kind_of_path_dumps(what: str, store: Path, crashed: Path) -> None:
    seg = segments(store, "plain-0")[0]
    path = {
        "store": store, "log": store / "logs" / "plain-0", "index": seg.with_suffix(".index"),
        "timeindex": seg.with_suffix(".timeindex"), "checkpoint": store / "checkpoint",
        "journal": sorted((crashed / "journal").glob("*.wal"))[-1],
    }[what]
    text = run_tool("tools.dump", path, "--indexes", "--records")
    assert text.returncode == 0 and text.stderr == "", text.stderr
    as_json = run_tool("tools.dump", path, "--json")
    assert as_json.returncode == 0
    doc = json.loads(as_json.stdout)
    if what == "journal":
        assert len(doc["entries"]) == 12 and doc["entries"][5]["batch"]["base_offset"] == 5
        assert doc["entries"][0]["log"] == "journaled-0"
    if what == "store":
        assert [lg["name"] for lg in doc["logs"]] == ["mixed-1", "plain-0", "zstd-0"]


# -- damaged files ----------------------------------------------------------------------------------


def test_flipped_bytes_anywhere_in_a_batch(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dump of the segment alone catches what verify catches within one file (see
    test_tools_verify for the epoch blind spot; this batch has a successor)."""
    seg = segments(store, "plain-0")[0]
    b = batches(seg)[2]
    for pos in range(b.position, b.position + b.total_bytes):
        flip(seg, pos)
        try:
            assert dump.main([str(seg)]) == 1, pos
            err = capsys.readouterr().err
            assert f"error: {seg}: byte " in err, (pos, err)
            assert dump.main([str(seg), "--json"]) == 1
            json.loads(capsys.readouterr().out)
        finally:
            flip(seg, pos)


def test_torn_segment(store: Path) -> None:
    seg = segments(store, "zstd-0")[-1]
    before = batches(seg)
    last = before[-1]
    assert last.total_bytes > 70
    os.truncate(seg, last.position + 70)  # whole header, cut body
    proc = run_tool("tools.dump", seg, "--records")
    assert_clean_failure(proc, seg, last.position)
    assert "runs past the end" in proc.stderr
    shown = [ln for ln in proc.stdout.splitlines() if "batch @" in ln]
    assert len(shown) == len(before) - 1  # everything before the torn batch is still listed
    doc = json.loads(run_tool("tools.dump", seg, "--json").stdout)
    assert doc["valid_bytes"] == last.position and doc["problems"][0]["position"] == last.position


def test_garbage_segment(tmp_path: Path) -> None:
    seg = tmp_path / "00000000000000000000.log"
    seg.write_bytes(os.urandom(500))
    assert_clean_failure(run_tool("tools.dump", seg), seg, 0)
    short = tmp_path / "00000000000000000100.log"
    short.write_bytes(b"\x00" * 10)
    assert_clean_failure(run_tool("tools.dump", short, "--json"), short, 0)


def test_wrong_index_entry(store: Path) -> None:
    seg = segments(store, "plain-0")[0]
    index = seg.with_suffix(".index")
    raw = bytearray(index.read_bytes())
    rel, pos = OFFSET_ENTRY.unpack_from(raw, 8)
    OFFSET_ENTRY.pack_into(raw, 8, rel + 1, pos)
    index.write_bytes(raw + b"\x01\x02")  # and a partial entry at the end
    proc = run_tool("tools.dump", index)
    assert_clean_failure(proc, index, 8)
    assert f"error: {index}: byte {len(raw)}: 2 trailing bytes" in proc.stderr
    assert_clean_failure(run_tool("tools.dump", seg, "--indexes"), index, 8)
    assert run_tool("tools.dump", seg).returncode == 0  # without --indexes only the .log counts


def test_missing_index_seen_by_a_segment_dump(store: Path) -> None:
    seg = segments(store, "plain-0")[0]
    seg.with_suffix(".timeindex").unlink()
    assert_clean_failure(run_tool("tools.dump", seg, "--indexes"), seg.with_suffix(".timeindex"), 0)


def test_damaged_journal(crashed: Path, tmp_path: Path) -> None:
    root = copy_store(crashed, tmp_path / "store")
    wal = sorted((root / "journal").glob("*.wal"))[-1]
    doc = json.loads(run_tool("tools.dump", wal, "--json").stdout)
    third = doc["entries"][2]["position"]
    flip(wal, third + 40)
    proc = run_tool("tools.dump", wal)
    assert_clean_failure(proc, wal, third)
    assert proc.stdout.count("entry @") == 2  # the two before it still shown
    os.truncate(wal, third + 5)
    assert_clean_failure(run_tool("tools.dump", wal, "--json"), wal, third)


def test_damaged_checkpoint_and_store(store: Path) -> None:
    cp = store / "checkpoint"
    flip(cp, 3)
    assert_clean_failure(run_tool("tools.dump", cp), cp, 0)
    proc = run_tool("tools.dump", store, "--json")
    assert_clean_failure(proc, cp, 0)
    assert json.loads(proc.stdout)["checkpoint"]["problems"][0]["position"] == 0


# -- usage --------------------------------------------------------------------------------------------


def test_usage_errors(tmp_path: Path) -> None:
    missing = run_tool("tools.dump", tmp_path / "nope.log")
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    unknown = run_tool("tools.dump", other)
    assert unknown.returncode == 2 and "not a store" in unknown.stderr
    assert run_tool("tools.dump").returncode == 2
    assert run_tool("tools.dump", tmp_path, "--bogus").returncode == 2
    assert run_tool("tools.dump", tmp_path).returncode == 2  # an empty directory is nothing of ours
