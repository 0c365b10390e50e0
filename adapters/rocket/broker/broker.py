"""The broker: one logstore Store, the managers around it, and the request processors wired
to a RemotingServer.

Layout under ``storePathRootDir``: the store's own files (``logs/``, ``journal/``, checkpoint)
plus ``config/`` (topics.json, consumerOffset.json, subscriptionGroup.json, queueIds.json,
delayOffset.json, and brokerRole.json once ``promoteSlave`` made a slave its group's master).

Roles (``brokerRole``): a master runs everything; a slave (``role.py``) refuses sends, serves
reads, copies its master's metadata (``slave_sync.py``) and, through the engine, its messages
(``ha.py``), and runs neither the scheduler's delivery nor the transaction check-back until it is
promoted.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from adapters.rocket.remoting import (
    PROMOTE_SLAVE,
    Connection,
    RemotingCommand,
    RemotingServer,
    RequestCode,
    ResponseCode,
)
from logstore import LogConfig, Store, StoreConfig

from .admin import GET_BROKER_RUNTIME_INFO, AdminProcessor
from .clients import ClientManager
from .config import BrokerConfig
from .consumers import BadRequest, ConsumerProcessor
from .ha import HAService
from .keyindex import KeyIndex
from .locks import QueueLockManager
from .offsets import ConsumerOffsetManager
from .persist import JsonFile
from .pull import PullProcessor
from .queues import QueueStore
from .registration import Registrar
from .role import ROLE_FILE, RoleProcessor, apply_saved_role, refuse_on_slave
from .schedule import Scheduler
from .send import SendProcessor
from .sendback import SendBackProcessor
from .slave_sync import MetadataProcessor, SlaveSynchronize
from .subscriptions import SubscriptionGroupManager
from .topics import TopicConfig, TopicConfigManager
from .transaction import TransactionService
from .transaction_check import TransactionChecker

log = logging.getLogger(__name__)

BATCH_BYTES_LIMIT = 64 * 1024 * 1024
HandlerFn = Callable[[Connection, RemotingCommand], Awaitable[RemotingCommand | None]]


def log_config_for(config: BrokerConfig) -> LogConfig:
    # A SEND_BATCH body of maxMessageSize grows when stored (each message gains ~100 bytes of
    # stored header plus the topic), so a queue log accepts batches a few times larger.
    batch_max = min(BATCH_BYTES_LIMIT, max(4 * config.max_message_size, 4 * 1024 * 1024) + 64 * 1024)
    return LogConfig(flush=config.log_flush, flush_interval_ms=config.flush_interval_commit_log,
                     retention_ms=config.file_reserved_time * 3600 * 1000, batch_bytes_max=batch_max)


class Broker:
    def __init__(self, config: BrokerConfig, store: Store, server: RemotingServer) -> None:
        self.config = config
        self.store = store
        self.server = server
        io, root = store.io, store.root
        lc = log_config_for(config)
        self.topics = TopicConfigManager(JsonFile(io, root, "topics.json"))
        self.subscriptions = SubscriptionGroupManager(JsonFile(io, root, "subscriptionGroup.json"),
                                                      config.auto_create_subscription_group)
        self.offsets = ConsumerOffsetManager(JsonFile(io, root, "consumerOffset.json"), store.run_blocking,
                                             flush_interval_s=config.flush_consumer_offset_interval / 1000)
        self.queues = QueueStore(store, JsonFile(io, root, "queueIds.json"), lc)
        self.key_index = KeyIndex(store, LogConfig(flush="async", retention_ms=lc.retention_ms))
        self.clients = ClientManager(config.channel_expired_timeout)
        self.locks = QueueLockManager(config.lock_expire_ms)
        self.registrar = Registrar(config, self.topics.wrapper, self._on_registered)
        self.ha = HAService(self)
        self.slave_sync = SlaveSynchronize(self)
        self.registrar.seeking_master = lambda: self.config.is_slave and self.slave_sync.master_addr is None
        self.metadata = MetadataProcessor(self)
        self.role = RoleProcessor(self)
        self.pull = PullProcessor(self)
        self.consumer = ConsumerProcessor(self)
        self.admin = AdminProcessor(self)
        self.schedule = Scheduler(self)
        self.sendback = SendBackProcessor(self)
        self.transactions = TransactionService(self)
        self.transaction_checker = TransactionChecker(self, self.transactions)
        self.send: SendProcessor  # needs the bound port: made in start()

    @classmethod
    async def open(cls, config: BrokerConfig, host: str = "0.0.0.0") -> Broker:
        config.validate()
        store = await Store.open(config.store_path_root_dir, config=StoreConfig(default_log_config=log_config_for(config)))
        apply_saved_role(config, JsonFile(store.io, store.root, ROLE_FILE))
        if store.report.bytes_cut:
            log.warning("store recovered after an unclean stop: %d bytes cut", store.report.bytes_cut)
        server = RemotingServer(host, config.listen_port, name="broker", busy_poll_us=config.busy_poll_micros)
        return cls(config, store, server)

    async def start(self) -> None:
        await self.schedule.open()  # its system queues are made with their own log config
        for name in list(self.topics.topics):  # queue logs a crash kept from being created
            await self.ensure_queues(self.topics.topics[name])
        reindexed = await self.key_index.open((t, lg, lid) for t, _q, lg, lid in self.queues.all_queues())
        if reindexed:
            log.info("re-indexed %d messages", reindexed)
        await self.transactions.open()
        await self.server.start()
        self.config.listen_port = self.server.port
        self.send = SendProcessor(self)
        self.register_handlers()
        self.server.add_disconnect_listener(self.clients.on_disconnect)
        self.offsets.start()
        self.clients.start()
        if self.config.is_slave:
            self.slave_sync.start()
        else:
            self.start_master_services()
        await self.ha.start()
        self.registrar.start()
        log.info("broker %s (%s, id %d) listening on %s", self.config.broker_name, self.config.broker_role,
                 self.config.broker_id, self.config.broker_addr)

    def start_master_services(self) -> None:
        """What only a master runs: scheduled deliveries and the transaction check-back."""
        self.schedule.start()
        self.transaction_checker.start()

    async def _on_registered(self, master_addr: str | None, ha_server_addr: str | None) -> None:
        """A name server's REGISTER_BROKER answer: a slave learns its master from it."""
        if not self.config.is_slave:
            return
        self.slave_sync.set_master_addr(master_addr)
        try:
            await self.ha.learn_master(ha_server_addr)
        except Exception:
            log.exception("cannot follow master %s", ha_server_addr)

    async def close(self) -> None:
        await self.registrar.close()
        await self.slave_sync.close()
        await self.ha.close()
        await self.server.close()
        await self.schedule.close()
        await self.clients.close()
        await self.transaction_checker.close()
        await self.key_index.close()
        await self.offsets.close()
        await self.store.close()

    def register_handlers(self) -> None:
        """The request table for the current role (registered again when a slave is promoted,
        so a master's send path pays nothing for the slave's refusals)."""
        c, a, s = self.consumer, self.admin, self.send
        table: dict[int, HandlerFn] = {
            RequestCode.SEND_MESSAGE: s.send, RequestCode.SEND_MESSAGE_V2: s.send_v2,
            RequestCode.SEND_BATCH_MESSAGE: s.send_batch, RequestCode.PULL_MESSAGE: self.pull.pull,
            RequestCode.QUERY_CONSUMER_OFFSET: c.query_offset, RequestCode.UPDATE_CONSUMER_OFFSET: c.update_offset,
            RequestCode.GET_MAX_OFFSET: c.max_offset, RequestCode.GET_MIN_OFFSET: c.min_offset,
            RequestCode.SEARCH_OFFSET_BY_TIMESTAMP: c.search_offset, RequestCode.HEART_BEAT: c.heartbeat,
            RequestCode.UNREGISTER_CLIENT: c.unregister_client,
            RequestCode.GET_CONSUMER_LIST_BY_GROUP: c.consumer_list,
            RequestCode.LOCK_BATCH_MQ: c.lock_batch, RequestCode.UNLOCK_BATCH_MQ: c.unlock_batch,
            RequestCode.QUERY_MESSAGE: a.query_message, RequestCode.VIEW_MESSAGE_BY_ID: a.view_by_id,
            RequestCode.GET_CONSUME_STATS: a.consume_stats, RequestCode.UPDATE_AND_CREATE_TOPIC: a.update_topic,
            RequestCode.DELETE_TOPIC_IN_BROKER: a.delete_topic,
            RequestCode.GET_ALL_TOPIC_CONFIG: self.metadata.all_topic_config,
            RequestCode.GET_ALL_CONSUMER_OFFSET: self.metadata.all_consumer_offset,
            RequestCode.GET_ALL_DELAY_OFFSET: self.metadata.all_delay_offset,
            RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG: self.metadata.all_subscription_group,
            PROMOTE_SLAVE: self.role.promote_slave,
            RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: a.update_subscription_group,
            GET_BROKER_RUNTIME_INFO: a.runtime_info,
            RequestCode.GET_TOPIC_STATS_INFO: a.topic_stats, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET: a.reset_offset,
            RequestCode.CONSUMER_SEND_MSG_BACK: self.sendback.send_back,
            RequestCode.END_TRANSACTION: self.transactions.end_transaction,
        }
        if self.config.is_slave:  # a slave's store is the master's copy: it takes no writes (role.py)
            for write in (RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE,
                          RequestCode.CONSUMER_SEND_MSG_BACK):
                table[write] = refuse_on_slave(self, table[write], ResponseCode.SERVICE_NOT_AVAILABLE)
            table[RequestCode.END_TRANSACTION] = refuse_on_slave(self, table[RequestCode.END_TRANSACTION],
                                                                 ResponseCode.SLAVE_NOT_AVAILABLE)
        # The send handlers answer a BadRequest themselves (MESSAGE_ILLEGAL): no wrapper coroutine.
        unwrapped = {s.send, s.send_v2, s.send_batch}
        for code, fn in table.items():
            self.server.register(code, fn if fn in unwrapped else _refusing_bad_requests(fn))
        # A master stores the plain sends of one read together (send.py); a slave refuses each.
        self.server.register_group((RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2),
                                   None if self.config.is_slave else s.send_group, s.send_group_now)

    # -- topic lifecycle (used by processors) ------------------------------------------------------

    async def create_topic(self, config: TopicConfig, *, register_now: bool = False) -> TopicConfig:
        """Create or update a topic and its queue logs. ``register_now``: tell the name servers
        before returning (admin requests, so a route query right after sees the topic)."""
        old = self.topics.get(config.topic_name)
        if old != config:
            self.topics.put(config)  # rare admin change: a short blocking fsync is fine
        await self.ensure_queues(config)
        if old != config and register_now:
            await self.registrar.register_all()
        elif old != config:
            self.registrar.kick()
        return config

    async def ensure_queues(self, config: TopicConfig) -> None:
        for qid in range(config.queue_nums):
            await self.queues.get_or_create(config.topic_name, qid)

    async def delete_topic(self, topic: str) -> None:
        self.topics.delete(topic)
        await self.queues.delete_topic(topic)
        await self.offsets.delete_topic(topic)
        await self.registrar.register_all()


def _refusing_bad_requests(fn: HandlerFn) -> HandlerFn:
    async def wrapped(conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        try:
            return await fn(conn, cmd)
        except BadRequest as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, str(exc))

    return wrapped
