"""MessageQueueSelector: the user picks the queue, e.g. by order id, so one order stays in order.

``select(mqs, msg, arg)`` receives the topic's writable queues in a stable order (sorted by
broker name, then queue id), so the same ``arg`` lands on the same queue for as long as the
route does not change.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._java import java_hash
from .common import MessageQueue


class MessageQueueSelector(Protocol):
    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue: ...


class SelectMessageQueueByHash:
    """``abs(arg.hashCode()) % len(mqs)``, as RocketMQ's selector of the same name."""

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        if not mqs:
            raise ValueError("no queue to select from")
        return mqs[abs(java_hash(arg)) % len(mqs)]


class SelectMessageQueueByRandom:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        if not mqs:
            raise ValueError("no queue to select from")
        return mqs[self._rng.randrange(len(mqs))]


class FunctionSelector:
    """Wraps a plain ``(mqs, msg, arg) -> MessageQueue`` function (the seed's anonymous class)."""

    def __init__(self, fn: Callable[[Sequence[MessageQueue], Any, Any], MessageQueue]) -> None:
        self._fn = fn

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        return self._fn(mqs, msg, arg)
