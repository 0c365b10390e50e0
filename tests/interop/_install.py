"""Install-on-first-use of the third-party clients, into a cache outside the repository.

``$LOGSTORE_INTEROP_CACHE`` (default ``~/.cache/logstore-interop``) holds one virtual
environment per PyPI client and one npm folder per npm client. Several PyPI packages install a
top-level ``rocketmq`` module, so each client gets its own environment; none of them touches
the project's venv. An installation counts only once its ``.installed`` marker exists, written
last after an import check; an interrupted one is wiped and redone. A file lock keeps parallel
test processes from installing the same thing twice. A registry that cannot be reached is an
error (InstallError), never a skip: these tests must not pass without having run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE_ENV = "LOGSTORE_INTEROP_CACHE"
ROCKETMQ_PYPI = "rocketmq==0.4.4"
ALI_ONS_NPM = "ali-ons@3.12.0"
INSTALL_TIMEOUT_S = 600.0
LOCK_WAIT_S = INSTALL_TIMEOUT_S + 60.0
MARKER = ".installed"


class InstallError(RuntimeError):
    """A client could not be installed (registry unreachable, tool missing, broken package)."""


def cache_root() -> Path:
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "logstore-interop")
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    with open(root / f".{name}.lock", "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise InstallError(f"another process held {lock.name} for {LOCK_WAIT_S:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise InstallError(f"{what}: {cmd[0]} is not installed on this machine ({exc})") from None
    except subprocess.TimeoutExpired:
        raise InstallError(f"{what}: `{' '.join(cmd)}` took longer than {INSTALL_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise InstallError(f"{what}: `{' '.join(cmd)}` exited {done.returncode}\n"
                           f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")


def _installed(target: Path, spec: str) -> bool:
    marker = target / MARKER
    return marker.exists() and marker.read_text() == spec


def _install_once(name: str, spec: str, install: Callable[[Path], None]) -> Path:
    root = cache_root()
    target = root / name
    if _installed(target, spec):
        return target
    with _locked(root, name):
        if _installed(target, spec):
            return target  # another process finished it while we waited
        shutil.rmtree(target, ignore_errors=True)
        install(target)
        (target / MARKER).write_text(spec)
    return target


def rocketmq_python() -> Path:
    """The interpreter of a venv holding ``rocketmq==0.4.4`` (its wheel bundles librocketmq.so)."""

    def install(venv: Path) -> None:
        _run([sys.executable, "-m", "venv", str(venv)], "creating the rocketmq venv")
        py = str(venv / "bin" / "python")
        _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", ROCKETMQ_PYPI],
             f"pip install {ROCKETMQ_PYPI}")
        _run([py, "-c", "from rocketmq.client import Producer, PushConsumer, Message"],
             "importing rocketmq.client (loads librocketmq.so)")

    return _install_once("rocketmq-0.4.4", ROCKETMQ_PYPI, install) / "bin" / "python"


def ali_ons_node_modules() -> Path:
    """A ``node_modules`` folder holding ``ali-ons@3.12.0`` (for NODE_PATH)."""

    def install(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "package.json").write_text(json.dumps({"name": "logstore-interop-ali-ons", "private": True}))
        _run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", ALI_ONS_NPM],
             f"npm install {ALI_ONS_NPM}", cwd=folder)
        _run(["node", "-e", "require('ali-ons')"], "loading ali-ons with node", cwd=folder)

    return _install_once("ali-ons-3.12.0", ALI_ONS_NPM, install) / "node_modules"
