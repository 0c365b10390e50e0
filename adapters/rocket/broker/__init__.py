"""A RocketMQ broker over logstore: each (topic, queueId) is one log of stored messages."""

from .broker import Broker
from .config import BrokerConfig, parse_properties

__all__ = ["Broker", "BrokerConfig", "parse_properties"]
