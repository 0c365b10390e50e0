"""Start and shutdown of producers and consumers: each holds the process's shared
:class:`MQClientInstance` for its client config from ``start`` to ``shutdown`` (registered with
it, so routes and heartbeats cover it), and ``async with`` does both."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

from .config import ClientConfig
from .instance import MQClientInstance, MQClientManager


class ClientLifecycle(ABC):
    client_config: ClientConfig
    _instance: MQClientInstance | None

    @abstractmethod
    async def start(self) -> None:
        ...

    @abstractmethod
    async def shutdown(self) -> None:
        ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    @abstractmethod
    def _register(self, instance: MQClientInstance) -> None:
        """Make this producer or consumer known to ``instance``."""
        ...

    async def _acquire_instance(self) -> MQClientInstance:
        """For start: the shared instance, with this registered on it."""
        instance = await MQClientManager.acquire(self.client_config)
        self._register(instance)
        self._instance = instance
        return instance

    def _take_instance(self) -> MQClientInstance | None:
        """For shutdown: the instance start acquired, forgotten here (None when not started,
        so a second shutdown does nothing)."""
        instance, self._instance = self._instance, None
        return instance
