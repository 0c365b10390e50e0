"""Which CPU completes the I/O of a store's device, and running a process there.

A store that fsyncs on its event loop's thread (``Store``'s inline rounds) sleeps in each
fdatasync until the device's completion interrupt wakes it. When one CPU takes all of the
device's interrupts (a single-queue device: virtio-blk, most cloud block devices) and the
thread last ran on another, that wake-up is a cross-CPU one: on a virtual machine whose other
vCPU has halted, tens of microseconds per fsync. Running the process on the interrupt CPU makes
it local. (Multi-queue devices, NVMe with a queue per CPU, complete on the submitting CPU
already: nothing to do.)

:func:`device_irq_cpu` reads the answer off the host: the block device holding a path
(``/sys/dev/block/MAJ:MIN``, a partition's parent disk), the PCI function above it and its
interrupts (``msi_irqs/`` or ``irq``), and each CPU's count of those in ``/proc/interrupts``
(:func:`block_device_irq_cpu`, which takes its roots as arguments so that tests can give it
trees of their own). :func:`parse_cpu_list` reads the kernel's CPU-list syntax (``0,2-3``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Of a device's interrupts, the share one CPU must take for :func:`device_irq_cpu` to name it.
SHARE_MIN = 0.9
#: Fewer interrupts than this since boot say too little to choose by.
COUNT_MIN = 1000
CPU_MAX = 4096


@dataclass(frozen=True)
class IrqCpu:
    """The CPU that takes ``share`` of the ``count`` interrupts of block device ``device``."""

    cpu: int
    device: str
    share: float
    count: int


def parse_cpu_list(text: str) -> set[int]:
    """``"1"``, ``"0,2-3"`` -> CPU numbers. ValueError for anything else."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (write e.g. 1 or 0,2-3)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last or last >= CPU_MAX:
            raise ValueError(f"not a CPU list: {text!r} (range {part!r})")
        cpus.update(range(first, last + 1))
    return cpus


def _existing(path: str) -> str:
    """``path`` or its nearest existing ancestor (a store directory may not exist yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _device_irqs(major: int, minor: int, sys_root: str) -> tuple[str, list[int]] | None:
    """Block device ``major:minor`` (a partition: its disk) and the interrupts of the PCI
    function above it."""
    link = os.path.join(sys_root, "dev", "block", f"{major}:{minor}")
    if not os.path.exists(link):
        return None
    disk = os.path.realpath(link)
    if os.path.exists(os.path.join(disk, "partition")):
        disk = os.path.dirname(disk)
    name = os.path.basename(disk)
    node = os.path.realpath(os.path.join(disk, "device"))
    top = os.path.realpath(sys_root)
    while node.startswith(top + os.sep):
        msi = os.path.join(node, "msi_irqs")
        if os.path.isdir(msi):
            irqs = [int(n) for n in os.listdir(msi) if n.isdigit()]
            return (name, irqs) if irqs else None
        legacy = os.path.join(node, "irq")
        if os.path.isfile(legacy):
            with open(legacy) as f:
                irq = int(f.read().strip() or 0)
            return (name, [irq]) if irq > 0 else None
        node = os.path.dirname(node)
    return None


def _irq_counts(irqs: list[int], interrupts: str) -> dict[int, int]:
    """Per CPU, the interrupts among ``irqs`` it has taken (``/proc/interrupts``)."""
    wanted = {str(i) for i in irqs}
    counts: dict[int, int] = {}
    with open(interrupts) as f:
        header = f.readline().split()
        cpus = [int(c[3:]) for c in header if c.startswith("CPU") and c[3:].isdigit()]
        for line in f:
            label, sep, rest = line.partition(":")
            if not sep or label.strip() not in wanted:
                continue
            for cpu, field in zip(cpus, rest.split(), strict=False):
                if not field.isdigit():
                    break
                counts[cpu] = counts.get(cpu, 0) + int(field)
    return counts


def device_irq_cpu(path: str) -> IrqCpu | None:
    """The CPU taking nearly all the interrupts of the block device holding ``path`` (or its
    nearest existing ancestor); None for a file system on no block device (tmpfs, overlay) and
    as :func:`block_device_irq_cpu` says."""
    try:
        st_dev = os.stat(_existing(path)).st_dev
    except OSError:
        return None
    major, minor = os.major(st_dev), os.minor(st_dev)
    return block_device_irq_cpu(major, minor) if major else None


def block_device_irq_cpu(major: int, minor: int, *, sys_root: str = "/sys", interrupts: str = "/proc/interrupts",
                         share_min: float = SHARE_MIN, count_min: int = COUNT_MIN) -> IrqCpu | None:
    """The CPU taking at least ``share_min`` of the interrupts of block device
    ``major:minor`` (at least ``count_min`` of them counted); None when there is no such
    device, its interrupts are spread, or the host does not say (no sysfs, no procfs)."""
    try:
        found = _device_irqs(major, minor, sys_root)
        if found is None:
            return None
        device, irqs = found
        counts = _irq_counts(irqs, interrupts)
    except (OSError, ValueError):
        return None
    total = sum(counts.values())
    if total < count_min:
        return None
    cpu, top = max(counts.items(), key=lambda kv: kv[1])
    share = top / total
    return IrqCpu(cpu, device, share, total) if share >= share_min else None
