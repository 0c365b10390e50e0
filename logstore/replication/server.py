"""The leader's replica server (the broker's haListenPort): answers LIST and FETCH requests.

One request at a time per connection, any number of connections. A fetch with nothing new is
held up to ``max_wait_ms`` (capped by ``fetch_wait_max_ms``) and woken by a commit on any log
it names. A malformed frame gets an ERROR_RESPONSE and the connection is closed; the server
goes on serving every other follower and never touches the store for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from logstore.epochs import UNDEFINED_EPOCH
from logstore.errors import LogstoreError, ProtocolError
from logstore.log import Log
from logstore.replication import protocol as proto
from logstore.replication.leader import LeaderState, monotonic_ms
from logstore.replication.transport import Connection, ConnectionClosed, StreamConnection
from logstore.store import Store

log = logging.getLogger("logstore.replication")

RESPONSE_BYTES_MAX = 10 * 1024 * 1024  # Kafka replica.fetch.response.max.bytes
FETCH_WAIT_MAX_MS = 5_000
CONNECTIONS_MAX = 256
LAG_CHECK_INTERVAL_MS = 100


class ReplicaServer:
    """Serve followers of ``store`` on ``host:port`` (port 0: a free one, see ``port``)."""

    def __init__(
        self, store: Store, host: str = "127.0.0.1", port: int = 0, *, replica_id: int = 0,
        lag_time_max_ms: int = 10_000, request_bytes_max: int = proto.REQUEST_BYTES_MAX,
        response_bytes_max: int = RESPONSE_BYTES_MAX, fetch_wait_max_ms: int = FETCH_WAIT_MAX_MS,
        connections_max: int = CONNECTIONS_MAX, now_ms: Callable[[], float] = monotonic_ms,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.request_bytes_max = request_bytes_max
        self.response_bytes_max = response_bytes_max
        self.fetch_wait_max_ms = fetch_wait_max_ms
        self.connections_max = connections_max
        # on_fenced: called once when a follower shows a newer leader epoch (the broker steps
        # down: stop taking writes, follow the new leader). Not called by stop().
        self.state = LeaderState(store, replica_id=replica_id, lag_time_max_ms=lag_time_max_ms, now_ms=now_ms,
                                 on_fenced=on_fenced)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lag_task: asyncio.Task[None] | None = None
        self.malformed_frames = 0  # requests refused as malformed (for tests and metrics)
        self._sendfile_bytes_closed = 0
        self._conns: set[StreamConnection] = set()
        # (follower, log) -> the high watermark last sent; bounded by followers x logs.
        self._hw_sent: dict[tuple[int, str], int] = {}

    # -- the leader state, for the broker --------------------------------------------------------

    def high_watermark(self, log_name: str) -> int:
        return self.state.high_watermark(log_name)

    def isr(self, log_name: str) -> set[int]:
        return self.state.isr(log_name)

    async def wait_replicated(self, log_name: str, end_offset: int, *, min_insync: int = 2, timeout: float = 3.0) -> bool:
        return await self.state.wait_replicated(log_name, end_offset, min_insync=min_insync, timeout=timeout)

    @property
    def sendfile_bytes(self) -> int:
        """Record bytes sent by sendfile over TCP (the rest were copied)."""
        return self._sendfile_bytes_closed + sum(c.sendfile_bytes for c in self._conns)

    @property
    def fenced(self) -> bool:
        return self.state.fenced

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on TCP and start the ISR lag check."""
        self.start_background()
        self._server = await asyncio.start_server(self._on_tcp, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def start_background(self) -> None:
        """Only the ISR lag check (a transport other than TCP calls :meth:`serve_connection`)."""
        if self._lag_task is None:
            self._lag_task = asyncio.create_task(self._check_lag_forever(), name="logstore-isr-lag")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = {*self._tasks, *([self._lag_task] if self._lag_task else [])}
        while tasks:
            for t in tasks:
                t.cancel()
            _done, tasks = await asyncio.wait(tasks, timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._lag_task = None
        self.state.on_fenced = None
        self.state.fence()  # nothing waits on a server that is gone

    async def __aenter__(self) -> ReplicaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _check_lag_forever(self) -> None:
        while True:
            await asyncio.sleep(min(LAG_CHECK_INTERVAL_MS, self.state.lag_time_max_ms / 4) / 1000)
            self.state.check_lag()

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = StreamConnection(reader, writer, self.request_bytes_max)
        if len(self._tasks) >= self.connections_max:
            await conn.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._conns.add(conn)
        try:
            await self.serve_connection(conn)
        except asyncio.CancelledError:
            pass  # stop(): asyncio's stream callback would log a cancelled task as an error
        finally:
            self._tasks.discard(task)
            self._conns.discard(conn)
            self._sendfile_bytes_closed += conn.sendfile_bytes

    # -- serving ------------------------------------------------------------------------------------

    async def serve_connection(self, conn: Connection) -> None:
        """Answer requests on ``conn`` until it closes or sends a malformed frame."""
        try:
            while True:
                try:
                    frame = await conn.receive()
                    message, correlation_id = proto.decode(frame)
                    if not isinstance(message, proto.FetchRequest | proto.ListRequest):
                        raise ProtocolError(f"{type(message).__name__} is not a request")
                except ProtocolError as exc:
                    self.malformed_frames += 1
                    log.warning("replica connection %s: %s", conn.peer, exc)
                    with contextlib.suppress(ConnectionError, OSError):
                        await conn.send(proto.encode(proto.ErrorResponse(proto.MALFORMED, str(exc)), 0))
                    return
                response: proto.Message
                if isinstance(message, proto.ListRequest):
                    response = self.list_logs(message)
                else:
                    response = await self.fetch(message)
                await conn.send(proto.encode(response, correlation_id))
        except (ConnectionClosed, ConnectionError, OSError):
            return
        except LogstoreError as exc:  # e.g. a log deleted under a fetch: this follower retries
            log.warning("replica connection %s: %s", conn.peer, exc)
            return
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await conn.close()

    def _fence_if_newer(self, replica_id: int, follower_epoch: int) -> None:
        epoch = self.store.leader_epoch
        if follower_epoch > epoch and not self.state.fenced:
            log.warning("follower %d knows leader epoch %d > ours %d: fenced", replica_id, follower_epoch, epoch)
            self.state.fence()

    def list_logs(self, request: proto.ListRequest) -> proto.ListResponse:
        self._fence_if_newer(request.replica_id, request.leader_epoch)
        if self.state.fenced:
            epoch = self.store.leader_epoch
            return proto.ListResponse(proto.STALE_LEADER if request.leader_epoch > epoch else proto.NOT_LEADER, epoch)
        resp = proto.ListResponse(proto.NONE, self.store.leader_epoch)
        for name, lg in sorted(self.store.logs.items()):
            resp.logs.append(proto.LogInfo(name, lg.config.to_json(), lg.log_start_offset, lg.committed_offset))
        return resp

    async def fetch(self, request: proto.FetchRequest) -> proto.FetchResponse:
        """Answer one FETCH: the epoch fence, then per log the divergence check, the range
        check, the follower's position, then data (long-polling when there is none)."""
        epoch = self.store.leader_epoch
        self._fence_if_newer(request.replica_id, request.leader_epoch)
        if self.state.fenced:
            return proto.FetchResponse(proto.STALE_LEADER if request.leader_epoch > epoch else proto.NOT_LEADER, epoch)
        checked: list[tuple[proto.FetchPartition, Log | None, proto.PartitionData]] = []
        for part in request.partitions:
            lg, data = self._check_partition(request.replica_id, part)
            checked.append((part, lg, data))
        if request.max_wait_ms > 0 and all(lg is not None and d.error == proto.NONE and d.diverging_epoch == UNDEFINED_EPOCH
                                           and p.fetch_offset >= lg.committed_offset
                                           and not self._high_watermark_news(request.replica_id, lg)
                                           for p, lg, d in checked):
            await self._long_poll([lg for _p, lg, _d in checked if lg is not None], request.max_wait_ms)
        resp = proto.FetchResponse(proto.NONE, epoch, catalog_version=self.store.catalog_version)
        budget = min(request.max_bytes, self.response_bytes_max)
        for part, lg, data in checked:
            if lg is not None and self.store.logs.get(lg.name) is not lg:  # deleted while we waited
                data.error, lg = proto.UNKNOWN_LOG, None
            if lg is not None and data.error == proto.NONE and data.diverging_epoch == UNDEFINED_EPOCH:
                budget -= self._read_into(lg, part.fetch_offset, budget, data)
                data.high_watermark = self.state.high_watermark(lg.name)
                self._hw_sent[(request.replica_id, lg.name)] = data.high_watermark
                data.log_start, data.log_end = lg.log_start_offset, lg.committed_offset
            resp.partitions.append(data)
        return resp

    def _high_watermark_news(self, replica_id: int, lg: Log) -> bool:
        """The log's high watermark moved past what this follower was last told (its own fetch
        may just have moved it): answer now, not after the long poll. The follower's readers
        see up to the high watermark it knows (Kafka completes such fetches at once too)."""
        return self.state.high_watermark(lg.name) > self._hw_sent.get((replica_id, lg.name), -1)

    def _check_partition(self, replica_id: int, part: proto.FetchPartition) -> tuple[Log | None, proto.PartitionData]:
        data = proto.PartitionData(part.name)
        lg = self.store.logs.get(part.name)
        if lg is None:
            data.error = proto.UNKNOWN_LOG
            return None, data
        data.high_watermark, data.log_start, data.log_end = lg.high_watermark, lg.log_start_offset, lg.committed_offset
        if lg.failure is not None:
            data.error = proto.LOG_FAILED
            return None, data
        offset = part.fetch_offset
        if part.last_fetched_epoch >= 0 and offset > lg.log_start_offset:
            div_epoch, div_end = lg.epochs.end_offset_for(part.last_fetched_epoch, lg.committed_offset)
            if div_epoch == UNDEFINED_EPOCH:
                div_end = lg.log_start_offset
            # Past the end of the leader's latest epoch is not a divergence to truncate by: the
            # leader lost data the follower has. Refused below, never propagated (class 5, 9).
            ends_here = div_epoch == lg.epochs.last_epoch
            if div_epoch < part.last_fetched_epoch or (div_end < offset and not ends_here):
                data.diverging_epoch, data.diverging_end_offset = div_epoch, div_end
                return lg, data
        if offset > lg.committed_offset:
            data.error = proto.OFFSET_BEYOND_END
            log.warning("follower %d fetches %s from %d beyond our end %d: refused",
                        replica_id, lg.name, offset, lg.committed_offset)
            return None, data
        if offset < lg.log_start_offset:
            data.error = proto.OFFSET_OUT_OF_RANGE
            return None, data
        self.state.record_fetch(lg, replica_id, offset)
        return lg, data

    async def _long_poll(self, logs: list[Log], max_wait_ms: int) -> None:
        event = asyncio.Event()
        for lg in logs:
            lg.add_watcher(event)
        try:
            async with asyncio.timeout(min(max_wait_ms, self.fetch_wait_max_ms) / 1000):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            for lg in logs:
                lg.remove_watcher(event)

    def _read_into(self, lg: Log, offset: int, budget: int, data: proto.PartitionData) -> int:
        if budget <= 0 or offset >= lg.committed_offset:
            return 0
        try:
            result = lg.read(offset, budget)
        except LogstoreError:  # moved under us (retention): the next fetch says why
            return 0
        data.records = result.regions  # sent with sendfile where the transport can
        return data.records_bytes
