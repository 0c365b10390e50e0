"""MQClientAPI: one coroutine per remoting request the client sends, and nothing else.

Each method builds the request header RocketMQ's Java client builds, invokes it, and turns the
response into Python values or an ``MQBrokerError``. Policy (retries, which broker) lives in
the callers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from ..remoting import RemotingClient, RemotingCommand, RemotingError, RequestCode, ResponseCode
from .common import MessageQueue, PullStatus
from .errors import MQBrokerError, MQClientError, NoRouteError
from .route import TopicRouteData, parse_route

log = logging.getLogger(__name__)

# PULL_MESSAGE sysFlag bits (PullSysFlag.java).
PULL_FLAG_COMMIT_OFFSET = 0x1
PULL_FLAG_SUSPEND = 0x2
PULL_FLAG_SUBSCRIPTION = 0x4

_PULL_STATUS = {
    ResponseCode.SUCCESS: PullStatus.FOUND,
    ResponseCode.PULL_NOT_FOUND: PullStatus.NO_NEW_MSG,
    ResponseCode.PULL_RETRY_IMMEDIATELY: PullStatus.NO_MATCHED_MSG,
    ResponseCode.PULL_OFFSET_MOVED: PullStatus.OFFSET_ILLEGAL,
}


@dataclass(frozen=True)
class RawPullResult:
    """A pull response before its body is decoded into messages."""

    pull_status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    body: bytes
    suggest_which_broker_id: int = 0


def _int(ext: Mapping[str, str], key: str, default: int = 0) -> int:
    value = ext.get(key)
    return default if value is None or value == "" else int(value)


def check_ok(response: RemotingCommand, addr: str) -> RemotingCommand:
    if response.code != ResponseCode.SUCCESS:
        raise MQBrokerError(response.code, response.remark, addr)
    return response


class MQClientAPI:
    def __init__(self, remoting: RemotingClient, namesrv_addrs: list[str], timeout_s: float) -> None:
        self.remoting = remoting
        self.namesrv_addrs = list(namesrv_addrs)
        self.timeout_s = timeout_s
        self._namesrv_index = random.randrange(len(namesrv_addrs))

    # -- name server -----------------------------------------------------------------------

    async def invoke_namesrv(self, cmd: RemotingCommand) -> RemotingCommand:
        """Ask the current name server; on a transport failure move on to the next one."""
        last_error: Exception | None = None
        for _ in range(len(self.namesrv_addrs)):
            addr = self.namesrv_addrs[self._namesrv_index % len(self.namesrv_addrs)]
            try:
                return await self.remoting.invoke(addr, cmd, self.timeout_s)
            except RemotingError as exc:
                last_error = exc
                self._namesrv_index += 1
                log.info("name server %s failed (%s); trying the next one", addr, exc)
        raise MQClientError(f"no name server answered: {last_error}") from last_error

    async def get_topic_route(self, topic: str) -> TopicRouteData:
        cmd = RemotingCommand.request(
            RequestCode.GET_ROUTEINFO_BY_TOPIC,
            {"topic": topic, "acceptStandardJsonOnly": True},
        )
        response = await self.invoke_namesrv(cmd)
        if response.code == ResponseCode.TOPIC_NOT_EXIST:
            raise NoRouteError(f"no route info of topic {topic}: {response.remark or ''}")
        check_ok(response, "namesrv")
        return parse_route(response.body)

    # -- client registration ---------------------------------------------------------------

    async def heartbeat(self, addr: str, body: bytes) -> None:
        cmd = RemotingCommand.request(RequestCode.HEART_BEAT, body=body)
        check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)

    async def unregister_client(
        self, addr: str, client_id: str, producer_group: str | None, consumer_group: str | None
    ) -> None:
        cmd = RemotingCommand.request(
            RequestCode.UNREGISTER_CLIENT,
            {"clientID": client_id, "producerGroup": producer_group,
             "consumerGroup": consumer_group},
        )
        check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)

    async def get_consumer_id_list(self, addr: str, group: str) -> list[str]:
        cmd = RemotingCommand.request(RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group})
        response = check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
        ids = orjson.loads(response.body or b"{}").get("consumerIdList") or []
        return [str(i) for i in ids]

    # -- offsets ---------------------------------------------------------------------------

    async def query_consumer_offset(self, addr: str, group: str, mq: MessageQueue) -> int | None:
        """The committed offset, or None if the broker has none for this group and queue."""
        cmd = RemotingCommand.request(
            RequestCode.QUERY_CONSUMER_OFFSET,
            {"consumerGroup": group, "topic": mq.topic, "queueId": mq.queue_id,
             "setZeroIfNotFound": False},
        )
        response = await self.remoting.invoke(addr, cmd, self.timeout_s)
        if response.code == ResponseCode.QUERY_NOT_FOUND:
            return None
        check_ok(response, addr)
        return _int(response.ext_fields, "offset", -1)

    async def update_consumer_offset(
        self, addr: str, group: str, mq: MessageQueue, offset: int, *, oneway: bool = False
    ) -> None:
        cmd = RemotingCommand.request(
            RequestCode.UPDATE_CONSUMER_OFFSET,
            {"consumerGroup": group, "topic": mq.topic, "queueId": mq.queue_id,
             "commitOffset": offset},
        )
        if oneway:
            await self.remoting.invoke_oneway(addr, cmd)
        else:
            check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)

    async def get_max_offset(self, addr: str, mq: MessageQueue) -> int:
        cmd = RemotingCommand.request(
            RequestCode.GET_MAX_OFFSET, {"topic": mq.topic, "queueId": mq.queue_id}
        )
        response = check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
        return _int(response.ext_fields, "offset")

    async def get_min_offset(self, addr: str, mq: MessageQueue) -> int:
        cmd = RemotingCommand.request(
            RequestCode.GET_MIN_OFFSET, {"topic": mq.topic, "queueId": mq.queue_id}
        )
        response = check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
        return _int(response.ext_fields, "offset")

    async def search_offset(self, addr: str, mq: MessageQueue, timestamp_ms: int) -> int:
        cmd = RemotingCommand.request(
            RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
            {"topic": mq.topic, "queueId": mq.queue_id, "timestamp": timestamp_ms},
        )
        response = check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
        return _int(response.ext_fields, "offset")

    # -- messages --------------------------------------------------------------------------

    async def pull_message(
        self,
        addr: str,
        header: Mapping[str, object],
        timeout_s: float,
    ) -> RawPullResult:
        cmd = RemotingCommand.request(RequestCode.PULL_MESSAGE, header)
        response = await self.remoting.invoke(addr, cmd, timeout_s)
        status = _PULL_STATUS.get(ResponseCode(response.code)) if response.code in (
            ResponseCode._value2member_map_) else None
        if status is None:
            raise MQBrokerError(response.code, response.remark, addr)
        ext = response.ext_fields
        return RawPullResult(
            pull_status=status,
            next_begin_offset=_int(ext, "nextBeginOffset"),
            min_offset=_int(ext, "minOffset"),
            max_offset=_int(ext, "maxOffset"),
            body=response.body,
            suggest_which_broker_id=_int(ext, "suggestWhichBrokerId"),
        )

    async def consumer_send_message_back(
        self,
        addr: str,
        *,
        commit_log_offset: int,
        group: str,
        delay_level: int,
        origin_msg_id: str,
        origin_topic: str,
        max_reconsume_times: int | None,
    ) -> None:
        """``max_reconsume_times`` None: the broker uses the group's retryMaxTimes."""
        cmd = RemotingCommand.request(
            RequestCode.CONSUMER_SEND_MSG_BACK,
            {"offset": commit_log_offset, "group": group, "delayLevel": delay_level,
             "originMsgId": origin_msg_id, "originTopic": origin_topic, "unitMode": False,
             "maxReconsumeTimes": max_reconsume_times},
        )
        check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)

    # -- orderly consumption: queue locks ---------------------------------------------------

    async def lock_batch_mq(
        self, addr: str, group: str, client_id: str, mqs: list[MessageQueue]
    ) -> set[MessageQueue]:
        """LOCK_BATCH_MQ: lock (or renew) ``mqs`` on their broker; the ones now ours."""
        body = orjson.dumps({"consumerGroup": group, "clientId": client_id, "onlyThisBroker": False,
                             "mqSet": [mq.to_json() for mq in mqs]})
        cmd = RemotingCommand.request(RequestCode.LOCK_BATCH_MQ, body=body)
        response = check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
        locked = orjson.loads(response.body or b"{}").get("lockOKMQSet") or []
        return {MessageQueue(str(m["topic"]), str(m["brokerName"]), int(m["queueId"])) for m in locked}

    async def unlock_batch_mq(
        self, addr: str, group: str, client_id: str, mqs: list[MessageQueue]
    ) -> None:
        """UNLOCK_BATCH_MQ: give up our locks on ``mqs`` (another consumer may take them now)."""
        body = orjson.dumps({"consumerGroup": group, "clientId": client_id, "onlyThisBroker": False,
                             "mqSet": [mq.to_json() for mq in mqs]})
        cmd = RemotingCommand.request(RequestCode.UNLOCK_BATCH_MQ, body=body)
        check_ok(await self.remoting.invoke(addr, cmd, self.timeout_s), addr)
