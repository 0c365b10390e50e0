"""Consumer offsets per (group, topic, queue) in ``config/consumerOffset.json``.

Offsets only move forward (a commit below the stored offset is ignored) unless an admin resets
them. A commit changes the table in memory; one writer task saves the whole table atomically (in
a worker thread) at least every ``flush_interval_s`` (RocketMQ's flushConsumerOffsetInterval,
5 s) while it has changes, at once when someone waits for durability, and on close. So:

* a commit piggybacked on a pull (``advance``, and ``commit(..., durable=False)``) costs a dict
  update: a consumer commits on every pull, and saving the table for each would cost a file
  write per pull. A crash loses at most the last ``flush_interval_s`` of them (the consumer then
  re-consumes from the older offset: at-least-once, as RocketMQ);
* ``commit(..., durable=True)`` (an explicit UPDATE_CONSUMER_OFFSET), ``reset`` and
  ``delete_topic`` return once a save that includes them is done. Waiters are group-committed:
  one save covers everyone who changed the table before it began;
* ``close`` (a graceful stop) saves what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from adapters.rocket.aio import wait_event

from .persist import JsonFile

log = logging.getLogger(__name__)

KEY_SEPARATOR = "@"  # RocketMQ keys the table "topic@group"
FLUSH_INTERVAL_S = 5.0  # RocketMQ's flushConsumerOffsetInterval default


class ConsumerOffsetManager:
    def __init__(self, file: JsonFile, run_blocking: Callable[[Callable[[], None]], Any], *,
                 flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        self.file = file
        self.flush_interval_s = flush_interval_s
        self._run_blocking = run_blocking
        doc = file.load()
        self.table: dict[str, dict[int, int]] = {
            key: {int(q): int(o) for q, o in queues.items()}
            for key, queues in (doc.get("offsetTable") or {}).items()
        }
        self._version = 0  # bumped by every change
        self._saved_version = 0
        self._saved = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._saving: asyncio.Future[Any] | None = None  # the save running in a worker thread
        self.saves = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="consumer-offset-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._saving is not None:
            # Cancelling the writer does not stop its worker thread: let that save finish
            # before writing the same tmp file here (else one rename finds no tmp file).
            with contextlib.suppress(OSError):
                await self._saving
            self._saving = None
        if self.dirty:
            self.file.save(self._snapshot())
            self._saved_version = self._version

    # -- queries ---------------------------------------------------------------------------------

    def query(self, group: str, topic: str, queue_id: int) -> int | None:
        return self.table.get(f"{topic}{KEY_SEPARATOR}{group}", {}).get(queue_id)

    def groups_of_topic(self, topic: str) -> list[str]:
        return sorted(k.split(KEY_SEPARATOR, 1)[1] for k in self.table if k.split(KEY_SEPARATOR, 1)[0] == topic)

    def topics_of_group(self, group: str) -> list[str]:
        return sorted(k.split(KEY_SEPARATOR, 1)[0] for k in self.table if k.split(KEY_SEPARATOR, 1)[1] == group)

    def offsets(self, group: str, topic: str) -> dict[int, int]:
        return dict(self.table.get(f"{topic}{KEY_SEPARATOR}{group}", {}))

    # -- changes -----------------------------------------------------------------------------------

    def advance(self, group: str, topic: str, queue_id: int, offset: int) -> bool:
        """Move the offset forward (never backwards) in memory; saved within the flush
        interval. Returns whether it moved."""
        queues = self.table.get(key := f"{topic}{KEY_SEPARATOR}{group}")
        if queues is None:
            queues = self.table[key] = {}
        if offset <= queues.get(queue_id, -1):
            return False
        queues[queue_id] = offset
        self._version += 1
        return True

    async def commit(self, group: str, topic: str, queue_id: int, offset: int, *, durable: bool) -> bool:
        """``advance``; with ``durable``, return once it is saved. Returns whether it moved."""
        moved = self.advance(group, topic, queue_id, offset)
        if durable:
            await self.wait_saved()
        return moved

    async def reset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """Admin reset: may move backwards. Durable when it returns."""
        self.table.setdefault(f"{topic}{KEY_SEPARATOR}{group}", {})[queue_id] = offset
        self._changed()
        await self.wait_saved()

    async def delete_topic(self, topic: str) -> None:
        for key in [k for k in self.table if k.split(KEY_SEPARATOR, 1)[0] == topic]:
            del self.table[key]
        self._changed()
        await self.wait_saved()

    async def adopt(self, table: dict[str, dict[int, int]]) -> None:
        """A slave takes its master's offsets, ``topic@group`` by ``topic@group`` (RocketMQ's
        putAll): what consumers committed here while the master was away is overwritten for the
        keys the master has. Saved by the writer, not waited for."""
        changed = False
        for key, queues in table.items():
            if self.table.get(key) != queues:
                self.table[key] = dict(queues)
                changed = True
        if changed:
            self._changed()

    def wrapper(self) -> dict[str, Any]:
        """RocketMQ's ConsumerOffsetSerializeWrapper (GET_ALL_CONSUMER_OFFSET); RocketMQ 5 slaves
        also read its dataVersion."""
        return {**self._snapshot(), "dataVersion": {"stateVersion": 0, "timestamp": int(time.time() * 1000),
                                                    "counter": self._version}}

    def _changed(self) -> None:
        self._version += 1
        self._wake.set()

    @property
    def dirty(self) -> bool:
        """Changes not saved yet."""
        return self._saved_version != self._version

    async def wait_saved(self) -> None:
        """Return once every change made before this call is saved (asking for a save now)."""
        target = self._version
        while self._saved_version < target:
            if self._task is None or self._task.done():
                raise RuntimeError("consumer offset writer is not running")
            self._wake.set()
            await self._saved.wait()

    # -- writer ------------------------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        return {"offsetTable": {k: {str(q): o for q, o in sorted(v.items())} for k, v in self.table.items()}}

    async def _writer(self) -> None:
        while True:
            await wait_event(self._wake, self.flush_interval_s)
            self._wake.clear()
            version = self._version
            if version == self._saved_version:
                continue
            snapshot = self._snapshot()
            try:
                self._saving = self._run_blocking(lambda s=snapshot: self.file.save(s))  # type: ignore[misc]
                await asyncio.shield(self._saving)
            except OSError:
                log.exception("saving consumer offsets failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            self.saves += 1
            self._saved_version = version
            saved, self._saved = self._saved, asyncio.Event()
            saved.set()
