"""logstore-verify: check a whole store read-only (thin over logstore.inspect.verify_store).

    logstore-verify DIR [--json] [--quick]

Reads every segment, index, journal, checkpoint and config file of the store at DIR and checks
them (the list of checks is in ``logstore/inspect.py``). It writes nothing and takes no lock,
so it may run beside a broker that has the store open; the newest bytes of an open store can
then show up as a torn tail.

Output: a summary and one line per problem, ``PATH: byte N: reason``, on stdout; with
``--json`` one JSON document (``VerifyResult.to_dict()``). A progress bar is drawn on stderr
when stderr is a terminal.

Exit status: 0 clean, 1 problems found, 2 usage error (bad arguments, DIR missing or not a
store).
"""

from __future__ import annotations

import argparse
import json
import sys

from logstore import inspect as li
from logstore.io import RealIO
from tools.progress import Progress, human_bytes

PROG = "logstore-verify"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Check every file of a logstore store, read-only.")
    p.add_argument("dir", metavar="DIR", help="the store directory (the one holding logs/)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--quick", action="store_true", help="check headers and CRCs but do not decode records")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    io = RealIO()
    root: str = args.dir
    if not io.is_dir(root):
        print(f"{PROG}: {root}: no such directory", file=sys.stderr)
        return 2
    if not li.is_store(io, root):
        print(f"{PROG}: {root}: not a store (no logs/ directory)", file=sys.stderr)
        return 2
    try:
        with Progress(0, "verify", unit="B") as bar:
            result = li.verify_store(io, root, quick=args.quick, progress=bar.set)
    except OSError as exc:  # a directory that cannot be listed: files are reported one by one
        print(f"{PROG}: {exc.filename or root}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        render(result)
    return 0 if result.ok else 1


def render(r: li.VerifyResult) -> None:
    print(
        f"store {r.path}: {r.logs} logs, {r.segments} segments, {r.batches} batches, {r.records} records, "
        f"{human_bytes(r.bytes)}; journal {r.journal_files} files, {r.journal_entries} entries; "
        f"clean shutdown marker {'present' if r.clean_shutdown else 'absent'}"
    )
    for p in r.problems:
        print(f"ERROR {p}")
    print("OK: no problems found" if r.ok else f"FAILED: {len(r.problems)} problem(s) found")


if __name__ == "__main__":
    sys.exit(main())
