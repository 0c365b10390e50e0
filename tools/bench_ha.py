"""``logstore bench ha``: a master/slave broker group as real processes on this machine
(``logstore namesrv`` and ``logstore broker`` subprocesses on free 127.0.0.1 ports, ASYNC_FLUSH
everywhere), driven from this process with the project's Python client. Messages are 1 KiB.

    logstore bench ha [--seconds 5] [--senders 64] [--queues 8] [--quick] [--json] [--dir DIR]
    logstore bench rocket ha ...   (the same)

Figures, all from the same run:

* ``ha.sync_master.tps``: ``--senders`` tasks each doing one ``Producer.send`` at a time for
  ``--seconds`` to a SYNC_MASTER with two slaves (brokerId 1 and 2); only SEND_OK answers
  count | the same load on a single ASYNC_MASTER broker without slaves, measured first in the
  same run | goal: ratio >= 0.5. ``.p99`` is the send latency (baseline: the single broker's).
* ``ha.lag_msgs.max`` / ``ha.lag_ms.max``: the slowest slave's lag behind the master during
  the SYNC_MASTER load, sampled every ``--sample-ms`` (50): messages (sum over the topic's
  queues of the master's max offset minus the slave's, GET_MAX_OFFSET) and milliseconds (those
  messages at the master's append rate since the previous sample) | none (``params.mean``: the
  mean over samples).
* ``ha.failover_ms``: the master is SIGKILLed while the load goes on; the bench probes it every
  10 ms and, on the first refused connection, promotes the slave with the most data
  (PROMOTE_SLAVE, brokerRole SYNC_MASTER) and sends to it until a send answers SEND_OK (the other
  slave must have found and caught up with the new master: it learns it from the name server,
  so ``registerNameServerPeriod`` is 1 s here) | none. ``params`` split it: ``detect_ms`` (kill
  -> death seen), ``promote_ms`` (PROMOTE_SLAVE round trip), ``first_stored_ms`` (kill -> a
  send stored on the new master, SLAVE_NOT_AVAILABLE included).

``--quick`` shrinks it (tests). ``--json``: one JSON object per figure (as ``logstore bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from adapters.rocket.client import ClientConfig, Message, Producer, SendStatus
from adapters.rocket.message import Message as StoredMessage
from adapters.rocket.remoting import (
    PROMOTE_SLAVE,
    RemotingClient,
    RemotingCommand,
    RemotingError,
    RequestCode,
    ResponseCode,
)
from adapters.rocket.testing import LogstoreProcess, free_port, write_conf
from logstore import runtime
from tools import benchkit
from tools.benchkit import Figure, Goal, Stats, fresh, note, workdir
from tools.cli_support import parse_args

MSG_BYTES = 1024
TOPIC = "BenchHA"
PROBE_INTERVAL_S = 0.01
perf = time.perf_counter


class Reporter(benchkit.Reporter):
    def __init__(self, as_json: bool) -> None:
        super().__init__(as_json, value_digits=3, fine_below=10)


class Group:
    """A name server and the brokers of one broker group (by key), each a subprocess."""

    def __init__(self, root: Path, conf: dict[str, object]) -> None:
        self.root = root
        self.conf = conf
        root.mkdir(parents=True, exist_ok=True)
        self.namesrv_proc = LogstoreProcess(["namesrv", "--namesrv-port", "0"])
        self.namesrv = self.namesrv_proc.start()["namesrv"]
        self.procs: dict[str, LogstoreProcess] = {}
        self.addrs: dict[str, str] = {}

    def start(self, key: str, *, broker_id: int, role: str) -> str:
        conf = write_conf(self.root / f"{key}.conf", brokerName="bench-ha", brokerId=broker_id, brokerRole=role,
                          namesrvAddr=self.namesrv, listenPort=free_port(), haListenPort=free_port(),
                          autoCreateTopicEnable="false", **self.conf)
        proc = LogstoreProcess(["broker", "-c", str(conf), "--data-dir", str(self.root / key),
                                "--log-level", "WARNING"])
        self.addrs[key] = proc.start()["broker"]
        self.procs[key] = proc
        return self.addrs[key]

    def kill(self, key: str) -> None:
        self.procs[key].stop(signal.SIGKILL)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.alive:
                proc.stop()
        self.namesrv_proc.stop()


async def invoke(client: RemotingClient, addr: str, code: int, ext: dict[str, object], body: bytes = b"",
                 timeout_s: float = 5.0) -> RemotingCommand:
    return await client.invoke(addr, RemotingCommand.request(code, ext, body), timeout_s)


async def create_topic(client: RemotingClient, addr: str, queues: int) -> None:
    resp = await invoke(client, addr, RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": TOPIC, "readQueueNums": queues, "writeQueueNums": queues, "perm": 6})
    if resp.code != ResponseCode.SUCCESS:
        raise RuntimeError(f"cannot create {TOPIC} on {addr}: {resp.remark}")


async def queue_ends(client: RemotingClient, addr: str, queues: int) -> list[int]:
    async def one(q: int) -> int:
        resp = await invoke(client, addr, RequestCode.GET_MAX_OFFSET, {"topic": TOPIC, "queueId": q})
        return int(resp.ext_fields["offset"]) if resp.code == ResponseCode.SUCCESS else -1

    return list(await asyncio.gather(*(one(q) for q in range(queues))))


def send_ext(queue: int) -> dict[str, object]:
    props = StoredMessage(topic=TOPIC, body=b"", properties={}).properties_string()
    return {"a": "bench_ha_pg", "b": TOPIC, "c": "TBW102", "d": 4, "e": queue, "f": 0,
            "g": int(time.time() * 1000), "h": 0, "i": props, "j": 0, "k": False, "m": False}


class Load:
    """``senders`` tasks each sending one message at a time through a Producer until stopped."""

    def __init__(self, namesrv: str, senders: int, label: str) -> None:
        self.producer = Producer(f"bench_ha_{label}", client_config=ClientConfig(
            namesrv_addr=namesrv, client_ip="127.0.0.1", instance_name=f"bench-ha-{label}"))
        self.senders = senders
        self.ok = 0
        self.not_ok = 0
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.payload = os.urandom(MSG_BYTES)

    async def start(self) -> None:
        await self.producer.start()
        for _ in range(50):  # route and connection, and SYNC_MASTER slaves in sync
            r = await self.producer.send(Message(TOPIC, self.payload))
            if r.send_status == SendStatus.SEND_OK:
                break
            await asyncio.sleep(0.1)
        self._tasks = [asyncio.create_task(self._sender()) for _ in range(self.senders)]

    async def _sender(self) -> None:
        while not self._stop.is_set():
            t0 = perf()
            try:
                r = await self.producer.send(Message(TOPIC, self.payload))
            except Exception:  # a dead master: the failover phase goes on sending
                self.not_ok += 1
                await asyncio.sleep(0.01)
                continue
            if r.send_status == SendStatus.SEND_OK:
                self.ok += 1
                self.latencies.append(perf() - t0)
            else:
                self.not_ok += 1

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self.producer.shutdown()


async def measure(load: Load, seconds: float) -> tuple[float, list[float]]:
    """(SEND_OK per second, latencies) over ``seconds`` of a running load."""
    ok0, n0 = load.ok, len(load.latencies)
    t0 = perf()
    await asyncio.sleep(seconds)
    return (load.ok - ok0) / (perf() - t0), load.latencies[n0:]


async def bench_single(args: argparse.Namespace, root: Path) -> tuple[float, list[float]]:
    group = Group(root / "single", {"flushDiskType": "ASYNC_FLUSH"})
    try:
        addr = group.start("master", broker_id=0, role="ASYNC_MASTER")
        async with RemotingClient() as client:
            await create_topic(client, addr, args.queues)
        load = Load(group.namesrv, args.senders, "single")
        await load.start()
        try:
            return await measure(load, args.seconds)
        finally:
            await load.stop()
    finally:
        group.close()


class LagSampler:
    """The slowest slave's lag behind the master, in messages and in ms (see the module doc)."""

    def __init__(self, client: RemotingClient, master: str, slaves: list[str], queues: int) -> None:
        self.client, self.master, self.slaves, self.queues = client, master, slaves, queues
        self.msgs: list[int] = []
        self.ms: list[float] = []
        self.master_history: list[tuple[float, int]] = []

    async def sample(self) -> None:
        now = perf()
        ends = await asyncio.gather(*(queue_ends(self.client, a, self.queues) for a in (self.master, *self.slaves)))
        master, slaves = sum(ends[0]), [sum(e) for e in ends[1:]]
        behind = max(0, *(master - e for e in slaves))
        if self.master_history:
            at, before = self.master_history[-1]
            rate_per_ms = (master - before) / ((now - at) * 1000)
            self.msgs.append(behind)
            self.ms.append(behind / rate_per_ms if rate_per_ms > 0 else 0.0)
        self.master_history.append((now, master))

    async def run(self, interval_s: float, until: asyncio.Event) -> None:
        while not until.is_set():
            with contextlib.suppress(RemotingError, OSError):  # a slow answer: the next sample
                await self.sample()
            await asyncio.sleep(interval_s)


async def slaves_know_queues(client: RemotingClient, master: str, slaves: list[str], queues: int) -> None:
    """Until the slaves' metadata sync brought the topic's queues (GET_MAX_OFFSET answers 0
    for a queue a broker does not know, which would count as lag)."""
    deadline = perf() + 30
    while perf() < deadline:
        ends = await queue_ends(client, master, queues)
        known = [await queue_ends(client, a, queues) for a in slaves]
        if all(all(s > 0 for s, m in zip(e, ends, strict=True) if m > 0) for e in known):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the slaves did not learn the topic's queues in 30 s")


async def wait_dead(client: RemotingClient, addr: str) -> None:
    """Probe ``addr`` until it refuses a connection (or times out): the master is dead."""
    while True:
        try:
            await invoke(client, addr, RequestCode.GET_BROKER_RUNTIME_INFO, {}, timeout_s=0.5)
        except RemotingError:
            client.close_connection(addr)
            return
        await asyncio.sleep(PROBE_INTERVAL_S)


async def failover(group: Group, client: RemotingClient, slaves: dict[str, str], queues: int
                   ) -> tuple[float, dict[str, Any]]:
    """SIGKILL the master, promote the slave with the most data as soon as the death is seen,
    send to it until SEND_OK: (failover ms, the parts)."""
    dead = asyncio.create_task(wait_dead(client, group.addrs["master"]))
    await asyncio.sleep(0.05)  # the probe's connection is open
    t_kill = perf()
    group.kill("master")
    await dead
    t_dead = perf()
    ends = {key: sum(await queue_ends(client, addr, queues)) for key, addr in slaves.items()}
    chosen = max(ends, key=lambda k: ends[k])
    resp = await invoke(client, slaves[chosen], PROMOTE_SLAVE, {"brokerRole": "SYNC_MASTER"}, timeout_s=30)
    if resp.code != ResponseCode.SUCCESS:
        raise RuntimeError(f"promotion of {slaves[chosen]} failed: {resp.remark}")
    t_promoted = perf()
    first_stored: float | None = None
    codes: dict[int, int] = {}
    q = 0
    while True:
        q = (q + 1) % queues
        try:
            r = await invoke(client, slaves[chosen], RequestCode.SEND_MESSAGE_V2, send_ext(q), b"f" * MSG_BYTES)
        except RemotingError:
            await asyncio.sleep(0.005)
            continue
        codes[r.code] = codes.get(r.code, 0) + 1
        if r.code in (ResponseCode.SUCCESS, ResponseCode.SLAVE_NOT_AVAILABLE, ResponseCode.FLUSH_SLAVE_TIMEOUT) \
                and first_stored is None:
            first_stored = perf()
        if r.code == ResponseCode.SUCCESS:
            break
        if perf() - t_kill > 120:
            raise RuntimeError(f"the promoted slave answered no send successfully in 120 s: {codes}")
        await asyncio.sleep(0.005)
    t_ok = perf()
    parts = {"detect_ms": round((t_dead - t_kill) * 1000, 1), "promote_ms": round((t_promoted - t_dead) * 1000, 1),
             "first_stored_ms": round(((first_stored or t_ok) - t_kill) * 1000, 1), "promoted": chosen,
             "answers": {str(k): v for k, v in codes.items()}}
    return (t_ok - t_kill) * 1000, parts


async def bench_group(args: argparse.Namespace, root: Path, rep: Reporter, base_tps: float,
                      base_lat: list[float]) -> None:
    group = Group(root / "group", {"flushDiskType": "ASYNC_FLUSH", "registerNameServerPeriod": 1000,
                                   "slaveSyncInterval": 1000})
    try:
        master = group.start("master", broker_id=0, role="SYNC_MASTER")
        slaves = {key: group.start(key, broker_id=i, role="SLAVE") for i, key in ((1, "slave1"), (2, "slave2"))}
        async with RemotingClient() as client:
            await create_topic(client, master, args.queues)
            load = Load(group.namesrv, args.senders, "sync")
            await load.start()
            try:
                await measure(load, 0.2)
                await slaves_know_queues(client, master, list(slaves.values()), args.queues)
                stop_sampling = asyncio.Event()
                sampler = LagSampler(client, master, list(slaves.values()), args.queues)
                sampling = asyncio.create_task(sampler.run(args.sample_ms / 1000, stop_sampling))
                tps, lat = await measure(load, args.seconds)
                stop_sampling.set()
                await sampling
                params = {"senders": args.senders, "message_bytes": MSG_BYTES, "seconds": args.seconds,
                          "queues": args.queues, "slaves": 2, "flushDiskType": "ASYNC_FLUSH",
                          "baseline": "one ASYNC_MASTER, no slaves", "not_ok": load.not_ok}
                rep.emit(Figure("ha.sync_master.tps", tps, "msg/s", base_tps, Goal("ratio", 0.5), params))
                rep.emit(Figure("ha.sync_master.p99", Stats(lat).p99_ms, "ms", Stats(base_lat).p99_ms, None, params))
                lag = {"sample_ms": args.sample_ms, "samples": len(sampler.msgs)}
                msgs, ms = sampler.msgs or [0], sampler.ms or [0.0]
                rep.emit(Figure("ha.lag_msgs.max", max(msgs), "msgs", 0.0, None,
                                {**lag, "mean": round(sum(msgs) / len(msgs), 1)}))
                rep.emit(Figure("ha.lag_ms.max", max(ms), "ms", 0.0, None, {**lag, "mean": round(sum(ms) / len(ms), 1)}))
                failover_ms, parts = await failover(group, client, slaves, args.queues)
                rep.emit(Figure("ha.failover_ms", failover_ms, "ms", 0.0, None,
                                {**parts, "registerNameServerPeriod": 1000, "under_load_senders": args.senders}))
            finally:
                await load.stop()
    finally:
        group.close()


async def run(args: argparse.Namespace, root: Path, rep: Reporter) -> None:
    note("single ASYNC_MASTER broker (baseline)")
    base_tps, base_lat = await bench_single(args, root)
    note("SYNC_MASTER + 2 slaves: throughput, lag, failover")
    await bench_group(args, root, rep, base_tps, base_lat)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logstore bench ha", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=None, help="duration of each load (5)")
    p.add_argument("--senders", type=int, default=64, help="concurrent sync senders (64)")
    p.add_argument("--queues", type=int, default=8, help="queues of the topic (8)")
    p.add_argument("--sample-ms", type=int, default=50, help="lag sampling interval (50)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests)")
    p.add_argument("--json", action="store_true", help="one JSON object per figure")
    p.add_argument("--dir", default=None, help="keep data under DIR/bench-ha (default: a temp dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    args.seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 5.0)
    if args.quick:
        args.senders = min(args.senders, 16)
    if args.seconds <= 0 or min(args.senders, args.queues, args.sample_ms) < 1:
        print("logstore bench ha: --seconds, --senders, --queues and --sample-ms must be positive", file=sys.stderr)
        return 2
    rep = Reporter(args.json)
    with workdir(args.dir, "logstore-bench-ha-") as base:
        runtime.run(run(args, Path(fresh(os.path.join(base, "bench-ha"))), rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
