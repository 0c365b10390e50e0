"""Processes: ``serve`` (embedded name server + one broker), ``namesrv``, ``broker``.

Each prints one machine-readable line to stdout once listening, e.g.::

    READY namesrv=127.0.0.1:9876 broker=127.0.0.1:10911

and stops gracefully on SIGTERM/SIGINT: unregister from the name servers, stop serving, save
consumer offsets and the key index, close the store (flush, checkpoint, clean-shutdown marker).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable

from adapters.rocket.namesrv import NameServer
from logstore.affinity import device_irq_cpu, parse_cpu_list

from .broker import Broker
from .config import CPU_AFFINITY_AUTO, CPU_AFFINITY_OFF, BrokerConfig, config_from_env

log = logging.getLogger(__name__)


def install_loop_policy() -> None:
    """uvloop when installed (faster sockets and timers); asyncio's loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


#: The young-generation GC threshold of a server process (CPython's default is 700). A request's
#: objects (command, task, futures) live a few milliseconds, long enough for a collection every
#: 700 allocations to promote many of them, and the old-generation collections that follow
#: walk every object the broker holds: 3% of a SYNC_FLUSH broker's time and 15 ms pauses with
#: 64 sync senders. At 20,000 the requests' objects die young and a run sees one collection
#: (64 sync senders, 4 alternating pairs: broker 57-59 -> 54-56 us user CPU per message,
#: 11.4-12.0k -> 11.8-12.3k msg/s).
GC_YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """GC settings for a process this module runs (not for callers embedding ``serve``)."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def place_process(config: BrokerConfig) -> set[int] | None:
    """Run this process on the CPUs ``cpuAffinity`` asks for (threads it starts later follow):
    the CPUs now set, or None when it runs anywhere it could before. For a process this module
    runs, before its event loop starts. ValueError when none of the CPUs asked for is one this
    process may use."""
    setting = config.cpu_affinity
    if setting == CPU_AFFINITY_OFF:
        return None
    allowed = os.sched_getaffinity(0)
    if setting == CPU_AFFINITY_AUTO:
        found = device_irq_cpu(config.store_path_root_dir)
        if found is None or found.cpu not in allowed or len(allowed) == 1:
            log.info("cpuAffinity auto: no single CPU takes the store device's interrupts; running on CPUs %s",
                     sorted(allowed))
            return None
        cpus = {found.cpu}
        log.info("cpuAffinity auto: CPU %d takes %.0f%% of the %d interrupts of %s, the store's device; "
                 "running there", found.cpu, found.share * 100, found.count, found.device)
    else:
        cpus = parse_cpu_list(setting) & allowed
        if not cpus:
            raise ValueError(f"cpuAffinity {setting}: none of these CPUs is one this process may use "
                             f"({sorted(allowed)})")
    os.sched_setaffinity(0, cpus)
    return cpus


def ready(**addrs: str) -> None:
    print("READY " + " ".join(f"{k}={v}" for k, v in addrs.items()), flush=True)


async def _stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stop signal received; shutting down")


async def serve(config: BrokerConfig, namesrv_port: int, host: str = "127.0.0.1",
                stop: Callable[[], asyncio.Future[None]] | None = None) -> None:
    namesrv = NameServer(host, namesrv_port)
    await namesrv.start()
    try:
        own = f"127.0.0.1:{namesrv.port}" if host in ("0.0.0.0", "127.0.0.1") else namesrv.address
        config.namesrv_addr = ";".join([own, *[a for a in config.namesrv_addrs if a != own]])
        broker = await Broker.open(config, host)
        try:
            await broker.start()
            await broker.registrar.register_all()  # routes exist before READY
            ready(namesrv=own, broker=config.broker_addr)
            await (stop() if stop else _stop_signal())
        finally:
            await broker.close()
    finally:
        await namesrv.close()


async def run_broker(config: BrokerConfig, host: str = "127.0.0.1") -> None:
    config_from_env(config)
    broker = await Broker.open(config, host)
    try:
        await broker.start()
        await broker.registrar.register_all()  # routes (and a slave's master) known before READY
        ready(broker=config.broker_addr)
        await _stop_signal()
    finally:
        await broker.close()


async def run_namesrv(port: int, host: str = "127.0.0.1") -> None:
    namesrv = NameServer(host, port)
    await namesrv.start()
    try:
        ready(namesrv=f"{host}:{namesrv.port}")
        await _stop_signal()
    finally:
        await namesrv.close()


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
