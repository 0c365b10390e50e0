"""Seeded replication simulation: three replicas over SimIO disks and the in-memory network,
on a virtual-time loop, with a controller (this module) that promotes and re-points.

Fault phase (``fault_s`` virtual seconds), one fault at a time (a minority of three):
network delays and broken connections throughout, plus random events: a follower killed (a
power loss: SimIO resolves its unsynced writes as applied, dropped, torn or garbage) and
restarted, the leader killed and a replica promoted, a graceful promotion (the old leader
becomes a follower), a node partitioned from the others for a while, fsync failures on a
follower (its logs fail-stop; the controller restarts the node, as an operator would a
half-alive process), IO errors on a follower, a split brain (the leader cut off while a new
one is promoted; a producer keeps writing to the old one until the heal demotes it), and a
double fault (a follower power-cycled, then its leader killed before noticing: KIP-966's last
replica standing), and a trim (a follower down while the leader deletes its records below the
high watermark, as retention would: back, the follower is behind the leader's log start and
starts its log over there, in place). A producer appends unique values to the leader and waits for
``wait_replicated(min_insync=2)``: each write is ok, failed or indeterminate.

The controller promotes only a replica that was in the leader's ISR of every log and may lead
(recovery cut nothing since it last caught up): Kafka's clean election. It re-points every
follower at once (a real controller does this through its consensus store).

Frames within one connection stay in order (TCP's promise); reordering happens across
connections (an old connection's late frames after a reconnect).

Liveness phase: faults off, every node up; a final write per log must be acknowledged by all
three replicas and the replicas converge. Oracles (Jepsen's queue checker): no acknowledged
value lost, no value twice, no value that was never written, no offset holding different
values on two replicas, every batch CRC-valid. Each replica keeps its own log start (retention
is per replica, as each RocketMQ broker deletes its own files): replicas are compared from the
highest start, and an acknowledged value below a trim may be gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field

from fuzz.simdisk import random_chooser
from fuzz.simloop import run_virtual
from logstore.batch import Record, build_batch
from logstore.config import LogConfig
from logstore.errors import LogstoreError
from logstore.io import Clock
from logstore.log import Log
from logstore.replication import Follower, ReplicaServer, promote
from logstore.replication.simnet import SimNetwork
from logstore.simio import SimIO
from logstore.store import Store, StoreConfig

ROOT = "/store"
NODES = ("n0", "n1", "n2")
LOGS = {
    "q-0": LogConfig(flush="sync", segment_bytes=4096, index_interval_bytes=256),
    "q-1": LogConfig(flush="async", flush_interval_ms=50, segment_bytes=4096, index_interval_bytes=256),
}
LAG_TIME_MAX_MS = 1500
ACK_TIMEOUT_S = 1.0
OP_TIMEOUT_S = 3.0


class Violation(AssertionError):
    """An oracle failed."""


class LoopClock(Clock):
    """Wall-clock ms that follow the (virtual) event loop."""

    def now_ms(self) -> int:
        return 1_700_000_000_000 + int(asyncio.get_running_loop().time() * 1000)


@dataclass
class Node:
    name: str
    replica_id: int
    io: SimIO
    store: Store | None = None
    server: ReplicaServer | None = None
    follower: Follower | None = None

    @property
    def up(self) -> bool:
        return self.store is not None


@dataclass
class Stats:
    writes: int = 0
    acked: int = 0
    failed: int = 0
    indeterminate: int = 0
    kills: int = 0
    leader_kills: int = 0
    promotions: int = 0
    partitions: int = 0
    splits: int = 0
    io_faults: int = 0
    fsync_faults: int = 0
    truncations: int = 0
    trims: int = 0
    unclean_elections: int = 0
    frames: int = 0
    broken_connections: int = 0
    virtual_s: float = 0.0
    events: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"writes={self.writes} acked={self.acked} failed={self.failed} indeterminate={self.indeterminate} "
                f"kills={self.kills} leader_kills={self.leader_kills} promotions={self.promotions} "
                f"partitions={self.partitions} splits={self.splits} io_faults={self.io_faults} fsync_faults={self.fsync_faults} truncations={self.truncations} "
                f"trims={self.trims} "
                f"unclean_elections={self.unclean_elections} "
                f"frames={self.frames} broken={self.broken_connections} virtual_s={self.virtual_s:.1f}")


class Cluster:
    def __init__(self, seed: int, fault_s: float) -> None:
        self.seed = seed
        self.fault_s = fault_s
        self.rng = random.Random(seed)
        self.net = SimNetwork(random.Random(seed * 7 + 1), delay_ms_max=15.0, break_probability=0.003)
        self.nodes = {n: Node(n, i, SimIO(seed=seed * 31 + i)) for i, n in enumerate(NODES)}
        self.clock = LoopClock()
        self.leader: Node | None = None
        self.stats = Stats()
        self.history: dict[str, dict[str, str]] = {name: {} for name in LOGS}  # value -> outcome
        self._counter = 0
        self.producer_target: Node | None = None  # a stale leader a producer still believes in
        self.stale_servers: dict[str, ReplicaServer] = {}
        self.acks: dict[str, tuple[str, int, list[int], float]] = {}  # value -> (leader, offset, isr, time)
        self.trimmed: dict[str, int] = {}  # log -> the highest start a trim gave it

    def note(self, what: str) -> None:
        self.stats.events.append(f"{asyncio.get_running_loop().time():8.3f} {what}")

    # -- node lifecycle ----------------------------------------------------------------------------

    async def open(self, node: Node) -> None:
        node.store = await Store.open(ROOT, io=node.io, clock=self.clock,
                                      config=StoreConfig(checkpoint_interval_ms=300, retention_check_interval_ms=10**9))

    async def lead(self, node: Node) -> None:
        assert node.store is not None
        for name, config in LOGS.items():
            await node.store.get_or_create_log(name, config)
        now = asyncio.get_running_loop().time
        node.server = ReplicaServer(node.store, replica_id=node.replica_id, lag_time_max_ms=LAG_TIME_MAX_MS,
                                    fetch_wait_max_ms=300, now_ms=lambda: now() * 1000)
        node.server.start_background()
        self.net.serve(node.name, node.server.serve_connection)
        self.leader = node

    async def follow(self, node: Node, leader: Node) -> None:
        assert node.store is not None
        if node.follower is not None:
            await node.follower.stop()
        self.note(f"{node.name} follows {leader.name}")
        node.follower = Follower(node.store, replica_id=node.replica_id, connect=self.net.connector(node.name, leader.name),
                                 fetch_max_wait_ms=200, retry_backoff_ms=50, list_interval_ms=500,
                                 request_timeout_ms=2000)
        await node.follower.start()

    async def stop_roles(self, node: Node) -> None:
        if node.follower is not None:
            self.stats.truncations += node.follower.truncations
            await node.follower.stop()
            node.follower = None
        if node.server is not None:
            self.note(f"{node.name} stops serving")
            self.net.serve(node.name, None)
            await node.server.stop()
            node.server = None

    async def kill(self, node: Node) -> None:
        """Power loss: tasks die, unsynced writes meet their fates, the disk is what is left."""
        await self.stop_roles(node)
        store, node.store = node.store, None
        if store is not None:
            for t in store._tasks:
                t.cancel()
            await asyncio.gather(*store._tasks, return_exceptions=True)
            store._lock.release()
            store._executor.shutdown(wait=False)
            store._journal_worker.close()
        node.io.clear_faults()
        node.io.crash(random_chooser(self.rng))
        if self.leader is node:
            self.leader = None

    async def restart(self, node: Node) -> None:
        await self.open(node)
        if self.leader is not None and self.leader is not node:
            await self.follow(node, self.leader)

    # -- the controller --------------------------------------------------------------------------

    def eligible(self, old: Node | None) -> list[Node]:
        """Replicas that may become leader: up, may_lead, and in the old leader's ISR of every
        log (when the old leader's state is known)."""
        out = []
        for node in self.nodes.values():
            if node is old or node.store is None or not node.store.may_lead:
                continue
            if old is not None and old.server is not None and not all(
                node.replica_id in old.server.isr(name) for name in LOGS if name in old.server.store.logs
            ):
                continue
            out.append(node)
        return out

    async def elect(self, candidates: list[Node], old: Node | None) -> bool:
        if not candidates:
            return False
        new = self.rng.choice(candidates)
        if old is not None:
            await self.stop_roles(old)
        if new.follower is not None:
            self.stats.truncations += new.follower.truncations
            await new.follower.stop()
            new.follower = None
        assert new.store is not None
        epoch = await promote(new.store)
        await self.lead(new)
        self.stats.promotions += 1
        self.note(f"promote {new.name} epoch {epoch}")
        for node in self.nodes.values():
            if node is not new and node.store is not None:
                await self.follow(node, new)
        return True

    # -- the producer ------------------------------------------------------------------------------

    async def produce(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.002, 0.02))
            leader = self.producer_target or self.leader
            server = None if leader is None else leader.server or self.stale_servers.get(leader.name)
            if leader is None or leader.store is None or server is None:
                continue
            name = self.rng.choice(sorted(LOGS))
            self._counter += 1
            value = f"{self.seed}-{self._counter}"
            self.stats.writes += 1
            self.history[name][value] = "indeterminate"
            try:
                log = leader.store.log(name)
                r = await asyncio.wait_for(log.append(build_batch([Record(value.encode())])), OP_TIMEOUT_S)
                ok = await server.wait_replicated(name, r.last_offset + 1, min_insync=2, timeout=ACK_TIMEOUT_S)
            except (LogstoreError, TimeoutError):
                self.history[name][value] = "failed"
                self.stats.failed += 1
                continue
            if ok:
                self.history[name][value] = "ok"
                self.stats.acked += 1
                self.acks[value] = (leader.name, r.base_offset, sorted(server.isr(name)),
                                    asyncio.get_running_loop().time())
            else:
                self.stats.indeterminate += 1

    # -- faults -------------------------------------------------------------------------------------

    async def supervise(self) -> None:
        """Restart a node whose logs fail-stopped (class 11: never leave it half alive)."""
        for node in self.nodes.values():
            if node.store is not None and any(lg.failure is not None for lg in node.store.logs.values()):
                self.note(f"restart fail-stopped {node.name}")
                was_leader = node is self.leader
                await self.kill(node)
                await self.restart(node)
                if was_leader:
                    await self.elect(self.eligible(None), None)
                    if self.leader is None:
                        await self.force_leader()

    async def fault_event(self) -> None:
        up = [n for n in self.nodes.values() if n.up]
        followers = [n for n in up if n is not self.leader]
        kind = self.rng.choices(["kill", "kill_leader", "promote", "partition", "fsync", "split", "ioerror", "double",
                                 "trim"], [30, 15, 15, 25, 15, 10, 10, 10, 10])[0]
        loop = asyncio.get_running_loop()
        if kind == "kill" and followers:
            node = self.rng.choice(followers)
            self.stats.kills += 1
            self.note(f"kill {node.name}")
            await self.kill(node)
            await asyncio.sleep(self.rng.uniform(0.05, 1.0))
            await self.restart(node)
            self.note(f"restart {node.name} may_lead={node.store.may_lead if node.store else None}")
        elif kind == "kill_leader" and self.leader is not None:
            await self.kill_leader(self.leader)
        elif kind == "promote" and self.leader is not None:
            old = self.leader
            if await self.elect(self.eligible(old), old):
                assert self.leader is not None
                await self.follow(old, self.leader)
        elif kind == "partition":
            node = self.rng.choice(list(self.nodes.values()))
            self.stats.partitions += 1
            self.note(f"partition {node.name}")
            self.net.isolate(node.name, NODES)
            await asyncio.sleep(self.rng.uniform(0.1, 2.5))
            self.net.heal()
            self.note("heal")
        elif kind == "double" and followers and self.leader is not None:
            # KIP-966's "last replica standing": a follower loses its unsynced tail in a power
            # loss and is back before the leader notices; then the leader dies. The follower
            # may still be in the leader's ISR: only may_lead keeps it from leading.
            node = self.rng.choice(followers)
            self.stats.kills += 1
            self.note(f"kill {node.name} (then its leader)")
            await self.kill(node)
            await self.restart(node)
            await asyncio.sleep(self.rng.uniform(0, 0.02))
            await self.kill_leader(self.leader)
        elif kind == "split" and self.leader is not None:
            await self.split_brain(self.leader)
        elif kind == "trim" and followers and self.leader is not None:
            await self.trim(self.rng.choice(followers), self.leader)
        elif kind == "ioerror" and followers:
            node = self.rng.choice(followers)
            self.stats.io_faults += 1
            self.note(f"IO errors on {node.name}")
            node.io.fail_after(self.rng.randint(1, 40), persistent=self.rng.random() < 0.5)
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            node.io.clear_faults()
        elif kind == "fsync" and followers:
            node = self.rng.choice(followers)
            self.stats.fsync_faults += 1
            self.note(f"fsync failures on {node.name}")
            node.io.fail_fsync(True)
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            node.io.clear_faults()
        await self.supervise()
        _ = loop

    async def kill_leader(self, old: Node) -> None:
        """Kill the leader, elect one of the replicas that were eligible, restart the old one
        (it comes back as a follower, or is elected itself when nobody else could be)."""
        candidates = self.eligible(old)
        self.stats.leader_kills += 1
        self.note(f"kill leader {old.name}")
        await self.kill(old)
        await self.elect(candidates, None)
        await asyncio.sleep(self.rng.uniform(0.05, 1.0))
        await self.restart(old)
        if self.leader is None:
            await self.elect(self.eligible(None), None)

    async def trim(self, node: Node, leader: Node) -> None:
        """``node`` goes down, the producer goes on, the leader deletes a log's records below its
        high watermark, ``node`` comes back behind the leader's new log start."""
        self.note(f"kill {node.name} (for a trim)")
        await self.kill(node)
        # past the ISR lag time (1.5 s) the high watermark moves on without it
        await asyncio.sleep(self.rng.uniform(0.5, 3.0))
        if self.leader is leader and leader.store is not None:
            name = self.rng.choice(sorted(LOGS))
            lg = leader.store.log(name)
            start = min(lg.high_watermark, lg.committed_offset)
            if start > lg.log_start_offset and lg.failure is None:
                try:
                    start = await lg.delete_records_before(start)
                except LogstoreError as exc:
                    self.note(f"trim of {name} on {leader.name} failed: {exc}")
                else:
                    self.trimmed[name] = max(self.trimmed.get(name, 0), start)
                    self.stats.trims += 1
                    self.note(f"trim {name} on {leader.name} below {start}")
        await self.restart(node)

    async def split_brain(self, old: Node) -> None:
        """The controller loses the leader (a partition, not a crash) and promotes another
        replica while the old one still runs, believes it leads, and takes writes from a
        producer that has not heard yet (RocketMQ #7017). When the partition heals the
        controller demotes it; its unreplicated tail must go, nothing acknowledged may."""
        candidates = self.eligible(old)
        if not candidates:
            return
        self.stats.splits += 1
        self.note(f"split: {old.name} cut off while still leading")
        self.net.isolate(old.name, NODES)
        new = self.rng.choice(candidates)
        assert new.store is not None
        if new.follower is not None:
            self.stats.truncations += new.follower.truncations
            await new.follower.stop()
            new.follower = None
        epoch = await promote(new.store)
        stale_server = old.server
        old.server = None  # the old leader keeps serving until demoted (below)
        if stale_server is not None:
            self.stale_servers[old.name] = stale_server
        await self.lead(new)
        self.stats.promotions += 1
        self.note(f"promote {new.name} epoch {epoch} (old leader {old.name} still up)")
        self.producer_target = old  # the producer still writes to the old leader for a while
        for node in self.nodes.values():
            if node is not new and node is not old and node.store is not None:
                await self.follow(node, new)
        await asyncio.sleep(self.rng.uniform(0.1, 1.5))
        self.producer_target = None
        self.net.heal()
        self.note(f"heal; demote {old.name}")
        if stale_server is not None:
            self.net.serve(old.name, None)
            await stale_server.stop()
            del self.stale_servers[old.name]
        if old.store is not None:
            await self.follow(old, new)

    async def force_leader(self) -> None:
        """No clean candidate: the most complete replica leads (an unclean election; counted
        so a run that needed one is visible)."""
        up = [n for n in self.nodes.values() if n.store is not None]
        best = max(up, key=lambda n: sum(lg.end_offset for lg in n.store.logs.values()) if n.store else -1)
        self.note(f"unclean election of {best.name}")
        self.stats.unclean_elections += 1
        assert best.store is not None
        await best.store.set_may_lead(True)
        await self.elect([best], None)

    # -- the run --------------------------------------------------------------------------------------

    async def run(self) -> Stats:
        loop = asyncio.get_running_loop()
        for node in self.nodes.values():
            await self.open(node)
        first = self.nodes["n0"]
        await self.elect([first], None)
        stop = asyncio.Event()
        producer = asyncio.create_task(self.produce(stop))
        deadline = loop.time() + self.fault_s
        while loop.time() < deadline:
            await asyncio.sleep(self.rng.uniform(0.1, 0.8))
            await self.fault_event()
        stop.set()
        await producer
        await self.liveness()
        self.stats.frames, self.stats.broken_connections = self.net.frames, self.net.broken
        self.stats.virtual_s = loop.time()
        for node in self.nodes.values():
            if node.follower is not None:
                self.stats.truncations += node.follower.truncations
            await self.stop_roles(node)
            if node.store is not None:
                await node.store.close()
        return self.stats

    async def liveness(self) -> None:
        """Faults off, everyone up: a final write per log reaches all three, replicas converge."""
        self.net.heal()
        self.net.break_probability = 0.0
        for node in self.nodes.values():
            node.io.clear_faults()
            if node.store is None:
                await self.restart(node)
        await self.supervise()
        if self.leader is None:
            await self.elect(self.eligible(None), None)
        if self.leader is None:
            await self.force_leader()
        leader = self.leader
        assert leader is not None and leader.store is not None and leader.server is not None
        for node in self.nodes.values():
            if node is not leader and node.follower is None:
                await self.follow(node, leader)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not all(len(leader.server.isr(name)) == len(NODES) for name in LOGS) and loop.time() - t0 < 30:
            await asyncio.sleep(0.05)
        for name in LOGS:
            r = await leader.store.log(name).append(build_batch([Record(b"final")]))
            if not await leader.server.wait_replicated(name, r.last_offset + 1, min_insync=3, timeout=30.0):
                states = {n.name: (n.follower.last_error if n.follower else None,
                                   n.follower._task.exception() if n.follower and n.follower._task and n.follower._task.done() else "running",
                                   {ln: (lg.end_offset, lg.epochs.entries()) for ln, lg in n.store.logs.items()} if n.store else None)
                          for n in self.nodes.values()}
                raise Violation(f"liveness: the final write to {name} was not replicated to all three in 30 s "
                                f"(isr {leader.server.isr(name)}; {states})")
        end = {name: leader.store.log(name).end_offset for name in LOGS}
        t0 = asyncio.get_running_loop().time()
        while not all(n.store is not None and all(n.store.log(name).end_offset == e for name, e in end.items())
                      for n in self.nodes.values()):
            if asyncio.get_running_loop().time() - t0 > 30:
                raise Violation("liveness: replicas did not converge in 30 s")
            await asyncio.sleep(0.05)
        self.check(leader)

    def check(self, leader: Node) -> None:
        for name, outcomes in self.history.items():
            views = {}
            starts = []
            for node in self.nodes.values():
                assert node.store is not None
                lg = node.store.log(name)
                starts.append(lg.log_start_offset)
                views[node.name] = read_all(node.name, lg)
            common = max(starts)  # each replica keeps its own start: compare from the highest
            views = {n: [(o, v) for o, v in view if o >= common] for n, view in views.items()}
            base = views[leader.name]
            for node_name, view in views.items():
                if view != base:
                    diff = next((a, b) for a, b in zip(view, base, strict=False) if a != b) if view and base else None
                    raise Violation(f"{name}: {node_name} differs from the leader {leader.name} "
                                    f"(lengths {len(view)} vs {len(base)}; first difference {diff})")
            values = [v.decode() for _o, v in base if v is not None]
            if len(values) != len(set(values)):
                raise Violation(f"{name}: a value appears twice")
            present = set(values)
            for value, outcome in outcomes.items():
                # an unclean election may lose what the lost replicas acknowledged (Kafka's
                # unclean.leader.election); only then is the lost-write oracle off. A value
                # acknowledged below the common start was trimmed, not lost.
                if (outcome == "ok" and value not in present and not self.stats.unclean_elections
                        and self.acks[value][1] >= common):
                    raise Violation(f"{name}: acknowledged value {value} was lost (acked as {self.acks.get(value)})")
            unknown = present - set(outcomes) - {"final"}
            if unknown:
                raise Violation(f"{name}: values never written: {sorted(unknown)[:5]}")
            if common > self.trimmed.get(name, 0) and not self.stats.unclean_elections:
                raise Violation(f"{name}: a replica starts at {common}, above any trim "
                                f"({self.trimmed.get(name, 0)}): records below it are gone")


def read_all(node: str, lg: Log) -> list[tuple[int, bytes | None]]:
    """Every record of the log through its read path (one segment per read), CRC-checked."""
    out: list[tuple[int, bytes | None]] = []
    offset = lg.log_start_offset
    while offset < lg.end_offset:
        try:
            recs = lg.read_records(offset, 1 << 20)
        except LogstoreError as exc:
            raise Violation(f"{node} {lg.name}: a bad batch is served at {offset}: {exc}") from exc
        if not recs:
            raise Violation(f"{node} {lg.name}: nothing served at {offset} below the end {lg.end_offset}")
        out += [(r.offset, r.value) for r in recs]
        offset = recs[-1].offset + 1
    return out


def run_seed(seed: int, fault_s: float = 8.0) -> Stats:
    cluster = Cluster(seed, fault_s)
    try:
        return run_virtual(cluster.run())
    except Violation as exc:
        trail = "\n".join(cluster.stats.events[-30:])
        raise Violation(f"seed {seed}: {exc}\nlast events:\n{trail}") from exc


def fingerprint(stats: Stats) -> str:
    return hashlib.sha256("\n".join(stats.events).encode() + stats.line().encode()).hexdigest()[:16]
