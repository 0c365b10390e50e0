"""Messages of a pull body decoded on first use.

A consumer hands most messages to a listener that reads a field or two, and some (a count, an
offset) to none. Decoding a stored record in full costs a dozen unpacks, two host strings, a hex
message id and the properties string split into a dict; ``decode_stored_lazy`` unpacks only the
fixed head of each record (one ``struct`` call, to frame and check it) and leaves the rest to the first read of any other
field, which decodes the record with ``decode_one_stored`` (so both give the same fields) and
applies the caller's ``finish`` (what the consumer does to every pulled message). Only the queue
offset (what a consumer's bookkeeping reads) is kept from the head at once: a message starts as
a three-entry ``__dict__``.

After that the fields are ordinary attributes. A field set before the first decode keeps its
value. A record whose head is bad raises MessageFormatError at once; one whose later fields do not
parse raises it on first access. Compressed records are decoded at once (their body and sys flag
change when inflated).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from .message import (
    MAGIC_V1,
    MAGIC_V2,
    STORED_HEAD,
    STORED_HEAD_BYTES,
    SYSFLAG_COMPRESSED,
    Message,
    MessageFormatError,
    body_length_position,
    decode_one_stored,
)

Finish = Callable[[Message], None]
BODY_LEN = "_body_len"  # a lazy message's body length, known before its body is decoded


def body_len(msg: Message) -> int:
    """``len(msg.body)``, without decoding a lazy message."""
    n: int | None = msg.__dict__.get(BODY_LEN)
    return len(msg.body) if n is None else n

# Fields set at once; the others wait for first use.
EAGER_FIELDS = ("queue_offset",)
LAZY_FIELDS = tuple(f.name for f in fields(Message) if f.name not in EAGER_FIELDS)
_FIELD_NAMES = tuple(f.name for f in fields(Message))


class LazyMessage(Message):
    """A Message whose fields past the record head are decoded on first access."""

    def _decode(self) -> None:
        d = self.__dict__
        src: tuple[bytes, Finish | None] | None = d.pop("_src", None)
        if src is None:
            return
        raw, finish = src
        full = decode_one_stored(raw, d.pop("_pos"))
        if finish is not None:
            finish(full)
        decoded = full.__dict__
        for name in LAZY_FIELDS:
            if name not in d:  # set by someone before this decode: theirs wins
                d[name] = decoded[name]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELD_NAMES)

    __hash__ = None  # type: ignore[assignment]  # as Message: mutable, compared by value


class _Decoded:
    """A lazy field: the first read decodes the record into the instance's ``__dict__``, which
    answers every later read (this is a non-data descriptor)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: LazyMessage | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj._decode()
        return obj.__dict__[self.name]


for _name in LAZY_FIELDS:
    setattr(LazyMessage, _name, _Decoded(_name))


def decode_stored_lazy(buf: bytes, finish: Finish | None = None) -> list[Message]:
    """Every record in ``buf`` (a pull body), each decoded when first used, then passed to
    ``finish``. Raises MessageFormatError when a record's head is damaged."""
    out: list[Message] = []
    n = len(buf)
    pos = 0
    src = (buf, finish)
    unpack = STORED_HEAD.unpack_from
    new = object.__new__
    while pos < n:
        if n - pos < STORED_HEAD_BYTES:
            raise MessageFormatError(f"truncated record at byte {pos}")
        size, magic, _crc, _qid, _flag, queue_offset, _phys, sys_flag, _born = unpack(buf, pos)
        if size < STORED_HEAD_BYTES or pos + size > n:
            raise MessageFormatError(f"record size {size} at byte {pos} is out of range")
        if magic != MAGIC_V1 and magic != MAGIC_V2:
            raise MessageFormatError(f"bad magic {magic:#x} at byte {pos}")
        if sys_flag & SYSFLAG_COMPRESSED:
            msg = decode_one_stored(buf, pos)
            if finish is not None:
                finish(msg)
        else:
            # The body's length (for flow control's cached bytes) is read without decoding.
            at = body_length_position(pos, sys_flag)
            msg = new(LazyMessage)
            msg.__dict__ = {"queue_offset": queue_offset, "_src": src, "_pos": pos,
                            BODY_LEN: int.from_bytes(buf[at : at + 4], "big")}
        out.append(msg)
        pos += size
    return out
