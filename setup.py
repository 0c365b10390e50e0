"""Build hook (pip runs it through pyproject.toml's setuptools backend): compiles the broker's
request path, ``adapters/rocket/compiled.py``'s COMPILED_SOURCES, with mypyc.

Without mypy's compiler or a C compiler, or with LOGSTORE_PURE=1 in the environment, nothing is
compiled and those modules run as plain Python.
"""

import os
import runpy

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
COMPILED_SOURCES = runpy.run_path(os.path.join(HERE, "adapters", "rocket", "compiled.py"))["COMPILED_SOURCES"]


class BuildExt(build_ext):
    """One compile job per core (each module is its own extension)."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


def ext_modules() -> list:
    if os.environ.get("LOGSTORE_PURE"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    exts = mypycify(list(COMPILED_SOURCES), separate=True)
    for ext in exts:
        ext.optional = True  # a failed compile leaves that module as Python
    return exts


setup(ext_modules=ext_modules(), cmdclass={"build_ext": BuildExt})
