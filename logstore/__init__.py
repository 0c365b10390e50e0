"""logstore: a segmented, CRC-checked commit log with sync/async flush, crash recovery and
retention, usable as an embedded asyncio library.

    store = await Store.open("data")
    log = await store.get_or_create_log("orders-0", LogConfig(flush="sync"))
    result = await log.append(build_batch([Record(b"hello")]))
    records = log.read_records(result.base_offset)
    await store.close()
"""

from logstore.batch import BatchOptions, Record, build_batch
from logstore.config import FLUSH_ASYNC, FLUSH_SYNC, LogConfig
from logstore.errors import (
    BatchTooLargeError,
    ClosedError,
    CorruptLogError,
    InvalidBatchError,
    InvalidNameError,
    LogExistsError,
    LogFailedError,
    LogNotFoundError,
    LogstoreError,
    OffsetOutOfRangeError,
    StoreLockedError,
)
from logstore.io import IO, RealIO, SystemClock
from logstore.log import AppendResult, Log, ReadResult, Region
from logstore.simio import SimClock, SimIO
from logstore.store import RecoveryReport, Store, StoreConfig

__all__ = [
    "FLUSH_ASYNC", "FLUSH_SYNC", "IO", "AppendResult", "BatchOptions", "BatchTooLargeError",
    "ClosedError", "CorruptLogError", "InvalidBatchError", "InvalidNameError", "Log", "LogConfig",
    "LogExistsError", "LogFailedError", "LogNotFoundError", "LogstoreError", "OffsetOutOfRangeError",
    "ReadResult", "RealIO", "Record", "RecoveryReport", "Region", "SimClock", "SimIO", "Store",
    "StoreConfig", "StoreLockedError", "SystemClock", "build_batch",
]
