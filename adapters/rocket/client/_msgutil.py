"""Client-side message rules and the bits of the message codec only the client needs.

The codec (``adapters/rocket/message.py``) keeps bodies as stored; compression is a client
concern in RocketMQ (the producer compresses, the consumer inflates), so it lives here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

from ..message import (
    PROPERTY_KEYS,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_TAGS,
    PROPERTY_WAIT_STORE_MSG_OK,
    SYSFLAG_COMPRESSED,
    Message,
)
from .common import DEFAULT_TOPIC, RETRY_GROUP_TOPIC_PREFIX
from .errors import MessageIllegalError

TOPIC_CHARS = re.compile(r"^[%|a-zA-Z0-9_-]+$")
TOPIC_LENGTH_MAX = 127
COMPRESSION_ZLIB = 0x300  # sysFlag bits 8-10: which codec (RocketMQ 5; 4.x readers ignore them)
COMPRESSION_TYPE_MASK = 0x700
ZLIB_LEVEL = 5  # RocketMQ's compressMsgBodyOverHowmuch default level
NOT_ALLOWED_SEND_TOPICS = frozenset({
    DEFAULT_TOPIC, "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC", "TRANS_CHECK_MAX_TIME_TOPIC", "RMQ_SYS_TRACE_TOPIC",
})


def new_message(
    topic: str,
    body: bytes,
    tags: str | None = None,
    keys: str | Iterable[str] | None = None,
    properties: dict[str, str] | None = None,
    flag: int = 0,
) -> Message:
    """``new Message(topic, tags, keys, body)`` with RocketMQ's default ``WAIT=true``."""
    msg = Message(topic=topic, body=body, flag=flag, properties=dict(properties or {}))
    msg.properties.setdefault(PROPERTY_WAIT_STORE_MSG_OK, "true")
    if tags:
        msg.properties[PROPERTY_TAGS] = tags
    if keys:
        msg.properties[PROPERTY_KEYS] = keys if isinstance(keys, str) else " ".join(keys)
    return msg


def check_topic(topic: str) -> None:
    if not topic or not topic.strip():
        raise MessageIllegalError("the topic is empty")
    if len(topic) > TOPIC_LENGTH_MAX:
        raise MessageIllegalError(f"the topic is longer than {TOPIC_LENGTH_MAX} characters")
    if not TOPIC_CHARS.match(topic):
        raise MessageIllegalError(f"the topic {topic!r} has characters outside [%|a-zA-Z0-9_-]")


def check_message(msg: Message, max_message_size: int) -> None:
    """RocketMQ's ``Validators.checkMessage``: the broker would refuse these anyway."""
    check_topic(msg.topic)
    if msg.topic in NOT_ALLOWED_SEND_TOPICS:
        raise MessageIllegalError(f"sending to topic {msg.topic} is not allowed")
    if not msg.body:
        raise MessageIllegalError("the message body is empty")
    if len(msg.body) > max_message_size:
        raise MessageIllegalError(
            f"the message body is {len(msg.body)} bytes; maxMessageSize is {max_message_size}"
        )


def compress_body(body: bytes) -> bytes:
    return zlib.compress(body, ZLIB_LEVEL)


def prepare_pulled(msg: Message) -> Message:
    """What a listener should see: body inflated, retry-topic messages under their real topic."""
    if msg.sys_flag & SYSFLAG_COMPRESSED:
        kind = msg.sys_flag & COMPRESSION_TYPE_MASK
        if kind not in (0, COMPRESSION_ZLIB):
            raise MessageIllegalError(f"message {msg.msg_id} uses compression {kind:#x}; only zlib is supported")
        msg.body = zlib.decompress(msg.body)
        msg.sys_flag &= ~(SYSFLAG_COMPRESSED | COMPRESSION_TYPE_MASK)
    real_topic = msg.properties.get(PROPERTY_RETRY_TOPIC)
    if real_topic and msg.topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
        msg.topic = real_topic
    return msg
