"""Figures of ``logstore bench`` and ``logstore bench rocket``: a measured value beside a
baseline taken in the same run, an optional goal, and their output: a table on stdout, or with
``--json`` one JSON object per figure per line with keys ``name value unit baseline ratio goal
params`` (``goal`` is ``{"of": "ratio"|"value", "min"|"max": limit, "met": bool}`` or null)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class Goal:
    of: str  # "ratio" or "value"
    limit: float
    bound: str = "min"  # "min" or "max"

    def met(self, fig: Figure) -> bool:
        x = fig.ratio if self.of == "ratio" else fig.value
        return x >= self.limit if self.bound == "min" else x <= self.limit

    def text(self, unit: str) -> str:
        op = ">=" if self.bound == "min" else "<="
        return f"ratio{op}{self.limit:g}" if self.of == "ratio" else f"{op}{self.limit:g} {unit}"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float
    goal: Goal | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline > 0 else 0.0

    def to_json(self, value_digits: int = 3) -> dict[str, Any]:
        """``value_digits``: decimals kept of value and baseline (the ratio keeps 4)."""
        goal = None
        if self.goal is not None:
            goal = {"of": self.goal.of, self.goal.bound: self.goal.limit, "met": self.goal.met(self)}
        return {"name": self.name, "value": round(self.value, value_digits), "unit": self.unit,
                "baseline": round(self.baseline, value_digits), "ratio": round(self.ratio, 4), "goal": goal,
                "params": self.params}


class Reporter:
    """Prints each figure as it comes: a table row (header first) or a JSON line.

    ``value_digits``: decimals of value and baseline in JSON; ``fine_below``: table values under
    this get two decimals instead of one."""

    COLUMNS = ("figure", "value", "unit", "baseline", "ratio", "goal", "result")
    FORMAT = "{:<22} {:>12} {:<10} {:>12} {:>7}  {:<16} {}"

    def __init__(self, as_json: bool, out: TextIO | None = None, *, value_digits: int = 3,
                 fine_below: float = 0.0) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout
        self.value_digits = value_digits
        self.fine_below = fine_below
        self.figures: list[Figure] = []
        self._header = False

    def emit(self, fig: Figure) -> None:
        self.figures.append(fig)
        if self.as_json:
            print(json.dumps(fig.to_json(self.value_digits)), file=self.out, flush=True)
            return
        if not self._header:
            print(self.FORMAT.format(*self.COLUMNS), file=self.out)
            self._header = True
        goal, result = "-", "info"
        if fig.goal is not None:
            goal, result = fig.goal.text(fig.unit), "PASS" if fig.goal.met(fig) else "MISS"
        print(self.FORMAT.format(fig.name, self._num(fig.value), fig.unit, self._num(fig.baseline),
                                 f"{fig.ratio:.2f}", goal, result), file=self.out, flush=True)

    def _num(self, x: float) -> str:
        return f"{x:,.0f}" if x >= 1000 else f"{x:,.2f}" if x < self.fine_below else f"{x:,.1f}"


def note(text: str) -> None:
    """A progress remark on stderr (stdout carries only figures)."""
    print(f"# {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds used so far by this process (every thread), or by ``pid``
    (read from ``/proc/<pid>/stat``: Linux only; 0.0 where that is not readable)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    # Fields after the command name (which may hold spaces) start at its closing parenthesis;
    # utime and stime are the 14th and 15th fields of the line.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def workdir(path: str | None, prefix: str = "logstore-bench-") -> Iterator[str]:
    """``--dir`` (made if missing, kept) or a temporary directory removed afterwards."""
    if path is not None:
        os.makedirs(path, exist_ok=True)
        yield path
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fresh(path: str) -> str:
    """``path`` as an empty directory (whatever an earlier run left there goes)."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


@dataclass
class Stats:
    """Latencies (seconds) -> average and p99 in ms."""

    samples: list[float]

    @property
    def avg_ms(self) -> float:
        return 1000 * sum(self.samples) / len(self.samples) if self.samples else 0.0

    @property
    def p99_ms(self) -> float:
        if not self.samples:
            return 0.0
        s = sorted(self.samples)
        return 1000 * s[min(len(s) - 1, int(len(s) * 0.99))]
