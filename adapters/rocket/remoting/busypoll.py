"""Busy polling: after a connection writes, keep the event loop polling its sockets instead of
sleeping, for a short window, because an answer (or the next request) is due soon.

A loop that sleeps in epoll is woken by the peer's write; on this machine (two vCPUs of a
virtual machine) that wake-up, and the write that causes it, cost about 70 us each way, a
quarter of a one-at-a-time SYNC_FLUSH send's round trip. While something is queued with
``call_soon`` the loop polls without sleeping, so a poller keeps one callback queued until its
window ends. Each turn of it calls ``sched_yield``: a thread or process that wants this CPU
gets it. Linux's SO_BUSY_POLL is the same trade for NIC queues: CPU for latency, opted into.

A window of 0 turns it off. The CPU spent is at most the window per write, so it is bounded
by the request rate (and nothing when idle).
"""

from __future__ import annotations

import asyncio
import os
import time

#: The longest window accepted (a bound on the CPU one write may cost).
WINDOW_US_MAX = 10_000

_perf = time.perf_counter
_yield = getattr(os, "sched_yield", lambda: None)


class BusyPoll:
    """One per event loop user (a server or a client); shared by its connections."""

    def __init__(self, window_us: int) -> None:
        if not 0 <= window_us <= WINDOW_US_MAX:
            raise ValueError(f"busy poll window must be 0..{WINDOW_US_MAX} us, not {window_us}")
        self.window_s = window_us / 1_000_000
        self.turns = 0  # polling turns taken (for tests and benches)
        self._deadline = 0.0
        self._polling = False

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    def kick(self, loop: asyncio.AbstractEventLoop) -> None:
        """A write went out: poll until the window after it ends."""
        self._deadline = _perf() + self.window_s
        if not self._polling:
            self._polling = True
            loop.call_soon(self._turn, loop)

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        if _perf() < self._deadline and not loop.is_closed():
            self.turns += 1
            _yield()
            loop.call_soon(self._turn, loop)
        else:
            self._polling = False
