"""logstore/affinity.py: the CPU that takes a block device's interrupts, read off sysfs and
procfs trees built here (the host's own trees say what this machine has, not what a test needs)
and off the host's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logstore.affinity import (
    COUNT_MIN,
    IrqCpu,
    block_device_irq_cpu,
    device_irq_cpu,
    parse_cpu_list,
)

HEADER = "           CPU0       CPU1       CPU2       CPU3\n"


def host(tmp: Path, irqs: dict[int, list[int]], *, partition: bool = False, legacy: int | None = None) -> tuple[Path, Path]:
    """A sysfs with block device 254:0 (vda, or its partition vda1 when ``partition``) on a PCI
    function whose interrupts are ``irqs`` (MSI) or ``legacy``, and /proc/interrupts giving each
    IRQ its per-CPU counts. Also other devices' interrupts, which must not count."""
    sys_root = tmp / "sys"
    pci = sys_root / "devices" / "pci0000:00" / "0000:00:02.0"
    disk = pci / "virtio1" / "block" / "vda"
    disk.mkdir(parents=True)
    (disk / "device").symlink_to(pci / "virtio1")
    target = disk
    if partition:
        target = disk / "vda1"
        target.mkdir()
        (target / "partition").write_text("1\n")
    if legacy is not None:
        (pci / "irq").write_text(f"{legacy}\n")
    else:
        (pci / "msi_irqs").mkdir()
        for irq in irqs:
            (pci / "msi_irqs" / str(irq)).write_text("msix\n")
    (sys_root / "dev" / "block").mkdir(parents=True)
    (sys_root / "dev" / "block" / "254:0").symlink_to(target)
    rows = [HEADER, " 11:    9999999          0          0          0   IO-APIC   11-edge      timer\n"]
    for irq, counts in irqs.items():
        cols = "".join(f"{c:>11}" for c in counts)
        rows.append(f"{irq:>3}:{cols}  PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n")
    rows.append("NMI:          0          0          0          0   Non-maskable interrupts\n")
    interrupts = tmp / "interrupts"
    interrupts.write_text("".join(rows))
    return sys_root, interrupts


def test_a_single_queue_device_is_served_by_the_cpu_taking_its_interrupts(tmp_path: Path) -> None:
    sys_root, interrupts = host(tmp_path, {35: [0, 1, 0, 0], 36: [3, 250_000, 0, 0]})
    got = block_device_irq_cpu(254, 0, sys_root=str(sys_root), interrupts=str(interrupts))
    assert got == IrqCpu(cpu=1, device="vda", share=pytest.approx(250_001 / 250_004), count=250_004)


def test_a_partition_is_its_disk_and_a_legacy_irq_counts(tmp_path: Path) -> None:
    sys_root, interrupts = host(tmp_path, {19: [0, 0, 0, 70_000]}, partition=True, legacy=19)
    got = block_device_irq_cpu(254, 0, sys_root=str(sys_root), interrupts=str(interrupts))
    assert got is not None and (got.cpu, got.device, got.count) == (3, "vda", 70_000)


@pytest.mark.parametrize("irqs", [
    {40: [50_000, 0, 0, 0], 41: [0, 50_000, 0, 0], 42: [0, 0, 50_000, 0]},  # a queue per CPU (NVMe)
    {36: [20_000, 80_000, 0, 0]},  # one queue, its interrupts moved between CPUs: 80% is not enough
    {36: [0, COUNT_MIN - 1, 0, 0]},  # too few to say
])
def test_no_cpu_when_the_interrupts_are_spread_or_too_few(tmp_path: Path, irqs: dict[int, list[int]]) -> None:
    sys_root, interrupts = host(tmp_path, irqs)
    assert block_device_irq_cpu(254, 0, sys_root=str(sys_root), interrupts=str(interrupts)) is None


def test_no_cpu_when_the_host_does_not_say(tmp_path: Path) -> None:
    sys_root, interrupts = host(tmp_path, {36: [0, 250_000, 0, 0]})
    assert block_device_irq_cpu(8, 0, sys_root=str(sys_root), interrupts=str(interrupts)) is None  # no such device
    assert block_device_irq_cpu(254, 0, sys_root=str(sys_root), interrupts=str(tmp_path / "none")) is None
    assert block_device_irq_cpu(254, 0, sys_root=str(tmp_path / "nosys"), interrupts=str(interrupts)) is None
    (interrupts).write_text("garbage\n36: x y\n")
    assert block_device_irq_cpu(254, 0, sys_root=str(sys_root), interrupts=str(interrupts)) is None


def test_the_hosts_own_answer_is_a_cpu_this_process_may_use_or_none(tmp_path: Path) -> None:
    got = device_irq_cpu(str(tmp_path / "not" / "yet" / "made"))  # the nearest existing ancestor's device
    assert got is None or (got.cpu in range(os.cpu_count() or 1) and got.share >= 0.9 and got.count >= COUNT_MIN)
    assert device_irq_cpu("/proc") is None  # procfs: on no block device


@pytest.mark.parametrize(("text", "cpus"), [("1", {1}), ("0,2-3", {0, 2, 3}), (" 4 , 5-5", {4, 5})])
def test_cpu_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["", "auto", "1-", "-1", "3-1", "1,,2", "0x1", "1.5", "99999"])
def test_bad_cpu_lists(text: str) -> None:
    with pytest.raises(ValueError, match="not a CPU list"):
        parse_cpu_list(text)
