"""Planted bugs the fuzzer must catch (STYLE.md: a canary proves the harness can fail).

Each canary is a runtime monkeypatch of the engine, undone on exit; no engine file changes.

- ``skip-dir-fsync``: journal rotation and segment creation skip the directory fsync, so a
  new journal file or segment can vanish in a crash (ALICE; RELIABILITY.md class 2).
- ``ack-before-fsync``: the group-commit round acknowledges without fdatasyncing the journal
  (class 4).
- ``ack-before-queued-fsync``: the same for rounds whose fsync goes to the asynchronous queue
  (an io_uring on real IO): they count as synced at submission (class 4).
- ``trust-torn-tail``: recovery does not cut a torn tail: it keeps the bytes and serves from
  them (class 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from logstore import journal as jn
from logstore import log as lg
from logstore import recovery
from logstore import segment as sg
from logstore import store as st


@contextlib.contextmanager
def _patched(obj: Any, attr: str, make: Callable[[Any], Any]) -> Iterator[None]:
    original = getattr(obj, attr)
    setattr(obj, attr, make(original))
    try:
        yield
    finally:
        setattr(obj, attr, original)


class _NoDirSync:
    """An IO proxy whose fsync_dir does nothing (everything else passes through)."""

    def __init__(self, io: Any) -> None:
        self._io = io

    def fsync_dir(self, path: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._io, name)


@contextlib.contextmanager
def skip_dir_fsync() -> Iterator[None]:
    def rotate(original: Callable[[jn.JournalWriter, list[int]], int]) -> Callable[[jn.JournalWriter, list[int]], int]:
        def patched(self: jn.JournalWriter, spares: list[int]) -> int:
            io, self.io = self.io, _NoDirSync(self.io)  # type: ignore[assignment]
            try:
                return original(self, spares)
            finally:
                self.io = io
        return patched

    def sync_claimed(original: Callable[..., None]) -> Callable[..., None]:
        def patched(self: lg.Log, dirty: list[sg.Segment], dir_dirty: bool) -> None:
            original(self, dirty, False)  # new segments' directory entries never made durable
        return patched

    with _patched(jn.JournalWriter, "rotate", rotate), _patched(lg.Log, "sync_claimed", sync_claimed):
        yield


@contextlib.contextmanager
def ack_before_fsync() -> Iterator[None]:
    def start_round(original: Callable[..., None]) -> Callable[..., None]:
        def patched(self: st.Store, *args: Any) -> None:  # every round starts here (_kick, _round)
            journal = self.journal
            if journal is not None:
                journal.fdatasync = lambda: None  # type: ignore[method-assign]
            original(self, *args)
        return patched

    with _patched(st.Store, "_start_round", start_round):
        yield


@contextlib.contextmanager
def ack_before_queued_fsync() -> Iterator[None]:
    with _patched(jn.JournalWriter, "fdatasync_on", lambda _original: _synced_at_once):
        yield


def _synced_at_once(journal: Any, queue: Any) -> asyncio.Future[None]:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


@contextlib.contextmanager
def trust_torn_tail() -> Iterator[None]:
    in_recovery = [False]

    def recover(original: Callable[..., Any]) -> Callable[..., Any]:
        def patched(*args: Any, **kwargs: Any) -> Any:
            in_recovery[0] = True
            try:
                return original(*args, **kwargs)
            finally:
                in_recovery[0] = False
        return patched

    def truncate(original: Callable[[sg.Segment, int], None]) -> Callable[[sg.Segment, int], None]:
        def patched(self: sg.Segment, position: int) -> None:
            if not in_recovery[0]:
                original(self, position)
        return patched

    with _patched(recovery, "_recover", recover), _patched(sg.Segment, "truncate", truncate):
        yield


CANARIES: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "skip-dir-fsync": skip_dir_fsync,
    "ack-before-fsync": ack_before_fsync,
    "ack-before-queued-fsync": ack_before_queued_fsync,
    "trust-torn-tail": trust_torn_tail,
}


@contextlib.contextmanager
def planted(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    with CANARIES[name]():
        yield
