"""Real broker processes for the client's integration tests.

``logstore serve`` (name server + broker in one process) on free ports; the process prints
``READY namesrv=HOST:PORT broker=HOST:PORT`` once it serves. Stopped by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode

READY = re.compile(r"READY namesrv=(\S+) broker=(\S+)")
READY_NAMESRV = re.compile(r"READY namesrv=(\S+)")
READY_BROKER = re.compile(r"READY broker=(\S+)")
START_TIMEOUT_S = 30.0


def logstore_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.cli", *args]


def serve_available() -> bool:
    result = subprocess.run(logstore_command("serve", "--help"), capture_output=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[3])
    return result.returncode == 0


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self.reader is not None:
            self.reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def start(args: list[str], ready: re.Pattern[str]) -> tuple[Proc, re.Match[str]]:
    popen = subprocess.Popen(
        logstore_command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    proc = Proc(popen)
    found: list[re.Match[str]] = []
    event = threading.Event()

    def read() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.lines.append(line)
            if not found and (m := ready.search(line)):
                found.append(m)
                event.set()
        event.set()

    proc.reader = threading.Thread(target=read, daemon=True)
    proc.reader.start()
    if not event.wait(START_TIMEOUT_S) or not found:
        proc.stop(signal.SIGKILL)
        raise RuntimeError("logstore did not get ready:\n" + "".join(proc.lines[-40:]))
    return proc, found[0]


@dataclass
class Serve:
    namesrv: str
    broker: str
    proc: Proc


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[Serve]:
    proc, m = start(
        ["serve", "--data-dir", str(data_dir), "--namesrv-port", "0", "--broker-port", "0"],
        READY,
    )
    try:
        yield Serve(m.group(1), m.group(2), proc)
    finally:
        proc.stop()


@dataclass
class TwoBrokers:
    namesrv: str
    brokers: dict[str, str]  # brokerName -> address
    procs: dict[str, Proc]


@contextlib.contextmanager
def two_brokers(data_dir: Path) -> Iterator[TwoBrokers]:
    """``logstore namesrv`` and two ``logstore broker`` processes (broker-a, broker-b)."""
    procs: dict[str, Proc] = {}
    try:
        procs["namesrv"], m = start(["namesrv", "--namesrv-port", "0"], READY_NAMESRV)
        namesrv = m.group(1)
        brokers = {}
        for name in ("broker-a", "broker-b"):
            conf = data_dir / f"{name}.conf"
            conf.write_text(f"brokerName={name}\nnamesrvAddr={namesrv}\n")
            procs[name], m = start(
                ["broker", "-c", str(conf), "--data-dir", str(data_dir / name),
                 "--broker-port", "0"],
                READY_BROKER,
            )
            brokers[name] = m.group(1)
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
