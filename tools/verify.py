"""logstore-verify: check a whole store read-only (thin over logstore.inspect.verify_store).

    logstore-verify DIR [--json] [--quick]

Reads every segment, index, journal, checkpoint and config file of the store at DIR and checks
them (the list of checks is in ``logstore/inspect/__init__.py``). It writes nothing and takes no lock,
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
import sys

from logstore import inspect as li
from logstore.io import RealIO
from tools.cli_support import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, fail, parse_args, print_json
from tools.progress import Progress, human_bytes

PROG = "logstore-verify"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Check every file of a logstore store, read-only.")
    p.add_argument("dir", metavar="DIR", help="the store directory (the one holding logs/)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--quick", action="store_true", help="check headers and CRCs but do not decode records")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    io = RealIO()
    root: str = args.dir
    if not io.is_dir(root):
        return fail(PROG, f"{root}: no such directory", EXIT_USAGE)
    if not li.is_store(io, root):
        return fail(PROG, f"{root}: not a store (no logs/ directory)", EXIT_USAGE)
    try:
        with Progress(0, "verify", unit="B") as bar:
            result = li.verify_store(io, root, quick=args.quick, progress=bar.set)
    except OSError as exc:  # a directory that cannot be listed: files are reported one by one
        return fail(PROG, f"{exc.filename or root}: {exc.strerror or exc}", EXIT_PROBLEMS)
    if args.json:
        print_json(result.to_dict())
    else:
        render(result)
    return EXIT_OK if result.ok else EXIT_PROBLEMS


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
