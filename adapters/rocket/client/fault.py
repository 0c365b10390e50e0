"""Latency-fault avoidance for producers (RocketMQ's MQFaultStrategy, ``sendLatencyFaultEnable``).

Every send attempt reports how long it took; a failed attempt counts as 30 s ("isolation"). A
broker whose last attempt took long is avoided for a while, by RocketMQ's table::

    latency >=   50   100   550   1000   2000   3000   15000 ms
    avoid for     0     0    30     60    120    180     600 s

so a broker that just failed (a refused connection, a timeout, an error answer) is left alone
for 10 minutes unless no other broker is available, and a slow one for a while. Queue selection
then takes, round-robin, the next queue on an available broker (other than the one that just
failed), else the broker whose penalty ends first, else plain round-robin. With the strategy off
(the default, as in RocketMQ) only the retry rule applies: a retry picks a queue of another broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .common import MessageQueue
from .route import TopicPublishInfo

LATENCY_MAX_MS = (50, 100, 550, 1000, 2000, 3000, 15000)
NOT_AVAILABLE_DURATION_MS = (0, 0, 30_000, 60_000, 120_000, 180_000, 600_000)
ISOLATION_LATENCY_MS = 30_000  # what a failed attempt counts as


@dataclass
class FaultItem:
    name: str
    current_latency_ms: int
    start_ms: float  # available again from this time on

    def available(self, now_ms: float) -> bool:
        return now_ms >= self.start_ms


class LatencyFaultTolerance:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.items: dict[str, FaultItem] = {}

    def now_ms(self) -> float:
        return self._clock() * 1000

    def update_fault_item(self, name: str, current_latency_ms: int, not_available_duration_ms: int) -> None:
        self.items[name] = FaultItem(name, current_latency_ms, self.now_ms() + not_available_duration_ms)

    def is_available(self, name: str) -> bool:
        item = self.items.get(name)
        return item is None or item.available(self.now_ms())

    def remove(self, name: str) -> None:
        self.items.pop(name, None)

    def pick_one_at_least(self) -> str | None:
        """The broker whose penalty ends first (all are penalised when this is asked)."""
        if not self.items:
            return None
        return min(self.items.values(), key=lambda i: (i.start_ms, i.current_latency_ms)).name


def not_available_duration_ms(latency_ms: int) -> int:
    for bound, duration in zip(reversed(LATENCY_MAX_MS), reversed(NOT_AVAILABLE_DURATION_MS), strict=True):
        if latency_ms >= bound:
            return duration
    return 0


class MQFaultStrategy:
    def __init__(self, enabled: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.tolerance = LatencyFaultTolerance(clock)

    def select_one_message_queue(self, info: TopicPublishInfo, last_broker_name: str | None) -> MessageQueue:
        if not self.enabled:
            return info.select_one_message_queue(last_broker_name)
        mqs = info.message_queue_list
        if not mqs:
            raise ValueError(f"topic {info.topic} has no writable queue")
        fallback: MessageQueue | None = None
        for _ in range(len(mqs)):
            info._index += 1
            mq = mqs[info._index % len(mqs)]
            if self.tolerance.is_available(mq.broker_name):
                if last_broker_name is None or mq.broker_name != last_broker_name:
                    return mq
                fallback = fallback or mq
        if fallback is not None:
            return fallback
        least = self.tolerance.pick_one_at_least()
        on_least = [mq for mq in mqs if mq.broker_name == least]
        if on_least:
            info._index += 1
            return on_least[info._index % len(on_least)]
        if least is not None:
            self.tolerance.remove(least)
        return info.select_one_message_queue(last_broker_name)

    def update_fault_item(self, broker_name: str, current_latency_ms: int, isolation: bool) -> None:
        if not self.enabled:
            return
        latency = ISOLATION_LATENCY_MS if isolation else current_latency_ms
        self.tolerance.update_fault_item(broker_name, current_latency_ms, not_available_duration_ms(latency))

    def is_available(self, broker_name: str) -> bool:
        return self.tolerance.is_available(broker_name)
