"""Small JSON state files under ``<store root>/config/`` written atomically (tmp, fsync,
rename, fsync dir) through the store's IO seam, so a crash leaves the old or the new file,
never a torn one."""

from __future__ import annotations

import posixpath
from typing import Any

import orjson

from logstore import IO
from logstore.checkpoint import write_atomic

CONFIG_DIR = "config"


class JsonFile:
    def __init__(self, io: IO, root: str, name: str) -> None:
        self.io = io
        self.directory = posixpath.join(root, CONFIG_DIR)
        self.path = posixpath.join(self.directory, name)
        io.makedirs(self.directory)

    def load(self) -> dict[str, Any]:
        """The saved object, or ``{}`` when there is none yet."""
        if not self.io.exists(self.path):
            return {}
        obj = orjson.loads(self.io.read_all(self.path))
        if not isinstance(obj, dict):
            raise ValueError(f"{self.path} does not hold a JSON object")
        return obj

    def save(self, obj: dict[str, Any]) -> None:
        """Blocking (fsyncs): call from a worker thread on hot paths."""
        write_atomic(self.io, self.path, orjson.dumps(obj, option=orjson.OPT_INDENT_2))
