"""The small exception hierarchy of the storage engine.

Policy lives in attributes (``retriable``), not in the class tree: adapters map these to wire
codes (RocketMQ response codes, HTTP statuses); the engine never knows about wire codes.
"""

from __future__ import annotations


class LogstoreError(Exception):
    """Base class of every error the engine raises on purpose."""

    retriable = False


class InvalidBatchError(LogstoreError):
    """A batch handed to append (or read from a file) is malformed: bad CRC, length, magic."""


class BatchTooLargeError(InvalidBatchError):
    """A batch is larger than the log's ``batch_bytes_max``."""


class OffsetOutOfRangeError(LogstoreError):
    """A read or truncate asked for an offset outside [log_start_offset, end_offset]."""


class LogFailedError(LogstoreError):
    """The log is fail-stopped: an fsync (or a write) failed and nothing more may be written.

    Never retried: after a failed fsync the page cache may have dropped the dirty pages, so a
    later successful fsync would prove nothing (PostgreSQL "fsyncgate").
    """


class CorruptLogError(LogstoreError):
    """Data before the durable point is damaged. Recovery refuses the log and cuts nothing."""

    def __init__(self, message: str, path: str, position: int) -> None:
        super().__init__(f"{message} (file {path}, byte {position})")
        self.path = path
        self.position = position


class StoreLockedError(LogstoreError):
    """Another process holds the store directory's lock."""


class LogNotFoundError(LogstoreError):
    """No log of that name exists in the store."""


class LogExistsError(LogstoreError):
    """A log of that name already exists."""


class InvalidNameError(LogstoreError):
    """A log name that cannot be a directory name in the store."""


class ClosedError(LogstoreError):
    """The store or log is closed."""


class ReplicationError(LogstoreError):
    """Replication between a leader and a follower failed; the follower retries (with backoff)
    unless the error says otherwise."""

    retriable = True


class ProtocolError(ReplicationError):
    """A replication frame is malformed or too large. The connection is closed."""


class FencedError(ReplicationError):
    """A leader epoch check failed: this node or its peer is a stale leader (RELIABILITY.md
    class 10). Data from the stale side is refused."""


class NotEligibleError(ReplicationError):
    """This replica may not lead: recovery cut data from it and it has not caught up with a
    leader since (RELIABILITY.md class 5)."""

    retriable = False
