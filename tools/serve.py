"""``logstore serve`` / ``logstore namesrv`` / ``logstore broker``: thin glue over
adapters.rocket.broker.app.

    logstore serve [--data-dir DIR] [--namesrv-port N] [--broker-port N] [-c broker.conf]
    logstore namesrv [--namesrv-port N]
    logstore broker -c broker.conf [--broker-port N] [--data-dir DIR]

Port 0 picks a free port; the READY line on stdout says which.
"""

from __future__ import annotations

import argparse
import asyncio

from adapters.rocket.broker import app
from adapters.rocket.broker.config import BrokerConfig


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--log-level", default="INFO")


def _broker_config(p: argparse.ArgumentParser, args: argparse.Namespace) -> BrokerConfig:
    """The broker's configuration, its process placed as it asks (``cpuAffinity``); a bad
    value exits with a usage error naming it."""
    overrides: dict[str, str] = {}
    if args.broker_port is not None:
        overrides["listenPort"] = str(args.broker_port)
    if args.data_dir is not None:
        overrides["storePathRootDir"] = args.data_dir
    try:
        config = BrokerConfig.load(args.config, overrides)
        app.place_process(config)
    except (ValueError, OSError) as exc:  # a bad value, a broker.conf that cannot be read
        p.error(str(exc))
    return config


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="logstore serve", description="embedded name server + one broker")
    p.add_argument("--data-dir", default=None, help="store directory (default ./data or storePathRootDir)")
    p.add_argument("--namesrv-port", type=int, default=9876)
    p.add_argument("--broker-port", type=int, default=None, help="default listenPort (10911)")
    p.add_argument("-c", "--config", default=None, help="broker.conf (RocketMQ keys)")
    _common(p)
    args = p.parse_args(argv)
    app.setup_logging(args.log_level)
    config = _broker_config(p, args)
    app.install_loop_policy()
    app.tune_gc()
    asyncio.run(app.serve(config, args.namesrv_port, args.host))
    return 0


def namesrv_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="logstore namesrv", description="a stand-alone name server")
    p.add_argument("--namesrv-port", type=int, default=9876)
    _common(p)
    args = p.parse_args(argv)
    app.setup_logging(args.log_level)
    app.install_loop_policy()
    app.tune_gc()
    asyncio.run(app.run_namesrv(args.namesrv_port, args.host))
    return 0


def broker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="logstore broker", description="one broker (namesrvAddr from the config)")
    p.add_argument("-c", "--config", default=None, help="broker.conf (RocketMQ keys)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--broker-port", type=int, default=None)
    _common(p)
    args = p.parse_args(argv)
    app.setup_logging(args.log_level)
    config = _broker_config(p, args)
    app.install_loop_policy()
    app.tune_gc()
    asyncio.run(app.run_broker(config, args.host))
    return 0
