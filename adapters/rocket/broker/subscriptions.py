"""Subscription group configs (``config/subscriptionGroup.json``) with RocketMQ's defaults."""

from __future__ import annotations

from typing import Any

from .persist import JsonFile

DEFAULT_GROUP: dict[str, Any] = {
    "consumeEnable": True,
    "consumeFromMinEnable": True,
    "consumeBroadcastEnable": True,
    "consumeMessageOrderly": False,
    "retryQueueNums": 1,
    "retryMaxTimes": 16,
    "brokerId": 0,
    "whichBrokerWhenConsumeSlowly": 1,
    "notifyConsumerIdsChangedEnable": True,
    "groupSysFlag": 0,
    "consumeTimeoutMinute": 15,
}


class SubscriptionGroupManager:
    def __init__(self, file: JsonFile, auto_create: bool) -> None:
        self.file = file
        self.auto_create = auto_create
        doc = file.load()
        self.groups: dict[str, dict[str, Any]] = dict(doc.get("subscriptionGroupTable") or {})

    def get(self, group: str) -> dict[str, Any] | None:
        return self.groups.get(group)

    def find_or_create(self, group: str) -> dict[str, Any] | None:
        """The group's config, created with defaults when auto-creation is on."""
        cfg = self.groups.get(group)
        if cfg is None and self.auto_create:
            cfg = self.update({"groupName": group})
        return cfg

    def update(self, config: dict[str, Any]) -> dict[str, Any]:
        name = str(config.get("groupName") or "")
        if not name:
            raise ValueError("subscription group config has no groupName")
        merged = {**DEFAULT_GROUP, **self.groups.get(name, {}), **config, "groupName": name}
        self.groups[name] = merged
        self._save()
        return merged

    def delete(self, group: str) -> bool:
        if self.groups.pop(group, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        self.file.save({"subscriptionGroupTable": self.groups})
