"""A tiny dependency-free progress bar for the ops tools (verify, dump, bench).

Drawn on stderr, and only when stderr is a terminal: piped or captured output stays exactly
the documented text or JSON. Redraws at most every ``REDRAW_INTERVAL_S`` so a tight loop
calling :meth:`Progress.update` costs a clock read, not a write.

    bar = Progress(total_bytes, "verify", unit="B")
    for chunk in work:
        bar.update(len(chunk))
    bar.close()
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_INTERVAL_S = 0.1
BAR_WIDTH = 30


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """``Progress(total, label)``; ``update(n)`` adds ``n`` done; ``close()`` ends the line.
    A no-op unless ``stream`` (default stderr) is a terminal. ``total`` may be changed later
    (a tool that learns its total as it goes)."""

    def __init__(self, total: int, label: str = "", *, unit: str = "", stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.enabled = _is_tty(self.stream)
        self._drawn_at = 0.0
        self._drawn = False
        self._started = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now - self._drawn_at >= REDRAW_INTERVAL_S:
                self._draw(now)

    def set(self, done: int, total: int | None = None) -> None:
        """Absolute form of update, for callbacks that report (done, total)."""
        if total is not None:
            self.total = total
        self.update(done - self.done)

    def close(self) -> None:
        if self.enabled and (self._drawn or self.done):
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line(self, now: float) -> str:
        """The text of the bar (without the carriage return)."""
        fraction = min(1.0, self.done / self.total) if self.total > 0 else 0.0
        filled = int(fraction * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        if self.unit == "B":
            amount = f"{human_bytes(self.done)}/{human_bytes(self.total)}"
        else:
            amount = f"{self.done}/{self.total}{(' ' + self.unit) if self.unit else ''}"
        elapsed_s = now - self._started
        label = f"{self.label} " if self.label else ""
        return f"{label}[{bar}] {fraction * 100:5.1f}% {amount} {elapsed_s:.1f}s"

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + self.line(now))
        self.stream.flush()
        self._drawn_at = now
        self._drawn = True


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
