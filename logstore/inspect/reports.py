"""What inspection finds: :class:`Problem` (file, byte, reason) and the reports of each
file kind (plain data; ``to_dict`` gives the --json form), with the limits the walks keep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from logstore import batch as rb

#: Called with (bytes done, bytes total) as verification walks segment and journal files.
ProgressFn = Callable[[int, int], None]

CONFIG_NAME = "config.json"  # store.CONFIG_NAME; not imported: store pulls in asyncio machinery
CLEAN_MARKER = ".clean_shutdown"
LOGS_DIRNAME = "logs"
READ_CHUNK_BYTES = 4 * 1024 * 1024
PROGRESS_STEP_BYTES = 1024 * 1024
# Past this many problems in one file the rest are summarised: a file of garbage would
# otherwise bury the first finding, the one that matters.
PROBLEMS_PER_FILE_MAX = 50

KIND_SEGMENT = "segment"
KIND_OFFSET_INDEX = "offset-index"
KIND_TIME_INDEX = "time-index"
KIND_JOURNAL = "journal"
KIND_CHECKPOINT = "checkpoint"
KIND_LOG = "log"
KIND_STORE = "store"

CODEC_NAMES = {rb.CODEC_NONE: "none", rb.CODEC_ZSTD: "zstd"}


@dataclass(frozen=True)
class Problem:
    path: str
    position: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: byte {self.position}: {self.reason}"


class _Problems:
    """A per-file problem list with the cap described at PROBLEMS_PER_FILE_MAX."""

    def __init__(self, sink: list[Problem]) -> None:
        self.sink = sink
        self.counts: dict[str, int] = {}

    def add(self, path: str, position: int, reason: str) -> None:
        n = self.counts.get(path, 0) + 1
        self.counts[path] = n
        if n <= PROBLEMS_PER_FILE_MAX:
            self.sink.append(Problem(path, position, reason))
        elif n == PROBLEMS_PER_FILE_MAX + 1:
            self.sink.append(Problem(path, position, "more problems in this file are not listed"))


# -- reports (plain data; ``to_dict`` gives the --json form) ----------------------------------


class _Report:
    """What every report shares: ``to_dict`` (the --json form) and ``all_problems`` (its own,
    then those of the reports it holds, in the order ``_parts`` gives them)."""

    problems: list[Problem]

    def to_dict(self) -> dict[str, Any]:
        return asdict(cast(Any, self))  # every subclass is a dataclass

    def all_problems(self) -> list[Problem]:
        out = list(self.problems)
        for part in self._parts():
            out += part.all_problems()
        return out

    def _parts(self) -> Iterator[_Report]:
        return iter(())


@dataclass
class Shown:
    """Bytes shown to a person: UTF-8 text when printable, else hex."""

    text: str
    format: str  # "text" | "hex"

    @classmethod
    def of(cls, data: bytes) -> Shown:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cls(data.hex(), "hex")
        if all(c.isprintable() or c in "\t\n\r" for c in text):
            return cls(text, "text")
        return cls(data.hex(), "hex")


@dataclass
class RecordInfo:
    offset: int
    timestamp_ms: int
    key: Shown | None
    value: Shown | None
    headers: list[tuple[str, Shown]]


@dataclass
class BatchInfo:
    position: int
    total_bytes: int
    base_offset: int
    last_offset: int
    record_count: int
    leader_epoch: int
    magic: int
    crc_stored: int
    crc_computed: int
    codec: str
    attributes: int
    transactional: bool
    first_timestamp_ms: int
    max_timestamp_ms: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: list[RecordInfo] | None = None

    @property
    def crc_ok(self) -> bool:
        return self.crc_stored == self.crc_computed


@dataclass
class OffsetEntry:
    position: int  # in the index file
    relative_offset: int
    offset: int
    log_position: int


@dataclass
class TimeEntry:
    position: int  # in the index file
    timestamp_ms: int
    relative_offset: int
    offset: int


@dataclass
class IndexReport(_Report):
    path: str
    kind: str  # KIND_OFFSET_INDEX | KIND_TIME_INDEX
    size_bytes: int
    offset_entries: list[OffsetEntry] = field(default_factory=list)
    time_entries: list[TimeEntry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class SegmentReport(_Report):
    path: str
    base_offset: int
    size_bytes: int
    next_offset: int = 0  # one past the last batch walked
    valid_bytes: int = 0  # where the walk of well-framed batches ended
    batch_count: int = 0
    record_count: int = 0
    max_timestamp_ms: int = -1
    last_epoch: int = -1
    batches: list[BatchInfo] = field(default_factory=list)  # empty unless kept
    offset_index: IndexReport | None = None
    time_index: IndexReport | None = None
    problems: list[Problem] = field(default_factory=list)

    def _parts(self) -> Iterator[_Report]:
        return (ix for ix in (self.offset_index, self.time_index) if ix is not None)


@dataclass
class JournalEntryInfo:
    position: int
    log: str
    entry_bytes: int
    batch: BatchInfo | None


@dataclass
class JournalReport(_Report):
    path: str
    sequence: int | None
    size_bytes: int
    entries: list[JournalEntryInfo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class CheckpointReport(_Report):
    path: str
    journal_start: int | None = None
    logs: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class LogReport(_Report):
    name: str
    path: str
    config: dict[str, Any] | None = None
    start_offset: int = 0  # base of the first segment
    end_offset: int = 0
    segments: list[SegmentReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def _parts(self) -> Iterator[_Report]:
        return iter(self.segments)


@dataclass
class StoreReport(_Report):
    path: str
    clean_shutdown: bool = False
    checkpoint: CheckpointReport | None = None
    logs: list[LogReport] = field(default_factory=list)
    journals: list[JournalReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def _parts(self) -> Iterator[_Report]:
        if self.checkpoint is not None:
            yield self.checkpoint
        yield from self.logs
        yield from self.journals


Report = SegmentReport | IndexReport | JournalReport | CheckpointReport | LogReport | StoreReport


@dataclass
class VerifyResult:
    path: str
    clean_shutdown: bool = False
    logs: int = 0
    segments: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    journal_files: int = 0
    journal_entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d
