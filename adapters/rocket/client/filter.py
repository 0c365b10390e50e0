"""Subscription expressions of type TAG: ``*`` or ``tagA || tagB``.

The broker filters on a 32-bit hash of the tag (Java's ``String.hashCode``); two tags can share a
hash, so the client checks the exact tag string again before a listener sees the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ._java import java_string_hash

SUB_ALL = "*"
EXPRESSION_TYPE_TAG = "TAG"


@dataclass
class SubscriptionData:
    topic: str
    sub_string: str = SUB_ALL
    tags_set: list[str] = field(default_factory=list)
    code_set: list[int] = field(default_factory=list)
    sub_version: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    expression_type: str = EXPRESSION_TYPE_TAG

    def to_json(self) -> dict[str, Any]:
        return {
            "classFilterMode": False,
            "topic": self.topic,
            "subString": self.sub_string,
            "tagsSet": self.tags_set,
            "codeSet": self.code_set,
            "subVersion": self.sub_version,
            "expressionType": self.expression_type,
        }

    def matches(self, tags: str | None) -> bool:
        """The client-side exact re-check of a message the broker let through."""
        if not self.tags_set:
            return True
        return tags is not None and tags in self.tags_set


def build_subscription(topic: str, sub_expression: str | None) -> SubscriptionData:
    expr = (sub_expression or "").strip()
    if not expr or expr == SUB_ALL:
        return SubscriptionData(topic, SUB_ALL)
    tags: list[str] = []
    for part in expr.split("||"):
        tag = part.strip()
        if tag and tag not in tags:
            tags.append(tag)
    if not tags:
        raise ValueError(f"subscription expression {sub_expression!r} names no tag")
    return SubscriptionData(
        topic, expr, tags_set=tags, code_set=[java_string_hash(t) for t in tags]
    )
