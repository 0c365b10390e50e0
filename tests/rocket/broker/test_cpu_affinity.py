"""``cpuAffinity``: a real ``logstore serve`` runs where its broker.conf says, every thread of
it; "auto" follows the store device's interrupts as logstore/affinity.py reads them here; a bad
value stops it before it serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from adapters.rocket.testing import REPO, ServeProcess, logstore_command, write_conf
from logstore.affinity import device_irq_cpu, parse_cpu_list

from .conftest import serving


def thread_cpus(pid: int) -> set[frozenset[int]]:
    """The CPU set of each of the process's threads."""
    sets = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            line = next(line for line in f if line.startswith("Cpus_allowed_list:"))
        sets.add(frozenset(parse_cpu_list(line.split()[1])))
    return sets


def running(proc: ServeProcess) -> set[frozenset[int]]:
    assert proc.pid is not None
    return thread_cpus(proc.pid)


@pytest.mark.parametrize("setting", ["one CPU", "off", "auto"])
def test_the_broker_runs_where_cpu_affinity_says(tmp_path: Path, setting: str) -> None:
    mine = frozenset(os.sched_getaffinity(0))
    if setting == "auto":
        found = device_irq_cpu(str(tmp_path / "data"))
        want = frozenset({found.cpu}) if found is not None and found.cpu in mine and len(mine) > 1 else mine
    elif setting == "off":
        want = mine
    else:
        want = frozenset({max(mine)})
        setting = str(max(mine))
    for proc in serving(tmp_path, cpuAffinity=setting):
        assert running(proc) == {want}  # the store's threads too: they started after the placement
        assert proc.alive


@pytest.mark.parametrize(("value", "message"), [
    ("4096", "cpuAffinity must be auto, off or a CPU list: not a CPU list: '4096'"),
    ("1-0", "not a CPU list"),
    ("anywhere", "cpuAffinity must be auto, off or a CPU list"),
])
def test_a_bad_cpu_affinity_stops_the_broker_with_a_usage_error(tmp_path: Path, value: str, message: str) -> None:
    conf = write_conf(tmp_path / "broker.conf", cpuAffinity=value)
    proc = subprocess.run(logstore_command("serve", "-c", str(conf), "--data-dir", str(tmp_path / "data"),
                                           "--namesrv-port", "0", "--broker-port", "0"),
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing stored


def test_cpus_this_process_may_not_use_are_refused(tmp_path: Path) -> None:
    outside = next(c for c in range(4095, -1, -1) if c not in os.sched_getaffinity(0))
    conf = write_conf(tmp_path / "broker.conf", cpuAffinity=str(outside))
    proc = subprocess.run(logstore_command("broker", "-c", str(conf), "--data-dir", str(tmp_path / "data")),
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2 and f"cpuAffinity {outside}: none of these CPUs" in proc.stderr
