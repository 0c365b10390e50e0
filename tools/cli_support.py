"""What the ops tools share at their edge: exit codes, argparse without ``SystemExit``, errors
on stderr as ``PROG: message``, and a JSON document on stdout.

Exit codes: 0 success (or clean), 1 problems found / the request failed, 2 usage error (bad
arguments, a path that is missing or of the wrong kind)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code argparse asked for (--help: 0, a usage error: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def fail(prog: str, message: str, code: int) -> int:
    """Print ``PROG: message`` on stderr and return ``code``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def print_json(doc: Any) -> None:
    """One indented JSON document on stdout."""
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")
