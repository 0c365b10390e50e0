"""Keeping the name servers informed: REGISTER_BROKER to every configured name server every
registerNameServerPeriod (30 s) and right after a topic change; UNREGISTER_BROKER on shutdown.
A name server that is down is retried at the next period; the others are not held up.

A slave registers too (with its brokerId); the name server answers it with its group's master
address and that master's haServerAddr, which ``on_registered`` hands to the broker (RocketMQ's
slaves learn their master the same way). While its group has no master, a slave registers every
3 s instead of every 30 s, so it finds a (re)started or promoted master soon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from adapters.rocket.aio import wait_event
from adapters.rocket.remoting import (
    RemotingClient,
    RemotingCommand,
    RemotingError,
    RequestCode,
    ResponseCode,
)

from .config import BrokerConfig

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 24.0  # registerBrokerTimeoutMills
SEEKING_MASTER_PERIOD_S = 3.0  # a slave whose group has no master registers this often


class Registrar:
    def __init__(self, config: BrokerConfig, topic_wrapper: Callable[[], dict[str, Any]],
                 on_registered: Callable[[str | None, str | None], Awaitable[None]] | None = None) -> None:
        self.config = config
        self.topic_wrapper = topic_wrapper
        self.on_registered = on_registered
        self.seeking_master: Callable[[], bool] = lambda: False  # set by the broker for slaves
        self.client = RemotingClient()
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self.registered: dict[str, bool] = {}

    def _ext(self) -> dict[str, object]:
        c = self.config
        return {"brokerName": c.broker_name, "brokerAddr": c.broker_addr, "clusterName": c.broker_cluster_name,
                "brokerId": c.broker_id}

    async def register_all(self) -> None:
        body = orjson.dumps({"topicConfigSerializeWrapper": self.topic_wrapper(), "filterServerList": []})
        ext = {**self._ext(), "haServerAddr": self.config.ha_server_addr,
               "compressed": False, "bodyCrc32": zlib.crc32(body) & 0x7FFFFFFF,
               "heartbeatTimeoutMillis": self.config.channel_expired_timeout}
        await asyncio.gather(*(self._register_one(a, ext, body) for a in self.config.namesrv_addrs))

    async def _register_one(self, addr: str, ext: dict[str, object], body: bytes) -> None:
        try:
            resp = await self.client.invoke(addr, RemotingCommand.request(RequestCode.REGISTER_BROKER, ext, body),
                                            REGISTER_TIMEOUT_S)
            ok = resp.code == ResponseCode.SUCCESS
            if not ok:
                log.warning("name server %s refused registration: %s %s", addr, resp.code, resp.remark)
        except RemotingError as exc:
            ok = False
            log.warning("cannot register with name server %s: %s", addr, exc)
        if ok and not self.registered.get(addr):
            log.info("registered with name server %s", addr)
        self.registered[addr] = ok
        if ok and self.on_registered is not None:
            answer = resp.ext_fields
            await self.on_registered(answer.get("masterAddr") or None, answer.get("haServerAddr") or None)

    def kick(self) -> None:
        """Register again now (topics changed)."""
        self._kick.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="namesrv-registration")

    async def _loop(self) -> None:
        period_s = self.config.register_name_server_period / 1000
        while True:
            self._kick.clear()
            await self.register_all()
            wait_s = min(period_s, SEEKING_MASTER_PERIOD_S) if self.seeking_master() else period_s
            await wait_event(self._kick, wait_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        cmd_ext = self._ext()
        for addr in self.config.namesrv_addrs:
            try:
                await self.client.invoke(addr, RemotingCommand.request(RequestCode.UNREGISTER_BROKER, cmd_ext), 3.0)
            except RemotingError as exc:
                log.info("unregister from %s failed: %s", addr, exc)
        await self.client.close()
