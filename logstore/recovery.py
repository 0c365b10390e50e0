"""Recovery of one log's segments after the store opens: a decision table and a report.

Every rule below names a row; the report lists which rows fired, where and why. "rp" is the
recovery point from the checkpoint (data below it was fsynced before the checkpoint was
written); "durable" means below rp.

====  ==========================================  =============================================
row   situation                                   action
====  ==========================================  =============================================
R1    clean-shutdown marker, tails parse          no scan; facts from indexes + header walk
R2    no marker (or R1's walk failed)             scan from the segment holding rp, CRC on
R3    bad batch at an offset >= rp                torn tail: cut the file there, delete every
                                                  later segment, report the bytes cut
R4    bad batch at an offset < rp                 corruption: refuse the log, cut nothing
R5    the data ends below rp                      durable data missing: refuse the log
R6    segment base != previous segment's end      at or past rp: cut from there (R3);
      (or first segment above the log start)      below rp: refuse (R4)
R7    segment wholly below log_start_offset       leftover of retention: delete it
R8    first segment starts above log_start        durable data missing: refuse
R9    index missing or inconsistent               rebuild it from the data (CRC-checked scan)
R10   no checkpoint entry for the log             rp = log start: everything is scanned
====  ==========================================  =============================================

Corruption (R4, R5, R8) raises :class:`CorruptLogError` naming the file and byte position;
nothing has been changed on disk when it does.
"""

from __future__ import annotations

import itertools
import posixpath
from dataclasses import dataclass, field

from logstore.checkpoint import LogCheckpoint
from logstore.errors import CorruptLogError
from logstore.io import IO
from logstore.segment import Scan, Segment, parse_segment_name


@dataclass
class Cut:
    row: str
    path: str
    position: int
    bytes_cut: int
    reason: str


@dataclass
class LogRecovery:
    name: str
    rows: list[str] = field(default_factory=list)
    scanned_bytes: int = 0
    cuts: list[Cut] = field(default_factory=list)
    rebuilt_indexes: list[str] = field(default_factory=list)
    deleted_segments: list[str] = field(default_factory=list)
    replayed_batches: int = 0
    end_offset: int = 0
    epochs_rebuilt: bool = False  # the leader-epoch cache disagreed with the batches

    @property
    def bytes_cut(self) -> int:
        return sum(c.bytes_cut for c in self.cuts)

    def fire(self, row: str) -> None:
        if row not in self.rows:
            self.rows.append(row)


@dataclass
class RecoveredLog:
    segments: list[Segment]
    log_start_offset: int
    recovery_point: int
    report: LogRecovery


def _open_segments(io: IO, directory: str, now_ms: int, interval: int) -> list[tuple[Segment, str | None]]:
    bases = sorted(b for b in (parse_segment_name(n) for n in io.listdir(directory)) if b is not None)
    return [Segment.open(io, directory, b, now_ms, interval) for b in bases]


def _tail_walk(seg: Segment) -> str | None:
    """Set size/next_offset/max timestamp from the last index entry onwards, headers only."""
    rel, pos = seg.index.floor(2**31)
    scan = Scan(seg.file, pos, seg.size, expected_offset=seg.base_offset + rel if pos else seg.base_offset,
                check_crc=False)
    seg.next_offset = seg.base_offset + rel if pos else seg.base_offset
    seg.max_timestamp_ms = seg.index.times[-1] if seg.index.times else -1
    for _p, h in scan:
        seg.next_offset = h.next_offset
        seg.max_timestamp_ms = max(seg.max_timestamp_ms, h.max_timestamp_ms)
    seg.bytes_since_index = seg.size - pos if pos or seg.index.positions else seg.index_interval_bytes
    return None if scan.stop is None else f"{scan.stop.reason} at byte {scan.stop.position}"


def recover_log(
    io: IO, name: str, directory: str, cp: LogCheckpoint | None, clean: bool, now_ms: int,
    index_interval_bytes: int,
) -> RecoveredLog:
    report = LogRecovery(name)
    opened = _open_segments(io, directory, now_ms, index_interval_bytes)
    if cp is None:
        report.fire("R10")
        first = opened[0][0].base_offset if opened else 0
        cp = LogCheckpoint(recovery_point=first, log_start_offset=first)
    rp, log_start = cp.recovery_point, cp.log_start_offset

    try:
        return _recover(io, report, opened, rp, log_start, clean, directory)
    except CorruptLogError:
        for seg, _ in opened:
            seg.close()
        raise


def _recover(
    io: IO, report: LogRecovery, opened: list[tuple[Segment, str | None]], rp: int, log_start: int,
    clean: bool, directory: str,
) -> RecoveredLog:
    # R7: whole segments below the log start are leftovers of an interrupted deletion. We
    # decide from the next segment's base, which needs no read of the doomed one, or, when
    # that segment is gone too (it may never have been durable), from a header walk.
    doomed: list[Segment] = []
    while opened and opened[0][0].base_offset < log_start and (
        (len(opened) > 1 and opened[1][0].base_offset <= log_start)
        or _ends_by(opened[0][0], opened[0][1], log_start)
    ):
        doomed.append(opened.pop(0)[0])
    segments = [s for s, _ in opened]
    problems = {s.base_offset: p for s, p in opened}
    if not segments:
        if rp > log_start:
            raise CorruptLogError(f"no segments but the recovery point is {rp}", directory, 0)
        _delete(report, doomed, "R7")
        return RecoveredLog([], log_start, rp, report)
    if segments[0].base_offset > log_start:
        if rp > log_start:
            raise CorruptLogError(  # R8
                f"first segment starts at {segments[0].base_offset}, log start is {log_start}",
                segments[0].path, 0,
            )
        # R6 at the very start: the segment holding the log start was never durable (it is
        # past the recovery point), so nothing after it can stand: the log restarts empty.
        report.fire("R6")
        _cut_rest(report, segments, "R6", f"log start {log_start} lies in a lost segment before it")
        _delete(report, doomed, "R7")
        io.fsync_dir(directory)
        return RecoveredLog([], log_start, rp, report)

    if clean:
        report.fire("R1")
        if all(problems[s.base_offset] is None and _tail_walk(s) is None for s in segments) and _dense(segments):
            _delete(report, doomed, "R7")
            return RecoveredLog(segments, log_start, segments[-1].next_offset, report)
        report.fire("R2")  # the marker lied or a file was damaged: recover properly

    # Segments wholly below rp are trusted: facts from a header walk, index checked.
    first_scanned = max([i for i, s in enumerate(segments) if s.base_offset <= rp] or [0])
    for i, seg in enumerate(segments[:first_scanned]):
        why = problems[seg.base_offset] or _tail_walk(seg)
        if why is not None:
            report.fire("R9")
            scan = Scan(seg.file, 0, seg.size, expected_offset=seg.base_offset)
            seg.rebuild_from(scan)
            report.scanned_bytes += scan.position
            report.rebuilt_indexes.append(seg.path)
            if scan.stop is not None:
                raise CorruptLogError(f"below the recovery point {rp}: {scan.stop.reason}", seg.path, scan.stop.position)
        nxt = segments[i + 1].base_offset
        if seg.next_offset != nxt:
            raise CorruptLogError(  # R6 below rp
                f"segment ends at offset {seg.next_offset} but the next starts at {nxt}", seg.path, seg.size
            )

    report.fire("R2")
    kept = segments[:first_scanned]
    for i in range(first_scanned, len(segments)):
        seg = segments[i]
        expected = kept[-1].next_offset if kept else seg.base_offset
        if kept and seg.base_offset != expected:
            if expected < rp:
                raise CorruptLogError(f"segment starts at {seg.base_offset}, previous ends at {expected}", seg.path, 0)
            report.fire("R6")
            _cut_rest(report, segments[i:], "R6", f"segment starts at {seg.base_offset} after a gap from {expected}")
            break
        scan = Scan(seg.file, 0, seg.size, expected_offset=seg.base_offset)
        seg.rebuild_from(scan)
        report.scanned_bytes += scan.position
        kept.append(seg)
        if scan.stop is not None:
            if seg.next_offset < rp:
                raise CorruptLogError(
                    f"offset {seg.next_offset} is below the recovery point {rp}: {scan.stop.reason}",
                    seg.path, scan.stop.position,
                )
            report.fire("R3")
            report.cuts.append(Cut("R3", seg.path, scan.stop.position, seg.size - scan.stop.position, scan.stop.reason))
            seg.truncate(scan.stop.position)
            _cut_rest(report, segments[i + 1 :], "R3", "follows a torn tail")
            break
    end = kept[-1].next_offset
    if end < rp:
        raise CorruptLogError(f"data ends at offset {end}, below the recovery point {rp}", kept[-1].path, kept[-1].size)  # R5
    _delete(report, doomed, "R7")
    if report.cuts or report.deleted_segments:
        for seg in kept:
            seg.sync()
            seg.index.sync()
        io.fsync_dir(directory)
    return RecoveredLog(kept, log_start, rp, report)


def _ends_by(seg: Segment, index_problem: str | None, offset: int) -> bool:
    """Whether the segment's batches provably all end at or below ``offset`` (a header walk,
    from the last index entry when the index is sound, else from byte 0)."""
    if index_problem is None:
        if _tail_walk(seg) is not None:
            return False
        return seg.base_offset <= seg.next_offset <= offset
    scan = Scan(seg.file, 0, seg.size, expected_offset=seg.base_offset, check_crc=False)
    for _pos, _h in scan:
        pass
    return scan.stop is None and scan.expected_offset is not None and scan.expected_offset <= offset


def _dense(segments: list[Segment]) -> bool:
    return all(a.next_offset == b.base_offset for a, b in itertools.pairwise(segments))


def _cut_rest(report: LogRecovery, rest: list[Segment], row: str, reason: str) -> None:
    for seg in rest:
        report.cuts.append(Cut(row, seg.path, 0, seg.size, reason))
        report.deleted_segments.append(seg.path)
        seg.remove_files()


def _delete(report: LogRecovery, doomed: list[Segment], row: str) -> None:
    for seg in doomed:
        report.fire(row)
        report.deleted_segments.append(seg.path)
        seg.remove_files()
    if doomed:
        doomed[0].io.fsync_dir(posixpath.dirname(doomed[0].path))
