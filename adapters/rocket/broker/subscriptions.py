"""Subscription group configs (``config/subscriptionGroup.json``) with RocketMQ's defaults."""

from __future__ import annotations

import time
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
        self.data_version: dict[str, Any] = {"stateVersion": 0, "timestamp": int(time.time() * 1000), "counter": 0}
        self.data_version.update(doc.get("dataVersion") or {})

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

    def adopt(self, groups: dict[str, dict[str, Any]], data_version: dict[str, Any]) -> bool:
        """A slave takes its master's groups when the master's dataVersion differs."""
        if data_version and data_version == self.data_version:
            return False
        self.groups = {str(name): dict(cfg) for name, cfg in groups.items()}
        self.data_version = {**self.data_version, **data_version}
        self.file.save(self.wrapper())
        return True

    def wrapper(self) -> dict[str, Any]:
        """RocketMQ's SubscriptionGroupWrapper (GET_ALL_SUBSCRIPTIONGROUP_CONFIG)."""
        return {"subscriptionGroupTable": self.groups, "dataVersion": dict(self.data_version)}

    def _save(self) -> None:
        self.data_version["counter"] = int(self.data_version["counter"]) + 1
        self.data_version["timestamp"] = int(time.time() * 1000)
        self.file.save(self.wrapper())
