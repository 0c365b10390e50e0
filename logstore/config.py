"""Per-log configuration, stored as ``<log dir>/config.json`` (written atomically)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from logstore.errors import LogstoreError

FLUSH_SYNC = "sync"
FLUSH_ASYNC = "async"


@dataclass(frozen=True)
class LogConfig:
    #: ``sync``: an append returns after an fdatasync covers it (group commit through the store
    #: journal). ``async``: it returns once in the page cache; fsync every flush_interval_ms or
    #: flush_interval_bytes.
    flush: str = FLUSH_ASYNC
    flush_interval_ms: int = 500  # RocketMQ flushIntervalCommitLog
    flush_interval_bytes: int = 64 * 1024 * 1024
    segment_bytes: int = 1024 * 1024 * 1024  # RocketMQ mappedFileSizeCommitLog
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    retention_ms: int = 72 * 3600 * 1000  # RocketMQ fileReservedTime = 72 h; -1 keeps forever
    retention_bytes: int = -1  # -1: no size limit
    batch_bytes_max: int = 4 * 1024 * 1024 + 64 * 1024  # RocketMQ maxMessageSize + headroom

    def __post_init__(self) -> None:
        if self.flush not in (FLUSH_SYNC, FLUSH_ASYNC):
            raise LogstoreError(f"flush must be {FLUSH_SYNC!r} or {FLUSH_ASYNC!r}, not {self.flush!r}")
        if self.segment_bytes < 1024 or self.segment_bytes > 2**31 - 1:
            raise LogstoreError("segment_bytes must be between 1 KiB and 2 GiB - 1")
        if self.batch_bytes_max < 64 or self.batch_bytes_max > 64 * 1024 * 1024:
            raise LogstoreError("batch_bytes_max must be between 64 B and 64 MiB")
        if self.index_interval_bytes < 1 or self.flush_interval_ms < 1 or self.segment_ms < 1:
            raise LogstoreError("intervals must be positive")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LogConfig:
        doc: dict[str, Any] = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})
