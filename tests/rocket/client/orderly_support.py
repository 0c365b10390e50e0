"""What the orderly-consumption tests share: a broker with short queue locks, order messages,
and the check that a recorded sequence per order is in order.

"In order, duplicates allowed" is checked on the sequence of steps a consumer group processed
for one order id (every delivery, in the order they were processed): the first time each step
appears, the steps go 0, 1, 2, ... without a gap (nothing processed ahead of an earlier step,
nothing missing), and a repeated step only ever restarts a run that then climbs one by one (a
redelivery after a crash or a handover replays a suffix; it never jumps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from adapters.rocket.testing import ServeProcess, write_conf

# Short lock times so that a killed consumer's queues free up within a test: the broker keeps
# a lock BROKER_LOCK_MS, clients renew every LOCK_INTERVAL_MS and stop after LOCK_MAX_LIVE_MS.
BROKER_LOCK_MS = 4000
LOCK_INTERVAL_MS = 1000
LOCK_MAX_LIVE_MS = 2000


@contextlib.contextmanager
def short_lock_serve(tmp: Path) -> Iterator[ServeProcess]:
    tmp.mkdir(parents=True, exist_ok=True)
    conf = write_conf(tmp / "broker.conf", lockExpireMs=BROKER_LOCK_MS)
    server = ServeProcess(tmp / "data", conf)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def order_body(order: str, step: int) -> bytes:
    return f"{order}:{step}".encode()


def parse_body(body: bytes) -> tuple[str, int]:
    order, step = body.decode().rsplit(":", 1)
    return order, int(step)


def check_order(order: str, steps: list[int], expected: int) -> None:
    """``steps`` (as processed) is in order with only replayed runs as duplicates, and complete."""
    firsts: list[int] = []
    seen: set[int] = set()
    for i, step in enumerate(steps):
        if i > 0 and step > steps[i - 1] + 1:
            raise AssertionError(f"order {order}: step {step} right after {steps[i - 1]}: {steps}")
        if step not in seen:
            seen.add(step)
            firsts.append(step)
    assert firsts == list(range(len(firsts))), f"order {order}: first deliveries out of order: {firsts}"
    assert len(firsts) == expected, f"order {order}: {len(firsts)} of {expected} steps processed: {steps}"


def check_orders(sequences: dict[str, list[int]], expected: dict[str, int]) -> int:
    """Every order in order and complete; returns how many deliveries were duplicates."""
    assert set(sequences) == set(expected), (sorted(sequences), sorted(expected))
    for order, steps in sequences.items():
        check_order(order, steps, expected[order])
    return sum(len(s) for s in sequences.values()) - sum(expected.values())
