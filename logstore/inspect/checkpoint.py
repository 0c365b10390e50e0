"""The ``checkpoint`` file and a log's ``config.json``: each decodes and parses."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from logstore import checkpoint as ckpt
from logstore.config import LogConfig
from logstore.errors import CorruptLogError, LogstoreError
from logstore.io import IO

from .reading import _read_file
from .reports import CheckpointReport, Problem, _Problems

# -- checkpoint and config ----------------------------------------------------------------------


def describe_checkpoint(io: IO, path: str) -> CheckpointReport:
    problems: list[Problem] = []
    report = _read_checkpoint(io, path, _Problems(problems))
    report.problems = problems
    return report


def _read_checkpoint(io: IO, path: str, problems: _Problems) -> CheckpointReport:
    report = CheckpointReport(path)
    raw = _read_file(io, path, problems)
    if raw is None:
        return report
    body_at = raw.find(b"\n") + 1
    try:
        cp = ckpt.decode(raw, path)
    except CorruptLogError as exc:
        problems.add(path, exc.position, str(exc).split(" (file ")[0])
        return report
    except json.JSONDecodeError as exc:
        problems.add(path, body_at + exc.pos, f"checkpoint JSON does not parse: {exc.msg}")
        return report
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problems.add(path, body_at, f"checkpoint JSON has the wrong shape: {exc!r}")
        return report
    report.journal_start = cp.journal_start
    report.logs = {n: {"recovery_point": lc.recovery_point, "log_start_offset": lc.log_start_offset}
                   for n, lc in cp.logs.items()}
    return report


def _checkpoint_position(raw: bytes, name: str) -> int:
    """Where a log's entry sits in the checkpoint file, for a problem that names it."""
    at = raw.find(json.dumps(name).encode() + b":")
    return max(at, 0)


def _read_config(io: IO, path: str, problems: _Problems) -> dict[str, Any] | None:
    raw = _read_file(io, path, problems)
    if raw is None:
        return None
    try:
        return asdict(LogConfig.from_json(raw))
    except json.JSONDecodeError as exc:
        problems.add(path, exc.pos, f"config JSON does not parse: {exc.msg}")
    except (ValueError, TypeError, AttributeError, LogstoreError) as exc:
        problems.add(path, 0, f"config is not a valid log config: {exc}")
    return None
