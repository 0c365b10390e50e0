"""logstore-verify on real stores: clean ones pass, each kind of damage is found and located,
and verification never changes a file."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
from pathlib import Path

import crc32c
import pytest
from tools_support import (
    batches,
    build_crashed_store,
    build_store,
    copy_store,
    flip,
    run_tool,
    segments,
    snapshot,
)

from logstore import RealIO, Store
from logstore import batch as rb
from logstore import checkpoint as ckpt
from logstore import inspect as li
from logstore.index import OFFSET_ENTRY, TIME_ENTRY


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("pristine") / "store"
    ends = build_store(root)
    return root, ends


@pytest.fixture
def store(pristine: tuple[Path, dict[str, int]], tmp_path: Path) -> Path:
    return copy_store(pristine[0], tmp_path / "store")


def verify(root: Path) -> li.VerifyResult:
    return li.verify_store(RealIO(), str(root))


def located(result: li.VerifyResult, path: Path, lo: int, hi: int) -> bool:
    """Some problem names ``path`` at a byte in [lo, hi]."""
    return any(p.path == str(path) and lo <= p.position <= hi for p in result.problems)


# -- clean stores ---------------------------------------------------------------------------------


def test_clean_store_passes_as_a_real_process(store: Path, pristine: tuple[Path, dict[str, int]]) -> None:
    assert len(segments(store, "plain-0")) > 2 and len(segments(store, "zstd-0")) > 1
    proc = run_tool("tools.verify", store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: no problems found" in proc.stdout
    assert "3 logs" in proc.stdout
    assert proc.stderr == ""  # no progress bar: stderr is not a terminal
    res = verify(store)
    assert res.ok and res.logs == 3 and res.records == sum(pristine[1].values())
    assert res.segments == sum(len(segments(store, n)) for n in pristine[1])


def test_json_output_parses(store: Path) -> None:
    proc = run_tool("tools.verify", store, "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["logs"] == 3 and doc["batches"] > 50


def test_verify_changes_nothing(store: Path) -> None:
    flip(segments(store, "plain-0")[0], 100)  # a damaged store too: reporting must not repair
    before = snapshot(store)
    assert run_tool("tools.verify", store).returncode == 1
    assert run_tool("tools.verify", store, "--json", "--quick").returncode == 1
    assert snapshot(store) == before


def test_store_open_in_another_process_can_be_verified(store: Path) -> None:
    async def body() -> None:
        s = await Store.open(str(store))  # holds the store lock while verify runs
        try:
            before = snapshot(store)
            proc = await asyncio.to_thread(run_tool, "tools.verify", store)
            assert proc.returncode == 0, proc.stdout
            assert snapshot(store) == before
        finally:
            await s.close()

    asyncio.run(body())


def test_journal_of_a_crashed_store_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "crashed"
    build_crashed_store(root)
    res = verify(root)
    assert res.ok, res.problems
    assert res.journal_entries == 12 and not res.clean_shutdown
    wal = sorted((root / "journal").glob("*.wal"))[-1]
    flip(wal, 30)  # inside the first entry
    res = verify(root)
    assert located(res, wal, 0, 0), res.problems
    proc = run_tool("tools.verify", root)
    assert proc.returncode == 1 and f"{wal}: byte 0: bad journal entry: CRC32C mismatch" in proc.stdout


# -- one flipped byte, everywhere in a batch ------------------------------------------------------


def _flip_each_byte(root: Path, seg: Path, b: li.BatchInfo) -> list[int]:
    """Flip each byte of the batch in turn; return the positions verify did not locate. A
    finding may sit at the batch or at the next one (a changed epoch shows as the *next*
    batch's epoch going down)."""
    missed = []
    for pos in range(b.position, b.position + b.total_bytes):
        flip(seg, pos)
        try:
            res = verify(root)
            if not located(res, seg, b.position, b.position + b.total_bytes):
                missed.append(pos - b.position)
        finally:
            flip(seg, pos)
    assert verify(root).ok
    return missed


def test_every_flipped_byte_of_a_middle_batch_is_found(store: Path) -> None:
    seg = segments(store, "plain-0")[1]
    b = batches(seg)[3]
    assert b.record_count == 1 and b.total_bytes < 100
    assert _flip_each_byte(store, seg, b) == []


def test_flipped_bytes_of_a_zstd_batch_are_found(store: Path) -> None:
    seg = segments(store, "zstd-0")[0]
    b = batches(seg)[1]
    assert b.codec == "zstd"
    assert _flip_each_byte(store, seg, b) == []


def test_flipped_bytes_of_the_last_batch_of_a_log(store: Path) -> None:
    """The one blind spot: the leader epoch (bytes 12..15) sits outside the CRC, and only
    ordering checks it (epochs never go down). In the log's last batch nothing follows, so an
    epoch that grows is undetectable: flipping byte 12 makes it negative (caught: below the
    previous batch's), flipping bytes 13, 14 or 15 of epoch 0 makes it larger (not caught).
    Every other byte is covered: base offset by offset continuity, length and magic by
    structure, everything from the CRC on by the CRC."""
    seg = segments(store, "plain-0")[-1]
    b = batches(seg)[-1]
    assert b.leader_epoch == 0
    assert _flip_each_byte(store, seg, b) == [13, 14, 15]


# -- other damage -----------------------------------------------------------------------------------


def test_torn_tail(store: Path) -> None:
    seg = segments(store, "plain-0")[-1]
    last = batches(seg)[-1]
    with open(seg, "r+b") as f:
        f.truncate(last.position + 20)
    res = verify(store)
    assert located(res, seg, last.position, last.position)
    # the checkpoint says the lost batch was durable: a second, separate finding
    assert any(p.path == str(store / "checkpoint") and "beyond the log's end" in p.reason for p in res.problems)
    proc = run_tool("tools.verify", store)
    assert proc.returncode == 1
    assert f"{seg}: byte {last.position}: " in proc.stdout


def test_missing_index_file(store: Path) -> None:
    seg = segments(store, "zstd-0")[0]
    index = seg.with_suffix(".index")
    index.unlink()
    proc = run_tool("tools.verify", store)
    assert proc.returncode == 1
    assert f"{index}: byte 0: index file is missing" in proc.stdout
    timeindex = seg.with_suffix(".timeindex")
    timeindex.unlink()
    res = verify(store)
    assert located(res, index, 0, 0) and located(res, timeindex, 0, 0)


def test_index_entry_pointing_at_the_wrong_batch(store: Path) -> None:
    seg = segments(store, "plain-0")[0]
    index = seg.with_suffix(".index")
    raw = bytearray(index.read_bytes())
    assert len(raw) >= 3 * OFFSET_ENTRY.size
    rel1, pos1 = OFFSET_ENTRY.unpack_from(raw, 8)
    _rel2, pos2 = OFFSET_ENTRY.unpack_from(raw, 16)
    # entry 1 keeps its offset but points between entry 1's and entry 2's batches
    other = next(b.position for b in batches(seg) if pos1 < b.position < pos2)
    OFFSET_ENTRY.pack_into(raw, 8, rel1, other)
    index.write_bytes(raw)
    proc = run_tool("tools.verify", store)
    assert proc.returncode == 1
    assert f"{index}: byte 8: entry names offset {rel1}" in proc.stdout
    # and one pointing into the middle of a batch
    OFFSET_ENTRY.pack_into(raw, 8, rel1, pos1 + 3)
    index.write_bytes(raw)
    res = verify(store)
    assert located(res, index, 8, 8) and "starts no valid batch" in str(res.problems)


def test_time_index_with_a_wrong_timestamp(store: Path) -> None:
    seg = segments(store, "plain-0")[0]
    tindex = seg.with_suffix(".timeindex")
    raw = bytearray(tindex.read_bytes())
    ts, rel = TIME_ENTRY.unpack_from(raw, TIME_ENTRY.size)
    TIME_ENTRY.pack_into(raw, TIME_ENTRY.size, ts - 1, rel)
    tindex.write_bytes(raw)
    res = verify(store)
    assert located(res, tindex, TIME_ENTRY.size, TIME_ENTRY.size), res.problems


def test_stale_checkpoint(store: Path, pristine: tuple[Path, dict[str, int]]) -> None:
    path = store / "checkpoint"
    cp = ckpt.decode(path.read_bytes(), str(path))
    end = pristine[1]["mixed-1"]
    assert cp.logs["mixed-1"].recovery_point == end
    cp.logs["mixed-1"].recovery_point = end + 6
    raw = ckpt.encode(cp)
    path.write_bytes(raw)
    proc = run_tool("tools.verify", store)
    assert proc.returncode == 1
    at = raw.index(b'"mixed-1":')
    assert f"{path}: byte {at}: log mixed-1: recovery point {end + 6} is beyond the log's end {end}" in proc.stdout


def test_checkpoint_that_does_not_decode(store: Path) -> None:
    path = store / "checkpoint"
    raw = path.read_bytes()
    flip(path, len(raw) - 3)
    res = verify(store)
    assert [(p.path, p.reason) for p in res.problems] == [(str(path), "checkpoint CRC32C mismatch")]
    assert res.problems[0].position == raw.index(b"\n") + 1


def test_bad_config(store: Path) -> None:
    config = store / "logs" / "zstd-0" / "config.json"
    config.write_text('{"flush": "sometimes"}')
    res = verify(store)
    assert len(res.problems) == 1 and res.problems[0].path == str(config)
    config.write_text("{nope")
    assert located(verify(store), config, 1, 1)


def test_missing_segment_breaks_continuity(store: Path) -> None:
    segs = segments(store, "plain-0")
    assert len(segs) >= 3
    segs[1].unlink()
    res = verify(store)
    assert located(res, segs[2], 0, 0), res.problems
    assert "previous one ends at" in res.problems[0].reason


def test_batch_with_valid_crc_but_undecodable_records(store: Path) -> None:
    """What a buggy producer could hand to append (which checks headers and CRC only)."""
    seg = segments(store, "plain-0")[0]
    b = batches(seg)[2]
    raw = bytearray(seg.read_bytes())
    raw[b.position + rb.HEADER_BYTES] = 0x7E  # first record's length varint: far too long
    covered = bytes(raw[b.position + rb.CRC_COVERS_FROM : b.position + b.total_bytes])
    struct.pack_into(">I", raw, b.position + rb.CRC_OFFSET, crc32c.crc32c(covered))
    seg.write_bytes(raw)
    res = verify(store)
    assert located(res, seg, b.position, b.position) and "records do not decode" in res.problems[0].reason
    assert li.verify_store(RealIO(), str(store), quick=True).ok  # --quick decodes no records


# -- usage ------------------------------------------------------------------------------------------


def test_usage_errors(tmp_path: Path) -> None:
    missing = run_tool("tools.verify", tmp_path / "nope")
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    not_store = run_tool("tools.verify", tmp_path)
    assert not_store.returncode == 2 and "not a store" in not_store.stderr
    no_args = run_tool("tools.verify")
    assert no_args.returncode == 2 and "usage:" in no_args.stderr


def test_progress_callback_reaches_the_total(store: Path) -> None:
    seen: list[tuple[int, int]] = []
    li.verify_store(RealIO(), str(store), progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
