"""The leader's view of its followers: positions, ISR, high watermark, replicated-ack waits.

Per log, each follower's position is the fetch offset it last sent (it has every batch below
it). A follower is *caught up* when it fetched from the leader's end, or from at least the end
the leader had at the follower's previous fetch (Kafka's lastCaughtUpTime, so a follower that
keeps up with a steady stream counts as caught up). It leaves the ISR after
``lag_time_max_ms`` without being caught up and rejoins once its position reaches the high
watermark. The leader is always in its ISR.

High watermark = min over the ISR of positions, the leader's being its committed offset (what
its flush policy acknowledged). It never goes down while this node leads. It is recomputed
when a follower fetches, when the ISR changes and when it is asked for (so a leader alone
needs no hook in the append path).

A follower's position counts only after the fetch passed the epoch check and lay within the
leader's log: an offset beyond the leader's end is refused before it gets here
(RELIABILITY.md class 9, RocketMQ #1155).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logstore.errors import LogNotFoundError
from logstore.log import Log
from logstore.store import Store


def monotonic_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass
class ReplicaPosition:
    replica_id: int
    fetch_offset: int
    last_fetch_ms: float
    last_caught_up_ms: float
    leader_end_at_last_fetch: int


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


@dataclass
class _Waiter:
    end_offset: int
    min_insync: int
    future: asyncio.Future[bool]


@dataclass
class LogReplicas:
    """One log's followers on the leader."""

    replicas: dict[int, ReplicaPosition] = field(default_factory=dict)
    isr: set[int] = field(default_factory=set)  # followers only; the leader is implied
    waiters: list[_Waiter] = field(default_factory=list)


class LeaderState:
    """Follower positions, ISR and high watermarks of every log of a leader's store."""

    def __init__(
        self, store: Store, *, replica_id: int = 0, lag_time_max_ms: int = 10_000,
        now_ms: Callable[[], float] = monotonic_ms, on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.on_fenced = on_fenced  # told once, when a newer leader epoch shows up
        self.replica_id = replica_id
        self.lag_time_max_ms = lag_time_max_ms
        self.now_ms = now_ms
        self.fenced = False  # a follower showed a newer leader epoch: this node leads no more
        self._logs: dict[str, LogReplicas] = {}

    def _state(self, name: str) -> LogReplicas:
        st = self._logs.get(name)
        if st is None:
            st = self._logs[name] = LogReplicas()
        return st

    # -- queries ------------------------------------------------------------------------------

    def isr(self, log_name: str) -> set[int]:
        """Replica ids in sync for the log, the leader's own included."""
        self.store.log(log_name)
        return {self.replica_id, *self._state(log_name).isr}

    def high_watermark(self, log_name: str) -> int:
        return self._advance(self.store.log(log_name))

    def positions(self, log_name: str) -> dict[int, int]:
        """Each follower's last reported fetch offset."""
        return {rid: p.fetch_offset for rid, p in self._state(log_name).replicas.items()}

    # -- updates ------------------------------------------------------------------------------

    def record_fetch(self, log: Log, replica_id: int, fetch_offset: int) -> None:
        """A follower fetched ``log`` from ``fetch_offset`` (already checked to be within the
        leader's log and past the epoch check)."""
        now = self.now_ms()
        st = self._state(log.name)
        leader_end = log.committed_offset
        pos = st.replicas.get(replica_id)
        if pos is None:
            pos = st.replicas[replica_id] = ReplicaPosition(replica_id, fetch_offset, now, -1.0, leader_end)
        if fetch_offset < pos.fetch_offset and replica_id in st.isr:
            # It had more and lost it (an unclean restart): what it counted for is gone.
            st.isr.discard(replica_id)
        if fetch_offset >= leader_end:
            pos.last_caught_up_ms = now
        elif fetch_offset >= pos.leader_end_at_last_fetch:
            pos.last_caught_up_ms = max(pos.last_caught_up_ms, pos.last_fetch_ms)
        pos.fetch_offset = fetch_offset
        pos.last_fetch_ms = now
        pos.leader_end_at_last_fetch = leader_end
        if replica_id not in st.isr and fetch_offset >= self._advance(log):
            st.isr.add(replica_id)
        self._advance(log)

    def check_lag(self) -> None:
        """Drop followers that were not caught up for ``lag_time_max_ms`` from the ISRs."""
        now = self.now_ms()
        for name, st in list(self._logs.items()):
            log = self.store.logs.get(name)
            if log is None:
                for w in st.waiters:
                    if not w.future.done():
                        w.future.set_result(False)
                del self._logs[name]
                continue
            lagging = {rid for rid in st.isr if now - st.replicas[rid].last_caught_up_ms > self.lag_time_max_ms}
            if lagging:
                st.isr -= lagging
            self._advance(log)

    def fence(self) -> None:
        """A newer leader exists: every pending and later replicated-ack wait answers False."""
        first = not self.fenced
        self.fenced = True
        if first and self.on_fenced is not None:
            self.on_fenced()
        for st in self._logs.values():
            for w in st.waiters:
                if not w.future.done():
                    w.future.set_result(False)
            st.waiters.clear()

    def _advance(self, log: Log) -> int:
        """Recompute the log's high watermark and settle the waits it decides."""
        st = self._state(log.name)
        hw = log.committed_offset
        for rid in st.isr:
            hw = min(hw, st.replicas[rid].fetch_offset)
        if hw > log.high_watermark:
            log.set_high_watermark(hw)
        if st.waiters:
            self._settle(log, st)
        return log.high_watermark

    def _settle(self, log: Log, st: LogReplicas) -> None:
        insync = 1 + len(st.isr)
        keep = []
        for w in st.waiters:
            if w.future.done():
                continue
            if insync < w.min_insync or self.fenced:
                w.future.set_result(False)
            elif log.high_watermark >= w.end_offset:
                w.future.set_result(True)
            else:
                keep.append(w)
        st.waiters = keep

    # -- waits ----------------------------------------------------------------------------------

    async def wait_replicated(self, log_name: str, end_offset: int, *, min_insync: int = 2, timeout: float = 3.0) -> bool:
        """Wait until every in-sync replica has the log up to ``end_offset`` (exclusive: pass
        an append's last offset + 1) while at least ``min_insync`` replicas (the leader
        included) are in sync. False at once when the ISR is smaller, when it shrinks below
        that while waiting, when this leader was fenced, or after ``timeout`` seconds: then
        the data may or may not survive a failover (indeterminate, never a failure to
        retry blindly)."""
        try:
            log = self.store.log(log_name)
        except LogNotFoundError:
            return False
        if self.fenced:
            return False
        st = self._state(log_name)
        hw = self._advance(log)
        if 1 + len(st.isr) < min_insync:
            return False
        if hw >= end_offset:
            return True
        # One future and one timer handle (no timeout context, no shield: the future is ours,
        # and a cancelled waiter's future is skipped by _settle).
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        st.waiters.append(_Waiter(end_offset, min_insync, fut))
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
