"""Real ``logstore`` processes for tests and benchmarks (test tools are public API).

``logstore serve`` (name server + broker), ``logstore namesrv`` and ``logstore broker`` print one
line ``READY key=HOST:PORT ...`` on stdout once they serve (``READY namesrv=... broker=...`` for
``serve``). :class:`LogstoreProcess` starts any of them, waits for that line and stops the
process by its pid: SIGTERM (or the signal asked for), then SIGKILL after a grace period.
:class:`ServeProcess` is ``logstore serve`` on free 127.0.0.1 ports, restartable on the same
data dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
KILL_WAIT_S = 10.0  # after SIGKILL
READER_JOIN_S = 5.0

Stderr = int | IO[Any] | None  # as subprocess.Popen takes it: DEVNULL, STDOUT, a file, or inherit


def logstore_command(*args: str) -> list[str]:
    """The command line of ``logstore ARGS...`` run from this checkout's interpreter."""
    return [sys.executable, "-m", "tools.cli", *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (for a server given its port in a config)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_conf(path: Path, **keys: object) -> Path:
    """A broker.conf (``key=value`` lines)."""
    path.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return path


def parse_ready(line: str) -> dict[str, str] | None:
    """``READY namesrv=A broker=B`` -> ``{"namesrv": "A", "broker": "B"}``; None for other lines."""
    if not line.startswith("READY "):
        return None
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def stop_process(popen: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 grace_s: float = STOP_GRACE_S) -> bool:
    """Send ``sig`` to a running process, wait ``grace_s``, then SIGKILL; always reaps.
    True when it had to be killed. The exit code is ``popen.returncode``."""
    if popen.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(popen.pid, sig)
    try:
        popen.wait(grace_s)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGKILL)
        popen.wait(KILL_WAIT_S)
        return True


class LogstoreProcess:
    """``logstore ARGS...`` as a subprocess. A reader thread keeps its stdout drained into
    ``lines``; :meth:`start` returns the fields of its first READY line."""

    def __init__(self, args: list[str], *, stderr: Stderr = subprocess.DEVNULL) -> None:
        self.args = args
        self.stderr = stderr
        self.popen: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.killed = False  # the last stop needed SIGKILL after the grace period
        self._reader: threading.Thread | None = None

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> dict[str, str]:
        """Start and wait for the READY line; SIGKILLed and RuntimeError if none comes in time."""
        self.lines = []
        popen = self.popen = subprocess.Popen(
            logstore_command(*self.args), stdout=subprocess.PIPE, stderr=self.stderr,
            stdin=subprocess.DEVNULL, text=True, cwd=REPO)
        found: list[dict[str, str]] = []
        event = threading.Event()

        def read() -> None:
            assert popen.stdout is not None
            for line in popen.stdout:
                self.lines.append(line)
                if not found and (fields := parse_ready(line)) is not None:
                    found.append(fields)
                    event.set()
            event.set()

        self._reader = threading.Thread(target=read, name=f"read-logstore-{popen.pid}", daemon=True)
        self._reader.start()
        what = f"logstore {self.args[0] if self.args else ''}"
        if not event.wait(ready_timeout_s):
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"{what} did not print READY in {ready_timeout_s:g} s:\n{self.output_tail()}")
        if not found:
            code = popen.wait()
            self._reader.join(1.0)
            if popen.stdout is not None:
                popen.stdout.close()  # else an unclosed-file warning fails some later test
            raise RuntimeError(f"{what} exited with {code} before READY:\n{self.output_tail()}")
        return found[0]

    def stop(self, sig: int = signal.SIGTERM, grace_s: float = STOP_GRACE_S) -> int:
        """Stop by pid (see :func:`stop_process`); returns the exit code (-N: killed by signal N)."""
        assert self.popen is not None
        self.killed = stop_process(self.popen, sig, grace_s)
        if self._reader is not None:
            self._reader.join(READER_JOIN_S)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output_tail(self, lines: int = 40) -> str:
        return "".join(self.lines[-lines:])


class ServeProcess:
    """``logstore serve`` on free 127.0.0.1 ports; ``namesrv`` and ``broker`` are its addresses.
    Restartable on the same data dir: a restart keeps the broker's port."""

    def __init__(self, data_dir: Path, conf: Path | None = None, *, stderr: Stderr = subprocess.DEVNULL,
                 log_level: str = "WARNING", ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self.data_dir = data_dir
        self.conf = conf
        self.stderr = stderr
        self.log_level = log_level
        self.ready_timeout_s = ready_timeout_s
        self.process: LogstoreProcess | None = None
        self.namesrv = ""
        self.broker = ""
        self.broker_port = 0

    def start(self) -> None:
        args = ["serve", "--data-dir", str(self.data_dir), "--namesrv-port", "0",
                "--broker-port", str(self.broker_port), "--log-level", self.log_level]
        if self.conf is not None:
            args += ["-c", str(self.conf)]
        self.process = LogstoreProcess(args, stderr=self.stderr)
        fields = self.process.start(self.ready_timeout_s)
        self.namesrv, self.broker = fields["namesrv"], fields["broker"]
        self.broker_port = int(self.broker.rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        return self.process.stop(sig)

    def restart(self, sig: int = signal.SIGTERM) -> int:
        code = self.stop(sig)
        self.start()
        return code

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    @property
    def pid(self) -> int | None:
        """The process id of the running ``logstore serve`` (None before start)."""
        popen = self.process.popen if self.process is not None else None
        return popen.pid if popen is not None else None

    @property
    def killed(self) -> bool:
        """The last stop needed SIGKILL after the grace period."""
        return self.process is not None and self.process.killed
