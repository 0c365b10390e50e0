"""The journal's worker threads: each call's write runs off the event loop, strictly in the
order the calls were submitted, and its fdatasync right after on the same thread, so with two
threads the fsync of one round overlaps the write and fsync of the next (the disk completes
concurrent flushes together: measured here, two threads flushing one preallocated file reach
about twice one thread's rate). Each round's result comes back as an asyncio future.

Lighter than ``loop.run_in_executor``: one queue put per call and one ``call_soon_threadsafe``
per result, no ``concurrent.futures`` machinery in between, and no thread hop between a write
and its fsync, which matters when a call is made for every group-commit round. Write order
matters: a journal round's write ends with the end marker the next round's write overwrites,
so two rounds' writes must never swap (each call takes a ticket at submission and writes only
on its turn). Sync order does not: an fdatasync covers every write that came before it, and
the store acknowledges rounds strictly in order whatever order their fsyncs return in.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", Callable[[], None], Callable[[], None] | None, int]


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class OrderedWorker:
    """``threads`` threads taking calls in submission order; writes in that order too."""

    def __init__(self, name: str, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        self._started = False
        self._tickets = 0  # handed out on the event loop, in submission order
        self._turn = 0  # the ticket whose write may run now
        self._turn_changed = threading.Condition()

    def submit(self, fn: Callable[[], None], then: Callable[[], None] | None = None) -> asyncio.Future[None]:
        """Run ``fn`` after every ``fn`` submitted before it, then ``then`` (if given), possibly
        while later calls run; the future ends when both have (or as the first that raised:
        ``then`` does not run after a failed ``fn``)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()
        self._jobs.put((loop, fut, fn, then, self._tickets))
        self._tickets += 1
        return fut

    def close(self) -> None:
        """Stop after the calls already submitted (does not wait)."""
        if self._started:
            for _ in self._threads:
                self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, fn, then, ticket = job
            with self._turn_changed:
                while self._turn != ticket:
                    self._turn_changed.wait()
            err: BaseException | None = None
            try:
                fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                err = exc
            finally:
                with self._turn_changed:
                    self._turn += 1
                    self._turn_changed.notify_all()
            if err is None and then is not None:
                try:
                    then()
                except BaseException as exc:
                    err = exc
            try:
                loop.call_soon_threadsafe(_settle, fut, err)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return
