"""The oracle: what each log was asked to hold, and the check of a recovered log against it.

Per log the model keeps the batches of the log as the engine sees it (``current``, in offset
order), each marked durable or not, plus ``ghosts``: batches an interrupted truncate may bring
back. A batch becomes durable when a sync append is acknowledged, or, for async logs, when a
later ``flush()``, ``checkpoint()`` or clean close succeeds. After a crash and reopen:

- every batch the recovered log returns exists in the model at that offset, byte-identical
  (records compared field by field, offsets included): nothing invented, nothing reordered;
- offsets are dense from the log start to the end;
- every durable batch at or past the recovered log start is there;
- the log start never goes back below a durable start (deleted data never returns) and
  never passes the end.

After the check the model becomes the recovered state, all of it durable: recovery fsyncs
what it keeps (a second crash must not lose what readers were already shown).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from logstore import batch as rb
from logstore.batch import Record
from logstore.config import LogConfig

RecordKey = tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...], int]


def record_key(r: Record) -> RecordKey:
    return (r.offset, r.value, r.key, r.headers, r.timestamp_ms)


@dataclass
class MBatch:
    base: int
    records: tuple[RecordKey, ...]
    durable: bool

    @property
    def next_offset(self) -> int:
        return self.base + len(self.records)


@dataclass(frozen=True)
class LogState:
    """What a recovered log serves: start, end and its batches (base, next, records)."""

    start: int
    end: int
    batches: tuple[tuple[int, int, tuple[RecordKey, ...]], ...]


@dataclass
class LogModel:
    name: str
    config: LogConfig
    current: list[MBatch] = field(default_factory=list)
    ghosts: dict[int, list[MBatch]] = field(default_factory=dict)
    next_offset: int = 0
    start_durable: int = 0
    failed: bool = False
    created_durable: bool = True

    @property
    def sync(self) -> bool:
        return self.config.flush == "sync"

    def issue(self, base: int, records: list[Record], durable: bool) -> MBatch:
        keys = tuple(record_key(Record(r.value, r.key, r.headers, r.timestamp_ms, base + i)) for i, r in enumerate(records))
        b = MBatch(base, keys, durable)
        self.current.append(b)
        self.next_offset = b.next_offset
        return b

    def make_durable(self) -> None:
        for b in self.current:
            b.durable = True

    def doubt_from(self, offset: int) -> None:
        """Batches at or past the one holding ``offset`` may vanish (truncate in flight)."""
        for b in self.current:
            if b.next_offset > offset:
                b.durable = False

    def truncated(self, new_end: int) -> None:
        self.current = [b for b in self.current if b.next_offset <= new_end]
        self.next_offset = new_end

    def ghost_from(self, offset: int) -> None:
        """A truncate that failed: the batches past ``offset`` may or may not come back."""
        for b in self.current:
            if b.next_offset > offset:
                b.durable = False
                self.ghosts.setdefault(b.base, []).append(MBatch(b.base, b.records, False))

    def candidates(self, base: int) -> list[MBatch]:
        return [b for b in self.current if b.base == base] + self.ghosts.get(base, [])

    def reset_to(self, state: LogState) -> None:
        self.current = [MBatch(base, recs, True) for base, _n, recs in state.batches]
        self.ghosts = {}
        self.next_offset = state.end
        self.start_durable = state.start
        self.failed = False
        self.created_durable = True


def check_log(m: LogModel, actual: LogState) -> list[str]:
    errs: list[str] = []
    who = f"log {m.name}"
    if actual.start < m.start_durable:
        errs.append(f"{who}: log start {actual.start} went below the durable start {m.start_durable}")
    if actual.start > actual.end:
        errs.append(f"{who}: log start {actual.start} is past the end {actual.end}")
    expected = None
    for base, nxt, recs in actual.batches:
        if expected is not None and base != expected:
            errs.append(f"{who}: batch at {base} follows one ending at {expected} (offsets not dense)")
        if not any(c.records == recs for c in m.candidates(base)):
            have = [f"{len(c.records)} records, first {_brief(c.records[0])}" for c in m.candidates(base)]
            errs.append(f"{who}: batch at offset {base} ({len(recs)} records, first {_brief(recs[0])}) was "
                        f"never issued there (model has {have or 'nothing'})")
        expected = nxt
    if actual.batches:
        first_base, first_next = actual.batches[0][0], actual.batches[0][1]
        if not first_base <= actual.start < first_next and actual.start != first_base:
            errs.append(f"{who}: first batch [{first_base}, {first_next}) does not hold the start {actual.start}")
        if actual.batches[-1][1] != actual.end:
            errs.append(f"{who}: batches end at {actual.batches[-1][1]} but the log end is {actual.end}")
    elif actual.end > actual.start:
        errs.append(f"{who}: no batches readable in [{actual.start}, {actual.end})")
    present = {(base, recs) for base, _n, recs in actual.batches}
    for b in m.current:
        if b.durable and b.next_offset > actual.start and (b.base, b.records) not in present:
            errs.append(f"{who}: acknowledged durable batch [{b.base}, {b.next_offset}) is lost or changed "
                        f"(recovered log is [{actual.start}, {actual.end}))")
    return errs


def _brief(r: RecordKey) -> str:
    value = r[1]
    shown = "None" if value is None else f"{len(value)}B {value[:12]!r}"
    return f"(offset {r[0]}, value {shown}, key {r[2]!r}, ts {r[4]})"


def clone_models(models: dict[str, LogModel]) -> dict[str, LogModel]:
    return copy.deepcopy(models)


def decode_batches(data: bytes) -> list[tuple[int, int, tuple[RecordKey, ...]]]:
    """Validate (CRC) and decode every batch of ``data``; raises InvalidBatchError if bad."""
    out = []
    pos = 0
    while pos < len(data):
        h = rb.validate(data, pos)
        out.append((h.base_offset, h.next_offset, tuple(record_key(r) for r in rb.iter_records(data, pos))))
        pos += h.total_bytes
    return out
