"""The compiled request path (adapters/rocket/compiled.py): what the build compiled is what runs,
and a compiled copy older than its source is refused."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from adapters.rocket.compiled import (
    COMPILED_SOURCES,
    ROOT,
    StaleCompiledModuleError,
    check_fresh,
    compiled_copy,
)


def _module_name(rel: str) -> str:
    return rel[: -len(".py")].replace("/", ".")


def test_the_listed_modules_run_compiled_unless_built_pure() -> None:
    """The suite tests what `pip install` built: with a C compiler and mypyc present the listed
    modules are extensions (a silent fallback to Python would leave the compiled code untested);
    with LOGSTORE_PURE=1 at install time they are plain Python."""
    pure = bool(os.environ.get("LOGSTORE_PURE"))
    if not pure and (shutil.which(os.environ.get("CC", "cc")) is None
                     or importlib.util.find_spec("mypyc") is None):
        pytest.fail("no C compiler or no mypyc here: install with LOGSTORE_PURE=1 to test the Python build")
    for rel in COMPILED_SOURCES:
        module = importlib.import_module(_module_name(rel))
        path = str(module.__file__)
        is_extension = any(path.endswith(s) for s in EXTENSION_SUFFIXES)
        assert is_extension != pure, f"{_module_name(rel)} loaded from {path}"


def test_compiled_sources_exist_and_sit_in_packages_that_check_them() -> None:
    for rel in COMPILED_SOURCES:
        source = Path(ROOT, rel)
        assert source.is_file(), rel
        init = (source.parent / "__init__.py").read_text()
        assert "_check_fresh(" in init, f"{source.parent} does not check its compiled modules"


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    rel = COMPILED_SOURCES[0]
    source = tmp_path / rel
    source.parent.mkdir(parents=True)
    source.write_text("x = 1\n")
    return source, source.with_name(source.stem + EXTENSION_SUFFIXES[0])


def test_a_compiled_copy_older_than_its_source_is_refused(tmp_path: Path) -> None:
    source, compiled = _tree(tmp_path)
    check_fresh(str(source.parent), root=str(tmp_path))  # no compiled copy: nothing to check
    compiled.write_bytes(b"")
    now = source.stat().st_mtime
    os.utime(compiled, (now + 1, now + 1))
    check_fresh(str(source.parent), root=str(tmp_path))  # the copy is newer
    assert compiled_copy(str(source)) == str(compiled)
    os.utime(compiled, (now - 60, now - 60))  # the source was edited after the build
    with pytest.raises(StaleCompiledModuleError, match="older than"):
        check_fresh(str(source.parent), root=str(tmp_path))
    check_fresh(str(tmp_path), root=str(tmp_path))  # another package's directory: not its business


def test_importing_a_package_with_a_stale_copy_fails_clearly(tmp_path: Path) -> None:
    """A copy of the tree whose first compiled module is older than its source (as after an edit
    without a rebuild): importing it fails with the rebuild hint instead of running old code."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                               "__pycache__", ".*_cache", "data"))
    rel = COMPILED_SOURCES[0]
    source = copy / rel
    compiled = Path(compiled_copy(str(source)) or source.with_name(source.stem + EXTENSION_SUFFIXES[0]))
    if not compiled.exists():
        compiled.write_bytes(b"")  # a pure build: stands in for the copy the check must refuse
    earlier = source.stat().st_mtime - 60
    os.utime(compiled, (earlier, earlier))
    proc = subprocess.run([sys.executable, "-c", f"import {_module_name(rel)}"], cwd=copy,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(copy)})
    assert proc.returncode != 0
    assert "StaleCompiledModuleError" in proc.stderr and "pip install -e ." in proc.stderr
