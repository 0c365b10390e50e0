"""Java's hashCode for the values RocketMQ hashes (tags, selector args), bit for bit."""

from __future__ import annotations

from typing import Any

from ..message import java_string_hash

__all__ = ["java_hash", "java_string_hash"]


def java_hash(arg: Any) -> int:
    """``arg.hashCode()`` as Java would compute it for strings and ints (others: Python hash)."""
    if isinstance(arg, str):
        return java_string_hash(arg)
    if isinstance(arg, bool):
        return 1231 if arg else 1237
    if isinstance(arg, int):
        if -(2**31) <= arg < 2**31:
            return arg
        v = arg & 0xFFFFFFFFFFFFFFFF  # Long.hashCode: high word xor low word
        h = (v ^ (v >> 32)) & 0xFFFFFFFF
        return h - (1 << 32) if h & 0x80000000 else h
    return hash(arg)
