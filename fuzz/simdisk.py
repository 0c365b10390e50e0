"""A SimIO that can snapshot itself mid-operation, fate choosers, and disk-image hashing."""

from __future__ import annotations

import copy
import hashlib
import posixpath
import random
from collections.abc import Callable

from logstore.simio import Fate, FateChooser, PendingOp, SimIO

#: IO calls that change the disk (a crash point before a read is the same as the one after it).
MUTATING_CALLS = frozenset({"pwrite", "truncate", "fsync", "open", "mkdir", "rename", "unlink", "rmdir"})

TickHook = Callable[[str, str], None]


class SnapIO(SimIO):
    """SimIO plus a hook called before every IO call takes effect (a crash point)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.on_tick: TickHook | None = None

    def tick(self, kind: str, path: str) -> None:
        hook = self.on_tick
        if hook is not None and kind in MUTATING_CALLS:
            hook(kind, path)
        super().tick(kind, path)

    def clone(self) -> SnapIO:
        hook, self.on_tick = self.on_tick, None
        try:
            twin = copy.deepcopy(self)
        finally:
            self.on_tick = hook
        return twin


def random_chooser(rng: random.Random, weights: tuple[int, int, int, int] = (4, 3, 2, 1)) -> FateChooser:
    """Each pending op independently: applied / dropped / torn / garbage."""
    fates = [Fate.APPLIED, Fate.DROPPED, Fate.TORN, Fate.GARBAGE]
    return lambda _op: rng.choices(fates, weights)[0]


def table_chooser(table: dict[PendingOp, Fate], default: Fate = Fate.APPLIED) -> FateChooser:
    return lambda op: table.get(op, default)


def disk_files(io: SimIO, root: str = "/") -> dict[str, bytes]:
    """Every file under ``root`` with its contents (directories as empty markers)."""
    out: dict[str, bytes] = {}

    def visit(path: str) -> None:
        for name in io.listdir(path):
            child = posixpath.join(path, name)
            if io.is_dir(child):
                out[child + "/"] = b""
                visit(child)
            else:
                out[child] = io.read_all(child)

    visit(root)
    return out


def image_hash(files: dict[str, bytes]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(files):
        h.update(path.encode() + b"\0" + len(files[path]).to_bytes(8, "big") + files[path])
    return h.hexdigest()
