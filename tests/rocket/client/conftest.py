"""Fixtures for the client's integration tests: one ``logstore serve`` for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Serve, serve, serve_available


@pytest.fixture(scope="session")
def rocket_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    assert serve_available(), "`logstore serve` is not available"
    with serve(tmp_path_factory.mktemp("serve")) as server:
        yield server


@pytest.fixture
def offsets_dir(tmp_path: Path) -> Path:
    return tmp_path / "offsets"
