"""A Jepsen-style queue workload and its checker, against broker groups as processes (group.py).

Producers send unique bodies straight to the master of a group (the route from the name server,
refreshed every 0.2 s) with the raw remoting client, so every send has exactly one outcome:

* ``ok``: SUCCESS, with the (group, queue, offset) the broker answered;
* ``fail``: the send certainly stored nothing: the connection could not be opened, too many
  requests were pending on it, or the broker refused it before storing (a slave's
  SERVICE_NOT_AVAILABLE, SYSTEM_ERROR, ...);
* ``unknown``: it may or may not be stored: a timeout or a connection closed under it, and
  SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT, FLUSH_DISK_TIMEOUT (RocketMQ stores the message on
  the master and only says the slaves or the disk did not confirm it).

Readers pull every queue from every broker of both groups (masters and slaves) and record what
they saw at each (group, queue, offset), with the broker and the time. The checker compares the
history with the final reads of every replica (Jepsen's queue oracles): lost (an ``ok`` send
not at its offset in the end), duplicated (a body at two offsets), inconsistent offsets (two
bodies at one offset), aborted reads (a ``fail`` send read anywhere).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from adapters.rocket.message import Message, decode_stored
from adapters.rocket.remoting import (
    RemotingClient,
    RemotingCommand,
    RemotingConnectError,
    RemotingError,
    RemotingTooManyRequestsError,
    RequestCode,
    ResponseCode,
)

from .group import route

UNKNOWN_CODES = {ResponseCode.SLAVE_NOT_AVAILABLE, ResponseCode.FLUSH_SLAVE_TIMEOUT, ResponseCode.FLUSH_DISK_TIMEOUT}
SEND_TIMEOUT_S = 4.0
PULL_BATCH = 256

Key = tuple[str, int, int]  # (group, queue, offset)


@dataclass
class Send:
    body: bytes
    group: str
    queue: int
    outcome: str = "unknown"  # ok | fail | unknown
    offset: int = -1
    why: str = ""
    start_s: float = 0.0
    end_s: float = 0.0


@dataclass
class Seen:
    addr: str
    at_s: float


@dataclass
class History:
    sends: list[Send] = field(default_factory=list)
    reads: dict[Key, dict[bytes, Seen]] = field(default_factory=dict)  # first sighting of each body

    def saw(self, key: Key, body: bytes, addr: str) -> None:
        bodies = self.reads.setdefault(key, {})
        if body not in bodies:
            bodies[body] = Seen(addr, time.monotonic())

    def count(self, outcome: str, group: str | None = None) -> int:
        return sum(1 for s in self.sends if s.outcome == outcome and (group is None or s.group == group))


def send_ext(topic: str, queue: int) -> dict[str, object]:
    props = Message(topic=topic, body=b"", properties={}).properties_string()
    return {"a": "PG_JEPSEN", "b": topic, "c": "TBW102", "d": 4, "e": queue, "f": 0,
            "g": int(time.time() * 1000), "h": 0, "i": props, "j": 0, "k": False, "m": False}


def pull_ext(topic: str, queue: int, offset: int) -> dict[str, object]:
    return {"consumerGroup": "CG_JEPSEN", "topic": topic, "queueId": queue, "queueOffset": offset,
            "maxMsgNums": PULL_BATCH, "sysFlag": 0x4, "commitOffset": 0, "suspendTimeoutMillis": 0,
            "subscription": "*", "subVersion": 0, "expressionType": "TAG"}


async def pull(client: RemotingClient, addr: str, topic: str, queue: int, offset: int
               ) -> tuple[int, list[tuple[int, bytes]], int]:
    """(code, [(offset, body)], next offset) of one pull from ``offset``."""
    cmd = RemotingCommand.request(RequestCode.PULL_MESSAGE, pull_ext(topic, queue, offset))
    resp = await client.invoke(addr, cmd, 5.0)
    if resp.code != ResponseCode.SUCCESS:
        return resp.code, [], int(resp.ext_fields.get("nextBeginOffset", offset))
    got = [(m.queue_offset, m.body) for m in decode_stored(resp.body)]
    return resp.code, got, int(resp.ext_fields["nextBeginOffset"])


async def read_all(client: RemotingClient, addr: str, topic: str, queue: int) -> list[tuple[int, bytes]]:
    """Every message of a queue on one broker, from offset 0."""
    out: list[tuple[int, bytes]] = []
    offset = 0
    while True:
        code, got, nxt = await pull(client, addr, topic, queue, offset)
        if code != ResponseCode.SUCCESS or not got:
            return out
        out.extend(got)
        offset = nxt


async def max_offset(client: RemotingClient, addr: str, topic: str, queue: int) -> int:
    cmd = RemotingCommand.request(RequestCode.GET_MAX_OFFSET, {"topic": topic, "queueId": queue})
    resp = await client.invoke(addr, cmd, 5.0)
    if resp.code != ResponseCode.SUCCESS:
        return -1
    return int(resp.ext_fields["offset"])


class Workload:
    """Producers and readers over ``groups`` (broker names), ``queues`` queues each."""

    def __init__(self, namesrv: str, topic: str, groups: list[str], queues: int, producers: int) -> None:
        self.namesrv, self.topic, self.groups, self.queues = namesrv, topic, groups, queues
        self.producers = producers
        self.history = History()
        self.brokers: dict[str, dict[str, str]] = {}  # group -> {brokerId: addr}
        self._stop_sending = asyncio.Event()
        self._stop_reading = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._routes()), asyncio.create_task(self._reader())]
        self._tasks += [asyncio.create_task(self._producer(i)) for i in range(self.producers)]

    async def stop_sending(self) -> None:
        self._stop_sending.set()
        await asyncio.gather(*self._tasks[2:])

    async def stop(self) -> None:
        self._stop_sending.set()
        self._stop_reading.set()
        await asyncio.gather(*self._tasks)

    async def _routes(self) -> None:
        while not self._stop_reading.is_set():
            try:
                r = await route(self.namesrv, self.topic)
                if r is not None:
                    self.brokers = {b["brokerName"]: dict(b["brokerAddrs"]) for b in r.get("brokerDatas") or []}
            except (RemotingError, OSError):
                pass
            await asyncio.sleep(0.2)

    async def _producer(self, index: int) -> None:
        rng = random.Random(index)
        seq = 0
        async with RemotingClient() as client:
            while not self._stop_sending.is_set():
                masters = [(g, ids["0"]) for g, ids in self.brokers.items() if "0" in ids]
                if not masters:
                    await asyncio.sleep(0.05)
                    continue
                group, addr = rng.choice(masters)
                seq += 1
                s = Send(b"p%d-%d" % (index, seq), group, rng.randrange(self.queues), start_s=time.monotonic())
                self.history.sends.append(s)
                await self._send(client, addr, s)
                s.end_s = time.monotonic()
                if s.outcome != "ok":
                    await asyncio.sleep(0.02)

    async def _send(self, client: RemotingClient, addr: str, s: Send) -> None:
        cmd = RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, send_ext(self.topic, s.queue), s.body)
        try:
            resp = await client.invoke(addr, cmd, SEND_TIMEOUT_S)
        except (RemotingConnectError, RemotingTooManyRequestsError) as exc:
            s.outcome, s.why = "fail", type(exc).__name__  # never reached the broker
            return
        except (RemotingError, OSError) as exc:
            s.outcome, s.why = "unknown", type(exc).__name__  # timeout, closed under it
            return
        s.why = f"{addr} code {resp.code}"
        if resp.code == ResponseCode.SUCCESS:
            s.outcome, s.offset = "ok", int(resp.ext_fields["queueOffset"])
        elif resp.code in UNKNOWN_CODES:
            s.outcome = "unknown"
        else:
            s.outcome = "fail"

    async def _reader(self) -> None:
        cursors: dict[tuple[str, int], int] = {}
        async with RemotingClient() as client:
            while not self._stop_reading.is_set():
                for group, ids in list(self.brokers.items()):
                    for addr in ids.values():
                        for q in range(self.queues):
                            await self._read_once(client, group, addr, q, cursors)
                await asyncio.sleep(0.02)

    async def _read_once(self, client: RemotingClient, group: str, addr: str, q: int,
                         cursors: dict[tuple[str, int], int]) -> None:
        offset = cursors.get((addr, q), 0)
        try:
            code, got, nxt = await pull(client, addr, self.topic, q, offset)
        except (RemotingError, OSError):
            return
        for off, body in got:
            self.history.saw((group, q, off), body, addr)
        if code in (ResponseCode.SUCCESS, ResponseCode.PULL_OFFSET_MOVED):
            cursors[(addr, q)] = nxt  # a truncated replica moves the cursor back


@dataclass
class Verdict:
    acked: int = 0
    failed: int = 0
    unknown: int = 0
    lost: list[Send] = field(default_factory=list)
    duplicated: list[bytes] = field(default_factory=list)
    inconsistent: dict[Key, list[tuple[bytes, Seen]]] = field(default_factory=dict)
    read_then_lost: dict[Key, list[tuple[bytes, Seen]]] = field(default_factory=dict)
    aborted_reads: list[Send] = field(default_factory=list)
    replicas_differ: list[str] = field(default_factory=list)
    unknown_stored: int = 0

    def summary(self) -> dict[str, Any]:
        return {"acked": self.acked, "failed": self.failed, "unknown": self.unknown,
                "unknown_stored": self.unknown_stored, "lost": len(self.lost),
                "duplicated": len(self.duplicated), "inconsistent": len(self.inconsistent),
                "read_then_lost": len(self.read_then_lost), "aborted_reads": len(self.aborted_reads),
                "replicas_differ": self.replicas_differ}


def check(history: History, finals: dict[str, dict[int, dict[str, list[tuple[int, bytes]]]]],
          leaders: dict[str, str], stable_from_s: float | None) -> Verdict:
    """``finals``: group -> queue -> broker addr -> that replica's final content; ``leaders``:
    group -> the addr whose final content is the truth. Reads are checked for inconsistent
    offsets from ``stable_from_s`` on (None: every read, across every term); earlier reads
    that the final content contradicts are counted in ``read_then_lost``."""
    v = Verdict(acked=history.count("ok"), failed=history.count("fail"), unknown=history.count("unknown"))
    truth: dict[Key, bytes] = {}
    for group, queues in finals.items():
        for q, by_addr in queues.items():
            lead = by_addr[leaders[group]]
            for addr, content in by_addr.items():
                if content != lead:
                    v.replicas_differ.append(f"{group} queue {q}: {addr} has {len(content)} messages, "
                                             f"the leader {len(lead)}")
            for off, body in lead:
                truth[(group, q, off)] = body
                history.saw((group, q, off), body, leaders[group])
    where: dict[bytes, list[Key]] = {}
    for key, body in truth.items():
        where.setdefault(body, []).append(key)
    v.duplicated = [b for b, keys in where.items() if len(keys) > 1]
    for s in history.sends:
        if s.outcome == "ok" and truth.get((s.group, s.queue, s.offset)) != s.body:
            v.lost.append(s)
        elif s.outcome == "unknown" and s.body in where:
            v.unknown_stored += 1
    read_bodies = {b for bodies in history.reads.values() for b in bodies}
    v.aborted_reads = [s for s in history.sends if s.outcome == "fail" and s.body in read_bodies]
    for key, bodies in history.reads.items():
        final = truth.get(key)
        stale = [(b, seen) for b, seen in bodies.items() if b != final]
        if not stale:
            continue
        early = stable_from_s is not None and all(seen.at_s < stable_from_s for _b, seen in stale)
        target = v.read_then_lost if early else v.inconsistent
        target[key] = sorted(bodies.items(), key=lambda item: item[1].at_s)
    return v
