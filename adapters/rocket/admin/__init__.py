"""Admin: the asyncio API behind ``logstore admin`` (RocketMQ's DefaultMQAdminExt, in part).

Every method sends the remoting requests mqadmin's subcommand of the same name sends and
returns plain Python values (dicts and lists ready for JSON). A refused request raises
``AdminError`` carrying the response code and the broker's or name server's remark.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.rocket.bodies import decode_consume_stats, decode_mq_table
from adapters.rocket.message import (
    MessageFormatError,
    decode_offset_msg_id,
    decode_stored,
)
from adapters.rocket.remoting import (
    PROMOTE_SLAVE,
    RemotingClient,
    RemotingCommand,
    RemotingError,
    RequestCode,
    ResponseCode,
)

MASTER_ID = "0"
RETRY_PREFIX = "%RETRY%"
DEFAULT_TIMEOUT_S = 5.0


class AdminError(Exception):
    """A request was refused (``code``, ``remark``) or could not be made (code None)."""

    def __init__(self, message: str, code: int | None = None, remark: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.remark = remark


@dataclass
class TopicSpec:
    topic: str
    read_queue_nums: int = 8
    write_queue_nums: int = 8
    perm: int = 6
    order: bool = False
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0


def _code_name(code: int) -> str:
    try:
        return ResponseCode(code).name
    except ValueError:
        return str(code)


def message_json(msg: Any, body_limit: int = 0) -> dict[str, Any]:
    """A stored message as a JSON-ready dict (``body_limit`` > 0: at most that many body bytes,
    as text when it decodes as UTF-8)."""
    out: dict[str, Any] = {
        "msgId": msg.msg_id, "topic": msg.topic, "queueId": msg.queue_id, "queueOffset": msg.queue_offset,
        "tags": msg.tags, "keys": msg.keys, "uniqKey": msg.properties.get("UNIQ_KEY"),
        "bornTimestamp": msg.born_timestamp, "storeTimestamp": msg.store_timestamp,
        "bornHost": msg.born_host, "storeHost": msg.store_host, "reconsumeTimes": msg.reconsume_times,
        "bodyBytes": len(msg.body), "properties": dict(msg.properties), "commitLogOffset": msg.commitlog_offset,
    }
    if body_limit > 0:
        chunk = msg.body[:body_limit]
        try:
            out["body"] = chunk.decode()
        except UnicodeDecodeError:
            out["bodyHex"] = chunk.hex()
    return out


class Admin:
    def __init__(self, namesrv_addr: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.namesrv_addrs = [a.strip() for a in namesrv_addr.split(";") if a.strip()]
        if not self.namesrv_addrs:
            raise ValueError(f"namesrv address {namesrv_addr!r} lists no address")
        self.timeout_s = timeout_s
        self.remoting = RemotingClient(connect_timeout_s=timeout_s)

    async def close(self) -> None:
        await self.remoting.close()

    async def __aenter__(self) -> Admin:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- transport -------------------------------------------------------------------------------

    async def call(self, addr: str, code: int, ext: dict[str, object] | None = None, body: bytes = b"",
                   *, ok: tuple[int, ...] = (ResponseCode.SUCCESS,)) -> RemotingCommand:
        try:
            resp = await self.remoting.invoke(addr, RemotingCommand.request(code, ext, body), self.timeout_s)
        except RemotingError as exc:
            raise AdminError(f"request {code} to {addr} failed: {exc}") from exc
        if resp.code not in ok:
            raise AdminError(f"{addr} answered {_code_name(resp.code)} ({resp.code}): {resp.remark or ''}",
                             resp.code, resp.remark)
        return resp

    async def call_namesrv(self, code: int, ext: dict[str, object] | None = None, *,
                           ok: tuple[int, ...] = (ResponseCode.SUCCESS,)) -> RemotingCommand:
        last: AdminError | None = None
        for addr in self.namesrv_addrs:
            try:
                return await self.call(addr, code, ext, ok=ok)
            except AdminError as exc:
                if exc.code is not None:  # an answer: the next name server would say the same
                    raise
                last = exc
        assert last is not None
        raise last

    # -- name server views -----------------------------------------------------------------------

    async def cluster_info(self) -> dict[str, Any]:
        resp = await self.call_namesrv(RequestCode.GET_BROKER_CLUSTER_INFO)
        return dict(orjson.loads(resp.body or b"{}"))

    async def master_addrs(self, cluster: str | None = None) -> dict[str, str]:
        """brokerName -> master address, of one cluster or of all."""
        info = await self.cluster_info()
        names = None
        if cluster is not None:
            if cluster not in (info.get("clusterAddrTable") or {}):
                raise AdminError(f"cluster {cluster!r} not found (known: "
                                 f"{', '.join(sorted(info.get('clusterAddrTable') or {})) or 'none'})")
            names = set(info["clusterAddrTable"][cluster])
        out = {}
        for name, data in sorted((info.get("brokerAddrTable") or {}).items()):
            addr = (data.get("brokerAddrs") or {}).get(MASTER_ID)
            if addr and (names is None or name in names):
                out[name] = addr
        return out

    async def all_broker_addrs(self, cluster: str | None = None) -> list[str]:
        """Every broker address (masters and slaves), of one cluster or of all."""
        info = await self.cluster_info()
        names = set((info.get("clusterAddrTable") or {}).get(cluster) or []) if cluster is not None else None
        return sorted(addr for name, data in (info.get("brokerAddrTable") or {}).items()
                      if names is None or name in names for addr in (data.get("brokerAddrs") or {}).values())

    async def broker_status(self, addr: str) -> dict[str, str]:
        """GET_BROKER_RUNTIME_INFO (28): the broker's counters and, for groups, its role and HA state."""
        resp = await self.call(addr, RequestCode.GET_BROKER_RUNTIME_INFO)
        return {str(k): str(v) for k, v in (orjson.loads(resp.body or b"{}").get("table") or {}).items()}

    async def promote_slave(self, addr: str, role: str = "ASYNC_MASTER", *, force: bool = False) -> dict[str, str]:
        """Make the slave at ``addr`` the master of its group (our PROMOTE_SLAVE request);
        ``force``: also one whose recovery cut data and that has not caught up since."""
        resp = await self.call(addr, PROMOTE_SLAVE, {"brokerRole": role, "force": str(force).lower()})
        return dict(resp.ext_fields)

    async def topic_list(self) -> list[str]:
        resp = await self.call_namesrv(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER)
        return sorted(orjson.loads(resp.body or b"{}").get("topicList") or [])

    async def topic_list_with_clusters(self) -> list[dict[str, str]]:
        """``topicList -c``: (cluster, topic, group for %RETRY% topics) rows."""
        info = await self.cluster_info()
        cluster_of = {b: c for c, names in (info.get("clusterAddrTable") or {}).items() for b in names}
        rows = []
        for topic in await self.topic_list():
            try:
                route = await self.topic_route(topic)
            except AdminError:
                continue
            clusters = sorted({cluster_of.get(q["brokerName"], "") for q in route.get("queueDatas") or []})
            group = topic[len(RETRY_PREFIX):] if topic.startswith(RETRY_PREFIX) else ""
            for c in clusters or [""]:
                rows.append({"cluster": c, "topic": topic, "consumerGroup": group})
        return rows

    async def topic_route(self, topic: str) -> dict[str, Any]:
        resp = await self.call_namesrv(RequestCode.GET_ROUTEINFO_BY_TOPIC,
                                       {"topic": topic, "acceptStandardJsonOnly": True})
        return dict(orjson.loads(resp.body))

    async def route_masters(self, topic: str) -> dict[str, str]:
        route = await self.topic_route(topic)
        out = {}
        for b in route.get("brokerDatas") or []:
            addr = (b.get("brokerAddrs") or {}).get(MASTER_ID)
            if addr:
                out[str(b["brokerName"])] = addr
        return out

    # -- topics ----------------------------------------------------------------------------------

    async def update_topic(self, addrs: list[str], spec: TopicSpec) -> list[str]:
        for addr in addrs:
            await self.call(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, {
                "topic": spec.topic, "defaultTopic": "TBW102", "readQueueNums": spec.read_queue_nums,
                "writeQueueNums": spec.write_queue_nums, "perm": spec.perm,
                "topicFilterType": spec.topic_filter_type, "topicSysFlag": spec.topic_sys_flag,
                "order": spec.order})
        return addrs

    async def delete_topic(self, topic: str, cluster: str) -> list[str]:
        addrs = list((await self.master_addrs(cluster)).values())
        for addr in addrs:
            await self.call(addr, RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": topic})
        for ns in self.namesrv_addrs:
            await self.call(ns, RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": topic, "clusterName": cluster})
        return addrs

    async def topic_status(self, topic: str) -> list[dict[str, Any]]:
        rows = []
        for name, addr in sorted((await self.route_masters(topic)).items()):
            resp = await self.call(addr, RequestCode.GET_TOPIC_STATS_INFO, {"topic": topic})
            for mq, off in decode_mq_table(resp.body, "offsetTable")["offsetTable"]:
                rows.append({"brokerName": mq.get("brokerName", name), "queueId": int(mq["queueId"]),
                             "minOffset": int(off.get("minOffset", 0)), "maxOffset": int(off.get("maxOffset", 0)),
                             "lastUpdateTimestamp": int(off.get("lastUpdateTimestamp", 0))})
        return sorted(rows, key=lambda r: (r["brokerName"], r["queueId"]))

    # -- consumer groups ---------------------------------------------------------------------------

    async def consumer_progress(self, group: str, topic: str | None = None) -> dict[str, Any]:
        rows = []
        for name, addr in sorted((await self.master_addrs()).items()):
            ext: dict[str, object] = {"consumerGroup": group}
            if topic:
                ext["topic"] = topic
            resp = await self.call(addr, RequestCode.GET_CONSUME_STATS, ext,
                                   ok=(ResponseCode.SUCCESS, ResponseCode.TOPIC_NOT_EXIST))
            if resp.code != ResponseCode.SUCCESS:
                continue
            for mq, w in decode_consume_stats(resp.body)["offsetTable"]:
                broker_off, consumer_off = int(w.get("brokerOffset", 0)), int(w.get("consumerOffset", 0))
                rows.append({"topic": mq["topic"], "brokerName": mq.get("brokerName", name),
                             "queueId": int(mq["queueId"]), "brokerOffset": broker_off,
                             "consumerOffset": consumer_off, "diff": max(0, broker_off - consumer_off),
                             "lastTimestamp": int(w.get("lastTimestamp", 0))})
        rows.sort(key=lambda r: (r["topic"], r["brokerName"], r["queueId"]))
        return {"group": group, "queues": rows, "diffTotal": sum(r["diff"] for r in rows)}

    async def consumer_groups(self) -> list[str]:
        """Groups known from their %RETRY% topics (as mqadmin consumerProgress without -g)."""
        return [t[len(RETRY_PREFIX):] for t in await self.topic_list() if t.startswith(RETRY_PREFIX)]

    async def update_sub_group(self, addrs: list[str], config: dict[str, Any]) -> list[str]:
        body = orjson.dumps(config)
        for addr in addrs:
            await self.call(addr, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, body=body)
        return addrs

    async def reset_offset_by_time(self, group: str, topic: str, timestamp_ms: int,
                                   force: bool = True) -> list[dict[str, Any]]:
        rows = []
        for name, addr in sorted((await self.route_masters(topic)).items()):
            resp = await self.call(addr, RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, {
                "topic": topic, "group": group, "timestamp": timestamp_ms, "isForce": force})
            for mq, offset in decode_mq_table(resp.body, "offsetTable")["offsetTable"]:
                rows.append({"brokerName": mq.get("brokerName", name), "queueId": int(mq["queueId"]),
                             "offset": int(offset)})
        return sorted(rows, key=lambda r: (r["brokerName"], r["queueId"]))

    # -- messages ----------------------------------------------------------------------------------

    async def query_msg_by_id(self, msg_id: str, topic: str | None = None) -> list[Any]:
        """By offset message id (store host + commit log offset). If the id does not name a
        known broker and ``topic`` is given, it is looked up as a unique key (UNIQ_KEY)."""
        masters = await self.master_addrs()
        try:
            addr, phys = decode_offset_msg_id(msg_id)
        except MessageFormatError as exc:
            if topic is None:
                raise AdminError(f"{exc}; pass -t TOPIC to look it up as a unique key") from None
            addr, phys = "", -1
        if addr in masters.values():
            resp = await self.call(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phys})
            return decode_stored(resp.body)
        if topic is None:
            raise AdminError(f"message id {msg_id} names {addr}, which is no known broker "
                             "(pass -t TOPIC to look it up as a unique key)")
        found = [m for m in await self.query_msg_by_key(topic, msg_id)
                 if m.properties.get("UNIQ_KEY") == msg_id]
        if not found:
            raise AdminError(f"no message with id {msg_id} in topic {topic}", ResponseCode.QUERY_NOT_FOUND)
        return found

    async def query_msg_by_key(self, topic: str, key: str, max_num: int = 64, begin_ms: int = 0,
                               end_ms: int | None = None) -> list[Any]:
        msgs: list[Any] = []
        end = end_ms if end_ms is not None else int(time.time() * 1000) + 60_000
        for _name, addr in sorted((await self.route_masters(topic)).items()):
            resp = await self.call(addr, RequestCode.QUERY_MESSAGE, {
                "topic": topic, "key": key, "maxNum": max_num, "beginTimestamp": begin_ms,
                "endTimestamp": end}, ok=(ResponseCode.SUCCESS, ResponseCode.QUERY_NOT_FOUND))
            if resp.code == ResponseCode.SUCCESS:
                msgs.extend(decode_stored(resp.body))
        msgs.sort(key=lambda m: (m.store_timestamp, m.queue_id, m.queue_offset))
        return msgs
