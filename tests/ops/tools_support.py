"""Shared helpers of the tools tests: real stores on disk, damage, and running the tools.

Not a conftest.py: tests/engine imports its own ``conftest`` by name, and a second top-level
module of that name in the same session would shadow it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from logstore import BatchOptions, LogConfig, RealIO, Record, Store, build_batch
from logstore import inspect as li
from logstore.batch import CODEC_ZSTD

SMALL_ASYNC = LogConfig(segment_bytes=1024, index_interval_bytes=200)
SMALL_SYNC = LogConfig(flush="sync", segment_bytes=1024, index_interval_bytes=200)
REPO = Path(__file__).resolve().parents[2]


def record(i: int, ts: int = 1_000) -> Record:
    return Record(value=b"v%d" % i, key=b"k%d" % i, headers=(("n", b"%d" % i),), timestamp_ms=ts + i)


async def _fill(root: str) -> dict[str, int]:
    """Three logs: async plain single-record batches, sync zstd batches, async with producer
    ids and binary values. Each spans several segments. Returns each log's end offset."""
    store = await Store.open(root)
    plain = await store.create_log("plain-0", SMALL_ASYNC)
    zstd = await store.create_log("zstd-0", SMALL_SYNC)
    mixed = await store.create_log("mixed-1", SMALL_ASYNC)
    for i in range(40):
        await plain.append(build_batch([record(i)]))
    # sync appends run concurrently, so one group-commit round carries several batches
    for group in range(5):
        await asyncio.gather(*(
            zstd.append(build_batch([record(i * 4 + j) for j in range(4)], BatchOptions(compression=CODEC_ZSTD)))
            for i in range(group * 4, group * 4 + 4)
        ))
    for i in range(15):
        opts = BatchOptions(producer_id=7, producer_epoch=1, base_sequence=i * 2)
        await mixed.append(build_batch([Record(bytes([i, 0, 255]) * 5, None, (), 5_000 + i)] * 2, opts))
    ends = {name: log.end_offset for name, log in store.logs.items()}
    await store.close()
    return ends


def build_store(root: Path) -> dict[str, int]:
    return asyncio.run(_fill(str(root)))


CRASH_SCRIPT = textwrap.dedent("""
    import asyncio, os, sys
    from logstore import BatchOptions, LogConfig, Record, Store, build_batch
    from logstore.batch import CODEC_ZSTD

    async def main(root):
        store = await Store.open(root)
        log = await store.create_log("journaled-0", LogConfig(flush="sync", segment_bytes=1024))
        await asyncio.gather(*(log.append(build_batch([Record(b"j%d" % i, timestamp_ms=i)],
                                                       BatchOptions(compression=CODEC_ZSTD)))
                               for i in range(12)))
        os._exit(0)  # a crash: no checkpoint, no clean-shutdown marker, journal kept

    asyncio.run(main(sys.argv[1]))
""")


def build_crashed_store(root: Path) -> None:
    """A store whose process died after acknowledged sync appends: the journal holds them."""
    subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(root)], check=True, timeout=60)


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_tool(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` as a real process, the way an operator would."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=REPO,
    )


def flip(path: Path, position: int) -> None:
    """Invert every bit of one byte (its own undo)."""
    with open(path, "r+b") as f:
        f.seek(position)
        b = f.read(1)
        f.seek(position)
        f.write(bytes([b[0] ^ 0xFF]))


@dataclass(frozen=True)
class FileState:
    data: bytes
    mtime_ns: int
    mode: int


def snapshot(root: Path) -> dict[str, FileState]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.stat(p)
            data = b"" if os.path.isdir(p) else Path(p).read_bytes()
            out[os.path.relpath(p, root)] = FileState(data, st.st_mtime_ns, st.st_mode)
    return out


def segments(root: Path, log: str) -> list[Path]:
    return sorted((root / "logs" / log).glob("*.log"))


def batches(path: Path) -> list[li.BatchInfo]:
    report = li.describe_segment(RealIO(), str(path))
    assert not report.all_problems(), report.all_problems()
    return report.batches
