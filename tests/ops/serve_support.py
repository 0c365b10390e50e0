"""A real ``logstore serve`` subprocess for the ops tests (free 127.0.0.1 ports, a tmp data
dir), restated from tests/rocket's conftest: tests/ops does not import from tests/rocket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def write_conf(path: Path, **keys: object) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    return path


class ServeProcess:
    """``logstore serve`` as a subprocess; ``namesrv`` and ``broker`` are its addresses."""

    def __init__(self, data_dir: Path, conf: Path | None = None) -> None:
        self.data_dir = data_dir
        self.conf = conf
        self.proc: subprocess.Popen[str] | None = None
        self.namesrv = ""
        self.broker = ""

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tools.cli", "serve", "--data-dir", str(self.data_dir),
               "--namesrv-port", "0", "--broker-port", "0", "--log-level", "WARNING"]
        if self.conf is not None:
            cmd += ["-c", str(self.conf)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"serve exited with {self.proc.wait()} before READY")
            if line.startswith("READY "):
                fields = dict(kv.split("=", 1) for kv in line.split()[1:])
                self.namesrv, self.broker = fields["namesrv"], fields["broker"]
                return
        self.stop(signal.SIGKILL)
        raise RuntimeError("serve did not print READY in time")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode
