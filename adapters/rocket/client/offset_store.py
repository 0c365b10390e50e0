"""Where a consumer group's progress lives.

- ``RemoteBrokerOffsetStore`` (CLUSTERING): the broker owning the queue keeps the group's offset
  (QUERY_CONSUMER_OFFSET / UPDATE_CONSUMER_OFFSET); every consumer of the group sees it. That is
  the master of the queue's group, or a slave while the master is away (RocketMQ: the slave
  keeps such commits in memory until the master's offsets overwrite them).
- ``LocalFileOffsetStore`` (BROADCASTING): each consumer keeps its own, in
  ``<dir>/<clientId>/<group>/offsets.json`` (default ``~/.rocketmq_offsets``, or the
  ``ROCKETMQ_OFFSETS_DIR`` environment variable), written to a temporary file, fsynced and
  renamed, so a crash leaves the old or the new file, never half of one.

Offsets in memory only move forward (``increase_only``) unless a seek or reset says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import orjson

from ..remoting import RemotingError
from .common import MessageQueue
from .instance import MQClientInstance

log = logging.getLogger(__name__)

NOT_FOUND = -1  # the store has no offset for this queue (a new group)
READ_FAILED = -2  # the store could not be asked; try again on the next rebalance


class OffsetStore(Protocol):
    async def load(self) -> None: ...

    def update_offset(self, mq: MessageQueue, offset: int, increase_only: bool) -> None: ...

    async def read_offset(self, mq: MessageQueue, from_store: bool) -> int: ...

    async def persist_all(self, mqs: Iterable[MessageQueue]) -> None: ...

    async def persist(self, mq: MessageQueue) -> None: ...

    def remove_offset(self, mq: MessageQueue) -> None: ...


class _MemoryTable:
    def __init__(self) -> None:
        self.offset_table: dict[MessageQueue, int] = {}

    def update_offset(self, mq: MessageQueue, offset: int, increase_only: bool) -> None:
        current = self.offset_table.get(mq)
        if current is None or not increase_only or offset > current:
            self.offset_table[mq] = offset

    def remove_offset(self, mq: MessageQueue) -> None:
        self.offset_table.pop(mq, None)


class RemoteBrokerOffsetStore(_MemoryTable):
    def __init__(self, instance: MQClientInstance, group: str) -> None:
        super().__init__()
        self.instance = instance
        self.group = group

    async def load(self) -> None:
        return None

    async def read_offset(self, mq: MessageQueue, from_store: bool) -> int:
        if not from_store:
            return self.offset_table.get(mq, NOT_FOUND)
        addr = ""
        try:
            addr = (await self.instance.find_broker_addr_for_read(mq)).broker_addr
            offset = await self.instance.api.query_consumer_offset(addr, self.group, mq)
        except Exception as exc:
            await self._failed(addr, mq, exc)
            log.warning("cannot read the offset of %s for %s: %s", mq, self.group, exc)
            return READ_FAILED
        if offset is None:
            return NOT_FOUND
        self.update_offset(mq, offset, increase_only=False)
        return offset

    async def persist(self, mq: MessageQueue) -> None:
        offset = self.offset_table.get(mq)
        if offset is None or offset < 0:
            return
        addr = ""
        try:
            addr = (await self.instance.find_broker_addr_for_read(mq)).broker_addr
            await self.instance.api.update_consumer_offset(addr, self.group, mq, offset)
        except Exception as exc:
            await self._failed(addr, mq, exc)
            log.warning("cannot commit offset %d of %s for %s: %s", offset, mq, self.group, exc)

    async def persist_all(self, mqs: Iterable[MessageQueue]) -> None:
        for mq in sorted(set(mqs) & set(self.offset_table)):
            await self.persist(mq)

    async def _failed(self, addr: str, mq: MessageQueue, exc: Exception) -> None:
        if addr and isinstance(exc, RemotingError):
            await self.instance.broker_unreachable(addr, mq.topic)


def default_offsets_dir() -> Path:
    env = os.environ.get("ROCKETMQ_OFFSETS_DIR")
    return Path(env) if env else Path.home() / ".rocketmq_offsets"


class LocalFileOffsetStore(_MemoryTable):
    FILE_NAME = "offsets.json"

    def __init__(self, client_id: str, group: str, offsets_dir: Path | str | None = None) -> None:
        super().__init__()
        root = Path(offsets_dir) if offsets_dir is not None else default_offsets_dir()
        self.path = root / client_id.replace(":", "_") / group / self.FILE_NAME

    async def load(self) -> None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"offset file {self.path} is damaged: {exc}") from exc
        for key, offset in (data.get("offsetTable") or {}).items():
            self.offset_table[MessageQueue.from_key(key)] = int(offset)

    async def read_offset(self, mq: MessageQueue, from_store: bool) -> int:
        # The file is ours alone: memory holds what was loaded from it, or something newer.
        return self.offset_table.get(mq, NOT_FOUND)

    async def persist(self, mq: MessageQueue) -> None:
        await self.persist_all([mq])

    async def persist_all(self, mqs: Iterable[MessageQueue]) -> None:
        if not self.offset_table:
            return
        table = {mq.key: off for mq, off in sorted(self.offset_table.items()) if off >= 0}
        data = orjson.dumps({"offsetTable": table}, option=orjson.OPT_INDENT_2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
