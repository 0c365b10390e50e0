"""The journal's worker threads: writes run one at a time in the order they were submitted,
off the event loop; each write's fdatasync then runs on one of a few sync threads, so the
fsyncs of consecutive rounds overlap (the disk completes concurrent flushes together: measured
here, two threads flushing one preallocated file reach about twice one thread's rate). Each
round's result comes back as an asyncio future.

Lighter than ``loop.run_in_executor``: one queue put per stage and one ``call_soon_threadsafe``
per result, no ``concurrent.futures`` machinery in between, which matters when a call is made
for every group-commit round. Write order matters: a journal round's write ends with the end
marker the next round's write overwrites, so two rounds' writes must never swap. Sync order
does not: an fdatasync covers every write that came before it, and the store acknowledges
rounds strictly in order whatever order their fsyncs return in.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", Callable[[], None], Callable[[], None] | None]


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def _report(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], err: BaseException | None) -> bool:
    try:
        loop.call_soon_threadsafe(_settle, fut, err)
    except RuntimeError:  # the loop is closed: nobody waits any more
        return False
    return True


class OrderedWorker:
    """One writer thread (submission order) and ``syncers`` sync threads."""

    def __init__(self, name: str, syncers: int = 1) -> None:
        if syncers < 1:
            raise ValueError(f"syncers must be at least 1, got {syncers}")
        self._writes: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._syncs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._write_loop, name=name, daemon=True)]
        self._threads += [
            threading.Thread(target=self._sync_loop, name=f"{name}-sync{i}", daemon=True) for i in range(syncers)
        ]
        self._started = False

    def submit(self, fn: Callable[[], None], then: Callable[[], None] | None = None) -> asyncio.Future[None]:
        """Run ``fn`` after every call submitted before it, then ``then`` (if given) on a sync
        thread, possibly while later calls' ``fn`` and ``then`` run; the future ends when
        ``then`` has (or as the first of the two that raised)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        self._writes.put((loop, fut, fn, then))
        return fut

    def close(self) -> None:
        """Stop after the calls already submitted (does not wait)."""
        if self._started:
            self._writes.put(None)

    def _write_loop(self) -> None:
        while True:
            job = self._writes.get()
            if job is None:
                for _ in self._threads[1:]:
                    self._syncs.put(None)
                return
            loop, fut, fn, then = job
            try:
                fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                if not _report(loop, fut, exc):
                    return
                continue
            if then is None:
                if not _report(loop, fut, None):
                    return
            else:
                self._syncs.put(job)

    def _sync_loop(self) -> None:
        while True:
            job = self._syncs.get()
            if job is None:
                return
            loop, fut, _fn, then = job
            assert then is not None
            err: BaseException | None = None
            try:
                then()
            except BaseException as exc:  # handed to the awaiting coroutine
                err = exc
            if not _report(loop, fut, err):
                return
