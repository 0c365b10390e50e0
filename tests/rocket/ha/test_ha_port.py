"""A master whose default HA port (listenPort + 1) is taken still starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from adapters.rocket.testing import LogstoreProcess

from .group import free_port

pytestmark = pytest.mark.slow


def test_a_taken_default_ha_port_falls_back_to_a_free_one(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        for _ in range(20):  # a listen port whose successor we can hold
            port = free_port()
            try:
                blocker.bind(("127.0.0.1", port + 1))
                break
            except OSError:
                continue
        else:
            pytest.fail("no port pair found")
        blocker.listen()
        conf = tmp_path / "broker.conf"
        conf.write_text(f"brokerName=b\nlistenPort={port}\n")
        broker = LogstoreProcess(["broker", "-c", str(conf), "--data-dir", str(tmp_path / "data")])
        fields = broker.start()  # raises if the broker dies on the taken HA port
        try:
            assert fields["broker"].endswith(f":{port}")
        finally:
            broker.stop()
