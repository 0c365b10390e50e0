"""The runnable programs in examples/ run as documented against a real broker."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from adapters.rocket.testing import ServeProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ordered_messages_example(tmp_path: pathlib.Path) -> None:
    """The seed's ordered example: three orders (create, pay, complete) sent by order id to a
    4-queue topic, two orderly consumers in one group; every order's steps arrive in order."""
    server = ServeProcess(tmp_path / "data")
    server.start()
    try:
        out = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "ordered_messages.py"), "--namesrv", server.namesrv,
             "--create-topic", "--timeout", "20"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        server.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "OK"
    sequences = [ln.strip() for ln in lines if re.match(r"\s+order \d+: ", ln)]
    assert sequences == [f"order {i}: create -> pay -> complete" for i in (1001, 1002, 1003)]
    consumers = {m.group(1) for ln in lines if (m := re.match(r"\s+(consumer-\d) queue", ln))}
    assert consumers == {"consumer-1", "consumer-2"}, out.stdout
