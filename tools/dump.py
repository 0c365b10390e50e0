"""logstore-dump: show what is in a store's files, decoded (thin over logstore.inspect).

    logstore-dump PATH [--json] [--records] [--indexes]

PATH is a ``.log`` segment, a ``.index`` / ``.timeindex`` file, a ``.wal`` journal file, the
``checkpoint`` file, a log directory or a whole store directory.

Output: readable text on stdout, or with ``--json`` one JSON document (the ``to_dict()`` of the
matching report in ``logstore.inspect``). Damage is not a crash: everything that decodes is
shown, each problem is printed as ``PATH: byte N: reason`` (inline in the text, and on
stderr in both modes).

Exit status: 0 when every file decoded cleanly, 1 when problems were found, 2 for a bad
command line or a path that does not exist or is not a logstore file or directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TextIO

from logstore import inspect as li
from logstore.io import RealIO
from tools.cli_support import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, fail, parse_args, print_json

PROG = "logstore-dump"
SHOWN_CHARS_MAX = 120  # text mode only: --json always carries the whole value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Decode and show a logstore segment, index, journal, checkpoint, log or store.",
    )
    p.add_argument("path", metavar="PATH", help="a .log/.index/.timeindex/.wal file, checkpoint, log dir or store dir")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--records", action="store_true", help="decode and show every record of every batch")
    p.add_argument("--indexes", action="store_true", help="show (and check) the index entries of each segment")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    io = RealIO()
    path: str = args.path
    if not io.exists(path):
        return fail(PROG, f"{path}: no such file or directory", EXIT_USAGE)
    kind = li.path_kind(io, path)
    if kind is None:
        return fail(PROG, f"{path}: not a store, log directory, segment, index, journal or checkpoint", EXIT_USAGE)
    try:
        report = li.describe(io, path, records=args.records, indexes=args.indexes)
    except OSError as exc:
        return fail(PROG, f"{path}: {exc.strerror or exc}", EXIT_PROBLEMS)
    if args.json:
        print_json(report.to_dict())
    else:
        render(report, sys.stdout)
    problems = report.all_problems()
    for p in problems:
        print(f"{PROG}: error: {p}", file=sys.stderr)
    if problems:
        print(f"{PROG}: {len(problems)} problem(s) found", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


# -- text rendering -------------------------------------------------------------------------------


def render(report: li.Report, out: TextIO) -> None:
    renderers: dict[type, Callable[[li.Report, TextIO], None]] = {
        li.SegmentReport: _render_segment_any, li.IndexReport: _render_index_any,
        li.JournalReport: _render_journal_any, li.CheckpointReport: _render_checkpoint_any,
        li.LogReport: _render_log_any, li.StoreReport: _render_store_any,
    }
    renderers[type(report)](report, out)


def _render_segment_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.SegmentReport)
    render_segment(r, out, "")


def _render_index_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.IndexReport)
    render_index(r, out, "")


def _render_journal_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.JournalReport)
    render_journal(r, out, "")


def _render_checkpoint_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.CheckpointReport)
    render_checkpoint(r, out, "")


def _render_log_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.LogReport)
    render_log(r, out, "")


def _render_store_any(r: li.Report, out: TextIO) -> None:
    assert isinstance(r, li.StoreReport)
    render_store(r, out)


def shown(s: li.Shown | None) -> str:
    if s is None:
        return "null"
    text = json.dumps(s.text, ensure_ascii=False) if s.format == "text" else "hex:" + s.text
    return text if len(text) <= SHOWN_CHARS_MAX else text[:SHOWN_CHARS_MAX] + "..."


def _problems(problems: list[li.Problem], out: TextIO, indent: str) -> None:
    for p in problems:
        out.write(f"{indent}ERROR {p}\n")


def render_batch(b: li.BatchInfo, out: TextIO, indent: str) -> None:
    crc = "ok" if b.crc_ok else f"BAD (computed {b.crc_computed:08x})"
    txn = " transactional" if b.transactional else ""
    out.write(
        f"{indent}batch @{b.position}: offsets {b.base_offset}..{b.last_offset} ({b.record_count} records), "
        f"{b.total_bytes} bytes, epoch {b.leader_epoch}, crc {b.crc_stored:08x} {crc}, codec {b.codec}{txn}, "
        f"ts {b.first_timestamp_ms}..{b.max_timestamp_ms}, producer {b.producer_id}/{b.producer_epoch}/{b.base_sequence}\n"
    )
    for rec in b.records or []:
        headers = ", ".join(f"{k}={shown(v)}" for k, v in rec.headers)
        out.write(
            f"{indent}  record {rec.offset}: ts {rec.timestamp_ms}, key {shown(rec.key)}, value {shown(rec.value)}"
            + (f", headers {{{headers}}}" if rec.headers else "") + "\n"
        )


def render_segment(r: li.SegmentReport, out: TextIO, indent: str) -> None:
    out.write(f"{indent}segment {r.path}: base offset {r.base_offset}, {r.size_bytes} bytes\n")
    for b in r.batches:
        render_batch(b, out, indent + "  ")
    out.write(
        f"{indent}  {r.batch_count} batches, {r.record_count} records, end offset {r.next_offset}, "
        f"{r.valid_bytes} of {r.size_bytes} bytes framed\n"
    )
    _problems(r.problems, out, indent + "  ")
    for ix in (r.offset_index, r.time_index):
        if ix is not None:
            render_index(ix, out, indent + "  ")


def render_index(r: li.IndexReport, out: TextIO, indent: str) -> None:
    n = len(r.offset_entries) + len(r.time_entries)
    out.write(f"{indent}{r.kind} {r.path}: {r.size_bytes} bytes, {n} entries\n")
    for e in r.offset_entries:
        out.write(f"{indent}  entry @{e.position}: offset {e.offset} (relative {e.relative_offset}) -> byte {e.log_position}\n")
    for t in r.time_entries:
        out.write(f"{indent}  entry @{t.position}: max timestamp {t.timestamp_ms} at offset {t.offset} (relative {t.relative_offset})\n")
    _problems(r.problems, out, indent + "  ")


def render_journal(r: li.JournalReport, out: TextIO, indent: str) -> None:
    out.write(f"{indent}journal {r.path}: sequence {r.sequence}, {r.size_bytes} bytes, {len(r.entries)} entries\n")
    for e in r.entries:
        where = f"{indent}  entry @{e.position}: log {e.log!r}, {e.entry_bytes} bytes"
        if e.batch is None:
            out.write(where + ", batch does not decode\n")
            continue
        out.write(f"{where}, offsets {e.batch.base_offset}..{e.batch.last_offset}\n")
        render_batch(e.batch, out, indent + "    ")
    _problems(r.problems, out, indent + "  ")


def render_checkpoint(r: li.CheckpointReport, out: TextIO, indent: str) -> None:
    out.write(f"{indent}checkpoint {r.path}: journal start {r.journal_start}\n")
    for name, entry in sorted(r.logs.items()):
        out.write(f"{indent}  log {name!r}: recovery point {entry['recovery_point']}, log start {entry['log_start_offset']}\n")
    _problems(r.problems, out, indent + "  ")


def render_log(r: li.LogReport, out: TextIO, indent: str) -> None:
    flush = r.config.get("flush", "?") if r.config is not None else "unknown (no valid config)"
    out.write(
        f"{indent}log {r.name!r} ({r.path}): flush {flush}, offsets {r.start_offset}..{r.end_offset}, "
        f"{len(r.segments)} segments\n"
    )
    _problems(r.problems, out, indent + "  ")
    for seg in r.segments:
        render_segment(seg, out, indent + "  ")


def render_store(r: li.StoreReport, out: TextIO) -> None:
    out.write(f"store {r.path}: {len(r.logs)} logs, {len(r.journals)} journal files, "
              f"clean shutdown marker {'present' if r.clean_shutdown else 'absent'}\n")
    _problems(r.problems, out, "  ")
    if r.checkpoint is not None:
        render_checkpoint(r.checkpoint, out, "  ")
    for log in r.logs:
        render_log(log, out, "  ")
    for j in r.journals:
        render_journal(j, out, "  ")


if __name__ == "__main__":
    sys.exit(main())
