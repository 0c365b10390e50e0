"""Topic configs (``config/topics.json``): queues, permissions, and RocketMQ's name rules."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from .persist import JsonFile

PERM_PRIORITY = 8
PERM_READ = 4
PERM_WRITE = 2
PERM_INHERIT = 1
DEFAULT_PERM = PERM_READ | PERM_WRITE
TOPIC_NAME_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")
TOPIC_BYTES_MAX = 127
AUTO_CREATE_TOPIC_KEY = "TBW102"  # the template topic producers name in defaultTopic
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX = "%DLQ%"
SYSTEM_TOPICS = frozenset({
    AUTO_CREATE_TOPIC_KEY, "SCHEDULE_TOPIC_XXXX", "RMQ_SYS_TRANS_HALF_TOPIC", "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC", "rmq_sys_wheel_timer", "BenchmarkTest", "OFFSET_MOVED_EVENT",
    "SELF_TEST_TOPIC",
})


def check_topic_name(topic: str) -> str | None:
    """Why ``topic`` is not a valid topic name, or None (TopicValidator.validateTopic)."""
    if not topic or not topic.strip():
        return "The specified topic is blank."
    if not TOPIC_NAME_RE.match(topic):
        return f"The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
    if len(topic) > TOPIC_BYTES_MAX:
        return f"The specified topic is longer than topic max length {TOPIC_BYTES_MAX}."
    return None


@dataclass
class TopicConfig:
    topic_name: str
    read_queue_nums: int = 16
    write_queue_nums: int = 16
    perm: int = DEFAULT_PERM
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False

    @property
    def queue_nums(self) -> int:
        """How many queue logs exist: the larger of the read and write counts."""
        return max(self.read_queue_nums, self.write_queue_nums)

    @property
    def writable(self) -> bool:
        return bool(self.perm & PERM_WRITE)

    @property
    def readable(self) -> bool:
        return bool(self.perm & PERM_READ)

    def to_json(self) -> dict[str, Any]:
        return {
            "topicName": self.topic_name, "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums, "perm": self.perm,
            "topicFilterType": self.topic_filter_type, "topicSysFlag": self.topic_sys_flag,
            "order": self.order, "attributes": {},
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TopicConfig:
        return cls(
            topic_name=str(obj["topicName"]), read_queue_nums=int(obj.get("readQueueNums", 16)),
            write_queue_nums=int(obj.get("writeQueueNums", 16)), perm=int(obj.get("perm", DEFAULT_PERM)),
            topic_filter_type=str(obj.get("topicFilterType", "SINGLE_TAG")),
            topic_sys_flag=int(obj.get("topicSysFlag", 0)), order=bool(obj.get("order", False)),
        )


class TopicConfigManager:
    """In memory, saved whole on every change (topic changes are rare admin operations)."""

    def __init__(self, file: JsonFile) -> None:
        self.file = file
        self.topics: dict[str, TopicConfig] = {}
        self.data_version = {"stateVersion": 0, "timestamp": int(time.time() * 1000), "counter": 0}
        doc = file.load()
        for name, obj in (doc.get("topicConfigTable") or {}).items():
            self.topics[name] = TopicConfig.from_json(obj)
        self.data_version.update(doc.get("dataVersion") or {})

    def get(self, topic: str) -> TopicConfig | None:
        return self.topics.get(topic)

    def put(self, config: TopicConfig) -> None:
        self.topics[config.topic_name] = config
        self._changed()

    def delete(self, topic: str) -> bool:
        if self.topics.pop(topic, None) is None:
            return False
        self._changed()
        return True

    def adopt(self, configs: list[TopicConfig], data_version: dict[str, Any]) -> bool:
        """A slave takes its master's table (RocketMQ's SlaveSynchronize.syncTopicConfig): replaced
        whole when the master's dataVersion differs from ours. Whether anything changed."""
        if data_version and data_version == self.data_version:
            return False
        self.topics = {c.topic_name: c for c in configs}
        self.data_version = {**self.data_version, **data_version}
        self.file.save(self.wrapper())
        return True

    def _changed(self) -> None:
        self.data_version["counter"] = int(self.data_version["counter"]) + 1
        self.data_version["timestamp"] = int(time.time() * 1000)
        self.file.save(self.wrapper())

    def wrapper(self) -> dict[str, Any]:
        """RocketMQ's TopicConfigSerializeWrapper (REGISTER_BROKER, GET_ALL_TOPIC_CONFIG)."""
        return {
            "topicConfigTable": {n: c.to_json() for n, c in sorted(self.topics.items())},
            "dataVersion": dict(self.data_version),
        }
