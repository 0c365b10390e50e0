"""An fdatasync that runs in the kernel while the event loop goes on: a minimal io_uring.

A group-commit round's journal fsync blocks for 150-300 us on this kind of disk. Run on the
event loop's thread it stops the loop for that long; run in a worker thread, the thread must
take the GIL back from a busy loop before it can report, and that convoy cost more than the
fsync freed (measured: README, group commit). io_uring's IORING_OP_FSYNC runs in a kernel
worker and posts a completion; an eventfd registered with the ring makes the loop's selector
see it, so nothing waits for the GIL until the loop itself reads the completion.

Only what that needs, through ctypes (no extension module): ``io_uring_setup``, one submission
queue entry per fsync passed with ``io_uring_enter``, completions read from the shared ring
when the eventfd fires. :meth:`FsyncRing.open` returns None where io_uring is missing or refused
(not Linux, ``kernel.io_uring_disabled``, a seccomp filter, no memory for the ring); the store
then keeps its journal threads.

Memory ordering: the kernel reads the submission tail inside ``io_uring_enter`` (a system call,
so a full barrier after our stores), and completions are read after the eventfd's read (another
system call) or after the loop's selector reported it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import mmap
import os
import struct
import sys
import time
from typing import Any, Final

from logstore.io import File, RingFullError

__all__ = ["ENTRIES_MAX", "FsyncRing", "RingFullError"]

log = logging.getLogger(__name__)

# System call numbers: io_uring came after the numbering was unified, so they are the same on
# every Linux architecture.
_SYS_SETUP: Final = 425
_SYS_ENTER: Final = 426
_SYS_REGISTER: Final = 427
_REGISTER_EVENTFD: Final = 4
_OP_FSYNC: Final = 3
_FSYNC_DATASYNC: Final = 1
_FEAT_SINGLE_MMAP: Final = 1
_OFF_SQ_RING: Final = 0
_OFF_CQ_RING: Final = 0x8000000
_OFF_SQES: Final = 0x10000000
_PARAMS_BYTES: Final = 120  # struct io_uring_params
_SQE_BYTES: Final = 64
_CQE_BYTES: Final = 16
# The first 40 bytes of a submission entry: opcode, flags, ioprio, fd, off, addr, len,
# fsync_flags, user_data (the rest stays zero).
_SQE = struct.Struct("=BBHiQQIIQ")
_CQE = struct.Struct("=QiI")  # user_data, res, flags
_U32 = struct.Struct("=I")
_U32_MASK: Final = 0xFFFFFFFF
ENTRIES_MAX: Final = 256


class FsyncRing:
    """fdatasync requests whose completions resolve futures on the event loop that submitted
    them. At most ``entries`` may be pending at once."""

    def __init__(self, libc: Any, ring_fd: int, params: bytes, event_fd: int) -> None:
        self._libc = libc
        self._ring_fd = ring_fd
        self._event_fd = event_fd
        sq_entries, cq_entries = struct.unpack_from("=II", params, 0)
        features = _U32.unpack_from(params, 20)[0]
        # io_sqring_offsets: head, tail, ring_mask, ring_entries, flags, dropped, array
        sq_off = struct.unpack_from("=7I", params, 40)
        # io_cqring_offsets: head, tail, ring_mask, ring_entries, overflow, cqes
        cq_off = struct.unpack_from("=6I", params, 80)
        sq_bytes = sq_off[6] + sq_entries * 4
        cq_bytes = cq_off[5] + cq_entries * _CQE_BYTES
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        self._maps: list[mmap.mmap] = []
        if features & _FEAT_SINGLE_MMAP:
            self._sq = self._cq = self._map(max(sq_bytes, cq_bytes), flags, prot, _OFF_SQ_RING)
        else:
            self._sq = self._map(sq_bytes, flags, prot, _OFF_SQ_RING)
            self._cq = self._map(cq_bytes, flags, prot, _OFF_CQ_RING)
        self._sqes = self._map(sq_entries * _SQE_BYTES, flags, prot, _OFF_SQES)
        self._sq_tail = sq_off[1]
        self._sq_mask = _U32.unpack_from(self._sq, sq_off[2])[0]
        self._sq_array = sq_off[6]
        self._cq_head = cq_off[0]
        self._cq_tail = cq_off[1]
        self._cq_mask = _U32.unpack_from(self._cq, cq_off[2])[0]
        self._cqes = cq_off[5]
        self.entries = sq_entries
        self._pending: dict[int, tuple[asyncio.Future[None], float]] = {}
        self._next_id = 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.submitted = 0
        self.last_fsync_s = 0.0  # submission to completion seen, of the latest one

    def _map(self, size: int, flags: int, prot: int, offset: int) -> mmap.mmap:
        m = mmap.mmap(self._ring_fd, size, flags, prot, offset=offset)
        self._maps.append(m)
        return m

    @classmethod
    def open(cls, entries: int = 8) -> FsyncRing | None:
        """A ring of ``entries`` (1..ENTRIES_MAX, rounded up to a power of two by the kernel),
        or None where io_uring cannot be used here."""
        if not 1 <= entries <= ENTRIES_MAX:
            raise ValueError(f"entries must be 1..{ENTRIES_MAX}, got {entries}")
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            syscall = libc.syscall
        except (OSError, AttributeError):
            return None
        syscall.restype = ctypes.c_long
        params = ctypes.create_string_buffer(_PARAMS_BYTES)
        ring_fd = syscall(_SYS_SETUP, ctypes.c_uint(entries), params)
        if ring_fd < 0:
            err = ctypes.get_errno()
            log.info("io_uring unavailable (%s): journal fsyncs use threads", os.strerror(err))
            return None
        event_fd = -1
        try:
            event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            efd = ctypes.c_int(event_fd)
            if syscall(_SYS_REGISTER, ring_fd, _REGISTER_EVENTFD, ctypes.byref(efd), 1) < 0:
                raise OSError(ctypes.get_errno(), "io_uring_register(EVENTFD) failed")
            return cls(libc, ring_fd, params.raw, event_fd)
        except (OSError, ValueError) as exc:
            log.info("io_uring unavailable (%s): journal fsyncs use threads", exc)
            if event_fd >= 0:
                os.close(event_fd)
            os.close(ring_fd)
            return None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def fdatasync(self, file: File) -> asyncio.Future[None]:
        """Start an fdatasync of ``file``; the future completes on this loop when it has
        returned (OSError with its errno when it failed). Raises OSError when it cannot be
        submitted (nothing is then pending) and RingFullError past ``entries`` pending."""
        fd = file.fileno()
        if self._closed:
            raise OSError("the fsync ring is closed")
        if len(self._pending) >= self.entries:
            raise RingFullError(f"{len(self._pending)} fsyncs already pending on a ring of {self.entries}")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            loop.add_reader(self._event_fd, self._on_ready)
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("an FsyncRing serves the event loop that first used it")
        user_data = self._next_id
        self._next_id = user_data % _U32_MASK + 1
        tail = _U32.unpack_from(self._sq, self._sq_tail)[0]
        index = tail & self._sq_mask
        _SQE.pack_into(self._sqes, index * _SQE_BYTES, _OP_FSYNC, 0, 0, fd, 0, 0, 0, _FSYNC_DATASYNC, user_data)
        _U32.pack_into(self._sq, self._sq_array + 4 * index, index)
        _U32.pack_into(self._sq, self._sq_tail, (tail + 1) & _U32_MASK)
        while True:
            done = self._libc.syscall(_SYS_ENTER, self._ring_fd, 1, 0, 0, None, 0)
            if done == 1:
                break
            err = ctypes.get_errno() if done < 0 else 0
            if err != errno.EINTR:  # anything else: the entry was not taken, withdraw it
                _U32.pack_into(self._sq, self._sq_tail, tail)
                raise OSError(err, f"io_uring_enter submitted {done}: {os.strerror(err)}")
        future: asyncio.Future[None] = loop.create_future()
        self._pending[user_data] = (future, time.perf_counter())
        self.submitted += 1
        return future

    def _on_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._event_fd)
        self._reap()

    def _reap(self) -> None:
        cq = self._cq
        head = _U32.unpack_from(cq, self._cq_head)[0]
        tail = _U32.unpack_from(cq, self._cq_tail)[0]
        now = time.perf_counter()
        while head != tail:
            user_data, res, _flags = _CQE.unpack_from(cq, self._cqes + (head & self._cq_mask) * _CQE_BYTES)
            head = (head + 1) & _U32_MASK
            found = self._pending.pop(user_data, None)
            if found is None:
                continue
            future, started = found
            self.last_fsync_s = now - started
            if future.done():
                continue
            if res < 0:
                future.set_exception(OSError(-res, f"fdatasync failed: {os.strerror(-res)}"))
            else:
                future.set_result(None)
        _U32.pack_into(cq, self._cq_head, head)

    def close(self) -> None:
        """Release the ring. Fsyncs still pending are failed (callers settle them first)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._event_fd)
        error = OSError("the fsync ring was closed before the fsync completed")
        for future, _started in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for m in self._maps:
            m.close()
        os.close(self._event_fd)
        os.close(self._ring_fd)
