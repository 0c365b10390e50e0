"""One PULL_MESSAGE round trip, shared by the push and the lite pull consumer.

The broker filters by tag hash; ``pull_once`` splits the body into messages decoded on first use
(lazy_message.py), which then carry MIN_OFFSET/MAX_OFFSET, an inflated body and a retry message's
real topic, and drops messages whose exact tag is not subscribed.

Which broker of the queue's group is asked is RocketMQ's PullAPIWrapper rule: the broker id the
last answer suggested for this queue (``suggestWhichBrokerId``; the master at first), found with
``find_broker_addr_in_subscribe`` (another broker of the group when that one is not in the route
or its connection just failed). A pull to a slave carries no commit offset (the slave would not
store it); an error answer from a slave sends the queue's next pull to the master again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..lazy_message import decode_stored_lazy
from ..message import PROPERTY_MAX_OFFSET, PROPERTY_MIN_OFFSET, Message
from ..remoting import RemotingError
from ._msgutil import prepare_pulled
from .api import PULL_FLAG_COMMIT_OFFSET, PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND
from .common import MASTER_ID, MessageQueue, PullStatus
from .errors import MQBrokerError
from .filter import SubscriptionData
from .instance import MQClientInstance

# How much longer than the broker may hold a pull we wait for its answer.
SUSPEND_GRACE_S = 15.0


@dataclass(frozen=True)
class PullResult:
    pull_status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    msg_found_list: list[Message]


async def pull_once(
    instance: MQClientInstance,
    group: str,
    mq: MessageQueue,
    subscription: SubscriptionData,
    offset: int,
    max_nums: int,
    *,
    commit_offset: int = -1,
    suspend_timeout_ms: int = 0,
    timeout_s: float | None = None,
) -> PullResult:
    """Pull up to ``max_nums`` messages from ``offset``. With ``suspend_timeout_ms`` the broker
    may hold the request that long waiting for a message (long polling)."""
    found = await instance.find_broker_addr_for_read(mq, instance.pull_from_which_node.get(mq, MASTER_ID))
    sys_flag = PULL_FLAG_SUBSCRIPTION
    if commit_offset > 0 and not found.slave:
        sys_flag |= PULL_FLAG_COMMIT_OFFSET
    if suspend_timeout_ms > 0:
        sys_flag |= PULL_FLAG_SUSPEND
    header = {
        "consumerGroup": group,
        "topic": mq.topic,
        "queueId": mq.queue_id,
        "queueOffset": offset,
        "maxMsgNums": max_nums,
        "sysFlag": sys_flag,
        "commitOffset": max(commit_offset, 0),
        "suspendTimeoutMillis": suspend_timeout_ms,
        "subscription": subscription.sub_string,
        "subVersion": subscription.sub_version,
        "expressionType": subscription.expression_type,
    }
    if timeout_s is None:
        timeout_s = suspend_timeout_ms / 1000 + SUSPEND_GRACE_S
    try:
        raw = await instance.api.pull_message(found.broker_addr, header, timeout_s)
    except RemotingError:
        await instance.broker_unreachable(found.broker_addr, mq.topic)
        raise
    except MQBrokerError:
        if found.slave:  # e.g. the slave has not synced the topic yet: back to the master
            instance.pull_from_which_node.pop(mq, None)
        raise
    instance.pull_from_which_node[mq] = raw.suggest_which_broker_id
    msgs: list[Message] = []
    if raw.pull_status == PullStatus.FOUND and raw.body:
        # Decoded when the listener first reads them (a count or an offset needs no decode).
        msgs = decode_stored_lazy(raw.body, functools.partial(
            _finish_pulled, str(raw.min_offset), str(raw.max_offset)))
        if subscription.tags_set:  # the exact re-check of the broker's hash filter
            msgs = [m for m in msgs if subscription.matches(m.tags)]
    return PullResult(raw.pull_status, raw.next_begin_offset, raw.min_offset, raw.max_offset, msgs)


def _finish_pulled(min_offset: str, max_offset: str, msg: Message) -> None:
    msg.properties[PROPERTY_MIN_OFFSET] = min_offset
    msg.properties[PROPERTY_MAX_OFFSET] = max_offset
    prepare_pulled(msg)
