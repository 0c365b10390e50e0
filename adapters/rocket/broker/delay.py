"""When a message is due: RocketMQ's delay levels and its 5.x arbitrary delivery times.

Two ways to schedule a message (checked in this order, as RocketMQ's HookUtils does):

* ``DELAY`` = level n > 0: due at store time + the n-th delay of ``messageDelayLevel`` (+ 1 ms: the
  store time is rounded down to the millisecond)
  (default ``1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h``; units s, m, h, d).
  A level past the last one is the last one. A level <= 0 is an ordinary message. Any TIMER_*
  property of such a message is dropped.
* ``TIMER_DELAY_SEC`` (now + seconds), else ``TIMER_DELAY_MS`` (now + milliseconds), else
  ``TIMER_DELIVER_MS`` (an absolute epoch time in ms). A time already passed is an ordinary
  message; one more than ``timerMaxDelaySec`` (3 days) ahead is refused. Unlike RocketMQ's
  timer wheel the due time is not rounded down to a 1 s slot: we never deliver early.

A value that is not an integer is refused (MESSAGE_ILLEGAL) and nothing is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROPERTY_DELAY = "DELAY"
PROPERTY_REAL_TOPIC = "REAL_TOPIC"
PROPERTY_REAL_QUEUE_ID = "REAL_QID"
PROPERTY_TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
PROPERTY_TIMER_DELAY_SEC = "TIMER_DELAY_SEC"
PROPERTY_TIMER_DELAY_MS = "TIMER_DELAY_MS"
PROPERTY_TIMER_OUT_MS = "TIMER_OUT_MS"  # the due time (epoch ms) of a stored timer message
TIMER_PROPERTIES = (PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_DELAY_MS, PROPERTY_TIMER_DELIVER_MS)
# Removed from a scheduled message when it is delivered to its real topic.
SCHEDULE_PROPERTIES = (PROPERTY_DELAY, PROPERTY_REAL_TOPIC, PROPERTY_REAL_QUEUE_ID, PROPERTY_TIMER_OUT_MS,
                       *TIMER_PROPERTIES)

SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"  # queue n-1 holds delay level n
TIMER_TOPIC = "rmq_sys_wheel_timer"  # queue 0 holds arbitrary-time messages
DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
DELAY_LEVELS_MAX = 64  # queues of SCHEDULE_TOPIC_XXXX
UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LEVEL = re.compile(r"^(\d+)([smhd])$")
_DELAY_MARKER = PROPERTY_DELAY + "\x01"  # cheap tests before decoding properties
_TIMER_MARKER = "TIMER_"


class ScheduleError(ValueError):
    """A scheduling property the broker refuses (the remark of a MESSAGE_ILLEGAL answer)."""


def parse_delay_levels(text: str) -> list[int]:
    """``"1s 5s 1m"`` -> ``[1000, 5000, 60000]`` (ms per level, level 1 first)."""
    out = []
    for word in text.split():
        m = _LEVEL.match(word)
        if m is None:
            raise ValueError(f"messageDelayLevel: {word!r} is not a number followed by s, m, h or d")
        ms = int(m.group(1)) * UNIT_MS[m.group(2)]
        if ms <= 0:
            raise ValueError(f"messageDelayLevel: {word!r} is not a positive delay")
        out.append(ms)
    if not 1 <= len(out) <= DELAY_LEVELS_MAX:
        raise ValueError(f"messageDelayLevel must list between 1 and {DELAY_LEVELS_MAX} delays, not {len(out)}")
    return out


def may_be_scheduled(properties: str) -> bool:
    """False when the encoded properties certainly carry no scheduling property."""
    return _DELAY_MARKER in properties or _TIMER_MARKER in properties


@dataclass(frozen=True)
class Schedule:
    """Where a scheduled message waits: a delay level (1-based), or a timer due time."""

    level: int = 0  # > 0: SCHEDULE_TOPIC_XXXX queue level-1
    due_ms: int = 0  # level 0: TIMER_TOPIC, due then


def _int_property(props: dict[str, str], key: str) -> int:
    raw = props[key]
    try:
        return int(raw.strip())
    except ValueError:
        raise ScheduleError(f"the message property {key}={raw!r} is not an integer") from None


def schedule_of(props: dict[str, str], now_ms: int, levels: int, timer_max_delay_s: int) -> Schedule | None:
    """How ``props`` schedules a message received at ``now_ms``, or None for an ordinary one.
    Removes TIMER_* properties a DELAY level overrides. Raises ScheduleError."""
    if PROPERTY_DELAY in props and props[PROPERTY_DELAY].strip() not in ("", "0"):
        level = _int_property(props, PROPERTY_DELAY)
        if level > 0:
            for key in TIMER_PROPERTIES:
                props.pop(key, None)
            return Schedule(level=min(level, levels))
    # A relative delay counts from now_ms + 1: now_ms is rounded down, and due is never early.
    if PROPERTY_TIMER_DELAY_SEC in props:
        delay, rounding = _int_property(props, PROPERTY_TIMER_DELAY_SEC) * 1000, 1
    elif PROPERTY_TIMER_DELAY_MS in props:
        delay, rounding = _int_property(props, PROPERTY_TIMER_DELAY_MS), 1
    elif PROPERTY_TIMER_DELIVER_MS in props:
        delay, rounding = _int_property(props, PROPERTY_TIMER_DELIVER_MS) - now_ms, 0
    else:
        return None
    if delay <= 0:
        return None  # RocketMQ stores a timer message that is already due as an ordinary one
    if delay > timer_max_delay_s * 1000:
        raise ScheduleError(f"timer message illegal, the delay time should not be bigger than the max delay "
                            f"{timer_max_delay_s * 1000}ms (timerMaxDelaySec); asked for {delay}ms")
    return Schedule(due_ms=now_ms + delay + rounding)
