"""Real processes on a real file system: a writer (``fuzz.writer``) is SIGKILLed at random
moments; after each kill the store is reopened here and every offset the writer reported
as acknowledged must hold exactly the record it wrote; ``verify_store`` must be clean.

A SIGKILL loses no page cache, so this tests the process-crash half of the promise (and
the engine's handling of files left open mid-write) on RealIO, not power loss.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from fuzz.writer import LOG, record_for
from logstore import RealIO, Store
from logstore import inspect as lsinspect

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class KillReport:
    kills: int
    acked: int
    end_offset: int


def _reader(proc: subprocess.Popen[str], acks: dict[int, tuple[int, int]], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        if parts[:1] == ["READY"]:
            ready.set()
        elif parts[:1] == ["ACK"]:
            acks[int(parts[1])] = (int(parts[2]), int(parts[3]))


async def _check(root: str, acks: dict[int, tuple[int, int]]) -> int:
    store = await Store.open(root)
    try:
        log = store.log(LOG)
        for offset, (gen, index) in sorted(acks.items()):
            if offset < log.log_start_offset:
                continue
            got = log.read_records(offset, 1)
            want = record_for(gen, index)
            if not got or got[0].offset != offset or (got[0].value, got[0].key, got[0].headers, got[0].timestamp_ms) != (
                want.value, want.key, want.headers, want.timestamp_ms
            ):
                raise AssertionError(f"acknowledged offset {offset} (gen {gen}, #{index}) is lost or changed")
        end = log.end_offset
    finally:
        await store.close()
    problems = lsinspect.verify_store(RealIO(), root).problems
    if problems:
        raise AssertionError(f"verify_store: {[str(p) for p in problems]}")
    return end


def run(root: str, kills: int, seed: int) -> KillReport:
    rng = random.Random(seed)
    acks: dict[int, tuple[int, int]] = {}
    end = 0
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for gen in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "fuzz.writer", root, str(gen)], stdout=subprocess.PIPE,
                                text=True, env=env, cwd=REPO)
        ready = threading.Event()
        gen_acks: dict[int, tuple[int, int]] = {}
        reader = threading.Thread(target=_reader, args=(proc, gen_acks, ready), daemon=True)
        reader.start()
        if not ready.wait(30):
            proc.kill()
            raise AssertionError(f"writer generation {gen} did not start")
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        # offsets past a crash may be reused only if they were never acknowledged
        for off, who in gen_acks.items():
            acks[off] = who
        end = asyncio.run(_check(root, acks))
    return KillReport(kills, len(acks), end)
