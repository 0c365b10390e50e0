"""The README's embedded example must run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_opens_with_install_and_test_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block is not None
    lines = [ln for ln in first_block.group(1).splitlines() if ln and not ln.startswith("#")]
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e .")
    assert lines[1] == "bash .ci/run"
    assert "pytest -q" in (ROOT / ".ci" / "run").read_text()


def test_readme_python_example_runs() -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    out = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0 b'order-1' b'hello'", "1 None b'world'"]
