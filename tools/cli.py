"""logstore: the one ops command; each subcommand is a module with ``main(argv) -> int``.

    logstore dump PATH [--json] [--records] [--indexes]
    logstore verify DIR [--json] [--quick]
    logstore bench ...

Every argument after the subcommand's name goes, untouched, to that module's ``main``: the
subcommand owns its own options and ``--help``. Modules are imported only when their
subcommand runs, so one that is missing or slow to import costs the others nothing.

To add a subcommand (serve, namesrv, broker, admin, ...): add one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import NamedTuple

PROG = "logstore"


class Command(NamedTuple):
    help: str
    target: str  # "package.module:function", a main(argv: list[str]) -> int


COMMANDS: dict[str, Command] = {
    "dump": Command("decode and show a segment, index, journal, checkpoint, log or store", "tools.dump:main"),
    "verify": Command("check a whole store read-only", "tools.verify:main"),
    "bench": Command("run the storage benchmarks", "tools.bench:main"),
    "serve": Command("run an embedded name server and one RocketMQ broker", "tools.serve:main"),
    "namesrv": Command("run a RocketMQ name server", "tools.serve:namesrv_main"),
    "broker": Command("run a RocketMQ broker (-c broker.conf)", "tools.serve:broker_main"),
    "admin": Command("RocketMQ admin (mqadmin's subcommands and flags)", "tools.admin:main"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="logstore operations tool",
                                epilog=f"'{PROG} COMMAND --help' shows a command's own options.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        sub.add_parser(name, help=cmd.help, add_help=False)
    return p


def load(name: str) -> Callable[[list[str]], int] | None:
    """The subcommand's main function, or None (with a message on stderr) if its module is
    not there. An import error inside an existing module is a bug and propagates."""
    module_name, _, func_name = COMMANDS[name].target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        parts = module_name.split(".")
        if exc.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
            raise
        print(f"{PROG}: the '{name}' command is not available: module {module_name} is not installed",
              file=sys.stderr)
        return None
    fn: Callable[[list[str]], int] = getattr(module, func_name)
    return fn


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # argparse's subparsers would claim options meant for the subcommand (its --help, its
    # flags): dispatch on the first word ourselves and let argparse do help and errors.
    if not args or args[0] not in COMMANDS:
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        return 2  # unreachable: a valid command name is handled below
    fn = load(args[0])
    if fn is None:
        return 2
    try:
        return int(fn(args[1:]) or 0)
    except SystemExit as exc:  # a subcommand that exits instead of returning
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


if __name__ == "__main__":
    sys.exit(main())
