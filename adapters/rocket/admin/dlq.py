"""Dead letters: list a group's ``%DLQ%<group>`` and send dead letters back to the group.

Listing pulls the DLQ queues of every broker in the topic's route (PULL_MESSAGE without an offset
commit, so no consumer group moves). Re-sending a dead letter sends a copy to the group's
``%RETRY%<group>`` topic on the broker that holds it, with reconsumeTimes 0: only that group
sees it again (the original topic's other groups do not), its consumers restore the original
topic from RETRY_TOPIC, and it gets the full retry budget again. The dead letter stays where it
is (a log is append-only); the ids printed tell which were re-sent.
"""

from __future__ import annotations

import time
from typing import Any

from adapters.rocket.message import Message, MessageFormatError, decode_offset_msg_id, decode_stored
from adapters.rocket.remoting import RequestCode, ResponseCode

from . import Admin, AdminError

DLQ_PREFIX = "%DLQ%"
RETRY_PREFIX = "%RETRY%"
PULL_BATCH = 32
LIST_MAX = 10_000
TOOLS_GROUP = "TOOLS_CONSUMER"
# Properties that belong to the dead letter, not to the message sent again.
DLQ_ONLY_PROPERTIES = ("DELAY", "DLQ_ORIGIN_TOPIC", "DLQ_ORIGIN_MESSAGE_ID", "MIN_OFFSET", "MAX_OFFSET",
                       "REAL_TOPIC", "REAL_QID", "TIMER_OUT_MS", "TIMER_DELIVER_MS", "TIMER_DELAY_SEC",
                       "TIMER_DELAY_MS")
RESEND_SYSFLAG_KEEP = 0x1 | 0x2 | 0x700  # compressed, multi tags, compression type


def dlq_topic(group: str) -> str:
    return DLQ_PREFIX + group


async def _queues(admin: Admin, topic: str) -> list[tuple[str, str, int]]:
    """(broker name, address, queue id) of every readable queue of ``topic``."""
    route = await admin.topic_route(topic)
    masters = await admin.route_masters(topic)
    out = []
    for q in route.get("queueDatas") or []:
        addr = masters.get(str(q["brokerName"]))
        if addr:
            out += [(str(q["brokerName"]), addr, qid) for qid in range(int(q.get("readQueueNums", 0)))]
    return sorted(out)


async def _offset(admin: Admin, addr: str, code: int, topic: str, qid: int) -> int:
    resp = await admin.call(addr, code, {"topic": topic, "queueId": qid})
    return int(resp.ext_fields.get("offset", "0"))


async def dlq_messages(admin: Admin, group: str, max_num: int = 64, begin_offset: int = 0) -> list[Message]:
    """Up to ``max_num`` dead letters of ``group`` (per queue from ``begin_offset``), oldest first."""
    return [m for _addr, m in await _dlq_messages(admin, group, max_num, begin_offset)]


async def _dlq_messages(admin: Admin, group: str, max_num: int, begin_offset: int) -> list[tuple[str, Message]]:
    if not 1 <= max_num <= LIST_MAX:
        raise AdminError(f"the number of messages must be between 1 and {LIST_MAX}")
    topic = dlq_topic(group)
    try:
        queues = await _queues(admin, topic)
    except AdminError as exc:
        if exc.code == ResponseCode.TOPIC_NOT_EXIST:
            return []  # no dead letter yet: the DLQ is made with the first one
        raise
    out: list[tuple[str, Message]] = []
    for _name, addr, qid in queues:
        offset = max(begin_offset, await _offset(admin, addr, RequestCode.GET_MIN_OFFSET, topic, qid))
        end = await _offset(admin, addr, RequestCode.GET_MAX_OFFSET, topic, qid)
        while offset < end and len(out) < max_num:
            resp = await admin.call(addr, RequestCode.PULL_MESSAGE, {
                "consumerGroup": TOOLS_GROUP, "topic": topic, "queueId": qid, "queueOffset": offset,
                "maxMsgNums": min(PULL_BATCH, max_num - len(out)), "sysFlag": 0x4, "commitOffset": 0,
                "suspendTimeoutMillis": 0, "subscription": "*", "subVersion": 0, "expressionType": "TAG",
            }, ok=(ResponseCode.SUCCESS, ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_OFFSET_MOVED,
                   ResponseCode.PULL_RETRY_IMMEDIATELY))
            next_offset = int(resp.ext_fields.get("nextBeginOffset", offset))
            if resp.code == ResponseCode.SUCCESS:
                out += [(addr, m) for m in decode_stored(resp.body)[: max_num - len(out)]]
            if next_offset <= offset:
                break
            offset = next_offset
    out.sort(key=lambda am: (am[1].store_timestamp, am[0], am[1].queue_id, am[1].queue_offset))
    return out


async def _dead_letter(admin: Admin, group: str, msg_id: str) -> tuple[str, Message]:
    try:
        addr, phys = decode_offset_msg_id(msg_id)
    except MessageFormatError as exc:
        raise AdminError(f"{exc} (dead letters are named by the offset message id dlqList shows)") from None
    resp = await admin.call(addr, RequestCode.VIEW_MESSAGE_BY_ID, {"offset": phys})
    (msg,) = decode_stored(resp.body)
    if msg.topic != dlq_topic(group):
        raise AdminError(f"message {msg_id} is in topic {msg.topic}, not in {dlq_topic(group)}")
    return addr, msg


async def resend_dlq(admin: Admin, group: str, msg_ids: list[str] | None, max_num: int = 64) -> list[dict[str, Any]]:
    """Send dead letters back to ``%RETRY%<group>``: those named by ``msg_ids`` (offset
    message ids), or with None every one ``dlq_messages`` lists. Returns one row per message."""
    if msg_ids is None:
        found = await _dlq_messages(admin, group, max_num, 0)
    else:
        found = [await _dead_letter(admin, group, i) for i in msg_ids]  # all checked before any is sent
    rows = []
    for addr, msg in found:
        props = dict(msg.properties)
        props.setdefault("RETRY_TOPIC", props.get("DLQ_ORIGIN_TOPIC", msg.topic))
        for key in DLQ_ONLY_PROPERTIES:
            props.pop(key, None)
        resp = await admin.call(addr, RequestCode.SEND_MESSAGE, {
            "producerGroup": "TOOLS_DLQ_RESEND", "topic": RETRY_PREFIX + group, "defaultTopic": "TBW102",
            "defaultTopicQueueNums": 1, "queueId": 0, "sysFlag": msg.sys_flag & RESEND_SYSFLAG_KEEP,
            "bornTimestamp": msg.born_timestamp or int(time.time() * 1000), "flag": msg.flag,
            "properties": Message(msg.topic, properties=props).properties_string(), "reconsumeTimes": 0,
            "unitMode": False,
        }, msg.body)
        rows.append({"msgId": msg.msg_id, "uniqKey": props.get("UNIQ_KEY"), "originTopic": props["RETRY_TOPIC"],
                     "retryTopic": RETRY_PREFIX + group, "newMsgId": resp.ext_fields.get("msgId", "")})
    return rows
