"""UNIQ_KEY: the message id a client gives each message before sending (what users call msgId).

Layout as in RocketMQ's ``MessageClientIDSetter`` (IPv4), 16 bytes rendered as 32 uppercase hex:

    ip (4) | pid (2) | per-process random "class loader" hash (4)
    | ms since the start of the current month (4) | counter (2)

The first 10 bytes are fixed per process; time and counter make ids unique within it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
import random
import struct
import threading
import time

_PREFIX = struct.Struct(">4sHi")
_SUFFIX = struct.Struct(">IH")


class UniqIdGenerator:
    def __init__(self, ip: str, pid: int | None = None, seed: int | None = None) -> None:
        try:
            packed_ip = ipaddress.IPv4Address(ip).packed
        except ValueError:
            packed_ip = b"\x7f\x00\x00\x01"
        rng = random.Random(seed)
        pid_short = (os.getpid() if pid is None else pid) & 0xFFFF
        self._prefix = _PREFIX.pack(packed_ip, pid_short, rng.randrange(-(2**31), 2**31)).hex()
        self._counter = itertools.count(rng.randrange(1 << 16))
        self._lock = threading.Lock()
        self._month_start_ms = 0
        self._next_month_ms = 0

    def _roll_month(self, now_ms: int) -> None:
        now = dt.datetime.fromtimestamp(now_ms / 1000)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (start + dt.timedelta(days=32)).replace(day=1)
        self._month_start_ms = int(start.timestamp() * 1000)
        self._next_month_ms = int(nxt.timestamp() * 1000)

    def create(self, now_ms: int | None = None) -> str:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if not self._month_start_ms <= now_ms < self._next_month_ms:
                self._roll_month(now_ms)
            counter = next(self._counter) & 0xFFFF
            since_month = (now_ms - self._month_start_ms) & 0xFFFFFFFF
        return (self._prefix + _SUFFIX.pack(since_month, counter).hex()).upper()
