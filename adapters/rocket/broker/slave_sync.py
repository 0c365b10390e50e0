"""Metadata of a broker group: what a master serves and what a slave copies (RocketMQ's
SlaveSynchronize), over the remoting protocol with RocketMQ's request codes and JSON bodies:

    GET_ALL_TOPIC_CONFIG (21)             TopicConfigSerializeWrapper {topicConfigTable, dataVersion}, plus
                                          our queue log ids {"logstoreQueueIds": {next, ids}} (queues.py)
    GET_ALL_CONSUMER_OFFSET (43)          ConsumerOffsetSerializeWrapper {offsetTable: {"topic@group": {qid: offset}}}
    GET_ALL_DELAY_OFFSET (45)             the master's delayOffset.json text ({offsetTable: {level: offset}},
                                          plus our timer queue's progress under "timer")
    GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201) SubscriptionGroupWrapper {subscriptionGroupTable, dataVersion}

A slave syncs at start and every ``slaveSyncInterval`` (10 s) from the master the name server
named in its last REGISTER_BROKER answer (masterAddr). As RocketMQ does: topic configs and
subscription groups are replaced when the master's dataVersion differs (topics the master no
longer has are dropped); consumer offsets are overwritten key by key (``topic@group``), so an
offset a consumer committed to the slave while the master was away is replaced by the master's
once it is back; the delay progress is saved whole, for a promoted slave's scheduler.
Nothing flows from a slave to its master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from adapters.rocket.aio import wait_event
from adapters.rocket.remoting import (
    Connection,
    RemotingClient,
    RemotingCommand,
    RemotingError,
    RequestCode,
    ResponseCode,
)

from .topics import TopicConfig

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

QUEUE_IDS_FIELD = "logstoreQueueIds"
SYNC_TIMEOUT_S = 3.0  # RocketMQ's BrokerOuterAPI uses 3 s for these calls


class SyncError(Exception):
    """The master could not be asked or gave an answer we cannot use."""


# -- master side ---------------------------------------------------------------------------------


class MetadataProcessor:
    """The GET_ALL_* requests a slave sends to its master (any broker answers them)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def all_topic_config(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        # RocketMQ readers ignore the extra field; our slaves need it (queues.py).
        body = {**self.broker.topics.wrapper(), QUEUE_IDS_FIELD: self.broker.queues.ids_json()}
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(body))

    async def all_consumer_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(self.broker.offsets.wrapper()))

    async def all_delay_offset(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(self.broker.schedule.progress_json()))

    async def all_subscription_group(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(self.broker.subscriptions.wrapper()))


# -- slave side ----------------------------------------------------------------------------------


class SlaveSynchronize:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.master_addr: str | None = None
        self.client = RemotingClient(connect_timeout_s=SYNC_TIMEOUT_S)
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self.syncs = self.failures = 0
        self.last_sync_ms = 0
        self.last_error: str | None = None

    def set_master_addr(self, addr: str | None) -> None:
        """From the name server's REGISTER_BROKER answer; a new master is synced at once."""
        if addr == self.broker.config.broker_addr:
            addr = None  # never sync from ourselves
        if addr != self.master_addr:
            log.info("master of %s: %s -> %s", self.broker.config.broker_name, self.master_addr, addr)
            self.master_addr = addr
            if addr is not None:
                self._kick.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="slave-synchronize")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    async def _loop(self) -> None:
        period_s = self.broker.config.slave_sync_interval / 1000
        while True:
            self._kick.clear()
            if self.master_addr is not None:
                await self.sync_all()
            await wait_event(self._kick, period_s)

    async def sync_all(self) -> bool:
        """One round: topics, offsets, delay progress, subscription groups. False if it failed."""
        addr = self.master_addr
        if addr is None:
            return False
        try:
            await self._sync_topics(addr)
            await self._sync_offsets(addr)
            await self._sync_delay_offset(addr)
            await self._sync_subscription_groups(addr)
        except (SyncError, RemotingError, OSError, ValueError) as exc:
            self.failures += 1
            self.last_error = f"{addr}: {exc}"
            log.warning("metadata sync from master %s failed: %s", addr, exc)
            return False
        except Exception as exc:  # a body we misread: keep the loop alive, say it loudly
            self.failures += 1
            self.last_error = f"{addr}: {exc!r}"
            log.exception("metadata sync from master %s failed", addr)
            return False
        self.syncs += 1
        self.last_sync_ms = int(time.time() * 1000)
        self.last_error = None
        return True

    async def _get(self, addr: str, code: int) -> dict[str, Any]:
        resp = await self.client.invoke(addr, RemotingCommand.request(code), SYNC_TIMEOUT_S)
        if resp.code != ResponseCode.SUCCESS:
            raise SyncError(f"request {code} answered {resp.code}: {resp.remark}")
        obj = orjson.loads(resp.body or b"{}")
        if not isinstance(obj, dict):
            raise SyncError(f"request {code} answered a body that is not a JSON object")
        return obj

    async def _sync_topics(self, addr: str) -> None:
        wrapper = await self._get(addr, RequestCode.GET_ALL_TOPIC_CONFIG)
        table = wrapper.get("topicConfigTable") or {}
        configs = [TopicConfig.from_json(obj) for obj in table.values()]
        ids = wrapper.get(QUEUE_IDS_FIELD) or {}
        # Ids first: the queue logs created below for new topics must get the master's ids.
        ids_changed = await self.broker.queues.adopt_ids({str(k): int(v) for k, v in (ids.get("ids") or {}).items()},
                                                         int(ids.get("next") or 1))
        changed = self.broker.topics.adopt(configs, wrapper.get("dataVersion") or {})
        if changed or ids_changed:
            for config in configs:  # the queue logs a topic new to this slave needs
                await self.broker.ensure_queues(config)
            self.broker.registrar.kick()

    async def _sync_offsets(self, addr: str) -> None:
        wrapper = await self._get(addr, RequestCode.GET_ALL_CONSUMER_OFFSET)
        table = wrapper.get("offsetTable") or {}
        await self.broker.offsets.adopt({str(k): {int(q): int(o) for q, o in v.items()} for k, v in table.items()})

    async def _sync_delay_offset(self, addr: str) -> None:
        progress = await self._get(addr, RequestCode.GET_ALL_DELAY_OFFSET)
        await self.broker.schedule.adopt_progress(progress)

    async def _sync_subscription_groups(self, addr: str) -> None:
        wrapper = await self._get(addr, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG)
        self.broker.subscriptions.adopt(wrapper.get("subscriptionGroupTable") or {}, wrapper.get("dataVersion") or {})

    def status(self) -> dict[str, str]:
        return {
            "slaveSyncMasterAddr": self.master_addr or "", "slaveSyncCount": str(self.syncs),
            "slaveSyncFailures": str(self.failures), "slaveSyncLastTimestamp": str(self.last_sync_ms),
            **({"slaveSyncLastError": self.last_error} if self.last_error else {}),
        }
