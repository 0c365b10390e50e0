"""The client's small value types, named as in RocketMQ's Java client."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# Topic permission bits (PermName.java).
PERM_READ = 4
PERM_WRITE = 2

MASTER_ID = 0
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
DEFAULT_TOPIC = "TBW102"


@dataclass(frozen=True, order=True)
class MessageQueue:
    """One queue of a topic on one broker; ordered as Java orders them (topic, broker, id)."""

    topic: str
    broker_name: str
    queue_id: int

    def __post_init__(self) -> None:
        # Consumers look queues up per message (offset table, process queues): hash once.
        object.__setattr__(self, "_hash", hash((self.topic, self.broker_name, self.queue_id)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return, attr-defined]

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "brokerName": self.broker_name, "queueId": self.queue_id}

    @property
    def key(self) -> str:
        """A stable text form, used as a key in offset files and logs."""
        return f"{self.topic}@{self.broker_name}@{self.queue_id}"

    @classmethod
    def from_key(cls, key: str) -> MessageQueue:
        topic, broker_name, queue_id = key.rsplit("@", 2)
        return cls(topic, broker_name, int(queue_id))


class SendStatus(enum.Enum):
    SEND_OK = "SEND_OK"
    FLUSH_DISK_TIMEOUT = "FLUSH_DISK_TIMEOUT"
    FLUSH_SLAVE_TIMEOUT = "FLUSH_SLAVE_TIMEOUT"
    SLAVE_NOT_AVAILABLE = "SLAVE_NOT_AVAILABLE"


@dataclass(frozen=True)
class SendResult:
    send_status: SendStatus
    msg_id: str  # the client-made UNIQ_KEY (comma-separated for a batch)
    offset_msg_id: str  # the broker's id: store host + position (comma-separated for a batch)
    message_queue: MessageQueue
    queue_offset: int  # of the first message, for a batch
    region_id: str = "DefaultRegion"


class MessageModel(enum.Enum):
    CLUSTERING = "CLUSTERING"
    BROADCASTING = "BROADCASTING"


class ConsumeFromWhere(enum.Enum):
    """Where a consumer group starts on a queue it has no committed offset for."""

    CONSUME_FROM_LAST_OFFSET = "CONSUME_FROM_LAST_OFFSET"
    CONSUME_FROM_FIRST_OFFSET = "CONSUME_FROM_FIRST_OFFSET"
    CONSUME_FROM_TIMESTAMP = "CONSUME_FROM_TIMESTAMP"


class ConsumeConcurrentlyStatus(enum.Enum):
    CONSUME_SUCCESS = "CONSUME_SUCCESS"
    RECONSUME_LATER = "RECONSUME_LATER"


class ConsumeOrderlyStatus(enum.Enum):
    """What an orderly listener answers (MessageListenerOrderly).

    SUCCESS: the batch is consumed (committed now when ``context.auto_commit``, else held until
    a COMMIT). SUSPEND_CURRENT_QUEUE_A_MOMENT: retry the same batch after
    ``suspend_current_queue_time_millis``, blocking the queue meanwhile. COMMIT and ROLLBACK
    only mean something with ``auto_commit=False`` (deprecated in RocketMQ, kept for its seed
    example): commit everything consumed so far, or hand it all back for redelivery.
    """

    SUCCESS = "SUCCESS"
    SUSPEND_CURRENT_QUEUE_A_MOMENT = "SUSPEND_CURRENT_QUEUE_A_MOMENT"
    COMMIT = "COMMIT"
    ROLLBACK = "ROLLBACK"


class ConsumeType(enum.Enum):
    """Heartbeat wording: PULL consumers are 'active', PUSH consumers 'passive'."""

    CONSUME_ACTIVELY = "CONSUME_ACTIVELY"
    CONSUME_PASSIVELY = "CONSUME_PASSIVELY"


class PullStatus(enum.Enum):
    FOUND = "FOUND"
    NO_NEW_MSG = "NO_NEW_MSG"
    NO_MATCHED_MSG = "NO_MATCHED_MSG"
    OFFSET_ILLEGAL = "OFFSET_ILLEGAL"
