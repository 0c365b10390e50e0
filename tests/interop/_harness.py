"""Processes for the interop tests: our broker (``logstore serve``), the admin requests the
tests make with the project's remoting client, and third-party client drivers that print JSON
lines. Every process is bounded in time and stopped by its pid (adapters.rocket.testing)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.rocket.remoting import RemotingClient, RemotingCommand, RequestCode, ResponseCode
from adapters.rocket.testing import ServeProcess, stop_process

HERE = Path(__file__).resolve().parent
STOP_TIMEOUT_S = 10.0
PRODUCE_TIMEOUT_S = 60.0
CONSUMER_LIFETIME_S = 90.0  # a consumer driver shuts itself down after this, whatever happens

Event = dict[str, Any]


# -- our broker -------------------------------------------------------------------------------


@dataclass
class BrokerProcess:
    """``logstore serve`` (name server + broker) on free 127.0.0.1 ports; its stderr in a file."""

    data_dir: Path
    log_dir: Path
    serve: ServeProcess | None = None
    namesrv: str = ""
    broker: str = ""

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "serve.err", "wb") as err:
            self.serve = ServeProcess(self.data_dir, stderr=err)
            try:
                self.serve.start()
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{self.stderr_tail()}") from None
        self.namesrv, self.broker = self.serve.namesrv, self.serve.broker

    def stop(self) -> int | None:
        if self.serve is None:
            return None
        return self.serve.stop()

    def stderr_tail(self, chars: int = 4000) -> str:
        path = self.log_dir / "serve.err"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- admin requests (the project's own remoting client) ---------------------------------

    def _invoke(self, addr: str, code: int, ext: dict[str, object]) -> RemotingCommand:
        async def call() -> RemotingCommand:
            async with RemotingClient() as client:
                return await client.invoke(addr, RemotingCommand.request(code, ext), 5.0)

        return asyncio.run(call())

    def create_topic(self, topic: str, queues: int = 4) -> None:
        """UPDATE_AND_CREATE_TOPIC (autoCreateTopicEnable is off), then wait for the route."""
        resp = self._invoke(self.broker, RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues, "writeQueueNums": queues,
            "perm": 6, "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": False})
        assert resp.code == ResponseCode.SUCCESS, f"UPDATE_AND_CREATE_TOPIC {topic}: {resp.code} {resp.remark}"
        wait_until(lambda: self._invoke(self.namesrv, RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}).code
                   == ResponseCode.SUCCESS, 10.0, f"a route for {topic} on the name server")

    def consumer_ids(self, group: str) -> list[str]:
        resp = self._invoke(self.broker, RequestCode.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": group})
        if resp.code != ResponseCode.SUCCESS:
            return []
        return list(json.loads(resp.body).get("consumerIdList") or [])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


# -- third-party client drivers -----------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """A message as the tests send it and as the listener must see it."""

    topic: str
    tags: str
    keys: tuple[str, ...]
    body: bytes
    props: dict[str, str]

    @property
    def id(self) -> str:
        return self.keys[0]  # unique per message

    def spec(self) -> dict[str, object]:
        return {"topic": self.topic, "tags": self.tags, "keys": list(self.keys), "props": self.props,
                "body_b64": base64.b64encode(self.body).decode()}


@dataclass
class DriverProcess:
    """A driver script as a subprocess; its stdout JSON lines collected by a reader thread."""

    name: str
    popen: subprocess.Popen[bytes]
    stderr_path: Path
    events: list[Event] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None
    eof: bool = False

    def start_reading(self) -> None:
        self.reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                event = {"event": "unparsed", "line": raw.decode(errors="replace")}
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, check: Callable[[list[Event]], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not check(self.events):
                remaining = deadline - time.monotonic()
                if self.eof or remaining <= 0:
                    state = "exited" if self.eof else f"timed out after {timeout_s} s"
                    raise AssertionError(f"{self.name} {state} waiting for {what}; events "
                                         f"{[e.get('event') for e in self.events]}\n{self.stderr_tail()}")
                self.cond.wait(min(remaining, 0.5))

    def received(self) -> list[Event]:
        with self.cond:
            return [e for e in self.events if e.get("event") == "msg"]

    def last(self, name: str) -> Event | None:
        with self.cond:
            return next((e for e in reversed(self.events) if e.get("event") == name), None)

    def has(self, name: str) -> bool:
        with self.cond:
            return any(e.get("event") == name for e in self.events)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask for a clean shutdown (the client persists its offsets); kill if it hangs."""
        if self.popen.poll() is None and self.popen.stdin is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.popen.stdin.write(b"stop\n")
                self.popen.stdin.close()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not shut down within {timeout_s} s\n{self.stderr_tail()}") from None
        self._finish()
        assert self.has("stopped") and self.popen.returncode == 0, (
            f"{self.name} exited {self.popen.returncode} after events {[e.get('event') for e in self.events][-5:]}"
            f"\n{self.stderr_tail()}")

    def kill(self) -> None:
        stop_process(self.popen, grace_s=2.0)
        self._finish()

    def _finish(self) -> None:
        if self.reader is not None:
            self.reader.join(5)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stderr_tail(self, chars: int = 3000) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- {self.name} stderr (last {chars} chars)\n{text[-chars:]}"


@dataclass
class ClientDriver:
    """How to run one third-party client's driver script: ``command`` + mode + flags."""

    name: str
    command: list[str]
    env: dict[str, str]
    work_dir: Path
    reports_queues: bool  # prints {"event": "queues"} with its assigned queue ids
    started: list[DriverProcess] = field(default_factory=list)
    _seq: int = 0

    def _spawn(self, label: str, args: list[str]) -> DriverProcess:
        self._seq += 1
        name = f"{self.name}:{label}#{self._seq}"
        stderr_path = self.work_dir / f"{label}-{self._seq}.err"
        with open(stderr_path, "wb") as err:
            popen = subprocess.Popen([*self.command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=err, env=self.env, cwd=self.work_dir)
        proc = DriverProcess(name, popen, stderr_path)
        self.started.append(proc)
        proc.start_reading()
        return proc

    def produce(self, namesrv: str, group: str, msgs: list[Msg], shards: list[int] | None = None) -> list[Event]:
        """Send every message with a sync send (an orderly one to ``shards[i]``, when given);
        returns the driver's "sent" events."""
        spec = self.work_dir / f"produce-{self._seq + 1}.json"
        specs = [m.spec() for m in msgs]
        for item, shard in zip(specs, shards or [], strict=False):
            item["shard"] = shard
        spec.write_text(json.dumps(specs))
        proc = self._spawn("produce", ["produce", "--namesrv", namesrv, "--group", group, "--spec", str(spec)])
        try:
            proc.wait_for(lambda ev: any(e.get("event") == "done" for e in ev), PRODUCE_TIMEOUT_S,
                          f"sending {len(msgs)} messages")
            proc.popen.wait(STOP_TIMEOUT_S)
        finally:
            proc.kill()
        assert proc.popen.returncode == 0, f"{proc.name} exited {proc.popen.returncode}\n{proc.stderr_tail()}"
        sent = [e for e in proc.events if e.get("event") == "sent"]
        assert [e["index"] for e in sent] == list(range(len(msgs))), sent
        bad = [e for e in sent if e["status"] not in ("OK", "SEND_OK")]
        assert not bad, f"{self.name}: sends not OK: {bad}"
        return sent

    def consumer(self, namesrv: str, group: str, topic: str, expression: str, props: list[str],
                 extra: tuple[str, ...] = ()) -> DriverProcess:
        """A push consumer, started (waits for its "started" line); ``extra`` driver flags."""
        proc = self._spawn("consume", [
            "consume", "--namesrv", namesrv, "--group", group, "--topic", topic, "--expression", expression,
            "--props", ",".join(props), "--lifetime-s", str(CONSUMER_LIFETIME_S), *extra])
        proc.wait_for(lambda ev: any(e.get("event") == "started" for e in ev), 30.0, "the consumer to start")
        return proc

    def kill_all(self) -> None:
        for proc in self.started:
            proc.kill()


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """A small environment: HOME is a scratch dir (the C++ core writes $HOME/logs)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


@contextlib.contextmanager
def running_broker(tmp: Path) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp / "data", tmp / "serve-logs")
    broker.start()
    try:
        yield broker
    finally:
        code = broker.stop()
        assert code in (0, -signal.SIGTERM), f"logstore serve exited {code}\n{broker.stderr_tail()}"
