"""Broker groups as real processes: one ``logstore namesrv`` and ``logstore broker`` processes
(masters and slaves, by brokerName/brokerId/brokerRole) on free 127.0.0.1 ports, each stopped by
its pid (the shared tool in adapters.rocket.testing)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import orjson

from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode
from adapters.rocket.testing import LogstoreProcess, free_port, write_conf

GET_BROKER_RUNTIME_INFO = 28


class Cluster:
    """A name server and brokers; ``brokers[key]`` is a started ``logstore broker``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.namesrv_proc = LogstoreProcess(["namesrv", "--namesrv-port", "0"], stderr=subprocess.DEVNULL)
        self.namesrv = self.namesrv_proc.start()["namesrv"]
        self.brokers: dict[str, LogstoreProcess] = {}
        self.addrs: dict[str, str] = {}
        self.args: dict[str, list[str]] = {}
        self.ha_addrs: dict[str, str] = {}
        self._logs: list[IO[str]] = []

    def start_broker(self, key: str, *, broker_name: str, broker_id: int = 0, role: str = "ASYNC_MASTER",
                     port: int | None = None, **conf: object) -> str:
        """A broker named ``key`` (its data dir and conf are ``root/key``); its address."""
        port = port if port is not None else self._port_of(key)
        ha_port = free_port()
        self.ha_addrs[key] = f"127.0.0.1:{ha_port}"
        conf_path = write_conf(self.root / f"{key}.conf", brokerName=broker_name, brokerId=broker_id,
                               brokerRole=role, namesrvAddr=self.namesrv, listenPort=port,
                               haListenPort=ha_port, **conf)
        args = ["broker", "-c", str(conf_path), "--data-dir", str(self.root / key), "--log-level", "INFO"]
        log_file = (self.root / f"{key}.log").open("a")
        self._logs.append(log_file)
        proc = LogstoreProcess(args, stderr=log_file)
        self.addrs[key] = proc.start()["broker"]
        self.brokers[key], self.args[key] = proc, args
        return self.addrs[key]

    def _port_of(self, key: str) -> int:
        """The port a broker had (a restart keeps its address), or a free one."""
        if key in self.addrs:
            return int(self.addrs[key].rsplit(":", 1)[1])
        return free_port()

    def kill(self, key: str) -> None:
        self.brokers[key].stop(signal.SIGKILL)

    def stop(self, key: str) -> None:
        self.brokers[key].stop()

    def pause(self, key: str) -> None:
        """SIGSTOP: the broker stays up but does nothing (a replica cut off from its leader)."""
        popen = self.brokers[key].popen
        assert popen is not None
        os.kill(popen.pid, signal.SIGSTOP)

    def resume(self, key: str) -> None:
        popen = self.brokers[key].popen
        assert popen is not None
        os.kill(popen.pid, signal.SIGCONT)

    def close(self) -> None:
        for proc in self.brokers.values():
            if proc.alive and proc.popen is not None:
                os.kill(proc.popen.pid, signal.SIGCONT)  # a paused broker must see the SIGTERM
            if proc.alive:
                proc.stop()
        self.namesrv_proc.stop()
        for f in self._logs:
            f.close()


async def call(addr: str, code: int, ext: dict[str, object] | None = None, body: bytes = b"",
               timeout_s: float = 5.0) -> RemotingCommand:
    async with RemotingClient() as client:
        return await client.invoke(addr, RemotingCommand.request(code, ext, body), timeout_s)


async def route(namesrv: str, topic: str) -> dict[str, Any] | None:
    resp = await call(namesrv, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic})
    return orjson.loads(resp.body) if resp.code == ResponseCode.SUCCESS else None


async def broker_addrs(namesrv: str, topic: str, broker_name: str) -> dict[str, str]:
    r = await route(namesrv, topic)
    for b in (r or {}).get("brokerDatas") or []:
        if b["brokerName"] == broker_name:
            return dict(b["brokerAddrs"])
    return {}


async def create_topic(addr: str, topic: str, queues: int = 2) -> None:
    resp = await call(addr, RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": topic, "readQueueNums": queues, "writeQueueNums": queues, "perm": 6})
    assert resp.code == ResponseCode.SUCCESS, resp.remark


async def runtime_info(addr: str) -> dict[str, str]:
    resp = await call(addr, GET_BROKER_RUNTIME_INFO)
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    return dict(orjson.loads(resp.body)["table"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what or check}"
        await asyncio.sleep(0.1)
