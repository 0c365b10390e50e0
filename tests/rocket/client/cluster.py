"""Real broker processes for the client's integration tests.

``logstore serve`` (name server + broker in one process) on free ports; the process prints
``READY namesrv=HOST:PORT broker=HOST:PORT`` once it serves. Stopped by its pid (the shared
test tool in adapters.rocket.testing).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode
from adapters.rocket.testing import REPO, LogstoreProcess, logstore_command


def serve_available() -> bool:
    result = subprocess.run(logstore_command("serve", "--help"), capture_output=True, timeout=60, cwd=REPO)
    return result.returncode == 0


def start(args: list[str]) -> tuple[LogstoreProcess, dict[str, str]]:
    """``logstore ARGS`` (stderr merged into stdout), started, and the fields of its READY line."""
    proc = LogstoreProcess(args, stderr=subprocess.STDOUT)
    return proc, proc.start()


@dataclass
class Serve:
    namesrv: str
    broker: str
    proc: LogstoreProcess


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[Serve]:
    proc, ready = start(["serve", "--data-dir", str(data_dir), "--namesrv-port", "0", "--broker-port", "0"])
    try:
        yield Serve(ready["namesrv"], ready["broker"], proc)
    finally:
        proc.stop()


@dataclass
class TwoBrokers:
    namesrv: str
    brokers: dict[str, str]  # brokerName -> address
    procs: dict[str, LogstoreProcess]


@contextlib.contextmanager
def two_brokers(data_dir: Path) -> Iterator[TwoBrokers]:
    """``logstore namesrv`` and two ``logstore broker`` processes (broker-a, broker-b)."""
    procs: dict[str, LogstoreProcess] = {}
    try:
        procs["namesrv"], ready = start(["namesrv", "--namesrv-port", "0"])
        namesrv = ready["namesrv"]
        brokers = {}
        for name in ("broker-a", "broker-b"):
            conf = data_dir / f"{name}.conf"
            conf.write_text(f"brokerName={name}\nnamesrvAddr={namesrv}\n")
            procs[name], ready = start(
                ["broker", "-c", str(conf), "--data-dir", str(data_dir / name), "--broker-port", "0"])
            brokers[name] = ready["broker"]
        yield TwoBrokers(namesrv, brokers, procs)
    finally:
        for proc in procs.values():
            proc.stop()


async def create_topic(broker_addrs: list[str], namesrv: str, topic: str, queues: int = 4) -> None:
    """UPDATE_AND_CREATE_TOPIC on each broker, then wait until the name server routes it."""
    async with RemotingClient() as client:
        for addr in broker_addrs:
            cmd = RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
                "topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues,
                "writeQueueNums": queues, "perm": 6, "topicFilterType": "SINGLE_TAG",
                "topicSysFlag": 0, "order": False,
            })
            response = await client.invoke(addr, cmd, 5.0)
            assert response.code == ResponseCode.SUCCESS, response.remark
        deadline = time.monotonic() + 10
        while True:
            route = await client.invoke(namesrv, RemotingCommand.request(
                RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}), 5.0)
            if route.code == ResponseCode.SUCCESS and all(
                a.encode() in route.body for a in broker_addrs
            ):
                return
            assert time.monotonic() < deadline, f"topic {topic} never showed up in the route"
            await asyncio.sleep(0.1)
