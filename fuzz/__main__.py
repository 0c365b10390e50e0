"""``python -m fuzz run --seconds N [--seed S] [--canary NAME] [--keep-going]``
``python -m fuzz replication [--seeds A:B] [--fault-seconds S]``

Runs random crash-recovery cases (``fuzz.workload``) for N seconds, printing the operations,
crashes and distinct crash states checked. A violation prints the case's seed (``--seed``
replays it exactly: cases run S, S+1, ...) and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from fuzz import canaries
from fuzz.workload import run_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="random crash-recovery cases for a time budget")
    run.add_argument("--seconds", type=float, default=60.0)
    run.add_argument("--seed", type=int, default=None, help="first case seed (default: random)")
    run.add_argument("--canary", choices=sorted(canaries.CANARIES), default=None,
                     help="plant this bug first; the run must then fail")
    run.add_argument("--keep-going", action="store_true", help="do not stop at the first violation")
    run.add_argument("--trace", type=int, default=25, help="operations shown before a violation")
    repl = sub.add_parser("replication", help="seeded replication simulations (fuzz/replication.py)")
    repl.add_argument("--seeds", default="1:101", help="A:B runs seeds A..B-1 (default 1:101)")
    repl.add_argument("--fault-seconds", type=float, default=8.0, help="virtual seconds of faults per seed")
    args = parser.parse_args(argv)
    if args.command == "replication":
        return run_replication(args.seeds, args.fault_seconds)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    import fuzz.harness as harness

    harness.TRACE_LINES = args.trace
    print(f"fuzz run: seconds={args.seconds:g} seed={seed} canary={args.canary or '-'}", flush=True)
    started = time.monotonic()
    with canaries.planted(args.canary):
        result = run_for(args.seconds, seed, keep_going=args.keep_going,
                         progress=lambda line: print(line, flush=True))
    elapsed = time.monotonic() - started
    print(f"done in {elapsed:.1f} s: cases={result.cases} {result.stats.line()} "
          f"violations={len(result.failures)}")
    for case, _msg in result.failures:
        print(f"FAILED seed={case} (replay: python -m fuzz run --seed {case} --seconds 1)")
    return 1 if result.failures else 0


def run_replication(seeds: str, fault_s: float) -> int:
    import logging

    from fuzz.replication import Violation, run_seed

    logging.disable(logging.WARNING)
    first, _, last = seeds.partition(":")
    lo, hi = int(first), int(last or int(first) + 1)
    started = time.monotonic()
    failures = 0
    for seed in range(lo, hi):
        try:
            stats = run_seed(seed, fault_s)
        except Violation as exc:
            failures += 1
            print(f"FAILED {exc}\n(replay: python -m fuzz replication --seeds {seed})", flush=True)
            continue
        print(f"seed {seed}: {stats.line()}", flush=True)
    print(f"done in {time.monotonic() - started:.1f} s: seeds={hi - lo} violations={failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
