"""Leader-follower replication of a store's logs (Kafka-style pull over TCP).

On the leader, :class:`ReplicaServer` answers followers' FETCH and LIST requests and keeps
:class:`LeaderState` (positions, ISR, high watermarks, :meth:`LeaderState.wait_replicated` for
acks=all). On each follower, :class:`Follower` pulls every log and truncates by leader epoch on
divergence. :func:`promote` starts a new leader epoch on a replica. The protocol runs over any
:class:`Connection` (TCP here; an in-memory faulty network in :mod:`logstore.replication.simnet`).

Lifecycle, as a broker group runs it::

    # master (brokerId 0): serve followers on haListenPort
    server = ReplicaServer(store, "0.0.0.0", 10912, replica_id=0, on_fenced=step_down)
    await server.start()
    result = await log.append(batch)                       # stamped with store.leader_epoch
    ok = await server.wait_replicated(log.name, result.last_offset + 1, min_insync=2, timeout=3)
    # SYNC_MASTER: ok False -> the send is not acknowledged as replicated (indeterminate)

    # slave (brokerId 1..): copy everything, never append itself
    follower = Follower(store, master_host, 10912, replica_id=1)
    await follower.start()

    # failover: on the chosen slave (one that was in the master's ISR and store.may_lead)
    await follower.stop()
    epoch = await promote(store)                           # persisted before it takes effect
    server = ReplicaServer(store, "0.0.0.0", 10912, replica_id=1)
    await server.start()
    # every other replica, the old master included once it is back: a new Follower pointed
    # at the new master; it truncates whatever diverged, by epoch.

A ReplicaServer serves one leadership term: after stop() (or fencing) make a new one.
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
