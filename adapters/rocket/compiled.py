"""The modules of the broker's request path that the build compiles with mypyc, and the check
that no compiled copy is older than its source.

``pip install`` (``setup.py``) compiles these modules to C extensions when mypy's compiler and a
C compiler are present and ``LOGSTORE_PURE`` is not set in the environment; otherwise they run as
plain Python, with the same behaviour. Compiled, the broker spends about a fifth less CPU a
sent message (README, "Compiled modules").

An editable install (``pip install -e .``) puts the compiled files beside their sources, and
Python prefers them. After a source below is edited, its old compiled copy would run until the
next ``pip install -e .``: the packages holding these modules call :func:`check_fresh` when they
are imported and refuse such a copy.

Only the standard library is imported here: ``setup.py`` reads :data:`COMPILED_SOURCES` before
anything is installed.
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES

# Paths from the repository's root. Chosen by profile (the send and pull paths); modules that
# tests patch, or that rely on instance ``__dict__`` tricks (lazy_message.py), stay Python.
COMPILED_SOURCES = (
    "adapters/rocket/remoting/command.py",
    "adapters/rocket/remoting/connection.py",
    "adapters/rocket/remoting/server.py",
    "adapters/rocket/remoting/client.py",
    "adapters/rocket/broker/send.py",
    "adapters/rocket/broker/keyindex.py",
    "adapters/rocket/broker/queues.py",
    "adapters/rocket/broker/pull.py",
    "adapters/rocket/broker/reader.py",
)

# A wheel's files get their install time, in no set order: a source newer than its compiled
# copy by less than this is the same build.
STALE_TOLERANCE_S = 2.0

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class StaleCompiledModuleError(ImportError):
    """A compiled module is older than its source: the source's edits would not run."""


def compiled_copy(source: str) -> str | None:
    """The compiled file Python would load instead of ``source`` (a .py path), if there is one."""
    base = source[: -len(".py")]
    for suffix in EXTENSION_SUFFIXES:
        if os.path.exists(base + suffix):
            return base + suffix
    return None


def check_fresh(package_dir: str, root: str = ROOT) -> None:
    """Raise StaleCompiledModuleError if a compiled module of ``package_dir`` (a package's
    directory) is older than its source."""
    package_dir = os.path.abspath(package_dir)
    for rel in COMPILED_SOURCES:
        source = os.path.join(root, rel)
        if os.path.dirname(source) != package_dir:
            continue
        compiled = compiled_copy(source)
        if compiled is None or not os.path.exists(source):
            continue
        if os.path.getmtime(source) > os.path.getmtime(compiled) + STALE_TOLERANCE_S:
            raise StaleCompiledModuleError(
                f"{compiled} is older than {rel}: the edited source would not run. Rebuild with "
                f"`pip install -e .`, or delete the compiled files and install with LOGSTORE_PURE=1"
            )
