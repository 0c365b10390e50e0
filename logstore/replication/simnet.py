"""An in-memory network for the replication simulation: the same protocol code as TCP, with
faults a seeded random generator decides.

Connections keep TCP's promise (frames arrive whole, in order, or the connection breaks), so
the faults are the ones TCP lets through: a frame delayed (``delay_ms_max``), a connection
broken (``break_probability`` per frame), nodes partitioned (connects refused, live
connections broken). Frames on different connections overtake each other freely: an old
connection's late frames arriving after a newer connection's is the reordering a follower's
reconnect sees. Delivery is scheduled on the event loop's clock, so under a virtual-time loop
(``fuzz/simloop.py``) a seed replays exactly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from logstore.replication import protocol as proto
from logstore.replication.transport import Connection, ConnectionClosed, Connector

_CLOSED = b""
Handler = Callable[[Connection], Coroutine[Any, Any, None]]


class _End(Connection):
    """One side of an in-memory connection."""

    def __init__(self, net: SimNetwork, src: str, dst: str) -> None:
        self.net = net
        self.src = src
        self.dst = dst
        self.peer = dst
        self.other: _End | None = None
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False
        self._deliver_at = 0.0  # frames arrive in order: never before the previous one

    async def send(self, parts: Sequence[proto.Part]) -> None:
        if self.closed or self.other is None or self.other.closed:
            raise ConnectionClosed(f"{self.src} -> {self.dst} is closed")
        if self.net.partitioned(self.src, self.dst) or self.net.rng.random() < self.net.break_probability:
            self.net.broken += 1
            self.abort()
            raise ConnectionClosed(f"{self.src} -> {self.dst} broke")
        frame = proto.frame_bytes(parts)[proto.FRAME_LENGTH.size :]
        loop = asyncio.get_running_loop()
        at = max(self._deliver_at, loop.time() + self.net.rng.uniform(0, self.net.delay_ms_max) / 1000)
        self._deliver_at = at
        loop.call_at(at, self.other.deliver, frame)
        self.net.frames += 1

    async def receive(self) -> bytes:
        if self.closed:
            raise ConnectionClosed(f"{self.src} <- {self.dst} is closed")
        frame = await self.inbox.get()
        if frame is _CLOSED or self.closed:
            self.closed = True
            raise ConnectionClosed(f"{self.src} <- {self.dst} is closed")
        return frame

    def deliver(self, frame: bytes) -> None:
        if not self.closed:
            self.inbox.put_nowait(frame)

    def abort(self) -> None:
        for end in (self, self.other):
            if end is not None and not end.closed:
                end.closed = True
                end.inbox.put_nowait(_CLOSED)

    async def close(self) -> None:
        self.abort()


class SimNetwork:
    """Nodes by name; a node that serves registers a handler for incoming connections."""

    def __init__(self, rng: random.Random, *, delay_ms_max: float = 5.0, break_probability: float = 0.0) -> None:
        self.rng = rng
        self.delay_ms_max = delay_ms_max
        self.break_probability = break_probability
        self._servers: dict[str, Handler] = {}
        self._cut: set[frozenset[str]] = set()
        self._ends: list[_End] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.frames = 0
        self.broken = 0

    def serve(self, node: str, handler: Handler | None) -> None:
        """Accept connections to ``node`` with ``handler`` (None: refuse them, and break the
        live ones, as a process that died)."""
        if handler is None:
            self._servers.pop(node, None)
            self._break(lambda e: e.dst == node or e.src == node)
        else:
            self._servers[node] = handler

    def partition(self, a: str, b: str) -> None:
        self._cut.add(frozenset((a, b)))
        self._break(lambda e: {e.src, e.dst} == {a, b})

    def isolate(self, node: str, others: Sequence[str]) -> None:
        for other in others:
            if other != node:
                self.partition(node, other)

    def heal(self) -> None:
        self._cut.clear()

    def partitioned(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self._cut

    def _break(self, which: Callable[[_End], bool]) -> None:
        for end in self._ends:
            if which(end):
                end.abort()
        self._ends = [e for e in self._ends if not e.closed]

    def connector(self, src: str, dst: str) -> Connector:
        async def connect() -> Connection:
            await asyncio.sleep(self.rng.uniform(0, self.delay_ms_max) / 1000)
            handler = self._servers.get(dst)
            if handler is None or self.partitioned(src, dst):
                raise ConnectionRefusedError(f"{src} cannot reach {dst}")
            client, server = _End(self, src, dst), _End(self, dst, src)
            client.other, server.other = server, client
            self._ends = [e for e in self._ends if not e.closed] + [client, server]
            task = asyncio.create_task(handler(server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return client

        return connect
