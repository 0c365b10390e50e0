"""Leader-follower replication of a store's logs (Kafka-style pull over TCP).

On the leader, :class:`ReplicaServer` answers followers' FETCH and LIST requests and keeps
:class:`LeaderState` (positions, ISR, high watermarks, :meth:`LeaderState.wait_replicated` for
acks=all). On each follower, :class:`Follower` pulls every log and truncates by leader epoch on
divergence. :func:`promote` starts a new leader epoch on a replica. The protocol runs over any
:class:`Connection` (TCP here; an in-memory faulty network in :mod:`logstore.replication.simnet`).
"""

from logstore.replication.follower import Follower
from logstore.replication.leader import LeaderState, ReplicaPosition
from logstore.replication.promotion import promote
from logstore.replication.server import ReplicaServer
from logstore.replication.transport import (
    Connection,
    ConnectionClosed,
    Connector,
    StreamConnection,
    tcp_connector,
)

__all__ = [
    "Connection", "ConnectionClosed", "Connector", "Follower", "LeaderState", "ReplicaPosition",
    "ReplicaServer", "StreamConnection", "promote", "tcp_connector",
]
