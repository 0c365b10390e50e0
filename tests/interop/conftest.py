"""Fixtures for the interop tests: our broker as a real process per test, and each third-party
client installed on first use (see _install.py) and driven through its own script."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import _install
from ._harness import HERE, BrokerProcess, ClientDriver, client_env, running_broker

CLIENTS = ["rocketmq-cpp", "ali-ons"]


@pytest.fixture(scope="session")
def rocketmq_cpp_python() -> Path:
    """rocketmq==0.4.4 (ctypes over Apache's C++ client core), in its own cached venv."""
    return _install.rocketmq_python()


@pytest.fixture(scope="session")
def ali_ons_node_modules() -> Path:
    """ali-ons@3.12.0 (pure JavaScript), in its own cached npm folder."""
    if shutil.which("node") is None:
        raise _install.InstallError("node is not installed: the ali-ons interop tests need it")
    return _install.ali_ons_node_modules()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    with running_broker(tmp_path) as proc:
        yield proc


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest, broker: BrokerProcess, tmp_path: Path) -> Iterator[ClientDriver]:
    """One third-party client; every process it started is killed at teardown (before the broker
    stops, since this fixture depends on ``broker``)."""
    work = tmp_path / request.param
    work.mkdir()
    if request.param == "rocketmq-cpp":
        python = request.getfixturevalue("rocketmq_cpp_python")
        driver = ClientDriver("rocketmq-cpp", [str(python), str(HERE / "rocketmq_driver.py")],
                              client_env(work / "home"), work, reports_queues=False)
    else:
        modules = request.getfixturevalue("ali_ons_node_modules")
        node = shutil.which("node")
        assert node is not None
        driver = ClientDriver("ali-ons", [node, str(HERE / "ali_ons_driver.js")],
                              client_env(work / "home", NODE_PATH=str(modules)), work, reports_queues=True)
    try:
        yield driver
    finally:
        driver.kill_all()
