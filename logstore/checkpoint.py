"""The store checkpoint file, ``<store>/checkpoint``, and the atomic write every small metadata
file of the store uses.

Layout: one ASCII line ``logstore-checkpoint <version> <crc32c of the JSON as 8 hex digits>``,
then UTF-8 JSON::

    {"journal_start": 7, "leader_epoch": 3, "may_lead": true,
     "logs": {"orders-0": {"recovery_point": 1200, "log_start_offset": 0,
                           "high_watermark": 1100, "epochs": [[0, 0], [3, 1050]]}, ...}}

``recovery_point`` is an offset below which the log's data was fsynced before this file was
written: recovery scans from there, and damage below it is corruption, never a torn tail.
``journal_start`` names the first journal file recovery must replay (``journal.py``).

Replication state (``logstore/replication``) rides in the same file, so it is as atomic as the
recovery point it must agree with: ``leader_epoch`` is the store's current leader epoch (a
promotion persists it before its first append), ``may_lead`` is false while the replica holds a
log that recovery cut and it has not caught up with a leader since; per log ``high_watermark``
(the offset every in-sync replica had) and ``epochs``, the leader-epoch cache (``epochs.py``).
The four are optional: a file written before replication existed reads as epoch 0, may lead,
high watermark 0 and an empty epoch cache (rebuilt from the batches).

Written by :func:`write_atomic`: write ``name.tmp``, fsync it, rename over ``name``, fsync the
directory. A crash leaves the old file or the new one, never a mix; the CRC catches a disk
that lies anyway.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import crc32c

from logstore.errors import CorruptLogError
from logstore.io import IO

NAME = "checkpoint"
MAGIC = "logstore-checkpoint"
VERSION = 1


@dataclass
class LogCheckpoint:
    recovery_point: int = 0
    log_start_offset: int = 0
    high_watermark: int = 0
    epochs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Checkpoint:
    journal_start: int = 0
    logs: dict[str, LogCheckpoint] = field(default_factory=dict)
    leader_epoch: int = 0
    may_lead: bool = True


def write_atomic(io: IO, path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    f = io.open(tmp, create=True)
    try:
        f.truncate(0)
        f.pwrite(data, 0)
        f.fdatasync()
    finally:
        f.close()
    io.rename(tmp, path)
    io.fsync_dir(posixpath.dirname(path) or ".")


def encode(cp: Checkpoint) -> bytes:
    body = json.dumps(
        {
            "journal_start": cp.journal_start,
            "leader_epoch": cp.leader_epoch,
            "may_lead": cp.may_lead,
            "logs": {
                name: {
                    "recovery_point": lc.recovery_point, "log_start_offset": lc.log_start_offset,
                    "high_watermark": lc.high_watermark, "epochs": [list(e) for e in lc.epochs],
                }
                for name, lc in sorted(cp.logs.items())
            },
        },
        separators=(",", ":"),
    ).encode()
    return f"{MAGIC} {VERSION} {crc32c.crc32c(body):08x}\n".encode() + body


def decode(raw: bytes, path: str) -> Checkpoint:
    head, _, body = raw.partition(b"\n")
    parts = head.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[0] != MAGIC or parts[1] != str(VERSION):
        raise CorruptLogError("checkpoint header is not recognised", path, 0)
    if f"{crc32c.crc32c(body):08x}" != parts[2]:
        raise CorruptLogError("checkpoint CRC32C mismatch", path, len(head) + 1)
    doc = json.loads(body)
    return Checkpoint(
        journal_start=int(doc["journal_start"]),
        logs={
            name: LogCheckpoint(
                int(v["recovery_point"]), int(v["log_start_offset"]), int(v.get("high_watermark", 0)),
                [(int(e), int(o)) for e, o in v.get("epochs", [])],
            )
            for name, v in doc["logs"].items()
        },
        leader_epoch=int(doc.get("leader_epoch", 0)),
        may_lead=bool(doc.get("may_lead", True)),
    )


def read(io: IO, root: str) -> Checkpoint | None:
    path = posixpath.join(root, NAME)
    if not io.exists(path):
        return None
    return decode(io.read_all(path), path)


def write(io: IO, root: str, cp: Checkpoint) -> None:
    write_atomic(io, posixpath.join(root, NAME), encode(cp))
