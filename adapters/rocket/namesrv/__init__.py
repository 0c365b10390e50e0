"""A stateless RocketMQ name server: broker registry and topic routes, in memory."""

from .routes import BrokerData, QueueData, RegisterResult, Registration, RouteTable
from .server import DEFAULT_PORT, NameServer, run_namesrv

__all__ = [
    "DEFAULT_PORT",
    "BrokerData",
    "NameServer",
    "QueueData",
    "RegisterResult",
    "Registration",
    "RouteTable",
    "run_namesrv",
]
