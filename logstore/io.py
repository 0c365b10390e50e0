"""The IO seam: the only place the engine touches files, directories, fsync and sendfile.

Two implementations share one interface: :class:`RealIO` (the operating system) and
:class:`logstore.simio.SimIO` (in memory, with the crash model of RELIABILITY.md). Every module
above this one receives an ``IO`` and never calls ``open``/``os.fsync`` itself, so the crash
fuzzer can run the real engine code over simulated disks.

The interface is synchronous. Writes go to the page cache and are cheap enough to run on the
event loop; ``IO.fsync_blocks`` tells the caller whether fsync may block for long (then the
flusher runs it in a worker thread) or completes at once (the simulation: deterministic).
``IO.open_fsync_queue`` offers fsyncs that complete later on the event loop (an io_uring on
Linux, ``uring.py``; a queue the loop drains in the simulation), or None.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

Buffer = bytes | bytearray | memoryview
IOV_MAX = 1024  # Linux's limit on buffers per pwritev


class File(ABC):
    """An open read-write file. Offsets are explicit: there is no file position."""

    path: str

    @abstractmethod
    def pwrite(self, data: Buffer, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (into the page cache: not durable yet)."""

    @abstractmethod
    def pwritev(self, buffers: Sequence[Buffer], offset: int) -> None:
        """Write the buffers back to back at ``offset``, all of them, with one call."""

    @abstractmethod
    def pread(self, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""

    @abstractmethod
    def size(self) -> int:
        """The file's current size in bytes."""

    @abstractmethod
    def truncate(self, size: int) -> None:
        """Cut (or extend with zeros) the file to ``size`` bytes."""

    @abstractmethod
    def fdatasync(self) -> None:
        """Make every earlier write and truncate of this file durable. Raises OSError on failure."""

    @abstractmethod
    def close(self) -> None:
        """Release the handle. Does not make anything durable."""

    @abstractmethod
    def fileno(self) -> int:
        """The OS descriptor, for ``sendfile``. Simulated files raise ``OSError``."""


class Lock(Protocol):
    def release(self) -> None: ...


class RingFullError(RuntimeError):
    """More fsyncs pending on an FsyncQueue than it has entries (the caller bounds what it has
    in flight)."""


class FsyncQueue(Protocol):
    """fdatasyncs that complete later, on the event loop that submitted them."""

    entries: int  # at most this many pending
    last_fsync_s: float  # submission to completion seen, of the latest one

    @property
    def pending(self) -> int: ...

    def fdatasync(self, file: File) -> asyncio.Future[None]:
        """Start an fdatasync of ``file``; the future fails with OSError when it does. Raises
        OSError when it cannot be submitted (nothing is then pending), RingFullError past
        ``entries`` pending."""

    def close(self) -> None:
        """Release it; what is still pending fails."""


class IO(ABC):
    """Files, directories and durability. Paths are plain strings."""

    #: True when fsync can block for long and should run in a worker thread.
    fsync_blocks: bool = True

    @abstractmethod
    def open(self, path: str, *, create: bool = False, readonly: bool = False) -> File:
        """Open a file read-write (or read-only); with ``create`` make it when missing (the
        directory entry is not durable until :meth:`fsync_dir` of its directory)."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def is_dir(self, path: str) -> bool: ...

    @abstractmethod
    def listdir(self, path: str) -> list[str]: ...

    @abstractmethod
    def mkdir(self, path: str) -> None:
        """Create one directory (its entry is durable after fsync_dir of the parent)."""

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (same directory)."""

    @abstractmethod
    def unlink(self, path: str) -> None: ...

    @abstractmethod
    def rmdir(self, path: str) -> None: ...

    @abstractmethod
    def fsync_dir(self, path: str) -> None:
        """Make the directory's entries (create, rename, unlink) durable."""

    @abstractmethod
    def lock(self, path: str) -> Lock:
        """Take an exclusive lock named by ``path`` or raise ``BlockingIOError``."""

    def open_fsync_queue(self, entries: int) -> FsyncQueue | None:
        """Asynchronous fdatasyncs for up to ``entries`` at once, or None when there are none."""
        return None

    def sendfile(self, out_fd: int, file: File, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset`` to a socket; returns bytes sent."""
        return os.sendfile(out_fd, file.fileno(), offset, count)

    def read_all(self, path: str) -> bytes:
        f = self.open(path, readonly=True)
        try:
            return f.pread(f.size(), 0)
        finally:
            f.close()

    def makedirs(self, path: str) -> None:
        """Create ``path`` and missing parents, fsyncing each parent so the new entries last."""
        parent = os.path.dirname(path.rstrip("/"))
        if parent and not self.exists(parent):
            self.makedirs(parent)
        if not self.exists(path):
            self.mkdir(path)
            self.fsync_dir(parent or ".")


class Clock(ABC):
    """Wall-clock milliseconds (record timestamps, retention by age)."""

    @abstractmethod
    def now_ms(self) -> int: ...


class SystemClock(Clock):
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class _RealFile(File):
    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def pwrite(self, data: Buffer, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view = view[written:]
            offset += written

    def pwritev(self, buffers: Sequence[Buffer], offset: int) -> None:
        for i in range(0, len(buffers), IOV_MAX):
            chunk = buffers[i : i + IOV_MAX]
            written = os.pwritev(self._fd, chunk, offset)
            total = sum(map(len, chunk))
            if written < total:  # short write: finish the rest the slow way
                self.pwrite(b"".join(chunk)[written:], offset + written)
            offset += total

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def fdatasync(self) -> None:
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def fileno(self) -> int:
        return self._fd


class _FlockLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


class RealIO(IO):
    """The operating system's file API."""

    fsync_blocks = True

    def open_fsync_queue(self, entries: int) -> FsyncQueue | None:
        from logstore.uring import FsyncRing  # here: uring.py imports this module

        return FsyncRing.open(entries)

    def open(self, path: str, *, create: bool = False, readonly: bool = False) -> File:
        flags = (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        return _RealFile(path, os.open(path, flags, 0o644))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> Lock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise BlockingIOError(exc.errno, f"{path} is locked by another process") from exc
            raise
        return _FlockLock(fd)
