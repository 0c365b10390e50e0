"""``logstore bench replication``: appends with two followers on localhost beside a single log.

    logstore bench replication [--seconds 2] [--concurrency 32] [--record-bytes 1024]
                               [--flush sync|async] [--json] [--dir DIR]

One process, one event loop: a leader store with a ReplicaServer on 127.0.0.1 and two
follower stores each with a Follower over TCP (the same code a broker runs, minus the network
between machines). Figures, all from the same run:

* ``replication.acks_all``: records/s of ``--concurrency`` tasks each appending one-record
  batches to the leader's log and waiting for ``wait_replicated(min_insync=3)`` | the same
  appends to a log of a store with no followers (``replication.single``, measured first in
  the same run) | informational ratio.
* ``replication.ack_ms.p50`` / ``.p99``: the time ``wait_replicated`` added to each append
  (append acknowledged by the leader's flush -> every in-sync replica has it) | none.
* ``replication.lag_ms.max``: the largest gap, sampled every 10 ms during the acks=all run,
  between the leader's committed offset and the slowest follower's end, in ms of appends at
  the measured rate (records behind / records per ms) | none.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from logstore import runtime
from logstore.batch import Record, build_batch
from logstore.config import LogConfig
from logstore.replication import Follower, ReplicaServer
from logstore.store import Store
from tools.benchkit import Figure, Reporter

LOG_NAME = "bench-repl"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logstore bench replication", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0, help="duration of each run (default 2)")
    p.add_argument("--concurrency", type=int, default=32, help="appender tasks (default 32)")
    p.add_argument("--record-bytes", type=int, default=1024, help="record value size (default 1024)")
    p.add_argument("--flush", choices=("sync", "async"), default="sync", help="the log's flush policy")
    p.add_argument("--dir", help="keep the stores here; default: a temporary directory")
    p.add_argument("--json", action="store_true", help="one JSON object per figure per line")
    return p


async def _appenders(store: Store, seconds: float, concurrency: int, batch: bytearray,
                     server: ReplicaServer | None) -> tuple[int, list[float], float]:
    log = store.log(LOG_NAME)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    acks: list[float] = []
    done = 0

    async def appender() -> None:
        nonlocal done
        while loop.time() < deadline:
            r = await log.append(batch)
            if server is not None:
                t0 = time.perf_counter()
                if not await server.wait_replicated(LOG_NAME, r.last_offset + 1, min_insync=3, timeout=10):
                    raise RuntimeError("a replicated append was not acknowledged by the ISR")
                acks.append((time.perf_counter() - t0) * 1000)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    return done, acks, time.perf_counter() - t0


async def run(args: argparse.Namespace, base: str, rep: Reporter) -> None:
    config = LogConfig(flush=args.flush)
    batch = build_batch([Record(b"x" * args.record_bytes)])
    single = await Store.open(os.path.join(base, "single"))
    await single.create_log(LOG_NAME, config)
    n, _acks, dt = await _appenders(single, args.seconds, args.concurrency, batch, None)
    await single.close()
    single_rate = n / dt

    leader = await Store.open(os.path.join(base, "leader"))
    await leader.create_log(LOG_NAME, config)
    server = ReplicaServer(leader, "127.0.0.1", 0, lag_time_max_ms=30_000)
    await server.start()
    replicas = [await Store.open(os.path.join(base, f"follower{i}")) for i in (1, 2)]
    followers = [Follower(s, "127.0.0.1", server.port, replica_id=i + 1) for i, s in enumerate(replicas)]
    for f in followers:
        await f.start()
    while len(server.isr(LOG_NAME)) < 3:
        await asyncio.sleep(0.01)
    lag_max = 0

    async def sample_lag() -> None:
        nonlocal lag_max
        while True:
            await asyncio.sleep(0.01)
            end = leader.log(LOG_NAME).committed_offset
            lag_max = max(lag_max, max(end - s.log(LOG_NAME).end_offset for s in replicas))

    sampler = asyncio.create_task(sample_lag())
    n, acks, dt = await _appenders(leader, args.seconds, args.concurrency, batch, server)
    sampler.cancel()
    rate = n / dt
    for f in followers:
        await f.stop()
    await server.stop()
    for s in (*replicas, leader):
        await s.close()
    params: dict[str, Any] = {"concurrency": args.concurrency, "record_bytes": args.record_bytes,
                              "flush": args.flush, "seconds": args.seconds, "followers": 2}
    rep.emit(Figure("replication.acks_all", rate, "records/s", single_rate, None, params))
    qs = statistics.quantiles(acks, n=100) if len(acks) >= 2 else [0.0] * 99
    rep.emit(Figure("replication.ack_ms.p50", qs[49], "ms", 0.0, None, params))
    rep.emit(Figure("replication.ack_ms.p99", qs[98], "ms", 0.0, None, params))
    rep.emit(Figure("replication.lag_ms.max", lag_max / (rate / 1000) if rate else 0.0, "ms", 0.0, None,
                    {**params, "records_behind_max": lag_max}))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1 or args.record_bytes < 0:
        print("logstore bench replication: --seconds and --concurrency must be positive", file=sys.stderr)
        return 2
    rep = Reporter(args.json)
    if args.dir:
        os.makedirs(args.dir, exist_ok=True)
        base = tempfile.mkdtemp(prefix="bench-replication-", dir=args.dir)
        runtime.run(run(args, base, rep))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-replication-") as base:
            runtime.run(run(args, base, rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
