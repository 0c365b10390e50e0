"""An in-memory IO that models crashes, for tests and the crash fuzzer.

The crash model (../shared/RELIABILITY.md): every write and truncate of a file since its last
fsync is *pending*; so is every create, rename and unlink in a directory since that directory's
last fsync. :meth:`SimIO.crash` resolves each pending operation independently to one
:class:`Fate`: applied whole, dropped, torn (only the sectors before a boundary inside the write
reach the disk) or garbage (applied with random bytes in some of its sectors). Directory
operations are applied or dropped; one that refers to an entry a dropped operation would have
made is skipped. What survives becomes the new disk; every open handle dies.

A failed fsync resolves that file's pending writes at random into the durable image and
forgets them, so a later fsync "succeeds" without the lost data: the page cache of Linux after
an fsync error (fsyncgate). Reads keep returning the written data until a crash.

Faults: :meth:`SimIO.fail_after` makes the Nth IO call (counting from now) raise ``EIO``, once
or for every later call; :meth:`SimIO.fail_fsync` makes fsyncs fail.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import errno
import posixpath
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from logstore.io import IO, Buffer, Clock, File, Lock, RingFullError

SECTOR_BYTES = 512


class Fate(enum.Enum):
    APPLIED = "applied"
    DROPPED = "dropped"
    TORN = "torn"
    GARBAGE = "garbage"


@dataclass
class _Write:
    offset: int
    data: bytes


@dataclass
class _Truncate:
    size: int


@dataclass
class _Inode:
    current: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)
    pending: list[_Write | _Truncate] = field(default_factory=list)


@dataclass
class _DirOp:
    kind: str  # "link" (create or mkdir) | "rename" | "unlink"
    name: str
    node: _Inode | _Dir | None = None
    src: str = ""


@dataclass
class _Dir:
    current: dict[str, _Inode | _Dir] = field(default_factory=dict)
    durable: dict[str, _Inode | _Dir] = field(default_factory=dict)
    pending: list[_DirOp] = field(default_factory=list)


@dataclass(frozen=True)
class PendingOp:
    """One operation a crash may lose, as shown to a fate chooser."""

    path: str
    index: int
    kind: str  # "write" | "truncate" | "link" | "rename" | "unlink"
    length: int = 0


FateChooser = Callable[[PendingOp], Fate]


class SimClock(Clock):
    """A clock that moves only when told."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


class _SimFile(File):
    def __init__(self, sim: SimIO, path: str, inode: _Inode) -> None:
        self._sim = sim
        self.path = path
        self._inode = inode
        self._generation = sim.generation
        self._closed = False

    def _check(self) -> _Inode:
        if self._closed or self._generation != self._sim.generation:
            raise OSError(errno.EBADF, f"stale or closed handle for {self.path}")
        return self._inode

    def pwrite(self, data: Buffer, offset: int) -> None:
        self._sim.tick("pwrite", self.path)
        inode = self._check()
        raw = bytes(data)
        end = offset + len(raw)
        if len(inode.current) < end:
            inode.current.extend(bytes(end - len(inode.current)))
        inode.current[offset:end] = raw
        inode.pending.append(_Write(offset, raw))

    def pwritev(self, buffers: Sequence[Buffer], offset: int) -> None:
        self.pwrite(b"".join(bytes(b) for b in buffers), offset)

    def pread(self, size: int, offset: int) -> bytes:
        self._sim.tick("pread", self.path)
        return bytes(self._check().current[offset : offset + size])

    def size(self) -> int:
        return len(self._check().current)

    def truncate(self, size: int) -> None:
        self._sim.tick("truncate", self.path)
        inode = self._check()
        if size < len(inode.current):
            del inode.current[size:]
        else:
            inode.current.extend(bytes(size - len(inode.current)))
        inode.pending.append(_Truncate(size))

    def fdatasync(self) -> None:
        inode = self._check()
        try:
            self._sim.tick("fsync", self.path)
        except OSError:
            self._sim.lose_pending(inode)
            raise
        _apply_all(inode)

    def close(self) -> None:
        self._closed = True

    def fileno(self) -> int:
        raise OSError(errno.EOPNOTSUPP, "simulated files have no descriptor")


def _apply_all(inode: _Inode) -> None:
    inode.durable = bytearray(inode.current)
    inode.pending.clear()


def _apply_write(image: bytearray, offset: int, data: bytes) -> None:
    end = offset + len(data)
    if len(image) < end:
        image.extend(bytes(end - len(image)))
    image[offset:end] = data


def _torn(op: _Write, rng: random.Random) -> bytes:
    """The part of a write before a sector boundary inside it (maybe nothing)."""
    first_boundary = (op.offset // SECTOR_BYTES + 1) * SECTOR_BYTES
    boundaries = list(range(first_boundary, op.offset + len(op.data), SECTOR_BYTES))
    if not boundaries:
        return b""
    cut = rng.choice(boundaries)
    return op.data[: cut - op.offset]


def _garbage(op: _Write, rng: random.Random) -> bytes:
    data = bytearray(op.data)
    start = op.offset
    sectors = list(range(start // SECTOR_BYTES, (start + len(data) - 1) // SECTOR_BYTES + 1))
    for sector in rng.sample(sectors, max(1, len(sectors) // 3)):
        lo = max(sector * SECTOR_BYTES, start) - start
        hi = min((sector + 1) * SECTOR_BYTES, start + len(data)) - start
        data[lo:hi] = rng.randbytes(hi - lo)
    return bytes(data)


class SimFsyncQueue:
    """The simulation's asynchronous fdatasync (``IO.open_fsync_queue``): each one runs when the
    event loop next gets to it, so the store's code for a kernel-side fsync (io_uring on real
    IO) runs here too, and a crash before that turn finds the data unsynced."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.last_fsync_s = 0.0
        self._pending: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def fdatasync(self, file: File) -> asyncio.Future[None]:
        if self._closed:
            raise OSError("the fsync queue is closed")
        if len(self._pending) >= self.entries:
            raise RingFullError(f"{len(self._pending)} fsyncs already pending on a queue of {self.entries}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.add(future)
        loop.call_soon(self._complete, file, future)
        return future

    def _complete(self, file: File, future: asyncio.Future[None]) -> None:
        if future not in self._pending:
            return  # closed meanwhile
        self._pending.discard(future)
        try:
            file.fdatasync()
        except OSError as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    def close(self) -> None:
        self._closed = True
        for future in self._pending:
            if not future.done():
                future.set_exception(OSError("the fsync queue was closed before the fsync ran"))
        self._pending.clear()


class SimIO(IO):
    """In-memory files and directories with the crash model above."""

    fsync_blocks = False

    def open_fsync_queue(self, entries: int) -> SimFsyncQueue:
        return SimFsyncQueue(entries)

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.root = _Dir()
        self.generation = 0
        self.io_calls = 0
        self.fsync_calls = 0
        self._fail_at: int | None = None
        self._fail_persistent = False
        self._fail_fsync = False
        self._locks: set[str] = set()

    # -- faults -------------------------------------------------------------------------------

    def fail_after(self, n: int, *, persistent: bool = False) -> None:
        """Make the ``n``-th IO call from now raise EIO (and every later one if persistent)."""
        self._fail_at = self.io_calls + n
        self._fail_persistent = persistent

    def fail_fsync(self, on: bool = True) -> None:
        self._fail_fsync = on

    def clear_faults(self) -> None:
        self._fail_at = None
        self._fail_fsync = False

    def tick(self, kind: str, path: str) -> None:
        self.io_calls += 1
        if kind == "fsync":
            self.fsync_calls += 1
            if self._fail_fsync:
                raise OSError(errno.EIO, f"simulated fsync failure on {path}")
        if self._fail_at is not None and (
            self.io_calls == self._fail_at or (self._fail_persistent and self.io_calls > self._fail_at)
        ):
            raise OSError(errno.EIO, f"simulated IO error in {kind} of {path}")

    def lose_pending(self, inode: _Inode) -> None:
        """What a failed fsync does: pending data reaches the disk or not, and is forgotten."""
        for op in inode.pending:
            self._resolve_file_op(inode.durable, op, self._random_fate())
        inode.pending.clear()

    # -- crash ----------------------------------------------------------------------------------

    def pending_ops(self) -> list[PendingOp]:
        """Every operation a crash now could lose, in a stable order."""
        ops: list[PendingOp] = []
        for path, node in self._walk():
            if isinstance(node, _Inode):
                for i, fop in enumerate(node.pending):
                    if isinstance(fop, _Write):
                        ops.append(PendingOp(path, i, "write", len(fop.data)))
                    else:
                        ops.append(PendingOp(path, i, "truncate"))
            else:
                for i, dop in enumerate(node.pending):
                    ops.append(PendingOp(path, i, dop.kind))
        return ops

    def _random_fate(self) -> Fate:
        return self.rng.choice(list(Fate))

    def crash(self, chooser: FateChooser | None = None) -> None:
        """Lose power: resolve every pending operation and make the result the whole disk."""
        choose = chooser or (lambda _op: self._random_fate())
        nodes = list(self._walk())
        for path, node in nodes:
            if isinstance(node, _Inode):
                for i, fop in enumerate(node.pending):
                    kind = "write" if isinstance(fop, _Write) else "truncate"
                    length = len(fop.data) if isinstance(fop, _Write) else 0
                    fate = choose(PendingOp(path, i, kind, length))
                    self._resolve_file_op(node.durable, fop, fate)
                node.pending.clear()
        for path, node in nodes:
            if isinstance(node, _Dir):
                for i, dop in enumerate(node.pending):
                    if choose(PendingOp(path, i, dop.kind)) is not Fate.DROPPED:
                        _apply_dir_op(node.durable, dop)
                node.pending.clear()
        self._reset_to_durable(self.root)
        self.generation += 1
        self._locks.clear()
        self.clear_faults()

    def _resolve_file_op(self, image: bytearray, op: _Write | _Truncate, fate: Fate) -> None:
        if fate is Fate.DROPPED:
            return
        if isinstance(op, _Truncate):
            if op.size < len(image):
                del image[op.size :]
            else:
                image.extend(bytes(op.size - len(image)))
            return
        if fate is Fate.APPLIED:
            _apply_write(image, op.offset, op.data)
        elif fate is Fate.TORN:
            _apply_write(image, op.offset, _torn(op, self.rng))
        else:
            _apply_write(image, op.offset, _garbage(op, self.rng))

    def _reset_to_durable(self, d: _Dir) -> None:
        d.current = dict(d.durable)
        for node in d.current.values():
            if isinstance(node, _Dir):
                self._reset_to_durable(node)
            else:
                node.current = bytearray(node.durable)
                node.pending.clear()

    def _walk(self) -> list[tuple[str, _Inode | _Dir]]:
        """Every node reachable now or durably, depth first, each once."""
        out: list[tuple[str, _Inode | _Dir]] = []
        seen: set[int] = set()

        def visit(path: str, node: _Inode | _Dir) -> None:
            if id(node) in seen:
                return
            seen.add(id(node))
            out.append((path, node))
            if isinstance(node, _Dir):
                names = sorted(set(node.current) | set(node.durable))
                for name in names:
                    child = node.current.get(name) or node.durable[name]
                    visit(posixpath.join(path, name), child)
                for op in node.pending:
                    if op.node is not None:
                        visit(posixpath.join(path, op.name), op.node)

        visit("/", self.root)
        return out

    def clone(self) -> SimIO:
        """An independent copy of the whole disk state (for exhaustive crash enumeration)."""
        twin = copy.deepcopy(self)
        return twin

    # -- namespace ------------------------------------------------------------------------------

    def _lookup_dir(self, path: str) -> _Dir:
        node: _Inode | _Dir = self.root
        for part in _parts(path):
            if not isinstance(node, _Dir) or part not in node.current:
                raise FileNotFoundError(errno.ENOENT, "no such directory", path)
            node = node.current[part]
        if not isinstance(node, _Dir):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return node

    def _split(self, path: str) -> tuple[_Dir, str]:
        parent, name = posixpath.split(posixpath.normpath(path))
        return self._lookup_dir(parent or "/"), name

    def open(self, path: str, *, create: bool = False, readonly: bool = False) -> File:
        self.tick("open", path)
        parent, name = self._split(path)
        node = parent.current.get(name)
        if node is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            node = _Inode()
            parent.current[name] = node
            parent.pending.append(_DirOp("link", name, node))
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return _SimFile(self, posixpath.normpath(path), node)

    def exists(self, path: str) -> bool:
        try:
            parent, name = self._split(path)
        except OSError:
            return False
        return name == "" or name in parent.current

    def is_dir(self, path: str) -> bool:
        try:
            self._lookup_dir(path)
        except OSError:
            return False
        return True

    def listdir(self, path: str) -> list[str]:
        self.tick("listdir", path)
        return sorted(self._lookup_dir(path).current)

    def mkdir(self, path: str) -> None:
        self.tick("mkdir", path)
        parent, name = self._split(path)
        if name in parent.current:
            raise FileExistsError(errno.EEXIST, "exists", path)
        node = _Dir()
        parent.current[name] = node
        parent.pending.append(_DirOp("link", name, node))

    def rename(self, src: str, dst: str) -> None:
        self.tick("rename", src)
        sparent, sname = self._split(src)
        dparent, dname = self._split(dst)
        if sparent is not dparent:
            raise OSError(errno.EXDEV, "simulated rename only within a directory", src)
        node = sparent.current.pop(sname, None)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        sparent.current[dname] = node
        sparent.pending.append(_DirOp("rename", dname, node, src=sname))

    def unlink(self, path: str) -> None:
        self.tick("unlink", path)
        parent, name = self._split(path)
        node = parent.current.get(name)
        if node is None or isinstance(node, _Dir):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        del parent.current[name]
        parent.pending.append(_DirOp("unlink", name, node))

    def rmdir(self, path: str) -> None:
        self.tick("rmdir", path)
        parent, name = self._split(path)
        node = parent.current.get(name)
        if not isinstance(node, _Dir):
            raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        if node.current:
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        del parent.current[name]
        parent.pending.append(_DirOp("unlink", name, node))

    def fsync_dir(self, path: str) -> None:
        self.tick("fsync", path)
        d = self._lookup_dir(path)
        for op in d.pending:
            _apply_dir_op(d.durable, op)
        d.pending.clear()

    def lock(self, path: str) -> Lock:
        key = posixpath.normpath(path)
        if key in self._locks:
            raise BlockingIOError(errno.EAGAIN, f"{path} is locked by another process")
        self._locks.add(key)
        locks = self._locks

        class _SimLock:
            def release(self) -> None:
                locks.discard(key)

        return _SimLock()

    def sendfile(self, out_fd: int, file: File, offset: int, count: int) -> int:
        raise OSError(errno.EOPNOTSUPP, "simulated files cannot be sent with sendfile")

    # -- helpers for tests and tools --------------------------------------------------------------

    def corrupt(self, path: str, position: int, data: bytes) -> None:
        """Overwrite bytes of a file durably, as a bad disk would (bypasses the fault counter)."""
        parent, name = self._split(path)
        node = parent.current[name]
        assert isinstance(node, _Inode)
        _apply_write(node.current, position, data)
        _apply_write(node.durable, position, data)


def _apply_dir_op(entries: dict[str, _Inode | _Dir], op: _DirOp) -> None:
    if op.kind == "link":
        assert op.node is not None
        entries[op.name] = op.node
    elif op.kind == "rename":
        if entries.get(op.src) is op.node:
            del entries[op.src]
            assert op.node is not None
            entries[op.name] = op.node
    elif entries.get(op.name) is op.node:
        del entries[op.name]


def _parts(path: str) -> list[str]:
    return [p for p in posixpath.normpath(path).split("/") if p and p != "."]
