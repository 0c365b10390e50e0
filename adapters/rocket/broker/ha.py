"""Data replication of a master/slave broker group, over the storage engine's replication
(``logstore.replication``): the only module of the broker that touches it.

Roles (broker.conf ``brokerRole``):

* master (ASYNC_MASTER, SYNC_MASTER): a ``ReplicaServer`` on ``haListenPort`` serves the store's
  logs to the group's slaves. ASYNC_MASTER acknowledges a send after the local append;
  SYNC_MASTER waits, after the local append (and flush), until the in-sync slaves have the
  message too, up to syncFlushTimeout: FLUSH_SLAVE_TIMEOUT when that passes, SLAVE_NOT_AVAILABLE
  at once when no slave is in sync (RocketMQ's CommitLog.handleHA; either way the message is
  stored on the master).
* slave: a ``Follower`` copies the master's logs into the local store and truncates a divergent
  tail by leader epoch (the engine's job: a demoted old master restarted as a slave loses what
  the new master never had). The master's HA address is ``haMasterAddress`` or, as RocketMQ
  slaves learn it, the haServerAddr in the name server's REGISTER_BROKER answer.
* promotion (``logstore admin promoteSlave``): stop following, bump the leader epoch, serve.

What consumers may read (``readable_end``): a SYNC_MASTER and every slave serve a queue only up
to its high watermark, what every in-sync replica has (a slave knows the master's from its last
fetch). Past it a message may still vanish in a failover, and a read of it would show an offset
that later holds another message (Kafka's rule; RocketMQ 5's confirmOffset in controller mode).
An ASYNC_MASTER serves everything it stored: it acknowledged that without the slaves anyway.

Every log is replicated except the broker's local ones (names starting with "."; the key
index, which each broker builds from the messages it has).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import TYPE_CHECKING

from adapters.rocket.remoting import ResponseCode
from logstore.replication import Follower, LeaderState, ReplicaServer, promote

from .config import SYNC_MASTER

if TYPE_CHECKING:
    from logstore import Log

    from .broker import Broker
    from .config import BrokerConfig

log = logging.getLogger(__name__)

MIN_INSYNC_SYNC_MASTER = 2  # the master and at least one slave (RocketMQ: inSyncReplicas 2)


def replicated(log_name: str) -> bool:
    """Whether a slave copies this log: all but the broker's local ones (".keyindex")."""
    return not log_name.startswith(".")


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


class HAService:
    """The broker's side of replication: serve (master) or follow (slave), and SYNC_MASTER waits."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.server: ReplicaServer | None = None  # while master
        self.follower: Follower | None = None  # while slave
        self.leader_addr: str | None = None  # the HA address followed
        self.learnt_master_ha_addr: str | None = None  # the last haServerAddr the name server named
        self.sync_waits = self.sync_timeouts = self.slave_not_available = 0

    @property
    def config(self) -> BrokerConfig:
        return self.broker.config

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.is_slave:
            if self.config.ha_master_address:
                await self.follow(self.config.ha_master_address)
            # else: the first REGISTER_BROKER answer names the master (Registrar -> learn_master)
        else:
            await self.serve()

    async def close(self) -> None:
        await self.stop_following()
        await self._stop_serving()

    async def serve(self) -> None:
        """Master: serve the store's logs to slaves on haListenPort."""
        if self.server is not None:
            return
        host = self.broker.server.host
        try:
            server = await self._start_server(host, self.config.ha_port)
        except OSError as exc:
            if self.config.ha_listen_port or exc.errno != errno.EADDRINUSE:
                raise
            # haListenPort was not set and listenPort + 1 is taken (a broker on a free port):
            # take any free port; registrations announce it as haServerAddr.
            log.warning("HA port %d is in use (%s); serving slaves on a free port", self.config.ha_port, exc)
            server = await self._start_server(host, 0)
            self.config.ha_listen_port = server.port
        self.server = server
        log.info("replicating to slaves on %s:%d", host, self.config.ha_port)

    async def _start_server(self, host: str, port: int) -> ReplicaServer:
        server = ReplicaServer(self.broker.store, host, port,
                               replica_id=self.config.broker_id, lag_time_max_ms=self.config.ha_lag_time_max_ms)
        await server.start()
        return server

    async def _stop_serving(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def follow(self, ha_addr: str) -> None:
        """Slave: copy the logs of the master at ``ha_addr`` (a change of master restarts it)."""
        if not self.config.is_slave:
            return
        if self.follower is not None and self.leader_addr == ha_addr:
            return
        await self.stop_following()
        host, port = split_addr(ha_addr)
        follower = Follower(self.broker.store, host, port, replica_id=self.config.broker_id, replicates=replicated)
        await follower.start()
        self.follower, self.leader_addr = follower, ha_addr
        log.info("following master %s (replica id %d)", ha_addr, self.config.broker_id)

    async def stop_following(self) -> None:
        follower, self.follower = self.follower, None
        if follower is not None:
            await follower.stop()
            log.info("stopped following %s", self.leader_addr)

    async def learn_master(self, ha_addr: str | None) -> None:
        """The name server named the group's master HA address (slaves only)."""
        if ha_addr and self.config.is_slave:
            self.learnt_master_ha_addr = ha_addr
            if not self.config.ha_master_address:
                await self.follow(ha_addr)

    async def promote(self, *, force: bool = False) -> int:
        """Become the group's leader: stop following, bump the leader epoch (persisted before
        it takes effect: the old master's late writes are refused by every replica that saw
        it), serve. Returns the new epoch. ``force``: even if the store may not lead."""
        await self.stop_following()
        self.leader_addr = None
        epoch = await promote(self.broker.store, force=force)
        await self.serve()
        return epoch

    # -- SYNC_MASTER ---------------------------------------------------------------------------------

    def _leader_state(self) -> LeaderState | None:
        return None if self.server is None else self.server.state

    def in_sync_slaves(self, log_name: str) -> int:
        state = self._leader_state()
        if state is None:
            return 0
        return max(0, len(state.isr(log_name)) - 1)  # the ISR counts the master itself

    async def wait_slaves(self, log_name: str, end_offset: int) -> tuple[int, str | None]:
        """After a local append ending at ``end_offset`` on a SYNC_MASTER: (response code, remark)."""
        if self.config.broker_role != SYNC_MASTER:
            return ResponseCode.SUCCESS, None
        state = self._leader_state()
        if state is None or self.in_sync_slaves(log_name) < 1:
            self.slave_not_available += 1
            return ResponseCode.SLAVE_NOT_AVAILABLE, "slave not available"
        self.sync_waits += 1
        ok = await state.wait_replicated(log_name, end_offset, min_insync=MIN_INSYNC_SYNC_MASTER,
                                         timeout=self.config.sync_flush_timeout / 1000)
        if not ok:
            self.sync_timeouts += 1
            return ResponseCode.FLUSH_SLAVE_TIMEOUT, "wait for slave timeout"
        return ResponseCode.SUCCESS, None

    async def wait_slaves_inner(self, log_name: str, end_offset: int) -> None:
        """The same wait for a message the broker wrote itself (a scheduled message delivered,
        a retry, a committed transaction message): what follows it (the delay progress, the
        consumer's offset past a sendback, the op record) does not outrun the slaves. Nobody
        is answered with the outcome: on a timeout the message stays stored on the master and
        the broker goes on (RocketMQ retries the put, storing it twice)."""
        code, remark = await self.wait_slaves(log_name, end_offset)
        if code != ResponseCode.SUCCESS:
            log.debug("inner put to %s (end %d) on the master only: %s", log_name, end_offset, remark)

    # -- reads ---------------------------------------------------------------------------------------

    def bounds_reads(self) -> bool:
        """Whether consumers read only up to the high watermark (SYNC_MASTER, slave)."""
        return self.config.is_slave or self.config.broker_role == SYNC_MASTER

    def readable_end(self, qlog: Log) -> int:
        """The end of what a consumer may read of ``qlog`` (exclusive)."""
        if self.config.is_slave:
            return min(qlog.high_watermark, qlog.committed_offset)
        if self.config.broker_role == SYNC_MASTER and self.server is not None:
            return min(self.server.high_watermark(qlog.name), qlog.committed_offset)
        return qlog.committed_offset

    async def wait_readable(self, qlog: Log, offset: int, timeout_s: float) -> bool:
        """Wait until the message at ``offset`` is readable (``readable_end``) or the timeout
        passes; whether it is. Woken by every commit, truncation and high-watermark move."""
        if not self.bounds_reads():
            return await qlog.wait_for(offset, timeout_s)
        event = asyncio.Event()
        qlog.add_watcher(event)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    event.clear()
                    if self.readable_end(qlog) > offset:
                        return True
                    await event.wait()
        except TimeoutError:
            return self.readable_end(qlog) > offset
        finally:
            qlog.remove_watcher(event)

    # -- views -------------------------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        cfg = self.config
        doc = {
            "haLeaderEpoch": str(self.broker.store.leader_epoch),
            "haMayLead": str(self.broker.store.may_lead).lower(),
            "haServerAddr": cfg.ha_server_addr,
            "haRole": "follower" if self.follower is not None else "leader" if self.server is not None else "none",
            "haSyncWaits": str(self.sync_waits), "haSyncTimeouts": str(self.sync_timeouts),
            "haSlaveNotAvailable": str(self.slave_not_available),
        }
        if cfg.is_slave:
            doc["haMasterAddr"] = cfg.ha_master_address or self.learnt_master_ha_addr or ""
        return doc
