"""Output for the examples: whole lines, from any thread."""

from __future__ import annotations

import sys
import threading

_OUT = threading.Lock()


def say(line: str) -> None:
    """One whole line to stdout: listeners print from worker threads, and ``print`` writes the
    text and its newline separately (two threads' lines could run into each other)."""
    with _OUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
