"""A RocketMQ broker over logstore: each (topic, queueId) is one log of stored messages."""

import os as _os

from adapters.rocket.compiled import check_fresh as _check_fresh

_check_fresh(_os.path.dirname(__file__))  # before any compiled module of this package loads

from .broker import Broker
from .config import BrokerConfig, parse_properties

__all__ = ["Broker", "BrokerConfig", "parse_properties"]
