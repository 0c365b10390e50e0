"""ConsumePool: the push consumer's consume threads (consumeThreadMin / consumeThreadMax) as a
fixed set of asyncio worker tasks taking requests from one backlog.

A task and a semaphore per request would cost a task creation, a semaphore round and a wake-up
for every message when ``consumeMessageBatchMaxSize`` is 1. Here a request is a deque append;
a worker takes requests one after another for as long as there are any, so a listener that does
not suspend runs a whole pull's requests in one turn of the loop.

Wake-ups chain: a submit wakes one parked worker (when none is already waking); a worker that
takes a request while more wait wakes one more before it runs the listener. While listeners
return without suspending, one worker drains the backlog and at most one more wakes to find
nothing; while they suspend (I/O, or a synchronous listener on the thread pool), each request
wakes the next worker, up to ``workers_max`` running at once.

``workers_min`` workers live as long as the pool; up to ``workers_max`` are started when
requests wait and every worker is busy, and such an extra worker stops after ``keep_alive_s``
(60 s, as RocketMQ's consume thread pool) without work. (RocketMQ's pool never grows past its
core size, because its queue is unbounded; this one does, as its settings suggest.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..aio import wait_event

log = logging.getLogger(__name__)

R = TypeVar("R")

KEEP_ALIVE_S = 60.0


class ConsumePool(Generic[R]):
    def __init__(self, handle: Callable[[R], Awaitable[None]], workers_min: int, workers_max: int, *,
                 name: str = "consume", keep_alive_s: float = KEEP_ALIVE_S) -> None:
        if not 1 <= workers_min <= workers_max:
            raise ValueError("need 1 <= workers_min <= workers_max")
        self._handle = handle
        self.workers_min = workers_min
        self.workers_max = workers_max
        self.name = name
        self.keep_alive_s = keep_alive_s
        self._backlog: deque[R] = deque()
        self._parked: deque[asyncio.Future[None]] = deque()  # one future per parked worker
        self._waking = 0  # workers woken or started that have not taken a request yet
        self._busy = 0  # workers running a request
        self._workers: set[asyncio.Task[None]] = set()
        self._later: set[asyncio.TimerHandle] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def start(self) -> None:
        for _ in range(self.workers_min):
            self._spawn(extra=False, woken=False)

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def busy(self) -> int:
        return self._busy

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, request: R) -> None:
        if self._closed:
            return
        self._backlog.append(request)
        self._idle.clear()
        if not self._waking:
            self._wake_one()

    def submit_all(self, requests: list[R]) -> None:
        """``submit`` each, with at most one wake-up."""
        if self._closed or not requests:
            return
        self._backlog.extend(requests)
        self._idle.clear()
        if not self._waking:
            self._wake_one()

    def submit_later(self, request: R, delay_s: float) -> None:
        """Submit after ``delay_s`` (RocketMQ's submitConsumeRequestLater)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._later.discard(handle)
            self.submit(request)

        handle = loop.call_later(delay_s, fire)
        self._later.add(handle)

    def _wake_one(self) -> None:
        while self._parked:
            fut = self._parked.popleft()
            if not fut.done():
                fut.set_result(None)
                self._waking += 1
                return
        if len(self._workers) < self.workers_max:
            self._spawn(extra=len(self._workers) >= self.workers_min, woken=True)
            self._waking += 1

    def _spawn(self, *, extra: bool, woken: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._work(extra, woken), name=f"{self.name}-worker")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    # -- the workers ---------------------------------------------------------------------------------

    async def _work(self, extra: bool, woken: bool) -> None:
        """``woken``: started for a waiting request (counted in ``_waking``)."""
        backlog = self._backlog
        while True:
            if woken:
                self._waking -= 1
                woken = False
            if not backlog:
                if not self._busy and not self._waking:
                    self._idle.set()
                if not await self._park(extra):
                    return
                woken = True
                continue
            request = backlog.popleft()
            if backlog and not self._waking:
                self._wake_one()  # more wait: let another worker start on them
            self._busy += 1
            try:
                await self._handle(request)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: a consume request failed", self.name)
            finally:
                self._busy -= 1

    async def _park(self, extra: bool) -> bool:
        """Wait to be woken; False when an extra worker should stop (idle for keep_alive_s)."""
        fut = asyncio.get_running_loop().create_future()
        self._parked.append(fut)
        if not extra:
            await fut
            return True
        try:
            async with asyncio.timeout(self.keep_alive_s):
                await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                return True  # woken just as the keep-alive ran out: take the request
            fut.cancel()  # a later wake skips it
            return False
        return True

    # -- stopping ------------------------------------------------------------------------------

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request waits or runs; False if that took longer than ``timeout_s``."""
        return await wait_event(self._idle, timeout_s)

    async def close(self) -> None:
        """Drop waiting requests and stop every worker (a running listener is cancelled)."""
        self._closed = True
        for handle in self._later:
            handle.cancel()
        self._later.clear()
        self._backlog.clear()
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*workers, return_exceptions=True)
