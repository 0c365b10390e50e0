"""NameServer: RocketMQ's name service over the remoting protocol, state in memory only.

Brokers register (REGISTER_BROKER, 103) every 30 s; a broker is dropped when it unregisters,
when the connection it registered over closes, or ``broker_timeout_s`` (120 s) after its last
registration, checked every ``scan_interval_s`` (5 s). Clients ask for topic routes (105) and
always get standard JSON: ``brokerAddrs`` keys are quoted strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from adapters.rocket.remoting import (
    Connection,
    Handler,
    RemotingCommand,
    RemotingServer,
    RequestCode,
    ResponseCode,
)

from .routes import BROKER_TIMEOUT_S, Registration, RouteTable

log = logging.getLogger(__name__)

DEFAULT_PORT = 9876
SCAN_INTERVAL_S = 5.0

# fastjson (Java) may write integer map keys bare: {0:"addr"}. Used only as a fallback.
_BARE_INT_KEY = re.compile(rb"([{,]\s*)(-?\d+)(\s*:)")


class BadRequest(Exception):
    """A request the name server refuses; the message becomes the response remark."""


class NameServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        broker_timeout_s: float = BROKER_TIMEOUT_S,
        scan_interval_s: float = SCAN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        drop_broker_on_disconnect: bool = True,
        server: RemotingServer | None = None,
    ) -> None:
        self.routes = RouteTable(broker_timeout_s=broker_timeout_s, clock=clock)
        self.scan_interval_s = scan_interval_s
        self.server = server or RemotingServer(host, port, name="namesrv")
        self._scan_task: asyncio.Task[None] | None = None
        handlers = {
            RequestCode.REGISTER_BROKER: self._register_broker,
            RequestCode.UNREGISTER_BROKER: self._unregister_broker,
            RequestCode.GET_ROUTEINFO_BY_TOPIC: self._get_route,
            RequestCode.GET_BROKER_CLUSTER_INFO: self._get_cluster_info,
            RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self._get_topic_list,
            RequestCode.DELETE_TOPIC_IN_NAMESRV: self._delete_topic,
        }
        for code, handler in handlers.items():
            self.server.register(code, _refusing_bad_requests(handler))
        if drop_broker_on_disconnect:
            self.server.add_disconnect_listener(self._on_disconnect)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        return self.server.address

    async def start(self) -> None:
        await self.server.start()
        self._scan_task = asyncio.create_task(self._scan_forever(), name="namesrv-expiry-scan")

    async def close(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
            self._scan_task = None
        await self.server.close()

    async def __aenter__(self) -> NameServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.scan_interval_s)
            for addr in self.routes.scan_expired():
                log.warning("broker %s expired: no registration for too long", addr)

    def _on_disconnect(self, conn: Connection) -> None:
        for addr in self.routes.remove_connection(conn):
            log.info("broker %s removed: its connection closed", addr)

    # -- handlers ------------------------------------------------------------------------------

    async def _register_broker(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        if ext.get("compressed") == "true":
            raise BadRequest("compressed RegisterBrokerBody is not supported; send it plain")
        crc_expected = _int_field(ext, "bodyCrc32", required=False) or 0
        if crc_expected and zlib.crc32(cmd.body) & 0x7FFFFFFF != crc_expected:
            raise BadRequest("crc32 of RegisterBrokerBody does not match bodyCrc32")
        body = _loads_lenient(cmd.body) if cmd.body else {}
        wrapper = body.get("topicConfigSerializeWrapper") or {}
        topic_configs = wrapper.get("topicConfigTable") or {}
        if not isinstance(topic_configs, dict):
            raise BadRequest("topicConfigTable is not a JSON object")
        timeout_ms = _int_field(ext, "heartbeatTimeoutMillis", required=False)
        reg = Registration(
            cluster=_str_field(ext, "clusterName"),
            broker_name=_str_field(ext, "brokerName"),
            broker_addr=_str_field(ext, "brokerAddr"),
            broker_id=_int_field(ext, "brokerId", required=True) or 0,
            ha_server_addr=ext.get("haServerAddr"),
            topic_configs=topic_configs,
            data_version=wrapper.get("dataVersion"),
            timeout_s=None if not timeout_ms else timeout_ms / 1000,
            enable_acting_master=ext.get("enableActingMaster") == "true",
            zone_name=ext.get("zoneName"),
            connection=conn,
        )
        result = self.routes.register(reg)
        log.info("registered broker %s (%s id %d, cluster %s, %d topics)", reg.broker_addr,
                 reg.broker_name, reg.broker_id, reg.cluster, len(topic_configs))
        return cmd.make_response(
            ResponseCode.SUCCESS,
            ext_fields={"haServerAddr": result.ha_server_addr, "masterAddr": result.master_addr},
        )

    async def _unregister_broker(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        ext = cmd.ext_fields
        found = self.routes.unregister(
            _str_field(ext, "clusterName"),
            _str_field(ext, "brokerName"),
            _str_field(ext, "brokerAddr"),
            _int_field(ext, "brokerId", required=True) or 0,
        )
        log.info("unregister broker %s: %s", ext.get("brokerAddr"),
                 "done" if found else "was not registered")
        return cmd.make_response(ResponseCode.SUCCESS)

    async def _get_route(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = _str_field(cmd.ext_fields, "topic")
        route = self.routes.topic_route(topic)
        if route is None:
            return cmd.make_response(
                ResponseCode.TOPIC_NOT_EXIST,
                f"No topic route info in name server for the topic: {topic}",
            )
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(route))

    async def _get_cluster_info(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.make_response(ResponseCode.SUCCESS, body=orjson.dumps(self.routes.cluster_info()))

    async def _get_topic_list(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        body = orjson.dumps({"topicList": self.routes.topics()})
        return cmd.make_response(ResponseCode.SUCCESS, body=body)

    async def _delete_topic(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        topic = _str_field(cmd.ext_fields, "topic")
        self.routes.delete_topic(topic, cmd.ext_fields.get("clusterName") or None)
        return cmd.make_response(ResponseCode.SUCCESS)


async def run_namesrv(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[NameServer], None] | None = None,
) -> None:
    """Serve as a stand-alone name server until cancelled; ``on_ready`` sees it listening."""
    namesrv = NameServer(host, port)
    await namesrv.start()
    log.info("name server listening on %s", namesrv.address)
    if on_ready is not None:
        on_ready(namesrv)
    try:
        await asyncio.Event().wait()
    finally:
        await namesrv.close()


# -- helpers -----------------------------------------------------------------------------------


def _refusing_bad_requests(
    handler: Callable[[Connection, RemotingCommand], Awaitable[RemotingCommand]],
) -> Handler:
    async def wrapped(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        try:
            return await handler(conn, cmd)
        except BadRequest as exc:
            return cmd.make_response(ResponseCode.SYSTEM_ERROR, str(exc))

    return wrapped


def _str_field(ext: dict[str, str], key: str) -> str:
    value = ext.get(key)
    if not value:
        raise BadRequest(f"the custom field <{key}> is missing")
    return value


def _int_field(ext: dict[str, str], key: str, *, required: bool) -> int | None:
    value = ext.get(key)
    if value is None:
        if required:
            raise BadRequest(f"the custom field <{key}> is missing")
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"the custom field <{key}> is not an integer: {value!r}") from None


def _loads_lenient(data: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            obj = orjson.loads(_BARE_INT_KEY.sub(rb'\1"\2"\3', data))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("body is not a JSON object")
    return obj
