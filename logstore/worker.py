"""An ordered worker thread: blocking calls (journal writes and their fdatasync) run one at a
time, in the order they were submitted, off the event loop; each result comes back as an
asyncio future.

Lighter than ``loop.run_in_executor``: one queue put per call and one ``call_soon_threadsafe``
per result, no ``concurrent.futures`` machinery in between, which matters when a call is made
for every group-commit round. Order matters too: a journal round's write ends with the end
marker the next round's write overwrites, so two rounds' writes must never swap.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", Callable[[], None]]


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class OrderedWorker:
    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    def submit(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``fn`` after every call submitted before it; the future ends as ``fn`` did."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if not self._started:
            self._started = True
            self._thread.start()
        self._queue.put((loop, fut, fn))
        return fut

    def close(self) -> None:
        """Stop after the calls already submitted (does not wait)."""
        if self._started:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, fut, fn = item
            err: BaseException | None = None
            try:
                fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                err = exc
            try:
                loop.call_soon_threadsafe(_settle, fut, err)
            except RuntimeError:  # the loop is closed: nobody waits any more
                return
