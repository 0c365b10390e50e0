"""Queues on logstore: each (topic, queueId) is one log named ``<topic>.<queueId>`` (a dot
never occurs in a topic name), queue offset = log offset.

Commit log offsets (the PHYSICALOFFSET of a stored message, carried by the offset message id)
encode the queue and the offset: ``queue_log_id << 40 | queue_offset``. Queue log ids come from
``config/queueIds.json``, are saved before their log is created, and are never reused (an old
message id cannot name a message of a topic created later). A slave takes its master's ids
(:meth:`QueueStore.adopt_ids`, with the topic configs): the messages it copies carry commit log
offsets made with them, so message ids, CONSUMER_SEND_MSG_BACK and query by key must resolve the
same on the slave and, once promoted, on the new master.
"""

from __future__ import annotations

import asyncio

from logstore import Log, LogConfig, Store

from .persist import JsonFile

QUEUE_OFFSET_BITS = 40
QUEUE_OFFSET_MASK = (1 << QUEUE_OFFSET_BITS) - 1
QUEUE_LOG_ID_MAX = (1 << (63 - QUEUE_OFFSET_BITS)) - 1


def queue_log_name(topic: str, queue_id: int) -> str:
    return f"{topic}.{queue_id}"


def split_queue_log_name(name: str) -> tuple[str, int] | None:
    topic, dot, qid = name.rpartition(".")
    if not dot or not topic or not qid.isdigit() or "." in topic:
        return None
    return topic, int(qid)


def encode_commitlog_offset(log_id: int, queue_offset: int) -> int:
    return (log_id << QUEUE_OFFSET_BITS) | queue_offset


def decode_commitlog_offset(phys: int) -> tuple[int, int]:
    return phys >> QUEUE_OFFSET_BITS, phys & QUEUE_OFFSET_MASK


class QueueStore:
    def __init__(self, store: Store, ids_file: JsonFile, log_config: LogConfig) -> None:
        self.store = store
        self.log_config = log_config
        self._ids_file = ids_file
        doc = ids_file.load()
        self._next_id = int(doc.get("next", 1))
        self._ids: dict[str, int] = {k: int(v) for k, v in (doc.get("ids") or {}).items()}
        self._names: dict[int, str] = {v: k for k, v in self._ids.items()}
        self._create_lock = asyncio.Lock()
        self._logs: dict[tuple[str, int], tuple[Log, int]] = {}
        for name, log_id in self._ids.items():
            parsed = split_queue_log_name(name)
            if parsed is not None and name in store.logs:
                self._logs[parsed] = (store.logs[name], log_id)

    def get(self, topic: str, queue_id: int) -> tuple[Log, int] | None:
        """(log, queue log id) or None if the queue has no log yet."""
        return self._logs.get((topic, queue_id))

    async def get_or_create(self, topic: str, queue_id: int) -> tuple[Log, int]:
        found = self._logs.get((topic, queue_id))
        if found is not None:
            return found
        async with self._create_lock:
            found = self._logs.get((topic, queue_id))
            if found is not None:
                return found
            name = queue_log_name(topic, queue_id)
            log_id = self._ids.get(name)
            if log_id is None:
                log_id = self._next_id
                if log_id > QUEUE_LOG_ID_MAX:
                    raise RuntimeError("queue log ids exhausted")
                self._next_id += 1
                self._ids[name] = log_id
                self._names[log_id] = name
                snapshot = {"next": self._next_id, "ids": dict(self._ids)}
                await self.store.run_blocking(lambda: self._ids_file.save(snapshot))
            log = await self.store.get_or_create_log(name, self.log_config)
            self._logs[(topic, queue_id)] = (log, log_id)
            return log, log_id

    def ids_json(self) -> dict[str, object]:
        return {"next": self._next_id, "ids": dict(self._ids)}

    async def adopt_ids(self, ids: dict[str, int], next_id: int) -> bool:
        """Take the master's queue log ids. A local id the master does not know keeps its
        queue but gets a fresh id if the master uses it for another. Whether anything changed."""
        async with self._create_lock:
            merged = dict(ids)
            taken = set(merged.values())
            fresh = max([next_id, self._next_id, *(i + 1 for i in taken)])
            for name, log_id in self._ids.items():
                if name not in merged:
                    if log_id in taken:
                        log_id, fresh = fresh, fresh + 1
                    merged[name] = log_id
                    taken.add(log_id)
            if merged == self._ids and fresh == self._next_id:
                return False
            self._ids, self._next_id = merged, fresh
            self._names = {v: k for k, v in merged.items()}
            for key, (log, _old) in list(self._logs.items()):
                self._logs[key] = (log, merged[queue_log_name(*key)])
            snapshot = {"next": self._next_id, "ids": dict(self._ids)}
            await self.store.run_blocking(lambda: self._ids_file.save(snapshot))
            return True

    def by_commitlog_offset(self, phys: int) -> tuple[str, int, Log, int] | None:
        """(topic, queue id, log, queue offset) for a commit log offset, or None."""
        log_id, offset = decode_commitlog_offset(phys)
        name = self._names.get(log_id)
        parsed = split_queue_log_name(name) if name else None
        if parsed is None:
            return None
        found = self._logs.get(parsed)
        if found is None or found[1] != log_id:
            return None
        return parsed[0], parsed[1], found[0], offset

    def queues_of(self, topic: str) -> list[tuple[int, Log, int]]:
        return sorted((qid, log, lid) for (t, qid), (log, lid) in self._logs.items() if t == topic)

    def all_queues(self) -> list[tuple[str, int, Log, int]]:
        return [(t, q, log, lid) for (t, q), (log, lid) in sorted(self._logs.items())]

    async def delete_topic(self, topic: str) -> int:
        """Delete every queue log of ``topic``; their ids stay retired."""
        removed = 0
        for qid, _log, _lid in self.queues_of(topic):
            name = queue_log_name(topic, qid)
            del self._logs[(topic, qid)]
            if name in self.store.logs:
                await self.store.delete_log(name)
            self._names.pop(self._ids.pop(name), None)
            removed += 1
        if removed:
            snapshot = {"next": self._next_id, "ids": dict(self._ids)}
            await self.store.run_blocking(lambda: self._ids_file.save(snapshot))
        return removed
