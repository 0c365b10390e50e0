"""A follower: copies every log of its leader into its own store, Kafka-style pull.

The loop: connect, LIST (create the logs it lacks, with the leader's configs), then FETCH all
logs again and again; the leader holds a fetch with nothing new for up to
``fetch_max_wait_ms``. Each response is checked before anything is applied:

- the leader's epoch below the newest this store has seen: a stale leader, refused
  (RELIABILITY.md class 10); above: persisted first (``Store.observe_leader_epoch``);
- a diverging epoch: truncate to min(the leader's end of that epoch, our own end of it), never
  to the high watermark (class 7); the next fetch checks again from there;
- records: whole batches appended with their offsets and epochs (``Log.append_replicated``
  checks CRC, continuity and epochs), flushed first when the log's policy is ``sync`` so that
  the position the next fetch reports is durable here.

The next fetch's offsets are the follower's acknowledgement: the leader's ISR and high
watermark come from them. A store flagged ``may_lead=False`` (recovery cut data) becomes
eligible again once a fetch found every log caught up with the leader's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from logstore.config import LogConfig
from logstore.epochs import UNDEFINED_EPOCH
from logstore.errors import (
    FencedError,
    LogFailedError,
    LogstoreError,
    ProtocolError,
    ReplicationError,
)
from logstore.log import Log
from logstore.replication import protocol as proto
from logstore.replication.transport import Connection, Connector, tcp_connector
from logstore.store import Store

log = logging.getLogger("logstore.replication")

FETCH_MAX_WAIT_MS = 500  # Kafka replica.fetch.wait.max.ms
FETCH_MAX_BYTES = 1024 * 1024  # per response; at least one batch always comes
RETRY_BACKOFF_MS = 200
LIST_INTERVAL_MS = 1000
REQUEST_TIMEOUT_MS = 30_000
RESPONSE_FRAME_BYTES_MAX = 80 * 1024 * 1024  # above the largest fetch a leader sends


class Follower:
    def __init__(
        self, store: Store, leader_host: str = "127.0.0.1", leader_port: int = 0, *, replica_id: int,
        connect: Connector | None = None, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        fetch_max_bytes: int = FETCH_MAX_BYTES, retry_backoff_ms: int = RETRY_BACKOFF_MS,
        list_interval_ms: int = LIST_INTERVAL_MS, request_timeout_ms: int = REQUEST_TIMEOUT_MS,
        replicates: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        # Which of the leader's logs to copy (default: all). A log left out stays the
        # follower's own: e.g. a local index the follower writes itself.
        self.replicates = replicates or (lambda _name: True)
        self.leader = f"{leader_host}:{leader_port}"
        self.replica_id = replica_id
        self._connect = connect or tcp_connector(leader_host, leader_port, RESPONSE_FRAME_BYTES_MAX)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.retry_backoff_ms = retry_backoff_ms
        self.list_interval_ms = list_interval_ms
        self.request_timeout_ms = request_timeout_ms
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._leader_logs: dict[str, proto.LogInfo] = {}
        self._correlation = itertools.count(1)
        self._catalog_version: int | None = None
        self._relist = False
        self.caught_up = False  # the last fetch found every log at the leader's end
        self.last_error: str | None = None
        self.failure: BaseException | None = None  # set when a fail-stopped log stopped the loop
        self.truncations = 0  # divergences resolved by truncating

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"logstore-follower-{self.replica_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("follower %d ended with %r", self.replica_id, task.exception())

    async def __aenter__(self) -> Follower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            conn: Connection | None = None
            try:
                conn = await self._connect()
                await self._session(conn)
            except LogFailedError as exc:
                # A log of ours is fail-stopped (a failed fsync or write): following on would
                # leave a half-alive replica that the leader keeps counting on. Stop, say why;
                # whoever runs the node restarts it (RELIABILITY.md class 11).
                self.failure = exc
                self.caught_up = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("follower %d of %s stops: %s", self.replica_id, self.leader, exc)
                return
            except (ReplicationError, ConnectionError, OSError, TimeoutError, LogstoreError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.caught_up = False
                log.info("follower %d of %s: %s", self.replica_id, self.leader, self.last_error)
            finally:
                if conn is not None:
                    with contextlib.suppress(ConnectionError, OSError):
                        await conn.close()
            await asyncio.sleep(self.retry_backoff_ms / 1000)

    async def _call(self, conn: Connection, request: proto.FetchRequest | proto.ListRequest) -> proto.Message:
        correlation_id = next(self._correlation) & 0xFFFFFFFF
        await conn.send(proto.encode(request, correlation_id))
        wait_ms = self.request_timeout_ms + (request.max_wait_ms if isinstance(request, proto.FetchRequest) else 0)
        # asyncio.timeout, not wait_for: wait_for in 3.11 can swallow a cancellation that
        # races the inner result, and stop() would then wait for a loop that never ends.
        async with asyncio.timeout(wait_ms / 1000):
            frame = await conn.receive()
        message, got = proto.decode(frame)
        if isinstance(message, proto.ErrorResponse):
            raise ReplicationError(f"leader refused a request: {proto.ERROR_NAMES.get(message.error)}: {message.message}")
        if got != correlation_id:
            raise ProtocolError(f"response {got} to request {correlation_id}")
        return message

    async def _session(self, conn: Connection) -> None:
        listed_ms = -1e18
        loop = asyncio.get_running_loop()
        while True:
            if self._relist or (loop.time() * 1000) - listed_ms >= self.list_interval_ms:
                self._relist = False
                await self._list(conn)
                listed_ms = loop.time() * 1000
            await self._fetch_once(conn)

    async def _list(self, conn: Connection) -> None:
        resp = await self._call(conn, proto.ListRequest(self.replica_id, self.store.leader_epoch))
        if not isinstance(resp, proto.ListResponse):
            raise ProtocolError(f"{type(resp).__name__} in answer to LIST")
        if resp.error != proto.NONE:
            raise FencedError(f"leader {self.leader} answered: {proto.ERROR_NAMES.get(resp.error, resp.error)}")
        await self._check_epoch(resp.leader_epoch)
        self._leader_logs = {info.name: info for info in resp.logs if self.replicates(info.name)}
        for info in self._leader_logs.values():
            if info.name not in self.store.logs:  # (the broker may be creating it too: waited for)
                await self.store.get_or_create_log(info.name, LogConfig.from_json(info.config_json),
                                                   start_offset=info.log_start)

    async def _check_epoch(self, leader_epoch: int) -> None:
        if leader_epoch < self.store.leader_epoch:
            raise FencedError(f"stale leader {self.leader}: its epoch {leader_epoch} is older than "
                              f"{self.store.leader_epoch}; its data is refused")
        await self.store.observe_leader_epoch(leader_epoch)

    async def _fetch_once(self, conn: Connection) -> None:
        parts = []
        for name in self._leader_logs:
            lg = self.store.logs.get(name)
            if lg is not None:
                parts.append(proto.FetchPartition(name, lg.end_offset, lg.epochs.last_epoch))
        request = proto.FetchRequest(self.replica_id, self.store.leader_epoch, self.fetch_max_wait_ms,
                                     self.fetch_max_bytes, tuple(parts))
        resp = await self._call(conn, request)
        if not isinstance(resp, proto.FetchResponse):
            raise ProtocolError(f"{type(resp).__name__} in answer to FETCH")
        if resp.error != proto.NONE:
            raise FencedError(f"leader {self.leader} answered: {proto.ERROR_NAMES.get(resp.error, resp.error)}")
        await self._check_epoch(resp.leader_epoch)
        if self._catalog_version is not None and resp.catalog_version != self._catalog_version:
            self._relist = True
        self._catalog_version = resp.catalog_version
        to_flush: list[Log] = []
        caught_up = True
        for data in resp.partitions:
            lg = self.store.logs.get(data.name)
            if lg is None:
                continue
            if not await self._apply(lg, data, to_flush) or lg.end_offset < data.log_end:
                caught_up = False
        if to_flush:  # parallel fdatasyncs: the file system's journal batches them
            await asyncio.gather(*(lg.flush() for lg in to_flush))
        self.caught_up = caught_up
        if caught_up:
            self.last_error = None
            if not self.store.may_lead:
                await self.store.set_may_lead(True)

    async def _apply(self, lg: Log, data: proto.PartitionData, to_flush: list[Log]) -> bool:
        """Apply one log's answer; False when it was an error or a truncation."""
        if data.error == proto.OFFSET_OUT_OF_RANGE and data.log_start > lg.end_offset:
            await self._restart_at(lg, data.log_start)
            return False
        if data.error != proto.NONE:
            self.last_error = f"{lg.name}: {proto.ERROR_NAMES.get(data.error, data.error)}"
            if data.error == proto.UNKNOWN_LOG:
                self._leader_logs.pop(lg.name, None)
                self._relist = True
            return False
        if data.diverging_epoch != UNDEFINED_EPOCH or data.diverging_end_offset >= 0:
            await self._truncate_diverging(lg, data.diverging_epoch, data.diverging_end_offset)
            return False
        if isinstance(data.records, tuple):
            raise ProtocolError("file regions in a decoded response")
        if data.records:
            lg.append_replicated(data.records)
            if lg.is_sync:
                to_flush.append(lg)
        lg.set_high_watermark(data.high_watermark)  # (never past our end)
        return True

    async def _truncate_diverging(self, lg: Log, epoch: int, leader_end: int) -> None:
        """KIP-279: truncate to min(the leader's end of ``epoch``, our own end of the largest
        epoch <= it). A leader that knows no epoch as old as ours (epoch -1) sends its log
        start."""
        target = leader_end
        if epoch != UNDEFINED_EPOCH:
            own_epoch, own_end = lg.epochs.end_offset_for(epoch, lg.end_offset)
            target = min(leader_end, own_end) if own_epoch != UNDEFINED_EPOCH else lg.log_start_offset
        target = max(target, lg.log_start_offset)
        if target >= lg.end_offset and lg.epochs.epoch_at(lg.end_offset) != lg.epochs.epoch_at(lg.end_offset - 1):
            # Our last epoch is one we led without appending (its entry starts at our end):
            # no batch to cut, only the entry, so the next fetch names the epoch of our data.
            lg.epochs.truncate_from_end(lg.end_offset)
            return
        if target >= lg.end_offset:
            raise ReplicationError(f"{lg.name}: leader says epoch {epoch} diverges at {leader_end}, "
                                   f"but our log ends at {lg.end_offset}")
        log.warning("follower %d: log %s diverges from the leader (epoch %d ends at %d there): truncating %d -> %d",
                    self.replica_id, lg.name, epoch, leader_end, lg.end_offset, target)
        await lg.truncate_to(target)
        self.truncations += 1

    async def _restart_at(self, lg: Log, offset: int) -> None:
        """The leader's log starts past our end (retention ran there): start the log anew at
        its start, in place (whoever holds ``lg`` keeps a live log)."""
        log.warning("follower %d: log %s ends at %d, the leader's starts at %d: starting over there",
                    self.replica_id, lg.name, lg.end_offset, offset)
        await lg.truncate_fully_and_start_at(offset)
        self.truncations += 1
