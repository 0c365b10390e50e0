"""ClientConfig: what every producer and consumer shares, with RocketMQ's defaults.

The client id is ``clientIP@instanceName`` as in RocketMQ; the instance name defaults to the
process id, so two processes on one host never share an id (RocketMQ issue 1589: duplicate ids
make a group's consumers disagree about who owns which queue).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


def local_ip() -> str:
    """The address this host uses to reach others (no packet is sent); loopback if none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def split_namesrv_addr(namesrv_addr: str) -> list[str]:
    """RocketMQ's ``namesrvAddr``: ``host:port`` entries separated by ``;``."""
    return [a.strip() for a in namesrv_addr.split(";") if a.strip()]


@dataclass
class ClientConfig:
    namesrv_addr: str = field(
        default_factory=lambda: os.environ.get("NAMESRV_ADDR", "127.0.0.1:9876")
    )
    client_ip: str = field(default_factory=local_ip)
    instance_name: str = field(default_factory=lambda: str(os.getpid()))
    poll_name_server_interval_ms: int = 30_000  # route refresh
    heartbeat_broker_interval_ms: int = 30_000
    persist_consumer_offset_interval_ms: int = 5_000
    # RocketMQ's system property rocketmq.client.rebalance.waitInterval: the periodic rebalance
    # (a broker's NOTIFY_CONSUMER_IDS_CHANGED rebalances at once anyway).
    rebalance_interval_ms: int = 20_000
    request_timeout_ms: int = 3_000  # admin-style requests (offsets, routes, heartbeats)
    # Poll the sockets this long after sending a request instead of sleeping until the answer
    # wakes the loop (remoting/busypoll.py): lower latency for one-at-a-time sync sends, paid
    # in CPU. 0 (the default) turns it off.
    busy_poll_micros: int = 0
    unit_name: str | None = None

    @property
    def client_id(self) -> str:
        cid = f"{self.client_ip}@{self.instance_name}"
        return f"{cid}@{self.unit_name}" if self.unit_name else cid

    def namesrv_addrs(self) -> list[str]:
        addrs = split_namesrv_addr(self.namesrv_addr)
        if not addrs:
            raise ValueError(f"namesrv_addr {self.namesrv_addr!r} lists no address")
        return addrs
